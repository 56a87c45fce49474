"""
Looking at the routing: RoutingDisplay and LossCurveDisplay
===========================================================

A mixture of experts is only as good as its gate: which expert does it send
each row to, how sure is it, and did the training rounds help? Two displays,
in scikit-learn's Display style, answer that from a fitted mixture:

* :class:`skmoe.RoutingDisplay` draws each expert's load (the share of rows
  it is the top choice for, and its share of the gate's mass), the entropy of
  the gate over the rows, and the rows on a plane coloured by their top
  expert;
* :class:`skmoe.LossCurveDisplay` draws ``loss_curve_``: under the default
  ``training="crossfit"`` the *held-out* loss of each specialisation round,
  with the round the mixture kept marked.

The data are the iris flowers. Each expert is a decision stump (a tree of
depth one), which can separate one species from the other two at most; three
stumps and a gate that routes each flower to one of them can do better.
"""

# %%
# A mixture of three decision stumps
# ----------------------------------
import os
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split
from sklearn.tree import DecisionTreeClassifier

from skmoe import LossCurveDisplay, MoEClassifier, RoutingDisplay

X, y = load_iris(return_X_y=True, as_frame=True)
X_train, X_test, y_train, y_test = train_test_split(
    X, y, test_size=0.4, stratify=y, random_state=1
)
stump = DecisionTreeClassifier(max_depth=1)
moe = MoEClassifier(stump, n_experts=3, random_state=0).fit(X_train, y_train)

stump_accuracy = stump.fit(X_train, y_train).score(X_test, y_test)
print(f"test accuracy, one stump:          {stump_accuracy:.3f}")
print(f"test accuracy, a mixture of three: {moe.score(X_test, y_test):.3f}")
print(moe.routing_report(X_test, y_test).round(3).to_string())

# %%
# The routing of the test rows
# ----------------------------
# With four features the rows are drawn on their first two principal
# components, of the features standardised as the gate standardises them.
# The load panel puts each expert's top-choice share (solid) beside its gate
# mass (hatched): with ``top_k=None`` every expert takes part in every row,
# so the two differ where the gate hesitates. The entropy panel says how
# sure the gate is, from 0 (one expert) to ``log 3`` (all three alike).
# Passing ``y`` puts each expert's own accuracy on its rows under its name.
display = RoutingDisplay.from_estimator(moe, X_test, y_test)
routing_figure = display.figure_
print(f"mean gate entropy on the test rows: {display.gate_entropy.mean():.3f}")

# %%
# Did the specialisation rounds help?
# -----------------------------------
# Clones of one template start from k-means clusters and are cross-fitted
# again, round after round, with the gate's posterior as sample weights. A
# round is kept only if it lowers the held-out loss; the first that does not
# ends them. The curve is that held-out loss (not a training loss), the star
# the round kept.
loss_display = LossCurveDisplay.from_estimator(moe)
print(f"held-out loss per round: {[round(loss, 4) for loss in moe.loss_curve_]}")
print(f"rounds kept: {moe.n_specialisation_rounds_}")

# %%
# Two features: the routing over the plane
# ----------------------------------------
# With exactly two features the routing panel also draws the top expert at
# every point of the plane, as
# :class:`~sklearn.inspection.DecisionBoundaryDisplay` draws a classifier's
# classes. (``DecisionBoundaryDisplay.from_estimator(moe, X,
# response_method="gate_proba")`` does not work: it reads the ``(n,
# n_experts)`` routing weights as one column per *class*.) Each panel can go
# on axes of your own figure, here beside the loss curve.
petals = X[["petal length (cm)", "petal width (cm)"]]
moe_petals = MoEClassifier(stump, n_experts=3, random_state=0).fit(petals, y)

figure, axes = plt.subplots(1, 3, figsize=(16, 4.5), layout="constrained")
RoutingDisplay.from_estimator(
    moe_petals, petals, y, panels=("load", "routing"), ax=axes[:2]
)
LossCurveDisplay.from_estimator(moe_petals, ax=axes[2])
print(f"two features, training accuracy: {moe_petals.score(petals, y):.3f}")

# %%
# The estimator itself
# --------------------
# In a notebook, a mixture's HTML repr shows its experts side by side and the
# gate that mixes them, as :class:`~sklearn.ensemble.StackingClassifier`
# shows its estimators and final estimator.
moe_petals  # noqa: B018 (the gallery shows the last expression's repr)

# %%
directory = tempfile.gettempdir()
for name, fig in [
    ("skmoe_routing_display.png", routing_figure),
    ("skmoe_routing_display_petals.png", figure),
]:
    path = os.path.join(directory, name)
    fig.savefig(path, dpi=90)
    print(f"Figure saved to {path}")

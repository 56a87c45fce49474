"""
Quickstart: a mixture of experts against its own experts and stacking
=====================================================================

skmoe's main job in one script. It fits a :class:`skmoe.MoEClassifier` on a
real dataset (the Wisconsin breast-cancer set bundled with scikit-learn, 569
rows, 30 numeric features) and compares it, on the same five stratified
cross-validation splits, with

* each of its three experts fitted alone,
* ``VotingClassifier`` (soft: the experts' probabilities averaged) and
  ``StackingClassifier(cv=5)`` over the same three experts, and
* the in-sample EM (``training="em"``), the mixture's classical algorithm.

The default mixture is cross-fitted (``training="crossfit"``): each expert is
fitted on four fifths of the training rows and predicts the fifth, and the
gate is learned from those out-of-fold predictions only, as Stacking learns
its final estimator. Which gate is chosen among a few strengths of
regularisation, the constant gate (a global blend) and each single expert,
is itself decided by cross-validation over the out-of-fold evidence.

It prints mean ROC-AUC, accuracy and log-loss on the held-out folds, and the
mean fit and predict times, then fits the mixture on all rows and says which
gate it chose and how the gate shares the data between the experts
(``expert_load_``).

The experts are a scaled logistic regression, a depth-5 decision tree and a
scaled 15-nearest-neighbours classifier. ``KNeighborsClassifier.fit`` takes no
``sample_weight``, so skmoe trains it on a weighted resample of its share of
the data (seeded by ``random_state``) when weights differ.

Every model runs single-threaded (``threadpoolctl.threadpool_limits(1)``
around the whole comparison): on data this small, BLAS and OpenMP threads add
more overhead than they save, and on a busy machine they make timings
erratic. One thread each keeps the comparison like for like.

Only the core dependencies are needed (threadpoolctl comes with
scikit-learn): ``pip install . && python examples/quickstart.py``. It runs in
about 15 seconds on two cores.
"""

import time

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import StackingClassifier, VotingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeClassifier
from threadpoolctl import threadpool_limits

from skmoe import MoEClassifier

X, y = load_breast_cancer(return_X_y=True)

experts = [
    ("lr", make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))),
    ("tree", DecisionTreeClassifier(max_depth=5, random_state=0)),
    ("knn", make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=15))),
]

models = {
    **{f"expert: {name}": estimator for name, estimator in experts},
    "VotingClassifier(soft)": VotingClassifier(experts, voting="soft"),
    "StackingClassifier(cv=5)": StackingClassifier(experts, cv=5),
    "MoEClassifier": MoEClassifier(experts, random_state=0),
    'MoEClassifier(training="em")': MoEClassifier(
        experts, training="em", random_state=0
    ),
}

# The same five splits for every model.
splits = list(StratifiedKFold(n_splits=5, shuffle=True, random_state=0).split(X, y))


def evaluate(template):
    """Mean held-out scores and times of ``template`` over ``splits``."""
    scores, loads = [], []
    for train, test in splits:
        model = clone(template)
        tic = time.perf_counter()
        model.fit(X[train], y[train])
        fit_time = time.perf_counter() - tic
        tic = time.perf_counter()
        proba = model.predict_proba(X[test])
        predict_time = time.perf_counter() - tic
        prediction = model.classes_[np.argmax(proba, axis=1)]
        scores.append(
            {
                "ROC-AUC": roc_auc_score(y[test], proba[:, 1]),
                "accuracy": accuracy_score(y[test], prediction),
                "log-loss": log_loss(y[test], proba, labels=model.classes_),
                "fit s": fit_time,
                "predict ms": 1000 * predict_time,
            }
        )
        if isinstance(model, MoEClassifier) and model.training == "crossfit":
            loads.append(model.gate_selection_["selected"])
    return pd.DataFrame(scores).mean().to_dict(), loads


rows = []
chosen = {}
with threadpool_limits(limits=1):
    for label, template in models.items():
        mean_scores, chosen[label] = evaluate(template)
        rows.append({"model": label, **mean_scores})

table = pd.DataFrame(rows).set_index("model")
print(
    f"Breast cancer ({X.shape[0]} rows, {X.shape[1]} features): mean over the "
    "same 5 stratified folds"
)
print(
    table.to_string(
        formatters={
            "ROC-AUC": "{:.4f}".format,
            "accuracy": "{:.4f}".format,
            "log-loss": "{:.4f}".format,
            "fit s": "{:.3f}".format,
            "predict ms": "{:.1f}".format,
        }
    )
)

best_expert = table.loc[[f"expert: {name}" for name, _ in experts], "ROC-AUC"].idxmax()
stacking_fit = table.loc["StackingClassifier(cv=5)", "fit s"]
print()
print(f"Best single expert by ROC-AUC: {best_expert}.")
for label in ("MoEClassifier", 'MoEClassifier(training="em")'):
    auc_gap = table.loc[label, "ROC-AUC"] - table.loc[best_expert, "ROC-AUC"]
    ratio = table.loc[label, "fit s"] / stacking_fit
    print(
        f"{label}: ROC-AUC {auc_gap:+.4f} against the best expert, "
        f"fit time {ratio:.1f}x StackingClassifier(cv=5)'s."
    )
print(
    "The gate each fold's MoEClassifier chose: "
    + ", ".join(chosen["MoEClassifier"])
    + "."
)

# What the gate learned, on all the data.
with threadpool_limits(limits=1):
    moe = MoEClassifier(experts, random_state=0).fit(X, y)
names = moe.expert_names_
shares = ", ".join(f"{n} {share:.0%}" for n, share in zip(names, moe.expert_load_))
selection = moe.gate_selection_
candidates = ", ".join(
    f"{label} {loss:.4f}"
    for label, loss in zip(selection["candidates"], selection["loss"])
)
print()
print(
    f"Fitted on all {X.shape[0]} rows: the gate candidates' held-out log-loss "
    f"is {candidates}; chosen: {selection['selected']}. The gate's load "
    f"(expert_load_): {shares}."
)

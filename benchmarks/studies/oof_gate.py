"""Experiment: a gate fitted over fixed out-of-fold expert likelihoods.

Not a skmoe feature (yet): a measured idea for the next step of the
comparison benchmark (``python -m benchmarks``), where the default MoE beats
the best expert of its pool on only a third of the quick sets.

The idea is a learned, input-dependent stacking. Each expert of the pool is
fitted once per fold of a 5-fold split of the training rows, as
``StackingClassifier(cv=5)`` does, and once on all of them. The out-of-fold
predictions give each row's likelihood under each expert, ``L_ij``
(the probability of the observed class, floored at 1e-6; for regression a
Gaussian density with the expert's out-of-fold residual variance). The
experts stay fixed, and a :class:`~skmoe.SoftmaxGate` is fitted by EM to
maximise ``sum_i log sum_j g_j(x_i) exp(L_ij)``: E-step ``R ~ g * exp(L)``,
M-step ``gate.fit(X, R)``, until the loss improves by less than 1e-4. The
prediction mixes the experts fitted on all the rows with the gate's
weights. The cost is Stacking's plus the gate's EM.

Protocol: the quick sets, at most 2,000 rows, one 3-fold split (stratified
for classification, seed 0), the shared preprocessing, the zoo's expert pool
(forests seeded), Stacking over the same pool; the sets' ranking metrics.
The report goes to ``benchmarks/results/oof_gate/oof_gate.md``.

Command::

    python -m benchmarks.studies.oof_gate            # C = 1 and 0.01
    python -m benchmarks.studies.oof_gate --C 0.1
    python -m benchmarks.studies.oof_gate --sets breast_cancer --max-rows 300
"""

import argparse
import sys
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.ensemble import StackingClassifier, StackingRegressor
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_predict

from skmoe import SoftmaxGate

from .. import datasets, metrics, models, preprocessing
from .._common import RESULTS, command, header, log, md_table, single_threaded, timed

OUT = RESULTS / "oof_gate"

PROBA_FLOOR = 1e-6


def _splitter(task, n_splits):
    if task == "regression":
        return KFold(n_splits, shuffle=True, random_state=0)
    return StratifiedKFold(n_splits, shuffle=True, random_state=0)


def _output(estimator, task, X):
    if task == "regression":
        return estimator.predict(X)
    return estimator.predict_proba(X)


def out_of_fold_log_likelihood(task, expert, X, y):
    """``log p(y_i | x_i)`` of each row under the expert's out-of-fold model."""
    cv = _splitter(task, 5)
    if task == "regression":
        predicted = cross_val_predict(clone(expert), X, y, cv=cv)
        variance = max(np.mean((y - predicted) ** 2), 1e-12)
        return -0.5 * (np.log(2 * np.pi * variance) + (y - predicted) ** 2 / variance)
    proba = cross_val_predict(clone(expert), X, y, cv=cv, method="predict_proba")
    return np.log(np.maximum(proba[np.arange(len(y)), y], PROBA_FLOOR))


def fit_gate(X, log_likelihood, C, max_iter=50, tol=1e-4):
    """EM for the gate alone, the experts' likelihoods held fixed."""
    gate = SoftmaxGate(C=C)
    responsibilities = np.full(log_likelihood.shape, 1.0 / log_likelihood.shape[1])
    previous = np.inf
    for iteration in range(max_iter):
        gate.fit(X, responsibilities, warm_start=iteration > 0)
        joint = gate.predict_log_proba(X) + log_likelihood
        mixture = logsumexp(joint, axis=1, keepdims=True)
        responsibilities = np.exp(joint - mixture)
        loss = -float(mixture.mean())
        if previous - loss < tol:
            break
        previous = loss
    return gate


def oof_gate_predict(task, pool, X, y, X_test, C):
    log_likelihood = np.column_stack(
        [out_of_fold_log_likelihood(task, expert, X, y) for _, expert in pool]
    )
    finals = [clone(expert).fit(X, y) for _, expert in pool]
    weights = fit_gate(X, log_likelihood, C).predict_proba(X_test)
    outputs = [_output(final, task, X_test) for final in finals]
    if task == "regression":
        return sum(weights[:, j] * out for j, out in enumerate(outputs))
    return sum(weights[:, [j]] * out for j, out in enumerate(outputs))


def seeded_pool(task):
    return [
        (name, expert.set_params(random_state=models.SEED))
        if "random_state" in expert.get_params()
        else (name, expert)
        for name, expert in models.expert_pool(task)
    ]


def run_set(name, C, max_rows=2000):
    task = datasets.REGISTRY[name].task
    X, y, _ = datasets.load(name, max_rows=max_rows)
    metric, higher_is_better = metrics.PRIMARY[task]
    scores, time_ratio = {}, []
    stratify = None if task == "regression" else y
    for train, test in _splitter(task, 3).split(X, stratify):
        X_train, X_test = preprocessing.transform_split(X, train, test)
        X_train, X_test = np.asarray(X_train, float), np.asarray(X_test, float)
        pool = seeded_pool(task)
        outputs = {}
        outputs["gate"], gate_seconds = timed(
            partial(oof_gate_predict, task, pool, X_train, y[train], X_test, C)
        )
        stacking = (StackingRegressor if task == "regression" else StackingClassifier)(
            seeded_pool(task), cv=5
        )
        _, stacking_seconds = timed(partial(stacking.fit, X_train, y[train]))
        time_ratio.append(gate_seconds / stacking_seconds)
        outputs["stacking"] = _output(stacking, task, X_test)
        for expert_name, expert in pool:
            fitted = clone(expert).fit(X_train, y[train])
            outputs[expert_name] = _output(fitted, task, X_test)
        for model, output in outputs.items():
            value = metrics.score(task, y[test], output)[metric]
            scores.setdefault(model, []).append(value)
    means = {model: float(np.mean(values)) for model, values in scores.items()}
    experts = [means[expert_name] for expert_name, _ in models.expert_pool(task)]
    best = max(experts) if higher_is_better else min(experts)
    sign = 1 if higher_is_better else -1
    return dict(
        set=name,
        metric=metrics.LABELS[metric],
        gate=means["gate"],
        best_expert=best,
        stacking=means["stacking"],
        at_least_best=sign * (means["gate"] - best) >= 0,
        beats_stacking=sign * (means["gate"] - means["stacking"]) > 0,
        time_vs_stacking=float(np.median(time_ratio)),
    )


def table(rows):
    """The markdown table of one C's rows."""
    frame = pd.DataFrame(rows)
    for column in ("at_least_best", "beats_stacking"):
        frame[column] = frame[column].map({True: "yes", False: "no"})
    frame = frame.rename(
        columns={
            "best_expert": "best expert",
            "stacking": "Stacking",
            "at_least_best": ">= best",
            "beats_stacking": "> Stacking",
            "time_vs_stacking": "time / stack",
        }
    )
    return md_table(frame, "{:.4f}")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="python -m benchmarks.studies.oof_gate")
    parser.add_argument(
        "--C", type=float, action="append", help="gate C (repeatable; default 1, 0.01)"
    )
    parser.add_argument(
        "--sets",
        default=",".join(datasets.QUICK_SETS),
        help="comma-separated set names (default: the quick sets)",
    )
    parser.add_argument("--max-rows", type=int, default=2000, help="default 2000")
    parser.add_argument("--out", type=Path, default=OUT, help="report folder")
    args = parser.parse_args(argv)
    sets = [name for name in args.sets.split(",") if name]
    warnings.simplefilter("ignore")
    sections = []

    def run_all():
        with single_threaded():
            for C in args.C or [1.0, 0.01]:
                rows = [run_set(name, C, args.max_rows) for name in sets]
                at_least = sum(row["at_least_best"] for row in rows)
                beats = sum(row["beats_stacking"] for row in rows)
                text = (
                    f"## SoftmaxGate(C={C}) over out-of-fold likelihoods\n\n"
                    f"{table(rows)}\n\nat least the best expert on {at_least} "
                    f"of {len(rows)} sets; better than Stacking on {beats}"
                )
                log(text + "\n")
                sections.append(text)

    _, seconds = timed(run_all)
    protocol = (
        f"{len(sets)} sets, at most {args.max_rows} rows, one 3-fold split, the "
        "zoo's pool, Stacking(cv=5) over it (see the module's docstring); "
        "time / stack is the median over the folds of the fit time ratio, the "
        f"gate's EM included; single-threaded; took {seconds / 60:.1f} min"
    )
    head = header(
        "Experiment: a gate over fixed out-of-fold expert likelihoods",
        command("benchmarks.studies.oof_gate", argv),
        protocol,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "oof_gate.md"
    path.write_text("\n\n".join([head, *sections]) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""Load balancing, regime recovery and the shared expert, on held-out rows.

Three parts, each printed as it runs and written to
``benchmarks/results/balancing/`` (``summary.md``, ``records.csv``):

1. **Load balance.** 8 clones of one decision tree, ``top_k=1``, on a real
   set (``credit_data``: 4,454 rows, binary), with no penalty, each
   balancing penalty at its default strength, the routing bias
   (``balance="bias"``) and the balanced E-step (``balance="sinkhorn"``,
   not under backprop) under each training mode (``"crossfit"``, the
   default, ``"em"`` and ``"backprop"``, the last also with noisy top-k
   gating), and training-time capacity. Per configuration:
   max load / mean load of the experts as top choice on the test rows (from
   ``gate_proba``) and on the training rows (``top_choice_load_``), dead
   experts, accuracy and log-loss, and what they cost against no penalty
   under the same training mode on the same split. Goal: ratio <= 1.25 with
   no dead expert at an accuracy cost of at most 0.01 (absolute).
   **Strength sweep**: each penalty at strengths 0.01 to 1000 under
   ``"crossfit"`` and ``"em"``, the max/mean load against the strength
   plotted on a log axis (``strength_sweep.png``): no strength may make the
   routing collapse.
2. **Regime recovery.** On the two synthetic three-regime sets of the
   registry, a mixture of three linear experts: adjusted Rand index of each
   test row's top expert against its true regime. Goal: 0.9 or more.
3. **Shared expert.** On the same real set, the same mixtures with and
   without an always-on shared expert, and each expert alone.

Run from the repository root: ``python -m benchmarks.studies.balancing
[--quick]`` (``--quick``: fewer splits and configurations, a few minutes;
``--smoke``: a tiny run for the tests, seconds).
"""

import argparse
import sys
import warnings
from collections import Counter
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from joblib import Parallel, delayed  # noqa: E402
from sklearn.base import clone  # noqa: E402
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    adjusted_rand_score,
    log_loss,
    roc_auc_score,
)
from sklearn.model_selection import RepeatedStratifiedKFold, train_test_split
from sklearn.tree import DecisionTreeClassifier

from skmoe import MoEClassifier, MoERegressor

from .. import datasets, preprocessing
from .._common import RESULTS, command, header, log, md_table, single_threaded, timed

OUT = RESULTS / "balancing"

#: The real set of parts 1 and 3: a few thousand rows, binary, mixed types.
REAL_SET = "credit_data"
N_EXPERTS = 8
#: Part 1's second setup: a larger real binary set and more clones.
#: ``DAAG/nassCDS`` (US car crashes 1997-2002, 26,217 rows; target: the
#: occupant died), subsampled to :data:`LARGE_ROWS` rows, stratified.
#: Dropped: ``injSeverity`` (its level 4 is "killed": it leaks the target),
#: ``caseid`` (an identifier) and ``weight`` (the survey's sampling weight).
#: Not in the benchmark registry, so that adding it leaves the main
#: benchmark's sets (and its cache keys) as they are.
LARGE_SET = "nassCDS"
LARGE_SOURCE = ("DAAG", "nassCDS")
LARGE_TARGET = "dead"
LARGE_DROP = ("injSeverity", "caseid", "weight")
LARGE_ROWS = 12000
N_LARGE_EXPERTS = 16
#: A shallow tree: enough rows per leaf that a clone fitted on 1/8 of the data
#: is not a lookup table of its own rows.
TREE = DecisionTreeClassifier(max_depth=4, min_samples_leaf=20)
LINEAR = LogisticRegression(max_iter=1000)

GOAL_RATIO = 1.25
#: "At most 1% accuracy cost", read as an absolute drop of 0.01 in accuracy
#: (one percentage point) against the no-penalty mixture on the same split.
GOAL_ACCURACY_COST = 0.01
GOAL_ARI = 0.9

SEED = 0


# -- shared helpers ---------------------------------------------------------


def fit_and_time(model, X, y):
    """Fit ``model``; return ``(seconds, error text or "", warnings seen)``.

    A configuration that raises (an option not implemented yet, say) becomes
    a row with its error rather than stopping the run.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _, seconds = timed(lambda: model.fit(X, y))
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            return np.nan, f"{type(exc).__name__}: {exc}", ""
    counts = Counter(type(w.message).__name__ for w in caught)
    return seconds, "", ", ".join(f"{name} x{n}" for name, n in counts.items())


def kept_iteration(moe):
    """The EM iteration whose fit the mixture keeps (the lowest training
    objective, ``objective_curve_``: the loss plus the gate's penalties; the
    last of equal ones, as skmoe's EM keeps it)."""
    curve = np.asarray(moe.objective_curve_)
    return int(len(curve) - np.argmin(curve[::-1]))


def max_over_mean(loads):
    """Max load / mean load: 1 when perfectly even, E when one expert takes all."""
    loads = np.asarray(loads, dtype=float)
    return float(loads.max() / loads.mean())


def test_top_choice_loads(moe, X_test, n_routed):
    """Fraction of the test rows whose top choice is each routed expert.

    Computed from ``gate_proba`` on held-out rows, not read from the fitted
    ``top_choice_load_`` (training rows).
    """
    top = np.argmax(moe.gate_proba(X_test)[:, :n_routed], axis=1)
    return np.bincount(top, minlength=n_routed) / len(X_test)


def classification_scores(y_true, proba):
    return {
        "accuracy": accuracy_score(y_true, proba.argmax(axis=1)),
        "log_loss": log_loss(y_true, proba, labels=np.arange(proba.shape[1])),
        "roc_auc": roc_auc_score(y_true, proba[:, 1]),
    }


def mean_sd(values, fmt="{:.3f}"):
    """``mean ± sd`` over the splits, ignoring failed ones."""
    values = pd.Series(values, dtype=float).dropna()
    if values.empty:
        return "–"
    if len(values) == 1:
        return fmt.format(values.iloc[0])
    # the spread is never signed, whatever the format of the mean
    spread = fmt.format(values.std()).lstrip("+")
    return f"{fmt.format(values.mean())} ± {spread}"


def load_large_set(max_rows=LARGE_ROWS):
    """Features and 0/1 target of :data:`LARGE_SET` (see its comment)."""
    frame = datasets._rdataset(*LARGE_SOURCE).drop(columns=["rownames"])
    y = (frame[LARGE_TARGET] == "dead").to_numpy(dtype=np.int64)
    X = frame.drop(columns=[LARGE_TARGET, *LARGE_DROP])
    if max_rows is not None and len(X) > max_rows:
        keep, _ = train_test_split(
            np.arange(len(X)), train_size=max_rows, stratify=y, random_state=SEED
        )
        keep = np.sort(keep)
        X, y = X.iloc[keep].reset_index(drop=True), y[keep]
    return X, y


def load_set(name, max_rows=None):
    """Features and encoded target of part 1's set ``name``."""
    if name == LARGE_SET:
        return load_large_set(max_rows or LARGE_ROWS)
    X, y, _ = datasets.load(name, max_rows=max_rows)
    return X, y


def real_splits(n_splits, n_repeats, max_rows=None, name=REAL_SET):
    """Preprocessed (X_train, X_test, y_train, y_test) of each held-out split
    of a real set: repeated stratified K-fold with a fixed seed, the shared
    preprocessing fitted on each training part."""
    X, y = load_set(name, max_rows)
    folds = RepeatedStratifiedKFold(
        n_splits=n_splits, n_repeats=n_repeats, random_state=SEED
    )
    for train, test in folds.split(X, y):
        X_train, X_test = preprocessing.transform_split(X, train, test)
        yield X_train, X_test, y[train], y[test]


def first_error(errors):
    errors = [e for e in errors if e]
    return errors[0] if errors else ""


# -- part 1: load balance ----------------------------------------------------


#: The balancing penalties, compared at their default strength.
PENALTIES = ("switch", "importance", "entropy")
#: The training modes compared, with the label each configuration starts with.
TRAININGS = {"crossfit": "", "em": "em, ", "backprop": "backprop, "}
#: The strengths of the sweep (a log axis), and its training modes.
SWEEP_STRENGTHS = (0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)
SWEEP_TRAININGS = ("crossfit", "em")


def load_balance_configs(quick):
    """(label, MoEClassifier parameters, baseline label) of each
    configuration compared: the accuracy cost is against its baseline, no
    penalty under the same training mode."""
    configs = []
    for training, prefix in TRAININGS.items():
        mode = {} if training == "crossfit" else {"training": training}
        baseline = f"{prefix}no penalty"
        configs.append((baseline, mode, baseline))
        for balance in (*PENALTIES, "bias", "sinkhorn"):
            if balance == "sinkhorn" and training == "backprop":
                continue  # an E-step's balancing: backprop has no E-step
            configs.append(
                (f"{prefix}{balance}", {**mode, "balance": balance}, baseline)
            )
    configs.append(
        (
            "backprop, noisy, importance",
            {"training": "backprop", "noisy_gating": True, "balance": "importance"},
            "backprop, no penalty",
        )
    )
    for factor in (1.0,) if quick else (1.0, 1.25):
        # capacity limits EM's in-sample routing: an option of training="em"
        params = {"training": "em", "capacity_factor": factor}
        configs.append((f"em, capacity {factor:g}", params, "em, no penalty"))
    return configs


def sweep_configs(smoke):
    """(label, parameters, baseline label) of the strength sweep; its
    baselines are part 1's (the same splits and mixtures)."""
    configs = []
    trainings = SWEEP_TRAININGS[:1] if smoke else SWEEP_TRAININGS
    strengths = SWEEP_STRENGTHS[-2:] if smoke else SWEEP_STRENGTHS
    for training in trainings:
        prefix = TRAININGS[training]
        mode = {} if training == "crossfit" else {"training": training}
        for balance in PENALTIES[:1] if smoke else PENALTIES:
            for strength in strengths:
                params = {**mode, "balance": balance, "balance_strength": strength}
                label = f"{prefix}{balance} {strength:g}"
                configs.append((label, params, f"{prefix}no penalty"))
    return configs


def load_balance_record(moe, X_test, y_test):
    """Held-out routing and scores of one fitted top-1 mixture of trees."""
    loads = test_top_choice_loads(moe, X_test, moe.n_experts)
    # The gate's mean soft weight per expert, before top-1 truncation: a
    # penalty on it can be met by flattening the gate without moving any
    # row's top choice, which this column shows.
    soft = moe.gate_.predict_proba(X_test).mean(axis=0)
    return {
        "test_ratio": max_over_mean(loads),
        "test_dead": int(np.sum(loads == 0)),
        "train_ratio": max_over_mean(moe.top_choice_load_),
        "train_dead": moe.n_dead_experts_,
        "soft_ratio": max_over_mean(soft),
        "gate_entropy": moe.gate_entropy_,
        "n_iter": moe.n_iter_,
        "kept_iter": kept_iteration(moe),
        **classification_scores(y_test, moe.predict_proba(X_test)),
    }


def fit_load_balance(split, data, config, setup, part):
    """One configuration on one split: its record and its log line (a
    task of :func:`run_load_balance`, single-threaded in its worker)."""
    X_train, X_test, y_train, y_test = data
    label, params, baseline = config
    with single_threaded(torch=True):
        moe = MoEClassifier(
            TREE, n_experts=setup.n_experts, top_k=1, random_state=SEED, **params
        )
        seconds, error, warned = fit_and_time(moe, X_train, y_train)
        record = {"part": part, "setup": setup.name, "config": label}
        record |= {"split": split, "baseline": baseline, "training": moe.training}
        record["balance_strength"] = params.get("balance_strength", np.nan)
        record |= {"fit_s": seconds, "error": error, "warnings": warned}
        if not error:
            record |= load_balance_record(moe, X_test, y_test)
    line = f"[{part.replace('_', ' ')}] {setup.name} split {split} {label:32s} " + (
        f"ERROR {error[:90]}"
        if error
        else f"test max/mean {record['test_ratio']:.2f} "
        f"dead {record['test_dead']} acc {record['accuracy']:.4f} "
        f"kept iter {record['kept_iter']}/{record['n_iter']} "
        f"{seconds:.1f}s"
    )
    return record, line


def run_load_balance(sizes, log, configs, setup, part="load_balance"):
    """Part 1: every configuration on every split of ``setup``'s set; one
    record each. The (split, configuration) fits run ``sizes.n_jobs`` at a
    time; every fit is seeded, so the records do not depend on it."""
    splits = list(real_splits(setup.splits, setup.repeats, setup.rows, setup.name))
    tasks = [
        delayed(fit_load_balance)(split, data, config, setup, part)
        for split, data in enumerate(splits)
        for config in configs
    ]
    records = []
    for record, line in Parallel(n_jobs=sizes.n_jobs, return_as="generator")(tasks):
        records.append(record)
        log(line)
    return pd.DataFrame(records)


def with_costs(records):
    """Add each record's accuracy and log-loss change against its baseline
    (no penalty under the same training mode) on the same split (positive
    accuracy cost: worse)."""
    records = records.copy()
    baseline = records.set_index(["setup", "config", "split"])
    key = pd.MultiIndex.from_arrays(
        [records["setup"], records["baseline"], records["split"]]
    )
    records["accuracy_cost"] = (
        baseline["accuracy"].reindex(key).to_numpy() - records["accuracy"]
    )
    records["log_loss_change"] = (
        records["log_loss"] - baseline["log_loss"].reindex(key).to_numpy()
    )
    return records


def load_balance_table(records):
    """One row per configuration: mean ± sd over the splits, and the goal
    (``records`` with their costs, :func:`with_costs`)."""
    rows = []
    for label, part in records.groupby("config", sort=False):
        failed = part["error"].astype(bool)
        ok = part[~failed]
        meets = (
            not failed.any()
            and ok["test_ratio"].mean() <= GOAL_RATIO
            and ok["test_dead"].max() == 0
            and ok["train_dead"].max() == 0
            and ok["accuracy_cost"].mean() <= GOAL_ACCURACY_COST
        )
        rows.append(
            {
                "configuration": label,
                "test max/mean": mean_sd(ok["test_ratio"], "{:.2f}"),
                "train max/mean": mean_sd(ok["train_ratio"], "{:.2f}"),
                "soft gate max/mean": mean_sd(ok["soft_ratio"], "{:.2f}"),
                "dead (test / train, max)": "–"
                if ok.empty
                else f"{ok['test_dead'].max():.0f} / {ok['train_dead'].max():.0f}",
                "accuracy": mean_sd(ok["accuracy"], "{:.4f}"),
                "accuracy cost": mean_sd(ok["accuracy_cost"], "{:+.4f}"),
                "log-loss": mean_sd(ok["log_loss"], "{:.4f}"),
                "log-loss change": mean_sd(ok["log_loss_change"], "{:+.4f}"),
                "kept iter / iters": "–"
                if ok.empty
                else f"{ok['kept_iter'].mean():.1f} / {ok['n_iter'].mean():.1f}",
                "fit s": mean_sd(part["fit_s"], "{:.2f}"),
                "goal": "yes" if meets else "no",
                "error": first_error(part["error"]),
            }
        )
    return pd.DataFrame(rows)


def sweep_table(records):
    """One row per training mode and penalty, one column per strength:
    mean test max/mean (largest number of dead test experts over the
    splits) and mean accuracy cost; the no-penalty row for reference."""
    sweep = records[records["part"] == "sweep"]
    rows = []
    for training in SWEEP_TRAININGS:
        prefix = TRAININGS[training]
        baseline = records[records["config"] == f"{prefix}no penalty"]
        if baseline.empty or sweep[sweep["training"] == training].empty:
            continue
        rows.append(
            {
                "training": training,
                "penalty": "none",
                **{
                    f"{s:g}": _sweep_cell(baseline, with_cost=False)
                    for s in SWEEP_STRENGTHS
                },
            }
        )
        for balance in PENALTIES:
            cells = {}
            for strength in SWEEP_STRENGTHS:
                part = sweep[sweep["config"] == f"{prefix}{balance} {strength:g}"]
                cells[f"{strength:g}"] = "–" if part.empty else _sweep_cell(part)
            if set(cells.values()) != {"–"}:
                rows.append({"training": training, "penalty": balance, **cells})
    return pd.DataFrame(rows)


def _sweep_cell(part, with_cost=True):
    ok = part[~part["error"].astype(bool)]
    if ok.empty:
        return "failed"
    text = f"{ok['test_ratio'].mean():.2f} ({ok['test_dead'].max():.0f})"
    if with_cost:
        text += f" {ok['accuracy_cost'].mean():+.3f}"
    return text


def plot_sweep(records, path):
    """Mean test max/mean load against the strength (log axis), a panel per
    training mode, a line per penalty; no penalty and the goal as levels."""
    sweep = records[(records["part"] == "sweep") & ~records["error"].astype(bool)]
    trainings = [t for t in SWEEP_TRAININGS if (sweep["training"] == t).any()]
    figure, axes = plt.subplots(
        1, len(trainings), figsize=(5.5 * len(trainings), 4), squeeze=False
    )
    for axis, training in zip(axes[0], trainings):
        prefix = TRAININGS[training]
        baseline = records[records["config"] == f"{prefix}no penalty"]
        for balance, marker in zip(PENALTIES, "osd"):
            part = sweep[
                (sweep["training"] == training)
                & sweep["config"].str.startswith(f"{prefix}{balance} ")
            ]
            if part.empty:
                continue
            means = part.groupby("balance_strength")["test_ratio"].mean()
            axis.plot(means.index, means.to_numpy(), marker=marker, label=balance)
        if not baseline.empty:
            axis.axhline(
                baseline["test_ratio"].mean(), color="grey", ls="--", label="no penalty"
            )
        axis.axhline(GOAL_RATIO, color="green", ls=":", label=f"goal {GOAL_RATIO}")
        axis.axhline(
            N_EXPERTS, color="red", ls=":", lw=1, label="collapse (all to one)"
        )
        axis.set_xscale("log")
        axis.set_ylim(0.9, N_EXPERTS + 0.3)
        axis.set_xlabel("balance_strength")
        axis.set_ylabel("test max/mean top-choice load")
        axis.set_title(f'training="{training}"')
        axis.legend(fontsize=8)
    figure.suptitle(
        f"{N_EXPERTS} tree clones, top_k=1, {REAL_SET}: mean over the splits"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# -- part 2: regime recovery -------------------------------------------------


def regime_sets(max_rows=None):
    """(name, X, y, true regime, expert, estimator class) of each synthetic
    regime set of the registry (:func:`benchmarks.datasets.regimes` gives
    back the ``regime`` column that :func:`benchmarks.datasets.load` drops).
    """
    experts = {"regression": LinearRegression(), "binary": LINEAR}
    for name, entry in datasets.REGISTRY.items():
        if entry.group != "regimes":
            continue
        X, y, _ = datasets.load(name, max_rows=max_rows)
        regime = datasets.regimes(name, max_rows=max_rows)
        estimator = MoERegressor if entry.task == "regression" else MoEClassifier
        yield name, X, y, regime, experts[entry.task], estimator


def regime_configs(quick):
    """(label, parameters) of each mixture of three linear experts."""
    configs = [
        ("top-1, EM", {"top_k": 1}),
        ("dense, EM", {"top_k": None}),
    ]
    if not quick:
        # Dense EM is still moving at the default 20 iterations on some seeds.
        configs.append(("dense, EM, max_iter=100", {"top_k": None, "max_iter": 100}))
    configs += [
        ("top-1, backprop", {"top_k": 1, "training": "backprop"}),
        ("dense, backprop", {"top_k": None, "training": "backprop"}),
    ]
    if not quick:
        # A restart that lands in a poor optimum has the higher training
        # objective: n_init keeps the lowest (no held-out data is used).
        configs += [
            (
                "top-1, backprop, n_init=5",
                {"top_k": 1, "training": "backprop", "n_init": 5},
            ),
            (
                "dense, backprop, n_init=5",
                {"top_k": None, "training": "backprop", "n_init": 5},
            ),
        ]
    return configs


def run_regimes(sizes, log):
    """Part 2: ARI of the test rows' top expert against the true regime."""
    records = []
    for name, X, y, regime, expert, estimator in regime_sets(sizes.rows):
        for seed in sizes.seeds:
            train, test = train_test_split(
                np.arange(len(y)), test_size=0.25, stratify=regime, random_state=seed
            )
            X_train, X_test = preprocessing.transform_split(X, train, test)
            for label, params in regime_configs(sizes.quick)[: sizes.configs]:
                moe = estimator(expert, n_experts=3, random_state=seed, **params)
                seconds, error, warned = fit_and_time(moe, X_train, y[train])
                record = {"part": "regimes", "set": name, "config": label}
                record |= {"seed": seed, "fit_s": seconds, "error": error}
                record["warnings"] = warned
                if not error:
                    top = np.argmax(moe.gate_proba(X_test), axis=1)
                    record["ari"] = adjusted_rand_score(regime[test], top)
                    # R² (regression) or accuracy (classification)
                    record["score"] = moe.score(X_test, y[test])
                    record["n_iter"] = moe.n_iter_
                    record["converged"] = moe.converged_
                records.append(record)
                log(
                    f"[regimes] {name} seed {seed} {label:24s} "
                    + (
                        f"ERROR {error[:90]}"
                        if error
                        else f"ARI {record['ari']:.3f} score {record['score']:.3f} "
                        f"iters {moe.n_iter_} {seconds:.1f}s"
                    )
                )
    return pd.DataFrame(records)


def regimes_table(records):
    rows = []
    for (name, label), part in records.groupby(["set", "config"], sort=False):
        failed = part["error"].astype(bool)
        ok = part[~failed]
        ari = ok["ari"] if "ari" in ok else pd.Series(dtype=float)
        rows.append(
            {
                "set": name,
                "configuration": label,
                "ARI": mean_sd(ari),
                "min ARI": "–" if ari.empty else f"{ari.min():.3f}",
                "seeds >= 0.9": "–"
                if ari.empty
                else f"{int((ari >= GOAL_ARI).sum())}/{len(part)}",
                "test score": mean_sd(ok.get("score", pd.Series(dtype=float))),
                "iters": "–" if ok.empty else f"{ok['n_iter'].mean():.1f}",
                "converged": "–"
                if ok.empty
                else f"{int(ok['converged'].sum())}/{len(ok)}",
                "fit s": mean_sd(part["fit_s"], "{:.2f}"),
                "goal": "yes" if not failed.any() and ari.mean() >= GOAL_ARI else "no",
                "error": first_error(part["error"]),
            }
        )
    return pd.DataFrame(rows)


# -- part 3: shared expert ---------------------------------------------------


#: (mixture with a shared expert, the same without it, the shared expert alone)
SHARED_COMPARISONS = [
    ("8 trees, top-1, + shared logistic", "8 trees, top-1", "logistic alone"),
    ("4 logistic, top-1, + shared tree", "4 logistic, top-1", "tree alone"),
]


def shared_configs():
    """(label, model): the two mixtures with and without a shared expert, and
    each expert alone.

    Routed trees with a shared linear model: the linear model carries the
    global trend everywhere and the trees specialise where it falls short.
    And the converse, routed linear experts with a shared tree, a classic
    mixture of linear experts with a non-linear backbone.
    """
    # A shared expert is an option of the in-sample algorithms: every mixture
    # here is trained by EM, so that each pair differs by the shared expert.
    em = {"top_k": 1, "training": "em"}
    return [
        ("8 trees, top-1", MoEClassifier(TREE, n_experts=8, **em)),
        (
            "8 trees, top-1, + shared logistic",
            MoEClassifier(TREE, n_experts=8, shared_expert=LINEAR, **em),
        ),
        ("4 logistic, top-1", MoEClassifier(LINEAR, n_experts=4, **em)),
        (
            "4 logistic, top-1, + shared tree",
            MoEClassifier(LINEAR, n_experts=4, shared_expert=TREE, **em),
        ),
        ("logistic alone", LINEAR),
        ("tree alone", TREE),
    ]


def run_shared(sizes, log):
    """Part 3: held-out scores of each configuration on the real set."""
    records = []
    for split, (X_train, X_test, y_train, y_test) in enumerate(
        real_splits(sizes.splits, sizes.repeats, sizes.rows)
    ):
        for label, template in shared_configs():
            model = clone(template)
            if "random_state" in model.get_params(deep=False):
                model.set_params(random_state=SEED)
            seconds, error, warned = fit_and_time(model, X_train, y_train)
            record = {"part": "shared", "config": label, "split": split}
            record |= {"fit_s": seconds, "error": error, "warnings": warned}
            if not error:
                record |= classification_scores(y_test, model.predict_proba(X_test))
                if getattr(model, "shared_expert_", None) is not None:
                    # mean routing weight of the shared expert on test rows
                    record["shared_weight"] = model.gate_proba(X_test)[:, -1].mean()
            records.append(record)
            log(
                f"[shared] split {split} {label:34s} "
                + (
                    f"ERROR {error[:90]}"
                    if error
                    else f"acc {record['accuracy']:.4f} "
                    f"log-loss {record['log_loss']:.4f} {seconds:.1f}s"
                )
            )
    return pd.DataFrame(records)


def shared_table(records):
    rows = []
    for label, part in records.groupby("config", sort=False):
        ok = part[~part["error"].astype(bool)]
        weight = ok["shared_weight"] if "shared_weight" in ok else pd.Series()
        rows.append(
            {
                "configuration": label,
                "accuracy": mean_sd(ok["accuracy"], "{:.4f}"),
                "log-loss": mean_sd(ok["log_loss"], "{:.4f}"),
                "ROC-AUC": mean_sd(ok["roc_auc"], "{:.4f}"),
                "shared expert's mean weight": mean_sd(weight, "{:.2f}"),
                "fit s": mean_sd(part["fit_s"], "{:.2f}"),
                "error": first_error(part["error"]),
            }
        )
    return pd.DataFrame(rows)


def shared_effects(records):
    """Paired differences, split by split: the mixture with its shared expert
    against the same mixture without, and against the shared expert alone
    (accuracy: positive is better; log-loss: negative is better)."""
    by_config = {
        label: part.set_index("split")
        for label, part in records[~records["error"].astype(bool)].groupby("config")
    }
    rows = []
    for with_shared, without, alone in SHARED_COMPARISONS:
        if with_shared not in by_config:
            continue
        mixture = by_config[with_shared]
        for reference in (without, alone):
            if reference not in by_config:
                continue
            other = by_config[reference]
            gain = mixture["accuracy"] - other["accuracy"]
            change = mixture["log_loss"] - other["log_loss"]
            rows.append(
                {
                    "comparison": f"{with_shared} vs {reference}",
                    "accuracy gain": mean_sd(gain, "{:+.4f}"),
                    "log-loss change": mean_sd(change, "{:+.4f}"),
                    "splits where accuracy and log-loss both better": (
                        f"{int(((gain > 0) & (change < 0)).sum())}/{len(gain)}"
                    ),
                }
            )
    return pd.DataFrame(rows)


def goal_line(table, what):
    """Which rows of a table meet their goal, as one sentence."""
    met = table.loc[table["goal"] == "yes"]
    names = [" / ".join(str(v) for v in row) for row in met[what].to_numpy()]
    return "Configurations meeting the goal: " + ("; ".join(names) or "none") + "."


# -- the report --------------------------------------------------------------


def markdown_table(frame):
    """A table without its error column when nothing failed."""
    return md_table(frame, drop_empty_error=True)


def write_summary(out, head, tables, protocol_notes, setups):
    balance, sweep, regimes, shared, effects = tables
    per_setup = []
    for setup, table in zip(setups, balance):
        per_setup += [
            f"### {setup.n_experts} tree clones, top_k=1, on {setup.name} "
            f"({setup.repeats} x {setup.splits}-fold)",
            markdown_table(table),
            goal_line(table, ["configuration"]),
        ]
    text = "\n\n".join(
        [
            head,
            "## 1. Load balance: tree clones, top_k=1",
            protocol_notes["balance"],
            *per_setup,
            "### Strength sweep",
            protocol_notes["sweep"],
            markdown_table(sweep),
            "![max/mean load against strength](strength_sweep.png)",
            "## 2. Regime recovery on the synthetic regime sets",
            protocol_notes["regimes"],
            markdown_table(regimes),
            goal_line(regimes, ["set", "configuration"]),
            "## 3. Shared expert on " + REAL_SET,
            protocol_notes["shared"],
            markdown_table(shared),
            "Paired over the splits:",
            markdown_table(effects),
        ]
    )
    (out / "summary.md").write_text(text + "\n")


#: Sizes of each mode: splits x repeats of the real set, seeds of the regime
#: sets, row cap (None: every row), configurations kept (None: all).
MODES = {
    "full": dict(splits=5, repeats=2, seeds=(0, 1, 2, 3, 4), rows=None, configs=None),
    "quick": dict(splits=3, repeats=1, seeds=(0, 1), rows=None, configs=None),
    "smoke": dict(splits=2, repeats=1, seeds=(0,), rows=400, configs=2),
}

#: Splits, repeats and row cap of part 1's larger set per mode (the real
#: set takes the mode's own). 1 x 5 folds in the full run: each fit costs
#: about ten times one on credit_data.
LARGE_SIZES = {
    "full": dict(splits=5, repeats=1, rows=None),
    "quick": dict(splits=3, repeats=1, rows=None),
    "smoke": dict(splits=2, repeats=1, rows=800),
}


def setups(mode):
    """Part 1's setups of ``mode``: the real set at the mode's sizes, then
    the larger set at :data:`LARGE_SIZES`."""
    sizes = MODES[mode]
    real = {key: sizes[key] for key in ("splits", "repeats", "rows")}
    return [
        argparse.Namespace(name=REAL_SET, n_experts=N_EXPERTS, **real),
        argparse.Namespace(
            name=LARGE_SET, n_experts=N_LARGE_EXPERTS, **LARGE_SIZES[mode]
        ),
    ]


def parser():
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.studies.balancing",
        description=__doc__.splitlines()[0],
    )
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--quick", action="store_true", help="fewer splits, seeds and configurations"
    )
    mode.add_argument(
        "--smoke",
        action="store_true",
        help="tiny (400 rows, 2 splits, 1 seed, 2 configurations a part): a test",
    )
    p.add_argument("--out", default=str(OUT), help="report folder")
    p.add_argument(
        "--n-jobs",
        type=int,
        default=1,
        help="part 1's fits run this many at a time (the records do not change)",
    )
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    sizes = argparse.Namespace(
        quick=mode != "full", n_jobs=args.n_jobs, setups=setups(mode), **MODES[mode]
    )

    def run_parts():
        # torch too: backprop training uses it, and the machine is shared
        with single_threaded(torch=True):
            configs = load_balance_configs(sizes.quick)[: sizes.configs]
            small = sizes.setups[0]
            balance = [
                run_load_balance(sizes, log, configs, setup) for setup in sizes.setups
            ]
            sweep = run_load_balance(
                sizes, log, sweep_configs(mode == "smoke"), small, part="sweep"
            )
            balance = with_costs(pd.concat([*balance, sweep], ignore_index=True))
            balance_summary = [
                load_balance_table(
                    balance[
                        (balance["part"] == "load_balance")
                        & (balance["setup"] == setup.name)
                    ]
                )
                for setup in sizes.setups
            ]
            for table in balance_summary:
                log("\n" + markdown_table(table) + "\n")
            sweep_summary = sweep_table(balance[balance["setup"] == small.name])
            log(markdown_table(sweep_summary) + "\n")
            plot_sweep(
                balance[balance["setup"] == small.name], out / "strength_sweep.png"
            )
            regimes = run_regimes(sizes, log)
            regimes_summary = regimes_table(regimes)
            log("\n" + markdown_table(regimes_summary) + "\n")
            shared = run_shared(sizes, log)
            shared_summary, effects = shared_table(shared), shared_effects(shared)
            log("\n" + markdown_table(shared_summary) + "\n")
            log(markdown_table(effects) + "\n")
        return (
            balance,
            regimes,
            shared,
            (
                balance_summary,
                sweep_summary,
                regimes_summary,
                shared_summary,
                effects,
            ),
        )

    (balance, regimes, shared, tables), seconds = timed(run_parts)
    n_splits, n_repeats, seeds = sizes.splits, sizes.repeats, sizes.seeds
    records = pd.concat([balance, regimes, shared], ignore_index=True)
    records.to_csv(out / "records.csv", index=False)
    minutes = seconds / 60
    splits = f"{n_repeats} x stratified {n_splits}-fold (seed {SEED})"
    if sizes.rows:
        splits += f", at most {sizes.rows} rows a set"
    tree = repr(TREE)  # scikit-learn shows the parameters that differ from default
    notes = {
        "balance": (
            f"`MoEClassifier({tree}, n_experts=E, top_k=1, random_state={SEED})` "
            f"and the options named: E={N_EXPERTS} on {REAL_SET} ({splits}); "
            f"E={N_LARGE_EXPERTS} on {LARGE_SET} (DAAG's US car crashes, "
            f"{LARGE_ROWS:,} of its 26,217 rows, stratified; target: the "
            "occupant died; `injSeverity`, which leaks it, `caseid` and the "
            "survey `weight` dropped); shared preprocessing fitted on "
            "each training part. *test max/mean*: the largest share of test "
            "rows whose top choice (argmax of `gate_proba`) is one expert, "
            "divided by 1/E; *train max/mean* the same from `top_choice_load_` "
            "(training rows); *soft gate max/mean* the same for the gate's mean "
            "softmax weight before top-1 truncation (what the penalties act "
            "on). *dead*: experts that are the top choice of no test row / "
            "`n_dead_experts_`, the largest over the splits. *accuracy cost*: "
            "the accuracy of no penalty under the same training mode minus "
            "this accuracy, on the same split (positive is worse). A penalty's "
            "strength is the default, `balance_strength=10`, unless named. "
            "*kept iter*: the EM iteration whose fit is "
            "kept (lowest training objective, `objective_curve_`: the loss plus "
            "the gate's penalties, routed within capacity with capacity_factor). "
            f"**Goal**: mean test max/mean <= "
            f"{GOAL_RATIO}, no dead expert on any split, mean accuracy cost "
            f"<= {GOAL_ACCURACY_COST} (one percentage point, absolute). Values "
            "are mean ± sd over the splits."
        ),
        "sweep": (
            "Each penalty at strengths "
            f"{', '.join(f'{x:g}' for x in SWEEP_STRENGTHS)} under training "
            f"{' and '.join(SWEEP_TRAININGS)}, on the same splits; each cell: "
            "mean test max/mean (the most dead test experts on a split), and "
            "the mean accuracy cost against no penalty under the same "
            "training. The plot shows the first number against the strength. "
            "A collapse (one expert taking every row) would read 8."
        ),
        "regimes": (
            "`MoERegressor(LinearRegression())` / `MoEClassifier("
            "LogisticRegression(max_iter=1000))`, `n_experts=3`, "
            f"`random_state=seed`; one stratified 75/25 split per seed "
            f"(seeds {', '.join(map(str, seeds))}), the same seed for the split "
            "and the mixture. *ARI*: adjusted Rand index of the test rows' top "
            "expert (argmax of `gate_proba`) against their true regime (the "
            "registry's generator, which `datasets.load` drops). *test score*: "
            f"R² or accuracy. **Goal**: mean ARI >= {GOAL_ARI}."
        ),
        "shared": (
            f"The same {splits} splits of {REAL_SET} as part 1; every model "
            f"`random_state={SEED}`. The tree is `{tree}`, the linear model "
            "`LogisticRegression(max_iter=1000)`. *shared expert's mean "
            "weight*: its mean routing weight (last column of `gate_proba`) on "
            "the test rows."
        ),
    }
    protocol = (
        f"load balance and shared expert on {REAL_SET} ({splits}); regimes on "
        f"the two synthetic sets, seeds {list(seeds)}; single-threaded (BLAS "
        f"and torch) on a 2-core CPU shared with other jobs, so fit times are "
        f"noisy; took {minutes:.1f} min"
    )
    head = header(
        "skmoe balancing, regime recovery, shared expert",
        command("benchmarks.studies.balancing", argv),
        protocol,
    )
    write_summary(out, head, tables, notes, sizes.setups)
    print(
        f"wrote {out / 'summary.md'}, records.csv and strength_sweep.png "
        f"({minutes:.1f} min)"
    )


if __name__ == "__main__":
    main()

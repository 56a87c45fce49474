"""Load balancing, regime recovery and the shared expert, on held-out rows.

Three parts, each printed as it runs and written to
``benchmarks/results/balancing/`` (``summary.md``, ``records.csv``):

1. **Load balance.** 8 clones of one decision tree, ``top_k=1``, on a real
   set (``credit_data``: 4,454 rows, binary), with no penalty, each balancing
   penalty at a few strengths, training-time capacity, the routing bias
   (``balance="bias"``) under each training mode, and backprop training of
   the gate (with and without noisy top-k gating). Per configuration: max
   load / mean load of the experts as top choice on the test rows (from
   ``gate_proba``) and on the training rows (``top_choice_load_``), dead
   experts, accuracy and log-loss, and what they cost against no penalty on
   the same split. Goal: ratio <= 1.25 with no dead expert at an accuracy
   cost of at most 0.01 (absolute).
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

import numpy as np
import pandas as pd
from sklearn.base import clone
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


def real_splits(n_splits, n_repeats, max_rows=None):
    """Preprocessed (X_train, X_test, y_train, y_test) of each held-out split
    of the real set: repeated stratified K-fold with a fixed seed, the shared
    preprocessing fitted on each training part."""
    X, y, _ = datasets.load(REAL_SET, max_rows=max_rows)
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


def load_balance_configs(quick):
    """(label, MoEClassifier parameters) of each configuration compared."""
    strengths = (0.1, 1.0) if quick else (0.01, 0.1, 1.0)
    configs = [("no penalty", {})]
    for balance in ("switch", "importance", "entropy"):
        for strength in strengths:
            configs.append(
                (
                    f"{balance} {strength:g}",
                    {"balance": balance, "balance_strength": strength},
                )
            )
    for factor in (1.0,) if quick else (1.0, 1.25):
        configs.append((f"capacity {factor:g}", {"capacity_factor": factor}))
    # auxiliary-loss-free: a routing bias on the top-k choice, at its default
    # rate, under each training mode (EM against its own unbalanced fit too)
    em = {"training": "em"}
    configs += [("bias", {"balance": "bias"}), ("em, no penalty", em)]
    configs.append(("em, bias", {**em, "balance": "bias"}))
    backprop = {"training": "backprop"}
    configs += [
        ("backprop, no penalty", backprop),
        ("backprop, bias", {**backprop, "balance": "bias"}),
        (
            "backprop, importance 0.1",
            {**backprop, "balance": "importance", "balance_strength": 0.1},
        ),
        (
            "backprop, noisy, importance 0.1",
            {
                **backprop,
                "noisy_gating": True,
                "balance": "importance",
                "balance_strength": 0.1,
            },
        ),
    ]
    return configs


def load_balance_record(moe, X_test, y_test):
    """Held-out routing and scores of one fitted top-1 mixture of trees."""
    loads = test_top_choice_loads(moe, X_test, N_EXPERTS)
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


def run_load_balance(sizes, log):
    """Part 1: every configuration on every split; one record each."""
    records = []
    configs = load_balance_configs(sizes.quick)[: sizes.configs]
    for split, (X_train, X_test, y_train, y_test) in enumerate(
        real_splits(sizes.splits, sizes.repeats, sizes.rows)
    ):
        for label, params in configs:
            moe = MoEClassifier(
                TREE, n_experts=N_EXPERTS, top_k=1, random_state=SEED, **params
            )
            seconds, error, warned = fit_and_time(moe, X_train, y_train)
            record = {"part": "load_balance", "config": label, "split": split}
            record |= {"fit_s": seconds, "error": error, "warnings": warned}
            if not error:
                record |= load_balance_record(moe, X_test, y_test)
            records.append(record)
            log(
                f"[load balance] split {split} {label:32s} "
                + (
                    f"ERROR {error[:90]}"
                    if error
                    else f"test max/mean {record['test_ratio']:.2f} "
                    f"dead {record['test_dead']} acc {record['accuracy']:.4f} "
                    f"kept iter {record['kept_iter']}/{record['n_iter']} "
                    f"{seconds:.1f}s"
                )
            )
    return pd.DataFrame(records)


def with_costs(records):
    """Add each record's accuracy and log-loss change against the no-penalty
    mixture on the same split (positive accuracy cost: worse)."""
    baseline = records[records["config"] == "no penalty"].set_index("split")
    records = records.copy()
    records["accuracy_cost"] = (
        records["split"].map(baseline["accuracy"]) - records["accuracy"]
    )
    records["log_loss_change"] = records["log_loss"] - records["split"].map(
        baseline["log_loss"]
    )
    return records


def load_balance_table(records):
    """One row per configuration: mean ± sd over the splits, and the goal."""
    rows = []
    for label, part in with_costs(records).groupby("config", sort=False):
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
    return [
        ("8 trees, top-1", MoEClassifier(TREE, n_experts=8, top_k=1)),
        (
            "8 trees, top-1, + shared logistic",
            MoEClassifier(TREE, n_experts=8, top_k=1, shared_expert=LINEAR),
        ),
        ("4 logistic, top-1", MoEClassifier(LINEAR, n_experts=4, top_k=1)),
        (
            "4 logistic, top-1, + shared tree",
            MoEClassifier(LINEAR, n_experts=4, top_k=1, shared_expert=TREE),
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


def write_summary(out, head, tables, protocol_notes):
    balance, regimes, shared, effects = tables
    text = "\n\n".join(
        [
            head,
            "## 1. Load balance: 8 tree clones, top_k=1, on " + REAL_SET,
            protocol_notes["balance"],
            markdown_table(balance),
            goal_line(balance, ["configuration"]),
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
    return p


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser().parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    mode = "smoke" if args.smoke else "quick" if args.quick else "full"
    sizes = argparse.Namespace(quick=mode != "full", **MODES[mode])

    def run_parts():
        # torch too: backprop training uses it, and the machine is shared
        with single_threaded(torch=True):
            balance = run_load_balance(sizes, log)
            balance_summary = load_balance_table(balance)
            log("\n" + markdown_table(balance_summary) + "\n")
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
                regimes_summary,
                shared_summary,
                effects,
            ),
        )

    (balance, regimes, shared, tables), seconds = timed(run_parts)
    n_splits, n_repeats, seeds = sizes.splits, sizes.repeats, sizes.seeds
    records = pd.concat([with_costs(balance), regimes, shared], ignore_index=True)
    records.to_csv(out / "records.csv", index=False)
    minutes = seconds / 60
    splits = f"{n_repeats} x stratified {n_splits}-fold (seed {SEED})"
    if sizes.rows:
        splits += f", at most {sizes.rows} rows a set"
    tree = repr(TREE)  # scikit-learn shows the parameters that differ from default
    notes = {
        "balance": (
            f"`MoEClassifier({tree}, n_experts=8, top_k=1, random_state={SEED})` "
            f"and the options named; {splits}, shared preprocessing fitted on "
            "each training part. *test max/mean*: the largest share of test "
            "rows whose top choice (argmax of `gate_proba`) is one expert, "
            "divided by 1/8; *train max/mean* the same from `top_choice_load_` "
            "(training rows); *soft gate max/mean* the same for the gate's mean "
            "softmax weight before top-1 truncation (what the penalties act "
            "on). *dead*: experts that are the top choice of no test row / "
            "`n_dead_experts_`, the largest over the splits. *accuracy cost*: "
            "no-penalty accuracy minus this accuracy on the same split "
            "(positive is worse). *kept iter*: the EM iteration whose fit is "
            "kept (lowest training objective, `objective_curve_`: the loss plus "
            "the gate's penalties, routed within capacity with capacity_factor). "
            f"**Goal**: mean test max/mean <= "
            f"{GOAL_RATIO}, no dead expert on any split, mean accuracy cost "
            f"<= {GOAL_ACCURACY_COST} (one percentage point, absolute). Values "
            "are mean ± sd over the splits."
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
    write_summary(out, head, tables, notes)
    print(f"wrote {out / 'summary.md'} and records.csv ({minutes:.1f} min)")


if __name__ == "__main__":
    main()

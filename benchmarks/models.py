"""The model zoo: skmoe configurations, the baselines, and each single expert.

Every model is built for a task (``"binary"``, ``"multiclass"`` or
``"regression"``) by :func:`build`, single-threaded (``n_jobs=1``) and
seeded (``random_state=0``, the experts of every pool too), so that timings
and scores compare like with like on a shared machine.

The MoE's default expert pool (:func:`expert_pool`) is a heterogeneous set
of cheap to moderate experts: a linear model, a depth-limited tree and a
small random forest. Stacking, voting and ensemble selection (``caruana``)
get exactly the same pool, and each expert is also run alone, so that "the
MoE against the best expert it was given" can be read off the results.
HistGradientBoosting is kept out of that pool: in scikit-learn 1.9 its
weighted binning makes every weighted fit slow on small data.

The strong pool (:func:`strong_pool`: linear, a random forest and
HistGradientBoosting, all at their defaults) is the comparison a
practitioner makes: ``moe_strong``, ``stacking_strong`` and
``caruana_strong`` over it, against LightGBM; its experts alone are the
``expert_linear``, ``random_forest`` and ``hgb`` entries.

``moe_clones`` mixes 6 clones of a depth-4 tree with top-1 routing, against
that tree alone (``expert_tree4``).

Each entry's :attr:`Model.pool` names the zoo entries that are its experts
alone, so that the report compares like with like. The MoE entries leave
``training`` at the estimators' default: the benchmark measures the
default.
"""

import importlib.util
from dataclasses import dataclass

from sklearn.ensemble import (
    BaggingClassifier,
    BaggingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    StackingClassifier,
    StackingRegressor,
    VotingClassifier,
    VotingRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from skmoe import MoEClassifier, MoERegressor

from .selection import EnsembleSelectionClassifier, EnsembleSelectionRegressor

SEED = 0
#: The zoo entries that are the default pool's experts alone.
DEFAULT_POOL = ("expert_linear", "expert_tree", "expert_forest")
#: The zoo entries that are the strong pool's experts alone.
STRONG_POOL = ("expert_linear", "random_forest", "hgb")
#: The zoo entry that is the clone MoE's expert alone.
CLONE_POOL = ("expert_tree4",)


def _is_classification(task):
    return task != "regression"


def expert_pool(task):
    """The MoE's experts, as ``(name, estimator)`` pairs.

    Parameters
    ----------
    task : {"binary", "multiclass", "regression"}

    Returns
    -------
    list of (str, estimator)
        ``linear`` (logistic regression or ridge, on the already standardised
        features), ``tree`` (depth 6, at least 10 rows a leaf) and
        ``forest`` (30 trees, at least 5 rows a leaf).
    """
    if _is_classification(task):
        return [
            ("linear", _linear(task)),
            ("tree", DecisionTreeClassifier(max_depth=6, min_samples_leaf=10)),
            (
                "forest",
                RandomForestClassifier(n_estimators=30, min_samples_leaf=5, n_jobs=1),
            ),
        ]
    return [
        ("linear", _linear(task)),
        ("tree", DecisionTreeRegressor(max_depth=6, min_samples_leaf=10)),
        (
            "forest",
            RandomForestRegressor(
                n_estimators=30, min_samples_leaf=5, max_features=0.5, n_jobs=1
            ),
        ),
    ]


def _linear(task):
    if _is_classification(task):
        return LogisticRegression(max_iter=1000)
    return Ridge(alpha=1.0)


def strong_pool(task):
    """The strong pool, as ``(name, estimator)`` pairs: ``linear`` (as in
    :func:`expert_pool`), ``forest`` (a default random forest, 100 trees)
    and ``hgb`` (default HistGradientBoosting)."""
    return [
        ("linear", _linear(task)),
        ("forest", _random_forest(task)),
        ("hgb", _hgb(task)),
    ]


def _random_forest(task):
    cls = _pick(task, RandomForestClassifier, RandomForestRegressor)
    return cls(random_state=SEED, n_jobs=1)


def _hgb(task):
    cls = _pick(task, HistGradientBoostingClassifier, HistGradientBoostingRegressor)
    return cls(random_state=SEED)


def _tree4(task):
    return _pick(task, DecisionTreeClassifier, DecisionTreeRegressor)(max_depth=4)


def _moe(task, pool=expert_pool, **params):
    cls = MoEClassifier if _is_classification(task) else MoERegressor
    return cls(pool(task), random_state=SEED, **params)


def _moe_clones(task):
    cls = MoEClassifier if _is_classification(task) else MoERegressor
    return cls(_tree4(task), n_experts=6, top_k=1, random_state=SEED)


def _folds(task):
    """The 5 folds of the combiners' out-of-fold predictions: shuffled.

    ``cv=5`` would split the training rows in the order the set lists them,
    and several sets are ordered by something tied to the target (diamonds'
    row number has a rank correlation of -0.40 with the price): contiguous
    folds then score each expert out of its training range, and the
    combiner learns weights for extrapolation. On diamonds (r0f0) Stacking
    reached an RMSE of 999 with ``cv=5`` and 652 with these folds, against
    659 for the forest alone. The MoE's own folds are shuffled too.
    """
    splitter = StratifiedKFold if _is_classification(task) else KFold
    return splitter(5, shuffle=True, random_state=SEED)


def _stacking(pool):
    def make(task):
        cls = _pick(task, StackingClassifier, StackingRegressor)
        return cls(pool(task), cv=_folds(task), n_jobs=1)

    return make


def _caruana(pool):
    def make(task):
        cls = _pick(task, EnsembleSelectionClassifier, EnsembleSelectionRegressor)
        return cls(
            pool(task), n_rounds=25, cv=_folds(task), n_jobs=1, random_state=SEED
        )

    return make


def _moe_linear(task):
    if _is_classification(task):
        expert = LogisticRegression(max_iter=1000)
        return MoEClassifier(expert, n_experts=4, random_state=SEED)
    return MoERegressor(Ridge(alpha=1.0), n_experts=4, random_state=SEED)


def _pick(task, classifier, regressor):
    return classifier if _is_classification(task) else regressor


def _expert(name):
    def make(task):
        return dict(expert_pool(task))[name]

    return make


def _lightgbm(task):
    import lightgbm

    cls = _pick(task, lightgbm.LGBMClassifier, lightgbm.LGBMRegressor)
    return cls(n_jobs=1, random_state=SEED, verbose=-1)


def _xgboost(task):
    import xgboost

    cls = _pick(task, xgboost.XGBClassifier, xgboost.XGBRegressor)
    return cls(n_jobs=1, random_state=SEED)


@dataclass(frozen=True)
class Model:
    """One entry of the zoo.

    Parameters
    ----------
    name : str
        Short name (command line, cache, CSV).
    label : str
        Name in tables and plots.
    kind : {"skmoe", "baseline", "expert"}
        What it is there for.
    make : callable
        ``make(task)`` returns the unfitted estimator.
    requires : str or None
        Package it needs; the model is skipped when it is not installed.
    pool : tuple of str
        For a combiner of experts (a MoE, Stacking, Voting, selection): the
        zoo entries that are its experts alone; empty otherwise.
    """

    name: str
    label: str
    kind: str
    make: object
    requires: str = None
    pool: tuple = ()

    def available(self):
        """Whether the package this model needs is installed."""
        return self.requires is None or bool(importlib.util.find_spec(self.requires))


ZOO = {
    m.name: m
    for m in [
        Model("moe", "MoE", "skmoe", _moe, pool=DEFAULT_POOL),
        Model(
            "moe_top1",
            "MoE top_k=1",
            "skmoe",
            lambda t: _moe(t, top_k=1),
            pool=DEFAULT_POOL,
        ),
        Model(
            "moe_specialise",
            "MoE specialise=3",
            "skmoe",
            lambda t: _moe(t, specialise=3),
            pool=DEFAULT_POOL,
        ),
        Model(
            "moe_em",
            "MoE in-sample EM",
            "skmoe",
            lambda t: _moe(t, training="em"),
            pool=DEFAULT_POOL,
        ),
        Model("moe_linear", "MoE 4 linear", "skmoe", _moe_linear),
        Model(
            "moe_strong",
            "MoE strong pool",
            "skmoe",
            lambda t: _moe(t, strong_pool),
            pool=STRONG_POOL,
        ),
        Model("moe_clones", "MoE 6 trees top-1", "skmoe", _moe_clones, pool=CLONE_POOL),
        Model("hgb", "HistGradientBoosting", "baseline", _hgb),
        Model("lightgbm", "LightGBM", "baseline", _lightgbm, requires="lightgbm"),
        Model("xgboost", "XGBoost", "baseline", _xgboost, requires="xgboost"),
        Model(
            "bagging",
            "Bagging (trees)",
            "baseline",
            lambda t: _pick(t, BaggingClassifier, BaggingRegressor)(
                random_state=SEED, n_jobs=1
            ),
        ),
        Model("random_forest", "RandomForest", "baseline", _random_forest),
        Model(
            "stacking",
            "Stacking",
            "baseline",
            _stacking(expert_pool),
            pool=DEFAULT_POOL,
        ),
        Model(
            "voting",
            "Voting",
            "baseline",
            lambda t: (
                VotingClassifier(expert_pool(t), voting="soft", n_jobs=1)
                if _is_classification(t)
                else VotingRegressor(expert_pool(t), n_jobs=1)
            ),
            pool=DEFAULT_POOL,
        ),
        Model(
            "caruana",
            "Ensemble selection",
            "baseline",
            _caruana(expert_pool),
            pool=DEFAULT_POOL,
        ),
        Model(
            "stacking_strong",
            "Stacking strong pool",
            "baseline",
            _stacking(strong_pool),
            pool=STRONG_POOL,
        ),
        Model(
            "caruana_strong",
            "Ensemble selection strong pool",
            "baseline",
            _caruana(strong_pool),
            pool=STRONG_POOL,
        ),
        *(
            Model(f"expert_{name}", f"expert: {name}", "expert", _expert(name))
            for name in ("linear", "tree", "forest")
        ),
        Model("expert_tree4", "expert: tree depth 4", "expert", _tree4),
    ]
}

#: The models of ``--quick``: the whole zoo (the quick run saves on sets,
#: rows and repeats, not on models).
QUICK_MODELS = tuple(ZOO)


def build(name, task):
    """A fresh, unfitted estimator of zoo entry ``name`` for ``task``.

    Random states left at ``None`` anywhere in a model (the experts of a
    pool, a mixture's experts included) are set to :data:`SEED`, so that
    every run is repeatable and every combiner holds the very experts that
    are measured alone: the MoE against its best expert compares the
    combiner, not two seeds of a random forest. (A mixture would seed an
    unseeded expert from its own ``random_state``; with 30 trees the
    forest's seed alone moved its RMSE by up to 3% on the regimes set,
    more than the gaps the goals are about.)
    """
    estimator = ZOO[name].make(task)
    seeds = {
        key: SEED
        for key, value in estimator.get_params(deep=True).items()
        if key.endswith("random_state") and value is None
    }
    return estimator.set_params(**seeds)

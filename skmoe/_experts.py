"""The ``experts`` parameter: validation, naming, cloning and seeding.

A user gives experts either as a list of ``(name, estimator)`` pairs, as
``StackingClassifier`` takes them, or as one template estimator cloned
``n_experts`` times. Everything below turns either form into one list of
names and one list of unfitted, seeded clones.
"""

from numbers import Integral

import numpy as np
from sklearn.base import clone, is_classifier, is_regressor

_KINDS = {
    "classifier": (is_classifier, "classifiers"),
    "regressor": (is_regressor, "regressors"),
}


def resolve_experts(experts, n_experts, *, kind, owner):
    """Return ``(names, estimators)`` for the experts a user configured.

    Parameters
    ----------
    experts : list of (str, estimator) or estimator
        The ``experts`` parameter.
    n_experts : int or None
        The ``n_experts`` parameter; required with a single template.
    kind : {"classifier", "regressor"}
        What each expert must be.
    owner : estimator
        The mixture, whose ``_validate_names`` checks the names.

    Returns
    -------
    names : list of str
    estimators : list of estimator
        The experts that are not ``'drop'``, unfitted and not cloned.
    """
    if isinstance(experts, list):
        names, estimators = _resolve_named_list(experts, n_experts, owner)
    else:
        names, estimators = _resolve_template(experts, n_experts)
    for name, estimator in zip(names, estimators):
        check_expert(name, estimator, kind)
    return names, estimators


def _resolve_named_list(experts, n_experts, owner):
    if len(experts) == 0:
        raise ValueError(
            "experts is an empty list. Pass a list of (name, estimator) pairs, e.g. "
            "[('lr', LogisticRegression()), ('tree', DecisionTreeClassifier())], "
            "or one estimator together with n_experts."
        )
    for position, item in enumerate(experts):
        if not (
            isinstance(item, tuple | list)
            and len(item) == 2
            and isinstance(item[0], str)
        ):
            raise ValueError(
                f"experts[{position}] is {item!r}; each item of experts must be a "
                "(name, estimator) pair with a string name."
            )
    names = [name for name, _ in experts]
    owner._validate_names(names)
    kept = [(name, est) for name, est in experts if not _is_drop(est)]
    if not kept:
        raise ValueError(
            "All experts are 'drop'. At least one expert must be an estimator."
        )
    if n_experts is not None and n_experts != len(experts):
        raise ValueError(
            f"n_experts={n_experts} but experts lists {len(experts)} experts. "
            "Leave n_experts=None when experts is a list; it is for cloning one "
            "template estimator."
        )
    return [name for name, _ in kept], [est for _, est in kept]


def _resolve_template(template, n_experts):
    if isinstance(template, type):
        raise TypeError(
            f"experts is the class {template.__name__}; pass an instance, "
            f"e.g. experts={template.__name__}()."
        )
    if n_experts is None:
        raise ValueError(
            f"experts is a single estimator ({type(template).__name__}) but n_experts "
            "is None. Set n_experts to the number of clones to mix, e.g. n_experts=4, "
            "or pass a list of (name, estimator) pairs."
        )
    prefix = type(template).__name__.lower()
    names = [f"{prefix}_{i}" for i in range(n_experts)]
    return names, [template] * n_experts


def check_pair_parameter_names(experts, params, owner):
    """Refuse ``experts__<name>__<param>`` for experts given as pairs.

    ``experts__`` reaches the parameters of a single template; experts
    given as ``(name, estimator)`` pairs are reached by their names
    (``lr__C``), as in ``StackingClassifier``. Without this check
    ``set_params`` would fail with an AttributeError on the list.

    Parameters
    ----------
    experts : list of (str, estimator) or estimator
        The ``experts`` the parameters are set on.
    params : dict
        The keyword arguments of ``set_params``.
    owner : estimator
        The mixture, named in the message.
    """
    if not isinstance(experts, list):
        return
    prefixed = sorted(key for key in params if key.startswith("experts__"))
    if not prefixed:
        return
    key = prefixed[0]
    rest = key.removeprefix("experts__")
    names = [item[0] for item in experts if isinstance(item, tuple | list) and item]
    if rest.partition("__")[0] in names:
        use = f"use {rest!r}"
    else:
        listed = ", ".join(repr(name) for name in names)
        use = f"use '<name>__{rest}' with the name of one of them ({listed})"
    raise ValueError(
        f"Invalid parameter {key!r} for {type(owner).__name__}: experts given as "
        "(name, estimator) pairs are reached by their names, as in "
        f"StackingClassifier; {use}. experts__<param> is for a single template "
        "estimator cloned n_experts times."
    )


def _is_drop(estimator):
    return isinstance(estimator, str) and estimator == "drop"


def check_expert(name, estimator, kind):
    """Raise a clear error unless ``estimator`` can be an expert of ``kind``."""
    if isinstance(estimator, type):
        raise TypeError(
            f"Expert {name!r} is the class {estimator.__name__}; pass an instance, "
            f"e.g. {estimator.__name__}()."
        )
    if not hasattr(estimator, "fit"):
        raise TypeError(
            f"Expert {name!r} is {estimator!r}, which has no fit method; every "
            "expert must be a scikit-learn estimator (or 'drop')."
        )
    is_kind, plural = _KINDS[kind]
    if not is_kind(estimator):
        raise ValueError(
            f"Expert {name!r} ({type(estimator).__name__}) is not a {kind}; a "
            f"mixture for {plural} mixes {plural} only."
        )
    if kind == "classifier" and not hasattr(estimator, "predict_proba"):
        raise ValueError(
            f"Expert {name!r} ({type(estimator).__name__}) has no predict_proba; "
            "the mixture needs each expert's class probabilities. Wrap it as "
            f"CalibratedClassifierCV({type(estimator).__name__}(...)) to give it one."
        )


def seeded_clones(estimators, random_state):
    """Clone each expert, giving every unset ``random_state`` a fixed seed.

    Experts whose ``random_state`` (at any depth of nesting) is ``None`` would
    give different results on each refit and each run; seeding them from the
    mixture's generator makes ``random_state`` fix every result. Seeds that the
    user set are left as they are.

    Parameters
    ----------
    estimators : list of estimator
    random_state : numpy.random.RandomState

    Returns
    -------
    list of estimator
    """
    clones = []
    for estimator in estimators:
        expert = clone(estimator)
        unset = {
            key: int(random_state.randint(np.iinfo(np.int32).max))
            for key, value in sorted(expert.get_params(deep=True).items())
            if (key == "random_state" or key.endswith("__random_state"))
            and value is None
        }
        if unset:
            expert.set_params(**unset)
        clones.append(expert)
    return clones


def check_top_k(top_k, n_experts):
    """Raise a clear error when ``top_k`` asks for more experts than there are."""
    if top_k is not None and isinstance(top_k, Integral) and top_k > n_experts:
        raise ValueError(
            f"top_k={top_k} but the mixture has only {n_experts} experts (after "
            f"'drop'). Use top_k <= {n_experts}, or top_k=None to mix all experts."
        )

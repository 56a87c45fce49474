"""Every fitted attribute is in the Attributes section of its estimator's
docstring, and every attribute documented there is set by some fit.

The fitted attributes are collected from a few fits of each estimator (dense
and top-k EM, hard EM, ``cv``, a shared expert, a pandas DataFrame for
``feature_names_in_``): the public names of ``vars(est)`` that end with an
underscore, and the class's public properties ending with one (such as
``noise_variance_``). Torch configurations (``training="backprop"``) are not
fitted here; ``fused_`` is set (to None) by every fit.
"""

import inspect
import re
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from skmoe import MoEClassifier, MoERegressor

_HEADER = re.compile(r"^(\S[^\n]*)\n-{3,}$", re.MULTILINE)
_ENTRY = re.compile(r"^(\w+)(\s*:.*)?$")


def documented_attributes(cls):
    """Names in the numpydoc ``Attributes`` section of ``cls``'s docstring."""
    doc = inspect.cleandoc(cls.__doc__)
    headers = list(_HEADER.finditer(doc))
    starts = [m for m in headers if m.group(1).strip() == "Attributes"]
    assert len(starts) == 1, f"{cls.__name__} has no single Attributes section"
    start = starts[0].end()
    later = [m.start() for m in headers if m.start() > start]
    section = doc[start : later[0] if later else len(doc)]
    names = []
    for line in section.splitlines():
        # an entry starts at the section's indentation; its description is
        # indented below it
        if line and not line[0].isspace():
            match = _ENTRY.match(line.strip())
            assert match, f"{cls.__name__}: unparsed Attributes line {line!r}"
            names.append(match.group(1))
    assert len(names) == len(set(names)), f"{cls.__name__}: an entry is repeated"
    return names


def fitted_attributes(est):
    """Public names ending with ``_`` set by ``fit`` (properties included)."""
    names = {k for k in vars(est) if k.endswith("_") and not k.startswith("_")}
    for name, value in inspect.getmembers(type(est)):
        if (
            isinstance(value, property)
            and name.endswith("_")
            and not name.startswith("_")
        ):
            getattr(est, name)  # defined once fitted
            names.add(name)
    return names


def _classification():
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(120, 3))
    y = (X[:, 0] + 0.5 * np.sign(X[:, 1]) + 0.3 * rng.randn(120) > 0).astype(int)
    return X, y


def _regression():
    rng = np.random.RandomState(0)
    X = rng.uniform(-1, 1, size=(120, 2))
    y = np.where(X[:, 0] < 0, -3 * X[:, 0], 2 * X[:, 0] + 1) + 0.1 * rng.randn(120)
    return X, y


def _frame(X):
    return pd.DataFrame(X, columns=[f"x{i}" for i in range(X.shape[1])])


def _lr_tree():
    return [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier(max_depth=3))]


CONFIGS = {
    MoEClassifier: [
        ("em_frame", lambda: MoEClassifier(_lr_tree(), training="em"), True),
        ("hard_em", lambda: MoEClassifier(_lr_tree(), training="hard_em"), False),
        (
            "em_top1_shared",
            lambda: MoEClassifier(
                DecisionTreeClassifier(max_depth=2),
                n_experts=2,
                top_k=1,
                shared_expert=LogisticRegression(),
                training="em",
            ),
            False,
        ),
        ("em_cv", lambda: MoEClassifier(_lr_tree(), training="em", cv=3), False),
        ("crossfit", lambda: MoEClassifier(_lr_tree(), training="crossfit"), False),
    ],
    MoERegressor: [
        (
            "em_frame",
            lambda: MoERegressor(LinearRegression(), n_experts=2, training="em"),
            True,
        ),
        (
            "em_top1_shared",
            lambda: MoERegressor(
                DecisionTreeRegressor(max_depth=2),
                n_experts=2,
                top_k=1,
                shared_expert=LinearRegression(),
                training="em",
            ),
            False,
        ),
        (
            "crossfit_clones",
            lambda: MoERegressor(
                LinearRegression(), n_experts=2, top_k=1, training="crossfit"
            ),
            False,
        ),
        (
            "hard_em_cv",
            lambda: MoERegressor(
                [("lin", LinearRegression()), ("tree", DecisionTreeRegressor())],
                training="hard_em",
                cv=3,
            ),
            False,
        ),
    ],
}


def _fit_all(cls):
    X, y = _classification() if cls is MoEClassifier else _regression()
    fitted = {}
    for name, make, frame in CONFIGS[cls]:
        est = make().set_params(max_iter=3, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence, collapse: not tested
            est.fit(_frame(X) if frame else X, y)
        fitted[name] = fitted_attributes(est)
    return fitted


def test_the_parser_reads_a_numpydoc_section():
    class Documented:
        """Summary.

        Parameters
        ----------
        a : int

        Attributes
        ----------
        b_ : int
            Described,
            on two lines.
        c_
        d_ : ndarray of shape (n,)

        See Also
        --------
        Other : the other one.
        """

    assert documented_attributes(Documented) == ["b_", "c_", "d_"]


@pytest.mark.parametrize("cls", [MoEClassifier, MoERegressor], ids=lambda c: c.__name__)
def test_fitted_attributes_are_documented(cls):
    documented = set(documented_attributes(cls))
    fitted = _fit_all(cls)
    for name, attributes in fitted.items():
        missing = sorted(attributes - documented)
        assert not missing, (
            f"{cls.__name__} ({name}) sets undocumented attributes {missing}"
        )
    never_set = sorted(documented - set().union(*fitted.values()))
    assert not never_set, (
        f"{cls.__name__} documents attributes no fit sets: {never_set}"
    )

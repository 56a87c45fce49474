"""Tests of skmoe._validation: input checks with useful errors."""

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge

from skmoe import MoEClassifier, MoERegressor
from skmoe._validation import (
    check_enough_samples,
    check_missing_values,
    check_numeric_features,
)

OWNER = MoEClassifier([("lr", LogisticRegression())])


# -- check_numeric_features --------------------------------------------------------


def test_non_numeric_pandas_columns_are_named():
    X = pd.DataFrame(
        {
            "age": [30, 40, 50],
            "city": ["Oslo", "Lima", "Pune"],
            "income": [1.0, 2.0, 3.0],
            "colour": pd.Categorical(["r", "g", "r"]),
            "label": pd.array(["a", "b", "c"], dtype="string"),
        }
    )
    with pytest.raises(ValueError, match=r"non-numeric column\(s\)") as info:
        check_numeric_features(X, OWNER)
    message = str(info.value)
    assert "['city', 'colour', 'label']" in message
    assert "age" not in message and "income" not in message
    # the advice names the estimator and how to encode
    assert "MoEClassifier needs numeric features" in message
    assert "OneHotEncoder" in message


def test_non_numeric_columns_listed_at_most_ten():
    X = pd.DataFrame({f"c{i}": ["x", "y"] for i in range(12)})
    with pytest.raises(ValueError) as info:
        check_numeric_features(X, OWNER)
    assert "'c9'" in str(info.value) and "'c10'" not in str(info.value)


def test_owner_name_in_message():
    X = pd.DataFrame({"s": ["a", "b"]})
    with pytest.raises(ValueError, match="MoERegressor needs numeric features"):
        check_numeric_features(X, MoERegressor([("r", Ridge())]))


@pytest.mark.parametrize(
    "column",
    [
        np.array([1, 2, 3]),
        np.array([1.0, np.nan, 3.0]),
        np.array([True, False, True]),
        pd.array([1, None, 3], dtype="Int64"),
        pd.array([1.5, None, 3.0], dtype="Float64"),
        pd.array([True, None, False], dtype="boolean"),
        np.array([1, 2, 3], dtype=np.uint8),
    ],
    ids=["int", "float", "bool", "Int64", "Float64", "boolean", "uint8"],
)
def test_numeric_pandas_columns_pass(column):
    X = pd.DataFrame({"a": column, "b": [0.0, 1.0, 2.0]})
    assert check_numeric_features(X, OWNER) is None


def test_object_pandas_column_holding_numbers_passes_like_an_object_array():
    # An object-dtype column of numbers (common after pandas operations) is
    # numeric data: check_array converts it, every scikit-learn estimator takes
    # it, and the same values as an object ndarray pass this check. Calling it
    # "non-numeric" would be wrong and inconsistent.
    X = pd.DataFrame({"a": pd.Series([1, 2, 3], dtype=object), "b": [0.0, 1.0, 2.0]})
    assert check_numeric_features(X.to_numpy(), OWNER) is None
    assert check_numeric_features(X, OWNER) is None


@pytest.mark.parametrize(
    "X",
    [
        np.array([[1.0, "a"], [2.0, "b"]], dtype=object),
        np.array([["1.0", "a"], ["2.0", "b"]]),  # unicode array
        [[1.0, "a"], [2.0, "b"]],  # a list becomes a string array
        np.array([[b"x", b"y"]]),  # bytes
    ],
    ids=["object", "unicode", "list", "bytes"],
)
def test_strings_in_arrays_raise_value_error(X):
    message = r"X holds values that are not numbers .*needs numeric features"
    with pytest.raises(ValueError, match=message):
        check_numeric_features(X, OWNER)


@pytest.mark.parametrize(
    "X",
    [
        np.array([[1.0, 2], [3, 4.5]], dtype=object),
        np.array([["1.0", "2"], ["3", "4.5"]]),  # numbers written as text
        [[1, 2.0], [3, 4]],
        np.zeros((3, 2), dtype=np.float32),
        np.array([[1.0, None]], dtype=object),  # None becomes NaN
    ],
    ids=["object-numbers", "numeric-strings", "list", "float32", "none"],
)
def test_arrays_that_convert_to_numbers_pass(X):
    assert check_numeric_features(X, OWNER) is None


def test_type_error_is_kept_for_dict_entries():
    X = np.array([[{"a": 1}, 2.0], [{"b": 2}, 3.0]], dtype=object)
    with pytest.raises(TypeError, match=r"X holds values that are not numbers") as info:
        check_numeric_features(X, OWNER)
    assert "MoEClassifier needs numeric features" in str(info.value)
    # the original numpy error is chained or quoted, never lost
    assert "dict" in str(info.value)


def test_ragged_input_is_left_to_check_array():
    assert check_numeric_features([[1.0, 2.0], [3.0]], OWNER) is None


# -- check_missing_values ----------------------------------------------------------


X_NAN = np.array([[0.0, 1.0], [np.nan, 2.0], [3.0, 4.0]])


def test_nan_refused_naming_only_the_experts_that_cannot_take_it():
    names = ["lr", "hgb", "ridge_like"]
    estimators = [
        LogisticRegression(),
        HistGradientBoostingClassifier(),
        LogisticRegression(C=0.1),
    ]
    with pytest.raises(ValueError, match="Input X contains NaN") as info:
        check_missing_values(X_NAN, names, estimators, OWNER)
    message = str(info.value)
    assert "expert(s) ['lr', 'ridge_like'] of MoEClassifier cannot take" in message
    assert "hgb" not in message.split("cannot take")[0]
    assert "SimpleImputer" in message


@pytest.mark.parametrize(
    "estimators",
    [
        [HistGradientBoostingClassifier(), HistGradientBoostingClassifier(max_depth=2)],
        [HistGradientBoostingRegressor()],
    ],
)
def test_nan_accepted_when_every_expert_allows_it(estimators):
    names = [f"e{i}" for i in range(len(estimators))]
    assert check_missing_values(X_NAN, names, estimators, OWNER) is None


def test_no_nan_no_check():
    X = np.nan_to_num(X_NAN)
    assert check_missing_values(X, ["lr"], [LogisticRegression()], OWNER) is None


def test_infinity_is_not_nan():
    X = np.array([[np.inf, 1.0]])
    assert check_missing_values(X, ["lr"], [LogisticRegression()], OWNER) is None


# -- check_enough_samples ----------------------------------------------------------


@pytest.mark.parametrize("n_samples", [0, 1])
def test_too_few_samples(n_samples):
    message = rf"MoEClassifier needs at least 2 samples.*n_samples = {n_samples}"
    with pytest.raises(ValueError, match=message):
        check_enough_samples(n_samples, OWNER)


@pytest.mark.parametrize("n_samples", [2, 3, 1000])
def test_enough_samples(n_samples):
    assert check_enough_samples(n_samples, OWNER) is None

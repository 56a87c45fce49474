"""Input checks whose errors say what was wrong and what to do."""

import numpy as np
from sklearn.utils import get_tags


def check_numeric_features(X, owner):
    """Refuse non-numeric features before numpy does, with a useful message.

    The gate is a model of the features themselves, so it needs numbers even
    where every expert could encode categories on its own.
    """
    name = type(owner).__name__
    advice = (
        f"{name} needs numeric features: its gate is a model of X. Encode the "
        f"other columns first, e.g. make_pipeline(ColumnTransformer([('cat', "
        f"OneHotEncoder(handle_unknown='ignore'), categorical_columns)], "
        f"remainder='passthrough'), {name}(...))."
    )
    dtypes = getattr(X, "dtypes", None)
    if dtypes is not None and hasattr(dtypes, "items"):
        non_numeric = [
            str(column)
            for column, dtype in dtypes.items()
            if not _is_numeric_column(X[column], dtype)
        ]
        if non_numeric:
            raise ValueError(
                f"X has non-numeric column(s) {non_numeric[:10]}. {advice}"
            )
        return
    dtype = getattr(X, "dtype", None)
    if dtype is None:
        try:
            dtype = np.asarray(X).dtype
        except (TypeError, ValueError):
            # ragged or otherwise odd input: leave its error to check_array
            return
    if dtype.kind in "USO":
        try:
            np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            # Keep numpy's exception type: callers may rely on it.
            raise type(exc)(
                f"X holds values that are not numbers ({exc}). {advice}"
            ) from exc


def _is_numeric_column(column, dtype):
    if np.issubdtype(_numpy_dtype(dtype), np.number) or _is_bool(dtype):
        return True
    if _numpy_dtype(dtype) == np.dtype(object):
        # an object column may still hold numbers only, as check_array accepts
        try:
            np.asarray(column, dtype=np.float64)
        except (TypeError, ValueError):
            return False
        return True
    return False


def _numpy_dtype(dtype):
    try:
        return np.dtype(dtype)
    except TypeError:
        # pandas extension dtypes (Int64, Float64, category, string)
        return getattr(dtype, "numpy_dtype", np.dtype(object))


def _is_bool(dtype):
    return str(dtype).lower() in {"bool", "boolean"}


def check_missing_values(X, names, estimators, owner):
    """Refuse NaN in X when an expert cannot take it, naming the experts."""
    if not np.isnan(X).any():
        return
    refusing = [
        name
        for name, estimator in zip(names, estimators)
        if not get_tags(estimator).input_tags.allow_nan
    ]
    if refusing:
        raise ValueError(
            f"Input X contains NaN, but expert(s) {refusing} of "
            f"{type(owner).__name__} cannot take missing values. Impute them first "
            "(e.g. make_pipeline(SimpleImputer(), moe)), or use experts that accept "
            "NaN, such as HistGradientBoostingClassifier/Regressor; the gate imputes "
            "for itself."
        )


def check_enough_samples(n_samples, owner):
    if n_samples < 2:
        raise ValueError(
            f"{type(owner).__name__} needs at least 2 samples to fit; got "
            f"n_samples = {n_samples} ({n_samples} sample)."
        )

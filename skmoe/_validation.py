"""Input checks whose errors say what was wrong and what to do."""

import numpy as np
import scipy.sparse as sp
from sklearn.utils import get_tags

from ._warnings import SparseInputError

#: The largest dense copy of a sparse ``X`` that skmoe makes, in bytes (1 GiB,
#: float64): the parts of a mixture that need dense features (the torch gate
#: ``MLPGate``, the fused all-torch mixture, the backprop step of the gate)
#: densify a sparse ``X`` up to this size, and refuse a larger one.
MAX_DENSE_BYTES = 2**30


def check_numeric_features(X, owner):
    """Refuse non-numeric features before numpy does, with a useful message.

    The gate is a model of the features themselves, so it needs numbers even
    where every expert could encode categories on its own.
    """
    if sp.issparse(X):
        # a sparse matrix holds numbers (check_array converts its dtype)
        return
    name = type(owner).__name__
    # Dense output, so that the advice works word for word whatever the
    # experts (a StandardScaler inside one cannot centre sparse input).
    advice = (
        f"{name} needs numeric features: its gate is a model of X. Encode the "
        f"other columns first, e.g. make_pipeline(ColumnTransformer([('cat', "
        f"OneHotEncoder(handle_unknown='ignore', sparse_output=False), "
        f"categorical_columns)], remainder='passthrough'), {name}(...)). "
        "The encoder's default sparse output works too when every expert "
        "accepts sparse input."
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
    if not np.isnan(X.data if sp.issparse(X) else X).any():
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


def densify(X, what):
    """``X`` as a dense array: a sparse ``X`` is densified, up to a limit.

    For the parts of a mixture that compute on dense features only (torch
    tensors); ``what`` names that part in the error. A dense copy larger than
    :data:`MAX_DENSE_BYTES` is refused, rather than risk running out of
    memory on a matrix that sparsity made small.
    """
    if not sp.issparse(X):
        return X
    n_bytes = X.shape[0] * X.shape[1] * np.dtype(np.float64).itemsize
    if n_bytes > MAX_DENSE_BYTES:
        raise ValueError(
            f"{what} needs dense features, but the dense copy of this sparse X "
            f"({X.shape[0]} x {X.shape[1]}, {n_bytes / 2**30:.2f} GiB as float64) "
            f"would exceed skmoe's limit of {MAX_DENSE_BYTES / 2**30:.2f} GiB "
            "(skmoe._validation.MAX_DENSE_BYTES). Use gate='softmax' and "
            "training other than 'backprop', which work on sparse X, or reduce "
            "the features first (e.g. TruncatedSVD, fewer one-hot categories)."
        )
    return X.toarray()


def refuses_sparse(exc, X):
    """Whether ``exc``, raised by an expert given ``X``, says that it cannot
    take sparse input: scikit-learn's ``check_array`` raises a TypeError
    (an estimator of its own may say "sparse" in another error)."""
    return sp.issparse(X) and (
        isinstance(exc, TypeError) or "sparse" in str(exc).lower()
    )


def sparse_refused_error(who, exc):
    """The error for an expert that refused sparse ``X``; ``who`` names it
    (e.g. "Expert 'hgb' on fold 0")."""
    return SparseInputError(
        f"{who} cannot take sparse X ({type(exc).__name__}: {exc}). Give the "
        "mixture dense X, e.g. OneHotEncoder(sparse_output=False) or "
        "ColumnTransformer(..., sparse_threshold=0) in front of it, or "
        "put a step that gives that expert dense features in front of it "
        "(e.g. make_pipeline(TruncatedSVD(100), expert))."
    )

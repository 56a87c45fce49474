"""The one preprocessing every model shares.

Numeric columns are median-imputed (with a missing-value indicator for the
columns that had gaps) and standardised; the other columns (strings,
categories, booleans) are imputed with their most frequent value and one-hot
encoded, keeping at most ``max_categories`` categories per column (the rarer
ones are pooled into one "infrequent" column). The result is one dense float
matrix, fitted on each training fold and applied to its test fold, that every
model of the zoo receives: the comparison is of models, not of feature
engineering.
"""

import numpy as np
from sklearn.compose import ColumnTransformer, make_column_selector
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

#: Most categories one column may contribute (the rest pooled as infrequent).
MAX_CATEGORIES = 20


def make_preprocessor(max_categories=MAX_CATEGORIES):
    """The shared ColumnTransformer (unfitted).

    Parameters
    ----------
    max_categories : int
        Cap on the one-hot columns of one categorical column.

    Returns
    -------
    sklearn.compose.ColumnTransformer
        Outputs a dense float64 array.
    """
    numeric = make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
    )
    categorical = make_pipeline(
        SimpleImputer(strategy="most_frequent"),
        OneHotEncoder(
            handle_unknown="infrequent_if_exist",
            max_categories=max_categories,
            sparse_output=False,
        ),
    )
    return ColumnTransformer(
        [
            ("numeric", numeric, make_column_selector(dtype_include="number")),
            ("categorical", categorical, make_column_selector(dtype_exclude="number")),
        ],
        sparse_threshold=0.0,
    )


def transform_split(X, train, test, max_categories=MAX_CATEGORIES):
    """Fit the shared preprocessing on ``X[train]``; return both parts encoded.

    Parameters
    ----------
    X : pandas.DataFrame
        Raw features of the whole set.
    train, test : array of int
        Row positions of the split.
    max_categories : int
        Cap on the one-hot columns of one categorical column.

    Returns
    -------
    X_train, X_test : numpy.ndarray of float64
    """
    X = X.copy()
    kinds = X.dtypes.map(lambda dtype: getattr(dtype, "kind", "O"))
    flags, text = X.columns[kinds == "b"], X.columns[~kinds.isin(list("biuf"))]
    X[flags] = X[flags].astype(float)
    # Strings and categories go to the one-hot branch as plain objects, with
    # NaN for missing, so that the imputer and the encoder see one type.
    X[text] = X[text].astype(object).where(X[text].notna(), np.nan)
    pre = make_preprocessor(max_categories).fit(X.iloc[train])
    return (
        pre.transform(X.iloc[train]).astype(np.float64),
        pre.transform(X.iloc[test]).astype(np.float64),
    )

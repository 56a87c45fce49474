"""scikit-learn's own estimator checks, run on both mixtures."""

from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.utils.estimator_checks import parametrize_with_checks

from skmoe import MoEClassifier, MoERegressor

ESTIMATORS = [
    MoEClassifier(
        experts=[
            ("lr", LogisticRegression()),
            ("tree", DecisionTreeClassifier(max_depth=3)),
        ],
        max_iter=5,
        random_state=0,
    ),
    MoEClassifier(
        DecisionTreeClassifier(max_depth=3),
        n_experts=3,
        top_k=1,
        max_iter=5,
        random_state=0,
    ),
    MoERegressor(
        experts=[
            ("lin", LinearRegression()),
            ("tree", DecisionTreeRegressor(max_depth=3)),
        ],
        max_iter=5,
        random_state=0,
    ),
    MoERegressor(LinearRegression(), n_experts=3, top_k=2, max_iter=5, random_state=0),
]


def _expected_failed_checks(estimator):
    """Checks that fail by design, with the reason."""
    if isinstance(estimator.experts, list):
        return {}
    return {
        # Clones of one template start from k-means clusters. KMeans seeds its
        # centres by weighted sampling, and a row of weight 2 is not drawn the
        # same way as two copies of it, so the starting clusters (and with them
        # the fitted mixture) differ; sklearn's own KMeans fails this check too.
        # The classifier's tree clones pass or fail by rounding: with OpenBLAS's
        # AVX-512 kernels a top-1 tie falls one way, with its AVX2 kernels the
        # other (one row of the check's data changes expert).
        "check_sample_weight_equivalence_on_dense_data": (
            "k-means initialisation: weighted and repeated rows seed differently"
        ),
        # the same k-means initialisation, on the sparse copy of that data
        # (the experts accept sparse X, so the mixture is tagged sparse)
        "check_sample_weight_equivalence_on_sparse_data": (
            "k-means initialisation: weighted and repeated rows seed differently"
        ),
    }


@parametrize_with_checks(ESTIMATORS, expected_failed_checks=_expected_failed_checks)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)

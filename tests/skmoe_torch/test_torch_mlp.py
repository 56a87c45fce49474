"""TorchMLPClassifier and TorchMLPRegressor: skorch experts, alone and in a mixture.

Skipped without torch and skorch (tests/skmoe_torch/conftest.py); the import tests
that run without them are in tests/test_optional_torch.py. Tests marked
``gpu`` need CUDA and are deselected by default (``pytest -m gpu`` runs them).
"""

import pickle
import warnings
from unittest.mock import patch

import joblib
import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import make_classification
from sklearn.utils.estimator_checks import parametrize_with_checks
from skorch.exceptions import DeviceWarning

from skmoe import (
    ExpertFallbackWarning,
    MoEClassifier,
    MoERegressor,
    TorchMLPClassifier,
    TorchMLPRegressor,
)
from skmoe.torch.mlp import _resolve_device

from _helpers import (
    one_torch_thread,
    quiet_fit,
    regime_classification,
    regime_data,
)

HAVE_CUDA = torch.cuda.is_available()
requires_cuda = pytest.mark.skipif(not HAVE_CUDA, reason="needs a CUDA device")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    with one_torch_thread():
        yield


# -- scikit-learn's estimator checks ------------------------------------------------

# Tiny, fast settings; the larger learning rate lets 10 epochs pass the checks
# that ask for a decent score.
_FAST = dict(max_epochs=10, lr=1e-2, batch_size=32, device="cpu", random_state=0)

CHECKED = [TorchMLPClassifier((16,), **_FAST), TorchMLPRegressor((16,), **_FAST)]


# Checks that fail by design, with the reason; strict: a check that starts
# passing must be taken off the list. The weighted loss of a row of weight 2
# equals that of two copies of it in exact arithmetic (and the check's data
# fit in one minibatch), but the network computes in float32: the
# classifier's two fits agree to about 1e-7, and the check asks for
# rtol=1e-7, atol=1e-9. (The regressor's agree within it.) With more rows than
# batch_size, repeated rows would also change the minibatches.
EXPECTED_FAILURES = {
    ("TorchMLPClassifier", "check_sample_weight_equivalence_on_dense_data"): (
        "float32 training: weighted and repeated rows agree only to ~1e-7"
    ),
}


@parametrize_with_checks(CHECKED)
def test_sklearn_compatible_estimator(estimator, check, request):
    name = getattr(check, "func", check).__name__
    reason = EXPECTED_FAILURES.get((type(estimator).__name__, name))
    if reason is not None:
        request.applymarker(pytest.mark.xfail(reason=reason, strict=True))
    check(estimator)


# -- data -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def classification():
    X, y = make_classification(
        n_samples=120, n_features=4, n_informative=3, n_redundant=0, random_state=0
    )
    return X, y


@pytest.fixture(scope="module")
def regression():
    X, y, _ = regime_data(n_samples=120)
    return X, y


def _classifier(**params):
    return TorchMLPClassifier(**{"hidden_layer_sizes": (8,), **_FAST, **params})


def _regressor(**params):
    return TorchMLPRegressor(**{"hidden_layer_sizes": (8,), **_FAST, **params})


# -- sample weights ----------------------------------------------------------------


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_zero_weight_rows_have_no_effect(kind, classification, regression):
    X, y = classification if kind == "classifier" else regression
    make = _classifier if kind == "classifier" else _regressor
    rng = np.random.RandomState(1)
    # extra rows with absurd targets, scattered among the real ones
    n_extra = 40
    X_extra = rng.uniform(-3, 3, size=(n_extra, X.shape[1]))
    y_extra = (
        rng.choice(np.unique(y), size=n_extra)
        if kind == "classifier"
        else rng.uniform(50, 100, size=n_extra)
    )
    # the real rows keep their order (which decides the minibatches)
    real = rng.permutation(np.r_[np.ones(len(X)), np.zeros(n_extra)]).astype(bool)
    X_all = np.empty((len(real), X.shape[1]))
    X_all[real], X_all[~real] = X, X_extra
    y_all = np.empty(len(real), dtype=np.asarray(y).dtype)
    y_all[real], y_all[~real] = y, y_extra
    w_all = real.astype(float)

    plain = make().fit(X, y)
    padded = make().fit(X_all, y_all, sample_weight=w_all)
    method = "predict_proba" if kind == "classifier" else "predict"
    np.testing.assert_array_equal(getattr(plain, method)(X), getattr(padded, method)(X))


def test_sample_weight_gives_the_weighted_mean():
    # The same input with target 0 (weight 1) and target 1 (weight 3): the
    # weighted least-squares answer is 0.75, the unweighted one 0.5.
    X = np.zeros((40, 1))
    y = np.r_[np.zeros(20), np.ones(20)]
    w = np.r_[np.ones(20), 3 * np.ones(20)]
    reg = TorchMLPRegressor(
        (), max_epochs=200, lr=0.05, batch_size=40, device="cpu", random_state=0
    )
    assert reg.fit(X, y, sample_weight=w).predict(X[:1])[0] == pytest.approx(
        0.75, abs=1e-3
    )
    assert reg.fit(X, y).predict(X[:1])[0] == pytest.approx(0.5, abs=1e-3)


def test_sample_weight_changes_the_classifier(classification):
    X, y = classification
    w = np.where(y == 1, 10.0, 1.0)
    plain = _classifier().fit(X, y)
    weighted = _classifier().fit(X, y, sample_weight=w)
    # up-weighting class 1 raises its predicted probability on average
    assert weighted.predict_proba(X)[:, 1].mean() > plain.predict_proba(X)[:, 1].mean()


def test_sample_weight_scale_does_not_matter(regression):
    X, y = regression
    w = np.random.RandomState(0).uniform(0.5, 2, size=len(y))
    a = _regressor().fit(X, y, sample_weight=w).predict(X)
    b = _regressor().fit(X, y, sample_weight=100 * w).predict(X)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_all_zero_weights_are_refused(regression):
    X, y = regression
    with pytest.raises(ValueError, match="non-zero"):
        _regressor().fit(X, y, sample_weight=np.zeros(len(y)))


# -- seeding ------------------------------------------------------------------------


def test_random_state_makes_refits_identical(classification):
    X, y = classification
    params = dict(dropout=0.2, hidden_layer_sizes=(8, 8))
    a = _classifier(**params).fit(X, y)
    b = _classifier(**params).fit(X, y)
    c = _classifier(**params, random_state=1).fit(X, y)
    for p, q in zip(a.net_.module_.parameters(), b.net_.module_.parameters()):
        assert torch.equal(p, q)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    assert not np.array_equal(a.predict_proba(X), c.predict_proba(X))
    # the same estimator refitted gives the same network again
    np.testing.assert_array_equal(a.fit(X, y).predict_proba(X), b.predict_proba(X))


def test_fit_leaves_the_global_torch_rng_alone(regression):
    X, y = regression
    torch.manual_seed(123)
    before = torch.get_rng_state()
    _regressor().fit(X, y)
    assert torch.equal(torch.get_rng_state(), before)


# -- warm start -----------------------------------------------------------------------


def test_warm_start_continues_training(regression):
    X, y = regression
    reg = _regressor(warm_start=True, max_epochs=5).fit(X, y)
    module = reg.net_.module_
    first_curve = list(reg.loss_curve_)
    reg.fit(X, y)
    assert reg.net_.module_ is module  # the same network, not a new one
    assert reg.n_iter_ == 10
    assert reg.loss_curve_[:5] == first_curve
    # the second fit starts where the first stopped, far below a fresh start
    assert reg.loss_curve_[5] < first_curve[0]
    assert reg.loss_curve_[-1] < first_curve[-1]


def test_without_warm_start_each_fit_starts_afresh(regression):
    X, y = regression
    reg = _regressor(max_epochs=5).fit(X, y)
    module = reg.net_.module_
    reg.fit(X, y)
    assert reg.net_.module_ is not module
    assert reg.n_iter_ == 5


def test_warm_start_keeps_classes_missing_from_a_later_fit(classification):
    X, y = classification
    clf = _classifier(warm_start=True, max_epochs=3).fit(X, y)
    first_layer = clf.net_.module_.layers[0]
    clf.fit(X[y == 1], y[y == 1])  # a share of the rows with one class only
    assert clf.n_iter_ == 6
    assert clf.net_.module_.layers[0] is first_layer
    np.testing.assert_array_equal(clf.classes_, [0, 1])
    assert clf.predict_proba(X).shape == (len(X), 2)


def test_warm_start_gives_a_new_class_a_new_output_unit(classification):
    X, y = classification
    clf = _classifier(warm_start=True, max_epochs=3).fit(X, y)
    first_layer = clf.net_.module_.layers[0]
    y3 = y.copy()
    y3[:10] = 2  # a class the network has not seen
    clf.fit(X, y3)
    assert clf.n_iter_ == 6
    assert clf.net_.module_.layers[0] is first_layer
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    assert clf.net_.module_.layers[-1].out_features == 3
    assert clf.predict_proba(X).shape == (len(X), 3)


def test_warm_start_keeps_the_old_output_units_in_place():
    # new classes sorting before and between the old ones: the old units move
    # to their classes' new positions, the new units are fresh
    X = np.random.RandomState(0).randn(30, 3)
    clf = _classifier(warm_start=True, max_epochs=1).fit(X, np.r_[[1] * 15, [3] * 15])
    before = clf.net_.module_.layers[-1].weight.detach().clone()
    clf._add_output_units(np.searchsorted([0, 1, 2, 3], [1, 3]), 4)
    after = clf.net_.module_.layers[-1].weight.detach()
    assert torch.equal(after[[1, 3]], before)
    # the optimiser now trains the new layer
    optimised = {id(p) for g in clf.net_.optimizer_.param_groups for p in g["params"]}
    assert id(clf.net_.module_.layers[-1].weight) in optimised


def test_warm_start_restarts_when_what_it_learned_no_longer_fits(classification):
    X, y = classification
    clf = _classifier(warm_start=True, max_epochs=3).fit(X, y)
    # labels of another type
    clf.fit(X, np.array(["a", "b"])[y])
    assert clf.n_iter_ == 3
    np.testing.assert_array_equal(clf.classes_, ["a", "b"])
    # other features
    clf.fit(X[:, :3], y)
    assert clf.n_iter_ == 3
    # another architecture
    clf.set_params(hidden_layer_sizes=(4,)).fit(X[:, :3], y)
    assert clf.n_iter_ == 3
    # same again: continues; max_epochs may change between fits
    clf.set_params(max_epochs=2).fit(X[:, :3], y)
    assert clf.n_iter_ == 5
    # another training setting
    clf.set_params(lr=0.001).fit(X[:, :3], y)
    assert clf.n_iter_ == 2
    # a regressor: another number of targets
    reg = _regressor(warm_start=True, max_epochs=2).fit(X, y.astype(float))
    reg.fit(X, np.column_stack([y, y]).astype(float))
    assert reg.n_iter_ == 2 and reg.n_outputs_ == 2


# -- as experts of a mixture ------------------------------------------------------


def _kept_iterations(moe):
    """EM iterations up to the kept one (the last with the lowest loss)."""
    curve = np.asarray(moe.loss_curve_)
    return len(curve) - int(np.argmin(curve[::-1]))


def _torch_epochs_per_expert(moe):
    return [expert.n_iter_ for expert in moe.experts_]


@pytest.mark.parametrize("warm_start", [True, False])
def test_moe_classifier_with_torch_experts_warm_restarts(warm_start):
    X, y = regime_classification(n_samples=200)
    epochs = 3
    moe = MoEClassifier(
        _classifier(max_epochs=epochs, warm_start=warm_start, random_state=None),
        n_experts=3,
        top_k=1,
        max_iter=3,
        tol=0,
        random_state=0,
        training="em",
    )
    quiet_fit(moe, X, y)
    assert all(isinstance(e, TorchMLPClassifier) for e in moe.experts_)
    expected = _kept_iterations(moe) * epochs if warm_start else epochs
    assert _torch_epochs_per_expert(moe) == [expected] * 3
    proba = moe.predict_proba(X)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1)
    assert moe.score(X, y) > 0.7


def test_moe_warm_restarts_survive_shares_that_miss_classes():
    # three classes in three clusters: k-means starts each expert on about one
    # class, so most refits see only some classes
    X, y = make_classification(
        n_samples=240,
        n_features=4,
        n_informative=4,
        n_redundant=0,
        n_classes=3,
        n_clusters_per_class=1,
        class_sep=2.0,
        random_state=0,
    )
    epochs = 2
    moe = MoEClassifier(
        _classifier(max_epochs=epochs, warm_start=True, random_state=None),
        n_experts=3,
        top_k=1,
        max_iter=4,
        tol=0,
        random_state=0,
        training="em",
    )
    quiet_fit(moe, X, y)
    assert _torch_epochs_per_expert(moe) == [_kept_iterations(moe) * epochs] * 3
    assert moe.score(X, y) > 0.8


def test_moe_regressor_with_torch_experts_warm_restarts():
    X, y, _ = regime_data(n_samples=200)
    epochs = 5
    moe = MoERegressor(
        _regressor(max_epochs=epochs, warm_start=True, lr=0.02),
        n_experts=2,
        top_k=1,
        max_iter=4,
        tol=0,
        random_state=0,
        training="em",
    )
    quiet_fit(moe, X, y)
    assert _torch_epochs_per_expert(moe) == [_kept_iterations(moe) * epochs] * 2
    assert moe.predict(X).dtype == np.float64
    assert moe.score(X, y) > 0.8


def test_moe_with_torch_experts_is_reproducible():
    X, y = regime_classification(n_samples=150)

    def fit():
        moe = MoEClassifier(
            _classifier(max_epochs=2, warm_start=True, random_state=None),
            n_experts=2,
            top_k=1,
            max_iter=2,
            random_state=0,
        )
        return quiet_fit(moe, X, y).predict_proba(X)

    np.testing.assert_array_equal(fit(), fit())


# -- persistence and devices -----------------------------------------------------------


def test_joblib_round_trip_gives_identical_predictions(tmp_path, classification):
    X, y = classification
    clf = _classifier().fit(X, y)
    reg = _regressor().fit(X, y.astype(float))
    for estimator, method in [(clf, "predict_proba"), (reg, "predict")]:
        path = tmp_path / "model.joblib"
        joblib.dump(estimator, path)
        loaded = joblib.load(path)
        np.testing.assert_array_equal(
            getattr(loaded, method)(X), getattr(estimator, method)(X)
        )


def test_moe_with_torch_experts_round_trips(tmp_path):
    X, y = regime_classification(n_samples=150)
    moe = quiet_fit(
        MoEClassifier(
            _classifier(max_epochs=2), n_experts=2, max_iter=2, random_state=0
        ),
        X,
        y,
    )
    path = tmp_path / "moe.joblib"
    joblib.dump(moe, path)
    np.testing.assert_array_equal(
        joblib.load(path).predict_proba(X), moe.predict_proba(X)
    )


def _pretend_trained_on_cuda(estimator):
    """Mark every torch expert's net as living on CUDA, as if trained on a GPU.

    The tensors stay on the CPU, but skorch decides where to map them from the
    net's ``device``, which is what a CUDA-trained pickle records.
    """
    experts = getattr(estimator, "experts_", [estimator])
    for expert in experts:
        expert.net_.device = "cuda"
    return estimator


def test_model_marked_cuda_loads_and_predicts_without_cuda(tmp_path, classification):
    X, y = classification
    clf = _classifier().fit(X, y)
    expected = clf.predict_proba(X)
    path = tmp_path / "cuda_model.joblib"
    joblib.dump(_pretend_trained_on_cuda(clf), path)
    with patch("torch.cuda.is_available", lambda *_: False):
        with pytest.warns(DeviceWarning):
            loaded = joblib.load(path)
        assert loaded.device_ == "cpu"
        np.testing.assert_array_equal(loaded.predict_proba(X), expected)
        # a device="auto" model refits on the CPU, warm-starting from its weights
        loaded.set_params(warm_start=True).fit(X, y)
        assert loaded.n_iter_ == 2 * _FAST["max_epochs"]


def test_moe_with_cuda_marked_experts_loads_without_cuda(tmp_path):
    X, y = regime_classification(n_samples=150)
    moe = quiet_fit(
        MoEClassifier(
            _classifier(max_epochs=2), n_experts=2, max_iter=2, random_state=0
        ),
        X,
        y,
    )
    expected = moe.predict_proba(X)
    blob = pickle.dumps(_pretend_trained_on_cuda(moe))
    with patch("torch.cuda.is_available", lambda *_: False):
        with pytest.warns(DeviceWarning):
            loaded = pickle.loads(blob)
    assert [expert.device_ for expert in loaded.experts_] == ["cpu", "cpu"]
    np.testing.assert_array_equal(loaded.predict_proba(X), expected)


def test_device_auto_resolves_to_cuda_only_where_available(regression):
    with patch("torch.cuda.is_available", lambda *_: False):
        assert _resolve_device("auto") == "cpu"
    with patch("torch.cuda.is_available", lambda *_: True):
        assert _resolve_device("auto") == "cuda"
    assert _resolve_device("cpu") == "cpu"
    X, y = regression
    reg = _regressor(device="auto").fit(X, y)
    assert reg.device_ == ("cuda" if HAVE_CUDA else "cpu")


def test_bad_device_is_refused(regression):
    X, y = regression
    with pytest.raises(ValueError, match="not a torch device"):
        _regressor(device="warp-drive").fit(X, y)


def test_cuda_on_a_cpu_build_is_refused_at_fit_even_inside_a_mixture(
    classification,
):
    """torch's own error is an AssertionError ("Torch not compiled with CUDA
    enabled"), which a mixture would hide behind a constant model."""
    X, y = classification
    with patch("torch.version.cuda", None):
        with patch("torch.cuda.is_available", lambda *_: False):
            with pytest.raises(ValueError, match="use device='cpu'"):
                _classifier(device="cuda").fit(X, y)
            moe = MoEClassifier(
                _classifier(device="cuda"), n_experts=2, max_iter=2, random_state=0
            )
            with warnings.catch_warnings():
                warnings.simplefilter("error", ExpertFallbackWarning)
                with pytest.raises(ValueError, match="CUDA is not available in this"):
                    moe.fit(X, y)


def test_float32_inside_float64_out(classification):
    X, y = classification
    clf = _classifier().fit(X, y)
    assert all(p.dtype == torch.float32 for p in clf.net_.module_.parameters())
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=0, atol=1e-12)
    reg = _regressor().fit(X, y.astype(float))
    assert reg.predict(X).dtype == np.float64


def test_multi_output_regression(regression):
    X, y = regression
    Y = np.column_stack([y, -2 * y])
    reg = _regressor(max_epochs=30).fit(X, Y)
    assert reg.n_outputs_ == 2
    assert reg.predict(X).shape == (len(X), 2)
    assert reg.score(X, Y) > 0.5


def test_quiet_by_default_and_no_internal_validation_split(capsys, classification):
    X, y = classification
    clf = _classifier().fit(X, y)
    assert capsys.readouterr().out == ""
    assert clf.net_.train_split is None
    assert "valid_loss" not in clf.net_.history[-1]
    _classifier(verbose=1, max_epochs=2).fit(X, y)
    assert "train_loss" in capsys.readouterr().out


def test_clone_gives_an_unfitted_estimator_with_the_same_params(classification):
    X, y = classification
    clf = _classifier(hidden_layer_sizes=(4, 4), activation="tanh").fit(X, y)
    copy = clone(clf)
    assert copy.get_params() == clf.get_params()
    assert not hasattr(copy, "net_")


# -- on a GPU -------------------------------------------------------------------------


@pytest.mark.gpu
@requires_cuda
def test_gpu_trained_model_loads_without_cuda(tmp_path, classification):
    X, y = classification
    clf = _classifier(device="auto").fit(X, y)
    assert clf.device_.startswith("cuda")
    assert next(clf.net_.module_.parameters()).is_cuda
    expected = clf.predict_proba(X)
    path = tmp_path / "gpu_model.joblib"
    joblib.dump(clf, path)
    with patch("torch.cuda.is_available", lambda *_: False):
        with pytest.warns(DeviceWarning):
            loaded = joblib.load(path)
    assert loaded.device_ == "cpu"
    assert not next(loaded.net_.module_.parameters()).is_cuda
    np.testing.assert_allclose(loaded.predict_proba(X), expected, atol=1e-6)


@pytest.mark.gpu
@requires_cuda
def test_gpu_moe_with_warm_started_torch_experts():
    X, y = regime_classification(n_samples=300)
    moe = MoEClassifier(
        _classifier(device="auto", max_epochs=3, warm_start=True, random_state=None),
        n_experts=3,
        top_k=1,
        max_iter=3,
        tol=0,
        random_state=0,
    )
    quiet_fit(moe, X, y)
    assert all(e.device_.startswith("cuda") for e in moe.experts_)
    assert _torch_epochs_per_expert(moe) == [_kept_iterations(moe) * 3] * 3
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert moe.predict_proba(X).dtype == np.float64

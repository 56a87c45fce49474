"""Smoke test of the torch experts: TorchMLPClassifier alone and in a mixture.

Was ``benchmarks/torch_mlp_smoke.py``. On a few hundred rows of
scikit-learn's digits, TorchMLPClassifier alone and
``MoEClassifier(TorchMLPClassifier(..., warm_start=True), n_experts=2,
top_k=1)`` fit, predict probabilities, and learn something; the networks
run on the CPU. Skipped without the torch extra.
"""

import warnings

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

pytest.importorskip("torch")
pytest.importorskip("skorch")

from skmoe import MoEClassifier, TorchMLPClassifier  # noqa: E402


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    X, y = X[:400] / 16.0, y[:400]
    return train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)


def test_torch_mlp_alone_and_in_a_top1_mixture(digits):
    X_train, X_test, y_train, y_test = digits
    alone = TorchMLPClassifier((32,), max_epochs=15, device="cpu", random_state=0)
    alone.fit(X_train, y_train)
    assert alone.score(X_test, y_test) > 0.5  # chance is 0.1
    moe = MoEClassifier(
        TorchMLPClassifier((32,), max_epochs=5, device="cpu", warm_start=True),
        n_experts=2,
        top_k=1,
        max_iter=3,
        random_state=0,
        training="em",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        moe.fit(X_train, y_train)
    proba = moe.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert moe.score(X_test, y_test) > 0.3
    assert {getattr(e, "device_", "cpu") for e in moe.experts_} <= {"cpu"}

"""skmoe without torch: what must work, and what must name the extra.

torch and skorch are an optional extra (``pip install "skmoe[torch]"``).
These tests run in a fresh interpreter, most of them with torch and skorch
made unimportable (``run_python(..., without_torch=True)``), so they run
whether or not torch is installed, and are not under tests/skmoe_torch/ (which is
skipped as a whole without it).
"""

import pytest

import skmoe

from _helpers import run_python


def test_softmax_gate_fit_and_import_skmoe_leave_torch_alone():
    result = run_python(
        """
        import sys
        import numpy as np
        import skmoe
        from skmoe import SoftmaxGate
        X = np.random.RandomState(0).normal(size=(20, 2))
        R = np.tile([0.3, 0.7], (20, 1))
        SoftmaxGate(balance="switch").fit(X, R).predict_proba(X)
        assert "torch" not in sys.modules, "torch was imported"
        assert "MLPGate" in dir(skmoe)
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_without_torch_the_backprop_gates_name_the_extra():
    result = run_python(
        """
        import sys
        import numpy as np
        from skmoe import MLPGate, SoftmaxGate

        hint = 'pip install "skmoe[torch]"'
        X = np.random.RandomState(0).normal(size=(20, 2))
        try:
            MLPGate()
        except ImportError as exc:
            assert hint in str(exc), str(exc)
        else:
            raise AssertionError("MLPGate() did not raise ImportError")
        gate = SoftmaxGate().fit(X, np.tile([0.3, 0.7], (20, 1)))
        try:
            gate.fit_mixture(X, np.zeros((20, 2)))
        except ImportError as exc:
            assert hint in str(exc), str(exc)
        else:
            raise AssertionError("fit_mixture did not raise ImportError")
        print("ok")
        """,
        without_torch=True,
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_import_skmoe_does_not_import_torch():
    result = run_python(
        """
        import sys
        import skmoe
        from skmoe import MoEClassifier, MoERegressor, SoftmaxGate
        assert "torch" not in sys.modules, "import skmoe imported torch"
        assert "skorch" not in sys.modules, "import skmoe imported skorch"
        assert "skmoe.torch" not in sys.modules, "import skmoe imported skmoe.torch"
        assert "TorchMLPClassifier" in dir(skmoe)
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_without_torch_backprop_with_a_numpy_gate_never_imports_the_fused_path():
    """Even after ``from skmoe import *`` (which asks the bridge for the
    torch names, and gets stand-ins that raise when constructed), a backprop
    mixture of sklearn experts with a gate that needs no torch fits without
    torch: the fused path is not even considered."""
    result = run_python(
        """
        import sys
        import warnings
        import numpy as np
        from scipy.special import logsumexp
        from sklearn.base import BaseEstimator
        from sklearn.linear_model import LogisticRegression
        from skmoe import *

        class StepGate(BaseEstimator):
            # a gate step that is one EM step: no torch anywhere
            def fit(self, X, R, sample_weight=None, warm_start=False):
                self.gate_ = SoftmaxGate().fit(X, R, sample_weight)
                return self

            def fit_mixture(self, X, log_likelihood, sample_weight=None,
                            top_k=None, noisy=False, random_state=None):
                joint = self.gate_.predict_log_proba(X) + log_likelihood
                R = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
                return self.fit(X, R, sample_weight)

            def predict_log_proba(self, X):
                return self.gate_.predict_log_proba(X)

        rng = np.random.RandomState(0)
        X = rng.randn(80, 2)
        y = (X[:, 0] > 0).astype(int)
        moe = MoEClassifier(LogisticRegression(), n_experts=2, max_iter=3,
                            training="backprop", gate=StepGate(), random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            moe.fit(X, y)
        assert moe.fused_ is None
        assert not any(name.startswith("skmoe.torch") for name in sys.modules)
        assert "torch" not in sys.modules
        print("ok")
        """,
        without_torch=True,
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_without_torch_the_rest_works_and_torch_experts_name_the_extra():
    # torch and skorch unimportable, whether or not they are installed
    result = run_python(
        """
        import sys
        import numpy as np
        from sklearn.linear_model import LogisticRegression
        import skmoe
        from skmoe import MoEClassifier, TorchMLPClassifier, TorchMLPRegressor

        rng = np.random.RandomState(0)
        X = rng.randn(60, 2)
        y = (X[:, 0] > 0).astype(int)
        moe = MoEClassifier(LogisticRegression(), n_experts=2, max_iter=2,
                            random_state=0)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            moe.fit(X, y)
        assert moe.predict(X).shape == (60,)
        for cls in (TorchMLPClassifier, TorchMLPRegressor):
            try:
                cls()
            except ImportError as exc:
                assert 'pip install "skmoe[torch]"' in str(exc), str(exc)
            else:
                raise AssertionError(f"{cls.__name__}() did not raise ImportError")
        assert "torch" not in sys.modules
        print("ok")
        """,
        without_torch=True,
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_unknown_attribute_of_skmoe_raises_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        skmoe.NoSuchThing  # noqa: B018


def test_no_test_folder_shadows_an_optional_dependency():
    # tests/ is on the import path while the tests run: a folder
    # tests/torch/ would be imported as the namespace package ``torch``
    # where torch is not installed, and importorskip("torch") would pass
    from pathlib import Path

    tests = Path(__file__).parent
    for name in ("torch", "skorch"):
        assert not (tests / name).exists(), f"rename tests/{name}/"


def _torch_models():
    """Fitted mixtures with torch parts, by name (tiny: one epoch each): torch
    experts, an MLPGate, and the fused all-torch module."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from skmoe import MLPGate, MoEClassifier, TorchMLPClassifier

    rng = np.random.RandomState(0)
    X = rng.randn(40, 2)
    y = (X[:, 0] > 0).astype(int)
    epoch = dict(max_epochs=1, device="cpu", random_state=0)
    gate = MLPGate((4,), max_epochs=1, n_epochs=1, device="cpu", random_state=0)
    fitted = {
        "torch experts": MoEClassifier(
            TorchMLPClassifier((4,), **epoch), n_experts=2, cv=2, random_state=0
        ).fit(X, y),
        "MLPGate": MoEClassifier(
            LogisticRegression(),
            n_experts=2,
            gate=gate,
            training="em",
            max_iter=1,
            random_state=0,
        ).fit(X, y),
        "fused": MoEClassifier(
            TorchMLPClassifier((4,), **epoch),
            n_experts=2,
            training="backprop",
            max_iter=1,
            random_state=0,
        ).fit(X, y),
    }
    assert fitted["fused"].fused_ is not None
    return fitted


def test_without_torch_loading_a_torch_model_names_the_extra(tmp_path):
    """A model with torch parts, saved where torch is, loaded where it is not:
    an ImportError that names the extra, not an AttributeError on one of
    skmoe.torch's private classes."""
    pytest.importorskip("torch")
    pytest.importorskip("skorch")
    import warnings

    import joblib

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models = _torch_models()
    paths = {}
    for i, (name, model) in enumerate(models.items()):
        paths[name] = str(tmp_path / f"model_{i}.joblib")
        joblib.dump(model, paths[name])

    result = run_python(
        f"""
        import joblib
        for name, path in {paths!r}.items():
            try:
                joblib.load(path)
            except ImportError as exc:
                message = str(exc)
                assert 'pip install "skmoe[torch]"' in message, (name, message)
                assert "load a saved model" in message, (name, message)
            else:
                raise AssertionError(f"{{name}}: loaded without torch")
        print("ok")
        """,
        without_torch=True,
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout

"""skmoe's torch code: everything that imports torch or skorch.

* :mod:`skmoe.torch.gates`: the gate network, the gates' torch objective
  (:class:`~skmoe.torch.gates.GateObjective`, the one penalty sum of the
  gates and the fused mixture), the backprop step of both gates, and
  :class:`MLPGate`;
* :mod:`skmoe.torch.mlp`: the skorch experts :class:`TorchMLPClassifier`
  and :class:`TorchMLPRegressor`;
* :mod:`skmoe.torch.balance`: the torch twins of :mod:`skmoe._balance`
  (they return tensors, for autograd; referred to by namespace, ``from
  skmoe.torch import balance as tb; tb.z_loss_penalty``);
* :mod:`skmoe.torch.fused`: the fused all-torch mixture and what the
  estimators' fused strategy calls;
* :mod:`skmoe.torch.training`: the one minibatch training loop and its
  stopping rule.

torch and skorch are an optional extra (``pip install "skmoe[torch]"``):
importing this package without them raises an ImportError naming it. So
does loading (joblib, pickle) a saved model with torch parts, since its
pickle names classes of this package (``tests/test_optional_torch.py``). The
modules here import torch at their top. Nothing outside this package imports
it except :mod:`skmoe._torch_bridge`, inside functions (see its docstring for
the rule, which ``tests/test_import_graph.py`` checks).
"""

try:
    import skorch  # noqa: F401
    import torch  # noqa: F401
except ImportError as exc:
    raise ImportError(
        "skmoe.torch (skmoe's torch experts and gates, also needed to load a "
        "saved model that holds them) needs torch and skorch, which are not "
        f'installed ({exc}). Install them with: pip install "skmoe[torch]"'
    ) from exc

from .gates import MLPGate  # noqa: E402
from .mlp import TorchMLPClassifier, TorchMLPRegressor  # noqa: E402

__all__ = ["MLPGate", "TorchMLPClassifier", "TorchMLPRegressor"]

"""The tests of skmoe.torch: the whole folder is skipped without torch or skorch.

The tests that must run without them (import skmoe, a mixture of scikit-learn
experts, the ImportError naming the extra) are outside it, in
tests/test_optional_torch.py.
"""

import pytest

pytest.importorskip("torch")
pytest.importorskip("skorch")

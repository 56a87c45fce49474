"""Torch MLP experts: scikit-learn estimators built on skorch.

:class:`TorchMLPClassifier` and :class:`TorchMLPRegressor` are plain
scikit-learn estimators (``get_params``, ``clone``, ``sample_weight``,
``random_state``, pickling) that build and train a skorch net in ``fit``. They
work on their own, and as experts of :class:`~skmoe.MoEClassifier` and
:class:`~skmoe.MoERegressor`, where ``warm_start=True`` lets every EM
iteration continue training the network of the previous one.

torch and skorch are an optional extra (``pip install "skmoe[torch]"``).
``import skmoe`` never imports them; this module imports them at its top
(``skmoe.TorchMLPClassifier`` is resolved lazily, through
:mod:`skmoe._torch_bridge`, which without them gives a stand-in that raises
an ImportError naming the extra when constructed).

How the pieces work
-------------------
* Sample weights: ``X`` reaches the net as a dict ``{"X": X, "sample_weight":
  w}`` (skorch slices both per batch); the criterion is unreduced
  (``reduction="none"``) and ``get_loss`` returns the batch mean of
  ``w_i * loss_i``, with ``w`` normalised to mean one over the training rows:
  an unbiased estimate of the weighted mean loss ``sum(w l) / sum(w)``. Rows
  of zero weight are removed before training, so they have no effect at all.
* Seeding: ``fit`` runs inside ``torch.random.fork_rng`` and seeds the CPU
  generator (and the CUDA generator of the device used) from
  ``random_state``, so weight initialisation, shuffling and dropout are
  repeatable and the caller's global torch RNG state is left as it was.
* Warm start: with ``warm_start=True`` a second ``fit`` continues training
  the current network (and optimiser state) for ``max_epochs`` more epochs.
  A classifier keeps the output units of classes missing from a later fit
  and adds units for new ones, since a mixture's expert sees a different
  share of the classes at each EM iteration.
* Minibatches are sliced from the whole arrays (``_BatchIterator``) rather
  than collated row by row by a DataLoader, which for small networks costs
  more than the training itself.
* Devices: ``device="auto"`` is CUDA when ``torch.cuda.is_available()``, else
  CPU. skorch pickles the module, criterion and optimiser so that a net whose
  device is CUDA loads on a machine without CUDA, mapped to the CPU (with a
  ``skorch.exceptions.DeviceWarning``).
"""

from numbers import Integral, Real

import numpy as np
import skorch
import torch
from sklearn.base import (
    BaseEstimator,
    ClassifierMixin,
    RegressorMixin,
    _fit_context,
)
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
    validate_data,
)
from skorch import NeuralNetClassifier, NeuralNetRegressor
from skorch.history import History
from skorch.utils import get_map_location, to_tensor
from torch import nn

from .._mixins import ProbabilisticClassifierMixin
from ._persist import is_saved_module, save_module, tensors_from_bytes, tensors_to_bytes
from .gates import _activation_layer, _hidden_sizes
from .gates import resolve_device as _resolve_device

_ACTIVATIONS = ("relu", "tanh", "logistic", "identity", "gelu")
_OPTIMIZERS = ("adam", "adamw", "sgd")
_SEED_MAX = np.iinfo(np.int32).max
# Rows per batch in prediction (at least): one row's output never depends on
# the others, so prediction batches can be larger than training ones.
_PREDICT_BATCH_SIZE = 1024


class _MLPModule(nn.Module):
    """Linear layers with an activation (and dropout) between them.

    ``forward`` takes ``sample_weight`` only because skorch passes every
    key of a dict ``X`` to it; the weights are used by the loss.
    """

    def __init__(
        self,
        n_features,
        n_outputs,
        hidden_layer_sizes=(64,),
        activation="relu",
        dropout=0.0,
    ):
        super().__init__()
        layers = []
        width = n_features
        for size in hidden_layer_sizes:
            layers.append(nn.Linear(width, size))
            layers.append(_activation_layer(activation))
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, n_outputs))
        self.layers = nn.Sequential(*layers)

    def forward(self, X, sample_weight=None):
        return self.layers(X)


class _WeightedLossMixin:
    """Reduce an unreduced criterion to a weighted batch mean.

    The skorch documentation's recipe for sample weights: ``X`` is a dict
    holding them, the criterion has ``reduction="none"``.
    """

    def get_loss(self, y_pred, y_true, X=None, training=False):
        loss = super().get_loss(y_pred, y_true, X=X, training=training)
        if loss.dim() > 1:
            # regression with several outputs: mean over the outputs
            loss = loss.reshape(loss.shape[0], -1).mean(dim=1)
        if isinstance(X, dict) and "sample_weight" in X:
            weight = to_tensor(X["sample_weight"], device=loss.device)
            return (weight.to(loss.dtype) * loss).mean()
        return loss.mean()


class _BatchIterator:
    """Minibatches sliced from the whole arrays, not collated row by row.

    Used as skorch's ``iterator_train`` and ``iterator_valid``: torch's
    DataLoader calls ``dataset[i]`` once per row and stacks the rows, which
    costs more than the forward and backward passes of a small network.
    Here each batch is one fancy-indexing of ``X`` (a dict of arrays) and
    ``y``. Shuffling draws ``torch.randperm`` from torch's CPU generator,
    which ``fit`` seeds. Datasets other than skorch's plain ``Dataset``
    (e.g. the subsets of a ``train_split``) go through a DataLoader.
    """

    def __init__(self, dataset, batch_size=128, shuffle=False, **kwargs):
        self.dataset = dataset
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.kwargs = kwargs

    def _sliceable(self):
        dataset = self.dataset
        return (
            type(dataset) is skorch.dataset.Dataset
            and not dataset.X_is_ndframe
            and not self.kwargs
        )

    def __len__(self):
        return -(-len(self.dataset) // self.batch_size)

    def __iter__(self):
        if not self._sliceable():
            loader = torch.utils.data.DataLoader(
                self.dataset,
                batch_size=self.batch_size,
                shuffle=self.shuffle,
                **self.kwargs,
            )
            yield from loader
            return
        X, y = self.dataset.X, self.dataset.y
        n = len(self.dataset)
        order = torch.randperm(n).numpy() if self.shuffle else None
        for start in range(0, n, self.batch_size):
            rows = (
                order[start : start + self.batch_size]
                if order is not None
                else slice(start, start + self.batch_size)
            )
            yield _take(X, rows), _take(y, rows)


def _take(data, rows):
    if data is None:
        return None
    if isinstance(data, dict):
        return {key: _take(value, rows) for key, value in data.items()}
    if isinstance(data, torch.Tensor):
        return data[rows]
    return torch.from_numpy(np.ascontiguousarray(data[rows]))


class _WeightedNetClassifier(_WeightedLossMixin, NeuralNetClassifier):
    """NeuralNetClassifier whose loss honours per-sample weights."""


class _WeightedNetRegressor(_WeightedLossMixin, NeuralNetRegressor):
    """NeuralNetRegressor whose loss honours per-sample weights."""


def _optimizer_class(optimizer):
    if isinstance(optimizer, str):
        return {
            "adam": torch.optim.Adam,
            "adamw": torch.optim.AdamW,
            "sgd": torch.optim.SGD,
        }[optimizer]
    return optimizer


class _seeded_rng:
    """Fork torch's RNG (CPU and the CUDA device in use) and seed it.

    Inside, weight initialisation, shuffling and dropout draw from ``seed``;
    on exit the caller's RNG state is restored.
    """

    def __init__(self, seed, device):
        self.seed = int(seed)
        self.device = torch.device(device)

    def __enter__(self):
        cuda_index = None
        if self.device.type == "cuda":
            cuda_index = (
                self.device.index
                if self.device.index is not None
                else torch.cuda.current_device()
            )
        self._fork = torch.random.fork_rng(
            devices=[] if cuda_index is None else [cuda_index],
            device_type="cuda" if cuda_index is not None else None,
        )
        self._fork.__enter__()
        torch.random.default_generator.manual_seed(self.seed)
        if cuda_index is not None:
            with torch.cuda.device(cuda_index):
                torch.cuda.manual_seed(self.seed)
        return self

    def __exit__(self, *exc_info):
        return self._fork.__exit__(*exc_info)


def _label_kind(dtype):
    """Numbers, strings or other objects: labels of one kind can be merged."""
    if dtype.kind in "biuf":
        return "number"
    if dtype.kind in "US":
        return "string"
    return dtype.kind


def _same(a, b):
    """Whether two parameter values are the same (for warm-start reuse)."""
    if a is b:
        return True
    try:
        return bool(a == b)
    except Exception:  # noqa: BLE001 - objects without a usable ==
        return False


class _BaseTorchMLP(BaseEstimator):
    """What TorchMLPClassifier and TorchMLPRegressor share; not for direct use."""

    # the fused strategy trains mixtures of these as one torch module
    _skmoe_fusable = True

    _parameter_constraints: dict = {
        "hidden_layer_sizes": [
            Interval(Integral, 1, None, closed="left"),
            "array-like",
        ],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "dropout": [Interval(Real, 0, 1, closed="left")],
        "max_epochs": [Interval(Integral, 1, None, closed="left")],
        "lr": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "optimizer": [StrOptions(set(_OPTIMIZERS)), callable],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "train_split": [None, callable],
        "callbacks": [list, None],
        # a str or a torch.device, checked in fit by torch itself
        "device": "no_validation",
        "warm_start": ["boolean"],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        hidden_layer_sizes=(64,),
        *,
        activation="relu",
        dropout=0.0,
        max_epochs=100,
        lr=1e-3,
        batch_size=128,
        optimizer="adam",
        weight_decay=0.0,
        train_split=None,
        callbacks=None,
        device="auto",
        warm_start=False,
        random_state=None,
        verbose=0,
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.dropout = dropout
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.optimizer = optimizer
        self.weight_decay = weight_decay
        self.train_split = train_split
        self.callbacks = callbacks
        self.device = device
        self.warm_start = warm_start
        self.random_state = random_state
        self.verbose = verbose

    # -- what subclasses provide ----------------------------------------------

    _net_class = None  # the skorch net class
    _criterion_name = None  # name of the criterion in torch.nn
    # The mixtures may train experts of this kind, all of one architecture,
    # as one fused torch module (skmoe.torch.fused); read from the class by
    # the estimators, which so never look for torch themselves.
    _skmoe_fusable = True

    def _encode_target(self, y):  # pragma: no cover - overridden
        """Return ``(y for the net, n_outputs, attributes)`` for a new network.

        The attributes (``classes_``, ``n_outputs_``) are set once training
        has succeeded.
        """
        raise NotImplementedError

    def _warm_target(self, y):  # pragma: no cover - overridden
        """Like ``_encode_target``, for the current network, adapting it if needed.

        Returns ``None`` when the network cannot learn this target, in which
        case a new one is built.
        """
        raise NotImplementedError

    # -- fitting --------------------------------------------------------------

    def _hidden_sizes(self):
        return _hidden_sizes(self.hidden_layer_sizes)

    def _architecture(self, n_features, device):
        """Everything that must be unchanged for ``warm_start`` to continue."""
        return (
            n_features,
            self._hidden_sizes(),
            self.activation,
            self.dropout,
            self.lr,
            self.batch_size,
            self.optimizer,
            self.weight_decay,
            self.train_split,
            self.callbacks,
            str(torch.device(device)),
        )

    def _can_continue(self, architecture):
        if not self.warm_start or not hasattr(self, "net_"):
            return False
        previous = getattr(self, "_architecture_", None)
        if previous is None or len(previous) != len(architecture):
            return False
        # the net may have been loaded onto another device than it was built on
        previous = previous[:-1] + (str(torch.device(self.net_.device)),)
        return all(_same(a, b) for a, b in zip(previous, architecture))

    def _build_net(self, n_features, n_outputs, device):
        criterion = getattr(nn, self._criterion_name)
        return self._net_class(
            module=_MLPModule,
            module__n_features=n_features,
            module__n_outputs=n_outputs,
            module__hidden_layer_sizes=self._hidden_sizes(),
            module__activation=self.activation,
            module__dropout=float(self.dropout),
            criterion=criterion,
            criterion__reduction="none",
            optimizer=_optimizer_class(self.optimizer),
            optimizer__weight_decay=float(self.weight_decay),
            lr=float(self.lr),
            max_epochs=self.max_epochs,
            batch_size=self.batch_size,
            iterator_train=_BatchIterator,
            iterator_train__shuffle=True,
            iterator_valid=_BatchIterator,
            iterator_valid__batch_size=max(self.batch_size, _PREDICT_BATCH_SIZE),
            train_split=self.train_split,
            callbacks=self.callbacks,
            device=device,
            verbose=self.verbose,
        )

    def _fit(self, X, y, sample_weight):
        X, y = validate_data(
            self,
            X,
            y,
            dtype=np.float32,
            order="C",
            multi_output=not isinstance(self, ClassifierMixin),
            y_numeric=not isinstance(self, ClassifierMixin),
        )
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        device = _resolve_device(self.device)
        architecture = self._architecture(X.shape[1], device)
        warm = self._can_continue(architecture)
        base_seed = check_random_state(self.random_state).randint(_SEED_MAX)
        epochs_so_far = len(self.net_.history) if warm else 0
        seed = np.random.SeedSequence([base_seed, epochs_so_far]).generate_state(1)[0]

        # Rows of zero weight are left out, so that they have no effect at all
        # (not even on which rows share a minibatch); _check_sample_weight has
        # refused weights that are all zero.
        keep = sample_weight > 0
        weight = sample_weight[keep]
        weight = (weight / weight.mean()).astype(np.float32)
        X_fit = np.ascontiguousarray(X[keep])  # a copy: writable for torch

        with _seeded_rng(seed, device):
            target = self._warm_target(y) if warm else None
            if target is None:
                y_net, n_outputs, target_attributes = self._encode_target(y)
                self.net_ = self._build_net(X.shape[1], n_outputs, device)
                self.net_.initialize()
            else:
                y_net, target_attributes = target
            y_fit = y_net[keep]
            net = self.net_
            net.max_epochs = self.max_epochs
            net.verbose = self.verbose
            net.partial_fit({"X": X_fit, "sample_weight": weight}, y_fit)

        for name, value in target_attributes.items():
            setattr(self, name, value)
        self._architecture_ = architecture
        self.n_iter_ = len(self.net_.history)
        self.loss_curve_ = [float(loss) for loss in self.net_.history[:, "train_loss"]]
        return self

    @property
    def device_(self):
        """The device the fitted network lives on (after loading, maybe CPU)."""
        check_is_fitted(self, "net_")
        return str(self.net_.device)

    def _forward(self, X):
        """The network's output on ``X`` (after softmax for a classifier), float64."""
        check_is_fitted(self, "net_")
        X = validate_data(self, X, dtype=np.float32, order="C", reset=False)
        if not X.flags.writeable:
            X = X.copy()
        return np.asarray(self.net_.predict_proba(X), dtype=np.float64)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        return tags

    # -- persistence: the net as plain data (see skmoe.torch._persist) --------

    def __getstate__(self):
        # a copy: BaseEstimator hands back the instance's own __dict__ here
        state = dict(super().__getstate__())
        if "net_" in state:
            state["net_"] = _save_net(state["net_"])
        return state

    def __setstate__(self, state):
        saved = state.get("net_")
        if is_saved_module(saved):
            state = {key: value for key, value in state.items() if key != "net_"}
        super().__setstate__(state)
        if is_saved_module(saved):
            self.net_ = self._load_net(saved)

    def _load_net(self, saved):
        """The skorch net :func:`_save_net` saved, built from this estimator."""
        device = str(get_map_location(saved["device"]))
        shape = saved["init_kwargs"]
        net = self._build_net(shape["n_features"], shape["n_outputs"], device)
        # skorch initialises the module from torch's global generator; its
        # weights are overwritten at once, so fork the generator
        with _seeded_rng(0, device):
            net.initialize()
        net.module_.load_state_dict(tensors_from_bytes(saved["state_dict"], device))
        net.optimizer_.load_state_dict(tensors_from_bytes(saved["optimizer"], device))
        net.history = History(saved["history"])
        return net


def _save_net(net):
    """A fitted skorch net as plain data: shape, weights, optimiser, history.

    skorch's own pickled state holds its module, optimiser and callbacks as
    pickle bytes; here only tensors (read back with ``weights_only=True``) and
    plain containers are kept, and the net is rebuilt from the estimator.
    """
    linears = [m for m in net.module_.layers if isinstance(m, nn.Linear)]
    # the output layer may have been widened since the net was built (a class
    # new to a warm-started classifier), so read the shape off the module
    shape = {
        "n_features": linears[0].in_features,
        "n_outputs": linears[-1].out_features,
    }
    return {
        **save_module(net.module_, shape),
        "optimizer": tensors_to_bytes(net.optimizer_.state_dict()),
        "history": [dict(epoch) for epoch in net.history],
        "device": str(net.device),
    }


_PARAMETERS_DOC = """
    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(64,)
        Width of each hidden layer; ``()`` gives a linear model.
    activation : {"relu", "tanh", "logistic", "identity", "gelu"}, default="relu"
        Activation after each hidden layer.
    dropout : float in [0, 1), default=0.0
        Dropout probability after each hidden activation (training only).
    max_epochs : int, default=100
        Passes over the training rows in each call of ``fit`` (with
        ``warm_start=True``, a refit trains this many more epochs).
    lr : float, default=1e-3
        Learning rate of the optimiser.
    batch_size : int, default=128
        Rows per training minibatch (prediction uses batches of
        ``max(batch_size, 1024)`` rows).
    optimizer : {"adam", "adamw", "sgd"} or torch optimiser class, default="adam"
        The optimiser; a class is called as ``optimizer(params, lr=lr,
        weight_decay=weight_decay)``.
    weight_decay : float, default=0.0
        L2 penalty (decoupled for ``"adamw"``).
    train_split : None or callable, default=None
        skorch's internal validation split (e.g. ``skorch.dataset.ValidSplit(5)``).
        ``None`` trains on all the rows, as scikit-learn estimators do.
    callbacks : list of skorch callbacks, default=None
        Extra skorch callbacks (e.g. ``skorch.callbacks.EarlyStopping`` together
        with a ``train_split``).
    device : str or torch.device, default="auto"
        Where the network trains and predicts: ``"auto"`` is ``"cuda"`` when
        ``torch.cuda.is_available()``, else ``"cpu"``; any torch device
        (``"cuda:1"``, ``"mps"``) may be named. ``fit`` raises a ValueError
        for a CUDA or MPS device this machine or torch build lacks.
    warm_start : bool, default=False
        When True, ``fit`` continues training the network of the previous
        ``fit`` (weights and optimiser state) for ``max_epochs`` more epochs,
        so that a mixture's EM iterations continue each expert rather than
        retrain it. It starts afresh instead when the number of features,
        ``hidden_layer_sizes``, ``activation``, ``dropout``, ``lr``,
        ``batch_size``, ``optimizer``, ``weight_decay``, ``train_split``,
        ``callbacks`` or the device have changed{target}.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation, minibatch shuffling and dropout. With an
        int, refits give identical networks on the CPU; CUDA kernels may still
        be nondeterministic (see ``torch.use_deterministic_algorithms``).
        Training forks torch's RNG, so the global torch seed is not changed.
    verbose : int, default=0
        When positive, skorch prints a line per epoch.
"""

_ATTRIBUTES_DOC = """
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined only when X has feature names that are all strings.
    net_ : skorch.NeuralNet
        The fitted skorch net; ``net_.module_`` is the torch module and
        ``net_.history`` the per-epoch record of every fit it went through.
    n_iter_ : int
        Epochs the network has been trained for, over all warm-started fits.
    loss_curve_ : list of float
        Training loss (weighted) after each of those epochs.
    device_ : str
        The device the network is on.
"""


class TorchMLPClassifier(ProbabilisticClassifierMixin, ClassifierMixin, _BaseTorchMLP):
    __doc__ = (
        """Multi-layer perceptron classifier in torch, trained through skorch.

    A fully connected network (``hidden_layer_sizes``, ``activation``,
    ``dropout``) trained with minibatch ``optimizer`` on the cross-entropy,
    weighted by ``sample_weight``. Computation is in float32 on ``device``
    (a GPU where available); probabilities come out as float64. It can be used
    on its own, or as an expert of :class:`~skmoe.MoEClassifier`, where
    ``warm_start=True`` continues each expert's training from one EM iteration
    to the next.

    Needs the optional extra: ``pip install "skmoe[torch]"``.

    Sample weights scale each row's loss: every minibatch's loss is the mean of
    ``w_i * loss_i`` with the weights normalised to mean one, an unbiased
    estimate of the weighted mean loss. Rows of zero weight are removed before
    training and have no effect.
"""
        + _PARAMETERS_DOC.replace(
            "{target}",
            ". Classes are kept:\n"
            "        ``classes_`` holds every class seen since the network was built\n"
            "        (a share of the rows without some class leaves its output unit\n"
            "        in place), and a class new to the network gets a new output unit\n"
            "        (the optimiser's state then restarts)",
        )
        + """
    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels."""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    TorchMLPRegressor : The regression counterpart.
    sklearn.neural_network.MLPClassifier : The NumPy multi-layer perceptron.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from skmoe import TorchMLPClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = make_pipeline(
    ...     StandardScaler(),
    ...     TorchMLPClassifier((16,), max_epochs=50, lr=0.01, random_state=0),
    ... ).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 3)
    >>> bool(clf.score(X, y) > 0.9)
    True
    """
    )

    _net_class = _WeightedNetClassifier
    _criterion_name = "CrossEntropyLoss"

    def _encode_target(self, y):
        check_classification_targets(y)
        classes, y_encoded = np.unique(y, return_inverse=True)
        return y_encoded.astype(np.int64), len(classes), {"classes_": classes}

    def _warm_target(self, y):
        """Keep the classes the network knows; give new ones new output units.

        A mixture's expert sees a different share of the rows at each EM
        iteration, often with some classes missing: the network keeps their
        output units (they are trained down where absent), and a class it has
        not seen before gets a new unit, so warm restarts survive both.
        """
        check_classification_targets(y)
        known, seen = self.classes_, np.unique(y)
        if _label_kind(known.dtype) != _label_kind(seen.dtype):
            return None  # labels of another type: numpy would turn 0 into "0"
        try:
            classes = np.union1d(known, seen)
        except TypeError:  # objects that cannot be ordered together
            return None
        if len(classes) > len(known):
            self._add_output_units(np.searchsorted(classes, known), len(classes))
        y_encoded = np.searchsorted(classes, y)
        return y_encoded.astype(np.int64), {"classes_": classes}

    def _add_output_units(self, kept_rows, n_outputs):
        """Widen the output layer to ``n_outputs`` units; old units move to
        ``kept_rows``. The optimiser restarts (its state is per parameter)."""
        net = self.net_
        old = net.module_.layers[-1]
        new = nn.Linear(old.in_features, n_outputs).to(
            device=old.weight.device, dtype=old.weight.dtype
        )
        kept_rows = torch.as_tensor(kept_rows, device=old.weight.device)
        with torch.no_grad():
            new.weight[kept_rows] = old.weight
            new.bias[kept_rows] = old.bias
        net.module_.layers[-1] = new
        net.initialize_optimizer()

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network on ``X, y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training features (cast to float32).
        y : array-like of shape (n_samples,)
            Class labels.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows' losses; ``None`` weighs every row
            equally.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        return self._fit(X, y, sample_weight)

    def predict_proba(self, X):
        """Class probabilities (softmax of the network's outputs).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes), float64
            Columns follow ``classes_``; rows sum to one.
        """
        proba = self._forward(X)
        proba /= proba.sum(axis=1, keepdims=True)
        return proba


class TorchMLPRegressor(RegressorMixin, _BaseTorchMLP):
    __doc__ = (
        """Multi-layer perceptron regressor in torch, trained through skorch.

    A fully connected network (``hidden_layer_sizes``, ``activation``,
    ``dropout``) trained with minibatch ``optimizer`` on the squared error,
    weighted by ``sample_weight``. Computation is in float32 on ``device``
    (a GPU where available); predictions come out as float64. The target is
    used as given: standardise it (``TransformedTargetRegressor``) when its
    scale is far from one. It can be used on its own, or as an expert of
    :class:`~skmoe.MoERegressor`, where ``warm_start=True`` continues each
    expert's training from one EM iteration to the next.

    Needs the optional extra: ``pip install "skmoe[torch]"``.

    Sample weights scale each row's loss: every minibatch's loss is the mean of
    ``w_i * loss_i`` with the weights normalised to mean one, an unbiased
    estimate of the weighted mean loss. Rows of zero weight are removed before
    training and have no effect. With several targets a row's loss is the mean
    of its squared errors.
"""
        + _PARAMETERS_DOC.replace("{target}", ", or the number of targets")
        + """
    Attributes
    ----------
    n_outputs_ : int
        Number of targets."""
        + _ATTRIBUTES_DOC
        + """
    See Also
    --------
    TorchMLPClassifier : The classification counterpart.
    sklearn.neural_network.MLPRegressor : The NumPy multi-layer perceptron.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe import TorchMLPRegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-1, 1, size=(200, 2))
    >>> y = X[:, 0] - 2 * X[:, 1]
    >>> reg = TorchMLPRegressor((32,), max_epochs=100, lr=0.01,
    ...                         random_state=0).fit(X, y)
    >>> reg.predict(X[:3]).shape
    (3,)
    >>> bool(reg.score(X, y) > 0.9)
    True
    """
    )

    _net_class = _WeightedNetRegressor
    _criterion_name = "MSELoss"

    def _encode_target(self, y):
        y = np.asarray(y, dtype=np.float32)
        if y.ndim == 1:
            y = y.reshape(-1, 1)
        return y, y.shape[1], {"n_outputs_": y.shape[1]}

    def _warm_target(self, y):
        y, n_outputs, attributes = self._encode_target(y)
        if n_outputs != self.n_outputs_:
            return None
        return y, attributes

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, sample_weight=None):
        """Train the network on ``X, y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training features (cast to float32).
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
            Target values (cast to float32).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows' losses; ``None`` weighs every row
            equally.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        return self._fit(X, y, sample_weight)

    def predict(self, X):
        """Predicted targets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples,) or (n_samples, n_targets), float64
            One column per target; 1-d for a single target.
        """
        output = self._forward(X)
        if output.shape[1] == 1:
            return output.ravel()
        return output

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

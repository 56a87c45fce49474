"""Gates: the models that map a sample to a point of the experts' simplex."""

from functools import partial
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, clone
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_array, check_consistent_length, check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.sparsefuncs import inplace_column_scale, min_max_axis
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from . import _torch_bridge
from ._balance import BALANCE_PENALTIES, balance_penalty, z_loss_penalty
from ._routing import log_softmax_rows
from ._validation import densify

_SEED_MAX = np.iinfo(np.int32).max

#: The least weight a warm start of ``ConstantGate._fit_marginal`` starts
#: an expert at (a zero weight has no finite logit).
_TINY_WEIGHT = 1e-12


def fit_gate_features(X, sample_weight):
    """Fit the gate's own preprocessing: mean-impute, then standardise.

    Imputation lets the gate route rows with missing values when every expert
    accepts them; standardising makes the gate's L2 penalty and the k-means
    initialisation blind to the units of each column. Both use weighted
    statistics, so zero-weight rows have no effect. The steps are fitted one
    by one (rather than through ``Pipeline.fit``) so that the weights reach
    them whether or not metadata routing is enabled.

    A sparse ``X`` stays sparse: its scaler is a ``StandardScaler(
    with_mean=False)``, whose ``transform`` divides each column by its
    weighted standard deviation and takes no mean off. It still holds the
    weighted means (``mean_``), and the gates take them off inside their
    products (``(z - m / s) @ W = z @ W - (m / s) @ W``), so that a gate
    fitted on sparse ``X`` solves the same problem as on the same ``X``
    dense, and holds the same parameters (up to rounding, and the solver's
    path). k-means, blind to a shift, clusters the uncentred rows.

    Returns
    -------
    Pipeline
        The fitted imputer and scaler.
    """
    if sp.issparse(X):
        return _fit_sparse_gate_features(X, sample_weight)
    X = np.asarray(X, dtype=np.float64)
    imputer = SimpleImputer(strategy="mean", keep_empty_features=True).fit(X)
    # SimpleImputer takes no sample weights: put the weighted mean of each
    # column's observed values in its place.
    observed = ~np.isnan(X)
    observed_weight = sample_weight @ observed
    weighted_sum = sample_weight @ np.where(observed, X, 0.0)
    _use_weighted_means(imputer, weighted_sum, observed_weight)
    imputed = imputer.transform(X)
    magnitude = _power_of_two_magnitude(np.max(np.abs(imputed), axis=0, initial=0.0))
    scaler = StandardScaler().fit(imputed / magnitude, sample_weight=sample_weight)
    return make_pipeline(imputer, _unscaled(scaler, magnitude))


def _fit_sparse_gate_features(X, sample_weight):
    """:func:`fit_gate_features` for a sparse ``X``: the same weighted means
    (implicit zeros are observed values), scaling without centring."""
    X = check_array(X, accept_sparse="csr", dtype=np.float64, ensure_all_finite=False)
    imputer = SimpleImputer(strategy="mean", keep_empty_features=True).fit(X)
    missing = np.isnan(X.data)
    values = X.copy()
    values.data[missing] = 0.0
    # the weight of each column's missing entries (stored NaN), from the
    # column index of each stored entry
    row_weight = np.repeat(sample_weight, np.diff(X.indptr))
    missing_weight = np.bincount(
        X.indices[missing], weights=row_weight[missing], minlength=X.shape[1]
    )
    _use_weighted_means(
        imputer, values.T @ sample_weight, sample_weight.sum() - missing_weight
    )
    imputed = _imputed_sparse(X, imputer.statistics_)
    low, high = min_max_axis(imputed, axis=0)
    magnitude = _power_of_two_magnitude(np.maximum(np.abs(low), np.abs(high)))
    prescaled = imputed.copy()
    inplace_column_scale(prescaled, 1.0 / magnitude)
    scaler = StandardScaler(with_mean=False).fit(prescaled, sample_weight=sample_weight)
    return make_pipeline(imputer, _unscaled(scaler, magnitude))


def _use_weighted_means(imputer, weighted_sum, observed_weight):
    """Put the weighted mean of each column's observed values in the fitted
    ``imputer``'s statistics (SimpleImputer takes no sample weights)."""
    has_weight = observed_weight > 0
    imputer.statistics_[has_weight] = (
        weighted_sum[has_weight] / observed_weight[has_weight]
    )


def _imputed_sparse(X, statistics):
    """A CSR ``X`` with each stored NaN replaced by its column's statistic."""
    missing = np.isnan(X.data)
    if not missing.any():
        return X
    X = X.copy()
    X.data[missing] = statistics[X.indices[missing]]
    return X


def _power_of_two_magnitude(max_abs):
    """A power of two near each column's largest magnitude (1 for a column
    of zeros, or of non-finite values).

    The scaler is fitted on each column divided by it, and the factor folded
    back afterwards (:func:`_unscaled`): squares of values near 1e200 would
    overflow the variance. Scaling by a power of two is exact, so the result
    is the same standardisation to the bit.
    """
    max_abs[~(max_abs > 0) | ~np.isfinite(max_abs)] = 1.0
    return np.exp2(np.floor(np.log2(max_abs)))


def _unscaled(scaler, magnitude):
    """Fold the power-of-two prescale back into a scaler fitted on ``X /
    magnitude``, so that it applies to ``X`` itself."""
    scaler.mean_ *= magnitude
    scaler.scale_ *= magnitude
    with np.errstate(over="ignore"):
        scaler.var_ *= magnitude**2
    return scaler


def _linear_logits(Z, coef, intercept, offset):
    """``Z @ coef + intercept``, for features ``Z - offset``.

    ``offset`` is None for dense ``Z`` (centred already); for a sparse ``Z``
    (scaled, not centred) it is each column's ``mean_ / scale_``, taken off
    in the product rather than from ``Z``, which would make it dense.
    """
    logits = Z @ coef + intercept
    if offset is not None:
        logits -= offset @ coef
    return logits


def routing_log_proba(gate, X, may_be_missing=True):
    """Log weights of a fitted gate on rows the mixture has validated.

    The mixture's prediction calls this rather than
    ``gate.predict_log_proba``: the gates of :mod:`skmoe` skip the
    validation the mixture has done (and, without missing values, the
    search for them), and compute each row on its own, so that a batch's
    weights are its rows' weights to the bit. Any other gate object is
    called through its ``predict_log_proba``.

    Parameters
    ----------
    gate : gate estimator
    X : ndarray of shape (n_samples, n_features) or CSR matrix
        Float64, C-ordered when dense, checked against the gate's features.
    may_be_missing : bool, default=True
        False when ``X`` is known to hold no NaN.

    Returns
    -------
    ndarray of shape (n_samples, n_experts)
    """
    fast = getattr(gate, "_routing_log_proba", None)
    if fast is None:
        return gate.predict_log_proba(X)
    return fast(X, may_be_missing)


def routing_logits(gate, X, may_be_missing=True):
    """The logits whose ``log_softmax`` are :func:`routing_log_proba`, for
    a gate that has them (:class:`SoftmaxGate`); None for any other."""
    logits = getattr(gate, "_routing_logits", None)
    return None if logits is None else logits(X, may_be_missing)


def _check_balanced(balanced, n_experts):
    """The ``balanced`` mask as a boolean array, or None for every expert."""
    if balanced is None:
        return None
    mask = np.asarray(balanced)
    if mask.dtype != bool or mask.shape != (n_experts,):
        raise ValueError(
            "balanced must be a boolean mask with one entry per expert, shape "
            f"({n_experts},); got dtype {mask.dtype} and shape {mask.shape}."
        )
    return mask


def _check_routing(top_k, noisy, always_on, n_experts):
    """Check ``fit_mixture``'s routing options."""
    if top_k is not None and not (isinstance(top_k, Integral) and top_k >= 1):
        raise ValueError(f"top_k must be a positive integer or None; got {top_k!r}.")
    if noisy and top_k is None:
        raise ValueError(
            "noisy=True needs top_k: the noise only serves to choose each row's "
            "top-k experts (noisy top-k gating); pass top_k, or noisy=False."
        )
    if always_on is not None and not (
        isinstance(always_on, Integral) and 0 <= always_on < n_experts
    ):
        raise ValueError(
            f"always_on must be the column of an expert, in [0, {n_experts}), or "
            f"None; got {always_on!r}."
        )


def _check_routing_bias(routing_bias, bias_rate, top_k, n_experts):
    """``fit_mixture``'s routing bias as a float array (zeros when None),
    checked with its rate; None without a rate."""
    if bias_rate is None:
        if routing_bias is not None:
            raise ValueError("routing_bias is given without a bias_rate to move it.")
        return None
    if not (isinstance(bias_rate, Real) and bias_rate >= 0):
        raise ValueError(f"bias_rate must be a number >= 0; got {bias_rate!r}.")
    if top_k is None:
        raise ValueError(
            "A routing bias chooses each row's top_k experts; with top_k=None "
            "every expert is chosen. Set top_k, or leave bias_rate None."
        )
    bias = np.zeros(n_experts) if routing_bias is None else routing_bias
    bias = np.array(bias, dtype=np.float64)
    if bias.shape != (n_experts,) or not np.isfinite(bias).all():
        raise ValueError(
            f"routing_bias must hold {n_experts} finite numbers, one per expert; "
            f"got shape {bias.shape}."
        )
    return bias


def _check_log_likelihood(log_likelihood, weights):
    """Refuse NaN, +inf, and rows of positive weight without an expert."""
    if np.isnan(log_likelihood).any() or np.isposinf(log_likelihood).any():
        raise ValueError(
            "log_likelihood must be finite, or -inf where an expert is not "
            "available to a row; it holds NaN or +inf."
        )
    stranded = np.flatnonzero((weights > 0) & ~np.isfinite(log_likelihood).any(axis=1))
    if stranded.size:
        raise ValueError(
            f"{stranded.size} rows (e.g. row {stranded[0]}) have no available "
            "expert: every log-likelihood of the row is -inf."
        )


class _BaseGate(BaseEstimator):
    """What SoftmaxGate and MLPGate share: the gate protocol but ``fit``.

    Subclasses define ``decision_function`` and, for the backprop step
    ``fit_mixture`` (in torch, see :mod:`skmoe.torch.gates`, reached through
    :mod:`skmoe._torch_bridge`):

    - ``_l2_strength(total_weight)``: ``lambda`` of the L2 term
      ``lambda / 2 * ||W||^2`` of the objective (a weighted mean over rows);
    - ``_training_device()``: where torch trains;
    - ``_network(n_features, n_experts, *, warm, noisy, random_state)``: the
      ``GateNetwork`` to train, the current gate's when ``warm`` and
      compatible;
    - ``_keep_network(network)``: store the trained network.
    """

    _parameter_constraints: dict = {
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_epochs": [Interval(Integral, 1, None, closed="left")],
        "balance": [StrOptions(set(BALANCE_PENALTIES)), None],
        "balance_strength": [Interval(Real, 0, None, closed="left")],
        "z_loss": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # sparse X is scaled without centring (see fit_gate_features), or
        # densified where torch needs dense features
        tags.input_tags.sparse = True
        return tags

    def _check_inputs(self, X, targets, sample_weight, balanced):
        """``(targets, weights, balanced)`` as arrays, checked against ``X``."""
        targets = np.asarray(targets, dtype=np.float64)
        if targets.ndim != 2:
            raise ValueError(
                "Expected a 2-d array of shape (n_samples, n_experts); got shape "
                f"{targets.shape}."
            )
        n_samples, n_experts = targets.shape
        weights = (
            np.ones(n_samples)
            if sample_weight is None
            else np.asarray(sample_weight, dtype=np.float64)
        )
        check_consistent_length(X, targets, weights)
        return targets, weights, _check_balanced(balanced, n_experts)

    def _imputed(self, X):
        """``X`` checked, with its missing values imputed as ``features_`` does.

        Returns ``X`` and the fitted scaler. Prediction applies the fitted
        statistics itself rather than through ``features_.transform``,
        whose two transformers validate their input again: on 50,000 rows of
        41 features they took 56 ms against 10 ms for the gate's own product.
        The result is the same (tested).
        """
        check_is_fitted(self)
        scaler = self.features_[-1]
        X = check_array(
            X, accept_sparse="csr", dtype=np.float64, ensure_all_finite="allow-nan"
        )
        if X.shape[1] != scaler.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} was "
                f"fitted with {scaler.n_features_in_}."
            )
        return self._imputed_checked(X)

    def _imputed_checked(self, X):
        """:meth:`_imputed` of an ``X`` already checked."""
        imputer, scaler = self.features_[0], self.features_[-1]
        if sp.issparse(X):
            return _imputed_sparse(X, imputer.statistics_), scaler
        missing = np.isnan(X)
        if missing.any():
            X = np.where(missing, imputer.statistics_, X)
        return X, scaler

    def _standardised(self, X):
        """``z(X)``: the gate's imputed, standardised features, dense (a
        sparse ``X`` densified within :data:`~skmoe._validation.MAX_DENSE_BYTES`)."""
        X, scaler = self._imputed(X)
        X = densify(X, type(self).__name__)
        return (X - scaler.mean_) / scaler.scale_

    def _fit_features(self, X, weights):
        """Fit the gate's preprocessing (``features_``); return ``z(X)``.

        The features are refitted even on a warm start: the data, not the
        starting point, decide them. For a sparse ``X``, ``z(X)`` is sparse
        and not centred: ``z(X) - self._offset(z(X))`` are the features.
        """
        self.features_ = fit_gate_features(X, weights)
        return self.features_.transform(X)

    def _fit_dense_features(self, X, weights):
        """:meth:`_fit_features`, dense and centred, for torch's tensors (a
        sparse ``X`` densified within :data:`~skmoe._validation.MAX_DENSE_BYTES`)."""
        Z = self._fit_features(X, weights)
        offset = self._offset(Z)
        Z = densify(Z, type(self).__name__)
        return Z if offset is None else Z - offset

    def _offset(self, Z):
        """What the sparse features ``Z`` were not centred by: each column's
        ``mean_ / scale_`` (see :func:`fit_gate_features`); None for dense
        ``Z``, which is centred."""
        if not sp.issparse(Z):
            return None
        scaler = self.features_[-1]
        return scaler.mean_ / scaler.scale_

    def _random_state(self, random_state=None, *, restart=False):
        """The generator one training call draws its seeds from.

        The caller's ``random_state`` when given. Otherwise the gate's own
        stream, started from ``self.random_state`` at a cold start and
        continued by the calls after it: consecutive calls draw fresh
        shuffles and noise, and the same sequence of calls on a gate with
        the same int ``random_state`` gives the same results.
        """
        if random_state is not None:
            return check_random_state(random_state)
        if restart or not hasattr(self, "_seed_stream"):
            self._seed_stream = check_random_state(self.random_state)
        return self._seed_stream

    def fit_mixture(
        self,
        X,
        log_likelihood,
        sample_weight=None,
        *,
        top_k=None,
        noisy=False,
        balanced=None,
        always_on=None,
        random_state=None,
        routing_bias=None,
        bias_rate=None,
    ):
        """One backprop step: train the gate on the mixture's likelihood.

        Trains the gate for ``n_epochs`` epochs of minibatch Adam on the
        negative log-likelihood of the mixture, the experts held fixed (their
        log-likelihoods given), plus the L2 term and the penalties of
        ``fit``. Starts from the current parameters when fitted (a warm
        start), else initialises them. With ``h`` the gate's logits (plus
        ``eps * sigma(x)``, ``eps ~ N(0, 1)``, when ``noisy``), ``v`` the
        sample weights normalised over the minibatch and ``S_i`` the experts
        row ``i`` is trained on, each minibatch minimises::

            - sum_i v_i log sum_{j in S_i} softmax_{S_i}(h_i)_j p_ij
            + L2 + balance_strength * B + z_loss * Z

        where ``p_ij = exp(log_likelihood[i, j])`` and ``softmax_{S_i}`` is
        the softmax over ``S_i`` alone. ``S_i`` holds the ``min(2 k,
        n_available)`` largest logits of ``h_i`` among the row's available
        experts when ``top_k=k`` (all available experts when None), plus the
        ``always_on`` expert. Twice ``k`` mirrors the E-step of EM: with
        ``k=1`` a softmax over one expert has no gradient, so training mixes
        each row's ``2 k`` favourites. The balancing penalty ``B`` and the
        z-loss ``Z`` act on the clean logits (``B`` on the ``balanced``
        columns only). When ``noisy`` with ``balance="importance"``, Shazeer
        et al.'s load penalty (``skmoe.torch.balance.load_penalty``) of the
        ``balanced`` columns is added with the same strength, as in their
        paper (``w_importance = w_load``).

        The noise (its scale ``sigma(x) = softplus(x W_noise + b_noise)``,
        learned, starting from zero weights) is used in training only:
        ``decision_function`` and ``predict_proba`` give the clean gate.

        With ``bias_rate`` (the mixtures' ``balance="bias"``, ``skmoe/_bias.py``)
        a routing bias ``b`` is added to ``h_i`` to choose ``S_i``, and only
        to choose: the weights are the softmax of ``h_i`` over ``S_i``. After
        every minibatch each balanced expert's bias moves against the sign
        of its load error, the load of expert ``j`` being the weighted share
        of the minibatch's rows whose ``top_k`` largest clean logits plus
        ``b`` include ``j``::

            b_j += bias_rate * spread * sign(mean_l load_l - load_j)

        ``spread`` the minibatch's weighted mean standard deviation of a row's
        logits over the balanced experts. The bias is no parameter (no
        gradient reaches it); the last one, centred over the balanced
        experts, is stored as ``routing_bias_``.

        Needs torch: ``pip install "skmoe[torch]"``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        log_likelihood : array-like of shape (n_samples, n_experts)
            ``log p_j(y_i | x_i)``, each expert's log-likelihood of each row;
            ``-inf`` marks an expert not available to a row (a dropped
            expert), which is never routed to.
        sample_weight : array-like of shape (n_samples,), default=None
            Rows of zero weight are removed before training: they have no
            effect at all.
        top_k : int, default=None
            Experts per row at prediction; None mixes them all.
        noisy : bool, default=False
            Noisy top-k gating in training (Shazeer et al., 2017); needs
            ``top_k``.
        balanced : array-like of bool of shape (n_experts,), default=None
            The experts the balancing penalty acts on; None for all.
        always_on : int, default=None
            Column of a shared expert, in every row's ``S_i`` beside the
            chosen ones.
        random_state : int, RandomState instance or None, default=None
            Seeds this step's shuffling and noise. None draws from the gate's
            own stream (started from its ``random_state``), so that
            consecutive steps draw afresh.
        routing_bias : array-like of shape (n_experts,), default=None
            With ``bias_rate``, where the routing bias starts (None: zeros);
            not modified.
        bias_rate : float, default=None
            The routing bias's step per minibatch, in units of the logits'
            spread; needs ``top_k``. None: no bias.

        Returns
        -------
        self : object
            The gate, with ``n_iter_`` (epochs run) and ``loss_`` (mean loss
            of the last epoch), and ``routing_bias_`` with ``bias_rate``.
        """
        self._validate_params()
        torch_gates = _torch_bridge.gate_training(type(self).__name__)
        log_likelihood, weights, balanced = self._check_inputs(
            X, log_likelihood, sample_weight, balanced
        )
        _check_routing(top_k, noisy, always_on, log_likelihood.shape[1])
        routing_bias = _check_routing_bias(
            routing_bias, bias_rate, top_k, log_likelihood.shape[1]
        )
        if not weights.sum() > 0:
            raise ValueError("sample_weight sums to zero: there is nothing to fit.")
        _check_log_likelihood(log_likelihood, weights)
        # torch trains on dense tensors
        Z = self._fit_dense_features(X, weights)
        torch_gates.train_on_mixture(
            self,
            Z,
            log_likelihood,
            weights,
            top_k=top_k,
            noisy=noisy,
            balanced=balanced,
            always_on=always_on,
            random_state=self._random_state(
                random_state, restart=not hasattr(self, "n_experts_")
            ),
            routing_bias=routing_bias,
            bias_rate=bias_rate,
        )
        if bias_rate is None and hasattr(self, "routing_bias_"):
            # a bias of an earlier step would describe another training
            del self.routing_bias_
        return self

    def decision_function(self, X):  # pragma: no cover - overridden
        """Gate logits, shape (n_samples, n_experts)."""
        raise NotImplementedError

    def predict_log_proba(self, X):
        """Log gate weights, shape (n_samples, n_experts)."""
        return log_softmax(self.decision_function(X), axis=1)

    def predict_proba(self, X):
        """Gate weights, shape (n_samples, n_experts); rows sum to one."""
        return softmax(self.decision_function(X), axis=1)

    def _routing_log_proba(self, X, may_be_missing=True):
        """:meth:`predict_log_proba` of the mixture's prediction (see
        :func:`routing_log_proba`); a gate without a faster way uses it."""
        return self.predict_log_proba(X)


class SoftmaxGate(_BaseGate):
    """Linear softmax gate fitted to soft targets (responsibilities).

    The gate gives ``g(x) = softmax(s(x))`` with logits ``s(x) = W^T z(x) + b``,
    ``z`` the standardised (mean-imputed) features. Fitting minimises the
    weighted cross-entropy between the gate and target responsibilities ``R``
    (rows in the simplex), an L2 penalty on ``W``, and optional penalties on
    the gate over the whole sample (``w`` the sample weights)::

        L(W, b) = sum_i w_i * (-sum_j R_ij log g_j(x_i)) / sum_i w_i
                  + ||W||^2 / (2 * C * sum_i w_i)
                  + balance_strength * B(S) + z_loss * Z(S)

    where ``S`` stacks the logits of every row, ``B`` is the balancing penalty
    named by ``balance`` and ``Z`` the router z-loss. Without the last two
    terms this is ``LogisticRegression``'s objective
    ``C * sum_i w_i * (-sum_j R_ij log g_j(x_i)) + ||W||^2 / 2`` divided by
    ``C * sum_i w_i``, so ``C`` keeps its meaning. The cross-entropy and the
    penalties are all weighted means over the rows, so ``balance_strength`` and
    ``z_loss`` weigh the same against the fit whatever the number of rows.

    The balancing penalties measure how evenly the experts share the rows'
    *top choices* (what ``top_k=1`` routes by), not the mean gate weight,
    which a gate can even out by flattening itself while its top choices
    stay put. With ``E`` experts, ``v_i = w_i / sum_k w_k``, ``f_j`` the
    weighted share of rows whose largest logit is expert ``j``'s and ``L_j``
    its differentiable stand-in, the *soft top-choice load* (the weighted
    mean of ``softmax(c(x) / (0.1 s(x)))``, ``c`` the centred logits and
    ``s`` their spread: a sharpened gate, blind to the size of the logits;
    ``skmoe._balance`` defines it), the penalties are:

    - ``"switch"``: ``B = (E * sum_j f_j L_j - 1) / (E - 1)`` (Fedus et al.,
      "Switch Transformers", JMLR 2022, who use the mean gate for ``L``).
      ``f`` is piecewise constant and, as in the paper, held fixed in the
      gradient.
    - ``"importance"``: ``B = CV(L)^2 / (E - 1) = (E * sum_j L_j^2 - 1) /
      (E - 1)``, the squared coefficient of variation of the load (Shazeer
      et al., "Outrageously Large Neural Networks", ICLR 2017, on the summed
      gate weights).
    - ``"entropy"``: ``B = KL(L || uniform) / log E``.
    - router z-loss: ``Z = sum_i v_i (log sum_j exp s_j(x_i))^2`` (Zoph et al.,
      "ST-MoE", 2022), which keeps the logits small, for stability.

    **The scale of** ``balance_strength``: each ``B`` is 0 when the load is
    even and 1 when one expert takes every row, for any number of experts
    and rows, so a strength is the most the penalty can add to the
    objective, in the units of the fit term (nats per row). A moderate
    imbalance costs much less than that (one expert at 2.5 times the mean
    load of 8 costs about 0.05), hence the default of 10. During development
    (credit_data, 8 trees, top_k=1) strength 10 brought the held-out
    max/mean top-choice load from about 2.5 to 1.1-1.2 under
    ``training="crossfit"``, to about 1.3-1.6 under ``"em"`` and
    ``"backprop"``; see the user guide for the measured table. Each ``B``
    and its gradient is in ``skmoe._balance``. Inside EM the penalties enter
    the gate's M-step: the gate trades fidelity to the responsibilities for
    a more even use of the experts.

    A balancing penalty calls a uniform gate balanced (every top choice
    is a tie), and any step away breaks the ties at once into the routing
    the fit prefers: from there a strong penalty would keep the solver
    where routing sends every row to the first expert. So when the solver
    starts at a uniform gate (a cold start, or one fitted to even
    responsibilities), it first solves with the penalty on the gate's own
    mean weight (``"importance"`` for ``"switch"``), which is smooth there,
    and then with the penalty itself from that solution.

    The objective is minimised by scipy's L-BFGS-B with the exact gradient
    (chained through the logits, which are linear in ``W`` and ``b``),
    started from the previous solution when refitted inside EM (a warm
    start). With ``balance="switch"`` the objective is piecewise smooth (``f``
    jumps when a row's top expert changes), so L-BFGS-B may stop on a jump
    before ``tol`` is met. ``fit(..., balanced=mask)`` applies ``B`` to the
    logits of the experts in ``mask`` only (with their own softmax; see
    ``skmoe._balance.balance_penalty``); the z-loss acts on every column.

    ``fit_mixture`` is the backprop alternative to the EM step: a few epochs
    of minibatch Adam (``learning_rate``, ``batch_size``, ``n_epochs``) on
    the mixture's negative log-likelihood given the experts'
    log-likelihoods, with the same L2 term ``||W||^2 / (2 * C * sum_i w_i)``
    and penalties. It runs in torch (float32, on the CPU: a linear gate is
    too small to gain from a GPU) and writes the parameters back as float64
    arrays; noisy top-k gating adds the noise weights ``noise_coef_`` and
    ``noise_intercept_``. ``fit`` itself never imports torch.

    Parameters
    ----------
    C : float, default=1.0
        Inverse strength of the L2 penalty, as in ``LogisticRegression``.
    max_iter : int, default=100
        Most L-BFGS iterations per fit.
    tol : float, default=1e-4
        Gradient tolerance of L-BFGS (``gtol``), as in ``LogisticRegression``.
    balance : {"switch", "importance", "entropy"} or None, default=None
        Balancing penalty on the gate's use of the experts; None for none.
    balance_strength : float, default=10.0
        Weight of the balancing penalty in the objective: the most it can
        add, in nats per row, the penalty being 0 for an even load and 1
        when one expert takes every row. Ignored when ``balance`` is None.
        (The papers' ``alpha``, e.g. Fedus et al.'s 0.01, weighs a penalty
        of another scale, against a loss summed over a network's layers.)
    z_loss : float, default=0.0
        Weight of the router z-loss in the objective; 0 turns it off (ST-MoE
        uses 0.001).
    learning_rate : float, default=0.05
        Adam's step size in ``fit_mixture``. Larger than a network's usual
        1e-3: the linear gate's objective is well conditioned (standardised
        features), and ``fit_mixture`` runs few epochs per call. (On three
        regimes of 1,000 rows, ``MoERegressor(training="backprop")``
        converged in 9 iterations at 0.05 and had not after 20 at 0.01.)
    batch_size : int, default=256
        Rows per minibatch in ``fit_mixture``.
    n_epochs : int, default=5
        Epochs per ``fit_mixture`` call.
    random_state : int, RandomState instance or None, default=None
        Seeds the shuffling and noise of ``fit_mixture`` (``fit`` is
        deterministic).

    Attributes
    ----------
    coef_ : ndarray of shape (n_features, n_experts)
        Weights on the standardised features.
    intercept_ : ndarray of shape (n_experts,)
    noise_coef_ : ndarray of shape (n_features, n_experts)
        Weights of the noise scale ``softplus(z @ noise_coef_ +
        noise_intercept_)`` of noisy top-k gating; set by
        ``fit_mixture(..., noisy=True)``, removed by a cold ``fit``.
    noise_intercept_ : ndarray of shape (n_experts,)
    features_ : Pipeline
        The fitted imputer and scaler giving ``z``. Fitted on sparse ``X``,
        the scaler does not centre (``with_mean=False``, so that ``X`` stays
        sparse) and the gate takes ``mean_ / scale_`` off inside its
        products: the same ``z``, the same gate.
    n_experts_ : int
    n_iter_ : int
        L-BFGS iterations of the last ``fit``; epochs of the last
        ``fit_mixture``.
    loss_ : float
        The objective at the end of the last ``fit``; the mean minibatch
        loss of the last epoch of ``fit_mixture``.
    routing_bias_ : ndarray of shape (n_experts,)
        The routing bias after the last ``fit_mixture(..., bias_rate=...)``
        (``balance="bias"``); absent otherwise.

    See Also
    --------
    MLPGate : A gate whose logits are a neural network (needs torch).

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe import SoftmaxGate
    >>> X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    >>> R = np.array([[1.0, 0.0], [0.9, 0.1], [0.1, 0.9], [0.0, 1.0]])
    >>> gate = SoftmaxGate(C=10.0).fit(X, R)
    >>> gate.predict_proba([[-3.0], [3.0]]).round(2)
    array([[0.99, 0.01],
           [0.01, 0.99]])
    """

    _parameter_constraints: dict = {
        **_BaseGate._parameter_constraints,
        "C": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        C=1.0,
        max_iter=100,
        tol=1e-4,
        balance=None,
        balance_strength=10.0,
        z_loss=0.0,
        learning_rate=0.05,
        batch_size=256,
        n_epochs=5,
        random_state=None,
    ):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.balance = balance
        self.balance_strength = balance_strength
        self.z_loss = z_loss
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.n_epochs = n_epochs
        self.random_state = random_state

    def fit(
        self,
        X,
        responsibilities,
        sample_weight=None,
        *,
        warm_start=False,
        balanced=None,
    ):
        """Fit the gate to target responsibilities.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        responsibilities : array-like of shape (n_samples, n_experts)
            Rows in the simplex: the soft targets.
        sample_weight : array-like of shape (n_samples,), default=None
        warm_start : bool, default=False
            Start the solver from the current ``coef_`` and ``intercept_``
            (used by EM, where consecutive targets differ little). It changes
            the cost of the fit, not its solution. A cold fit forgets the
            noise weights of ``fit_mixture``.
        balanced : array-like of bool of shape (n_experts,), default=None
            The experts the balancing penalty acts on; None for all. Their
            logits get the penalty of their own softmax, the other columns
            none of it (a dropped expert, or an always-on shared expert,
            must not be balanced).

        Returns
        -------
        self : SoftmaxGate
        """
        self._validate_params()
        R, weights, balanced = self._check_inputs(
            X, responsibilities, sample_weight, balanced
        )
        Z = self._fit_features(X, weights)
        # The products are skinny (n x d times d x n_experts): BLAS threads
        # gain nothing (n=50,000, d=30, 8 experts on an idle 2-core machine:
        # 0.163 s with 2 threads, 0.167 s with 1) and cost 2.5x when the cores
        # are busy, e.g. with the experts' refits running beside it.
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit_standardised(
                Z, R, weights, warm_start=warm_start, balanced=balanced
            )

    def _fit_standardised(self, Z, R, weights, *, warm_start=False, balanced=None):
        """``fit``'s solver, on features already standardised by ``features_``.

        For callers that fit one gate many times on the same rows (the EM of
        cross-fitted training): the features are fitted once, and the
        inputs are not checked again. The caller holds the BLAS thread limit.
        """
        return self._solve(
            Z,
            weights,
            R.shape[1],
            partial(_soft_target_term, R),
            warm_start=warm_start,
            balanced=balanced,
        )

    def _fit_marginal(self, Z, log_evidence, weights, *, mask=None, warm_start=False):
        """Fit the gate to fixed experts' evidence by its marginal likelihood.

        Minimises ``-sum_i w_i log sum_j g_ij exp(L_ij)`` (plus the penalties)
        over the gate's parameters, where ``L`` is each expert's fixed
        log-likelihood of each row. Its gradient in the logits is
        ``w_i (g_ij - R_ij)`` with ``R`` the posterior at the current
        parameters: the M-step's gradient at the E-step's responsibilities
        (Fisher's identity). One quasi-Newton solve so reaches a fixed point
        of the EM over fixed evidence, where EM spends one solve on every
        iteration (Salakhutdinov, Roweis and Ghahramani, "Optimization with
        EM and expectation-conjugate-gradient", ICML 2003).

        Parameters
        ----------
        Z : ndarray of shape (n_samples, n_features)
            Standardised features (``features_`` already fitted).
        log_evidence : ndarray of shape (n_samples, n_experts)
            ``L``; ``-inf`` where an expert has nothing to say.
        weights : ndarray of shape (n_samples,)
        mask : ndarray of bool, broadcastable to ``L``, default=None
            The experts each row may be routed to: the gate is renormalised
            over them (as routing to the active experts, or to a row's top-k,
            renormalises). None for all.
        warm_start : bool, default=False
        """
        return self._solve(
            Z,
            weights,
            log_evidence.shape[1],
            partial(_marginal_term, log_evidence, mask),
            warm_start=warm_start,
            balanced=None,
        )

    def _fit_mean(self, Z, means, y, weights, *, mask=None, warm_start=False):
        """Fit the gate to fixed experts' predictions by the error of the mean.

        Minimises ``sum_i w_i (y_i - sum_j g_ij m_ij)^2 / sum_i w_i`` (plus
        the penalties): the loss of what a regressor's ``predict`` returns,
        where the marginal likelihood rewards a sharp gate. ``means`` and
        ``y`` come scaled by the target's standard deviation, so that the
        loss is on the scale of ``1 - R^2`` and ``C`` means about what it
        means for the likelihood.

        Parameters
        ----------
        Z : ndarray of shape (n_samples, n_features)
        means : ndarray of shape (n_samples, n_experts)
            Each expert's fixed prediction of each row.
        y : ndarray of shape (n_samples,)
        weights : ndarray of shape (n_samples,)
        mask : ndarray of bool, broadcastable to ``means``, default=None
        warm_start : bool, default=False
        """
        return self._solve(
            Z,
            weights,
            means.shape[1],
            partial(_mean_squared_term, means, y, mask),
            warm_start=warm_start,
            balanced=None,
        )

    def _solve(self, Z, weights, n_experts, data_term, *, warm_start, balanced):
        """L-BFGS over the coefficients: ``data_term`` plus the penalties.

        ``data_term(logits, row_weights)`` returns the data's part of the
        loss and its gradient in the logits.
        """
        n_features = Z.shape[1]
        if not warm_start:
            for name in ("noise_coef_", "noise_intercept_"):
                self.__dict__.pop(name, None)

        start = np.zeros((n_features + 1, n_experts))
        if warm_start and getattr(self, "coef_", np.empty((0, 0))).shape == (
            n_features,
            n_experts,
        ):
            start[:-1] = self.coef_
            start[-1] = self.intercept_

        offset = self._offset(Z)
        total = weights.sum()
        scale = 1.0 / total if total > 0 else 1.0
        penalty = scale / self.C
        shape = start.shape
        row_weights = scale * weights[:, None]
        # Penalties on the logits, each a (function, strength) pair.
        logit_penalties = []
        if self.z_loss > 0:
            logit_penalties.append((z_loss_penalty, self.z_loss))

        def loss_and_gradient(flat, logit_penalties):
            params = flat.reshape(shape)
            coef, intercept = params[:-1], params[-1]
            logits = _linear_logits(Z, coef, intercept, offset)
            loss, residual = data_term(logits, row_weights)
            loss += 0.5 * penalty * np.sum(coef**2)
            for penalty_function, strength in logit_penalties:
                value, logit_gradient = penalty_function(logits, weights)
                loss += strength * value
                residual += strength * logit_gradient
            gradient = np.empty_like(params)
            gradient[:-1] = Z.T @ residual + penalty * coef
            gradient[-1] = residual.sum(axis=0)
            if offset is not None:
                # the product with the centred Z: Z.T @ r - offset (x) sum(r)
                gradient[:-1] -= np.outer(offset, gradient[-1])
            return loss, gradient.ravel()

        def solve(start, logit_penalties):
            return minimize(
                partial(loss_and_gradient, logit_penalties=logit_penalties),
                start.ravel(),
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": self.max_iter, "gtol": self.tol},
            )

        n_iter = 0
        if self.balance is not None and self.balance_strength > 0:
            if not np.ptp(start, axis=1).any():
                # From a uniform gate (a cold start, or one fitted to even
                # responsibilities) every row's top choice is a tie, which the
                # penalties call balanced; a step of any size breaks the ties
                # into the routing the fit prefers, so at a high strength the
                # solver cannot leave (and routing sends every row to the
                # first expert). The penalty on the gate itself is smooth
                # there: a first solve with it leads away, the load spread.
                soft = self._balance_term(balanced, soft=True)
                first = solve(start, [soft, *logit_penalties])
                start, n_iter = first.x, int(first.nit)
            logit_penalties.insert(0, self._balance_term(balanced))
        result = solve(start, logit_penalties)
        n_iter += int(result.nit)
        params = result.x.reshape(shape)
        self.coef_ = params[:-1]
        self.intercept_ = params[-1]
        self.n_experts_ = n_experts
        self.n_iter_ = n_iter
        self.loss_ = float(result.fun)
        return self

    def _balance_term(self, balanced, soft=False):
        """The balancing penalty as a ``(function, strength)`` pair.

        ``soft`` puts the mean gate in place of the soft top-choice load
        (``temperature=np.inf``), and the switch loss, whose shares of top
        choices are a tie at the uniform gate, by the importance loss.
        """
        name, options = self.balance, {}
        if soft:
            name = "importance" if name == "switch" else name
            options["temperature"] = np.inf
        function = partial(balance_penalty, name, balanced=balanced, **options)
        return function, self.balance_strength

    def decision_function(self, X):
        """Gate logits, shape (n_samples, n_experts)."""
        X, scaler = self._imputed(X)
        # the standardisation folded into the linear map: no (n, d) copy of
        # X is standardised, the product takes raw features
        coef = self.coef_ / scaler.scale_[:, None]
        intercept = self.intercept_ - (scaler.mean_ / scaler.scale_) @ self.coef_
        return X @ coef + intercept

    def _folded(self):
        """``(coef, intercept)`` of the logits of raw (imputed) features: the
        standardisation folded into the linear map, as in
        :meth:`decision_function`.

        Computed once per fitted state and cached, keyed on the fitted
        arrays themselves (a refit makes new ones). Threads that predict
        together may each compute it; they get the same numbers, and the
        cache is replaced by one assignment, so none sees a half-made one.
        """
        scaler = self.features_[-1]
        key = (self.coef_, self.intercept_, scaler.mean_, scaler.scale_)
        cached = getattr(self, "_folded_cache", None)
        if cached is not None and all(a is b for a, b in zip(cached[0], key)):
            return cached[1]
        coef = self.coef_ / scaler.scale_[:, None]
        intercept = self.intercept_ - (scaler.mean_ / scaler.scale_) @ self.coef_
        self._folded_cache = (key, (coef, intercept))
        return coef, intercept

    def _routing_log_proba(self, X, may_be_missing=True):
        """Log gate weights of rows already validated by the mixture.

        ``X`` is a float64 C-ordered array or a CSR matrix with the fitted
        number of features. Each dense row's logits are a product of its
        own (a matrix product over a stack of one-row matrices), so that a
        row gets the same bits whatever rows share its batch: a BLAS
        product of the whole batch sums in an order that depends on the
        batch's size. It costs about what that product costs. Sparse
        rows are multiplied row by row by scipy already.
        """
        return log_softmax_rows(self._routing_logits(X, may_be_missing))

    def _routing_logits(self, X, may_be_missing=True):
        """The logits of :meth:`_routing_log_proba` (a new array)."""
        if may_be_missing:
            X, _ = self._imputed_checked(X)
        coef, intercept = self._folded()
        if sp.issparse(X):
            return X @ coef + intercept
        X = np.ascontiguousarray(X)
        logits = np.matmul(X[:, None, :], coef)[:, 0, :]
        logits += intercept
        return logits

    def _standardised_logits(self, Z):
        """The logits of rows whose features ``Z`` are already computed
        (``features_.transform``), sparse or dense."""
        return _linear_logits(Z, self.coef_, self.intercept_, self._offset(Z))

    # -- the backprop step's hooks (see _BaseGate) --------------------------------

    def _l2_strength(self, total_weight):
        return 1.0 / (self.C * total_weight)

    def _training_device(self):
        return "cpu"

    def _network(self, n_features, n_experts, *, warm, noisy, random_state):
        """A linear GateNetwork holding the current parameters, else zeros.

        Zeros are the uniform gate, where ``fit`` starts too: deterministic,
        so ``random_state`` is not used.
        """
        linear_gate_network = _torch_bridge.gate_training(
            type(self).__name__
        ).linear_gate_network

        def current(coef_name, intercept_name):
            coef = getattr(self, coef_name, None)
            if warm and coef is not None and coef.shape == (n_features, n_experts):
                return coef, getattr(self, intercept_name)
            return np.zeros((n_features, n_experts)), np.zeros(n_experts)

        noise = current("noise_coef_", "noise_intercept_") if noisy else None
        return linear_gate_network(*current("coef_", "intercept_"), noise=noise)

    def _keep_network(self, network):
        torch_gates = _torch_bridge.gate_training(type(self).__name__)
        self.coef_, self.intercept_, noise = torch_gates.linear_gate_parameters(network)
        if noise is not None:
            self.noise_coef_, self.noise_intercept_ = noise


def _soft_target_term(R, logits, row_weights):
    """Cross-entropy of the gate to fixed soft targets ``R`` (EM's M-step).

    Each row of ``R`` sums to one, so ``sum_j R_ij log g_ij = sum_j R_ij
    z_ij - logsumexp_j z_ij``; the gradient in the logits is ``w_i (g_ij -
    R_ij)``.
    """
    weighted_targets = row_weights * R
    peak = logits.max(axis=1, keepdims=True)
    exp_logits = np.exp(logits - peak)
    normaliser = exp_logits.sum(axis=1, keepdims=True)
    log_normaliser = peak + np.log(normaliser)
    loss = np.sum(row_weights * log_normaliser) - np.sum(weighted_targets * logits)
    residual = row_weights * (exp_logits / normaliser) - weighted_targets
    return loss, residual


def _marginal_term(log_evidence, mask, logits, row_weights):
    """Negative marginal log-likelihood of a mixture over fixed evidence.

    ``-sum_i w_i log sum_j g_ij exp(L_ij)``, with ``g`` the softmax of the
    logits over the experts ``mask`` allows; the gradient in the logits is
    ``w_i (g_ij - R_ij)``, ``R`` the posterior.
    """
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    peak = logits.max(axis=1, keepdims=True)
    shifted = logits - peak
    exp_logits = np.exp(shifted)
    normaliser = exp_logits.sum(axis=1, keepdims=True)
    joint = shifted - np.log(normaliser) + log_evidence
    joint_peak = joint.max(axis=1, keepdims=True)
    exp_joint = np.exp(joint - joint_peak)
    mixture = exp_joint.sum(axis=1, keepdims=True)
    loss = -np.sum(row_weights * (joint_peak + np.log(mixture)))
    residual = row_weights * (exp_logits / normaliser - exp_joint / mixture)
    return loss, residual


def _mean_squared_term(means, y, mask, logits, row_weights):
    """Squared error of the gate-weighted mean of fixed predictions.

    ``sum_i w_i (y_i - mu_i)^2`` with ``mu_i = sum_j g_ij m_ij``; the
    gradient in the logits is ``-2 w_i (y_i - mu_i) g_ij (m_ij - mu_i)``.
    """
    if mask is not None:
        logits = np.where(mask, logits, -np.inf)
    gate = np.exp(logits - logits.max(axis=1, keepdims=True))
    gate /= gate.sum(axis=1, keepdims=True)
    # the masked experts' predictions do not count (0 times anything)
    spread = np.where(gate > 0, means, 0.0)
    mean = np.sum(gate * spread, axis=1, keepdims=True)
    residual = y[:, None] - mean
    loss = np.sum(row_weights * residual**2)
    gradient = -2.0 * row_weights * residual * gate * (spread - mean)
    return loss, gradient


class ConstantGate(BaseEstimator):
    """A gate that gives every sample the same weights: a global blend.

    It is the input-independent limit of a gate, ``g(x) = pi``. Fitted to
    responsibilities ``R`` it takes their weighted mean, ``pi_j = sum_i w_i
    R_ij / sum_i w_i``, which is EM's exact M-step for mixture weights. With
    ``weights`` given it keeps them and learns nothing: a one-hot ``weights``
    sends every sample to one expert (the others get weight zero, and are
    never evaluated in prediction).

    Under ``training="crossfit"`` the constant gate and each single expert
    are among the gate candidates, so that a mixture can always fall back
    to a blend, or to its best expert.

    Parameters
    ----------
    weights : array-like of shape (n_experts,), default=None
        Fixed, non-negative weights (normalised to sum to one); None learns
        them in ``fit``.

    Attributes
    ----------
    weights_ : ndarray of shape (n_experts,)
        The gate's weights; sum to one.
    n_experts_ : int
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe import ConstantGate
    >>> R = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.5, 0.5]])
    >>> ConstantGate().fit(np.zeros((4, 1)), R).weights_
    array([0.5, 0.5])
    >>> ConstantGate(weights=[0, 1]).fit(np.zeros((4, 1)), R).predict_proba(
    ...     np.zeros((1, 1)))
    array([[0., 1.]])
    """

    _parameter_constraints: dict = {"weights": ["array-like", None]}

    def __init__(self, weights=None):
        self.weights = weights

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def fit(self, X, responsibilities, sample_weight=None, *, warm_start=False):
        """Take the weighted mean of the responsibilities (or the fixed weights).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Only its shape is read: the gate does not depend on it.
        responsibilities : array-like of shape (n_samples, n_experts)
        sample_weight : array-like of shape (n_samples,), default=None
        warm_start : bool, default=False
            Accepted for the gate protocol; the solution is closed-form.

        Returns
        -------
        self : ConstantGate
        """
        self._validate_params()
        X = check_array(
            X, accept_sparse=True, dtype=np.float64, ensure_all_finite="allow-nan"
        )
        R = np.asarray(responsibilities, dtype=np.float64)
        if R.ndim != 2:
            raise ValueError(
                "Expected responsibilities of shape (n_samples, n_experts); got "
                f"shape {R.shape}."
            )
        weights = (
            np.ones(len(R))
            if sample_weight is None
            else np.asarray(sample_weight, dtype=np.float64)
        )
        check_consistent_length(X, R, weights)
        if self.weights is None:
            pi = weights @ R
        else:
            pi = np.asarray(self.weights, dtype=np.float64).reshape(-1)
            if pi.shape != (R.shape[1],) or np.any(pi < 0) or not pi.sum() > 0:
                raise ValueError(
                    f"weights must hold {R.shape[1]} non-negative numbers, one per "
                    f"expert, with a positive sum; got {self.weights!r}."
                )
        self.weights_ = pi / pi.sum()
        self.n_experts_ = R.shape[1]
        self.n_features_in_ = X.shape[1]
        return self

    def _fit_marginal(self, log_evidence, weights, *, mask=None, warm_start=False):
        """Fit the weights to fixed experts' evidence by its marginal likelihood.

        The constant gate's counterpart of ``SoftmaxGate._fit_marginal``:
        maximises ``sum_i w_i log sum_j pi_j exp(L_ij)`` over the simplex
        (the weights as the softmax of free logits) in one quasi-Newton
        solve, where EM's closed-form M-step converges linearly, slowly when
        the experts agree. Fixed ``weights`` are kept. After ``fit``, which
        sets ``n_features_in_``.

        Parameters
        ----------
        log_evidence : ndarray of shape (n_samples, n_experts)
        weights : ndarray of shape (n_samples,)
        mask : ndarray of bool of shape (n_samples, n_experts), default=None
            The experts each row may be routed to; an expert no row may be
            routed to gets weight zero.
        warm_start : bool, default=False
            Start from the current ``weights_``.
        """
        return self._solve(
            weights,
            partial(_marginal_term, log_evidence, mask),
            log_evidence.shape,
            mask,
            warm_start,
        )

    def _fit_mean(self, means, y, weights, *, mask=None, warm_start=False):
        """Fit the weights by the squared error of the weighted mean of fixed
        predictions: the constant gate's ``SoftmaxGate._fit_mean``, a
        blend with weights on the simplex (as a non-negative stacking whose
        weights add up to one)."""
        return self._solve(
            weights,
            partial(_mean_squared_term, means, y, mask),
            means.shape,
            mask,
            warm_start,
        )

    def _solve(self, weights, data_term, shape, mask, warm_start):
        """L-BFGS over the weights' logits; fixed ``weights`` are kept."""
        n_experts = shape[1]
        if self.weights is not None:
            return self
        start = np.zeros(n_experts)
        if warm_start and getattr(self, "weights_", np.empty(0)).shape == (n_experts,):
            with np.errstate(divide="ignore"):
                start = np.maximum(np.log(self.weights_), np.log(_TINY_WEIGHT))
        row_weights = (weights / weights.sum())[:, None]

        def loss_and_gradient(logits):
            loss, residual = data_term(np.broadcast_to(logits, shape), row_weights)
            return loss, residual.sum(axis=0)

        result = minimize(loss_and_gradient, start, jac=True, method="L-BFGS-B")
        logits = result.x
        if mask is not None:
            logits = np.where(np.any(mask, axis=0), logits, -np.inf)
        self.weights_ = softmax(logits)
        self.n_experts_ = n_experts
        return self

    def predict_log_proba(self, X):
        """Log gate weights, shape (n_samples, n_experts); -inf for zero weights."""
        check_is_fitted(self)
        X = check_array(
            X, accept_sparse=True, dtype=np.float64, ensure_all_finite="allow-nan"
        )
        with np.errstate(divide="ignore"):
            log_weights = np.log(self.weights_)
        return np.tile(log_weights, (X.shape[0], 1))

    def predict_proba(self, X):
        """Gate weights, shape (n_samples, n_experts); rows sum to one."""
        check_is_fitted(self)
        X = check_array(
            X, accept_sparse=True, dtype=np.float64, ensure_all_finite="allow-nan"
        )
        return np.tile(self.weights_, (X.shape[0], 1))

    def _routing_log_proba(self, X, may_be_missing=True):
        """:meth:`predict_log_proba` of rows the mixture has validated."""
        with np.errstate(divide="ignore"):
            log_weights = np.log(self.weights_)
        return np.tile(log_weights, (X.shape[0], 1))


def _mlp_gate(**params):
    # torch is an optional extra: reached only when an MLP gate is asked for
    return _torch_bridge.public_name("MLPGate")(**params)


#: The gates a mixture's ``gate`` can name.
GATES = {"softmax": SoftmaxGate, "mlp": _mlp_gate}

#: Mixture parameters that, when set, override the gate's own of the same name.
GATE_OVERRIDES = ("balance", "balance_strength", "z_loss")


def resolve_gate(gate, overrides):
    """The gate a mixture fits: the named or given one, with its overrides.

    Parameters
    ----------
    gate : str or gate estimator
        The mixture's ``gate``: a name of :data:`GATES`, or a gate, which is
        cloned (never modified).
    overrides : dict
        The mixture's values of :data:`GATE_OVERRIDES`; None leaves the
        gate's own.

    Returns
    -------
    gate estimator
    """
    gate = GATES[gate]() if isinstance(gate, str) else clone(gate)
    overrides = {name: value for name, value in overrides.items() if value is not None}
    missing = sorted(set(overrides) - set(gate.get_params(deep=False)))
    if missing:
        raise ValueError(
            f"{', '.join(missing)} set on the mixture override the gate's own "
            f"parameter(s) of that name, but {type(gate).__name__} has none."
        )
    return gate.set_params(**overrides)

"""MoERegressor: a gated mixture of regressors with Gaussian noise."""

import numpy as np
from sklearn.base import RegressorMixin

from ._base import BaseMixtureOfExperts
from ._likelihood import GaussianLikelihood


class MoERegressor(RegressorMixin, BaseMixtureOfExperts):
    """Mixture-of-experts regressor: a learned gate routes each sample to experts.

    The model is ``p(y | x) = sum_j g_j(x) N(y; f_j(x), s_j^2)``: expert ``j``
    predicts the mean ``f_j(x)`` and has a noise variance ``s_j^2``, its
    weighted residual variance (at least a millionth of the target's
    variance). :meth:`predict` gives the mixture mean; with
    ``return_std=True`` also the mixture's standard deviation, which adds the
    spread between the experts to their own noise.

    By default (``training="crossfit"``) the gate learns from the experts'
    out-of-fold predictions, as in :class:`MoEClassifier`: each expert's
    noise variance is re-estimated in every M-step of the gate's EM from its
    responsibility-weighted out-of-fold residuals, and the gate (down to
    the constant gate and each single expert) is chosen by the held-out
    squared error of the mixture mean, what :meth:`predict` returns.

    ``X`` may be a scipy sparse matrix (or array), e.g. the output of a
    ``ColumnTransformer`` with a ``OneHotEncoder``: the experts receive it as
    CSR (their row subsets too) and the gate works on it without densifying,
    which is accepted when every expert accepts sparse input (an expert that
    refuses it raises :class:`SparseInputError`, naming it).

    Parameters
    ----------
    experts : list of (str, estimator) or estimator
        The experts: ``(name, regressor)`` pairs (an expert can be set to
        ``'drop'``), or one regressor cloned ``n_experts`` times. An expert
        whose ``fit`` has no ``sample_weight`` is trained on a weighted
        resample of its share (drawn from ``random_state``); for a Pipeline
        the weights go to its final step. With metadata routing enabled,
        any other fit metadata an expert requests (``groups``, an
        ``eval_set``) reaches each of its fits, on that fit's rows (see
        :meth:`get_metadata_routing`).
    n_experts : int, default=None
        Number of clones when ``experts`` is a single estimator.
    top_k : int, default=None
        Route each sample to its ``top_k`` highest-weighted experts only;
        ``None`` mixes all experts.
    training : {"crossfit", "em", "hard_em", "backprop"}, default="crossfit"
        Cross-fitted training (above), or one of the in-sample algorithms:
        soft responsibilities, each sample wholly to its best expert, or the
        gate trained by gradient steps on the mixture likelihood (needs
        torch; see :class:`MoEClassifier`). With :class:`TorchMLPRegressor`
        experts of one architecture, ``"backprop"`` trains the gate and the
        experts end to end as one torch module (see ``fused_``).
    specialise : "auto" or int, default="auto"
        Most specialisation rounds under ``"crossfit"``, each kept only if
        the held-out squared error improves; ``"auto"`` is 0 for a list of
        experts and 10 for clones (see :class:`MoEClassifier`).
    gate : {"softmax", "mlp"} or gate object, default="softmax"
        ``"softmax"`` is :class:`SoftmaxGate`, ``"mlp"`` :class:`MLPGate`
        (torch), each with its defaults; under ``"crossfit"``, ``"softmax"``
        stands for ``C`` in (0.01, 0.1, 1), chosen by cross-validation.
    balance, balance_strength, z_loss : default=None
        When set, override the gate's parameters of the same names
        (balancing penalty; see :class:`SoftmaxGate`); ``balance="sinkhorn"``
        balances the E-step's responsibilities instead, and
        ``balance="bias"`` the top-k choice by a per-expert bias
        (``routing_bias_``, stepped at the rate ``balance_strength``), as
        for :class:`MoEClassifier`.
    noisy_gating : bool, default=False
        Learned, input-dependent noise on the gate's top-k choice during
        backprop training (Shazeer et al. 2017); off in prediction.
    capacity_factor : float, default=None
        In training, no expert takes more than
        ``min(n, ceil(capacity_factor * top_k * n / n_experts))`` rows; the
        overflow goes to each row's next choice (see :class:`MoEClassifier`).
    shared_expert : regressor, default=None
        An expert that is always on, fitted once on every row; the routed
        experts are mixed around it (the last column of ``gate_proba``).
    init : {"auto", "kmeans", "random", "uniform"} or array-like, default="auto"
        Initial responsibilities; ``"auto"`` is ``"kmeans"`` for clones of
        one template and ``"uniform"`` for a list (see :class:`MoEClassifier`).
    max_iter : int, default=20
        Most EM iterations per initialisation (under ``"crossfit"``, of each
        EM of the gate).
    tol : float, default=1e-3
        Stop when the mean per-sample negative log-likelihood changes by less
        than ``tol``. The iterate with the lowest loss is kept.
    n_init : int, default=1
        Number of initialisations of the in-sample algorithms; the one whose
        kept iterate has the lowest loss is kept. Not with ``"crossfit"``.
        Restarts from ``init="uniform"`` (the ``"auto"`` start of a list of
        experts) or an array differ only by the seeds they draw; when every
        restart fits the same, a UserWarning says that ``n_init > 1`` only
        costs time.
    cv : int, cross-validation generator or iterable, default=None
        The folds of ``"crossfit"`` (``None`` is 5, as in
        ``StackingRegressor``); for the in-sample algorithms, when set, the
        E-step scores rows with out-of-fold predictions (see
        :class:`MoEClassifier`). A splitter that requests ``groups``
        (``GroupKFold``) receives those given to ``fit``, with metadata
        routing enabled.
    n_jobs : int, default=None
        Experts (and folds) fitted in parallel, each (fold x expert) fit one
        joblib task of one pool per fit (a Dask or Ray backend spreads them
        over a cluster); results do not depend on it.
    random_state : int, RandomState instance or None, default=None
        Makes every result repeatable when an int.
    verbose : int, default=0
        When positive, report the loss of every EM iteration (every round
        under ``"crossfit"``, every epoch of a fused torch mixture) and a
        summary of each initialisation. The lines are INFO records of the
        ``"skmoe"`` loggers (:mod:`logging`): without any logging
        configuration they are written to stderr; a user who configures
        logging receives them through their own handlers, and
        ``logging.getLogger("skmoe").setLevel(logging.WARNING)`` silences
        them.

    Attributes
    ----------
    experts_ : list of estimator
        Fitted experts, in the order of ``expert_names_``.
    shared_expert_ : estimator or None
        The fitted shared expert (also the last of ``experts_``), or None.
    expert_names_ : list of str
    named_experts_ : :class:`~sklearn.utils.Bunch`
    gate_ : estimator
    routing_bias_ : ndarray of shape (n_experts,) or None
        With ``balance="bias"``, the bias on the gate's scores in the top-k
        choice (see :class:`MoEClassifier`); None otherwise.
    noise_variance_ : ndarray of shape (n_experts,)
        Each expert's noise variance ``s_j^2``.
    active_experts_ : ndarray of bool, shape (n_experts,)
    expert_load_ : ndarray of shape (n_experts,)
        Share of the training samples each expert is responsible for, from
        the E-step of the kept iterate (under ``"crossfit"``, of the gate's
        EM over the out-of-fold evidence).
    top_choice_load_ : ndarray of shape (n_experts,)
        Weighted fraction of the training rows whose largest routing weight
        (``gate_proba``) is the expert's, under the fitted gate; sums to one.
    gate_load_ : ndarray of shape (n_experts,)
        Weighted mean of each expert's routing weight (``gate_proba``) on the
        training rows, under the fitted gate: its share of the gate's mass;
        sums to one (with ``top_k=1`` and no shared expert, it equals
        ``top_choice_load_``). Unlike ``expert_load_`` it is the gate's
        routing alone, not the E-step's responsibilities (which also weigh
        how well each expert fits ``y``).
    gate_entropy_ : float
        Weighted mean entropy (nats) of the fitted gate's weights over the
        active experts on the training rows, before top-k truncation: 0 for
        a gate that is certain of every row, ``log(n_active)`` for one that
        cannot tell the experts apart.
    n_dead_experts_ : int
        Number of experts that no training row is routed to (all their
        routing weights are zero), dropped experts included.
    objective_curve_ : list of float
        What training minimises, per iteration: ``loss_curve_`` plus the
        gate's balancing penalty and z-loss at their strengths, with
        ``capacity_factor`` the loss of the mixture routed within capacity.
        The kept iterate is the one with the lowest objective (without
        penalties or capacity, the lowest loss).
    loss_ : float
        Weighted mean negative log-likelihood of the training data under the
        kept iterate (the lowest in ``loss_curve_`` unless penalties or
        capacity are set, see ``objective_curve_``; with ``cv``, of their
        out-of-fold predictions). Under ``"crossfit"``, the held-out squared
        error of the mixture mean of the kept round.
    loss_curve_ : list of float
        The loss per EM iteration; under ``"crossfit"``, the held-out squared
        error of the mixture mean per round (see :class:`MoEClassifier`).
    n_iter_ : int
    converged_ : bool
    training_strategy_ : str
        The algorithm that ran (see :class:`MoEClassifier`).
    gate_selection_ : dict
        Under ``"crossfit"`` only: the gate candidates, their held-out loss
        (squared error of the mean) and log-likelihood (``nan`` where the
        regularisation path stopped first), and the one chosen.
    oof_log_likelihood_ : list of float
        Under ``"crossfit"`` only: the held-out mean log-likelihood of the
        mixture per round.
    n_specialisation_rounds_ : int
        Under ``"crossfit"`` only: the specialisation rounds kept.
    fused_ : FusedResult or None
        The gate and :class:`TorchMLPRegressor` experts trained end to end
        as one torch module, when they were (see :class:`MoEClassifier`);
        None otherwise.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined only when X has feature names that are all strings.

    See Also
    --------
    MoEClassifier : The classification counterpart.
    sklearn.ensemble.StackingRegressor : One combination for every sample.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> from skmoe import MoERegressor
    >>> rng = np.random.RandomState(0)
    >>> X = rng.uniform(-1, 1, size=(400, 1))
    >>> y = np.where(X[:, 0] < 0, -3 * X[:, 0], 2 * X[:, 0] + 1)
    >>> moe = MoERegressor(LinearRegression(), n_experts=2, top_k=1,
    ...                    random_state=0).fit(X, y)
    >>> moe.predict([[-0.5], [0.5]]).round(2)
    array([1.5, 2. ])
    """

    _expert_kind = "regressor"

    def _encode_for_experts(self, y):
        return np.asarray(y, dtype=np.float64)

    def _fitted_likelihood(self):
        return GaussianLikelihood()

    def _prepare_target(self, y, sample_weight):
        y = np.asarray(y, dtype=np.float64)
        mean = np.average(y, weights=sample_weight)
        variance = np.average((y - mean) ** 2, weights=sample_weight)
        return y, GaussianLikelihood(), variance if variance > 0 else 1.0

    @property
    def noise_variance_(self):
        return np.array([np.nan if s is None else s for s in self._noise])

    def predict(self, X, return_std=False):
        """Mixture mean, and optionally the mixture's standard deviation.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        return_std : bool, default=False
            Also return ``sqrt(sum_j g_j (s_j^2 + f_j^2) - mean^2)``: each
            expert's noise plus the spread between experts.

        Returns
        -------
        y_mean : ndarray of shape (n_samples,)
        y_std : ndarray of shape (n_samples,)
            Only with ``return_std=True``.
        """
        X, may_be_missing = self._checked_X(X)
        if getattr(self, "fused_", None) is not None:
            # the fused module evaluates the routed experts stacked together
            return self.fused_.predict(X, return_std=return_std)
        mean = np.zeros(X.shape[0])
        second_moment = np.zeros(X.shape[0]) if return_std else None
        rows_of = slice(None)

        def combine(j, rows, weights, output):
            at = rows_of if rows is None else rows
            mean[at] += weights * output
            if return_std:
                second_moment[at] += weights * (self._noise[j] + output**2)

        self._mix_routed(X, may_be_missing, combine)
        if not return_std:
            return mean
        return mean, np.sqrt(np.maximum(second_moment - mean**2, 0.0))

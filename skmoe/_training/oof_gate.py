"""The gate of cross-fitted training: EM over fixed out-of-fold evidence.

The experts' out-of-fold outputs are fixed: what each expert, fitted
without row ``i``, says of row ``i``. The gate is fitted to them by EM,

* E-step: ``R_ij`` proportional to ``g_j(x_i) p_j(y_i | x_i)``;
* M-step: ``gate.fit(X, R)`` (and, for regression, each expert's noise
  variance from its responsibility-weighted out-of-fold residuals),

with no expert refitted, so that a gate fit costs a few gate solves. Which
gate (its strength of regularisation down to the constant gate, or a single
expert) is chosen by cross-validation over the same fixed evidence, by the
held-out loss of what ``predict`` returns: log-loss of ``predict_proba``,
squared error of the mean.
"""

from dataclasses import dataclass, replace

import numpy as np
from scipy.special import log_softmax, logsumexp
from sklearn.base import clone
from sklearn.model_selection import KFold

from .._bias import BIAS, balance_bias, loads_balanced
from .._gates import ConstantGate, SoftmaxGate, fit_gate_features
from .._likelihood import GaussianLikelihood
from .._routing import routed_log_weights, top_k_mask
from .._sinkhorn import SINKHORN, sinkhorn_log_responsibilities

#: The strengths of regularisation the default softmax gate is chosen among
#: (``SoftmaxGate.C``, as LogisticRegression's); the constant gate is their
#: limit C -> 0 and a candidate too.
SOFTMAX_C_GRID = (0.01, 0.1, 1.0)

#: Folds of the cross-validation that chooses the gate.
GATE_FOLDS = 3


class OutOfFoldEvidence:
    """What the experts' out-of-fold outputs say of each training row.

    Parameters
    ----------
    likelihood : ClassificationLikelihood or GaussianLikelihood
    outputs : list of ndarray
        Each expert's out-of-fold output on every row (class probabilities,
        or means).
    y, sample_weight : ndarray of shape (n_samples,)
    y_scale : float
        The target's weighted variance (sets the regressors' noise floor).
    active : ndarray of bool of shape (n_experts,), default=None
        The experts that can be routed to; the others (collapsed: no rows
        to fit on) have no evidence, a log-likelihood of ``-inf``. None for
        every expert.
    """

    def __init__(self, likelihood, outputs, y, sample_weight, y_scale, active=None):
        self.likelihood = likelihood
        self.y = y
        self.sample_weight = sample_weight
        self.y_scale = y_scale
        self.n_experts = len(outputs)
        self.active = np.ones(self.n_experts, dtype=bool) if active is None else active
        self.regression = isinstance(likelihood, GaussianLikelihood)
        if self.regression:
            self.means = np.column_stack(outputs)
            self.means[:, ~self.active] = 0.0
        else:
            # log p_j(y_i | x_i): all that log-loss and the E-step need
            self.fixed = np.column_stack(
                [
                    likelihood.log_likelihood(output, y, None)
                    if alive
                    else np.full(len(y), -np.inf)
                    for output, alive in zip(outputs, self.active)
                ]
            )

    def noise(self, rows, R):
        """The M-step of the noise: each expert's weighted residual variance."""
        if not self.regression:
            return [None] * self.n_experts
        weights = self.sample_weight[rows, None] * R
        return [
            self.likelihood.noise(
                self.means[rows, j], self.y[rows], weights[:, j], self.y_scale
            )
            for j in range(self.n_experts)
        ]

    def log_likelihood(self, rows, noise):
        """``log p_j(y_i | x_i)`` on ``rows``, shape (n_rows, n_experts)."""
        if not self.regression:
            return self.fixed[rows]
        return np.column_stack(
            [
                self.likelihood.log_likelihood(
                    self.means[rows, j], self.y[rows], noise[j]
                )
                if self.active[j]
                else np.full(len(rows), -np.inf)
                for j in range(self.n_experts)
            ]
        )

    def row_losses(self, rows, log_routing):
        """The loss of what ``predict`` returns, row by row.

        Log-loss of the mixture's class probabilities; squared error of the
        mixture's mean for regression.

        Parameters
        ----------
        rows : ndarray of int
        log_routing : ndarray of shape (n_rows, n_experts)
            Log routing weights (``-inf`` where a row is not routed).

        Returns
        -------
        ndarray of shape (n_rows,)
        """
        if not self.regression:
            return -logsumexp(log_routing + self.fixed[rows], axis=1)
        mean = np.sum(np.exp(log_routing) * self.means[rows], axis=1)
        return (self.y[rows] - mean) ** 2

    def prediction_loss(self, rows, log_routing):
        """Weighted mean of :meth:`row_losses` on ``rows``."""
        return float(
            np.average(
                self.row_losses(rows, log_routing), weights=self.sample_weight[rows]
            )
        )

    def mixture_log_likelihood(self, rows, log_routing, noise):
        """Weighted mean log-likelihood of the mixture on ``rows``."""
        joint = log_routing + np.where(
            np.isfinite(log_routing), self.log_likelihood(rows, noise), 0.0
        )
        return float(
            np.average(logsumexp(joint, axis=1), weights=self.sample_weight[rows])
        )


@dataclass(frozen=True)
class GateFit:
    """A gate fitted by EM over fixed evidence, and what it ended at."""

    gate: object
    responsibilities: np.ndarray
    noise: list
    n_iter: int
    #: ``balance="bias"``: the routing bias the gate chooses with
    bias: np.ndarray = None


class GateRows:
    """The rows a gate's EM fits on, with their gate features.

    Every candidate of a selection fold fits on the same rows: a
    :class:`~skmoe.SoftmaxGate`'s imputation and scaling of them is fitted
    once (:meth:`features`) and shared, rather than refitted by each.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    rows : ndarray of int
    weights : ndarray of shape (n_samples,)
        Every row's sample weight.
    """

    def __init__(self, X, rows, weights):
        self.index = rows
        self.X = X[rows]
        self.weights = weights[rows]
        self._features = None

    def features(self):
        """The fitted imputer and scaler, and the standardised rows."""
        if self._features is None:
            pipeline = fit_gate_features(self.X, self.weights)
            self._features = (pipeline, pipeline.transform(self.X))
        return self._features


class _GateOnRows:
    """One gate's steps and log weights on a fixed set of rows.

    A :class:`~skmoe.SoftmaxGate` solves on the standardised rows (its
    ``_fit_standardised`` and ``_fit_marginal``), rather than refitting and
    re-validating its features at every step: the rows do not change
    within an EM. Any other gate is fitted through its public ``fit``.
    """

    def __init__(self, gate, rows, *, marginal=True):
        self.gate = gate
        self.X_rows = rows.X
        self.weights = rows.weights
        self.Z = None
        if isinstance(gate, SoftmaxGate):
            gate._validate_params()
            gate.features_, self.Z = rows.features()
        # the softmax gate's solvers take the standardised rows first; the
        # constant gate's need no features
        self._features = () if self.Z is None else (self.Z,)
        #: whether the gate's step is a solve of the marginal likelihood
        self.solves_marginal = marginal and isinstance(
            gate, (SoftmaxGate, ConstantGate)
        )

    def fit(self, R, warm_start):
        """EM's M-step: the gate fitted to the responsibilities ``R``."""
        if self.Z is None:
            self.gate.fit(self.X_rows, R, self.weights, warm_start=warm_start)
        else:
            self.gate._fit_standardised(self.Z, R, self.weights, warm_start=warm_start)

    def fit_marginal(self, log_evidence, mask):
        """The gate's E- and M-steps in one solve, warm."""
        self.gate._fit_marginal(
            *self._features, log_evidence, self.weights, mask=mask, warm_start=True
        )

    def fit_mean(self, means, y, mask):
        """The gate fitted by the squared error of the mixture mean, warm."""
        self.gate._fit_mean(
            *self._features, means, y, self.weights, mask=mask, warm_start=True
        )

    def log_proba(self):
        if isinstance(self.gate, ConstantGate):
            with np.errstate(divide="ignore"):
                return np.tile(np.log(self.gate.weights_), (len(self.weights), 1))
        if self.Z is None:
            return self.gate.predict_log_proba(self.X_rows)
        return log_softmax(self.gate._standardised_logits(self.Z), axis=1)


def _routable(log_gate, active, n_candidates, bias=None):
    """The experts each row's E-step may look at: the active ones, and of
    those (with ``n_candidates``) the row's favourites (by the gate plus the
    routing ``bias``); None for all."""
    if n_candidates is None and active.all():
        return None
    log_gate = np.where(active, log_gate, -np.inf)
    return top_k_mask(log_gate, n_candidates, bias=bias)


def fit_gate_em(
    gate,
    rows,
    evidence,
    *,
    max_iter,
    tol,
    start=None,
    warm=False,
    top_k=None,
    marginal=True,
    sinkhorn=False,
    truncate=None,
    bias_rate=None,
    bias=None,
):
    """EM for the gate alone, the experts' out-of-fold outputs held fixed.

    A gate's M-step is ``gate.fit(X, R)``. A :class:`~skmoe.SoftmaxGate`
    instead takes its E- and M-steps together, one quasi-Newton solve of
    the marginal likelihood for the current noise and routing mask (its
    ``_fit_marginal``): that reaches the fixed point EM iterates towards at
    the cost of about one M-step. Its outer iterations only update what the
    solve holds fixed, the regressors' noise and the rows' top-``2k``
    favourites; a dense classifier's gate needs one (section 2.6 of the
    user guide has the cost, measured by the quick benchmark).

    Parameters
    ----------
    gate : gate estimator
        Fitted in place (``gate.fit(X, R, sample_weight, warm_start=...)``).
    rows : GateRows
        The rows to fit on.
    evidence : OutOfFoldEvidence
    max_iter : int
        Most EM iterations.
    tol : float
        Stop when the weighted mean negative log-likelihood improves by less.
    start : ndarray of shape (len(rows), n_experts), default=None
        Starting responsibilities; uniform when None.
    warm : bool, default=False
        Start the gate's solver from its current parameters.
    top_k : int, default=None
        With ``top_k=k`` the E-step scores each row's ``2k`` gate
        favourites only (the gate renormalised over them), as EM's E-step
        does (section 3.1 of the user guide): the gate learns to put its
        mass where the truncated mixture of prediction will look, instead
        of spreading it over experts that truncation drops.
    marginal : bool, default=True
        False runs the plain EM whatever the gate (to compare the two).
    sinkhorn : bool, default=False
        Balance the E-step's responsibilities (``skmoe/_sinkhorn.py``); the
        plain EM then runs, its E-step being no longer the posterior.
    truncate : int, default=None
        The routing's ``top_k``, for balancing: with ``sinkhorn``, keep each
        row's ``truncate`` largest balanced responsibilities, renormalised;
        with ``bias_rate``, the choice the bias balances.
    bias_rate : float, default=None
        ``balance="bias"`` (``skmoe/_bias.py``): after each of the gate's
        steps the routing bias steps at this rate until each row's
        ``truncate`` largest of the gate plus the bias are balanced over
        the rows, and the E-step's favourites are chosen with it. The plain
        EM then runs, fitting the gate to the posterior truncated to each
        row's ``truncate`` most responsible experts, as in-sample EM's
        E-step truncates (the cross-fitted experts' evidence rarely tells
        all of them apart, and a gate fitted to it alone scored some of
        them alike on every row, which no bias can balance). It does not
        stop before the routing is balanced. None: no bias.
    bias : ndarray of shape (n_experts,), default=None
        With ``bias_rate``, where the bias starts (None: zeros).

    Returns
    -------
    GateFit
    """
    weights, index = rows.weights, rows.index
    n_candidates = (
        None if top_k is None or 2 * top_k >= evidence.n_experts else 2 * top_k
    )
    R = (
        np.full((len(index), evidence.n_experts), 1.0 / evidence.n_experts)
        if start is None
        else start
    )
    # balanced or truncated, the E-step is no longer the posterior that a
    # marginal solve maximises
    plain = sinkhorn or bias_rate is not None
    on_rows = _GateOnRows(gate, rows, marginal=marginal and not plain)
    # what a marginal solve holds fixed and an outer iteration may change
    nothing_to_update = not evidence.regression and n_candidates is None
    if bias_rate is not None and bias is None:
        bias = np.zeros(evidence.n_experts)
    even = True
    previous = np.inf
    for iteration in range(max_iter):
        noise = evidence.noise(index, R)
        if not on_rows.solves_marginal or (iteration == 0 and not warm):
            # a cold softmax gate starts its solve from the starting
            # responsibilities' M-step, where EM would
            on_rows.fit(R, warm_start=warm or iteration > 0)
        if on_rows.solves_marginal:
            on_rows.fit_marginal(
                evidence.log_likelihood(index, noise),
                _routable(on_rows.log_proba(), evidence.active, n_candidates, bias),
            )
        log_gate = on_rows.log_proba()
        if bias_rate is not None:
            bias, load = balance_bias(
                np.where(evidence.active, log_gate, -np.inf),
                bias,
                top_k=truncate,
                rate=bias_rate,
                sample_weight=weights,
                balanced=evidence.active,
            )
            even = loads_balanced(load[evidence.active])
        mask = _routable(log_gate, evidence.active, n_candidates, bias)
        if mask is not None:
            log_gate = routed_log_weights(log_gate, mask)
        joint = log_gate + evidence.log_likelihood(index, noise)
        mixture = logsumexp(joint, axis=1, keepdims=True)
        if sinkhorn:
            balanced = sinkhorn_log_responsibilities(joint, weights)
            R = np.exp(routed_log_weights(balanced, top_k_mask(balanced, truncate)))
        elif bias_rate is not None:
            R = np.exp(routed_log_weights(joint, top_k_mask(joint, truncate)))
        else:
            R = np.exp(joint - mixture)
        loss = -float(np.average(mixture[:, 0], weights=weights))
        settled = previous - loss < tol or (
            on_rows.solves_marginal and nothing_to_update
        )
        if settled and even:
            break
        previous = loss
    return GateFit(gate, R, noise, iteration + 1, bias)


def fit_gate_mean(gate, rows, evidence, *, warm=False):
    """A regressor's gate fitted by the squared error of the mixture mean.

    What a regressor's ``predict`` returns is the gate-weighted mean of the
    experts' predictions; this fits the gate to the fixed out-of-fold
    predictions by its error, one L-BFGS solve (the gate's ``_fit_mean``),
    as a stacking whose weights depend on ``x`` and stay on the simplex.
    The experts' noise variances and the responsibilities (for the
    specialisation rounds, and ``predict``'s standard deviation) come from
    one E-step of the fitted gate.

    Parameters
    ----------
    gate : SoftmaxGate or ConstantGate
    rows : GateRows
    evidence : OutOfFoldEvidence
        Of a regressor.
    warm : bool, default=False
        Start from the gate's current parameters.

    Returns
    -------
    GateFit
    """
    index, n_experts = rows.index, evidence.n_experts
    on_rows = _GateOnRows(gate, rows)
    if not warm:
        # sets the features and the fitted attributes; the uniform gate
        on_rows.fit(np.full((len(index), n_experts), 1.0 / n_experts), False)
    mask = _routable(np.zeros((1, n_experts)), evidence.active, None)
    scale = np.sqrt(evidence.y_scale)
    on_rows.fit_mean(evidence.means[index] / scale, evidence.y[index] / scale, mask)
    log_gate = on_rows.log_proba()
    if mask is not None:
        log_gate = routed_log_weights(log_gate, mask)
    noise = evidence.noise(index, np.exp(log_gate))
    joint = log_gate + evidence.log_likelihood(index, noise)
    R = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
    return GateFit(gate, R, evidence.noise(index, R), 1)


@dataclass(frozen=True)
class Candidate:
    """One gate the selection may choose.

    ``gate`` is an unfitted gate to fit by EM (or by the error of the mean,
    :func:`fit_gate_mean`), or None for ``expert``: the single expert every
    row goes to. ``top_k`` restricts the E-step of its EM to each row's
    ``2 top_k`` gate favourites (see :func:`fit_gate_em`).
    """

    label: str
    gate: object = None
    expert: int = None
    top_k: int = None
    #: what the gate is fitted by: ``"likelihood"`` (EM) or ``"mean"`` (the
    #: squared error of the mixture mean, regression only)
    objective: str = "likelihood"
    #: whether its EM balances the responsibilities (``balance="sinkhorn"``)
    sinkhorn: bool = False
    #: with ``sinkhorn``, the routing's ``top_k``: the balanced
    #: responsibilities are truncated to it, as EM's E-step truncates; with
    #: ``bias_rate``, the choice the bias balances
    truncate: int = None
    #: ``balance="bias"``: the routing bias's rate (None: no bias)
    bias_rate: float = None

    @property
    def path(self):
        """The regularisation path the candidate is on (None for a single
        expert): gates of one kind, one objective and one E-step."""
        if self.gate is None:
            return None
        return (type(self.gate), self.objective, self.top_k)

    def fixed_gate(self, n_experts):
        weights = np.zeros(n_experts)
        weights[self.expert] = 1.0
        return ConstantGate(weights=weights)


def gate_candidates(
    gate,
    names,
    *,
    grid,
    top_k=None,
    regression=False,
    balance=None,
    bias_rate=None,
):
    """The candidates: each single expert, the constant gate, then ``gate``.

    With ``grid`` (the user named the softmax gate by its string) ``gate``
    stands for :data:`SOFTMAX_C_GRID`, from the strongest regularisation to
    the weakest. A gate object the user gave is taken as it is. With
    ``top_k`` (fewer than half the experts) each fitted gate comes twice: by
    the plain EM, and by the EM whose E-step looks where the truncated
    mixture will (its ``2 top_k`` favourites). During development (the
    benchmark's concrete and computers sets, one 3-fold split, ``top_k=1``
    over its 3 experts, with the unshuffled folds of the time) the second
    lowered one set's RMSE and raised the other's: neither wins everywhere,
    so the held-out loss chooses.

    With ``regression`` the constant gate comes twice: by EM, and fitted by
    the squared error of the mixture mean (:func:`fit_gate_mean`), the
    convex blend that ensemble selection approximates. A mixture likelihood
    and the error of the mean are different objectives, and the likelihood
    rewards a sharp gate. The softmax gate is fitted by EM only: during
    development (the benchmark's quick regression sets, one 3-fold split
    each) softmax gates fitted by the error of the mean were chosen on one
    fold of computers, lowering its RMSE by about 1%, and made the gate's
    selection there twice as slow.

    With ``balance`` the user asked for a balanced routing: no single
    expert is a candidate (it takes every row), nor, under a penalty of
    the gate's, the constant gate (which has no penalty). With
    ``balance="sinkhorn"`` every fitted candidate's EM balances its
    responsibilities over every expert (no top-``2k`` E-step) and, with
    ``top_k``, keeps each row's ``top_k`` of them, as EM's E-step does: a
    gate fitted to balanced soft responsibilities has balanced mean
    weights, not a balanced top choice. The constant gate's EM ends at even
    weights; it is a candidate with dense routing only, since with
    ``top_k`` it routes every row to the same experts.

    With ``balance="bias"`` the fitted candidates each learn a routing bias
    at ``bias_rate`` (:func:`fit_gate_em`) for the ``top_k`` choice; the
    constant gate, which scores every row alike, cannot be balanced by one.
    With ``bias_rate`` None (dense routing: nothing to choose) the
    candidates are those of no balancing.
    """
    singles = [Candidate(f"expert: {name}", expert=j) for j, name in enumerate(names)]
    constant = [Candidate("constant", ConstantGate())]
    if grid and isinstance(gate, SoftmaxGate):
        fitted = [
            Candidate(f"softmax C={C:g}", clone(gate).set_params(C=C))
            for C in SOFTMAX_C_GRID
        ]
    else:
        fitted = [Candidate(_label(gate), gate)]
    if regression:
        constant.append(
            Candidate("constant, squared error", ConstantGate(), objective="mean")
        )
    if top_k is not None and 2 * top_k < len(names):
        fitted += [
            Candidate(f"{c.label}, top-{2 * top_k} E-step", c.gate, top_k=top_k)
            for c in fitted
        ]
    if balance is None or (balance == BIAS and bias_rate is None):
        return singles + constant + fitted
    if balance == BIAS:
        return [replace(c, bias_rate=bias_rate, truncate=top_k) for c in fitted]
    if balance != SINKHORN:
        return fitted
    # balanced over every expert, not a row's favourites (as unbalanced as
    # the gate). With sparse routing the constant gate is no candidate: it
    # gives every row the same top_k experts (its even weights a tie that
    # routing breaks by index), so it cannot balance the top choice; on
    # 16 tree clones it was chosen and sent every row to one expert.
    sparse = top_k is not None and top_k < len(names)
    return [
        replace(c, sinkhorn=True, truncate=top_k)
        for c in ([] if sparse else constant) + fitted
        if c.objective != "mean" and c.top_k is None
    ]


def _label(gate):
    params = ", ".join(
        f"{key}={value!r}"
        for key, value in gate.get_params(deep=False).items()
        if key == "C"
    )
    return f"{type(gate).__name__}({params})"


def log_routing(gate, X, top_k, active, bias=None):
    """Log routing weights of ``gate`` on ``X``: its top-k of the ``active``
    experts (chosen with the routing ``bias``), renormalised (as the
    estimators route)."""
    log_gate = gate.predict_log_proba(X)
    log_gate[:, ~active] = -np.inf
    return routed_log_weights(log_gate, top_k_mask(log_gate, top_k, bias=bias))


@dataclass(frozen=True)
class Selection:
    """The cross-validated choice of gate.

    Attributes
    ----------
    labels : list of str
    losses : ndarray of shape (n_candidates,)
        Each candidate's held-out loss (of what ``predict`` returns).
    log_likelihoods : ndarray of shape (n_candidates,)
        Each candidate's held-out mixture log-likelihood (weighted mean).
        Both are ``nan`` for a candidate not evaluated (its path stopped).
    best : int
        Index of the chosen candidate.
    evaluated : ndarray of bool of shape (n_candidates,)
    """

    candidates: list
    labels: list
    losses: np.ndarray
    log_likelihoods: np.ndarray
    best: int
    evaluated: np.ndarray

    @property
    def chosen(self):
        return self.candidates[self.best]

    @property
    def loss(self):
        return float(self.losses[self.best])

    def as_dict(self):
        """The record ``gate_selection_`` keeps."""
        return {
            "candidates": list(self.labels),
            "loss": self.losses.copy(),
            "log_likelihood": self.log_likelihoods.copy(),
            "selected": self.labels[self.best],
        }


def select_gate(
    candidates, X, evidence, *, top_k, max_iter, tol, random_state, start=None
):
    """Choose the candidate with the lowest held-out loss over fixed evidence.

    Each fitted candidate runs its EM on the rows of ``GATE_FOLDS - 1``
    folds and predicts the held-out fold; candidates of one kind continue
    from the previous one's solution (a path from strong to weak
    regularisation), which makes each fit cheap. The constant gate, the
    limit of strongest regularisation, is each path's first point. The
    path stops at the first candidate whose held-out loss is higher than
    the one before it (as regularisation paths are cut short once the
    validation error rises): the weaker ones are not fitted, their losses
    ``nan``. Single
    experts need no fit. The chosen one is the simplest within one
    standard error of the lowest held-out loss
    (:func:`_one_standard_error_choice`).

    Parameters
    ----------
    candidates : list of Candidate
    X : ndarray of shape (n_samples, n_features)
    evidence : OutOfFoldEvidence
    top_k : int or None
        Routing of prediction: the loss is that of the truncated mixture.
    max_iter, tol : EM's iteration budget and tolerance.
    random_state : numpy.random.RandomState
        Seeds the folds.
    start : ndarray of shape (n_samples, n_experts), default=None
        Where each path's EM starts (its rows of it); None: uniform.

    Returns
    -------
    Selection
    """
    weights = evidence.sample_weight
    # rows of zero weight count for nothing: folds over the others only
    kept = np.flatnonzero(weights > 0)
    splitter = KFold(
        min(GATE_FOLDS, len(kept)),
        shuffle=True,
        random_state=random_state.randint(np.iinfo(np.int32).max),
    )
    folds = [
        _SelectionFold(GateRows(X, kept[train], weights), kept[test], start)
        for train, test in splitter.split(kept)
    ]
    # a collapsed expert is no candidate
    candidates = [
        c for c in candidates if c.expert is None or evidence.active[c.expert]
    ]
    row_losses = np.full((len(candidates), len(weights)), np.nan)
    losses = np.full(len(candidates), np.nan)
    log_likelihoods = np.full(len(candidates), np.nan)
    path_loss = {}  # the last held-out loss of each path; inf once it stopped
    # the constant gate's held-out loss, per objective: the first point of
    # every path fitted by that objective (see _heads_paths)
    head_loss = {}
    for c, candidate in enumerate(candidates):
        if path_loss.get(candidate.path) == np.inf:
            continue
        log_likelihoods[c] = 0.0
        for fold in folds:
            fit = fold.fit(candidate, evidence, max_iter=max_iter, tol=tol)
            routing = log_routing(
                fit.gate, X[fold.test], top_k, evidence.active, fit.bias
            )
            row_losses[c, fold.test] = evidence.row_losses(fold.test, routing)
            log_likelihoods[c] += (
                weights[fold.test].sum()
                / weights[kept].sum()
                * evidence.mixture_log_likelihood(fold.test, routing, fit.noise)
            )
        losses[c] = row_losses[c, kept] @ weights[kept] / weights[kept].sum()
        if _heads_paths(candidate):
            head_loss[candidate.objective, candidate.sinkhorn] = losses[c]
        elif candidate.gate is not None:
            before = path_loss.get(
                candidate.path,
                head_loss.get((candidate.objective, candidate.sinkhorn), np.inf),
            )
            rose = losses[c] > before
            path_loss[candidate.path] = np.inf if rose else losses[c]
    evaluated = ~np.isnan(log_likelihoods)
    best = np.flatnonzero(evaluated)[
        _one_standard_error_choice(
            row_losses[evaluated][:, kept],
            weights[kept],
            [c for c, e in zip(candidates, evaluated) if e],
        )
    ]
    return Selection(
        candidates=list(candidates),
        labels=[candidate.label for candidate in candidates],
        losses=losses,
        log_likelihoods=log_likelihoods,
        best=int(best),
        evaluated=evaluated,
    )


def _heads_paths(candidate):
    """Whether ``candidate`` is the constant gate of a plain EM, the first
    point of every regularisation path fitted by its objective.

    The constant gate is the softmax gate's limit as ``C`` goes to zero:
    a path whose strongest regularisation already does worse than it stops
    there, as it would on any rise. On the r0 splits of the benchmark's
    21 sets (126 fits, dense and ``top_k=1``) the weaker candidates that
    this leaves unfitted were never the ones chosen; in regression, where
    gates fitted by likelihood lose to the constant on almost every split,
    it saves a third of the gate's fits.
    """
    return isinstance(candidate.gate, ConstantGate) and candidate.top_k is None


class _SelectionFold:
    """One fold of the gate's selection: its training rows, its held-out
    rows, and where the next fitted candidate's path continues from."""

    def __init__(self, train, test, start=None):
        self.train = train
        self.test = test
        self.start = start
        self.paths = {}

    def fit(self, candidate, evidence, *, max_iter, tol):
        """Fit ``candidate`` on the training rows; its :class:`GateFit`."""
        if candidate.gate is None:
            return fit_single_expert(candidate, self.train, evidence)
        return fit_on_path(
            self.paths,
            candidate,
            self.train,
            evidence,
            max_iter=max_iter,
            tol=tol,
            start=self.start,
        )


def fit_single_expert(candidate, rows, evidence):
    """The gate that sends every row to ``candidate``'s expert; no EM."""
    gate = candidate.fixed_gate(evidence.n_experts)
    one_hot = gate.weights[None, :].repeat(len(rows.index), axis=0)
    gate.fit(rows.X, one_hot, rows.weights)
    return GateFit(gate, one_hot, evidence.noise(rows.index, one_hot), 1)


def fit_on_path(paths, candidate, rows, evidence, *, max_iter, tol, start=None):
    """Fit a candidate gate from where its objective's path stands.

    ``paths`` maps an objective to the last :class:`_Path` fitted by it on
    ``rows``, and is updated. The EM's candidates continue each from the
    last one's solution, the constant gate's responsibilities starting the
    softmax gates; those fitted by the error of the mean have their own
    path. A path's first EM starts from ``start`` (all rows' starting
    responsibilities) when given.
    """
    path = _continue_from(paths.get(candidate.objective), candidate.gate)
    if path.responsibilities is None and start is not None:
        path = replace(path, responsibilities=start[rows.index])
    if candidate.objective == "mean":
        fit = fit_gate_mean(path.gate, rows, evidence, warm=path.warm)
    else:
        fit = fit_gate_em(
            path.gate,
            rows,
            evidence,
            max_iter=max_iter,
            tol=tol,
            start=path.responsibilities,
            warm=path.warm,
            top_k=candidate.top_k,
            sinkhorn=candidate.sinkhorn,
            truncate=candidate.truncate,
            bias_rate=candidate.bias_rate,
            bias=path.bias,
        )
    paths[candidate.objective] = _Path(fit.gate, fit.responsibilities, True, fit.bias)
    return fit


def _one_standard_error_choice(row_losses, weights, candidates):
    """The simplest candidate within one standard error of the best.

    Breiman's one-standard-error rule (as glmnet's ``lambda.1se``), with the
    standard error of the paired, row-by-row difference to the best
    candidate's held-out losses. On a few hundred rows the held-out losses
    of a blend and of the best single expert differ by less than their
    noise, and the lowest of a dozen noisy estimates overstates its
    candidate; the rule then keeps the simpler gate. Simplest first: the
    best single expert, the constant gate, then the fitted candidates in
    their order (strong regularisation first).
    """
    total = weights.sum()
    n_effective = total**2 / np.sum(weights**2)
    losses = row_losses @ weights / total
    best = int(np.argmin(losses))
    difference = row_losses - row_losses[best]
    mean_difference = difference @ weights / total
    centred = difference - mean_difference[:, None]
    standard_error = np.sqrt((centred**2 @ weights) / total / n_effective)
    singles = [c for c, candidate in enumerate(candidates) if candidate.gate is None]
    order = sorted(singles, key=lambda c: losses[c]) + [
        c for c in range(len(candidates)) if candidates[c].gate is not None
    ]
    for c in order:
        if mean_difference[c] <= standard_error[c]:
            return c
    return best


@dataclass(frozen=True)
class _Path:
    """Where the next fitted candidate of a fold starts."""

    gate: object
    responsibilities: np.ndarray
    warm: bool
    #: the routing bias the gate chose with (``balance="bias"``)
    bias: np.ndarray = None


def _continue_from(previous, template):
    """The gate to fit next, warm from ``previous`` when of the same kind
    (and from its routing bias: the bias is on that gate's scores)."""
    if previous is None:
        return _Path(clone(template), None, False)
    if type(previous.gate) is type(template):
        gate = previous.gate.set_params(**template.get_params(deep=False))
        return _Path(gate, previous.responsibilities, True, previous.bias)
    return _Path(clone(template), previous.responsibilities, False)


def fit_selected(selection, X, evidence, *, max_iter, tol, start=None):
    """Fit the chosen gate on every row; returns a :class:`GateFit`.

    A fitted gate is reached as in the selection: along the path of the
    fitted candidates before it (the constant gate, then weaker and weaker
    regularisation), each warm from the last. EM over many experts has
    many local optima; started elsewhere, the gate could end at another
    than the one its held-out loss was measured for. ``start`` is as for
    :func:`select_gate`.
    """
    all_rows = GateRows(X, np.arange(X.shape[0]), evidence.sample_weight)
    chosen = selection.chosen
    if chosen.gate is None:
        return fit_single_expert(chosen, all_rows, evidence)
    paths = {}
    for candidate, evaluated in zip(
        selection.candidates[: selection.best + 1], selection.evaluated
    ):
        if candidate.gate is None or not evaluated:
            continue
        if candidate.objective == chosen.objective:
            fit = fit_on_path(
                paths,
                candidate,
                all_rows,
                evidence,
                max_iter=max_iter,
                tol=tol,
                start=start,
            )
    return fit

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

from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax, logsumexp
from sklearn.base import clone
from sklearn.model_selection import KFold

from .._gates import ConstantGate, SoftmaxGate, fit_gate_features
from .._likelihood import GaussianLikelihood
from .._routing import routed_log_weights, top_k_mask

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


class _GateOnRows:
    """One gate's M-step and log weights on a fixed set of rows.

    A :class:`~skmoe.SoftmaxGate` fits its imputation and scaling once and
    solves on the standardised rows at every M-step (its
    ``_fit_standardised``), rather than refitting and re-validating them
    each time: the rows do not change within an EM. Any other gate is fitted
    through its public ``fit``.
    """

    def __init__(self, gate, X_rows, weights):
        self.gate = gate
        self.X_rows = X_rows
        self.weights = weights
        self.Z = None
        if isinstance(gate, SoftmaxGate):
            gate._validate_params()
            gate.features_ = fit_gate_features(X_rows, weights)
            self.Z = gate.features_.transform(X_rows)

    def fit(self, R, warm_start):
        if self.Z is None:
            self.gate.fit(self.X_rows, R, self.weights, warm_start=warm_start)
        else:
            self.gate._fit_standardised(self.Z, R, self.weights, warm_start=warm_start)

    def log_proba(self):
        if self.Z is None:
            return self.gate.predict_log_proba(self.X_rows)
        return log_softmax(self.Z @ self.gate.coef_ + self.gate.intercept_, axis=1)


def fit_gate_em(
    gate, X, evidence, rows, *, max_iter, tol, start=None, warm=False, top_k=None
):
    """EM for the gate alone, the experts' out-of-fold outputs held fixed.

    Parameters
    ----------
    gate : gate estimator
        Fitted in place (``gate.fit(X, R, sample_weight, warm_start=...)``).
    X : ndarray of shape (n_samples, n_features)
    evidence : OutOfFoldEvidence
    rows : ndarray of int
        The rows to fit on.
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

    Returns
    -------
    GateFit
    """
    weights = evidence.sample_weight[rows]
    n_candidates = (
        None if top_k is None or 2 * top_k >= evidence.n_experts else 2 * top_k
    )
    R = (
        np.full((len(rows), evidence.n_experts), 1.0 / evidence.n_experts)
        if start is None
        else start
    )
    on_rows = _GateOnRows(gate, X[rows], weights)
    previous = np.inf
    for iteration in range(max_iter):
        on_rows.fit(R, warm_start=warm or iteration > 0)
        noise = evidence.noise(rows, R)
        log_gate = on_rows.log_proba()
        if n_candidates is not None or not evidence.active.all():
            log_gate[:, ~evidence.active] = -np.inf
            log_gate = routed_log_weights(log_gate, top_k_mask(log_gate, n_candidates))
        joint = log_gate + evidence.log_likelihood(rows, noise)
        mixture = logsumexp(joint, axis=1, keepdims=True)
        R = np.exp(joint - mixture)
        loss = -float(np.average(mixture[:, 0], weights=weights))
        if previous - loss < tol:
            break
        previous = loss
    return GateFit(gate, R, noise, iteration + 1)


@dataclass(frozen=True)
class Candidate:
    """One gate the selection may choose.

    ``gate`` is an unfitted gate to fit by EM, or None for ``expert``: the
    single expert every row goes to. ``top_k`` restricts the E-step of its
    EM to each row's ``2 top_k`` gate favourites (see :func:`fit_gate_em`).
    """

    label: str
    gate: object = None
    expert: int = None
    top_k: int = None

    def fixed_gate(self, n_experts):
        weights = np.zeros(n_experts)
        weights[self.expert] = 1.0
        return ConstantGate(weights=weights)


def gate_candidates(gate, names, *, grid, top_k=None):
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
    if top_k is not None and 2 * top_k < len(names):
        fitted += [
            Candidate(f"{c.label}, top-{2 * top_k} E-step", c.gate, top_k=top_k)
            for c in fitted
        ]
    return singles + constant + fitted


def _label(gate):
    params = ", ".join(
        f"{key}={value!r}"
        for key, value in gate.get_params(deep=False).items()
        if key == "C"
    )
    return f"{type(gate).__name__}({params})"


def log_routing(gate, X, top_k, active):
    """Log routing weights of ``gate`` on ``X``: its top-k of the ``active``
    experts, renormalised (as the estimators route)."""
    log_gate = gate.predict_log_proba(X)
    log_gate[:, ~active] = -np.inf
    return routed_log_weights(log_gate, top_k_mask(log_gate, top_k))


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
    best : int
        Index of the chosen candidate.
    """

    candidates: list
    labels: list
    losses: np.ndarray
    log_likelihoods: np.ndarray
    best: int

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


def select_gate(candidates, X, evidence, *, top_k, max_iter, tol, random_state):
    """Choose the candidate with the lowest held-out loss over fixed evidence.

    Each fitted candidate runs its EM on the rows of ``GATE_FOLDS - 1``
    folds and predicts the held-out fold; candidates of one kind continue
    from the previous one's solution (a path from strong to weak
    regularisation), which makes each fit cheap. Single experts need no
    fit. The chosen one is the simplest within one standard error of the
    lowest held-out loss (:func:`_one_standard_error_choice`).

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
    folds = [(kept[train], kept[test]) for train, test in splitter.split(kept)]
    # a collapsed expert is no candidate
    candidates = [
        c for c in candidates if c.expert is None or evidence.active[c.expert]
    ]
    row_losses = np.zeros((len(candidates), len(weights)))
    log_likelihoods = np.zeros(len(candidates))
    for train, test in folds:
        share = weights[test].sum() / weights.sum()
        previous = None
        for c, candidate in enumerate(candidates):
            if candidate.gate is None:
                gate = candidate.fixed_gate(evidence.n_experts)
                gate.fit(X[train], gate.weights[None, :].repeat(len(train), axis=0))
                noise = evidence.noise(train, gate.predict_proba(X[train]))
            else:
                previous = _continue_from(previous, candidate.gate)
                fit = fit_gate_em(
                    previous.gate,
                    X,
                    evidence,
                    train,
                    max_iter=max_iter,
                    tol=tol,
                    start=previous.responsibilities,
                    warm=previous.warm,
                    top_k=candidate.top_k,
                )
                previous = _Path(fit.gate, fit.responsibilities, True)
                gate, noise = fit.gate, fit.noise
            routing = log_routing(gate, X[test], top_k, evidence.active)
            row_losses[c, test] = evidence.row_losses(test, routing)
            log_likelihoods[c] += share * evidence.mixture_log_likelihood(
                test, routing, noise
            )
    losses = row_losses[:, kept] @ weights[kept] / weights[kept].sum()
    return Selection(
        candidates=list(candidates),
        labels=[candidate.label for candidate in candidates],
        losses=losses,
        log_likelihoods=log_likelihoods,
        best=_one_standard_error_choice(row_losses[:, kept], weights[kept], candidates),
    )


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


def _continue_from(previous, template):
    """The gate to fit next, warm from ``previous`` when of the same kind."""
    if previous is None:
        return _Path(clone(template), None, False)
    if type(previous.gate) is type(template):
        gate = previous.gate.set_params(**template.get_params(deep=False))
        return _Path(gate, previous.responsibilities, True)
    return _Path(clone(template), previous.responsibilities, False)


def fit_selected(selection, X, evidence, *, max_iter, tol):
    """Fit the chosen gate on every row; returns a :class:`GateFit`.

    A fitted gate is reached as in the selection: along the path of the
    fitted candidates before it (the constant gate, then weaker and weaker
    regularisation), each warm from the last. EM over many experts has
    many local optima; started elsewhere, the gate could end at another
    than the one its held-out loss was measured for.
    """
    rows = np.arange(X.shape[0])
    chosen = selection.chosen
    if chosen.gate is None:
        gate = chosen.fixed_gate(evidence.n_experts)
        one_hot = gate.weights[None, :].repeat(len(rows), axis=0)
        gate.fit(X, one_hot, evidence.sample_weight)
        return GateFit(gate, one_hot, evidence.noise(rows, one_hot), 1)
    path, fit = None, None
    for candidate in selection.candidates[: selection.best + 1]:
        if candidate.gate is None:
            continue
        path = _continue_from(path, candidate.gate)
        fit = fit_gate_em(
            path.gate,
            X,
            evidence,
            rows,
            max_iter=max_iter,
            tol=tol,
            start=path.responsibilities,
            warm=path.warm,
            top_k=candidate.top_k,
        )
        path = _Path(fit.gate, fit.responsibilities, True)
    return fit

"""Expectation-maximisation for a mixture of experts.

One EM run, from one initialisation, lives here; restarts (``n_init``) and
everything the user sees are the estimators' business (``_base.py``).

Each iteration is

* M-step: refit the gate to the responsibilities ``R`` (soft targets), and
  refit each expert ``j`` with ``sample_weight = w * R[:, j]``, on the rows
  where that weight is not negligible, so that with top-k routing an
  iteration costs about ``n * k`` expert-rows rather than ``n * E``;
* E-step: ``R_ij`` proportional to ``g_j(x_i) p_j(y_i | x_i)`` over the
  experts row ``i`` is routed to, computed in the log domain. With ``cv`` the
  ``p_j`` come from out-of-fold fits, so that an expert that memorises its
  training rows does not claim them all.

The objective is the mixture's weighted mean negative log-likelihood on the
training rows; a run stops when it changes by less than ``tol`` (it is a
per-sample average, so ``tol`` does not depend on the number of rows).
"""

import time
from dataclasses import dataclass, field

import numpy as np
from joblib import Parallel, delayed
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.cluster import KMeans

from ._gates import fit_gate_features
from ._routing import routed_log_weights, top_k_mask
from ._weighted_fit import constant_model, fit_weighted

# Responsibilities below this leave a row out of an expert's refit: such a row
# would carry less than 0.1% of a full row's weight.
NEGLIGIBLE_RESPONSIBILITY = 1e-3

# An expert whose responsibility adds up to fewer rows than this (or than 1% of
# an even share) has collapsed.
MIN_EXPERT_ROWS = 2.0
MIN_EVEN_SHARE = 0.01

_SEED_MAX = np.iinfo(np.int32).max


@dataclass
class EMProblem:
    """Everything one EM run needs that does not change across iterations."""

    X: np.ndarray
    y: np.ndarray
    sample_weight: np.ndarray
    names: list
    likelihood: object
    gate: object
    top_k: object = None
    hard: bool = False
    max_iter: int = 20
    tol: float = 1e-3
    cv_splits: list = None
    y_scale: float = 1.0
    n_jobs: object = None
    verbose: int = 0


@dataclass
class EMResult:
    """The fitted parts of one EM run and how it went."""

    experts: list
    gate: object
    noise: list
    active: np.ndarray
    responsibilities: np.ndarray
    loss_curve: list
    converged: bool
    failures: dict = field(default_factory=dict)
    collapse_events: list = field(default_factory=list)

    @property
    def loss(self):
        return self.loss_curve[-1]

    @property
    def n_iter(self):
        return len(self.loss_curve)


def initial_responsibilities(init, X, sample_weight, n_experts, random_state):
    """Starting responsibilities, shape (n_samples, n_experts), rows in the simplex.

    Parameters
    ----------
    init : {"kmeans", "random", "uniform"} or ndarray
        ``"kmeans"`` assigns each row to one of ``n_experts`` clusters of the
        standardised features (random when there are fewer rows than experts),
        ``"random"`` draws each row from a flat Dirichlet, ``"uniform"`` gives
        every expert every row equally, an array is used as given (rows
        normalised).
    random_state : numpy.random.RandomState
    """
    n_samples = X.shape[0]
    if not isinstance(init, str):
        return _normalise_rows(init)
    if init == "uniform":
        return np.full((n_samples, n_experts), 1.0 / n_experts)
    if init == "kmeans" and n_samples >= n_experts:
        features = fit_gate_features(X, sample_weight).transform(X)
        kmeans = KMeans(
            n_clusters=n_experts, n_init=3, random_state=random_state.randint(_SEED_MAX)
        )
        labels = kmeans.fit(features, sample_weight=sample_weight).labels_
        return np.eye(n_experts)[labels]
    generator = np.random.default_rng(random_state.randint(_SEED_MAX))
    return generator.dirichlet(np.ones(n_experts), size=n_samples)


def check_init_array(init, n_samples, n_experts):
    """Validate a user's array of initial responsibilities."""
    R = np.asarray(init, dtype=np.float64)
    if R.shape != (n_samples, n_experts):
        raise ValueError(
            f"init is an array of shape {R.shape}; as initial responsibilities it "
            f"must have shape (n_samples, n_experts) = ({n_samples}, {n_experts})."
        )
    if not np.all(np.isfinite(R)) or np.any(R < 0):
        raise ValueError("init must hold finite, non-negative responsibilities.")
    if np.any(R.sum(axis=1) <= 0):
        raise ValueError(
            "Every row of init must give some responsibility to some expert; "
            f"rows {np.flatnonzero(R.sum(axis=1) <= 0)[:10].tolist()} sum to zero."
        )
    return R


def _normalise_rows(R):
    R = np.asarray(R, dtype=np.float64)
    return R / R.sum(axis=1, keepdims=True)


def run_em(problem, templates, responsibilities, random_state):
    """Run EM from ``responsibilities`` and return the fitted mixture.

    Parameters
    ----------
    problem : EMProblem
    templates : list of estimator
        Unfitted, seeded experts; never modified.
    responsibilities : ndarray of shape (n_samples, n_experts)
    random_state : numpy.random.RandomState
        Source of the resampling seeds.

    Returns
    -------
    EMResult
    """
    n_experts = len(templates)
    R = responsibilities
    state = EMResult(
        experts=[None] * n_experts,
        gate=clone(problem.gate),
        noise=[None] * n_experts,
        active=np.ones(n_experts, dtype=bool),
        responsibilities=R,
        loss_curve=[],
        converged=False,
    )
    fell_back = [False] * n_experts
    reseeded = np.zeros(n_experts, dtype=bool)

    for iteration in range(problem.max_iter):
        tic = time.perf_counter()
        state.gate.fit(
            problem.X, R, problem.sample_weight, warm_start=iteration > 0
        )
        log_gate = _active_log_gate(state.gate, problem.X, state.active)
        routed = top_k_mask(log_gate, problem.top_k)

        outputs, noise = _refit_experts(
            problem, templates, state, fell_back, R, routed, iteration, random_state
        )
        state.noise = noise
        log_joint = _log_joint(problem, log_gate, routed, outputs, noise)
        log_mixture = logsumexp(log_joint, axis=1)
        loss = -np.average(log_mixture, weights=problem.sample_weight)
        state.loss_curve.append(float(loss))

        R_next = np.exp(log_joint - log_mixture[:, None])
        if problem.hard:
            R_next = np.eye(n_experts)[np.argmax(log_joint, axis=1)]
        changed = _handle_collapse(
            problem, state, R_next, log_mixture, log_gate, reseeded, iteration
        )
        state.responsibilities = R_next

        change = np.inf if iteration == 0 else state.loss_curve[-2] - loss
        if problem.verbose:
            print(
                f"  EM iteration {iteration + 1}: loss {loss:.6f} "
                f"(change {change:.2e}) in {time.perf_counter() - tic:.2f}s"
            )
        if abs(change) < problem.tol and not changed:
            state.converged = True
            break
        if iteration + 1 < problem.max_iter:
            R = R_next

    if problem.cv_splits is not None:
        # Out-of-fold models only served the E-step: the experts that predict
        # are refitted on all their rows, with the responsibilities the last
        # fold models were trained on.
        _refit_experts(
            problem, templates, state, fell_back, R, routed, -1, random_state, final=True
        )
    return state


def _active_log_gate(gate, X, active):
    log_gate = gate.predict_log_proba(X)
    if not active.all():
        log_gate[:, ~active] = -np.inf
        log_gate -= logsumexp(log_gate, axis=1, keepdims=True)
    return log_gate


def _log_joint(problem, log_gate, routed, outputs, noise):
    """``log g_j(x_i) + log p_j(y_i | x_i)`` over routed pairs, -inf elsewhere."""
    log_weights = routed_log_weights(log_gate, routed)
    log_joint = np.full(log_gate.shape, -np.inf)
    for j, (rows, output) in enumerate(outputs):
        if rows.size == 0:
            continue
        log_joint[rows, j] = log_weights[rows, j] + problem.likelihood.log_likelihood(
            output, problem.y[rows], noise[j]
        )
    return log_joint


def _fit_rows(R, j, sample_weight):
    return np.flatnonzero((R[:, j] > NEGLIGIBLE_RESPONSIBILITY) & (sample_weight > 0))


def _refit_experts(
    problem, templates, state, fell_back, R, routed, iteration, random_state, final=False
):
    """M-step for the experts, and their outputs for the E-step.

    Returns, for each expert, the rows it was routed to with its output on
    them (out-of-fold with ``cv``), and its noise parameter.
    """
    n_experts = len(templates)
    w = problem.sample_weight
    use_folds = problem.cv_splits is not None and not final
    jobs, keys = [], []
    need_rows = []
    for j in range(n_experts):
        fit_rows = _fit_rows(R, j, w)
        # The noise is estimated on the rows the expert was fitted to, the
        # likelihood is needed on the rows it is routed to.
        rows = np.union1d(fit_rows, np.flatnonzero(routed[:, j]))
        need_rows.append(rows)
        if not state.active[j]:
            continue
        seeds = random_state.randint(_SEED_MAX, size=len(problem.cv_splits or []) + 1)
        if not use_folds:
            estimator = (
                state.experts[j]
                if state.experts[j] is not None and not fell_back[j]
                else clone(templates[j])
            )
            jobs.append(
                delayed(_fit_and_predict)(
                    estimator, problem, fit_rows, R[fit_rows, j], seeds[0],
                    np.empty(0, dtype=np.intp) if final else rows,
                )
            )
            keys.append((j, None))
            continue
        for fold, (train, test) in enumerate(problem.cv_splits):
            fold_rows = np.intersect1d(fit_rows, train)
            jobs.append(
                delayed(_fit_and_predict)(
                    clone(templates[j]), problem, fold_rows, R[fold_rows, j],
                    seeds[fold + 1], np.intersect1d(rows, test),
                )
            )
            keys.append((j, fold))

    results = Parallel(n_jobs=problem.n_jobs)(jobs)

    outputs = [(np.empty(0, dtype=np.intp), None) for _ in range(n_experts)]
    collected = {j: problem.likelihood.empty_output(len(need_rows[j])) for j in range(n_experts)}
    for (j, fold), (fitted, failure, predict_rows, output) in zip(keys, results):
        label = problem.names[j] if fold is None else f"{problem.names[j]} (fold {fold})"
        if failure is not None:
            record = state.failures.setdefault(label, [0, ""])
            record[0] += 1
            record[1] = failure
        if fold is None:
            state.experts[j] = fitted
            fell_back[j] = failure is not None
        positions = np.searchsorted(need_rows[j], predict_rows)
        collected[j][positions] = output

    noise = list(state.noise)
    if final:
        return outputs, noise
    for j in range(n_experts):
        if not state.active[j]:
            continue
        rows = need_rows[j]
        fit_rows = _fit_rows(R, j, w)
        in_fit = np.isin(rows, fit_rows)
        noise[j] = problem.likelihood.noise(
            collected[j][in_fit], problem.y[fit_rows],
            w[fit_rows] * R[fit_rows, j], problem.y_scale,
        )
        in_routed = routed[rows, j]
        outputs[j] = (rows[in_routed], collected[j][in_routed])
    return outputs, noise


def _fit_and_predict(estimator, problem, fit_rows, responsibility, seed, predict_rows):
    """Fit one expert on its rows, then predict the rows the E-step needs.

    Runs in a joblib worker; returns ``(fitted, failure, predict_rows, output)``
    so that the caller, in the main process, can warn about failures.
    """
    X, y = problem.X, problem.y
    if fit_rows.size == 0:
        fitted = constant_model(estimator, X, y, problem.sample_weight)
        failure = "no rows were routed to it"
    else:
        fitted, failure = fit_weighted(
            estimator,
            X[fit_rows],
            y[fit_rows],
            problem.sample_weight[fit_rows] * responsibility,
            n_draws=int(round(responsibility.sum())),
            seed=seed,
        )
    output = problem.likelihood.expert_output(fitted, X[predict_rows]) if predict_rows.size else (
        problem.likelihood.empty_output(0)
    )
    return fitted, failure, predict_rows, output


def _handle_collapse(problem, state, R, log_mixture, log_gate, reseeded, iteration):
    """Re-seed experts that collapsed once, drop those that collapse again.

    Modifies ``R`` (and ``state.active``) in place. Returns whether anything
    changed, in which case the run is not declared converged.
    """
    active = state.active
    n_active = int(active.sum())
    if n_active <= 1:
        return False
    w = problem.sample_weight
    rows_held = (w[:, None] * R).sum(axis=0) / w.mean()
    n_samples = R.shape[0]
    threshold = max(MIN_EXPERT_ROWS, MIN_EVEN_SHARE * n_samples / n_active)
    collapsed = np.flatnonzero(active & (rows_held < threshold))
    if collapsed.size == 0:
        return False

    to_drop = [j for j in collapsed if reseeded[j]]
    to_reseed = [j for j in collapsed if not reseeded[j]]
    if len(to_drop) >= n_active:
        to_drop = to_drop[:-1]

    for j in to_drop:
        active[j] = False
        state.collapse_events.append((iteration, problem.names[j], "dropped"))
    if to_drop:
        R[:, ~active] = 0.0
        orphans = R.sum(axis=1) <= 0
        if orphans.any():
            # Rows held only by dropped experts go where the gate sends them.
            fallback = np.exp(log_gate[orphans]) * active
            fallback[fallback.sum(axis=1) <= 0] = active
            R[orphans] = fallback / fallback.sum(axis=1, keepdims=True)
        R /= R.sum(axis=1, keepdims=True)

    if to_reseed:
        # Give each re-seeded expert its own slice of the worst-explained rows.
        per_expert = max(int(np.ceil(n_samples / (2 * n_active))), int(MIN_EXPERT_ROWS))
        worst = np.argsort(log_mixture, kind="stable")
        for slot, j in enumerate(to_reseed):
            rows = worst[slot * per_expert : (slot + 1) * per_expert]
            R[rows] = 0.0
            R[rows, j] = 1.0
            reseeded[j] = True
            state.collapse_events.append((iteration, problem.names[j], "re-seeded"))
    return True

"""Expectation-maximisation for a mixture of experts.

One EM run, from one initialisation (:func:`run_em`), and the strategy that
runs it ``n_init`` times for ``training="em"``, ``"hard_em"`` and
``"backprop"`` (:class:`EMStrategy`): the in-sample algorithms.

Each iteration is

* M-step: refit the gate to the responsibilities ``R`` (soft targets), and
  refit each expert ``j`` with ``sample_weight = w * R[:, j]``, on the rows
  where that weight is not negligible, so that with top-k routing an
  iteration costs about ``n * k`` expert-rows rather than ``n * E``;
* E-step: ``R_ij`` proportional to ``g_j(x_i) p_j(y_i | x_i)``, computed in
  the log domain (with ``balance="sinkhorn"``, rescaled so that every
  expert's column holds an even share of the rows, ``skmoe/_sinkhorn.py``).
  With ``balance="bias"`` (``skmoe/_bias.py``) the experts are instead
  refitted on the rows the routing sends them, each row's top k of the gate
  plus the routing bias, which steps after every M-step of the gate until
  that routing of the training rows is balanced; the gate is still fitted
  to the posterior.
  With ``top_k=k`` it scores each row's ``2k`` gate favourites (the gate
  renormalised over them) and keeps the ``k`` most
  responsible, renormalised: the experts' refits then cost ``n * k`` rows,
  and a row can still move to a better expert, which it could not if only
  the experts it is routed to were scored. With ``cv`` the ``p_j`` come from
  out-of-fold fits, so that an expert that memorises its training rows does
  not claim them all.

The objective is the weighted mean negative log-likelihood of the training
rows under the mixture as it predicts (with ``top_k``, each row's top k); a
run stops when it changes by less than ``tol`` (a per-sample average, so
``tol`` does not depend on the number of rows).
"""

import copy
import warnings
from dataclasses import dataclass, field
from inspect import signature

import numpy as np
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.utils.parallel import Parallel, delayed

from .._bias import (
    BALANCE_TOL,
    BIAS,
    balance_bias,
    bias_rate,
    biased_routing,
    loads_balanced,
)
from .._experts import seeded_clones
from .._gates import SoftmaxGate
from .._routing import (
    capacity_mask,
    expert_capacity,
    routed_log_weights,
    top_k_mask,
)
from .._sinkhorn import SINKHORN, sinkhorn_log_responsibilities
from .._torch_bridge import INSTALL_HINT
from .._weighted_fit import constant_model
from .base import TrainingStrategy, TrainResult, VerboseReporter
from .steps import (
    SEED_MAX,
    check_init_array,
    cv_splits,
    fit_rows,
    gate_penalty,
    initial_responsibilities,
    labelled_fit_and_predict,
    record_failure,
    routed_metadata,
)

# An expert whose responsibility adds up to fewer rows than this (or than 1% of
# an even share) has collapsed.
MIN_EXPERT_ROWS = 2.0

# With top_k=k the E-step scores each row's CANDIDATES_PER_ROUTED_EXPERT * k
# most gate-weighted experts (see _candidate_count).
CANDIDATES_PER_ROUTED_EXPERT = 2
MIN_EVEN_SHARE = 0.01


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
    # "em" fits the gate to the responsibilities; "backprop" takes gradient
    # steps on the mixture likelihood (the gate's fit_mixture)
    gate_step: str = "em"
    noisy: bool = False
    # balance="sinkhorn": the E-step's responsibilities are balanced
    sinkhorn: bool = False
    # balance="bias": the routing bias's rate (None: no bias)
    bias_rate: object = None
    capacity_factor: object = None
    # column of the shared expert (always on, fitted once on every row)
    shared: object = None
    max_iter: int = 20
    tol: float = 1e-3
    cv_splits: list = None
    y_scale: float = 1.0
    # the one pool of the fit's expert refits, reused by every iteration
    # and restart (a Dask or Ray backend starts its workers once)
    parallel: object = field(default_factory=Parallel)
    verbose: int = 0
    # the fit metadata routed to each expert, on every row (none when empty)
    expert_metadata: list = field(default_factory=list)

    def __getstate__(self):
        # The refit tasks are given the problem (its rows, weights and
        # likelihood) in the pool's workers; the pool stays in this process.
        state = dict(vars(self))
        state.pop("parallel", None)
        return state


@dataclass
class EMState:
    """The running state of one EM run: what the iterations refit in place."""

    experts: list
    gate: object
    noise: list
    active: np.ndarray
    responsibilities: np.ndarray
    loss_curve: list = field(default_factory=list)
    objective_curve: list = field(default_factory=list)
    converged: bool = False
    failures: dict = field(default_factory=dict)
    collapse_events: list = field(default_factory=list)
    # the responsibilities the kept experts were refitted with (for cv)
    fitted_with: np.ndarray = None
    # with cv, each (expert, fold) model, refitted in place like the experts
    fold_experts: dict = field(default_factory=dict)
    # experts fitted once (the shared expert): their rows and outputs
    frozen: dict = field(default_factory=dict)
    # the iteration whose snapshot the run keeps
    kept: int = 0
    # balance="bias": added to the gate's scores wherever experts are chosen
    bias: np.ndarray = None

    @property
    def loss(self):
        """The loss of the iterate the run keeps."""
        return self.loss_curve[self.kept]

    @property
    def objective(self):
        """The objective of the kept iterate, the lowest of the run."""
        return self.objective_curve[self.kept]

    @property
    def n_iter(self):
        return len(self.loss_curve)

    def restore(self, snapshot):
        """Put the fitted parts of ``snapshot`` back in place."""
        self.experts = snapshot.experts
        self.gate = snapshot.gate
        self.noise = list(snapshot.noise)
        self.active = snapshot.active
        self.responsibilities = snapshot.responsibilities
        self.fitted_with = snapshot.fitted_with
        self.kept = snapshot.iteration
        self.bias = snapshot.bias


@dataclass(frozen=True)
class Snapshot:
    """The fitted parts of one EM iterate, safe from later in-place refits."""

    iteration: int
    experts: list
    gate: object
    noise: tuple
    active: np.ndarray
    responsibilities: np.ndarray
    fitted_with: np.ndarray
    bias: np.ndarray = None

    @classmethod
    def of(cls, state, iteration, fitted_with, responsibilities):
        return cls(
            iteration=iteration,
            experts=copy.deepcopy(state.experts),
            gate=copy.deepcopy(state.gate),
            noise=tuple(state.noise),
            active=state.active.copy(),
            responsibilities=responsibilities.copy(),
            fitted_with=fitted_with.copy(),
            bias=None if state.bias is None else state.bias.copy(),
        )


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
    EMState
        Holding the kept iterate.
    """
    n_experts = len(templates)
    R = responsibilities
    state = EMState(
        experts=[None] * n_experts,
        gate=clone(problem.gate),
        noise=[None] * n_experts,
        active=np.ones(n_experts, dtype=bool),
        responsibilities=R,
        # every run, restarts too, starts unbiased
        bias=None if problem.bias_rate is None else np.zeros(n_experts),
    )
    reporter = VerboseReporter(problem.verbose)
    fell_back = [False] * n_experts
    best = None
    reseeded = np.zeros(n_experts, dtype=bool)
    log_likelihood = None

    for iteration in range(problem.max_iter):
        _gate_step(problem, state, R, log_likelihood, random_state)
        log_gate = _active_log_gate(state.gate, problem.X, state.active)
        unbalanced = _bias_iteration(problem, state, log_gate)
        candidates = top_k_mask(
            log_gate,
            _candidate_count(problem, n_experts, iteration),
            always_on=problem.shared,
            bias=state.bias,
        )
        if iteration == 0 and problem.capacity_factor is not None:
            R, log_gate = _first_capacity_step(problem, state, log_gate, random_state)
        if state.bias is not None:
            # the experts learn the rows prediction will send them
            R = biased_routing(log_gate, problem.top_k, state.bias, problem.shared)

        outputs, noise = _refit_experts(
            problem, templates, state, fell_back, R, candidates, random_state
        )
        state.noise = noise
        log_likelihood = _expert_log_likelihood(problem, outputs, noise)
        log_joint = routed_log_weights(log_gate, candidates) + log_likelihood
        log_mixture = logsumexp(log_joint, axis=1)
        loss = _predictive_loss(problem, log_gate, log_likelihood, bias=state.bias)
        state.loss_curve.append(float(loss))
        objective = _training_objective(problem, state, log_gate, log_likelihood, loss)
        state.objective_curve.append(objective)

        R_next = _next_responsibilities(log_joint, log_mixture, problem, state.active)
        balancing = problem.sinkhorn or state.bias is not None
        if best is None or objective <= min(state.objective_curve) or balancing:
            # EM with top-k routing, hard assignments, cv or experts that are
            # not weighted maximum-likelihood fits can make the loss rise:
            # keep the best iterate, not the last. Balanced responsibilities,
            # or a routing bias, trade likelihood for balance by design: the
            # last iterate is the most balanced, and is kept.
            best = Snapshot.of(state, iteration, R, R_next)
        # an expert holds the rows it is fitted on: under a routing bias, those
        # the bias balances, whatever share of the posterior the gate learns
        held = R_next if state.bias is None else R.copy()
        changed = _handle_collapse(
            problem, state, held, log_mixture, log_gate, reseeded, iteration
        )

        change = np.inf if iteration == 0 else state.loss_curve[-2] - loss
        reporter.iteration(
            f"EM iteration {iteration + 1}: loss {loss:.6f} (change {change:.2e})"
        )
        if abs(change) < problem.tol and not changed and not unbalanced:
            state.converged = True
            break
        R = R_next

    state.restore(best)
    if problem.cv_splits is not None:
        # Out-of-fold models only served the E-step: the experts that predict
        # are refitted on all their rows, with the responsibilities the kept
        # iterate's fold models were trained on.
        _refit_experts(
            problem,
            templates,
            state,
            [True] * n_experts,
            state.fitted_with,
            candidates,
            random_state,
            final=True,
        )
    return state


def _first_capacity_step(problem, state, log_gate, random_state):
    """Route the initial gate within capacity, and refit the gate to that.

    The initial responsibilities (k-means clusters, say) know nothing of
    capacity, and neither does the gate fitted to them: a large cluster
    gives a gate whose top choice overloads one expert. Every later M-step
    fits the gate and the experts to the same capacity-limited
    responsibilities; so does the first one: the gate fitted to the initial
    responsibilities is routed within capacity, and the gate is refitted to
    that routing, which the experts are then fitted to. Without the refit the
    first iterate, often the one kept, would predict with a gate that
    ignores capacity.

    Returns
    -------
    R : ndarray of shape (n_samples, n_experts)
        The capacity-limited responsibilities of the first M-step.
    log_gate : ndarray of shape (n_samples, n_experts)
        The refitted gate's log weights.
    """
    keep = _capacity_keep(log_gate, problem, state.active)
    R = np.exp(routed_log_weights(log_gate, keep))
    _gate_step(problem, state, R, None, random_state)
    return R, _active_log_gate(state.gate, problem.X, state.active)


def _gate_step(problem, state, R, log_likelihood, random_state):
    """M-step for the gate: fit it to ``R`` (EM), or take backprop steps.

    The first step of either kind fits the gate to the initial
    responsibilities; later backprop steps descend the mixture's negative
    log-likelihood with the experts of the last iteration held fixed.
    """
    # Balancing penalties spread the load over the routed experts still in
    # use: not over dropped experts, nor the shared expert, which is always on.
    balanced = _routed_experts(problem, state.active)
    X, weights = problem.X, problem.sample_weight
    if log_likelihood is None or problem.gate_step == "em":
        options = _balanced_option(state.gate.fit, balanced)
        state.gate.fit(X, R, weights, warm_start=log_likelihood is not None, **options)
        return
    options = _balanced_option(state.gate.fit_mixture, balanced)
    if problem.shared is not None:
        options["always_on"] = problem.shared
    if state.bias is not None:
        # the gate's minibatches are the bias's steps
        options.update(routing_bias=state.bias, bias_rate=problem.bias_rate)
    state.gate.fit_mixture(
        X,
        log_likelihood,
        weights,
        top_k=problem.top_k,
        noisy=problem.noisy,
        random_state=random_state.randint(SEED_MAX),
        **options,
    )
    if state.bias is not None:
        state.bias = np.array(state.gate.routing_bias_, dtype=np.float64)


def _bias_iteration(problem, state, log_gate):
    """``balance="bias"``: the bias's steps after the gate's M-step; whether
    the routing is still unbalanced (the run is then not converged).

    The loads are those of prediction's routing of the training rows: each
    row's ``top_k`` of the gate's log weights plus the bias, which steps on
    them until they are balanced (:func:`~skmoe._bias.balance_bias`). Under
    backprop the gate's minibatches have taken steps already
    (``fit_mixture``), which steer its training; these steps finish the
    balance on all the rows. Without them an expert the minibatches left
    without rows, refitted on none, was a constant model the gate then
    pushed further down, and stayed dead: on the 569 rows of the breast
    cancer set (15 minibatches a gate step), 8 tree clones, ``top_k=1``,
    three of eight were.
    """
    if state.bias is None:
        return False
    balanced = _routed_experts(problem, state.active)
    state.bias, load = balance_bias(
        log_gate,
        state.bias,
        top_k=problem.top_k,
        rate=problem.bias_rate,
        sample_weight=problem.sample_weight,
        balanced=balanced,
        always_on=problem.shared,
    )
    return not loads_balanced(load[balanced])


def _balanced_option(method, balanced):
    """``{"balanced": mask}`` when some column is left out and ``method`` takes it.

    A user's own gate may have no penalty, and no such parameter.
    """
    if balanced.all() or "balanced" not in signature(method).parameters:
        return {}
    return {"balanced": balanced}


def _active_log_gate(gate, X, active):
    log_gate = gate.predict_log_proba(X)
    if not active.all():
        log_gate[:, ~active] = -np.inf
        log_gate -= logsumexp(log_gate, axis=1, keepdims=True)
    return log_gate


def _candidate_count(problem, n_experts, iteration):
    """How many of each row's gate favourites the E-step scores (None: all).

    With ``top_k=k`` a row is scored by its ``2k`` most gate-weighted experts,
    not only its ``k``: were the E-step restricted to the experts a row is
    routed to, top-1 responsibilities would always be 1 for the gate's own
    choice, and EM could never move a row to a better expert.

    Every expert scores every row when

    * this is the first E-step: the gate was fitted to the initial
      responsibilities, and uniform ones give a uniform gate whose ties would
      make the first-listed experts the only candidates;
    * training by backprop: the gate's gradient steps may send a row to any
      expert, so the likelihood of each must be known;
    * capacity is limited: a row turned away by a full expert must have a
      next choice to go to;
    * the responsibilities are balanced (``balance="sinkhorn"``): the rows
      an expert is short of must be able to move to it, which the gate's
      favourites alone, as unbalanced as the gate, would not allow.
    """
    top_k = problem.top_k
    n_routed = n_experts - (problem.shared is not None)
    if (
        top_k is None
        or iteration == 0
        or problem.gate_step == "backprop"
        or problem.capacity_factor is not None
        or problem.sinkhorn
        or CANDIDATES_PER_ROUTED_EXPERT * top_k >= n_routed
    ):
        return None
    return CANDIDATES_PER_ROUTED_EXPERT * top_k


def _next_responsibilities(log_joint, log_mixture, problem, active):
    """Posterior over each row's candidates, truncated to its top k (or top 1).

    With ``capacity_factor`` the truncation also keeps every expert within
    its capacity (:func:`~skmoe._routing.capacity_mask`, ranked by the
    posterior); a row that finds no room keeps the shared expert alone.
    """
    if problem.sinkhorn:
        log_joint = _balanced_log_joint(log_joint, problem)
        log_mixture = np.zeros(len(log_joint))
    if problem.hard:
        return np.eye(log_joint.shape[1])[np.argmax(log_joint, axis=1)]
    if problem.top_k is None:
        return np.exp(log_joint - log_mixture[:, None])
    if problem.capacity_factor is None:
        keep = top_k_mask(log_joint, problem.top_k, always_on=problem.shared)
    else:
        keep = _capacity_keep(log_joint, problem, active)
    return np.exp(routed_log_weights(log_joint, keep))


def _balanced_log_joint(log_joint, problem):
    """The posterior, Sinkhorn-balanced over the routed experts (the shared
    expert, always on, keeps its own column); rows sum to one."""
    if problem.shared is None:
        return sinkhorn_log_responsibilities(log_joint, problem.sample_weight)
    routed = log_joint.copy()
    routed[:, problem.shared] = -np.inf
    balanced = sinkhorn_log_responsibilities(routed, problem.sample_weight)
    # the shared expert's posterior share stays as it was
    shared = log_joint[:, problem.shared] - logsumexp(log_joint, axis=1)
    balanced += np.log1p(-np.exp(shared))[:, None]
    balanced[:, problem.shared] = shared
    return balanced


def _capacity_keep(log_joint, problem, active):
    """Each row's top-k by the posterior, within the experts' capacities."""
    scores = log_joint.copy()
    if problem.shared is not None:
        scores[:, problem.shared] = -np.inf
    n_routed = int(_routed_experts(problem, active).sum())
    capacity = expert_capacity(
        len(scores), problem.top_k, n_routed, problem.capacity_factor
    )
    keep = capacity_mask(scores, problem.top_k, capacity)
    if problem.shared is not None:
        keep[:, problem.shared] = True
    return keep


def _expert_log_likelihood(problem, outputs, noise):
    """``log p_j(y_i | x_i)`` where expert j scored row i, -inf elsewhere."""
    log_likelihood = np.full((len(problem.y), len(outputs)), -np.inf)
    for j, (rows, output) in enumerate(outputs):
        if rows.size:
            log_likelihood[rows, j] = problem.likelihood.log_likelihood(
                output, problem.y[rows], noise[j]
            )
    return log_likelihood


def _predictive_loss(problem, log_gate, log_likelihood, routed=None, bias=None):
    """Weighted mean negative log-likelihood of the mixture as it predicts.

    With ``top_k`` that is each row's top-k experts (by the gate plus the
    routing ``bias``), a subset of the candidates the E-step scored;
    ``routed`` replaces that routing.
    """
    if routed is None:
        routed = top_k_mask(
            log_gate, problem.top_k, always_on=problem.shared, bias=bias
        )
    log_joint = routed_log_weights(log_gate, routed) + np.where(
        routed, log_likelihood, 0.0
    )
    return -np.average(logsumexp(log_joint, axis=1), weights=problem.sample_weight)


def _training_objective(problem, state, log_gate, log_likelihood, loss):
    """What training minimises: the loss, routed and penalised as in training.

    The kept iterate is the one with the lowest objective. Without balancing
    penalties or capacity it is the loss. A penalty trades likelihood for an
    even use of the experts, so judging iterates by the likelihood alone
    would always prefer the least balanced one: the gate's penalties are
    added, at their strengths. With ``capacity_factor`` the mixture is scored
    as training routes it, within capacity.
    """
    objective = float(loss)
    if problem.capacity_factor is not None:
        routed = _capacity_keep(log_gate, problem, state.active)
        objective = float(
            _predictive_loss(problem, log_gate, log_likelihood, routed=routed)
        )
    return objective + _gate_penalty(state.gate, problem, log_gate, state.active)


def _gate_penalty(gate, problem, log_gate, active):
    """The gate's balancing penalty and z-loss on the training rows, weighted."""
    return gate_penalty(
        gate,
        log_gate,
        problem.sample_weight,
        balanced=_routed_experts(problem, active),
        logits=(
            (lambda: gate.decision_function(problem.X))
            if hasattr(gate, "decision_function")
            else None
        ),
    )


def _routed_experts(problem, active):
    """Mask of the routed experts still in use: active, and not the shared one."""
    routed = active.copy()
    if problem.shared is not None:
        routed[problem.shared] = False
    return routed


def _refit_experts(
    problem, templates, state, fell_back, R, candidates, random_state, final=False
):
    """M-step for the experts, and their outputs for the E-step.

    Parameters
    ----------
    final : bool, default=False
        Only refit the experts on all their rows, predicting nothing (used
        after a ``cv`` run, whose iterations fit fold models only).

    Returns
    -------
    outputs : list of (rows, output)
        For each expert, the rows it is a candidate for and its output on
        them (out-of-fold with ``cv``); empty for dropped experts.
    noise : list
        Each expert's noise parameter (``None`` for classifiers).
    """
    if problem.shared is not None:
        # The shared expert learns from every row with the user's weights, so
        # its fit never changes: it is fitted once (see state.frozen).
        R = R.copy()
        R[:, problem.shared] = 1.0
    own_rows = [fit_rows(R, j, problem.sample_weight) for j in range(len(templates))]
    # The noise is estimated on the rows an expert was fitted to, the
    # likelihood on the rows it is a candidate for: predict both at once.
    need_rows = [
        np.union1d(rows, np.flatnonzero(candidates[:, j]))
        for j, rows in enumerate(own_rows)
    ]
    keys, jobs = _refit_jobs(
        problem,
        templates,
        state,
        fell_back,
        R,
        own_rows,
        need_rows,
        random_state,
        final,
    )
    results = problem.parallel(jobs)
    collected = _collect_refits(
        problem, state, fell_back, keys, results, need_rows, final
    )
    noise = list(state.noise)
    if final:
        return [(np.empty(0, dtype=np.intp), None)] * len(templates), noise
    outputs = [(np.empty(0, dtype=np.intp), None)] * len(templates)
    for j in np.flatnonzero(state.active):
        rows, own = need_rows[j], own_rows[j]
        in_fit = np.isin(rows, own)
        noise[j] = problem.likelihood.noise(
            collected[j][in_fit],
            problem.y[own],
            problem.sample_weight[own] * R[own, j],
            problem.y_scale,
        )
        scored = candidates[rows, j]
        outputs[j] = (rows[scored], collected[j][scored])
    return outputs, noise


def _refit_jobs(
    problem, templates, state, fell_back, R, own_rows, need_rows, random_state, final
):
    """The joblib tasks of one M-step, and the ``(expert, fold)`` of each.

    ``fold`` is None for an expert's fit on all its rows.
    """
    use_folds = problem.cv_splits is not None and not final
    keys, jobs = [], []
    for j, template in enumerate(templates):
        if j in state.frozen and not final:
            continue
        if not state.active[j]:
            if state.experts[j] is None:
                # Dropped before any full fit (possible with cv): never routed
                # to, but experts_ should still hold a fitted model.
                state.experts[j] = constant_model(
                    template, problem.X, problem.y, problem.sample_weight
                )
            continue
        seeds = random_state.randint(SEED_MAX, size=len(problem.cv_splits or []) + 1)
        if use_folds:
            for fold, (train, test) in enumerate(problem.cv_splits):
                rows = np.intersect1d(own_rows[j], train)
                previous = state.fold_experts.get((j, fold))
                keys.append((j, fold))
                jobs.append(
                    delayed(labelled_fit_and_predict)(
                        clone(template) if previous is None else previous,
                        problem,
                        rows,
                        R[rows, j],
                        seeds[fold + 1],
                        np.intersect1d(need_rows[j], test),
                        routed_metadata(problem, j),
                        f"expert {problem.names[j]!r} on fold {fold}",
                    )
                )
            continue
        # Refit the last fit in place (experts with warm_start=True then
        # continue from it), unless a constant model stood in for it.
        reusable = state.experts[j] is not None and not fell_back[j]
        keys.append((j, None))
        jobs.append(
            delayed(labelled_fit_and_predict)(
                state.experts[j] if reusable else clone(template),
                problem,
                own_rows[j],
                R[own_rows[j], j],
                seeds[0],
                np.empty(0, dtype=np.intp) if final else need_rows[j],
                routed_metadata(problem, j),
                f"expert {problem.names[j]!r}",
            )
        )
    return keys, jobs


def _collect_refits(problem, state, fell_back, keys, results, need_rows, final):
    """Store the refitted models in ``state``; return each expert's outputs.

    The outputs are on ``need_rows[j]``; the shared expert's, fitted once,
    are kept in ``state.frozen`` and reused.
    """
    collected = [problem.likelihood.empty_output(len(rows)) for rows in need_rows]
    for (j, fold), (fitted, failure, predicted_rows, output) in zip(keys, results):
        if failure is not None:
            label = problem.names[j] + ("" if fold is None else f" (fold {fold})")
            record_failure(state.failures, label, failure)
        if fold is None:
            state.experts[j] = fitted
            fell_back[j] = failure is not None
        elif failure is None:
            state.fold_experts[(j, fold)] = fitted
        else:
            state.fold_experts.pop((j, fold), None)
        collected[j][np.searchsorted(need_rows[j], predicted_rows)] = output
    if problem.shared is not None and not final:
        j = problem.shared
        if j in state.frozen:
            need_rows[j], collected[j] = state.frozen[j]
        elif not fell_back[j]:
            state.frozen[j] = (need_rows[j], collected[j])
    return collected


def _handle_collapse(problem, state, R, log_mixture, log_gate, reseeded, iteration):
    """Re-seed experts that collapsed once, drop those that collapse again.

    Modifies ``R`` (and ``state.active``) in place. Returns whether anything
    changed, in which case the run is not declared converged.
    """
    active = state.active
    # The shared expert, always on and fitted on every row, cannot collapse.
    routed = _routed_experts(problem, active)
    n_active = int(routed.sum())
    if n_active <= 1:
        return False
    w = problem.sample_weight
    rows_held = (w[:, None] * R).sum(axis=0) / w.mean()
    n_samples = R.shape[0]
    threshold = max(MIN_EXPERT_ROWS, MIN_EVEN_SHARE * n_samples / n_active)
    collapsed = np.flatnonzero(routed & (rows_held < threshold))
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
            if problem.hard:
                fallback = np.eye(len(active))[np.argmax(fallback, axis=1)]
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


class EMStrategy(TrainingStrategy):
    """``training="em"``, ``"hard_em"`` and ``"backprop"``: in-sample EM.

    The experts are refitted on the responsibilities at every iteration; the
    gate is fitted to them (EM) or takes gradient steps on the mixture's
    likelihood (backprop). ``n_init`` runs from fresh initialisations keep
    the one with the lowest objective.
    """

    def __init__(self, moe):
        super().__init__(moe)
        self.name = moe.training

    def check_options(self):
        moe = self.moe
        check_sinkhorn_training(moe)
        if moe.training == "backprop":
            gate = moe._gate_template()
            if not hasattr(gate, "fit_mixture"):
                raise ValueError(
                    f"training='backprop' needs a gate with a fit_mixture method "
                    f"(SoftmaxGate, MLPGate); {type(gate).__name__} has none."
                )
            check_gate_step_available(gate)
            if (
                moe.balance == BIAS
                and "bias_rate" not in signature(gate.fit_mixture).parameters
            ):
                raise ValueError(
                    "balance='bias' with training='backprop' steps the routing "
                    "bias in the gate's minibatches: the gate's fit_mixture "
                    f"needs routing_bias and bias_rate parameters, which "
                    f"{type(gate).__name__}'s has not."
                )
        check_noisy_gating(moe)
        if moe.capacity_factor is not None:
            if moe.balance == BIAS:
                raise ValueError(
                    "balance='bias' and capacity_factor both balance the top-k "
                    "routing, the first by a bias on the choice, the second by "
                    "turning rows away in training; use one of them."
                )
            if moe.top_k is None:
                raise ValueError(
                    "capacity_factor limits the rows each expert takes under top-k "
                    "routing; set top_k (with top_k=None every expert takes every "
                    "row)."
                )
            if moe.training == "hard_em":
                raise ValueError(
                    "capacity_factor is not supported with training='hard_em'; use "
                    "training='em' or 'backprop'."
                )
            if moe.capacity_factor < 1 and moe.shared_expert is None:
                raise ValueError(
                    f"capacity_factor={moe.capacity_factor} < 1 leaves some rows "
                    "without any expert in training; use capacity_factor >= 1, or "
                    "give a shared_expert to take them."
                )

    def fit(self, data, random_state):
        moe = self.moe
        n_experts = len(data.estimators)
        n_routed = n_experts - (data.shared is not None)
        init = self._resolved_init(data.X.shape[0], n_routed)
        with Parallel(n_jobs=moe.n_jobs) as parallel:
            problem = self._problem(data, parallel)
            best = self._best_run(problem, data, init, n_routed, random_state)
        return TrainResult(
            experts=best.experts,
            gate=best.gate,
            noise=best.noise,
            active=best.active,
            responsibilities=best.responsibilities,
            loss_curve=best.loss_curve,
            objective_curve=best.objective_curve,
            loss=best.loss,
            converged=best.converged,
            strategy=self.name,
            failures=best.failures,
            collapse_events=best.collapse_events,
            routing_bias=best.bias,
        )

    def _problem(self, data, parallel):
        """The :class:`EMProblem` of ``data``, its refits run by ``parallel``."""
        moe = self.moe
        n_routed = len(data.estimators) - (data.shared is not None)
        return EMProblem(
            X=data.X,
            y=data.y,
            sample_weight=data.sample_weight,
            names=data.names,
            likelihood=data.likelihood,
            gate=moe._gate_template(),
            top_k=moe.top_k,
            hard=moe.training == "hard_em",
            gate_step="backprop" if moe.training == "backprop" else "em",
            noisy=moe.noisy_gating,
            sinkhorn=moe.balance == SINKHORN,
            bias_rate=bias_rate(moe, n_routed),
            capacity_factor=moe.capacity_factor,
            shared=data.shared,
            max_iter=moe.max_iter,
            tol=moe.tol,
            cv_splits=(
                None
                if moe.cv is None
                else cv_splits(
                    moe.cv,
                    data.X,
                    data.y,
                    classifier=data.task == "classifier",
                    sample_weight=data.sample_weight,
                    metadata=data.split_metadata,
                )
            ),
            y_scale=data.y_scale,
            parallel=parallel,
            verbose=moe.verbose,
            expert_metadata=data.expert_metadata,
        )

    def _best_run(self, problem, data, init, n_routed, random_state):
        """Run EM from ``n_init`` initialisations; the lowest objective's state."""
        moe = self.moe
        best = first = None
        identical = True
        reporter = VerboseReporter(moe.verbose)
        for restart in range(moe.n_init):
            reporter.begin(f"Initialisation {restart + 1} of {moe.n_init}")
            templates = seeded_clones(data.estimators, random_state)
            problem.gate = seeded_clones([moe._gate_template()], random_state)[0]
            R = initial_responsibilities(
                init, problem.X, problem.sample_weight, n_routed, random_state
            )
            if problem.shared is not None:
                R = with_shared_column(R, moe.top_k)
            state = run_em(problem, templates, R, random_state)
            status = "converged" if state.converged else "did not converge"
            reporter.end(
                f"Initialisation {restart + 1} {status} after {state.n_iter} "
                f"iterations, loss {state.loss:.6f}"
            )
            if first is None:
                first = state
            else:
                identical = identical and _same_run(first, state)
            if best is None or state.objective < best.objective:
                best = state
        if moe.n_init > 1 and identical:
            _warn_identical_restarts(moe)
        return best

    def _resolved_init(self, n_samples, n_routed):
        # init describes the routed experts; the shared one is added later
        init = self.moe.init
        if isinstance(init, str):
            if init == "auto":
                # Clones of one template start from k-means clusters, since
                # from uniform responsibilities identical clones would stay
                # identical. Different experts start level and let the data
                # tell them apart.
                init = "uniform" if isinstance(self.moe.experts, list) else "kmeans"
            return init
        return check_init_array(init, n_samples, n_routed)

    def not_converged_message(self, result):
        name = type(self.moe).__name__
        if result.n_iter > 1:
            change = abs(result.loss_curve[-1] - result.loss_curve[-2])
            why = f"last change of the loss {change:.2e} >= tol={self.moe.tol}"
        else:
            why = "one iteration cannot show convergence"
        if result.routing_bias is not None:
            why += (
                ", or the routing bias had not balanced the training rows' loads "
                f"to within {BALANCE_TOL:.0%} of their mean"
            )
        return (
            f"{name} did not converge in max_iter={self.moe.max_iter} EM iterations "
            f"({why}). Increase max_iter or tol."
        )


def _same_run(a, b):
    """Whether two EM runs fitted the same: the same losses and responsibilities."""
    return a.loss_curve == b.loss_curve and np.array_equal(
        a.responsibilities, b.responsibilities
    )


def _warn_identical_restarts(moe):
    """Every restart repeated the first: say so, since each one cost a full run.

    Restarts differ by their initial responsibilities and by the seeds drawn
    for the experts and the gate; with ``init="uniform"`` (the start of a
    list of experts under ``init="auto"``) or an array, only the seeds
    change, and experts that ignore theirs (``LogisticRegression`` with its
    default solver) fit the same every time. Drawing other starts instead
    would change what such configurations fit, so the restarts are left as
    they are, and the user is told.
    """
    if isinstance(moe.init, str):
        start = f"init={moe.init!r}"
        if moe.init == "auto":
            start += " (uniform responsibilities for a list of experts)"
    else:
        start = "an array init"
    warnings.warn(
        f"The n_init={moe.n_init} initialisations of {type(moe).__name__} all "
        f"gave identical fits: {start} starts every run from the same "
        "responsibilities, and the experts and the gate fitted the same way "
        f"each time, so n_init > 1 only costs time here. Use init='random' or "
        "init='kmeans' for restarts that differ, or n_init=1.",
        UserWarning,
        stacklevel=6,  # the user's fit (through _fit_context's wrapper, _best_run)
    )


def check_gate_step_available(gate):
    """Fail before any expert is fitted when a SoftmaxGate's backprop step has
    no torch (a user's own gate may take its gradient steps without torch)."""
    if isinstance(gate, SoftmaxGate):
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise ImportError(
                "training='backprop' trains the SoftmaxGate with torch, an "
                f"optional dependency: {INSTALL_HINT}."
            ) from exc


def check_sinkhorn_training(moe):
    """``balance="sinkhorn"`` balances an E-step's responsibilities, which
    gradient training of the gate does not use."""
    if moe.balance == SINKHORN and moe.training == "backprop":
        raise ValueError(
            "balance='sinkhorn' balances the responsibilities of EM's E-step, "
            "which training='backprop' does not fit the gate to; use a penalty "
            "(balance='switch', 'importance' or 'entropy'), or training='em' or "
            "'crossfit'."
        )


def check_noisy_gating(moe):
    """noisy_gating perturbs the top-k choice of gradient training only."""
    if moe.noisy_gating and (moe.training != "backprop" or moe.top_k is None):
        raise ValueError(
            "noisy_gating=True perturbs the gate's top-k choice during "
            "gradient training: it needs training='backprop' and top_k set "
            f"(got training={moe.training!r}, top_k={moe.top_k})."
        )


def with_shared_column(routed, top_k):
    """Initial responsibilities with a column for the shared expert (the last).

    The routed experts start as ``init`` says; the shared expert starts with
    the share it would have as one more expert in each row's mixture:
    ``1 / (top_k + 1)``, or ``1 / n_experts`` when every expert is mixed.
    """
    n_experts = routed.shape[1] + 1
    share = 1.0 / (n_experts if top_k is None else top_k + 1)
    return np.column_stack([(1.0 - share) * routed, np.full(len(routed), share)])

"""``training="crossfit"``: the gate learns from out-of-fold evidence only.

An in-sample E-step rewards whichever expert memorises its training rows.
Cross-fitted training learns the gate as ``StackingClassifier`` learns its
final estimator, from predictions on rows the experts did not see, and
keeps what makes a mixture of experts: weights that depend on ``x``, and
experts that specialise.

1. **Cross-fit.** Each expert is fitted on the ``K - 1`` training folds of
   ``cv`` and predicts the held-out fold: its out-of-fold output on every
   row (:class:`~skmoe._training.oof_gate.OutOfFoldEvidence`).
2. **Gate.** EM over that fixed evidence, with no expert refitted; the gate
   (its regularisation, down to the constant gate and to each single
   expert) is chosen by cross-validation over the same evidence
   (``oof_gate.py``).
3. **Specialisation rounds** (``specialise``). The experts are cross-fitted
   again with the gate's responsibilities as sample weights; a new evidence
   and a new gate follow. A round is kept only if the held-out loss improves;
   the first that does not ends the rounds, and the previous state stands.
   Clones of one template start from k-means responsibilities, so that
   the first cross-fit already gives different experts.
4. **Final fit.** Every expert is fitted on all rows with the weights of the
   kept state, as Stacking refits its estimators.

Every (fold x expert) fit, and every final fit, is one task of one
``sklearn.utils.parallel.Parallel``: a joblib backend (Dask, Ray) spreads
them over a cluster.
"""

from dataclasses import dataclass

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.utils.parallel import Parallel, delayed
from threadpoolctl import threadpool_limits

from .._bias import balance_bias, bias_rate, biased_routing
from .._experts import seeded_clones
from .._weighted_fit import constant_model
from .base import TrainingStrategy, TrainResult, VerboseReporter
from .em import MIN_EVEN_SHARE, MIN_EXPERT_ROWS
from .oof_gate import (
    OutOfFoldEvidence,
    fit_selected,
    gate_candidates,
    log_routing,
    select_gate,
)
from .steps import (
    SEED_MAX,
    check_init_array,
    cv_splits,
    fit_rows,
    initial_responsibilities,
    labelled_fit_and_predict,
    record_failure,
    routed_metadata,
)

#: Folds of the cross-fit when ``cv=None``: 5, as StackingClassifier's.
DEFAULT_FOLDS = 5

#: Most specialisation rounds of ``specialise="auto"`` for clones of one
#: template (a list of different experts gets none).
AUTO_ROUNDS_FOR_CLONES = 10


@dataclass(frozen=True)
class CrossFitState:
    """One cross-fit of the experts and the gate chosen over its evidence.

    Attributes
    ----------
    weights : ndarray of shape (n_samples, n_experts)
        The responsibilities the experts were fitted with (times the sample
        weights).
    selection : Selection
    gate_fit : GateFit
        The chosen gate, fitted on every row.
    failures : dict
    finals : list of estimator or None
        The experts fitted on all rows with ``weights``, when they were
        fitted together with the folds.
    active : ndarray of bool of shape (n_experts,)
        The experts that had rows to fit on (the others collapsed).
    """

    weights: np.ndarray
    selection: object
    gate_fit: object
    failures: dict
    finals: list = None
    active: np.ndarray = None

    @property
    def loss(self):
        return self.selection.loss

    @property
    def log_likelihood(self):
        return float(self.selection.log_likelihoods[self.selection.best])


class CrossFitStrategy(TrainingStrategy):
    """The default: cross-fitted experts, a gate over out-of-fold evidence."""

    name = "crossfit"
    # warnings count rounds as loss_curve_ does: round 0 first
    iteration_name = "crossfit round"

    #: options of the in-sample algorithms that cross-fitting does not have
    _REFUSED = {
        "capacity_factor": lambda moe: moe.capacity_factor is not None,
        "shared_expert": lambda moe: moe.shared_expert is not None,
        "noisy_gating": lambda moe: bool(moe.noisy_gating),
        "n_init": lambda moe: moe.n_init != 1,
    }

    def check_options(self):
        refused = [name for name, is_set in self._REFUSED.items() if is_set(self.moe)]
        if refused:
            raise ValueError(
                f"{', '.join(refused)} {'is' if len(refused) == 1 else 'are'} not "
                "supported by training='crossfit' (the default); they belong to "
                "the in-sample algorithms: set training='em' (or 'backprop') to "
                "use them."
            )

    def fit(self, data, random_state):
        moe = self.moe
        splits = cv_splits(
            self._default_folds(data, random_state) if moe.cv is None else moe.cv,
            data.X,
            data.y,
            classifier=data.task == "classifier",
            sample_weight=data.sample_weight,
            metadata=data.split_metadata,
        )
        templates = seeded_clones(data.estimators, random_state)
        rate = bias_rate(moe, len(data.estimators))
        candidates = gate_candidates(
            moe._gate_template(),
            data.names,
            grid=isinstance(moe.gate, str) and moe.gate == "softmax",
            top_k=moe.top_k,
            regression=data.task != "classifier",
            balance=moe.balance,
            bias_rate=rate,
        )
        start, every_row = self._initial_weights(data, random_state)
        if rate is not None and not every_row:
            start = self._balanced_start(start, data, rate)
        rounds = self._rounds()
        reporter = VerboseReporter(moe.verbose)
        reporter.begin(f"Cross-fitting {len(templates)} experts on {len(splits)} folds")
        with Parallel(n_jobs=moe.n_jobs) as parallel:
            evaluate = _Evaluation(
                parallel,
                templates,
                data,
                splits,
                candidates,
                moe,
                random_state,
                # a biased routing's gates start from the routing that the
                # experts were fitted on
                gate_starts=rate is not None,
            )
            state = evaluate(start, with_finals=every_row)
            curve, log_likelihoods = [state.loss], [state.log_likelihood]
            reporter.iteration(
                f"round 0: held-out loss {state.loss:.6f}, gate "
                f"{state.selection.labels[state.selection.best]!r}"
            )
            accepted = 0
            for round_ in range(1, rounds + 1):
                # The gate's posterior over every expert, with top_k too (rows
                # of negligible responsibility are left out of each fit, so a
                # sharp gate still gives each expert about its own rows).
                # Hard top-k assignments by the posterior split the rows by
                # how well each expert happened to fit y, which the gate
                # cannot see (user guide, section 2.4, has the measurement).
                proposal = evaluate(self._round_weights(state, data))
                curve.append(proposal.loss)
                log_likelihoods.append(proposal.log_likelihood)
                better = proposal.loss < state.loss
                reporter.iteration(
                    f"round {round_}: held-out loss {proposal.loss:.6f} "
                    f"({'kept' if better else 'not kept'})"
                )
                if not better:
                    break
                state, accepted = proposal, accepted + 1
            finals, final_failures = (
                (state.finals, {})
                if state.finals is not None
                else evaluate.final_fits(state.weights, state.active)
            )
        converged = accepted < rounds or rounds == 0
        reporter.end(
            f"Kept round {accepted} of {len(curve) - 1}, held-out loss {state.loss:.6f}"
        )
        return TrainResult(
            experts=finals,
            gate=state.gate_fit.gate,
            noise=state.gate_fit.noise,
            active=state.active,
            responsibilities=state.gate_fit.responsibilities,
            loss_curve=curve,
            objective_curve=list(curve),
            loss=state.loss,
            converged=converged,
            strategy=self.name,
            failures={**state.failures, **final_failures},
            routing_bias=state.gate_fit.bias,
            collapse_events=[
                (accepted - 1, data.names[j], "dropped")
                for j in np.flatnonzero(~state.active)
            ],
            extra={
                "gate_selection_": state.selection.as_dict(),
                "oof_log_likelihood_": log_likelihoods,
                "n_specialisation_rounds_": accepted,
            },
        )

    def _round_weights(self, state, data):
        """The responsibilities a specialisation round cross-fits the experts
        with: the chosen gate's posterior, or with a routing bias
        (``balance="bias"``) the routing itself (each row's top k of the
        gate plus the bias, weighted by the gate), so that each expert
        learns the rows the biased routing sends it."""
        gate_fit = state.gate_fit
        if gate_fit.bias is None:
            return gate_fit.responsibilities
        return np.exp(
            log_routing(
                gate_fit.gate, data.X, self.moe.top_k, state.active, gate_fit.bias
            )
        )

    def _balanced_start(self, R, data, rate):
        """``balance="bias"``: the starting responsibilities as a routing
        bias balances them.

        A gate is fitted to ``R`` (k-means clusters, of any sizes), its bias
        stepped until each row's top k of the gate plus the bias is
        balanced, and the experts start from that routing, as EM's first
        iteration refits them. From the clusters themselves, an expert of a
        small cluster would be poor on most rows, the gate chosen over its
        out-of-fold evidence would score it low on every row alike, and no
        bias could then give it its share without sending it rows it was
        not fitted on.
        """
        gate = clone(self.moe._gate_template()).fit(data.X, R, data.sample_weight)
        log_gate = gate.predict_log_proba(data.X)
        bias, _ = balance_bias(
            log_gate,
            np.zeros(R.shape[1]),
            top_k=self.moe.top_k,
            rate=rate,
            sample_weight=data.sample_weight,
        )
        return biased_routing(log_gate, self.moe.top_k, bias)

    def _default_folds(self, data, random_state):
        """5 shuffled folds, stratified for classifiers.

        Shuffled, unlike ``StackingClassifier``'s unshuffled ``cv=5``: rows
        often come sorted (by a target, a date, a category), and contiguous
        folds then hold different data, so that each expert's out-of-fold
        predictions, the gate's only evidence, say little of the rows it
        will see. On the benchmark's concrete set (sorted rows), unshuffled
        folds put the forest's held-out RMSE at 11.1 where it scores 6.2 on
        new rows. An int ``cv`` keeps scikit-learn's meaning (unshuffled).
        """
        splitter = StratifiedKFold if data.task == "classifier" else KFold
        return splitter(
            DEFAULT_FOLDS, shuffle=True, random_state=random_state.randint(SEED_MAX)
        )

    def _rounds(self):
        specialise = self.moe.specialise
        if specialise == "auto":
            return 0 if isinstance(self.moe.experts, list) else AUTO_ROUNDS_FOR_CLONES
        return int(specialise)

    def _initial_weights(self, data, random_state):
        """The first cross-fit's responsibilities, and whether they are all ones.

        A list of experts starts as Stacking does: every expert on every row
        at full weight. Clones of one template start from k-means clusters
        (from one template and all rows they would be one expert E times);
        ``init`` overrides both.
        """
        n_samples, n_experts = data.X.shape[0], len(data.estimators)
        init = self.moe.init
        if not isinstance(init, str):
            return check_init_array(init, n_samples, n_experts), False
        if init == "auto":
            init = "uniform" if isinstance(self.moe.experts, list) else "kmeans"
        if init == "uniform":
            return np.ones((n_samples, n_experts)), True
        R = initial_responsibilities(
            init, data.X, data.sample_weight, n_experts, random_state
        )
        return R, False

    def not_converged_message(self, result):
        return (
            f"{type(self.moe).__name__} (crossfit) was still improving its held-out "
            f"loss after {len(result.loss_curve) - 1} specialisation rounds; "
            "increase specialise."
        )


class _Evaluation:
    """Cross-fits the experts with given weights and chooses the gate.

    Holds what every cross-fit of one ``fit`` shares: the parallel pool, the
    seeded experts, the folds and the gate candidates.
    """

    def __init__(
        self, parallel, templates, data, splits, candidates, moe, rng, gate_starts
    ):
        self.parallel = parallel
        #: whether each gate's EM starts from the weights of the experts
        self.gate_starts = gate_starts
        self.templates = templates
        self.data = data
        self.splits = splits
        self.candidates = candidates
        self.moe = moe
        self.rng = rng

    def __call__(self, weights, *, with_finals=False):
        data, n_experts = self.data, len(self.templates)
        active = self._alive(weights)
        keys, jobs = [], []
        for j, template in enumerate(self.templates):
            if not active[j]:
                continue
            rows_j = fit_rows(weights, j, data.sample_weight)
            for fold, (train, test) in enumerate(self.splits):
                rows = np.intersect1d(rows_j, train)
                keys.append((j, fold))
                jobs.append(self._task(template, rows, weights[rows, j], test, j, fold))
            if with_finals:
                keys.append((j, None))
                jobs.append(self._task(template, rows_j, weights[rows_j, j], None, j))
        results = self.parallel(jobs)

        outputs = [data.likelihood.empty_output(len(data.y)) for _ in range(n_experts)]
        finals = self._dead_finals(active) if with_finals else None
        failures = {}
        for (j, fold), (fitted, failure, rows, output) in zip(keys, results):
            label = data.names[j] + ("" if fold is None else f" (fold {fold})")
            if failure is not None:
                record_failure(failures, label, failure)
            if fold is None:
                finals[j] = fitted
            else:
                outputs[j][rows] = output
        evidence = OutOfFoldEvidence(
            data.likelihood, outputs, data.y, data.sample_weight, data.y_scale, active
        )
        options = dict(
            max_iter=self.moe.max_iter,
            tol=self.moe.tol,
            start=weights if self.gate_starts else None,
        )
        # the gate's products are skinny: BLAS threads cost more than they
        # save (see SoftmaxGate.fit); one limit for all of its many fits
        with threadpool_limits(limits=1, user_api="blas"):
            selection = select_gate(
                self.candidates,
                data.X,
                evidence,
                top_k=self.moe.top_k,
                random_state=self.rng,
                **options,
            )
            gate_fit = fit_selected(selection, data.X, evidence, **options)
        return CrossFitState(weights, selection, gate_fit, failures, finals, active)

    def _alive(self, weights):
        """The experts that hold enough of the rows to be fitted.

        An expert whose responsibilities add up to fewer rows than EM's
        collapse threshold has collapsed: it is not fitted, and the gate
        cannot route to it (its evidence is ``-inf``), rather than a
        constant model standing in for it in every fold.
        """
        w = self.data.sample_weight
        rows_held = (w @ weights) / w.mean()
        n_samples, n_experts = weights.shape
        return rows_held >= max(MIN_EXPERT_ROWS, MIN_EVEN_SHARE * n_samples / n_experts)

    def _dead_finals(self, active):
        """Constant models for the collapsed experts (``experts_`` holds one)."""
        data = self.data
        return [
            None
            if alive
            else constant_model(template, data.X, data.y, data.sample_weight)
            for template, alive in zip(self.templates, active)
        ]

    def final_fits(self, weights, active):
        """Every active expert fitted on all its rows with ``weights``."""
        data = self.data
        finals = self._dead_finals(active)
        live = np.flatnonzero(active)
        jobs = []
        for j in live:
            rows = fit_rows(weights, j, data.sample_weight)
            jobs.append(self._task(self.templates[j], rows, weights[rows, j], None, j))
        failures = {}
        for j, (fitted, failure, _, _) in zip(live, self.parallel(jobs)):
            finals[j] = fitted
            if failure is not None:
                record_failure(failures, data.names[j], failure)
        return finals, failures

    def _task(self, template, rows, responsibility, predict_rows, j, fold=None):
        seed = int(self.rng.randint(SEED_MAX))
        if predict_rows is None:
            predict_rows = np.empty(0, dtype=np.intp)
        where = "on all rows" if fold is None else f"on fold {fold}"
        return delayed(labelled_fit_and_predict)(
            clone(template),
            self.data,
            rows,
            responsibility,
            seed,
            predict_rows,
            routed_metadata(self.data, j),
            f"expert {self.data.names[j]!r} {where}",
        )

"""``training="backprop"`` with torch MLP experts: one fused module, end to end.

When every expert is a TorchMLP of one architecture (the experts say so with
their class attribute ``_skmoe_fusable``) and the gate is a SoftmaxGate or
an MLPGate, the gate and the experts train as one torch module
(:mod:`skmoe.torch.fused`): the experts stacked and batched, each row dispatched to
its top-k experts. Its iterations are epochs: the experts' ``max_epochs``
bound them (the mixture's ``max_iter`` does not), and training stops once
the loss has not improved by more than ``tol`` for :data:`FUSED_PATIENCE`
epochs in a row.
"""

import numpy as np
from scipy.special import log_softmax, logsumexp, softmax

from .._bias import bias_rate
from .._routing import routed_log_weights, top_k_mask
from .._training.base import TrainingStrategy, TrainResult, VerboseReporter
from .._training.em import check_noisy_gating, check_sinkhorn_training
from .._training.steps import gate_penalty
from .fused import FusedGate, fit_fused, fused_template, gate_architecture

# The fused mixture stops once its loss has not improved by more than tol for
# this many epochs in a row (MLPClassifier's n_iter_no_change).
FUSED_PATIENCE = 10


def fuses(moe, estimators, gate):
    """Whether ``moe`` trains as one fused torch module on ``estimators``.

    That is with ``training="backprop"`` when every expert is of one
    architecture, the gate is a SoftmaxGate or an MLPGate, and no option
    that only the alternating loop of gate steps and expert refits has is
    set (a shared expert, capacity, ``cv``, initial responsibilities, a
    routing bias: ``balance="bias"`` refits the experts on the rows its
    biased routing sends them, between the gate's steps). The
    caller has checked that every expert declares it can fuse
    (``_skmoe_fusable``), before torch is imported.
    """
    alternating_only = (
        moe.shared_expert is not None
        or moe.capacity_factor is not None
        or moe.cv is not None
        or not (isinstance(moe.init, str) and moe.init == "auto")
        or bias_rate(moe, len(estimators)) is not None
    )
    if moe.training != "backprop" or alternating_only:
        return False
    return (
        gate_architecture(gate) is not None
        and fused_template(estimators, moe._expert_kind) is not None
    )


class FusedStrategy(TrainingStrategy):
    """Train the fused module ``n_init`` times; keep the lowest objective."""

    name = "fused"
    # the fused module densifies a sparse X itself (under the memory guard of
    # skmoe._validation.densify), whatever its experts' own tags say
    accepts_sparse = True

    def check_options(self):
        check_noisy_gating(self.moe)
        check_sinkhorn_training(self.moe)

    def fit(self, data, random_state):
        moe = self.moe
        gate = moe._gate_template()
        # the EM path validates the gate in gate.fit; here it is only read
        gate._validate_params()
        options = dict(
            task=moe._expert_kind,
            n_outputs=data.n_outputs,
            expert=fused_template(data.estimators, moe._expert_kind),
            n_experts=len(data.estimators),
            top_k=moe.top_k,
            noisy=moe.noisy_gating,
            balance=gate.balance,
            balance_strength=gate.balance_strength,
            z_loss=gate.z_loss,
            tol=moe.tol,
            n_iter_no_change=FUSED_PATIENCE,
            verbose=moe.verbose,
            **gate_architecture(gate),
        )
        reporter = VerboseReporter(moe.verbose)
        best = None
        for restart in range(moe.n_init):
            reporter.begin(f"Initialisation {restart + 1} of {moe.n_init} (fused)")
            result = fit_fused(
                data.X, data.y, data.sample_weight, random_state=random_state, **options
            )
            loss, objective, log_joint = self._judge(result, gate, data)
            reporter.end(f"  loss {loss:.6f}, objective {objective:.6f}")
            if best is None or objective < best[0]:
                best = (objective, result, loss, log_joint)
        _, result, loss, log_joint = best
        regressor = result.task == "regressor"
        return TrainResult(
            experts=[
                result.export_expert(j, template=estimator)
                for j, estimator in enumerate(data.estimators)
            ],
            gate=FusedGate(result),
            noise=(
                list(result.noise_variance) if regressor else [None] * result.n_experts
            ),
            active=np.ones(result.n_experts, dtype=bool),
            # the training rows' posterior under prediction's routing
            responsibilities=softmax(log_joint, axis=1),
            loss_curve=list(result.nll_curve),
            objective_curve=list(result.loss_curve),
            loss=loss,
            converged=result.converged,
            strategy=self.name,
            fused=result,
        )

    def _judge(self, result, gate, data):
        """A module's loss and objective, judged as EM's iterates are.

        The weighted loss of the training rows under prediction's routing,
        plus the gate's penalties. The epochs' losses, minibatch averages
        taken while the weights moved (with training's 2k candidates, noise
        and dropout), are not used.

        Returns
        -------
        loss, objective : float
        log_joint : ndarray of shape (n_samples, n_experts)
            ``log g_j(x_i) + log p_j(y_i | x_i)`` of the routed experts, -inf
            elsewhere.
        """
        logits = result.gate_logits(data.X)
        log_gate = log_softmax(logits, axis=1)
        log_joint = routed_log_weights(
            log_gate, top_k_mask(log_gate, self.moe.top_k)
        ) + result.expert_log_likelihood(data.X, data.y)
        loss = -np.average(logsumexp(log_joint, axis=1), weights=data.sample_weight)
        objective = loss + gate_penalty(
            gate, log_gate, data.sample_weight, logits=logits
        )
        return float(loss), float(objective), log_joint

    def not_converged_message(self, result):
        epochs = result.fused.template.max_epochs
        return (
            f"{type(self.moe).__name__} (fused) did not converge: in the experts' "
            f"max_epochs={epochs} epochs its training loss never went "
            f"{FUSED_PATIENCE} epochs in a row without improving by more than "
            f"tol={self.moe.tol}. Increase the experts' max_epochs, or tol."
        )

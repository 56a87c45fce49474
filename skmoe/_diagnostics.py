"""Routing diagnostics: how the gate shares the samples between the experts."""

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass
class RoutingSummary:
    """Per-expert routing figures on a set of rows.

    Attributes
    ----------
    top_choice_load : ndarray of shape (n_experts,)
        Weighted fraction of rows whose largest gate weight is the expert's.
    gate_load : ndarray of shape (n_experts,)
        Weighted mean of the expert's routing weight (``gate_proba``): its
        share of the gate's mass. With ``top_k=1`` it equals
        ``top_choice_load``.
    gate_entropy : float
        Weighted mean entropy (nats) of each row's gate over the active
        experts, before top-k truncation: 0 for a gate that is certain,
        ``log(n_active)`` for one that cannot tell the experts apart.
    n_dead : int
        Experts that no row is routed to (all their routing weights are
        zero), dropped experts included.
    """

    top_choice_load: np.ndarray
    gate_load: np.ndarray
    gate_entropy: float
    n_dead: int


def row_entropy(gate_weights):
    """Entropy (nats) of each row's gate weights; a zero weight adds nothing.

    Parameters
    ----------
    gate_weights : ndarray of shape (n_samples, n_experts)
        Rows in the simplex (zero for experts the row cannot go to).

    Returns
    -------
    ndarray of shape (n_samples,)
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        plogp = np.where(gate_weights > 0, gate_weights * np.log(gate_weights), 0.0)
    return -plogp.sum(axis=1)


def summarise_routing(gate_weights, routing_weights, active, sample_weight=None):
    """Routing figures from the gate's weights and the routing weights.

    Parameters
    ----------
    gate_weights : ndarray of shape (n_samples, n_experts)
        The gate's softmax over the active experts (zero for dropped ones),
        before top-k truncation.
    routing_weights : ndarray of shape (n_samples, n_experts)
        The weights prediction uses (``gate_proba``).
    active : ndarray of bool, shape (n_experts,)
    sample_weight : ndarray of shape (n_samples,), default=None

    Returns
    -------
    RoutingSummary
    """
    n_samples, n_experts = routing_weights.shape
    weights = np.ones(n_samples) if sample_weight is None else sample_weight
    top_choice = np.eye(n_experts)[np.argmax(routing_weights, axis=1)]
    return RoutingSummary(
        top_choice_load=np.average(top_choice, axis=0, weights=weights),
        gate_load=np.average(routing_weights, axis=0, weights=weights),
        gate_entropy=float(np.average(row_entropy(gate_weights), weights=weights)),
        n_dead=int(np.sum(~active | ~np.any(routing_weights > 0, axis=0))),
    )


def routing_report_frame(names, summary, active, rows, scores):
    """The table :meth:`routing_report` returns.

    Parameters
    ----------
    names : list of str
    summary : RoutingSummary
    active : ndarray of bool
    rows : ndarray of int
        Number of rows whose top choice is each expert.
    scores : ndarray of float or None
        Each expert's own score on those rows (NaN where it has none).

    Returns
    -------
    pandas.DataFrame
        Indexed by expert name.
    """
    frame = pd.DataFrame(
        {
            "active": active,
            "top_choice_rows": rows,
            "top_choice_load": summary.top_choice_load,
            "gate_load": summary.gate_load,
        },
        index=pd.Index(names, name="expert"),
    )
    if scores is not None:
        frame["score"] = scores
    return frame

"""Metrics of the benchmark protocol, and which one ranks the models of a task.

The protocol is in benchmarks/README.md ("Protocol").

* binary: ROC-AUC (ranks), accuracy, log-loss;
* multiclass: log-loss (ranks), accuracy;
* regression: RMSE (ranks), R².

The *error* of a score, used by improvability, is 1 - ROC-AUC, the log-loss,
or the RMSE.
"""

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    log_loss,
    r2_score,
    roc_auc_score,
    root_mean_squared_error,
)

#: task -> (metric that ranks the models, whether higher is better)
PRIMARY = {
    "binary": ("roc_auc", True),
    "multiclass": ("log_loss", False),
    "regression": ("rmse", False),
}

#: Every metric column the runner may write, with its display name.
LABELS = {
    "roc_auc": "ROC-AUC",
    "accuracy": "accuracy",
    "log_loss": "log-loss",
    "rmse": "RMSE",
    "r2": "R²",
}


def score(task, y_true, output):
    """Held-out metrics of one fitted model.

    Parameters
    ----------
    task : {"binary", "multiclass", "regression"}
    y_true : numpy.ndarray
        True targets (class codes ``0..n_classes-1`` for classification).
    output : numpy.ndarray
        ``predict_proba`` with one column per class code (classification) or
        ``predict`` (regression).

    Returns
    -------
    dict
        Metric name to value.
    """
    if task == "regression":
        return {
            "rmse": root_mean_squared_error(y_true, output),
            "r2": r2_score(y_true, output),
        }
    labels = np.arange(output.shape[1])
    scores = {
        "accuracy": accuracy_score(y_true, output.argmax(axis=1)),
        "log_loss": log_loss(y_true, output, labels=labels),
    }
    if task == "binary":
        scores["roc_auc"] = roc_auc_score(y_true, output[:, 1])
    return scores


def error(task, value):
    """The error of a primary-metric value (lower is better, 0 is perfect)."""
    metric, higher_is_better = PRIMARY[task]
    return 1.0 - value if higher_is_better else value

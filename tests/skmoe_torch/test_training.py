"""skmoe.torch.training: the one minibatch loop and its stopping rule."""

import logging
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from skmoe.torch.training import NoImprovement, train_minibatches


def stopping_epoch(losses, tol, n_iter_no_change):
    """Epochs :class:`NoImprovement` lets run on the curve ``losses``."""
    rule = NoImprovement(tol, n_iter_no_change)
    for epoch, loss in enumerate(losses, start=1):
        if rule.update(loss):
            return epoch
    return None


@pytest.mark.parametrize(
    "tol, n_iter_no_change", [(1e-2, 1), (1e-2, 3), (3e-3, 2), (1e9, 4)]
)
def test_the_rule_stops_where_scikit_learns_mlp_stops(tol, n_iter_no_change):
    X, y = make_classification(n_samples=200, n_features=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp = MLPClassifier(
            (8,),
            solver="adam",
            tol=tol,
            n_iter_no_change=n_iter_no_change,
            max_iter=300,
            random_state=0,
        ).fit(X, y)
    assert mlp.n_iter_ < 300, "the MLP did not stop on its own"
    assert stopping_epoch(mlp.loss_curve_, tol, n_iter_no_change) == mlp.n_iter_


def test_the_rule_counts_epochs_without_an_improvement_of_tol():
    # the best so far moves with every improvement, however small
    assert stopping_epoch([5, 4, 3.95, 3.9, 3.85, 1], 0.1, 2) == 5
    assert stopping_epoch([5, 4, 3.95, 3.8, 3.79, 3.78], 0.1, 2) is None
    # with tol=0 a loss equal to the best counts as progress, as in sklearn
    assert stopping_epoch([5.0] * 10, 0.0, 3) is None
    assert stopping_epoch([5.0] * 10, 1e-9, 3) == 5


def test_the_loop_averages_the_terms_by_the_batches_weight():
    weight = torch.tensor([1.0, 3.0, 2.0, 2.0])
    data = {"x": torch.tensor([1.0, 2.0, 3.0, 4.0])}
    parameter = torch.nn.Parameter(torch.zeros(()))
    module = torch.nn.Module()
    module.parameter = parameter

    def batch_loss(module, batch, v, generator):
        assert torch.isclose(v.sum(), torch.tensor(1.0))
        mean = v @ batch["x"]
        return {"loss": (module.parameter - mean) ** 2, "mean": mean}

    run = train_minibatches(
        module,
        torch.optim.SGD(module.parameters(), lr=0.0),
        batch_loss,
        data,
        weight,
        n_epochs=3,
        batch_size=2,
        generator=torch.Generator().manual_seed(0),
    )
    # each batch's weighted mean, weighted by the batch's share: the
    # weighted mean over every row, whatever the shuffle
    expected = float(weight @ data["x"] / weight.sum())
    np.testing.assert_allclose(run.curves["mean"], [expected] * 3, rtol=1e-6)
    assert list(run.curves) == ["loss", "mean"] and not run.stopped


def test_verbose_logs_each_epochs_terms(caplog):
    caplog.set_level(logging.INFO, logger="skmoe")
    module = torch.nn.Module()
    module.parameter = torch.nn.Parameter(torch.zeros(()))

    def batch_loss(module, batch, v, generator):
        return {"loss": (module.parameter - v @ batch["x"]) ** 2}

    arguments = (
        module,
        torch.optim.SGD(module.parameters(), lr=0.0),
        batch_loss,
        {"x": torch.tensor([1.0, 2.0])},
        torch.ones(2),
    )
    train_minibatches(*arguments, n_epochs=2, batch_size=2, verbose=1)
    records = [r for r in caplog.records if r.name == "skmoe.torch.training"]
    assert [r.getMessage() for r in records] == [
        "epoch    1  loss 2.250000",
        "epoch    2  loss 2.250000",
    ]
    assert all(r.levelno == logging.INFO for r in records)
    caplog.clear()
    train_minibatches(*arguments, n_epochs=2, batch_size=2)
    assert caplog.records == []

"""Tests of skmoe._logging: ``verbose`` progress through :mod:`logging`.

With ``verbose > 0`` the progress lines are INFO records of the ``"skmoe"``
loggers: seen on stderr without any logging configuration, and captured
(or silenced) by a user who configures logging.
"""

import logging
import threading

import pytest
from sklearn.linear_model import LinearRegression

from skmoe import MoERegressor
from skmoe._logging import progress_logging

from _helpers import quiet_fit, regime_data, run_python


def _em(verbose=1):
    return MoERegressor(
        LinearRegression(),
        n_experts=2,
        training="em",
        max_iter=3,
        verbose=verbose,
        random_state=0,
    )


def _skmoe_records(caplog):
    return [r for r in caplog.records if r.name.split(".")[0] == "skmoe"]


@pytest.fixture
def skmoe_logger():
    """The "skmoe" logger, put back as it was after the test."""
    logger = logging.getLogger("skmoe")
    level, handlers = logger.level, list(logger.handlers)
    yield logger
    logger.setLevel(level)
    logger.handlers[:] = handlers


def test_verbose_progress_is_info_records_of_the_skmoe_loggers(caplog):
    X, y, _ = regime_data(n_samples=100)
    quiet_fit(_em(), X, y)
    records = _skmoe_records(caplog)
    assert records and all(r.levelno == logging.INFO for r in records)
    assert {r.name for r in records} == {"skmoe._training.base"}
    messages = [r.getMessage() for r in records]
    assert messages[0] == "Initialisation 1 of 1"
    assert any(m.startswith("  EM iteration 1: loss ") for m in messages)


def test_no_progress_without_verbose_even_at_debug(caplog):
    caplog.set_level(logging.DEBUG)
    X, y, _ = regime_data(n_samples=100)
    quiet_fit(_em(verbose=0), X, y)
    assert _skmoe_records(caplog) == []


def test_a_level_set_on_the_skmoe_logger_silences_the_progress(caplog, skmoe_logger):
    skmoe_logger.setLevel(logging.WARNING)
    X, y, _ = regime_data(n_samples=100)
    quiet_fit(_em(), X, y)
    assert _skmoe_records(caplog) == []
    assert skmoe_logger.level == logging.WARNING  # the user's level is kept


def test_the_logger_is_put_back_after_a_verbose_fit(skmoe_logger):
    X, y, _ = regime_data(n_samples=100)
    quiet_fit(_em(), X, y)
    assert skmoe_logger.level == logging.NOTSET
    assert skmoe_logger.handlers == []


def test_without_any_handler_the_progress_goes_to_stderr(skmoe_logger, monkeypatch):
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # as without logging configured
    with progress_logging(1):
        (handler,) = skmoe_logger.handlers
        assert isinstance(handler, logging.StreamHandler)
        assert skmoe_logger.level == logging.INFO
    assert skmoe_logger.handlers == [] and skmoe_logger.level == logging.NOTSET


def test_overlapping_verbose_fits_undo_once_the_last_ends(skmoe_logger, monkeypatch):
    monkeypatch.setattr(logging.getLogger(), "handlers", [])
    inside, release = threading.Event(), threading.Event()

    def other_fit():
        with progress_logging(1):
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=other_fit)
    thread.start()
    inside.wait(10)
    with progress_logging(2):
        assert len(skmoe_logger.handlers) == 1  # one handler, not one per fit
    # the other fit is still running: its handler stays
    assert len(skmoe_logger.handlers) == 1
    release.set()
    thread.join(10)
    assert skmoe_logger.handlers == [] and skmoe_logger.level == logging.NOTSET


_FIT = """
import warnings
import numpy as np
from sklearn.linear_model import LinearRegression
from skmoe import MoERegressor

X = np.linspace(-1, 1, 60)[:, None]
y = np.abs(X[:, 0])
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    MoERegressor(LinearRegression(), n_experts=2, training="em", max_iter=2,
                 verbose=1, random_state=0).fit(X, y)
"""


def test_verbose_is_seen_on_stderr_without_logging_configured():
    result = run_python(_FIT)
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == "Initialisation 1 of 1"
    assert lines[1].startswith("  EM iteration 1: loss ")


def test_verbose_goes_through_the_users_handler_once_logging_is_configured():
    result = run_python(
        "import logging\n"
        "logging.basicConfig(format='LOG %(name)s %(levelname)s %(message)s')\n" + _FIT
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    # the root logger stays at WARNING, yet verbose=1 shows the progress,
    # each line once, in the user's format
    assert lines[0] == "LOG skmoe._training.base INFO Initialisation 1 of 1"
    assert all(line.startswith("LOG skmoe.") for line in lines)

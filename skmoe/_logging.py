"""Progress messages (``verbose``) through :mod:`logging`.

Every module that reports progress logs to its own logger,
``logging.getLogger(__name__)``, so that all of them are children of the
``"skmoe"`` logger, at INFO, and only when ``verbose`` is positive.

``verbose`` keeps its scikit-learn meaning, "show progress": during a fit
with ``verbose > 0`` (:func:`progress_logging`)

* the ``"skmoe"`` logger is set to INFO if its level is unset, so that the
  messages pass even where the root logger is at its default WARNING;
* if no handler would receive them (logging not configured), a handler
  writing the bare message to ``sys.stderr`` is attached to it.

Both are undone when the fit ends. A user who configures logging keeps
control: handlers of their own (or pytest's ``caplog``) receive the records
instead of the stderr handler, and a level they set on the ``"skmoe"``
logger (``logging.getLogger("skmoe").setLevel(logging.WARNING)``) is
respected, which silences the progress.
"""

import logging
import sys
import threading
from contextlib import contextmanager

LOGGER_NAME = "skmoe"

_lock = threading.Lock()
# verbose fits running now (threads may fit in parallel), and what the first
# of them changed on the "skmoe" logger, for the last one to undo
_active = 0
_changes = {}


@contextmanager
def progress_logging(verbose):
    """Make the progress of a fit with ``verbose > 0`` visible, for its duration.

    Parameters
    ----------
    verbose : int
        The estimator's ``verbose``; with 0 nothing is changed.
    """
    if not verbose:
        yield
        return
    _enter()
    try:
        yield
    finally:
        _exit()


def _enter():
    global _active
    logger = logging.getLogger(LOGGER_NAME)
    with _lock:
        if _active == 0:
            if logger.level == logging.NOTSET:
                logger.setLevel(logging.INFO)
                _changes["level"] = True
            if not logger.hasHandlers():
                handler = logging.StreamHandler(sys.stderr)
                handler.setFormatter(logging.Formatter("%(message)s"))
                logger.addHandler(handler)
                _changes["handler"] = handler
        _active += 1


def _exit():
    global _active
    logger = logging.getLogger(LOGGER_NAME)
    with _lock:
        _active -= 1
        if _active == 0:
            if _changes.pop("level", False):
                logger.setLevel(logging.NOTSET)
            handler = _changes.pop("handler", None)
            if handler is not None:
                logger.removeHandler(handler)

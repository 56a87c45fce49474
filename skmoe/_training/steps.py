"""The steps every training strategy shares: initialise, refit, score.

* the starting responsibilities (``init``) and their validation;
* the experts' M-step task: fit one expert on its weighted rows and predict
  the rows the E-step needs (:func:`fit_and_predict`, a joblib task, and
  :func:`labelled_fit_and_predict`, whose errors name the expert);
* the gate's penalties at their strengths (:func:`gate_penalty`);
* the folds of ``cv`` (:func:`cv_splits`).

The strategies (``em.py``, ``crossfit.py``, the fused one in ``skmoe.torch``)
compose them; nothing here knows which strategy runs.
"""

import numpy as np
from sklearn.cluster import KMeans
from sklearn.model_selection import check_cv
from sklearn.model_selection._split import _CVIterableWrapper

from .._balance import balance_penalty, z_loss_penalty
from .._gates import fit_gate_features
from .._metadata_routing import metadata_rows
from .._validation import refuses_sparse, sparse_refused_error
from .._weighted_fit import (
    USER_ERRORS,
    constant_model,
    fit_weighted,
    is_out_of_memory,
)

# Responsibilities below this leave a row out of an expert's refit: such a row
# would carry less than 0.1% of a full row's weight.
NEGLIGIBLE_RESPONSIBILITY = 1e-3


SEED_MAX = np.iinfo(np.int32).max


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
            n_clusters=n_experts, n_init=3, random_state=random_state.randint(SEED_MAX)
        )
        labels = kmeans.fit(features, sample_weight=sample_weight).labels_
        return np.eye(n_experts)[labels]
    generator = np.random.default_rng(random_state.randint(SEED_MAX))
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


def gate_penalty(gate, log_gate, sample_weight, *, balanced=None, logits=None):
    """A gate's balancing penalty and z-loss, at its strengths, weighted.

    The balancing penalties depend on the logits through the gate's softmax
    only, so log gate weights serve as logits (experts at -inf are left out
    through ``balanced``). The z-loss measures the raw logits: ``logits``
    holds them, or is a function that computes them, called only when
    ``gate.z_loss`` is set (without them there is no z-loss here).

    Parameters
    ----------
    gate : estimator
        Read for ``balance``, ``balance_strength`` and ``z_loss`` (absent
        ones count as off).
    log_gate : ndarray of shape (n_samples, n_experts)
    sample_weight : ndarray of shape (n_samples,)
    balanced : ndarray of bool of shape (n_experts,), default=None
        The experts the balancing penalty acts on; None for all.
    logits : ndarray, callable or None, default=None
        The raw logits, shape (n_samples, n_experts), or ``logits()`` gives
        them.

    Returns
    -------
    float
    """
    penalty = 0.0
    balance = getattr(gate, "balance", None)
    strength = getattr(gate, "balance_strength", 0.0) if balance else 0.0
    if strength:
        value, _ = balance_penalty(balance, log_gate, sample_weight, balanced)
        penalty += strength * value
    z_strength = getattr(gate, "z_loss", 0.0) or 0.0
    if z_strength and logits is not None:
        raw = logits() if callable(logits) else logits
        penalty += z_strength * z_loss_penalty(raw, sample_weight)[0]
    return float(penalty)


def fit_rows(R, j, sample_weight):
    """Rows expert ``j`` is refitted on: its responsibility is not negligible."""
    return np.flatnonzero((R[:, j] > NEGLIGIBLE_RESPONSIBILITY) & (sample_weight > 0))


def routed_metadata(data, j):
    """The fit metadata routed to expert ``j``, on every row (``{}`` when
    ``data`` holds none: no metadata was routed)."""
    return data.expert_metadata[j] if data.expert_metadata else {}


def fit_and_predict(
    estimator, data, rows, responsibility, seed, predict_rows, metadata=None
):
    """Fit one expert on ``rows``, then predict the rows the E-step needs.

    ``data`` holds ``X``, ``y``, ``sample_weight`` and ``likelihood``; the
    expert is fitted with ``sample_weight[rows] * responsibility``, and
    with ``metadata`` (the fit metadata routed to it, on every row; its
    row-aligned values are indexed by ``rows``).

    Runs in a joblib worker; returns ``(fitted, failure, predict_rows, output)``
    so that the caller, in the main process, can warn about failures.
    """
    X, y = data.X, data.y
    if rows.size == 0:
        fitted = constant_model(estimator, X, y, data.sample_weight)
        failure = "no rows were routed to it"
    else:
        fitted, failure = fit_weighted(
            estimator,
            X[rows],
            y[rows],
            data.sample_weight[rows] * responsibility,
            n_draws=int(round(responsibility.sum())),
            seed=seed,
            metadata=metadata_rows(metadata, X, rows),
        )
    # Predict at least one row even when none is needed, so that an expert
    # that fits but cannot predict (k-NN on fewer rows than neighbours) is
    # caught here, not at the user's predict.
    probe = predict_rows if predict_rows.size else np.arange(min(1, len(y)))
    try:
        output = data.likelihood.expert_output(fitted, X[probe])
    except USER_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure falls back
        if is_out_of_memory(exc) or refuses_sparse(exc, X):
            raise
        weights = data.sample_weight[rows] * responsibility
        fitted = constant_model(estimator, X[rows], y[rows], weights)
        failure = f"{type(exc).__name__} when predicting: {exc}"
        output = data.likelihood.expert_output(fitted, X[probe])
    if not predict_rows.size:
        output = data.likelihood.empty_output(0)
    return fitted, failure, predict_rows, output


def labelled_fit_and_predict(
    estimator, data, rows, responsibility, seed, predict_rows, metadata, where
):
    """:func:`fit_and_predict`, with an error that says which fit raised.

    ``where`` names the fit (``"expert 'lr' on fold 2"``). An expert that
    refuses a sparse ``X`` gets a :class:`~skmoe.SparseInputError` that
    names it; any other error a note.
    """
    try:
        return fit_and_predict(
            estimator, data, rows, responsibility, seed, predict_rows, metadata
        )
    except Exception as exc:
        if refuses_sparse(exc, data.X):
            raise sparse_refused_error(where[:1].upper() + where[1:], exc) from exc
        if hasattr(exc, "add_note"):
            exc.add_note(f"(skmoe: raised while fitting {where})")
        raise


def record_failure(failures, label, failure):
    """Count one failed fit of ``label`` in ``failures``, keeping the last error.

    ``failures`` maps a label (an expert's name, with its fold) to ``[count,
    last error]``, what the fallback warning reports.
    """
    record = failures.setdefault(label, [0, ""])
    record[0] += 1
    record[1] = failure


def cv_splits(cv, X, y, *, classifier, sample_weight=None, metadata=None):
    """The ``(train, test)`` folds of ``cv``, checked to partition the rows.

    ``metadata`` is what metadata routing gives the splitter's ``split``
    (``groups`` for ``GroupKFold``), on every row.

    Each row's out-of-fold prediction is its evidence, so every row must be
    in exactly one test fold (as KFold and StratifiedKFold do). Rows of zero
    weight count for nothing: the folds are drawn over the other rows, as if
    those were removed, and the zero-weight rows are added to the last test
    fold (to have an out-of-fold prediction, which nothing weighs).
    """
    n_samples = X.shape[0]
    given = check_cv(cv, y, classifier=classifier)
    kept = (
        np.arange(n_samples)
        if sample_weight is None or isinstance(given, _CVIterableWrapper)
        # (folds given as index arrays are used as they are)
        else np.flatnonzero(sample_weight > 0)
    )
    splitter = check_cv(cv, y[kept], classifier=classifier)
    splits = [
        (kept[np.asarray(train)], kept[np.asarray(test)])
        for train, test in splitter.split(
            X[kept], y[kept], **metadata_rows(metadata, X, kept)
        )
    ]
    tested = np.zeros(n_samples, dtype=int)
    for _, test in splits:
        tested[test] += 1
    if not np.all(tested[kept] == 1):
        raise ValueError(
            "cv must put every sample in exactly one test fold (as KFold and "
            "StratifiedKFold do), since each sample's out-of-fold prediction "
            "is its E-step likelihood."
        )
    unweighted = np.setdiff1d(np.arange(n_samples), kept)
    if unweighted.size and splits:
        train, test = splits[-1]
        splits[-1] = (train, np.union1d(test, unweighted))
    return splits

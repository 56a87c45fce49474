"""What MoEClassifier and MoERegressor share: parameters, fitting, routing."""

from abc import ABCMeta, abstractmethod
from contextlib import contextmanager
from numbers import Integral, Real

import numpy as np
import scipy.sparse as sp
from sklearn import config_context
from sklearn.base import MetaEstimatorMixin, _fit_context, is_classifier
from sklearn.utils import Bunch, check_random_state, get_tags
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.metaestimators import _BaseComposition
from sklearn.utils.validation import (
    _assert_all_finite,
    _check_feature_names,
    _check_n_features,
    _check_sample_weight,
    check_array,
    check_consistent_length,
    check_is_fitted,
    column_or_1d,
    validate_data,
)

from ._balance import BALANCE_PENALTIES
from ._bias import BIAS
from ._diagnostics import routing_report_frame, summarise_routing
from ._dispatch import ExpertInputs
from ._experts import (
    check_expert,
    check_pair_parameter_names,
    check_top_k,
    resolve_experts,
)
from ._gates import (
    GATE_OVERRIDES,
    GATES,
    resolve_gate,
    routing_log_proba,
    routing_logits,
)
from ._logging import progress_logging
from ._metadata_routing import mixture_router, route_fit_params
from ._mixins import VersionedStateMixin
from ._routing import (
    groups_of_choice,
    routed_groups,
    routed_weights,
    top_k_mask,
    top_one_of_logits,
)
from ._sinkhorn import SINKHORN
from ._training import TRAINING_MODES, FitData, strategy_for, warn_about_fit
from ._validation import (
    check_enough_samples,
    check_missing_values,
    check_numeric_features,
    refuses_sparse,
    sparse_refused_error,
)
from ._warnings import NonFiniteOutputError

# The name the shared expert goes by among the experts (expert_names_).
SHARED_NAME = "shared"


def _normalised_weights(sample_weight):
    """The weights scaled to a mean of one over the rows that have weight,
    so that the fit does not depend on their scale.

    Every sum over the rows stays finite whatever the user's scale (1e-200
    and 1e200 give what ones give), and an expert whose own fit depends on
    the weights' scale (``LogisticRegression``, ``Ridge``: their penalty
    does not scale with the weights) sees one scale only. Weights all equal
    become ones, the same fit as no weights; rows of weight zero stay as if
    removed (the mean is over the others).
    """
    scaled = sample_weight / sample_weight.max()
    return scaled / scaled[scaled > 0].mean()


def _plain_rows(X):
    """Whether ``X`` is a float64 ndarray of rows and columns (at least one
    of each), which validation leaves as it is but for its memory order."""
    return (
        type(X) is np.ndarray
        and X.dtype == np.float64
        and X.ndim == 2
        and X.shape[0] > 0
        and X.shape[1] > 0
    )


@contextmanager
def _unchanged_on_failure(estimator):
    """Make a fit transactional: if it raises, or is interrupted, the
    estimator's state is put back as it was before the call (unfitted, or
    with its previous fit), rather than left with some fitted attributes of
    the failed fit (``n_features_in_``, ``classes_``) that would make
    ``check_is_fitted`` pass and ``predict`` fail deep inside."""
    before = dict(vars(estimator))
    try:
        yield
    except BaseException:
        vars(estimator).clear()
        vars(estimator).update(before)
        raise


def _validate_gate(gate):
    """Validate a gate's parameters before any data is looked at (a gate
    without scikit-learn's validation is checked when it is fitted)."""
    if hasattr(gate, "_parameter_constraints"):
        gate._validate_params()


class BaseMixtureOfExperts(
    VersionedStateMixin, MetaEstimatorMixin, _BaseComposition, metaclass=ABCMeta
):
    """Base class of the mixture-of-experts estimators; not for direct use."""

    _parameter_constraints: dict = {
        "experts": [list, HasMethods(["fit"])],
        "n_experts": [Interval(Integral, 1, None, closed="left"), None],
        "top_k": [Interval(Integral, 1, None, closed="left"), None],
        "training": [StrOptions(set(TRAINING_MODES))],
        "specialise": [
            StrOptions({"auto"}),
            Interval(Integral, 0, None, closed="left"),
        ],
        "gate": [StrOptions(set(GATES)), HasMethods(["fit", "predict_log_proba"])],
        "balance": [StrOptions({*BALANCE_PENALTIES, SINKHORN, BIAS}), None],
        "balance_strength": [Interval(Real, 0, None, closed="left"), None],
        "z_loss": [Interval(Real, 0, None, closed="left"), None],
        "noisy_gating": ["boolean"],
        "capacity_factor": [Interval(Real, 0, None, closed="neither"), None],
        "shared_expert": [HasMethods(["fit"]), None],
        "init": [StrOptions({"auto", "kmeans", "random", "uniform"}), "array-like"],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "n_init": [Interval(Integral, 1, None, closed="left")],
        "cv": ["cv_object"],
        "n_jobs": [Integral, None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    # MoEClassifier and MoERegressor take exactly these parameters, so they
    # inherit this __init__ (and get_params reads its signature).
    def __init__(
        self,
        experts,
        *,
        n_experts=None,
        top_k=None,
        training="crossfit",
        specialise="auto",
        gate="softmax",
        balance=None,
        balance_strength=None,
        z_loss=None,
        noisy_gating=False,
        capacity_factor=None,
        shared_expert=None,
        init="auto",
        max_iter=20,
        tol=1e-3,
        n_init=1,
        cv=None,
        n_jobs=None,
        random_state=None,
        verbose=0,
    ):
        self.experts = experts
        self.n_experts = n_experts
        self.top_k = top_k
        self.training = training
        self.specialise = specialise
        self.gate = gate
        self.balance = balance
        self.balance_strength = balance_strength
        self.z_loss = z_loss
        self.noisy_gating = noisy_gating
        self.capacity_factor = capacity_factor
        self.shared_expert = shared_expert
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.cv = cv
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose

    # -- nested parameters, as in StackingClassifier ------------------------

    def get_params(self, deep=True):
        """Get the parameters of the mixture and, with ``deep``, of its experts.

        Experts given as ``(name, estimator)`` pairs are reached by name
        (``lr__C``); a single template by ``experts__<param>``; the gate by
        ``gate__<param>``.

        Parameters
        ----------
        deep : bool, default=True
            Include the experts' (and the gate's) own parameters.

        Returns
        -------
        params : dict
        """
        return self._get_params("experts", deep=deep)

    def set_params(self, **params):
        """Set parameters of the mixture, of an expert (``lr__C``), or replace one.

        An expert given as a pair can be replaced by name (``lr=Ridge()``) or
        removed with ``lr='drop'``; its parameters are ``lr__C``, as in
        StackingClassifier (``experts__lr__C`` raises a ValueError that says
        so). Gate parameters (``gate__C``) work with ``gate="softmax"`` too:
        the string is replaced by the gate it names.

        Parameters
        ----------
        **params : dict

        Returns
        -------
        self : estimator
        """
        check_pair_parameter_names(params.get("experts", self.experts), params, self)
        gate = params.get("gate", self.gate)
        named = isinstance(gate, str) and gate in GATES
        if named and any(key.startswith("gate__") for key in params):
            # A gate named by a string has no parameters of its own: make it
            # the object it names, so that gate__C works (in a grid search too).
            params["gate"] = GATES[gate]()
        self._set_params("experts", **params)
        return self

    @property
    def named_experts(self):
        """The unfitted experts by name (pairs only), as a Bunch."""
        if isinstance(self.experts, list):
            return Bunch(**dict(self.experts))
        return Bunch()

    # -- what subclasses provide -------------------------------------------

    @property
    @abstractmethod
    def _expert_kind(self):
        """``"classifier"`` or ``"regressor"``."""

    @abstractmethod
    def _encode_for_experts(self, y):
        """``y`` as the experts were fitted on it (encoded labels, floats)."""

    @abstractmethod
    def _prepare_target(self, y, sample_weight):
        """Encode ``y``; return ``(y_for_experts, likelihood, y_scale)``."""

    # -- fitting ------------------------------------------------------------

    def _resolve_experts(self):
        return resolve_experts(
            self.experts, self.n_experts, kind=self._expert_kind, owner=self
        )

    @_fit_context(
        # experts validate their own parameters when they are fitted
        prefer_skip_nested_validation=False
    )
    def fit(self, X, y, sample_weight=None, **fit_params):
        """Fit the gate and the experts (cross-fitted by default; see ``training``).

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Numeric features (NaN only when every expert accepts it). A
            sparse matrix (or array) is passed on to the experts as CSR, and
            is accepted when every expert accepts it (user guide, section 9).
        y : array-like of shape (n_samples,)
            Target.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; they multiply the responsibilities in every
            expert's fit and weight the gate's and the objective's sums.
        **fit_params : dict
            Metadata for the experts' ``fit`` (``groups``, an ``eval_set``,
            ...) and for a ``cv`` splitter's ``split`` (``groups`` for
            ``GroupKFold``), each routed where it is requested. Only with
            ``sklearn.set_config(enable_metadata_routing=True)``; see
            :meth:`get_metadata_routing`. A metadata with one entry per
            sample is subset to the rows each expert is fitted on; any other
            is passed as it is.

        Returns
        -------
        self : object
            Fitted estimator.
        """
        with _unchanged_on_failure(self):
            names, estimators = self._resolve_experts()
            check_top_k(self.top_k, len(estimators))
            strategy = strategy_for(self, estimators)
            strategy.check_options()
            _validate_gate(self._gate_template())
            data = self._fit_data(X, y, sample_weight, names, estimators, fit_params)
            with progress_logging(self.verbose):
                result = strategy.fit(data, check_random_state(self.random_state))
            self._store_fit(result, data, strategy)
        return self

    def _with_shared_expert(self, names, estimators):
        """The experts and, last, the shared expert (when there is one)."""
        if self.shared_expert is None:
            return names, estimators
        check_expert(SHARED_NAME, self.shared_expert, self._expert_kind)
        if SHARED_NAME in names:
            raise ValueError(
                f"An expert is named {SHARED_NAME!r}, the name of the shared "
                "expert; rename it."
            )
        return [*names, SHARED_NAME], [*estimators, self.shared_expert]

    def _fit_data(self, X, y, sample_weight, names, estimators, fit_params):
        """Validate the training data into the :class:`FitData` strategies take."""
        names, estimators = self._with_shared_expert(names, estimators)
        expert_metadata, split_metadata = route_fit_params(self, names, fit_params)
        check_numeric_features(X, self)
        X, y = validate_data(
            self,
            X,
            y,
            # sparse X is passed on to the experts as CSR, whose row subsets
            # (an expert's share, a fold) are cheap
            accept_sparse="csr",
            dtype=np.float64,
            ensure_all_finite="allow-nan",
            y_numeric=not is_classifier(self),
        )
        check_enough_samples(X.shape[0], self)
        check_missing_values(X, names, estimators, self)
        sample_weight = _check_sample_weight(
            sample_weight, X, dtype=np.float64, ensure_non_negative=True
        )
        if not sample_weight.max() > 0:
            # (scikit-learn < 1.8 lets all-zero weights through)
            raise ValueError(
                "sample_weight sums to zero: at least one sample must have a "
                "positive weight."
            )
        sample_weight = _normalised_weights(sample_weight)
        y_experts, likelihood, y_scale = self._prepare_target(y, sample_weight)
        return FitData(
            X=X,
            y=y_experts,
            sample_weight=sample_weight,
            names=names,
            estimators=estimators,
            likelihood=likelihood,
            y_scale=y_scale,
            shared=len(estimators) - 1 if self.shared_expert is not None else None,
            n_outputs=len(self.classes_) if is_classifier(self) else 1,
            task=self._expert_kind,
            expert_metadata=expert_metadata,
            split_metadata=split_metadata,
        )

    def _gate_template(self):
        """The gate to fit, with the mixture's overrides; ``self.gate`` untouched.

        With ``balance="sinkhorn"`` the training balances the responsibilities
        themselves, and the gate is fitted without a penalty of its own; so
        with ``balance="bias"``, whose ``balance_strength`` is the routing
        bias's rate, not a gate's parameter.
        """
        overrides = {name: getattr(self, name) for name in GATE_OVERRIDES}
        if self.balance in (SINKHORN, BIAS):
            del overrides["balance"]
        if self.balance == BIAS:
            del overrides["balance_strength"]
        gate = resolve_gate(self.gate, overrides)
        if self.balance in (SINKHORN, BIAS) and "balance" in gate.get_params(
            deep=False
        ):
            gate.set_params(balance=None)
        return gate

    def _store_fit(self, result, data, strategy):
        names = data.names
        self.training_strategy_ = result.strategy
        self.fused_ = result.fused
        self.experts_ = result.experts
        self.shared_expert_ = (
            result.experts[-1] if self.shared_expert is not None else None
        )
        self.expert_names_ = list(names)
        self.gate_ = result.gate
        self.routing_bias_ = result.routing_bias
        if self.routing_bias_ is None and self.balance == BIAS:
            # dense routing: the bias has nothing to choose (skmoe/_bias.py)
            self.routing_bias_ = np.zeros(len(result.experts))
        self.active_experts_ = result.active.copy()
        self.expert_load_ = np.average(
            result.responsibilities, axis=0, weights=data.sample_weight
        )
        self.loss_curve_ = list(result.loss_curve)
        self.objective_curve_ = list(result.objective_curve)
        self.loss_ = result.loss
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        for name, value in result.extra.items():
            setattr(self, name, value)
        self._noise = result.noise
        _, summary = self._routing_summary(data.X, data.sample_weight)
        self.top_choice_load_ = summary.top_choice_load
        self.gate_load_ = summary.gate_load
        self.gate_entropy_ = summary.gate_entropy
        self.n_dead_experts_ = summary.n_dead
        warn_about_fit(result, strategy)

    # The fitted state holds arrays, scikit-learn objects and skmoe's public
    # classes only: what can be derived from them is derived on access, so
    # that a model saved with skops trusts no private helper type.

    @property
    def named_experts_(self):
        """The fitted experts by name (a :class:`~sklearn.utils.Bunch`)."""
        return Bunch(**dict(zip(self.expert_names_, self.experts_)))

    @property
    def _likelihood(self):
        """The fitted experts' likelihood (how their outputs are read)."""
        return self._fitted_likelihood()

    # -- routing and prediction ---------------------------------------------

    def _validate_X_predict(self, X):
        return self._checked_X(X)[0]

    def _checked_X(self, X):
        """``X`` validated for prediction, and whether it may hold NaN.

        What ``validate_data(self, X, reset=False)`` checks, without its
        look at the mixture's tags (which resolves the experts: a tenth of
        a millisecond, more than the rest on one row), and with a single
        pass over the values: the sum of a float array is finite only if
        every value is, so a batch without NaN or infinity is found so in
        one sum, and only one that holds some is searched value by value.
        Dense ``X`` is made C-ordered, as the gate's row-by-row product
        takes it.
        """
        if not hasattr(self, "gate_"):
            # (check_is_fitted reads the tags first, which resolves the
            # experts: it is called only to raise its error)
            check_is_fitted(self)
        if _plain_rows(X):
            # what check_array would hand back, without its look for a
            # dataframe; a fit on named columns still warns
            if hasattr(self, "feature_names_in_"):
                _check_feature_names(self, X, reset=False)
            X = np.ascontiguousarray(X)
        else:
            check_numeric_features(X, self)
            _check_feature_names(self, X, reset=False)
            X = check_array(
                X,
                accept_sparse="csr",
                dtype=np.float64,
                order="C",
                ensure_all_finite=False,
                input_name="X",
                estimator=self,
            )
        _check_n_features(self, X, reset=False)
        values = X.data if sp.issparse(X) else X
        with np.errstate(over="ignore"):
            may_be_missing = not np.isfinite(values.sum())
        if may_be_missing:
            _assert_all_finite(
                values,
                allow_nan=True,
                input_name="X",
                estimator_name=type(self).__name__,
            )
            check_missing_values(X, self.expert_names_, self.experts_, self)
        return X, may_be_missing

    def _log_gate(self, X, may_be_missing=True):
        """The gate's log weights, ``-inf`` for dropped experts."""
        log_gate = routing_log_proba(self.gate_, X, may_be_missing)
        log_gate[:, ~self.active_experts_] = -np.inf
        return log_gate

    @property
    def _shared_column(self):
        return None if self.shared_expert_ is None else len(self.experts_) - 1

    def _routing_weights(self, X, with_gate=False, may_be_missing=True):
        """Routing weights (``gate_proba``), and with ``with_gate`` the gate's
        weights over the active experts before top-k truncation."""
        log_gate = self._log_gate(X, may_be_missing)
        # balance="bias": the bias chooses the experts, the gate weighs them
        mask = top_k_mask(
            log_gate,
            self.top_k,
            always_on=self._shared_column,
            bias=self.routing_bias_,
        )
        routing = routed_weights(log_gate, mask)
        if not with_gate:
            return routing
        return routing, routed_weights(log_gate, np.isfinite(log_gate))

    def _routing_summary(self, X, sample_weight=None):
        routing, gate = self._routing_weights(X, with_gate=True)
        summary = summarise_routing(gate, routing, self.active_experts_, sample_weight)
        return routing, summary

    def routing_report(self, X, y=None):
        """How the gate routes ``X``, expert by expert.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
        y : array-like of shape (n_samples,), default=None
            When given, each expert is also scored (its own ``score``:
            accuracy for classifiers, R^2 for regressors) on the rows whose
            top choice it is.

        Returns
        -------
        pandas.DataFrame
            One row per expert (indexed by ``expert_names_``): ``active``,
            ``top_choice_rows`` (rows whose largest routing weight is the
            expert's), ``top_choice_load`` (their fraction), ``gate_load``
            (the expert's mean routing weight) and, with ``y``, ``score``
            (NaN for an expert with fewer than two such rows).

        Examples
        --------
        >>> import numpy as np
        >>> from sklearn.linear_model import LinearRegression
        >>> from skmoe import MoERegressor
        >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
        >>> y = np.abs(X[:, 0])
        >>> moe = MoERegressor(LinearRegression(), n_experts=2, top_k=1,
        ...                    random_state=0).fit(X, y)
        >>> report = moe.routing_report(X, y)[["top_choice_rows", "score"]]
        >>> report.round(3)  # doctest: +NORMALIZE_WHITESPACE
                            top_choice_rows  score
        expert
        linearregression_0              100    1.0
        linearregression_1              100    1.0
        """
        X = self._validate_X_predict(X)
        routing, summary = self._routing_summary(X)
        top_choice = np.argmax(routing, axis=1)
        rows = np.bincount(top_choice, minlength=len(self.experts_))
        scores = None
        if y is not None:
            y = column_or_1d(y, warn=True)
            check_consistent_length(X, y)
            y = self._encode_for_experts(y)
            scores = np.full(len(self.experts_), np.nan)
            for j, expert in enumerate(self.experts_):
                mine = top_choice == j
                if mine.sum() >= 2:
                    scores[j] = expert.score(X[mine], y[mine])
        return routing_report_frame(
            self.expert_names_, summary, self.active_experts_, rows, scores
        )

    def gate_proba(self, X):
        """Weight of each expert for each sample, as used in prediction.

        With ``top_k=k`` each row keeps its k largest gate weights,
        renormalised, and zero elsewhere; dropped experts get zero.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_experts)
            Rows sum to one; columns follow ``expert_names_``.
        """
        X, may_be_missing = self._checked_X(X)
        return self._routing_weights(X, may_be_missing=may_be_missing)

    def _mix_routed(self, X, may_be_missing, combine):
        """Call ``combine(j, rows, weights, output)`` for each expert ``j``
        with rows routed to it, in the experts' order.

        ``rows`` are the indices of those rows (None for every row),
        ``weights`` their routing weights and ``output`` the expert's on
        them. Each expert is called only on the rows routed to it: with
        ``top_k=k`` the experts together see about ``k * n_samples`` rows,
        not ``n_experts * n_samples``; an expert with no rows is not called.
        The experts are called with scikit-learn's ``assume_finite`` (the
        mixture has checked ``X``), trees on float32 rows made once
        (:class:`~skmoe._dispatch.ExpertInputs`).
        """
        groups = self._routed_groups(X, may_be_missing)
        likelihood = self._likelihood
        inputs = ExpertInputs(X, may_be_missing)
        n_samples = X.shape[0]
        with config_context(assume_finite=True):
            for j, rows, weights in groups:
                # an expert that takes every row is given X itself, no copy
                rows = None if rows.size == n_samples else rows
                self._mix_expert(j, rows, weights, inputs, likelihood, combine)

    def _routed_groups(self, X, may_be_missing):
        """``(expert, rows, weights)`` of each expert with rows routed to it
        (:func:`~skmoe._routing.routed_groups`)."""
        if self.top_k == 1 and self.shared_expert_ is None:
            logits = routing_logits(self.gate_, X, may_be_missing)
            if logits is not None and self.routing_bias_ is None:
                # the top choice of most rows is plain from the logits
                choice, routed = top_one_of_logits(logits, self.active_experts_)
                return groups_of_choice(choice, routed, len(self.experts_))
        return routed_groups(
            self._log_gate(X, may_be_missing),
            self.top_k,
            always_on=self._shared_column,
            bias=self.routing_bias_,
        )

    def _mix_expert(self, j, rows, weights, inputs, likelihood, combine):
        """One expert's part of :meth:`_mix_routed`, with its errors named."""
        X = inputs.X
        expert = self.experts_[j]
        try:
            X_rows, params = inputs.rows(expert, rows)
            output = likelihood.expert_output(expert, X_rows, **params)
        except NonFiniteOutputError as exc:
            raise NonFiniteOutputError(
                f"Expert {self.expert_names_[j]!r} cannot be mixed: {exc} "
                "routed to it. Its prediction is not a number there; check "
                "those rows' features, or the expert."
            ) from None
        except Exception as exc:
            if refuses_sparse(exc, X):
                raise sparse_refused_error(
                    f"Expert {self.expert_names_[j]!r}", exc
                ) from exc
            raise
        combine(j, rows, weights, output)

    # -- scikit-learn plumbing ----------------------------------------------

    def _sk_visual_block_(self):
        # The HTML repr: the experts side by side, then the gate that mixes
        # them, as StackingClassifier shows its estimators and final
        # estimator. Each block's name is its parameter prefix (lr__C,
        # experts__C for clones, shared_expert__C, gate__C); a gate named by
        # a string shows the string (the "mlp" gate's class would import
        # torch).
        try:
            from sklearn.utils._repr_html.estimator import _VisualBlock
        except ImportError:  # scikit-learn < 1.7
            from sklearn.utils._estimator_html_repr import _VisualBlock

        if isinstance(self.experts, list):
            names = [name for name, _ in self.experts]
            experts = [expert for _, expert in self.experts]
        else:
            clones = f": {self.n_experts} clones" if self.n_experts else ""
            names, experts = [f"experts{clones}"], [self.experts]
        if self.shared_expert is not None:
            names.append("shared_expert")
            experts.append(self.shared_expert)
        routed = _VisualBlock("parallel", experts, names=names, dash_wrapped=False)
        gate = _VisualBlock("parallel", [self.gate], names=["gate"], dash_wrapped=False)
        return _VisualBlock("serial", (routed, gate), dash_wrapped=False)

    def get_metadata_routing(self):
        """Get the metadata routing of this object.

        ``fit`` routes each metadata it is given to the experts (and the
        shared expert, named ``"shared"``) whose ``fit`` requests it, and to
        ``cv`` (named ``"cv"``) when it is a splitter whose ``split``
        requests it, as ``StackingClassifier`` routes them. ``sample_weight``
        is the mixture's own (``set_fit_request(sample_weight=True)`` when
        the mixture sits in a Pipeline or a grid search): every expert is
        fitted with the responsibilities times those weights, whatever the
        expert requests. scikit-learn's metadata routing guide says how the
        mechanism works; section 9 of skmoe's user guide, how it meets the
        experts' rows.

        Returns
        -------
        routing : MetadataRouter
            A :class:`~sklearn.utils.metadata_routing.MetadataRouter`
            encapsulating the routing information.

        Examples
        --------
        >>> import numpy as np
        >>> import sklearn
        >>> from sklearn.linear_model import LogisticRegression
        >>> from sklearn.model_selection import GroupKFold
        >>> from skmoe import MoEClassifier
        >>> X = np.linspace(-1, 1, 40).reshape(-1, 1)
        >>> y = np.tile([0, 1], 20)
        >>> groups = np.repeat(np.arange(8), 5)
        >>> moe = MoEClassifier(
        ...     [("a", LogisticRegression()), ("b", LogisticRegression(C=0.1))],
        ...     cv=GroupKFold(4),
        ...     random_state=0,
        ... )
        >>> moe.get_metadata_routing().consumes("fit", ["groups", "sample_weight"])
        {'groups'}
        >>> with sklearn.config_context(enable_metadata_routing=True):
        ...     moe = moe.fit(X, y, groups=groups)
        >>> moe.predict_proba(X).shape
        (40, 2)
        """
        names, estimators = self._with_shared_expert(*self._resolve_experts())
        return mixture_router(self, names, estimators, self.cv)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        try:
            _, estimators = self._resolve_experts()
            if self.shared_expert is not None:
                estimators = [*estimators, self.shared_expert]
            tags.input_tags.allow_nan = all(
                get_tags(estimator).input_tags.allow_nan for estimator in estimators
            )
            # sparse X goes to the experts as it is: the mixture takes it
            # when they all do (and the gate does; the named ones do)
            tags.input_tags.sparse = getattr(
                strategy_for(self, estimators), "accepts_sparse", False
            ) or (
                all(get_tags(estimator).input_tags.sparse for estimator in estimators)
                and (
                    isinstance(self.gate, str) or get_tags(self.gate).input_tags.sparse
                )
            )
        except (TypeError, ValueError):
            tags.input_tags.allow_nan = False
            tags.input_tags.sparse = False
        return tags

"""MoEClassifier: a gated mixture of probabilistic classifiers."""

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets

from ._base import BaseMixtureOfExperts
from ._likelihood import ClassificationLikelihood
from ._mixins import ProbabilisticClassifierMixin


class MoEClassifier(
    ProbabilisticClassifierMixin, ClassifierMixin, BaseMixtureOfExperts
):
    """Mixture-of-experts classifier: a learned gate routes each sample to experts.

    The model is ``p(y | x) = sum_j g_j(x) p_j(y | x)``, with ``p_j`` the class
    probabilities of expert ``j`` and ``g`` a gate over the experts (a linear
    softmax by default). With ``top_k=k`` each sample keeps its k largest gate
    weights (renormalised) and only those k experts are evaluated on it in
    prediction; in training each expert is refitted on the samples it is
    among the k most responsible experts for, and the E-step scores each
    sample's 2k gate favourites so that samples can move between experts.

    By default (``training="crossfit"``) the gate learns from out-of-fold
    evidence only, as ``StackingClassifier`` learns its final estimator: each
    expert is fitted on the ``K - 1`` training folds of ``cv`` and predicts
    the held-out fold, the gate is fitted by EM over those fixed out-of-fold
    likelihoods (E-step ``r_ij ~ g_j(x_i) p_j(y_i | x_i)``, M-step the gate
    fitted to ``r``), and its regularisation is chosen by cross-validation
    over the same evidence among candidates that run down to the constant
    gate and to each single expert, so that the mixture can always fall back
    to a blend or to its best expert. Optional specialisation rounds refit
    the experts with the responsibilities as sample weights, kept only when
    the held-out log-loss improves; the experts are finally fitted on all
    rows. ``training="em"`` is the classical in-sample EM.

    ``X`` may be a scipy sparse matrix (or array), e.g. the output of a
    ``ColumnTransformer`` with a ``OneHotEncoder``: the experts receive it as
    CSR (their row subsets too) and the gate works on it without densifying,
    which is accepted when every expert accepts sparse input (an expert that
    refuses it raises :class:`SparseInputError`, naming it).

    Read more in the :ref:`User Guide <user_guide>` (``docs/user_guide.md``).

    Parameters
    ----------
    experts : list of (str, estimator) or estimator
        The experts: ``(name, classifier)`` pairs, as in ``StackingClassifier``
        (an expert can be set to ``'drop'``), or one classifier cloned
        ``n_experts`` times. Each must have ``predict_proba``; a classifier
        without one can be wrapped in ``CalibratedClassifierCV``. An expert
        whose ``fit`` has no ``sample_weight`` is trained on a weighted
        resample of its share (drawn from ``random_state``); for a Pipeline
        the weights go to its final step. With metadata routing enabled,
        any other fit metadata an expert requests (``groups``, an
        ``eval_set``) reaches each of its fits, on that fit's rows (see
        :meth:`get_metadata_routing`).
    n_experts : int, default=None
        Number of clones when ``experts`` is a single estimator; leave ``None``
        with a list.
    top_k : int, default=None
        Route each sample to its ``top_k`` highest-weighted experts only;
        ``None`` mixes all experts.
    training : {"crossfit", "em", "hard_em", "backprop"}, default="crossfit"
        ``"crossfit"`` fits the gate over out-of-fold evidence (above); it
        costs ``K + 1`` fits per expert, as ``StackingClassifier(cv=K)``
        does, plus ``K`` per expert for each specialisation round. The
        other three are the in-sample algorithms, which refit every expert
        at every iteration. ``"em"`` uses soft responsibilities;
        ``"hard_em"`` gives each sample wholly to its most responsible
        expert (classification EM); ``"backprop"`` trains the gate by
        minibatch gradient descent (Adam) on the mixture's negative
        log-likelihood plus its penalties, with the experts held fixed, and
        refits the experts on the posterior weights between gate steps.
        Backprop scores every expert on every row at each iteration (the
        gate may send a row anywhere); the refits still cost about ``n *
        top_k`` rows. It needs torch (``pip install "skmoe[torch]"``); the
        fitted linear gate does not. When every expert is a
        :class:`TorchMLPClassifier` of one architecture, the gate and the
        experts are instead trained end to end as one torch module (see
        ``fused_``; ``training_strategy_ == "fused"``). The in-sample EM is
        the better choice when the experts cannot memorise their rows
        (linear models, shallow trees) and the regions of the data call for
        different experts, or with the options only it has
        (``capacity_factor``, ``shared_expert``, ``n_init``).
    specialise : "auto" or int, default="auto"
        Under ``training="crossfit"``, the most specialisation rounds: the
        experts are cross-fitted again with the gate's responsibilities as
        sample weights and a new gate is chosen; a round is kept only if the
        held-out loss improves, and the first that does not ends them.
        ``"auto"`` is 0 for a list of experts (a gated stacking of the
        experts as given) and 10 for clones of one template, which start from
        k-means clusters and specialise. Ignored by the other algorithms.
    gate : {"softmax", "mlp"} or gate object, default="softmax"
        The gate: ``"softmax"`` is :class:`SoftmaxGate`, ``"mlp"`` is
        :class:`MLPGate` (torch), each with its defaults; pass
        ``SoftmaxGate(C=...)`` to tune it (``gate__C`` in a grid search).
        Under ``training="crossfit"``, ``"softmax"`` stands for
        ``SoftmaxGate`` with ``C`` in (0.01, 0.1, 1), chosen by
        cross-validation together with the constant gate and each single
        expert; a gate object is the one fitted candidate beside those.
    balance : {"switch", "importance", "entropy", "sinkhorn", "bias"}, \
            default=None
        When set to a penalty, overrides the gate's ``balance``: the penalty
        that spreads the routing over the experts (formulas and sources in
        :class:`SoftmaxGate`). ``"sinkhorn"`` balances the E-step's
        responsibilities instead (every expert an even share of the rows,
        in training only; not with ``training="backprop"``), and fits the
        gate without a penalty. ``"bias"`` balances without any loss term
        (DeepSeek-V3's auxiliary-loss-free balancing): a per-expert bias,
        ``routing_bias_``, is added to the gate's scores when each row's
        ``top_k`` experts are chosen, in training and prediction, and to
        nothing else (the chosen experts keep the gate's weights,
        renormalised); in training it steps against each expert's load
        error until the routing of the training rows is balanced, and the
        experts are refitted on the rows it sends them. The gate is fitted
        without a penalty. Needs ``top_k`` to do anything: with dense
        routing it is a no-op. Not with ``capacity_factor``. ``None`` keeps
        the gate's own (none by default). Under ``"crossfit"``, any of them
        restricts the gate's candidates to balanced gates (no single
        expert).
    balance_strength : float, default=None
        When set, overrides the gate's ``balance_strength``. With
        ``balance="bias"`` it is instead the bias's step, in units of the
        spread of the gate's scores (the mean over rows of the standard
        deviation of a row's log gate weights); None is 0.01. Under EM and
        crossfit it sets how finely the bias balances; under backprop, the
        bias takes one step per minibatch.
    z_loss : float, default=None
        When set, overrides the gate's router z-loss strength.
    noisy_gating : bool, default=False
        Noisy top-k gating (Shazeer et al. 2017): during backprop training
        the gate's logits get Gaussian noise of a learned, input-dependent
        scale before each row's experts are chosen, so that rows explore
        experts the gate does not yet favour. Prediction uses the clean
        logits. Needs ``training="backprop"`` and ``top_k``.
    capacity_factor : float, default=None
        During training no expert takes more than
        ``min(n, ceil(capacity_factor * top_k * n / n_experts))`` of the ``n``
        rows: rows are placed by decreasing responsibility, and a row an
        expert has no room for goes to its next choice (or, when none has
        room, to the shared expert alone). Below 1 it needs a
        ``shared_expert``. From the first iteration on, the gate is fitted
        to the same capacity-limited responsibilities as the experts, so it
        learns the balanced routing; prediction routes each row on its own,
        by the gate, without capacity. Needs ``top_k``; not with
        ``training="hard_em"``.
    shared_expert : classifier, default=None
        An expert that is always on: fitted once, on every row with the
        user's weights, and part of every row's mixture besides its
        ``top_k`` routed experts, which specialise where it falls short. It
        is the last expert (``expert_names_[-1] == "shared"``, the last
        column of ``gate_proba``) and ``shared_expert_``.
    init : {"auto", "kmeans", "random", "uniform"} or array-like, default="auto"
        Initial responsibilities. ``"kmeans"``: one expert per k-means cluster
        of the standardised features; ``"random"``: flat Dirichlet per sample;
        ``"uniform"``: every expert sees every sample equally; an array of
        shape (n_samples, n_experts) is used as given. ``"auto"`` is
        ``"kmeans"`` for clones of one template (uniform responsibilities
        would leave identical clones identical) and ``"uniform"`` for a list
        of experts. Under ``training="crossfit"`` they are the sample weights
        of the first cross-fit (``"uniform"``: every expert on every row at
        full weight).
    max_iter : int, default=20
        Most EM iterations per initialisation (under ``"crossfit"``, of each
        EM of the gate over the fixed evidence).
    tol : float, default=1e-3
        Stop when the mean per-sample negative log-likelihood changes by less
        than ``tol`` between iterations. The iterate with the lowest loss is
        kept (EM with top-k routing, hard assignments or ``cv`` need not
        improve at every step).
    n_init : int, default=1
        Number of initialisations of the in-sample algorithms; the one whose
        kept iterate has the lowest loss is kept. Not with ``"crossfit"``.
        Restarts from ``init="uniform"`` (the ``"auto"`` start of a list of
        experts) or an array differ only by the seeds they draw; when every
        restart fits the same, a UserWarning says that ``n_init > 1`` only
        costs time.
    cv : int, cross-validation generator or iterable, default=None
        The folds of ``training="crossfit"``: ``None`` is 5, stratified, as
        in ``StackingClassifier``. For the in-sample algorithms, when set,
        the E-step scores each sample with the out-of-fold prediction of
        each expert: use it with high-capacity experts (deep trees, k-NN,
        large forests), which in sample fit their own rows almost perfectly,
        would claim every sample, and leave the gate nothing to learn. It
        multiplies the cost of a refit by the number of folds. A splitter
        that requests ``groups`` (``GroupKFold``) receives those given to
        ``fit``, with metadata routing enabled.
    n_jobs : int, default=None
        Experts (and folds) fitted in parallel through joblib: each (fold x
        expert) fit is one task, so under ``joblib.parallel_backend("dask")``
        (or Ray's) they run on a cluster. ``None`` is 1 unless in a
        ``joblib.parallel_backend`` context; -1 uses all cores. A fit opens
        one pool for all its tasks (a backend starts its workers once per
        fit). Results do not depend on it.
    random_state : int, RandomState instance or None, default=None
        Seeds the initialisation, the experts' own ``random_state`` where it
        is ``None``, and the resamples. An int makes every result repeatable.
    verbose : int, default=0
        When positive, report the loss of every EM iteration (every round
        under ``"crossfit"``, every epoch of a fused torch mixture) and a
        summary of each initialisation. The lines are INFO records of the
        ``"skmoe"`` loggers (:mod:`logging`): without any logging
        configuration they are written to stderr; a user who configures
        logging receives them through their own handlers, and
        ``logging.getLogger("skmoe").setLevel(logging.WARNING)`` silences
        them.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    experts_ : list of estimator
        Fitted experts, in the order of ``expert_names_`` (the gate's columns).
        An expert that failed on its share in the kept iteration is a
        ``DummyClassifier`` there (and an ``ExpertFallbackWarning`` says so).
    shared_expert_ : estimator or None
        The fitted shared expert (also the last of ``experts_``), or None.
    expert_names_ : list of str
    named_experts_ : :class:`~sklearn.utils.Bunch`
        Fitted experts by name.
    gate_ : estimator
        The fitted gate.
    routing_bias_ : ndarray of shape (n_experts,) or None
        With ``balance="bias"``, the bias added to the gate's log weights
        when each row's ``top_k`` experts are chosen (mean 0 over the
        routed experts; zeros with dense routing); None otherwise.
    active_experts_ : ndarray of bool, shape (n_experts,)
        False for an expert dropped after collapsing twice.
    expert_load_ : ndarray of shape (n_experts,)
        Share of the (weighted) training samples each expert is responsible
        for, from the E-step of the kept iterate (under ``"crossfit"``, of
        the gate's EM over the out-of-fold evidence); sums to one.
    top_choice_load_ : ndarray of shape (n_experts,)
        Weighted fraction of the training rows whose largest routing weight
        (``gate_proba``) is the expert's, under the fitted gate; sums to one.
    gate_load_ : ndarray of shape (n_experts,)
        Weighted mean of each expert's routing weight (``gate_proba``) on the
        training rows, under the fitted gate: its share of the gate's mass;
        sums to one (with ``top_k=1`` and no shared expert, it equals
        ``top_choice_load_``). Unlike ``expert_load_`` it is the gate's
        routing alone, not the E-step's responsibilities (which also weigh
        how well each expert fits ``y``).
    gate_entropy_ : float
        Weighted mean entropy (nats) of the fitted gate's weights over the
        active experts on the training rows, before top-k truncation: 0 for
        a gate that is certain of every row, ``log(n_active)`` for one that
        cannot tell the experts apart.
    n_dead_experts_ : int
        Number of experts that no training row is routed to (all their
        routing weights are zero), dropped experts included.
    objective_curve_ : list of float
        What training minimises, per iteration: ``loss_curve_`` plus the
        gate's balancing penalty and z-loss at their strengths, with
        ``capacity_factor`` the loss of the mixture routed within capacity.
        The kept iterate is the one with the lowest objective (without
        penalties or capacity, the lowest loss).
    loss_ : float
        Weighted mean negative log-likelihood of the training data under the
        kept iterate (the lowest in ``loss_curve_`` unless penalties or
        capacity are set, see ``objective_curve_``; with ``cv``, of their
        out-of-fold predictions). Under ``"crossfit"``, the held-out
        log-loss of the kept round: of the experts out of fold, and of the
        chosen gate on the rows its own cross-validation held out.
    loss_curve_ : list of float
        The loss after each EM iteration of the kept initialisation; under
        ``"crossfit"``, the held-out loss of each round (round 0 first),
        the rounds not kept included.
    n_iter_ : int
        EM iterations of the kept initialisation (epochs of the fused
        module; rounds evaluated under ``"crossfit"``, round 0 included).
    converged_ : bool
        Whether the kept initialisation reached ``tol``; under
        ``"crossfit"``, whether the rounds ended before ``specialise``
        ran out.
    training_strategy_ : str
        The algorithm that ran: ``"crossfit"``, ``"em"``, ``"hard_em"``,
        ``"backprop"``, or ``"fused"`` (backprop as one torch module).
    gate_selection_ : dict
        Under ``"crossfit"`` only: the gate candidates of the kept round
        (``"candidates"``, their labels), their held-out ``"loss"`` and
        ``"log_likelihood"`` (weighted means over the rows the gate's
        cross-validation held out; ``nan`` for a weaker regularisation not
        fitted because the path's held-out loss had risen), and the
        ``"selected"`` label.
    oof_log_likelihood_ : list of float
        Under ``"crossfit"`` only: the held-out mean log-likelihood of the
        mixture with the chosen gate, per round (as ``loss_curve_``).
    n_specialisation_rounds_ : int
        Under ``"crossfit"`` only: the specialisation rounds kept.
    fused_ : FusedResult or None
        With ``training="backprop"`` and experts that are all torch MLPs of
        one architecture (and no ``shared_expert``, ``capacity_factor``,
        ``cv`` or explicit ``init``), the gate and the experts are trained as
        one torch module, end to end: this is that module and its reports.
        Its epochs are then the iterations of ``loss_curve_``, ``gate_`` is
        its gate network, ``experts_`` its experts exported, and prediction
        runs the module (``training_strategy_ == "fused"``). The experts'
        ``max_epochs`` bounds the epochs (``max_iter`` does not apply), and
        training stops once the loss has gone more than 10 epochs in a row
        without improving by more than ``tol`` (scikit-learn's MLP rule,
        ``n_iter_no_change=10``). None for every other mixture.
    n_features_in_ : int
        Number of features seen in ``fit``.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Defined only when X has feature names that are all strings.

    See Also
    --------
    MoERegressor : The regression counterpart.
    sklearn.ensemble.StackingClassifier : Learns how to combine the experts'
        outputs, the same for every sample.

    Examples
    --------
    >>> from sklearn.datasets import load_breast_cancer
    >>> from sklearn.linear_model import LogisticRegression
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn.tree import DecisionTreeClassifier
    >>> from skmoe import MoEClassifier
    >>> X, y = load_breast_cancer(return_X_y=True)
    >>> moe = MoEClassifier(
    ...     experts=[("lr", make_pipeline(StandardScaler(), LogisticRegression())),
    ...              ("tree", DecisionTreeClassifier(max_depth=3))],
    ...     random_state=0,
    ... ).fit(X, y)
    >>> moe.predict_proba(X[:2]).round(3)
    array([[1., 0.],
           [1., 0.]])
    >>> moe.gate_selection_["selected"]
    'expert: lr'

    >>> moe.gate_proba(X[:2]).shape
    (2, 2)
    """

    _expert_kind = "classifier"

    def _encode_for_experts(self, y):
        return self._label_encoder.transform(y)

    def _fitted_likelihood(self):
        return ClassificationLikelihood(len(self.classes_))

    def _prepare_target(self, y, sample_weight):
        check_classification_targets(y)
        self._label_encoder = LabelEncoder().fit(y)
        self.classes_ = self._label_encoder.classes_
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs samples of at least 2 classes in y; "
                f"got only one class: {self.classes_[0]!r}."
            )
        y_encoded = self._label_encoder.transform(y)
        return y_encoded, ClassificationLikelihood(len(self.classes_)), 1.0

    def predict_proba(self, X):
        """Mixture class probabilities, ``sum_j g_j(x) p_j(y | x)``.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)

        Returns
        -------
        ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        X, may_be_missing = self._checked_X(X)
        if getattr(self, "fused_", None) is not None:
            # the fused module evaluates the routed experts stacked together
            return self.fused_.predict_proba(X)
        proba = np.zeros((X.shape[0], len(self.classes_)))
        # with one expert a row, each row is written once, at weight one
        # (an expert's probabilities are positive: 0 + 1 * p is p, bit for bit)
        one_each = self.top_k == 1 and self.shared_expert_ is None

        def combine(j, rows, weights, output):
            at = slice(None) if rows is None else rows
            if one_each:
                proba[at] = output
            else:
                output *= weights[:, None]
                proba[at] += output

        self._mix_routed(X, may_be_missing, combine)
        return proba

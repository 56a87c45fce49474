"""Gates: the models that map a sample to a point of the experts' simplex."""

from numbers import Integral, Real

import numpy as np
from scipy.optimize import minimize
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from ._balance import BALANCE_PENALTIES, z_loss_penalty


def fit_gate_features(X, sample_weight):
    """Fit the gate's own preprocessing: mean-impute, then standardise.

    Imputation lets the gate route rows with missing values when every expert
    accepts them; standardising makes the gate's L2 penalty and the k-means
    initialisation blind to the units of each column. Both use weighted
    statistics, so zero-weight rows have no effect. The steps are fitted one
    by one (rather than through ``Pipeline.fit``) so that the weights reach
    them whether or not metadata routing is enabled.

    Returns
    -------
    Pipeline
        The fitted imputer and scaler.
    """
    X = np.asarray(X, dtype=np.float64)
    imputer = SimpleImputer(strategy="mean", keep_empty_features=True).fit(X)
    # SimpleImputer takes no sample weights: put the weighted mean of each
    # column's observed values in its place.
    observed = ~np.isnan(X)
    observed_weight = sample_weight @ observed
    weighted_sum = sample_weight @ np.where(observed, X, 0.0)
    has_weight = observed_weight > 0
    imputer.statistics_[has_weight] = (
        weighted_sum[has_weight] / observed_weight[has_weight]
    )
    scaler = StandardScaler().fit(imputer.transform(X), sample_weight=sample_weight)
    return make_pipeline(imputer, scaler)


class SoftmaxGate(BaseEstimator):
    """Linear softmax gate fitted to soft targets (responsibilities).

    The gate gives ``g(x) = softmax(s(x))`` with logits ``s(x) = W^T z(x) + b``,
    ``z`` the standardised (mean-imputed) features. Fitting minimises the
    weighted cross-entropy between the gate and target responsibilities ``R``
    (rows in the simplex), an L2 penalty on ``W``, and optional penalties on
    the gate over the whole sample (``w`` the sample weights)::

        L(W, b) = sum_i w_i * (-sum_j R_ij log g_j(x_i)) / sum_i w_i
                  + ||W||^2 / (2 * C * sum_i w_i)
                  + balance_strength * B(S) + z_loss * Z(S)

    where ``S`` stacks the logits of every row, ``B`` is the balancing penalty
    named by ``balance`` and ``Z`` the router z-loss. Without the last two
    terms this is ``LogisticRegression``'s objective
    ``C * sum_i w_i * (-sum_j R_ij log g_j(x_i)) + ||W||^2 / 2`` divided by
    ``C * sum_i w_i``, so ``C`` keeps its meaning. The cross-entropy and the
    penalties are all weighted means over the rows, so ``balance_strength`` and
    ``z_loss`` weigh the same against the fit whatever the number of rows.
    With ``E`` experts, ``v_i = w_i / sum_k w_k`` and ``P_j = sum_i v_i g_j(x_i)``
    the mean gate weight of expert ``j``, the penalties are:

    - ``"switch"``: ``B = E * sum_j f_j P_j``, ``f_j = sum_i v_i [argmax_k
      g_k(x_i) = j]`` the share of rows whose top expert is ``j`` (Fedus et
      al., "Switch Transformers", JMLR 2022). ``f`` is piecewise constant and,
      as in the paper, held fixed in the gradient.
    - ``"importance"``: ``B = CV(I)^2 = E * sum_j (P_j - 1/E)^2``, the squared
      coefficient of variation of the summed gate weights ``I_j = sum_i w_i
      g_j(x_i)`` over the experts (Shazeer et al., "Outrageously Large Neural
      Networks", ICLR 2017).
    - ``"entropy"``: ``B = KL(P || uniform) = sum_j P_j log(E P_j)``.
    - router z-loss: ``Z = sum_i v_i (log sum_j exp s_j(x_i))^2`` (Zoph et al.,
      "ST-MoE", 2022), which keeps the logits small, for stability.

    ``"importance"`` and ``"entropy"`` are 0 exactly when the mean gate is
    uniform; ``"switch"`` is 1 when the mean gate or the routed shares are.
    Each is defined, with its gradient, in ``skmoe._balance``. Inside EM the
    penalties enter the gate's M-step: the gate trades fidelity to the
    responsibilities for a more even use of the experts.

    The objective is minimised by scipy's L-BFGS-B with the exact gradient
    (chained through the logits, which are linear in ``W`` and ``b``),
    started from the previous solution when refitted inside EM (a warm
    start). With ``balance="switch"`` the objective is piecewise smooth (``f``
    jumps when a row's top expert changes), so L-BFGS-B may stop on a jump
    before ``tol`` is met.

    Parameters
    ----------
    C : float, default=1.0
        Inverse strength of the L2 penalty, as in ``LogisticRegression``.
    max_iter : int, default=100
        Most L-BFGS iterations per fit.
    tol : float, default=1e-4
        Gradient tolerance of L-BFGS (``gtol``), as in ``LogisticRegression``.
    balance : {"switch", "importance", "entropy"} or None, default=None
        Balancing penalty on the gate's use of the experts; None for none.
    balance_strength : float, default=0.01
        Weight of the balancing penalty in the objective (the paper's
        ``alpha``; Fedus et al. use 0.01). Ignored when ``balance`` is None.
    z_loss : float, default=0.0
        Weight of the router z-loss in the objective; 0 turns it off (ST-MoE
        uses 0.001).

    Attributes
    ----------
    coef_ : ndarray of shape (n_features, n_experts)
        Weights on the standardised features.
    intercept_ : ndarray of shape (n_experts,)
    n_experts_ : int
    n_iter_ : int
        L-BFGS iterations of the last fit.

    Examples
    --------
    >>> import numpy as np
    >>> from skmoe import SoftmaxGate
    >>> X = np.array([[-2.0], [-1.0], [1.0], [2.0]])
    >>> R = np.array([[1.0, 0.0], [0.9, 0.1], [0.1, 0.9], [0.0, 1.0]])
    >>> gate = SoftmaxGate(C=10.0).fit(X, R)
    >>> gate.predict_proba([[-3.0], [3.0]]).round(2)
    array([[0.99, 0.01],
           [0.01, 0.99]])
    """

    _parameter_constraints: dict = {
        "C": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
        "balance": [StrOptions(set(BALANCE_PENALTIES)), None],
        "balance_strength": [Interval(Real, 0, None, closed="left")],
        "z_loss": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(
        self,
        C=1.0,
        max_iter=100,
        tol=1e-4,
        balance=None,
        balance_strength=0.01,
        z_loss=0.0,
    ):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.balance = balance
        self.balance_strength = balance_strength
        self.z_loss = z_loss

    def fit(self, X, responsibilities, sample_weight=None, *, warm_start=False):
        """Fit the gate to target responsibilities.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        responsibilities : array-like of shape (n_samples, n_experts)
            Rows in the simplex: the soft targets.
        sample_weight : array-like of shape (n_samples,), default=None
        warm_start : bool, default=False
            Start the solver from the current ``coef_`` and ``intercept_``
            (used by EM, where consecutive targets differ little). It changes
            the cost of the fit, not its solution.

        Returns
        -------
        self : SoftmaxGate
        """
        self._validate_params()
        R = np.asarray(responsibilities, dtype=np.float64)
        n_samples, n_experts = R.shape
        weights = (
            np.ones(n_samples) if sample_weight is None else np.asarray(sample_weight)
        )
        # The features are refitted even on a warm start: the starting point
        # changes, never the optimum.
        self.features_ = fit_gate_features(X, weights)
        Z = self.features_.transform(X)
        n_features = Z.shape[1]

        start = np.zeros((n_features + 1, n_experts))
        if warm_start and getattr(self, "coef_", np.empty((0, 0))).shape == (
            n_features,
            n_experts,
        ):
            start[:-1] = self.coef_
            start[-1] = self.intercept_

        total = weights.sum()
        scale = 1.0 / total if total > 0 else 1.0
        penalty = scale / self.C
        shape = start.shape

        # Loop invariants. Each row of R sums to one, so
        # sum_j R_ij log g_ij = sum_j R_ij z_ij - logsumexp_j z_ij.
        weighted_targets = scale * weights[:, None] * R
        row_weights = scale * weights[:, None]
        # Penalties on the logits, each a (function, strength) pair.
        logit_penalties = []
        if self.balance is not None and self.balance_strength > 0:
            logit_penalties.append(
                (BALANCE_PENALTIES[self.balance], self.balance_strength)
            )
        if self.z_loss > 0:
            logit_penalties.append((z_loss_penalty, self.z_loss))

        def loss_and_gradient(flat):
            params = flat.reshape(shape)
            coef, intercept = params[:-1], params[-1]
            logits = Z @ coef + intercept
            peak = logits.max(axis=1, keepdims=True)
            exp_logits = np.exp(logits - peak)
            normaliser = exp_logits.sum(axis=1, keepdims=True)
            log_normaliser = peak + np.log(normaliser)
            loss = np.sum(row_weights * log_normaliser) - np.sum(
                weighted_targets * logits
            )
            loss += 0.5 * penalty * np.sum(coef**2)
            # d loss / d logits = w_i (g_ij - R_ij), scaled
            residual = row_weights * (exp_logits / normaliser) - weighted_targets
            for penalty_function, strength in logit_penalties:
                value, logit_gradient = penalty_function(logits, weights)
                loss += strength * value
                residual += strength * logit_gradient
            gradient = np.empty_like(params)
            gradient[:-1] = Z.T @ residual + penalty * coef
            gradient[-1] = residual.sum(axis=0)
            return loss, gradient.ravel()

        # The products are skinny (n x d times d x n_experts): BLAS threads
        # gain nothing (n=50,000, d=30, 8 experts on an idle 2-core machine:
        # 0.163 s with 2 threads, 0.167 s with 1) and cost 2.5x when the cores
        # are busy, e.g. with the experts' refits running beside it.
        with threadpool_limits(limits=1, user_api="blas"):
            result = minimize(
                loss_and_gradient,
                start.ravel(),
                jac=True,
                method="L-BFGS-B",
                options={"maxiter": self.max_iter, "gtol": self.tol},
            )
        params = result.x.reshape(shape)
        self.coef_ = params[:-1]
        self.intercept_ = params[-1]
        self.n_experts_ = n_experts
        self.n_iter_ = int(result.nit)
        return self

    def decision_function(self, X):
        """Gate logits, shape (n_samples, n_experts)."""
        check_is_fitted(self)
        return self.features_.transform(X) @ self.coef_ + self.intercept_

    def predict_log_proba(self, X):
        """Log gate weights, shape (n_samples, n_experts)."""
        return log_softmax(self.decision_function(X), axis=1)

    def predict_proba(self, X):
        """Gate weights, shape (n_samples, n_experts); rows sum to one."""
        return softmax(self.decision_function(X), axis=1)

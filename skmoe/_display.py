"""Displays of a fitted mixture, in scikit-learn's Display style: its routing
(:class:`RoutingDisplay`) and its loss curve (:class:`LossCurveDisplay`).

matplotlib is imported by the plotting methods only, so that ``import skmoe``
never needs it (it is in the ``dev`` extra).
"""

from numbers import Integral

import numpy as np
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils import Bunch
from sklearn.utils._optional_dependencies import check_matplotlib_support
from sklearn.utils.validation import check_is_fitted

from ._base import BaseMixtureOfExperts
from ._diagnostics import row_entropy

#: The panels of :class:`RoutingDisplay`, in their default order.
PANELS = ("load", "entropy", "routing")


def _check_mixture(estimator, caller):
    """Refuse anything but a mixture, saying what to pass instead."""
    if isinstance(estimator, BaseMixtureOfExperts):
        return
    if isinstance(estimator, Pipeline) and isinstance(
        estimator[-1], BaseMixtureOfExperts
    ):
        raise TypeError(
            f"{caller} takes the mixture itself, not a Pipeline that ends with "
            "one: pass pipe[-1], and X as the steps before it transform it, "
            "pipe[:-1].transform(X)."
        )
    raise TypeError(
        f"{caller} needs a fitted MoEClassifier or MoERegressor; got "
        f"{type(estimator).__name__}."
    )


def _check_panels(panels):
    panels = (panels,) if isinstance(panels, str) else tuple(panels)
    unknown = [panel for panel in panels if panel not in PANELS]
    if not panels or unknown or len(set(panels)) < len(panels):
        raise ValueError(
            f"panels must name some of {PANELS}, each once; got {panels!r}."
        )
    return panels


def _check_axes(ax, panels):
    """``ax`` as an array of Axes, one per panel."""
    from matplotlib.axes import Axes

    axes = np.ravel(np.asarray(ax, dtype=object))
    if axes.size != len(panels):
        raise ValueError(
            f"ax must hold one matplotlib Axes per panel ({len(panels)} for "
            f"panels={panels!r}); got {axes.size}."
        )
    if not all(isinstance(one, Axes) for one in axes):
        raise TypeError(
            "ax must be a matplotlib Axes, or a sequence of them (one per panel)."
        )
    return axes


def _expert_colours(n_experts):
    """One colour per expert, RGBA, shape (n_experts, 4)."""
    import matplotlib as mpl

    if n_experts <= 20:
        name = "tab10" if n_experts <= 10 else "tab20"
        return mpl.colors.to_rgba_array(mpl.colormaps[name].colors[:n_experts])
    return mpl.colormaps["gist_rainbow"](np.linspace(0, 1, n_experts))


def _feature_names(estimator, n_features):
    names = getattr(estimator, "feature_names_in_", None)
    if names is None:
        return [f"feature {i}" for i in range(n_features)]
    return [str(name) for name in names]


def _embedding(estimator, X, X_checked, gate_weight_of_top, projection):
    """The routing panel's coordinates of each row, and its axis labels.

    One feature: the feature against the gate's weight of the row's top
    expert. Two: the features themselves. More: the first two principal
    components of the features as the gate sees them (mean-imputed and
    standardised). ``projection`` (a transformer) replaces all three.
    """
    if projection is not None:
        if not hasattr(projection, "fit_transform"):
            raise TypeError(
                "projection must be a transformer with fit_transform (such as "
                f"PCA(n_components=2)); got {type(projection).__name__}."
            )
        coords = np.asarray(clone(projection).fit_transform(X), dtype=np.float64)
        if coords.shape != (X_checked.shape[0], 2):
            raise ValueError(
                "projection must map X to 2 columns, one row per row of X; "
                f"{type(projection).__name__} gave shape {coords.shape}."
            )
        return coords, "component 1", "component 2"
    n_features = X_checked.shape[1]
    names = _feature_names(estimator, n_features)
    if n_features == 1:
        coords = np.column_stack([X_checked[:, 0], gate_weight_of_top])
        return coords, names[0], "gate weight of the top expert"
    if n_features == 2:
        return X_checked, names[0], names[1]
    pca = make_pipeline(
        SimpleImputer(), StandardScaler(), PCA(n_components=2, random_state=0)
    )
    coords = pca.fit_transform(X_checked)
    ratio = pca[-1].explained_variance_ratio_
    labels = [f"standardised PC {k + 1} ({ratio[k]:.0%} of variance)" for k in range(2)]
    return coords, labels[0], labels[1]


def _regions(estimator, X, grid_resolution):
    """The top expert on a grid over two features (a Bunch of xx0, xx1,
    top_expert), padded by 5% of each feature's range."""
    axes = []
    for column in X.T:
        low, high = np.nanmin(column), np.nanmax(column)
        pad = 0.05 * (high - low) if high > low else 0.5
        axes.append(np.linspace(low - pad, high + pad, grid_resolution))
    xx0, xx1 = np.meshgrid(*axes)
    routing = estimator._routing_weights(np.column_stack([xx0.ravel(), xx1.ravel()]))
    return Bunch(
        xx0=xx0, xx1=xx1, top_expert=np.argmax(routing, axis=1).reshape(xx0.shape)
    )


class RoutingDisplay:
    """How a fitted mixture routes rows: loads, gate entropy and a map.

    Three panels, each optional (``panels``):

    * ``"load"``: for each expert, its top-choice share (the fraction of the
      rows whose largest routing weight is the expert's) and its gate mass
      (its mean routing weight, ``gate_proba``), side by side, with the even
      share ``1 / n_active`` for reference;
    * ``"entropy"``: the distribution over the rows of the entropy of the
      gate's weights (before top-k), from 0 (certain) to ``log(n_active)``
      (cannot tell the experts apart), with its mean;
    * ``"routing"``: the rows on a plane, coloured by their top expert: with
      two features the features themselves, over the top expert of every
      point of the plane; with one, the feature against the gate's weight of
      the top expert; with more, the first two principal components of the
      standardised features (or any ``projection``).

    Create it with :meth:`from_estimator`; the parameters are the computed
    figures, stored as attributes.

    Parameters
    ----------
    expert_names : list of str
        The experts, in the order of ``expert_names_``.
    top_choice_load : ndarray of shape (n_experts,)
        Fraction of the rows whose top expert each is.
    gate_load : ndarray of shape (n_experts,)
        Mean routing weight of each expert.
    active : ndarray of bool, shape (n_experts,)
        False for an expert the mixture dropped.
    gate_entropy : ndarray of shape (n_samples,)
        Entropy (nats) of each row's gate weights over the active experts,
        before top-k truncation.
    embedding : ndarray of shape (n_samples, 2)
        Coordinates of each row in the routing panel.
    top_expert : ndarray of int, shape (n_samples,)
        Index of each row's top expert.
    scores : ndarray of shape (n_experts,), default=None
        Each expert's own score on the rows whose top expert it is (see
        ``routing_report``), shown under its name; None to show none.
    regions : Bunch, default=None
        ``xx0``, ``xx1`` (a meshgrid over two features) and ``top_expert``
        (the top expert at each point of it), drawn behind the rows.
    xlabel, ylabel : str, default=None
        The routing panel's axis labels.

    Attributes
    ----------
    load_bars_ : matplotlib BarContainer or None
        The top-choice shares, one bar per expert.
    mass_bars_ : matplotlib BarContainer or None
        The gate masses, one bar per expert.
    entropy_hist_ : matplotlib BarContainer or None
        The histogram of the rows' gate entropies.
    scatter_ : matplotlib PathCollection or None
        The rows, one point each, coloured by their top expert.
    regions_ : matplotlib QuadMesh or None
        The top expert over the plane (two features only).
    expert_colors_ : ndarray of shape (n_experts, 4)
        Each expert's colour (RGBA), the same in every panel.
    axes_ : ndarray of matplotlib Axes
        The panels' axes, in the order of ``panels``.
    figure_ : matplotlib Figure
        The figure holding them.
    (A panel not drawn leaves its artists None.)

    See Also
    --------
    LossCurveDisplay : The mixture's loss per iteration or round.

    Notes
    -----
    ``sklearn.inspection.DecisionBoundaryDisplay.from_estimator(moe, X,
    response_method="gate_proba")`` cannot draw the routing, and this
    display's routing panel is the way to see it: DecisionBoundaryDisplay
    reads any ``(n, k)`` response of a classifier as one column per class of
    ``classes_``, not per expert. With two classes it takes the response for
    one score and matplotlib fails ("Input z must be 2D"); with more it
    draws ``len(classes_)`` layers (an ``IndexError`` with fewer experts,
    experts left out with more); ``class_of_interest=c`` picks the column at
    the position of class ``c``, which names the wrong thing (an expert, by
    the position of a class); a regressor's is refused ("Multi-output
    regressors are not supported"). With two features, the routing panel
    draws the top expert over the plane, as DecisionBoundaryDisplay would;
    for one expert's weight over it, evaluate ``moe.gate_proba`` on a grid
    and draw it with ``ax.contourf``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> from skmoe import MoERegressor, RoutingDisplay
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> y = np.abs(X[:, 0])
    >>> moe = MoERegressor(LinearRegression(), n_experts=2, top_k=1,
    ...                    random_state=0).fit(X, y)
    >>> display = RoutingDisplay.from_estimator(moe, X, y)
    >>> display.top_choice_load
    array([0.5, 0.5])
    >>> len(display.load_bars_), display.axes_.shape
    (2, (3,))
    """

    def __init__(
        self,
        *,
        expert_names,
        top_choice_load,
        gate_load,
        active,
        gate_entropy,
        embedding,
        top_expert,
        scores=None,
        regions=None,
        xlabel=None,
        ylabel=None,
    ):
        self.expert_names = expert_names
        self.top_choice_load = top_choice_load
        self.gate_load = gate_load
        self.active = active
        self.gate_entropy = gate_entropy
        self.embedding = embedding
        self.top_expert = top_expert
        self.scores = scores
        self.regions = regions
        self.xlabel = xlabel
        self.ylabel = ylabel

    @classmethod
    def from_estimator(
        cls,
        estimator,
        X,
        y=None,
        *,
        projection=None,
        grid_resolution=100,
        panels=PANELS,
        ax=None,
        scatter_kw=None,
    ):
        """Compute the routing of ``X`` by a fitted mixture, and plot it.

        The loads come from ``estimator.routing_report(X, y)``, the
        routing from ``gate_proba`` and the gate's weights before top-k.

        Parameters
        ----------
        estimator : MoEClassifier or MoERegressor
            A fitted mixture (for one at the end of a Pipeline, pass
            ``pipe[-1]`` and ``pipe[:-1].transform(X)``).
        X : array-like of shape (n_samples, n_features)
            The rows to route.
        y : array-like of shape (n_samples,), default=None
            When given, each expert's own score on the rows it is the top
            expert of is shown under its name (accuracy or R^2; NaN with
            fewer than two rows).
        projection : transformer, default=None
            Maps ``X`` (as given) to the routing panel's two coordinates, by
            ``fit_transform`` on a clone (``TSNE(2)``, a ``PCA`` on some
            columns). None: see the class description.
        grid_resolution : int, default=100
            Points per side of the grid the top expert is drawn on, with two
            features and no ``projection``.
        panels : tuple of str, default=("load", "entropy", "routing")
            The panels to draw, in order.
        ax : matplotlib Axes or sequence of Axes, default=None
            One per panel; None makes a figure with a row of them.
        scatter_kw : dict, default=None
            Passed to ``ax.scatter`` for the rows (their colour is their top
            expert's).

        Returns
        -------
        display : RoutingDisplay
        """
        caller = f"{cls.__name__}.from_estimator"
        check_matplotlib_support(caller)
        _check_mixture(estimator, caller)
        panels = _check_panels(panels)
        if not (isinstance(grid_resolution, Integral) and grid_resolution > 1):
            raise ValueError(
                f"grid_resolution must be an integer above 1; got {grid_resolution!r}."
            )
        report = estimator.routing_report(X, y)
        X_checked = estimator._validate_X_predict(X)
        routing, gate = estimator._routing_weights(X_checked, with_gate=True)
        top_expert = np.argmax(routing, axis=1)
        gate_weight_of_top = gate[np.arange(len(top_expert)), top_expert]
        embedding, xlabel, ylabel = _embedding(
            estimator, X, X_checked, gate_weight_of_top, projection
        )
        regions = None
        if projection is None and X_checked.shape[1] == 2:
            regions = _regions(estimator, X_checked, grid_resolution)
        display = cls(
            expert_names=list(report.index),
            top_choice_load=report["top_choice_load"].to_numpy(),
            gate_load=report["gate_load"].to_numpy(),
            active=report["active"].to_numpy(),
            gate_entropy=row_entropy(gate),
            embedding=embedding,
            top_expert=top_expert,
            scores=report["score"].to_numpy() if "score" in report else None,
            regions=regions,
            xlabel=xlabel,
            ylabel=ylabel,
        )
        return display.plot(panels=panels, ax=ax, scatter_kw=scatter_kw)

    def plot(self, *, panels=PANELS, ax=None, scatter_kw=None):
        """Plot the panels.

        Parameters
        ----------
        panels : tuple of str, default=("load", "entropy", "routing")
            Some of ``"load"``, ``"entropy"`` and ``"routing"``, in the
            order to draw them.
        ax : matplotlib Axes or sequence of Axes, default=None
            One per panel; None makes a figure with a row of them.
        scatter_kw : dict, default=None
            Passed to ``ax.scatter`` for the rows.

        Returns
        -------
        display : RoutingDisplay
        """
        check_matplotlib_support(f"{type(self).__name__}.plot")
        import matplotlib.pyplot as plt

        panels = _check_panels(panels)
        if ax is None:
            figure, axes = plt.subplots(
                1,
                len(panels),
                figsize=(5.5 * len(panels), 4.5),
                squeeze=False,
                layout="constrained",
            )
            axes = axes[0]
        else:
            axes = _check_axes(ax, panels)
            figure = axes[0].figure
        self.expert_colors_ = _expert_colours(len(self.expert_names))
        self.load_bars_ = self.mass_bars_ = self.entropy_hist_ = None
        self.scatter_ = self.regions_ = None
        draw = {
            "load": self._plot_load,
            "entropy": self._plot_entropy,
            "routing": lambda panel_ax: self._plot_routing(panel_ax, scatter_kw),
        }
        for panel, panel_ax in zip(panels, axes):
            draw[panel](panel_ax)
        self.axes_ = np.asarray(axes, dtype=object)
        self.figure_ = figure
        return self

    def _n_active(self):
        return int(np.sum(self.active))

    def _plot_load(self, ax):
        from matplotlib.patches import Patch

        positions = np.arange(len(self.expert_names))
        width = 0.4
        colours = self.expert_colors_
        self.load_bars_ = ax.bar(
            positions - width / 2, self.top_choice_load, width, color=colours
        )
        self.mass_bars_ = ax.bar(
            positions + width / 2,
            self.gate_load,
            width,
            color=colours,
            alpha=0.45,
            hatch="//",
        )
        even_share = 1 / max(self._n_active(), 1)
        even = ax.axhline(even_share, color="grey", linestyle=":", lw=1)
        # room above the bars for the legend
        top = max(np.max(self.top_choice_load), np.max(self.gate_load), even_share)
        ax.set_ylim(0, 1.45 * top)
        ax.legend(
            [Patch(color="grey"), Patch(color="grey", alpha=0.45, hatch="//"), even],
            [
                "top-choice share (load)",
                "gate mass (mean gate_proba)",
                f"even share (1/{self._n_active()})",
            ],
            loc="upper left",
            fontsize="small",
        )
        ax.set_xticks(positions, self._expert_labels(), rotation=30, ha="right")
        ax.set_ylabel("share of the rows")
        ax.set_title("Load per expert")

    def _expert_labels(self):
        labels = []
        for j, name in enumerate(self.expert_names):
            if not self.active[j]:
                name = f"{name}\n(dropped)"
            elif self.scores is not None:
                score = self.scores[j]
                name = f"{name}\nscore {'n/a' if np.isnan(score) else f'{score:.2f}'}"
            labels.append(name)
        return labels

    def _plot_entropy(self, ax):
        n_active = self._n_active()
        uniform = np.log(n_active) if n_active > 1 else 0.0
        # the range reaches the largest entropy too (it can exceed
        # log(n_active) by a rounding error)
        top = max(uniform, float(np.max(self.gate_entropy, initial=0.0)))
        _, _, self.entropy_hist_ = ax.hist(
            self.gate_entropy,
            bins=20,
            range=(0.0, top) if top > 0 else None,
            color="grey",
        )
        mean = float(np.mean(self.gate_entropy))
        ax.axvline(mean, color="crimson", label=f"mean {mean:.3f}")
        if n_active > 1:
            ax.axvline(
                uniform,
                color="black",
                linestyle="--",
                label=f"log {n_active} = {uniform:.3f} (uniform)",
            )
        ax.legend(fontsize="small")
        ax.set_xlabel("entropy of the gate's weights (nats)")
        ax.set_ylabel("rows")
        ax.set_title("Gate entropy over the rows")

    def _plot_routing(self, ax, scatter_kw):
        from matplotlib.colors import ListedColormap
        from matplotlib.lines import Line2D

        colours = self.expert_colors_
        n_experts = len(self.expert_names)
        shown = set(np.unique(self.top_expert))
        if self.regions is not None:
            self.regions_ = ax.pcolormesh(
                self.regions.xx0,
                self.regions.xx1,
                self.regions.top_expert,
                cmap=ListedColormap(colours),
                vmin=-0.5,
                vmax=n_experts - 0.5,
                alpha=0.25,
                shading="auto",
            )
            shown |= set(np.unique(self.regions.top_expert))
        kw = {"s": 12, "alpha": 0.8, "edgecolors": "none", **(scatter_kw or {})}
        self.scatter_ = ax.scatter(
            self.embedding[:, 0],
            self.embedding[:, 1],
            c=colours[self.top_expert],
            **kw,
        )
        handles = [
            Line2D([], [], marker="o", linestyle="none", color=colours[j])
            for j in sorted(shown)
        ]
        ax.legend(
            handles,
            [self.expert_names[j] for j in sorted(shown)],
            title="top expert",
            fontsize="small",
        )
        ax.set_xlabel(self.xlabel or "")
        ax.set_ylabel(self.ylabel or "")
        ax.set_title(
            "Top expert of each row"
            + (" and of the plane" if self.regions is not None else "")
        )


# training_strategy_: (what one entry of loss_curve_ is, the first's number)
_STEPS = {
    "crossfit": ("crossfit round (0: before specialisation)", 0),
    "em": ("EM iteration", 1),
    "hard_em": ("EM iteration", 1),
    "backprop": ("iteration", 1),
    "fused": ("epoch", 1),
}


def _loss_label(estimator):
    """What ``loss_curve_`` measures."""
    if estimator.training_strategy_ == "crossfit":
        return "held-out loss"
    if estimator.cv is not None and estimator.training_strategy_ != "fused":
        return "out-of-fold loss"
    return "training loss"


def _kept_entry(estimator):
    """The index in ``loss_curve_`` of the iterate the mixture kept, or None.

    Under crossfit, the rounds kept are the first ones (the first round that
    does not improve ends them); otherwise ``loss_`` is the kept iterate's
    entry of ``loss_curve_`` (the last such entry, as EM keeps the later of
    equal iterates).
    """
    if estimator.training_strategy_ == "crossfit":
        return estimator.n_specialisation_rounds_
    matches = np.flatnonzero(np.asarray(estimator.loss_curve_) == estimator.loss_)
    return int(matches[-1]) if matches.size else None


class LossCurveDisplay:
    """A mixture's loss per EM iteration, epoch or crossfit round.

    Under ``training="crossfit"`` ``loss_curve_`` is the held-out loss of
    each round (round 0 first, the rounds not kept included), and is labelled
    so; under the in-sample algorithms it is the training loss of each
    iteration (out of fold with ``cv``). The iterate the mixture kept is
    marked, and the training objective is drawn too where it differs from the
    loss (balancing penalties, z-loss, capacity).

    Create it with :meth:`from_estimator`; the parameters are stored as
    attributes.

    Parameters
    ----------
    loss_curve : sequence of float
        The loss per step.
    objective_curve : sequence of float, default=None
        The training objective per step; None to draw none.
    kept : int, default=None
        Index in ``loss_curve`` of the iterate kept, marked; None for none.
    first_step : int, default=1
        The number of the first step on the x axis (0 for crossfit rounds).
    loss_label : str, default="training loss"
        What the loss is (``"held-out loss"``, ``"out-of-fold loss"``).
    xlabel : str, default="iteration"
        What a step is.
    estimator_name : str, default=None
        The title; None for no title.

    Attributes
    ----------
    line_ : matplotlib Line2D
        The loss curve.
    objective_line_ : matplotlib Line2D or None
        The objective curve, when drawn.
    kept_marker_ : matplotlib Line2D or None
        The marker of the kept iterate.
    ax_ : matplotlib Axes
        The axes of the plot.
    figure_ : matplotlib Figure
        The figure holding it.

    See Also
    --------
    RoutingDisplay : How the fitted mixture routes rows.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LinearRegression
    >>> from skmoe import LossCurveDisplay, MoERegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> y = np.abs(X[:, 0])
    >>> moe = MoERegressor(LinearRegression(), n_experts=2, top_k=1,
    ...                    random_state=0).fit(X, y)
    >>> display = LossCurveDisplay.from_estimator(moe)
    >>> display.ax_.get_ylabel().splitlines()[0]
    'held-out loss'
    >>> bool(np.all(display.line_.get_ydata() == moe.loss_curve_))
    True
    """

    def __init__(
        self,
        loss_curve,
        *,
        objective_curve=None,
        kept=None,
        first_step=1,
        loss_label="training loss",
        xlabel="iteration",
        estimator_name=None,
    ):
        self.loss_curve = loss_curve
        self.objective_curve = objective_curve
        self.kept = kept
        self.first_step = first_step
        self.loss_label = loss_label
        self.xlabel = xlabel
        self.estimator_name = estimator_name

    @classmethod
    def from_estimator(cls, estimator, *, ax=None, name=None, **kwargs):
        """Plot the loss curve of a fitted mixture.

        Parameters
        ----------
        estimator : MoEClassifier or MoERegressor
            A fitted mixture.
        ax : matplotlib Axes, default=None
            None makes a figure.
        name : str, default=None
            The title; None is the estimator's class and its
            ``training_strategy_``.
        **kwargs : dict
            Passed to ``ax.plot`` for the loss curve.

        Returns
        -------
        display : LossCurveDisplay
        """
        caller = f"{cls.__name__}.from_estimator"
        check_matplotlib_support(caller)
        _check_mixture(estimator, caller)
        check_is_fitted(estimator)
        strategy = estimator.training_strategy_
        xlabel, first_step = _STEPS[strategy]
        objective = estimator.objective_curve_
        display = cls(
            estimator.loss_curve_,
            objective_curve=None if objective == estimator.loss_curve_ else objective,
            kept=_kept_entry(estimator),
            first_step=first_step,
            loss_label=_loss_label(estimator),
            xlabel=xlabel,
            estimator_name=f"{type(estimator).__name__} ({strategy})",
        )
        return display.plot(ax=ax, name=name, **kwargs)

    def plot(self, ax=None, *, name=None, **kwargs):
        """Plot the curve.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            None makes a figure.
        name : str, default=None
            The title; None is ``estimator_name``.
        **kwargs : dict
            Passed to ``ax.plot`` for the loss curve.

        Returns
        -------
        display : LossCurveDisplay
        """
        check_matplotlib_support(f"{type(self).__name__}.plot")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        if ax is None:
            figure, ax = plt.subplots()
        else:
            figure = ax.figure
        loss = np.asarray(self.loss_curve, dtype=np.float64)
        steps = np.arange(loss.size) + self.first_step
        (self.line_,) = ax.plot(
            steps, loss, **{"marker": "o", "label": self.loss_label, **kwargs}
        )
        self.objective_line_ = None
        if self.objective_curve is not None:
            (self.objective_line_,) = ax.plot(
                steps,
                self.objective_curve,
                color="grey",
                linestyle="--",
                label="training objective",
            )
        self.kept_marker_ = None
        if self.kept is not None:
            (self.kept_marker_,) = ax.plot(
                [steps[self.kept]],
                [loss[self.kept]],
                linestyle="none",
                marker="*",
                markersize=14,
                color="crimson",
                label="kept",
            )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(self.xlabel)
        ax.set_ylabel(f"{self.loss_label}\n(mean negative log-likelihood)")
        title = self.estimator_name if name is None else name
        if title:
            ax.set_title(title)
        ax.legend(fontsize="small")
        self.ax_ = ax
        self.figure_ = figure
        return self

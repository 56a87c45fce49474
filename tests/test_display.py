"""RoutingDisplay and LossCurveDisplay draw what the fitted mixture computes.

The displays are drawn with matplotlib's non-interactive backend (Agg) and
their artists read back: the bars' heights are the routing report's loads,
the scatter has a point per row in its top expert's colour, the curve is
``loss_curve_``.
"""

import sys

import numpy as np
import pytest
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from skmoe import LossCurveDisplay, MoEClassifier, MoERegressor, RoutingDisplay

from _helpers import quiet_fit, regime_classification, regime_data, run_python

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def one_feature():
    X, y, _ = regime_data(200)
    moe = MoERegressor(LinearRegression(), n_experts=2, cv=3, random_state=0)
    return quiet_fit(moe, X, y), X, y


@pytest.fixture(scope="module")
def two_features():
    X, y = regime_classification(200)
    moe = MoEClassifier(
        LogisticRegression(), n_experts=3, cv=3, specialise=2, random_state=0
    )
    return quiet_fit(moe, X, y), X, y


@pytest.fixture(scope="module")
def four_features():
    rng = np.random.RandomState(0)
    X = rng.normal(size=(150, 4)) * [1.0, 10.0, 0.1, 1.0]
    y = np.where(X[:, 0] > 0, X[:, 1], -X[:, 2] * 30) + 0.1 * rng.randn(150)
    moe = MoERegressor(
        LinearRegression(), n_experts=3, top_k=1, cv=3, specialise=2, random_state=0
    )
    return quiet_fit(moe, X, y), X, y


FITS = ["one_feature", "two_features", "four_features"]


def gate_entropy_by_hand(moe, X):
    # the gate's softmax over the active experts
    p = moe.gate_.predict_proba(X) * moe.active_experts_
    p /= p.sum(axis=1, keepdims=True)
    return -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)


def expert_labels(moe):
    return [
        name if active else f"{name}\n(dropped)"
        for name, active in zip(moe.expert_names_, moe.active_experts_)
    ]


# -- RoutingDisplay ----------------------------------------------------------


@pytest.mark.parametrize("fit", FITS)
def test_the_bars_are_the_routing_reports_loads(fit, request):
    moe, X, _ = request.getfixturevalue(fit)
    display = RoutingDisplay.from_estimator(moe, X)
    report = moe.routing_report(X)
    n_experts = len(moe.expert_names_)
    assert len(display.load_bars_) == len(display.mass_bars_) == n_experts
    heights = [bar.get_height() for bar in display.load_bars_]
    masses = [bar.get_height() for bar in display.mass_bars_]
    np.testing.assert_array_equal(heights, report["top_choice_load"])
    np.testing.assert_array_equal(masses, report["gate_load"])
    # on the training rows, the fitted figures
    np.testing.assert_allclose(heights, moe.top_choice_load_)
    np.testing.assert_allclose(masses, moe.gate_load_)
    labels = [tick.get_text() for tick in display.axes_[0].get_xticklabels()]
    assert labels == expert_labels(moe)
    # one colour per expert, the same in the two series
    for load, mass, colour in zip(
        display.load_bars_, display.mass_bars_, display.expert_colors_
    ):
        np.testing.assert_allclose(load.get_facecolor()[:3], colour[:3])
        np.testing.assert_allclose(mass.get_facecolor()[:3], colour[:3])


@pytest.mark.parametrize("fit", FITS)
def test_the_scatter_has_a_point_per_row_in_its_top_experts_colour(fit, request):
    moe, X, _ = request.getfixturevalue(fit)
    display = RoutingDisplay.from_estimator(moe, X[:50])
    assert display.scatter_.get_offsets().shape == (50, 2)
    top = moe.gate_proba(X[:50]).argmax(axis=1)
    np.testing.assert_array_equal(display.top_expert, top)
    np.testing.assert_allclose(
        display.scatter_.get_facecolors()[:, :3], display.expert_colors_[top, :3]
    )


@pytest.mark.parametrize("fit", FITS)
def test_the_entropy_histogram_counts_every_row(fit, request):
    moe, X, _ = request.getfixturevalue(fit)
    display = RoutingDisplay.from_estimator(moe, X)
    expected = gate_entropy_by_hand(moe, X)
    np.testing.assert_allclose(display.gate_entropy, expected, atol=1e-12)
    assert np.isclose(display.gate_entropy.mean(), moe.gate_entropy_)
    counts = [bar.get_height() for bar in display.entropy_hist_]
    assert sum(counts) == len(X)
    n_active = moe.active_experts_.sum()
    last = display.entropy_hist_[-1]
    right_edge = last.get_x() + last.get_width()
    assert right_edge == pytest.approx(max(np.log(n_active), expected.max()))


def test_titles_and_labels(two_features):
    moe, X, _ = two_features
    display = RoutingDisplay.from_estimator(moe, X)
    load, entropy, routing = display.axes_
    assert load.get_title() == "Load per expert"
    assert load.get_ylabel() == "share of the rows"
    assert entropy.get_title() == "Gate entropy over the rows"
    assert entropy.get_xlabel() == "entropy of the gate's weights (nats)"
    assert routing.get_title() == "Top expert of each row and of the plane"
    assert (routing.get_xlabel(), routing.get_ylabel()) == ("feature 0", "feature 1")
    legend = [text.get_text() for text in routing.get_legend().get_texts()]
    assert set(legend) <= set(moe.expert_names_) and legend


def test_one_feature_is_drawn_against_the_top_experts_gate_weight(one_feature):
    moe, X, _ = one_feature
    display = RoutingDisplay.from_estimator(moe, X)
    np.testing.assert_array_equal(display.embedding[:, 0], X[:, 0])
    np.testing.assert_allclose(
        display.embedding[:, 1], moe.gate_.predict_proba(X).max(axis=1)
    )
    assert display.regions is None and display.regions_ is None
    assert display.axes_[2].get_ylabel() == "gate weight of the top expert"


def test_two_features_draw_the_top_expert_over_the_plane(two_features):
    moe, X, _ = two_features
    display = RoutingDisplay.from_estimator(moe, X, grid_resolution=30)
    np.testing.assert_array_equal(display.embedding, X)
    regions = display.regions
    assert regions.xx0.shape == (30, 30)
    assert regions.xx0.min() < X[:, 0].min() and regions.xx1.max() > X[:, 1].max()
    grid = np.column_stack([regions.xx0.ravel(), regions.xx1.ravel()])
    expected = moe.gate_proba(grid).argmax(axis=1).reshape(30, 30)
    np.testing.assert_array_equal(regions.top_expert, expected)
    np.testing.assert_array_equal(
        np.asarray(display.regions_.get_array()).reshape(30, 30), expected
    )


def test_more_features_are_projected_on_the_standardised_principal_plane(
    four_features,
):
    moe, X, _ = four_features
    display = RoutingDisplay.from_estimator(moe, X)
    # the columns' scales differ by 100: unstandardised, PC 1 would be column 1
    expected = make_pipeline(StandardScaler(), PCA(2)).fit_transform(X)
    np.testing.assert_allclose(np.abs(display.embedding), np.abs(expected))
    assert display.xlabel.startswith("standardised PC 1 (")
    assert display.regions is None


def test_a_projection_is_cloned_and_used(four_features):
    moe, X, _ = four_features
    projection = PCA(n_components=2)
    display = RoutingDisplay.from_estimator(moe, X, projection=projection)
    assert not hasattr(projection, "components_")  # the user's is untouched
    np.testing.assert_allclose(
        np.abs(display.embedding), np.abs(PCA(2).fit_transform(X))
    )
    assert display.xlabel == "component 1"
    with pytest.raises(ValueError, match="2 columns.*shape \\(150, 3\\)"):
        RoutingDisplay.from_estimator(moe, X, projection=PCA(3))
    with pytest.raises(TypeError, match="fit_transform"):
        RoutingDisplay.from_estimator(moe, X, projection="pca")


def test_y_puts_each_experts_score_under_its_name(one_feature):
    moe, X, y = one_feature
    display = RoutingDisplay.from_estimator(moe, X, y)
    scores = moe.routing_report(X, y)["score"].to_numpy()
    np.testing.assert_array_equal(display.scores, scores)
    labels = [tick.get_text() for tick in display.axes_[0].get_xticklabels()]
    assert labels == [
        f"{name}\nscore {score:.2f}" for name, score in zip(moe.expert_names_, scores)
    ]


def test_a_dropped_expert_is_labelled_and_left_out_of_the_even_share():
    display = RoutingDisplay(
        expert_names=["a", "b", "c"],
        top_choice_load=np.array([0.7, 0.0, 0.3]),
        gate_load=np.array([0.6, 0.0, 0.4]),
        active=np.array([True, False, True]),
        gate_entropy=np.full(4, 0.5),
        embedding=np.zeros((4, 2)),
        top_expert=np.array([0, 0, 2, 0]),
    ).plot()
    load = display.axes_[0]
    labels = [tick.get_text() for tick in load.get_xticklabels()]
    assert labels == ["a", "b\n(dropped)", "c"]
    legend = [text.get_text() for text in load.get_legend().get_texts()]
    assert legend[-1] == "even share (1/2)"
    routing_legend = display.axes_[2].get_legend().get_texts()
    assert [text.get_text() for text in routing_legend] == ["a", "c"]


def test_ax_is_used_one_axes_per_panel(two_features):
    moe, X, _ = two_features
    figure, axes = plt.subplots(1, 3)
    display = RoutingDisplay.from_estimator(moe, X, ax=axes)
    assert list(display.axes_) == list(axes) and display.figure_ is figure
    assert len(axes[0].patches) == 2 * len(moe.expert_names_)

    figure, ax = plt.subplots()
    display = RoutingDisplay.from_estimator(moe, X, panels="routing", ax=ax)
    assert list(display.axes_) == [ax] and display.figure_ is figure
    assert display.load_bars_ is None and display.entropy_hist_ is None
    assert display.scatter_ in ax.collections

    # plot again, another panel on other axes, from the same figures
    figure, ax = plt.subplots()
    display.plot(panels=["load"], ax=ax)
    assert display.scatter_ is None and len(display.load_bars_) == 3


def test_bad_ax_and_panels_are_refused(two_features):
    moe, X, _ = two_features
    _, axes = plt.subplots(1, 2)
    with pytest.raises(ValueError, match="one matplotlib Axes per panel \\(3 .*got 2"):
        RoutingDisplay.from_estimator(moe, X, ax=axes)
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        RoutingDisplay.from_estimator(moe, X, panels=["load"], ax="left")
    for panels in (["load", "gates"], [], ["load", "load"]):
        with pytest.raises(ValueError, match="panels must name some of"):
            RoutingDisplay.from_estimator(moe, X, panels=panels)
    with pytest.raises(ValueError, match="grid_resolution must be an integer above 1"):
        RoutingDisplay.from_estimator(moe, X, grid_resolution=1)


def test_bad_estimators_and_inputs_get_clear_errors(two_features):
    moe, X, y = two_features
    with pytest.raises(NotFittedError):
        RoutingDisplay.from_estimator(MoEClassifier(LogisticRegression()), X)
    with pytest.raises(TypeError, match="needs a fitted MoEClassifier or MoERegressor"):
        RoutingDisplay.from_estimator(LogisticRegression().fit(X, y), X)
    pipe = make_pipeline(StandardScaler(), moe)
    with pytest.raises(TypeError, match="pipe\\[-1\\].*pipe\\[:-1\\].transform"):
        RoutingDisplay.from_estimator(pipe, X)
    with pytest.raises(ValueError, match="X has 3 features"):
        RoutingDisplay.from_estimator(moe, np.hstack([X, X[:, :1]]))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        RoutingDisplay.from_estimator(moe, X, y[:-1])


def test_without_matplotlib_the_displays_say_how_to_install_it(
    two_features, monkeypatch
):
    moe, X, _ = two_features
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ImportError, match="RoutingDisplay.from_estimator requires"):
        RoutingDisplay.from_estimator(moe, X)
    with pytest.raises(ImportError, match="LossCurveDisplay.from_estimator requires"):
        LossCurveDisplay.from_estimator(moe)


def test_import_skmoe_does_not_import_matplotlib():
    done = run_python(
        "import sys, skmoe; skmoe.RoutingDisplay, skmoe.LossCurveDisplay; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    )
    assert done.returncode == 0, done.stderr


# -- LossCurveDisplay --------------------------------------------------------


def test_a_crossfit_curve_is_the_held_out_loss_per_round(one_feature):
    moe, _, _ = one_feature
    display = LossCurveDisplay.from_estimator(moe)
    np.testing.assert_array_equal(display.line_.get_ydata(), moe.loss_curve_)
    np.testing.assert_array_equal(
        display.line_.get_xdata(), np.arange(len(moe.loss_curve_))
    )
    ax = display.ax_
    assert ax.get_ylabel() == "held-out loss\n(mean negative log-likelihood)"
    assert ax.get_xlabel().startswith("crossfit round")
    assert ax.get_title() == "MoERegressor (crossfit)"
    kept = moe.n_specialisation_rounds_
    assert display.kept_marker_.get_xdata()[0] == kept
    assert display.kept_marker_.get_ydata()[0] == moe.loss_
    assert display.objective_line_ is None  # the objective is the loss


def test_an_em_curve_is_the_training_loss_per_iteration_with_its_objective():
    X, y, _ = regime_data(200)
    moe = MoERegressor(
        LinearRegression(),
        n_experts=2,
        training="em",
        balance="switch",
        random_state=0,
    )
    quiet_fit(moe, X, y)
    display = LossCurveDisplay.from_estimator(moe, name="EM, balanced")
    n = len(moe.loss_curve_)
    np.testing.assert_array_equal(display.line_.get_xdata(), np.arange(1, n + 1))
    np.testing.assert_array_equal(
        display.objective_line_.get_ydata(), moe.objective_curve_
    )
    assert display.ax_.get_ylabel().startswith("training loss\n")
    assert display.ax_.get_xlabel() == "EM iteration"
    assert display.ax_.get_title() == "EM, balanced"
    kept = int(np.argmin(moe.objective_curve_))
    assert display.kept_marker_.get_xdata()[0] == kept + 1
    assert display.kept_marker_.get_ydata()[0] == moe.loss_


def test_an_em_curve_with_cv_is_out_of_fold_and_ax_is_used():
    X, y, _ = regime_data(150)
    moe = MoERegressor(
        LinearRegression(), n_experts=2, training="em", cv=3, random_state=0
    )
    quiet_fit(moe, X, y)
    figure, ax = plt.subplots()
    display = LossCurveDisplay.from_estimator(moe, ax=ax, color="black")
    assert display.ax_ is ax and display.figure_ is figure
    assert display.ax_.get_ylabel().startswith("out-of-fold loss\n")
    assert matplotlib.colors.same_color(display.line_.get_color(), "black")


def test_the_loss_curve_refuses_what_is_not_a_fitted_mixture():
    with pytest.raises(NotFittedError):
        LossCurveDisplay.from_estimator(MoERegressor(LinearRegression()))
    with pytest.raises(TypeError, match="needs a fitted MoEClassifier"):
        LossCurveDisplay.from_estimator(LinearRegression())


def test_a_display_built_by_hand_plots_its_figures():
    display = LossCurveDisplay([3.0, 2.0, 2.5], kept=1, first_step=0).plot()
    np.testing.assert_array_equal(display.line_.get_xdata(), [0, 1, 2])
    assert display.kept_marker_.get_ydata()[0] == 2.0
    assert display.ax_.get_title() == ""

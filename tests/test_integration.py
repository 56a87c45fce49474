"""The mixtures inside scikit-learn's tools: Pipeline, GridSearchCV, set_params,
cross_validate, ColumnTransformer, pandas, and Pipeline experts."""

import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.model_selection import GridSearchCV, KFold, cross_validate
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from skmoe import ExpertCollapseWarning, MoEClassifier, MoERegressor, SoftmaxGate

from _helpers import (
    CountingClassifier,
    clear_fit_log,
    fits,
    regime_classification,
    regime_data,
    row_indices,
)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", ExpertCollapseWarning)
        yield


@pytest.fixture(scope="module")
def data():
    X, y = regime_classification(n_samples=150)
    # put the features on very different scales
    return X * np.array([1000.0, 0.001]), y


def _experts():
    return [("lr", LogisticRegression()), ("tree", DecisionTreeClassifier(max_depth=2))]


def test_pipeline(data):
    X, y = data
    pipe = make_pipeline(
        StandardScaler(), MoEClassifier(_experts(), max_iter=3, random_state=0)
    )
    pipe.fit(X, y)
    moe = pipe[-1]
    assert moe.n_features_in_ == 2
    proba = pipe.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(pipe.predict(X), moe.classes_[proba.argmax(axis=1)])
    # the mixture in the pipeline sees the scaled features
    np.testing.assert_allclose(proba, moe.predict_proba(pipe[0].transform(X)))
    assert pipe.score(X, y) > 0.7


def test_grid_search_over_a_named_experts_parameter(data):
    X, y = data
    pipe = make_pipeline(
        StandardScaler(), MoEClassifier(_experts(), max_iter=2, random_state=0)
    )
    assert "moeclassifier__lr__C" in pipe.get_params()
    search = GridSearchCV(pipe, {"moeclassifier__lr__C": [0.01, 1.0]}, cv=3)
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 2
    assert np.all(np.isfinite(search.cv_results_["mean_test_score"]))
    best = search.best_estimator_[-1]
    assert best.named_experts_.lr.C == search.best_params_["moeclassifier__lr__C"]
    # the parameter reaches the fitted expert: the two settings differ
    scores = search.cv_results_["mean_test_score"]
    assert scores[0] != scores[1]


def test_grid_search_over_the_template_and_gate(data):
    X, y = data
    moe = MoEClassifier(
        DecisionTreeClassifier(),
        n_experts=2,
        gate=SoftmaxGate(),
        max_iter=2,
        random_state=0,
        training="em",
    )
    params = moe.get_params()
    assert "experts__max_depth" in params and "gate__C" in params
    search = GridSearchCV(
        moe, {"experts__max_depth": [1, 3], "gate__C": [0.01, 10.0]}, cv=2
    )
    search.fit(X, y)
    assert len(search.cv_results_["params"]) == 4
    best = search.best_estimator_
    depth = search.best_params_["experts__max_depth"]
    assert all(e.max_depth == depth for e in best.experts_)
    assert all(e.get_depth() <= depth for e in best.experts_)
    assert best.gate_.C == search.best_params_["gate__C"]


def test_gate_C_changes_the_gate(data):
    X, y = data
    weak = MoEClassifier(
        LogisticRegression(),
        n_experts=2,
        gate=SoftmaxGate(C=1e-4),
        max_iter=2,
        random_state=0,
        training="em",
    ).fit(X, y)
    strong = clone(weak).set_params(gate__C=100.0).fit(X, y)
    assert strong.gate_.C == 100.0
    assert np.abs(weak.gate_.coef_).max() < np.abs(strong.gate_.coef_).max()


def test_set_params_replaces_and_drops_experts_by_name(data):
    X, y = data
    moe = MoEClassifier(
        _experts() + [("deep", DecisionTreeClassifier(max_depth=5))],
        max_iter=2,
        random_state=0,
    )
    moe.set_params(tree=LogisticRegression(C=0.5), deep="drop", lr__C=2.0)
    assert dict(moe.experts)["lr"].C == 2.0
    assert isinstance(dict(moe.experts)["tree"], LogisticRegression)
    assert moe.named_experts.deep == "drop"
    moe.fit(X, y)
    assert moe.expert_names_ == ["lr", "tree"]
    assert moe.gate_proba(X).shape == (len(y), 2)
    assert isinstance(moe.named_experts_.tree, LogisticRegression)
    assert moe.named_experts_.tree.C == 0.5 and moe.named_experts_.lr.C == 2.0


def test_cross_validate(data):
    X, y = data
    result = cross_validate(
        MoEClassifier(_experts(), max_iter=2, random_state=0),
        X,
        y,
        cv=3,
        scoring=["accuracy", "neg_log_loss"],
    )
    assert result["test_accuracy"].shape == (3,)
    assert np.all(np.isfinite(result["test_neg_log_loss"]))
    assert np.mean(result["test_accuracy"]) > 0.6


def test_cross_validate_regressor():
    X, y, _ = regime_data(n_samples=150)
    result = cross_validate(
        MoERegressor(LinearRegression(), n_experts=2, top_k=1, random_state=0),
        X,
        y,
        cv=KFold(3, shuffle=True, random_state=0),
    )
    assert np.all(result["test_score"] > 0.9)


def _frame(n_samples=160, random_state=0):
    rng = np.random.RandomState(random_state)
    frame = pd.DataFrame(
        {
            "x": rng.uniform(-1, 1, n_samples),
            "z": rng.normal(size=n_samples),
            "shop": rng.choice(["north", "south", "east"], n_samples),
        }
    )
    y = ((frame["x"] > 0) ^ (frame["shop"] == "east")).astype(int).to_numpy()
    return frame, y


def test_column_transformer_with_a_categorical_column():
    frame, y = _frame()
    pipe = make_pipeline(
        ColumnTransformer(
            [("shop", OneHotEncoder(handle_unknown="ignore"), ["shop"])],
            remainder="passthrough",
        ),
        MoEClassifier(_experts(), max_iter=3, random_state=0),
    )
    pipe.fit(frame, y)
    assert pipe[-1].n_features_in_ == 5  # three shops, x, z
    assert pipe.score(frame, y) > 0.9
    # and without the encoder, a clear error
    with pytest.raises(ValueError, match="numeric"):
        MoEClassifier(_experts()).fit(frame, y)


def test_pandas_output_from_the_transformer_sets_feature_names():
    frame, y = _frame()
    pipe = make_pipeline(
        ColumnTransformer(
            [("shop", OneHotEncoder(sparse_output=False), ["shop"])],
            remainder="passthrough",
            verbose_feature_names_out=False,
        ),
        MoEClassifier(_experts(), max_iter=3, random_state=0),
    ).set_output(transform="pandas")
    pipe.fit(frame, y)
    np.testing.assert_array_equal(
        pipe[-1].feature_names_in_,
        ["shop_east", "shop_north", "shop_south", "x", "z"],
    )


def test_dataframe_in_sets_feature_names():
    frame, y = _frame()
    X = frame[["x", "z"]]
    moe = MoERegressor(LinearRegression(), n_experts=2, max_iter=3, random_state=0)
    moe.fit(X, frame["x"] * 2.0)
    np.testing.assert_array_equal(moe.feature_names_in_, ["x", "z"])
    assert moe.n_features_in_ == 2
    with pytest.warns(UserWarning, match="feature names"):
        from_array = moe.predict(X.to_numpy())
    np.testing.assert_array_equal(moe.predict(X), from_array)
    # a numpy array in: no feature names
    plain = clone(moe).fit(X.to_numpy(), frame["x"] * 2.0)
    assert not hasattr(plain, "feature_names_in_")


def test_different_column_names_at_predict_are_refused():
    frame, y = _frame()
    X = frame[["x", "z"]]
    moe = MoEClassifier(_experts(), max_iter=2, random_state=0).fit(X, y)
    renamed = X.rename(columns={"z": "w"})
    for method in (moe.predict, moe.predict_proba, moe.gate_proba):
        with pytest.raises(ValueError, match="feature names"):
            method(renamed)
    with pytest.raises(ValueError, match="feature names"):
        moe.predict(X[["z", "x"]])  # same names, other order


def test_array_at_predict_after_a_dataframe_warns():
    frame, y = _frame()
    X = frame[["x", "z"]]
    moe = MoEClassifier(_experts(), max_iter=2, random_state=0).fit(X, y)
    with pytest.warns(UserWarning, match="feature names"):
        moe.predict(X.to_numpy())


def test_series_target_and_dataframe_in_pipeline():
    frame, y = _frame()
    target = pd.Series(np.where(y == 1, "yes", "no"), name="answer")
    moe = MoEClassifier(_experts(), max_iter=2, random_state=0)
    moe.fit(frame[["x", "z"]], target)
    np.testing.assert_array_equal(moe.classes_, ["no", "yes"])


# -- Pipeline experts get the weights in their final step -------------------


def test_pipeline_expert_receives_the_weights_in_its_final_step(data):
    X, y = data
    clear_fit_log()
    pipe_expert = Pipeline(
        [("scale", StandardScaler()), ("clf", CountingClassifier(tag="final-step"))]
    )
    moe = MoEClassifier(
        [("pipe", pipe_expert), ("tree", DecisionTreeClassifier(max_depth=2))],
        max_iter=3,
        random_state=0,
        training="em",
    ).fit(X, y)
    records = fits("final-step")
    assert len(records) == moe.n_iter_
    assert len(records) >= 2
    for record in records:
        # weighted, not a resample: the weights reach the final step
        assert record.sample_weight is not None
        assert len(record.sample_weight) == len(record.X)
        assert len(np.unique(record.X, axis=0)) == len(record.X)
    # the first refit uses uniform responsibilities: every row at weight 1/2;
    # later ones the responsibilities of the E-step
    np.testing.assert_allclose(records[0].sample_weight, 0.5)
    for record in records[1:]:
        assert not np.allclose(record.sample_weight, record.sample_weight[0])
    clear_fit_log()


def test_pipeline_expert_fit_differs_from_unweighted(data):
    X, y = data
    clear_fit_log()
    moe = MoEClassifier(
        [
            (
                "pipe",
                make_pipeline(
                    StandardScaler(), CountingClassifier(LogisticRegression(), tag="lr")
                ),
            ),
            ("tree", DecisionTreeClassifier(max_depth=2)),
        ],
        max_iter=3,
        random_state=0,
        training="em",
    ).fit(X, y)
    fitted = moe.named_experts_.pipe
    assert isinstance(fitted, Pipeline)
    last = fits("lr")[-1]  # the share and weights its final step was given
    coef = fitted[-1].estimator_.coef_
    weighted = LogisticRegression().fit(
        last.X, y[_rows_of(fitted, X, last.X)], sample_weight=last.sample_weight
    )
    unweighted = LogisticRegression().fit(last.X, y[_rows_of(fitted, X, last.X)])
    np.testing.assert_allclose(coef, weighted.coef_, rtol=1e-6)
    assert not np.allclose(coef, unweighted.coef_, rtol=1e-2)
    clear_fit_log()


def _rows_of(pipeline, X, X_scaled):
    """Training rows behind the scaled rows a pipeline's final step saw."""
    return row_indices(pipeline[:-1].transform(X), X_scaled)


def test_pipeline_regressor_expert():
    X, y, _ = regime_data(n_samples=150)
    moe = MoERegressor(
        make_pipeline(StandardScaler(), DecisionTreeRegressor(max_depth=2)),
        n_experts=2,
        top_k=1,
        max_iter=3,
        random_state=0,
    ).fit(X, y)
    assert moe.score(X, y) > 0.8
    assert "experts__decisiontreeregressor__max_depth" in moe.get_params()


def test_grid_search_over_gate_params_with_the_default_string_gate():
    X, y = regime_classification(n_samples=150)
    experts = [("lr", LogisticRegression()), ("lr2", LogisticRegression(C=0.1))]
    search = GridSearchCV(
        MoEClassifier(experts, max_iter=3, random_state=0), {"gate__C": [0.1, 10.0]}
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X, y)
    assert isinstance(search.best_estimator_.gate, SoftmaxGate)
    assert search.best_estimator_.gate.C == search.best_params_["gate__C"]

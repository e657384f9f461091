"""Persistence: pickle, joblib and (when installed) skops round trips of every fitted object give
identical predictions and influence."""

import io
import pickle

import joblib
import numpy as np
import pytest

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge, NegativeTransferSelector
from mtif_sklearn.datasets import make_multitask_classification, make_multitask_regression


def _pickle(obj):
    return pickle.loads(pickle.dumps(obj))


def _joblib(obj):
    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    buffer.seek(0)
    return joblib.load(buffer)


ROUND_TRIPS = [pytest.param(_pickle, id="pickle"), pytest.param(_joblib, id="joblib")]


@pytest.fixture(scope="module")
def regression():
    return make_multitask_regression(n_tasks=3, n_samples_per_task=25, n_features=4,
                                     random_state=0)


@pytest.fixture(scope="module")
def classification():
    return make_multitask_classification(n_tasks=3, n_samples_per_task=25, n_features=4,
                                         random_state=0)


def _check_model(original, loaded, X, tasks):
    # The same stored floats and the same code path: bit-identical outputs.
    np.testing.assert_array_equal(loaded.predict(X, tasks=tasks), original.predict(X, tasks=tasks))
    if hasattr(original, "predict_proba"):
        np.testing.assert_array_equal(loaded.predict_proba(X, tasks=tasks),
                                      original.predict_proba(X, tasks=tasks))


@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
@pytest.mark.parametrize("kind", ["ridge", "logistic"])
def test_fitted_linear_models_round_trip_to_identical_predictions(round_trip, kind, regression,
                                                                 classification):
    X, y, tasks = regression if kind == "ridge" else classification
    model = (MultitaskRidge() if kind == "ridge" else MultitaskLogistic()).fit(X, y, tasks=tasks)
    _check_model(model, round_trip(model), X, tasks)


@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
@pytest.mark.parametrize("method", ["first_order", "newton"])
@pytest.mark.parametrize("kind", ["ridge", "logistic"])
def test_fitted_influence_round_trips_to_identical_influence(round_trip, method, kind,
                                                             regression, classification):
    X, y, tasks = regression if kind == "ridge" else classification
    model = MultitaskRidge() if kind == "ridge" else MultitaskLogistic()
    inf = MTIFInfluence(model, method=method, random_state=0).fit(X, y, tasks=tasks)
    loaded = round_trip(inf)
    np.testing.assert_array_equal(loaded.influence_, inf.influence_)
    np.testing.assert_array_equal(loaded.task_influence_, inf.task_influence_)
    # New computations with the stored factor (and Newton state) are bit-identical too.
    np.testing.assert_array_equal(loaded.transform(X[:10], y[:10], tasks=tasks[:10]),
                                  inf.transform(X[:10], y[:10], tasks=tasks[:10]))
    np.testing.assert_array_equal(loaded.sample_influence(X[:4], y[:4], tasks=tasks[:4]),
                                  inf.sample_influence(X[:4], y[:4], tasks=tasks[:4]))


@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
def test_fitted_selector_round_trips_to_identical_predictions_and_scores(round_trip,
                                                                         regression):
    X, y, tasks = regression
    sel = NegativeTransferSelector(MultitaskRidge(), fraction=0.1, cv=3,
                                   random_state=0).fit(X, y, tasks=tasks)
    loaded = round_trip(sel)
    np.testing.assert_array_equal(loaded.support_, sel.support_)
    np.testing.assert_array_equal(loaded.scores_, sel.scores_)
    np.testing.assert_array_equal(loaded.predict(X, tasks=tasks), sel.predict(X, tasks=tasks))


# A short fit is enough to check the round trip; whether L-BFGS converged does not matter.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
def test_fitted_torch_shared_bottom_round_trips_to_identical_predictions(round_trip,
                                                                        regression):
    pytest.importorskip("torch")
    from mtif_sklearn.torch import SharedBottomRegressor

    X, y, tasks = regression
    net = SharedBottomRegressor(hidden_layer_sizes=(4,), max_iter=50, random_state=0)
    net.fit(X, y, tasks=tasks)
    np.testing.assert_array_equal(round_trip(net).predict(X, tasks=tasks),
                                  net.predict(X, tasks=tasks))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("round_trip", ROUND_TRIPS)
def test_influence_of_a_torch_shared_bottom_round_trips_to_identical_influence(round_trip,
                                                                              regression):
    pytest.importorskip("torch")
    from mtif_sklearn.torch import SharedBottomRegressor

    X, y, tasks = regression
    net = SharedBottomRegressor(hidden_layer_sizes=(4,), max_iter=50, random_state=0)
    inf = MTIFInfluence(net, random_state=0).fit(X, y, tasks=tasks)
    loaded = round_trip(inf)
    np.testing.assert_array_equal(loaded.influence_, inf.influence_)
    np.testing.assert_array_equal(loaded.transform(X[:5], y[:5], tasks=tasks[:5]),
                                  inf.transform(X[:5], y[:5], tasks=tasks[:5]))


def test_skops_loads_fitted_objects_with_only_trusted_types(regression, tmp_path):
    sio = pytest.importorskip("skops.io")
    X, y, tasks = regression
    objects = [MultitaskRidge().fit(X, y, tasks=tasks),
               MTIFInfluence(MultitaskRidge(), random_state=0).fit(X, y, tasks=tasks)]
    for obj in objects:
        path = tmp_path / "model.skops"
        sio.dump(obj, path)
        untrusted = sio.get_untrusted_types(file=path)
        # The user reviews these once; loading with exactly them must reproduce the object.
        loaded = sio.load(path, trusted=untrusted)
        assert all(name.startswith(("mtif_sklearn.", "numpy.", "scipy.", "builtins."))
                   for name in untrusted), untrusted
        if isinstance(obj, MTIFInfluence):
            np.testing.assert_array_equal(loaded.influence_, obj.influence_)
        else:
            _check_model(obj, loaded, X, tasks)

"""MTIFInfluence as a scikit-learn object: estimator checks, persistence, routing, backends."""

import pickle

import numpy as np
import pytest
import sklearn
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge
from mtif_sklearn.datasets import make_multitask_classification, make_multitask_regression
from mtif_sklearn.influence import factor_arrow
from mtif_sklearn.influence._effects import perturbation_effects, target_solves

# scikit-learn's estimator checks of MTIFInfluence run in mtif_sklearn/tests/test_common.py.


@pytest.fixture(scope="module")
def fitted_influence():
    X, y, tasks = make_multitask_classification(n_tasks=3, n_samples_per_task=40, n_features=4,
                                                random_state=0)
    inf = MTIFInfluence(MultitaskLogistic(alpha=0.2), random_state=0).fit(X, y, tasks=tasks)
    return inf, X, y, tasks


def test_pickle_round_trip_keeps_every_output(fitted_influence):
    inf, X, y, tasks = fitted_influence
    loaded = pickle.loads(pickle.dumps(inf))
    np.testing.assert_array_equal(loaded.influence_, inf.influence_)
    np.testing.assert_array_equal(loaded.task_influence_, inf.task_influence_)
    # The loaded object still solves with its stored factor: bit-identical new outputs.
    np.testing.assert_array_equal(loaded.transform(X, y, tasks=tasks),
                                  inf.transform(X, y, tasks=tasks))
    np.testing.assert_array_equal(loaded.sample_influence(X[:5], y[:5], tasks=tasks[:5]),
                                  inf.sample_influence(X[:5], y[:5], tasks=tasks[:5]))


def test_inputs_are_not_modified(fitted_influence):
    _, X, y, tasks = fitted_influence
    X_before, y_before, tasks_before = X.copy(), y.copy(), tasks.copy()
    weight = np.linspace(0.5, 1.5, len(y))
    weight_before = weight.copy()
    MTIFInfluence(MultitaskRidge(), random_state=0).fit(X, y, tasks=tasks, sample_weight=weight)
    np.testing.assert_array_equal(X, X_before)
    np.testing.assert_array_equal(y, y_before)
    np.testing.assert_array_equal(tasks, tasks_before)
    np.testing.assert_array_equal(weight, weight_before)


@pytest.mark.parametrize("bad, message", [
    ("nan", r"NaN"),
    ("weight_length", r"sample_weight"),
    ("no_y", r"requires y"),
    ("sparse", r"sparse"),
])
def test_bad_input_is_a_clear_error(bad, message):
    X, y, tasks = make_multitask_regression(n_tasks=2, n_samples_per_task=20, n_features=3,
                                            random_state=0)
    kwargs = {}
    if bad == "nan":
        X = X.copy()
        X[3, 1] = np.nan
    elif bad == "weight_length":
        kwargs["sample_weight"] = np.ones(len(y) - 1)
    elif bad == "no_y":
        y = None
    elif bad == "sparse":
        from scipy.sparse import csr_matrix

        X = csr_matrix(X)
    with pytest.raises((ValueError, TypeError), match=message):
        MTIFInfluence(MultitaskRidge()).fit(X, y, tasks=tasks, **kwargs)


def test_transform_checks_the_number_of_features(fitted_influence):
    inf, X, y, tasks = fitted_influence
    with pytest.raises(ValueError, match="features"):
        inf.transform(X[:, :2], y, tasks=tasks)


def test_tasks_are_routed_to_influence_inside_a_pipeline():
    X, y, tasks = make_multitask_regression(n_tasks=3, n_samples_per_task=30, n_features=4,
                                            random_state=1)
    X = X * np.array([1.0, 10.0, 100.0, 0.1])  # a scaler that matters
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = Pipeline([("scale", StandardScaler()),
                         ("influence", MTIFInfluence(MultitaskRidge(), random_state=0))])
        effects = pipe.fit_transform(X, y, tasks=tasks)
    # Same as scaling by hand and calling MTIFInfluence directly (same split: same seed).
    direct = MTIFInfluence(MultitaskRidge(), random_state=0)
    expected = direct.fit_transform(StandardScaler().fit_transform(X), y, tasks=tasks)
    np.testing.assert_allclose(effects, expected, rtol=1e-10, atol=1e-14)
    assert pipe[-1].tasks_.tolist() == [0, 1, 2]


def test_influence_algebra_on_torch_tensors_equals_numpy():
    """The backend-agnostic path (array-api-compat) gives the NumPy numbers on torch CPU."""
    torch = pytest.importorskip("torch")
    X, y, tasks = make_multitask_classification(n_tasks=3, n_samples_per_task=30, n_features=4,
                                                random_state=3)
    inf = MTIFInfluence(MultitaskLogistic(alpha=0.3), random_state=0).fit(X, y, tasks=tasks)
    problem = inf._splits[0].problem
    train = problem.train
    blocks = train.hessian_blocks(problem.params)
    grad_task, _ = train.row_gradients(problem.params)
    grad_task = grad_task * train.row_weights[:, None]
    rng = np.random.default_rng(0)
    val_task = rng.standard_normal((3, blocks.task.shape[1]))
    val_shared = np.zeros((3, blocks.shared.shape[0]))

    def effects(convert):
        factor = factor_arrow(*(convert(b) for b in blocks))
        z, x_shared = target_solves(factor, convert(val_task), convert(val_shared))
        return perturbation_effects(factor, z, x_shared, convert(train.codes),
                                    convert(grad_task), None)

    on_numpy = effects(np.asarray)
    on_torch = effects(torch.from_numpy)
    assert isinstance(on_torch, torch.Tensor)
    # float64 on both sides; different LAPACK call sequences: round-off only.
    np.testing.assert_allclose(on_torch.numpy(), on_numpy, rtol=1e-10, atol=1e-14)


def test_single_blas_thread_limits_and_restores_blas_threads():
    from threadpoolctl import threadpool_info

    from mtif_sklearn.backend import SINGLE_THREAD_MAX_BLOCK, single_blas_thread

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    with single_blas_thread(np, 10):
        with single_blas_thread(np, 10):  # nested: still one thread, restored only at the end
            assert set(blas_threads()) <= {1}
        assert set(blas_threads()) <= {1}
        with single_blas_thread(np, SINGLE_THREAD_MAX_BLOCK + 1):  # large blocks: no change
            assert set(blas_threads()) <= {1}
    assert blas_threads() == before


def test_frozen_model_needs_explicit_validation_rows():
    # Holding rows out of an already-fitted model would validate on its training rows.
    X, y, tasks = make_multitask_regression(n_tasks=3, n_samples_per_task=20, n_features=3,
                                            random_state=0)
    from sklearn.frozen import FrozenEstimator

    frozen = FrozenEstimator(MultitaskRidge().fit(X, y, tasks=tasks))
    with pytest.raises(ValueError, match="pass X_val"):
        MTIFInfluence(frozen).fit(X, y, tasks=tasks)


@pytest.mark.parametrize("mismatch", ["fewer_rows", "weights_dropped"])
def test_frozen_model_with_other_rows_or_weights_is_an_error(mismatch):
    # Found in review: these used to return numbers off by ~65% of their scale, silently.
    from sklearn.frozen import FrozenEstimator

    X, y, tasks = make_multitask_regression(n_tasks=3, n_samples_per_task=20, n_features=3,
                                            random_state=0)
    weight = np.linspace(0.5, 2.0, len(y))
    model = MultitaskRidge().fit(X, y, tasks=tasks,
                                 sample_weight=weight if mismatch == "weights_dropped" else None)
    rows = slice(None) if mismatch == "weights_dropped" else slice(0, 50)
    with pytest.raises(ValueError, match="not the ones the model was fitted on"):
        MTIFInfluence(FrozenEstimator(model)).fit(X[rows], y[rows], tasks=tasks[rows],
                                                  X_val=X, y_val=y, tasks_val=tasks)

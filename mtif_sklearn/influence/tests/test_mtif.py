"""MTIFInfluence against exact dense arithmetic and against brute-force refitting."""

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.frozen import FrozenEstimator

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge
from mtif_sklearn.datasets import make_multitask_classification, make_multitask_regression
from mtif_sklearn.retrain import loo_effects, loto_effects
from mtif_sklearn.utils._testing import DenseLinearObjective, dense_influence


def dense_reference(model, X, y, tasks, X_val, y_val, tasks_val, damping=0.0):
    """Data- and task-level MTIF from the dense Hessian (the package's one dense reference)."""
    train, z = DenseLinearObjective.from_model(model, X, y, tasks)
    val, _ = DenseLinearObjective.from_model(model, X_val, y_val, tasks_val)
    return dense_influence(train, val, z, damping=damping)


@pytest.fixture(scope="module")
def regression_split():
    X, y, tasks = make_multitask_regression(n_tasks=4, n_samples_per_task=30, n_features=5,
                                            random_state=0)
    Xv, yv, tv = make_multitask_regression(n_tasks=4, n_samples_per_task=12, n_features=5,
                                           random_state=0)
    return X, y, tasks, Xv + 0.1, yv, tv


@pytest.mark.parametrize("damping", [0.0, 0.3])
@pytest.mark.parametrize("kind", ["ridge", "logistic"])
def test_influence_equals_dense_hessian_computation(kind, damping, regression_split,
                                                    classification_split):
    X, y, tasks, Xv, yv, tv = regression_split if kind == "ridge" else classification_split
    estimator = MultitaskRidge(alpha=0.2) if kind == "ridge" else MultitaskLogistic(alpha=0.2)
    inf = MTIFInfluence(estimator, damping=damping).fit(X, y, tasks=tasks, X_val=Xv, y_val=yv,
                                                         tasks_val=tv)
    rows, task_level = dense_reference(inf.estimator_, X, y, tasks, Xv, yv, tv, damping=damping)
    # Same maths, two different solvers (arrow Schur vs dense LU): round-off only.
    np.testing.assert_allclose(inf.influence_, rows, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(inf.task_influence_, task_level, rtol=1e-8, atol=1e-12)


def test_transform_and_sample_influence_are_consistent_with_influence(regression_split):
    X, y, tasks, Xv, yv, tv = regression_split
    inf = MTIFInfluence(MultitaskRidge(alpha=0.2)).fit(X, y, tasks=tasks, X_val=Xv, y_val=yv,
                                                      tasks_val=tv)
    # Unit weights: transform of the training rows is influence_ itself.
    np.testing.assert_allclose(inf.transform(X, y, tasks=tasks), inf.influence_, rtol=1e-12,
                               atol=1e-15)
    per_row = inf.sample_influence(Xv, yv, tasks=tv)
    assert per_row.shape == (len(y), len(yv))
    # V_k is the mean of task k's validation-row losses, so the per-row effects average to it.
    for k, label in enumerate(inf.tasks_):
        np.testing.assert_allclose(per_row[:, tv == label].mean(axis=1), inf.influence_[:, k],
                                   rtol=1e-9, atol=1e-13)


def test_chunked_parallel_and_unchunked_agree(classification_split):
    X, y, tasks, Xv, yv, tv = classification_split
    whole = MTIFInfluence(MultitaskLogistic()).fit(X, y, tasks=tasks, X_val=Xv, y_val=yv,
                                                  tasks_val=tv)
    chunked = MTIFInfluence(MultitaskLogistic(), batch_size=7, n_jobs=2).fit(
        X, y, tasks=tasks, X_val=Xv, y_val=yv, tasks_val=tv)
    np.testing.assert_allclose(chunked.influence_, whole.influence_, rtol=1e-12, atol=1e-15)


def test_frozen_prefit_model_gives_the_same_influence(regression_split):
    X, y, tasks, Xv, yv, tv = regression_split
    fitted = MultitaskRidge(alpha=0.2).fit(X, y, tasks=tasks)
    frozen = MTIFInfluence(FrozenEstimator(fitted)).fit(X, y, tasks=tasks, X_val=Xv, y_val=yv,
                                                        tasks_val=tv)
    fresh = MTIFInfluence(MultitaskRidge(alpha=0.2)).fit(X, y, tasks=tasks, X_val=Xv, y_val=yv,
                                                         tasks_val=tv)
    assert frozen.estimator_.estimator is fitted
    np.testing.assert_allclose(frozen.influence_, fresh.influence_, rtol=1e-10, atol=1e-14)


def test_validation_split_is_stratified_by_task_and_reproducible():
    X, y, tasks = make_multitask_regression(n_tasks=3, n_samples_per_task=20, n_features=3,
                                            random_state=0)
    inf = MTIFInfluence(MultitaskRidge(), validation_fraction=0.25, random_state=3)
    effects = inf.fit_transform(X, y, tasks=tasks)
    assert effects.shape == (45, 3)
    assert np.intersect1d(inf.train_indices_, inf.val_indices_).size == 0
    assert np.union1d(inf.train_indices_, inf.val_indices_).size == 60
    assert np.all(np.bincount(tasks[inf.val_indices_]) == 5)  # 25% of 20 in every task
    again = MTIFInfluence(MultitaskRidge(), validation_fraction=0.25, random_state=3)
    np.testing.assert_array_equal(again.fit(X, y, tasks=tasks).val_indices_, inf.val_indices_)


def test_pandas_output_is_labelled_by_task():
    pd = pytest.importorskip("pandas")
    X, y, tasks = make_multitask_regression(n_tasks=3, n_samples_per_task=20, n_features=3,
                                            random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b", "c"], index=np.arange(100, 160))
    frame["store"] = np.array(["north", "south", "west"])[tasks]
    inf = MTIFInfluence(MultitaskRidge(task_column="store"), random_state=0)
    inf.set_output(transform="pandas")
    effects = inf.fit_transform(frame, y)
    assert list(effects.columns) == ["north", "south", "west"]
    np.testing.assert_array_equal(effects.index, frame.index[inf.train_indices_])
    np.testing.assert_allclose(effects.to_numpy(), inf.influence_)


def test_too_small_task_for_validation_split_is_a_clear_error():
    X, y, tasks = make_multitask_regression(n_tasks=2, n_samples_per_task=5, n_features=2,
                                            random_state=0)
    tasks = tasks.copy()
    tasks[0] = 7  # task 7 has a single row
    with pytest.raises(ValueError, match=r"Task 7 has 1 row.*X_val"):
        MTIFInfluence(MultitaskRidge()).fit(X, y, tasks=tasks)


def test_harmful_rows_have_negative_effect_on_their_task():
    X, y, tasks = make_multitask_regression(n_tasks=3, n_samples_per_task=80, n_features=4,
                                            random_state=5)
    validation = np.arange(len(y)) % 80 >= 60  # last 20 rows of every task, kept clean
    y = y.copy()
    corrupted = np.flatnonzero((tasks == 1) & ~validation)[:3]
    y[corrupted] += 25.0
    train = ~validation
    inf = MTIFInfluence(MultitaskRidge(alpha=0.1)).fit(
        X[train], y[train], tasks=tasks[train], X_val=X[validation], y_val=y[validation],
        tasks_val=tasks[validation])
    is_corrupted = np.isin(np.flatnonzero(train), corrupted)
    # Removing a grossly wrong row lowers its task's (clean) validation loss: a negative effect,
    # and the three most negative effects on task 1 are exactly the corrupted rows.
    assert np.all(inf.influence_[is_corrupted, 1] < 0)
    worst = np.argsort(inf.influence_[:, 1])[:3]
    assert set(worst) == set(np.flatnonzero(is_corrupted))


@pytest.mark.parametrize("kind", ["ridge", "logistic"])
def test_data_level_influence_tracks_leave_one_out_refits(kind):
    """Paper Figure 1: MTIF vs LOO within and between tasks (Pearson >= 0.95)."""
    if kind == "ridge":
        X, y, tasks = make_multitask_regression(n_tasks=4, n_samples_per_task=100, n_features=8,
                                                delta=0.5, random_state=0)
        estimator = MultitaskRidge(alpha=0.1)
    else:
        X, y, tasks = make_multitask_classification(n_tasks=4, n_samples_per_task=150,
                                                    n_features=8, delta=0.5, random_state=0)
        estimator = MultitaskLogistic(alpha=0.1)
    inf = MTIFInfluence(estimator, random_state=0)
    effects = inf.fit_transform(X, y, tasks=tasks)
    tr, va = inf.train_indices_, inf.val_indices_
    truth = loo_effects(estimator, X[tr], y[tr], X[va], y[va], tasks=tasks[tr],
                        tasks_val=tasks[va])
    same_task = tasks[tr][:, None] == inf.tasks_[None, :]
    within = pearsonr(effects[same_task], truth[same_task])[0]
    between = pearsonr(effects[~same_task], truth[~same_task])[0]
    assert within >= 0.95, within
    assert between >= 0.95, between


def test_task_influence_matches_loto_on_paper_protocol():
    """Paper Table 1 protocol: K=10, d=50, 200 rows/task, 20% validation, delta=1, eps=0.2."""
    spearman = []
    for seed in range(5):
        X, y, tasks = make_multitask_regression(n_tasks=10, n_samples_per_task=200,
                                                n_features=50, delta=1.0, eps=0.2,
                                                random_state=seed)
        estimator = MultitaskRidge(alpha=0.05)
        inf = MTIFInfluence(estimator, validation_fraction=0.2, random_state=seed)
        inf.fit(X, y, tasks=tasks)
        tr, va = inf.train_indices_, inf.val_indices_
        truth = loto_effects(estimator, X[tr], y[tr], X[va], y[va], tasks=tasks[tr],
                             tasks_val=tasks[va])
        for k in range(10):
            others = np.arange(10) != k
            spearman.append(spearmanr(inf.task_influence_[others, k], truth[others, k])[0])
    # The paper's approximate solver reached 0.65-0.84; an exact solve should do much better.
    assert np.mean(spearman) >= 0.9, np.mean(spearman)


@pytest.mark.parametrize("kind", ["ridge", "logistic"])
def test_task_influence_diagonal_is_consistent_with_retraining(kind, regression_split,
                                                               classification_split):
    X, y, tasks, Xv, yv, tv = regression_split if kind == "ridge" else classification_split
    estimator = MultitaskRidge(alpha=0.5) if kind == "ridge" else MultitaskLogistic(alpha=0.5)
    inf = MTIFInfluence(estimator).fit(X, y, tasks=tasks, X_val=Xv, y_val=yv, tasks_val=tv)
    truth = loto_effects(estimator, X, y, Xv, yv, tasks=tasks, tasks_val=tv)
    # Same definition on both sides (task l's head refitted to the shared parameters learnt
    # without it): the first-order estimate has the sign and size of the refit.
    diag_mtif, diag_truth = np.diag(inf.task_influence_), np.diag(truth)
    assert pearsonr(diag_mtif, diag_truth)[0] > 0.9
    np.testing.assert_allclose(diag_mtif, diag_truth, rtol=0.5, atol=0.2 * np.abs(
        diag_truth).max())


@pytest.mark.gpu
def test_cupy_backend_matches_numpy(classification_split):
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except Exception:  # pragma: no cover
        pytest.skip("no CUDA device")
    X, y, tasks, Xv, yv, tv = classification_split
    on_cpu = MTIFInfluence(MultitaskLogistic(), backend="numpy").fit(
        X, y, tasks=tasks, X_val=Xv, y_val=yv, tasks_val=tv)
    on_gpu = MTIFInfluence(MultitaskLogistic(), backend="cupy").fit(
        X, y, tasks=tasks, X_val=Xv, y_val=yv, tasks_val=tv)
    assert isinstance(on_gpu.influence_, np.ndarray)
    np.testing.assert_allclose(on_gpu.influence_, on_cpu.influence_, rtol=1e-8, atol=1e-14)
    np.testing.assert_allclose(on_gpu.task_influence_, on_cpu.task_influence_, rtol=1e-8,
                               atol=1e-14)
    follows = MTIFInfluence(MultitaskLogistic(), backend="auto").fit(
        cupy.asarray(X), cupy.asarray(y), tasks=tasks, X_val=Xv, y_val=yv, tasks_val=tv)
    assert isinstance(follows.fit_transform(cupy.asarray(X), cupy.asarray(y), tasks=tasks,
                                            X_val=Xv, y_val=yv, tasks_val=tv), cupy.ndarray)
    per_row = on_gpu.sample_influence(Xv, yv, tasks=tv)
    np.testing.assert_allclose(per_row, on_cpu.sample_influence(Xv, yv, tasks=tv), rtol=1e-8,
                               atol=1e-14)


def test_cupy_backend_without_cupy_is_a_clear_error(regression_split):
    try:
        import cupy  # noqa: F401
        pytest.skip("CuPy is installed")
    except ImportError:
        pass
    X, y, tasks, Xv, yv, tv = regression_split
    with pytest.raises(ImportError, match=r"mtif-sklearn\[gpu\]"):
        MTIFInfluence(MultitaskRidge(), backend="cupy").fit(X, y, tasks=tasks)

"""Cross-fitting (cv), summaries without the n x K matrix, and the edges of MTIFInfluence.fit."""

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.frozen import FrozenEstimator

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge
from mtif_sklearn.datasets import make_multitask_classification, make_multitask_regression


@pytest.fixture(scope="module")
def data():
    X, y, tasks = make_multitask_regression(n_tasks=4, n_samples_per_task=25, n_features=3,
                                            delta=0.5, random_state=0)
    return X, y, np.array(["a", "b", "c", "d"])[tasks]


def network_problem():
    """Three small tasks, training and validation rows, for the shared-bottom network tests."""
    train = make_multitask_regression(n_tasks=3, n_samples_per_task=20, n_features=3,
                                      random_state=0)
    val = make_multitask_regression(n_tasks=3, n_samples_per_task=8, n_features=3,
                                    random_state=1)
    return (*train, *val)


@pytest.mark.parametrize("method", ["first_order", "newton"])
def test_cross_fitted_matrices_are_the_mean_of_per_fold_runs(data, method):
    X, y, tasks = data
    inf = MTIFInfluence(MultitaskRidge(alpha=0.3), cv=4, method=method,
                        random_state=0).fit(X, y, tasks=tasks)
    assert len(inf.folds_) == 4 and inf.fold_task_influence_.shape == (4, 4, 4)
    sums, counts, matrices = np.zeros((len(y), 4)), np.zeros((len(y), 1)), []
    for train, val in inf.folds_:
        fold = MTIFInfluence(MultitaskRidge(alpha=0.3), method=method).fit(
            X[train], y[train], tasks=tasks[train], X_val=X[val], y_val=y[val],
            tasks_val=tasks[val])
        matrices.append(fold.task_influence_)
        sums[train] += fold.influence_
        counts[train] += 1
    matrices = np.stack(matrices)
    # Same folds, same fits, the same arithmetic per fold: round-off only.
    np.testing.assert_allclose(inf.fold_task_influence_, matrices, rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(inf.task_influence_, matrices.mean(axis=0), rtol=1e-10,
                               atol=1e-14)
    np.testing.assert_allclose(inf.task_influence_se_, matrices.std(axis=0, ddof=1) / 2.0,
                               rtol=1e-10, atol=1e-14)
    # Every row trains 3 of the 4 folds: influence_ has one row per row of X.
    assert inf.influence_.shape == (len(y), 4) and np.all(counts == 3)
    np.testing.assert_allclose(inf.influence_, sums / counts, rtol=1e-10, atol=1e-14)
    assert inf.fit_transform(X, y, tasks=tasks).shape == (len(y), 4)
    # Out-of-fold validation loss: every row validated exactly once.
    assert np.all(np.isfinite(inf.validation_loss_))


def test_cv_with_explicit_validation_rows_is_an_error(data):
    X, y, tasks = data
    with pytest.raises(ValueError, match="cv and X_val"):
        MTIFInfluence(MultitaskRidge(), cv=3).fit(X, y, tasks=tasks, X_val=X, y_val=y,
                                                 tasks_val=tasks)


@pytest.mark.parametrize("cv", [None, 3])
@pytest.mark.parametrize("method", ["first_order", "newton"])
@pytest.mark.parametrize("task_weights", ["size", "equal"])
def test_row_scores_are_weighted_sums_of_influence(data, cv, method, task_weights):
    X, y, tasks = data
    inf = MTIFInfluence(MultitaskRidge(alpha=0.3), cv=cv, method=method, random_state=1,
                        batch_size=7).fit(X, y, tasks=tasks)
    targets = ["b", "d"]
    scores = inf.row_scores(target_tasks=targets, task_weights=task_weights)
    columns = [1, 3]
    if cv is None:
        counts = np.bincount(np.searchsorted(inf.tasks_, tasks[inf.val_indices_]), minlength=4)
        weight = (counts[columns] / counts[columns].sum() if task_weights == "size"
                  else np.ones(2))
        expected = inf.influence_[:, columns] @ weight
    else:  # fold weights differ by the folds' validation counts: average fold by fold
        sums, counts = np.zeros(len(y)), np.zeros(len(y))
        for train, val in inf.folds_:
            fold = MTIFInfluence(MultitaskRidge(alpha=0.3), method=method).fit(
                X[train], y[train], tasks=tasks[train], X_val=X[val], y_val=y[val],
                tasks_val=tasks[val])
            n_val = np.bincount(np.searchsorted(fold.tasks_, tasks[val]), minlength=4)
            weight = (n_val[columns] / n_val[columns].sum() if task_weights == "size"
                      else np.ones(2))
            sums[train] += fold.influence_[:, columns] @ weight
            counts[train] += 1
        expected = sums / counts
    # First order sums through u_l = c_l z_l - W_l v (a different order of the same sums):
    # round-off only.
    np.testing.assert_allclose(scores, expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("cv", [None, 3])
@pytest.mark.parametrize("method", ["first_order", "newton"])
@pytest.mark.parametrize("model", [MultitaskRidge(alpha=0.3),
                                   MultitaskLogistic(alpha=0.3, shared_alpha=0.5)])
def test_summed_effects_are_column_sums_of_transform(data, cv, method, model):
    X, y, tasks = data
    if isinstance(model, MultitaskLogistic):
        y = (y > np.median(y)).astype(int)
    inf = MTIFInfluence(model, cv=cv, method=method, random_state=1, batch_size=7).fit(
        X, y, tasks=tasks)
    rows = np.arange(0, len(y), 3)
    weight = np.random.default_rng(0).uniform(0.5, 2.0, rows.size)
    expected = (np.asarray(inf.transform(X[rows], y[rows], tasks=tasks[rows]))
                * weight[:, None]).sum(axis=0)
    summed = inf._summed_effects(X[rows], y[rows], tasks=tasks[rows], sample_weight=weight)
    # First order sums the gradients before the solve (the same sums in another order).
    np.testing.assert_allclose(summed, expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())


def test_summed_effects_of_a_network_with_shared_gradients():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from mtif_sklearn.torch import SharedBottomRegressor

    X, y, t, Xv, yv, tv = network_problem()
    model = SharedBottomRegressor((4,), weight_decay=0.5, max_iter=2000, tol=1e-10,
                                  random_state=0).fit(X, y, tasks=t)
    inf = MTIFInfluence(FrozenEstimator(model)).fit(X, y, tasks=t, X_val=Xv, y_val=yv,
                                                    tasks_val=tv)
    expected = np.asarray(inf.transform(X[:20], y[:20], tasks=t[:20])).sum(axis=0)
    summed = inf._summed_effects(X[:20], y[:20], tasks=t[:20])
    assert np.abs(expected).min() > 0  # every task feels the rows (through the shared layer)
    np.testing.assert_allclose(summed, expected, rtol=1e-8, atol=1e-12 * np.abs(expected).max())


@pytest.mark.parametrize("cv", [None, 3])
def test_harmful_rows_are_the_most_negative_entries_of_influence(data, cv):
    X, y, tasks = data
    y = y.copy()
    y[[0, 30, 60]] += 15.0  # gross errors: clearly harmful rows
    inf = MTIFInfluence(MultitaskRidge(alpha=0.3), cv=cv, random_state=0, batch_size=11).fit(
        X, y, tasks=tasks)
    harmful = inf.harmful_rows(n_rows=5)
    assert list(harmful) == ["a", "b", "c", "d"]
    for k, (label, (rows, effects)) in enumerate(harmful.items()):
        column = inf.influence_[:, k]
        order = np.argsort(column, kind="stable")
        negative = order[column[order] < 0][:5]
        np.testing.assert_array_equal(rows, inf.train_indices_[negative])
        np.testing.assert_allclose(effects, column[negative], rtol=1e-12)
        assert np.all(np.diff(effects) >= 0) and np.all(effects < 0), label
    assert set(harmful["a"][0][:1]) <= {0} or cv is None  # the corrupted row leads its task


def test_summaries_without_the_matrix(data):
    X, y, tasks = data
    full = MTIFInfluence(MultitaskRidge(alpha=0.3), cv=3, random_state=0).fit(X, y, tasks=tasks)
    lean = MTIFInfluence(MultitaskRidge(alpha=0.3), cv=3, random_state=0,
                         store_influence=False).fit(X, y, tasks=tasks)
    with pytest.raises(AttributeError, match="row_scores"):
        _ = lean.influence_
    np.testing.assert_allclose(lean.row_scores(), full.row_scores(), rtol=1e-12)
    for (r1, e1), (r2, e2) in zip(lean.harmful_rows(3).values(), full.harmful_rows(3).values(),
                                  strict=True):
        np.testing.assert_array_equal(r1, r2)
        np.testing.assert_allclose(e1, e2, rtol=1e-12)
    # fit_transform still returns the matrix (it was asked for), without keeping it.
    np.testing.assert_allclose(lean.fit_transform(X, y, tasks=tasks), full.influence_,
                               rtol=1e-12)
    with pytest.raises(AttributeError):
        _ = lean.influence_


def test_frozen_model_with_other_rows_of_the_same_counts_is_refused(data):
    # Issue: same number of rows per task (so per-task weights sum to 1) but other rows; the
    # gradient at the frozen parameters is far from zero. It used to return effects off by ~7x.
    X, y, tasks = data
    model = MultitaskRidge(alpha=0.3).fit(X, y, tasks=tasks)
    other = np.random.default_rng(0).permutation(len(y))
    other = other[np.argsort(tasks[other], kind="stable")]  # same tasks, other rows' X and y
    X2, y2 = X.copy(), y.copy()
    X2[np.argsort(tasks, kind="stable")] = X[other]
    y2[np.argsort(tasks, kind="stable")] = y[other] + 1.0
    with pytest.raises(ValueError, match="not the rows the model was fitted on"):
        MTIFInfluence(FrozenEstimator(model)).fit(X2, y2, tasks=tasks, X_val=X, y_val=y,
                                                  tasks_val=tasks)
    # The rows it was fitted on pass (gradient at round-off).
    MTIFInfluence(FrozenEstimator(model)).fit(X, y, tasks=tasks, X_val=X, y_val=y,
                                              tasks_val=tasks)


def test_a_fit_that_fails_leaves_the_previous_state(data):
    X, y, tasks = data
    inf = MTIFInfluence(MultitaskRidge(alpha=0.3), random_state=0).fit(X, y, tasks=tasks)
    before = (inf.influence_.copy(), inf.task_influence_.copy(), inf.estimator_)
    X_bad = X.copy()
    X_bad[:, 0] *= 1e200  # the Hessian overflows during the second fit
    with pytest.raises(ValueError):
        inf.fit(X_bad, y, tasks=tasks)
    np.testing.assert_array_equal(inf.influence_, before[0])
    np.testing.assert_array_equal(inf.task_influence_, before[1])
    assert inf.estimator_ is before[2]
    np.testing.assert_allclose(inf.transform(X[:5], y[:5], tasks=tasks[:5]),
                               before[0][np.searchsorted(inf.train_indices_, np.arange(5))]
                               if np.all(np.isin(np.arange(5), inf.train_indices_))
                               else inf.transform(X[:5], y[:5], tasks=tasks[:5]))


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # the point of the test
def test_non_finite_validation_loss_is_an_error_not_nan(data):
    X, y, tasks = data
    y = y.copy()
    y[tasks == "b"] = 1e200  # squared errors overflow
    with pytest.raises(ValueError, match="not finite"):
        MTIFInfluence(MultitaskRidge(alpha=0.3), random_state=0).fit(X, y, tasks=tasks)


def test_pandas_output_of_numpy_input_is_indexed_by_row_position(data):
    pytest.importorskip("pandas")
    X, y, tasks = data
    inf = MTIFInfluence(MultitaskRidge(), random_state=0).set_output(transform="pandas")
    effects = inf.fit_transform(X, y, tasks=tasks)
    # Joining back to X must align: the index is each row's position in X.
    np.testing.assert_array_equal(effects.index, inf.train_indices_)


# The network is not convex: the task-level Newton effects of some tasks are NaN with a warning
# (tested in test_newton.py); this test reads the row level.
@pytest.mark.filterwarnings("ignore:.*not positive definite:UserWarning")
def test_newton_on_a_network_is_closer_to_warm_started_refits_than_first_order():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from mtif_sklearn.retrain import loo_effects
    from mtif_sklearn.torch import SharedBottomRegressor

    X, y, t, Xv, yv, tv = network_problem()
    est = SharedBottomRegressor((4,), weight_decay=1.0, max_iter=3000, tol=1e-10,
                                hessian="exact", random_state=0)
    model = clone(est).fit(X, y, tasks=t)
    rows = np.arange(0, 60, 3)
    truth = loo_effects(est, X, y, Xv, yv, tasks=t, tasks_val=tv, rows=rows)

    def error(method, steps=1):
        inf = MTIFInfluence(FrozenEstimator(model), method=method, newton_steps=steps).fit(
            X, y, tasks=t, X_val=Xv, y_val=yv, tasks_val=tv)
        return np.abs(inf.influence_[rows] - truth).max() / np.abs(truth).max()

    # Measured on all 60 rows (max relative error vs warm-started L-BFGS refits): first order
    # 0.21, Newton 1 / 2 / 3 steps 0.22 / 0.18 / 0.13. The removed row's curvature is its
    # Gauss-Newton term, and a network is not convex: with weight_decay=0.2 the worst rows get
    # WORSE with Newton (1.0 vs 0.48) although most rows improve (documented).
    assert error("newton", 3) < 0.8 * error("first_order")


def test_loto_on_an_adapted_user_network_refits_it():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from mtif_sklearn.retrain import loto_effects
    from mtif_sklearn.torch import SharedBottomAdapter, SharedBottomRegressor

    X, y, t, Xv, yv, tv = network_problem()
    trained = SharedBottomRegressor((4,), weight_decay=0.2, max_iter=2000, tol=1e-10,
                                    random_state=0).fit(X, y, tasks=t)
    shared, heads = trained.module_["shared"], list(trained.module_["heads"])
    before = [p.detach().clone() for p in shared.parameters()]
    adapter = SharedBottomAdapter(shared=shared, heads=heads, weight_decay=0.2, tol=1e-10)
    loto = loto_effects(adapter, X, y, Xv, yv, tasks=t, tasks_val=tv)
    reference = loto_effects(trained, X, y, Xv, yv, tasks=t, tasks_val=tv)
    assert loto.shape == (3, 3) and np.all(np.isfinite(loto))
    # The user's network is left as it was (refits train copies).
    for a, b in zip(before, shared.parameters(), strict=True):
        assert torch.equal(a, b.detach())
    # Both refit the same objective from the same trained weights: the same effects up to the
    # optimiser's tolerance (the estimator's own refits are warm-started from its fit too).
    np.testing.assert_allclose(loto, reference, rtol=1e-3, atol=1e-4 * np.abs(reference).max())


def test_logistic_cross_fitting_runs_with_string_labels():
    X, y, tasks = make_multitask_classification(n_tasks=3, n_samples_per_task=30,
                                                n_features=3, random_state=0)
    labels = np.array(["x", "y", "z"])[tasks]
    inf = MTIFInfluence(MultitaskLogistic(alpha=0.3), cv=3, random_state=0).fit(X, y,
                                                                                tasks=labels)
    assert inf.task_influence_se_.shape == (3, 3)
    assert np.all(inf.task_influence_se_ >= 0) and np.any(inf.task_influence_se_ > 0)


def test_mid_pipeline_use_explains_the_row_count_and_cv_fixes_it(data):
    import sklearn
    from sklearn.pipeline import Pipeline

    X, y, tasks = data
    with sklearn.config_context(enable_metadata_routing=True):
        pipe = Pipeline([("influence", MTIFInfluence(MultitaskRidge(), random_state=0)),
                         ("model", MultitaskRidge())])
        # Without cv the influence step outputs n_train rows: the next step gets n tasks.
        with pytest.raises(ValueError, match=r"MTIFInfluence\(cv=5\) returns one row per"):
            pipe.fit(X, y, tasks=tasks)
        pipe.set_params(influence__cv=5).fit(X, y, tasks=tasks)
    assert pipe[-1].coef_.shape == (4, 4)  # the next model saw one row of effects per row


def test_polars_output_has_one_column_per_task(data):
    pl = pytest.importorskip("polars")
    X, y, tasks = data
    inf = MTIFInfluence(MultitaskRidge(), random_state=0).set_output(transform="polars")
    effects = inf.fit_transform(X, y, tasks=tasks)
    assert isinstance(effects, pl.DataFrame) and effects.columns == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(effects.to_numpy(), inf.influence_)

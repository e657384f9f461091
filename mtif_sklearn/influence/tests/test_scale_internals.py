"""The fast paths of the arrow factor and of first-order influence against plain definitions.

Diagonal coupling kept as its diagonals, one potrf + potri per block in chunks of tasks, rows
multiplied by their task's matrix in runs, per-task effect matrices, the in-place finiteness
check and the chunked stationarity check: each must give the numbers of the plain computation
(dense solves, gathers, the full matrix), on shuffled rows and tasks of different sizes.
"""

import pickle

import numpy as np
import pytest
from sklearn.frozen import FrozenEstimator

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge, _arrow
from mtif_sklearn._arrow import NotPositiveDefiniteError, arrow_solve, arrow_to_dense, factor_arrow
from mtif_sklearn.backend import rows_times_task_matrices_numpy
from mtif_sklearn.datasets import make_multitask_classification
from mtif_sklearn.influence import _first_order, _problem
from mtif_sklearn.utils._testing import DenseLinearObjective, dense_influence


def diagonal_arrow(n_tasks=7, q=4, seed=0):
    """A positive definite arrow matrix whose coupling blocks are diagonal (the linear models)."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((n_tasks, q, q))
    tie = rng.random((n_tasks, q)) + 0.2
    task_blocks = a @ a.transpose(0, 2, 1) + 2 * np.einsum("ki,ij->kij", tie, np.eye(q))
    coupling = -np.einsum("ki,ij->kij", tie, np.eye(q))
    shared = np.diag(tie.sum(axis=0)) + np.eye(q)
    return task_blocks, coupling, shared


@pytest.mark.parametrize("chunk_numbers", [1, 2**21])
def test_diagonal_coupling_factor_solves_like_the_dense_matrix(chunk_numbers, monkeypatch):
    monkeypatch.setattr(_arrow, "FACTOR_CHUNK_NUMBERS", chunk_numbers)
    task_blocks, coupling, shared = diagonal_arrow()
    before = task_blocks.copy()
    factor = factor_arrow(task_blocks, coupling, shared, damping=0.1)
    np.testing.assert_array_equal(task_blocks, before)  # damping never writes the input
    assert factor.coupling_diagonal is not None and factor._coupling is None
    K, q, p = factor.shape
    dense = arrow_to_dense(task_blocks, coupling, shared) + 0.1 * np.eye(K * q + p)
    rhs = np.random.default_rng(1).standard_normal((K * q + p, 3))
    x_task, x_shared = arrow_solve(factor, rhs[:K * q].reshape(K, q, 3), rhs[K * q:])
    expected = np.linalg.solve(dense, rhs)
    # Two backward-stable solves of a well-conditioned system: ~1e-14 relative.
    np.testing.assert_allclose(np.concatenate([x_task.reshape(K * q, 3), x_shared]), expected,
                               rtol=1e-10, atol=1e-12)
    # The dense blocks, built on request, are the diagonal ones and W_k = H_kk^-1 H_k,K+1.
    np.testing.assert_array_equal(factor.coupling, coupling)
    damped = task_blocks + 0.1 * np.eye(q)
    np.testing.assert_allclose(factor.coupling_solved, np.linalg.solve(damped, coupling),
                               rtol=1e-10, atol=1e-12)
    # Factored in place: the same factor, the blocks become the inverses.
    own = task_blocks.copy()
    in_place = factor_arrow(own, coupling, shared, damping=0.1, overwrite_blocks=True)
    assert in_place.task_inverse is own
    np.testing.assert_allclose(own, factor.task_inverse, rtol=1e-12, atol=1e-14)
    # A pickled factor drops the dense blocks and rebuilds the same ones.
    loaded = pickle.loads(pickle.dumps(factor))
    assert loaded._coupling is None
    np.testing.assert_array_equal(loaded.coupling_solved, factor.coupling_solved)


@pytest.mark.parametrize("overwrite", [False, True])
@pytest.mark.parametrize("chunk_numbers", [1, 50, 2**21])
def test_indefinite_block_in_a_later_chunk_is_named(chunk_numbers, overwrite, monkeypatch):
    monkeypatch.setattr(_arrow, "FACTOR_CHUNK_NUMBERS", chunk_numbers)
    task_blocks, coupling, shared = diagonal_arrow(n_tasks=9)
    task_blocks[6] -= 100 * np.eye(task_blocks.shape[1])
    names = [f"t{k}" for k in range(9)]
    with pytest.raises(NotPositiveDefiniteError, match="block of task 't6'") as error:
        factor_arrow(task_blocks.copy(), coupling, shared, task_names=names,
                     overwrite_blocks=overwrite)
    expected = np.linalg.eigvalsh(task_blocks[6]).min()
    assert error.value.smallest_eigenvalue == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("shuffled", [False, True])
@pytest.mark.parametrize("run_length", [1, 3, 70])
def test_rows_times_task_matrices_equals_a_gather(shuffled, run_length):
    rng = np.random.default_rng(0)
    codes = np.repeat(np.arange(8), run_length)
    codes = np.concatenate([codes, [2, 2, 5]])
    if shuffled:
        codes = rng.permutation(codes)
    vectors = rng.standard_normal((codes.size, 4))
    matrices = rng.standard_normal((8, 4, 6))
    expected = np.einsum("ma,mab->mb", vectors, matrices[codes])
    # Products by runs instead of one gathered stack: round-off only.
    np.testing.assert_allclose(rows_times_task_matrices_numpy(codes, vectors, matrices),
                               expected, rtol=1e-12, atol=1e-12)
    out = np.full((codes.size, 6), np.nan)
    assert rows_times_task_matrices_numpy(codes, vectors, matrices, out=out) is out
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def uneven_shuffled():
    """Logistic tasks of 12 to 60 rows, rows shuffled (not grouped by task)."""
    X, y, tasks = make_multitask_classification(n_tasks=5, n_samples_per_task=60, n_features=4,
                                                random_state=3)
    keep = np.concatenate([np.flatnonzero(tasks == k)[:size]
                           for k, size in enumerate([12, 60, 25, 25, 41])])
    order = np.random.default_rng(0).permutation(keep)
    Xv, yv, tv = make_multitask_classification(n_tasks=5, n_samples_per_task=10, n_features=4,
                                               random_state=4)
    return X[order], y[order], tasks[order], Xv, yv, tv


@pytest.mark.parametrize("effect_matrices", [True, False])
def test_influence_on_shuffled_uneven_tasks_equals_the_dense_reference(
        uneven_shuffled, effect_matrices, monkeypatch):
    if not effect_matrices:  # the reduced-gradient path (large K q K)
        monkeypatch.setattr(_first_order, "MATRIX_NUMBERS", 0)
    X, y, tasks, Xv, yv, tv = uneven_shuffled
    inf = MTIFInfluence(MultitaskLogistic(alpha=0.2), batch_size=13).fit(
        X, y, tasks=tasks, X_val=Xv, y_val=yv, tasks_val=tv)
    train, z = DenseLinearObjective.from_model(inf.estimator_, X, y, tasks)
    val, _ = DenseLinearObjective.from_model(inf.estimator_, Xv, yv, tv)
    rows, task_level = dense_influence(train, val, z)
    # Same maths, arrow Schur solve vs dense LU: round-off only.
    np.testing.assert_allclose(inf.influence_, rows, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(inf.task_influence_, task_level, rtol=1e-8, atol=1e-12)
    # Summaries are the sums and the most negative entries of that matrix.
    weights = np.bincount(np.searchsorted(inf.tasks_, tv), minlength=5)[[1, 4]]
    expected = inf.influence_[:, [1, 4]] @ (weights / weights.sum())
    np.testing.assert_allclose(inf.row_scores(target_tasks=[1, 4]), expected, rtol=1e-9,
                               atol=1e-12 * np.abs(expected).max())
    for k, (found_rows, effects) in enumerate(inf.harmful_rows(n_rows=4).values()):
        column = inf.influence_[:, k]
        order = np.argsort(column, kind="stable")
        negative = order[column[order] < 0][:4]
        np.testing.assert_array_equal(found_rows, negative)
        np.testing.assert_allclose(effects, column[negative], rtol=1e-12)


def test_finite_check_reads_in_place_and_skips_tasks_without_validation(uneven_shuffled):
    effects = np.ones((50, 4))
    missing = np.array([2])
    assert _problem._all_finite(effects, np.array([], dtype=int), allow_nan=False)
    effects[3, 2] = np.inf  # in a column that is NaN anyway
    assert _problem._all_finite(effects, missing, allow_nan=False)
    effects[7, 1] = np.nan
    assert not _problem._all_finite(effects, missing, allow_nan=False)
    assert _problem._all_finite(effects, missing, allow_nan=True)
    effects[9, 0] = -np.inf
    assert not _problem._all_finite(effects, missing, allow_nan=True)


def test_stationarity_check_in_chunks_equals_the_whole_computation(uneven_shuffled,
                                                                    monkeypatch):
    X, y, tasks, Xv, yv, tv = uneven_shuffled
    model = MultitaskRidge(alpha=0.3).fit(X, y + 0.0, tasks=tasks)
    inf = MTIFInfluence(FrozenEstimator(model)).fit(X, y + 0.0, tasks=tasks, X_val=Xv,
                                                     y_val=yv, tasks_val=tv)
    problem = inf._splits[0].problem
    whole = problem.relative_gradient_norm()  # the linear objective's one-pass scale
    # The generic path (any objective): chunks of row gradients.
    from mtif_sklearn.linear._objective import LinearMultitaskObjective

    monkeypatch.delattr(LinearMultitaskObjective, "task_abs_gradient_sums")
    monkeypatch.setattr(_problem, "CHUNK_NUMBERS", 17)
    assert problem.relative_gradient_norm() == pytest.approx(whole, rel=1e-10, abs=1e-30)
    # The definition, with (n, q) arrays.
    train = problem.train
    task_grad, shared_parts = train.task_gradients(problem.params)
    shared = shared_parts.sum(axis=0) + train.shared_penalty_gradient(problem.params)
    norm = np.sqrt(np.sum(task_grad ** 2) + np.sum(shared ** 2))
    row_task, _ = train.row_gradients(problem.params)
    scale = np.sqrt(np.sum(train.task_sums(np.abs(row_task) * train.row_weights[:, None]) ** 2))
    assert whole == pytest.approx(norm / scale, rel=1e-10, abs=1e-30)


def test_coupling_given_as_diagonals_factors_like_the_dense_blocks():
    task_blocks, coupling, shared = diagonal_arrow(seed=5)
    dense = factor_arrow(task_blocks, coupling, shared, damping=0.05)
    diagonals = np.diagonal(coupling, axis1=1, axis2=2).copy()
    compact = factor_arrow(task_blocks, diagonals, shared, damping=0.05)
    # Identical arithmetic once the diagonal is detected: equal to round-off.
    np.testing.assert_allclose(compact.task_inverse, dense.task_inverse, rtol=1e-13, atol=0)
    np.testing.assert_allclose(compact.schur, dense.schur, rtol=1e-13, atol=1e-13)
    np.testing.assert_array_equal(compact.coupling, coupling)
    with pytest.raises(ValueError, match="square"):
        factor_arrow(task_blocks, diagonals[:, :-1], shared[:-1, :-1])
    torch = pytest.importorskip("torch")  # other namespaces get the dense blocks built
    on_torch = factor_arrow(*(torch.from_numpy(a) for a in (task_blocks, diagonals, shared)),
                            damping=0.05)
    np.testing.assert_allclose(on_torch.schur_inverse.numpy(), dense.schur_inverse,
                               rtol=1e-10, atol=1e-12)

"""The linear objective's fast paths against their plain definitions.

Batched Hessian blocks and task sums (stacks of tasks with equal row counts), the implicit
intercept column, the cached row pass at a point and ``row_gradient_dots`` must give the same
numbers as per-task loops over an explicitly augmented X, for sorted and shuffled rows, tasks of
different sizes, a task without rows, and batches small enough to split a task.
"""

import pickle

import numpy as np
import pytest

from mtif_sklearn.base import Params
from mtif_sklearn.linear import _objective
from mtif_sklearn.linear._objective import (
    InterceptAugmented,
    LinearMultitaskObjective,
    _TaskBatches,
    augment,
)

# Same sums in another order (batched products vs per-task loops): round-off only.
RTOL, ATOL = 1e-12, 1e-12


def make_problem(*, shuffled, loss="log_loss", seed=0):
    """Tasks of 1, 3, 3, 3, 7, 0 and 40 rows, d = 4, one intercept."""
    rng = np.random.default_rng(seed)
    sizes = np.array([1, 3, 3, 3, 7, 0, 40])
    codes = np.repeat(np.arange(sizes.size), sizes)
    if shuffled:
        codes = rng.permutation(codes)
    n, d, K = codes.size, 4, sizes.size
    X = rng.standard_normal((n, d))
    y = (rng.random(n) < 0.5).astype(float) if loss == "log_loss" else rng.standard_normal(n)
    weights = rng.random(n) + 0.5
    weights /= np.bincount(codes, weights=weights, minlength=K)[codes]
    tie = rng.random((K, d + 1)) + 0.1
    mask = np.ones(d + 1)
    mask[-1] = 0.0
    args = (y, codes, weights, tie, 0.3, mask, loss)
    implicit = LinearMultitaskObjective(X, *args, fit_intercept=True)
    explicit = LinearMultitaskObjective(np.hstack([X, np.ones((n, 1))]), *args)
    params = Params(rng.standard_normal((K, d + 1)), rng.standard_normal(d + 1))
    return implicit, explicit, params


def per_task_reference(objective, params):
    """Task blocks and task gradients by a loop over tasks on the augmented X."""
    X = objective.X_aug
    raw = np.einsum("ij,ij->i", X, params.task[objective.codes])
    first, second = objective.loss.derivatives(objective.y, raw)
    K, q = params.task.shape
    blocks, grads = np.zeros((K, q, q)), np.zeros((K, q))
    for k in range(K):
        rows = objective.codes == k
        w = objective.row_weights[rows]
        blocks[k] = X[rows].T @ (X[rows] * (second[rows] * w)[:, None])
        grads[k] = (first[rows] * w) @ X[rows]
    return blocks, grads


def assert_same_parts(a, b, message):
    """Equal arrays, or equal array parts of tuples (None parts on both sides)."""
    parts_a = list(a) if isinstance(a, tuple) or hasattr(a, "coupling") else [a]
    parts_b = list(b) if isinstance(b, tuple) or hasattr(b, "coupling") else [b]
    assert len(parts_a) == len(parts_b), message
    for part_a, part_b in zip(parts_a, parts_b, strict=True):
        if part_a is None or not hasattr(part_a, "shape"):
            assert part_b is None or not hasattr(part_b, "shape"), message
            continue
        np.testing.assert_allclose(part_a, part_b, rtol=RTOL, atol=ATOL, err_msg=message)


@pytest.fixture(params=[1, 10, 2**21], ids=["tiny batches", "small batches", "default"])
def batch_numbers(request, monkeypatch):
    monkeypatch.setattr(_objective, "BATCH_NUMBERS", request.param)
    return request.param


@pytest.mark.parametrize("shuffled", [False, True])
@pytest.mark.parametrize("loss", ["log_loss", "squared_error"])
def test_batched_blocks_and_gradients_equal_per_task_loops(shuffled, loss, batch_numbers):
    objective, _, params = make_problem(shuffled=shuffled, loss=loss)
    blocks, grads = per_task_reference(objective, params)
    hessian = objective.hessian_blocks(params)
    diagonal = np.arange(blocks.shape[1])
    blocks[:, diagonal, diagonal] += 2.0 * objective.tie
    np.testing.assert_allclose(hessian.task, blocks, rtol=RTOL, atol=ATOL)
    task_grad, _ = objective.task_gradients(params)
    tie = 2.0 * objective.tie * (params.task - params.shared)
    np.testing.assert_allclose(task_grad, grads + tie, rtol=RTOL, atol=ATOL)
    values = np.random.default_rng(1).standard_normal((objective.codes.size, 2, 3))
    sums = np.stack([values[objective.codes == k].sum(axis=0)
                     for k in range(objective.n_tasks)])
    np.testing.assert_allclose(objective.task_sums(values), sums, rtol=RTOL, atol=ATOL)
    assert np.all(objective.task_sums(values)[5] == 0)  # the task without rows


@pytest.mark.parametrize("shuffled", [False, True])
def test_implicit_intercept_equals_the_explicit_column(shuffled, batch_numbers):
    implicit, explicit, params = make_problem(shuffled=shuffled)
    n = implicit.codes.size
    assert implicit.n_task_params == explicit.n_task_params == 5
    for rows in (None, slice(2, 9), np.arange(3, 11), np.array([17, 0, 5, 5, 40])):
        for method in ("row_losses", "row_gradients", "row_curvatures", "linearisation"):
            assert_same_parts(getattr(implicit, method)(params, rows),
                              getattr(explicit, method)(params, rows), f"{method} {rows}")
    for method in ("task_gradients", "hessian_blocks", "shared_gradients", "task_values"):
        assert_same_parts(getattr(implicit, method)(params), getattr(explicit, method)(params),
                          method)
    # A batch of points: every row at every point, and row i at point i.
    rng = np.random.default_rng(2)
    batch = Params(rng.standard_normal((3,) + params.task.shape),
                   rng.standard_normal((3, params.shared.size)))
    np.testing.assert_allclose(implicit.row_losses(batch), explicit.row_losses(batch),
                               rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(implicit.row_losses(batch, np.array([4, 1, 30])),
                               explicit.row_losses(batch, np.array([4, 1, 30])),
                               rtol=RTOL, atol=ATOL)
    for a, b in zip(implicit.task_gradients(batch), explicit.task_gradients(batch), strict=True):
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL)
    per_row = Params(rng.standard_normal((n,) + params.task.shape),
                     rng.standard_normal((n, params.shared.size)))
    np.testing.assert_allclose(implicit.row_gradients(per_row)[0],
                               explicit.row_gradients(per_row)[0], rtol=RTOL, atol=ATOL)


def test_row_pass_is_reused_for_the_same_params_only():
    objective, _, params = make_problem(shuffled=True)
    first = objective.task_gradients(params)[0]
    moved = Params(params.task + 0.5, params.shared)
    reference, _ = make_problem(shuffled=True)[:2]
    # A new point after the cache was filled: the new point's numbers, not the cached ones.
    np.testing.assert_allclose(objective.task_gradients(moved)[0],
                               reference.task_gradients(moved)[0], rtol=RTOL, atol=ATOL)
    np.testing.assert_allclose(objective.task_gradients(params)[0], first, rtol=0, atol=0)
    # Rows asked about before the whole pass: computed for those rows alone, same numbers.
    fresh, _, _ = make_problem(shuffled=True)
    np.testing.assert_allclose(fresh.row_gradients(params, np.array([3, 8]))[0],
                               objective.row_gradients(params, np.array([3, 8]))[0],
                               rtol=RTOL, atol=ATOL)
    # Caches do not travel with a pickle.
    assert pickle.loads(pickle.dumps(objective))._point == (None, None)


@pytest.mark.parametrize("rows", [None, slice(4, 20), np.array([9, 2, 33])])
def test_row_gradient_dots_are_gradients_dotted_with_the_task_vectors(rows):
    objective, _, params = make_problem(shuffled=True)
    vectors = np.random.default_rng(3).standard_normal(params.task.shape)
    grads, _ = objective.row_gradients(params, rows)
    codes = objective.codes[slice(None) if rows is None else rows]
    expected = np.einsum("mq,mq->m", grads, vectors[codes])
    np.testing.assert_allclose(objective.row_gradient_dots(params, vectors, None, rows),
                               expected, rtol=RTOL, atol=ATOL)


def test_augment_appends_the_column_without_copying_the_features():
    X = np.arange(6.0).reshape(3, 2)
    augmented = augment(X, True)
    assert isinstance(augmented, InterceptAugmented) and augmented.features is X
    assert augmented.shape == (3, 3)
    np.testing.assert_array_equal(np.asarray(augmented), np.hstack([X, np.ones((3, 1))]))
    objective = LinearMultitaskObjective(augmented, np.zeros(3), np.zeros(3, int),
                                         np.full(3, 1 / 3), np.ones((1, 3)), 0.1,
                                         np.array([1.0, 1.0, 0.0]), "squared_error")
    assert objective.fit_intercept and objective.X is X
    np.testing.assert_array_equal(objective.X_aug, np.asarray(augmented))
    assert augment(X, False) is X


@pytest.mark.parametrize("sorted_rows", [True, False])
def test_task_batches_cover_every_row_once_in_task_order(sorted_rows, batch_numbers):
    rng = np.random.default_rng(4)
    codes = np.repeat(np.arange(6), [5, 0, 2, 5, 9, 2])
    if not sorted_rows:
        codes = rng.permutation(codes)
    batches = _TaskBatches(codes, 6).batches(3)
    seen = np.zeros(codes.size, int)
    for batch in batches:
        positions = np.arange(codes.size)
        rows = batch.take(positions)
        assert rows.shape == batch.shape
        # Every row of a batch's k-th task belongs to that task.
        assert np.all(codes[rows] == np.asarray(batch.tasks)[:, None])
        seen[rows.ravel()] += 1
    np.testing.assert_array_equal(seen, 1)


@pytest.mark.parametrize("shuffled", [False, True])
def test_gram_by_syrk_for_long_tasks_equals_the_batched_product(shuffled, monkeypatch):
    objective, _, params = make_problem(shuffled=shuffled)
    batched = objective.hessian_blocks(params).task
    monkeypatch.setattr(_objective, "SYRK_MIN_ROWS", 1)  # every task through SYRK
    fresh, _, _ = make_problem(shuffled=shuffled)
    np.testing.assert_allclose(fresh.hessian_blocks(params).task, batched, rtol=RTOL, atol=ATOL)


def test_diagonal_hessian_blocks_are_the_diagonals_of_the_dense_ones():
    objective, _, params = make_problem(shuffled=True)
    active = np.array([True, False, True, True, True, True, False])
    dense = objective.hessian_blocks(params, active)
    compact = objective.diagonal_hessian_blocks(params, active)
    np.testing.assert_array_equal(compact.task, dense.task)
    np.testing.assert_array_equal(compact.shared, dense.shared)
    np.testing.assert_array_equal(np.diagonal(dense.coupling, axis1=1, axis2=2), compact.coupling)
    assert np.count_nonzero(dense.coupling) == np.count_nonzero(compact.coupling)

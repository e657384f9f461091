"""The arrow solver against dense linear algebra (exact arithmetic up to round-off)."""

import numpy as np
import pytest

from mtif_sklearn.influence import arrow_solve, arrow_to_dense, factor_arrow


def random_arrow(n_tasks=6, q=4, p=3, seed=0):
    """A random symmetric positive definite arrow matrix, as blocks."""
    rng = np.random.default_rng(seed)
    dense_dim = n_tasks * q + p
    # Build a dense SPD matrix and keep only the arrow pattern, then make it SPD again by
    # strengthening the diagonal blocks (diagonal dominance of the whole arrow).
    task_blocks = np.empty((n_tasks, q, q))
    coupling = rng.standard_normal((n_tasks, q, p))
    for k in range(n_tasks):
        a = rng.standard_normal((q, q))
        task_blocks[k] = a @ a.T + q * np.eye(q)
    b = rng.standard_normal((p, p))
    shared = b @ b.T + (np.abs(coupling).sum() + p) * np.eye(p)
    assert np.all(np.linalg.eigvalsh(arrow_to_dense(task_blocks, coupling, shared)) > 0), (
        dense_dim)
    return task_blocks, coupling, shared


@pytest.mark.parametrize("n_rhs", [None, 1, 5])
def test_arrow_solve_equals_dense_solve(n_rhs):
    task_blocks, coupling, shared = random_arrow()
    dense = arrow_to_dense(task_blocks, coupling, shared)
    rng = np.random.default_rng(1)
    K, q, p = coupling.shape
    shape = () if n_rhs is None else (n_rhs,)
    rhs = rng.standard_normal((K * q + p,) + shape)
    factor = factor_arrow(task_blocks, coupling, shared)
    rhs_task = rhs[: K * q].reshape((K, q) + shape)
    x_task, x_shared = arrow_solve(factor, rhs_task, rhs[K * q:])
    solution = np.concatenate([x_task.reshape((K * q,) + shape), x_shared])
    expected = np.linalg.solve(dense, rhs)
    # Both are backward-stable solves of a well-conditioned system: agree to ~1e-13 relative.
    assert np.linalg.norm(solution - expected) <= 1e-10 * np.linalg.norm(expected)


def test_arrow_schur_complement_equals_dense_block_inverse():
    task_blocks, coupling, shared = random_arrow(seed=3)
    dense = arrow_to_dense(task_blocks, coupling, shared)
    factor = factor_arrow(task_blocks, coupling, shared)
    p = shared.shape[0]
    # Lemma A.6: the shared block of H^-1 is N^-1.
    np.testing.assert_allclose(np.linalg.inv(factor.schur), np.linalg.inv(dense)[-p:, -p:],
                               rtol=1e-10, atol=1e-13)
    assert factor.schur_condition == pytest.approx(np.linalg.cond(factor.schur), rel=1e-8)


def test_inactive_tasks_are_solved_given_the_shared_solution():
    task_blocks, coupling, shared = random_arrow(seed=4)
    K, q, p = coupling.shape
    active = np.ones(K, dtype=bool)
    active[[1, 4]] = False
    rng = np.random.default_rng(2)
    rhs_task, rhs_shared = rng.standard_normal((K, q)), rng.standard_normal(p)
    x_task, x_shared = arrow_solve(factor_arrow(task_blocks, coupling, shared, active=active),
                                   rhs_task, rhs_shared)
    # Reference: the dense system whose shared equation ignores the inactive tasks.
    dense = arrow_to_dense(task_blocks, coupling, shared)
    for k in np.flatnonzero(~active):
        dense[K * q:, k * q:(k + 1) * q] = 0.0
    expected = np.linalg.solve(dense, np.concatenate([rhs_task.ravel(), rhs_shared]))
    np.testing.assert_allclose(np.concatenate([x_task.ravel(), x_shared]), expected,
                               rtol=1e-10, atol=1e-12)


def test_damping_is_added_to_every_diagonal():
    task_blocks, coupling, shared = random_arrow(seed=5)
    damping = 0.7
    dense = arrow_to_dense(task_blocks, coupling, shared) + damping * np.eye(
        task_blocks.shape[0] * task_blocks.shape[1] + shared.shape[0])
    rhs = np.random.default_rng(0).standard_normal(dense.shape[0])
    K, q, _ = task_blocks.shape
    x_task, x_shared = arrow_solve(factor_arrow(task_blocks, coupling, shared, damping=damping),
                                   rhs[:K * q].reshape(K, q), rhs[K * q:])
    np.testing.assert_allclose(np.concatenate([x_task.ravel(), x_shared]),
                               np.linalg.solve(dense, rhs), rtol=1e-10, atol=1e-12)


def test_non_positive_definite_task_block_names_task_and_damping():
    task_blocks, coupling, shared = random_arrow(seed=6)
    task_blocks[2] -= 50.0 * np.eye(task_blocks.shape[1])
    smallest = np.linalg.eigvalsh(task_blocks[2]).min()
    with pytest.raises(ValueError, match=r"task 'c'.*not positive definite.*damping >=") as err:
        factor_arrow(task_blocks, coupling, shared, task_names=["a", "b", "c", "d", "e", "f"])
    suggested = float(str(err.value).split("damping >= ")[1].split(" ")[0])
    assert suggested > -smallest
    # The suggested damping indeed makes the block positive definite.
    factor_arrow(task_blocks, coupling, shared + 100 * np.eye(shared.shape[0]),
                 damping=suggested)


def test_non_positive_definite_schur_complement_is_reported():
    task_blocks, coupling, shared = random_arrow(seed=7)
    with pytest.raises(ValueError, match="shared block"):
        factor_arrow(task_blocks, coupling, shared - 1e4 * np.eye(shared.shape[0]))


def test_arrow_solver_runs_unchanged_on_torch_tensors():
    torch = pytest.importorskip("torch")
    task_blocks, coupling, shared = random_arrow(seed=8)
    K, q, p = coupling.shape
    rhs = np.random.default_rng(3).standard_normal((K * q + p, 2))
    numpy_solution = arrow_solve(factor_arrow(task_blocks, coupling, shared),
                                 rhs[:K * q].reshape(K, q, 2), rhs[K * q:])
    torch_factor = factor_arrow(*(torch.from_numpy(a) for a in (task_blocks, coupling, shared)))
    torch_solution = arrow_solve(torch_factor, torch.from_numpy(rhs[:K * q].reshape(K, q, 2)),
                                 torch.from_numpy(rhs[K * q:]))
    assert isinstance(torch_solution[1], torch.Tensor)
    for ours, theirs in zip(numpy_solution, torch_solution, strict=True):
        np.testing.assert_allclose(theirs.numpy(), ours, rtol=1e-10, atol=1e-12)
    assert torch_factor.schur_condition == pytest.approx(
        factor_arrow(task_blocks, coupling, shared).schur_condition, rel=1e-8)

"""Checks that a multitask objective honours the protocol of :mod:`mtif_sklearn.base`.

:func:`check_multitask_objective` is to the objective protocol what scikit-learn's
``check_estimator`` is to estimators: run it on the objective of a new model before trusting
MTIFInfluence on it. Derivatives are checked against central finite differences of the
objective's own lower-order members (row gradients against row losses, Hessian blocks against
the gradient), so an objective that is inconsistent with itself fails.
"""

import numpy as np

from ..base import CAPABILITIES, ArrowBlocks, Params

__all__ = ["check_multitask_objective"]


def _fail(message):
    raise AssertionError(f"check_multitask_objective: {message}")


def _close(actual, expected, rtol, atol, what):
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    if actual.shape != expected.shape:
        _fail(f"{what}: shape {actual.shape}, expected {expected.shape}")
    scale = max(np.abs(expected).max(initial=0.0), atol)
    error = np.abs(actual - expected).max(initial=0.0)
    if error > rtol * scale + atol:
        _fail(f"{what}: differs from its finite-difference reference by {error:.3g} "
              f"(scale {scale:.3g}, rtol {rtol:g})")


def _shape(array, shape, what):
    if np.shape(array) != tuple(shape):
        _fail(f"{what} has shape {np.shape(array)}, expected {tuple(shape)}")


def _total_gradient(objective, params):
    task_grad, shared_parts = objective.task_gradients(params)
    return (np.asarray(task_grad),
            np.asarray(shared_parts).sum(axis=-2)
            + np.asarray(objective.shared_penalty_gradient(params)))


def _arrow_times(blocks, d_task, d_shared):
    """H d for an arrow matrix given by its blocks."""
    out_task = (np.einsum("kij,kj->ki", blocks.task, d_task)
                + np.einsum("kij,j->ki", blocks.coupling, d_shared))
    out_shared = np.einsum("kji,kj->i", blocks.coupling, d_task) + blocks.shared @ d_shared
    return out_task, out_shared


def check_multitask_objective(objective, params, *, exact_hessian=True,
                              exact_row_curvature=None, training=True, step=1e-6, rtol=1e-5,
                              n_directions=3, random_state=0):
    """Check an objective against the multitask objective protocol.

    Checks shapes and types of every member; row gradients against central finite differences
    of the row losses; the Hessian blocks against finite differences of the objective's
    gradient (``task_gradients`` plus ``shared_penalty_gradient``); batched evaluations against
    point-by-point ones; the per-task normalisation of ``row_weights``; and the members of
    every declared capability (``newton``: ``task_shared_hessian`` is what leaves the shared
    block when a task becomes inactive, and rank-one ``row_curvatures`` are the row Hessians;
    ``affinity`` and ``linearisation``: shapes and consistency).

    Parameters
    ----------
    objective : MultitaskObjective
        The objective to check (bound to rows).
    params : Params
        A point at which to check (e.g. the fitted parameters).
    exact_hessian : bool, default=True
        Whether the Hessian blocks (and rank-one row curvatures) claim to be exact second
        derivatives. False for Gauss-Newton approximations: then only their symmetry and
        shapes are checked.
    exact_row_curvature : bool, default=None
        Whether the rank-one ``row_curvatures`` are the exact row Hessians (a linear model)
        rather than their Gauss-Newton terms (a network); None: as ``exact_hessian``.
    training : bool, default=True
        Whether ``objective`` is bound to the rows the model was fitted on with their weights,
        so each task's ``row_weights`` sum to 1 (paper eq. 5).
    step : float, default=1e-6
        Finite-difference step (relative to the parameters' scale).
    rtol : float, default=1e-5
        Relative tolerance of the finite-difference comparisons.
    n_directions : int, default=3
        Random directions of the directional-derivative checks.
    random_state : int, default=0
        Seed of the directions.

    Returns
    -------
    None
        Raises AssertionError naming the first member that fails.
    """
    rng = np.random.default_rng(random_state)
    K, q, p = objective.n_tasks, objective.n_task_params, objective.n_shared_params
    codes, weights = np.asarray(objective.codes), np.asarray(objective.row_weights)
    n = codes.shape[0]
    unknown = set(objective.capabilities) - set(CAPABILITIES)
    if unknown:
        _fail(f"unknown capabilities {sorted(unknown)}; known: {sorted(CAPABILITIES)}")
    _shape(params.task, (K, q), "params.task")
    _shape(params.shared, (p,), "params.shared")
    _shape(weights, (n,), "row_weights")
    if codes.size and (codes.min() < 0 or codes.max() >= K):
        _fail(f"codes outside 0..{K - 1}")
    if training:
        per_task = np.bincount(codes, weights=weights, minlength=K)
        present = np.bincount(codes, minlength=K) > 0
        _close(per_task[present], np.ones(present.sum()), 1e-10, 0.0,
               "row_weights summed per task (eq. 5: w_i / n_k)")

    losses = np.asarray(objective.row_losses(params))
    _shape(losses, (n,), "row_losses(params)")
    grad_task, grad_shared = objective.row_gradients(params)
    _shape(grad_task, (n, q), "row_gradients task part")
    if grad_shared is not None:
        _shape(grad_shared, (n, p), "row_gradients shared part")
    sums = objective.task_sums(np.ones((n, 2)))
    _shape(sums, (K, 2), "task_sums of (n, 2)")
    _close(sums[:, 0], np.bincount(codes, minlength=K), 0, 1e-12, "task_sums")

    scale = max(np.abs(params.task).max(initial=0.0), np.abs(params.shared).max(initial=0.0),
                1.0)
    h = step * scale
    blocks = objective.hessian_blocks(params)
    if not isinstance(blocks, ArrowBlocks):
        _fail(f"hessian_blocks returned {type(blocks).__name__}, expected ArrowBlocks")
    _shape(blocks.task, (K, q, q), "hessian_blocks task")
    _shape(blocks.coupling, (K, q, p), "hessian_blocks coupling")
    _shape(blocks.shared, (p, p), "hessian_blocks shared")
    _close(blocks.task, np.swapaxes(blocks.task, 1, 2), 1e-10, 1e-12, "symmetry of task blocks")
    _close(blocks.shared, blocks.shared.T, 1e-10, 1e-12, "symmetry of the shared block")
    task_grad, shared_grad = _total_gradient(objective, params)
    _shape(task_grad, (K, q), "task_gradients task parts")
    _shape(shared_grad, (p,), "task_gradients shared parts summed + shared_penalty_gradient")

    for _ in range(n_directions):
        d_task, d_shared = rng.standard_normal((K, q)), rng.standard_normal(p)
        plus = Params(params.task + h * d_task, params.shared + h * d_shared)
        minus = Params(params.task - h * d_task, params.shared - h * d_shared)
        directional = (objective.row_losses(plus) - objective.row_losses(minus)) / (2 * h)
        predicted = np.einsum("iq,iq->i", grad_task, d_task[codes])
        if grad_shared is not None:
            predicted = predicted + grad_shared @ d_shared
        _close(predicted, directional, rtol, 1e-9, "row_gradients (vs row_losses)")
        if exact_hessian:
            g_plus, g_minus = _total_gradient(objective, plus), _total_gradient(objective, minus)
            fd_task, fd_shared = ((a - b) / (2 * h) for a, b in zip(g_plus, g_minus,
                                                                  strict=True))
            hd_task, hd_shared = _arrow_times(blocks, d_task, d_shared)
            _close(hd_task, fd_task, rtol, 1e-9, "hessian_blocks (vs the gradient), task rows")
            _close(hd_shared, fd_shared, rtol, 1e-9,
                   "hessian_blocks (vs the gradient), shared rows")

    _check_batches(objective, params, rng, h, losses, grad_task)
    capabilities = set(objective.capabilities)
    if "newton" in capabilities:
        exact_rows = exact_hessian if exact_row_curvature is None else exact_row_curvature
        _check_newton(objective, params, blocks, rng, h, exact_rows, rtol)
    if "affinity" in capabilities:
        _check_affinity(objective, params)
    if "linearisation" in capabilities:
        point = objective.linearisation(params)
        _shape(point.raw, (n,), "linearisation raw")
        _shape(point.task_features, (n, q), "linearisation task_features")
        if point.shared_features.shape[0] != n:
            _fail("linearisation shared_features must have one row per row")
        _close(point.loss.value(point.targets, point.raw), losses, 1e-12, 1e-12,
               "linearisation loss at its raw outputs (vs row_losses)")


def _check_batches(objective, params, rng, h, losses, grad_task):
    """Batched evaluations equal point-by-point ones."""
    K, q, p = objective.n_tasks, objective.n_task_params, objective.n_shared_params
    n = len(objective.codes)
    points = [params, Params(params.task + h * 1e3 * rng.standard_normal((K, q)),
                             params.shared + h * 1e3 * rng.standard_normal(p))]
    batch = Params(np.stack([pt.task for pt in points]), np.stack([pt.shared for pt in points]))
    batched = np.asarray(objective.row_losses(batch))
    _shape(batched, (2, n), "row_losses at a batch of 2 points")
    for m, point in enumerate(points):
        _close(batched[m], objective.row_losses(point), 1e-12, 1e-12,
               "row_losses at a batch (vs one point)")
    task_batch, shared_batch = objective.task_gradients(batch)
    for m, point in enumerate(points):
        task_one, shared_one = objective.task_gradients(point)
        _close(task_batch[m], task_one, 1e-10, 1e-12, "task_gradients at a batch")
        _close(shared_batch[m], shared_one, 1e-10, 1e-12, "task_gradients at a batch (shared)")
    rows = np.arange(min(n, 3))
    paired = Params(np.repeat(params.task[None], rows.size, axis=0),
                    np.repeat(params.shared[None], rows.size, axis=0))
    paired_task, _ = objective.row_gradients(paired, rows)
    _close(paired_task, grad_task[rows], 1e-10, 1e-12,
           "row_gradients at a batch of one point per row")
    del losses


def _check_newton(objective, params, blocks, rng, h, exact_rows, rtol):
    K = objective.n_tasks
    for task in range(min(K, 2)):
        active = np.ones(K, dtype=bool)
        active[task] = False
        without = objective.hessian_blocks(params, active=active)
        _close(blocks.shared - np.asarray(objective.task_shared_hessian(params, task)),
               without.shared, 1e-10, 1e-12,
               f"task_shared_hessian({task}) (vs hessian_blocks without the task)")
    rows = np.arange(min(len(objective.codes), 4))
    c_task, c_shared, curvature = objective.row_curvatures(params, rows)
    _shape(c_task, (rows.size, objective.n_task_params), "row_curvatures task part")
    _shape(curvature, (rows.size,), "row_curvatures curvature")
    if not exact_rows:
        return
    codes = np.asarray(objective.codes)[rows]
    for _ in range(2):
        d_task = rng.standard_normal((K, objective.n_task_params))
        d_shared = rng.standard_normal(objective.n_shared_params)
        plus = Params(params.task + h * d_task, params.shared + h * d_shared)
        minus = Params(params.task - h * d_task, params.shared - h * d_shared)
        fd = (objective.row_gradients(plus, rows)[0]
              - objective.row_gradients(minus, rows)[0]) / (2 * h)
        c_dot = np.einsum("iq,iq->i", c_task, d_task[codes])
        if c_shared is not None:
            c_dot = c_dot + c_shared @ d_shared
        _close(curvature[:, None] * c_task * c_dot[:, None], fd, rtol, 1e-9,
               "row_curvatures (rank-one row Hessians vs row_gradients)")


def _check_affinity(objective, params):
    K = objective.n_tasks
    grads = np.asarray(objective.shared_gradients(params))
    if grads.ndim != 2 or grads.shape[0] != K:
        _fail(f"shared_gradients has shape {grads.shape}, expected (K={K}, p)")
    moved = objective.shared_step(params, np.zeros(grads.shape[1]))
    _close(moved.task, params.task, 0, 1e-15, "shared_step by zero (task part)")
    _close(moved.shared, params.shared, 0, 1e-15, "shared_step by zero (shared part)")
    start = objective.initial_params()
    _shape(start.task, np.shape(params.task), "initial_params().task")
    _shape(start.shared, np.shape(params.shared), "initial_params().shared")

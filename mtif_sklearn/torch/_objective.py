"""The shared-bottom network objective as the multitask objective protocol (DESIGN.md section 4).

A shared-bottom network (paper Example 2) predicts task k's rows with
``f_k(x) = g(theta_k; f(gamma; x))``: a shared module f with parameters gamma and one head g per
task with parameters theta_k. The objective the influence refers to is

    L = sum_k (1/n_k) sum_i w_ki l_k(y_ki, f_k(x_ki))
        + (weight_decay / 2) (||gamma||^2 + sum_k ||theta_k||^2),

i.e. the sum over tasks of each task's weighted mean loss (paper eq. 2 with sigma weights, eq. 5)
plus weight decay written as an L2 term, so that the Hessian includes it. Task k's term
``T_k = (1/n_k) sum_i w_ki l_ki + (weight_decay / 2) ||theta_k||^2`` carries its head's decay
(removed with the task, eq. 11); the decay of gamma belongs to the shared block.

Only a chosen subset of gamma may be *attributed* (e.g. the last shared layer): the other shared
parameters are held fixed, so the blocks are those of the objective restricted to
(theta_1, ..., theta_K, gamma_attributed). Rows only touch their own head, so the Hessian is an
arrow matrix: H_kk (q, q), H_k,shared (q, p), H_shared (p, p).

Everything is computed with :mod:`torch.func` (vmap over rows, grad / jacrev / hessian) in
float64 on the model's device, in chunks of rows, and returned as NumPy arrays. The objective is
stateless: the parameters (:class:`~mtif_sklearn.base.Params` of NumPy arrays: the flat heads
(K, q) and the attributed shared parameters (p,)) are an argument of every method.
"""

import copy

import numpy as np

from .._tasks import group_rows_by_task
from ..base import ArrowBlocks, Params

__all__ = ["FunctionalSharedBottom", "TorchMultitaskObjective", "import_torch", "row_loss"]

# Rows per chunk are chosen so that a chunk holds about this many float64 numbers.
_CHUNK_NUMBERS = 2**22


def import_torch():
    """Import torch, with an install hint when it is missing."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "mtif_sklearn.torch needs PyTorch. Install the extra with "
            "`pip install mtif-sklearn[torch]` (or `pip install torch`)."
        ) from exc
    return torch


def _squared_error(out, y):
    return (out[..., 0] - y) ** 2


def _log_loss(out, y):
    return import_torch().nn.functional.softplus(out[..., 0]) - y * out[..., 0]


def _cross_entropy(out, y):
    return import_torch().logsumexp(out, dim=-1) - (out * y).sum(dim=-1)


# Module-level functions (not lambdas) so that objectives holding them pickle.
_ROW_LOSSES = {"squared_error": _squared_error, "log_loss": _log_loss,
               "cross_entropy": _cross_entropy}


def row_loss(name):
    """Per-row loss ``loss(output (..., o), target (...) or (..., C)) -> (...)``.

    ``"squared_error"``: (y - f)^2 on a single output; ``"log_loss"``: binary cross-entropy on
    one logit with y in {0, 1}; ``"cross_entropy"``: softmax cross-entropy on C logits with a
    one-hot target. A callable is returned as it is (it must follow the same convention and be
    composable with :mod:`torch.func`).
    """
    if callable(name):
        return name
    if name in _ROW_LOSSES:
        return _ROW_LOSSES[name]
    raise ValueError(f"Unknown loss {name!r}; use 'squared_error', 'log_loss', "
                     "'cross_entropy' or a callable loss(output, target).")


def _last_layer_names(shared):
    """Parameter names of the last submodule of ``shared`` that holds parameters itself."""
    last = None
    for prefix, module in shared.named_modules():
        own = [name for name, _ in module.named_parameters(recurse=False)]
        if own:
            last = [f"{prefix}.{name}" if prefix else name for name in own]
    if last is None:
        raise ValueError("The shared module has no parameters; a shared-bottom network needs "
                         "shared parameters to attribute influence to.")
    return last


def attributed_names(shared, attribute, auto_limit=2000):
    """Names of the shared parameters whose block enters the Hessian.

    ``"all"``: every shared parameter; ``"last"``: the last shared layer; ``"auto"``: all of
    them when they are at most ``auto_limit`` numbers, else the last layer; a list: these names
    (as in ``shared.named_parameters()``).
    """
    names = [name for name, p in shared.named_parameters() if p.requires_grad]
    if isinstance(attribute, str):
        if attribute == "all":
            chosen = names
        elif attribute == "last":
            chosen = _last_layer_names(shared)
        elif attribute == "auto":
            total = sum(p.numel() for _, p in shared.named_parameters())
            chosen = names if total <= auto_limit else _last_layer_names(shared)
        else:
            raise ValueError(f"attribute must be 'all', 'last', 'auto' or a list of shared "
                             f"parameter names; got {attribute!r}.")
    else:
        chosen = list(attribute)
        unknown = [n for n in chosen if n not in dict(shared.named_parameters())]
        if unknown:
            raise ValueError(f"attribute names {unknown[:5]} are not parameters of the shared "
                             f"module; its parameters are {names[:10]}.")
    if not chosen:
        raise ValueError("No shared parameter is attributed; choose at least one.")
    return chosen


class FunctionalSharedBottom:
    """A shared module and K structurally identical heads as a function of flat parameters.

    Parameters
    ----------
    shared : torch.nn.Module
        The shared part f(gamma; x).
    heads : sequence of torch.nn.Module
        One head per task (in task-code order), all with the same parameter names and shapes.
    attribute : str or list of str
        Which shared parameters are attributed (see :func:`attributed_names`).
    device : torch.device
        Where everything is computed (float64).
    """

    @property
    def torch(self):
        """The torch module (looked up, not stored: a module does not pickle)."""
        return import_torch()

    def __init__(self, shared, heads, attribute, device):
        torch = import_torch()
        self.device = device
        self.shared = shared
        self.head = heads[0]
        dtype = torch.float64
        params = dict(shared.named_parameters())
        self.attr_names = attributed_names(shared, attribute)
        attr = set(self.attr_names)
        self.fixed = {n: p.detach().to(device=device, dtype=dtype) for n, p in params.items()
                      if n not in attr}
        self.fixed.update({n: b.detach().to(device=device, dtype=dtype)
                           if b.is_floating_point() else b.detach().to(device)
                           for n, b in shared.named_buffers()})
        self.attr_shapes = [params[n].shape for n in self.attr_names]
        self.gamma = torch.cat([params[n].detach().reshape(-1) for n in self.attr_names]).to(
            device=device, dtype=dtype)
        head_names = [n for n, _ in self.head.named_parameters()]
        head_shapes = [p.shape for _, p in self.head.named_parameters()]
        rows = []
        for k, head in enumerate(heads):
            named = list(head.named_parameters())
            if [n for n, _ in named] != head_names or [p.shape for _, p in named] != head_shapes:
                raise ValueError(
                    f"Head {k} does not have the parameters of head 0 ({head_names}, shapes "
                    f"{[tuple(s) for s in head_shapes]}): the arrow Hessian needs task blocks "
                    "of one size, so every head must have the same architecture.")
            rows.append(torch.cat([p.detach().reshape(-1) for _, p in named]))
        self.head_names, self.head_shapes = head_names, head_shapes
        self.head_buffers = {n: b.detach().to(device) for n, b in self.head.named_buffers()}
        self.theta = torch.stack(rows).to(device=device, dtype=dtype)  # (K, q)

    @property
    def n_task_params(self):
        return self.theta.shape[1]

    @property
    def n_shared_params(self):
        return self.gamma.shape[0]

    def fitted_params(self):
        """The network's own parameters as :class:`~mtif_sklearn.base.Params` (NumPy)."""
        return Params(_numpy(self.theta), _numpy(self.gamma))

    def initial_params(self, seed):
        """A seeded default initialisation (``reset_parameters()``) of the same architecture."""
        torch = self.torch
        shared = copy.deepcopy(self.shared)
        heads = [copy.deepcopy(self.head) for _ in range(self.theta.shape[0])]
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed)
            for module in [shared, *heads]:
                for sub in module.modules():
                    if hasattr(sub, "reset_parameters"):
                        sub.reset_parameters()
        params = dict(shared.named_parameters())
        gamma = torch.cat([params[n].detach().reshape(-1) for n in self.attr_names])
        theta = torch.stack([torch.cat([p.detach().reshape(-1) for p in head.parameters()])
                             for head in heads])
        return Params(_numpy(theta), _numpy(gamma))

    def _unflatten(self, flat, names, shapes):
        out, start = {}, 0
        for name, shape in zip(names, shapes, strict=True):
            size = int(np.prod(shape)) if len(shape) else 1
            out[name] = flat[start:start + size].reshape(shape)
            start += size
        return out

    def output(self, theta, gamma, x):
        """Outputs (m, o) of the head with flat parameters ``theta`` on a batch ``x``."""
        from torch.func import functional_call

        shared_params = {**self.fixed,
                         **self._unflatten(gamma, self.attr_names, self.attr_shapes)}
        z = functional_call(self.shared, shared_params, (x,))
        head_params = {**self.head_buffers,
                       **self._unflatten(theta, self.head_names, self.head_shapes)}
        out = functional_call(self.head, head_params, (z,))
        return out.reshape(out.shape[0], -1)


def _numpy(tensor):
    return tensor.detach().cpu().numpy().astype(np.float64, copy=True)


def _smallest_eigenvalue(blocks):
    return float(np.min(np.linalg.eigvalsh(blocks)))


def _warn_if_indefinite(H_tt, H_ts, H_ss, task_names=None):
    """Warn (with the fix) when the exact arrow Hessian is not positive definite.

    A network is not convex: away from a strict local minimum the exact Hessian has negative
    curvature and MTIFInfluence's factorisation raises. The warning says which block, how much
    damping would fix it, and that hessian="gauss_newton" is positive semi-definite by
    construction (definite with weight_decay > 0).
    """
    import warnings

    task_min = np.linalg.eigvalsh(H_tt).min(axis=1)
    bad = int(np.argmin(task_min))
    where, smallest = None, float(task_min[bad])
    if smallest <= 0:
        name = bad if task_names is None else task_names[bad]
        where = f"block of task {name!r}"
    else:
        solved = np.linalg.solve(H_tt, H_ts)
        schur = H_ss - np.einsum("kqp,kqr->pr", H_ts, solved)
        smallest = _smallest_eigenvalue(0.5 * (schur + schur.T))
        if smallest <= 0:
            where = "Schur complement of the shared block"
    if where is not None:
        warnings.warn(
            f"The exact Hessian of the network objective is not positive definite (the {where} "
            f"has smallest eigenvalue {smallest:.3g}): the fitted network is not at a strict "
            "local minimum of its regularised objective. MTIFInfluence will raise unless you "
            f"pass damping > {-smallest:.3g}; alternatively use hessian='gauss_newton' "
            "(positive semi-definite by construction, definite with weight_decay > 0), raise "
            "weight_decay, or train closer to convergence (more max_iter).",
            UserWarning, stacklevel=3)


class TorchMultitaskObjective:
    """The objective of a shared-bottom network on some rows (the multitask objective protocol).

    Parameters
    ----------
    functional : FunctionalSharedBottom
        The network (architecture, fixed and attributed parameters).
    X : torch.Tensor of shape (n, ...)
        Inputs (float64, on the functional's device).
    Y : torch.Tensor of shape (n,) or (n, C)
        Targets in the loss's coding (one-hot for cross-entropy).
    codes : ndarray of shape (n,)
        Task index of every row.
    row_weights : ndarray of shape (n,)
        w_ki / n_k.
    losses : list of callables
        Per-task row loss (see :func:`row_loss`), in task-code order.
    weight_decay : float
        L2 coefficient lambda of (lambda / 2) ||params||^2.
    hessian : {"exact", "gauss_newton"}
        Exact second derivatives, or the Gauss-Newton matrix sum_i w_i J_i^T (d2 l / d f2) J_i
        (positive semi-definite for losses convex in the output), plus lambda I in both cases.
    batch_size : int or None
        Rows per chunk; None picks chunks of about 2**22 numbers.
    task_names : list, optional
        Task labels, for messages.
    seed : int, default=0
        Seed of :meth:`initial_params`.

    Notes
    -----
    Capabilities: "affinity" always; "newton" for networks with one output (regression,
    binary classification), where each row's loss Hessian is taken as its Gauss-Newton term
    ``l''(f) J J^T``, rank one (exact removal Hessians would need one factorisation per row).
    """

    def __init__(self, functional, X, Y, codes, row_weights, losses, weight_decay, hessian,
                 batch_size=None, task_names=None, seed=0):
        self.functional = functional
        self.X, self.Y = X, Y
        self.codes = np.asarray(codes, dtype=np.int64)
        self.row_weights = np.asarray(row_weights, dtype=np.float64)
        self.losses = losses
        self.weight_decay = float(weight_decay)
        if hessian not in ("exact", "gauss_newton"):
            raise ValueError(f"hessian must be 'exact' or 'gauss_newton'; got {hessian!r}.")
        self.hessian = hessian
        self.batch_size = batch_size
        self.task_names = task_names
        self.seed = int(seed)
        self.n_tasks = functional.theta.shape[0]
        self.n_task_params = functional.n_task_params
        self.n_shared_params = functional.n_shared_params

    @property
    def capabilities(self):
        """"affinity", and "newton" when the heads have one output (rank-one row curvature)."""
        fn = self.functional
        with fn.torch.no_grad():
            n_outputs = fn.output(fn.theta[0], fn.gamma, self.X[:1]).shape[1]
        return frozenset({"affinity", "newton"} if n_outputs == 1 else {"affinity"})

    # -- helpers -------------------------------------------------------------------------------
    def _chunk(self, per_row):
        if self.batch_size is not None:
            return int(self.batch_size)
        return max(1, _CHUNK_NUMBERS // max(1, per_row))

    def _groups(self, rows):
        """(task k, positions in ``rows``, row indices) for every task present, in chunks."""
        index = np.arange(len(self.codes))[slice(None) if rows is None else rows]
        codes = self.codes[index]
        per_row = 4 * (self.n_task_params + self.n_shared_params)
        size = self._chunk(per_row)
        for k, positions in group_rows_by_task(codes):
            for start in range(0, positions.size, size):
                chunk = positions[start:start + size]
                yield k, chunk, index[chunk]

    def _n_rows(self, rows):
        return len(np.arange(len(self.codes))[slice(None) if rows is None else rows])

    def _rows_tensor(self, idx):
        return self.functional.torch.as_tensor(idx, device=self.X.device)

    def _tensors(self, params):
        """(theta (K, q), gamma (p,)) tensors of one point, float64 on the device."""
        torch, device = self.functional.torch, self.X.device
        return (torch.as_tensor(np.asarray(params.task), dtype=torch.float64, device=device),
                torch.as_tensor(np.asarray(params.shared), dtype=torch.float64, device=device))

    @staticmethod
    def _points(params):
        """The points of a batch (one point: a list of one)."""
        if not params.batched:
            return [params]
        return [Params(task, shared) for task, shared in zip(params.task, params.shared,
                                                              strict=True)]

    def _single_loss(self, k):
        fn, loss = self.functional, self.losses[k]

        def single(theta, gamma, x, y):
            return loss(fn.output(theta, gamma, x[None]), y[None])[0]

        return single

    # -- protocol ------------------------------------------------------------------------------
    def row_losses(self, params, rows=None):
        """Per-row loss (unweighted): (m,), or (M, m) at a batch of points."""
        if params.batched:
            return np.stack([self.row_losses(point, rows) for point in self._points(params)])
        torch, fn = self.functional.torch, self.functional
        theta, gamma = self._tensors(params)
        out = np.empty(self._n_rows(rows))
        with torch.no_grad():
            for k, pos, idx in self._groups(rows):
                t = self._rows_tensor(idx)
                out[pos] = _numpy(self.losses[k](fn.output(theta[k], gamma, self.X[t]),
                                                 self.Y[t]))
        return out

    def row_gradients(self, params, rows=None):
        """Gradients of every row's loss: task part (m, q) and shared part (m, p). At a batch of
        points, row i at point i."""
        from torch.func import grad, vmap

        n = self._n_rows(rows)
        task_part = np.empty((n, self.n_task_params))
        shared_part = np.empty((n, self.n_shared_params))
        theta, gamma = self._tensors(params)
        for k, pos, idx in self._groups(rows):
            t = self._rows_tensor(idx)
            gradient = grad(self._single_loss(k), argnums=(0, 1))
            if params.batched:  # row i at its own point i
                p = self._rows_tensor(pos)
                g_task, g_shared = vmap(gradient, in_dims=(0, 0, 0, 0))(
                    theta[p, k], gamma[p], self.X[t], self.Y[t])
            else:
                g_task, g_shared = vmap(gradient, in_dims=(None, None, 0, 0))(
                    theta[k], gamma, self.X[t], self.Y[t])
            task_part[pos] = _numpy(g_task)
            shared_part[pos] = _numpy(g_shared)
        return task_part, shared_part

    def row_curvatures(self, params, rows=None):
        """Each row's loss Hessian as its Gauss-Newton term ``l''(f_i) c_i c_i^T`` with
        ``c_i = d f_i / d(theta_k, gamma)`` (one output): (c task part (m, q), c shared part
        (m, p), l'' (m,)), unweighted."""
        from torch.func import hessian, jacrev, vmap

        fn = self.functional
        n = self._n_rows(rows)
        c_task, c_shared, curvature = (np.empty((n, self.n_task_params)),
                                       np.empty((n, self.n_shared_params)), np.empty(n))
        theta, gamma = self._tensors(params)

        def single(theta_k, gamma_, x):
            return fn.output(theta_k, gamma_, x[None])[0, 0]

        for k, pos, idx in self._groups(rows):
            t = self._rows_tensor(idx)
            J_t, J_s = vmap(jacrev(single, argnums=(0, 1)), in_dims=(None, None, 0))(
                theta[k], gamma, self.X[t])
            with fn.torch.no_grad():
                out = fn.output(theta[k], gamma, self.X[t])
            loss = self.losses[k]
            second = vmap(hessian(lambda o, y, loss=loss: loss(o[None], y[None])[0]))(
                out, self.Y[t])
            c_task[pos], c_shared[pos] = _numpy(J_t), _numpy(J_s)
            curvature[pos] = _numpy(second.reshape(len(idx), -1)[:, 0])
        return c_task, c_shared, curvature

    def task_sums(self, values):
        """Sum over each task's rows of ``values`` (n, ...) -> (n_tasks, ...)."""
        values = np.asarray(values, dtype=np.float64)
        out = np.zeros((self.n_tasks,) + values.shape[1:])
        np.add.at(out, self.codes, values)
        return out

    def task_gradients(self, params):
        """Gradient of every task's term T_k (its weighted data loss and its head's decay):
        task parts (K, q) and shared parts (K, p); a leading batch axis at a batch of points."""
        if params.batched:
            parts = [self.task_gradients(point) for point in self._points(params)]
            return np.stack([p[0] for p in parts]), np.stack([p[1] for p in parts])
        task_grad, shared_grad = self.row_gradients(params)
        weights = self.row_weights[:, None]
        decay = self.weight_decay * np.asarray(params.task)
        return (self.task_sums(task_grad * weights) + decay,
                self.task_sums(shared_grad * weights))

    def shared_penalty_gradient(self, params):
        """Gradient of the decay (lambda / 2) ||gamma||^2 of the attributed shared parameters."""
        return self.weight_decay * np.asarray(params.shared)

    def _block(self, k, theta, gamma, rows):
        """Hessian of task k's data term over ``rows`` w.r.t. (theta_k, gamma), (q+p, q+p)."""
        torch = self.functional.torch
        weights = torch.as_tensor(self.row_weights[rows], dtype=torch.float64,
                                  device=self.X.device)
        t = self._rows_tensor(rows)
        block = self._exact_block if self.hessian == "exact" else self._gauss_newton_block
        return block(k, theta[k], gamma, self.X[t], self.Y[t], weights)

    def _task_rows(self, k):
        return np.flatnonzero((self.codes == k) & (self.row_weights != 0))

    def _row_chunk(self):
        q, p = self.n_task_params, self.n_shared_params
        # Rows per chunk: the exact Hessian pushes q + p tangents through every row.
        return self._chunk((q + p) * (8 if self.hessian == "exact" else 2))

    def hessian_blocks(self, params, active=None):
        """:class:`~mtif_sklearn.base.ArrowBlocks` of the objective; ``active`` (bool, K) keeps
        only those tasks' terms in the shared block."""
        torch = self.functional.torch
        q, p, K = self.n_task_params, self.n_shared_params, self.n_tasks
        device = self.X.device
        theta, gamma = self._tensors(params)
        H_tt = torch.zeros((K, q, q), dtype=torch.float64, device=device)
        H_ts = torch.zeros((K, q, p), dtype=torch.float64, device=device)
        H_ss = torch.zeros((p, p), dtype=torch.float64, device=device)
        size = self._row_chunk()
        for k in range(K):
            rows = self._task_rows(k)
            for start in range(0, rows.size, size):
                block = self._block(k, theta, gamma, rows[start:start + size])
                H_tt[k] += block[:q, :q]
                H_ts[k] += block[:q, q:]
                if active is None or active[k]:
                    H_ss += block[q:, q:]
        H_tt += self.weight_decay * torch.eye(q, dtype=torch.float64, device=device)
        H_ss += self.weight_decay * torch.eye(p, dtype=torch.float64, device=device)
        H_tt = 0.5 * (H_tt + H_tt.transpose(1, 2))
        H_ss = 0.5 * (H_ss + H_ss.T)
        blocks = ArrowBlocks(_numpy(H_tt), _numpy(H_ts), _numpy(H_ss))
        if self.hessian == "exact" and active is None:
            _warn_if_indefinite(*blocks, self.task_names)
        return blocks

    def task_shared_hessian(self, params, task):
        """Task ``task``'s term's part of H_K+1,K+1 (its rows' data curvature in the shared
        parameters; the decay of gamma belongs to the shared block)."""
        q, p = self.n_task_params, self.n_shared_params
        theta, gamma = self._tensors(params)
        out = np.zeros((p, p))
        rows = self._task_rows(task)
        size = self._row_chunk()
        for start in range(0, rows.size, size):
            out += _numpy(self._block(task, theta, gamma, rows[start:start + size])[q:, q:])
        return 0.5 * (out + out.T)

    # -- training dynamics (the affinity baselines) ---------------------------------------------
    def shared_gradients(self, params):
        """Gradient of every task's mean data loss w.r.t. the shared parameters, (K, p)."""
        _, shared_grad = self.row_gradients(params)
        return self.task_sums(shared_grad * self.row_weights[:, None])

    def shared_step(self, params, direction):
        """Parameters after the shared step ``-direction``: the heads do not move."""
        return Params(np.array(params.task, copy=True), params.shared - direction)

    def initial_params(self, seed=None):
        """A seeded default initialisation of the same architecture (a network is degenerate at
        zero)."""
        return self.functional.initial_params(self.seed if seed is None else seed)

    # -- blocks ----------------------------------------------------------------------------------
    def _exact_block(self, k, theta_k, gamma, X, Y, w):
        """Exact Hessian of sum_i w_i l_i over these rows w.r.t. (theta_k, gamma_attributed)."""
        from torch.func import hessian

        fn, loss, q = self.functional, self.losses[k], self.n_task_params
        torch = fn.torch

        def total(u):
            return torch.sum(w * loss(fn.output(u[:q], u[q:], X), Y))

        return hessian(total)(torch.cat([theta_k, gamma]))

    def _gauss_newton_block(self, k, theta_k, gamma, X, Y, w):
        """sum_i w_i J_i^T (d2 l / d f2) J_i over these rows, J_i = d f / d(theta_k, gamma)."""
        from torch.func import hessian, jacrev, vmap

        fn, loss = self.functional, self.losses[k]
        torch = fn.torch

        def single(theta, gamma_, x):
            return fn.output(theta, gamma_, x[None])[0]

        J_t, J_s = vmap(jacrev(single, argnums=(0, 1)), in_dims=(None, None, 0))(
            theta_k, gamma, X)
        J = torch.cat([J_t, J_s], dim=2)  # (m, o, q + p)
        with torch.no_grad():
            out = fn.output(theta_k, gamma, X)

        def loss_single(o, y):
            return loss(o[None], y[None])[0]

        curvature = vmap(hessian(loss_single))(out, Y) * w[:, None, None]  # (m, o, o)
        weighted = torch.matmul(curvature, J)  # (m, o, q + p)
        m, o, n = J.shape
        return J.reshape(m * o, n).T @ weighted.reshape(m * o, n)

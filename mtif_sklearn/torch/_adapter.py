"""SharedBottomAdapter: MTIF for a shared-bottom torch model trained by the user."""

import warnings
from numbers import Integral, Real

import numpy as np
from scipy.sparse import issparse
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import (
    _check_sample_weight,
    check_array,
    check_is_fitted,
    validate_data,
)

from .._tasks import TaskData, check_task_labels, encode_tasks, group_rows_by_task, unique_tasks
from ._estimator import _TrainingData, resolve_device, train_lbfgs
from ._objective import FunctionalSharedBottom, TorchMultitaskObjective, import_torch, row_loss

__all__ = ["SharedBottomAdapter"]


def _split_model(model):
    """(shared module, heads) of a shared-bottom model, duck-typed.

    LibMTL-style models (``get_share_params()`` and ``decoders``) use their ``encoder``; other
    models need ``shared`` and ``heads`` attributes.
    """
    heads = getattr(model, "decoders", None)
    if heads is None:
        heads = getattr(model, "heads", None)
    shared = getattr(model, "encoder", None)
    if shared is None:
        shared = getattr(model, "shared", None)
    if shared is None or heads is None:
        raise ValueError(
            f"Cannot find the shared part and the heads of {type(model).__name__}: expected "
            "LibMTL-style attributes `encoder` and `decoders` (with get_share_params()), or "
            "`shared` and `heads`. Or pass shared=... and heads=... instead of model.")
    if hasattr(model, "get_share_params"):
        declared = {id(p) for p in model.get_share_params()}
        found = {id(p) for p in shared.parameters()}
        if declared != found:
            raise ValueError(
                "get_share_params() does not return exactly the parameters of model.encoder; "
                "the adapter needs the shared parameters to form one module. Pass shared=... "
                "and heads=... explicitly.")
    return shared, heads


def _writeable(X):
    """X itself, or a copy when it is read-only (torch wants writeable memory)."""
    return X if X.flags.writeable else X.copy()


def _heads_by_label(heads):
    """{task label: head} from a dict / ModuleDict (keys) or a list / ModuleList (0..K-1)."""
    if hasattr(heads, "items"):
        return dict(heads.items())
    return dict(enumerate(heads))


class SharedBottomAdapter(BaseEstimator):
    """MTIF for a shared-bottom torch model trained elsewhere (paper Example 2).

    Wraps an already trained network ``f_k(x) = head_k(shared(x))`` so that
    :class:`~mtif_sklearn.MTIFInfluence` can measure data- and task-level influence on it. The
    objective the influence refers to is the one the model should have been trained on:

        L = sum_k (1/n_k) sum_i w_ki loss_k(y_ki, f_k(x_ki))
            + (weight_decay / 2) (||gamma||^2 + sum_k ||theta_k||^2)

    (per-task weighted mean loss plus L2; pass the ``weight_decay`` the model was trained with,
    as an L2 coefficient). ``fit`` does not train: it records the tasks and the normalisers n_k
    of the training rows. Influence assumes the model is at a (local) minimum of L. Refits
    (:mod:`mtif_sklearn.retrain`: leave-one-out, leave-one-task-out) train a copy of the network
    from its current weights by full-batch L-BFGS on L (``max_iter``, ``tol``); the reference
    fit of a refit comparison is trained the same way, so both sides are equally converged.

    Parameters
    ----------
    model : torch.nn.Module, default=None
        The model: LibMTL-style (``encoder``, ``decoders``, ``get_share_params()``; LibMTL is not
        imported) or any object with ``shared`` and ``heads`` attributes. Alternatively pass
        ``shared`` and ``heads``.
    shared : torch.nn.Module, default=None
        The shared part f(gamma; x) (used when ``model`` is None).
    heads : dict, torch.nn.ModuleDict, list or torch.nn.ModuleList, default=None
        One head per task: keyed by task label (dict / ModuleDict), or task labels 0..K-1
        (list / ModuleList). All heads must have the same parameter shapes.
    loss : {"squared_error", "log_loss", "cross_entropy"}, callable or dict, default="squared_error"
        Per-row loss on a head's output (``loss(output (m, o), target (m,)) -> (m,)``;
        "cross_entropy" takes integer class targets, "log_loss" one logit and 0/1 targets), or a
        dict of them per task label.
    weight_decay : float, default=0.0
        L2 coefficient lambda of the objective.
    attribute : {"all", "last", "auto"} or list of str, default="auto"
        Shared parameters attributed (names from ``shared.named_parameters()``); the others are
        held fixed. "auto": all when at most 2000 numbers, else the last shared layer.
    hessian : {"gauss_newton", "exact"}, default="gauss_newton"
        Gauss-Newton (positive semi-definite) or exact Hessian blocks.
    batch_size : int, default=None
        Rows per chunk for per-row gradients and Hessian blocks (bounded memory); None picks
        chunks of about 2**22 numbers.
    device : str, default=None
        Torch device for the computation (float64); None: the device of the shared module.
    max_iter : int, default=1000
        L-BFGS iterations of a refit (only :mod:`mtif_sklearn.retrain` refits; ``fit`` never
        trains).
    tol : float, default=1e-8
        Gradient tolerance of a refit's L-BFGS.

    Attributes
    ----------
    tasks_ : ndarray of shape (n_tasks,)
        Sorted task labels (the heads' labels).
    task_weight_sum_ : ndarray of shape (n_tasks,)
        n_k, the total sample weight of each task's training rows.
    n_features_in_ : int
        Number of columns of ``X`` in fit (2-D input).

    Examples
    --------
    >>> import torch
    >>> from mtif_sklearn.torch import SharedBottomAdapter
    >>> shared = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh()).double()
    >>> heads = torch.nn.ModuleDict({"a": torch.nn.Linear(4, 1), "b": torch.nn.Linear(4, 1)})
    >>> adapter = SharedBottomAdapter(shared=shared, heads=heads.double(), weight_decay=0.1)
    >>> X, y = torch.randn(6, 3).double().numpy(), torch.randn(6).double().numpy()
    >>> adapter.fit(X, y, tasks=["a", "b"] * 3).tasks_.tolist()
    ['a', 'b']
    """

    __metadata_request__fit = {"tasks": True}
    __metadata_request__predict = {"tasks": True}

    _parameter_constraints: dict = {
        "model": [object, None],
        "shared": [object, None],
        "heads": [object, None],
        "loss": [StrOptions({"squared_error", "log_loss", "cross_entropy"}), callable, dict],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "attribute": [StrOptions({"auto", "all", "last"}), list],
        "hessian": [StrOptions({"exact", "gauss_newton"})],
        "batch_size": [Interval(Real, 1, None, closed="left"), None],
        "device": [str, None],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "tol": [Interval(Real, 0, None, closed="left")],
    }

    def __init__(self, model=None, *, shared=None, heads=None, loss="squared_error",
                 weight_decay=0.0, attribute="auto", hessian="gauss_newton", batch_size=None,
                 device=None, max_iter=1000, tol=1e-8):
        self.model = model
        self.shared = shared
        self.heads = heads
        self.loss = loss
        self.weight_decay = weight_decay
        self.attribute = attribute
        self.hessian = hessian
        self.batch_size = batch_size
        self.device = device
        self.max_iter = max_iter
        self.tol = tol

    def _parts(self):
        if self.model is not None:
            shared, heads = _split_model(self.model)
        elif self.shared is None or self.heads is None:
            raise ValueError("Pass model=..., or both shared=... and heads=... .")
        else:
            shared, heads = self.shared, self.heads
        by_label = _heads_by_label(heads)
        labels = unique_tasks(check_task_labels(list(by_label), len(by_label), name="heads"))
        lookup = {(k.item() if hasattr(k, "item") else k): v for k, v in by_label.items()}
        ordered = [lookup[label.item() if hasattr(label, "item") else label]
                   for label in labels]
        return shared, ordered, labels

    def _device(self, shared):
        if self.device is not None:
            return resolve_device(self.device)
        first = next(shared.parameters(), None)
        return first.device if first is not None else resolve_device("cpu")

    def _labels(self, tasks, n_rows):
        if tasks is None:
            if len(self.tasks_) > 1:
                raise ValueError("This model has several heads: pass tasks=... (one label per "
                                 "row).")
            return np.zeros(n_rows, dtype=np.int64)
        return encode_tasks(check_task_labels(tasks, n_rows), self.tasks_)

    def fit(self, X, y=None, tasks=None, sample_weight=None):
        """Record the tasks and the normalisers n_k of the training rows (no training).

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Training inputs, as the shared module takes them.
        y : array-like of shape (n_samples,), default=None
            Targets (unused here; accepted for API consistency).
        tasks : array-like of shape (n_samples,), default=None
            Task label of every row (required with more than one head).
        sample_weight : array-like of shape (n_samples,), default=None
            Row weights w_ki.

        Returns
        -------
        self : SharedBottomAdapter
        """
        self._validate_params()
        return self._mtif_fit(self._mtif_data(X, y, tasks, sample_weight, reset=True))

    def _losses(self):
        if isinstance(self.loss, dict):
            missing = [t for t in self.tasks_.tolist() if t not in self.loss]
            if missing:
                raise ValueError(f"loss is a dict but has no loss for task(s) {missing[:5]}.")
            return [self.loss[t] for t in self.tasks_.tolist()]
        return [self.loss] * len(self.tasks_)

    def _loss_names(self):
        names = self._losses()
        if any(isinstance(n, str) and n == "cross_entropy" for n in names) and \
                len(set(map(str, names))) > 1:
            raise ValueError("'cross_entropy' cannot be mixed with other losses across tasks "
                             "(its targets are one-hot); use a callable per task instead.")
        return names

    def _targets(self, torch, y, functional, X, names):
        Y = torch.as_tensor(np.asarray(y, dtype=np.float64), device=X.device)
        if "cross_entropy" not in [n for n in names if isinstance(n, str)]:
            return Y
        with torch.no_grad():
            n_classes = functional.output(functional.theta[0], functional.gamma, X[:1]).shape[1]
        return torch.nn.functional.one_hot(Y.long(), n_classes).to(torch.float64)

    # -- estimator hooks of the multitask objective protocol (mtif_sklearn.base) ----------------
    _mtif_capabilities = frozenset({"refit"})
    _mtif_regularisers = ("weight_decay",)

    def _mtif_data(self, X, y=None, tasks=None, sample_weight=None, *, reset,
                   unknown="error"):
        """Rows as a :class:`~mtif_sklearn._tasks.TaskData`; the task labels are the heads'."""
        if reset:
            shared, _, self.tasks_ = self._parts()
        else:
            check_is_fitted(self)
        if issparse(X):
            raise TypeError("SharedBottomAdapter does not support sparse input X: the network "
                            "takes dense tensors. Convert it with .toarray().")
        X = validate_data(self, X, reset=reset, allow_nd=True, dtype=np.float64,
                          ensure_all_finite=True)
        if reset:
            self._check_network_takes(shared, X)
        if y is not None:
            y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
            if y.shape[0] != X.shape[0]:
                raise ValueError(f"y has {y.shape[0]} rows but X has {X.shape[0]}.")
        codes = self._labels(tasks, X.shape[0])
        weights = _check_sample_weight(sample_weight, np.empty((X.shape[0], 0)),
                                       dtype=np.float64, ensure_non_negative=True)
        recorded = {name: getattr(self, name, None)
                    for name in ("n_features_in_", "feature_names_in_")}
        return TaskData(X, y, codes, self.tasks_, weights, recorded if reset else {})

    def _check_network_takes(self, shared, X):
        """A clear error when the wrapped network cannot take rows shaped like X."""
        torch = import_torch()
        first = next(shared.parameters(), None)
        dtype = first.dtype if first is not None else torch.float64
        try:
            with torch.no_grad():
                shared(torch.tensor(X[:1], dtype=dtype, device=self._device(shared)))
        except RuntimeError as exc:
            raise ValueError(
                f"The shared module cannot take rows of X, whose shape is {X.shape} ({exc}). "
                "Pass X with the columns (and shape) the network was trained on."
            ) from exc

    def _mtif_fit(self, data, *, task_weight_sum=None):
        """Record the tasks and the normalisers n_k (the network is already trained)."""
        data.record_on(self, task_weight_sum)
        return self

    def _mtif_refit(self, data, *, task_weight_sum=None, dropped_tasks=(), init=None):
        """Train this (cloned) network from its weights, or ``init``, by full-batch L-BFGS on
        the objective; ``dropped_tasks`` (codes) leave the shared fit (eq. 11) and get their
        head trained against the final shared layers."""
        torch = import_torch()
        self._mtif_fit(data, task_weight_sum=task_weight_sum)
        shared, heads, _ = self._parts()
        modules = [shared, *heads]
        if init is not None:
            for module, state in zip(modules, init, strict=True):
                module.load_state_dict({name: torch.as_tensor(value)
                                        for name, value in state.items()})
        device = self._device(shared)
        for module in modules:
            module.to(device=device, dtype=torch.float64)
        functional = FunctionalSharedBottom(shared, heads, "all", device)
        names = self._loss_names()
        training = _TrainingData(torch, np.asarray(data.X, dtype=np.float64), np.zeros(1),
                                 data.codes,
                                 data.sample_weight / self.task_weight_sum_[data.codes],
                                 data.n_tasks, device)
        training.Y = self._targets(torch, data.y, functional, training.X, names)
        net = {"shared": shared, "heads": heads}
        losses = [row_loss(n) for n in names]
        active = np.ones(data.n_tasks, dtype=bool)
        active[np.asarray(dropped_tasks, dtype=np.int64)] = False
        for mask, train_shared in ((active, True), (~active, False)):
            params = [p for k in np.flatnonzero(mask) for p in heads[int(k)].parameters()]
            if train_shared:
                params = list(shared.parameters()) + params
            params = [p for p in params if p.requires_grad]
            rows = np.flatnonzero(mask[data.codes] & (training.row_weights > 0))
            if rows.size == 0 or not params:
                continue

            def penalty(params=params):
                return 0.5 * self.weight_decay * sum(torch.sum(p * p) for p in params)

            n_iter = train_lbfgs(training, net, losses, params, penalty, rows, train_shared,
                                 self.max_iter, self.tol)
            if n_iter >= self.max_iter:
                warnings.warn(
                    f"SharedBottomAdapter refit: L-BFGS reached max_iter={self.max_iter} "
                    f"before the gradient fell below tol={self.tol}; increase max_iter.",
                    ConvergenceWarning, stacklevel=3)
        return self

    def _mtif_objective(self, data, *, view="influence"):
        """The objective on the rows of ``data``: what MTIFInfluence talks to. ``view=
        "training"``: every shared parameter attributed, Gauss-Newton curvature."""
        check_is_fitted(self)
        torch = import_torch()
        shared, heads, _ = self._parts()
        device = self._device(shared)
        names = self._loss_names()
        functional = FunctionalSharedBottom(
            shared, heads, "all" if view == "training" else self.attribute, device)
        X_tensor = torch.as_tensor(_writeable(data.X), dtype=torch.float64, device=device)
        Y = self._targets(torch, data.y, functional, X_tensor, names)
        return TorchMultitaskObjective(
            functional, X_tensor, Y, data.codes,
            data.sample_weight / self.task_weight_sum_[data.codes],
            [row_loss(n) for n in names], self.weight_decay,
            "gauss_newton" if view == "training" else self.hessian,
            batch_size=None if self.batch_size is None else int(self.batch_size),
            task_names=self.tasks_.tolist())

    def _mtif_params(self, view="influence"):
        """The network's attributed parameters (all shared ones for ``view="training"``)."""
        check_is_fitted(self)
        shared, heads, _ = self._parts()
        return FunctionalSharedBottom(shared, heads, "all" if view == "training"
                                      else self.attribute, self._device(shared)).fitted_params()

    def _mtif_warm_start(self):
        """State dicts of the shared module and every head (NumPy), to warm-start a refit."""
        shared, heads, _ = self._parts()
        return [{name: value.detach().cpu().numpy().copy()
                 for name, value in module.state_dict().items()} for module in (shared, *heads)]

    def predict(self, X, tasks=None):
        """Outputs of every row's task head.

        Parameters
        ----------
        X : array-like of shape (n_samples, ...)
            Inputs.
        tasks : array-like of shape (n_samples,), default=None
            Task of every row.

        Returns
        -------
        outputs : ndarray of shape (n_samples, n_outputs)
        """
        torch = import_torch()
        data = self._mtif_data(X, None, tasks, reset=False)
        X, codes = data.X, data.codes
        shared, heads, _ = self._parts()
        functional = FunctionalSharedBottom(shared, heads, "all", self._device(shared))
        x = torch.as_tensor(_writeable(X), dtype=torch.float64, device=functional.device)
        out = None
        with torch.no_grad():
            for k, rows in group_rows_by_task(codes):
                values = functional.output(functional.theta[k], functional.gamma,
                                           x[torch.as_tensor(rows, device=x.device)])
                if out is None:
                    out = np.empty((X.shape[0], values.shape[1]))
                out[rows] = values.cpu().numpy()
        return out

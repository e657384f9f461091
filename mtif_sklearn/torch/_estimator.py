"""SharedBottomRegressor, SharedBottomClassifier: shared-bottom MLPs for multitask tabular data."""

import copy
import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import (
    _check_sample_weight,
    check_is_fitted,
)

from .._tasks import (
    TaskData,
    fit_task_codes,
    group_rows_by_task,
    prediction_task_codes,
    train_validation_split_by_task,
    validate_task_data,
)
from ..utils._docstring import (
    DECISION_FUNCTION,
    DOCS,
    PREDICT,
    PREDICT_LABELS,
    PREDICT_LOG_PROBA,
    PREDICT_PROBA,
    SCORE_ACCURACY,
    SCORE_R2,
    Substitution,
    doc,
)
from ._objective import FunctionalSharedBottom, TorchMultitaskObjective, import_torch, row_loss

__all__ = ["SharedBottomClassifier", "SharedBottomRegressor"]


def resolve_device(device):
    """``torch.device`` for a device string, with a clear error when CUDA is unavailable."""
    torch = import_torch()
    resolved = torch.device(device)
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device={device!r} was requested but torch.cuda.is_available() is "
                           "False (no CUDA GPU or a CPU-only torch build). Use device='cpu'.")
    return resolved


def _build_network(n_features, hidden_layer_sizes, activation, n_tasks, n_outputs, seed):
    """nn.ModuleDict(shared=Sequential MLP, heads=ModuleList of Linear), float64, seeded.

    Only standard torch classes are used so that the fitted estimator pickles.
    """
    torch = import_torch()
    nn = torch.nn
    act = {"tanh": nn.Tanh, "relu": nn.ReLU}[activation]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layers, width = [], n_features
        for size in hidden_layer_sizes:
            layers += [nn.Linear(width, size, dtype=torch.float64), act()]
            width = size
        heads = nn.ModuleList(nn.Linear(width, n_outputs, dtype=torch.float64)
                              for _ in range(n_tasks))
        return nn.ModuleDict({"shared": nn.Sequential(*layers), "heads": heads})


def train_lbfgs(data, net, loss, params, penalty, rows, train_shared, max_iter, tol):
    """Full-batch L-BFGS (strong Wolfe) on ``data.objective`` over ``rows`` plus ``penalty()``.

    ``net`` maps "shared" to the shared module and "heads" to the heads in task-code order;
    ``loss`` is one row loss or a list of them per task. With ``train_shared=False`` the
    shared output is computed once and held fixed. Returns the L-BFGS iterations.
    """
    torch = data.torch
    optimizer = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, max_eval=2 * max_iter,
                                  tolerance_grad=tol, tolerance_change=1e-14, history_size=20,
                                  line_search_fn="strong_wolfe")
    full = data.index(rows)
    shared_frozen = None
    if not train_shared:
        with torch.no_grad():
            shared_frozen = net["shared"](data.X)

    def closure():
        optimizer.zero_grad()
        value = data.objective(net, loss, full, shared_frozen) + penalty()
        value.backward()
        return value

    optimizer.step(closure)
    return int(optimizer.state[optimizer._params[0]].get("n_iter", 0))


class _BaseSharedBottom(BaseEstimator):
    """Shared machinery: validation, task handling, training, and the MTIF protocol."""

    __metadata_request__fit = {"tasks": True}
    __metadata_request__predict = {"tasks": True}
    __metadata_request__score = {"tasks": True}

    _parameter_constraints: dict = {
        "hidden_layer_sizes": ["array-like", Interval(Integral, 1, None, closed="left")],
        "activation": [StrOptions({"tanh", "relu"})],
        "solver": [StrOptions({"lbfgs", "adam"})],
        "weight_decay": [Interval(Real, 0, None, closed="left")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
        "batch_size": [Interval(Integral, 1, None, closed="left"), None],
        "tol": [Interval(Real, 0, None, closed="left")],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(Integral, 1, None, closed="left")],
        "attribute": [StrOptions({"auto", "all", "last"}), list],
        "hessian": [StrOptions({"exact", "gauss_newton"})],
        "task_column": [str, Integral, None],
        "device": [str],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
    }

    def __init__(self, hidden_layer_sizes=(32,), *, activation="tanh", solver="lbfgs",
                 weight_decay=1e-3, max_iter=1000, learning_rate=1e-3, batch_size=None, tol=1e-6,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 attribute="auto", hessian="gauss_newton", task_column=None, device="cpu",
                 random_state=None, verbose=0):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.weight_decay = weight_decay
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.tol = tol
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.attribute = attribute
        self.hessian = hessian
        self.task_column = task_column
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # -- to be provided by subclasses -----------------------------------------------------------
    _is_classifier = False

    def _encode_targets(self, y, *, reset):
        """(targets tensor-ready array, loss name, number of outputs)."""
        raise NotImplementedError

    # -- validation ----------------------------------------------------------------------------
    def _hidden_sizes(self):
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, Integral) else list(sizes)
        if not sizes or any(not isinstance(s, Integral) or s < 1 for s in sizes):
            raise ValueError(
                "hidden_layer_sizes must hold at least one positive int (the shared layers); "
                f"got {self.hidden_layer_sizes!r}.")
        return [int(s) for s in sizes]

    def _validate_features(self, X, tasks, *, reset, y=None):
        return validate_task_data(self, X, tasks, reset=reset, y=y,
                                  y_numeric=not self._is_classifier)

    def _task_codes(self, labels, n_samples):
        return prediction_task_codes(self, labels, n_samples)

    # -- fitting -------------------------------------------------------------------------------
    def _mtif_fit(self, data, *, task_weight_sum=None, dropped_tasks=(), init=None):
        """Train the network on validated rows (see :class:`mtif_sklearn.base.MultitaskModel`).

        ``task_weight_sum`` fixes the normalisers n_k; ``dropped_tasks`` (task codes) leave the
        shared fit with their rows and their head's decay (eq. 11), then get their head trained
        against the final shared layers; ``init`` (a state dict from
        :meth:`_mtif_warm_start`) warm-starts.
        """
        self._validate_params()
        torch = import_torch()
        hidden = self._hidden_sizes()
        data.record_on(self, task_weight_sum)
        codes, n_tasks, n_samples = data.codes, data.n_tasks, data.n_samples
        sample_weight = data.sample_weight
        device = resolve_device(self.device)
        rng = check_random_state(self.random_state)
        seed = int(rng.randint(np.iinfo(np.int32).max))
        net = _build_network(data.X.shape[1], hidden, self.activation, n_tasks,
                             self.n_outputs_, seed)
        if init is not None:
            net.load_state_dict({name: torch.as_tensor(np.asarray(value))
                                 for name, value in init.items()})
        net = net.to(device)

        active = np.ones(n_tasks, dtype=bool)
        active[np.asarray(dropped_tasks, dtype=np.int64)] = False
        row_weights = sample_weight / self.task_weight_sum_[codes]
        train_rows = np.arange(n_samples)
        val_rows = None
        if self.early_stopping and self.solver == "adam":
            train_rows, val_rows = train_validation_split_by_task(
                codes, n_tasks, self.validation_fraction, rng,
                task_names=self.tasks_.tolist())
            # The training rows of each task keep a per-task mean (normalised over themselves).
            kept = np.bincount(codes[train_rows], weights=sample_weight[train_rows],
                               minlength=n_tasks)
            row_weights = sample_weight / np.where(kept > 0, kept, 1.0)[codes]

        training = _TrainingData(torch, data.X, data.y, codes, row_weights, n_tasks, device)
        loss = row_loss(self._loss_name)
        self.n_iter_ = self._train(training, net, loss, active, True, train_rows, val_rows, rng)
        if not active.all():  # dropped tasks: heads only, against the final shared layers
            self._train(training, net, loss, ~active, False, train_rows, None, rng)
        self.module_ = net.to("cpu").eval()
        return self

    def _train(self, data, net, loss, tasks_mask, train_shared, train_rows, val_rows, rng):
        torch = data.torch
        heads = net["heads"]
        params = [p for k in np.flatnonzero(tasks_mask) for p in heads[int(k)].parameters()]
        if train_shared:
            params = list(net["shared"].parameters()) + params
        decay = self.weight_decay

        def penalty():
            return 0.5 * decay * sum(torch.sum(p * p) for p in params) if decay else 0.0

        rows = train_rows[tasks_mask[data.codes[train_rows]]
                          & (data.row_weights[train_rows] > 0)]
        if rows.size == 0:
            return 0
        if self.solver == "lbfgs":
            n_iter = train_lbfgs(data, net, loss, params, penalty, rows, train_shared,
                                 self.max_iter, self.tol)
            if n_iter >= self.max_iter:
                warnings.warn(
                    f"{type(self).__name__}: L-BFGS reached max_iter={self.max_iter} before "
                    f"the gradient fell below tol={self.tol}; increase max_iter. Influence "
                    "assumes the objective is minimised.", ConvergenceWarning, stacklevel=4)
            return n_iter

        optimizer = torch.optim.Adam(params, lr=self.learning_rate)
        batch = min(self.batch_size or 200, rows.size)
        best, best_state, stall, epoch = np.inf, None, 0, 0
        shared_frozen = None
        if not train_shared:  # heads only: the shared layers' output is fixed
            with torch.no_grad():
                shared_frozen = net["shared"](data.X)
        for epoch in range(1, self.max_iter + 1):
            order = rng.permutation(rows)
            for start in range(0, order.size, batch):
                chunk = order[start:start + batch]
                optimizer.zero_grad()
                value = (data.objective(net, loss, data.index(chunk), shared_frozen)
                         * (rows.size / chunk.size) + penalty())
                value.backward()
                optimizer.step()
            if val_rows is not None:
                with torch.no_grad():
                    score = float(data.validation_objective(net, loss, val_rows))
                if score < best - self.tol:
                    best, stall = score, 0
                    best_state = copy.deepcopy(net.state_dict())
                else:
                    stall += 1
                if self.verbose:
                    print(f"epoch {epoch}: validation objective {score:.6g}")
                if stall >= self.n_iter_no_change:
                    break
        if best_state is not None:
            net.load_state_dict(best_state)
            self.best_validation_objective_ = best
        return epoch

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y, tasks=None, sample_weight=None):
        """Train the shared-bottom network.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows (with the task column when ``task_column`` is set).
        y : array-like of shape (n_samples,)
            Targets.
        tasks : array-like of shape (n_samples,), default=None
            Task label of every row. Without it (and without ``task_column``) all rows form one
            task.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative row weights (w_ki in the objective).

        Returns
        -------
        self : object
            The fitted estimator.
        """
        self._validate_params()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y "
                             "is None.")
        self._hidden_sizes()
        return self._mtif_fit(self._mtif_data(X, y, tasks, sample_weight, reset=True))

    # -- prediction ----------------------------------------------------------------------------
    def _raw_outputs(self, X, tasks):
        """Network outputs (n, o) of every row's task head."""
        torch = import_torch()
        data = self._mtif_data(X, None, tasks, reset=False)
        codes = data.codes
        device = resolve_device(self.device)
        net = copy.deepcopy(self.module_).to(device)
        out = np.empty((data.n_samples, self.n_outputs_))
        with torch.no_grad():
            x = torch.tensor(data.X, dtype=torch.float64, device=device)
            z = net["shared"](x)
            for k, rows in group_rows_by_task(codes):
                index = torch.as_tensor(rows, device=device)
                out[rows] = net["heads"][k](z[index]).cpu().numpy()
        return out

    # -- estimator hooks of the multitask objective protocol (mtif_sklearn.base) ----------------
    _mtif_capabilities = frozenset({"refit"})
    _mtif_regularisers = ("weight_decay",)

    def _mtif_data(self, X, y=None, tasks=None, sample_weight=None, *, reset,
                   unknown="error"):
        """Validate rows once into a :class:`~mtif_sklearn._tasks.TaskData` (targets encoded
        for the loss; ``reset=True`` before fitting)."""
        if not reset:
            check_is_fitted(self)
        X_features, labels, y = self._validate_features(X, tasks, reset=reset, y=y)
        n_samples = X_features.shape[0]
        if reset:
            task_labels, codes = fit_task_codes(labels, n_samples)
        else:
            task_labels = self.tasks_
            codes = self._task_codes(labels, n_samples)
        targets = None
        if y is not None:
            targets, loss_name, n_outputs = self._encode_targets(y, reset=reset)
            if reset:
                self._loss_name, self.n_outputs_ = loss_name, n_outputs
        sample_weight = _check_sample_weight(sample_weight, X_features, dtype=np.float64,
                                             ensure_non_negative=True)
        recorded = {name: getattr(self, name, None) for name in (
            "n_features_in_", "feature_names_in_", "classes_", "_loss_name", "n_outputs_")}
        return TaskData(X_features, targets, codes, task_labels, sample_weight,
                        recorded if reset else {}, getattr(X, "index", None))

    def _functional(self, view):
        attribute = "all" if view == "training" else self.attribute
        return FunctionalSharedBottom(self.module_["shared"], list(self.module_["heads"]),
                                      attribute, resolve_device(self.device))

    def _mtif_objective(self, data, *, view="influence"):
        """The trained objective on the rows of ``data`` (weights ``sample_weight /
        task_weight_sum_``, eq. 5). ``view="training"``: every shared parameter attributed and
        Gauss-Newton curvature (the affinity baselines)."""
        check_is_fitted(self)
        torch = import_torch()
        functional = self._functional(view)
        device = functional.device
        seed = self.random_state if isinstance(self.random_state, Integral) else 0
        return TorchMultitaskObjective(
            functional, torch.tensor(data.X, dtype=torch.float64, device=device),
            torch.tensor(data.y, dtype=torch.float64, device=device), data.codes,
            data.sample_weight / self.task_weight_sum_[data.codes],
            [row_loss(self._loss_name)] * len(self.tasks_), self.weight_decay,
            "gauss_newton" if view == "training" else self.hessian,
            task_names=self.tasks_.tolist(), seed=seed)

    def _mtif_params(self, view="influence"):
        """The attributed parameters of the trained network (all shared ones for
        ``view="training"``)."""
        check_is_fitted(self)
        return self._functional(view).fitted_params()

    def _mtif_warm_start(self):
        """The fitted weights (a state dict of NumPy arrays), to warm-start a refit."""
        check_is_fitted(self)
        return {name: value.detach().cpu().numpy().copy()
                for name, value in self.module_.state_dict().items()}

    _mtif_refit = _mtif_fit

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        tags.input_tags.sparse = False
        return tags


class _TrainingData:
    """Training rows on the device and the (weighted) data term of the objective."""

    @property
    def torch(self):
        """The torch module (looked up, not stored: a module does not pickle)."""
        return import_torch()

    def __init__(self, torch, X, targets, codes, row_weights, n_tasks, device):
        self.X = torch.tensor(X, dtype=torch.float64, device=device)  # a copy (X may be read-only)
        self.Y = torch.tensor(targets, dtype=torch.float64, device=device)
        self.codes = codes
        self.row_weights = row_weights
        self.weights = torch.as_tensor(row_weights, dtype=torch.float64, device=device)
        self.n_tasks = n_tasks
        self.device = device

    def index(self, rows):
        """Rows grouped by task: [(k, index tensor)]."""
        rows = np.asarray(rows)
        codes = self.codes[rows]
        return [(k, self.torch.as_tensor(rows[positions], device=self.device))
                for k, positions in group_rows_by_task(codes)]

    def objective(self, net, loss, groups, shared_frozen=None):
        """sum_i w_i / n_k l_i over the grouped rows (heads of the groups' tasks)."""
        total = 0.0
        all_rows = self.torch.cat([index for _, index in groups])
        z_all = (net["shared"](self.X[all_rows]) if shared_frozen is None
                 else shared_frozen[all_rows])
        start = 0
        for k, index in groups:
            z = z_all[start:start + index.numel()]
            start += index.numel()
            out = net["heads"][k](z)
            loss_k = loss[k] if isinstance(loss, list) else loss
            total = total + self.torch.sum(self.weights[index] * loss_k(out, self.Y[index]))
        return total

    def validation_objective(self, net, loss, rows):
        """Sum over tasks of the mean loss on the validation rows (early stopping)."""
        total = 0.0
        for k, index in self.index(rows):
            out = net["heads"][k](net["shared"](self.X[index]))
            total += float(self.torch.mean(loss(out, self.Y[index])))
        return total


@Substitution(**DOCS)
class SharedBottomRegressor(RegressorMixin, _BaseSharedBottom):
    """Shared-bottom MLP for multitask regression (paper Example 2), with the MTIF protocol.

    Every task k predicts with ``f_k(x) = g(theta_k; f(gamma; x))``: a shared MLP
    f (``hidden_layer_sizes``, the "bottom") and one linear head g per task. Training minimises

        L = sum_k (1/n_k) sum_i w_ki (y_ki - f_k(x_ki))^2
            + (weight_decay / 2) (||gamma||^2 + sum_k ||theta_k||^2),

    the sum over tasks of each task's weighted mean squared error (n_k = total weight of task k)
    plus weight decay as an explicit L2 term (Adam is given the gradient of this term, not
    decoupled decay), so that :class:`~mtif_sklearn.MTIFInfluence`, whose Hessian includes the
    L2 term, refers to the objective that was trained. Influence assumes a (local) minimum:
    ``solver="lbfgs"`` (full batch, default) gets there to ``tol``; Adam and early stopping stop
    elsewhere and make influence approximate. Everything runs in float64 (small tabular
    networks; exact Hessian blocks need it).

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(32,)
        Widths of the shared layers (at least one).
    activation : {"tanh", "relu"}, default="tanh"
        Activation of the shared layers. tanh is smooth, so its exact Hessian is informative;
        relu has zero second derivative almost everywhere.
    solver : {"lbfgs", "adam"}, default="lbfgs"
        Full-batch L-BFGS with a strong-Wolfe line search (deterministic, converges to a
        stationary point: what influence functions and warm-started refits need), or
        minibatch Adam.
    weight_decay : float, default=1e-3
        lambda of the L2 term (lambda / 2) ||params||^2 on all weights and biases.
    max_iter : int, default=1000
        L-BFGS iterations, or Adam epochs.
    learning_rate : float, default=1e-3
        Adam step size (ignored by L-BFGS).
    batch_size : int, default=None
        Adam minibatch size (None: min(200, n_samples)); each minibatch term is rescaled so that
        it estimates the full objective.
    tol : float, default=1e-6
        L-BFGS stops when the largest absolute gradient entry is below ``tol``; with early
        stopping, the improvement a validation objective must make.
    early_stopping : bool, default=False
        Adam only: hold out ``validation_fraction`` of every task's rows, stop when the
        validation objective (sum of per-task mean losses) has not improved for
        ``n_iter_no_change`` epochs, and keep the best weights.
    validation_fraction : float, default=0.1
        Held-out fraction per task for early stopping.
    n_iter_no_change : int, default=10
        Patience of early stopping, in epochs.
    attribute : {"auto", "all", "last"} or list of str, default="auto"
        Shared parameters whose Hessian block MTIF uses (the heads are always included): "all",
        "last" (the last shared layer; the others are held fixed), "auto" (all when there are
        at most 2000 shared parameters, else the last layer), or parameter names of the
        shared ``nn.Sequential`` (e.g. ``["2.weight", "2.bias"]``).
    hessian : {"gauss_newton", "exact"}, default="gauss_newton"
        Hessian blocks for MTIF: the Gauss-Newton matrix (positive semi-definite; definite
        with weight_decay > 0) or exact second derivatives (can be indefinite for a network:
        a warning says which damping or option fixes it).
    task_column : str or int, default=None
        Column of ``X`` holding the task labels; not used as a feature.
    device : str, default="cpu"
        Torch device for training, prediction and influence ("cpu", "cuda", "cuda:1", ...).
        The fitted module is kept on the CPU so that the estimator pickles anywhere.
    random_state : int, RandomState instance or None, default=None
        Seed of the weight initialisation and of Adam's minibatches and validation split.
    verbose : int, default=0
        Print the validation objective per epoch (early stopping) when > 0.

    Attributes
    ----------
    module_ : torch.nn.ModuleDict
        The trained network: ``module_["shared"]`` (nn.Sequential) and ``module_["heads"]``
        (nn.ModuleList, one nn.Linear per task in ``tasks_`` order), float64, on the CPU.
    tasks_ : ndarray of shape (n_tasks,)
        Sorted task labels seen in fit.
    task_weight_sum_ : ndarray of shape (n_tasks,)
        n_k, the total sample weight of each task.
    n_outputs_ : int
        Outputs of every head (1).
    n_iter_ : int
        L-BFGS iterations or Adam epochs run.
    best_validation_objective_ : float
        Best validation objective (only with early stopping).
    n_features_in_ : int
        Number of columns of ``X`` in fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names of ``X`` in fit, when it had string column names.

    See Also
    --------
    SharedBottomClassifier : The same network with cross-entropy.
    SharedBottomAdapter : MTIF for a shared-bottom torch model trained elsewhere.

    References
    ----------
    {ref_mtif}

    Examples
    --------
    >>> from mtif_sklearn.torch import SharedBottomRegressor
    >>> from mtif_sklearn.datasets import make_multitask_regression
    >>> X, y, tasks = make_multitask_regression(n_tasks=3, n_samples_per_task=40,
    ...                                         n_features=4, random_state=0)
    >>> reg = SharedBottomRegressor((8,), max_iter=50, random_state=0).fit(X, y, tasks=tasks)
    >>> reg.predict(X[:2], tasks=tasks[:2]).shape
    (2,)
    """

    def _encode_targets(self, y, *, reset):
        return np.asarray(y, dtype=np.float64), "squared_error", 1

    @doc(PREDICT)
    def predict(self, X, tasks=None):
        return self._raw_outputs(X, tasks)[:, 0]

    @doc(SCORE_R2)
    def score(self, X, y, tasks=None, sample_weight=None):
        return r2_score(y, self.predict(X, tasks=tasks), sample_weight=sample_weight)


@Substitution(**DOCS)
class SharedBottomClassifier(ClassifierMixin, _BaseSharedBottom):
    """Shared-bottom MLP for multitask classification (paper Example 2), with the MTIF protocol.

    The network and objective are those of :class:`SharedBottomRegressor` with the squared
    error replaced by cross-entropy: binary y (two classes overall) gives one logit per head
    and the logistic loss, more classes give one logit per class and softmax cross-entropy.
    ``classes_`` are shared by all tasks (a task may see only some of them).

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(32,)
        Widths of the shared layers (at least one).
    activation : {"tanh", "relu"}, default="tanh"
        Activation of the shared layers.
    solver : {"lbfgs", "adam"}, default="lbfgs"
        Full-batch L-BFGS or minibatch Adam (see :class:`SharedBottomRegressor`).
    weight_decay : float, default=1e-3
        lambda of the L2 term (lambda / 2) ||params||^2.
    max_iter : int, default=1000
        L-BFGS iterations, or Adam epochs.
    learning_rate : float, default=1e-3
        Adam step size.
    batch_size : int, default=None
        Adam minibatch size (None: min(200, n_samples)).
    tol : float, default=1e-6
        L-BFGS gradient tolerance; early-stopping improvement threshold.
    early_stopping : bool, default=False
        Adam only: stop on a per-task validation split.
    validation_fraction : float, default=0.1
        Held-out fraction per task for early stopping.
    n_iter_no_change : int, default=10
        Patience of early stopping, in epochs.
    attribute : {"auto", "all", "last"} or list of str, default="auto"
        Shared parameters attributed by MTIF (see :class:`SharedBottomRegressor`).
    hessian : {"gauss_newton", "exact"}, default="gauss_newton"
        Hessian blocks for MTIF.
    task_column : str or int, default=None
        Column of ``X`` holding the task labels.
    device : str, default="cpu"
        Torch device.
    random_state : int, RandomState instance or None, default=None
        Seed of the initialisation and of Adam's minibatches.
    verbose : int, default=0
        Progress messages when > 0.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels.
    module_ : torch.nn.ModuleDict
        The trained network (``"shared"`` and ``"heads"``), float64, on the CPU.
    tasks_ : ndarray of shape (n_tasks,)
        Sorted task labels seen in fit.
    task_weight_sum_ : ndarray of shape (n_tasks,)
        n_k, the total sample weight of each task.
    n_outputs_ : int
        Logits per head (1 for binary y).
    n_iter_ : int
        L-BFGS iterations or Adam epochs run.
    best_validation_objective_ : float
        Best validation objective (only with early stopping).
    n_features_in_ : int
        Number of columns of ``X`` in fit.
    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Column names of ``X`` in fit, when it had string column names.

    See Also
    --------
    SharedBottomRegressor : The same network with the squared error.

    References
    ----------
    {ref_mtif}

    Examples
    --------
    >>> from mtif_sklearn.torch import SharedBottomClassifier
    >>> from mtif_sklearn.datasets import make_multitask_classification
    >>> X, y, tasks = make_multitask_classification(n_tasks=3, n_samples_per_task=40,
    ...                                             n_features=4, random_state=0)
    >>> clf = SharedBottomClassifier((8,), max_iter=50, random_state=0).fit(X, y, tasks=tasks)
    >>> clf.predict_proba(X[:2], tasks=tasks[:2]).shape
    (2, 2)
    """

    __metadata_request__predict_proba = {"tasks": True}
    __metadata_request__predict_log_proba = {"tasks": True}
    __metadata_request__decision_function = {"tasks": True}

    _is_classifier = True

    def _encode_targets(self, y, *, reset):
        if reset:
            check_classification_targets(y)
            self.classes_ = np.unique(y)
            if self.classes_.shape[0] < 2:
                raise ValueError(f"{type(self).__name__} needs at least 2 classes in y; got 1 "
                                 f"class: {self.classes_.tolist()}.")
        y = np.asarray(y)
        unknown = ~np.isin(y, self.classes_)
        if np.any(unknown):
            raise ValueError(f"y has labels {np.unique(y[unknown]).tolist()[:5]} that are not "
                             f"among classes_ {self.classes_.tolist()}.")
        index = np.searchsorted(self.classes_, y)
        if self.classes_.shape[0] == 2:
            return index.astype(np.float64), "log_loss", 1
        return np.eye(self.classes_.shape[0])[index], "cross_entropy", self.classes_.shape[0]

    @doc(DECISION_FUNCTION)
    def decision_function(self, X, tasks=None):
        out = self._raw_outputs(X, tasks)
        return out[:, 0] if out.shape[1] == 1 else out

    @doc(PREDICT_PROBA)
    def predict_proba(self, X, tasks=None):
        return np.exp(self.predict_log_proba(X, tasks=tasks))

    @doc(PREDICT_LOG_PROBA)
    def predict_log_proba(self, X, tasks=None):
        out = self._raw_outputs(X, tasks)
        if out.shape[1] == 1:
            raw = out[:, 0]
            return np.column_stack([-np.logaddexp(0.0, raw), -np.logaddexp(0.0, -raw)])
        shifted = out - out.max(axis=1, keepdims=True)
        return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))

    @doc(PREDICT_LABELS)
    def predict(self, X, tasks=None):
        out = self._raw_outputs(X, tasks)
        index = (out[:, 0] > 0).astype(int) if out.shape[1] == 1 else out.argmax(axis=1)
        return self.classes_[index]

    @doc(SCORE_ACCURACY)
    def score(self, X, y, tasks=None, sample_weight=None):
        return accuracy_score(y, self.predict(X, tasks=tasks), sample_weight=sample_weight)

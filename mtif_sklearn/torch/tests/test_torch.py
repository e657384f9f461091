"""Tests of the torch bridge: exact blocks and influence against dense autograd, refits, API."""

import pickle
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.frozen import FrozenEstimator  # noqa: E402
from torch.func import functional_call  # noqa: E402

from mtif_sklearn import MTIFInfluence, NegativeTransferSelector  # noqa: E402
from mtif_sklearn.datasets import (  # noqa: E402
    make_multitask_classification,
    make_multitask_regression,
)
from mtif_sklearn.influence import arrow_to_dense  # noqa: E402
from mtif_sklearn.retrain import loo_effects, loto_effects  # noqa: E402
from mtif_sklearn.torch import (  # noqa: E402
    SharedBottomAdapter,
    SharedBottomClassifier,
    SharedBottomRegressor,
)
from mtif_sklearn.torch._objective import row_loss  # noqa: E402
from mtif_sklearn.utils._testing import dense_first_order  # noqa: E402

# Tiny float64 networks: torch's intra-op threads only add contention (measured: the suite
# takes several times longer with the default thread pool on a loaded 2-core machine).
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def regression():
    X, y, t = make_multitask_regression(n_tasks=3, n_samples_per_task=20, n_features=3,
                                        random_state=0)
    Xv, yv, tv = make_multitask_regression(n_tasks=3, n_samples_per_task=8, n_features=3,
                                           random_state=1)
    return X, y, t, Xv, yv, tv


_FITTED = {}


def _fit_regressor(data, hessian="exact"):
    """Converged tiny network (gradient ~1e-8), fitted once per Hessian kind."""
    if hessian not in _FITTED:
        X, y, t = data[:3]
        _FITTED[hessian] = SharedBottomRegressor(
            (4,), weight_decay=0.05, max_iter=2000, tol=1e-9, attribute="all",
            hessian=hessian, random_state=0).fit(X, y, tasks=t)
    return _FITTED[hessian]


class _Dense:
    """The whole objective of a fitted estimator as a function of ONE flat vector
    u = (theta_1, ..., theta_K, gamma), written independently of the bridge (plain autograd)."""

    def __init__(self, model, loss_name):
        self.shared, self.heads = model.module_["shared"], model.module_["heads"]
        self.K = len(self.heads)
        self.loss = row_loss(loss_name)
        self.decay = model.weight_decay
        self.tasks = model.tasks_
        self.q = sum(p.numel() for p in self.heads[0].parameters())
        self.u0 = torch.cat([p.detach().reshape(-1) for h in self.heads for p in h.parameters()]
                            + [p.detach().reshape(-1) for p in self.shared.parameters()])

    @staticmethod
    def _split(vector, module):
        out, start = {}, 0
        for name, p in module.named_parameters():
            out[name] = vector[start:start + p.numel()].reshape(p.shape)
            start += p.numel()
        return out

    def row_losses(self, u, X, targets, tasks):
        codes = np.searchsorted(self.tasks, tasks)
        z = functional_call(self.shared, self._split(u[self.K * self.q:], self.shared),
                            (torch.as_tensor(X),))
        losses = []
        for i, k in enumerate(codes):
            theta = self._split(u[k * self.q:(k + 1) * self.q], self.heads[0])
            out = functional_call(self.heads[0], theta, (z[i:i + 1],))
            losses.append(self.loss(out, torch.as_tensor(targets[i:i + 1]))[0])
        return torch.stack(losses), codes

    def objective(self, u, X, targets, tasks):
        losses, codes = self.row_losses(u, X, targets, tasks)
        weights = torch.as_tensor(1.0 / np.bincount(codes)[codes])
        return torch.sum(weights * losses) + 0.5 * self.decay * torch.sum(u * u)


def _objective(model, X, y, tasks):
    """The fitted model's objective on rows (X, y) through the protocol hooks."""
    return model._mtif_objective(model._mtif_data(X, y, tasks, reset=False))


def _blocks(model, X, y, tasks):
    return _objective(model, X, y, tasks).hessian_blocks(model._mtif_params())


def _dense_blocks(H, K, q):
    return ([H[k * q:(k + 1) * q, k * q:(k + 1) * q] for k in range(K)],
            [H[k * q:(k + 1) * q, K * q:] for k in range(K)], H[K * q:, K * q:])


def test_exact_blocks_equal_autograd_hessian(regression):
    X, y, t = regression[:3]
    model = _fit_regressor(regression)
    dense = _Dense(model, "squared_error")
    H = torch.autograd.functional.hessian(lambda u: dense.objective(u, X, y, t),
                                          dense.u0).numpy()
    H_tt, H_ts, H_ss = _blocks(model, X, y, t)
    D_tt, D_ts, D_ss = _dense_blocks(H, dense.K, dense.q)
    # Arrow structure of the reference itself: heads of different tasks do not interact.
    assert np.abs(H[:dense.q, dense.q:2 * dense.q]).max() == 0
    # Same float64 sums in a different order: agreement to round-off (entries are O(10)).
    np.testing.assert_allclose(H_tt, np.stack(D_tt), rtol=0, atol=1e-11)
    np.testing.assert_allclose(H_ts, np.stack(D_ts), rtol=0, atol=1e-11)
    np.testing.assert_allclose(H_ss, D_ss, rtol=0, atol=1e-11)


def test_gauss_newton_blocks_equal_dense_jacobian_product():
    # Multiclass cross-entropy: the loss curvature is a full (o, o) matrix per row.
    X, y, t = make_multitask_classification(n_tasks=2, n_samples_per_task=12, n_features=3,
                                            random_state=0)
    y = (y + (X[:, 0] > 0.5)).astype(int)  # three classes
    model = SharedBottomClassifier((3,), weight_decay=0.1, max_iter=30, attribute="all",
                                   hessian="gauss_newton", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y, tasks=t)
    assert model.n_outputs_ == 3
    dense = _Dense(model, "cross_entropy")
    onehot = np.eye(3)[np.searchsorted(model.classes_, y)]
    codes = np.searchsorted(model.tasks_, t)
    weights = 1.0 / np.bincount(codes)[codes]
    GN = np.zeros((dense.u0.numel(),) * 2)
    for i in range(len(y)):
        def outputs(u, i=i):
            z = functional_call(dense.shared, dense._split(u[dense.K * dense.q:], dense.shared),
                                (torch.as_tensor(X[i:i + 1]),))
            k = codes[i]
            theta = dense._split(u[k * dense.q:(k + 1) * dense.q], dense.heads[0])
            return functional_call(dense.heads[0], theta, (z,))[0]
        J = torch.autograd.functional.jacobian(outputs, dense.u0).numpy()  # (3, n_params)
        prob = torch.softmax(outputs(dense.u0), 0).detach().numpy()
        curvature = np.diag(prob) - np.outer(prob, prob)  # d2 CE / d logits2
        GN += weights[i] * J.T @ curvature @ J
        assert np.isclose(onehot[i].sum(), 1)
    GN += model.weight_decay * np.eye(GN.shape[0])
    blocks = _blocks(model, X, y, t)
    np.testing.assert_allclose(arrow_to_dense(*blocks), GN, rtol=0, atol=1e-12)
    # Positive definite by construction (PSD Gauss-Newton + weight_decay * I).
    assert np.linalg.eigvalsh(GN).min() >= model.weight_decay * (1 - 1e-9)


@pytest.mark.parametrize("hessian", ["exact", "gauss_newton"])
def test_influence_equals_dense_solve(regression, hessian):
    X, y, t, Xv, yv, tv = regression
    model = _fit_regressor(regression, hessian=hessian)
    dense = _Dense(model, "squared_error")
    blocks = _blocks(model, X, y, t)
    H = arrow_to_dense(*blocks)
    if hessian == "exact":  # the model is converged: the blocks ARE the autograd Hessian
        H_auto = torch.autograd.functional.hessian(lambda u: dense.objective(u, X, y, t),
                                                   dense.u0).numpy()
        np.testing.assert_allclose(H, H_auto, atol=1e-11)
    K, q = dense.K, dense.q
    u0 = dense.u0.clone().requires_grad_(True)
    val_losses, val_codes = dense.row_losses(u0, Xv, yv, tv)
    V = np.stack([torch.autograd.grad(val_losses[torch.as_tensor(val_codes == k)].mean(), u0,
                                      retain_graph=True)[0].numpy() for k in range(K)])
    train_losses, codes = dense.row_losses(u0, X, y, t)
    weights = 1.0 / np.bincount(codes)[codes]
    G = np.stack([weights[i] * torch.autograd.grad(train_losses[i], u0, retain_graph=True)[0]
                  .numpy() for i in range(len(y))])
    task_grads = np.stack([G[codes == k].sum(axis=0) for k in range(K)])
    for k in range(K):  # each task's term carries its head's weight decay (eq. 11)
        task_grads[k, k * q:(k + 1) * q] += model.weight_decay * dense.u0[k * q:(k + 1) * q].numpy()
    expected_rows, expected_tasks = dense_first_order(H, G, task_grads, V)

    inf = MTIFInfluence(FrozenEstimator(model)).fit(X, y, tasks=t, X_val=Xv, y_val=yv,
                                                    tasks_val=tv)
    # Effects are O(0.1-1); the arrow solve and the dense solve differ by round-off only.
    np.testing.assert_allclose(inf.influence_, expected_rows, rtol=0, atol=1e-10)
    np.testing.assert_allclose(inf.task_influence_, expected_tasks, rtol=0, atol=1e-10)


def test_mtif_tracks_leave_one_out_refits(regression):
    # A converged, well-regularised network: removing one row is a small perturbation, so
    # the first-order estimate should be close to the warm-started refit. A wrong sign or a
    # missing shared/within-task path would break the correlation and the scale.
    X, y, t, Xv, yv, tv = regression
    # (Measured: correlation 0.96, slope 1.2 over the 6 most influential rows x 3 tasks.)
    est = SharedBottomRegressor((4,), weight_decay=0.2, max_iter=2000, hessian="exact",
                                random_state=0)
    inf = MTIFInfluence(est).fit(X, y, tasks=t, X_val=Xv, y_val=yv, tasks_val=tv)
    rows = np.argsort(-np.abs(inf.influence_).sum(axis=1))[:6]
    loo = loo_effects(est, X, y, Xv, yv, tasks=t, tasks_val=tv, rows=rows)
    estimate = inf.influence_[rows]
    assert np.corrcoef(estimate.ravel(), loo.ravel())[0, 1] > 0.85
    slope = np.dot(estimate.ravel(), loo.ravel()) / np.dot(estimate.ravel(), estimate.ravel())
    assert 0.5 < slope < 2.0  # 20 rows per task: one row is a 5% change, not infinitesimal


def test_loto_runs_and_dropped_head_is_refitted(regression):
    X, y, t, Xv, yv, tv = regression
    est = SharedBottomRegressor((4,), weight_decay=0.2, random_state=0)
    effects = loto_effects(est, X, y, Xv, yv, tasks=t, tasks_val=tv)
    assert effects.shape == (3, 3) and np.all(np.isfinite(effects))
    # The dropped task's head is trained against the shared layers learnt without it: its
    # head gradient (data + decay) vanishes while the shared layers ignore its rows.
    full = clone(est).fit(X, y, tasks=t)
    start = full._mtif_warm_start()
    data = clone(est)._mtif_data(X, y, t, reset=True)
    dropped = clone(est)._mtif_refit(data, dropped_tasks=[0], init=start)
    task_grad, _ = _objective(dropped, X, y, t).task_gradients(dropped._mtif_params())
    assert np.abs(task_grad[0]).max() < 1e-4
    rest = t != 0
    alone = clone(est)._mtif_refit(clone(est)._mtif_data(X[rest], y[rest], t[rest], reset=True),
                                   task_weight_sum=full.task_weight_sum_[1:],
                                   init={k: v for k, v in start.items()
                                         if not k.startswith("heads.")}
                                   | {f"heads.{i}.{n}": start[f"heads.{i + 1}.{n}"]
                                      for i in range(2) for n in ("weight", "bias")})
    for a, b in zip(dropped.module_["shared"].parameters(),
                    alone.module_["shared"].parameters(), strict=True):
        # Same objective, same start: equal up to the optimiser's stopping tolerance.
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), atol=1e-4)


def test_non_positive_definite_exact_hessian_is_reported():
    X, y, t = make_multitask_regression(n_tasks=2, n_samples_per_task=15, n_features=3,
                                        random_state=3)
    est = SharedBottomRegressor((6,), weight_decay=0.0, max_iter=1, hessian="exact",
                                random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # Far from a minimum on purpose (negative curvature), which the stationarity check says.
        warnings.filterwarnings("ignore", "The objective's gradient at the frozen", UserWarning)
        est.fit(X, y * 10, tasks=t)
        with pytest.warns(UserWarning, match="gauss_newton"):
            with pytest.raises(ValueError, match="not positive definite"):
                MTIFInfluence(FrozenEstimator(est)).fit(X, y * 10, tasks=t, X_val=X,
                                                        y_val=y * 10, tasks_val=t)
        # Gauss-Newton is PSD; with some damping the factorisation always succeeds.
        est.set_params(hessian="gauss_newton")
        inf = MTIFInfluence(FrozenEstimator(est), damping=1e-3).fit(
            X, y * 10, tasks=t, X_val=X, y_val=y * 10, tasks_val=t)
    assert np.all(np.isfinite(inf.influence_))


# Both sides use the same fitted network, so whether L-BFGS fully converged does not matter here.
@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.filterwarnings("ignore:The objective's gradient at the frozen:UserWarning")
def test_attribute_last_layer_and_adapter_agree(regression):
    X, y, t, Xv, yv, tv = regression
    t_str = np.array(["a", "b", "c"])[t]
    tv_str = np.array(["a", "b", "c"])[tv]
    model = SharedBottomRegressor((5, 4), weight_decay=0.05, max_iter=300, attribute="last",
                                  random_state=0).fit(X, y, tasks=t_str)
    objective = _objective(model, X, y, t_str)
    assert objective.n_shared_params == 5 * 4 + 4  # the last shared Linear only
    assert objective.n_task_params == 4 + 1
    reference = MTIFInfluence(FrozenEstimator(model)).fit(X, y, tasks=t_str, X_val=Xv,
                                                          y_val=yv, tasks_val=tv_str)
    shared = model.module_["shared"]
    heads = {label: head for label, head in zip(["c", "b", "a"],
                                                list(model.module_["heads"])[::-1])}

    class LibMTLStyle(torch.nn.Module):  # duck-typed, no LibMTL import
        def __init__(self):
            super().__init__()
            self.encoder = shared
            self.decoders = torch.nn.ModuleDict(heads)

        def get_share_params(self):
            return self.encoder.parameters()

    for adapter in (SharedBottomAdapter(shared=shared, heads=heads, weight_decay=0.05,
                                        attribute=["2.weight", "2.bias"]),
                    SharedBottomAdapter(LibMTLStyle(), weight_decay=0.05, attribute="last",
                                        batch_size=7)):
        inf = MTIFInfluence(adapter).fit(X, y, tasks=t_str, X_val=Xv, y_val=yv,
                                         tasks_val=tv_str)
        assert inf.tasks_.tolist() == ["a", "b", "c"]
        np.testing.assert_allclose(inf.influence_, reference.influence_, rtol=1e-9,
                                   atol=1e-12)
        np.testing.assert_allclose(inf.task_influence_, reference.task_influence_,
                                   rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(inf.estimator_.predict(X, tasks=t_str)[:, 0],
                                   model.predict(X, tasks=t_str), rtol=1e-12)


def test_adapter_rejects_unequal_heads():
    shared = torch.nn.Linear(3, 4).double()
    heads = [torch.nn.Linear(4, 1).double(), torch.nn.Linear(4, 2).double()]
    adapter = SharedBottomAdapter(shared=shared, heads=heads).fit(np.zeros((4, 3)),
                                                                  tasks=[0, 1, 0, 1])
    with pytest.raises(ValueError, match="same architecture"):
        _objective(adapter, np.zeros((4, 3)), np.zeros(4), [0, 1, 0, 1])


def test_deterministic_picklable_and_task_column(regression):
    X, y, t = regression[:3]
    est = SharedBottomRegressor((4,), max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        first = clone(est).fit(X, y, tasks=t).predict(X, tasks=t)
        model = clone(est).fit(X, y, tasks=t)
        by_column = clone(est).set_params(task_column=0).fit(np.column_stack([t, X]), y)
    np.testing.assert_array_equal(first, model.predict(X, tasks=t))  # bitwise on CPU
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X, tasks=t), first)
    np.testing.assert_array_equal(by_column.predict(np.column_stack([t, X])), first)
    with pytest.raises(ValueError, match="need the task of every row"):
        model.predict(X)
    with pytest.raises(ValueError, match="Unknown task"):
        model.predict(X[:2], tasks=[7, 7])


def test_classifier_multiclass_and_adam_early_stopping():
    X, y, t = make_multitask_classification(n_tasks=3, n_samples_per_task=40, n_features=4,
                                            random_state=0)
    y3 = np.where(X[:, 1] > 1.0, 2, y)
    clf = SharedBottomClassifier((6,), solver="adam", learning_rate=0.05, max_iter=40,
                                 batch_size=32, early_stopping=True, n_iter_no_change=3,
                                 random_state=0).fit(X, y3, tasks=t)
    proba = clf.predict_proba(X, tasks=t)
    assert proba.shape == (len(y), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert np.isfinite(clf.best_validation_objective_) and clf.n_iter_ <= 40
    assert clf.score(X, y3, tasks=t) > 0.6  # chance is about 0.4
    again = clone(clf).fit(X, y3, tasks=t)
    np.testing.assert_array_equal(again.predict_proba(X, tasks=t), proba)


def test_negative_transfer_selector_on_network():
    X, y, t = make_multitask_classification(n_tasks=3, n_samples_per_task=30, n_features=4,
                                            random_state=0)
    y = y.copy()
    y[:6] = 1 - y[:6]  # a few flipped labels in task 0
    sel = NegativeTransferSelector(SharedBottomClassifier((4,), weight_decay=0.05,
                                                          max_iter=300, random_state=0),
                                   fraction=0.1, cv=3, guard=False, n_rounds=1,
                                   random_state=0).fit(X, y, tasks=t)
    # Unguarded (the guard needs many refits of the network): the cap is honoured.
    assert sel.support_.shape == (90,) and 0 < sel.removed_.size <= 9
    assert sel.predict(X, tasks=t).shape == (90,)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu(regression):
    X, y, t, Xv, yv, tv = regression
    results = {}
    for device in ("cpu", "cuda"):
        est = SharedBottomRegressor((4,), weight_decay=0.05, max_iter=2000, tol=1e-10,
                                    hessian="exact", device=device, random_state=0)
        inf = MTIFInfluence(est).fit(X, y, tasks=t, X_val=Xv, y_val=yv, tasks_val=tv)
        results[device] = (inf.estimator_.predict(Xv, tasks=tv), inf.influence_,
                           inf.task_influence_)
    # float64 on both; different kernels and summation orders move L-BFGS by round-off only.
    for cpu, gpu in zip(results["cpu"], results["cuda"], strict=True):
        np.testing.assert_allclose(gpu, cpu, rtol=1e-6, atol=1e-8)

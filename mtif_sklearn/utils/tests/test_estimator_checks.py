"""check_multitask_objective: every objective of the package passes it, broken ones fail."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning

from mtif_sklearn import MultitaskLogistic, MultitaskRidge
from mtif_sklearn.datasets import make_multitask_classification, make_multitask_regression
from mtif_sklearn.utils import check_multitask_objective


def _objective(model, X, y, tasks, view="influence"):
    return model._mtif_objective(model._mtif_data(X, y, tasks, reset=False), view=view)


@pytest.fixture(scope="module")
def regression():
    return make_multitask_regression(n_tasks=3, n_samples_per_task=15, n_features=3,
                                     random_state=0)


@pytest.mark.parametrize("Model", [MultitaskRidge, MultitaskLogistic])
def test_linear_objectives_pass(Model, regression):
    X, y, tasks = regression
    if Model is MultitaskLogistic:
        y = (y > np.median(y)).astype(int)
    model = Model(alpha={0: 0.1, 1: 0.5, 2: 1.0}, shared_alpha=0.05).fit(
        X, y, tasks=tasks, sample_weight=np.linspace(0.5, 2.0, len(y)))
    weights = np.linspace(0.5, 2.0, len(y))
    objective = model._mtif_objective(model._mtif_data(X, y, tasks, weights, reset=False))
    check_multitask_objective(objective, model._mtif_params())
    # Away from the fit too: the derivatives hold everywhere, not only at a minimum.
    params = model._mtif_params()
    check_multitask_objective(objective, type(params)(params.task + 0.3, params.shared - 0.2))


class _WrongGradient:
    """A linear objective whose row gradients are 1% off: the check must catch it."""

    def __init__(self, objective):
        self._objective = objective

    def __getattr__(self, name):
        return getattr(self._objective, name)

    def row_gradients(self, params, rows=None):
        task, shared = self._objective.row_gradients(params, rows)
        return 1.01 * task, shared


class _WrongCoupling(_WrongGradient):
    """Correct gradients, but coupling blocks with the wrong sign."""

    def row_gradients(self, params, rows=None):
        return self._objective.row_gradients(params, rows)

    def hessian_blocks(self, params, active=None):
        blocks = self._objective.hessian_blocks(params, active)
        return type(blocks)(blocks.task, -blocks.coupling, blocks.shared)


@pytest.mark.parametrize("broken, member", [(_WrongGradient, "row_gradients"),
                                            (_WrongCoupling, "hessian_blocks")])
def test_inconsistent_objectives_fail_naming_the_member(broken, member, regression):
    X, y, tasks = regression
    model = MultitaskRidge(alpha=0.3).fit(X, y, tasks=tasks)
    objective = broken(_objective(model, X, y, tasks))
    with pytest.raises(AssertionError, match=member):
        check_multitask_objective(objective, model._mtif_params())


# 200 L-BFGS steps leave the network near, not at, a minimum: its exact Hessian may be indefinite
# (a warning); the check compares derivatives with finite differences, not definiteness.
@pytest.mark.filterwarnings("ignore:The exact Hessian of the network objective:UserWarning")
def test_torch_objectives_pass(regression):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from mtif_sklearn.torch import SharedBottomAdapter, SharedBottomRegressor

    X, y, tasks = regression
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = SharedBottomRegressor((3,), weight_decay=0.1, max_iter=200, hessian="exact",
                                      attribute="all", random_state=0).fit(X, y, tasks=tasks)
    exact = _objective(model, X, y, tasks)
    assert exact.capabilities == {"affinity", "newton"}
    # Float64 autograd: the finite differences of a tanh network agree to ~1e-8.
    # (Row curvatures of a network are Gauss-Newton terms, not its exact row Hessians.)
    check_multitask_objective(exact, model._mtif_params(), exact_row_curvature=False,
                              rtol=1e-4)
    training = _objective(model, X, y, tasks, view="training")  # Gauss-Newton curvature
    check_multitask_objective(training, model._mtif_params(view="training"),
                              exact_hessian=False, rtol=1e-4)
    # A user's network through the adapter, on validation rows (weights need not sum to 1).
    adapter = SharedBottomAdapter(shared=model.module_["shared"],
                                  heads=list(model.module_["heads"]), weight_decay=0.1,
                                  hessian="exact").fit(X, y, tasks=tasks)
    check_multitask_objective(_objective(adapter, X[:20], y[:20], tasks[:20]),
                              adapter._mtif_params(), exact_row_curvature=False,
                              training=False, rtol=1e-4)


def test_classifier_network_has_no_rank_one_newton_with_several_outputs():
    pytest.importorskip("torch")
    from mtif_sklearn.torch import SharedBottomClassifier

    X, y, tasks = make_multitask_classification(n_tasks=2, n_samples_per_task=12,
                                                n_features=3, random_state=0)
    y = (y + (X[:, 0] > 0.5)).astype(int)  # three classes: one logit per class
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = SharedBottomClassifier((3,), max_iter=20, random_state=0).fit(X, y, tasks=tasks)
    assert _objective(model, X, y, tasks).capabilities == {"affinity"}
    from mtif_sklearn import MTIFInfluence

    with pytest.raises(ValueError, match=r"method='newton'\) needs Newton-step.*"
                                         "SharedBottomClassifier"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # its refits keep max_iter=20
        MTIFInfluence(model, method="newton", random_state=0).fit(X, y, tasks=tasks)

"""ONE dense reference for tests: the multitask linear objective and influence, written densely.

Everything here is written from the formulas of the paper (eq. 2 objective, eq. 5 row removal,
eq. 11 task removal, Lemma A.3 influence) over ONE flat parameter vector
``z = [beta_1, ..., beta_K, g]``, independently of the package's objective, blocks and solver:
dense Hessians, ``numpy.linalg.solve``, loops over rows. Tests compare the package against it on
small problems; it is deliberately slow and simple.
"""

import numpy as np
from scipy.special import expit

__all__ = ["DenseLinearObjective", "dense_first_order", "dense_influence",
           "dense_newton_influence"]


class DenseLinearObjective:
    """The multitask linear objective as a dense function of ``z = [beta_1..beta_K, g]``.

    ``L(z) = sum_k [ sum_{i in k} w_i / n_k l(y_i, x_i . beta_k)
    + sum_j a_kj (beta_kj - g_j)^2 ] + shared_alpha ||gamma||^2`` with ``a_kj`` = alpha_k on
    the coefficients and intercept_alpha_k on the intercept (x has a trailing 1 when
    ``fit_intercept``); ``n_k`` is task k's total weight (kept fixed when rows are removed).

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
        Targets (0/1 for the logistic loss).
    codes : ndarray of int, shape (n,)
    n_tasks : int
    alpha : float or ndarray of shape (n_tasks,)
    shared_alpha : float
    intercept_alpha : float, ndarray of shape (n_tasks,) or None, default=None
        None: ``alpha``.
    fit_intercept : bool, default=True
    loss : {"squared_error", "log_loss"}, default="squared_error"
    sample_weight : ndarray of shape (n,), default=None
    """

    def __init__(self, X, y, codes, n_tasks, *, alpha, shared_alpha, intercept_alpha=None,
                 fit_intercept=True, loss="squared_error", sample_weight=None):
        X = np.asarray(X, dtype=float)
        self.X = np.hstack([X, np.ones((len(X), 1))]) if fit_intercept else X
        self.y = np.asarray(y, dtype=float)
        self.codes = np.asarray(codes)
        self.K, self.q = n_tasks, self.X.shape[1]
        self.size = (n_tasks + 1) * self.q
        self.logistic = loss == "log_loss"
        self.weight = (np.ones(len(self.y)) if sample_weight is None
                       else np.asarray(sample_weight, dtype=float))
        self.n_k = np.bincount(self.codes, weights=self.weight, minlength=n_tasks)
        alpha = np.broadcast_to(np.asarray(alpha, dtype=float), (n_tasks,))
        intercept = alpha if intercept_alpha is None else np.broadcast_to(
            np.asarray(intercept_alpha, dtype=float), (n_tasks,))
        self.tie = np.repeat(alpha[:, None], self.q, axis=1)
        if fit_intercept:
            self.tie[:, -1] = intercept
        self.penalty = 2 * shared_alpha * np.ones(self.q)
        if fit_intercept:
            self.penalty[-1] = 0.0

    @classmethod
    def from_model(cls, model, X, y, tasks, sample_weight=None):
        """The objective of a fitted MultitaskRidge / MultitaskLogistic on rows (X, y, tasks).

        Returns the objective and the model's parameters as one vector z.
        """
        labels = list(model.tasks_)
        codes = np.array([labels.index(t) for t in tasks])
        logistic = hasattr(model, "classes_")
        y = (np.asarray(y) == model.classes_[1]).astype(float) if logistic else y
        alpha = model.alpha
        if isinstance(alpha, dict):
            alpha = np.array([alpha[t] for t in labels], dtype=float)
        intercept_alpha = getattr(model, "intercept_alpha", None)
        if isinstance(intercept_alpha, dict):
            intercept_alpha = np.array([intercept_alpha[t] for t in labels], dtype=float)
        objective = cls(X, y, codes, len(labels), alpha=alpha, shared_alpha=model.shared_alpha,
                        intercept_alpha=intercept_alpha, fit_intercept=model.fit_intercept,
                        loss="log_loss" if logistic else "squared_error",
                        sample_weight=sample_weight)
        coef, shared = model.coef_, model.shared_coef_
        if model.fit_intercept:
            coef = np.hstack([coef, model.intercept_[:, None]])
            shared = np.append(shared, model.shared_intercept_)
        return objective, np.concatenate([coef.ravel(), shared])

    def block(self, k):
        """Slice of task k's parameters in z (k = K: the shared block)."""
        return slice(k * self.q, (k + 1) * self.q)

    def _derivatives(self, z, rows=None):
        rows = np.arange(len(self.y)) if rows is None else rows
        beta = z[:self.K * self.q].reshape(self.K, self.q)
        raw = np.einsum("ij,ij->i", self.X[rows], beta[self.codes[rows]])
        if self.logistic:
            prob = expit(raw)
            value = np.logaddexp(0.0, raw) - self.y[rows] * raw
            return value, prob - self.y[rows], prob * (1 - prob)
        residual = raw - self.y[rows]
        return residual ** 2, 2 * residual, np.full(len(rows), 2.0)

    def row_losses(self, z):
        """l(y_i, x_i . beta_k) of every row, (n,)."""
        return self._derivatives(z)[0]

    def row_gradients(self, z):
        """Gradient of every row's (unweighted) loss in z, (n, size)."""
        _, first, _ = self._derivatives(z)
        grads = np.zeros((len(self.y), self.size))
        for i, k in enumerate(self.codes):
            grads[i, self.block(k)] = first[i] * self.X[i]
        return grads

    def _row_weights(self, weight):
        weight = self.weight if weight is None else weight
        return weight / self.n_k[self.codes]

    def value(self, z, weight=None, tie=None):
        """L(z); ``weight`` replaces the row weights (n_k fixed), ``tie`` (bool, K) keeps only
        those tasks' regularisers (a task removed by eq. 11)."""
        tie = np.ones(self.K, bool) if tie is None else tie
        losses, _, _ = self._derivatives(z)
        total = np.sum(self._row_weights(weight) * losses)
        g = z[self.block(self.K)]
        for k in np.flatnonzero(tie):
            diff = z[self.block(k)] - g
            total += np.sum(self.tie[k] * diff ** 2)
        return total + 0.5 * np.sum(self.penalty * g ** 2)

    def gradient(self, z, weight=None, tie=None):
        """Gradient of :meth:`value`, (size,)."""
        tie = np.ones(self.K, bool) if tie is None else tie
        grad = self._row_weights(weight) @ self.row_gradients(z)
        s = self.block(self.K)
        for k in np.flatnonzero(tie):
            diff = 2 * self.tie[k] * (z[self.block(k)] - z[s])
            grad[self.block(k)] += diff
            grad[s] -= diff
        grad[s] += self.penalty * z[s]
        return grad

    def hessian(self, z, weight=None, tie=None, damping=0.0):
        """Hessian of :meth:`value` (plus ``damping`` I), (size, size)."""
        tie = np.ones(self.K, bool) if tie is None else tie
        _, _, second = self._derivatives(z)
        row_w = self._row_weights(weight)
        H = np.zeros((self.size, self.size))
        for i, k in enumerate(self.codes):
            b = self.block(k)
            H[b, b] += row_w[i] * second[i] * np.outer(self.X[i], self.X[i])
        s = self.block(self.K)
        for k in np.flatnonzero(tie):
            b, a = self.block(k), np.diag(2 * self.tie[k])
            H[b, b] += a
            H[s, s] += a
            H[b, s] -= a
            H[s, b] -= a
        H[s, s] += np.diag(self.penalty)
        return H + damping * np.eye(self.size)

    def task_gradients(self, z):
        """Gradient of every task's term T_k (its rows and its regulariser), (K, size)."""
        row = self.row_gradients(z) * self._row_weights(None)[:, None]
        grads = np.stack([row[self.codes == k].sum(axis=0) for k in range(self.K)])
        s = self.block(self.K)
        for k in range(self.K):
            diff = 2 * self.tie[k] * (z[self.block(k)] - z[s])
            grads[k, self.block(k)] += diff
            grads[k, s] -= diff
        return grads

    def minimise(self, z=None, weight=None, tie=None, steps=100):
        """Dense Newton from ``z`` (zero); one step is exact for the squared loss."""
        z = np.zeros(self.size) if z is None else z.copy()
        for _ in range(1 if not self.logistic else steps):
            step = np.linalg.solve(self.hessian(z, weight, tie), self.gradient(z, weight, tie))
            z -= step
            if np.abs(step).max() < 1e-13:
                break
        return z

    def task_mean_losses(self, z):
        """Mean loss of every task's rows (validation loss V_k), (K,)."""
        return (np.bincount(self.codes, weights=self.row_losses(z), minlength=self.K)
                / np.bincount(self.codes, minlength=self.K))

    def validation_gradients(self, z):
        """Gradient of every V_k in z, (K, size)."""
        grads = self.row_gradients(z)
        return np.stack([grads[self.codes == k].mean(axis=0) for k in range(self.K)])


def dense_first_order(hessian, row_grads, task_grads, val_grads):
    """First-order removal effects ``g^T H^-1 v_k`` (Lemma A.3) with a dense solve.

    Parameters
    ----------
    hessian : ndarray of shape (P, P)
    row_grads : ndarray of shape (n, P)
        Weighted gradient of every row's term.
    task_grads : ndarray of shape (K, P)
        Gradient of every task's term.
    val_grads : ndarray of shape (K, P)
        Gradient of every task's validation loss V_k.

    Returns
    -------
    rows : ndarray of shape (n, K)
    tasks : ndarray of shape (K, K)
    """
    solved = np.linalg.solve(hessian, val_grads.T)
    return row_grads @ solved, task_grads @ solved


def dense_influence(train, val, z, damping=0.0):
    """First-order MTIF of a linear model (data and task level), densely."""
    row_grads = train.row_gradients(z) * train._row_weights(None)[:, None]
    return dense_first_order(train.hessian(z, damping=damping), row_grads,
                             train.task_gradients(z), val.validation_gradients(z))


def dense_newton_influence(train, val, z, *, damping=0.0, steps=1):
    """Newton-step removal effects, densely (the scheme of ``MTIFInfluence(method="newton")``).

    Rows: ``steps`` chord steps on L without the row, with its Hessian at z. Tasks: ``steps``
    Newton steps on the other tasks and the shared block of L without the task (rows and
    regulariser), then the removed head's Newton step on its own term against the new shared
    parameters, repeated each step.
    """
    K, q = train.K, train.q
    base = val.task_mean_losses(z)
    rows = np.zeros((len(train.y), K))
    for i in range(len(train.y)):
        weight = train.weight.copy()
        weight[i] = 0.0
        hess = train.hessian(z, weight, damping=damping)
        new = z.copy()
        for _ in range(steps):
            new = new - np.linalg.solve(hess, train.gradient(new, weight))
        rows[i] = val.task_mean_losses(new) - base
    tasks = np.zeros((K, K))
    s = train.block(K)
    for task in range(K):
        weight = np.where(train.codes == task, 0.0, train.weight)
        tie = np.arange(K) != task
        free = np.r_[np.flatnonzero(np.repeat(tie, q)), np.arange(K * q, train.size)]
        head = train.block(task)
        new = z.copy()
        for _ in range(steps):
            grad = train.gradient(new, weight, tie)
            hess = train.hessian(new, weight, tie, damping=damping)
            new[free] -= np.linalg.solve(hess[np.ix_(free, free)], grad[free])
            # The head: task `task`'s own term with the new shared parameters held fixed.
            own = train.codes == task
            only = np.where(own, train.weight, 0.0)
            tie_own = np.arange(K) == task
            grad_head = train.gradient(new, only, tie_own)[head]
            hess_head = train.hessian(new, only, tie_own, damping=damping)[head, head]
            new[head] -= np.linalg.solve(hess_head, grad_head)
        tasks[task] = val.task_mean_losses(new) - base
    del s
    return rows, tasks

"""SelectionDisplay: a per-task held-out metric before and after NegativeTransferSelector."""

import numpy as np
from sklearn.base import is_classifier
from sklearn.metrics import accuracy_score, mean_squared_error
from sklearn.utils.validation import check_is_fitted

from .._tasks import resolve_tasks
from ._base import axes_or_new, task_names

__all__ = ["SelectionDisplay"]


def _task_column(estimator):
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    return params.get("task_column")


class SelectionDisplay:
    """Per-task held-out metric of a model trained on all rows and on the selected rows.

    Shows, task by task, what :class:`~mtif_sklearn.NegativeTransferSelector` bought on data it
    never saw: the metric of a baseline fitted on every training row ("all rows") next to the
    metric of the selector's refitted model ("selected"). With few tasks the display draws
    grouped bars; with many, one point per task (x: all rows, y: selected) and the diagonal.

    Parameters
    ----------
    before : array-like of shape (n_tasks,)
        Metric of the baseline on each task's held-out rows.
    after : array-like of shape (n_tasks,)
        Metric of the selector on the same rows.
    task_labels : array-like of shape (n_tasks,), default=None
        Task names. None: ``0 .. n_tasks - 1``.
    metric_name : str, default="metric"
        Axis label of the metric.

    Attributes
    ----------
    bars_ : tuple of matplotlib BarContainer or None
        (all rows, selected) bars with ``kind="bar"``.
    scatter_ : matplotlib.collections.PathCollection or None
        The points with ``kind="scatter"``.
    ax_ : matplotlib.axes.Axes
        Axes of the plot.
    figure_ : matplotlib.figure.Figure
        Figure holding the axes.

    See Also
    --------
    mtif_sklearn.NegativeTransferSelector : Drops the rows that cause negative transfer.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from mtif_sklearn.plotting import SelectionDisplay
    >>> display = SelectionDisplay([1.3, 1.1], [1.1, 1.1], task_labels=["a", "b"],
    ...                            metric_name="MSE").plot()
    >>> display.ax_.get_ylabel()
    'held-out MSE'
    """

    def __init__(self, before, after, *, task_labels=None, metric_name="metric"):
        self.before = before
        self.after = after
        self.task_labels = task_labels
        self.metric_name = metric_name

    def plot(self, *, ax=None, kind=None):
        """Draw the comparison.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw. None: a new figure.
        kind : {"bar", "scatter"}, default=None
            Grouped bars per task, or one point per task against the diagonal. None: bars up
            to 30 tasks, points beyond.

        Returns
        -------
        display : SelectionDisplay
            The display, with ``ax_`` and ``figure_`` set.
        """
        before = np.asarray(self.before, dtype=np.float64).ravel()
        after = np.asarray(self.after, dtype=np.float64).ravel()
        if before.shape != after.shape:
            raise ValueError(f"before and after must have one value per task; got {before.size} "
                             f"and {after.size}.")
        labels = task_names(range(before.size) if self.task_labels is None
                            else self.task_labels)
        if len(labels) != before.size:
            raise ValueError(f"task_labels has {len(labels)} names for {before.size} tasks.")
        if kind is None:
            kind = "bar" if before.size <= 30 else "scatter"
        if kind not in ("bar", "scatter"):
            raise ValueError(f"kind must be 'bar', 'scatter' or None; got {kind!r}.")
        ax = axes_or_new(ax, "SelectionDisplay",
                         figsize=(max(5.0, 0.45 * before.size + 2.0), 4.2) if kind == "bar"
                         else (5.0, 5.0))
        self.bars_, self.scatter_ = None, None
        summary = (f"mean over tasks {np.nanmean(before):.4g} (all rows) -> "
                   f"{np.nanmean(after):.4g} (selected rows)")
        if kind == "bar":
            positions = np.arange(before.size)
            width = 0.4
            self.bars_ = (
                ax.bar(positions - width / 2, before, width, color="0.6", label="all rows"),
                ax.bar(positions + width / 2, after, width, color="tab:blue",
                       label="selected rows"),
            )
            ax.set_xticks(positions, labels, rotation=45 if max(map(len, labels)) > 3 else 0)
            ax.set_xlabel("task")
            ax.set_ylabel(f"held-out {self.metric_name}")
            finite = np.concatenate([before, after])
            finite = finite[np.isfinite(finite)]
            if finite.size:
                # Differences are small next to the level: start a positive axis near the
                # data, and leave room above the bars for the legend.
                low, high = finite.min(), finite.max()
                span = (high - low) or abs(high) or 1.0
                bottom = max(0.0, low - 0.3 * span) if low > 0 else min(0.0, low)
                ax.set_ylim(bottom, high + 0.35 * span)
            ax.legend(frameon=False, ncols=2, loc="upper right")
        else:
            self.scatter_ = ax.scatter(before, after, s=20, color="tab:blue", alpha=0.7)
            finite = np.concatenate([before, after])
            finite = finite[np.isfinite(finite)]
            low, high = finite.min(), finite.max()
            ax.plot([low, high], [low, high], "--", color="0.5", linewidth=1,
                    label="no change")
            ax.set_xlabel(f"held-out {self.metric_name}, model on all rows")
            ax.set_ylabel(f"held-out {self.metric_name}, model on selected rows")
            ax.legend(frameon=False, loc="upper left")
        ax.set_title(f"Held-out {self.metric_name} per task\n{summary}", fontsize=10)
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_estimator(cls, selector, X, y, *, baseline, tasks=None, metric=None,
                       metric_name=None, ax=None, kind=None):
        """Score a fitted selector and a baseline on held-out rows, task by task, and plot.

        Parameters
        ----------
        selector : NegativeTransferSelector
            Fitted.
        X : array-like of shape (n_samples, n_features)
            Held-out rows (with the task column when the estimator uses ``task_column``).
        y : array-like of shape (n_samples,)
            Their targets.
        baseline : fitted estimator
            The same model fitted on every training row (no selection), e.g.
            ``clone(selector.estimator).fit(X_train, y_train, tasks=tasks_train)``.
        tasks : array-like of shape (n_samples,), default=None
            Task label of every held-out row (unless the estimator has a ``task_column``).
        metric : callable, default=None
            ``metric(y_true, y_pred) -> float`` on the predictions of ``predict``. None: mean
            squared error for regressors, accuracy for classifiers.
        metric_name : str, default=None
            Axis label. None: the name of the default metric, or the callable's name.
        ax : matplotlib Axes, default=None
            Where to draw.
        kind : {"bar", "scatter"}, default=None
            See :meth:`plot`.

        Returns
        -------
        display : SelectionDisplay
            The drawn display; ``before`` and ``after`` hold the per-task metric.
        """
        check_is_fitted(selector, "estimator_")
        if metric is None:
            classifier = is_classifier(selector)
            metric = accuracy_score if classifier else mean_squared_error
            default_name = ("accuracy (higher is better)" if classifier
                            else "MSE (lower is better)")

        else:
            default_name = getattr(metric, "__name__", "metric")
        _, labels = resolve_tasks(X, tasks, _task_column(selector.estimator))
        y = np.asarray(y)
        if labels is None:
            labels = np.zeros(len(y), dtype=np.int64)
        predicted_after = np.asarray(selector.predict(X, tasks=tasks))
        predicted_before = np.asarray(baseline.predict(X, tasks=tasks))
        shown = [task for task in selector.tasks_.tolist() if np.any(labels == task)]
        before = [metric(y[labels == task], predicted_before[labels == task]) for task in shown]
        after = [metric(y[labels == task], predicted_after[labels == task]) for task in shown]
        display = cls(before, after, task_labels=shown,
                      metric_name=default_name if metric_name is None else metric_name)
        return display.plot(ax=ax, kind=kind)

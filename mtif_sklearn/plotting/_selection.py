"""SelectionDisplay: a per-task held-out metric before and after NegativeTransferSelector."""

import warnings

import numpy as np
from sklearn.base import is_classifier
from sklearn.metrics import accuracy_score, mean_squared_error
from sklearn.utils.validation import check_is_fitted

from .._tasks import resolve_tasks
from ._base import axes_or_new, axes_size_points, set_task_ticks, task_names

__all__ = ["SelectionDisplay"]

# Grouped bars beyond this many tasks are unreadable (and were 64 inches wide at 139 tasks):
# kind="bar" falls back to the sorted change plot.
_MAX_BAR_TASKS = 40
# As in TaskInfluenceDisplay: blue is better (helps), red is worse (hurts).
_BETTER, _WORSE, _SAME = "tab:blue", "tab:red", "0.6"


def _task_column(estimator):
    params = estimator.get_params(deep=False) if hasattr(estimator, "get_params") else {}
    return params.get("task_column")


class SelectionDisplay:
    """Per-task held-out metric of a model trained on all rows and on the selected rows.

    Shows, task by task, what :class:`~mtif_sklearn.NegativeTransferSelector` bought on data it
    never saw: the metric of a baseline fitted on every training row ("all rows") against the
    metric of the selector's refitted model ("selected"). Three views:

    - ``"bar"``: grouped bars per task on an axis that starts at 0, so the bars' heights compare
      honestly (few tasks);
    - ``"change"``: the change ``selected - all rows`` per task, sorted, blue where the
      selection made the task better and red where worse (any number of tasks);
    - ``"scatter"``: one point per task (x: all rows, y: selected) against the diagonal,
      coloured the same way.

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
    greater_is_better : bool, default=None
        Whether a larger metric is better (accuracy, R^2) or worse (a loss, MSE); decides
        which changes are coloured as improvements. None: True when ``metric_name`` says
        "higher is better", otherwise False (a loss).

    Attributes
    ----------
    bars_ : tuple of matplotlib BarContainer, or BarContainer, or None
        ``kind="bar"``: the (all rows, selected) bars; ``kind="change"``: the change bars.
    scatter_ : matplotlib.collections.PathCollection or None
        The points with ``kind="scatter"``.
    kind_ : {"bar", "change", "scatter"}
        The view drawn.
    improved_ : ndarray of bool of shape (n_tasks,)
        Tasks whose metric improved with the selection.
    greater_is_better_ : bool
        Whether a larger metric was taken as better.
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
    >>> float(display.ax_.get_ylim()[0])  # bars start at 0
    0.0
    """

    def __init__(self, before, after, *, task_labels=None, metric_name="metric",
                 greater_is_better=None):
        self.before = before
        self.after = after
        self.task_labels = task_labels
        self.metric_name = metric_name
        self.greater_is_better = greater_is_better

    def plot(self, *, ax=None, kind=None, bar_kw=None, scatter_kw=None):
        """Draw the comparison.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw. None: a new figure.
        kind : {"bar", "change", "scatter"}, default=None
            See the class description. None: ``"bar"`` up to 30 tasks, ``"change"`` beyond.
            ``"bar"`` with more than 40 tasks draws ``"change"`` instead (with a warning).
        bar_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.bar` (``"bar"`` and ``"change"``).
        scatter_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.scatter` (``"scatter"``).

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
            kind = "bar" if before.size <= 30 else "change"
        if kind not in ("bar", "change", "scatter"):
            raise ValueError(f"kind must be 'bar', 'change', 'scatter' or None; got {kind!r}.")
        if kind == "bar" and before.size > _MAX_BAR_TASKS:
            warnings.warn(f"kind='bar' with {before.size} tasks is unreadable; drawing the "
                          f"sorted per-task change (kind='change') instead.", UserWarning,
                          stacklevel=2)
            kind = "change"

        change = after - before
        greater_is_better = self.greater_is_better
        if greater_is_better is None:
            greater_is_better = "higher is better" in str(self.metric_name)
        self.greater_is_better_ = bool(greater_is_better)
        sign = 1.0 if greater_is_better else -1.0
        self.improved_ = sign * change > 0
        worse = sign * change < 0
        colours = np.where(self.improved_, _BETTER, np.where(worse, _WORSE, _SAME))
        n_better, n_worse = int(self.improved_.sum()), int(worse.sum())
        direction = "higher" if greater_is_better else "lower"
        summary = (f"mean over tasks {np.nanmean(before):.4g} (all rows) -> "
                   f"{np.nanmean(after):.4g} (selected rows)\nbetter on {n_better}, worse on "
                   f"{n_worse} of {before.size} tasks ({direction} is better)")

        figsize = {"bar": (min(12.0, max(5.0, 0.45 * before.size + 2.0)), 4.2),
                   "change": (7.0, 4.2), "scatter": (5.2, 5.0)}[kind]
        ax = axes_or_new(ax, "SelectionDisplay", figsize=figsize)
        self.bars_, self.scatter_, self.kind_ = None, None, kind
        if kind == "bar":
            self._plot_bars(ax, before, after, labels, change, colours, bar_kw)
        elif kind == "change":
            self._plot_change(ax, change, labels, colours, bar_kw)
        else:
            self._plot_scatter(ax, before, after, colours, scatter_kw)
        ax.set_title(f"Held-out {self.metric_name} per task\n{summary}", fontsize=9)
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    def _plot_bars(self, ax, before, after, labels, change, colours, bar_kw):
        positions = np.arange(before.size)
        width = 0.4
        bar_kw = bar_kw or {}
        self.bars_ = (
            ax.bar(positions - width / 2, before, width, **{"color": "0.75",
                                                            "label": "all rows", **bar_kw}),
            ax.bar(positions + width / 2, after, width, **{"color": "0.35",
                                                           "label": "selected rows", **bar_kw}),
        )
        width_points, _ = axes_size_points(ax)
        set_task_ticks(ax, labels, axes="x", length_points={"x": width_points})
        ax.set_xlabel("task")
        ax.set_ylabel(f"held-out {self.metric_name}")
        # Bars start at 0 (matplotlib's default for bars; never a truncated axis that makes a
        # 1% change look like a halving). Room above the bars for the legend and the changes.
        values = np.concatenate([before, after])
        values = values[np.isfinite(values)]
        if values.size:
            low, high = min(0.0, values.min()), max(0.0, values.max())
            ax.set_ylim(low, high + 0.3 * ((high - low) or 1.0))
        if before.size <= 12:  # write each task's change above its pair of bars
            for position, value, delta, colour in zip(positions, np.fmax(before, after),
                                                      change, colours):
                if np.isfinite(delta):
                    ax.annotate(f"{delta:+.2g}", (position, value), xytext=(0, 3),
                                textcoords="offset points", ha="center", va="bottom",
                                fontsize=7, color=colour)
        ax.legend(frameon=False, ncols=2, loc="upper right")

    def _plot_change(self, ax, change, labels, colours, bar_kw):
        # Best first: the most negative change of a loss, the largest gain of a score; tasks
        # without a value last.
        gain = change if self.greater_is_better_ else -change
        order = np.argsort(-np.where(np.isfinite(gain), gain, -np.inf), kind="stable")
        self.bars_ = ax.bar(np.arange(change.size), change[order],
                            **{"color": colours[order], "width": 0.8, **(bar_kw or {})})
        ax.axhline(0.0, color="0.3", linewidth=0.8)
        width_points, _ = axes_size_points(ax)
        set_task_ticks(ax, [labels[i] for i in order], axes="x",
                       length_points={"x": width_points})
        ax.set_xlim(-0.6, change.size - 0.4)
        ax.set_xlabel("task, sorted by the change (best first)")
        ax.set_ylabel(f"change in held-out {self.metric_name}\n(selected rows - all rows)")

    def _plot_scatter(self, ax, before, after, colours, scatter_kw):
        self.scatter_ = ax.scatter(before, after, **{"s": 22, "c": colours, "alpha": 0.8,
                                                     "edgecolors": "none", **(scatter_kw or {})})
        finite = np.concatenate([before, after])
        finite = finite[np.isfinite(finite)]
        low, high = finite.min(), finite.max()
        ax.plot([low, high], [low, high], "--", color="0.5", linewidth=1, label="no change")
        # Legend entries for the colours (the scatter itself has one colour per point).
        ax.scatter([], [], color=_BETTER, label="better with selection")
        ax.scatter([], [], color=_WORSE, label="worse with selection")
        ax.set_xlabel(f"held-out {self.metric_name}\nmodel on all rows")
        ax.set_ylabel(f"held-out {self.metric_name}\nmodel on selected rows")
        ax.legend(frameon=False, loc="upper left")

    @classmethod
    def from_estimator(cls, selector, X, y, *, baseline, tasks=None, metric=None,
                       metric_name=None, greater_is_better=None, ax=None, kind=None,
                       bar_kw=None, scatter_kw=None):
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
        greater_is_better : bool, default=None
            Whether a larger metric is better. None: True for the default classifier metric
            (accuracy), False otherwise (a loss such as MSE); pass it for your own metric.
        ax : matplotlib Axes, default=None
            Where to draw.
        kind : {"bar", "change", "scatter"}, default=None
            See :meth:`plot`.
        bar_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.bar`.
        scatter_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.scatter`.

        Returns
        -------
        display : SelectionDisplay
            The drawn display; ``before`` and ``after`` hold the per-task metric.
        """
        check_is_fitted(selector, "estimator_")
        classifier = is_classifier(selector)
        if metric is None:
            metric = accuracy_score if classifier else mean_squared_error
            default_name = ("accuracy (higher is better)" if classifier
                            else "MSE (lower is better)")
            default_greater = classifier
        else:
            default_name = getattr(metric, "__name__", "metric")
            default_greater = False
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
                      metric_name=default_name if metric_name is None else metric_name,
                      greater_is_better=(default_greater if greater_is_better is None
                                         else greater_is_better))
        return display.plot(ax=ax, kind=kind, bar_kw=bar_kw, scatter_kw=scatter_kw)

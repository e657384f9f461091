"""TaskInfluenceDisplay: the (K, K) task-influence matrix as a heatmap."""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..backend import to_numpy
from ._base import axes_or_new, task_names

__all__ = ["TaskInfluenceDisplay"]


class TaskInfluenceDisplay:
    """Heatmap of the task-influence matrix: which tasks help or hurt which.

    Cell ``[l, k]`` (row l, column k) is the effect on task k's validation loss of removing
    task l, ``V_k(without l) - V_k(with everything)`` (paper eq. 11-13). Positive (blue): task l
    HELPS task k. Negative (red): task l HURTS task k (negative transfer). The diverging colour
    map is centred at 0 and scaled to the largest off-diagonal magnitude. The diagonal (a task's
    effect on itself) is not a relatedness number; it is masked (grey) by default so that it
    does not dominate the colour scale.

    Build it with :meth:`from_estimator` from a fitted :class:`~mtif_sklearn.MTIFInfluence`, or
    directly from a matrix and call :meth:`plot`.

    Parameters
    ----------
    task_influence : array-like of shape (n_tasks, n_tasks)
        ``[l, k]``: effect on task k of removing task l.
    task_labels : array-like of shape (n_tasks,), default=None
        Names of the tasks, in the matrix order. None: ``0 .. n_tasks - 1``.

    Attributes
    ----------
    im_ : matplotlib.image.AxesImage
        The heatmap.
    colorbar_ : matplotlib.colorbar.Colorbar or None
        The colour bar (None with ``colorbar=False``).
    text_ : ndarray of matplotlib.text.Text or None
        The cell annotations, shape (n_tasks, n_tasks), None where not written.
    ax_ : matplotlib.axes.Axes
        Axes of the heatmap.
    figure_ : matplotlib.figure.Figure
        Figure holding the axes.

    See Also
    --------
    InfluenceAgreementDisplay : MTIF against brute-force retraining.
    mtif_sklearn.MTIFInfluence : Computes ``task_influence_``.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from mtif_sklearn import MTIFInfluence, MultitaskRidge
    >>> from mtif_sklearn.datasets import make_multitask_regression
    >>> from mtif_sklearn.plotting import TaskInfluenceDisplay
    >>> X, y, tasks = make_multitask_regression(n_tasks=4, n_samples_per_task=40,
    ...                                         n_features=5, random_state=0)
    >>> inf = MTIFInfluence(MultitaskRidge(alpha=0.1), random_state=0).fit(X, y, tasks=tasks)
    >>> display = TaskInfluenceDisplay.from_estimator(inf)
    >>> display.ax_.get_xlabel()
    'target task k (validation loss)'
    """

    def __init__(self, task_influence, *, task_labels=None):
        self.task_influence = task_influence
        self.task_labels = task_labels

    def plot(self, *, ax=None, cmap="RdBu", mask_diagonal=True, include_values=None,
             values_format=None, colorbar=True, title=None):
        """Draw the heatmap.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw. None: a new figure.
        cmap : str or matplotlib Colormap, default="RdBu"
            Diverging colour map; with "RdBu" negative (hurts) is red and positive (helps)
            is blue.
        mask_diagonal : bool, default=True
            Grey out the diagonal (a task's effect on itself) and leave it out of the colour
            scale. False: draw it like the other cells.
        include_values : bool, default=None
            Write the value in every cell. None: only when there are at most 10 tasks.
        values_format : str, default=None
            Format of the cell values. None: one decimal in units of a power of ten chosen
            from the largest value (the unit is given in the colour bar label), so that the
            cells stay short and comparable.
        colorbar : bool, default=True
            Add a colour bar.
        title : str, default=None
            Axes title. None: a title that says which colour helps.

        Returns
        -------
        display : TaskInfluenceDisplay
            The display, with ``ax_``, ``figure_``, ``im_`` set.
        """
        import matplotlib

        ax = axes_or_new(ax, "TaskInfluenceDisplay", figsize=(6.4, 5.4))
        matrix = np.asarray(to_numpy(self.task_influence), dtype=np.float64)
        if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
            raise ValueError(f"task_influence must be square (n_tasks, n_tasks); got shape "
                             f"{matrix.shape}.")
        n_tasks = matrix.shape[0]
        labels = task_names(range(n_tasks) if self.task_labels is None else self.task_labels)
        if len(labels) != n_tasks:
            raise ValueError(f"task_labels has {len(labels)} names for {n_tasks} tasks.")
        shown = matrix.copy()
        if mask_diagonal:
            np.fill_diagonal(shown, np.nan)
        finite = np.abs(shown[np.isfinite(shown)])
        limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        colormap = matplotlib.colormaps.get_cmap(cmap).with_extremes(bad="0.85")
        self.im_ = ax.imshow(shown, cmap=colormap, vmin=-limit, vmax=limit,
                             interpolation="nearest")

        step = max(1, int(np.ceil(n_tasks / 25)))  # readable ticks for many tasks
        ticks = np.arange(0, n_tasks, step)
        ax.set_xticks(ticks, [labels[i] for i in ticks],
                      rotation=45 if max(map(len, labels)) > 3 else 0, ha="right"
                      if max(map(len, labels)) > 3 else "center")
        ax.set_yticks(ticks, [labels[i] for i in ticks])
        ax.set_xlabel("target task k (validation loss)")
        ax.set_ylabel("removed task l")
        ax.set_title("MTIF task influence: blue helps, red hurts" if title is None else title)

        if include_values is None:
            include_values = n_tasks <= 10
        exponent = int(np.floor(np.log10(limit)))
        unit = 10.0 ** exponent if values_format is None and not -1 <= exponent <= 1 else 1.0
        self.text_ = None
        if include_values:
            self.text_ = np.empty((n_tasks, n_tasks), dtype=object)
            for source in range(n_tasks):
                for target in range(n_tasks):
                    value = shown[source, target]
                    if np.isnan(value):
                        text = "self" if source == target and mask_diagonal else ""
                        colour = "0.35"
                    else:
                        text = (format(value, values_format) if values_format is not None
                                else f"{value / unit:.1f}".replace("-0.0", "0.0"))
                        colour = "white" if abs(value) > 0.6 * limit else "black"
                    self.text_[source, target] = ax.text(
                        target, source, text, ha="center", va="center", color=colour,
                        fontsize=8 if n_tasks <= 6 else 7)
        self.colorbar_ = None
        if colorbar:
            self.colorbar_ = ax.figure.colorbar(self.im_, ax=ax)
            label = "effect on validation loss (+ helps, - hurts)"
            if include_values and unit != 1.0:
                label += f"\ncell values in units of 1e{exponent}"
            self.colorbar_.set_label(label)
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_estimator(cls, influence, *, ax=None, cmap="RdBu", mask_diagonal=True,
                       include_values=None, values_format=None, colorbar=True, title=None):
        """Plot ``task_influence_`` of a fitted :class:`~mtif_sklearn.MTIFInfluence`.

        Parameters
        ----------
        influence : MTIFInfluence
            Fitted; its ``task_influence_`` and ``tasks_`` are drawn.
        ax : matplotlib Axes, default=None
            Where to draw. None: a new figure.
        cmap : str or matplotlib Colormap, default="RdBu"
            Diverging colour map (centred at 0).
        mask_diagonal : bool, default=True
            Grey out the diagonal.
        include_values : bool, default=None
            Write the values in the cells. None: only up to 10 tasks.
        values_format : str, default=None
            Format of the cell values. None: one decimal in a common power-of-ten unit.
        colorbar : bool, default=True
            Add a colour bar.
        title : str, default=None
            Axes title.

        Returns
        -------
        display : TaskInfluenceDisplay
            The drawn display.
        """
        check_is_fitted(influence, "task_influence_")
        display = cls(influence.task_influence_, task_labels=influence.tasks_)
        return display.plot(ax=ax, cmap=cmap, mask_diagonal=mask_diagonal,
                            include_values=include_values, values_format=values_format,
                            colorbar=colorbar, title=title)

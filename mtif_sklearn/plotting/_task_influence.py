"""TaskInfluenceDisplay: the (K, K) task-influence matrix as a heatmap."""

import numpy as np
from sklearn.utils.validation import check_is_fitted

from ..backend import to_numpy
from ._base import (
    _text_width,
    axes_or_new,
    axes_size_points,
    set_task_ticks,
    significant,
    task_names,
)

__all__ = ["TaskInfluenceDisplay"]

# Default colour limit: this percentile of the off-diagonal |effects|. One extreme pair must
# not set the scale for all the others (on the school data the largest cell is 6x the 99th
# percentile and left 96% of the cells nearly white).
_DEFAULT_PERCENTILE = 99.0


def _as_matrix(values, name, shape=None):
    matrix = np.asarray(to_numpy(values), dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{name} must be square (n_tasks, n_tasks); got shape {matrix.shape}.")
    if shape is not None and matrix.shape != shape:
        raise ValueError(f"{name} must have the shape of task_influence {shape}; got "
                         f"{matrix.shape}.")
    return matrix


def _colour_limits(shown, vmin, vmax):
    """(vmin, vmax) around 0: the given ones, the mirror of the one given, or +-the default
    percentile of the finite |values|."""
    if vmin is None and vmax is None:
        finite = np.abs(shown[np.isfinite(shown)])
        limit = float(np.percentile(finite, _DEFAULT_PERCENTILE)) if finite.size else 0.0
        if limit <= 0:
            limit = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
        return -limit, limit
    if vmin is None:
        vmin = -abs(vmax)
    if vmax is None:
        vmax = abs(vmin)
    if not vmin < vmax:
        raise ValueError(f"vmin must be smaller than vmax; got vmin={vmin}, vmax={vmax}.")
    return float(vmin), float(vmax)


class TaskInfluenceDisplay:
    """Heatmap of the task-influence matrix: which tasks help or hurt which.

    Cell ``[l, k]`` (row l, column k) is the effect on task k's validation loss of removing
    task l, ``V_k(without l) - V_k(with everything)`` (MTIF paper, eq. 11-13). Positive (blue):
    task l HELPS task k. Negative (red): task l HURTS task k (negative transfer). The
    diverging colour map is centred at 0; by default its limits are the 99th percentile of the
    off-diagonal magnitudes, so that one extreme pair does not wash out the rest (cells beyond
    the limits take the end colours and the colour bar shows an arrow). The diagonal (a task's
    effect on itself) is not a relatedness number; it is masked (grey) by default.

    With standard errors (``standard_errors=``, or ``task_influence_se_`` of a cross-fitted
    :class:`~mtif_sklearn.MTIFInfluence`), cells whose mean is within ``n_se`` standard
    errors of 0 get a dot: their sign is not established.

    Build it with :meth:`from_estimator` from a fitted :class:`~mtif_sklearn.MTIFInfluence`, or
    directly from a matrix and call :meth:`plot`.

    Parameters
    ----------
    task_influence : array-like of shape (n_tasks, n_tasks)
        ``[l, k]``: effect on task k of removing task l.
    task_labels : array-like of shape (n_tasks,), default=None
        Names of the tasks, in the matrix order. None: ``0 .. n_tasks - 1``.
    standard_errors : array-like of shape (n_tasks, n_tasks), default=None
        Standard error of every cell (e.g. ``task_influence_se_``). None: no uncertainty
        marks.

    Attributes
    ----------
    im_ : matplotlib.image.AxesImage
        The heatmap.
    colorbar_ : matplotlib.colorbar.Colorbar or None
        The colour bar (None with ``colorbar=False``).
    text_ : ndarray of matplotlib.text.Text or None
        The cell annotations, shape (n_tasks, n_tasks), None where not written.
    uncertain_ : ndarray of bool of shape (n_tasks, n_tasks) or None
        Cells whose mean is within ``n_se`` standard errors of 0 (None without standard
        errors).
    uncertain_markers_ : matplotlib.collections.PathCollection or None
        The dots on the ``uncertain_`` cells.
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

    def __init__(self, task_influence, *, task_labels=None, standard_errors=None):
        self.task_influence = task_influence
        self.task_labels = task_labels
        self.standard_errors = standard_errors

    def plot(self, *, ax=None, cmap="RdBu", vmin=None, vmax=None, mask_diagonal=True,
             include_values=None, values_format=None, n_se=2.0, colorbar=True, title=None,
             imshow_kw=None, text_kw=None, colorbar_kw=None, uncertain_kw=None):
        """Draw the heatmap.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw. None: a new figure.
        cmap : str or matplotlib Colormap, default="RdBu"
            Diverging colour map; with "RdBu" negative (hurts) is red and positive (helps)
            is blue.
        vmin, vmax : float, default=None
            Colour limits. None for both: minus and plus the 99th percentile of the shown
            absolute values (the diagonal left out when masked). One of them given: the other
            mirrors it. 0 stays the centre (white) either way.
        mask_diagonal : bool, default=True
            Grey out the diagonal (a task's effect on itself) and leave it out of the colour
            scale. False: draw it like the other cells.
        include_values : bool, default=None
            Write the value in every cell. None: only when there are at most 10 tasks.
        values_format : str, default=None
            Format spec of the cell values (e.g. ``".3f"``). None: two significant digits, in
            a power-of-ten unit given in the colour bar label when the values are far from 1.
        n_se : float or None, default=2.0
            With standard errors: mark (dot) the cells whose ``abs(value) < n_se * se``. None
            or 0: no marks.
        colorbar : bool, default=True
            Add a colour bar.
        title : str, default=None
            Axes title. None: a title that says which colour helps.
        imshow_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.imshow`; overrides ``cmap``, ``norm`` (built
            from the limits) and ``interpolation``.
        text_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.text` for the cell values.
        colorbar_kw : dict, default=None
            Passed to :meth:`matplotlib.figure.Figure.colorbar`.
        uncertain_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.scatter` for the uncertainty dots.

        Returns
        -------
        display : TaskInfluenceDisplay
            The display, with ``ax_``, ``figure_``, ``im_`` set.
        """
        import matplotlib
        from matplotlib.colors import Normalize, TwoSlopeNorm

        matrix = _as_matrix(self.task_influence, "task_influence")
        n_tasks = matrix.shape[0]
        labels = task_names(range(n_tasks) if self.task_labels is None else self.task_labels)
        if len(labels) != n_tasks:
            raise ValueError(f"task_labels has {len(labels)} names for {n_tasks} tasks.")
        se = (None if self.standard_errors is None
              else _as_matrix(self.standard_errors, "standard_errors", matrix.shape))
        ax = axes_or_new(ax, "TaskInfluenceDisplay",
                         figsize=(6.4, 5.4) if n_tasks <= 40 else (8.0, 6.8))

        shown = matrix.copy()
        if mask_diagonal:
            np.fill_diagonal(shown, np.nan)
        vmin, vmax = _colour_limits(shown, vmin, vmax)
        norm = (TwoSlopeNorm(0.0, vmin, vmax) if vmin < 0 < vmax
                else Normalize(vmin, vmax))
        colormap = matplotlib.colormaps.get_cmap(cmap).with_extremes(bad="0.85")
        self.im_ = ax.imshow(shown, **{"cmap": colormap, "norm": norm,
                                       "interpolation": "nearest", **(imshow_kw or {})})

        width, height = axes_size_points(ax)
        side = min(0.8 * width, height)  # the square image; the colour bar takes the rest
        set_task_ticks(ax, labels, length_points={"x": side, "y": side})
        ax.set_xlabel("target task k (validation loss)")
        ax.set_ylabel("removed task l")

        if include_values is None:
            include_values = n_tasks <= 10
        self.uncertain_, self.uncertain_markers_ = None, None
        if se is not None and n_se:
            self.uncertain_ = np.isfinite(shown) & (np.abs(matrix) < n_se * se)
            rows, cols = np.nonzero(self.uncertain_)
            cell = side / n_tasks  # points per cell
            diameter = min(0.28 * cell, 4.0)
            if include_values:  # in the cell's corner, clear of its value
                rows, cols = rows - 0.32, cols + 0.32
            self.uncertain_markers_ = ax.scatter(
                cols, rows, **{"s": max(1.0, diameter ** 2), "marker": "o",
                               "color": "0.15", "linewidths": 0,
                               "label": f"|effect| < {n_se:g} standard errors",
                               **(uncertain_kw or {})})
            ax.set_xlim(-0.5, n_tasks - 0.5)
            ax.set_ylim(n_tasks - 0.5, -0.5)
        if title is None:
            title = "MTIF task influence: blue helps, red hurts"
            if self.uncertain_markers_ is not None:
                title += f"\ndot: within {n_se:g} standard errors of 0"
        ax.set_title(title)

        largest = max(abs(vmin), abs(vmax))
        exponent = int(np.floor(np.log10(largest)))
        unit = 10.0 ** exponent if values_format is None and not -1 <= exponent <= 1 else 1.0
        # Two significant digits (0.031 stays "0.031" next to a 4.13 cell), but no more
        # decimals than two past the scale's leading digit: a cell far below the scale reads
        # "-0.0003", not "-0.00031234".
        max_decimals = max(0, 3 - int(np.floor(np.log10(largest / unit))))
        self.text_ = None
        if include_values:
            texts = np.full((n_tasks, n_tasks), "", dtype=object)
            colours = np.full((n_tasks, n_tasks), "black", dtype=object)
            for source, target in np.ndindex(n_tasks, n_tasks):
                value = shown[source, target]
                if np.isnan(value):
                    texts[source, target] = ("self" if source == target and mask_diagonal
                                             else "")
                    colours[source, target] = "0.35"
                else:
                    texts[source, target] = (format(value, values_format)
                                             if values_format is not None
                                             else significant(value / unit, 2, max_decimals))
                    if abs(value) > 0.6 * largest:
                        colours[source, target] = "white"
            # The largest font up to 8 points at which the widest value fits in its cell.
            widest = max(_text_width(text, 8.0) for text in texts.ravel())
            fontsize = float(np.clip(8.0 * 0.9 * (side / n_tasks) / max(widest, 1e-9),
                                     4.5, 8.0))
            self.text_ = np.empty((n_tasks, n_tasks), dtype=object)
            for source, target in np.ndindex(n_tasks, n_tasks):
                self.text_[source, target] = ax.text(
                    target, source, texts[source, target],
                    **{"ha": "center", "va": "center", "color": colours[source, target],
                       "fontsize": fontsize, **(text_kw or {})})
        self.colorbar_ = None
        if colorbar:
            finite = shown[np.isfinite(shown)]
            below, above = bool(np.any(finite < vmin)), bool(np.any(finite > vmax))
            extend = {(False, False): "neither", (True, False): "min",
                      (False, True): "max", (True, True): "both"}[below, above]
            self.colorbar_ = ax.figure.colorbar(self.im_, ax=ax,
                                                **{"extend": extend, **(colorbar_kw or {})})
            label = "effect on validation loss (+ helps, - hurts)"
            if include_values and unit != 1.0:
                label += f"\ncell values in units of 1e{exponent}"
            self.colorbar_.set_label(label)
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_estimator(cls, influence, *, ax=None, cmap="RdBu", vmin=None, vmax=None,
                       mask_diagonal=True, include_values=None, values_format=None, n_se=2.0,
                       colorbar=True, title=None, imshow_kw=None, text_kw=None,
                       colorbar_kw=None, uncertain_kw=None):
        """Plot ``task_influence_`` of a fitted :class:`~mtif_sklearn.MTIFInfluence`.

        When the influence has standard errors (``task_influence_se_``, from cross-fitting),
        cells within ``n_se`` standard errors of 0 are marked.

        Parameters
        ----------
        influence : MTIFInfluence
            Fitted; its ``task_influence_``, ``tasks_`` and, when present,
            ``task_influence_se_`` are drawn.
        ax : matplotlib Axes, default=None
            Where to draw. None: a new figure.
        cmap : str or matplotlib Colormap, default="RdBu"
            Diverging colour map (centred at 0).
        vmin, vmax : float, default=None
            Colour limits. None: plus and minus the 99th percentile of the absolute values.
        mask_diagonal : bool, default=True
            Grey out the diagonal.
        include_values : bool, default=None
            Write the values in the cells. None: only up to 10 tasks.
        values_format : str, default=None
            Format spec of the cell values. None: two significant digits.
        n_se : float or None, default=2.0
            Mark cells with ``abs(value) < n_se * task_influence_se_``. None or 0: no marks.
        colorbar : bool, default=True
            Add a colour bar.
        title : str, default=None
            Axes title.
        imshow_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.imshow`.
        text_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.text` for the cell values.
        colorbar_kw : dict, default=None
            Passed to :meth:`matplotlib.figure.Figure.colorbar`.
        uncertain_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.scatter` for the uncertainty dots.

        Returns
        -------
        display : TaskInfluenceDisplay
            The drawn display.
        """
        check_is_fitted(influence, "task_influence_")
        display = cls(influence.task_influence_, task_labels=influence.tasks_,
                      standard_errors=getattr(influence, "task_influence_se_", None))
        return display.plot(ax=ax, cmap=cmap, vmin=vmin, vmax=vmax,
                            mask_diagonal=mask_diagonal, include_values=include_values,
                            values_format=values_format, n_se=n_se, colorbar=colorbar,
                            title=title, imshow_kw=imshow_kw, text_kw=text_kw,
                            colorbar_kw=colorbar_kw, uncertain_kw=uncertain_kw)

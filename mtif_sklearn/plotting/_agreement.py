"""InfluenceAgreementDisplay: MTIF estimates against brute-force retraining (paper Figure 1)."""

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.utils import _safe_indexing
from sklearn.utils.validation import check_is_fitted

from ..backend import to_numpy
from ._base import axes_or_new

__all__ = ["InfluenceAgreementDisplay"]

_LEVELS = {"row": ("leave-one-out", "LOO"), "task": ("leave-one-task-out", "LOTO")}


class InfluenceAgreementDisplay:
    """Scatter of MTIF influence estimates against the effects measured by refitting.

    Every point is one (removed row or task, target task) pair: x is the MTIF first-order
    estimate, y the change of the target task's validation loss measured by refitting without
    the row (leave-one-out, ``level="row"``) or the task (leave-one-task-out, ``level="task"``),
    computed with :mod:`mtif_sklearn.retrain`. Both follow the same sign convention, so points
    on the dashed diagonal are exact estimates; the title gives Pearson's and Spearman's
    correlation, as in the MTIF paper's Figure 1.

    Parameters
    ----------
    mtif : array-like
        MTIF estimates.
    truth : array-like of the same shape
        The same effects by refitting.
    level : {"row", "task"} or None, default=None
        What was removed, for the axis labels. None: generic labels.

    Attributes
    ----------
    pearson_ : float
        Pearson correlation of the finite pairs.
    spearman_ : float
        Spearman rank correlation of the finite pairs.
    scatter_ : matplotlib.collections.PathCollection
        The points.
    ax_ : matplotlib.axes.Axes
        Axes of the scatter.
    figure_ : matplotlib.figure.Figure
        Figure holding the axes.

    See Also
    --------
    mtif_sklearn.retrain.loo_effects : Leave-one-out ground truth.
    mtif_sklearn.retrain.loto_effects : Leave-one-task-out ground truth.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> from mtif_sklearn.plotting import InfluenceAgreementDisplay
    >>> display = InfluenceAgreementDisplay.from_predictions([0.1, -0.2, 0.3], [0.1, -0.3, 0.2])
    >>> round(display.pearson_, 3)
    0.976
    """

    def __init__(self, mtif, truth, *, level=None):
        self.mtif = mtif
        self.truth = truth
        self.level = level

    def plot(self, *, ax=None, color="tab:blue", alpha=0.6, diagonal=True, scatter_kw=None,
             line_kw=None):
        """Draw the scatter.

        Parameters
        ----------
        ax : matplotlib Axes, default=None
            Where to draw. None: a new figure.
        color : color, default="tab:blue"
            Colour of the points.
        alpha : float, default=0.6
            Opacity of the points.
        diagonal : bool, default=True
            Draw the line ``truth = mtif`` (exact agreement).
        scatter_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.scatter` (overrides ``color`` and
            ``alpha``).
        line_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.plot` for the diagonal.

        Returns
        -------
        display : InfluenceAgreementDisplay
            The display, with ``ax_``, ``figure_``, ``scatter_`` set.
        """
        ax = axes_or_new(ax, "InfluenceAgreementDisplay", figsize=(5.4, 5.0))
        if self.level is not None and self.level not in _LEVELS:
            raise ValueError(f"level must be 'row', 'task' or None; got {self.level!r}.")
        mtif = np.asarray(to_numpy(self.mtif), dtype=np.float64).ravel()
        truth = np.asarray(to_numpy(self.truth), dtype=np.float64).ravel()
        if mtif.shape != truth.shape:
            raise ValueError(f"mtif and truth must have the same number of values; got "
                             f"{mtif.size} and {truth.size}.")
        finite = np.isfinite(mtif) & np.isfinite(truth)
        mtif, truth = mtif[finite], truth[finite]
        if mtif.size < 2:
            raise ValueError("Need at least two finite (mtif, truth) pairs to compare.")
        self.pearson_ = float(pearsonr(mtif, truth)[0])
        self.spearman_ = float(spearmanr(mtif, truth)[0])
        self.scatter_ = ax.scatter(mtif, truth, **{"s": 14 if mtif.size > 200 else 24,
                                                   "color": color, "alpha": alpha,
                                                   "edgecolors": "none", **(scatter_kw or {})})
        if diagonal:
            low = min(mtif.min(), truth.min())
            high = max(mtif.max(), truth.max())
            pad = 0.05 * (high - low or 1.0)
            ax.plot([low - pad, high + pad], [low - pad, high + pad],
                    **{"linestyle": "--", "color": "0.5", "linewidth": 1,
                       "label": "exact agreement", **(line_kw or {})})
            ax.legend(loc="upper left", frameon=False)
        ax.ticklabel_format(style="sci", scilimits=(-2, 3))  # small effects: 1e-3 as offset
        ax.axhline(0, color="0.85", linewidth=0.8, zorder=0)
        ax.axvline(0, color="0.85", linewidth=0.8, zorder=0)
        if self.level is None:
            short = "refitting"
            ax.set_xlabel("MTIF estimate of the effect")
            ax.set_ylabel("effect measured by refitting")
        else:
            name, short = _LEVELS[self.level]
            ax.set_xlabel(f"MTIF estimate of the effect of removing a {self.level}")
            ax.set_ylabel(f"effect measured by refitting ({name})")
        ax.set_title(f"MTIF vs {short}: Pearson {self.pearson_:.3f}, "
                     f"Spearman {self.spearman_:.3f} (n={mtif.size})", fontsize=10)
        self.ax_ = ax
        self.figure_ = ax.figure
        return self

    @classmethod
    def from_predictions(cls, mtif, truth, *, level=None, ax=None, color="tab:blue", alpha=0.6,
                         diagonal=True, scatter_kw=None, line_kw=None):
        """Plot precomputed MTIF estimates against precomputed retraining effects.

        Parameters
        ----------
        mtif : array-like
            MTIF estimates (e.g. ``influence_[rows]`` or ``task_influence_``).
        truth : array-like of the same shape
            The same effects by refitting (``loo_effects`` / ``loto_effects``).
        level : {"row", "task"} or None, default=None
            What was removed, for the axis labels.
        ax : matplotlib Axes, default=None
            Where to draw.
        color : color, default="tab:blue"
            Colour of the points.
        alpha : float, default=0.6
            Opacity of the points.
        diagonal : bool, default=True
            Draw the line of exact agreement.
        scatter_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.scatter`.
        line_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.plot` for the diagonal.

        Returns
        -------
        display : InfluenceAgreementDisplay
            The drawn display.
        """
        return cls(mtif, truth, level=level).plot(ax=ax, color=color, alpha=alpha,
                                                  diagonal=diagonal, scatter_kw=scatter_kw,
                                                  line_kw=line_kw)

    @classmethod
    def from_estimator(cls, influence, X, y, *, tasks=None, sample_weight=None, X_val=None,
                       y_val=None, tasks_val=None, level="task", rows=None,
                       include_diagonal=False, n_jobs=None, ax=None, color="tab:blue",
                       alpha=0.6, diagonal=True, scatter_kw=None, line_kw=None):
        """Compute the retraining ground truth for a fitted MTIFInfluence and plot the two.

        Refits the influence's estimator once per task (``level="task"``,
        :func:`~mtif_sklearn.retrain.loto_effects`) or once per chosen training row
        (``level="row"``, :func:`~mtif_sklearn.retrain.loo_effects`) on the same training and
        validation rows, with the same sample weights, as the influence used: pass X, y,
        tasks and sample_weight exactly as given to ``influence.fit``.

        Parameters
        ----------
        influence : MTIFInfluence
            Fitted on ``(X, y)``.
        X : array-like of shape (n_samples, n_features)
            The rows passed to ``influence.fit``.
        y : array-like of shape (n_samples,)
            Their targets.
        tasks : array-like of shape (n_samples,), default=None
            Their task labels (unless the model has a ``task_column``).
        sample_weight : array-like of shape (n_samples,), default=None
            The weights passed to ``influence.fit``. The refits must use them too: an
            influence of a weighted fit compared with unweighted refits disagrees even where
            the influence is exact.
        X_val : array-like, default=None
            The validation rows, when ``influence.fit`` was given ``X_val``; otherwise the
            held-out rows ``influence.val_indices_`` of ``X`` are used.
        y_val : array-like, default=None
            Targets of ``X_val``.
        tasks_val : array-like, default=None
            Task labels of ``X_val``.
        level : {"task", "row"}, default="task"
            Compare ``task_influence_`` with leave-one-task-out, or ``influence_`` with
            leave-one-out.
        rows : array-like of int, default=None
            With ``level="row"``: positions in ``influence_`` (training rows) to refit without.
            None: all training rows, one refit each (slow for many rows).
        include_diagonal : bool, default=False
            With ``level="task"``: also plot a task's effect on itself (left out by default,
            as from task-relatedness rankings).
        n_jobs : int, default=None
            Parallel refits through joblib.
        ax : matplotlib Axes, default=None
            Where to draw.
        color : color, default="tab:blue"
            Colour of the points.
        alpha : float, default=0.6
            Opacity of the points.
        diagonal : bool, default=True
            Draw the line of exact agreement.
        scatter_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.scatter`.
        line_kw : dict, default=None
            Passed to :meth:`matplotlib.axes.Axes.plot` for the diagonal.

        Returns
        -------
        display : InfluenceAgreementDisplay
            The drawn display; ``mtif`` and ``truth`` hold the compared values.
        """
        from ..retrain import loo_effects, loto_effects

        check_is_fitted(influence, "task_influence_")
        if level not in ("task", "row"):
            raise ValueError(f"level must be 'task' or 'row'; got {level!r}.")
        if getattr(influence, "fold_task_influence_", None) is not None:
            raise ValueError("This MTIFInfluence is cross-fitted (cv=...): its numbers average "
                             "several fits, so no single refit is its ground truth. Compare a "
                             "single-split MTIFInfluence (cv=None) with retraining.")
        train = influence.train_indices_
        X_train, y_train = _safe_indexing(X, train), _safe_indexing(y, train)
        tasks_train = None if tasks is None else _safe_indexing(tasks, train)
        weights_train = (None if sample_weight is None
                         else _safe_indexing(np.asarray(sample_weight), train))
        if influence.val_indices_ is not None:
            val = influence.val_indices_
            X_val, y_val = _safe_indexing(X, val), _safe_indexing(y, val)
            tasks_val = None if tasks is None else _safe_indexing(tasks, val)
        elif X_val is None or y_val is None:
            raise ValueError("influence was fitted with X_val; pass the same X_val and y_val "
                             "(and tasks_val) here.")
        estimator = influence.estimator
        if level == "task":
            truth = loto_effects(estimator, X_train, y_train, X_val, y_val, tasks=tasks_train,
                                 tasks_val=tasks_val, sample_weight=weights_train,
                                 n_jobs=n_jobs)
            mtif = np.array(to_numpy(influence.task_influence_), dtype=np.float64)
            if not include_diagonal:
                off = ~np.eye(len(truth), dtype=bool)
                mtif, truth = mtif[off], truth[off]
        else:
            rows = np.arange(len(train)) if rows is None else np.asarray(rows, dtype=np.int64)
            truth = loo_effects(estimator, X_train, y_train, X_val, y_val, tasks=tasks_train,
                                tasks_val=tasks_val, rows=rows, sample_weight=weights_train,
                                n_jobs=n_jobs)
            mtif = np.asarray(to_numpy(influence.influence_), dtype=np.float64)[rows]
        return cls(mtif, truth, level=level).plot(ax=ax, color=color, alpha=alpha,
                                                  diagonal=diagonal, scatter_kw=scatter_kw,
                                                  line_kw=line_kw)

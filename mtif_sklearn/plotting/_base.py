"""What the Display classes share: the lazy matplotlib import, the target axes, task tick
labels that never collide, and short significant-digit cell text."""

import numpy as np

# Tick steps a reader can count with: every 1st, 2nd, 5th, 10th, ... task.
_NICE_STEPS = tuple(m * 10**e for e in range(7) for m in (1, 2, 2.5, 5) if m * 10**e >= 1
                    and float(m * 10**e).is_integer())


def check_matplotlib(caller):
    """Import ``matplotlib.pyplot`` or raise an ImportError that says how to install it."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - exercised only without matplotlib
        raise ImportError(
            f"{caller} needs matplotlib; install it with pip install \"mtif-sklearn[plot]\"."
        ) from error
    return plt


def axes_or_new(ax, caller, figsize):
    """``ax`` itself, or the axes of a new (constrained-layout) figure of ``figsize``."""
    plt = check_matplotlib(caller)
    if ax is None:
        _, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax


def task_names(labels):
    """Task labels as strings for tick labels (drawn with ``parse_math=False``, so a ``$`` in
    a name is printed, not read as mathtext)."""
    return [str(label.item() if hasattr(label, "item") else label) for label in labels]


def _tick_font_size(axis):
    import matplotlib as mpl
    from matplotlib.font_manager import FontProperties

    return FontProperties(size=mpl.rcParams[f"{axis}tick.labelsize"]).get_size_in_points()


def _text_width(text, size):
    """Width in points of ``text`` drawn at font size ``size`` (no renderer needed)."""
    from matplotlib.font_manager import FontProperties
    from matplotlib.textpath import TextPath

    if not text:
        return 0.0
    return float(TextPath((0, 0), text, prop=FontProperties(size=size)).get_extents().width)


def tick_step(n_items, length_points, label_extent_points):
    """The smallest nice step such that labels ``step`` items apart have room: each label
    needs ``label_extent_points`` along the axis and the axis is ``length_points`` long."""
    per_item = length_points / max(n_items, 1)
    for step in _NICE_STEPS:
        if step * per_item >= label_extent_points or step >= n_items:
            return int(step)
    return int(_NICE_STEPS[-1])


def set_task_ticks(ax, labels, *, axes="xy", length_points):
    """Task tick labels on ``ax`` (cells at 0..n-1) thinned so that they never overlap.

    y labels are stacked (each needs one line height). x labels are all horizontal when they
    fit at the step vertical ones would need, or, once vertical ones are thinned anyway, at up
    to twice that step (short labels such as task numbers); otherwise all vertical, never a
    mix. Steps are nice numbers (1, 2, 5, 10, ...), and labels
    are never parsed as mathtext.
    """
    n_items = len(labels)
    result = {}
    if "y" in axes:
        size = _tick_font_size("y")
        step = tick_step(n_items, length_points["y"], 1.5 * size)
        ticks = np.arange(0, n_items, step)
        ax.set_yticks(ticks, [labels[i] for i in ticks], parse_math=False)
        result["y"] = ticks
    if "x" in axes:
        size = _tick_font_size("x")
        vertical_step = tick_step(n_items, length_points["x"], 1.5 * size)
        widest = max((_text_width(label, size) for label in labels), default=0.0)
        horizontal_step = tick_step(n_items, length_points["x"], widest + 0.8 * size)
        # Every label shown stays shown: thin further for horizontal labels only when the
        # vertical ones are thinned already.
        horizontal = horizontal_step == vertical_step or (
            vertical_step > 1 and horizontal_step <= 2 * vertical_step)
        step = horizontal_step if horizontal else vertical_step
        ticks = np.arange(0, n_items, step)
        ax.set_xticks(ticks, [labels[i] for i in ticks], parse_math=False,
                      rotation=0 if horizontal else 90, ha="center", va="top",
                      rotation_mode="default")
        result["x"] = ticks
    return result


def axes_size_points(ax):
    """Width and height of ``ax`` in points, from its current position in the figure."""
    width, height = ax.figure.get_size_inches()
    position = ax.get_position()
    return 72.0 * width * position.width, 72.0 * height * position.height


def significant(value, digits=2, max_decimals=None):
    """``value`` with ``digits`` significant digits, positional (0.031 -> "0.031", 4.13 ->
    "4.1", 350 -> "350"), but at most ``max_decimals`` decimals (so that values far below the
    scale stay short: -0.00079 -> "-0.0008" with 4)."""
    if not np.isfinite(value):
        return str(value)
    text = np.format_float_positional(float(value), precision=digits, unique=False,
                                      fractional=False, trim="-")
    if max_decimals is not None and "." in text and len(text.split(".")[1]) > max_decimals:
        text = np.format_float_positional(round(float(value), max_decimals),
                                          precision=max_decimals, unique=False,
                                          fractional=True, trim="-")
    return "0" if text in ("-0", "0") else text

"""What the Display classes share: the lazy matplotlib import and the target axes."""


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
    """Task labels as short strings for tick labels."""
    return [str(label.item() if hasattr(label, "item") else label) for label in labels]

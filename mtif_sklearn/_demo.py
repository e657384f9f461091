"""The README's main job: task relatedness, harmful rows and which tasks to train each task with,
on an embedded synthetic data set."""

from pathlib import Path

import numpy as np

from .datasets import make_multitask_regression
from .influence import MTIFInfluence
from .linear import MultitaskRidge
from .selection import NegativeTransferSelector, TaskSelector


def make_demo_data(random_state=0):
    """Eight regression tasks (two unrelated) with 3% of one task's labels grossly corrupted."""
    X, y, tasks, coef, unrelated = make_multitask_regression(
        n_tasks=8, n_samples_per_task=150, n_features=10, delta=0.5, eps=0.25,
        random_state=random_state, return_coef=True)
    rng = np.random.default_rng(random_state)
    corrupted = rng.choice(np.flatnonzero(tasks == 0), size=5, replace=False)
    y = y.copy()
    y[corrupted] += rng.choice([-15.0, 15.0], size=corrupted.size)
    return X, y, tasks, unrelated, corrupted


def make_demo_test_data(n_samples_per_task=1000, random_state=0):
    """Fresh clean rows from the same tasks as :func:`make_demo_data` (same true theta_k)."""
    _, _, _, coef, _ = make_multitask_regression(
        n_tasks=8, n_samples_per_task=150, n_features=10, delta=0.5, eps=0.25,
        random_state=random_state, return_coef=True)
    rng = np.random.default_rng([random_state, 1])
    tasks = np.repeat(np.arange(coef.shape[0]), n_samples_per_task)
    X = rng.standard_normal((tasks.size, coef.shape[1]))
    y = np.einsum("ij,ij->i", X, coef[tasks]) + rng.standard_normal(tasks.size)
    return X, y, tasks


def _format_matrix(matrix, labels):
    width = max(8, max(len(str(t)) for t in labels) + 2)
    head = " " * 12 + "".join(f"{'-> ' + str(t):>{width}}" for t in labels)
    lines = [head]
    for label, row in zip(labels, matrix, strict=True):
        lines.append(f"{'task ' + str(label):<12}" + "".join(f"{v:>{width}.4f}" for v in row))
    return "\n".join(lines)


def run_demo(output_dir="mtif_output", random_state=0, print_fn=print):
    """Fit MultitaskRidge on the demo data, score tasks and rows, and write a heatmap.

    Parameters
    ----------
    output_dir : str or Path, default="mtif_output"
        Where the plot goes (created if needed).
    random_state : int, default=0
        Seed of the data and the validation split.
    print_fn : callable, default=print
        Where the report goes.

    Returns
    -------
    influence : MTIFInfluence
        The fitted influence transformer.
    """
    X, y, tasks, unrelated, corrupted = make_demo_data(random_state)
    influence = MTIFInfluence(MultitaskRidge(alpha=0.05), validation_fraction=0.25,
                              random_state=random_state)
    influence.fit(X, y, tasks=tasks)
    labels = influence.tasks_
    task_matrix = influence.task_influence_
    print_fn("mtif-sklearn demo: 8 synthetic regression tasks, 150 rows each, 10 features")
    print_fn(f"  truly unrelated tasks: {labels[unrelated].tolist()}; task 0 has "
             f"{corrupted.size} rows with gross label errors\n")
    print_fn("Task influence [row l, column k] = change of task k's validation loss if task l "
             "were removed\n(positive: l HELPS k; negative: l HURTS k)")
    print_fn(_format_matrix(task_matrix, labels))

    off_diagonal = [(task_matrix[source, target], labels[source], labels[target])
                    for source in range(len(labels)) for target in range(len(labels))
                    if source != target]
    off_diagonal.sort(key=lambda item: item[0])
    print_fn("\nStrongest negative transfer (source -> target):")
    for value, source, target in off_diagonal[:3]:
        print_fn(f"  task {source} -> task {target}: {value:+.4f}")
    print_fn("Strongest help:")
    for value, source, target in off_diagonal[::-1][:3]:
        print_fn(f"  task {source} -> task {target}: {value:+.4f}")

    total = np.nansum(influence.influence_, axis=1)
    order = np.argsort(total)[:8]
    rows = influence.train_indices_[order]
    print_fn("\nMost harmful training rows (summed effect on all tasks' validation loss):")
    for row, value in zip(rows, total[order], strict=True):
        flag = "  <- corrupted label" if row in set(corrupted.tolist()) else ""
        print_fn(f"  row {row:4d} (task {tasks[row]}): {value:+.4f}{flag}")
    found = np.isin(corrupted, rows).sum()
    print_fn(f"  {found} of the {np.isin(corrupted, influence.train_indices_).sum()} corrupted "
             "training rows are among the 8 most harmful.")

    test = make_demo_test_data(random_state=random_state)
    _run_selection(X, y, tasks, corrupted, test, random_state, print_fn)
    _run_task_selection(X, y, tasks, unrelated, test, random_state, print_fn)

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print_fn("\n(matplotlib not installed: no plot; pip install 'mtif-sklearn[plot]')")
        return influence
    from .plotting import TaskInfluenceDisplay

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    display = TaskInfluenceDisplay.from_estimator(influence)
    path = output_dir / "task_influence.png"
    display.figure_.savefig(path, dpi=120)
    plt.close(display.figure_)
    print_fn(f"\nHeatmap written to {path}")
    return influence


def _run_selection(X, y, tasks, corrupted, test, random_state, print_fn):
    """Drop the harmful rows with NegativeTransferSelector; held-out MSE per task before/after."""
    print_fn("\nData selection: NegativeTransferSelector(MultitaskRidge(alpha=0.05), "
             "fraction=0.02) -- drop at most 2% of the rows, and only a removal that lowered "
             "the loss on held-out folds (the guard)")
    selector = NegativeTransferSelector(MultitaskRidge(alpha=0.05), fraction=0.02,
                                        random_state=random_state).fit(X, y, tasks=tasks)
    print_fn(selector.selection_report())
    print_fn(f"  {np.isin(corrupted, selector.removed_).sum()} of the {corrupted.size} corrupted "
             f"rows are among the {selector.removed_.size} removed.")

    X_test, y_test, tasks_test = test
    baseline = MultitaskRidge(alpha=0.05).fit(X, y, tasks=tasks)
    before = _mse_per_task(baseline, X_test, y_test, tasks_test)
    after = _mse_per_task(selector, X_test, y_test, tasks_test)
    per_task = len(y_test) // len(before)
    print_fn(f"\nHeld-out MSE per task ({per_task} fresh rows per task from the same generator; "
             "noise variance 1, so 1.0 is the floor):")
    print_fn(f"{'task':>6} {'all rows':>10} {'selected':>10} {'change':>9}")
    for task, (old, new) in enumerate(zip(before, after, strict=True)):
        print_fn(f"{task:>6} {old:>10.3f} {new:>10.3f} {new - old:>+9.3f}")
    print_fn(f"{'mean':>6} {np.mean(before):>10.3f} {np.mean(after):>10.3f} "
             f"{np.mean(after) - np.mean(before):>+9.3f}")
    return selector


def _run_task_selection(X, y, tasks, unrelated, test, random_state, print_fn):
    """Train every task with the tasks that help it (TaskSelector); held-out MSE per target."""
    print_fn("\nTask selection: TaskSelector(MultitaskRidge(alpha=0.05)) -- for every task, drop "
             "the tasks whose\ncross-fitted effect on it is negative, kept only where that "
             "lowered its loss on held-out folds")
    selector = TaskSelector(MultitaskRidge(alpha=0.05), random_state=random_state).fit(
        X, y, tasks=tasks)
    print_fn(selector.selection_report())
    X_test, y_test, tasks_test = test
    together = selector.influence_.estimator_  # all tasks trained together
    before = _mse_per_task(together, X_test, y_test, tasks_test)
    after = _mse_per_task(selector, X_test, y_test, tasks_test)
    changed = [task for task, dropped in selector.dropped_.items() if dropped.size]
    print_fn("\nHeld-out MSE of the tasks trained without some others (fresh rows, noise "
             "variance 1):")
    print_fn(f"{'task':>6} {'all tasks':>10} {'selected':>10} {'change':>9}  trained without")
    for task in changed:
        note = "  (an unrelated task)" if unrelated[task] else ""
        print_fn(f"{task:>6} {before[task]:>10.3f} {after[task]:>10.3f} "
                 f"{after[task] - before[task]:>+9.3f}  tasks "
                 f"{selector.dropped_[task].tolist()}{note}")
    if not changed:
        print_fn("  (none: the guard kept every task with all the others)")
    print_fn(f"{'mean':>6} {np.mean(before):>10.3f} {np.mean(after):>10.3f} "
             f"{np.mean(after) - np.mean(before):>+9.3f}  (over all {len(before)} tasks)")
    print_fn("  alpha=0.05 ties the tasks loosely, so the unrelated tasks cost the others little "
             "here;\n  the stronger the sharing (larger alpha), the more dropping them pays "
             "(benchmarks/README.md).")
    return selector


def _mse_per_task(model, X, y, tasks):
    prediction = model.predict(X, tasks=tasks)
    return [float(np.mean((prediction[tasks == k] - y[tasks == k]) ** 2))
            for k in np.unique(tasks)]

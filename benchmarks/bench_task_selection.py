"""Which tasks should each task be trained with? TaskSelector against the alternatives (issue 15).

Run:  python benchmarks/bench_task_selection.py            (5 seeds/splits; ~15-20 min, 2 cores)
      python benchmarks/bench_task_selection.py --quick    (2 seeds, for a smoke test)
      python benchmarks/bench_task_selection.py --parts survey cost

For every data set and seed (a train/test split; test rows are never used for any decision,
including the choice of alpha), every method gives one model per task, and the table reports its
mean per-task test loss (MSE for regression, log loss for classification; every task weighs the
same) against training all tasks together:

- all together: MultitaskRidge / MultitaskLogistic with alpha chosen by 3-fold cross-validation
  on the training rows (mean per-task validation loss); every other method uses that alpha;
- each task alone (tuned): one scikit-learn RidgeCV / LogisticRegressionCV per task;
- TaskSelector with the guard on/off and threshold 0 / 2 (cv=5);
- the same rule (drop source l for target k when its score is negative, train k without them;
  per-target heads by the same Schur-complement updates, no guard) with other scores: MTIF on
  one 80/20 validation split (the paper's protocol), TAG, cosine and Grad-TAG (pairwise) task
  affinity from mtif_sklearn.affinity, and RANDOM drops of the same number of sources per target
  as the cross-fitted rule (threshold 0, no guard);
- groups: group_tasks on the cross-fitted matrix shrunk by one standard error, 2 and 3 groups,
  one model per group;
- on the real regression data also free task intercepts (intercept_alpha=0), alone and under
  TaskSelector.

Columns: mean test loss (mean over seeds), its change against all together (mean +- s.e. over
seeds, in %; and the worst seed's), tasks improved / worsened (mean per seed: test loss lower /
higher than all together), seeds won (mean test loss lower than all together), tasks whose
sources changed (mean per seed) and the fit time per seed.

Cost: TaskSelector.fit against one all-together fit and one cross-fitted MTIFInfluence(cv=5) at
K = 10, 139 and 1,000 synthetic ridge tasks.

Data sets: synthetic regression (10 tasks, d=20: 2 unrelated, 2 of the related ones
sign-flipped, 25 rows each, the few-rows-per-feature regime in which tasks are trained together
at all; 500 fresh test rows per task), synthetic classification (the same through a logistic
link: 2 unrelated, 2 with flipped labels, 60 rows each), school (139 tasks, the shipped splits
1-5, features standardised on the training rows), computer survey (190 respondents, 5 random
splits of 15 training / 5 test ratings each), chemical (10 tasks, logistic, 5 random 70/30 splits
of the pooled shipped train and test rows, stratified by task and class). BLAS is limited to one
thread (this shared 2-core machine).
"""

import argparse
import time
import warnings

import numpy as np
from _common import DATA, load_info, machine_info, mean_loss, median_time, print_table
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from threadpoolctl import threadpool_limits

from mtif_sklearn import MTIFInfluence, MultitaskLogistic, MultitaskRidge, TaskSelector
from mtif_sklearn._tasks import task_folds
from mtif_sklearn.affinity import (
    cosine_affinity,
    gradtag_affinity,
    group_tasks,
    tag_affinity,
)
from mtif_sklearn.datasets import (
    load_chemical,
    load_computer_survey,
    load_school,
    make_multitask_classification,
    make_multitask_regression,
)
from mtif_sklearn.selection._tasks_selector import _TaskRemoval, drop_matrix


# --- data sets: (X_train, y_train, t_train, X_test, y_test, t_test) per seed ---------------------
def synthetic_regression(seed, n_tasks=10, n_per_task=25, n_features=20, n_test=500):
    X, y, t, coef, unrelated = make_multitask_regression(
        n_tasks=n_tasks, n_samples_per_task=n_per_task, n_features=n_features, delta=0.5,
        eps=0.2, random_state=seed, return_coef=True)
    rng = np.random.default_rng([seed, 15])
    flipped = rng.choice(np.flatnonzero(~unrelated), size=2, replace=False)
    sign = np.where(np.isin(np.arange(n_tasks), flipped), -1.0, 1.0)
    tt = np.repeat(np.arange(n_tasks), n_test)
    Xt = rng.standard_normal((tt.size, n_features))
    yt = sign[tt] * np.einsum("ij,ij->i", Xt, coef[tt]) + rng.standard_normal(tt.size)
    return X, sign[t] * y, t, Xt, yt, tt


def synthetic_classification(seed, n_tasks=10, n_per_task=60, n_features=20, n_test=500):
    X, y, t, coef, unrelated = make_multitask_classification(
        n_tasks=n_tasks, n_samples_per_task=n_per_task, n_features=n_features, delta=0.5,
        eps=0.2, random_state=seed, return_coef=True)
    rng = np.random.default_rng([seed, 15])
    flipped = rng.choice(np.flatnonzero(~unrelated), size=2, replace=False)
    flip = np.isin(np.arange(n_tasks), flipped)
    tt = np.repeat(np.arange(n_tasks), n_test)
    Xt = rng.standard_normal((tt.size, n_features))
    prob = 1.0 / (1.0 + np.exp(-np.einsum("ij,ij->i", Xt, coef[tt])))
    yt = (rng.uniform(size=tt.size) < prob).astype(int)
    return X, np.where(flip[t], 1 - y, y), t, Xt, np.where(flip[tt], 1 - yt, yt), tt


def _standardise(X_train, X_test):
    mean, scale = X_train.mean(axis=0), X_train.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    return (X_train - mean) / scale, (X_test - mean) / scale


def school(seed):
    from scipy.io import loadmat

    X, y, t = load_school(DATA / "school")
    indexes = loadmat(DATA / "school" / f"school_{seed + 1}_indexes.mat")
    train = np.asarray(indexes["tr"]).ravel().astype(int) - 1
    test = np.asarray(indexes["tst"]).ravel().astype(int) - 1
    X_train, X_test = _standardise(X[train], X[test])
    return X_train, y[train], t[train], X_test, y[test], t[test]


def _split_by_task(t, strata, test_share, seed):
    rng = np.random.default_rng([seed, 7])
    test = np.zeros(t.size, dtype=bool)
    for group in np.unique(strata):
        rows = rng.permutation(np.flatnonzero(strata == group))
        test[rows[:int(round(test_share * rows.size))]] = True
    return ~test, test


def survey(seed):
    X, y, t = load_computer_survey(DATA / "computer_survey")
    train, test = _split_by_task(t, t, 0.25, seed)  # 15 / 5 of every respondent's ratings
    return X[train], y[train], t[train], X[test], y[test], t[test]


def chemical(seed):
    parts = [load_chemical(DATA / "chemical", subset=s) for s in ("train", "test")]
    X, y, t = (np.concatenate(p) for p in zip(*parts, strict=True))
    train, test = _split_by_task(t, t * 2 + y, 0.3, seed)
    return X[train], y[train], t[train], X[test], y[test], t[test]


DATASETS = {
    # name: (loader, model class, alpha grid, real data?)
    "synthetic regression": (synthetic_regression, MultitaskRidge, (0.1, 0.3, 1.0, 3.0), False),
    "synthetic classification": (synthetic_classification, MultitaskLogistic,
                                 (0.03, 0.1, 0.3, 1.0), False),
    "school": (school, MultitaskRidge, (0.3, 1.0, 3.0, 10.0), True),
    "survey": (survey, MultitaskRidge, (0.1, 0.3, 1.0, 3.0), True),
    "chemical": (chemical, MultitaskLogistic, (0.003, 0.01, 0.03, 0.1), True),
}


# --- losses ---------------------------------------------------------------------------------------
def task_losses(predict, X, y, t, logistic):
    """Mean test loss of every task (tasks in sorted order)."""
    out = []
    for task in np.unique(t):
        rows = t == task
        prediction = predict(X[rows], t[rows])
        out.append(mean_loss(y[rows], prediction[:, 1] if logistic else prediction, logistic))
    return np.array(out)


def model_predict(model, logistic):
    if logistic:
        return lambda X, t: model.predict_proba(X, tasks=t)
    return lambda X, t: model.predict(X, tasks=t)


def tuned_alpha(Model, grid, X, y, t, seed):
    """alpha of the all-together model: 3-fold CV (stratified by task) on the training rows."""
    logistic = Model is MultitaskLogistic
    names = np.unique(t).tolist()
    codes = np.searchsorted(names, t)
    folds = task_folds(codes, names, 3, random_state=seed)
    scores = []
    for alpha in grid:
        losses = []
        for train, val in folds:
            model = Model(alpha=alpha).fit(X[train], y[train], tasks=t[train])
            losses.append(task_losses(model_predict(model, logistic), X[val], y[val], t[val],
                                      logistic).mean())
        scores.append(np.mean(losses))
    return grid[int(np.argmin(scores))]


# --- the methods ----------------------------------------------------------------------------------
def alone(X, y, t, logistic):
    """One tuned single-task model per task (scikit-learn's CV estimators)."""
    models = {}
    for task in np.unique(t):
        rows = t == task
        if logistic:
            if np.unique(y[rows]).size < 2:
                models[task] = float(y[rows][0])
                continue
            models[task] = LogisticRegressionCV(Cs=np.logspace(-3, 2, 6), cv=3,
                                                scoring="neg_log_loss",
                                                max_iter=500).fit(X[rows], y[rows])
        else:
            models[task] = RidgeCV(alphas=np.logspace(-3, 3, 13)).fit(X[rows], y[rows])

    def predict(X_rows, t_rows):
        model = models[t_rows[0]]
        if isinstance(model, float):
            return np.column_stack([np.full(len(X_rows), 1 - model),
                                    np.full(len(X_rows), model)])
        return model.predict_proba(X_rows) if logistic else model.predict(X_rows)

    return predict


def rule_model(together, data, scores, targets=None):
    """The all-together model with every target's head refitted without the sources whose
    score on it is negative (the TaskSelector rule without guard, on any score matrix)."""
    n_tasks = scores.shape[0]
    targets = np.arange(n_tasks) if targets is None else targets
    drops = scores if scores.dtype == bool else drop_matrix(scores, target_codes=targets)
    if not drops.any():
        return together, drops
    heads = _TaskRemoval(together, data).target_heads(drops, targets)
    return together._mtif_with_task_params(heads), drops


def random_drops(drops, seed):
    rng = np.random.default_rng([seed, 99])
    n_tasks = drops.shape[0]
    out = np.zeros_like(drops)
    for k in range(n_tasks):
        others = np.setdiff1d(np.arange(n_tasks), [k])
        out[rng.choice(others, size=int(drops[:, k].sum()), replace=False), k] = True
    return out


def group_models(estimator, X, y, t, labels):
    names = np.unique(t)
    models = {}
    for group in np.unique(labels):
        members = names[labels == group]
        rows = np.isin(t, members)
        model = clone(estimator).fit(X[rows], y[rows], tasks=t[rows])
        models.update(dict.fromkeys(members.tolist(), model))
    return models


def run_seed(name, seed):
    loader, Model, grid, real = DATASETS[name]
    X, y, t, Xt, yt, tt = loader(seed)
    logistic = Model is MultitaskLogistic
    start = time.perf_counter()
    alpha = tuned_alpha(Model, grid, X, y, t, seed)
    estimator = Model(alpha=alpha)
    together = clone(estimator).fit(X, y, tasks=t)
    data = clone(estimator)._mtif_data(X, y, t, reset=True)
    results, times, changed = {}, {}, {}

    def record(method, predict, seconds, n_changed=0):
        results[method] = task_losses(predict, Xt, yt, tt, logistic)
        times[method] = seconds
        changed[method] = n_changed

    record("all together", model_predict(together, logistic), time.perf_counter() - start)
    start = time.perf_counter()
    record("each task alone (tuned)", alone(X, y, t, logistic), time.perf_counter() - start)

    selectors = {}
    for guard in (True, False):
        for threshold in (0.0, 2.0):
            method = f"TaskSelector guard={'on' if guard else 'off'}, threshold={threshold:g}"
            start = time.perf_counter()
            sel = TaskSelector(estimator, threshold=threshold, guard=guard,
                               random_state=seed).fit(X, y, tasks=t)
            selectors[(guard, threshold)] = sel
            record(method, model_predict(sel, logistic), time.perf_counter() - start,
                   sum(bool(d.size) for d in sel.dropped_.values()))
    crossfit = selectors[(False, 0.0)]
    crossfit_drops = drop_matrix(crossfit.task_influence_)

    start = time.perf_counter()
    single = MTIFInfluence(estimator, validation_fraction=0.2, random_state=seed).fit(
        X, y, tasks=t)
    model, drops = rule_model(together, data, single.task_influence_)
    record("rule, single-split MTIF scores", model_predict(model, logistic),
           time.perf_counter() - start, int(drops.any(axis=0).sum()))

    names = np.unique(t)
    codes = np.searchsorted(names, t)
    fit_rows, val_rows = task_folds(codes, names.tolist(), None, random_state=seed)[0]
    affinities = {
        "TAG": lambda: tag_affinity(estimator, X, y, tasks=t),
        "cosine": lambda: cosine_affinity(estimator, X, y, tasks=t),
        "Grad-TAG": lambda: gradtag_affinity(estimator, X[fit_rows], y[fit_rows], X[val_rows],
                                             y[val_rows], tasks=t[fit_rows],
                                             tasks_val=t[val_rows], random_state=seed),
    }
    for label, compute in affinities.items():
        start = time.perf_counter()
        model, drops = rule_model(together, data, compute())
        record(f"rule, {label} scores", model_predict(model, logistic),
               time.perf_counter() - start, int(drops.any(axis=0).sum()))

    start = time.perf_counter()
    model, drops = rule_model(together, data, random_drops(crossfit_drops, seed))
    record("rule, random drops (same sizes)", model_predict(model, logistic),
           time.perf_counter() - start, int(drops.any(axis=0).sum()))

    for n_groups in (2, 3):
        start = time.perf_counter()
        labels = group_tasks(crossfit.influence_, n_groups, random_state=seed)
        models = group_models(estimator, X, y, t, labels)

        def predict(X_rows, t_rows, models=models):
            return model_predict(models[t_rows[0]], logistic)(X_rows, t_rows)

        record(f"groups (group_tasks, cross-fitted +- se), {n_groups}", predict,
               time.perf_counter() - start, len(names))

    if real and not logistic:
        start = time.perf_counter()
        free = Model(alpha=alpha, intercept_alpha=0.0)
        record("all together, free intercepts", model_predict(clone(free).fit(X, y, tasks=t),
                                                              logistic),
               time.perf_counter() - start)
        start = time.perf_counter()
        sel = TaskSelector(free, random_state=seed).fit(X, y, tasks=t)
        record("TaskSelector guard=on, threshold=0, free intercepts",
               model_predict(sel, logistic), time.perf_counter() - start,
               sum(bool(d.size) for d in sel.dropped_.values()))
    return alpha, results, times, changed


def bench_dataset(name, seeds):
    _, Model, _, real = DATASETS[name]
    if real and not DATA.exists():
        print(f"\n(skipped {name}: {DATA} not found)")
        return
    per_seed, alphas = [], []
    for seed in seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            # TAG divides by a task's training loss, which can be exactly 0 along its run
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", FutureWarning)  # LogisticRegressionCV's defaults
            alpha, results, times, changed = run_seed(name, seed)
        alphas.append(alpha)
        per_seed.append((results, times, changed))
        print(f"  {name} seed {seed}: alpha={alpha:g}, all together "
              f"{results['all together'].mean():.4f}, TaskSelector (guard, t=0) "
              f"{results['TaskSelector guard=on, threshold=0'].mean():.4f}", flush=True)
    methods = list(per_seed[0][0])
    base = np.array([r["all together"].mean() for r, _, _ in per_seed])
    rows = []
    for method in methods:
        losses = np.array([r[method] for r, _, _ in per_seed])  # (seeds, tasks)
        together = np.array([r["all together"] for r, _, _ in per_seed])
        mean = losses.mean(axis=1)
        change = 100 * (mean / base - 1)
        se = change.std(ddof=1) / np.sqrt(change.size) if change.size > 1 else np.nan
        tol = 1e-12 * np.abs(together)
        improved = np.sum(losses < together - tol, axis=1).mean()
        worsened = np.sum(losses > together + tol, axis=1).mean()
        won = int(np.sum(mean < base * (1 - 1e-12)))
        seconds = np.mean([t[method] for _, t, _ in per_seed])
        n_changed = np.mean([c[method] for _, _, c in per_seed])
        first = method == "all together"
        rows.append([method, f"{mean.mean():.4f}",
                     "-" if first else f"{change.mean():+.2f} +- {se:.2f}",
                     "-" if first else f"{change.max():+.2f}",
                     "-" if first else f"{improved:.1f} / {worsened:.1f}",
                     "-" if first else f"{won}/{len(seeds)}",
                     f"{n_changed:.1f}", f"{seconds:.2f} s"])
    metric = "log loss" if Model is MultitaskLogistic else "MSE"
    n_tasks = per_seed[0][0]["all together"].size
    print_table(["method", f"mean test {metric}", "change vs all together, %",
                 "worst seed, %", "tasks improved / worsened", "seeds won", "tasks changed",
                 "time"], rows,
                title=f"{name}: {Model.__name__}, {n_tasks} tasks, {len(seeds)} seeds/splits; "
                      f"alpha by CV: {', '.join(f'{a:g}' for a in alphas)}")


# --- cost -----------------------------------------------------------------------------------------
def _cost_row(n_tasks, repeats):
    X, y, t = make_multitask_regression(n_tasks=n_tasks, n_samples_per_task=30, n_features=10,
                                        delta=0.5, eps=0.2, random_state=0)
    y = np.where(t % 5 == 0, -y, y)  # every fifth task sign-flipped: something to drop
    estimator = MultitaskRidge(alpha=1.0)
    fit_time, _ = median_time(lambda: clone(estimator).fit(X, y, tasks=t), repeats)
    influence_time, _ = median_time(lambda: MTIFInfluence(
        estimator, cv=5, store_influence=False, random_state=0).fit(X, y, tasks=t), repeats)
    off_time, off = median_time(lambda: TaskSelector(
        estimator, guard=False, random_state=0).fit(X, y, tasks=t), repeats)
    on_time, _ = median_time(lambda: TaskSelector(estimator, random_state=0).fit(
        X, y, tasks=t), repeats)
    sets = {tuple(np.searchsorted(off.tasks_, d).tolist())
            for d in off.dropped_.values() if d.size}
    data = clone(estimator)._mtif_data(X, y, t, reset=True)
    if n_tasks <= 200:  # one brute-force refit per distinct set of dropped sources
        seconds, _ = median_time(lambda: [clone(estimator)._mtif_refit(
            data, dropped_tasks=list(dropped)) for dropped in sets], 1, warmup=0)
        refit_time = f"{seconds:.2f} s"
    else:
        one, _ = median_time(lambda: clone(estimator)._mtif_refit(
            data, dropped_tasks=list(next(iter(sets)))), repeats)
        refit_time = f"~{one * len(sets):.1f} s (extrapolated)"
    return [n_tasks, f"{fit_time * 1e3:.1f} ms", f"{influence_time:.2f} s",
            f"{off_time:.2f} s ({off_time / influence_time:.1f}x)",
            f"{on_time:.2f} s ({on_time / influence_time:.1f}x)", f"{len(sets)}", refit_time]


def bench_cost(sizes, repeats):
    rows = [_cost_row(n_tasks, repeats) for n_tasks in sizes]
    print_table(["K", "all-together fit", "cross-fitted MTIF (cv=5)",
                 "TaskSelector guard off (x MTIF)", "TaskSelector guard on (x MTIF)",
                 "distinct source sets", "brute-force refits of those sets"], rows,
                title="Cost: TaskSelector vs one fit and one cross-fitted influence "
                      f"(MultitaskRidge, 30 rows/task, d=10; median of {repeats})")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--parts", nargs="+", default=[*DATASETS, "cost"],
                        choices=[*DATASETS, "cost"])
    parser.add_argument("--seeds", type=int, default=None)
    args = parser.parse_args()
    n_seeds = args.seeds or (2 if args.quick else 5)
    print(machine_info())
    print(load_info())
    begin = time.perf_counter()
    with threadpool_limits(1):
        for name in DATASETS:
            if name in args.parts:
                bench_dataset(name, list(range(n_seeds)))
        if "cost" in args.parts:
            bench_cost((10, 139) if args.quick else (10, 139, 1000), 1 if args.quick else 3)
    print(load_info())
    print(f"total {time.perf_counter() - begin:.0f} s")


if __name__ == "__main__":
    main()

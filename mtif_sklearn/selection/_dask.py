"""NegativeTransferSelector on dask rows: folds by task drawn block by block, scores by block.

The in-memory selector fits one MTIFInfluence per fold, sums every row's cross-fitted effects
on the target tasks, removes the most negative rows (at most ``fraction``, never a task's last
row) and refits. On dask rows the same steps are:

- folds: :func:`~mtif_sklearn._dask.assign_folds` (stratified by task, the client holds blocks
  x K counts), every fold's model from the same passes (:mod:`mtif_sklearn.influence._dask`);
- scores: a lazy dask array (n,) -- ``scores_`` -- at O(q + p) per row and fold;
- selection: the removed rows are the most negative ones, so one pass keeps a sketch of every
  block's sorted negative scores (1024 order statistics), the client picks a threshold that
  provably leaves at least ``cap + K`` rows below it (the greedy choice, which skips at most one
  row per task, only ever looks at the first ``cap + K`` candidates), and a second pass gathers
  the rows below the threshold (their number, score and task: about ``cap + K`` rows, never n);
  the greedy choice then runs on the client exactly as in memory;
- the predicted change of each task's validation loss is a sum of effects over the removed rows,
  i.e. (by linearity, Proposition 1) the effect of their summed gradients per task: one pass of
  block sums, batched with the refit's first pass;
- ``support_`` is a lazy boolean dask array, ``removed_`` the (client) row numbers; the refit is
  the model fitted with weight 0 on the removed rows (the same objective as without them).
"""

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state
from sklearn.utils.validation import validate_data

from .._dask import assign_folds, columns_of, require_dask_model, rows_mask
from ..base import Params
from ..influence._dask import _index_array, _set_fitted_state, fit_state

__all__ = ["fit_dask"]

#: Order statistics per block kept by the first selection pass.
SKETCH_POINTS = 1024


def _sketch_block(scores, points):
    """[finite rows, negative rows, rank step, the negative scores at ranks 0, step, ...]."""
    negative = np.sort(scores[scores < 0])
    step = max(1, -(-negative.size // points))
    kept = negative[::step]
    out = np.full(points + 3, np.inf)
    out[:3] = np.isfinite(scores).sum(), negative.size, step
    out[3:3 + kept.size] = kept
    return out[None, :]


def _threshold(sketches, needed):
    """The smallest sketched score t with at least ``needed`` scores <= t for certain (0.0:
    every negative score when there are fewer than that)."""
    counts, steps, points = sketches[:, 1], sketches[:, 2], sketches[:, 3:]
    if counts.sum() <= needed:
        return 0.0
    for t in np.unique(points[np.isfinite(points)]):
        below = (points <= t).sum(axis=1)  # sketch points at ranks 0, step, ..., (below-1) step
        certain = np.where(below > 0, (below - 1) * steps + 1, 0)
        if certain.sum() >= needed:
            return float(t)
    return 0.0


def _gather_block(scores, codes, threshold, block_info=None):
    """(row number, score, task code) of a block's rows with a negative score <= threshold."""
    start = block_info[0]["array-location"][0][0]
    rows = np.flatnonzero((scores < 0) & (scores <= threshold))
    return np.column_stack([start + rows, scores[rows], codes[rows]]).astype(np.float64)


def _candidates(scores, codes, needed_for):
    """The rows the greedy choice may look at: (rows scored, rows with a negative score,
    (number, score, task) of the candidates); ``needed_for(n_scored)`` says how many."""
    import dask.array as da

    sketches = scores.map_blocks(_sketch_block, SKETCH_POINTS, new_axis=1,
                                 chunks=((1,) * scores.numblocks[0], (SKETCH_POINTS + 3,)),
                                 dtype=np.float64).compute()
    n_scored, n_negative = int(sketches[:, 0].sum()), int(sketches[:, 1].sum())
    needed = needed_for(n_scored)
    if needed <= 0 or n_negative == 0:
        return n_scored, n_negative, np.zeros((0, 3))
    threshold = _threshold(sketches, needed)
    found = da.map_blocks(_gather_block, scores, codes, threshold, new_axis=1,
                          chunks=((np.nan,) * scores.numblocks[0], (3,)),
                          dtype=np.float64).compute()
    return n_scored, n_negative, found


def _summed_effects_requests(state, data, removed):
    """Per split, the summed effects (K,) on V_k of removing the rows ``removed`` (those it
    trained on): the effect of each task's summed row gradients, since effects are linear in
    the gradient (Proposition 1). Returns the block-sum requests (one pass) and the function
    that turns their sums into the effects."""
    from ..influence._effects import summed_perturbation_effects

    rows = data.with_weights(data.sample_weight * rows_mask(removed, data.chunks))
    requests = [(rows.rows(split.member), split.problem.model, split.problem.params, "sample",
                 False, False) for split in state.splits]

    def finish(sums_list):
        n_tasks = state.splits[0].problem.n_tasks
        summed = []
        for split, sums in zip(state.splits, sums_list, strict=True):
            groups = rows.groups_of(split.member)
            gradient = sums["grad"][groups].sum(axis=0) * split.inverse_weight[:, None]
            problem = split.problem
            # One summed term per source task: O(K q p), not K^2.
            effects = summed_perturbation_effects(problem.factor, problem.z, problem.x_shared,
                                                  np.arange(n_tasks), gradient, None)
            summed.append(np.nan_to_num(problem.finish(effects[None], allow_nan=True)[0]))
        return summed

    return requests, finish


def fit_dask(selector, X, y, tasks=None, sample_weight=None):
    """``NegativeTransferSelector.fit`` on dask rows (see the module docstring)."""
    import dask.array as da

    from .._tasks import target_task_codes
    from ..linear._dask import evaluate_sums
    from ._rows import pick_rows, task_quota  # (a module-level import would be circular)

    selector._validate_params()
    if selector._guard_on():
        raise ValueError(
            "NegativeTransferSelector's guard (nested cross-validation, on by default) is not "
            "available on dask rows yet: pass guard=False. Scores, caps, quotas and the refit "
            "then run block by block; measure the selection on held-out rows yourself.")
    if selector.method != "first_order":
        raise ValueError("NegativeTransferSelector(method='newton') is not available on dask "
                         "rows; use method='first_order'.")
    if selector.backend == "cupy":
        raise ValueError("backend='cupy' is not available on dask rows; use 'auto' or "
                         "'numpy'.")
    validate_data(selector, columns_of(X), skip_check_array=True, reset=True)
    routed = selector._routed_params("fit", tasks=tasks, sample_weight=sample_weight)
    template = clone(selector.estimator)
    require_dask_model(template)
    data = template._mtif_data(X, y, tasks, routed.get("sample_weight"), reset=True)
    selector.tasks_ = data.task_labels
    n_tasks = data.n_tasks
    target_codes = target_task_codes(selector.target_tasks, selector.tasks_)
    selector.target_tasks_ = selector.tasks_[target_codes]
    targets_excluded = selector.target_tasks is not None and not selector.include_target_rows
    random_state = check_random_state(selector.random_state)
    split_refit = selector.cv is None and selector.refit_on == "split"
    removed, removed_codes, predicted_change = [], [], np.zeros(n_tasks)
    scores = quota_left = None
    for round_ in range(selector.n_rounds):
        # Each round draws fresh folds over the rows still in and rescores them.
        folds = assign_folds(data, selector.cv, validation_fraction=selector.validation_fraction,
                             random_state=random_state,
                             excluded=np.concatenate(removed) if removed else None)
        rows = data.with_folds(folds.fold, folds.n_folds)
        state = fit_state(selector.estimator, rows,
                          [("train", f) for f in range(folds.n_folds)], folds.group_counts,
                          damping=selector.damping, crossfit=False)
        state.crossfit = True  # scores average over the folds; no model of all rows needed
        if selector.verbose:
            print(f"[NegativeTransferSelector] round {round_ + 1}/{selector.n_rounds}: scored "
                  f"{folds.task_counts.sum()} rows of {n_tasks} tasks on {folds.n_folds} "
                  "fold(s) (dask)")
        # Each row's cross-fitted effect on the targets' validation loss (task_weights).
        round_scores = state.scores(target_codes, selector.task_weights, all_rows=True)
        scored = da.isfinite(round_scores)
        scores = round_scores if scores is None else da.where(scored, round_scores, scores)
        if targets_excluded:  # the targets' own rows are scored but never candidates
            round_scores = da.where(da.isin(rows.codes, target_codes),
                                    np.finfo(np.float64).max, round_scores)
        val_counts = [split.problem.val_counts for split in state.splits]
        if round_ == 0:
            first_folds = folds
            with np.errstate(invalid="ignore", divide="ignore"):
                loss_before = sum(np.nan_to_num(split.problem.validation_loss) * counts
                                  for split, counts in zip(state.splits, val_counts,
                                                           strict=True)) / sum(val_counts)
        already = sum(len(r) for r in removed)
        caps = {}

        def needed_for(n_scored, round_=round_, already=already, caps=caps):
            if round_ == 0:
                selector._n_scored = n_scored
            # The cap grows evenly over the rounds: fraction * n_scored (first round) in all.
            caps["cap"] = int(np.floor(selector.fraction * selector._n_scored * (round_ + 1)
                                       / selector.n_rounds + 1e-9)) - already
            return caps["cap"] + n_tasks if caps["cap"] > 0 else 0

        _, n_negative, found = _candidates(round_scores, rows.codes, needed_for)
        if round_ == 0:
            selector.n_candidates_ = n_negative
        available = (folds.task_counts - folds.fold_sizes[:, 0] if split_refit
                     else folds.task_counts)
        if round_ == 0:
            quota_left = task_quota(selector.max_task_fraction, folds.task_counts)
        found_codes = found[:, 2].astype(np.int64)
        picked = pick_rows(found[:, 1], np.ones(len(found), dtype=bool), found_codes,
                           caps["cap"], available=available, quota=quota_left)
        if quota_left is not None:
            quota_left = quota_left - np.bincount(found_codes[picked], minlength=n_tasks)
        new = found[picked, 0].astype(np.int64)
        removed.append(new)
        removed_codes.append(found[picked, 2].astype(np.int64))
        requests, finish = _summed_effects_requests(state, rows, new)
        refit = []
        if round_ == selector.n_rounds - 1:  # the refit's first pass goes with this one
            kept = data.sample_weight * ~rows_mask(np.concatenate(removed), data.chunks)
            refit_rows = data.with_weights(kept * (rows.fold == -1) if split_refit else kept)
            q = data.X.shape[1] + (1 if template.fit_intercept else 0)
            refit = [(refit_rows, template, Params(np.zeros((n_tasks, q)), np.zeros(q)),
                      "sample", True, False)]
        sums = evaluate_sums((requests if len(new) else []) + refit)
        if len(new):
            change = sum(summed * counts for summed, counts in zip(
                finish(sums[:len(requests)]), val_counts, strict=True))
            with np.errstate(invalid="ignore", divide="ignore"):
                predicted_change += change / sum(val_counts)
    _set_selector_state(selector, data, rows, state, folds, first_folds, removed, scores,
                        refit_rows)
    after = np.full(n_tasks, np.nan)
    if selector.verbose:
        after = _measure_after(selector, data, first_folds)
    n_rows = first_folds.task_counts
    n_removed = np.bincount(np.concatenate(removed_codes), minlength=n_tasks)
    target = np.zeros(n_tasks, dtype=bool)
    target[target_codes] = True
    selector.report_ = {
        "task": selector.tasks_.tolist(),
        "target": target.tolist(),
        "n_rows": n_rows.tolist(),
        "n_removed": n_removed.tolist(),
        "removed_fraction": (n_removed / n_rows).tolist(),
        "validation_loss_before": loss_before.tolist(),
        "predicted_change": predicted_change.tolist(),
        "validation_loss_after": after.tolist(),
    }
    if selector.verbose:
        print(selector.selection_report())
    return selector


def _set_selector_state(selector, data, rows, state, folds, first_folds, removed, scores,
                        refit_rows):
    import dask.array as da

    from ..influence import MTIFInfluence

    selector._first_folds = (data, first_folds)
    selector.removed_ = np.concatenate(removed).astype(np.int64)
    selector.support_ = ~rows_mask(selector.removed_, data.chunks)
    selector.scores_ = scores
    n_groups = rows.n_groups
    selector.folds_ = [
        (_index_array(rows.fold, rows.chunks, [g for g in range(n_groups) if g != f + 1],
                      folds.group_counts),
         _index_array(rows.fold, rows.chunks, [f + 1], folds.group_counts))
        for f in range(folds.n_folds)]
    influences = []
    for split in state.splits:  # one MTIFInfluence per fold, as in memory
        single = type(state)(rows, [split], folds.group_counts, crossfit=False)
        influence = MTIFInfluence(clone(selector.estimator), damping=selector.damping)
        for name in ("n_features_in_", "feature_names_in_"):
            if hasattr(selector, name):
                setattr(influence, name, getattr(selector, name))
        _set_fitted_state(influence, single, split.problem.model, rows, folds.group_counts)
        n_train = sum(single.out_chunks())
        influence.train_indices_ = da.arange(n_train, chunks=(single.out_chunks(),))
        influence.val_indices_ = None
        influences.append(influence)
    selector.influence_ = influences
    selector.estimator_ = clone(selector.estimator)._mtif_fit(refit_rows)


def _measure_after(selector, data, folds):
    """Out-of-fold validation loss per task of the first round's fold models refitted without
    the removed rows (``verbose > 0``; as ``NegativeTransferSelector._measure_after``)."""
    from ..linear._dask import evaluate_sums

    rows = data.with_folds(folds.fold, folds.n_folds)
    kept = rows.with_weights(rows.sample_weight * selector.support_)
    models = [clone(selector.estimator)._mtif_fit(kept.rows(("train", f)))
              for f in range(folds.n_folds)]
    sums = evaluate_sums([(kept.rows(("val", f)), model, model._mtif_params(), "unit", False,
                           False) for f, model in enumerate(models)])
    n_tasks = data.n_tasks
    total, counted = np.zeros(n_tasks), np.zeros(n_tasks)
    for f, entry in enumerate(sums):
        group = kept.groups_of(("val", f))
        counts = entry["count"][group].sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            losses = np.where(counts > 0, entry["loss"][group].sum(axis=0) / counts, np.nan)
        total += np.nan_to_num(losses) * counts
        counted += np.where(np.isnan(losses), 0.0, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / counted


"""One parallel map with a progress bar, for every long loop of the package (joblib + tqdm)."""

from sklearn.utils.parallel import Parallel, delayed

__all__ = ["parallel_map"]


def parallel_map(func, items, *, n_jobs=None, verbose=0, desc=None, require=None):
    """``[func(item) for item in items]`` through joblib, in order, with progress.

    Parameters
    ----------
    func : callable
        Applied to every item.
    items : iterable
        The work.
    n_jobs : int, default=None
        joblib workers (None: 1 unless inside a ``joblib.parallel_config``).
    verbose : int, default=0
        > 0: a tqdm progress bar over the items when tqdm is installed (the ``cli`` extra);
        > 1: also joblib's own messages.
    desc : str, default=None
        Label of the progress bar.
    require : {"sharedmem"} or None, default=None
        joblib's ``require``: "sharedmem" keeps the work in threads of this process (functions
        that write into shared arrays).

    Returns
    -------
    results : list
    """
    items = list(items)
    bar = _bar(len(items), verbose, desc)
    parallel = Parallel(n_jobs=n_jobs, require=require, verbose=max(0, verbose - 1),
                        return_as="list" if bar is None else "generator")
    try:
        results = parallel(delayed(func)(item) for item in items)
    except ValueError as exc:  # e.g. joblib < 1.4's dask backend yields no generator
        if "return_as" not in str(exc):
            raise
        results = Parallel(n_jobs=n_jobs, require=require, verbose=max(0, verbose - 1))(
            delayed(func)(item) for item in items)
    out = []
    for result in results:
        out.append(result)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out


def _bar(total, verbose, desc):
    if verbose <= 0 or total <= 1:
        return None
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional: no bar
        return None
    return tqdm(total=total, desc=desc, leave=False)

"""Loaders for the real multitask data sets in their original formats (paths given by the user)."""

from pathlib import Path

import numpy as np

__all__ = ["load_chemical", "load_computer_survey", "load_school"]


def _folder(path, marker):
    path = Path(path)
    if not (path / marker).exists():
        raise FileNotFoundError(f"{path} does not hold {marker}; pass the data set's folder.")
    return path


def load_school(path):
    """Load the ILEA school exam data (139 tasks, regression) from ``school_b.mat``.

    Parameters
    ----------
    path : str or Path
        Folder holding ``school_b.mat``.

    Returns
    -------
    X : ndarray of shape (15362, 27)
        Attributes as float (the constant bias row of the file is dropped).
    y : ndarray of shape (15362,)
        Exam scores.
    tasks : ndarray of shape (15362,)
        School index 0..138 of every row.
    """
    from scipy.io import loadmat

    data = loadmat(_folder(path, "school_b.mat") / "school_b.mat")
    X = np.asarray(data["x"], dtype=np.float64).T
    constant = np.all(X == X[0], axis=0)
    X = X[:, ~constant]
    y = np.asarray(data["y"], dtype=np.float64).ravel()
    starts = np.asarray(data["task_indexes"]).ravel().astype(np.int64) - 1
    if starts.size == 0 or starts[0] != 0 or np.any(np.diff(starts) <= 0) \
            or starts[-1] >= X.shape[0]:
        raise ValueError("task_indexes must be strictly increasing 1-based task starts, the "
                         f"first equal to 1 and all within the {X.shape[0]} rows.")
    tasks = np.searchsorted(starts, np.arange(X.shape[0]), side="right") - 1
    return X, y, tasks


def load_chemical(path, *, subset="train"):
    """Load the 10-task chemical binary classification data (ETAP paper benchmark).

    Parameters
    ----------
    path : str or Path
        Folder holding ``{task}_X_train.npy`` and friends.
    subset : {"train", "test"}, default="train"
        Which split to load.

    Returns
    -------
    X : ndarray of shape (n_samples, 180)
    y : ndarray of shape (n_samples,)
        Labels 0/1.
    tasks : ndarray of shape (n_samples,)
        Task id (55, 76, ...) of every row.
    """
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test'; got {subset!r}.")
    path = Path(path)
    files = sorted(path.glob(f"*_X_{subset}.npy"), key=lambda p: int(p.name.split("_")[0]))
    if not files:
        raise FileNotFoundError(f"{path} holds no *_X_{subset}.npy files.")
    Xs, ys, tasks = [], [], []
    for file in files:
        task = int(file.name.split("_")[0])
        y_file = path / f"{task}_y_{subset}.npy"
        if not y_file.exists():
            raise FileNotFoundError(f"{path} holds {file.name} but not its labels {y_file.name}.")
        X = np.load(file, allow_pickle=False)
        y = np.load(y_file, allow_pickle=False)
        if X.ndim != 2 or np.size(y) != X.shape[0]:
            raise ValueError(f"Task {task}: {file.name} has shape {X.shape} but {y_file.name} "
                             f"holds {np.size(y)} labels; expected one label per row of X "
                             f"(2-D X with as many rows as labels).")
        Xs.append(np.asarray(X, dtype=np.float64))
        ys.append(np.asarray(y).ravel())
        tasks.append(np.full(len(y), task))
    return np.vstack(Xs), np.concatenate(ys), np.concatenate(tasks)


def load_computer_survey(path):
    """Load the Lenk et al. computer survey (190 respondents as tasks, 20 ratings each).

    Parameters
    ----------
    path : str or Path
        Folder holding ``conjointAnalysisComputerBuyers.mat``.

    Returns
    -------
    X : ndarray of shape (3800, 13)
        Design attributes of the rated computer (the bias column dropped).
    y : ndarray of shape (3800,)
        Likelihood-of-buying ratings 0-10.
    tasks : ndarray of shape (3800,)
        Respondent 0..189 of every row.
    """
    from scipy.io import loadmat

    data = loadmat(_folder(path, "conjointAnalysisComputerBuyers.mat")
                   / "conjointAnalysisComputerBuyers.mat")
    ratings = np.asarray(data["likeBuy"], dtype=np.float64)
    design = np.asarray(data["designMarix"], dtype=np.float64)
    design = design[:, ~np.all(design == design[0], axis=0)]
    n_tasks, n_items = ratings.shape
    X = np.tile(design, (n_tasks, 1))
    return X, ratings.ravel(), np.repeat(np.arange(n_tasks), n_items)

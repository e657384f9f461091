"""Loaders for the real multitask data sets in their original formats.

mtif-sklearn neither ships nor downloads these data sets: every loader reads files the user
already has, from a folder given as ``path``, or from the data set's subfolder of a data home
(``data_home=`` or the ``MTIF_DATA`` environment variable; see :func:`get_data_home`).
"""

import os
from pathlib import Path

import numpy as np

__all__ = ["get_data_home", "load_chemical", "load_computer_survey", "load_school"]

DATA_HOME_ENV = "MTIF_DATA"

# Where each data set comes from, for the error raised when it is not found.
_OBTAIN = {
    "school": "school_b.mat (with the split files school_{1..10}_indexes.mat) as distributed "
              "with Argyriou, Evgeniou & Pontil's multitask feature learning code; the raw ILEA "
              "data are from the Centre for Multilevel Modelling, University of Bristol",
    "chemical": "the {task}_{X,y}_{train,test}.npy files of the ETAP paper's chemical "
                "benchmark (Ayman, Mukhopadhyay & Laszka, arXiv:2602.18591)",
    "computer_survey": "conjointAnalysisComputerBuyers.mat, the Lenk et al. (1996) computer "
                       "survey as used by Argyriou, Evgeniou & Pontil (2008)",
}


def get_data_home(data_home=None):
    """The folder that holds the real data sets, one subfolder per data set.

    The loaders look for ``school/``, ``chemical/`` and ``computer_survey/`` in it. Nothing is
    downloaded: put the files there yourself (each loader's docstring says where they come
    from).

    Parameters
    ----------
    data_home : str or Path, default=None
        The folder. None: the ``MTIF_DATA`` environment variable.

    Returns
    -------
    data_home : Path or None
        The folder (not checked for existence), or None when neither ``data_home`` nor
        ``MTIF_DATA`` is set.

    Examples
    --------
    >>> from mtif_sklearn.datasets import get_data_home
    >>> get_data_home("/data/multitask").as_posix()
    '/data/multitask'
    """
    if data_home is None:
        data_home = os.environ.get(DATA_HOME_ENV) or None
    return None if data_home is None else Path(data_home).expanduser()


def _dataset_folder(path, data_home, name, marker=None):
    """``path``, else ``<data home>/<name>``; checked to hold ``marker`` (a file name), with an
    error that says how to get the data."""
    if path is None:
        home = get_data_home(data_home)
        if home is None:
            what = marker or f"the {name} files"
            raise FileNotFoundError(
                f"No folder given for the {name} data: pass path=<folder holding {what}>, "
                f"or data_home=<folder with a {name}/ subfolder>, or set the {DATA_HOME_ENV} "
                f"environment variable to that folder. mtif-sklearn does not ship or download "
                f"the data; obtain {_OBTAIN[name]}.")
        path = home / name
    path = Path(path)
    if marker is not None and not (path / marker).exists():
        raise FileNotFoundError(
            f"{path} does not hold {marker}; pass the data set's folder (obtain "
            f"{_OBTAIN[name]}).")
    return path


def load_school(path=None, *, data_home=None):
    """Load the ILEA school exam data (139 tasks, regression) from ``school_b.mat``.

    Exam scores of 15362 pupils of 139 London secondary schools, 1985-1987 (Inner London
    Education Authority; Goldstein, 1991); each school is a task. The raw data are from the
    Centre for Multilevel Modelling, University of Bristol; this loader reads the preprocessed
    MATLAB file ``school_b.mat`` (categorical attributes one-hot encoded, plus a bias row)
    that is distributed, with ten train/test splits (``school_{1..10}_indexes.mat``), alongside
    Argyriou, Evgeniou & Pontil's multitask feature learning code (Machine Learning, 2008): the
    version used across the multitask literature. mtif-sklearn does not ship or download it.

    Parameters
    ----------
    path : str or Path, default=None
        Folder holding ``school_b.mat``. None: ``<data home>/school`` (see ``data_home``).
    data_home : str or Path, default=None
        Folder with a ``school/`` subfolder, used when ``path`` is None. None: the
        ``MTIF_DATA`` environment variable (:func:`get_data_home`).

    Returns
    -------
    X : ndarray of shape (15362, 27)
        Attributes as float (the constant bias row of the file is dropped).
    y : ndarray of shape (15362,)
        Exam scores.
    tasks : ndarray of shape (15362,)
        School index 0..138 of every row.

    See Also
    --------
    get_data_home : Where the loaders look when ``path`` is None.
    """
    from scipy.io import loadmat

    folder = _dataset_folder(path, data_home, "school", "school_b.mat")
    data = loadmat(folder / "school_b.mat")
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


def load_chemical(path=None, *, subset="train", data_home=None):
    """Load the 10-task chemical binary classification data (ETAP paper benchmark).

    Ten binary assay tasks (ids 55, 76, 78, 80, 81, 83, 84, 85, 86, 87) on molecules described
    by 180 binary fingerprint features, with a fixed train/test split per task: the "chemical"
    benchmark of the ETAP paper (Ayman, Mukhopadhyay & Laszka, "Ensemble Prediction of Task
    Affinity for Efficient Multi-Task Learning", arXiv:2602.18591), stored as
    ``{task}_X_{subset}.npy`` and ``{task}_y_{subset}.npy``. mtif-sklearn does not ship or
    download it.

    Parameters
    ----------
    path : str or Path, default=None
        Folder holding ``{task}_X_train.npy`` and friends. None: ``<data home>/chemical``.
    subset : {"train", "test"}, default="train"
        Which split to load.
    data_home : str or Path, default=None
        Folder with a ``chemical/`` subfolder, used when ``path`` is None. None: the
        ``MTIF_DATA`` environment variable (:func:`get_data_home`).

    Returns
    -------
    X : ndarray of shape (n_samples, 180)
    y : ndarray of shape (n_samples,)
        Labels 0/1.
    tasks : ndarray of shape (n_samples,)
        Task id (55, 76, ...) of every row.

    See Also
    --------
    get_data_home : Where the loaders look when ``path`` is None.
    """
    if subset not in ("train", "test"):
        raise ValueError(f"subset must be 'train' or 'test'; got {subset!r}.")
    path = _dataset_folder(path, data_home, "chemical")
    files = sorted(path.glob(f"*_X_{subset}.npy"), key=lambda p: int(p.name.split("_")[0]))
    if not files:
        raise FileNotFoundError(f"{path} holds no *_X_{subset}.npy files; pass the data set's "
                                f"folder (obtain {_OBTAIN['chemical']}).")
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


def load_computer_survey(path=None, *, data_home=None):
    """Load the Lenk et al. computer survey (190 respondents as tasks, 20 ratings each).

    A conjoint study (Lenk, DeSarbo, Green & Young, Marketing Science, 1996): 190 respondents
    each rated the likelihood of buying 20 personal-computer designs described by 13 binary
    attributes; each respondent is a task. This loader reads the MATLAB file
    ``conjointAnalysisComputerBuyers.mat`` (the ``likeBuy`` ratings and the shared
    ``designMarix``) as used in the multitask literature (Argyriou, Evgeniou & Pontil, 2008).
    mtif-sklearn does not ship or download it.

    Parameters
    ----------
    path : str or Path, default=None
        Folder holding ``conjointAnalysisComputerBuyers.mat``. None:
        ``<data home>/computer_survey``.
    data_home : str or Path, default=None
        Folder with a ``computer_survey/`` subfolder, used when ``path`` is None. None: the
        ``MTIF_DATA`` environment variable (:func:`get_data_home`).

    Returns
    -------
    X : ndarray of shape (3800, 13)
        Design attributes of the rated computer (the bias column dropped).
    y : ndarray of shape (3800,)
        Likelihood-of-buying ratings 0-10.
    tasks : ndarray of shape (3800,)
        Respondent 0..189 of every row.

    See Also
    --------
    get_data_home : Where the loaders look when ``path`` is None.
    """
    from scipy.io import loadmat

    folder = _dataset_folder(path, data_home, "computer_survey",
                             "conjointAnalysisComputerBuyers.mat")
    data = loadmat(folder / "conjointAnalysisComputerBuyers.mat")
    ratings = np.asarray(data["likeBuy"], dtype=np.float64)
    design = np.asarray(data["designMarix"], dtype=np.float64)
    design = design[:, ~np.all(design == design[0], axis=0)]
    n_tasks, n_items = ratings.shape
    X = np.tile(design, (n_tasks, 1))
    return X, ratings.ravel(), np.repeat(np.arange(n_tasks), n_items)

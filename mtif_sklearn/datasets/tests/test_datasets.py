"""Loaders of the shared real data sets and the synthetic generators of paper Appendix C.1.1.

Ground truth for the loaders is read straight from the original files (``scipy.io.loadmat``,
``numpy.load``, the plain-text copies) and from the documented shapes in
``../shared/data/README.md``; tests that need that folder skip when it is absent.
"""

from pathlib import Path

import numpy as np
import pytest
from scipy.io import loadmat, savemat
from scipy.special import expit
from sklearn.linear_model import LogisticRegression
from sklearn.utils._param_validation import InvalidParameterError

from mtif_sklearn.datasets import (
    get_data_home,
    load_chemical,
    load_computer_survey,
    load_school,
    make_multitask_classification,
    make_multitask_regression,
)

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
CHEMICAL_TASKS = [55, 76, 78, 80, 81, 83, 84, 85, 86, 87]


def _needs(name):
    folder = DATA / name
    return pytest.mark.skipif(not folder.is_dir(), reason=f"{folder} is not available")


# -- school -------------------------------------------------------------------------------------
@_needs("school")
def test_load_school_matches_the_documented_shapes_and_the_raw_file():
    X, y, tasks = load_school(DATA / "school")
    # README: 15362 students, 27 attributes (+ the bias row that the loader drops), 139 schools.
    assert X.shape == (15362, 27) and y.shape == (15362,) and tasks.shape == (15362,)
    assert X.dtype == np.float64 and y.dtype == np.float64
    np.testing.assert_array_equal(np.unique(tasks), np.arange(139))

    raw = loadmat(DATA / "school" / "school_b.mat")
    # The file's last row of x is the constant bias; the other 27 rows are the attributes.
    assert np.all(raw["x"][27] == 1)
    np.testing.assert_array_equal(X, raw["x"][:27].T.astype(float))
    np.testing.assert_array_equal(y, raw["y"].ravel().astype(float))
    # Exam scores are positive integers (1..70 in this sample).
    assert np.all(y == np.round(y)) and y.min() >= 1 and y.max() <= 70
    # No constant attribute survives (the bias is gone), every categorical one-hot is 0/1.
    assert np.all(X.std(axis=0) > 0)


@_needs("school")
def test_load_school_tasks_follow_task_indexes_and_the_split_files():
    _, _, tasks = load_school(DATA / "school")
    starts = loadmat(DATA / "school" / "school_b.mat")["task_indexes"].ravel().astype(int) - 1
    # Rows are grouped by school: task l occupies rows starts[l] .. starts[l+1]-1 (1-based file).
    assert np.all(np.diff(tasks) >= 0)
    np.testing.assert_array_equal(np.flatnonzero(np.diff(tasks)) + 1, starts[1:])
    np.testing.assert_array_equal(np.bincount(tasks), np.diff(np.append(starts, len(tasks))))
    # Independent check with a split file: tr lists training rows (1-based) grouped by task and
    # tr_indexes gives each task's 1-based start inside tr, so the loader's task of the row at
    # position tr_indexes[l] must be l.
    split = loadmat(DATA / "school" / "school_1_indexes.mat")
    train_rows = split["tr"].ravel().astype(int) - 1
    train_starts = split["tr_indexes"].ravel().astype(int) - 1
    train_tasks = tasks[train_rows]
    np.testing.assert_array_equal(train_tasks[train_starts], np.arange(139))
    assert np.all(np.diff(train_tasks) >= 0)


def test_load_school_on_a_tiny_fake_file(tmp_path):
    # 2 attributes + bias row, 5 rows; tasks start at rows 1 and 3 (1-based).
    x = np.array([[1, 0, 1, 0, 1], [3, 4, 5, 6, 7], [1, 1, 1, 1, 1]], dtype=np.uint8)
    savemat(tmp_path / "school_b.mat", {"x": x, "y": np.arange(5, dtype=np.uint8)[:, None] + 10,
                                         "task_indexes": np.array([[1], [3]], dtype=np.uint16)})
    X, y, tasks = load_school(tmp_path)
    np.testing.assert_array_equal(X, x[:2].T)
    np.testing.assert_array_equal(y, [10, 11, 12, 13, 14])
    np.testing.assert_array_equal(tasks, [0, 0, 1, 1, 1])


def test_load_school_rejects_unsorted_task_starts(tmp_path):
    x = np.array([[1, 0, 1, 0], [1, 1, 1, 1]], dtype=np.uint8)
    savemat(tmp_path / "school_b.mat", {"x": x, "y": np.ones((4, 1)),
                                         "task_indexes": np.array([[3], [1]])})
    # searchsorted on unsorted starts would silently mislabel rows; the loader must refuse.
    with pytest.raises(ValueError, match="task_indexes"):
        load_school(tmp_path)


# -- chemical -----------------------------------------------------------------------------------
@_needs("chemical")
@pytest.mark.parametrize("subset", ["train", "test"])
def test_load_chemical_matches_the_documented_contents(subset):
    X, y, tasks = load_chemical(DATA / "chemical", subset=subset)
    # README: 10 binary tasks with these ids, 180 float 0/1 fingerprint columns, int 0/1 labels.
    assert X.shape == (len(y), 180) and tasks.shape == y.shape
    np.testing.assert_array_equal(np.unique(tasks), CHEMICAL_TASKS)
    assert X.dtype == np.float64 and set(np.unique(X)) <= {0.0, 1.0}
    np.testing.assert_array_equal(np.unique(y), [0, 1])
    # Tasks are contiguous blocks in numeric id order.
    np.testing.assert_array_equal(tasks[np.sort(np.unique(tasks, return_index=True)[1])],
                                  CHEMICAL_TASKS)
    assert np.all(np.diff(tasks) >= 0)
    for task in CHEMICAL_TASKS:
        rows = tasks == task
        # Row-for-row the same as the task's own files.
        folder = DATA / "chemical"
        np.testing.assert_array_equal(X[rows], np.load(folder / f"{task}_X_{subset}.npy"))
        np.testing.assert_array_equal(y[rows], np.load(folder / f"{task}_y_{subset}.npy"))
        if subset == "train":
            # "About 300-1650 training rows per task" (the smallest task, 55, has 295).
            assert 280 <= rows.sum() <= 1700, (task, rows.sum())


def _fake_chemical(folder, sizes, subset="train"):
    rng = np.random.default_rng(0)
    for task, n in sizes.items():
        np.save(folder / f"{task}_X_{subset}.npy", rng.integers(0, 2, (n, 3)).astype(float))
        np.save(folder / f"{task}_y_{subset}.npy", np.full(n, task % 2, dtype=np.int64))


def test_load_chemical_fake_folder_orders_tasks_numerically(tmp_path):
    _fake_chemical(tmp_path, {10: 2, 9: 3})
    X, y, tasks = load_chemical(tmp_path)
    # Numeric order (9 before 10), not the lexicographic order of the file names.
    np.testing.assert_array_equal(tasks, [9, 9, 9, 10, 10])
    np.testing.assert_array_equal(y, [1, 1, 1, 0, 0])
    np.testing.assert_array_equal(X[:3], np.load(tmp_path / "9_X_train.npy"))


def test_load_chemical_fake_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="_X_train.npy"):
        load_chemical(tmp_path)  # empty folder
    _fake_chemical(tmp_path, {5: 2})
    with pytest.raises(FileNotFoundError, match="_X_test.npy"):
        load_chemical(tmp_path, subset="test")  # only the train split is there
    with pytest.raises(ValueError, match="subset"):
        load_chemical(tmp_path, subset="validation")
    (tmp_path / "5_y_train.npy").unlink()
    with pytest.raises(FileNotFoundError, match="5_y_train.npy"):
        load_chemical(tmp_path)  # X without its labels
    np.save(tmp_path / "5_y_train.npy", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="rows"):
        load_chemical(tmp_path)  # 2 rows of X, 3 labels


# -- computer survey ----------------------------------------------------------------------------
@_needs("computer_survey")
def test_load_computer_survey_matches_the_documented_shapes_and_the_text_copy():
    folder = DATA / "computer_survey"
    X, y, tasks = load_computer_survey(folder)
    # README: 190 respondents x 20 ratings, 13 binary design attributes + bias (dropped).
    assert X.shape == (3800, 13) and y.shape == (3800,) and tasks.shape == (3800,)
    np.testing.assert_array_equal(np.bincount(tasks), np.full(190, 20))
    assert np.all(np.diff(tasks) >= 0)
    # Ratings 0-10, integers.
    assert set(np.unique(y)) <= set(range(11))
    assert set(np.unique(X)) == {-1.0, 1.0}
    # Every respondent rated the same 20 designs: the design matrix without its bias column.
    design = loadmat(folder / "conjointAnalysisComputerBuyers.mat")["designMarix"]
    assert np.all(design[:, 0] == 1)
    for respondent in (0, 77, 189):
        np.testing.assert_array_equal(X[tasks == respondent], design[:, 1:])
    # Independent source: the tab-separated text copy, one respondent per line after a header.
    lines = (folder / "LikeBuy.txt").read_text().splitlines()[1:]
    text = np.array([[float(v) for v in line.split()] for line in lines if line.strip()])
    assert text.shape == (190, 20)
    np.testing.assert_array_equal(y.reshape(190, 20), text)


def test_load_computer_survey_on_a_tiny_fake_file(tmp_path):
    design = np.array([[1, 1, -1], [1, -1, 1], [1, -1, -1]], dtype=np.int16)
    ratings = np.array([[1, 2, 3], [4, 5, 6]], dtype=np.uint8)
    savemat(tmp_path / "conjointAnalysisComputerBuyers.mat",
            {"likeBuy": ratings, "designMarix": design})
    X, y, tasks = load_computer_survey(tmp_path)
    np.testing.assert_array_equal(X, np.vstack([design[:, 1:]] * 2))
    np.testing.assert_array_equal(y, [1, 2, 3, 4, 5, 6])
    np.testing.assert_array_equal(tasks, [0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize("loader, marker", [(load_school, "school_b.mat"),
                                            (load_computer_survey,
                                             "conjointAnalysisComputerBuyers.mat")])
def test_mat_loaders_name_the_missing_file(tmp_path, loader, marker):
    (tmp_path / "unrelated.txt").write_text("not a data set")
    with pytest.raises(FileNotFoundError, match=marker):
        loader(tmp_path)
    with pytest.raises(FileNotFoundError, match=marker):
        loader(tmp_path / "does_not_exist")


# -- where the loaders look: path, data_home, MTIF_DATA ------------------------------------------
def _fake_school(folder):
    folder.mkdir(parents=True)
    x = np.vstack([np.arange(8).reshape(2, 4) % 3, np.ones((1, 4))]).astype(np.uint8)
    savemat(folder / "school_b.mat", {"x": x, "y": np.arange(1.0, 5.0)[:, None],
                                      "task_indexes": np.array([[1], [3]])})


def test_loaders_find_a_data_set_under_data_home_or_the_mtif_data_variable(tmp_path,
                                                                           monkeypatch):
    _fake_school(tmp_path / "school")
    monkeypatch.delenv("MTIF_DATA", raising=False)
    by_path = load_school(tmp_path / "school")
    by_home = load_school(data_home=tmp_path)
    monkeypatch.setenv("MTIF_DATA", str(tmp_path))
    by_variable = load_school()
    assert get_data_home() == tmp_path
    for X, y, tasks in (by_home, by_variable):
        np.testing.assert_array_equal(X, by_path[0])
        np.testing.assert_array_equal(y, by_path[1])
        np.testing.assert_array_equal(tasks, [0, 0, 1, 1])
    # an explicit data_home wins over the variable
    with pytest.raises(FileNotFoundError, match="school_b.mat"):
        load_school(data_home=tmp_path / "elsewhere")


@pytest.mark.parametrize("loader", [load_school, load_chemical, load_computer_survey])
def test_loaders_without_a_location_say_how_to_get_the_data(loader, monkeypatch):
    monkeypatch.delenv("MTIF_DATA", raising=False)
    with pytest.raises(FileNotFoundError, match=r"MTIF_DATA.*does not ship or download.*obtain"):
        loader()


# -- synthetic generators (paper Appendix C.1.1) ------------------------------------------------
@pytest.mark.parametrize("make", [make_multitask_regression, make_multitask_classification])
def test_generator_shapes_labels_and_reproducibility(make):
    X, y, tasks, coef, unrelated = make(n_tasks=6, n_samples_per_task=15, n_features=4,
                                        random_state=3, return_coef=True)
    assert X.shape == (90, 4) and y.shape == (90,) and coef.shape == (6, 4)
    np.testing.assert_array_equal(tasks, np.repeat(np.arange(6), 15))
    assert unrelated.dtype == bool and unrelated.shape == (6,)
    again = make(n_tasks=6, n_samples_per_task=15, n_features=4, random_state=3, return_coef=True)
    for a, b in zip((X, y, tasks, coef, unrelated), again):
        np.testing.assert_array_equal(a, b)
    other = make(n_tasks=6, n_samples_per_task=15, n_features=4, random_state=4)
    assert not np.array_equal(X, other[0])
    assert len(make(n_tasks=2, n_samples_per_task=3, n_features=2, random_state=0)) == 3


@pytest.mark.parametrize("make", [make_multitask_regression, make_multitask_classification])
@pytest.mark.parametrize("delta, eps", [(0.4, 0.0), (1.0, 0.2), (2.5, 0.5)])
def test_task_parameters_follow_appendix_c11(make, delta, eps):
    K, d = 40, 6
    *_, coef, unrelated = make(n_tasks=K, n_samples_per_task=2, n_features=d, delta=delta,
                               eps=eps, random_state=0, return_coef=True)
    # A fraction eps of the tasks (rounded) is unrelated.
    assert unrelated.sum() == round(eps * K)
    e1 = np.eye(d)[0]
    # Related tasks: theta_k = 2 e_1 + delta u_k with ||u_k|| = 1, i.e. at distance delta from 2e_1.
    np.testing.assert_allclose(np.linalg.norm(coef[~unrelated] - 2 * e1, axis=1), delta,
                               rtol=1e-12)
    # Unrelated tasks: an independent vector of norm 2 (the norm of the common 2 e_1).
    np.testing.assert_allclose(np.linalg.norm(coef[unrelated], axis=1), 2.0, rtol=1e-12)
    if unrelated.sum() >= 2:
        # Independent directions: not all on the common direction (|cos| < 1 - 1e-6).
        cosines = coef[unrelated] @ e1 / 2.0
        assert np.max(np.abs(cosines)) < 1 - 1e-6


def test_perturbation_directions_are_uniform_on_the_sphere():
    K, d, delta = 3000, 4, 0.7
    *_, coef, unrelated = make_multitask_regression(n_tasks=K, n_samples_per_task=1,
                                                    n_features=d, delta=delta, eps=0.0,
                                                    random_state=0, return_coef=True)
    assert not unrelated.any()
    u = (coef - 2 * np.eye(d)[0]) / delta
    # Uniform on the unit sphere: mean 0 and covariance I/d. Each coordinate of the mean has
    # standard deviation sqrt(1/(d K)) ~ 0.009; 5 sigma ~ 0.046.
    assert np.max(np.abs(u.mean(axis=0))) < 5 * np.sqrt(1 / (d * K))
    # Var(u_j^2) for the uniform sphere is 2(d-1)/(d^2(d+2)); with K draws the standard error
    # of the second moment is ~0.004 here; 0.03 is > 5 sigma.
    np.testing.assert_allclose(u.T @ u / K, np.eye(d) / d, atol=0.03)


def test_delta_zero_and_eps_zero_gives_identical_tasks():
    *_, coef, unrelated = make_multitask_regression(n_tasks=5, n_samples_per_task=2,
                                                    n_features=3, delta=0.0, eps=0.0,
                                                    random_state=0, return_coef=True)
    assert not unrelated.any()
    np.testing.assert_array_equal(coef, np.tile([2.0, 0.0, 0.0], (5, 1)))


def test_regression_targets_are_linear_plus_gaussian_noise():
    n, d, noise = 4000, 5, 0.5
    X, y, tasks, coef, _ = make_multitask_regression(n_tasks=3, n_samples_per_task=n,
                                                     n_features=d, noise=noise, random_state=1,
                                                     return_coef=True)
    # x ~ N(0, I_d): sample covariance within ~6 standard errors (1/sqrt(n K) ~ 0.009).
    np.testing.assert_allclose(np.cov(X.T), np.eye(d), atol=0.06)
    for k in range(3):
        rows = tasks == k
        estimate, *_ = np.linalg.lstsq(X[rows], y[rows], rcond=None)
        # OLS error has covariance noise^2 (X^T X)^-1 ~ noise^2 / n I: standard deviation
        # ~0.008 per coordinate; 6 sigma bounds the max over d coordinates and 3 tasks.
        assert np.max(np.abs(estimate - coef[k])) < 6 * noise / np.sqrt(n)
        residual = y[rows] - X[rows] @ coef[k]
        # Residuals are the noise: sd within 10% of `noise` (the standard error is ~1.1%).
        assert abs(residual.std() / noise - 1) < 0.1
        assert abs(residual.mean()) < 6 * noise / np.sqrt(n)
    # Without noise, y is exactly x @ theta_k.
    X0, y0, t0, c0, _ = make_multitask_regression(n_tasks=3, n_samples_per_task=10,
                                                  n_features=d, noise=0.0, random_state=1,
                                                  return_coef=True)
    np.testing.assert_allclose(y0, np.einsum("ij,ij->i", X0, c0[t0]), rtol=1e-14, atol=1e-14)


def test_classification_labels_follow_the_logistic_link():
    n, d = 20000, 3
    X, y, tasks, coef, _ = make_multitask_classification(n_tasks=2, n_samples_per_task=n,
                                                         n_features=d, eps=0.5, random_state=2,
                                                         return_coef=True)
    assert y.dtype.kind == "i" and set(np.unique(y)) == {0, 1}
    for k in range(2):
        rows = tasks == k
        prob = expit(X[rows] @ coef[k])
        # Bernoulli(prob): the label count matches the summed probabilities within 5 sd.
        assert abs(y[rows].sum() - prob.sum()) < 5 * np.sqrt(np.sum(prob * (1 - prob)))
        # Maximum likelihood (no intercept, negligible penalty) recovers theta_k: the MLE's standard
        # error is ~1/sqrt(n * E[p(1-p) x^2]) ~ 0.02 per coordinate here; 0.12 is ~6 sigma.
        mle = LogisticRegression(C=1e8, fit_intercept=False, tol=1e-10, max_iter=1000)
        mle.fit(X[rows], y[rows])
        assert np.max(np.abs(mle.coef_.ravel() - coef[k])) < 0.12


@pytest.mark.parametrize("params", [{"eps": 1.5}, {"delta": -1.0}, {"n_tasks": 0}])
def test_generators_validate_parameters(params):
    with pytest.raises(InvalidParameterError):
        make_multitask_regression(**params)
    with pytest.raises(InvalidParameterError):
        make_multitask_classification(**params)

"""Package-wide checks: scikit-learn's estimator checks, numpydoc docstrings and doctests."""

import doctest
import importlib
import inspect
import re

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from mtif_sklearn import MultitaskLogistic, MultitaskRidge, NegativeTransferSelector

_SELECTOR_WEIGHTS_ARE_NOT_DUPLICATES = (
    "NegativeTransferSelector scores rows by cross-fitting over folds of rows and removes rows: "
    "a row with sample_weight=2 sits in one fold while its two duplicates can fall in different "
    "folds and be removed one at a time, so weights and repetitions give different (equally "
    "valid) selections. The check may pass by chance when both selections agree."
)


def _expected_failed_checks(estimator):
    """The estimator checks each model is known to fail, with the reason next to each one.

    The linear models pass every check. Add an entry only together with a written reason (the
    design allows expected failures only when explained); fixing the estimator is preferred.
    """
    if isinstance(estimator, NegativeTransferSelector):
        if isinstance(estimator.estimator, MultitaskRidge):
            return {}  # with random_state=0 both selections happen to agree for ridge
        return {"check_sample_weight_equivalence_on_dense_data":
                _SELECTOR_WEIGHTS_ARE_NOT_DUPLICATES}
    reasons = {
        MultitaskRidge: {},
        MultitaskLogistic: {},
    }
    return reasons[type(estimator)]


@parametrize_with_checks(
    [MultitaskRidge(), MultitaskLogistic(),
     NegativeTransferSelector(MultitaskRidge(), random_state=0),
     NegativeTransferSelector(MultitaskLogistic(), random_state=0)],
    expected_failed_checks=_expected_failed_checks,
)
def test_sklearn_estimator_checks(estimator, check):
    # Without task information all rows form one task, so every generic check applies.
    check(estimator)


# --- numpydoc docstrings -------------------------------------------------------------------
PUBLIC_MODULES = [
    "mtif_sklearn",
    "mtif_sklearn.linear",
    "mtif_sklearn.datasets",
    "mtif_sklearn.influence",
    "mtif_sklearn.selection",
    "mtif_sklearn.affinity",
    "mtif_sklearn.plotting",
    "mtif_sklearn.torch",
]


def _public_objects():
    seen = {}
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                seen.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
    return sorted(seen.items())


def _sections(doc):
    """numpydoc sections of a docstring: {title: [lines]} (a title underlined by dashes)."""
    lines = inspect.cleandoc(doc).splitlines()
    sections, current = {"Summary": []}, "Summary"
    for i, line in enumerate(lines):
        if i + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[i + 1].strip()) and line.strip():
            current = line.strip()
            sections[current] = []
        elif not re.fullmatch(r"-{3,}", line.strip()):
            sections[current].append(line)
    return sections


def _documented_names(section_lines):
    """Names documented in a Parameters/Attributes section (``name : type`` at indent 0)."""
    names = []
    for line in section_lines:
        if line and not line[0].isspace():
            for name in line.split(" : ")[0].split(","):
                names.append(name.strip().lstrip("*"))
    return names


def _signature_names(func):
    params = inspect.signature(func).parameters.values()
    return [p.name for p in params if p.name not in ("self", "cls")]


def _public_methods(cls):
    """Public methods defined by this package (not inherited from scikit-learn / object)."""
    for name, member in inspect.getmembers(cls, inspect.isfunction):
        if name.startswith("_") or not member.__module__.startswith("mtif_sklearn"):
            continue
        yield name, member


def _docstring_problems(qualname, obj):
    problems = []
    doc = inspect.getdoc(obj)
    if not doc:
        return [f"{qualname}: no docstring"]
    sections = _sections(doc)
    if not "".join(sections["Summary"]).strip():
        problems.append(f"{qualname}: no summary line")
    if inspect.isclass(obj):
        init_names = _signature_names(obj.__init__) if "__init__" in vars(obj) else []
        if init_names and _documented_names(sections.get("Parameters", [])) != init_names:
            problems.append(f"{qualname}: Parameters section does not list {init_names} in order")
        if "Attributes" not in sections and "Parameters" not in sections:
            problems.append(f"{qualname}: neither Parameters nor Attributes section")
        for name, method in _public_methods(obj):
            problems += _docstring_problems(f"{qualname}.{name}", method)
        return problems
    names = _signature_names(obj)
    if names and _documented_names(sections.get("Parameters", [])) != names:
        problems.append(f"{qualname}: Parameters section does not list {names} in order "
                        f"(documents {_documented_names(sections.get('Parameters', []))})")
    if "Returns" not in sections and "Yields" not in sections:
        problems.append(f"{qualname}: no Returns section")
    return problems


@pytest.mark.parametrize("qualname, obj", _public_objects(), ids=lambda v: str(v))
def test_public_object_has_numpydoc_docstring(qualname, obj):
    # numpydoc itself is not a test dependency; this checks the sections that matter to users:
    # a summary, every signature parameter documented in order, and Returns (functions and
    # methods) or Attributes/Parameters (classes).
    assert _docstring_problems(qualname, obj) == []


def test_docstring_checker_detects_missing_sections():
    # The checker above must be able to fail, otherwise the docstring test proves nothing.
    def undocumented(a, b):
        """Summary only."""

    def wrong_order(a, b):
        """Summary.

        Parameters
        ----------
        b : int
            Second.
        a : int
            First.

        Returns
        -------
        int
        """

    assert len(_docstring_problems("undocumented", undocumented)) == 2
    assert len(_docstring_problems("wrong_order", wrong_order)) == 1


# --- doctests --------------------------------------------------------------------------------
@pytest.mark.parametrize("module_name", ["mtif_sklearn.linear._ridge",
                                         "mtif_sklearn.linear._logistic",
                                         "mtif_sklearn.selection",
                                         "mtif_sklearn.influence._mtif",
                                         "mtif_sklearn.datasets._synthetic"])
def test_module_doctests_pass(module_name):
    # The Examples of MultitaskRidge / MultitaskLogistic / NegativeTransferSelector are
    # executable documentation.
    module = importlib.import_module(module_name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE,
                             verbose=False)
    assert result.attempted > 0, "no doctest found: the Examples section went missing"
    assert result.failed == 0

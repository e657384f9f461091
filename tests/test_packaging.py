"""Packaging facts that are easy to let drift: tested lower bounds, licence, citation."""

import configparser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
LOWER_BOUNDS = ROOT / ".ci" / "lower_bounds.txt"

# Extras whose packages the lower-bounds job installs ("test" pulls in the others' packages).
TESTED_EXTRAS = ("plot", "cli", "parquet", "cleanlab", "test")


def _declared_lower_bounds():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["options"]["install_requires"].splitlines()
    for extra in TESTED_EXTRAS:
        lines += config["options.extras_require"][extra].splitlines()
    bounds = {}
    for line in filter(None, (line.strip() for line in lines)):
        requirement = Requirement(line)
        floors = [Version(spec.version) for spec in requirement.specifier
                  if spec.operator == ">="]
        assert floors, f"{line!r} in setup.cfg declares no lower bound"
        names = [requirement.name, *(requirement.extras if requirement.name == "dask" else ())]
        for name in names:
            bounds[name.lower()] = max(floors[0], bounds.get(name.lower(), floors[0]))
    return bounds


def _pinned():
    pins = {}
    for line in LOWER_BOUNDS.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[requirement.name.lower()] = Version(spec.version)
    return pins


@pytest.mark.skipif(not LOWER_BOUNDS.is_file(), reason=".ci/ is not in this copy (an sdist)")
def test_lower_bounds_job_pins_exactly_the_declared_floors():
    declared, pinned = _declared_lower_bounds(), _pinned()
    assert pinned == declared, (
        "setup.cfg's lower bounds and .ci/lower_bounds.txt disagree: change both together "
        f"(only in setup.cfg: {sorted(declared.items() - pinned.items())}, only in the "
        f"pins: {sorted(pinned.items() - declared.items())})")


def test_licence_and_citation_are_shipped_with_the_package_metadata():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    assert config["metadata"]["license"] == "BSD-3-Clause"
    assert "BSD 3-Clause" in (ROOT / "LICENSE").read_text()
    citation = (ROOT / "CITATION.cff").read_text()
    assert "2505.21438" in citation  # the MTIF paper
    import mtif_sklearn

    assert f'version: "{mtif_sklearn.__version__}"' in citation

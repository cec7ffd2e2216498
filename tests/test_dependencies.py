"""The declared dependencies: every imported package is declared, every declaration follows the pin policy
(README, Installing), and requirements/dev.lock (what CI installs) satisfies every declared range."""

import ast
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

tomllib = pytest.importorskip("tomllib", reason="reads pyproject.toml with Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# this project: the package, the test modules the tests import from each other, the plugins of Hydra's hook
LOCAL = {"dastc", "hydra_plugins", *(path.stem for path in (ROOT / "tests").glob("*.py"))}


def _requirements(names: list[str]) -> list[Requirement]:
    return [Requirement(r) for r in names]


def _declared(*extras: str) -> dict[str, Requirement]:
    """Core requirements plus those of ``extras``, following extras that name this project's own extras."""
    reqs, todo, seen = _requirements(PROJECT["dependencies"]), list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in _requirements(PROJECT["optional-dependencies"][extra]):
            if canonicalize_name(req.name) == "dastc":
                todo += sorted(req.extras)
            else:
                reqs.append(req)
    return {canonicalize_name(r.name): r for r in reqs}


def _imported_modules(folders: list[str]) -> set[str]:
    """Top-level module names imported anywhere in ``folders`` (absolute imports only)."""
    modules = set()
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Import):
                    modules |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
    return modules - set(sys.stdlib_module_names) - LOCAL - {"__future__"}


@pytest.mark.parametrize(
    "folders, extras", [(["dastc", "scripts"], ()), (["tests"], ("dev",))], ids=["package", "tests"]
)
def test_every_imported_package_is_declared(folders, extras):
    declared = _declared(*extras)
    distributions = packages_distributions()
    undeclared = {}
    for module in sorted(_imported_modules(folders)):
        names = {canonicalize_name(d) for d in distributions.get(module, [module])}
        if not names & set(declared):
            undeclared[module] = sorted(names)
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_every_declaration_has_a_lower_and_an_upper_bound():
    for req in [*_declared("dev").values()]:
        operators = {spec.operator for spec in req.specifier}
        assert operators & {">=", "=="} and operators & {"<", "<=", "=="}, f"{req}: the pin policy needs both"
        # the upper bound lies below the next release line (next major; next minor for 0.x)
        for spec in req.specifier:
            if spec.operator == "<":
                upper = Version(spec.version)
                assert len(upper.release) <= 2 or upper.release[2:] == (0,), f"{req}: cap at a release line"


def _lock() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "requirements/dev.lock").read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.\-]+)==([^\s;]+)", line)
        if match:
            pins[canonicalize_name(match[1])] = Version(match[2])
    return pins


def test_the_lock_satisfies_every_declared_range_and_the_torch_constraints():
    pins = _lock()
    for name, req in _declared("dev").items():
        assert name in pins, f"{name} is declared but not in requirements/dev.lock (run `make lock`)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"lock has {name}=={pins[name]}, not {req}"
        )
    for line in (ROOT / "requirements/constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            req = Requirement(line)
            assert req.specifier.contains(pins[canonicalize_name(req.name)]), f"lock breaks constraint {req}"
    assert pins["optuna"] >= Version("5"), "the override (requirements/overrides.txt) did not take"


def test_ci_and_the_makefile_install_from_the_lock():
    makefile = (ROOT / "Makefile").read_text()
    assert "--no-deps --requirement $(LOCK)" in makefile and "LOCK := requirements/dev.lock" in makefile
    assert "make test" in (ROOT / ".ci/run").read_text()

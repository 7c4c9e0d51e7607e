"""The set-up a newcomer runs: the README's commands, CI's command and the dependency bounds agree."""

from __future__ import annotations

import re
import tomllib
from importlib import metadata

from packaging.requirements import Requirement
from packaging.version import Version

from tests.cli_helpers import ROOT


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _requirements(extra_names=("test",)) -> list[Requirement]:
    project = _pyproject()["project"]
    reqs = list(project["dependencies"])
    for name in extra_names:
        reqs += project["optional-dependencies"][name]
    return [Requirement(r) for r in reqs]


def _readme_commands() -> list[str]:
    block = re.search(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S).group(1)
    return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]


def test_ci_runs_exactly_the_readme_test_command():
    demo, tests = _readme_commands()[:2]
    assert demo.endswith("idres demo")
    assert tests.endswith("python3 -m pytest -q")
    ci_lines = [line.split("  #")[0].strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith(("#", "set ", "cd ", "export "))]
    # before it, only the system package a test uses where present (Chromium), never failing the run
    assert ci_lines == ["bash .ci/chromium", tests]
    assert (ROOT / ".ci" / "chromium").read_text().rstrip().endswith("exit 0")


def test_every_dependency_has_an_upper_bound():
    unbounded = [str(r) for r in _requirements(("test", "bench"))
                 if not any(s.operator in ("<", "<=", "==", "~=") for s in r.specifier)]
    assert unbounded == []


def test_constraints_pin_versions_inside_the_bounds():
    pins: dict[str, Version] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.lower().replace("_", "-")] = Version(version)
    for req in _requirements():
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert pins[name] in req.specifier, f"constraints.txt pins {name}=={pins[name]} outside {req.specifier}"


def test_installed_test_tools_are_inside_the_bounds():
    """pytest 9.2 with schemathesis 4.32 failed on a fresh install: what runs now must be inside the bounds."""
    for req in _requirements():
        if req.name in ("pytest", "hypothesis", "schemathesis"):
            assert Version(metadata.version(req.name)) in req.specifier, (req.name, metadata.version(req.name))

"""docker-compose.yml, which no test can start here (no Docker engine): every service's command is one the CLI
takes, every setting it gives is one idres reads, and the API it publishes is not open to other machines."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from streams.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
IDRES = {name: spec for name, spec in COMPOSE["services"].items() if spec.get("image", "").startswith("idres")}


@pytest.mark.parametrize("service", sorted(IDRES))
def test_each_service_runs_a_command_the_cli_takes(service):
    command = IDRES[service]["command"]
    if command == ["--help"]:
        return  # (the tools service: a command is given with `docker compose run`)
    args = build_parser().parse_args(command)
    assert args.command == command[0]


def test_every_setting_the_file_gives_is_one_idres_reads():
    code = "\n".join(p.read_text() for p in (ROOT / "streams").glob("*.py"))
    given = {k for spec in IDRES.values() for k in (spec.get("environment") or {}) if k.startswith("IDRES_")}
    assert given and {k for k in given if not re.search(rf"\b{k}\b", code)} == set()


def test_the_api_without_a_key_is_published_on_the_host_s_loopback_only():
    api = IDRES["api"]
    if "--no-auth" in api["command"]:
        assert api["ports"] and all(str(p).startswith("127.0.0.1:") for p in api["ports"]), api["ports"]


def test_every_environment_variable_idres_reads_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    code = "\n".join(p.read_text() for d in ("streams", "projections", "resolver", "schemas")
                     for p in (ROOT / d).rglob("*.py"))
    read = set(re.findall(r"\bIDRES_[A-Z][A-Z_]*[A-Z]\b", code)) - {"IDRES_X"}  # (a docstring's placeholder)
    assert len(read) > 20 and {v for v in read if v not in readme} == set()

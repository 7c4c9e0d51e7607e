"""A newcomer's first hour, through the real `idres` process: the demo, the commands it suggests, the
README's commands after it, and one clear line for every wrong input."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import duckdb
import pytest

from tests.cli_helpers import ROOT, run_cli
from tests.ports import free_port


def _after_demo_commands() -> list[str]:
    """The README's block of commands to run after the demo."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## What `idres demo` does", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def _idres_line(line: str, cwd: Path, **kw) -> subprocess.CompletedProcess:
    words = shlex.split(line)
    assert words[0] == "idres", line
    return run_cli(*words[1:], cwd=cwd, **kw)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert len(lines) == 1 and lines[0].startswith("idres: error: "), proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """The default `idres demo`, run from an empty directory as a user would run it."""
    cwd = tmp_path_factory.mktemp("newcomer")
    out = run_cli("demo", cwd=cwd).stdout
    return cwd, out


def test_the_demo_suggests_commands_the_readme_shows(demo):
    _, out = demo
    suggested = [line.strip() for line in out.split("Try next:", 1)[1].splitlines() if line.strip()]
    assert len(suggested) == 4
    assert _after_demo_commands()[:4] == suggested
    merges = int(re.search(r"\(([\d,]+) merges\)", out).group(1).replace(",", ""))
    with duckdb.connect(str(demo[0] / "idres-demo" / "customers.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM merges").fetchone()[0] == merges


def test_every_readme_command_after_the_demo_works_as_printed(demo):
    cwd, _ = demo
    for line in _after_demo_commands():
        proc = _idres_line(line, cwd)  # check=True: a non-zero exit fails with its stderr
        assert proc.stdout.strip(), line
        assert "idres: error" not in proc.stderr
        if line.startswith(("idres lookup", "idres show")):
            view = json.loads(proc.stdout)
            assert "household" in view and view["identifiers"]


def test_without_data_dir_commands_say_where_to_find_data(tmp_path):
    err = _one_error_line(run_cli("lookup", "email=jane@example.com", check=False, cwd=tmp_path))
    assert "no idres data in idres-data" in err and "idres demo" in err


def test_ingest_never_writes_into_the_demo_data(demo, tmp_path):
    cwd, _ = demo
    work = tmp_path / "work"
    work.mkdir()
    (work / "idres-demo").symlink_to(cwd / "idres-demo")
    line = json.dumps({"event_id": "mine-1", "occurred_at": "2025-01-01T00:00:00Z", "channel": "web",
                       "event_type": "login", "identifiers": {"email": "jo.onlymine@gmail.com"}})
    (work / "mine.jsonl").write_text(line + "\n")
    run_cli("ingest", "mine.jsonl", cwd=work)
    assert (work / "idres-data" / "log").is_dir()
    # from now on ./idres-data is the default, and the demo's data did not receive the event
    assert run_cli("lookup", "email=jo.onlymine@gmail.com", cwd=work).stderr == ""
    assert run_cli("lookup", "email=jo.onlymine@gmail.com", "--data-dir", "idres-demo/data", cwd=work,
                   check=False).returncode == 3


def test_a_wrong_configuration_stops_the_demo_before_it_writes_anything(tmp_path):
    (tmp_path / "bad.toml").write_text('[identifier_types.email]\nmax_per_profile = "three"\n')
    err = _one_error_line(run_cli("demo", "--dir", "d", "--config", "bad.toml", check=False, cwd=tmp_path))
    assert 'max_per_profile = "three"' in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_demo_never_replaces_files_it_did_not_write(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "events.jsonl").write_text("my own events\n")
    err = _one_error_line(run_cli("demo", "--people", "3", "--dir", str(mine), check=False, cwd=tmp_path))
    assert "events.jsonl" in err and "another --dir" in err
    assert (mine / "events.jsonl").read_text() == "my own events\n"
    assert sorted(p.name for p in mine.iterdir()) == ["events.jsonl"]
    # its own directory it replaces, run after run
    run_cli("demo", "--people", "3", "--dir", "d", cwd=tmp_path)
    first = (tmp_path / "d" / "events.jsonl").read_bytes()
    run_cli("lookup", "email=nobody@example.org", "--data-dir", "d/data", cwd=tmp_path, check=False)  # (a read)
    run_cli("demo", "--people", "4", "--dir", "d", cwd=tmp_path)
    assert (tmp_path / "d" / "events.jsonl").read_bytes() != first
    # ...but not once someone else's data is in it: events ingested into its data, a file of theirs there,
    # an edited truth file
    mine_event = tmp_path / "mine.jsonl"
    mine_event.write_text('{"event_id": "m1", "occurred_at": "2025-03-01T10:00:00Z", "channel": "web", '
                          '"event_type": "visit", "identifiers": {"email": "me@mine.org"}}\n')
    changes = [("data", lambda d: run_cli("ingest", str(mine_event), "--data-dir", f"{d}/data", cwd=tmp_path)),
               ("data", lambda d: (tmp_path / d / "data" / "notes.txt").write_text("mine")),
               ("truth.csv", lambda d: (tmp_path / d / "truth.csv").write_text("event_id,person_id\n"))]
    for n, (name, change) in enumerate(changes):
        d = f"d{n}"
        run_cli("demo", "--people", "3", "--dir", d, cwd=tmp_path)
        change(d)
        before = {p: p.stat().st_size for p in (tmp_path / d).rglob("*") if p.is_file()}
        err = _one_error_line(run_cli("demo", "--people", "3", "--dir", d, check=False, cwd=tmp_path))
        assert f"holds {name}, which changed since idres demo wrote them" in err, err
        assert {p: p.stat().st_size for p in (tmp_path / d).rglob("*") if p.is_file()} == before


# ------------------------------------------------------------------------------------------ pipes
@pytest.mark.parametrize("shape", [[], ["--csv"], ["--json"]])
def test_output_into_a_closed_pipe_ends_quietly(demo, shape):
    """Row by row output meets the closed pipe and stops with SIGPIPE's status; JSON is one write, which
    the kernel may take in part and end without an error: either way, quietly."""
    cwd, _ = demo
    proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "query", "idres-demo/customers.duckdb",
                             "SELECT * FROM range(300000)", "--limit", "0", *shape],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    proc.stdout.readline()  # like `head -1`: read a line, then go away
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == (141 if shape != ["--json"] else proc.returncode) and proc.returncode in (0, 141)
    assert err == ""


def test_explain_and_review_into_a_closed_pipe(demo):
    cwd, _ = demo
    explain, _, review = _after_demo_commands()[3:6]
    for line in (explain + " --json", review + " --all"):
        proc = subprocess.run(["bash", "-c", f"set -o pipefail; PYTHONPATH={shlex.quote(str(ROOT))} "
                               f"{shlex.quote(sys.executable)} -m streams.cli {line.split(' ', 1)[1]} | head -c 1"],
                              cwd=cwd, capture_output=True, text=True, timeout=120)
        assert proc.returncode in (0, 141), proc.stderr
        assert "Error" not in proc.stderr and "error" not in proc.stderr


# ------------------------------------------------------------------------------------------ query
def test_query_says_when_it_shows_only_some_rows(demo, tmp_path):
    cwd, _ = demo
    snap = "idres-demo/customers.duckdb"
    proc = run_cli("query", snap, "SELECT * FROM range(150)", "--csv", cwd=cwd)
    assert proc.stdout.splitlines() == ["range"] + [str(i) for i in range(100)]
    assert "first 100 rows" in proc.stderr and "--limit 0" in proc.stderr
    proc = run_cli("query", snap, "SELECT * FROM range(150)", "--csv", "--limit", "0", cwd=cwd)
    assert len(proc.stdout.splitlines()) == 151 and proc.stderr == ""
    proc = run_cli("query", snap, "SELECT * FROM range(100)", "--csv", cwd=cwd)
    assert len(proc.stdout.splitlines()) == 101 and proc.stderr == ""
    out = tmp_path / "events.parquet"
    run_cli("query", snap, "SELECT event_id, channel FROM events", "--out", str(out), cwd=cwd)
    with duckdb.connect(str(Path(cwd) / snap), read_only=True) as con:
        n = con.execute("SELECT count(*) FROM events").fetchone()[0]
        assert con.execute(f"SELECT count(*) FROM '{out}'").fetchone()[0] == n > 100


# ------------------------------------------------------------------------------------------ errors
def test_misleading_inputs_get_one_line_that_says_what_to_do(demo, tmp_path):
    cwd, _ = demo
    (tmp_path / "notes.txt").write_text("not a database\n")
    (tmp_path / "existing.json").write_text("{}")
    cases = [
        (["query", str(tmp_path / "notes.txt"), "SELECT 1"], "is not a DuckDB snapshot"),
        (["query", str(tmp_path), "SELECT 1"], "is a directory"),
        (["query", "idres-demo/customers.duckdb", "  ; "], "the SQL is empty"),
        (["query", "idres-demo/customers.duckdb", "SELECT 1", "--out", str(tmp_path / "x.txt")], ".csv, .parquet or .json"),
        (["demo", "--people", "0"], "at least 1 person"),
        (["generate", "--people", "0", "--out", "e.jsonl", "--truth", "t.csv"], "at least 1 person"),
        (["schema", "--out", str(tmp_path / "existing.json")], "is a file"),
        (["snapshot", "--out", str(tmp_path)], "is a directory"),
        (["produce", str(tmp_path), "--bootstrap", "127.0.0.1:1"], "is a directory; give a JSON-lines file"),
        (["ingest", str(tmp_path), "--data-dir", str(tmp_path / "d")], "is a directory; give a JSON-lines file"),
        (["lookup", "mail=jane@example.com"], "unknown identifier type 'mail': known types are device_id, email"),
        (["lookup", "email="], "has no value"),
        (["explain", "email="], "has no value"),
        (["lookup", "--data-dir", str(tmp_path / "notes.txt"), "email=a@b.c"], "is a file, not a directory"),
        (["lookpu", "email=a@b.c"], "invalid choice"),
        (["demo", "--people", "many"], "invalid int value"),
        (["query", "idres-demo/customers.duckdb", "SELECT * FROM nosuch"], "SHOW TABLES lists the tables"),
        (["config", "check", str(tmp_path)], "is a directory: give the path of a TOML file"),
        (["lookup", "email=x@y.z"], "placeholder email (a value that identifies nobody"),
        (["lookup", "phone=12"], "not a phone number: give the value as the channel would send it"),
    ]
    for args, expected in cases:
        err = _one_error_line(run_cli(*args, check=False, cwd=cwd))
        assert expected in err, (args, err)
        assert ".tmp" not in err


@pytest.mark.parametrize("command", [["snapshot", "--out", "k.duckdb"], ["review"]])
def test_an_unreachable_broker_is_one_line_at_once(tmp_path, command):
    started = time.monotonic()
    err = _one_error_line(run_cli(*command, "--bootstrap", f"127.0.0.1:{free_port()}", check=False, cwd=tmp_path))
    assert time.monotonic() - started < 10
    assert "cannot reach a Kafka broker" in err and "connection refused" in err


@pytest.mark.parametrize("command", [["snapshot", "--out", "k.duckdb"], ["review"], ["topics"]])
def test_a_listener_that_never_answers_is_one_line_within_the_configured_wait(tmp_path, command, monkeypatch):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)  # accepts connections (the kernel does), never answers a request
    try:
        monkeypatch.setenv("IDRES_KAFKA_TIMEOUT", "2")
        started = time.monotonic()
        err = _one_error_line(run_cli(*command, "--bootstrap", f"127.0.0.1:{listener.getsockname()[1]}",
                                      check=False, cwd=tmp_path))
        assert time.monotonic() - started < 12
        assert "timed out" in err and "2 s" in err and "no Kafka broker answered" in err
    finally:
        listener.close()


def test_explain_of_a_shared_identifier_says_it_is_shared(demo):
    cwd, _ = demo
    rows = run_cli("query", "idres-demo/customers.duckdb",
                   "SELECT id_type || '=' || id_value FROM identifiers WHERE status = 'shared' ORDER BY 1 LIMIT 1",
                   "--csv", cwd=cwd).stdout.splitlines()
    shared = rows[1]
    proc = run_cli("explain", shared, check=False, cwd=cwd)
    assert proc.returncode == 4
    assert "is shared" in proc.stdout and "links nobody" in proc.stdout
    as_json = run_cli("explain", shared, "--json", check=False, cwd=cwd)
    assert as_json.returncode == 4 and json.loads(as_json.stdout)["status"] == "shared"
    assert run_cli("lookup", shared, check=False, cwd=cwd).returncode == 4


# ------------------------------------------------------------------------------------------ quieter defects
def test_schema_without_out_prints_and_writes_nothing(tmp_path):
    before = sorted(p.name for p in (ROOT / "schemas").iterdir())
    schemas = json.loads(run_cli("schema", cwd=tmp_path).stdout)
    assert "channel_event.v1.schema.json" in schemas and schemas["channel_event.v1.schema.json"]["properties"]
    assert list(tmp_path.iterdir()) == []
    assert sorted(p.name for p in (ROOT / "schemas").iterdir()) == before


def test_version_is_the_installed_package_version():
    from importlib.metadata import version

    assert run_cli("--version").stdout.strip() == f"idres {version('idres')}"


def test_the_license_file_is_the_one_pyproject_names():
    license_name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["license"]["text"]
    assert license_name == "Apache-2.0"
    head = (ROOT / "LICENSE").read_text().split()
    assert head[:4] == ["Apache", "License", "Version", "2.0,"]
    assert "END OF TERMS AND CONDITIONS" in (ROOT / "LICENSE").read_text()

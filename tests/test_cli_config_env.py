"""`idres config check`, and malformed environment variables, through the real command line."""

from __future__ import annotations

import json

import pytest

from resolver.matching import default_model
from tests.cli_helpers import run_cli

# every variable a worker reads, malformed: only the commands that use one may complain about it
BAD_WORKER_ENV = {"IDRES_WEB_PORT": "abc", "IDRES_BATCH_EVENTS": "many", "IDRES_SESSION_TIMEOUT": "soon",
                  "IDRES_LOGLEVEL": "loud", "IDRES_RAW_PARTITIONS": "four", "IDRES_KAFKA_TIMEOUT": "nan"}


# -- idres config check ---------------------------------------------------------------------------
def test_config_check_valid_file(tmp_path):
    (tmp_path / "rules.toml").write_text('default_region = "GB"\n[identifier_types.member_no]\npriority = 15\n')
    proc = run_cli("config", "check", str(tmp_path / "rules.toml"))
    assert proc.stdout == (f"{tmp_path / 'rules.toml'}: valid (6 identifier types, fuzzy matching on, "
                           "model default-2, re-estimated from the data)\n")


def test_config_check_names_the_trained_model_and_fuzzy_matching_off(tmp_path):
    model = default_model().to_dict()
    model["version"] = "mine-1"
    (tmp_path / "model.json").write_text(json.dumps(model))
    (tmp_path / "rules.toml").write_text('fuzzy_matching = false\nmatch_model = "model.json"\n')
    proc = run_cli("config", "check", str(tmp_path / "rules.toml"))
    assert proc.stdout.endswith(": valid (5 identifier types, fuzzy matching off, model mine-1)\n")


def test_config_check_wrong_type_is_one_error_line_and_exit_2(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text('[identifier_types.loyalty_id]\nmax_per_profile = "three"\n')
    proc = run_cli("config", "check", str(path), check=False)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == (f'idres: error: {path}: identifier_types.loyalty_id.max_per_profile = "three": '
                           f"expected a whole number >= 1 (or leave it out for no limit)\n")


def test_config_check_missing_file(tmp_path):
    proc = run_cli("config", "check", str(tmp_path / "nope.toml"), check=False)
    assert proc.returncode == 2
    assert proc.stderr == f"idres: error: config file {tmp_path / 'nope.toml'} not found: give the path of a TOML file\n"


def test_config_check_without_file_checks_idres_config_or_says_built_in(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text("fuzzy_matching = 1\n")
    proc = run_cli("config", "check", check=False, env={"IDRES_CONFIG": str(path)})
    assert proc.returncode == 2
    assert proc.stderr == f"idres: error: {path}: fuzzy_matching = 1: expected true or false\n"
    proc = run_cli("config", "check", env={"IDRES_CONFIG": None})
    assert proc.stdout.startswith("no FILE given and $IDRES_CONFIG is not set: the built-in rules are in use (")


def test_a_wrong_config_stops_ingest_before_any_event(tmp_path):
    (tmp_path / "rules.toml").write_text('[identifier_types.email]\npriority = "high"\n')
    (tmp_path / "events.jsonl").write_text(_EVENT)
    proc = run_cli("ingest", str(tmp_path / "events.jsonl"), "--data-dir", str(tmp_path / "data"),
                   "--config", str(tmp_path / "rules.toml"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("idres: error: ") and proc.stderr.count("\n") == 1
    assert 'identifier_types.email.priority = "high": expected a whole number' in proc.stderr


# -- environment variables ----------------------------------------------------------------------------
_EVENT = json.dumps({"event_id": "e1", "occurred_at": "2025-03-07T14:03:11+00:00", "channel": "web",
                     "event_type": "page_view", "identifiers": {"email": "jane.doe@mailbox.org"}}) + "\n"


def test_malformed_worker_variables_leave_other_commands_alone(tmp_path):
    assert "COMMAND" in run_cli("--help", env=BAD_WORKER_ENV).stdout
    assert "--web-port" in run_cli("worker", "--help", env=BAD_WORKER_ENV).stdout
    (tmp_path / "events.jsonl").write_text(_EVENT)
    data = str(tmp_path / "data")
    run_cli("ingest", str(tmp_path / "events.jsonl"), "--data-dir", data, env=BAD_WORKER_ENV)
    found = json.loads(run_cli("lookup", "email=jane.doe@mailbox.org", "--data-dir", data, env=BAD_WORKER_ENV).stdout)
    assert "e1" in json.dumps(found)
    # ingest's batch size is ingest's: a command that only reads neither reads it nor stops for it
    bad_batch = {"IDRES_BATCH_SIZE": "x"}
    assert "e1" in run_cli("lookup", "email=jane.doe@mailbox.org", "--data-dir", data, env=bad_batch).stdout
    refused = run_cli("ingest", str(tmp_path / "events.jsonl"), "--data-dir", data, env=bad_batch, check=False)
    assert refused.returncode == 2 and "IDRES_BATCH_SIZE='x'" in refused.stderr


@pytest.mark.parametrize("env, args, message", [
    ({"IDRES_WEB_PORT": "abc"}, [], "IDRES_WEB_PORT='abc': expected a port number 1-65535"),
    ({"IDRES_WEB_PORT": "70000"}, [], "IDRES_WEB_PORT='70000': expected a port number 1-65535"),
    ({"IDRES_WEB_PORT": "0"}, [], "IDRES_WEB_PORT='0': expected a port number 1-65535"),
    ({"IDRES_BATCH_EVENTS": "many"}, [], "IDRES_BATCH_EVENTS='many': expected a whole number >= 1"),
    ({"IDRES_BATCH_EVENTS": "0"}, [], "IDRES_BATCH_EVENTS='0': expected a whole number >= 1"),
    ({"IDRES_SESSION_TIMEOUT": "nan"}, [], "IDRES_SESSION_TIMEOUT='nan': expected a number of seconds > 0 and "
                                          "<= 1000000000"),
    # (past what the timers take: it failed inside asyncio, an internal error)
    ({"IDRES_STOP_GRACE": "1e23"}, [], "IDRES_STOP_GRACE='1e23': expected a number of seconds > 0 and <= 1000000000"),
    ({"IDRES_RAW_PARTITIONS": "100000000"}, [], "$IDRES_RAW_PARTITIONS must be at most 10000, not 100000000"),
    ({"IDRES_LOGLEVEL": "loud"}, [], "IDRES_LOGLEVEL='loud': expected one of crit, error, warn, info, debug"),
    ({}, ["--web-port", "70000"], "--web-port 70000: expected a port number 1-65535"),
    ({}, ["--web-port", "0"], "--web-port 0: expected a port number 1-65535"),
    ({"IDRES_KAFKA_TIMEOUT": "nan"}, [], "$IDRES_KAFKA_TIMEOUT must be a finite number, not 'nan'"),
    ({"IDRES_RAW_PARTITIONS": "four"}, [], "$IDRES_RAW_PARTITIONS must be a whole number, not 'four'"),
])
def test_worker_reports_a_malformed_variable_in_one_line(env, args, message):
    proc = run_cli("worker", "--bootstrap", "127.0.0.1:1", *args, check=False, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr == f"idres: error: {message}\n"


def test_kafka_timeout_must_be_finite_for_topics():
    proc = run_cli("topics", "--bootstrap", "127.0.0.1:1", check=False, env={"IDRES_KAFKA_TIMEOUT": "inf"},
                   timeout=60)
    assert (proc.returncode, proc.stderr) == (2, "idres: error: $IDRES_KAFKA_TIMEOUT must be a finite number, "
                                                 "not 'inf'\n")


def test_ingest_reports_a_malformed_batch_size(tmp_path):
    (tmp_path / "events.jsonl").write_text(_EVENT)
    proc = run_cli("ingest", str(tmp_path / "events.jsonl"), "--data-dir", str(tmp_path / "data"), check=False,
                   env={"IDRES_BATCH_SIZE": "2k"})
    assert (proc.returncode, proc.stderr) == (2, "idres: error: IDRES_BATCH_SIZE='2k': expected a whole number >= 1\n")


@pytest.mark.parametrize("value, valid", [("0", True), ("1", True), ("0.5", True), ("7", False), ("1.01", False),
                                          ("-0.1", False), ("nan", False), ("true", False)])
def test_a_probability_setting_takes_a_number_from_0_to_1(tmp_path, value, valid):
    path = tmp_path / "rules.toml"
    path.write_text(f"[projection]\nat_risk_probability = {value}\n")
    proc = run_cli("config", "check", str(path), check=False)
    if valid:
        assert proc.returncode == 0 and ": valid (" in proc.stdout, proc.stderr
    else:
        assert proc.returncode == 2 and proc.stderr == (
            f"idres: error: {path}: projection.at_risk_probability = {value}: expected a probability, a number "
            f"from 0 to 1\n")


def test_a_data_directory_decided_under_other_rules_says_so_once(tmp_path):
    """Decided with `--config`, then given none (or another): the checkpoint was passed over and every new event
    decided under the other rules without a word, and `replay --verify` failed with no hint why."""
    events = tmp_path / "e.jsonl"
    events.write_text("".join(json.dumps({"event_id": f"e{i}", "occurred_at": f"2025-01-0{1 + i}T10:00:00Z",
                                          "channel": "web", "event_type": "login",
                                          "identifiers": {"email": f"p{i}@mailbox.org"}}) + "\n" for i in range(3)))
    rules = tmp_path / "rules.toml"
    rules.write_text("fuzzy_matching = false\n")
    data = str(tmp_path / "data")
    run_cli("ingest", str(events), "--data-dir", data, "--config", str(rules))
    same = run_cli("lookup", "email=p1@mailbox.org", "--data-dir", data, "--config", str(rules))
    assert "warning" not in same.stderr
    other = run_cli("lookup", "email=p1@mailbox.org", "--data-dir", data)
    said = [line for line in other.stderr.splitlines() if "decided under other rules" in line]
    assert len(said) == 1 and said[0].startswith(f"idres: warning: {data} was decided under other rules (config ")
    assert "give the --config it was decided with" in said[0]
    assert json.loads(other.stdout)["profile_id"] == json.loads(same.stdout)["profile_id"]


def test_config_check_warns_of_a_blocked_value_that_blocks_nothing(tmp_path):
    """A blocked value no identifier of its type is read as (`"not a phone"`) was taken as valid, silently."""
    path = tmp_path / "rules.toml"
    path.write_text('[identifier_types.phone]\nblocked_values = ["not a phone", "+44 7700 900999"]\n')
    proc = run_cli("config", "check", str(path))
    assert proc.stdout.startswith(f"{path}: valid (")
    assert proc.stderr == (f"idres: warning: {path}: identifier_types.phone.blocked_values: 'not a phone' blocks "
                           "nothing: no phone is read as it (not a phone number)\n")


@pytest.mark.parametrize("setting", ['in_person_channels = ["Store"]', '[projection]\nassisted_channels = ["Call Center"]',
                                     '[projection]\nuntrusted_channels = ["Chat"]', 'in_person_channels = ["store\\n"]',
                                     '[projection]\ncontact_costs = { "Call Center" = 6.5 }'])
def test_a_channel_named_otherwise_than_events_name_it_is_refused(tmp_path, setting):
    """`in_person_channels = ["Store"]` was valid, and matched no event (an event's channel is lower-case)."""
    path = tmp_path / "rules.toml"
    path.write_text(setting + "\n")
    proc = run_cli("config", "check", str(path), check=False)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert "channel names as events give them (lower-case letters, digits and _)" in proc.stderr or \
        "a cost of a channel named as events give it (lower-case letters, digits and _)" in proc.stderr

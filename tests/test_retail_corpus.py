"""The retail generator of the benchmarks (benchmarks/retail_corpus.py, written by a separate author from its
own specification): the same seed writes the same files, its events are channel events, and its truth names
every event once."""
from __future__ import annotations

import csv
import importlib.util
import json
from collections import Counter
from pathlib import Path

from schemas.channel import RejectedInput, parse_event

_SPEC = importlib.util.spec_from_file_location(
    "retail_corpus", Path(__file__).resolve().parent.parent / "benchmarks" / "retail_corpus.py")
retail_corpus = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(retail_corpus)


def test_the_same_seed_writes_the_same_corpus_and_another_seed_another(tmp_path):
    first = retail_corpus.write_corpus(str(tmp_path / "a"), people=150, seed=3)
    retail_corpus.write_corpus(str(tmp_path / "b"), people=150, seed=3)
    retail_corpus.write_corpus(str(tmp_path / "c"), people=150, seed=4)
    for name in ("events.jsonl", "truth.csv", "people.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert (tmp_path / "a" / "events.jsonl").read_bytes() != (tmp_path / "c" / "events.jsonl").read_bytes()
    assert first["people"] == 150 and first["events"] > 150


def test_its_events_are_channel_events_and_its_truth_names_each_once(tmp_path):
    retail_corpus.write_corpus(str(tmp_path), people=200, seed=11)
    lines = (tmp_path / "events.jsonl").read_bytes().splitlines()
    with open(tmp_path / "truth.csv", newline="") as fh:
        truth = [(r["event_id"], r["person_id"]) for r in csv.DictReader(fh)]
    ids = Counter(e for e, _ in truth)
    assert ids and max(ids.values()) == 1
    parsed, refused = [], []
    for line in lines:
        try:
            parsed.append(parse_event(line))
        except RejectedInput as exc:
            refused.append(exc)
    assert len(refused) <= len(lines) // 100, refused[:3]  # (what a channel sends: nearly all of it usable)
    assert {e.event_id for e in parsed} == set(ids)  # (re-sent duplicates: the same IDs)
    channels = Counter(e.channel for e in parsed)
    assert set(channels) == {"web", "app", "email", "call_center", "store", "loyalty", "chat"}
    kinds = Counter(t for line in (tmp_path / "annotations.jsonl").read_text().splitlines()
                    for t in json.loads(line).get("tags", ()))
    assert len(kinds) >= 10  # (the phenomena its specification names are drawn: typos, nicknames, formats...)

"""Training's chunks run anywhere give the model of training in one process: in any order, in worker processes
(``idres train --jobs``), or on a model's shards (``tests/test_key_shards.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from resolver.matching import estimation, training
from resolver.matching.estimation import in_order
from streams.training_jobs import ProcessMapper
from resolver.config import ResolverConfig
from resolver.matching import distinct_records
from resolver.normalize import Normalizer
from tests.test_calibration import population


@pytest.fixture(scope="module")
def records():
    events, _ = population(800, seed=3)  # (1,209 records, 416 candidate pairs)
    return distinct_records((e.attributes or {} for e in events), Normalizer(ResolverConfig()).attributes)


def _trained(records, mapper, **kw):
    model, report = training.train_model(records, seed=4, pairs_sample=9000, mapper=mapper, **kw)
    return model.to_dict(), report


def test_chunks_worked_in_any_order_give_the_same_model(records, monkeypatch):
    monkeypatch.setattr(estimation, "PAIRS_AT_ONCE", 150)  # (many chunks of every kind)
    monkeypatch.setattr(training, "RECORDS_AT_ONCE", 90)
    calls = []

    def backwards(function, recs, chunks):
        calls.append((function.__name__, len(chunks)))
        done = {k: function(recs, chunks[k]) for k in reversed(range(len(chunks)))}
        return [done[k] for k in range(len(chunks))]

    want = _trained(records, in_order)
    assert _trained(records, backwards) == want
    assert {name for name, n in calls if n > 1} == {"counted_chunk", "vectors_chunk", "keys_chunk"}
    # (and a mapper that loses the chunks' order does not: the test can tell)
    try:
        wrong = _trained(records, lambda f, r, c: [f(r, x) for x in reversed(c)])
    except KeyError:  # (vectors handed back for other pairs)
        wrong = None
    assert wrong != want


def test_worker_processes_give_the_same_model(records, monkeypatch):
    monkeypatch.setattr(estimation, "PAIRS_AT_ONCE", 150)
    with ProcessMapper(2) as mapper:
        got = _trained(records, mapper, max_pairs=3000)
        assert mapper._pool is not None  # (the chunks went to the pool)
    assert got == _trained(records, in_order, max_pairs=3000)


def test_idres_train_gives_the_same_model_whatever_its_jobs(tmp_path):
    from streams.synthetic import SyntheticConfig, generate_lines

    events = tmp_path / "events.jsonl"
    events.write_text("".join(line + "\n" for line, _ in generate_lines(SyntheticConfig(people=300, seed=2))))
    models = []
    for jobs in ("1", "2"):
        out = tmp_path / f"model{jobs}.json"
        run = subprocess.run([sys.executable, "-m", "streams.cli", "train", str(events), "--out", str(out),
                              "--pairs", "40000", "--jobs", jobs], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
        assert run.returncode == 0, run.stderr
        assert f"{jobs} process" in run.stderr
        models.append(json.loads(out.read_text()))
    assert models[0] == models[1]
    run = subprocess.run([sys.executable, "-m", "streams.cli", "train", str(events), "--out",
                          str(tmp_path / "m.json"), "--jobs", "0"], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parent.parent)
    assert run.returncode != 0 and run.stderr.startswith("idres: error: --jobs 0")
    for pairs in ("0", "-5"):  # (they trained on no pair and wrote the shipped u values as estimated ones)
        run = subprocess.run([sys.executable, "-m", "streams.cli", "train", str(events), "--out",
                              str(tmp_path / "m.json"), f"--pairs={pairs}"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent.parent)
        assert run.returncode == 2 and run.stderr.startswith(f"idres: error: --pairs {pairs}: give 1 or more")
        assert not (tmp_path / "m.json").exists()


def test_idres_train_gives_the_same_model_whatever_the_order_of_the_lines(tmp_path):
    """The seeded samples were drawn from the records in the order the file listed them: the same events, listed
    otherwise, gave another model (a postcode typo's weight +0.20 against +0.39)."""
    import random

    from streams.synthetic import SyntheticConfig, generate_lines

    lines = [line + "\n" for line, _ in generate_lines(SyntheticConfig(people=300, seed=2))]
    shuffled = lines[:]
    random.Random(4).shuffle(shuffled)
    models = []
    for name, content in (("a", lines), ("b", shuffled)):
        events, out = tmp_path / f"{name}.jsonl", tmp_path / f"{name}.json"
        events.write_text("".join(content))
        run = subprocess.run([sys.executable, "-m", "streams.cli", "train", str(events), "--out", str(out),
                              "--pairs", "20000", "--jobs", "1"], capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        models.append(out.read_text())
    assert models[0] == models[1]

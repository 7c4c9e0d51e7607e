"""The benchmark scripts still run, on a small generated file (on the tests' broker where they need one): a
script that no longer runs measures nothing (the sealing benchmark stopped at its replay once the log asked
its sealer to prefetch keys, and nothing noticed)."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from streams.synthetic import SyntheticConfig, write_dataset
from tests.cli_helpers import ROOT


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    work = tmp_path_factory.mktemp("bench")
    events = work / "events.jsonl"
    write_dataset(events, work / "truth.csv", SyntheticConfig(people=200, seed=5))
    return events


def bench(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_sealing_benchmark_compares_a_sealed_log_with_a_plain_one(small_file):
    out = bench("benchmarks/sealing_cost.py", str(small_file), "--repeat", "1")
    rows = {m[0]: m[1:] for m in re.findall(r"^(plain|sealed)\s+([\d,]+)\s+([\d,]+)\s+([\d,]+)\s+([\d.]+)\s+"
                                           r"([\d.]+)\s+([\d,]+)$", out, re.M)}
    assert set(rows) == {"plain", "sealed"}, out
    plain, sealed = rows["plain"], rows["sealed"]
    lines = sum(1 for _ in open(small_file, "rb"))
    assert plain[0] == sealed[0] and 0 < int(plain[0].replace(",", "")) <= lines, out  # the same records
    assert float(sealed[3]) > float(plain[3]), out  # a sealed log is larger
    assert int(plain[5].replace(",", "")) == 0 < int(sealed[5].replace(",", "")), out  # keys only when sealed
    assert re.search(r"^erasure of p_\w+ \(\d+ identifiers, \d+ events\): [\d.]+ s", out, re.M), out


def test_the_ingest_ratio_benchmark_times_both_passes_over_the_file(small_file):
    out = bench("benchmarks/ingest_ratio.py", str(small_file), "--repeat", "1")
    row = re.search(r"^\| events\.jsonl \| ([\d,]+) \| ([\d.]+) \| ([\d.]+) \| ([\d,]+) \| ([\d.]+) \| (\d+) \|",
                    out, re.M)
    assert row, out
    assert int(row[1].replace(",", "")) == sum(1 for _ in open(small_file, "rb"))
    assert float(row[5]) > 1  # idres does more than a bare union-find pass
    assert int(row[6]) > 0


def test_the_key_shard_commands_benchmark_times_a_load_and_verdicts_with_the_same_entries(small_file,
                                                                                          kafka_bootstrap):
    out = bench("benchmarks/key_shard_commands.py", str(small_file), "--verdicts", "3", "--bootstrap",
                kafka_bootstrap)
    assert re.search(r"^a new session: [\d.]+ s, the parts [\d.]+ MB pickled$", out, re.M), out
    verdicts = re.search(r"^(\d+) verdicts on slices: \d+ ms median, \d+ ms most; round trips (\d+) median, "
                         r"\d+ most; the same entries as the whole state: (\w+)$", out, re.M)
    assert verdicts and verdicts[1] == "3" and int(verdicts[2]) > 0 and verdicts[3] == "yes", out


def test_the_lost_holder_benchmark_follows_the_state_loading_the_lost_shards_alone(small_file, kafka_bootstrap):
    out = bench("benchmarks/key_shard_lost_holder.py", str(small_file), "--batch", "200", "--bootstrap",
                kafka_bootstrap)
    assert re.search(r"^a new session: [\d.]+ s, ([\d,]+) parts", out, re.M), out
    lost = re.search(r"^holder killed: its shard\(s\) \[(\d+)\] found lost", out, re.M)
    followed = re.search(r"^followed: (\d+) shard\(s\) loaded anew \(([\d,]+) parts\) and ([\d,]+) parts sent", out,
                         re.M)
    assert lost and followed and followed[1] == "1" and int(followed[3].replace(",", "")) > 0, out
    assert re.search(r"decided on the shards as the whole state decides them: yes$", out, re.M), out

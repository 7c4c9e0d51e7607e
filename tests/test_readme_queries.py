"""Every query the README shows an analyst runs, as written, on a snapshot of the demo's kind of data; and
every metric view is described there."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import pytest

from projections.metrics import VIEWS
from projections.snapshot import write_snapshot
from streams.embedded import EmbeddedEngine
from streams.synthetic import SyntheticConfig, write_dataset

README = Path(__file__).resolve().parent.parent / "README.md"


def analyst_queries() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Analyst snapshot (DuckDB)"):text.index("## Lookup API")]
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    statements = []
    for block in blocks:
        body = "\n".join(line for line in block.splitlines() if not line.lstrip().startswith("--"))
        statements += [s.strip() for s in body.split(";") if s.strip()]
    return statements


@pytest.fixture(scope="module")
def snapshot(tmp_path_factory):
    root = tmp_path_factory.mktemp("readme")
    write_dataset(root / "events.jsonl", root / "truth.csv", SyntheticConfig(people=150, seed=3))
    with EmbeddedEngine(root / "data") as engine:
        engine.ingest_file(root / "events.jsonl")
        write_snapshot(engine.views, root / "s.duckdb", predict=False)
    with duckdb.connect(str(root / "s.duckdb"), read_only=True) as con:
        yield con


def test_the_readme_shows_queries_on_the_metric_views():
    queries = analyst_queries()
    assert len(queries) >= 8
    assert sum(any(f" {v.name}" in q for v in VIEWS) for q in queries) >= 6


@pytest.mark.parametrize("sql", analyst_queries(), ids=lambda q: q.split("FROM")[-1].split()[0][:30])
def test_every_readme_query_runs_and_finds_rows(snapshot, sql):
    assert snapshot.execute(sql).fetchall(), sql


def test_every_metric_view_is_described_in_the_readme():
    text = README.read_text(encoding="utf-8")
    missing = [v.name for v in VIEWS if f"`{v.name}`" not in text]
    assert not missing

"""`idres report`: one HTML file, readable with no network, whose figures are the snapshot's; checked in a real
headless browser where one is installed."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from projections.report import write_report
from projections.snapshot import write_snapshot
from tests import browser
from tests.cli_helpers import run_cli
from tests.test_metrics import GBP_PER_EUR, feed, world

needs_browser = pytest.mark.skipif(browser.chromium() is None,
                                   reason="no Chromium here: `apt-get install chromium` (Debian) runs this test")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    customers = world(seed=7, people=120)
    run = feed(customers)
    run.views.config = replace(run.views.config, report_currency="GBP", exchange_rates={"EUR": GBP_PER_EUR})
    root = tmp_path_factory.mktemp("report")
    write_snapshot(run.views, root / "s.duckdb", predict=False)
    steps: list[str] = []
    out = write_report(root / "s.duckdb", root / "report.html", progress=steps.append)
    return customers, out, steps


def test_the_report_needs_no_network_and_shows_the_snapshot_s_figures(report):
    customers, out, steps = report
    text = out.read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]+src=", text), "a script loaded from elsewhere"
    assert not re.search(r"<link[^>]+href=\"?https?:", text)
    assert text.count("plotly.js v") == 1  # the library once, not once per plot
    assert steps[0] == "summary" and len(steps) >= 8  # progress, step by step
    # the summary's cards: identified customers and the share of them on two or more channels, as planned
    multi = sum(1 for c in customers if len({e[1] for e in c.events}) >= 2)
    assert f'<div class="v">{len(customers):,}</div><div class="k">identified customers' in text
    assert f'<div class="v">{multi / len(customers):.1%}</div><div class="k">use two or more channels' in text
    revenue = sum(c.revenue - c.refunded for c in customers)
    cell = re.search(r'<div class="v">([\d,.-]+)</div><div class="k">revenue, net of refunds \(GBP\)', text).group(1)
    assert float(cell.replace(",", "")) == pytest.approx(revenue, abs=0.05)
    assert oct(out.stat().st_mode & 0o777) == oct(0o600)  # it names customers: private, as the snapshot


@needs_browser
def test_the_report_opens_in_a_browser_with_no_errors_and_draws_every_plot(report):
    _, out, _ = report
    page = browser.load_page(out)
    assert page["errors"] == [] and page["requests"] == []
    assert page["plots"] >= 10 and page["drawn"]
    assert browser.colours(page["png"], limit=64) >= 64  # not a blank page


@needs_browser
def test_the_browser_check_sees_errors_and_blank_pages(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<body><script>console.error('bad')</script><script>throw new Error('boom')</script></body>")
    page = browser.load_page(bad)
    assert page["errors"] == ["console.error: bad", "exception: Error: boom"]
    assert browser.colours(page["png"]) == 1


def test_idres_report_writes_a_snapshot_of_a_data_dir_first(tmp_path):
    events = tmp_path / "events.jsonl"
    lines = [{"event_id": f"e{i}", "occurred_at": f"2025-01-0{1 + i % 9}T10:00:00Z", "channel": ch,
              "event_type": et, "identifiers": {"email": "ann.lee@mailbox.co.uk"},
              "payload": {"amount": 10 + i, "currency": "GBP"} if et == "purchase" else {}}
             for i, (ch, et) in enumerate([("web", "purchase"), ("chat", "chat_message"), ("store", "purchase")])]
    events.write_text("".join(json.dumps(x) + "\n" for x in lines))
    run_cli("ingest", str(events), "--data-dir", str(tmp_path / "data"))
    done = run_cli("report", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "r.html"), "--no-predict",
                   check=False)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["rows"]["events"] == 3 and Path(printed["report"]).is_file()
    assert "idres: report: summary" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "events.jsonl", "r.html"]  # no snapshot left
    bad = run_cli("report", str(tmp_path / "nope.duckdb"), "--out", str(tmp_path / "x.html"), check=False)
    assert bad.returncode != 0 and bad.stderr.startswith("idres: error: snapshot") and "idres snapshot" in bad.stderr


def test_a_killed_report_s_snapshot_is_removed_by_the_next_report(tmp_path):
    """A report of a data directory killed part way left its temporary snapshot, every customer in it, for good:
    its directory's name did not say whose it was, so no later run took it for debris."""
    import os
    import subprocess
    import sys
    import time

    events = tmp_path / "events.jsonl"
    events.write_text(json.dumps({"event_id": "e1", "occurred_at": "2025-01-01T10:00:00Z", "channel": "web",
                                  "event_type": "login", "identifiers": {"email": "ann.lee@mailbox.co.uk"}}) + "\n")
    run_cli("ingest", str(events), "--data-dir", str(tmp_path / "data"))
    out = tmp_path / "reports"
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = out / f".idres-report-{int(gone.stdout)}-k2j3h4g5"  # (its writer has exited)
    before = out / ".idres-report-q1w2e3r4"  # (named as before: no writer, an hour and more old)
    live = out / f".idres-report-{os.getpid()}-z9x8c7v6"  # (this process's: alive)
    for d in (dead, before, live):
        d.mkdir(parents=True)
        (d / "snapshot.duckdb").write_bytes(b"ann.lee@mailbox.co.uk")
    old = time.time() - 2 * 3600
    os.utime(before, (old, old))
    run_cli("report", "--data-dir", str(tmp_path / "data"), "--out", str(out / "r.html"), "--no-predict")
    assert sorted(p.name for p in out.iterdir()) == sorted([live.name, "r.html"])


def test_a_report_of_an_empty_snapshot_says_there_is_nothing_rather_than_failing(tmp_path):
    from tests.resolver_helpers import Run

    write_snapshot(Run().views, tmp_path / "s.duckdb", predict=False)
    text = write_report(tmp_path / "s.duckdb", tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<div class="v">0</div><div class="k">identified customers' in text
    assert '<div class="v">n/a</div><div class="k">use two or more channels' in text


def test_no_customer_on_two_channels_is_a_share_of_0_not_n_a(tmp_path):
    from tests.resolver_helpers import Run, ev

    run = Run().feed([ev("a1", 0, channel="web", event_type="login", email="a@mailbox.co.uk"),
                      ev("b1", 0, channel="store", event_type="visit", loyalty_id="LY-2")])
    write_snapshot(run.views, tmp_path / "s.duckdb", predict=False)
    text = write_report(tmp_path / "s.duckdb", tmp_path / "r.html").read_text(encoding="utf-8")
    assert '<div class="v">2</div><div class="k">identified customers' in text
    assert '<div class="v">0.0%</div><div class="k">use two or more channels' in text


def test_the_report_bounds_duckdb_s_memory_by_default_or_as_the_setting_says(report, tmp_path, monkeypatch):
    import projections.report as reporting

    snapshot = report[1].parent / "s.duckdb"
    limits: list[str] = []
    write = reporting.Report.write

    def noting(self, out):
        limits.append(self.con.execute("SELECT current_setting('memory_limit')").fetchone()[0])
        return write(self, out)

    monkeypatch.setattr(reporting.Report, "write", noting)
    first = write_report(snapshot, tmp_path / "default.html")
    monkeypatch.setenv("IDRES_SNAPSHOT_MEMORY", "512MB")
    write_report(snapshot, tmp_path / "set.html")
    # (DuckDB shows its bound in its own units: 1GB is 953.6 MiB, 512MB 488.2 MiB)
    assert limits == ["953.6 MiB", "488.2 MiB"]
    assert first.stat().st_size > 0
    monkeypatch.setenv("IDRES_SNAPSHOT_MEMORY", "64KB")  # (too little: one line that says what to do)
    with pytest.raises(reporting.IdresError, match=r"^the report needs more memory than IDRES_SNAPSHOT_MEMORY=64KB "
                                                   r".*: raise it, or unset it$"):
        write_report(snapshot, tmp_path / "small.html")
    # (nothing left beside the reports: DuckDB's spill directory is the report's own, removed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default.html", "set.html"]


def test_report_and_generate_do_not_overwrite_a_file_they_did_not_write(tmp_path):
    """`idres report --out notes.html` and `idres generate --out` replaced whatever file was there, where snapshot,
    train and demo refuse one they did not write."""
    mine = tmp_path / "notes.html"
    mine.write_text("hi\n")
    done = run_cli("report", str(tmp_path / "none.duckdb"), "--out", str(mine), check=False)
    assert done.returncode == 2 and "exists and is not a HTML report" in done.stderr
    done = run_cli("generate", "--people", "3", "--out", str(mine), "--truth", str(tmp_path / "t.csv"), check=False)
    assert done.returncode == 2 and "exists and is not a generated events file" in done.stderr
    assert mine.read_text() == "hi\n"
    # a user's own JSON lines and labels are not the generator's either
    prod, labels = tmp_path / "prod.jsonl", tmp_path / "labels.csv"
    prod.write_text('{"event_id": "o1", "occurred_at": "2025-01-01T00:00:00Z"}\n')
    labels.write_text("event_id,customer_id\no1,c1\n")
    done = run_cli("generate", "--people", "3", "--out", str(prod), "--truth", str(labels), check=False)
    assert done.returncode == 2 and prod.read_text().startswith('{"event_id": "o1"')
    events, truth = tmp_path / "e.jsonl", tmp_path / "t.csv"
    for _ in range(2):  # (its own earlier output it replaces)
        run_cli("generate", "--people", "3", "--out", str(events), "--truth", str(truth))

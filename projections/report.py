"""The analyst report: one self-contained HTML file of the snapshot's metric views (``projections.metrics``)
as plots and tables. Plotly draws the plots; its script is written into the file once, so the report opens
with no network. It holds what the snapshot holds about customers (names and contacts in the proactive
lists): it is written with the snapshot's permissions."""

from __future__ import annotations

import html
import os
import re
import shutil
import tempfile
from datetime import date, datetime
from pathlib import Path
from typing import Any, Callable, Optional

from projections.storage import remove_debris, write_atomic
from resolver.errors import IdresError

PLOT_CONFIG = {"displaylogo": False, "showSendToCloud": False, "responsive": True}
PALETTE = ["#2f6db5", "#e08a2e", "#3a9d5d", "#c8453c", "#7d5ab5", "#8c6d4f", "#d46aa8", "#7f7f7f", "#b5b82f",
           "#2fb5c4"]
TOP = 20  # rows of the lists shown
# DuckDB's memory while the report reads a snapshot, unless IDRES_SNAPSHOT_MEMORY says (``snapshot.Bounded``): at
# 1.35 million events 1GB took as long as no bound (50.7 s, 1,199,116 kB), 256MB a third longer (470,320 kB)
REPORT_MEMORY = "1GB"

STYLE = """
body { font-family: system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 0 24px 48px; color: #1d2430; background: #fff; }
h1 { margin: 28px 0 4px; } h2 { margin-top: 40px; border-bottom: 1px solid #dde2ea; padding-bottom: 4px; }
p.lead, p.note { color: #4a5568; } p.note { font-size: 0.9em; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(170px, 1fr)); gap: 12px; margin: 20px 0; }
.card { border: 1px solid #dde2ea; border-radius: 8px; padding: 12px 14px; }
.card .v { font-size: 1.6em; font-weight: 600; } .card .k { color: #4a5568; font-size: 0.85em; }
table { border-collapse: collapse; font-size: 0.88em; margin: 8px 0 16px; }
th, td { border-bottom: 1px solid #e6e9ef; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f4f6f9; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.grid2 { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
"""


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return ", ".join(_fmt(v) for v in value)
    return str(value)


def _share(value: Optional[float]) -> str:
    return f"{value:.1%}" if value is not None else "n/a"


def table_html(rows: list[dict[str, Any]], columns: Optional[list[str]] = None, empty: str = "none") -> str:
    if not rows:
        return f'<p class="note">({html.escape(empty)})</p>'
    columns = columns or list(rows[0])
    head = "".join(f"<th>{html.escape(c.replace('_', ' '))}</th>" for c in columns)
    body = []
    for r in rows:
        cells = []
        for c in columns:
            v = r.get(c)
            cls = ' class="n"' if isinstance(v, (int, float)) and not isinstance(v, bool) else ""
            shown = f"{v:.1%}" if cls and c.endswith(("share", "rate")) else _fmt(v)
            cells.append(f"<td{cls}>{html.escape(shown)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def side_by_side(rows: list[dict[str, Any]], category: str, *panels: tuple[str, list[tuple[str, str]]]) -> Any:
    """Bar charts next to each other over the same categories: each panel a title and its (legend, column)
    bars; a panel of one bar has no legend entry."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[title for title, _ in panels])
    names = [r[category] for r in rows]
    for k, (_, bars) in enumerate(panels, 1):
        for legend, column in bars:
            fig.add_trace(go.Bar(name=legend, x=names, y=[r[column] for r in rows], showlegend=len(bars) > 1), 1, k)
    return fig


class Report:
    """Reads a snapshot and writes the report: ``Report(con).write(out)``."""

    def __init__(self, con: Any, progress: Optional[Callable[[str], None]] = None):
        self.con = con
        self.progress = progress or (lambda step: None)
        self.parts: list[str] = []
        self.figures = 0
        self.settings = self.rows("SELECT * FROM metric_settings")[0]  # (one row: as_of, report_currency, ...)

    # ------------------------------------------------------------------------------------ reading
    def rows(self, sql: str) -> list[dict[str, Any]]:
        cur = self.con.execute(sql)
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def one(self, sql: str) -> Any:
        row = self.con.execute(sql).fetchone()
        return row[0] if row else None

    # ------------------------------------------------------------------------------------ writing
    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, fig: Any, height: int = 420) -> None:
        fig.update_layout(height=height, margin=dict(l=50, r=20, t=50, b=40), template="plotly_white",
                          colorway=PALETTE, font=dict(size=12))
        self.add(fig.to_html(full_html=False, include_plotlyjs=self.figures == 0, include_mathjax=False,
                             config=PLOT_CONFIG, div_id=f"figure-{self.figures}"))
        self.figures += 1

    def section(self, title: str, lead: str = "") -> None:
        self.add(f"<h2>{html.escape(title)}</h2>")
        if lead:
            self.add(f'<p class="lead">{html.escape(lead)}</p>')

    def build(self) -> str:
        steps = [("summary", self._summary), ("channels", self._channels), ("journeys", self._journeys),
                 ("customer value", self._value), ("churn", self._churn), ("service", self._service),
                 ("the promise", self._promise), ("cross-channel", self._cross), ("identity", self._identity)]
        for name, step in steps:
            self.progress(name)
            step()
        settings = self.settings
        as_of = _fmt(settings["as_of"])
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
                f"<title>idres report, as of {html.escape(as_of)}</title><style>{STYLE}</style></head><body>\n"
                f"<h1>Customers across channels</h1><p class=\"lead\">As of {html.escape(as_of)} (the newest event "
                f"in the snapshot); money in {html.escape(settings['report_currency'] or 'the amounts as sent')}."
                "</p>\n" + "\n".join(self.parts) + "\n</body></html>\n")

    def write(self, out: str | Path) -> Path:
        out = Path(out)
        if out.is_dir():
            raise IdresError(f"report output {out} is a directory: give a file path, e.g. {out / 'report.html'}")
        out.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(out, self.build().encode("utf-8"))
        return out

    # ------------------------------------------------------------------------------------ sections
    def _summary(self) -> None:
        q = self.one
        customers = q("SELECT count(*) FROM customer_value WHERE identified")
        multi = q("SELECT coalesce(sum(customers) FILTER (WHERE multi_channel), 0) / nullif(sum(customers), 0) "
                  "FROM channel_usage")
        recognised = q("SELECT sum(recognised) / nullif(sum(with_history), 0) FROM promise_by_channel")
        currency = self.settings["report_currency"]
        cards = [
            ("identified customers", _fmt(customers)),
            ("use two or more channels", _share(multi)),
            (f"revenue, net of refunds{f' ({currency})' if currency else ''}",
             _fmt(q("SELECT round(sum(net_revenue), 2) FROM customer_value"))),
            ("assisted contacts recognised", _share(recognised)),
            ("median resolution (hours)", _fmt(q("SELECT round(median(resolution_hours), 1) FROM cases"))),
            ("average CSAT", _fmt(q("SELECT round(avg(csat), 2) FROM cases"))),
            ("churned", _share(q("SELECT avg((status = 'churned')::INT) FROM churn_risk"))),
            ("valuable customers at risk", _fmt(q("SELECT count(*) FROM valuable_at_risk"))),
        ]
        self.add('<div class="cards">' + "".join(
            f'<div class="card"><div class="v">{html.escape(v)}</div><div class="k">{html.escape(k)}</div></div>'
            for k, v in cards) + "</div>")
        notes = self.rows("SELECT topic, note FROM metric_notes ORDER BY topic")
        for n in notes:
            self.add(f'<p class="note"><b>{html.escape(n["topic"])}</b>: {html.escape(n["note"])}</p>')

    def _channels(self) -> None:
        import plotly.graph_objects as go

        self.section("Channel mix", "Events, customers and revenue per channel, and how many channels customers use.")
        rows = self.rows("SELECT * FROM channel_summary")
        self.figure(side_by_side(rows, "channel", ("events and customers", [("events", "events"), ("customers", "customers")]),
                                 ("revenue", [("revenue", "revenue")])))
        usage = self.rows("SELECT * FROM channel_usage")
        fig = go.Figure(go.Bar(x=[str(r["channels"]) for r in usage], y=[r["customers"] for r in usage],
                               marker_color=[PALETTE[1] if r["multi_channel"] else PALETTE[0] for r in usage]))
        fig.update_layout(title="identified customers by number of channels used", xaxis_title="channels")
        self.figure(fig, 320)
        self.add(table_html(rows))

    def _journeys(self) -> None:
        import plotly.graph_objects as go

        self.section("Journeys", "Customers' channels in time order, a repeat on one channel counted once: the first "
                                 "steps as a flow, the most common paths, and moves between different channels.")
        steps = self.rows("SELECT * FROM journey_steps")
        if steps:
            nodes: dict[tuple[int, str], int] = {}
            for r in steps:
                for key in ((r["step"], r["from_channel"]), (r["step"] + 1, r["to_channel"])):
                    nodes.setdefault(key, len(nodes))
            labels = [f"{ch} ({k})" for (k, ch) in nodes]
            channels = sorted({ch for _, ch in nodes})
            colour = {ch: PALETTE[i % len(PALETTE)] for i, ch in enumerate(channels)}
            fig = go.Figure(go.Sankey(
                node=dict(label=labels, pad=12, color=[colour[ch] for _, ch in nodes]),
                link=dict(source=[nodes[(r["step"], r["from_channel"])] for r in steps],
                          target=[nodes[(r["step"] + 1, r["to_channel"])] for r in steps],
                          value=[r["customers"] for r in steps])))
            fig.update_layout(title="journeys, step by step (channel and step number)")
            self.figure(fig, 520)
        self.add('<div class="grid2"><div><h3>most common journeys of two steps or more</h3>'
                 + table_html(self.rows(f"SELECT journey, customers, share FROM journeys WHERE steps > 1 LIMIT {TOP}"))
                 + "</div><div><h3>moves between different channels</h3>"
                 + table_html(self.rows(f"SELECT * FROM channel_transitions LIMIT {TOP}")) + "</div></div>")

    def _value(self) -> None:
        import plotly.graph_objects as go

        currency = self.settings["report_currency"] or ""
        self.section("Customer value", f"Lifetime value so far (net revenue, never below 0) of buyers, in {currency}; "
                                       "predicted figures where the purchase models ran.")
        values = [r[0] for r in self.con.execute(
            "SELECT lifetime_value FROM customer_value WHERE purchases > 0 ORDER BY lifetime_value").fetchall()]
        fig = go.Figure(go.Histogram(x=values, nbinsx=40))
        fig.update_layout(title="lifetime value of buyers", xaxis_title=currency, yaxis_title="customers")
        self.figure(fig, 340)
        predicted = self.one("SELECT count(*) FROM customer_value_predicted")
        cols = ["profile_id", "first_name", "last_name", "purchases", "lifetime_value", "average_order_value",
                "last_seen"] + (["probability_alive", "predicted_clv_12m"] if predicted else [])
        top = self.rows(f"SELECT v.*, p.first_name, p.last_name FROM customer_value v JOIN profiles p USING (profile_id) "
                        f"ORDER BY v.lifetime_value DESC, v.profile_id LIMIT {TOP}")
        self.add("<h3>top customers</h3>" + table_html(top, cols))
        houses = self.rows(f"SELECT household_id, members, purchases, lifetime_value, last_seen FROM household_value "
                           f"LIMIT {TOP // 2}")
        self.add("<h3>households by combined value</h3>" + table_html(houses, empty="no households"))

    def _churn(self) -> None:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        self.section("Churn", "Churned: inactive for churn_days; at risk: inactive several times one's own usual "
                              "gap, or a low modelled probability of being alive.")
        cohorts = self.rows("SELECT * FROM churn_cohorts")
        survival = self.rows("SELECT * FROM survival")
        fig = make_subplots(rows=1, cols=2, subplot_titles=("churn rate by monthly cohort", "share still active by tenure (days)"))
        fig.add_trace(go.Bar(x=[r["cohort_month"] for r in cohorts], y=[r["churn_rate"] for r in cohorts],
                             name="churn rate"), 1, 1)
        fig.add_trace(go.Scatter(x=[0] + [r["days"] for r in survival], y=[1.0] + [r["surviving"] for r in survival],
                                 line_shape="hv", name="surviving"), 1, 2)
        fig.update_yaxes(range=[0, 1])
        self.figure(fig, 360)
        at_risk = self.rows(f"SELECT * FROM valuable_at_risk LIMIT {TOP}")
        self.add("<h3>valuable customers at risk</h3>" + table_html(
            at_risk, ["profile_id", "first_name", "last_name", "lifetime_value", "days_inactive", "why", "emails", "phones"],
            empty="none at risk"))

    def _service(self) -> None:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        self.section("Service", "Support cases: resolution time, CSAT and first-contact resolution by the channel a "
                                "case was opened on.")
        by = self.rows("SELECT * FROM service_by_channel")
        self.figure(side_by_side(by, "channel", ("resolution hours (average, median)",
                                                 [("average", "avg_resolution_hours"), ("median", "median_resolution_hours")]),
                                 ("average CSAT", [("CSAT", "avg_csat")])), 360)
        monthly = self.rows("SELECT month, sum(cases) AS cases, round(sum(avg_resolution_hours * resolved) / "
                            "nullif(sum(resolved), 0), 2) AS avg_resolution_hours, round(sum(avg_csat * csat_responses) / "
                            "nullif(sum(csat_responses), 0), 2) AS avg_csat FROM service_by_channel_month GROUP BY month "
                            "ORDER BY month")
        fig = make_subplots(specs=[[{"secondary_y": True}]])
        fig.add_trace(go.Scatter(x=[r["month"] for r in monthly], y=[r["avg_resolution_hours"] for r in monthly],
                                 name="average resolution hours"))
        fig.add_trace(go.Scatter(x=[r["month"] for r in monthly], y=[r["avg_csat"] for r in monthly],
                                 name="average CSAT"), secondary_y=True)
        fig.update_layout(title="by month a case was opened")
        self.figure(fig, 340)
        self.add(table_html(by))
        stale = self.rows(f"SELECT * FROM stale_open_cases LIMIT {TOP}")
        self.add(f"<h3>open cases past their age ({self.one('SELECT count(*) FROM stale_open_cases'):,} in all)</h3>"
                 + table_html(stale, ["case_id", "channel", "opened_at", "age_days", "first_name", "last_name", "emails"],
                              empty="none"))

    def _promise(self) -> None:
        import plotly.graph_objects as go

        self.section("No customer repeats themselves", "At each contact on an assisted channel: had the customer used "
                     "other channels before, and did their profile show each one's latest event at that moment, as "
                     "the decision log had it then?")
        monthly = self.rows("SELECT * FROM promise_by_month")
        fig = go.Figure()
        months = [r["month"] for r in monthly]
        for outcome, key in (("recognised", "recognised"), ("partly", "partly"), ("not recognised", "not_recognised")):
            fig.add_trace(go.Bar(name=outcome, x=months, y=[r[key] for r in monthly]))
        fig.add_trace(go.Scatter(name="recognised rate", x=months, y=[r["recognised_rate"] for r in monthly],
                                 yaxis="y2", mode="lines+markers"))
        fig.update_layout(barmode="stack", title="assisted contacts with history on other channels",
                          yaxis2=dict(overlaying="y", side="right", range=[0, 1], title="recognised rate"))
        self.figure(fig, 380)
        self.add(table_html(self.rows("SELECT * FROM promise_by_channel")))
        repeat = self.one("SELECT count(*) FROM repeat_contacts")
        recontact = self.one("SELECT count(DISTINCT case_id) FROM recontacted_while_open")
        self.add(f'<p class="note">{repeat:,} cases had contacts on more than one channel while open; '
                 f'{recontact:,} cases\' customers came back on another assisted channel before the case was closed '
                 "(views repeat_contacts and recontacted_while_open).</p>")

    def _cross(self) -> None:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        self.section("Cross-channel customers", "Customers of two or more channels against those of one. A "
                     "description of this business, not proof that channels cause value.")
        seg = self.rows("SELECT * FROM segment_comparison")
        figures = [("purchases_per_buyer", "purchases per buyer"), ("average_order_value", "average order value"),
                   ("avg_lifetime_value_per_buyer", "lifetime value per buyer"), ("churn_rate", "churn rate")]
        fig = make_subplots(rows=1, cols=4, subplot_titles=[t for _, t in figures])
        for k, (key, _) in enumerate(figures, 1):
            fig.add_trace(go.Bar(x=[r["segment"] for r in seg], y=[r[key] for r in seg], showlegend=False,
                                 marker_color=PALETTE[:len(seg)]), 1, k)
        self.figure(fig, 340)
        by = {r["segment"]: r for r in seg}
        cross, single = by.get("cross-channel"), by.get("single-channel")
        if cross and single and cross["purchases_per_buyer_year"] and single["purchases_per_buyer_year"]:
            ratio = cross["purchases_per_buyer_year"] / single["purchases_per_buyer_year"] - 1
            self.add(f'<p class="lead">Here, cross-channel buyers buy {abs(ratio):.0%} '
                     f'{"more" if ratio >= 0 else "less"} often a year than single-channel buyers (industry studies '
                     "report about 48% more often).</p>")
        self.add(table_html(seg))
        self.add("<h3>return on the omnichannel programme</h3>" + table_html(self.rows("SELECT * FROM programme_return")))

    def _identity(self) -> None:
        import plotly.graph_objects as go
        from plotly.subplots import make_subplots

        self.section("Identity quality", "How the resolution stands: profiles, merges, splits, shared identifiers, "
                                         "the review backlog, cluster sizes and match weights.")
        sizes = self.rows("SELECT * FROM cluster_sizes")
        weights = self.rows("SELECT weight_from, outcome, pairs FROM match_weights")
        fig = make_subplots(rows=1, cols=2, subplot_titles=("identified profiles by identifiers held",
                                                            "match weight of attribute links and reviews"))
        fig.add_trace(go.Bar(x=[r["identifiers"] for r in sizes], y=[r["profiles"] for r in sizes], showlegend=False), 1, 1)
        for outcome in sorted({r["outcome"] for r in weights}):
            mine = [r for r in weights if r["outcome"] == outcome]
            fig.add_trace(go.Bar(name=outcome, x=[r["weight_from"] for r in mine], y=[r["pairs"] for r in mine]), 1, 2)
        fig.update_layout(barmode="stack")
        self.figure(fig, 360)
        self.add('<div class="grid2"><div>' + table_html(self.rows("SELECT * FROM identity_quality")) + "</div><div>"
                 + table_html(self.rows("SELECT * FROM shared_identifiers_by_reason LIMIT 15"), empty="none shared")
                 + "</div></div>")


def write_report(snapshot: str | Path, out: str | Path, progress: Optional[Callable[[str], None]] = None) -> Path:
    """The report of the snapshot file ``snapshot``, written to ``out`` (atomically)."""
    import duckdb

    from projections.snapshot import SNAPSHOT_SCHEMA_VERSION, Bounded, refused_for_memory, snapshot_memory

    path = Path(snapshot)
    if not path.is_file():
        raise IdresError(f"snapshot {path} not found: write one with `idres snapshot --out {path}`")
    memory = snapshot_memory()
    # (where DuckDB writes beyond its bound: private, beside the report, removed after, or by the next report when
    # this one was killed)
    where = Path(out).parent
    where.mkdir(parents=True, exist_ok=True)
    remove_debris(where, re.compile(r"\.idres-report-spill-(?P<pid>\d+)-.+"))
    spill = Path(tempfile.mkdtemp(prefix=f".idres-report-spill-{os.getpid()}-", dir=where))
    try:
        try:
            con = Bounded(duckdb.connect(str(path), read_only=True), memory, spill / "duckdb", REPORT_MEMORY)
        except duckdb.Error:
            raise IdresError(f"{path} is not a DuckDB snapshot: write one with `idres snapshot --out FILE.duckdb`") \
                from None
        with con, refused_for_memory("report", memory):
            version = con.execute("SELECT max(value) FROM snapshot_info WHERE key = 'schema_version'").fetchone() \
                if con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'snapshot_info'"
                               ).fetchone()[0] else None
            if not version or not version[0] or int(version[0]) < SNAPSHOT_SCHEMA_VERSION:
                raise IdresError(f"{path} was written by an older idres, without the metric views: write it "
                                 "again with `idres snapshot --out FILE.duckdb`")
            return Report(con, progress).write(out)
    finally:
        shutil.rmtree(spill, ignore_errors=True)

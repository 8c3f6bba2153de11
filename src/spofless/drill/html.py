"""The html report: one self-contained file (plotly.js inlined, no network needed).

For each traffic stream a timeline of the drill, one point a second: requests and
errors (bars) and the median and worst latency of the successes (lines), with every
fault shaded from when it was applied to when it was taken back and labelled. Then
the tables of the text report: faults (with the prediction beside the measured
outcome in the default plan), streams, data, assertions.
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

CHART_ID = "drill-timeline"  # the chart's element id (tests look for it)


def render_html(doc: dict[str, Any]) -> str:
    title = f"spofless drill · {doc['topology']} ({doc['plan']})"
    chart = _chart(doc).to_html(
        full_html=False, include_plotlyjs=True, div_id=CHART_ID, config={"responsive": True}
    )
    verdict = "passed" if doc["ok"] else "failed"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        "<style>body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}"
        "td,th{border-bottom:1px solid #ddd;padding:.25em .7em;text-align:left}"
        ".ok{color:#1a7f37}.bad{color:#cf222e;font-weight:bold}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f'<p id="verdict" class="{"ok" if doc["ok"] else "bad"}">{verdict}: '
        f"{doc['duration']:.1f}s, {doc['summary']['faults']} fault(s), "
        f"{doc['summary']['errors']} client error(s), RTO {doc['summary']['rto']:.2f}s"
        + (f"; aborted: {_e(doc['aborted'])}" if doc["aborted"] else "")
        + "</p>",
        chart,
        _faults_table(doc),
        _streams_table(doc),
        _data(doc),
        _assertions(doc),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _chart(doc: dict[str, Any]) -> go.Figure:
    streams = list(doc["timeline"])
    rows = max(1, len(streams))
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        subplot_titles=streams or ["no traffic"],
        specs=[[{"secondary_y": True}] for _ in range(rows)],
        vertical_spacing=0.08,
    )
    for i, name in enumerate(streams, start=1):
        points = doc["timeline"][name]
        t = [p["t"] for p in points]
        ok = [p["requests"] - p["errors"] for p in points]
        fig.add_trace(
            go.Bar(x=t, y=ok, name="succeeded", marker_color="#2da44e", showlegend=i == 1),
            row=i,
            col=1,
        )
        fig.add_trace(
            go.Bar(
                x=t,
                y=[p["errors"] for p in points],
                name="failed",
                marker_color="#cf222e",
                showlegend=i == 1,
            ),
            row=i,
            col=1,
        )
        for key, color, label in (
            ("p50_latency", "#0969da", "median latency"),
            ("max_latency", "#8250df", "worst latency"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=t,
                    y=[p[key] for p in points],
                    name=label,
                    mode="lines",
                    line={"color": color},
                    showlegend=i == 1,
                ),
                row=i,
                col=1,
                secondary_y=True,
            )
        fig.update_yaxes(title_text="requests/s", row=i, col=1, secondary_y=False)
        fig.update_yaxes(
            title_text="latency (s)", rangemode="tozero", row=i, col=1, secondary_y=True
        )
    for f in doc["faults"]:
        if not f["applied"]:
            continue
        end = f["end"] if f["end"] is not None and f["end"] > f["at"] else f["at"] + 0.2
        fig.add_vrect(
            x0=f["at"],
            x1=end,
            fillcolor="#fb8f44",
            opacity=0.25,
            line_width=0,
            annotation_text=f["element"] or f["description"],
            annotation_position="top left",
        )
    fig.update_layout(
        barmode="stack",
        height=260 * rows + 80,
        margin={"t": 80, "b": 40, "l": 60, "r": 60},
        legend={"orientation": "h", "x": 0, "y": 1.0, "yanchor": "top", "yref": "container"},
    )
    fig.update_xaxes(title_text="seconds since the drill started", row=rows, col=1)
    return fig


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _table(head: list[str], rows: list[list[str]], table_id: str) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table id="{table_id}"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _sec(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def _faults_table(doc: dict[str, Any]) -> str:
    analysis = doc["plan"] == "analysis"
    head = ["#", "element" if analysis else "fault", "at"]
    head += ["predicted", "measured"] if analysis else []
    head += ["errors", "outage", "detect", "recover", "note"]
    rows = []
    for f in doc["faults"]:
        row = [str(f["index"]), _e(f["element"] if analysis else f["description"]), _sec(f["at"])]
        if analysis:
            cls = "ok" if f["measured"] == f["predicted"] else "bad"
            row += [_e(f["predicted"]), f'<span class="{cls}">{_e(f["measured"])}</span>']
        note = f["error"] or f["note"] or (f"seen: {f['detected_as']}" if f["detected_as"] else "")
        row += [
            str(f["errors"]),
            _sec(f["rto"]),
            _sec(f["detect"]),
            _sec(f["recover"]),
            _e(note),
        ]
        rows.append(row)
    return "<h2>Faults</h2>" + _table(head, rows, "faults")


def _streams_table(doc: dict[str, Any]) -> str:
    rows = [
        [
            _e(s["name"]),
            str(s["requests"]),
            str(s["errors"]),
            _sec(s["p50_latency"]),
            _sec(s["p99_latency"]),
            _sec(s["max_latency"]),
        ]
        for s in doc["streams"]
    ]
    head = ["stream", "requests", "errors", "p50", "p99", "max"]
    return "<h2>Traffic</h2>" + _table(head, rows, "streams")


def _data(doc: dict[str, Any]) -> str:
    d = doc["data"]
    after = doc["after"]
    whole = (
        f'<p class="ok">full redundancy again {after["recovered_in"]:.1f}s after</p>'
        if after["whole"]
        else f'<p class="bad">not whole again: {_e("; ".join(after["problems"]))}</p>'
    )
    if d is None:
        return whole + (f"<p>{_e(doc['data_note'])}</p>" if doc["data_note"] else "")
    cls = "ok" if d["ok"] else "bad"
    return (
        f'<h2>Data</h2><p class="{cls}">{d["acknowledged"]} acknowledged, {d["uncertain"]} '
        f"uncertain, {d['lost']} lost, {d['phantom']} phantom, {len(d['divergent'])} divergent; "
        f"RPO {d['rpo_writes']} writes, {d['rpo_seconds']:.2f}s</p>" + whole
    )


def _assertions(doc: dict[str, Any]) -> str:
    if not doc["assertions"]:
        return ""
    rows = [
        [
            _e(a["assertion"]),
            f'<span class="{"ok" if a["holds"] else "bad"}">{"holds" if a["holds"] else "fails"}'
            "</span>",
            _e(a["actual"]),
        ]
        for a in doc["assertions"]
    ]
    return "<h2>Assertions</h2>" + _table(["assertion", "", "actual"], rows, "assertions")

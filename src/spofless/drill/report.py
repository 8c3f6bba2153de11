"""A drill's figures as one document, and the document as text, JSON or JUnit.

`report_document(result, topology, assertions)` computes every figure (see
measure.py for the definitions) into a plain dict whose keys are a stable contract
(README: "spofless drill", JSON keys); the renderers only format it.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from spofless.drill.assertions import Assertion
from spofless.drill.measure import Outcome, detect_and_recover, outage_window_through, rpo
from spofless.drill.runner import DrillResult
from spofless.drill.traffic import SqlStream

REPORT_VERSION = 1


def report_document(
    result: DrillResult, topology_name: str, source: str, assertions: Sequence[Assertion]
) -> dict[str, Any]:
    plan = result.plan
    outcomes = result.outcomes()
    rates = {s.name: plan.traffic[i].rate for i, s in enumerate(result.streams)}
    applied = sorted((f for f in result.faults if not f.error), key=lambda f: f.at)
    # The last fault's period runs to the last request's end (a request in flight when
    # the traffic stopped ends after the drill's clock was read).
    horizon = max([result.duration, *(o.end for outs in outcomes.values() for o in outs)]) + 1e-3
    faults: list[dict[str, Any]] = []
    for rec in result.faults:
        later = sorted(f.at for f in applied if f.at > rec.at)
        until = later[0] if later else horizon
        windows: list[dict[str, Any]] = []
        if not rec.error:
            for name, outs in outcomes.items():
                slow = max(3.0 / rates[name], 0.5)
                win = outage_window_through(outs, rec.at, [*later, horizon], slow)
                windows.append(
                    {
                        "stream": name,
                        "requests": win.requests,
                        "errors": win.errors,
                        "outage": win.outage,
                        "last_ok_before": win.last_ok_before,
                        "first_ok_after": win.first_ok_after,
                        "recovered": win.recovered,
                        "max_latency": round(win.max_latency, 4),
                    }
                )
        targets = [t for t in rec.targets if "/" in t and ":" not in t]
        end = rec.end if rec.end is not None else rec.at
        det = detect_and_recover(
            result.snapshots, targets, rec.at, end, until, recover_until=float("inf")
        )
        measured = None
        if rec.element is not None and not rec.error:
            # Down: a stream still failing when the element came back (no recovery by
            # itself while the element was failed).
            measured = "up"
            for w in windows:
                if w["errors"] and (w["first_ok_after"] is None or w["first_ok_after"] > end):
                    measured = "down"
        faults.append(
            {
                "index": rec.index,
                "phase": rec.phase,
                "action": rec.action,
                "description": rec.description,
                "targets": rec.targets,
                "at": rec.at,
                "end": rec.end,
                "applied": not rec.error,
                "error": rec.error or None,
                "note": rec.note or None,
                "detect": det.detect,
                "detected_as": det.seen or None,
                "recover": det.recover,
                "rto": max((w["outage"] for w in windows), default=0.0),
                "errors": sum(w["errors"] for w in windows),
                "windows": windows,
                "element": rec.element,
                "predicted": rec.predicted,
                "measured": measured,
                "when": rec.when,
                "seen_at": rec.seen_at,
                "seen": rec.seen or None,
            }
        )
    streams: list[dict[str, Any]] = []
    for s in result.streams:
        outs = outcomes[s.name]
        lat = sorted(o.latency for o in outs)
        errors = sum(1 for o in outs if not o.ok)
        streams.append(
            {
                "name": s.name,
                "kind": "sql_writes" if isinstance(s, SqlStream) else "requests",
                "requests": len(outs),
                "errors": errors,
                "error_rate": round(errors / len(outs), 4) if outs else 0.0,
                "p50_latency": round(lat[len(lat) // 2], 4) if lat else None,
                "p99_latency": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 4)
                if lat
                else None,
                "max_latency": round(lat[-1], 4) if lat else None,
            }
        )
    data: dict[str, Any] | None = None
    if result.data is not None:
        v = result.data
        r = rpo(
            [result.acked_at[i] for i in v.lost if i in result.acked_at], [f.at for f in applied]
        )
        data = {
            "acknowledged": v.acknowledged,
            "uncertain": v.uncertain,
            "lost": len(v.lost),
            "lost_ids": v.lost[:100],
            "phantom": len(v.phantom),
            "divergent": v.divergent,
            "rpo_writes": r.lost_writes,
            "rpo_seconds": r.seconds,
            "ok": v.ok,
        }
    total = sum(s["requests"] for s in streams)
    errors = sum(s["errors"] for s in streams)
    detects = [f["detect"] for f in faults if f["detect"] is not None]
    recovers = [f["recover"] for f in faults if f["recover"] is not None]
    elements = [f for f in faults if f["element"] is not None]
    summary: dict[str, Any] = {
        "faults": sum(1 for f in faults if f["applied"]),
        "errors": errors,
        "error_rate": round(errors / total, 4) if total else 0.0,
        "rto": max((f["rto"] for f in faults), default=0.0),
        "detect": max(detects) if detects else None,
        "recover": max(recovers) if recovers else None,
        "lost_writes": data["lost"] if data else None,
        "uncertain_writes": data["uncertain"] if data else None,
        "phantom_writes": data["phantom"] if data else None,
        "divergent": len(data["divergent"]) if data else None,
        "rpo_writes": data["rpo_writes"] if data else None,
        "rpo_seconds": data["rpo_seconds"] if data else None,
        "aborted": 1 if result.aborted else 0,
        "unrecovered": 1 if result.recovered_in is None else 0,
        "mispredicted": sum(1 for f in elements if f["measured"] not in (None, f["predicted"])),
    }
    checked = [
        {"assertion": str(a), "holds": a.holds(summary), "actual": summary.get(a.metric)}
        for a in assertions
    ]
    ok = all(c["holds"] for c in checked) and not result.aborted
    return {
        "version": REPORT_VERSION,
        "topology": topology_name,
        "file": source,
        "plan": plan.kind,
        "seed": plan.seed,
        "started_at": result.started_at,
        "duration": result.duration,
        "ok": ok,
        "aborted": result.aborted or None,
        "summary": summary,
        "assertions": checked,
        "streams": streams,
        "faults": faults,
        "data": data,
        "data_note": result.data_note or None,
        "after": {
            "whole": result.recovered_in is not None,
            "recovered_in": result.recovered_in,
            "problems": result.after_problems,
        },
        "notes": [*result.taken_back, *plan.notes],
        "timeline": {name: timeline(outs) for name, outs in outcomes.items()},
        "events": [{"t": at, "event": e.key, "detail": e.detail} for at, e in result.events],
    }


def timeline(outcomes: Sequence[Outcome], bucket: float = 1.0) -> list[dict[str, Any]]:
    """Per `bucket` seconds (by when each request ended): `t` (its start), `requests`,
    `errors`, `p50_latency` and `max_latency` (of the successes; null without any)."""
    rows: dict[int, list[Outcome]] = {}
    for o in outcomes:
        rows.setdefault(int(o.end // bucket), []).append(o)
    out = []
    for k in range(max(rows, default=-1) + 1):
        outs = rows.get(k, [])
        lat = sorted(o.latency for o in outs if o.ok)
        out.append(
            {
                "t": round(k * bucket, 3),
                "requests": len(outs),
                "errors": sum(1 for o in outs if not o.ok),
                "p50_latency": round(lat[len(lat) // 2], 4) if lat else None,
                "max_latency": round(lat[-1], 4) if lat else None,
            }
        )
    return out


# -- renderers ---------------------------------------------------------------------------


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2) + "\n"


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def render_text(doc: dict[str, Any]) -> RenderableType:
    """The summary: one row per fault (per element for the analysis plan), then data,
    recovery and assertions."""
    head = Text(f"spofless drill · {doc['topology']} ({doc['plan']}", style="bold")
    if doc["seed"] is not None:
        head.append(f", seed {doc['seed']}")
    head.append(f") {doc['duration']:.1f}s")
    analysis = doc["plan"] == "analysis"
    table = Table(box=None, pad_edge=False, header_style="bold")
    cols = ["#", "ELEMENT" if analysis else "FAULT", "AT"]
    if analysis:
        cols += ["PREDICTED", "MEASURED"]
    cols += ["ERRORS", "OUTAGE", "DETECT", "RECOVER", "NOTE"]
    for c in cols:
        table.add_column(c, overflow="fold")
    for f in doc["faults"]:
        row: list[str | Text] = [
            str(f["index"]),
            f["element"] or f["description"] if analysis else f["description"],
            f"{f['at']:.1f}s",
        ]
        if analysis:
            agree = f["measured"] == f["predicted"]
            row += [
                f["predicted"] or "-",
                Text(f["measured"] or "-", style="green" if agree else "bold red"),
            ]
        note = f["error"] or f["note"] or (f"seen: {f['detected_as']}" if f["detected_as"] else "")
        if f.get("when"):
            on = f"on {f['when']} at {f['seen_at']:.1f}s ({f['seen']})"
            note = f"{on}; {note}" if note else on
        row += [
            str(f["errors"]),
            _s(f["rto"]) if f["applied"] else "-",
            _s(f["detect"]),
            _s(f["recover"]),
            note,
        ]
        table.add_row(*row)
    parts: list[RenderableType] = [head, table]
    streams = Table(box=None, pad_edge=False, header_style="bold")
    for c in ("STREAM", "REQUESTS", "ERRORS", "P50", "P99", "MAX"):
        streams.add_column(c)
    for s in doc["streams"]:
        streams.add_row(
            s["name"],
            str(s["requests"]),
            str(s["errors"]),
            _s(s["p50_latency"]),
            _s(s["p99_latency"]),
            _s(s["max_latency"]),
        )
    parts.append(streams)
    d = doc["data"]
    if d is not None:
        style = "green" if d["ok"] else "bold red"
        parts.append(
            Text(
                f"writes: {d['acknowledged']} acknowledged, {d['uncertain']} uncertain, "
                f"{d['lost']} lost, {d['phantom']} phantom, {len(d['divergent'])} divergent; "
                f"RPO {d['rpo_writes']} writes, {d['rpo_seconds']:.2f}s",
                style=style,
            )
        )
    elif doc["data_note"]:
        parts.append(Text(doc["data_note"], style="yellow"))
    after = doc["after"]
    if after["whole"]:
        parts.append(Text(f"full redundancy again {after['recovered_in']:.1f}s after", "green"))
    else:
        parts.append(Text("NOT whole again: " + "; ".join(after["problems"]), "bold red"))
    if doc["aborted"]:
        parts.append(Text(f"aborted: {doc['aborted']}", style="bold red"))
    s = doc["summary"]
    parts.append(
        Text(
            f"rto {_s(s['rto'])}  errors {s['errors']} ({s['error_rate']:.2%})  "
            f"detect {_s(s['detect'])}  recover {_s(s['recover'])}"
            + (f"  mispredicted {s['mispredicted']}" if analysis else "")
        )
    )
    for a in doc["assertions"]:
        mark = Text("✓ ", "green") if a["holds"] else Text("✗ ", "bold red")
        parts.append(mark + Text(f"{a['assertion']}  (actual {a['actual']})"))
    for note in doc["notes"]:
        parts.append(Text(note, style="dim"))
    return Group(*parts)


def render_junit(doc: dict[str, Any]) -> str:
    """One test case per fault (per element for the analysis plan) and per assertion."""
    suite = ET.Element(
        "testsuite",
        name=f"spofless drill {doc['topology']} {doc['plan']}",
        time=f"{doc['duration']:.3f}",
    )
    failures = skipped = 0
    for f in doc["faults"]:
        name = f["element"] or f"#{f['index']} {f['description']}"
        case = ET.SubElement(suite, "testcase", classname=f"drill.{doc['plan']}", name=name)
        case.set("time", f"{max((f['end'] or f['at']) - f['at'], 0.0):.3f}")
        if not f["applied"]:
            ET.SubElement(case, "skipped", message=str(f["error"]))
            skipped += 1
            continue
        problem = ""
        if f["predicted"] is not None and f["measured"] != f["predicted"]:
            problem = f"predicted {f['predicted']}, measured {f['measured']}"
        elif f["predicted"] is None and not all(w["recovered"] for w in f["windows"]):
            problem = "clients did not recover: " + ", ".join(
                w["stream"] for w in f["windows"] if not w["recovered"]
            )
        if problem:
            ET.SubElement(case, "failure", message=problem).text = problem
            failures += 1
        out = ET.SubElement(case, "system-out")
        out.text = (
            f"errors {f['errors']} outage {f['rto']}s detect {f['detect']} recover {f['recover']}"
        )
        if f.get("when"):
            out.text += f"; fired on {f['when']} seen at {f['seen_at']}s: {f['seen']}"
    for a in doc["assertions"]:
        case = ET.SubElement(suite, "testcase", classname="drill.assert", name=a["assertion"])
        if not a["holds"]:
            ET.SubElement(case, "failure", message=f"actual {a['actual']}")
            failures += 1
    if doc["aborted"]:
        case = ET.SubElement(suite, "testcase", classname="drill", name="completed")
        ET.SubElement(case, "failure", message=str(doc["aborted"]))
        failures += 1
    suite.set("tests", str(len(suite.findall("testcase"))))
    suite.set("failures", str(failures))
    suite.set("skipped", str(skipped))
    suite.set("errors", "0")
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"

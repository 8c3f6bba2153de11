"""The drill's reports from a made-up result: the json key contract, junit, html."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from spofless.drill.assertions import parse_assertion
from spofless.drill.html import CHART_ID, render_html
from spofless.drill.measure import InstanceView, Outcome, Snapshot
from spofless.drill.plans import Phase, Plan, fault
from spofless.drill.report import render_json, render_junit, report_document, timeline
from spofless.drill.runner import DrillResult, FaultRecord, PhaseRecord
from spofless.topology._drills import SteadyState, TrafficSpec


@dataclass
class FakeStream:
    name: str
    outs: list[Outcome] = field(default_factory=list)

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def outcomes(self) -> list[Outcome]:
        return self.outs


def result(analysis: bool = True) -> DrillResult:
    # 10 requests a second for 10 s; failing from 3.0 s to 6.0 s (past the undo at 5.95).
    outs = [Outcome(i / 10, i / 10 + 0.01, not 30 <= i < 60) for i in range(100)]
    spec = fault(at=1, pause="web/0", **{"for": 3})
    phase = Phase("instance:web/0", (spec,), 6.0, element="instance:web/0", predicted="down")
    plan = Plan(
        "analysis" if analysis else "scenario:x",
        (phase,),
        (TrafficSpec.model_validate({"http": {"via": "lb", "to": "lb"}, "rate": 10}),),
        SteadyState(),
        None,
    )
    rec = FaultRecord(
        0,
        phase.name,
        "pause web/0 for 3s",
        "pause",
        2.95,
        end=5.95,
        targets=["web/0"],
        element=phase.element if analysis else None,
        predicted=phase.predicted if analysis else None,
    )
    up = {"web/0": InstanceView("up", None, 7, 0)}
    snaps = [
        Snapshot(2.9, up, True),
        Snapshot(3.5, {"web/0": InstanceView("down", None, 7, 0)}, False),
        Snapshot(6.5, up, True),
    ]
    return DrillResult(
        plan,
        1_700_000_000.0,
        10.0,
        [FakeStream("http-0 GET via lb lb/", outs)],  # type: ignore[list-item]
        [rec],
        [PhaseRecord(phase, 0.0, 6.0, 0.5)],
        snaps,
        recovered_in=0.4,
    )


def test_the_json_document_and_its_figures() -> None:
    doc = report_document(result(), "t", "t.yaml", [parse_assertion("rto < 5s")])
    assert list(doc) == [
        "version", "topology", "file", "plan", "seed", "started_at", "duration", "ok",
        "aborted", "summary", "assertions", "streams", "faults", "data", "data_note",
        "after", "notes", "timeline", "events",
    ]  # fmt: skip
    (f,) = doc["faults"]
    assert f["errors"] == 30 and f["measured"] == "down" and f["predicted"] == "down"
    assert abs(f["rto"] - 3.1) < 0.02  # last success at 2.91, first after at 6.01
    assert abs(f["detect"] - 0.55) < 1e-6 and f["detected_as"] == "web/0 down"
    assert abs(f["recover"] - 0.55) < 1e-6
    s = doc["summary"]
    assert s["errors"] == 30 and s["mispredicted"] == 0 and s["lost_writes"] is None
    assert doc["assertions"] == [{"assertion": "rto < 5s", "holds": True, "actual": f["rto"]}]
    assert doc["ok"] is True and doc["after"]["whole"] is True
    assert json.loads(render_json(doc)) == json.loads(json.dumps(doc))
    (tl,) = doc["timeline"].values()
    assert len(tl) == 10 and tl[3] == {
        "t": 3.0, "requests": 10, "errors": 10, "p50_latency": None, "max_latency": None,
    }  # fmt: skip


def test_timeline_buckets_by_second() -> None:
    rows = timeline([Outcome(0.1, 0.3, True), Outcome(1.2, 2.4, False)])
    assert [(r["t"], r["requests"], r["errors"]) for r in rows] == [(0, 1, 0), (1, 0, 0), (2, 1, 1)]


def test_junit_has_a_case_per_element_and_per_assertion() -> None:
    doc = report_document(result(), "t", "t.yaml", [parse_assertion("errors == 0")])
    suite = ET.fromstring(render_junit(doc))
    assert suite.get("tests") == "2" and suite.get("failures") == "1"
    element, assertion = suite.findall("testcase")
    assert element.get("name") == "instance:web/0" and element.find("failure") is None
    assert assertion.find("failure") is not None
    # A mismatch between the analysis and the measured outcome fails the element.
    doc["faults"][0]["measured"] = "up"
    suite = ET.fromstring(render_junit(doc))
    assert suite.findall("testcase")[0].find("failure") is not None


def test_the_html_report_is_one_file_with_the_chart_and_the_tables() -> None:
    doc = report_document(result(), "t", "t.yaml", [])
    page = render_html(doc)
    assert page.startswith("<!DOCTYPE html>") and f'id="{CHART_ID}"' in page
    assert not re.search(r"<script[^>]+src=", page)  # plotly.js inlined: no network
    assert "Plotly.newPlot" in page or "plotly" in page.lower()
    assert '<table id="faults">' in page and "instance:web/0" in page
    assert '<p id="verdict" class="ok">' in page


def test_a_request_ending_as_the_drill_ends_counts_for_the_last_fault() -> None:
    r = result()
    # In flight when the traffic stopped: it ends just after the drill's clock was read.
    r.streams[0].outs.append(Outcome(9.0, r.duration + 0.0004, False))  # type: ignore[attr-defined]
    (f,) = report_document(r, "t", "t.yaml", [])["faults"]
    assert f["errors"] == 31


def test_a_fault_fired_on_an_event_says_which_and_when_it_was_seen() -> None:
    from spofless.drill.measure import Seen
    from spofless.drill.report import render_text

    res = result(analysis=False)
    rec = res.faults[0]
    rec.when, rec.seen_at, rec.seen = "db.replica_lag > 1MB", 2.9, "db/2 lags 1.5 MB"
    res.events.append((2.9, Seen("db.replica_lag>1048576", "db/2 lags 1.5 MB")))
    doc = report_document(res, "t", "t.yaml", [])
    (f,) = doc["faults"]
    assert (f["when"], f["seen_at"], f["seen"]) == ("db.replica_lag > 1MB", 2.9, "db/2 lags 1.5 MB")
    assert doc["events"] == [
        {"t": 2.9, "event": "db.replica_lag>1048576", "detail": "db/2 lags 1.5 MB"}
    ]
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(render_text(doc))
    assert "on db.replica_lag > 1MB at 2.9s (db/2 lags 1.5 MB)" in console.export_text()
    assert "fired on db.replica_lag &gt; 1MB seen at 2.9s" in render_junit(doc)

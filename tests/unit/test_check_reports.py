"""`spofless check`: exit codes, the JSON contract, SARIF, Markdown and text reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from spofless.analysis import analyze, render
from spofless.cli import main
from spofless.topology import load_topology

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def check(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["check", *args])
    return result.exit_code, result.output


def test_exit_0_without_spof() -> None:
    assert check(str(EXAMPLES / "demo.yaml"))[0] == 0


def test_exit_1_with_a_spof() -> None:
    assert check(str(EXAMPLES / "single-server.yaml"))[0] == 1


def test_exit_2_on_invalid_input(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncomponents: {}\n")
    assert check(str(bad))[0] == 2


def test_json_contract() -> None:
    code, out = check(str(EXAMPLES / "load-balanced.yaml"), "--format", "json")
    assert code == 1
    data = json.loads(out)
    for key in (
        "name",
        "ok",
        "availability",
        "downtime_minutes_per_year",
        "spofs",
        "cut_sets",
        "importance",
        "exact",
        "availability_error",
    ):
        assert key in data, key
    assert data["name"] == "load-balanced"
    assert data["ok"] is False
    assert data["exact"] is True
    assert data["availability_error"] == 0.0
    assert 0.99 < data["availability"] < 1
    assert data["downtime_minutes_per_year"] == pytest.approx(
        (1 - data["availability"]) * 365.25 * 24 * 60, rel=1e-6
    )
    for spof in data["spofs"]:
        assert {"element", "reason", "recommendation", "availability_if_fixed"} <= set(spof)
        assert spof["availability_if_fixed"] > data["availability"]
    cut_sets = data["cut_sets"]
    assert all(c == sorted(c) for c in cut_sets)
    assert cut_sets == sorted(cut_sets, key=lambda c: (len(c), c))
    assert [c[0] for c in cut_sets if len(c) == 1] == [s["element"] for s in data["spofs"]]
    scores = [i["birnbaum"] for i in data["importance"]]
    assert scores == sorted(scores, reverse=True)
    assert {"element", "birnbaum"} == set(data["importance"][0])


def test_max_order_limits_cut_sets() -> None:
    _, out = check(str(EXAMPLES / "three-zones.yaml"), "--format", "json", "--max-order", "3")
    sizes = {len(c) for c in json.loads(out)["cut_sets"]}
    assert sizes == {1, 2, 3}
    _, out = check(str(EXAMPLES / "three-zones.yaml"), "--format", "json", "--max-order", "1")
    assert {len(c) for c in json.loads(out)["cut_sets"]} == {1}


def test_sarif_structure() -> None:
    code, out = check(str(EXAMPLES / "single-server.yaml"), "--format", "sarif")
    assert code == 1
    sarif = json.loads(out)
    assert sarif["version"] == "2.1.0"
    assert sarif["$schema"].endswith("sarif-2.1.0.json")
    run = sarif["runs"][0]
    assert run["tool"]["driver"]["name"] == "spofless"
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    errors = [r for r in run["results"] if r["level"] == "error"]
    assert {r["ruleId"] for r in run["results"]} <= set(rule_ids)
    assert len(errors) == 4
    for result in errors:
        loc = result["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"].endswith("single-server.yaml")
        assert loc["region"]["startLine"] >= 1 and loc["region"]["startColumn"] >= 1
    # The database's SPOF points at the db component's line in the file.
    db = next(r for r in errors if r["locations"][0]["logicalLocations"][0]["name"] == "host:db-1")
    lines = (EXAMPLES / "single-server.yaml").read_text().splitlines()
    assert "db:" in lines[db["locations"][0]["physicalLocation"]["region"]["startLine"] - 1]


def test_markdown_report() -> None:
    code, out = check(str(EXAMPLES / "load-balanced.yaml"), "--format", "markdown")
    assert code == 1
    assert out.startswith("## spofless check: `load-balanced`")
    assert "**lb has a single instance**" in out
    assert "fails: `host:lb-1`, `instance:lb/0`" in out
    assert "After all fixes below: **99.9989%**" in out
    assert "### Components" in out


def test_markdown_cut_sets_are_grouped_and_cut_like_text() -> None:
    report = analyze(load_topology(EXAMPLES / "two-regions.yaml"))
    md = render(report, "markdown")
    text = render(report, "text")
    assert "- **etcd**: any 2 of its 3 instances (on eu-2, us-2, witness)" in md
    assert "• etcd: any 2 of its 3 instances (on eu-2, us-2, witness)" in text
    shown = [line for line in md.splitlines() if line.startswith("- **")]
    assert len(shown) == min(20, len(report.cut_set_lines))


def test_text_respects_the_width() -> None:
    for path in sorted(EXAMPLES.glob("*.yaml")):
        report = analyze(load_topology(path))
        for width in (60, 80):
            out = render(report, "text", width=width)
            assert max(len(line) for line in out.splitlines()) <= width, path
            assert not any(line.endswith(" ") for line in out.splitlines())


def test_warnings_are_in_every_report() -> None:
    report = analyze(load_topology(EXAMPLES / "stack-demo.yaml"))
    (problem,) = report.warnings
    warning = str(problem)
    assert "share address loopback" in warning
    assert "share address loopback" in render(report, "text", width=200)
    assert "share address loopback" in render(report, "markdown")
    assert json.loads(render(report, "json"))["warnings"] == [warning]
    sarif = json.loads(render(report, "sarif"))["runs"][0]
    (result,) = [r for r in sarif["results"] if r["ruleId"] == "SPOF003"]
    assert result["level"] == "warning"
    region = result["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (problem.line, problem.column)


def test_text_report_reads_at_a_glance() -> None:
    code, out = check(str(EXAMPLES / "single-server.yaml"))
    assert code == 1
    assert "✗ 4 single points of failure" in out
    assert "ERROR" in out and "nines" in out and "/year" in out
    assert "\x1b[" not in out  # no colour codes when not on a terminal


def test_render_colour_on_request() -> None:
    report = analyze(load_topology(EXAMPLES / "demo.yaml"))
    assert "\x1b[" in render(report, "text", color=True)
    assert "\x1b[" not in render(report, "text")


def test_the_documented_check_sample_is_the_real_output(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    root = EXAMPLES.parent
    page = (root / "docs" / "check.md").read_text()
    start = page.index("```text\nspofless check · load-balanced") + len("```text\n")
    shown = page[start : page.index("```", start)]
    monkeypatch.chdir(root)
    code, out = check("examples/load-balanced.yaml")
    assert code == 1
    assert out.startswith(shown)


def test_json_findings() -> None:
    code, out = check(str(EXAMPLES / "single-server.yaml"), "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert [f["title"] for f in data["findings"]] == [
        "web has a single instance",
        "db has a single instance",
    ]
    web = data["findings"][0]
    assert web["elements"] == ["host:app-1", "instance:web/0"]
    assert web["fix"] == ["add host web-2 (a machine of its own), with a second instance of web"]
    assert web["location"]["line"] == 7
    assert data["availability_after_fixes"] > web["availability_if_fixed"] > data["availability"]
    assert data["remaining_after_fixes"] == []

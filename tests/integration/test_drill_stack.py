"""`spofless drill` against stacks started with `spofless up`, for real.

- A topology with a deliberate single point of failure (one web instance behind two
  load balancers, `up --allow-spof`): the default plan freezes every instance and host
  alone under HTTP traffic; the elements the analysis names (web/0, its host h1) fail
  the drill as predicted, the others do not; the report and history say so.
- Ctrl-C during a pause: the paused process is resumed (never left stopped), exit 130;
  meanwhile a second drill of the same system is refused (exit 2), naming the first.
- Bad input and a system that is not up: exit 2, nothing broken.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from stack_fixtures import SPOFLESS, StackRun, free_port_block, spofless, stack_run
from waiting import wait_for

pytestmark = pytest.mark.integration

TOPOLOGY = """\
name: spofdrill
hosts:
  h1: {{}}
  h2: {{}}
components:
  lb:
    kind: load_balancer
    instances: [h1, h2]
    needs: [web]
    port: {lb}
    admin_port: {admin}
    routes: [{{to: web}}]
  web:
    kind: service
    instances: [h1]
    port: {web}
    run: python -m spofless.demo.app --host {{host}} --port {{port}} --name web-{{index}}
    health: {{type: http, path: /healthz}}
  dns:
    kind: dns
    instances: [h1, h2]
    needs: [lb]
    port: {dns}
    zone: t.example.
    records: {{www: lb}}
  cache: {{kind: cache, instances: [h2]}}   # described, not run
entry: [lb]
drills:
  via-dns:
    traffic:
      - {{http: {{via: dns, name: www, path: /}}, rate: 20}}
      - {{http: {{via: lb, to: lb, method: POST, path: /write, body: hello}}, rate: 10}}
    faults:
      - {{at: 1s, pause: dns/0, for: 2s}}
    duration: 4s
  not-run:
    faults:
      - {{at: 1s, kill: cache/0}}
  web-pause:
    faults:
      - {{at: 1s, pause: web/0, for: 60s}}
    duration: 90s
  web-blip:
    faults:
      - {{at: 1s, pause: web/0, for: 3s}}
    duration: 6s
    expect: {{errors: 0}}
  web-down-long:
    faults:
      - {{at: 1s, pause: web/0, for: 60s}}
    duration: 90s
    abort: {{error_rate: 0.5, for: 2s}}
  lab-cut:
    faults:
      - {{at: 1s, cut: host:h1, for: 2s}}
"""


@pytest.fixture
def spof_stack(tmp_path: Path) -> Iterator[StackRun]:
    web = free_port_block(1)
    lb = free_port_block(2, avoid=[web])
    admin = free_port_block(2, avoid=[web, lb, lb + 1])
    dns = free_port_block(2, avoid=[web, lb, lb + 1, admin, admin + 1])
    path = tmp_path / "spofdrill.yaml"
    path.write_text(TOPOLOGY.format(web=web, lb=lb, admin=admin, dns=dns))
    with stack_run(path, tmp_path / "state") as run:
        up = run.cli("up", "--detach", "--wait", "--allow-spof", "--timeout", "60")
        assert up.returncode == 0, up.stdout + up.stderr
        yield run


def drill(run: StackRun, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run.cli("drill", *args, timeout=timeout)


@pytest.mark.timeout(240)
def test_the_default_plan_shows_the_single_points_of_failure_failing_as_predicted(
    spof_stack: StackRun,
) -> None:
    run = spof_stack
    out = drill(run, "--hold", "3", "--format", "json", "--assert", "mispredicted == 0")
    assert out.returncode == 0, out.stdout + out.stderr
    doc = json.loads(out.stdout)
    assert doc["plan"] == "analysis" and doc["ok"] is True
    measured = {f["element"]: (f["predicted"], f["measured"]) for f in doc["faults"]}
    assert measured == {
        "instance:lb/0": ("up", "up"),
        "instance:lb/1": ("up", "up"),
        "instance:web/0": ("down", "down"),
        "host:h1": ("down", "down"),
        "host:h2": ("up", "up"),
        "instance:dns/0": ("up", "up"),  # no entry needs the DNS: not in the analysis
        "instance:dns/1": ("up", "up"),
    }
    assert "instance:cache/0: not run by this stack, not drilled" in doc["notes"]
    web = next(f for f in doc["faults"] if f["element"] == "instance:web/0")
    assert web["errors"] > 0 and web["rto"] >= 2.0  # down while frozen (3 s)
    assert web["detect"] is not None and web["detect"] < 10  # status saw it
    for f in doc["faults"]:
        if f["predicted"] == "up":
            assert f["errors"] == 0, f  # the other load balancer answered
    assert doc["after"]["whole"] is True
    assert doc["assertions"] == [{"assertion": "mispredicted == 0", "holds": True, "actual": 0}]
    # Every frozen process was thawed: nothing of the stack is stopped.
    for inst in run.status()["instances"]:
        assert inst["state"] == "up"
        assert psutil.Process(inst["pid"]).status() != psutil.STATUS_STOPPED

    hist = spofless("drill", "history", run.topology, "--state-dir", run.state_dir, "--json")
    assert hist.returncode == 0, hist.stderr
    (row,) = json.loads(hist.stdout)
    assert row["plan"] == "analysis" and row["ok"] == 1 and row["mispredicted"] == 0

    # A failing expectation: exit 1, and the junit report says which.
    out = drill(run, "-s", "web-blip", "--format", "junit")
    assert out.returncode == 1, out.stdout + out.stderr
    assert '<testcase classname="drill.assert" name="errors &lt;= 0"><failure' in out.stdout
    assert 'name="#0 pause web/0 for 3s"' in out.stdout
    # The html report: one file (test_the_html_report_opens_in_chromium opens one).
    page = run.topology.parent / "report.html"
    out = drill(run, "-s", "web-blip", "--format", "html", "--output", str(page))
    assert out.returncode == 1, out.stderr
    text = page.read_text()
    assert 'id="drill-timeline"' in text and "pause web/0 for 3s" in text


@pytest.mark.timeout(120)
def test_ctrl_c_during_a_pause_resumes_the_process(spof_stack: StackRun) -> None:
    run = spof_stack
    web = run.instance("web/0")
    proc = subprocess.Popen(
        [
            SPOFLESS,
            "drill",
            str(run.topology),
            "-s",
            "web-pause",
            "--format",
            "json",
            "--state-dir",
            str(run.state_dir),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(
            "web/0 paused by the drill",
            lambda: psutil.Process(web["pid"]).status() == psutil.STATUS_STOPPED,
            timeout=30,
        )
        # A second drill of the same system is refused, names the first, and leaves its
        # pause alone (it must not take back what the running drill holds).
        second = drill(run, "-s", "via-dns")
        assert second.returncode == 2, second.stdout + second.stderr
        assert f"another drill runs on this system: pid {proc.pid} on host" in second.stderr
        assert "(scenario:web-pause)" in second.stderr
        assert psutil.Process(web["pid"]).status() == psutil.STATUS_STOPPED
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        # Never leave the test's own process frozen, whatever happened.
        with pytest.raises(psutil.Error) if not psutil.pid_exists(web["pid"]) else _nothing():
            psutil.Process(web["pid"]).resume()
    assert proc.returncode == 130, stderr
    assert psutil.Process(web["pid"]).status() != psutil.STATUS_STOPPED
    doc = json.loads(stdout)
    assert doc["aborted"].startswith("interrupted")
    (fault,) = doc["faults"]
    assert fault["action"] == "pause" and fault["end"] is not None
    wait_for("web/0 up again", lambda: run.instance("web/0")["state"] == "up", timeout=30)


@pytest.mark.timeout(300)
def test_the_html_report_opens_in_chromium(tmp_path: Path) -> None:
    """The report of a made-up drill in headless Chromium: the chart is drawn (plotly's
    svg is in the DOM) and a screenshot is taken. Skipped without Debian's `chromium`."""
    from spofless.drill.html import render_html
    from spofless.drill.report import report_document
    from tests.unit.test_drill_report import result  # the unit tests' made-up drill

    page = tmp_path / "report.html"
    page.write_text(render_html(report_document(result(), "t", "t.yaml", [])))
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("no chromium to open the html report in (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=5000"]
    dom = subprocess.run(
        [browser, *flags, "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'class="main-svg"' in dom.stdout  # plotly drew the chart
    assert "instance" in dom.stdout or "pause web/0" in dom.stdout
    shot = page.with_suffix(".png")
    subprocess.run(
        [browser, *flags, f"--screenshot={shot}", "--window-size=1200,900", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    assert shot.stat().st_size > 10_000


@pytest.mark.timeout(120)
def test_an_aborted_drill_takes_its_fault_back(spof_stack: StackRun) -> None:
    run = spof_stack
    web = run.instance("web/0")
    started = time.monotonic()
    out = drill(run, "-s", "web-down-long", "--format", "json")
    assert out.returncode == 1, out.stdout + out.stderr
    assert time.monotonic() - started < 60  # not the 90 s planned
    doc = json.loads(out.stdout)
    assert doc["aborted"].startswith("abort: http-0") and doc["summary"]["aborted"] == 1
    (fault,) = doc["faults"]
    assert fault["end"] is not None and fault["end"] - fault["at"] < 30
    assert psutil.Process(web["pid"]).status() != psutil.STATUS_STOPPED
    assert doc["after"]["whole"] is True


@pytest.mark.timeout(120)
def test_a_drill_killed_outright_has_its_pause_taken_back_by_the_next(
    spof_stack: StackRun,
) -> None:
    run = spof_stack
    web = psutil.Process(run.instance("web/0")["pid"])
    argv = [SPOFLESS, "drill", str(run.topology), "-s", "web-pause", "--format", "json"]
    proc = subprocess.Popen(
        [*argv, "--state-dir", str(run.state_dir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for("web/0 paused", lambda: web.status() == psutil.STATUS_STOPPED, timeout=30)
        proc.kill()  # no finally runs: the pause stays, written in the journal
        proc.wait(10)
        time.sleep(0.5)
        assert web.status() == psutil.STATUS_STOPPED
        assert (run.state_dir / "drill-pending.json").exists()
        out = drill(run, "-s", "via-dns", "--format", "json")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        if web.is_running() and web.status() == psutil.STATUS_STOPPED:
            web.resume()
            pytest.fail("the next drill did not resume web/0")
    assert out.returncode == 0, out.stdout + out.stderr
    assert web.status() != psutil.STATUS_STOPPED
    assert not (run.state_dir / "drill-pending.json").exists()
    notes = json.loads(out.stdout)["notes"]
    assert any(n.startswith("resumed pids [") and str(web.pid) in n for n in notes), notes


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@pytest.mark.timeout(120)
def test_bad_input_and_a_system_not_up_exit_2_and_break_nothing(spof_stack: StackRun) -> None:
    run = spof_stack
    before = run.instance("web/0")
    out = drill(run, "-s", "nope")
    assert out.returncode == 2 and "no scenario 'nope'" in out.stderr
    out = drill(run, "-s", "lab-cut")
    assert out.returncode == 2 and "need the lab" in out.stderr
    out = drill(run, "-s", "not-run")
    assert out.returncode == 2 and "this stack does not run cache/0" in out.stderr
    # Traffic through the topology's DNS: a frozen DNS server is skipped by the client.
    out = drill(run, "-s", "via-dns", "--format", "json")
    assert out.returncode == 0, out.stdout + out.stderr
    dns_stream, post = json.loads(out.stdout)["streams"]
    assert dns_stream["name"].startswith("http-0 GET via dns") and dns_stream["requests"] > 20
    # The other DNS server answered (a busy machine may time one request out).
    assert dns_stream["errors"] <= dns_stream["requests"] / 10
    assert post["name"] == "http-1 POST via lb lb/write" and post["requests"] > 10
    out = drill(run, "--assert", "rto < soon")
    assert out.returncode == 2 and "METRIC OP VALUE" in out.stderr
    out = drill(run, "--assert", "speed < 5s")
    assert out.returncode == 2 and "unknown figure 'speed'" in out.stderr
    after = run.instance("web/0")
    assert (after["pid"], after["restarts"]) == (before["pid"], before["restarts"])
    wait_for("dns/0 up", lambda: run.instance("dns/0")["state"] == "up", timeout=20)
    # The steady state must hold: with web/0 frozen, the drill refuses and names it.
    psutil.Process(before["pid"]).suspend()
    try:
        wait_for("web/0 down", lambda: run.instance("web/0")["state"] == "down", timeout=20)
        out = drill(run, "-s", "web-pause")
        assert out.returncode == 2, out.stdout + out.stderr
        assert "steady state does not hold" in out.stderr and "web/0 is down" in out.stderr
    finally:
        psutil.Process(before["pid"]).resume()
    down = run.cli("down", timeout=60)
    assert down.returncode == 0
    out = drill(run)
    assert out.returncode == 2 and "nothing runs from" in out.stderr
    time.sleep(0)

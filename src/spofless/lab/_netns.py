"""Thin adapters over iproute2 and /proc: run `ip`/`tc`, find a namespace's processes.

iproute2 rather than pyroute2: one `ip -n <ns> -batch -` per namespace makes a whole
namespace's links in one process, and `ip netns exec` is how the stack runner starts
instances anyway; pyroute2 would add a dependency and a helper process per namespace.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from spofless.lab._errors import LabError, LabUnavailable

logger = logging.getLogger(__name__)

NETNS_DIR = Path("/run/netns")
COMMAND_TIMEOUT = 30.0  # seconds; one batch makes a few dozen links


def check_available() -> None:
    """Raise LabUnavailable unless this process can make network namespaces."""
    if os.geteuid() != 0:
        raise LabUnavailable("the lab needs root (network namespaces); run it as root")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            raise LabUnavailable(
                f"the lab needs the `{tool}` command (iproute2): run scripts/system-deps.sh"
            )
    if not Path("/proc/self/ns/net").exists():
        raise LabUnavailable("this kernel has no network namespaces (/proc/self/ns/net missing)")


def run(argv: Sequence[str], stdin: str | None = None, check: bool = True) -> str:
    """Run one command, return its stdout; LabError naming the command when it fails."""
    try:
        proc = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LabError(f"`{' '.join(argv)}` did not finish in {COMMAND_TIMEOUT:.0f} s") from None
    except FileNotFoundError:
        raise LabUnavailable(f"`{argv[0]}` not found: run scripts/system-deps.sh") from None
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        what = " ".join(argv) if stdin is None else f"{' '.join(argv)} <<{stdin.strip()!r}"
        raise LabError(f"`{what}` failed: {' / '.join(detail[-3:]) or proc.returncode}")
    return proc.stdout


def ip_batch(netns: str | None, commands: Iterable[str], tool: str = "ip") -> None:
    """Run `ip` (or `tc`) commands in one process, inside `netns` (None: this namespace)."""
    lines = [c for c in commands if c]
    if not lines:
        return
    argv = [tool, *(["-n", netns] if netns else []), "-batch", "-"]
    run(argv, stdin="\n".join(lines) + "\n")


def add_netns(name: str) -> None:
    try:
        run(["ip", "netns", "add", name])
    except LabUnavailable:
        raise
    except LabError as exc:
        if "File exists" in str(exc):
            raise LabError(f"network namespace {name} already exists") from None
        raise LabUnavailable(f"cannot create a network namespace: {exc}") from None


def delete_netns(name: str) -> bool:
    """Delete a named namespace; False when it was not there."""
    if not (NETNS_DIR / name).exists():
        return False
    run(["ip", "netns", "delete", name])
    return True


def netns_names(prefix: str = "") -> list[str]:
    """Named namespaces (those under /run/netns) starting with `prefix`."""
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(prefix))
    except FileNotFoundError:
        return []


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def exec_argv(netns: str, argv: Sequence[str]) -> list[str]:
    """`argv` run inside `netns`: `ip netns exec` execs it, so the pid stays the program's."""
    return ["ip", "netns", "exec", netns, *argv]


def _ns_id(path: str | Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_in_netns(netns: str) -> list[int]:
    """Processes whose network namespace is `netns` (by /proc/<pid>/ns/net identity)."""
    target = _ns_id(NETNS_DIR / netns)
    if target is None:
        return []
    me = os.getpid()
    out: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        if _ns_id(entry / "ns" / "net") == target and not _is_zombie(int(entry.name)):
            out.append(int(entry.name))
    return sorted(out)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def signal_pids(pids: Iterable[int], sig: int) -> list[int]:
    """Send `sig` to each pid; the pids it reached."""
    reached: list[int] = []
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            continue
        reached.append(pid)
    return reached


def stop_netns_processes(netns: str, grace: float) -> int:
    """SIGTERM every process in `netns`, SIGKILL those left after `grace` s; how many."""
    pids = signal_pids(pids_in_netns(netns), signal.SIGTERM)
    count = len(pids)
    # Stopped processes do not act on SIGTERM until continued.
    signal_pids(pids, signal.SIGCONT)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.05)
        pids = pids_in_netns(netns)
    if pids:
        logger.warning("netns %s: SIGKILL to %s after %.1f s", netns, pids, grace)
        signal_pids(pids, signal.SIGKILL)
        deadline = time.monotonic() + grace
        while pids_in_netns(netns) and time.monotonic() < deadline:
            time.sleep(0.05)
    return count


def cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


def netem_supported(netns: str) -> bool:
    """Whether the kernel has the netem qdisc (tried on a throwaway veth pair in `netns`)."""
    ip_batch(netns, ["link add sprobe0 type veth peer name sprobe1", "link set sprobe0 up"])
    try:
        run(["tc", "-n", netns, "qdisc", "add", "dev", "sprobe0", "root", "netem", "delay", "1ms"])
    except LabError as exc:
        logger.info("netns %s: no netem (%s); links use the user-space relay", netns, exc)
        return False
    finally:
        run(["ip", "-n", netns, "link", "del", "sprobe0"], check=False)
    return True

"""scripts/system-deps.sh never stops or changes a service it did not start.

With root and Debian's PostgreSQL, the script runs for real, apt-get included,
while a PostgreSQL cluster of the distribution (standing for the user's own
database) runs: the same postmaster must still answer afterwards. Then it runs
against stand-in `apt-get`, `systemctl` and `sudo` that log what they are
asked: a PostgreSQL service that "runs" must see no stop, restart or disable;
the packages' services are kept from starting by a policy-rc.d that exists
during the install only; an existing policy-rc.d is left as it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "system-deps.sh"
TOOLS = ("id", "chmod", "rm", "sh", "cat", "dirname", "mkdir", "touch", "grep")

APT_GET = """#!/bin/sh
echo "apt-get $*" >> "$LOG"
if echo " $* " | grep -q " install "; then
  if [ -x "$POLICY" ]; then "$POLICY" postgresql start; echo "policy says $?" >> "$LOG"
  else echo "no policy" >> "$LOG"; fi
  mkdir -p "$PG_LIB/16/bin" && touch "$PG_LIB/16/bin/postgres"
fi
"""
SYSTEMCTL = """#!/bin/sh
echo "systemctl $*" >> "$LOG"
exit 0
"""


def run(
    tmp_path: Path, *, with_policy: bool, missing_pg: bool = True, missing_redis: bool = False
) -> tuple[int, str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found, tool
        (bin_dir / tool).unlink(missing_ok=True)
        (bin_dir / tool).symlink_to(found)
    for name, text in (("apt-get", APT_GET), ("systemctl", SYSTEMCTL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_dir / "sudo").chmod(0o755)
    # etcd, etcdctl, ip, tc and chromium are present: only PostgreSQL and Redis may be missing.
    present_tools = ["etcd", "etcdctl", "ip", "tc", "chromium"]
    present_tools += [] if missing_redis else ["redis-server"]
    for present in present_tools:
        (bin_dir / present).write_text("#!/bin/sh\n")
        (bin_dir / present).chmod(0o755)
    pg_lib = tmp_path / "pg"
    if not missing_pg:
        (pg_lib / "15" / "bin").mkdir(parents=True, exist_ok=True)
        (pg_lib / "15" / "bin" / "postgres").touch()
    policy = tmp_path / "policy-rc.d"
    if with_policy:
        policy.write_text("#!/bin/sh\n# the admin's own\nexit 0\n")
        policy.chmod(0o755)
    log = tmp_path / "log"
    log.touch()
    env = {
        "PATH": str(bin_dir),
        "LOG": str(log),
        "POLICY": str(policy),
        "PG_LIB": str(pg_lib),
        "SYSTEM_DEPS_POLICY": str(policy),
        "SYSTEM_DEPS_PG_LIB": str(pg_lib),
        "HOME": str(tmp_path),
    }
    bash = shutil.which("bash")
    assert bash
    out = subprocess.run(
        [bash, str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    return out.returncode, out.stdout + out.stderr, log.read_text()


def test_services_are_kept_from_starting_during_the_install_only(tmp_path: Path) -> None:
    code, out, log = run(tmp_path, with_policy=False)
    assert code == 0, out
    assert "install -y -qq --no-install-recommends postgresql" in log
    # During the install, every start is refused (101); afterwards the file is gone.
    assert "policy says 101" in log
    assert not (tmp_path / "policy-rc.d").exists()
    # No service is stopped, restarted, disabled or masked: systemctl is never called.
    assert "systemctl" not in log
    assert "no running service was touched" in out


def test_a_missing_redis_is_installed_without_starting_it(tmp_path: Path) -> None:
    code, out, log = run(tmp_path, with_policy=False, missing_pg=False, missing_redis=True)
    assert code == 0, out
    assert "install -y -qq --no-install-recommends redis-server" in log
    assert "policy says 101" in log
    assert not (tmp_path / "policy-rc.d").exists()
    assert "systemctl" not in log


def test_an_existing_policy_is_left_as_it_is(tmp_path: Path) -> None:
    code, out, log = run(tmp_path, with_policy=True)
    assert code == 0, out
    assert "policy says 0" in log
    assert (tmp_path / "policy-rc.d").read_text() == "#!/bin/sh\n# the admin's own\nexit 0\n"
    assert "systemctl" not in log


def test_nothing_missing_touches_nothing(tmp_path: Path) -> None:
    # A user's PostgreSQL is installed (and, for all the script knows, running).
    code, out, log = run(tmp_path, with_policy=False, missing_pg=False)
    assert code == 0 and out == ""
    assert log == ""
    assert not (tmp_path / "policy-rc.d").exists()


def _postmaster_pid(data_dir: Path) -> int:
    return int((data_dir / "postmaster.pid").read_text().split()[0])


def _select_one(version: str, port: int) -> str:
    out = subprocess.run(
        ["runuser", "-u", "postgres", "--", f"/usr/lib/postgresql/{version}/bin/psql",
         "-p", str(port), "-h", "/var/run/postgresql", "-Atc", "select 1"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return out.stdout.strip() or out.stderr.strip()


def _missing_for_a_real_cluster() -> str | None:
    if os.geteuid() != 0:
        return "needs root: it makes and starts a PostgreSQL cluster of the distribution"
    for tool in ("apt-get", "pg_createcluster", "pg_ctlcluster", "pg_dropcluster", "runuser"):
        if not shutil.which(tool):
            return (
                f"needs {tool} (Debian's postgresql-common and apt) to stand for a user's database"
            )
    if not list(Path("/usr/lib/postgresql").glob("*/bin/postgres")):
        return "needs PostgreSQL from the distribution (/usr/lib/postgresql/*/bin/postgres)"
    return None


@pytest.mark.skipif(
    _missing_for_a_real_cluster() is not None, reason=str(_missing_for_a_real_cluster())
)
def test_a_running_postgresql_cluster_keeps_running(tmp_path: Path) -> None:
    """A user's own PostgreSQL, a cluster of the distribution (what its `postgresql`
    service runs), is running; the script goes down its install path for real (real
    apt-get, real policy-rc.d handling) and the same postmaster answers afterwards."""
    from free_ports import free_port

    version = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))[-1].parts[-3]
    name = f"spofless-sysdeps-{os.getpid()}"
    port = free_port()
    data_dir = Path(f"/var/lib/postgresql/{version}/{name}")
    subprocess.run(
        ["pg_createcluster", version, name, "-p", str(port)],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    try:
        subprocess.run(
            ["pg_ctlcluster", version, name, "start"], check=True, capture_output=True, timeout=120
        )
        pid = _postmaster_pid(data_dir)
        assert _select_one(version, port) == "1"
        # PostgreSQL looks missing to the script (an empty library directory), so it runs
        # apt-get update and apt-get install postgresql with its policy-rc.d handling.
        empty = tmp_path / "no-postgresql"
        empty.mkdir()
        out = subprocess.run(
            ["bash", str(SCRIPT)],
            env={**os.environ, "SYSTEM_DEPS_PG_LIB": str(empty)},
            capture_output=True, text=True, timeout=900, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stdout + out.stderr
        assert "installing postgresql" in out.stdout
        assert "no running service was touched" in out.stdout
        # The same postmaster still runs and answers: not stopped, not restarted.
        assert _postmaster_pid(data_dir) == pid
        os.kill(pid, 0)
        assert _select_one(version, port) == "1"
        status = subprocess.run(
            ["pg_lsclusters", "--no-header", version, name],
            capture_output=True, text=True, timeout=30, check=False,
        ).stdout  # fmt: skip
        assert "online" in status, status
    finally:
        subprocess.run(
            ["pg_dropcluster", "--stop", version, name], capture_output=True, timeout=120
        )

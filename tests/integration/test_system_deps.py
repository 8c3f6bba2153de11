"""scripts/system-deps.sh never stops or changes a service it did not start.

The script runs for real (bash) against stand-in `apt-get`, `systemctl` and
`sudo` that log what they are asked: a PostgreSQL service that "runs" must
see no stop, restart or disable; the packages' services are kept from
starting by a policy-rc.d that exists during the install only; an existing
policy-rc.d is left as it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "system-deps.sh"
TOOLS = ("id", "chmod", "rm", "sh", "cat", "dirname", "mkdir", "touch")

APT_GET = """#!/bin/sh
echo "apt-get $*" >> "$LOG"
if [ "$1" = install ]; then
  if [ -x "$POLICY" ]; then "$POLICY" postgresql start; echo "policy says $?" >> "$LOG"
  else echo "no policy" >> "$LOG"; fi
  mkdir -p "$PG_LIB/16/bin" && touch "$PG_LIB/16/bin/postgres"
fi
"""
SYSTEMCTL = """#!/bin/sh
echo "systemctl $*" >> "$LOG"
exit 0
"""


def run(tmp_path: Path, *, with_policy: bool, missing_pg: bool = True) -> tuple[int, str, str]:
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
    # etcd, etcdctl, ip and tc are present: only PostgreSQL may be missing.
    for present in ("etcd", "etcdctl", "ip", "tc"):
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
    assert "apt-get install -y -qq --no-install-recommends postgresql" in log
    # During the install, every start is refused (101); afterwards the file is gone.
    assert "policy says 101" in log
    assert not (tmp_path / "policy-rc.d").exists()
    # No service is stopped, restarted, disabled or masked: systemctl is never called.
    assert "systemctl" not in log
    assert "no running service was touched" in out


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


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("systemctl") or not Path("/run/systemd/system").is_dir(),
    reason="needs root and a running systemd to watch a real PostgreSQL service",
)
def test_a_running_postgresql_service_keeps_running() -> None:
    active = subprocess.run(
        ["systemctl", "is-active", "postgresql"], capture_output=True, text=True, check=False
    )
    if active.stdout.strip() != "active":
        pytest.skip("no running postgresql service on this machine")
    subprocess.run(["bash", str(SCRIPT)], check=True, timeout=900)
    after = subprocess.run(
        ["systemctl", "is-active", "postgresql"], capture_output=True, text=True, check=False
    )
    assert after.stdout.strip() == "active"

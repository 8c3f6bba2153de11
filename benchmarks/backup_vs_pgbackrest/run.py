"""Backup and restore throughput and repository size of `spofless backup` against pgBackRest.

Usage (from the repository root, as root, after `make .venv/.installed`):

    .venv/bin/python benchmarks/backup_vs_pgbackrest/run.py [--scale 70] [--process 2] [--level 3]

One PostgreSQL 15 holds a pgbench database (scale 70 is about 1.05 GB). Its
archive_command archives into both tools' repositories. Each tool then takes a
full backup into a filesystem repository with zstd at the same level and the
same process count, no encryption (`--runs` alternating full backups each, the
first of a pair swapping, medians), and restores into new directories (the copy
only, no WAL replay; `--runs` alternating restores each, medians).
Installs pgbackrest (Debian's 2.45) when missing.
Prints the figures and the ratios spofless / pgBackRest (throughput: higher is
better; size: lower is better). Everything it starts is stopped at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import resource
import shlex
import shutil
import signal
import site
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import spofless

BIN = Path("/usr/lib/postgresql/15/bin")


def pg_user() -> pwd.struct_passwd:
    return pwd.getpwnam("postgres")


def as_pg(argv: list[str], timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    pw = pg_user()
    out = subprocess.run(
        argv,
        cwd="/",
        capture_output=True,
        text=True,
        timeout=timeout,
        user=pw.pw_uid,
        group=pw.pw_gid,
        extra_groups=[],
    )
    if out.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed:\n{out.stdout}\n{out.stderr}")
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# CPU seconds (user + system) of the last `timed` command and everything it waited for:
# on a shared machine, wall times move by 2x with the other load; CPU time hardly.
CPU: list[float] = [0.0]


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(argv: list[str], pg: bool = False) -> float:
    cpu = _children_cpu()
    start = time.monotonic()
    if pg:
        as_pg(argv)
    else:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            raise SystemExit(f"{shlex.join(argv)} failed:\n{out.stdout}\n{out.stderr}")
    CPU[0] = _children_cpu() - cpu
    return time.monotonic() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=int, default=70)
    ap.add_argument("--process", type=int, default=2)
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--runs", type=int, default=3, help="restores per tool (medians)")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (PostgreSQL and pgBackRest run as the postgres user)")
    if shutil.which("pgbackrest") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "pgbackrest"], check=True)

    base = Path(tempfile.mkdtemp(prefix="spofless-bench-backup-"))
    pw = pg_user()
    os.chown(base, pw.pw_uid, pw.pw_gid)
    data, port = base / "data", free_port()
    try:
        # How the postgres user runs this spofless (the venv may sit under /root).
        system = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
        path = ":".join(
            [str(Path(spofless.__file__).resolve().parents[1]), *site.getsitepackages()]
        )
        command = ["env", f"PYTHONPATH={path}", system, "-m", "spofless"]
        topology = base / "bench.yaml"
        topology.write_text(
            f"name: bench\ncomponents:\n  db:\n    kind: postgres\n    instances: 1\n"
            f"    port: {port}\n    backup:\n"
            f"      repositories: [{{type: fs, path: {base}/spofless-repo}}]\n"
            f"      compression: {{type: zstd, level: {args.level}}}\n"
            f"      parallel: {args.process}\n      command: {json.dumps(command)}\nentry: [db]\n"
        )
        conf = base / "pgbackrest.conf"
        conf.write_text(
            f"[global]\nrepo1-path={base}/pgbackrest-repo\nlog-path={base}\nlock-path={base}\n"
            f"spool-path={base}\ncompress-type=zst\ncompress-level={args.level}\n"
            f"process-max={args.process}\nlog-level-console=warn\nstart-fast=y\n"
            f"[bench]\npg1-path={data}\npg1-port={port}\npg1-socket-path={base}\n"
        )
        for d in ("spofless-repo", "pgbackrest-repo"):
            (base / d).mkdir()
        for p in [*base.iterdir()]:
            os.chown(p, pw.pw_uid, pw.pw_gid)
        as_pg([str(BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust"])
        spofless_archive = shlex.join(
            [*command, "backup", "archive-wal", str(topology), "--component", "db"]
        )
        archive = (
            f"{spofless_archive} %p %f && pgbackrest --config={conf} --stanza=bench archive-push %p"
        )
        with (data / "postgresql.conf").open("a") as f:
            f.write("archive_mode = on\nmax_wal_size = 4GB\n")
            f.write("archive_command = '" + archive.replace("'", "''") + "'\n")
        as_pg(
            [
                str(BIN / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                f"-p {port} -k {base}",
                "-l",
                str(base / "pg.log"),
                "-w",
                "start",
            ]
        )
        as_pg(["pgbackrest", f"--config={conf}", "--stanza=bench", "stanza-create"])
        print(f"pgbench -i -s {args.scale} ...", flush=True)
        as_pg(
            [
                str(BIN / "pgbench"),
                "-i",
                "-q",
                "-s",
                str(args.scale),
                "-h",
                str(base),
                "-p",
                str(port),
                "-U",
                "postgres",
                "postgres",
            ]
        )
        as_pg(
            [
                str(BIN / "psql"),
                "-h",
                str(base),
                "-p",
                str(port),
                "-U",
                "postgres",
                "-c",
                "CHECKPOINT",
            ]
        )
        # Let the archiver catch up with pgbench's WAL first: both backups wait for
        # their last segment to be archived, and neither should pay for the backlog.
        psql = [str(BIN / "psql"), "-h", str(base), "-p", str(port), "-U", "postgres", "-Atc"]
        last = as_pg([*psql, "SELECT pg_walfile_name(pg_switch_wal())"]).stdout.strip()
        while (
            as_pg([*psql, "SELECT last_archived_wal FROM pg_stat_archiver"]).stdout.strip() < last
        ):
            time.sleep(1)
        size = du(data) - du(data / "pg_wal")

        results: dict[str, dict[str, float]] = {}
        # Full backups alternate too, `--runs` each, the first tool of a pair swapping
        # every time (the second one could find more of the data in the page cache).
        b_ours, b_theirs, b_ours_cpu, b_theirs_cpu = [], [], [], []
        ours_repo = theirs_repo = 0
        for n in range(args.runs):
            for tool in ("spofless", "pgbackrest") if n % 2 == 0 else ("pgbackrest", "spofless"):
                if tool == "spofless":
                    b_ours.append(
                        timed([sys.executable, "-m", "spofless", "backup", str(topology), "--full"])
                    )
                    b_ours_cpu.append(CPU[0])
                    ours_repo = ours_repo or du(base / "spofless-repo" / "db" / "backup")
                else:
                    b_theirs.append(
                        timed(
                            [
                                "pgbackrest",
                                f"--config={conf}",
                                "--stanza=bench",
                                "--type=full",
                                "backup",
                            ],
                            pg=True,
                        )
                    )
                    b_theirs_cpu.append(CPU[0])
                    theirs_repo = theirs_repo or du(base / "pgbackrest-repo" / "backup")
        t_ours, t_theirs = statistics.median(b_ours), statistics.median(b_theirs)
        print(
            "backup runs: spofless",
            [f"{x:.1f}" for x in b_ours],
            "pgBackRest",
            [f"{x:.1f}" for x in b_theirs],
        )
        c_ours, c_theirs = statistics.median(b_ours_cpu), statistics.median(b_theirs_cpu)
        print(
            "backup CPU s (user + system): spofless",
            [f"{x:.2f}" for x in b_ours_cpu],
            "pgBackRest",
            [f"{x:.2f}" for x in b_theirs_cpu],
            f"medians {c_ours:.2f} / {c_theirs:.2f}: spofless uses {c_ours / c_theirs:.2f}x",
        )
        # Restores alternate, `--runs` times each, into fresh directories; medians count
        # (the machine is shared, single runs move by 2x).
        ours, theirs = [], []
        ours_cpu, theirs_cpu = [], []
        for n in range(args.runs):
            dest = base / f"r-spofless-{n}"
            ours.append(
                timed(
                    [
                        sys.executable,
                        "-m",
                        "spofless",
                        "restore",
                        str(topology),
                        "--target",
                        "immediate",
                        "--to",
                        str(dest),
                        "--no-archive",
                    ]
                )
            )
            ours_cpu.append(CPU[0])
            shutil.rmtree(dest)
            dest = base / f"r-pgbackrest-{n}"
            dest.mkdir(mode=0o700)
            os.chown(dest, pw.pw_uid, pw.pw_gid)
            theirs.append(
                timed(
                    [
                        "pgbackrest",
                        f"--config={conf}",
                        "--stanza=bench",
                        f"--pg1-path={dest}",
                        "--type=immediate",
                        "restore",
                    ],
                    pg=True,
                )
            )
            theirs_cpu.append(CPU[0])
            shutil.rmtree(dest)
        r_ours, r_theirs = statistics.median(ours), statistics.median(theirs)
        print(
            "restore runs: spofless",
            [f"{x:.1f}" for x in ours],
            "pgBackRest",
            [f"{x:.1f}" for x in theirs],
        )
        c_ours, c_theirs = statistics.median(ours_cpu), statistics.median(theirs_cpu)
        print(
            "restore CPU s (user + system): spofless",
            [f"{x:.2f}" for x in ours_cpu],
            "pgBackRest",
            [f"{x:.2f}" for x in theirs_cpu],
            f"medians {c_ours:.2f} / {c_theirs:.2f}: spofless uses {c_ours / c_theirs:.2f}x",
        )
        results["spofless"] = {"backup": t_ours, "restore": r_ours, "repo": ours_repo}
        results["pgbackrest"] = {"backup": t_theirs, "restore": r_theirs, "repo": theirs_repo}
        mb = size / 1e6
        print(
            f"data directory {mb:.0f} MB (without pg_wal); zstd level {args.level}, "
            f"{args.process} processes, no encryption, fs repositories"
        )
        print(
            f"{'tool':<11} {'backup s':>9} {'MB/s':>7} {'restore s':>10} {'MB/s':>7} {'repo MB':>8}"
        )
        for tool, r in results.items():
            print(
                f"{tool:<11} {r['backup']:>9.1f} {mb / r['backup']:>7.1f} {r['restore']:>10.1f} "
                f"{mb / r['restore']:>7.1f} {r['repo'] / 1e6:>8.1f}"
            )
        o, t = results["spofless"], results["pgbackrest"]
        print(
            f"ratios spofless/pgBackRest: backup throughput {t['backup'] / o['backup']:.2f}x, "
            f"restore throughput {t['restore'] / o['restore']:.2f}x, "
            f"repository size {o['repo'] / t['repo']:.2f}x"
        )
    finally:
        pidfile = data / "postmaster.pid"
        pid = int(pidfile.read_text().split()[0]) if pidfile.exists() else None
        subprocess.run(
            [str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
            cwd="/",
            capture_output=True,
            user=pw.pw_uid,
            group=pw.pw_gid,
            extra_groups=[],
            timeout=60,
        )
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Finding the PostgreSQL binaries (the distribution's, 15 or newer)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from spofless.pg._errors import PgSetupError

MINIMUM_MAJOR = 15
DISTRIBUTION_ROOT = Path("/usr/lib/postgresql")
# Every tool the agent runs; a partial installation is an error naming what is missing.
TOOLS = ("postgres", "initdb", "pg_basebackup", "pg_rewind", "pg_controldata")


@dataclass(frozen=True, slots=True)
class PgBinaries:
    bin_dir: Path
    major: int

    def tool(self, name: str) -> str:
        return str(self.bin_dir / name)


def _major_of(postgres: Path) -> int:
    try:
        out = subprocess.run(
            [str(postgres), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise PgSetupError(f"cannot run {postgres} --version: {exc}") from exc
    m = re.search(r"\(PostgreSQL\) (\d+)", out)
    if not m:
        raise PgSetupError(
            f"{postgres} --version printed {out.strip()!r}, not a PostgreSQL version"
        )
    return int(m.group(1))


def find_binaries(bin_dir: Path | None = None, root: Path = DISTRIBUTION_ROOT) -> PgBinaries:
    """The newest PostgreSQL >= 15 under `root` (/usr/lib/postgresql/<ver>/bin), or `bin_dir`.

    Raises PgSetupError naming what is missing and how to install it.
    """
    if bin_dir is None:
        versions = (
            sorted((int(p.name) for p in root.glob("*") if p.name.isdigit()), reverse=True)
            if root.is_dir()
            else []
        )
        usable = [v for v in versions if v >= MINIMUM_MAJOR and (root / str(v) / "bin").is_dir()]
        if not usable:
            found = f" (found {', '.join(map(str, versions))})" if versions else ""
            raise PgSetupError(
                f"PostgreSQL {MINIMUM_MAJOR} or newer not found under {root}/<version>/bin"
                f"{found}; install it with `make system-deps` (scripts/system-deps.sh) "
                "or set the PostgreSQL bin_dir"
            )
        bin_dir = root / str(usable[0]) / "bin"
    missing = [t for t in TOOLS if not (bin_dir / t).is_file()]
    if missing:
        raise PgSetupError(
            f"{bin_dir} lacks {', '.join(missing)}; a complete PostgreSQL {MINIMUM_MAJOR}+ "
            "installation is needed (scripts/system-deps.sh installs it)"
        )
    major = _major_of(bin_dir / "postgres")
    if major < MINIMUM_MAJOR:
        raise PgSetupError(
            f"{bin_dir}/postgres is PostgreSQL {major}; spofless needs {MINIMUM_MAJOR} or newer"
        )
    return PgBinaries(bin_dir, major)

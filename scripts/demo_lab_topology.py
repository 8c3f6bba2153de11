"""The lab's copy of a demo topology for `make demo-lab`: python demo_lab_topology.py SRC DEST.

In the lab a load balancer's admin API listens on its host's lab address, off loopback,
where spofless requires a token: after the `admin_port:` line of each load balancer
that has no `admin_token`, a line with a random one is added; each monitor (its
dashboard and /status, off loopback too) gets a `token_file` beside DEST. Without a `lab:` section,
one is added at the end that puts regions 5 ms apart (the lab's default is 30 ms): the
demo's etcd and lease timings are those of one data centre, and on a loaded machine
30 ms between regions makes etcd's health checks (0.25 s) and lease renewals (0.5 s per
request) miss now and then, with or without TLS. Nothing else of SRC changes
(comments included). DEST is written 0600: it holds the tokens.
"""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from ruamel.yaml import YAML

LAB = """\
lab:  # added by make demo-lab: regions 5 ms apart (see scripts/demo_lab_topology.py)
  links:
    region: {latency_ms: 5}
"""


def main() -> int:
    if len(sys.argv) != 3:
        print("usage: demo_lab_topology.py SOURCE DEST", file=sys.stderr)
        return 2
    source, dest = Path(sys.argv[1]), Path(sys.argv[2])
    lines = source.read_text().splitlines(keepends=True)
    data = YAML().load("".join(lines))  # round trip: it knows where each key is written
    after: dict[int, str] = {}  # line index (0-based) -> the line to add after it
    for name, comp in data["components"].items():
        if comp.get("kind") == "load_balancer" and "admin_port" in comp:
            if comp.get("admin_token"):
                continue
            key, added = "admin_port", f"admin_token: {secrets.token_urlsafe(24)}"
        elif comp.get("kind") == "monitor" and "port" in comp:
            # A monitor's API (dashboard, /status) off loopback needs a token too, from a
            # file (never in the topology): one beside DEST, 0600.
            if comp.get("token_file") or comp.get("token_env"):
                continue
            token = dest.with_name(f"{name}.token")
            _write_private(token, secrets.token_urlsafe(24) + "\n")
            key, added = "port", f"token_file: {token.resolve()}"
        else:
            continue
        line, col = comp.lc.key(key)
        if lines[line].lstrip().startswith(f"{key}:"):  # block style: a line of its own
            after[line] = " " * col + added + "\n"
        else:
            print(f"{source}:{line + 1}: write {key} on a line of its own", file=sys.stderr)
            return 2
    out = [text for i, line in enumerate(lines) for text in (line, after.get(i, "")) if text]
    if "lab" not in data:
        out.append(LAB)
    _write_private(dest, "".join(out))
    return 0


def _write_private(path: Path, text: str) -> None:
    """`text` into `path`, 0600 from the start, replaced atomically."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())

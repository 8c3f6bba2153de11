"""The lab's copy of a demo topology for `make demo-lab`: python demo_lab_topology.py SRC DEST.

In the lab a load balancer's admin API listens on its host's lab address, off loopback,
where spofless requires a token: after the `admin_port:` line of each load balancer
that has no `admin_token`, a line with a random one is added. Without a `lab:` section,
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
    for comp in data["components"].values():
        if comp.get("kind") != "load_balancer" or "admin_port" not in comp:
            continue
        if comp.get("admin_token"):
            continue
        line, col = comp.lc.key("admin_port")
        if lines[line].lstrip().startswith("admin_port:"):  # block style: a line of its own
            after[line] = " " * col + f"admin_token: {secrets.token_urlsafe(24)}\n"
        else:
            print(f"{source}:{line + 1}: write admin_port on a line of its own", file=sys.stderr)
            return 2
    out = [text for i, line in enumerate(lines) for text in (line, after.get(i, "")) if text]
    if "lab" not in data:
        out.append(LAB)
    tmp = dest.with_name(dest.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(out))
    tmp.replace(dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())

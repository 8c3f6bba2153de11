# Shell helpers the demos share (sourced by scripts/demo.sh and scripts/demo_lab.sh).
# They read `spofless status --json` of $FILE with $SPOFLESS and $PY, set by the caller.

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# field COMPONENT INDEX KEY...: the keys of one instance in `status --json`, space-separated.
field() {
  $SPOFLESS status "$FILE" --json | $PY -c '
import json, sys
c, i, keys = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
for inst in json.load(sys.stdin)["instances"]:
    if inst["component"] == c and inst["index"] == i:
        print(*(inst[k] for k in keys))' "$@"
}

# primary KEYS...: the keys of the PostgreSQL primary in `status --json` ("" when none).
primary() { primary_of db "$@"; }

# primary_of COMPONENT KEYS...: the keys of COMPONENT's primary (a PostgreSQL cluster or a
# cache shard) in `status --json` ("" when none).
primary_of() {
  $SPOFLESS status "$FILE" --json | $PY -c '
import json, sys
for inst in json.load(sys.stdin)["instances"]:
    if inst["component"] == sys.argv[1] and inst["role"] == "primary":
        print(*(inst[k] for k in sys.argv[2:]))' "$@"
}

# role_of NAME: the role of instance NAME (db/0) in `status --json`.
role_of() {
  $SPOFLESS status "$FILE" --json | $PY -c '
import json, sys
print(next(i["role"] for i in json.load(sys.stdin)["instances"] if i["name"] == sys.argv[1]))' "$1"
}

# whole: true when the system is back to full redundancy (every instance up, one primary
# and its replicas per database and cache shard, an etcd leader): a drill's steady state.
whole() {
  $SPOFLESS status "$FILE" --json | $PY -c '
import json, sys
from spofless.drill.system import redundancy_problems
from spofless.topology import load_topology
docs = json.load(sys.stdin)["instances"]
sys.exit(1 if redundancy_problems(docs, load_topology(sys.argv[1])) else 0)' "$FILE"
}

# until_ok SECONDS COMMAND: run COMMAND (in this shell) until it succeeds; 1 after SECONDS.
until_ok() {
  local end=$((SECONDS + $1))
  until eval "$2"; do
    if ((SECONDS >= end)); then return 1; fi
    sleep 0.2
  done
}

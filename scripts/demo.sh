#!/usr/bin/env bash
# `make demo`: check the demo topology, run it, break it on purpose, watch it recover.
# Everything it starts is stopped on exit, also on Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
SPOFLESS=.venv/bin/spofless
PY=.venv/bin/python
FILE=${1:-examples/demo.yaml}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "1. Check: single points of failure, cut sets, availability"
$SPOFLESS check "$FILE"

step "2. Run it on this machine (every host of the file on 127.0.0.1)"
trap '$SPOFLESS down "$FILE" >/dev/null 2>&1 || true' EXIT
$SPOFLESS up "$FILE" --detach --wait --timeout 120
$SPOFLESS status "$FILE"

step "3. Break it on purpose: kill -9 one web instance"
pid=$($SPOFLESS status "$FILE" --json | $PY -c '
import json, sys
for i in json.load(sys.stdin)["instances"]:
    if i["component"] == "web" and i["index"] == 0:
        print(i["pid"])')
echo "kill -9 web/0 (pid $pid)"
kill -9 "$pid"
for _ in $(seq 1 100); do
  state=$($SPOFLESS status "$FILE" --json | $PY -c '
import json, sys
for i in json.load(sys.stdin)["instances"]:
    if i["component"] == "web" and i["index"] == 0:
        print(i["state"], i["pid"])')
  if [[ $state == up* && $state != "up $pid" ]]; then break; fi
  sleep 0.1
done
$SPOFLESS status "$FILE"

step "4. Stop everything"
$SPOFLESS down "$FILE"
trap - EXIT

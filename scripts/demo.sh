#!/usr/bin/env bash
# `make demo`: check the demo topology, run it, break it on purpose under load,
# watch it recover, stop it. Everything it starts is stopped on exit, also on
# Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
SPOFLESS=.venv/bin/spofless
PY=.venv/bin/python
FILE=${1:-examples/demo.yaml}
traffic=

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

cleanup() {
  if [[ -n $traffic ]]; then kill "$traffic" 2>/dev/null || true; fi
  $SPOFLESS down "$FILE" >/dev/null 2>&1 || true
}

step "1. Check: single points of failure, cut sets, availability"
$SPOFLESS check "$FILE"

step "2. Run it on this machine (every host of the file on 127.0.0.1)"
trap cleanup EXIT
$SPOFLESS up "$FILE" --detach --wait --timeout 120
$SPOFLESS status "$FILE"

step "3. Ask the health-checked DNS where the service is"
$PY - "$(field dns 0 address)" <<'PYTHON'
import sys, dns.message, dns.query
host, port = sys.argv[1].rsplit(":", 1)
answer = dns.query.udp(dns.message.make_query("www.demo.example.", "A"), host, timeout=2, port=int(port)).answer
addresses = sorted({rr.address for rrset in answer for rr in rrset})
print(f"dns/0 ({sys.argv[1]}): www.demo.example. A {' '.join(addresses)}, ttl {answer[0].ttl}s")
print("(the load balancers that pass their health checks; all on 127.0.0.1 here)")
PYTHON

step "4. Break it on purpose: kill -9 a web instance while clients use the system"
lb=$(field lb 0 address)
pid=$(field web 0 pid)
echo "300 requests through load balancer lb/0 ($lb), one every 10 ms;"
echo "after 1 s: kill -9 web/0 (pid $pid)"
$PY scripts/demo_traffic.py "$lb" --requests 300 --interval 0.01 --deadline 30 &
traffic=$!
sleep 1
kill -9 "$pid"
traffic_ok=1
wait "$traffic" || traffic_ok=0
traffic=

step "5. Watch it recover: the supervisor restarts web/0"
for _ in $(seq 1 100); do
  state=$(field web 0 state pid)
  if [[ $state == up* && $state != "up $pid" ]]; then break; fi
  sleep 0.1
done
$SPOFLESS status "$FILE"

step "6. Stop everything"
$SPOFLESS down "$FILE"
trap - EXIT
if [[ $traffic_ok == 0 ]]; then
  echo "some requests failed while web/0 was down: that is a bug, please report it" >&2
  exit 1
fi

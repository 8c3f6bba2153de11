#!/usr/bin/env bash
# `make demo-lab` (root): the demo topology in the lab, every host of the file its own
# network namespace with its own address, zones and regions joined by links with
# latency; PostgreSQL and etcd over TLS between hosts, as on several machines. Checks
# it, runs it, asks the DNS and sends traffic from a client inside the lab, kills a
# web instance and then the PostgreSQL primary's whole host under load, watches it
# recover, stops it and removes the lab. Everything it starts is stopped on exit,
# also on Ctrl-C or failure. `make demo` (scripts/demo.sh) is the one-machine demo.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $(id -u) != 0 ]]; then
  echo "make demo-lab makes a network namespace per host: run it as root (sudo make demo-lab);" >&2
  echo "make demo runs the same topology on this machine without root" >&2
  exit 2
fi
SPOFLESS=.venv/bin/spofless
PY=.venv/bin/python
SOURCE=${1:-examples/demo.yaml}
# The lab's copy of the demo topology, made afresh from SOURCE each run (see
# scripts/demo_lab_topology.py): its state, secrets and lab live beside it.
DIR=.spofless/demo-lab
FILE=$DIR/demo-lab.yaml
CLIENT=node-5  # where the lab's clients run: the host with only an etcd member
traffic=
writes=

source scripts/demo_lib.sh

# in_client COMMAND...: run COMMAND inside the client host's namespace.
in_client() { $SPOFLESS lab exec "$FILE" "$CLIENT" -- "$@"; }

# hosts_of COMPONENT: the hosts of its instances, one a line.
hosts_of() {
  $SPOFLESS status "$FILE" --json | $PY -c '
import json, sys
for inst in json.load(sys.stdin)["instances"]:
    if inst["component"] == sys.argv[1]:
        print(inst["host"])' "$1"
}

cleanup() {
  if [[ -n $traffic ]]; then kill "$traffic" 2>/dev/null || true; fi
  if [[ -n $writes ]]; then kill "$writes" 2>/dev/null || true; fi
  $SPOFLESS down "$FILE" >/dev/null 2>&1 || true # stops everything, removes the lab
}

mkdir -p "$DIR"
$PY scripts/demo_lab_topology.py "$SOURCE" "$FILE"

step "1. Check: single points of failure, cut sets, availability"
$SPOFLESS check "$FILE"

step "2. Run it in the lab: every host a network namespace with its own address"
trap cleanup EXIT
$SPOFLESS up "$FILE" --lab --detach --wait --timeout 240
$SPOFLESS status "$FILE"
echo "etcd serves https only and requires a client certificate from the topology's CA;"
echo "PostgreSQL requires scram-sha-256 over TLS from other hosts (secrets in $DIR/.spofless)"

step "3. Ask the health-checked DNS where the service is, from $CLIENT"
in_client $PY - "$(field dns 0 address)" <<'PYTHON'
import sys, dns.message, dns.query
host, port = sys.argv[1].rsplit(":", 1)
answer = dns.query.udp(dns.message.make_query("www.demo.example.", "A"), host, timeout=2, port=int(port)).answer
addresses = sorted({rr.address for rrset in answer for rr in rrset})
print(f"dns/0 ({sys.argv[1]}): www.demo.example. A {' '.join(addresses)}, ttl {answer[0].ttl}s")
print("(the lab addresses of the load balancers that pass their health checks)")
PYTHON

step "4. Break it on purpose: kill -9 a web instance while a client in the lab uses it"
lb=$(field lb 0 address)
read -r pid web_host <<<"$(field web 0 pid host)"
echo "300 requests from $CLIENT through load balancer lb/0 ($lb), one every 10 ms;"
echo "after 1 s: kill -9 web/0 (pid $pid, on $web_host)"
in_client $PY scripts/demo_traffic.py "$lb" --requests 300 --interval 0.01 --deadline 30 &
traffic=$!
sleep 1
kill -9 "$pid"
traffic_ok=1
wait "$traffic" || traffic_ok=0
traffic=

step "5. Watch it recover: the supervisor restarts web/0"
until_ok 30 'state=$(field web 0 state pid); [[ $state == up* && $state != "up $pid" ]]' || true
$SPOFLESS status "$FILE"

step "6. Crash the PostgreSQL primary's host while a client in the lab writes"
until_ok 120 'read -r old host <<<"$(primary name host)"; [[ -n $old ]]' ||
  { echo "no PostgreSQL primary after 120 s; see \`spofless logs $FILE db\`" >&2; exit 1; }
# PostgreSQL accepts connections only from the hosts of what needs it (web's hosts):
# the writer runs on one that is not the primary's.
writer=$(hosts_of web | grep -vx "$host" | head -n 1)
echo "a libpq client on $writer (target_session_attrs=read-write, scram over TLS) inserts a"
echo "row every 15 ms for 15 s; after 1 s of writes: kill -9 of every process on $host ($old's host)"
ready=$(mktemp -u)
$SPOFLESS lab exec "$FILE" "$writer" -- $PY scripts/demo_writes.py "$FILE" --seconds 15 --ready "$ready" &
writes=$!
until_ok 30 '[[ -e $ready ]]'
rm -f "$ready"
$SPOFLESS lab fault "$FILE" kill "$host"
writes_ok=1
wait "$writes" || writes_ok=0
writes=

step "7. Watch it recover: a replica was promoted; the supervisor restarts $host's instances"
until_ok 30 'now=$(primary name); [[ -n $now && $now != "$old" ]]'
echo "new primary: $now; $old rejoins as its replica (pg_rewind) once its agent is back"
until_ok 60 '[[ $(role_of "$old") == replica ]]' || true
$SPOFLESS status "$FILE"

step "8. Stop everything and remove the lab"
$SPOFLESS down "$FILE"
trap - EXIT
if [[ $traffic_ok == 0 ]]; then
  echo "some requests failed while web/0 was down: that is a bug, please report it" >&2
  exit 1
fi
if [[ $writes_ok == 0 ]]; then
  echo "acknowledged writes were lost in the failover: that is a bug, please report it" >&2
  exit 1
fi

#!/usr/bin/env bash
# `make demo`: check the demo topology, run it, break it on purpose under load,
# watch it recover, back the database up, stop it. Everything it starts is stopped on exit, also on
# Ctrl-C or failure.
set -euo pipefail
cd "$(dirname "$0")/.."
SPOFLESS=.venv/bin/spofless
PY=.venv/bin/python
FILE=${1:-examples/demo.yaml}
traffic=
writes=
cache=

source scripts/demo_lib.sh

cleanup() {
  if [[ -n $traffic ]]; then kill "$traffic" 2>/dev/null || true; fi
  if [[ -n $writes ]]; then kill "$writes" 2>/dev/null || true; fi
  if [[ -n $cache ]]; then kill "$cache" 2>/dev/null || true; fi
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

step "5. Watch it recover: the supervisor restarts web/0; the monitors saw it"
until_ok 20 'state=$(field web 0 state pid); [[ $state == up* && $state != "up $pid" ]]' || true
$SPOFLESS status "$FILE"
echo "what the two monitors recorded (live dashboard: http://$(field monitor 0 address)/):"
$SPOFLESS events "$FILE" 2>/dev/null | grep -E "down|alert|resolved|restart" | tail -6 || true

step "6. Break the database: kill -9 the PostgreSQL primary's node while a client writes"
until_ok 60 'read -r old agent postmaster <<<"$(primary name agent_pid pid)"; [[ -n $old ]]' ||
  { echo "no PostgreSQL primary after 60 s; see \`spofless logs $FILE db\`" >&2; exit 1; }
echo "a libpq client (target_session_attrs=read-write) inserts a row every 15 ms for 12 s;"
echo "after 1 s of writes: kill -9 $old's agent (pid $agent) and PostgreSQL (postmaster pid $postmaster)"
ready=$(mktemp -u)
$PY scripts/demo_writes.py "$FILE" --seconds 12 --ready "$ready" &
writes=$!
until_ok 60 '[[ -e $ready ]]' || { echo "the writer did not start writing within 60 s" >&2; exit 1; }
rm -f "$ready"
kill -9 "$agent" "$postmaster"
writes_ok=1
wait "$writes" || writes_ok=0
writes=

step "7. Watch it recover: a replica was promoted; the supervisor restarts $old's agent"
until_ok 60 'now=$(primary name); [[ -n $now && $now != "$old" ]]' ||
  { echo "no new PostgreSQL primary within 60 s; see \`spofless logs $FILE db\`" >&2; exit 1; }
echo "new primary: $now; $old rejoins as its replica (pg_rewind) once its agent is back"
until_ok 20 '[[ $(role_of "$old") == replica ]]' || true
$SPOFLESS status "$FILE"

step "8. Break the cache: kill -9 a cache shard's primary while clients use the app"
until_ok 60 'read -r cold cagent credis <<<"$(primary_of cache-a name agent_pid pid)"; [[ -n $cold ]]' ||
  { echo "no primary of cache shard cache-a after 60 s; see \`spofless logs $FILE cache-a\`" >&2; exit 1; }
echo "through lb/0: 200 records written (the app writes each to PostgreSQL, then through to the"
echo "cache: SET + WAIT 1), then 12 s of writes and cached reads, one every 10 ms;"
echo "after 1 s: kill -9 $cold's agent (pid $cagent) and Redis (pid $credis), the primary of shard cache-a"
ready=$(mktemp -u)
$PY scripts/demo_cache.py "$lb" --records 200 --seconds 12 --ready "$ready" &
cache=$!
until_ok 90 '[[ -e $ready ]]' || { echo "the client did not write its records within 90 s" >&2; exit 1; }
rm -f "$ready"
sleep 1
kill -9 "$cagent" "$credis"
cache_ok=1
wait "$cache" || cache_ok=0
cache=

step "9. Watch it recover: the replica was promoted; $cold comes back as its replica"
until_ok 20 'cnow=$(primary_of cache-a name); [[ -n $cnow && $cnow != "$cold" ]]' || true
echo "new primary of cache-a: ${cnow:-none yet}; $cold restarted by the supervisor, resyncs from it"
until_ok 30 '[[ $(role_of "$cold") == replica ]]' || true
$SPOFLESS status "$FILE"

step "10. Prove it again with a drill: kill -9 the new primary under HTTP and SQL traffic"
# A drill starts only from full redundancy: wait for it (cache-a's old primary resyncing).
until_ok 120 whole || echo "not back to full redundancy within 120 s: the drill says what is missing"
drill_ok=1
$SPOFLESS drill "$FILE" --scenario primary-crash || drill_ok=0

step "11. Back up the database (WAL archived all along; the base backup copies a replica)"
$SPOFLESS backup "$FILE" --full 2>/dev/null
$SPOFLESS backup list "$FILE"

step "12. Change it without an outage: roll the web tier to a new version under traffic"
echo "web/0..3 replaced one at a time: each drained on every load balancer until its open"
echo "requests finish, restarted with the new command, readmitted once healthy; 2500 requests meanwhile"
$PY scripts/demo_traffic.py "$lb" --requests 2500 --interval 0.01 --deadline 90 &
traffic=$!
$SPOFLESS rollout "$FILE" --component web --run \
  "python -m spofless.demo.app --host {host} --port {port} --name web-{index}-v2 --db db --cache cache"
rollout_ok=1
wait "$traffic" || rollout_ok=0
traffic=

step "13. Stop everything"
$SPOFLESS down "$FILE"
trap - EXIT
if [[ $traffic_ok == 0 ]]; then
  echo "some requests failed while web/0 was down: that is a bug, please report it" >&2
  exit 1
fi
if [[ $drill_ok == 0 ]]; then
  echo "the drill's expectations were not met (see its report above): that is a bug, please report it" >&2
  exit 1
fi
if [[ $rollout_ok == 0 ]]; then
  echo "some requests failed during the rollout: that is a bug, please report it" >&2
  exit 1
fi
if [[ $writes_ok == 0 ]]; then
  echo "acknowledged writes were lost in the failover: that is a bug, please report it" >&2
  exit 1
fi
if [[ $cache_ok == 0 ]]; then
  echo "requests failed or cached keys were lost in the cache failover: that is a bug, please report it" >&2
  exit 1
fi

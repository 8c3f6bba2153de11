#!/usr/bin/env bash
# Install the distribution packages spofless runs, only those that are missing.
# Debian/Ubuntu (apt-get). Prints what it installs; does nothing when all are present.
#
# It never stops, restarts, disables or reconfigures a service: a PostgreSQL, etcd or Redis
# already on this machine (perhaps your own database) is left exactly as it is, and so is
# everything else. spofless runs its own instances, on its own ports and data directories.
# The packages it installs would start their default services (a PostgreSQL cluster on
# 5432, an etcd on 2379, a Redis on 6379); while its own `apt-get install` runs, a policy-rc.d that
# refuses every start (Debian's documented mechanism, honoured by invoke-rc.d and
# deb-systemd-invoke) keeps them from starting. It is removed right after, and an
# existing policy-rc.d is never replaced. The installed services stay installed and
# stopped: `systemctl start postgresql` starts them if you want them.
#
# Tests point it elsewhere: SYSTEM_DEPS_POLICY (the policy-rc.d path) and
# SYSTEM_DEPS_PG_LIB (where PostgreSQL's binaries are looked for). The real test
# (tests/integration/test_system_deps.py) runs it with a PostgreSQL cluster running
# and checks that the same postmaster still answers afterwards.
set -euo pipefail

policy=${SYSTEM_DEPS_POLICY:-/usr/sbin/policy-rc.d}
pg_lib=${SYSTEM_DEPS_PG_LIB:-/usr/lib/postgresql}

missing=()
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
compgen -G "$pg_lib/*/bin/postgres" >/dev/null || missing+=(postgresql)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v tc >/dev/null 2>&1 || { [[ " ${missing[*]} " == *" iproute2 "* ]] || missing+=(iproute2); }
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# Headless, for the tests that open the drill's html report and the monitor's dashboard.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)

if ((${#missing[@]} == 0)); then
  exit 0
fi
echo "system-deps: installing ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: apt-get not found; install these packages by hand: ${missing[*]}" >&2
  exit 1
fi
sudo=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "system-deps: need root to install ${missing[*]} (or install them by hand)" >&2
    exit 1
  fi
fi

# Keep the packages' own services from starting during this install only.
made_policy=""
remove_policy() {
  if [[ -n $made_policy ]]; then $sudo rm -f "$policy"; fi
}
trap remove_policy EXIT
if [[ -e $policy ]]; then
  echo "system-deps: $policy exists; left as it is (it decides which services start)"
else
  # shellcheck disable=SC2016  # the script written is literal
  $sudo sh -c 'printf "#!/bin/sh\n# spofless system-deps: no service starts while it installs\nexit 101\n" > "$1" && chmod 755 "$1"' sh "$policy"
  made_policy=1
fi

export DEBIAN_FRONTEND=noninteractive
# Wait (bounded) for another apt or dpkg run to finish rather than fail at once.
lock=(-o DPkg::Lock::Timeout=300)
$sudo apt-get "${lock[@]}" update -qq
$sudo apt-get "${lock[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
remove_policy
made_policy=""
echo "system-deps: installed ${missing[*]}; their services were not started, and no running service was touched"

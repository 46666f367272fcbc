#!/usr/bin/env bash
# Installs the Debian packages the benchmark baselines need (PostgreSQL 15,
# Redis, the SQLite headers, perf for profiling), in the manner of
# scripts/install-deps.sh: idempotent, silent when nothing is missing, and
# without recommends.  Package post-install scripts must not start the
# distribution's own postgresql/redis services (the benchmark starts its own
# instances on loopback in temporary directories), so a temporary
# policy-rc.d forbids service starts during the install when none exists.
# `make bench` runs this; `make bench-smoke` never installs anything.
set -euo pipefail

PACKAGES=(
    gcc make libsqlite3-dev
    postgresql-15 postgresql-client-15
    redis-server redis-tools
    linux-perf
)

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        missing+=("$pkg")
    fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "bench install-deps: missing ${missing[*]}; run as root or install sudo" >&2
        exit 1
    fi
    sudo=(sudo)
fi

policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    made_policy=1
fi
cleanup() { [ "$made_policy" -eq 1 ] && "${sudo[@]}" rm -f "$policy"; return 0; }
trap cleanup EXIT

echo "bench install-deps: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"

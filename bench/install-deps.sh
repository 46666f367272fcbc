#!/usr/bin/env bash
# Installs the Debian packages the benchmark baselines need (PostgreSQL 15,
# Redis, the SQLite headers, perf for profiling) through the project's one
# installer, scripts/install-deps.sh: idempotent, silent when nothing is
# missing, and without recommends.  Package post-install scripts must not
# start the distribution's own postgresql/redis services (the benchmark
# starts its own instances on loopback in temporary directories), hence
# JIFEN_NO_SERVICE_START.  `make bench` runs this; `make bench-smoke` never
# installs anything.
set -euo pipefail

PACKAGES=(
    gcc make libsqlite3-dev
    postgresql-15 postgresql-client-15
    redis-server redis-tools
    linux-perf
)

JIFEN_NO_SERVICE_START=1 exec "$(dirname "$0")/../scripts/install-deps.sh" "${PACKAGES[@]}"

#!/usr/bin/env bash
# Installs the Debian packages jifen needs to build, test and run its demo.
#
# Idempotent: it asks dpkg which packages are missing and does nothing (and
# prints nothing) when none are.  Only when something is missing does it run
# `apt-get update` and install exactly those packages, without recommends.
# Run as root, or as a user with sudo.
#
# With arguments it installs those packages instead of the default list (the
# benchmark's installer, bench/install-deps.sh, does this).  With
# JIFEN_NO_SERVICE_START=1 a temporary policy-rc.d keeps the packages'
# post-install scripts from starting their distribution services.
set -euo pipefail

# The one list of what the build, the tests and `make run` need (libclang-rt-14-dev: clang's
# libFuzzer and sanitizer runtimes, for `make fuzz`).
PACKAGES=(
    build-essential gcc clang libclang-rt-14-dev clang-format cmake ninja-build pkg-config
    libmicrohttpd-dev libjansson-dev libsqlite3-dev libsodium-dev libcmocka-dev
    python3 curl tzdata sqlite3 ca-certificates
)
if [ "$#" -gt 0 ]; then
    PACKAGES=("$@")
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [ "$status" != "installed" ]; then
        missing+=("$pkg")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "install-deps: missing ${missing[*]}; run as root or install sudo" >&2
        exit 1
    fi
    sudo=(sudo)
fi

if [ "${JIFEN_NO_SERVICE_START:-0}" = 1 ] && [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee /usr/sbin/policy-rc.d >/dev/null
    "${sudo[@]}" chmod 755 /usr/sbin/policy-rc.d
    trap '"${sudo[@]}" rm -f /usr/sbin/policy-rc.d' EXIT
fi

echo "install-deps: installing ${missing[*]}"
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}"

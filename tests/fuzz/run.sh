#!/bin/sh
# Runs every libFuzzer harness built in BUILD_DIR (make fuzz) for SECONDS each, one after the
# other, from the committed seeds (tests/fuzz/corpus/<name>) and what earlier runs found
# (BUILD_DIR/fuzz-corpus/<name>), with the harness's dictionary.  Prints each run's seed
# (FUZZ_SEED sets it).  A crash, leak, timeout or failed check stops with status 1 and names
# the input (BUILD_DIR/fuzz-crashes/); replay it with build/tests/fuzz/fuzz_<name> FILE, and
# commit it to tests/fuzz/corpus/<name>/ with the fix, so that ctest replays it from then on.
#
# With FUZZ_FRESH=1 (make fuzz-smoke) a run starts from the committed seeds alone and what it
# finds is dropped, so that a smoke run takes its seconds however much earlier runs gathered.
#
# usage: tests/fuzz/run.sh BUILD_DIR SECONDS
set -eu
build=$1
seconds=$2
src=$(cd "$(dirname "$0")" && pwd)
found=0
fresh=""
if [ "${FUZZ_FRESH:-0}" = 1 ]; then
    fresh=$(mktemp -d)
    trap 'rm -rf "$fresh"' EXIT
fi
for bin in "$build"/tests/fuzz/fuzz_*; do
    name=$(basename "$bin" | sed 's/^fuzz_//')
    seed=${FUZZ_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
    corpus=${fresh:-$build/fuzz-corpus}/$name
    mkdir -p "$corpus" "$build/fuzz-crashes"
    dict=""
    [ -f "$src/$name.dict" ] && dict="-dict=$src/$name.dict"
    echo "fuzz: $name for ${seconds}s, seed $seed"
    if ! "$bin" -seed="$seed" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=4096 \
        -print_final_stats=1 $dict -artifact_prefix="$build/fuzz-crashes/$name-" \
        "$corpus" "$src/corpus/$name" >"$build/fuzz-$name.log" 2>&1; then
        tail -n 60 "$build/fuzz-$name.log"
        echo "fuzz: $name FAILED (seed $seed); the input is in $build/fuzz-crashes/," \
            "the whole log in $build/fuzz-$name.log"
        found=1
        continue
    fi
    grep -a -E '^(Done|stat::number_of_executed_units|stat::average_exec_per_sec)|^fuzz_' \
        "$build/fuzz-$name.log" | sed 's/^/  /'
done
exit $found

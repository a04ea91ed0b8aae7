#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each (default 60): first the committed regressions
# (fuzz/regressions/<target>/, inputs that once crashed), then libFuzzer from the seed corpus
# (fuzz/corpus/<target>/, committed; new finds go to a scratch copy, not the repository).
# Writes fuzz/target/fuzz-results.json: executions and crashes per target. Exits non-zero on a
# crash, leaving the input in fuzz/artifacts/<target>/ — turn it into a regression
# (fuzz/README.md).
#   fuzz/run.sh 10     # CI's smoke run
#   fuzz/run.sh 600    # a long run
set -euo pipefail
cd "$(dirname "$0")"
seconds="${1:-60}"
targets=(ride_code tap_bodies provider_answers gtfs_feed settlement_inputs)
mkdir -p target
# glibc's thread-local destructor list is not a leak of ours (lsan.supp).
export LSAN_OPTIONS="suppressions=$PWD/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
cargo +nightly fuzz build >target/build.log 2>&1 || { cat target/build.log; exit 1; }
results="target/fuzz-results.json"
echo "{" > "$results"
status=0
for i in "${!targets[@]}"; do
    t="${targets[$i]}"
    bin="target/x86_64-unknown-linux-gnu/release/$t"
    mapfile -t regressions < <(find "regressions/$t" -type f ! -name '.*' 2>/dev/null | sort)
    if [ "${#regressions[@]}" -gt 0 ]; then
        "$bin" -runs=0 "${regressions[@]}" >"target/regressions-$t.log" 2>&1 \
            || { echo "$t: a regression crashes again (target/regressions-$t.log)"; status=1; }
    fi
    work="target/corpus-work/$t"
    mkdir -p "$work" "artifacts/$t"
    log="target/fuzz-$t.log"
    set +e
    "$bin" "$work" "corpus/$t" -max_total_time="$seconds" -rss_limit_mb=2048 \
        -timeout=10 -artifact_prefix="artifacts/$t/" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
    crashed=$([ "$rc" -eq 0 ] && echo false || echo true)
    [ "$rc" -eq 0 ] || { echo "$t crashed (exit $rc): see $log and artifacts/$t/"; status=1; }
    sep=$([ "$i" -lt $((${#targets[@]} - 1)) ] && echo "," || echo "")
    printf '  "%s": {"seconds": %s, "executions": %s, "crashed": %s}%s\n' "$t" "$seconds" "${runs:-0}" "$crashed" "$sep" >> "$results"
    echo "$t: ${runs:-0} executions in ${seconds} s"
done
echo "}" >> "$results"
exit $status

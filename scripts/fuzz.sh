#!/usr/bin/env bash
# Coverage-guided fuzzing of every parser of network input (fuzz/), with
# libFuzzer on the stable toolchain: libfuzzer-sys links libFuzzer (built
# from its C++ source with the machine's g++), and rustc's stable
# `-Cpasses=sancov-module` flags instrument the code; no sanitizer, so no
# nightly. The targets run one after the other (one core).
#
# Usage: scripts/fuzz.sh [--smoke | --time SECONDS | --execs N] [TARGET...]
#   --smoke       5 s per target (CI: scripts/test.sh runs this)
#   --time S      S seconds per target (default 60)
#   --execs N     N executions per target (the long run: --execs 1000000)
#   TARGET...     some of the targets (default: all of fuzz/fuzz_targets/)
#
# Seeds: fuzz/corpus/TARGET (in the repository, never written). What the
# fuzzer learns goes to target/fuzz/corpus/TARGET, kept between runs; a
# crashing input to target/fuzz/artifacts/TARGET/. Reproduce one with
#   target/fuzz/<triple>/release/TARGET target/fuzz/artifacts/TARGET/crash-...
# Prints executions, seconds and the result per target; exits non-zero if
# any target crashed (panic, failed assertion, timeout, out of memory).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=time
amount=60
targets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) mode=time amount=5 ;;
        --time) mode=time amount=$2; shift ;;
        --execs) mode=execs amount=$2; shift ;;
        -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1") ;;
    esac
    shift
done
if [ ${#targets[@]} -eq 0 ]; then
    for f in fuzz/fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
# libFuzzer is C++: a fresh machine may have gcc without g++.
scripts/deps.sh g++

export PATH="$HOME/.cargo/bin:$PATH"
triple=$(rustc -vV | sed -n 's/^host: //p')
# As cargo-fuzz does with `--sanitizer none`. With an explicit --target,
# RUSTFLAGS reach only the targets' code, not build scripts or proc macros.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cdebug-assertions -Coverflow-checks"
export CARGO_TARGET_DIR="$PWD/target/fuzz"
cargo build --locked --release --manifest-path fuzz/Cargo.toml --target "$triple" --bins
bin="$CARGO_TARGET_DIR/$triple/release"

summary=()
failed=0
for t in "${targets[@]}"; do
    [ -x "$bin/$t" ] || { echo "no fuzz target $t" >&2; exit 2; }
    work="target/fuzz/corpus/$t"
    art="target/fuzz/artifacts/$t"
    mkdir -p "$work" "$art"
    seeds=()
    [ -d "fuzz/corpus/$t" ] && seeds=("fuzz/corpus/$t")
    case $mode in
        time) limit=(-max_total_time="$amount") ;;
        execs) limit=(-runs="$amount") ;;
    esac
    log="target/fuzz/$t.log"
    echo "=== $t (${limit[*]})"
    start=$(date +%s%N)
    set +e
    "$bin/$t" "${limit[@]}" -max_len=4096 -timeout=10 -rss_limit_mb=2048 \
        -print_final_stats=1 -artifact_prefix="$art/" "$work" "${seeds[@]}" >"$log" 2>&1
    rc=$?
    set -e
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    if [ $rc -eq 0 ]; then
        result=ok
    else
        result="CRASH (exit $rc; see $log, $art/)"
        failed=1
        grep -E "panicked|ERROR: libFuzzer|SUMMARY|Test unit written" "$log" | head -8 >&2 || true
    fi
    line=$(printf '%-15s %12s execs %5d.%d s  cov %6s  %s' "$t" "${execs:-?}" $((ms / 1000)) $((ms % 1000 / 100)) "${cov:-?}" "$result")
    echo "$line"
    summary+=("$line")
done
echo "=== fuzz summary ($mode $amount)"
printf '%s\n' "${summary[@]}"
exit $failed

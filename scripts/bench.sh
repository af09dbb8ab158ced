#!/usr/bin/env bash
# One command for the side-by-side benchmark of ngx_http_push and nchan
# (issue 4): installs what is missing, builds our module for the
# distribution's nginx, builds and runs the benchmark program, and writes
# BENCHMARKS.md and bench/fanout.svg at the repository root.
#
# Usage: scripts/bench.sh [push-bench options]   e.g. --quick, --reps 3,
#        --redis (also the two-server Redis workloads; installs redis-server)
#        (scripts/bench.sh --help lists them)
# Env:   PUSH_SKIP_APT=1       never call apt-get
#        PUSH_MODULE_SO=PATH   benchmark this .so instead of building one
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
log() { printf '[bench] %s\n' "$*" >&2; }

# Packages (as root; otherwise deps.sh prints the apt-get command).
if [ -z "${PUSH_SKIP_APT:-}" ]; then
    "$ROOT/scripts/deps.sh" nginx nginx-dev libnginx-mod-nchan libnginx-mod-http-echo
    case " $* " in
        *" --redis "*) "$ROOT/scripts/deps.sh" redis-server ;;
    esac
fi

# Our module, built against Debian's nginx. If that fails the benchmark
# still runs: our column then says "failed: ..." and nchan's is measured.
SO="${PUSH_MODULE_SO:-$ROOT/target/distro/release/libngx_http_push.so}"
if [ -z "${PUSH_MODULE_SO:-}" ]; then
    if ! "$ROOT/scripts/build-distro.sh"; then
        log "WARNING: the distribution build failed; benchmarking nchan only"
        rm -f "$SO"
    fi
fi

log "building the benchmark program"
CARGO_TARGET_DIR="$ROOT/target/bench" cargo build --release -p push-bench

log "running (every workload is bounded; see --deadline)"
PUSH_BENCH_COMMAND="scripts/bench.sh${*:+ $*}" \
    "$ROOT/target/bench/release/push-bench" \
    --so "$SO" \
    --out "$ROOT/BENCHMARKS.md" \
    --svg "$ROOT/bench/fanout.svg" \
    "$@"

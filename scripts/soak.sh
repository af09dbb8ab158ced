#!/usr/bin/env bash
# The soak (not in CI): the release build of the module in the vendored
# nginx 1.28, 4 workers, for --duration seconds (default 600) of mixed load
# (tests/soak.rs): 200 followers (50 long-poll, 50 interval-poll, 50
# EventSource, 50 WebSocket) on 20 channels, 4 publishers (~80 messages/s),
# 200 listeners reset every 5 s, `nginx -s reload` every --reload seconds
# (default 30). Prints worker RSS and zone use (push_stats) at the start,
# every minute and at the end, then the messages lost and the alert lines;
# exits non-zero unless both are 0.
#
# Usage: scripts/soak.sh [--duration SECS] [--reload SECS]
set -euo pipefail
cd "$(dirname "$0")/.."

duration=600
reload=30
while [ $# -gt 0 ]; do
    case "$1" in
        --duration) duration="$2"; shift 2 ;;
        --reload) reload="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

scripts/deps.sh
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
# The module and its nginx in the release profile (as scripts/run.sh); the
# load generator is the test harness, built as the tests are.
cargo build --release
nginx=$(ls -t target/release/build/nginx-sys-*/out/objs/nginx | head -n 1)
cargo test --test soak --no-run
PUSH_NGINX_BIN="$PWD/$nginx" \
PUSH_MODULE_SO="$PWD/target/release/libngx_http_push.so" \
PUSH_SOAK_SECS="$duration" \
PUSH_SOAK_RELOAD_SECS="$reload" \
    cargo test --test soak -- --ignored --nocapture

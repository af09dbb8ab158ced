#!/usr/bin/env bash
# Build the module and an nginx to load it into (the vendored nginx 1.28),
# both in the release profile, then run nginx in the foreground with
# nginx-conf/nginx.conf:
# listeners on localhost:8088, senders on localhost:8089. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD

scripts/deps.sh
command -v cargo >/dev/null || { echo "cargo not found: install Rust (https://rustup.rs)" >&2; exit 1; }
cargo build --release
nginx=$(ls -t target/release/build/nginx-sys-*/out/objs/nginx | head -n 1)
prefix=$top/target/run
mkdir -p "$prefix/logs"
touch "$prefix/logs/error.log" "$prefix/logs/access.log"
# The browser demo's page (nginx-conf/demo.conf serves it from the prefix).
ln -sfn "$top/nginx-conf/demo" "$prefix/demo"
conf=$(realpath "${1:-nginx-conf/nginx.conf}")
"$nginx" -p "$prefix" -c "$conf" -t -q -g "load_module $top/target/release/libngx_http_push.so;"
echo "nginx: listeners on http://localhost:8088/?channel=NAME, senders on http://localhost:8089/?channel=NAME" >&2
exec "$nginx" -p "$prefix" -c "$conf" -g "load_module $top/target/release/libngx_http_push.so; daemon off;"

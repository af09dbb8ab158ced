#!/usr/bin/env bash
# Several servers, one command: a local Redis (port 6390, persistence on,
# in target/redis-demo/) and two nginx servers sharing channels through it:
#   server A: listeners on localhost:8088, senders on localhost:8089
#   server B: listeners on localhost:8090, senders on localhost:8091
# Then, in other terminals:
#   curl localhost:8088/?channel=a              # held on server A...
#   curl -d hello localhost:8091/?channel=a     # ...published on server B
# Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$PWD
scripts/deps.sh redis-server
cargo build --release
nginx=$(ls -t target/release/build/nginx-sys-*/out/objs/nginx | head -n 1)
so=$top/target/release/libngx_http_push.so
base=$top/target/redis-demo
mkdir -p "$base/redis"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
redis-server --port 6390 --bind 127.0.0.1 --dir "$base/redis" --appendonly yes \
    --save '' --daemonize no --logfile "$base/redis/redis.log" &
pids+=($!)
for s in A:8088:8089 B:8090:8091; do
    IFS=: read -r name lp sp <<<"$s"
    prefix=$base/$name
    mkdir -p "$prefix/logs" "$prefix/conf"
    sed -e "s/LISTENER_PORT/$lp/" -e "s/SENDER_PORT/$sp/" nginx-conf/redis.conf > "$prefix/conf/nginx.conf"
    "$nginx" -p "$prefix" -c "$prefix/conf/nginx.conf" -g "load_module $so; daemon off;" &
    pids+=($!)
    echo "server $name: listeners on http://localhost:$lp/?channel=NAME, senders on http://localhost:$sp/?channel=NAME" >&2
done
echo "redis on 127.0.0.1:6390 (data in $base/redis); Ctrl-C stops everything" >&2
wait -n

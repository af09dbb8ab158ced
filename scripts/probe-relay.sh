#!/usr/bin/env bash
# Does a build of the module relay a message? Starts one nginx with the
# module, holds a listener, publishes, checks the listener got the body.
#
# Usage: scripts/probe-relay.sh [NGINX_BIN] [MODULE_SO]
#   default: /usr/sbin/nginx with target/distro/release/libngx_http_push.so
#   vendored debug build: scripts/probe-relay.sh \
#       "$(ls target/debug/build/nginx-sys-*/out/objs/nginx | head -1)" \
#       target/debug/libngx_http_push.so
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NGINX="$(realpath "${1:-${PUSH_NGINX_BIN:-/usr/sbin/nginx}}")"
SO="$(realpath "${2:-${PUSH_MODULE_SO:-$ROOT/target/distro/release/libngx_http_push.so}}")"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/push-probe.XXXXXX")"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p "$DIR/logs"
cat >"$DIR/nginx.conf" <<CONF
load_module $SO;
daemon off; master_process on; worker_processes 2;
pid $DIR/nginx.pid; error_log $DIR/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off; client_body_temp_path $DIR/body;
    push_buffer_size 8M;
    server {
        listen 127.0.0.1:$PORT;
        location /sub { set \$push_id \$arg_id; push_listener; push_listener_concurrency broadcast; }
        location /pub { set \$push_id \$arg_id; push_sender; push_message_buffer_length 10; }
    }
}
CONF
"$NGINX" -p "$DIR" -c "$DIR/nginx.conf" 2>"$DIR/stderr" &
MASTER=$!
cleanup() { kill -QUIT "$MASTER" 2>/dev/null || true; sleep 0.3; kill -KILL "$MASTER" 2>/dev/null || true; rm -rf "$DIR"; }
trap cleanup EXIT
for _ in $(seq 50); do
    if curl -s -o /dev/null "http://127.0.0.1:$PORT/"; then break; fi
    if ! kill -0 "$MASTER" 2>/dev/null; then echo "FAIL: nginx did not start: $(cat "$DIR/stderr")"; exit 1; fi
    sleep 0.1
done
curl -s -m 5 -D "$DIR/sub.h" -o "$DIR/sub.b" "http://127.0.0.1:$PORT/sub?id=probe" &
SUB=$!
sleep 0.5
PUB="$(curl -s -m 5 -o /dev/null -w '%{http_code}' --data-binary 'hello probe' "http://127.0.0.1:$PORT/pub?id=probe" || true)"
wait "$SUB" || true
if [ "$(cat "$DIR/sub.b" 2>/dev/null)" = "hello probe" ]; then
    echo "OK: POST answered $PUB, listener got: $(head -1 "$DIR/sub.h" | tr -d '\r')"
else
    echo "FAIL: POST answered $PUB; listener: $(head -1 "$DIR/sub.h" 2>/dev/null | tr -d '\r') body '$(head -c 200 "$DIR/sub.b" 2>/dev/null)'"
    grep -E 'emerg|alert|crit|error' "$DIR/logs/error.log" | tail -3 || true
    exit 1
fi

#!/usr/bin/env bash
# Does a build of the module relay a message? Starts one nginx with the
# module in a temporary prefix on an ephemeral loopback port, holds a
# listener, publishes, checks the listener got the body, stops nginx by pid.
#
# Usage: scripts/probe-relay.sh [NGINX_BIN] [MODULE]
#   NGINX_BIN  default /usr/sbin/nginx
#   MODULE     how the module gets into that nginx:
#              PATH.so    load_module it (default:
#                         target/distro/release/libngx_http_push.so)
#              PATH.conf  include this load file (e.g. Debian's
#                         /etc/nginx/modules-enabled/50-mod-http-push.conf);
#                         its relative `modules/...` resolves in the prefix,
#                         whose modules/ links to the binary's --modules-path
#              builtin    nothing: the module is compiled into NGINX_BIN
#   vendored debug build: scripts/probe-relay.sh \
#       "$(ls target/debug/build/nginx-sys-*/out/objs/nginx | head -1)" \
#       target/debug/libngx_http_push.so
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NGINX="$(realpath "${1:-${PUSH_NGINX_BIN:-/usr/sbin/nginx}}")"
MODULE="${2:-${PUSH_MODULE_SO:-$ROOT/target/distro/release/libngx_http_push.so}}"
DIR="$(mktemp -d "${TMPDIR:-/tmp}/push-probe.XXXXXX")"
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p "$DIR/logs"

case "$MODULE" in
    builtin) load="" ;;
    *.conf)
        load="include $(realpath "$MODULE");"
        modules_path="$("$NGINX" -V 2>&1 | sed -n 's/.*--modules-path=\([^ ]*\).*/\1/p')"
        [ -n "$modules_path" ] && ln -s "$modules_path" "$DIR/modules"
        ;;
    *) load="load_module $(realpath "$MODULE");" ;;
esac

cat >"$DIR/nginx.conf" <<CONF
$load
daemon off; master_process on; worker_processes 2;
pid $DIR/nginx.pid; error_log $DIR/logs/error.log warn;
events { worker_connections 1024; }
http {
    access_log off; client_body_temp_path $DIR/body;
    proxy_temp_path $DIR/proxy; fastcgi_temp_path $DIR/fastcgi;
    uwsgi_temp_path $DIR/uwsgi; scgi_temp_path $DIR/scgi;
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
SUB=
cleanup() {
    [ -n "$SUB" ] && kill "$SUB" 2>/dev/null
    # Stop nginx by its pid; wait (with a deadline) until the master is gone.
    kill -QUIT "$MASTER" 2>/dev/null || true
    for _ in $(seq 100); do
        kill -0 "$MASTER" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$MASTER" 2>/dev/null || true
    wait "$MASTER" 2>/dev/null || true
    rm -rf "$DIR"
}
trap cleanup EXIT

# Poll a condition every 50 ms until it holds or the deadline passes.
wait_for() { # what deadline_s command...
    local what=$1 tries=$(($2 * 20)); shift 2
    for _ in $(seq "$tries"); do
        if "$@"; then return 0; fi
        if ! kill -0 "$MASTER" 2>/dev/null; then
            echo "FAIL: nginx exited while waiting for $what: $(cat "$DIR/stderr")"; exit 1
        fi
        sleep 0.05
    done
    echo "FAIL: $what: not within $((tries / 20)) s"
    grep -E 'emerg|alert|crit|error' "$DIR/logs/error.log" | tail -3 || true
    exit 1
}
answers() { curl -s -o /dev/null "http://127.0.0.1:$PORT/"; }
held() { # the sender's channel info counts the held listener
    curl -s "http://127.0.0.1:$PORT/pub?id=probe" | grep -q '^active subscribers: 1$'
}

wait_for "nginx to answer on 127.0.0.1:$PORT" 10 answers
curl -s -m 10 -D "$DIR/sub.h" -o "$DIR/sub.b" "http://127.0.0.1:$PORT/sub?id=probe" &
SUB=$!
wait_for "the listener to be held" 5 held
PUB="$(curl -s -m 5 -o /dev/null -w '%{http_code}' --data-binary 'hello probe' "http://127.0.0.1:$PORT/pub?id=probe" || true)"
wait "$SUB" || true
SUB=
if [ "$(cat "$DIR/sub.b" 2>/dev/null)" = "hello probe" ]; then
    echo "OK: POST answered $PUB, listener got: $(head -1 "$DIR/sub.h" | tr -d '\r')"
else
    echo "FAIL: POST answered $PUB; listener: $(head -1 "$DIR/sub.h" 2>/dev/null | tr -d '\r') body '$(head -c 200 "$DIR/sub.b" 2>/dev/null)'"
    grep -E 'emerg|alert|crit|error' "$DIR/logs/error.log" | tail -3 || true
    exit 1
fi

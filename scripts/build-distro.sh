#!/usr/bin/env bash
# Build ngx_http_push against the distribution's nginx (Debian's nginx +
# nginx-dev), so that /usr/sbin/nginx can `load_module` the result.
#
# Output: target/distro/release/libngx_http_push.so
#
# Usage: scripts/build-distro.sh            (run as root, or with the apt
#                                            packages already installed)
# Env:   PUSH_DISTRO_PROFILE=debug|release  (default release)
#        PUSH_SKIP_APT=1                    never call apt-get
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DISTRO_DIR="$ROOT/target/distro"
SRC_COPY="$DISTRO_DIR/nginx-src"
PROFILE="${PUSH_DISTRO_PROFILE:-release}"

log() { printf '[build-distro] %s\n' "$*" >&2; }

# 1. packages --------------------------------------------------------------
# Packages (as root; otherwise deps.sh prints the apt-get command).
if [ -z "${PUSH_SKIP_APT:-}" ]; then
    "$ROOT/scripts/deps.sh" nginx nginx-dev
fi

if [ ! -f /usr/share/nginx/src/conf_flags ] || [ ! -x /usr/share/nginx/src/configure ]; then
    log "/usr/share/nginx/src is incomplete (is nginx-dev installed?)"; exit 1
fi

# 2. fresh copy of the nginx source tree, configured like Debian's nginx ----
mkdir -p "$DISTRO_DIR"
rm -rf "$SRC_COPY"
cp -a /usr/share/nginx/src "$SRC_COPY"

# conf_flags defines the bash array NGX_CONF_FLAGS.
# shellcheck disable=SC1091
source "$SRC_COPY/conf_flags"
log "configuring $(/usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //') in $SRC_COPY"
(
    cd "$SRC_COPY"
    ./configure "${NGX_CONF_FLAGS[@]}" >"$DISTRO_DIR/configure.log" 2>&1
) || { log "configure failed; see $DISTRO_DIR/configure.log"; tail -20 "$DISTRO_DIR/configure.log" >&2; exit 1; }

# 3. cargo build against that tree ----------------------------------------
# A cdylib that nginx loads as it is: it exports ngx_modules itself.
cargo_args=(build --no-default-features --features export-modules --lib)
if [ "$PROFILE" = "release" ]; then cargo_args+=(--release); fi
log "cargo ${cargo_args[*]} (CARGO_TARGET_DIR=$DISTRO_DIR)"
(
    cd "$ROOT"
    NGINX_SOURCE_DIR="$SRC_COPY" \
    NGINX_BUILD_DIR="$SRC_COPY/objs" \
    CARGO_TARGET_DIR="$DISTRO_DIR" \
        cargo "${cargo_args[@]}" -p ngx_http_push
)

SO="$DISTRO_DIR/$PROFILE/libngx_http_push.so"
if [ ! -f "$SO" ]; then log "expected $SO, not found"; exit 1; fi

# 4. quick sanity check: does /usr/sbin/nginx accept it? -------------------
# (only `nginx -t` with load_module and an empty http block; the relay test
# lives in the test suite: PUSH_NGINX_BIN=/usr/sbin/nginx PUSH_MODULE_SO=$SO)
CHECK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/push-distro-check.XXXXXX")"
trap 'rm -rf "$CHECK_DIR"' EXIT
mkdir -p "$CHECK_DIR/logs"
cat >"$CHECK_DIR/nginx.conf" <<CONF
load_module $SO;
error_log $CHECK_DIR/logs/error.log;
pid $CHECK_DIR/logs/nginx.pid;
events { worker_connections 64; }
http { access_log off; }
CONF
if /usr/sbin/nginx -t -q -p "$CHECK_DIR" -c "$CHECK_DIR/nginx.conf" 2>"$CHECK_DIR/t.err"; then
    log "ok: /usr/sbin/nginx loads $SO"
else
    log "/usr/sbin/nginx -t refused $SO:"; cat "$CHECK_DIR/t.err" >&2; exit 1
fi
echo "$SO"

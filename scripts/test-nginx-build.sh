#!/usr/bin/env bash
# nginx's own build with this repository as a module (the `config` file):
#   static   ./configure --add-module=<repo> && make
#   dynamic  ./configure --with-compat --add-dynamic-module=<repo> && make modules
#            (and make, for an nginx binary to load objs/ngx_http_push_module.so)
# Each mode builds in its own copy of the nginx source under
# target/nginx-build/<mode>, configured once and reused while the source,
# the configure arguments and config/config.make stay the same (make and
# cargo then rebuild only what changed). Then each nginx relays a message
# (scripts/probe-relay.sh) and the artifacts are checked to be release builds.
#
# Usage: scripts/test-nginx-build.sh [static] [dynamic]     (default: both)
# Env:   PUSH_NGINX_SRC=DIR   a full nginx source tree to build, e.g. an
#                             unpacked release tarball (default: the nginx
#                             1.28 source the nginx-src crate ships). Debian's
#                             /usr/share/nginx/src has headers only: it builds
#                             modules, not nginx (scripts/test-deb.sh uses it)
#        PUSH_SKIP_APT=1      never call apt-get
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BUILD="$ROOT/target/nginx-build"
log() { printf '[nginx-build] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

if [ -z "${PUSH_SKIP_APT:-}" ]; then
    "$ROOT/scripts/deps.sh" python3
fi
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH="$PATH:$HOME/.cargo/bin"
fi

# The nginx source: the nginx-src crate's copy (the one the vendored build
# uses), found through cargo's own resolution of Cargo.lock.
SRC="${PUSH_NGINX_SRC:-}"
if [ -z "$SRC" ]; then
    manifest="$(cd "$ROOT" && cargo metadata --format-version 1 --locked |
        grep -o '"manifest_path":"[^"]*/nginx-src-[^"/]*/Cargo.toml"' | head -n 1 |
        sed 's/^"manifest_path":"//; s/"$//')"
    [ -n "$manifest" ] || die "cargo metadata does not list the nginx-src crate"
    SRC="$(dirname "$manifest")/nginx"
fi
[ -f "$SRC/src/core/nginx.h" ] || die "$SRC is not an nginx source tree"
version="$(sed -n 's/^#define NGINX_VERSION *"\(.*\)"/\1/p' "$SRC/src/core/nginx.h")"

modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=(static dynamic)
jobs="$(nproc)"

for mode in "${modes[@]}"; do
    case "$mode" in
        static)  args=(--add-module="$ROOT") ;;
        dynamic) args=(--with-compat --add-dynamic-module="$ROOT") ;;
        *) die "unknown mode $mode (static or dynamic)" ;;
    esac
    tree="$BUILD/$mode"
    stamp="src=$SRC nginx=$version args=${args[*]} $(cd "$ROOT" && sha256sum config config.make | tr '\n' ' ')"

    # 1. a configured tree, reused when nothing configure depends on changed
    if [ -f "$tree/objs/Makefile" ] && [ "$(cat "$tree/.push-stamp" 2>/dev/null)" = "$stamp" ]; then
        log "$mode: reusing the configured nginx $version tree $tree"
    else
        log "$mode: configuring nginx $version in $tree: ${args[*]}"
        start=$SECONDS
        rm -rf "$tree"
        mkdir -p "$BUILD"
        cp -a "$SRC" "$tree"
        configure=./configure
        [ -x "$tree/configure" ] || configure=./auto/configure # the repository layout
        (cd "$tree" && "$configure" "${args[@]}") >"$BUILD/$mode-configure.log" 2>&1 ||
            { tail -20 "$BUILD/$mode-configure.log" >&2; die "$mode: configure failed (see $BUILD/$mode-configure.log)"; }
        printf '%s' "$stamp" >"$tree/.push-stamp"
        log "$mode: configured in $((SECONDS - start)) s"
    fi

    # 2. make (cargo runs from the Makefile; its target dir is inside objs)
    start=$SECONDS
    lib="$tree/objs/ngx_http_push/release/libngx_http_push.a"
    make=(make -j"$jobs")
    if [ "$mode" = static ]; then
        (cd "$tree" && "${make[@]}") >"$BUILD/$mode-make.log" 2>&1 ||
            { tail -30 "$BUILD/$mode-make.log" >&2; die "$mode: make failed (see $BUILD/$mode-make.log)"; }
        [ -f "$lib" ] || die "$mode: no $lib: cargo did not build into objs"
        "$tree/objs/nginx" -V 2>&1 | grep -q -- "--add-module=$ROOT" || die "$mode: nginx -V does not show --add-module"
        artifact="$tree/objs/nginx"
        module=builtin
    else
        (cd "$tree" && "${make[@]}" modules) >"$BUILD/$mode-make.log" 2>&1 ||
            { tail -30 "$BUILD/$mode-make.log" >&2; die "$mode: make modules failed (see $BUILD/$mode-make.log)"; }
        artifact="$tree/objs/ngx_http_push_module.so"
        [ -f "$artifact" ] || die "$mode: make modules did not produce $artifact"
        [ -f "$lib" ] || die "$mode: no $lib: cargo did not build into objs"
        # nginx itself, from the same tree, to load the module into
        (cd "$tree" && "${make[@]}") >>"$BUILD/$mode-make.log" 2>&1 ||
            { tail -30 "$BUILD/$mode-make.log" >&2; die "$mode: make failed (see $BUILD/$mode-make.log)"; }
        module="$artifact"
    fi
    log "$mode: built in $((SECONDS - start)) s"

    # 3. a release build (debug builds carry the fault-injection hook)
    if grep -q NGX_HTTP_PUSH_FAULTS "$artifact"; then
        die "$mode: $artifact is not a release build"
    fi

    # 4. it relays
    log "$mode: relaying through $tree/objs/nginx ($module)"
    "$ROOT/scripts/probe-relay.sh" "$tree/objs/nginx" "$module" || die "$mode: no relay"
done
log "ok: ${modes[*]}"

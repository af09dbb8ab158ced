#!/usr/bin/env bash
# Build the module for Debian's packaged nginx and run the relay tests in
# /usr/sbin/nginx with it: proves the distribution build loads and relays.
set -euo pipefail
cd "$(dirname "$0")/.."
PUSH_DISTRO_PROFILE=${PUSH_DISTRO_PROFILE:-debug} scripts/build-distro.sh
so=$PWD/target/distro/${PUSH_DISTRO_PROFILE:-debug}/libngx_http_push.so
PUSH_NGINX_BIN=/usr/sbin/nginx PUSH_MODULE_SO=$so cargo test --test delivery --test concurrency

#!/usr/bin/env bash
# nginx under valgrind memcheck, for scripts/memcheck.sh (the harness runs
# `scripts/memcheck-nginx.sh NGINX -p PREFIX -c CONF` through
# PUSH_NGINX_WRAPPER). valgrind's options come from MEMCHECK_VALGRIND.
#
# Uninitialised-value checks are on only where one worker writes the shared
# zone (worker_processes 1): memcheck keeps definedness per process and
# cannot see the writes of another, so with several workers a worker that
# once wrote undefined bytes (the padding of a `None`) at a zone address
# still takes them for undefined after another worker stored a real value
# there, and every use of that value downstream (ids, dates, counts) is
# reported. Invalid reads and writes, bad frees and leaks are checked with
# any number of workers. exec: valgrind keeps nginx's pid.
set -euo pipefail
conf=
prev=
for a in "$@"; do
    [ "$prev" = -c ] && conf=$a
    prev=$a
done
workers=1
if [ -n "$conf" ]; then
    workers=$(sed -n 's/^worker_processes \([0-9]*\);.*/\1/p' "$conf" | head -1)
fi
undef=()
[ "${workers:-1}" -gt 1 ] && undef=(--undef-value-errors=no)
# shellcheck disable=SC2086 # MEMCHECK_VALGRIND is a list of options
exec valgrind $MEMCHECK_VALGRIND "${undef[@]}" "$@"

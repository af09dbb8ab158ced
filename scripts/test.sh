#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against the
# vendored nginx 1.28 (1 and 4 workers), then the module built for Debian's
# packaged nginx, relaying in /usr/sbin/nginx; then nginx's own build with
# the module (--add-module and --add-dynamic-module, nginx 1.28, relaying),
# and the Debian package (build, dpkg -i, nginx -t, relay, remove, purge).
# The Redis tests start their own redis-server (Debian's package; its
# service stays off); the browser tests Debian's headless Chromium. After
# the tests, every fuzz target runs for a few seconds, and a subset of the
# integration tests runs with nginx under valgrind memcheck.
set -euo pipefail
cd "$(dirname "$0")/.."
# The browser tests drive Debian's headless Chromium; nchan's client (for
# the compatibility test) comes from the npm registry; the stats tests
# check the metrics with promtool (Debian's prometheus package).
pkgs=(redis-server chromium chromium-driver prometheus)
# And what the later scripts install themselves, so that a fresh machine
# runs apt once: g++ (fuzz.sh), valgrind (memcheck.sh), nginx and
# nginx-dev (test-distro.sh), python3 (the build tests), the package tools
# (deb.sh).
pkgs+=(g++ valgrind nginx nginx-dev python3 debhelper dpkg-dev build-essential)
command -v npm >/dev/null || pkgs+=(npm)
scripts/deps.sh "${pkgs[@]}"
cargo build
cargo test
# A few seconds of coverage-guided fuzzing per parser (scripts/fuzz.sh).
scripts/fuzz.sh --smoke
# One test of each code path with nginx under valgrind (about 1.5 min;
# scripts/memcheck.sh without --quick runs the whole representative set).
scripts/memcheck.sh --quick
scripts/test-distro.sh
scripts/test-nginx-build.sh
scripts/test-deb.sh

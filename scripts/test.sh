#!/usr/bin/env bash
# The whole test suite: unit tests and integration tests against the
# vendored nginx 1.28 (1 and 4 workers), then the module built for Debian's
# packaged nginx, relaying in /usr/sbin/nginx. The Redis tests start their
# own redis-server (Debian's package; its service stays off).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh redis-server
cargo build
cargo test
scripts/test-distro.sh

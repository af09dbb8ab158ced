#!/usr/bin/env bash
# Build the Debian package libnginx-mod-http-push for the machine's Debian
# nginx (nginx-dev's `dh --with nginx`, see debian/rules): a release build
# of the module, /usr/lib/nginx/modules/ngx_http_push_module.so, and its
# load file /usr/share/nginx/modules-available/mod-http-push.conf, which
# the package enables in /etc/nginx/modules-enabled when installed.
#
# Output: target/deb/libnginx-mod-http-push_<version>_<arch>.deb (its path
#         is the last line printed; the build log is target/deb/build.log;
#         the staged tree target/deb/src is removed after a good build)
#
# Crates are vendored: the package is built from a copy of this tree in
# target/deb/src with every crate in its vendor/ (`cargo vendor --locked`,
# from cargo's cache or crates.io), so the package build itself is offline.
#
# Usage: scripts/deb.sh        (run as root, or with the packages installed)
# Env:   PUSH_SKIP_APT=1       never call apt-get
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/target/deb"
STAGE="$OUT/src"
PKG=libnginx-mod-http-push

log() { printf '[deb] %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# 1. packages and the Rust toolchain ---------------------------------------
if [ -z "${PUSH_SKIP_APT:-}" ]; then
    "$ROOT/scripts/deps.sh" nginx nginx-dev debhelper dpkg-dev build-essential
fi
if ! command -v cargo >/dev/null && [ -x "$HOME/.cargo/bin/cargo" ]; then
    PATH="$PATH:$HOME/.cargo/bin"
fi
command -v cargo >/dev/null || die "cargo not found: install Rust with rustup (https://rustup.rs)"

cargo_version="$(sed -n 's/^version = "\(.*\)"$/\1/p' "$ROOT/Cargo.toml" | head -n 1)"
deb_version="$(dpkg-parsechangelog -l "$ROOT/debian/changelog" -S Version)"
[ "$deb_version" = "$cargo_version" ] ||
    die "debian/changelog says $deb_version, Cargo.toml says $cargo_version: add a changelog entry"

# 2. the package's source tree: this checkout's files, nothing built -------
rm -rf "$STAGE"
mkdir -p "$STAGE"
if git -C "$ROOT" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    # Tracked and new (not ignored) files, as they are in the work tree.
    (cd "$ROOT" && git ls-files -z --cached --others --exclude-standard |
        while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done |
        tar --null -T - -cf -) | tar -C "$STAGE" -xf -
else
    tar -C "$ROOT" --exclude=./target --exclude=./.git -cf - . | tar -C "$STAGE" -xf -
fi

# 3. vendored crates -------------------------------------------------------
log "vendoring crates into $STAGE/vendor"
(
    cd "$STAGE"
    cargo vendor --locked --offline --quiet vendor >/dev/null 2>&1 ||
        cargo vendor --locked --quiet vendor >/dev/null
)
mkdir -p "$STAGE/.cargo"
cat >"$STAGE/.cargo/config.toml" <<'EOF'
# Written by scripts/deb.sh: every crate comes from vendor/ (cargo vendor
# --locked); debian/rules then builds with --offline.
[source.crates-io]
replace-with = "vendored-sources"

[source.vendored-sources]
directory = "vendor"
EOF

# 4. the package -----------------------------------------------------------
rm -f "$OUT"/*.deb "$OUT"/*.ddeb "$OUT"/*.buildinfo "$OUT"/*.changes
log "dpkg-buildpackage -b ($(/usr/sbin/nginx -v 2>&1 | sed 's/^nginx version: //'), log: $OUT/build.log)"
if ! (cd "$STAGE" && dpkg-buildpackage -b --no-sign -j"$(nproc)") >"$OUT/build.log" 2>&1; then
    tail -40 "$OUT/build.log" >&2
    die "dpkg-buildpackage failed; see $OUT/build.log"
fi

DEB="$(ls "$OUT/${PKG}_${deb_version}_"*.deb 2>/dev/null | head -n 1)"
[ -n "$DEB" ] || die "no $OUT/${PKG}_${deb_version}_*.deb after the build"
# The staged tree (vendored crates, cargo's target dir: ~350 MB) served its
# purpose; the next run stages afresh.
rm -rf "$STAGE"
log "built $DEB"
echo "$DEB"

#!/usr/bin/env bash
# The Debian package, as a user gets it: build it (scripts/deb.sh), install
# it with dpkg -i into the machine's Debian nginx, check that it is enabled
# the Debian way and that `nginx -t` accepts the packaged load file, relay a
# message through /usr/sbin/nginx started in a temporary prefix (never the
# system service), then remove and purge the package and check that nothing
# of it is left.
#
# Usage: scripts/test-deb.sh      (as root: it installs and removes a package)
# Env:   PUSH_DEB=PATH            test this .deb instead of building one
#        PUSH_SKIP_APT=1          never call apt-get
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PKG=libnginx-mod-http-push
SO=/usr/lib/nginx/modules/ngx_http_push_module.so
AVAILABLE=/usr/share/nginx/modules-available/mod-http-push.conf
ENABLED=/etc/nginx/modules-enabled/50-mod-http-push.conf
log() { printf '[test-deb] %s\n' "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root: the test installs and removes $PKG"
if [ -z "${PUSH_SKIP_APT:-}" ]; then
    "$ROOT/scripts/deps.sh" nginx nginx-dev python3
fi

# 1. the package ------------------------------------------------------------
start=$SECONDS
DEB="${PUSH_DEB:-$("$ROOT/scripts/deb.sh" | tail -n 1)}"
[ -f "$DEB" ] || die "no package at '$DEB'"
log "package $DEB ($((SECONDS - start)) s)"

installed() { dpkg-query -W -f='${Status}' "$PKG" 2>/dev/null | grep -q ' installed$'; }
known() { dpkg-query -W "$PKG" >/dev/null 2>&1; }

# Debian's service must not start or reload: policy-rc.d says no while
# dpkg runs (unless the machine has one already).
own_policy=
TMP="$(mktemp -d "${TMPDIR:-/tmp}/push-test-deb.XXXXXX")"
cleanup() {
    # A failed run must not leave the package installed.
    if known; then dpkg -P "$PKG" >/dev/null 2>&1 || true; fi
    [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
    rm -rf "$TMP"
}
trap cleanup EXIT
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=1
fi

if known; then
    log "$PKG is on this machine already (left by an earlier run?): purging it first"
    dpkg -P "$PKG" >/dev/null
fi

# What the package ships (files and links, not directories), and what the
# directories it touches held before.
dpkg-deb --fsys-tarfile "$DEB" | tar -t | sed -n 's|^\./|/|; /[^/]$/p' >"$TMP/files"
grep -qx "$SO" "$TMP/files" || die "the package does not ship $SO"
grep -qx "$AVAILABLE" "$TMP/files" || die "the package does not ship $AVAILABLE"
while read -r f; do
    [ ! -e "$f" ] && [ ! -L "$f" ] || die "$f exists before the package is installed"
done <"$TMP/files"
ls -A /etc/nginx/modules-enabled >"$TMP/enabled.before"

# 2. install ------------------------------------------------------------------
log "dpkg -i $(basename "$DEB")"
dpkg -i "$DEB" >"$TMP/install.log" 2>&1 || { cat "$TMP/install.log" >&2; die "dpkg -i failed"; }
installed || die "dpkg does not list $PKG as installed"
[ -f "$SO" ] || die "$SO missing after install"
grep -qx 'load_module modules/ngx_http_push_module.so;' "$AVAILABLE" ||
    die "$AVAILABLE does not load the module: $(cat "$AVAILABLE")"
[ -L "$ENABLED" ] && [ "$(readlink -f "$ENABLED")" = "$AVAILABLE" ] ||
    die "$ENABLED is not a link to $AVAILABLE (the module is not enabled)"
if grep -q NGX_HTTP_PUSH_FAULTS "$SO"; then die "$SO is not a release build"; fi
log "installed: $SO, $AVAILABLE, enabled as $ENABLED"

# 3. nginx -t with the packaged load file, in a temporary prefix whose
#    modules/ is Debian's module directory (as /usr/share/nginx/modules is)
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p "$TMP/prefix/logs"
ln -s /usr/lib/nginx/modules "$TMP/prefix/modules"
write_conf() { # include-line
    cat >"$TMP/prefix/nginx.conf" <<CONF
$1
pid $TMP/prefix/nginx.pid;
error_log $TMP/prefix/logs/error.log;
events { worker_connections 64; }
http {
    access_log off;
    client_body_temp_path $TMP/prefix/body; proxy_temp_path $TMP/prefix/proxy;
    fastcgi_temp_path $TMP/prefix/fastcgi; uwsgi_temp_path $TMP/prefix/uwsgi;
    scgi_temp_path $TMP/prefix/scgi;
    push_buffer_size 1M;
    server {
        listen 127.0.0.1:$PORT;
        location /sub { set \$push_id \$arg_id; push_listener; }
        location /pub { set \$push_id \$arg_id; push_sender; }
    }
}
CONF
}
write_conf "include $ENABLED;"
/usr/sbin/nginx -t -p "$TMP/prefix" -c "$TMP/prefix/nginx.conf" >"$TMP/t.out" 2>&1 ||
    { cat "$TMP/t.out" >&2; die "nginx -t refused the configuration with $ENABLED"; }
grep -q 'test is successful' "$TMP/t.out" || { cat "$TMP/t.out" >&2; die "nginx -t said no success"; }
# ...and the load file is what makes the directives known
write_conf ""
if /usr/sbin/nginx -t -p "$TMP/prefix" -c "$TMP/prefix/nginx.conf" >"$TMP/t.out" 2>&1; then
    die "nginx -t accepted push_* directives without the load file"
fi
grep -q 'unknown directive "push_buffer_size"' "$TMP/t.out" || { cat "$TMP/t.out" >&2; die "unexpected nginx -t error"; }
log "nginx -t: ok with $ENABLED (and unknown directives without it)"

# 4. relay through /usr/sbin/nginx with the enabled load file
"$ROOT/scripts/probe-relay.sh" /usr/sbin/nginx "$ENABLED" || die "no relay through the packaged module"

# 5. remove, then purge: nothing of the package is left -----------------------
log "dpkg -r $PKG"
dpkg -r "$PKG" >"$TMP/remove.log" 2>&1 || { cat "$TMP/remove.log" >&2; die "dpkg -r failed"; }
installed && die "$PKG still installed after dpkg -r"
for f in "$SO" "$AVAILABLE" "$ENABLED"; do
    [ ! -e "$f" ] && [ ! -L "$f" ] || die "$f left after dpkg -r"
done
# Debian's module scripts keep a removed module's link as .removed (so that
# a reinstall restores what the admin had) until the package is purged.
[ -L "$ENABLED.removed" ] || die "dpkg -r did not keep $ENABLED.removed"
log "dpkg -P $PKG"
dpkg -P "$PKG" >"$TMP/purge.log" 2>&1 || { cat "$TMP/purge.log" >&2; die "dpkg -P failed"; }
known && die "dpkg still knows $PKG after purge"
while read -r f; do
    [ ! -e "$f" ] && [ ! -L "$f" ] || die "$f left after purge"
done <"$TMP/files"
ls -A /etc/nginx/modules-enabled >"$TMP/enabled.after"
diff -u "$TMP/enabled.before" "$TMP/enabled.after" >&2 ||
    die "/etc/nginx/modules-enabled differs from before the install"
[ ! -e "/usr/share/doc/$PKG" ] || die "/usr/share/doc/$PKG left after purge"
if ls /var/lib/dpkg/info/"$PKG".* >/dev/null 2>&1; then die "dpkg's records of $PKG left after purge"; fi
log "ok: installed, enabled, nginx -t, relayed, removed and purged without a trace ($((SECONDS - start)) s)"

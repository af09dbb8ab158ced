#!/usr/bin/env bash
# Install the Debian/Ubuntu packages the build needs, when they are missing.
# Usage: scripts/deps.sh [extra packages...]   (e.g. redis-server for the
# Redis tests; Debian's services of such packages are left stopped and
# disabled)
set -euo pipefail

pkgs=(gcc make libpcre2-dev libclang-dev libssl-dev zlib1g-dev pkg-config curl "$@")
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# The tests start their own redis-server on free ports, and use only
# promtool of the prometheus package: Debian's services must never run (nor
# start at boot) on this machine. Checked on every run, not only right
# after the install.
quiet_services() {
    [ "$(id -u)" -eq 0 ] || return 0
    for svc in redis-server prometheus; do
        dpkg-query -W -f='${Status}' "$svc" 2>/dev/null | grep -q "install ok installed" || continue
        if command -v systemctl >/dev/null 2>&1; then
            systemctl disable --now "$svc" >/dev/null 2>&1 || true
        fi
        if command -v update-rc.d >/dev/null 2>&1; then
            update-rc.d "$svc" disable >/dev/null 2>&1 || true
        fi
        service "$svc" stop >/dev/null 2>&1 || true
    done
}

if [ ${#missing[@]} -eq 0 ]; then
    quiet_services
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]}" >&2
    echo "run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# Installing nginx must not start Debian's nginx service (port 80 may be
# taken, and nothing here wants it): policy-rc.d says "no" for the install.
own_policy=
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=1
fi
trap '[ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d' EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
quiet_services
exit 0

#!/usr/bin/env bash
# Install the Debian/Ubuntu packages the build needs, when they are missing.
# Usage: scripts/deps.sh [extra packages...]
set -euo pipefail

pkgs=(gcc make libpcre2-dev libclang-dev libssl-dev zlib1g-dev pkg-config curl "$@")
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]}" >&2
    echo "run as root: apt-get update && apt-get install -y ${missing[*]}" >&2
    exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"

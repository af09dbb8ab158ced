#!/usr/bin/env bash
# Fetch nchan's browser client (NchanSubscriber.js, MIT, npm package
# "nchan") for the compatibility test; it is not part of this repository.
# Output: target/nchan-client/NchanSubscriber.js
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/target/nchan-client"
VERSION=1.0.10
SHA1=47aec2bd76ea9bb4fdea43b86d9247d05e37f10d
[ -f "$OUT/NchanSubscriber.js" ] && exit 0
command -v npm >/dev/null || { echo "npm is needed (Node.js)" >&2; exit 1; }
mkdir -p "$OUT"
cd "$OUT"
npm pack --silent "nchan@$VERSION" >/dev/null
echo "$SHA1  nchan-$VERSION.tgz" | sha1sum -c --quiet -
tar xzf "nchan-$VERSION.tgz" package/NchanSubscriber.js package/LICENCE
mv package/NchanSubscriber.js package/LICENCE .
rmdir package
rm "nchan-$VERSION.tgz"

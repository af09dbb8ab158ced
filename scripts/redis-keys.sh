#!/usr/bin/env bash
# Show every key ngx_http_push writes to a running Redis, for one namespace:
# key, type, TTL (seconds; -1 = none), what it is.
# Usage: scripts/redis-keys.sh [redis://[[user]:password@]host[:port][/db]] [namespace]
#        (defaults: redis://127.0.0.1:6379, push:)
set -euo pipefail
url=${1:-redis://127.0.0.1:6379}
ns=${2:-push:}
command -v redis-cli >/dev/null || { echo "redis-cli not found (apt-get install redis-tools)" >&2; exit 1; }

cat <<'LEGEND'
Keys of one channel share the hash tag {<namespace><channel id>} (one Redis
Cluster slot); the id includes push_channel_group as group/id.
  {T}:c               hash    the channel: created, inc, sender, req, seq, newest, t/g (newest id); a tombstone (dead, t, g) after DELETE
  {T}:m               list    stored message ids, oldest first (time:tag:expires)
  {T}:k:<time>:<tag>  string  one stored message (time:tag:ctlen:evlen:<content type><event name><body>)
  {T}:l               hash    held listeners per worker (count:deadline in ms, Redis clock)
  <namespace>epoch    string  the second this namespace's data began (data-loss marker)
Pub/sub channel (not a key): {T}:p  announcements (M inline, R by reference, C conflict, D deleted)

LEGEND

cli=(redis-cli -u "$url" --no-auth-warning)
# Glob characters in the namespace are matched literally.
pat=$(printf '%s' "$ns" | sed 's/[][*?\\]/\\&/g')
printf '%-60s %-7s %s\n' KEY TYPE TTL
{
    "${cli[@]}" --scan --pattern "{${pat}*"
    "${cli[@]}" --scan --pattern "${pat}epoch"
} | sort | while IFS= read -r key; do
    type=$("${cli[@]}" TYPE "$key")
    ttl=$("${cli[@]}" TTL "$key")
    printf '%-60s %-7s %s\n' "$key" "$type" "$ttl"
done

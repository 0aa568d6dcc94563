#!/usr/bin/env bash
# Runs `taskdeck demo` on a fresh data directory and samples the process's resident memory and
# the sizes of the store, the archive and the logs every 30 s: they should level off once
# retention (the demo keeps 10 minutes or 2,000 finished tasks) is removing as fast as the demo
# submits. Not in CI.
#
#   benches/demo_soak.sh [BINARY] [DURATION] [RATE]    (defaults: target/release/taskdeck 10m 20)
set -euo pipefail
bin=${1:-target/release/taskdeck}
duration=${2:-10m}
rate=${3:-20}
data=$(mktemp -d /tmp/taskdeck-soak.XXXXXX)
trap 'rm -rf "$data"' EXIT
"$bin" --data "$data" demo --rate "$rate" --duration "$duration" >"$data.out" 2>&1 &
pid=$!
kb() { du -sk "$1" 2>/dev/null | cut -f1 || echo 0; }
printf '%6s %10s %10s %12s %9s\n' time rss_MB store_MB archive_MB logs_MB
t=0
while kill -0 "$pid" 2>/dev/null; do
  sleep 30
  t=$((t + 30))
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
  [ -n "$rss" ] || break
  awk -v t="$t" -v r="$rss" -v s="$(kb "$data/store")" -v a="$(kb "$data/archive")" -v l="$(kb "$data/logs")" \
    'BEGIN { printf "%5ss %10.1f %10.1f %12.1f %9.1f\n", t, r/1024, s/1024, a/1024, l/1024 }'
done
wait "$pid" || true
tail -2 "$data.out"
rm -f "$data.out"

#!/usr/bin/env bash
# Steps per second with 1, 2 and 3 `taskdeck serve` processes sharing one PostgreSQL store,
# beside one process on sled, all with immediate durability (README, "Performance").
#
#   cargo build --release && benches/cluster.sh [TASKS] [SLEEP_MS] [CONCURRENCY]
#
# TASKS tasks (default 2000) of benches/cluster/bench.yaml (5 chained steps of SLEEP_MS ms,
# default 20) are submitted in equal batches through each server's API; the time runs from
# the first submit until the store holds no unfinished task. Each engine runs at most
# CONCURRENCY steps at once (default 64). The PostgreSQL URL comes from
# TASKDECK_BENCH_POSTGRES, else from .ci/postgres.sh (which may install and start a local
# server); each run uses a fresh schema.
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${1:-2000}
SLEEP_MS=${2:-20}
CONCURRENCY=${3:-64}
BIN=target/release/taskdeck
[ -x "$BIN" ] || { echo "build first: cargo build --release" >&2; exit 1; }
URL=${TASKDECK_BENCH_POSTGRES:-$(.ci/postgres.sh)}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
mkdir -p "$WORK/workflows"
sed "s/SLEEP_MS/$SLEEP_MS/g" benches/cluster/bench.yaml > "$WORK/workflows/bench.yaml"
python3 - "$TASKS" > "$WORK/all.jsonl" <<'PY'
import json, sys
for i in range(int(sys.argv[1])):
    print(json.dumps({"workflow": "bench/chain", "context": {"n": i}}))
PY

unfinished() { # $1: store ("" for sled), $2: a data directory
  if [ -n "$1" ]; then
    psql "${1%%\?*}" -qAtc "select count(*) from $3.tasks where state in ('pending','in_progress')"
  else
    TASKDECK_STORE= "$BIN" --data "$2" tasks --all --json \
      | python3 -c 'import json,sys; print(sum(1 for t in json.load(sys.stdin) if t["state"] in ("pending","in_progress")))'
  fi
}

run() { # $1: label, $2: processes, $3: store URL ("" for sled)
  local label=$1 n=$2 store=$3 schema=""
  if [ -n "$store" ]; then
    schema="bench_$(date +%s%N)"
    store="$store?schema=$schema"
  fi
  local pids=() dirs=()
  for i in $(seq 1 "$n"); do
    local dir="$WORK/$label-$i"
    mkdir -p "$dir"; chmod 700 "$dir"
    if [ "$i" -gt 1 ]; then cp -a "$WORK/$label-1/auth" "$WORK/$label-1/audit" "$WORK/$label-1/keys" "$dir/" 2>/dev/null || true; fi
    TASKDECK_STORE="$store" "$BIN" --data "$dir" --workflows "$WORK/workflows" --durability immediate \
      --concurrency "$CONCURRENCY" serve --listen 127.0.0.1:0 > "$dir.out" 2>&1 &
    pids+=($!); dirs+=("$dir")
    until grep -q "is at" "$dir.out" 2>/dev/null; do sleep 0.1; done
  done
  split -n "l/$n" -d "$WORK/all.jsonl" "$WORK/$label-part-"
  local start end
  start=$(date +%s.%N)
  local i=0 subs=()
  for part in "$WORK/$label-part-"*; do
    TASKDECK_STORE="$store" "$BIN" --data "${dirs[$i]}" submit --batch "$part" > /dev/null &
    subs+=($!)
    i=$((i + 1))
  done
  wait "${subs[@]}"
  while [ "$(unfinished "$store" "${dirs[0]}" "$schema")" != 0 ]; do sleep 0.2; done
  end=$(date +%s.%N)
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  python3 -c "s=$end-$start; print(f'{\"$label\":<14} {$TASKS*5/s:>8.0f} steps/s  ({$TASKS} tasks x 5 steps of ${SLEEP_MS} ms in {s:.1f} s)')"
}

echo "steps/s, $TASKS tasks x 5 chained steps of $SLEEP_MS ms, concurrency $CONCURRENCY per engine, immediate durability"
run sled-1 1 ""
run postgres-1 1 "$URL"
run postgres-2 2 "$URL"
run postgres-3 3 "$URL"

#!/usr/bin/env bash
# Counts the sync calls the engine makes per step, with strace, in both durability modes:
# 200 tasks of a 5-step chain of no-op steps (1,000 steps) submitted in one batch, then run by
# `taskdeck run --until-idle`. `immediate` must show fdatasync (stable storage) besides sled's
# sync_file_range, and fewer syncs than steps (one per turn, shared by the steps of the turn).
#
# Usage: benches/fsync.sh [path/to/taskdeck]   (default target/release/taskdeck; needs strace)
set -euo pipefail
bin=${1:-target/release/taskdeck}
[ -x "$bin" ] || { echo "build it first: cargo build --release" >&2; exit 1; }
command -v strace >/dev/null || { echo "strace is not installed (apt install strace)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/wf"
cat > "$work/wf/chain.yaml" <<'YAML'
namespace: bench
name: chain5
version: 1.0.0
steps:
  - { name: s0, handler: simulate }
  - { name: s1, handler: simulate, depends_on: [s0] }
  - { name: s2, handler: simulate, depends_on: [s1] }
  - { name: s3, handler: simulate, depends_on: [s2] }
  - { name: s4, handler: simulate, depends_on: [s3] }
YAML
for i in $(seq 200); do echo '{}'; done > "$work/batch.jsonl"
for mode in immediate relaxed; do
  data="$work/data-$mode"
  "$bin" --data "$data" --workflows "$work/wf" --no-api submit bench/chain5 --batch "$work/batch.jsonl" > /dev/null
  strace -f -c -o "$work/strace-$mode" -e trace=fsync,fdatasync,sync_file_range \
    "$bin" --data "$data" --workflows "$work/wf" --durability "$mode" --no-api run --until-idle > /dev/null
  echo "== $mode: 1,000 steps"
  awk '/fsync|fdatasync|sync_file_range/ { printf "  %-16s %6d calls  %.2f per step\n", $NF, $4, $4 / 1000 }' "$work/strace-$mode"
done

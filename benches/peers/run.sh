#!/usr/bin/env bash
# Side by side: Taskdeck and DBOS Transact (PyPI `dbos`, SQLite system database) on issue 10's
# three workloads — a 300-step sequential workflow, 1,000 workflows of 5 steps, a 1,000-wide
# fan-out with a join — alternating, ROUNDS times, in one run; then the median of each and the
# ratio, and the syncs each engine makes per step (strace). Not in CI (needs PyPI and minutes).
#
# Usage: benches/peers/run.sh [ROUNDS]   (from the repository root; default 3)
set -euo pipefail
rounds=${1:-3}
venv=${DBOS_VENV:-target/peers-venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q 'dbos>=3,<4'
cargo build --release -q
out=$(mktemp -d)
taskdeck_round() {
  cargo bench -q --bench engine -- --warm-up-time 1 --measurement-time 3 \
    'chain/300$|fan_out/1000$|durable_throughput/immediate' > /dev/null 2>&1
  python3 - <<'PY'
import json
def median_s(path):
    return json.load(open(f"target/criterion/{path}/new/estimates.json"))["median"]["point_estimate"] / 1e9
print(json.dumps({
    "chain_300": median_s("chain/300"),
    "tasks_1000x5": median_s("durable_throughput/immediate"),
    "fan_out_1000": median_s("fan_out/1000"),
}))
PY
}
for r in $(seq "$rounds"); do
  taskdeck_round > "$out/taskdeck-$r.json"
  (cd "$out" && "$OLDPWD/$venv/bin/python" "$OLDPWD/benches/peers/dbos_bench.py" 2>/dev/null | tail -1) > "$out/dbos-$r.json"
  echo "round $r: taskdeck $(cat "$out/taskdeck-$r.json")  dbos $(cat "$out/dbos-$r.json")"
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
steps = {"chain_300": 300, "tasks_1000x5": 5000, "fan_out_1000": 1002}
load = lambda who: [json.load(open(f"{out}/{who}-{r}.json")) for r in range(1, rounds + 1)]
t, d = load("taskdeck"), load("dbos")
print(f"{'workload':<14} {'taskdeck':>12} {'dbos':>12} {'ratio':>8}")
for k, n in steps.items():
    a = statistics.median(x[k] for x in t)
    b = statistics.median(x[k] for x in d)
    print(f"{k:<14} {a*1e3:>9.1f} ms {b*1e3:>9.1f} ms {b/a:>7.1f}x   ({n/a:,.0f} vs {n/b:,.0f} steps/s)")
PY
echo "syncs per step, Taskdeck (benches/fsync.sh):"
benches/fsync.sh | sed 's/^/  /'
if command -v strace > /dev/null; then
  echo "syncs per step, DBOS (the three workloads, 6,302 steps):"
  (cd "$out" && strace -f -c -o "$out/strace-dbos" -e trace=fsync,fdatasync,sync_file_range \
    "$OLDPWD/$venv/bin/python" "$OLDPWD/benches/peers/dbos_bench.py" > /dev/null 2>&1) || true
  awk '/fsync|fdatasync|sync_file_range/ { printf "  %-16s %6d calls  %.2f per step\n", $NF, $4, $4 / 6302 }' "$out/strace-dbos"
fi

"""The three workloads of issue 10 on DBOS Transact (SQLite system database), timed in seconds.

Run by benches/peers/run.sh, which installs DBOS in a virtualenv; prints one JSON object:
{"chain_300": s, "tasks_1000x5": s, "fan_out_1000": s}. Steps are no-ops, as in Taskdeck's
benchmarks (`simulate` with no config), so both measure the engine and its durable store.
"""
import json
import sys
import tempfile
import time

from dbos import DBOS

work = tempfile.mkdtemp()
DBOS(config={"name": "peer-bench", "system_database_url": f"sqlite:///{work}/dbos.sqlite"})


@DBOS.step()
def noop(i: int) -> int:
    return i


@DBOS.workflow()
def chain(n: int) -> int:
    for i in range(n):
        noop(i)
    return n


@DBOS.workflow()
def leaf(i: int) -> int:
    return noop(i)


@DBOS.workflow()
def fan_out(n: int) -> int:
    noop(-1)  # the root
    handles = [DBOS.start_workflow(leaf, i) for i in range(n)]
    total = sum(h.get_result() for h in handles)
    noop(-2)  # the join
    return total


def timed(f) -> float:
    start = time.perf_counter()
    f()
    return time.perf_counter() - start


DBOS.launch()
result = {
    "chain_300": timed(lambda: chain(300)),
    "tasks_1000x5": timed(lambda: [h.get_result() for h in [DBOS.start_workflow(chain, 5) for _ in range(1000)]]),
    "fan_out_1000": timed(lambda: fan_out(1000)),
}
print(json.dumps(result))
sys.stdout.flush()
DBOS.destroy()

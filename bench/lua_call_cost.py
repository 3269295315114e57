#!/usr/bin/env python
"""What one command costs Redis inside a script: ``python bench/lua_call_cost.py [--calls 300] [--rounds 5]``.

Starts its own redis-server (``clusterq.testing.Standalone``), writes 20 job records shaped like a leased
job's (seven fields, a listpack hash), then runs small scripts that each do one thing for those 20 jobs
(the worker's call size, ``clusterq.worker.outcomes.SCRIPT_JOBS``) with the ARGV a ``complete`` call sends
(8 values per job), and prints the median of the server's own time in EVALSHA per job (``INFO
commandstats`` usec). It prices the parts of ``lease.lua`` and ``complete.lua`` (docs/worker-throughput.md,
"Where a drained job's CPU goes"): a script's cost is mostly the commands the record model needs, each a
``redis.call`` of about a microsecond, and a field asked of a hash that lacks it still scans the hash.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
try:
    import clusterq  # noqa: F401
except ImportError:  # a checkout without installing: use its src/
    sys.path.insert(0, str(BENCH_DIR.parent / "src"))

from clusterq.state.keys import QueueKeys  # noqa: E402
from clusterq.testing import Standalone  # noqa: E402

JOBS = 20
PREFIX = QueueKeys("bench").job_prefix  # the records' real key shape
KEY = "build the job's key"
LOOP = "local p = KEYS[1]\nfor i = 1, #ARGV, 8 do {body} end\nreturn 0"
SCRIPTS = {
    "nothing (the call and its ARGV)": "return 0",
    "read the 8 ARGV values of a job": LOOP.format(body="local a, b, c, d, e, f, g, h = ARGV[i], ARGV[i + 1], "
                                                        "ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5], "
                                                        "ARGV[i + 6], ARGV[i + 7]"),
    KEY: LOOP.format(body="local key = p .. ARGV[i]"),
    "EXISTS key": LOOP.format(body="redis.call('EXISTS', p .. ARGV[i])"),
    "HMGET key, 1 field": LOOP.format(body="redis.call('HMGET', p .. ARGV[i], 'n')"),
    "HMGET key, 6 fields (complete)": LOOP.format(body="redis.call('HMGET', p .. ARGV[i], 'n', 'hk', 'hw', 'hl', "
                                                       "'dd', 'lk')"),
    "HMGET key, 12 fields (lease)": LOOP.format(body="redis.call('HMGET', p .. ARGV[i], 's', 'f', 'p', 'o', 'n', "
                                                     "'x', 'sg', 'lk', 'te', 'tb', 'hd', 'rt')"),
    "HSET key, 3 fields (complete)": LOOP.format(body="redis.call('HSET', p .. ARGV[i], 'r', ARGV[i + 3], 's', "
                                                      "'finished', 'te', '1765000000000')"),
    "PEXPIRE key": LOOP.format(body="redis.call('PEXPIRE', p .. ARGV[i], '500000')"),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=300, help="script calls per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="measurements per script (the median is printed)")
    args = parser.parse_args()
    server = Standalone().start()
    try:
        client = server.client()
        ids = [f"{n:08x}-0000-4000-8000-{n:012x}" for n in range(JOBS)]
        for job_id in ids:
            client.hset(PREFIX + job_id, mapping={"s": "started", "f": "peer_tasks.plain.noop", "c": "1765000000000",
                                                  "o": '{"rt":500}', "n": "1", "ts": "1765000000000",
                                                  "w": "host.12345.abcdef"})
        argv = [value for job_id in ids for value in (job_id, "1", "finished", "null", "500000", "", "10", "")]
        print(f"{JOBS} jobs per call, {args.calls} calls x {args.rounds} rounds: EVALSHA usec per job (median), "
              f"and what the command adds to building the key")
        medians: dict[str, float] = {}
        for name, script in SCRIPTS.items():
            sha = client.script_load(script)
            figures = []
            for _ in range(args.rounds):
                client.config_resetstat()
                for _ in range(args.calls):
                    client.evalsha(sha, 1, PREFIX, *argv)
                usec = client.info("commandstats")["cmdstat_evalsha"]["usec"]
                figures.append(usec / (args.calls * JOBS))
            medians[name] = statistics.median(figures)
            base = medians.get(KEY)
            added = f"  +{medians[name] - base:5.2f}" if base is not None and name != KEY else ""
            print(f"  {name:<36} {medians[name]:6.2f}{added}")
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

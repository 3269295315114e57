#!/usr/bin/env python
"""A/B of the hot scripts' own cost: ``python bench/script_cost.py OLD_SCRIPTS_DIR [-n 5000] [--rounds 5]``.

Runs enqueue (one job per call), lease and complete (``--batch`` jobs per call, the worker's shape) from
two copies of ``src/clusterq/state/scripts`` (e.g. ``git archive <commit> src/clusterq/state/scripts``
unpacked somewhere) against one fresh ``Standalone``, in alternating rounds so that both meet the same
load, and prints per script the median of the server's own time in EVALSHA per job (``INFO commandstats``
usec, which includes the commands the script runs) and the commands per job. No network, no client in
the figure: what the script itself costs Redis. The enqueue calls of a directory whose enqueue.lua has
no ``now_ms`` argument are sent without it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
try:
    import clusterq  # noqa: F401
except ImportError:  # a checkout without installing: use its src/
    sys.path.insert(0, str(BENCH_DIR.parent / "src"))

from clusterq.state import keys as K  # noqa: E402
from clusterq.state import store as ST  # noqa: E402
from clusterq.state import transitions as TR  # noqa: E402
from clusterq.state.scripts import INCLUDE  # noqa: E402
from clusterq.testing import Standalone  # noqa: E402

NEW = Path(TR.__file__).parent / "scripts"


def expand(directory: Path, name: str, seen: set[str] | None = None) -> bytes:
    """``directory/name.lua`` with its include lines expanded, as clusterq.state.scripts does."""
    seen = set() if seen is None else seen
    out = []
    for line in (directory / f"{name}.lua").read_bytes().rstrip(b"\n").split(b"\n"):
        if line.startswith(INCLUDE):
            part = line[len(INCLUDE):].strip().decode()
            if part in seen:
                continue
            seen.add(part)
            line = expand(directory, f"lib/{part}", seen)
        out.append(line)
    return b"\n".join(out)


def stats(client: Any) -> dict[str, tuple[int, int]]:
    return {k[8:]: (v["calls"], v["usec"]) for k, v in client.info("commandstats").items()}


def delta(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]], n: int) -> tuple[float, float]:
    usec = (after["evalsha"][1] - before.get("evalsha", (0, 0))[1]) / n
    calls = sum(v[0] - before.get(k, (0, 0))[0] for k, v in after.items() if k != "info") / n
    return usec, calls


def one_round(client: Any, shas: dict[str, str], with_now: bool, n: int, batch: int) -> dict[str, tuple[float, float]]:
    qk = K.QueueKeys("bench")
    client.execute_command("FLUSHALL")  # keeps the script cache
    out = {}
    enqueue = TR.ENQUEUE.call(qk, (), keys=ST._counts(qk), at_front="0", now_ms=0, minute=0)
    before = stats(client)
    for i in range(n):
        job = (f"j{i}", "peer_tasks.plain.noop", "", '{"rt":500}', "", "0", "", "1", "", "0", "", "")
        now_ms = int(time.time() * 1000)
        args = ("0", now_ms, now_ms // 60000, *job) if with_now else ("0", *job)
        client.evalsha(shas["enqueue"], len(enqueue.keys), *enqueue.keys, *args)
    out["enqueue"] = delta(before, stats(client), n)
    lease = TR.LEASE.call(qk, lease_ms=60000, count=batch, worker="w1", failure_keep_ms=86400000)
    leased = []
    before = stats(client)
    while True:
        reply = client.evalsha(shas["lease"], len(lease.keys), *lease.keys, *lease.args)
        if len(reply) <= 2:
            break
        leased += [(reply[i], reply[i + 1]) for i in range(2, len(reply), 8)]
    out["lease"] = delta(before, stats(client), n)
    before = stats(client)
    for i in range(0, len(leased), batch):
        call = TR.COMPLETE.call(qk, [(jid, token, "finished", b"", 500000, "", 10, "") for jid, token
                                     in leased[i : i + batch]], keys=ST._counts(qk))
        reply = client.evalsha(shas["complete"], len(call.keys), *call.keys, *call.args)
        assert all(int(code) == 1 for code in reply), reply
    out["complete"] = delta(before, stats(client), n)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="the other scripts directory (A); B is this checkout's")
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=50, help="jobs per lease and complete call (default 50)")
    args = parser.parse_args(argv)
    server = Standalone().start()
    try:
        client = server.client(decode_responses=True)
        variants = {}
        for label, directory in (("A", args.old), ("B", NEW)):
            shas = {name: client.script_load(expand(directory, name)) for name in ("enqueue", "lease", "complete")}
            with_now = b"ARGV[3] minute" in (directory / "enqueue.lua").read_bytes()
            variants[label] = (shas, with_now)
        results: dict[str, dict[str, list[tuple[float, float]]]] = {"A": {}, "B": {}}
        for _ in range(args.rounds):
            for label, (shas, with_now) in variants.items():
                for name, figure in one_round(client, shas, with_now, args.n, args.batch).items():
                    results[label].setdefault(name, []).append(figure)
        print(f"n={args.n} per round, {args.rounds} rounds, batch {args.batch}: EVALSHA usec per job (median), "
              "commands per job")
        for name in ("enqueue", "lease", "complete"):
            row = []
            for label in ("A", "B"):
                figures = results[label][name]
                row.append(f"{label} {statistics.median(f[0] for f in figures):6.2f} us "
                           f"{statistics.median(f[1] for f in figures):6.3f} cmds")
            print(f"{name:>9}: " + "   ".join(row))
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

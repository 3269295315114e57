"""``python bench/run.py``: run clusterq and its peers on the same fresh server and report."""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

import clusterq

from . import limits, peersenv, report
from .config import BENCH_DIR, DEFAULT_BACKLOG, LOG_DIR, QUICK_PEERS, Settings, quick
from .procs import DriverError, Runtime
from .suite import SystemResult, SystemRun, run_backlog
from .systems import BASELINE, CLUSTERQ, FAMILIES, System, select
from .targets import Target, primary_of, start_cluster, start_standalone

_t0 = time.monotonic()


def log(message: str) -> None:
    elapsed = time.monotonic() - _t0
    print(f"[{int(elapsed // 60):02d}:{elapsed % 60:04.1f}] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(prog="python bench/run.py", description=__doc__)
    parser.add_argument("--jobs", type=int, help="N, jobs per run, the same for every system (default 10,000; "
                                                 "quick 2,000)")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few minutes: N = 2,000, 1 repetition, "
                                                             "no cluster")
    parser.add_argument("--reps", type=int, help="repetitions of each measurement (default 3; quick 1)")
    parser.add_argument("--peers",
                        help=f"comma-separated peers to run (default: all of {','.join(FAMILIES)}; with --quick "
                             f"{','.join(QUICK_PEERS)}, the variants that are never a peer's best; "
                             "'none' for clusterq alone; variants like rq-simple also work)")
    parser.add_argument("--json", type=Path, help="where to write the JSON (default bench/results/latest.json)")
    parser.add_argument("--cluster", action=argparse.BooleanOptionalAction, default=None,
                        help="also run the table for clusterq on a local 3-primary cluster (default: on; "
                             "off with --quick)")
    parser.add_argument("--backlog", nargs="?", const=",".join(str(n) for n in DEFAULT_BACKLOG), default="",
                        metavar="SIZES", help="also measure clusterq's throughput and Redis CPU/job with this many "
                                              "jobs waiting (default sizes 10000,100000,1000000)")
    args = parser.parse_args(argv)
    settings = Settings()
    if args.quick:
        settings = quick(settings)
    chosen = args.peers if args.peers is not None else ",".join(QUICK_PEERS if args.quick else FAMILIES)
    peers = tuple(p.strip() for p in chosen.split(",") if p.strip())
    changes: dict[str, Any] = {"peers": peers or ("none",)}
    if args.cluster is not None:
        changes["cluster"] = args.cluster
    if args.backlog:
        try:
            changes["backlog_sizes"] = tuple(int(x.replace("_", "")) for x in args.backlog.split(",") if x.strip())
        except ValueError:
            parser.error(f"--backlog takes comma-separated job counts, got {args.backlog!r}")
    if args.jobs:
        changes["jobs"] = args.jobs
    if args.reps:
        changes["reps"] = args.reps
    if args.json:
        changes["json_path"] = args.json
    return dataclasses.replace(settings, **changes)


def clusterq_runtime() -> Runtime:
    """Drivers for clusterq run on this interpreter, importing the same clusterq as we do."""
    source_root = str(Path(clusterq.__file__).resolve().parent.parent)
    inherited = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return Runtime(sys.executable, peersenv.runtime_env([str(BENCH_DIR), source_root, *inherited]))


def run_cluster(cq_system: System, cluster: Target, settings: Settings, runtimes: dict[str, Runtime], *,
                baseline_system: System | None) -> tuple[SystemResult, SystemResult | None]:
    """clusterq's table on the cluster, and (with the redis-py baseline among the systems) the bare loop on
    the same cluster, to the primary of the first queue, with the repetitions interleaved: the cluster
    row's limit measured on the same topology and in the same minutes, not on the standalone server."""
    cq_run = SystemRun(cq_system, runtimes[CLUSTERQ], cluster, settings, log, runtimes[CLUSTERQ])
    runs = [cq_run]
    base_run: SystemRun | None = None
    node: Target | None = None
    if baseline_system is not None and not settings.quick:
        size = cq_run.measure_payload()
        if size:
            node, key = primary_of(cluster, cluster.queues[0])
            base_run = SystemRun(baseline_system, runtimes["redispy"], node, settings, log, runtimes[CLUSTERQ])
            payload = rpush_payload(size, key)
            base_run.set_payload(payload)
            base_run.bench.extra_params["key"] = key
            log(f"   redis-py limit on the cluster: RPUSH {key} to port {node.ports[0]}, values of {payload:,} bytes")
            runs.append(base_run)
    try:
        for index in range(settings.reps):
            for run in runs:
                if run.result.ok:
                    run.rep(index)
        cq_run.extras()
    finally:
        if node is not None:
            node.stop()
    cq_run.result.key = "clusterq-cluster"
    return cq_run.result, base_run.result if base_run is not None else None


def rpush_payload(request_bytes: float, key: str = "bench:redis-py-baseline") -> int:
    """The value length that makes ``RPUSH key value`` (RESP) exactly ``request_bytes`` long."""
    wanted = round(request_bytes)
    for size in range(1, max(2, wanted)):
        total = len(f"*3\r\n$5\r\nRPUSH\r\n${len(key)}\r\n{key}\r\n${size}\r\n") + size + 2
        if total >= wanted:
            return size
    return 1


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    try:
        systems = select(settings.peers)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    started_at = time.strftime("%Y-%m-%d %H:%M:%S")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old_log in LOG_DIR.glob("[0-9][0-9][0-9][0-9]-*.log"):  # driver logs of the previous run
        old_log.unlink()
    log(f"clusterq bench: {'quick' if settings.quick else 'full'} run, N={settings.jobs:,}, reps={settings.reps}; "
        f"clusterq from {Path(clusterq.__file__).parent}; logs in {LOG_DIR}")
    load_start = os.getloadavg()
    if load_start[0] > 0.5:
        log(f"note: the machine is busy before the run (load average {load_start[0]:.2f}); "
            "figures will be noisier and lower than on an idle machine")
    families = sorted({s.family for s in systems if s.is_peer})
    peers_env = peersenv.ensure(families, log)
    for family, reason in peers_env.failures.items():
        log(f"peer {family} unavailable: {reason}")
    if peers_env.versions:
        log("peers: " + ", ".join(f"{k} {v}" for k, v in sorted(peers_env.versions.items())))

    report.SLOWLOG_FLOOR_MS = settings.slowlog_us / 1000
    runtimes = {CLUSTERQ: clusterq_runtime()}
    runtimes["redispy"] = runtimes[CLUSTERQ]
    if peers_env.python:
        peer_runtime = Runtime(peers_env.python, peersenv.runtime_env([str(BENCH_DIR)]))
        runtimes.update({family: peer_runtime for family in families})

    standalone = start_standalone()
    server = standalone.server_version()
    log(f"server: {server} on port {standalone.ports[0]}")
    results: list[SystemResult] = []
    backlog: SystemResult | None = None
    cluster_result: SystemResult | None = None
    cluster_baseline: SystemResult | None = None
    cluster_queues: list[str] = []
    limit_figures: dict[str, Any] = {}
    try:
        runs: list[SystemRun] = []
        for system in systems:
            if system.family in peers_env.failures:
                results.append(SystemResult(system.key, system.note, f"failed: {peers_env.failures[system.family]}"))
                continue
            run = SystemRun(system, runtimes[system.family], standalone, settings, log, runtimes[CLUSTERQ])
            runs.append(run)
            results.append(run.result)
        cq_run = runs[0]
        baseline_run = next((r for r in runs if r.system.key == BASELINE), None)
        if baseline_run is not None:
            log("== clusterq: bytes of one enqueue request (for the redis-py limit)")
            standalone.flush()
            size = cq_run.measure_payload()
            if size:
                payload = rpush_payload(size)
                baseline_run.set_payload(payload)
                log(f"   redis-py limit: RPUSH values of {payload:,} bytes (requests of {size:,.0f} bytes)")
            else:
                baseline_run.result.status = "failed: clusterq's request size unknown"
        for index in range(settings.reps):
            log(f"== throughput run {index + 1} of {settings.reps}: every system, one after the other")
            for run in runs:
                if run.result.ok:
                    standalone.flush()
                    run.rep(index)
        for run in runs:
            if run.result.ok and run.system.has_worker:
                log(f"== {run.system.key}: probes ({run.system.note})")
                standalone.flush()
                run.extras()
        for run in runs:
            log(f"   {run.system.key}: {run.result.seconds:.0f} s ({run.result.status})")
        if runs[0].result.ok:
            log("== limits: start-up, memory layout and PING floors on this machine and server")
            try:
                limit_figures = limits.measure(standalone.url, runtimes[CLUSTERQ], settings.jobs, log)
            except (OSError, ValueError, KeyError, redis.RedisError, subprocess.SubprocessError,
                    DriverError) as exc:
                log(f"   limits not measured: {type(exc).__name__}: {exc}")
        cq_system = systems[0]
        if settings.backlog_sizes:
            log(f"== clusterq backlog: {', '.join(f'{n:,}' for n in settings.backlog_sizes)} jobs waiting")
            backlog = run_backlog(runtimes[CLUSTERQ], cq_system, standalone, settings, log)
    finally:
        standalone.stop()
    if settings.cluster:
        log(f"== clusterq on a local 3-primary cluster, {settings.cluster_queues} queues")
        cluster: Target | None = None
        try:
            cluster = start_cluster(settings.cluster_queues)
            cluster_queues = cluster.queues
            log(f"   queues {', '.join(cluster_queues)} on ports {cluster.ports}")
            cluster_result, cluster_baseline = run_cluster(cq_system, cluster, settings, runtimes,
                                                           baseline_system=next((s for s in systems if s.is_baseline),
                                                                                None))
        finally:
            if cluster is not None:
                cluster.stop()

    duration = time.monotonic() - _t0
    load_end = os.getloadavg()
    table, comparisons = report.main_table(results)
    peers = [r for r in results if r.key != CLUSTERQ]
    out = [f"clusterq bench, {started_at}, {server}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
           f"{'quick' if settings.quick else 'full'} run, median of {settings.reps}, total {duration / 60:.1f} min, "
           f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end",
           "", table, "", report.limits_lines(limit_figures, results, comparisons, settings.jobs), "",
           report.rss_lines(results), "", report.slowlog_lines(results), "",
           "systems: " + "; ".join(f"{r.key}: {r.note}" for r in results)]
    if backlog is not None:
        out += ["", report.backlog_table(backlog)]
    cluster_comparisons: dict[str, report.Comparison] = {}
    if cluster_result is not None:
        cluster_text, cluster_comparisons = report.cluster_table(results[0], cluster_result, peers, cluster_queues,
                                                                 cluster_baseline)
        out += ["", f"clusterq on a local 3-primary cluster (queues {', '.join(cluster_queues)}); the peers have no "
                    "cluster support (n/a): ratios are against the best peer on the standalone server"
                    + (", and the bare redis-py loop's against the same loop run on the cluster, to the primary of "
                       f"{cluster_queues[0]!r}, in the same repetitions" if cluster_baseline is not None else ""),
                cluster_text]
    failed = report.failures([*results, *(x for x in (backlog, cluster_result) if x is not None)])
    if failed:
        out += ["", failed]
    print("\n".join(out))

    document = {
        "meta": {"started": started_at, "duration_s": round(duration, 1), "server": server,
                 "cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                 "clusterq": clusterq.__version__, "clusterq_path": str(Path(clusterq.__file__).parent),
                 "peers": peers_env.versions,
                 "load_average_start": load_start, "load_average_end": load_end,
                 "settings": {k: (str(v) if isinstance(v, Path) else v)
                              for k, v in dataclasses.asdict(settings).items()}},
        "systems": {r.key: r.to_json() for r in results},
        "comparison": {k: c.to_json() for k, c in comparisons.items()},
        "limits": limit_figures,
        "backlog": backlog.to_json() if backlog else None,
        "cluster": ({"queues": cluster_queues, **cluster_result.to_json(),
                     "comparison": {k: c.to_json() for k, c in cluster_comparisons.items()},
                     "baseline": cluster_baseline.to_json() if cluster_baseline else None}
                    if cluster_result else None),
    }
    report.write_json(settings.json_path, document)
    log(f"wrote {settings.json_path}; total {duration / 60:.1f} min")
    return 0

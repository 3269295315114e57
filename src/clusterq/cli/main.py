"""The ``clusterq`` command: a thin layer over the public API (it never talks to Redis itself).

    clusterq worker [-u URL] [--burst] [--with-cron MODULE] QUEUE [QUEUE ...]
    clusterq cron [-u URL] MODULE | --list | --remove NAME | --run-now NAME
    clusterq info [-u URL] [--interval S]
    clusterq enqueue [-u URL] QUEUE FUNCTION [ARG ...]
    clusterq empty [-u URL] QUEUE ... | --all [--yes]
    clusterq requeue [-u URL] QUEUE [JOB_ID ...] [--include-stopped] | --handle HANDLE ...
    clusterq suspend|resume [-u URL] [QUEUE ...]
    clusterq stop [-u URL] [--reason TEXT] HANDLE
    clusterq dev [--sentinel | --cluster]
    clusterq demo [--cluster] [--jobs N]
    clusterq dashboard [-u URL] [--host H] [--port P] [--root-path P] [--auth-file PATH] [--read-only] [--insecure]
    clusterq completion bash|zsh|fish

The URL comes from ``--url``, else ``$CLUSTERQ_URL``, else a settings module's ``URL`` (``--settings``
or ``$CLUSTERQ_SETTINGS``), else ``redis://127.0.0.1:6379/0``; without ``--url`` the server used is
named on stderr. ``-q`` is always ``--quiet`` and ``-Q`` always ``--queue``; ``-v`` turns on clusterq's
own debug logs (not redis-py's).
"""

from __future__ import annotations

import argparse
import gc
import getpass
import importlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from clusterq import __version__
from clusterq.api.control import resume, suspend
from clusterq.api.job import Job, JobStatus, Progress
from clusterq.api.partitioned_queue import PartitionedQueue, open_queue
from clusterq.api.partitions import layout, resolve_partitions
from clusterq.api.queue import Queue
from clusterq.cli.completion import SHELLS
from clusterq.cli.completion import script as completion_script
from clusterq.connection.server_checks import memory_of_primaries, server_warnings
from clusterq.connection.sync import DEFAULT_URL, REDIS_ERRORS, URL_ENV, connect, describe, parse_url
from clusterq.exceptions import ClusterQError, NoSuchJobError, WorkerNameInUse
from clusterq.scheduling.buffers import load_buffers
from clusterq.scheduling.periodic import (
    CronScheduler,
    Periodic,
    PeriodicInfo,
    list_periodic,
    load_periodic,
    remove_periodic,
    run_periodic_now,
)
from clusterq.signing import KEY_ENV, read_key_file
from clusterq.worker.pools.factory import POOL_KINDS
from clusterq.worker.settings import DEFAULT_LEASE_S, ROUND_JOBS
from clusterq.worker.worker import Worker, list_workers

# Named exit codes (Dramatiq's habit): scripts and supervisors can tell failures apart.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONNECTION = 3
EXIT_NAME_IN_USE = 4  # another running worker has this --name

SETTINGS_ENV = "CLUSTERQ_SETTINGS"
NOTIFY_CONFIG_ENV = "CLUSTERQ_NOTIFY_CONFIG"
"""clusterq.observability.notify.CONFIG_ENV, named here so a worker without notifications does not import them."""


def _settings(args: argparse.Namespace) -> Any:
    path = getattr(args, "settings", None) or os.environ.get(SETTINGS_ENV)
    if not path:
        return None
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(path)
    except Exception as exc:  # a one-line error, like every other mistake in the command line
        raise ClusterQError(f"cannot import settings module {path!r}: {type(exc).__name__}: {exc}") from None


def _setting(args: argparse.Namespace, name: str, default: Any = None) -> Any:
    settings = _settings(args)
    return getattr(settings, name, default) if settings is not None else default


def resolve_url(args: argparse.Namespace) -> str:
    """The URL to use; said on stderr (once, never with its password) when ``--url`` did not give it."""
    given = getattr(args, "url", None)
    if given:
        return str(given)
    for source, url in ((f"${URL_ENV}", os.environ.get(URL_ENV)), ("the settings' URL", _setting(args, "URL")),
                        ("the settings' REDIS_URL", _setting(args, "REDIS_URL")), ("the default", DEFAULT_URL)):
        if url:
            if not getattr(args, "_url_said", False):
                args._url_said = True
                try:
                    where = parse_url(url).describe()
                except ClusterQError:
                    where = "an invalid URL"  # reported by the command itself
                print(f"clusterq: using {where} ({source}; -u URL to choose)", file=sys.stderr)
            return str(url)
    return DEFAULT_URL


def signing_keys(args: argparse.Namespace) -> list[bytes] | None:
    """Keys from ``--signing-key-file`` (repeatable: the first signs, all verify), else ``$CLUSTERQ_SIGNING_KEY``."""
    files = getattr(args, "signing_key_file", None) or []
    try:
        keys = [read_key_file(path) for path in files]
    except (OSError, ValueError) as exc:
        raise ClusterQError(f"cannot read the signing key: {exc}") from None
    if not keys and os.environ.get(KEY_ENV):
        keys = [os.environ[KEY_ENV].encode()]
    return keys or None


def _add_signing(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--signing-key-file", action="append", metavar="PATH",
                        help=f"HMAC key for job signatures (default: ${KEY_ENV}); repeat to accept old keys")


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-u", "--url", help=f"Redis URL (default: ${URL_ENV} or {DEFAULT_URL})")
    parser.add_argument("--settings", help=f"settings module by dotted path (or ${SETTINGS_ENV})")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="clusterq's debug logs (every job); other libraries stay at INFO")
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings and errors only")


def cmd_worker(args: argparse.Namespace) -> int:
    queues = args.queues or _setting(args, "QUEUES") or ["default"]
    sys.path.insert(0, os.getcwd())  # like rq: job modules are found from where the worker starts
    try:
        lanes = [parse_dedicated(spec, args.pool) for spec in args.dedicated or ()]
    except ValueError as exc:
        print(f"clusterq: {exc}", file=sys.stderr)
        return EXIT_USAGE
    imports = _setting(args, "IMPORTS", ())
    for module in [*(args.imports or ()), *([imports] if isinstance(imports, str) else imports)]:
        # Before the pool forks: its children start with the job modules loaded, so a worker's first job of
        # each function does not wait for its import (milliseconds, in the job's enqueue-to-start time).
        try:
            importlib.import_module(module)
        except ImportError as exc:
            print(f"clusterq: --import {module}: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_USAGE
    try:
        worker = _make_worker(args, queues, lanes)
    except ValueError as exc:  # a bad option value (-c 0, a queue listed twice): one line, not a traceback
        if isinstance(exc, ClusterQError):
            raise
        print(f"clusterq: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # What exists now (interpreter, redis-py, clusterq, the app's hooks) lives as long as the worker: out of the
    # cyclic collector's sight, a full collection no longer walks it (a pause of ~20 ms, in the middle of a
    # job's hand-off when it falls there), and the pool's children, forked next, do not copy the pages such a
    # collection would write to. Given back to the collector when the worker returns (the command may run
    # inside a longer-lived process: a Flask or Django command, a test); a process that froze its heap itself
    # is left as it is. A Worker built in an application is not frozen.
    freeze = gc.get_freeze_count() == 0
    if freeze:
        gc.freeze()
    try:
        worker.work(burst=args.burst, max_jobs=args.max_jobs)
    finally:
        if freeze:
            gc.unfreeze()
    return EXIT_OK


def _make_worker(args: argparse.Namespace, queues: list[str], lanes: list[tuple[list[str], str, int | None]]) -> Worker:
    periodic = _periodic_jobs(args, args.with_cron) if args.with_cron else ()
    metrics = _metrics_hooks(args)
    notify = _notify_hooks(args, metrics)
    served = {q for spec in lanes for q in spec[0]} | set(queues)
    notify_lanes = [n.lane() for n in notify if n.settings.lane and n.queue not in served]
    return Worker(
        queues,
        resolve_url(args),
        pool=args.pool,
        concurrency=args.concurrency,
        lanes=[*lanes, *notify_lanes],
        max_jobs_per_child=args.max_jobs_per_child,
        max_memory_mb=args.max_memory_per_child,
        memory_limit_mb=args.memory_limit_per_child,
        name=args.name,
        allow=args.allow or _setting(args, "ALLOW"),
        lease_s=args.lease_s or _setting(args, "LEASE_S", DEFAULT_LEASE_S),
        max_attempts=args.max_attempts or _setting(args, "MAX_ATTEMPTS", 3),
        round_jobs=args.round_jobs if args.round_jobs is not None else _setting(args, "ROUND_JOBS", ROUND_JOBS),
        serializer=args.serializer or _setting(args, "SERIALIZER"),
        signing_key=signing_keys(args),
        periodic=periodic,
        buffers=load_buffers(args.with_buffers) if args.with_buffers else (),
        hooks=[*(args.hook or ()), *_setting(args, "HOOKS", ()), *metrics, *notify, *_health_hooks(args)],
    )


def _metrics_hooks(args: argparse.Namespace) -> list[Any]:
    """``--metrics-port``: the Prometheus hook serving this worker's registry (the ``metrics`` extra)."""
    if args.metrics_port is None:
        return []
    try:  # optional: only a worker asked for metrics needs prometheus-client
        from clusterq.observability.metrics import JobMetrics
    except ImportError as exc:
        raise ValueError(f"--metrics-port needs prometheus-client (pip install 'clusterq[metrics]'): {exc}") from None
    return [JobMetrics(port=args.metrics_port, host=args.metrics_host)]


def _notify_hooks(args: argparse.Namespace, metrics: list[Any]) -> list[Any]:
    """Notifications from ``--notify-config PATH``, else ``$CLUSTERQ_NOTIFY_CONFIG``, else the settings
    module's ``NOTIFY`` (a dict); counted in the metrics registry when ``--metrics-port`` is given."""
    source = args.notify_config or os.environ.get(NOTIFY_CONFIG_ENV) or _setting(args, "NOTIFY")
    if not source:
        return []
    from clusterq.observability.notify import Notifications  # only when configured: ~5 ms of start-up

    registry = metrics[0].registry if metrics else None
    return [Notifications(source, registry=registry)]


def _health_hooks(args: argparse.Namespace) -> list[Any]:
    """``--health-port``: /livez and /readyz for Kubernetes probes (no extra needed)."""
    if args.health_port is None:
        return []
    from clusterq.observability.health import HealthServer  # only when asked for: http.server is ~5 ms of start-up

    return [HealthServer(port=args.health_port, host=args.health_host)]


def _periodic_jobs(args: argparse.Namespace, module: str | None) -> list[Periodic]:
    """The periodic jobs of ``module``, else of the settings module (its ``PERIODIC``)."""
    if module:
        return load_periodic(module)
    settings = _settings(args)
    if settings is None or not hasattr(settings, "PERIODIC"):
        raise ValueError("name the module declaring the periodic jobs (clusterq cron myapp.periodic), "
                         "or give a settings module with a PERIODIC list")
    return load_periodic(settings.__name__)


def render_periodic(infos: list[PeriodicInfo]) -> list[str]:
    if not infos:
        return ["(no periodic jobs declared yet)"]
    lines = []
    for info in infos:
        nxt = info.next_run.strftime("%Y-%m-%d %H:%M:%S") if info.next_run else "?"
        late = "  LATE: its latest tick was not taken (is a scheduler running?)" if info.late else ""
        if info.run_requested:
            late += f"  RUN NOW requested {info.run_requested.strftime('%H:%M:%S')} UTC, waiting for a scheduler"
        lines.append(f"  {info.name}  [{info.queue}]  {info.schedule}  -> {info.func}  next {nxt} UTC{late}")
        if info.runs:
            lines.append("    recent: " + ", ".join(
                f"{run.tick.strftime('%m-%d %H:%M:%S')} {run.status or 'expired'}" for run in info.runs))
    return lines


def cmd_cron(args: argparse.Namespace) -> int:
    url = resolve_url(args)
    if args.remove:
        found = remove_periodic(url, args.remove)
        print(f"removed periodic job {args.remove!r}" if found else f"no periodic job named {args.remove!r}")
        return EXIT_OK if found else EXIT_ERROR
    if args.run_now:
        if run_periodic_now(url, args.run_now):
            print(f"asked for a run of periodic job {args.run_now!r} now: a running scheduler (clusterq cron or "
                  "worker --with-cron) enqueues it; it waits until one runs")
        else:
            print(f"a run of periodic job {args.run_now!r} is already requested and not yet taken by a scheduler")
        return EXIT_OK
    if args.list:
        infos = list_periodic(url, runs=args.runs)
        print(f"{len(infos)} periodic job(s)")
        print("\n".join(render_periodic(infos)))
        return EXIT_OK
    sys.path.insert(0, os.getcwd())  # like the worker: modules are found from where it starts
    try:
        jobs = _periodic_jobs(args, args.module)
    except ValueError as exc:
        if isinstance(exc, ClusterQError):
            raise
        print(f"clusterq: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not jobs:
        print(f"clusterq: {args.module or 'the settings module'} declares no periodic jobs", file=sys.stderr)
        return EXIT_USAGE
    CronScheduler(url, jobs, signing_key=signing_keys(args)).run()
    return EXIT_OK


def parse_dedicated(spec: str, default_pool: str) -> tuple[list[str], str, int | None]:
    """``hot=8``, ``hot,urgent=process:8``, ``io=thread:32`` -> (queues, pool kind, concurrency)."""
    queues, sep, pool = spec.partition("=")
    if not sep or not queues:
        raise ValueError(f"--dedicated {spec!r}: expected QUEUE[,QUEUE...]=[POOL:]N, e.g. hot=process:8")
    kind, _, number = pool.rpartition(":")
    if not number.isdigit() or int(number) < 1:
        raise ValueError(f"--dedicated {spec!r}: the concurrency must be a positive number")
    if kind and kind not in POOL_KINDS:
        raise ValueError(f"--dedicated {spec!r}: unknown pool {kind!r} (one of {', '.join(POOL_KINDS)})")
    return [q for q in queues.split(",") if q], kind or default_pool, int(number)


RUNNING_SHOWN = 10
"""``clusterq info`` lists at most this many running jobs per queue (the first by lease deadline), and
``RUNNING_TOTAL`` in all: the cost of a look stays fixed however many jobs run."""
RUNNING_TOTAL = 50


def _progress_text(progress: Progress | None) -> str:
    if progress is None:
        return ""
    value = progress.value
    text = f"{value:.0%}" if isinstance(value, float) and 0.0 <= value <= 1.0 else str(value)
    return f"{text} {progress.message}" if progress.message else text


def _running_lines(queues: list[Queue], live_workers: set[str]) -> list[str]:
    """The first running jobs of each queue; one whose worker is no longer registered is marked orphaned,
    with when lease recovery puts it back (its lease deadline)."""
    lines: list[str] = []
    for queue in queues:
        if len(lines) >= RUNNING_TOTAL:
            lines.append(f"  ... (first {RUNNING_TOTAL} shown)")
            break
        for job in queue.started_job_registry.get_jobs(0, min(RUNNING_SHOWN, RUNNING_TOTAL - len(lines))):
            try:
                job.refresh()
            except ClusterQError:
                continue  # ended meanwhile
            shown = _progress_text(job.progress)
            line = f"  {job.handle}  {job.func_name}" + (f"  progress {shown}" if shown else "")
            if job.worker_name not in live_workers:
                deadline = queue.started_job_registry.score_time(job.id)
                when = time.strftime("%H:%M:%S", time.localtime(deadline)) if deadline else "?"
                line += f"  ORPHANED (worker {job.worker_name or '?'} gone; back on the queue after {when})"
            lines.append(line)
    return lines


INFO_COLUMNS = ("queued", "started", "finished", "failed", "canceled", "scheduled", "deferred", "orphaned",
                "retried")
"""``clusterq info``'s counts per queue: ``orphaned`` are started jobs whose lease expired (their worker
is gone; lease recovery puts them back), ``failed`` final failures, ``retried`` failed attempts that were
run again (since the queue was created)."""


def _queue_row(queue: Queue) -> tuple[Any, ...]:
    return (queue.name, queue.count, queue.started_job_registry.count, queue.finished_job_registry.count,
            queue.failed_job_registry.count, queue.canceled_job_registry.count,
            queue.scheduled_job_registry.count, queue.deferred_job_registry.count,
            queue.started_job_registry.overdue_count(), queue.retried_count)


def _partitioned_rows(client: Any, rows: list[tuple[Any, ...]]) -> tuple[list[tuple[Any, ...]], list[str]]:
    """The table's rows with each partitioned queue as one summed row (``events [12 partitions]``) followed
    by its partitions' rows, indented; and where each partition lives (slot, node)."""
    expanded = resolve_partitions(client, [row[0] for row in rows])
    logical = {name: parts for name, parts in expanded.items() if len(parts) > 1}
    if not logical:
        return rows, []
    by_name = {row[0]: row for row in rows}
    member = {part for parts in logical.values() for part in parts}
    shown: list[tuple[Any, ...]] = []
    layouts: list[str] = [""]
    for row in rows:
        name = row[0]
        if name in logical:
            parts = [by_name[p] for p in logical[name] if p in by_name]
            sums = [sum(values) for values in zip(*(p[1:] for p in parts))]
            shown.append((f"{name} [{len(logical[name])} partitions]", *sums))
            shown += [(f"  {p[0]}", *p[1:]) for p in parts]
            placed = layout(client, logical[name])
            layouts.append(f"{name}: {len(placed)} partitions (partition, slot, node)")
            layouts += [f"  {i:>4}  {slot:>5}  {node or 'the server'}  {part}"
                        for i, (part, slot, node) in enumerate(placed)]
        elif name not in member:
            shown.append(row)
    return shown, layouts


def render_info(url: str) -> str:
    client = connect(url)
    queues = Queue.all(client)
    lines = [describe(client)]  # never the URL itself: it may hold a password
    try:
        nodes = memory_of_primaries(client)
    except REDIS_ERRORS:  # INFO refused: server_warnings says so below
        nodes = []
    lines += [f"  {node.describe()}" for node in nodes]
    lines += [f"WARNING: {warning}" for warning in server_warnings(client)]
    lines.append("")
    header = ("queue", *INFO_COLUMNS)
    rows = [_queue_row(q) for q in queues]
    shown, layouts = _partitioned_rows(client, rows)
    width = max([len(header[0])] + [len(r[0]) for r in shown])
    lines.append(f"{header[0]:<{width}}  " + "  ".join(f"{h:>9}" for h in header[1:]))
    for row in shown:
        lines.append(f"{row[0]:<{width}}  " + "  ".join(f"{v:>9}" for v in row[1:]))
    lines += layouts
    if not rows:
        lines.append("(no queues yet)")
    workers = list_workers(client)
    running = _running_lines([q for q, row in zip(queues, rows) if row[2]], {w.name for w in workers})
    if running:
        lines += ["", f"running jobs (at most {RUNNING_SHOWN} per queue)", *running]
    lines += ["", f"{len(workers)} worker(s)"]
    for w in workers:
        current = f", running {w.current_job}" if w.current_job else ""
        lines.append(f"  {w.name}  pid {w.pid}  queues {','.join(w.queues)}  processed {w.processed}"
                     f"  failed {w.failed}{current}")
    periodic = list_periodic(client, runs=5)
    if periodic:
        lines += ["", f"{len(periodic)} periodic job(s)", *render_periodic(periodic)]
    return "\n".join(lines)


def cmd_info(args: argparse.Namespace) -> int:
    url = resolve_url(args)
    while True:
        text = render_info(url)
        if not args.interval:
            print(text)
            return EXIT_OK
        print("\x1b[2J\x1b[H" + text, flush=True)
        time.sleep(args.interval)


def parse_argument(text: str) -> Any:
    """A command-line job argument: a JSON value (``2``, ``true``, ``'{"a": 1}'``, ``'"2"'``), else the
    text itself as a string (``u9``, ``hello@example.com``)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def cmd_enqueue(args: argparse.Namespace) -> int:
    call_args = [parse_argument(a) for a in args.args]
    queue = open_queue(args.queue, resolve_url(args), signing_key=signing_keys(args))
    existing = queue.fetch_job(args.job_id) if args.job_id else None
    if existing is not None:
        # enqueue with an existing id is a no-op: say so, rather than print the handle as if it had worked
        status = existing.get_status()
        print(f"clusterq: job {args.job_id!r} already exists in {args.queue!r} ({status.value if status else 'gone'});"
              " nothing enqueued, its arguments are unchanged", file=sys.stderr)
        print(existing.handle)
        return EXIT_ERROR
    job = queue.enqueue(args.function, *call_args, job_id=args.job_id)
    print(job.handle)
    return EXIT_OK


def _existing_queue(name: str, url: str) -> Queue | None:
    queue = Queue(name, url)
    if queue.exists():
        return queue
    print(f"clusterq: no queue named {name!r} (no job was ever enqueued to it; 'clusterq info' lists the queues)",
          file=sys.stderr)
    return None


def cmd_empty(args: argparse.Namespace) -> int:
    url = resolve_url(args)
    if args.all == bool(args.queues):
        print("clusterq: name the queues to empty, or --all (not both)", file=sys.stderr)
        return EXIT_USAGE
    queues: list[Queue | PartitionedQueue]
    if args.all:
        queues = list(Queue.all(url))
        if not args.yes:
            names = ", ".join(q.name for q in queues) or "(none)"
            if not sys.stdin.isatty():
                print(f"clusterq: empty --all would empty {len(queues)} queue(s): {names}; add --yes to confirm",
                      file=sys.stderr)
                return EXIT_USAGE
            answer = input(f"empty {len(queues)} queue(s): {names}? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("nothing emptied")
                return EXIT_ERROR
    else:
        found = [_existing_queue(name, url) for name in args.queues]
        if any(q is None for q in found):
            return EXIT_ERROR
        queues = [open_queue(q.name, url) for q in found if q is not None]  # a partitioned one: all partitions
    for queue in queues:
        print(f"removed {queue.empty()} job(s) from {queue.name!r}")
    return EXIT_OK


def _requeue_failed(queue: Queue, include_stopped: bool) -> tuple[int, int]:
    """Requeue the failed registry of ``queue``, page by page; stopped jobs (someone stopped them on
    purpose) stay unless ``include_stopped``. Returns (requeued, stopped jobs left)."""
    registry = queue.failed_job_registry
    total = skipped = offset = 0
    while True:
        jobs = registry.get_jobs(offset, 1000)
        if not jobs:
            return total, skipped
        chosen = [job.id for job in jobs if include_stopped or job.get_status() != JobStatus.STOPPED]
        done = registry.requeue(*chosen) if chosen else 0
        total += done
        skipped += len(jobs) - len(chosen)
        offset += len(jobs) - done  # what stays in the registry is before the next page


def cmd_requeue(args: argparse.Namespace) -> int:
    url = resolve_url(args)
    if args.handle:
        if args.queue or args.job_ids:
            print("clusterq: give --handle, or QUEUE [JOB_ID ...], not both", file=sys.stderr)
            return EXIT_USAGE
        for handle in args.handle:
            print(f"requeued {Job.fetch(handle, url).requeue().handle}")
        return EXIT_OK
    if not args.queue:
        print("clusterq: name a queue (clusterq requeue QUEUE [JOB_ID ...]) or give --handle", file=sys.stderr)
        return EXIT_USAGE
    queue = _existing_queue(args.queue, url)
    if queue is None:
        return EXIT_ERROR
    if args.job_ids:
        for job_id in args.job_ids:
            job = queue.fetch_job(job_id)
            if job is None:
                raise NoSuchJobError(f"no job {job_id!r} in queue {args.queue!r}")
            print(f"requeued {job.requeue().handle}")
        return EXIT_OK
    total, skipped = _requeue_failed(queue, args.include_stopped)
    note = f" ({skipped} stopped job(s) left: --include-stopped requeues them too)" if skipped else ""
    print(f"requeued {total} failed job(s) of {args.queue!r}{note}")
    return EXIT_OK


def _named_queues(args: argparse.Namespace) -> list[str]:
    return [*(args.queues or ()), *(args.queue or ())]


def cmd_suspend(args: argparse.Namespace) -> int:
    url = resolve_url(args)
    args.queue = _named_queues(args)
    if not args.queue:
        suspend(url)
        print("all queues suspended: workers start no job until 'clusterq resume'")
        return EXIT_OK
    for name in args.queue:
        open_queue(name, url).suspend()  # a partitioned queue: every partition
    print(f"suspended {', '.join(repr(n) for n in args.queue)}")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    url = resolve_url(args)
    args.queue = _named_queues(args)
    if not args.queue:
        resume(url)
        print("all queues resumed (queues suspended one by one stay suspended)")
        return EXIT_OK
    for name in args.queue:
        open_queue(name, url).resume()
    print(f"resumed {', '.join(repr(n) for n in args.queue)}")
    return EXIT_OK


def cmd_stop(args: argparse.Namespace) -> int:
    job = Job.fetch(args.handle, resolve_url(args))
    job.stop(args.reason)
    print(f"stop requested for {job.handle}")
    return EXIT_OK


def cmd_dev(args: argparse.Namespace) -> int:
    from clusterq import testing  # the server harness: only loaded by the commands that start servers

    kind = "cluster" if args.cluster else "sentinel" if args.sentinel else "standalone"
    topology = {"standalone": testing.Standalone, "sentinel": testing.SentinelGroup,
                "cluster": testing.Cluster}[kind]()
    # SIGINT and SIGTERM both stop the servers and remove their data folders: a shell starts a background
    # job with SIGINT ignored (Python then installs no KeyboardInterrupt handler), and SIGTERM's default
    # would kill this process before the cleanup below.
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        topology.start()
        print(f"{kind} ready ({topology.binary}):\n\n    export {URL_ENV}='{topology.url}'\n\n"
              "Ctrl-C (or SIGTERM) stops it.", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("\nstopping", flush=True)
    finally:
        for sig in previous:
            signal.signal(sig, signal.SIG_IGN)  # a second signal must not cut the cleanup short
        topology.stop()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from clusterq.cli.demo import run_demo  # imports the test harness: only for this command

    return run_demo(cluster=args.cluster, jobs=args.jobs, url=args.url)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="clusterq", description="Background jobs on Redis and Valkey.")
    parser.add_argument("--version", action="version", version=f"clusterq {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("worker", help="process jobs from queues, in the order given")
    _add_common(p)
    p.add_argument("queues", nargs="*", help="queue names, highest priority first (default: 'default')")
    p.add_argument("-b", "--burst", action="store_true", help="stop when every queue is empty")
    p.add_argument("-n", "--name", help="worker name, unique among running workers "
                   "(exit 4 if one runs under it; default: host.pid.random)")
    p.add_argument("--max-jobs", type=int, help="stop after this many jobs")
    p.add_argument("--allow", action="append", help="only run functions matching this pattern (repeatable)")
    p.add_argument("--import", action="append", dest="imports", metavar="MODULE",
                   help="import this module at start, before the pool's children fork, so no job waits for its "
                        "import (repeatable; or IMPORTS in the settings module)")
    p.add_argument("--hook", action="append", metavar="MODULE:OBJ",
                   help="a hook (object, class or factory) run around every job (repeatable; see clusterq.hooks)")
    p.add_argument("--metrics-port", type=int, metavar="PORT",
                   help="serve Prometheus metrics on this port (/metrics; needs clusterq[metrics])")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="ADDR",
                   help="address for --metrics-port (default 127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--notify-config", metavar="PATH",
                   help="notifications settings (JSON; default: $CLUSTERQ_NOTIFY_CONFIG or the settings' NOTIFY); "
                        "adds a lane serving the notify queue")
    p.add_argument("--health-port", type=int, metavar="PORT",
                   help="serve /livez and /readyz on this port (Kubernetes probes)")
    p.add_argument("--health-host", default="127.0.0.1", metavar="ADDR",
                   help="address for --health-port (default 127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--lease-s", type=float, help="seconds a job stays leased without a heartbeat; a dead worker's jobs "
                   f"run again about this long after it died ({DEFAULT_LEASE_S:g})")
    p.add_argument("--max-attempts", type=int, help="leases before a job whose worker died fails (3)")
    p.add_argument("--round-jobs", type=int, metavar="N",
                   help=f"the most jobs one round trip to Redis leases and records together ({ROUND_JOBS}); lower: "
                        "other clients of that Redis wait less behind the worker's scripts, at some throughput")
    p.add_argument("--serializer", help="json (default), pickle, or a dotted path")
    p.add_argument("-P", "--pool", choices=POOL_KINDS, default="process",
                   help="where jobs run: process (default: long-lived children), fork (a child per job), "
                        "thread, asyncio, solo (in the worker process)")
    p.add_argument("-c", "--concurrency", type=int, help="children/threads/tasks (default: CPUs; threads 8)")
    p.add_argument("--max-jobs-per-child", type=int, help="recycle a process child after this many jobs")
    p.add_argument("--max-memory-per-child", type=float, metavar="MB",
                   help="recycle a process child whose memory passes this many MiB")
    p.add_argument("--memory-limit-per-child", type=float, metavar="MB",
                   help="hard cap: a job whose process grows by more than this many MiB fails with MemoryError")
    p.add_argument("--dedicated", action="append", metavar="QUEUES=[POOL:]N",
                   help="serve these queues with their own pool, e.g. hot=process:8 (repeatable)")
    _add_signing(p)
    p.add_argument("--with-cron", metavar="MODULE",
                   help="also run the periodic jobs declared in this module (its PERIODIC list and @periodic "
                        "functions); any number of workers may do so")
    p.add_argument("--with-buffers", metavar="MODULE",
                   help="also flush the counter buffers (clusterq.Buffer) declared in this module, each every "
                        "interval_s; any number of workers may do so")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("cron", help="enqueue periodic jobs on their schedules (or list them)")
    _add_common(p)
    p.add_argument("module", nargs="?", help="module declaring the periodic jobs (default: the settings module)")
    p.add_argument("-l", "--list", action="store_true", help="list periodic jobs, next runs and recent runs")
    p.add_argument("--runs", type=int, default=10, help="recent runs shown per job with --list (10)")
    p.add_argument("--remove", metavar="NAME", help="forget a periodic job no longer declared")
    p.add_argument("--run-now", metavar="NAME",
                   help="ask the running schedulers for one extra run of this periodic job now")
    _add_signing(p)
    p.set_defaults(func=cmd_cron)

    p = sub.add_parser("info", help="queues, their counts, and workers")
    _add_common(p)
    p.add_argument("-i", "--interval", type=float, default=0, help="refresh every N seconds")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("enqueue", help="enqueue one job from the shell")
    _add_common(p)
    p.add_argument("queue")
    p.add_argument("function", help="dotted path, e.g. myapp.tasks.send")
    p.add_argument("args", nargs="*", help="arguments: each a JSON value (2, true, '{\"a\": 1}', '\"2\"'), "
                                           "else a string as written")
    p.add_argument("--job-id", help="the job's id; an id that exists already enqueues nothing (exit 1)")
    _add_signing(p)
    p.set_defaults(func=cmd_enqueue)

    p = sub.add_parser("empty", help="remove every waiting job of queues (or of all, with --all)")
    _add_common(p)
    p.add_argument("queues", nargs="*", help="queue names")
    p.add_argument("--all", action="store_true", help="every known queue (asks first, or --yes)")
    p.add_argument("-y", "--yes", action="store_true", help="with --all: do not ask")
    p.set_defaults(func=cmd_empty)

    p = sub.add_parser("requeue", help="requeue the failed jobs of a queue, or some jobs by id or handle")
    _add_common(p)
    p.add_argument("queue", nargs="?")
    p.add_argument("job_ids", nargs="*", help="only these jobs of the queue (any ended job)")
    p.add_argument("--handle", action="append", metavar="HANDLE", help="a job's handle (queue/id); repeatable")
    p.add_argument("--include-stopped", action="store_true",
                   help="also requeue jobs that were stopped on purpose (they are left by default)")
    p.set_defaults(func=cmd_requeue)

    for name, func, text in (("suspend", cmd_suspend, "stop workers from starting jobs (all queues, or those named)"),
                             ("resume", cmd_resume, "let workers start jobs again (all queues, or those named)")):
        p = sub.add_parser(name, help=text)
        _add_common(p)
        p.add_argument("queues", nargs="*", help="only these queues")
        p.add_argument("-Q", "--queue", action="append", help="only this queue (repeatable)")
        p.set_defaults(func=func)

    p = sub.add_parser("stop", help="stop a running job now (it ends 'stopped', not retried)")
    _add_common(p)
    p.add_argument("handle", help="the job's handle (queue/id), as printed by enqueue")
    p.add_argument("--reason", help="why (kept in the job's exc_info)")
    p.set_defaults(func=cmd_stop)

    p = sub.add_parser("dev", help="start a local server, Sentinel group or cluster until Ctrl-C")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--sentinel", action="store_true", help="primary, replica and three sentinels")
    group.add_argument("--cluster", action="store_true", help="three primaries with a replica each")
    p.set_defaults(func=cmd_dev)

    p = sub.add_parser("demo", help="start a local server, enqueue sample jobs, process them, report")
    p.add_argument("--cluster", action="store_true", help="on a local 6-node cluster")
    p.add_argument("--jobs", type=int, default=5000, help="number of sample jobs (default 5000)")
    p.add_argument("-u", "--url", help="use this server instead of starting one")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("dashboard", help="serve the web dashboard (pip install 'clusterq[dashboard]')")
    _add_common(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--root-path", default="", metavar="PREFIX",
                   help="the path prefix a proxy serves the dashboard under (it strips it)")
    p.add_argument("--allowed-origin", action="append", default=[], metavar="ORIGIN",
                   help="another origin whose forms may post (a proxy that rewrites Host); repeatable")
    p.add_argument("--auth-file", metavar="PATH", help="JSON file with users, tokens and the cookie secret_key")
    p.add_argument("--read-only", action="store_true", help="no actions for anyone")
    p.add_argument("--redact-args", action="store_true", help="never show job arguments, results or meta")
    p.add_argument("--insecure", action="store_true", help="listen beyond loopback without a login")
    p.add_argument("--hash-password", action="store_true",
                   help="read a password (stdin or prompt), print its hash for the auth file, and exit")
    p.set_defaults(func=cmd_dashboard)

    p = sub.add_parser("completion", help="print a shell completion script (bash, zsh or fish)",
                       description="Print a completion script for clusterq's subcommands and options. "
                                   "bash: source <(clusterq completion bash); "
                                   "zsh: clusterq completion zsh > \"${fpath[1]}/_clusterq\"; "
                                   "fish: clusterq completion fish > ~/.config/fish/completions/clusterq.fish")
    p.add_argument("shell", choices=SHELLS, help="the shell to complete in")
    p.set_defaults(func=cmd_completion)
    return parser


def cmd_completion(args: argparse.Namespace) -> int:
    sys.stdout.write(completion_script(build_parser(), args.shell))
    return EXIT_OK


def cmd_dashboard(args: argparse.Namespace) -> int:
    if args.hash_password:
        password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("password: ")
        try:
            from clusterq.dashboard.auth import hash_password  # stdlib only
        except ImportError as exc:
            raise ClusterQError(f"the dashboard needs its extra: pip install 'clusterq[dashboard]' ({exc})") from None
        print(hash_password(password))
        return EXIT_OK
    try:  # an optional extra: imported only by this command, so the core stays dependency-light
        from clusterq.dashboard.auth import AuthConfig
        from clusterq.dashboard.serve import serve
    except ImportError as exc:
        raise ClusterQError(f"the dashboard needs its extra: pip install 'clusterq[dashboard]' ({exc})") from None
    try:
        auth = AuthConfig.from_file(args.auth_file) if args.auth_file else AuthConfig()
        serve(resolve_url(args), host=args.host, port=args.port, auth=auth, read_only=args.read_only,
              redact_args=args.redact_args, insecure=args.insecure, root_path=args.root_path,
              allowed_origins=args.allowed_origin)
    except (OSError, ValueError, TypeError) as exc:
        print(f"clusterq: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _configure_logging(args: argparse.Namespace) -> None:
    # -v is clusterq's own debug output: redis-py's DEBUG lines (topology refreshes) would drown it, so
    # only the clusterq loggers go to DEBUG and everything else stays at INFO.
    level = logging.INFO
    if getattr(args, "verbose", False):
        level = logging.DEBUG
    elif getattr(args, "quiet", False):
        level = logging.WARNING
    logging.basicConfig(level=max(level, logging.INFO), format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%H:%M:%S")
    logging.getLogger("clusterq").setLevel(level)
    logging.getLogger("clusterq.testing").setLevel(max(level, logging.WARNING))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args)
    try:
        return int(args.func(args))
    except ClusterQError as exc:
        print(f"clusterq: {exc}", file=sys.stderr)
        if isinstance(exc, WorkerNameInUse):
            return EXIT_NAME_IN_USE
        return EXIT_CONNECTION if type(exc).__name__ == "ConnectionFailed" else EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())


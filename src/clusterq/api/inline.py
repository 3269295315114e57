"""A queue's synchronous mode (``Queue(..., is_async=False)``, RQ's name): enqueue runs the job at once,
in the caller's thread, for users' own unit tests.

The job is enqueued as usual, then leased by its id out of turn (take.lua) and run by the worker's
executor, and its outcome is recorded by the worker's complete script: the record, status, result,
registries and ``get_current_job()`` are what a worker would produce. Differences: no time limit (no
SIGALRM in the caller's process), and a retried job (``Retry``) waits for a worker.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence

from clusterq.api.context import JobConnection
from clusterq.api.execution import DEFAULT_JOB_TIMEOUT_S, Executor, FunctionResolver
from clusterq.api.job import DEFAULT_FAILURE_TTL_S, Job
from clusterq.api.queue_view import QueueView
from clusterq.state import store as T
from clusterq.state import transitions as TR
from clusterq.state.outbox import Forwarder, ended_entry

INLINE_LEASE_MS = 24 * 3600 * 1000
"""Nothing extends an inline run's lease: long enough that no worker's maintenance takes the job back
while the caller runs it."""


def inline_executor(queue: QueueView) -> Executor:
    return Executor(FunctionResolver(None), queue.serializer, DEFAULT_JOB_TIMEOUT_S, queue.connection,
                    job_connection=JobConnection(queue.connection, queue.connection), time_limits=False,
                    hooks=queue.hooks)


def run_inline(queue: QueueView, executor: Executor, jobs: Sequence[Job]) -> None:
    """Run each of ``jobs`` now, in order; a job that is not queued (an existing id that already ran)
    is left alone."""
    worker = f"sync:{socket.gethostname()}.{os.getpid()}"
    for job in jobs:
        leased = TR.parse_take(queue.name, job.id,
                               queue.store.run(T.take_call(queue.keys, job.id, INLINE_LEASE_MS, worker)))
        if leased is None:
            continue
        outcome = executor.execute(leased)
        (code,) = TR.parse_complete(queue.store.run(T.complete_call(queue.keys, [outcome])))
        if code is TR.CompleteCode.NOTIFY:
            # It has dependents: tell them now (their jobs then wait for a worker, or for a replay).
            Forwarder(queue.store, DEFAULT_FAILURE_TTL_S * 1000).forward(
                [(queue.name, ended_entry(outcome.status, job.id))])

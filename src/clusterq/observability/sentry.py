"""Sentry as a public hook (:class:`SentryHook`, the ``sentry`` extra), with the official ``sentry_sdk``.

It reports a job's *final* failure (no retry left, or none asked for; not each retried attempt, and not a
job whose abandonment maintenance recorded: that one has no exception to show), from the process where
the job ran, with the job as context: queue, function, id, attempt, retries and, when asked for
(``include_args=True``), its arguments (redacted by default: only their number is sent). The event
continues the producer's trace: the hook, registered on the producer too, stores Sentry's ``sentry-trace``
and ``baggage`` headers with the job at enqueue. A pool child flushes the client's queue before it exits
(it leaves with ``os._exit``, so Sentry's ``atexit`` flush never runs there).

Nothing of clusterq is patched: configure ``sentry_sdk.init(...)`` as usual (before the worker forks its
children, so they inherit the client) and add ``SentryHook()`` to your queues and workers.
"""

from __future__ import annotations

import logging
from typing import Any

import sentry_sdk

from clusterq.api.hooks import EnqueueInfo, Hook, JobInfo

log = logging.getLogger(__name__)

SENTRY_TRACE = "sentry-trace"
BAGGAGE = "baggage"
DEFAULT_FLUSH_S = 5.0


class SentryHook(Hook):
    """Send each job's final failure to Sentry (see the module docstring)."""

    def __init__(self, *, include_args: bool = False, flush_timeout_s: float = DEFAULT_FLUSH_S) -> None:
        self.include_args = include_args
        self.flush_timeout_s = flush_timeout_s

    def __repr__(self) -> str:
        return f"SentryHook(include_args={self.include_args!r})"

    def before_enqueue(self, job: EnqueueInfo) -> None:
        traceparent, baggage = sentry_sdk.get_traceparent(), sentry_sdk.get_baggage()
        if traceparent:
            job.headers.setdefault(SENTRY_TRACE, traceparent)
            if baggage:
                job.headers.setdefault(BAGGAGE, baggage)

    def on_failure(self, job: JobInfo, error: BaseException | None, reason: str) -> None:
        with sentry_sdk.isolation_scope() as scope:
            if SENTRY_TRACE in job.headers:  # the producer's trace: the event joins it
                sentry_sdk.continue_trace({SENTRY_TRACE: job.headers[SENTRY_TRACE],
                                           BAGGAGE: job.headers.get(BAGGAGE, "")})
            scope.set_tag("clusterq.queue", job.queue)
            scope.set_tag("clusterq.function", job.func)
            scope.set_context("clusterq job", self._context(job, reason))
            scope.fingerprint = ["clusterq", job.queue, job.func, type(error).__name__ if error else reason[:60]]
            if error is not None:
                sentry_sdk.capture_exception(error)
            else:  # never ran (undecodable, unknown function, bad signature) or killed at its hard limit
                sentry_sdk.capture_message(f"clusterq job {job.func} failed: {reason}", level="error")

    def _context(self, job: JobInfo, reason: str) -> dict[str, Any]:
        context: dict[str, Any] = {"queue": job.queue, "function": job.func, "id": job.id,
                                   "attempt": job.attempt, "retries": job.retries,
                                   "reason": (reason.splitlines() or [""])[0][:500]}  # the traceback is in the event
        if self.include_args:
            context["args"], context["kwargs"] = job.args, job.kwargs
        else:
            context["args"] = f"[{len(job.args)} redacted]" if job.args is not None else None
            context["kwargs"] = sorted(job.kwargs) if job.kwargs is not None else None  # names only
        return context

    def on_child_exit(self) -> None:
        sentry_sdk.flush(timeout=self.flush_timeout_s)

    def on_worker_stop(self, worker: Any) -> None:
        sentry_sdk.flush(timeout=self.flush_timeout_s)


__all__ = ["SentryHook"]

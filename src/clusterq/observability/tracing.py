"""OpenTelemetry tracing as a public hook (:class:`Tracing`, the ``otel`` extra).

A producer span (``send <queue>``, kind PRODUCER) when a job is enqueued, whose context travels in the
job's headers as W3C Trace Context (``traceparent``, ``tracestate``: stored with the job and covered by its
signature); a consumer span (``process <queue>``, kind CONSUMER) around each run, wherever it runs (a pool
child, a thread, an asyncio task, the worker itself), a child of the producer span (``link=False``, the
default) or a new trace linked to it (``link=True``, for long-lived producers whose traces should not grow
with every job). Attributes follow OpenTelemetry's messaging semantic conventions: ``messaging.system``
(``clusterq``), ``messaging.destination.name`` (the queue), ``messaging.message.id`` (the job id),
``messaging.operation.type`` and ``messaging.operation.name`` (``send``/``process``), plus
``clusterq.function`` and ``clusterq.attempt``. A job's exception is recorded on its span and sets its
status to error; each retry is a run of its own with the same producer parent.

A trace header that is garbage is ignored (the run gets a span of its own), logged once per process and
counted in :attr:`Tracing.bad_headers`; it never fails a job.

Spans are exported by the tracer provider you configure (``opentelemetry.trace.set_tracer_provider``, or
``Tracing(tracer_provider=...)``). In the ``process`` and ``fork`` pools the children inherit it at fork:
use a ``BatchSpanProcessor`` (it restarts its thread in a forked child) and the hook flushes it before a
child exits (``on_child_exit``).
"""

from __future__ import annotations

import logging
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Link, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from clusterq.api.hooks import EnqueueInfo, Hook, JobInfo

log = logging.getLogger(__name__)

SYSTEM = "clusterq"
TRACEPARENT = "traceparent"


class Tracing(Hook):
    """Producer and consumer spans for every job (see the module docstring). Register it on producers
    (``Queue(hooks=[...])``, :func:`clusterq.hooks.register`) and workers alike."""

    def __init__(self, tracer_provider: Any = None, *, link: bool = False,
                 propagator: TextMapPropagator | None = None) -> None:
        self.tracer_provider = tracer_provider
        self.link = link
        self.propagator = propagator or TraceContextTextMapPropagator()
        self.bad_headers = 0
        self._warned = False
        self._tracer: trace.Tracer | None = None

    def __repr__(self) -> str:
        return f"Tracing(link={self.link!r})"

    @property
    def tracer(self) -> trace.Tracer:
        """Looked up once (a lookup per job would cost more than the span); with no provider given, the
        global one at first use, so ``set_tracer_provider`` may come after the hook is made."""
        tracer = self._tracer
        if tracer is None:
            tracer = self._tracer = trace.get_tracer("clusterq", tracer_provider=self.tracer_provider)
        return tracer

    def before_enqueue(self, job: EnqueueInfo) -> None:
        span = self.tracer.start_span(f"send {job.queue}", kind=SpanKind.PRODUCER, attributes={
            "messaging.system": SYSTEM, "messaging.destination.name": job.queue,
            "messaging.message.id": job.id, "messaging.operation.type": "send",
            "messaging.operation.name": "send", "clusterq.function": job.func})
        # The span stands for handing the job over; it ends here, and its context rides with the job.
        span.end()
        self.propagator.inject(job.headers, context=trace.set_span_in_context(span))

    def around_perform(self, job: JobInfo) -> Any:
        producer = self._producer(job)
        attributes: dict[str, str | int] = {
            "messaging.system": SYSTEM, "messaging.destination.name": job.queue, "messaging.message.id": job.id,
            "messaging.operation.type": "process", "messaging.operation.name": "process",
            "clusterq.function": job.func, "clusterq.attempt": job.attempt}
        links: list[Link] = []
        parent: Context | None = None  # none: the current context (a run without a producer)
        if producer is None:
            pass
        elif self.link:
            parent, links = Context(), [Link(producer)]  # a trace of its own, linked to the producer's
        else:
            parent = trace.set_span_in_context(trace.NonRecordingSpan(producer))
        return self.tracer.start_as_current_span(f"process {job.queue}", context=parent, kind=SpanKind.CONSUMER,
                                                 attributes=attributes, links=links, record_exception=True,
                                                 set_status_on_exception=True)

    def _producer(self, job: JobInfo) -> trace.SpanContext | None:
        """The producer span's context from the job's headers; None when there is none or it is garbage."""
        if TRACEPARENT not in job.headers:
            return None
        context = trace.get_current_span(self.propagator.extract(dict(job.headers))).get_span_context()
        if context.is_valid:
            return context
        self.bad_headers += 1
        if not self._warned:
            self._warned = True
            log.warning("job %s (%s) has a malformed %s header %r: its run is traced without its producer "
                        "(logged once; counted in Tracing.bad_headers)", job.id, job.queue, TRACEPARENT,
                        job.headers[TRACEPARENT][:80])
        return None

    def on_child_exit(self) -> None:
        flush = getattr(self.tracer_provider or trace.get_tracer_provider(), "force_flush", None)
        if flush is not None:  # a child leaves with os._exit: what its span processor holds goes now
            flush()


__all__ = ["Tracing"]

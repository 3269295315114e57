"""Plans: an operation written once, run by the synchronous or the asyncio API.

An operation that talks to Redis several times (enqueue: register the queue, write the jobs, register
deferred children with their parents; cancel: run the script, then tell the dependents) is a generator
that *yields* :class:`Step` objects (what to send) and *receives* their replies; its return value is
the operation's result. It does no I/O itself, so one implementation of the rules (which calls, in what
order, how replies are read, which errors are wrapped how) serves both front ends, which differ only in
the driver: :func:`run_plan` with a :class:`~clusterq.state.store.Store`, :func:`arun_plan` with an
:class:`~clusterq.state.aio_store.AsyncStore` (the shape of httpx's ``Client``/``AsyncClient`` over one
base, without writing the logic twice).

A step names a method of the store (``run``, ``run_many``, ``run_and_wait``, ``read_job``...), which
both stores offer with the same signature, or of its client (``sadd``, ``zcount``...), which the sync and
asyncio redis-py clients share. An error the step raises is thrown into the plan at its ``yield``, so a
plan catches and explains server errors exactly where the synchronous code would.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from clusterq.connection.sync import REDIS_ERRORS

R = TypeVar("R")

SERVER_ERRORS: tuple[type[BaseException], ...] = (*REDIS_ERRORS, asyncio.TimeoutError)
"""What a step can raise when the server fails or cannot be reached, on either API."""


@dataclass(frozen=True)
class Step:
    """One thing to send: ``store.<method>(*args, **kwargs)`` (or ``store.client.<method>`` with
    ``on_client``)."""

    method: str
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    on_client: bool = False

    def target(self, store: Any) -> Any:
        return getattr(store.client if self.on_client else store, self.method)


Plan = Generator[Step, Any, R]
"""A generator yielding steps, receiving their replies, returning ``R``."""


def store_step(method: str, *args: Any, **kwargs: Any) -> Step:
    return Step(method, args, kwargs)


def client_step(method: str, *args: Any, **kwargs: Any) -> Step:
    return Step(method, args, kwargs, on_client=True)


def run_plan(plan: Plan[R], store: Any) -> R:
    """Run ``plan`` on a synchronous store; returns what the plan returns."""
    try:
        step = next(plan)
        while True:
            try:
                reply = step.target(store)(*step.args, **step.kwargs)
            except BaseException as exc:  # handed to the plan, which re-raises what it does not handle
                step = plan.throw(exc)
            else:
                step = plan.send(reply)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def arun_plan(plan: Plan[R], store: Any) -> R:
    """Run ``plan`` on an asyncio store; returns what the plan returns."""
    try:
        step = next(plan)
        while True:
            try:
                reply = await step.target(store)(*step.args, **step.kwargs)
            except BaseException as exc:  # handed to the plan, as in run_plan
                step = plan.throw(exc)
            else:
                step = plan.send(reply)
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]

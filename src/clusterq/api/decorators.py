"""RQ's ``@job`` decorator: ``@job("emails")`` gives a function ``.delay(*args, **kwargs)``, which enqueues
a call of it on that queue.

The function itself is returned unchanged (calling it still runs it here, and a worker imports and
calls the very same function); ``delay`` is an attribute set on it. The queue is opened on the first
``delay``, not at import time, so decorating a module's functions needs no server.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from clusterq.api import options as O
from clusterq.api.callbacks import Callback
from clusterq.api.dependency import DependsOn
from clusterq.api.job import Job
from clusterq.api.queue import EnqueueData, Queue
from clusterq.api.retry import Repeat, Retry
from clusterq.connection.sync import ConnectionLike

R = TypeVar("R", covariant=True)


class DelayedFunction(Protocol[R]):
    """A function decorated with :func:`job`: callable as before, plus ``delay``."""

    def __call__(self, *args: Any, **kwargs: Any) -> R: ...

    def delay(self, *args: Any, **kwargs: Any) -> Job: ...


class job:  # lower case: RQ's name for the decorator
    """``@job(queue, connection=None, timeout=None, ...)``: add ``.delay(*args, **kwargs)`` to a function.

    ``queue`` is a queue name or a :class:`Queue` (then ``connection`` is not needed). The options are
    those of :meth:`Queue.enqueue` and apply to every call; ``delay`` passes its own ``job_id=``,
    ``at_front=`` and ``depends_on=`` to the enqueue and every other argument to the function, as RQ's does.
    """

    def __init__(
        self,
        queue: str | Queue,
        connection: ConnectionLike = None,
        timeout: float | int | str | None = None,
        result_ttl: float | int | str | None = None,
        ttl: float | int | str | None = None,
        failure_ttl: float | int | str | None = None,
        description: str | None = None,
        meta: dict[str, Any] | None = None,
        retry: Retry | None = None,
        at_front: bool = False,
        max_attempts: int | None = None,
        repeat: Repeat | None = None,
        result_history: int | None = None,
        on_success: Callback | Callable[..., Any] | str | None = None,
        on_failure: Callback | Callable[..., Any] | str | None = None,
        on_stopped: Callback | Callable[..., Any] | str | None = None,
        depends_on: DependsOn | None = None,
        **unsupported: Any,
    ) -> None:
        if unsupported:
            raise TypeError(f"@job option(s) {sorted(unsupported)} are not supported by clusterq")
        if not isinstance(queue, (str, Queue)):
            raise TypeError(f"@job needs a queue name or a Queue, got {type(queue).__name__}")
        # Checked here, at import time, by the rules every enqueue uses (clusterq.api.options), so a bad
        # option fails where it is written rather than at the first delay().
        O.check(job_timeout=timeout, result_ttl=result_ttl, failure_ttl=failure_ttl, ttl=ttl,
                max_attempts=max_attempts, result_history=result_history, description=description)
        self.queue = queue
        self.connection = connection
        self.at_front = at_front
        self.depends_on = depends_on
        self.options: dict[str, Any] = {
            "job_timeout": timeout, "result_ttl": result_ttl, "ttl": ttl, "failure_ttl": failure_ttl,
            "description": description, "meta": meta, "retry": retry, "max_attempts": max_attempts,
            "repeat": repeat, "result_history": result_history, "on_success": on_success,
            "on_failure": on_failure, "on_stopped": on_stopped,
        }
        self._opened: Queue | None = queue if isinstance(queue, Queue) else None
        self._lock = threading.Lock()

    def _queue(self) -> Queue:
        if self._opened is None:
            with self._lock:
                if self._opened is None:
                    self._opened = Queue(str(self.queue), self.connection)
        return self._opened

    def __call__(self, f: Callable[..., R]) -> DelayedFunction[R]:
        def delay(*args: Any, **kwargs: Any) -> Job:
            job_id = kwargs.pop("job_id", None)
            at_front = bool(kwargs.pop("at_front", self.at_front))
            depends_on = kwargs.pop("depends_on", None) or self.depends_on
            data = EnqueueData(f, args, kwargs, job_id=job_id, depends_on=depends_on, **self.options)
            return self._queue().enqueue_many([data], at_front=at_front)[0]

        delay.__doc__ = f"Enqueue a call of {getattr(f, '__qualname__', f)!r} on queue {self.queue!r}."
        f.delay = delay  # type: ignore[attr-defined]
        return f  # type: ignore[return-value]

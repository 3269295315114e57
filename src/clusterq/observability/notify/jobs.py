"""The notify queue's jobs: :func:`digest` (one per rule and window) and :func:`deliver` (one per
notifier and digest, retried with backoff under the same message id). They run in a worker that has the
same notification settings (the CLI adds a lane for the notify queue to every worker configured with
them): notifier secrets never travel in a job's arguments."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from clusterq.api.context import get_current_job
from clusterq.api.queue import Queue
from clusterq.api.retry import Backoff, Retry
from clusterq.observability.notify import hook as H
from clusterq.observability.notify.notifiers import Notification, NotificationFailed
from clusterq.state import keys as K


def _notifications() -> H.Notifications:
    found = H.active()
    if found is None:
        raise RuntimeError("no notifications are configured in this worker: the notify queue must be served by a "
                           "worker with the same notify settings (clusterq worker --notify-config ...)")
    return found


def digest(rule: str, opened: float) -> int:
    """Take the window of ``rule`` opened at ``opened`` (Unix s) and enqueue its deliveries; returns the
    count (0: nothing left, e.g. a retry after the deliveries were enqueued)."""
    n = _notifications()
    job = get_current_job()
    digest_id = job.id if job is not None else f"inline-{time.time()}"
    conn = n.connection
    if conn is None:
        raise RuntimeError("the notifications of this process are not attached to a running worker")
    counter, samples = K.notify_count(rule), K.notify_samples(rule)
    taken_count, taken_samples = K.notify_taken(rule, digest_id)
    pipe = conn.pipeline(transaction=True)
    pipe.execute_command("RENAME", counter, taken_count)  # redis-py's cluster pipeline blocks .rename()
    pipe.execute_command("RENAME", samples, taken_samples)
    pipe.execute(raise_on_error=False)  # "no such key": already taken by an earlier try, or no samples
    pipe = conn.pipeline(transaction=True)
    pipe.get(taken_count)
    pipe.lrange(taken_samples, 0, max(0, n.settings.samples - 1))  # bounded: at most `samples` entries
    raw_count, raw_samples = pipe.execute()
    count = int(raw_count or 0)
    if count:
        settings = n.rules.get(rule)
        names = (settings.notify if settings is not None and settings.notify else tuple(n.settings.notifiers))
        message = Notification(
            id=f"msg_{digest_id}", rule=rule,
            event="/".join(settings.events) if settings is not None else "?",
            count=count, window_start=opened, window_end=time.time(),
            samples=[json.loads(s) for s in raw_samples]).to_dict()
        queue = Queue(n.queue, conn)
        retry = Retry(max=n.settings.retries, interval=Backoff(base=n.settings.retry_base_s)) \
            if n.settings.retries else None
        for index, name in enumerate(names):
            options: dict[str, Any] = {"job_id": f"{digest_id}-{index}"}  # a retried digest adds nothing
            if retry is not None:
                options["retry"] = retry
            queue.enqueue(H.DELIVER, name, {**message, "id": f"msg_{digest_id}_{index}"}, **options)
    conn.delete(taken_count, taken_samples)
    return count


def deliver(notifier: str, message: dict[str, Any]) -> str:
    """Send ``message`` with ``notifier``, waiting at most ``delivery_timeout_s``; raises (and is retried)
    when it failed. Each outcome is counted by the worker's :class:`~clusterq.observability.notify.Notifications`."""
    n = _notifications()
    target = n.notifiers.get(notifier)
    job = get_current_job()
    last = job is None or job.retries >= n.settings.retries
    if target is None:
        why = n.invalid.get(notifier, f"no notifier named {notifier!r} in this worker's settings")
        H.on_outcome(notifier, "dropped", why)
        return f"dropped: {why}"
    notification = Notification.from_dict(message)
    outcome: list[BaseException | None] = []

    def call() -> None:
        try:
            target.send(notification)
            outcome.append(None)
        except BaseException as exc:  # reported below, whatever the plugin raised
            outcome.append(exc)

    thread = threading.Thread(target=call, name=f"clusterq-notify-{notifier}", daemon=True)
    thread.start()
    thread.join(n.settings.delivery_timeout_s)
    if thread.is_alive() or not outcome:
        reason = f"no answer within {n.settings.delivery_timeout_s:g} s"
        H.on_outcome(notifier, "dropped" if last else "timeout", reason)
        raise NotificationFailed(f"notifier {notifier!r}: {reason}")
    error = outcome[0]
    if error is not None:
        reason = f"{type(error).__name__}: {error}"
        H.on_outcome(notifier, "dropped" if last else "failed", reason)
        raise NotificationFailed(f"notifier {notifier!r}: {reason}")
    H.on_outcome(notifier, "delivered")
    return "delivered"


__all__ = ["deliver", "digest"]

"""Suspend and resume every queue at once (RQ's ``rq suspend`` / ``rq resume``).

The flag is one global key; setting or clearing it publishes on a global sharded channel that every
worker subscribes to, so workers stop leasing (or start again) at once. Workers also read the flag when
they start, when their subscriptions are rebuilt and at each fallback poll, so a lost message only
delays the change. One queue is suspended with :meth:`clusterq.Queue.suspend`.
"""

from __future__ import annotations

from clusterq.connection.sync import REDIS_ERRORS, ConnectionLike, connect
from clusterq.exceptions import explain_server_error
from clusterq.state import keys as K


def suspend(connection: ConnectionLike = None) -> None:
    """Stop every worker on this deployment from starting jobs; queued jobs stay, running ones finish."""
    _set(connection, True)


def resume(connection: ConnectionLike = None) -> None:
    """Undo :func:`suspend`: workers lease again at once."""
    _set(connection, False)


def is_suspended(connection: ConnectionLike = None) -> bool:
    """True while :func:`suspend` holds (queues suspended one by one are not counted)."""
    return bool(connect(connection).exists(K.SUSPENDED))


def _set(connection: ConnectionLike, suspended: bool) -> None:
    client = connect(connection)
    try:
        if suspended:
            client.set(K.SUSPENDED, "1")
        else:
            client.delete(K.SUSPENDED)
        client.spublish(K.CONTROL_CHANNEL, "1" if suspended else "0")
    except REDIS_ERRORS as exc:
        raise explain_server_error(exc, "suspend all queues" if suspended else "resume all queues") from exc

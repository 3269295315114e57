"""Suspend and resume every queue at once (RQ's ``rq suspend`` / ``rq resume``).

The flag is one global key; setting or clearing it publishes on a global sharded channel that every
worker subscribes to, so workers stop leasing (or start again) at once. Workers also read the flag when
they start, when their subscriptions are rebuilt and at each fallback poll, so a lost message only
delays the change. One queue is suspended with :meth:`clusterq.Queue.suspend`.

Each operation is a plan (:mod:`clusterq.state.plan`) run by the sync functions here and by their
``*_async`` twins, which take a ``redis.asyncio`` client.
"""

from __future__ import annotations

from clusterq.connection.aio import AsyncClient
from clusterq.connection.sync import ConnectionLike, connect, is_proxy
from clusterq.exceptions import explain_server_error
from clusterq.state import keys as K
from clusterq.state.aio_store import AsyncStore
from clusterq.state.plan import SERVER_ERRORS, Plan, arun_plan, client_step, run_plan
from clusterq.state.store import Store


def suspend(connection: ConnectionLike = None) -> None:
    """Stop every worker on this deployment from starting jobs; queued jobs stay, running ones finish."""
    client = connect(connection)
    run_plan(_set_plan(True, publish=not is_proxy(client)), Store(client))


def resume(connection: ConnectionLike = None) -> None:
    """Undo :func:`suspend`: workers lease again at once."""
    client = connect(connection)
    run_plan(_set_plan(False, publish=not is_proxy(client)), Store(client))


def is_suspended(connection: ConnectionLike = None) -> bool:
    """True while :func:`suspend` holds (queues suspended one by one are not counted)."""
    return run_plan(_is_suspended_plan(), Store(connect(connection)))


async def suspend_async(connection: AsyncClient) -> None:
    """:func:`suspend` for asyncio."""
    await arun_plan(_set_plan(True, publish=not is_proxy(connection)), AsyncStore(connection))


async def resume_async(connection: AsyncClient) -> None:
    """:func:`resume` for asyncio."""
    await arun_plan(_set_plan(False, publish=not is_proxy(connection)), AsyncStore(connection))


async def is_suspended_async(connection: AsyncClient) -> bool:
    """:func:`is_suspended` for asyncio."""
    return await arun_plan(_is_suspended_plan(), AsyncStore(connection))


def _is_suspended_plan() -> Plan[bool]:
    return bool((yield client_step("exists", K.SUSPENDED)))


def _set_plan(suspended: bool, publish: bool = True) -> Plan[None]:
    """Set or clear the flag, then tell the workers at once. Through a proxy (no pub/sub) the workers read
    the flag within a second instead (see the worker's lifecycle)."""
    try:
        if suspended:
            yield client_step("set", K.SUSPENDED, "1")
        else:
            yield client_step("delete", K.SUSPENDED)
        if publish:
            yield client_step("spublish", K.CONTROL_CHANNEL, "1" if suspended else "0")
    except SERVER_ERRORS as exc:
        raise explain_server_error(exc, "suspend all queues" if suspended else "resume all queues") from exc

"""What a queue's helpers need of the queue they serve.

Registries and the synchronous (inline) runner belong to a queue, and ``queue`` imports them to build
them. They take a :class:`QueueView` instead of a ``Queue`` so that the import points one way only
(checked by the import contract in pyproject.toml); a :class:`~clusterq.Queue` satisfies it.
"""

from __future__ import annotations

from typing import Protocol

from clusterq.api.hooks import HookSet
from clusterq.connection.sync import Client
from clusterq.serializers import Serializer
from clusterq.state import keys as K
from clusterq.state import store as T


class QueueView(Protocol):
    """The parts of a queue its registries and inline runner use."""

    name: str
    keys: K.QueueKeys
    store: T.Store
    connection: Client
    serializer: Serializer
    hooks: HookSet

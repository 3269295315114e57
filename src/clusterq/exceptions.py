"""Exceptions raised by clusterq. Every error a user can see is one of these, with a message that names
the problem (the host, the queue, the job, the function) rather than a bare redis-py traceback."""

from __future__ import annotations


class ClusterQError(Exception):
    """Base class of every clusterq error."""


class ConnectionFailed(ClusterQError):
    """The server (or Sentinel group, or cluster) named by a URL could not be used."""


class WorkerNameInUse(ClusterQError):
    """Another running worker has the name this worker was given (``clusterq worker --name``: exit 4)."""


class InvalidURL(ClusterQError, ValueError):
    """A connection URL clusterq cannot parse or does not support."""


class InvalidQueueName(ClusterQError, ValueError):
    """A queue name that is empty, too long or not a string."""


class PartitionCountMismatch(ClusterQError, ValueError):
    """A producer or worker declared a partition count other than the one stored with the queue."""


class PartitionResizeInProgress(ClusterQError):
    """A partitioned queue's count cannot change again before the previous change is finished."""


class InvalidJobId(ClusterQError, ValueError):
    """A job id that is empty, too long or not a string."""


class SerializationError(ClusterQError, TypeError):
    """Arguments or a result the queue's serializer cannot carry."""


class DeserializationError(ClusterQError):
    """A payload read from Redis that the serializer cannot decode."""


class NoSuchJobError(ClusterQError, LookupError):
    """The job does not exist (never enqueued, deleted, or its record expired)."""


class InvalidJobOperation(ClusterQError):
    """The job is not in a state that allows the operation (e.g. requeue of a running job)."""


class DuplicateJob(ClusterQError):
    """``unique=True`` and a job with that id is still scheduled, queued, started or deferred.

    ``job_ids`` are the refused ids. From ``enqueue_many``, every other item was enqueued and ``jobs``
    holds one job per item, in order (for a refused item, a handle of the existing job).
    """

    def __init__(self, message: str, job_ids: list[str], jobs: list[object] | None = None) -> None:
        super().__init__(message)
        self.job_ids = job_ids
        self.jobs = jobs or []


class FunctionNotFound(ClusterQError):
    """A job's dotted function path could not be imported or is not allowed on this worker."""


class JobTimeoutError(ClusterQError):
    """Raised inside a job that ran past its time limit."""


class StopRequested(BaseException):
    """Raised inside a running job when the worker is told to stop at once (second signal).

    A BaseException so that a job's own ``except Exception`` cannot swallow it.
    """


class JobStopped(BaseException):
    """Raised inside a job that was stopped with ``job.stop()`` (thread and solo pools; the process pools
    kill the job's process and the asyncio pool cancels its task instead).

    A BaseException so that a job's own ``except Exception`` cannot swallow it.
    """


class ReplicationTimeout(ClusterQError):
    """A durable enqueue (``Queue(..., wait_replicas=N)``) wrote its jobs to the primary, but fewer than N
    replicas acknowledged them within the timeout. The jobs exist and will run unless the primary fails
    before they reach a replica: they may or may not survive a failover. Retrying with the same
    ``job_id`` is safe (it creates nothing twice and waits again)."""

    def __init__(self, message: str, *, job_ids: list[str], acknowledged: int, wanted: int) -> None:
        super().__init__(message)
        self.job_ids = job_ids
        self.acknowledged = acknowledged
        self.wanted = wanted


class ServerError(ClusterQError):
    """The server refused or failed a command (out of memory, ACL denial, read-only replica...)."""


def explain_server_error(exc: BaseException, doing: str) -> ClusterQError:
    """A :class:`ServerError` whose message says what we were doing and what the server meant (or a
    :class:`ConnectionFailed` when the server could not be reached at all)."""
    text = str(exc)
    if isinstance(exc, (ConnectionError, TimeoutError, OSError)) or type(exc).__name__ in (
            "ConnectionError", "TimeoutError", "ClusterDownError", "MasterNotFoundError"):
        return ConnectionFailed(f"{doing} failed: the server could not be reached: {type(exc).__name__}: {text}")
    kind = type(exc).__name__
    if kind == "OutOfMemoryError" or text.startswith("OOM"):
        hint = "the server reached maxmemory (with the noeviction policy it refuses writes rather than drop data)"
    elif kind == "NoPermissionError" or text.startswith("NOPERM"):
        hint = "the Redis user lacks a permission clusterq needs (keys cq:*, channels cq:*, EVALSHA/EVAL)"
    elif kind in ("MovedError", "AskError") or text.startswith("MOVED"):
        hint = ("the server is a Redis Cluster node and the client is not a cluster client: connect with "
                "'redis+cluster://host:port' (or pass redis.cluster.RedisCluster)")
    elif kind == "ReadOnlyError" or text.startswith("READONLY"):
        hint = "the connection reached a read-only replica (a failover in progress?)"
    else:
        hint = f"{type(exc).__name__}"
    return ServerError(f"{doing} failed: {hint}: {text}")

"""clusterq: background jobs for Python on Redis and Valkey: standalone, Sentinel or Cluster.

    from clusterq import Queue
    q = Queue("emails", connection="redis+cluster://10.0.0.1:6379")
    job = q.enqueue("myapp.tasks.send", "hello@example.com")

    $ clusterq worker -u redis+cluster://10.0.0.1:6379 emails default
"""

from .aio import AsyncJob, AsyncQueue, connect_async, disconnect_async
from .callbacks import Callback
from .connection import connect, describe, parse_url, topology_of
from .context import get_current_job, set_progress
from .control import is_suspended, resume, suspend
from .cron import CronError, CronExpr, Interval
from .dependency import Dependency
from .exceptions import (
    ClusterQError,
    ConnectionFailed,
    DeserializationError,
    DuplicateJob,
    FunctionNotFound,
    InvalidJobId,
    InvalidJobOperation,
    InvalidQueueName,
    InvalidURL,
    JobStopped,
    JobTimeoutError,
    NoSuchJobError,
    ReplicationTimeout,
    SerializationError,
    ServerError,
    StopRequested,
)
from .group import Group, GroupStatus, enqueue_group
from .health import NodeMemory, memory_of_primaries, server_warnings
from .job import Job, JobStatus, Progress, send_stop_job_command
from .keys import key_slot, queue_slot
from .periodic_jobs import (
    CronScheduler,
    Periodic,
    PeriodicError,
    PeriodicInfo,
    PeriodicRun,
    list_periodic,
    load_periodic,
    periodic,
    remove_periodic,
)
from .pool import AsyncioPool, ForkPool, Pool, ProcessPool, SoloPool, ThreadPool
from .queue import EnqueueData, Queue
from .registry import Registry
from .results import Result, ResultType
from .retry import Backoff, Repeat, Retry, RetryJob
from .serializers import JSONSerializer, PickleSerializer, Serializer
from .signing import Signer
from .worker import Worker, WorkerInfo, list_workers

__version__ = "0.1.0"

__all__ = [
    # producing
    "AsyncJob",
    "AsyncQueue",
    "Backoff",
    "Callback",
    "Dependency",
    "enqueue_group",
    "EnqueueData",
    "Group",
    "GroupStatus",
    "Job",
    "JobStatus",
    "Queue",
    "Registry",
    "Repeat",
    "Result",
    "ResultType",
    "Retry",
    "RetryJob",
    # inside a job, and controlling one
    "Progress",
    "get_current_job",
    "send_stop_job_command",
    "set_progress",
    # consuming
    "AsyncioPool",
    "ForkPool",
    "Pool",
    "ProcessPool",
    "SoloPool",
    "ThreadPool",
    "Worker",
    "WorkerInfo",
    "list_workers",
    # controlling
    "is_suspended",
    "resume",
    "suspend",
    # periodic jobs
    "CronExpr",
    "CronScheduler",
    "Interval",
    "Periodic",
    "PeriodicInfo",
    "PeriodicRun",
    "list_periodic",
    "load_periodic",
    "periodic",
    "remove_periodic",
    # connecting
    "connect",
    "connect_async",
    "describe",
    "disconnect_async",
    "key_slot",
    "parse_url",
    "queue_slot",
    "topology_of",
    # serializing
    "JSONSerializer",
    "PickleSerializer",
    "Serializer",
    # security and server checks
    "NodeMemory",
    "Signer",
    "memory_of_primaries",
    "server_warnings",
    # errors
    "ClusterQError",
    "ConnectionFailed",
    "CronError",
    "DeserializationError",
    "DuplicateJob",
    "FunctionNotFound",
    "InvalidJobId",
    "InvalidJobOperation",
    "InvalidQueueName",
    "InvalidURL",
    "JobStopped",
    "JobTimeoutError",
    "NoSuchJobError",
    "PeriodicError",
    "ReplicationTimeout",
    "SerializationError",
    "ServerError",
    "StopRequested",
    "__version__",
]

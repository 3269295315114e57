"""clusterq: background jobs for Python on Redis and Valkey: standalone, Sentinel or Cluster.

    from clusterq import Queue
    q = Queue("emails", connection="redis+cluster://10.0.0.1:6379")
    job = q.enqueue("myapp.tasks.send", "hello@example.com")

    $ clusterq worker -u redis+cluster://10.0.0.1:6379 emails default
"""

from clusterq.api.aio_buffer import AsyncBuffer
from clusterq.api.aio_group import AsyncGroup, enqueue_group_async
from clusterq.api.aio_queue import AsyncJob, AsyncQueue, AsyncRegistry, connect_async, disconnect_async
from clusterq.api.buffer import Buffer, BufferError, FlushRecord, FlushResult
from clusterq.api.callbacks import Callback
from clusterq.api.context import get_current_job, set_progress
from clusterq.api.control import is_suspended, is_suspended_async, resume, resume_async, suspend, suspend_async
from clusterq.api.dependency import Dependency
from clusterq.api.group import Group, GroupStatus, enqueue_group
from clusterq.api.hooks import EnqueueInfo, Hook, JobInfo
from clusterq.api.job import Job, JobStatus, Progress, send_stop_job_command
from clusterq.api.partitioned_queue import AsyncPartitionedQueue, PartitionedQueue, PartitionedRegistry
from clusterq.api.queue import EnqueueData, Queue
from clusterq.api.registry import Registry
from clusterq.api.results import Result, ResultType
from clusterq.api.retry import Backoff, NoRetry, Repeat, Retry, RetryJob
from clusterq.connection.server_checks import NodeMemory, memory_of_primaries, server_warnings
from clusterq.connection.sync import connect, describe, parse_url, topology_of
from clusterq.exceptions import (
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
    PartitionCountMismatch,
    PartitionResizeInProgress,
    ReplicationTimeout,
    SerializationError,
    ServerError,
    StopRequested,
    WorkerNameInUse,
)
from clusterq.scheduling.cron import CronError, CronExpr, Interval
from clusterq.scheduling.periodic import (
    CronScheduler,
    Periodic,
    PeriodicError,
    PeriodicInfo,
    PeriodicRun,
    list_periodic,
    load_periodic,
    periodic,
    remove_periodic,
    run_periodic_now,
)
from clusterq.serializers import JSONSerializer, PickleSerializer, Serializer
from clusterq.signing import Signer
from clusterq.state.keys import key_slot, queue_slot
from clusterq.worker.pools.factory import AsyncioPool, ForkPool, Pool, ProcessPool, SoloPool, ThreadPool
from clusterq.worker.registration import list_workers_async
from clusterq.worker.worker import Worker, WorkerInfo, list_workers

__version__ = "0.1.0"

__all__ = [
    "AsyncBuffer",
    "Buffer",
    "BufferError",
    "FlushRecord",
    "FlushResult",
    # producing
    "AsyncGroup",
    "AsyncJob",
    "AsyncQueue",
    "AsyncRegistry",
    "Backoff",
    "Callback",
    "Dependency",
    "enqueue_group",
    "enqueue_group_async",
    "EnqueueData",
    "Group",
    "GroupStatus",
    "Job",
    "JobStatus",
    "PartitionedQueue",
    "AsyncPartitionedQueue",
    "PartitionedRegistry",
    "Queue",
    "Registry",
    "Repeat",
    "Result",
    "ResultType",
    "Retry",
    "RetryJob",
    "NoRetry",
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
    "list_workers_async",
    # hooks (clusterq.hooks)
    "EnqueueInfo",
    "Hook",
    "JobInfo",
    # controlling
    "is_suspended",
    "is_suspended_async",
    "resume",
    "resume_async",
    "suspend",
    "suspend_async",
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
    "run_periodic_now",
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
    "WorkerNameInUse",
    "JobTimeoutError",
    "NoSuchJobError",
    "PartitionCountMismatch",
    "PartitionResizeInProgress",
    "PeriodicError",
    "ReplicationTimeout",
    "SerializationError",
    "ServerError",
    "StopRequested",
    "__version__",
]

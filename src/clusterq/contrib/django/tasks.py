"""A backend for Django's task framework (``django.tasks`` in Django 6, the ``django-tasks`` package
before it) that stores tasks as clusterq jobs, run by ``clusterq worker``:

    TASKS = {"default": {"BACKEND": "clusterq.contrib.django.ClusterQBackend", "QUEUES": ["default", "emails"]}}

A task's ``queue_name`` is the clusterq queue; ``priority`` (-100..100, higher first) becomes one of
clusterq's nine levels (100 -> 1, 0 -> 5, -100 -> 9); ``run_after`` schedules the job; a result's id is the
job's handle, so ``task.get_result(id)`` and ``result.refresh()`` work from any process. The worker runs
:func:`run_task`, which sets Django up (``$DJANGO_SETTINGS_MODULE``) on first use, so a plain
``clusterq worker default`` serves these queues.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

try:  # Django 6+
    from django.tasks import TaskResultStatus, task_backends
    from django.tasks.backends.base import BaseTaskBackend
    from django.tasks.base import Task, TaskContext, TaskError, TaskResult
    from django.tasks.exceptions import TaskResultDoesNotExist
    from django.tasks.signals import task_enqueued, task_finished, task_started
except ImportError:  # the django-tasks backport (same API)
    from django_tasks import TaskResultStatus, task_backends
    from django_tasks.backends.base import BaseTaskBackend
    from django_tasks.base import Task, TaskContext, TaskError, TaskResult
    from django_tasks.exceptions import TaskResultDoesNotExist
    from django_tasks.signals import task_enqueued, task_finished, task_started

from django.utils.module_loading import import_string

from clusterq.api.context import get_current_job
from clusterq.api.job import Job, JobStatus
from clusterq.contrib.django.queues import get_connection, get_queue
from clusterq.contrib.django.worker import ensure_setup
from clusterq.exceptions import InvalidJobId, NoSuchJobError

RUNNER = "clusterq.contrib.django.tasks.run_task"

_STATUS = {
    JobStatus.QUEUED: TaskResultStatus.READY,
    JobStatus.SCHEDULED: TaskResultStatus.READY,
    JobStatus.DEFERRED: TaskResultStatus.READY,
    JobStatus.STARTED: TaskResultStatus.RUNNING,
    JobStatus.FINISHED: TaskResultStatus.SUCCESSFUL,
    JobStatus.FAILED: TaskResultStatus.FAILED,
    JobStatus.STOPPED: TaskResultStatus.FAILED,
    JobStatus.CANCELED: TaskResultStatus.FAILED,
}


def clusterq_priority(priority: int) -> int:
    """Django's -100..100 (higher runs first) as clusterq's 1..9 (1 runs first)."""
    return 1 + round((100 - priority) * 8 / 200)


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _error_of(exc_info: str | None) -> TaskError:
    text = (exc_info or "").strip()
    last = text.splitlines()[-1] if text else "Exception"
    name = last.split(":", 1)[0].strip() or "Exception"
    if "." not in name:
        name = f"builtins.{name}"
    return TaskError(exception_class_path=name, traceback=exc_info or "")


def _task_of(path: str, options: dict[str, Any], alias: str) -> Task:
    found = import_string(path)
    if not isinstance(found, Task):
        raise TaskResultDoesNotExist(f"{path!r} is not a task (decorated with @task)")
    return found.using(priority=options.get("priority"), queue_name=options.get("queue_name"), backend=alias)


def _result_of(job: Job, alias: str) -> TaskResult:
    path, args, kwargs, options = job.args[:4]
    task = _task_of(path, options, alias)
    status = _STATUS.get(job.get_status(refresh=False) or JobStatus.QUEUED, TaskResultStatus.READY)
    started = _aware(job.started_at)
    result = TaskResult(
        task=task, id=job.handle, status=status, enqueued_at=_aware(job.enqueued_at or job.created_at),
        started_at=started, finished_at=_aware(job.ended_at) if status in (TaskResultStatus.SUCCESSFUL,
                                                                          TaskResultStatus.FAILED) else None,
        last_attempted_at=started, args=list(args), kwargs=dict(kwargs), backend=alias,
        errors=[_error_of(job.exc_info)] if status == TaskResultStatus.FAILED else [],
        worker_ids=[job.worker_name] if job.worker_name else [],
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", job.return_value(refresh=False))
    return result


class ClusterQBackend(BaseTaskBackend):
    """Tasks as clusterq jobs on the ``CLUSTERQ`` deployment. ``OPTIONS``: ``job_timeout``,
    ``result_ttl``, ``failure_ttl``, ``max_attempts`` (defaults for every task's job)."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    ENQUEUE_OPTIONS = ("job_timeout", "result_ttl", "failure_ttl", "max_attempts", "ttl")

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        unknown = sorted(set(self.options) - set(self.ENQUEUE_OPTIONS))
        if unknown:
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(f"settings.TASKS[{alias!r}]['OPTIONS'] has unknown key(s) {unknown}; "
                                       f"known: {', '.join(self.ENQUEUE_OPTIONS)}")

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        self.validate_task(task)
        options = {"priority": task.priority, "queue_name": task.queue_name, "takes_context": task.takes_context,
                   "backend": self.alias}
        # JSON round trip now: arguments a worker could not read fail here, at the call, as in Django
        call = (task.module_path, json.loads(json.dumps(list(args))), json.loads(json.dumps(dict(kwargs))), options)
        queue = get_queue(task.queue_name)
        extra = {"priority": clusterq_priority(task.priority), "description": f"task {task.module_path}",
                 **self.options}
        if task.run_after is not None:
            job = queue.enqueue_at(task.run_after, RUNNER, *call, **extra)
        else:
            job = queue.enqueue(RUNNER, *call, **extra)
        assert job is not None
        result = _result_of(job.refresh(), self.alias)
        task_enqueued.send(type(self), task_result=result)
        return result

    def get_result(self, result_id: str) -> TaskResult:
        try:
            job = Job.fetch(result_id, get_connection())
        except (NoSuchJobError, InvalidJobId, ValueError) as exc:
            raise TaskResultDoesNotExist(result_id) from exc
        if job.func_name != RUNNER:
            raise TaskResultDoesNotExist(f"{result_id} is a clusterq job, not a task")
        return _result_of(job, self.alias)

    def check(self, **kwargs: Any) -> Iterable[Any]:
        return []


def run_task(path: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]) -> Any:
    """What the worker runs for a task: set Django up, call the task, send the task signals."""
    ensure_setup()
    current = get_current_job()
    alias = str(options.get("backend") or _alias_for())
    result = _result_of(current, alias) if current is not None else None
    task = _task_of(path, options, alias)
    if result is not None:
        object.__setattr__(result, "status", TaskResultStatus.RUNNING)
        task_started.send(type(task.get_backend()), task_result=result)
    try:
        if options.get("takes_context"):
            value = task.call(TaskContext(task_result=result), *args, **kwargs)
        else:
            value = task.call(*args, **kwargs)
    except BaseException:
        if result is not None:
            object.__setattr__(result, "status", TaskResultStatus.FAILED)
            task_finished.send(type(task.get_backend()), task_result=result)
        raise
    if result is not None:
        object.__setattr__(result, "status", TaskResultStatus.SUCCESSFUL)
        object.__setattr__(result, "_return_value", value)
        task_finished.send(type(task.get_backend()), task_result=result)
    return value


def _alias_for() -> str:
    """The first ``TASKS`` alias using this backend (for a task enqueued without its alias)."""
    from django.conf import settings

    for alias, params in getattr(settings, "TASKS", {}).items():
        if str(params.get("BACKEND", "")).endswith("ClusterQBackend"):
            return str(alias)
    return "default"


__all__ = ["ClusterQBackend", "clusterq_priority", "run_task", "task_backends"]

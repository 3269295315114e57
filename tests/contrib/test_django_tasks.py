"""The Django task framework backend (django.tasks, or the django-tasks backport on Django < 6): tasks
enqueued through the standard API, run by a real ``clusterq worker`` subprocess, results read back
through ``get_result`` and ``refresh``."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
from django.utils import timezone
from djproject.shop import jobs

from clusterq import Job, JobStatus
from clusterq.contrib.django import conf
from clusterq.contrib.django.tasks import TaskResultDoesNotExist, TaskResultStatus, clusterq_priority

try:
    from django.tasks import default_task_backend, task_backends
    from django.tasks.exceptions import InvalidTaskError
except ImportError:
    from django_tasks import default_task_backend, task_backends
    from django_tasks.exceptions import InvalidTaskError


@pytest.fixture
def cq(settings, url):
    settings.CLUSTERQ = {"URL": url}
    yield url
    conf.reset()


def run_worker(url: str, env: dict[str, str], *queues: str) -> None:
    """A real `clusterq worker --burst` on the project: Django is set up by the task runner itself."""
    done = subprocess.run([sys.executable, "-m", "clusterq.cli", "worker", "-u", url, "--burst", "-q", "-c", "1",
                           *queues], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_the_backend_says_what_it_supports() -> None:
    backend = task_backends["default"]
    assert type(backend).__name__ == "ClusterQBackend"
    assert backend.supports_defer and backend.supports_priority and backend.supports_get_result
    assert backend.supports_async_task


def test_a_task_runs_on_a_clusterq_worker_and_its_result_comes_back(cq, django_env) -> None:
    result = jobs.add.enqueue(2, 3)
    assert result.status == TaskResultStatus.READY and "/" in result.id  # the id is the job's handle
    assert result.args == [2, 3] and result.enqueued_at is not None
    failing = jobs.fail.enqueue("input")
    with_context = jobs.attempt.enqueue("ada")
    coroutine = jobs.async_add.enqueue(20, 22)
    run_worker(cq, django_env, "default")
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 5
    assert result.is_finished and result.started_at and result.finished_at and result.worker_ids
    again = jobs.add.get_result(result.id)
    assert again.return_value == 5 and again.task.func is jobs.add.func
    failing.refresh()
    assert failing.status == TaskResultStatus.FAILED
    assert failing.errors[0].exception_class is ValueError and "bad input" in failing.errors[0].traceback
    with pytest.raises(ValueError, match="Task failed"):
        failing.return_value  # noqa: B018
    assert jobs.attempt.get_result(with_context.id).return_value == "ada attempt 1"
    assert jobs.async_add.get_result(coroutine.id).return_value == 42


def test_priority_and_queue_name_become_the_jobs(cq, django_env) -> None:
    assert [clusterq_priority(p) for p in (100, 50, 0, -50, -100)] == [1, 3, 5, 7, 9]
    low = jobs.label.using(priority=-100).enqueue("low")
    high = jobs.label.enqueue("high")  # priority 50, queue tasks-high
    assert Job.fetch(high.id, cq).queue_name == "tasks-high"
    run_worker(cq, django_env, "tasks-high")
    low.refresh()
    high.refresh()
    assert high.return_value == {"label": "HIGH"} and low.return_value == {"label": "LOW"}
    assert high.started_at <= low.started_at  # higher priority ran first, though enqueued later


def test_run_after_schedules_the_task(cq, django_env) -> None:
    later = jobs.add.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(1, 1)
    assert Job.fetch(later.id, cq).get_status() == JobStatus.SCHEDULED
    assert later.status == TaskResultStatus.READY
    soon = jobs.add.using(run_after=timezone.now() - timedelta(seconds=1)).enqueue(2, 2)  # due already
    run_worker(cq, django_env, "default")
    soon.refresh()
    later.refresh()
    assert soon.return_value == 4 and later.status == TaskResultStatus.READY


def test_unknown_results_and_bad_arguments_are_clear_errors(cq) -> None:
    with pytest.raises(TaskResultDoesNotExist):
        default_task_backend.get_result("default/no-such-job")
    plain = Job.fetch(__import__("clusterq").Queue("default", cq).enqueue("djproject.shop.jobs.ship", 1).handle, cq)
    with pytest.raises(TaskResultDoesNotExist, match="not a task"):
        default_task_backend.get_result(plain.handle)
    with pytest.raises(TypeError):
        jobs.add.enqueue(object(), 1)  # not JSON: refused at the call
    with pytest.raises(InvalidTaskError):
        jobs.add.using(run_after=timezone.now().replace(tzinfo=None))


def test_synchronous_mode_runs_tasks_at_once(cq, clusterq_sync) -> None:
    result = jobs.add.enqueue(5, 6)
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 11


def test_the_async_api_enqueues_and_refreshes(cq, django_env) -> None:
    import asyncio

    async def enqueue():
        return await jobs.add.aenqueue(7, 8)

    result = asyncio.run(enqueue())
    run_worker(cq, django_env, "default")

    async def read():
        await result.arefresh()
        return (await jobs.add.aget_result(result.id)).return_value

    assert asyncio.run(read()) == 15 and result.return_value == 15

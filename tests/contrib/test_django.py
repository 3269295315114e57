"""clusterq.contrib.django against a real PostgreSQL database and real Redis topologies: the CLUSTERQ
setting, enqueue on commit, the management commands and the test helpers."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import transaction
from djproject.shop import jobs
from djproject.shop.models import Order

from clusterq import Job, JobStatus, Queue, is_suspended
from clusterq.contrib.django import conf, get_queue


@pytest.fixture
def cq(settings, url):  # the project's CLUSTERQ pointed at this test's server
    settings.CLUSTERQ = {"URL": url, "QUEUES": ["orders"]}
    yield url
    conf.reset()


# --- the setting -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "names"), [
    ({"URL": 6379}, "CLUSTERQ['URL'] must be a str"),
    ({"URL": "redis://x", "QUEUES": "default"}, "CLUSTERQ['QUEUES']"),
    ({"URL": "redis://x", "SYNC": "yes"}, "CLUSTERQ['SYNC']"),
    ({"URL": "redis://x", "SIGNING_KEY": 12}, "CLUSTERQ['SIGNING_KEY']"),
    ({"URL": "redis://x", "BROKER": 1}, "unknown key(s) ['BROKER']"),
    ({"CACHE": "nope"}, "CLUSTERQ['CACHE'] names cache 'nope'"),
    ("redis://x", "settings.CLUSTERQ must be a dict"),
])
def test_a_wrong_setting_is_improperly_configured_naming_it(settings, value, names) -> None:
    settings.CLUSTERQ = value
    with pytest.raises(ImproperlyConfigured) as caught:
        conf.load()
    assert names in str(caught.value)


def test_a_missing_url_names_the_setting(settings, monkeypatch) -> None:
    monkeypatch.delenv("CLUSTERQ_URL", raising=False)
    settings.CLUSTERQ = {"QUEUES": ["a"]}
    with pytest.raises(ImproperlyConfigured, match=r"CLUSTERQ\['URL'\] is missing"):
        conf.load()
    del settings.CLUSTERQ
    with pytest.raises(ImproperlyConfigured, match=r"settings\.CLUSTERQ is missing"):
        conf.load()


def test_the_url_may_come_from_a_redis_cache(settings, clusterq_standalone) -> None:
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                                   "LOCATION": [clusterq_standalone.url]}}
    settings.CLUSTERQ = {"CACHE": "default"}
    assert conf.load().url == clusterq_standalone.url
    job = get_queue("cached").enqueue("djproject.shop.jobs.add.call", 1, 2)
    assert job.get_status() == JobStatus.QUEUED
    job.delete()
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with pytest.raises(ImproperlyConfigured, match="LOCATION is not a Redis URL"):
        conf.load()


def test_a_django_redis_cache_lends_its_client(settings, clusterq_standalone) -> None:
    from django_redis import get_redis_connection

    from clusterq.contrib.django import get_connection

    settings.CACHES = {"jobs": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": clusterq_standalone.url}}
    settings.CLUSTERQ = {"CACHE": "jobs"}
    assert get_connection() is get_redis_connection("jobs")
    job = get_queue("via-cache").enqueue("djproject.shop.jobs.ship", 1)
    assert Queue("via-cache", clusterq_standalone.url).fetch_job(job.id) is not None
    job.delete()


def test_the_system_check_reports_a_wrong_setting(settings) -> None:
    from clusterq.contrib.django.apps import check_settings

    settings.CLUSTERQ = {"URL": 1}
    errors = check_settings()
    assert [e.id for e in errors] == ["clusterq.E001"] and "CLUSTERQ['URL']" in errors[0].msg


# --- enqueue after the transaction commits -----------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_on_commit_enqueues_only_when_the_transaction_commits(cq, clusterq_burst_worker) -> None:
    queue = get_queue("orders")
    order = Order.objects.create(item="lamp")
    with pytest.raises(RuntimeError), transaction.atomic():
        assert queue.enqueue(jobs.ship, order.pk, on_commit=True) is None
        jobs.ship_later.delay(order.pk)  # @job("orders", on_commit=True)
        raise RuntimeError("roll back")
    assert queue.count == 0
    with transaction.atomic():
        queue.enqueue(jobs.ship, order.pk, on_commit=True)
        jobs.ship_later.delay(order.pk)
        jobs.ship_now.delay_on_commit(order.pk)
        assert queue.count == 0  # not yet: the block has not committed
    assert queue.count == 3
    assert clusterq_burst_worker("orders") == 3
    order.refresh_from_db()
    assert order.shipped


@pytest.mark.django_db(transaction=True)
def test_on_commit_outside_a_transaction_enqueues_at_once(cq) -> None:
    queue = get_queue("orders")
    queue.enqueue_in(60, jobs.ship, 1, on_commit=True)
    assert queue.scheduled_job_registry.count == 1
    assert isinstance(queue.enqueue(jobs.ship, 1), Job) and queue.count == 1


@pytest.mark.django_db
def test_synchronous_mode_runs_jobs_in_the_tests_transaction(cq, clusterq_sync) -> None:
    order = Order.objects.create(item="desk")
    job = jobs.ship_now.delay(order.pk)
    assert job.get_status() == JobStatus.FINISHED and job.return_value() == "shipped desk"
    order.refresh_from_db()
    assert order.shipped  # the job ran in this test's (rolled back) transaction


@pytest.mark.django_db
def test_the_burst_worker_fixture_sees_the_test_database(cq, clusterq_burst_worker) -> None:
    order = Order.objects.create(item="chair")  # uncommitted: only this connection sees it
    job = get_queue("orders").enqueue(jobs.ship, order.pk)
    assert clusterq_burst_worker("orders") == 1
    assert job.get_status() == JobStatus.FINISHED
    order.refresh_from_db()
    assert order.shipped


def test_signing_key_signs_the_jobs(settings, url) -> None:
    settings.CLUSTERQ = {"URL": url, "SIGNING_KEY": "k" * 32}
    job = get_queue("signed").enqueue("djproject.shop.jobs.ship", 1)
    assert job.refresh() and Queue("signed", url).fetch_job(job.id) is not None
    from clusterq.signing import SIGNATURE_FIELD

    raw = Queue("signed", url).connection.hget(job.key, SIGNATURE_FIELD)
    assert raw


# --- management commands ------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_the_worker_command_runs_the_settings_queues(cq) -> None:
    order = Order.objects.create(item="rug")
    job = get_queue("orders").enqueue(jobs.ship, order.pk)
    call_command("clusterq_worker", "--burst", "-P", "solo")  # queues: CLUSTERQ["QUEUES"]
    assert job.get_status() == JobStatus.FINISHED
    order.refresh_from_db()
    assert order.shipped


def test_info_suspend_and_resume_commands(cq, capsys) -> None:
    get_queue("orders").enqueue("djproject.shop.jobs.ship", 1)
    call_command("clusterq_info")
    assert "orders" in capsys.readouterr().out
    call_command("clusterq_suspend", "orders")
    assert get_queue("orders").is_suspended
    call_command("clusterq_resume", "orders")
    assert not get_queue("orders").is_suspended
    call_command("clusterq_suspend")
    assert is_suspended(cq)
    call_command("clusterq_resume")
    assert not is_suspended(cq)


def test_cron_command_lists_and_a_failing_command_raises(cq, capsys) -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="exited with"):
        call_command("clusterq_cron")  # no module, no settings module: a usage error
    call_command("clusterq_cron", "--list", "djproject.shop.jobs")
    assert "periodic job(s)" in capsys.readouterr().out


def test_worker_command_takes_worker_options_from_the_setting(settings, url) -> None:
    from clusterq.contrib.django.management.base import WorkerCommand

    settings.CLUSTERQ = {"URL": url, "QUEUES": ["a", "b"], "WORKER": {"pool": "thread", "concurrency": 2}}
    argv = WorkerCommand().build_argv(conf.load(), ["--burst"])
    assert argv[:3] == ["worker", "-u", url] and argv[-2:] == ["a", "b"]
    assert "--pool" in argv and "thread" in argv and "clusterq.contrib.django.worker:DjangoHook" in argv
    assert WorkerCommand().build_argv(conf.load(), ["-c", "3", "only"])[-1] == "only"
    settings.CLUSTERQ = {"URL": url, "WORKER": {"pool": "green"}}
    with pytest.raises(ImproperlyConfigured, match=r"CLUSTERQ\['WORKER'\]"):
        conf.load()

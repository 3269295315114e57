"""Job handles, ids and dependency lists without a server: a handle finds its job from nothing else,
whatever the queue's name holds; ``depends_on`` accepts jobs, handles and ids and refuses anything else
at the call."""

from __future__ import annotations

import pytest
import redis

from clusterq import Dependency, Job, Queue
from clusterq.api.dependency import MAX_PARENTS, parse_depends_on
from clusterq.api.job import make_handle, parse_handle
from clusterq.api.queue import validate_job_id
from clusterq.exceptions import InvalidJobId, InvalidQueueName, NoSuchJobError
from clusterq.state import outbox
from key_names import HOSTILE_NAMES

UNREACHABLE = "redis://127.0.0.1:1/0"


@pytest.mark.parametrize("queue", [*HOSTILE_NAMES[:20], "a/b", "%2F", "q"], ids=lambda n: repr(n)[:20])
def test_a_handle_gives_back_its_queue_and_id_whatever_the_name_holds(queue: str) -> None:
    for job_id in ("id", "with/slash", "é"):
        handle = make_handle(queue, job_id)
        assert parse_handle(handle) == outbox.split_handle(handle) == (queue, job_id)
        assert outbox.make_handle(queue, job_id) == handle  # the worker's outbox writes the same form


@pytest.mark.parametrize("bad", ["", "no-slash", "/id", "queue/"])
def test_a_string_that_is_not_a_handle_is_refused_saying_what_a_handle_is(bad: str) -> None:
    with pytest.raises(NoSuchJobError, match="expected 'queue/job_id'"):
        parse_handle(bad)
    with pytest.raises(ValueError, match="not a handle"):
        outbox.split_handle(bad)


def test_job_ids_are_checked_at_the_call() -> None:
    assert validate_job_id("x" * 256) == "x" * 256
    for bad in ("", None, 42, "x" * 257, "é" * 129):
        with pytest.raises(InvalidJobId):
            validate_job_id(bad)


def test_depends_on_takes_jobs_handles_and_ids_and_names_each_parent_once() -> None:
    parent = Job.__new__(Job)  # a handle only: no server is asked
    parent.queue_name, parent.id = "other", "p1"
    parents, at_front = parse_depends_on([parent, "other/p1", "local", b"bytes-id"], "mine")
    assert parents == [("other/p1", False), ("mine/local", False), ("mine/bytes-id", False)]
    assert at_front is False
    parents, at_front = parse_depends_on(Dependency(["a", "b"], allow_failure=True, enqueue_at_front=True), "q")
    assert parents == [("q/a", True), ("q/b", True)] and at_front is True
    # Named twice: it must finish if any mention says so.
    parents, _ = parse_depends_on([Dependency("a", allow_failure=True), "a"], "q")
    assert parents == [("q/a", False)]


def test_bad_dependencies_are_refused_naming_the_problem() -> None:
    with pytest.raises(TypeError, match="depends_on takes jobs, handles"):
        parse_depends_on([42], "q")
    with pytest.raises(TypeError, match="depends_on takes jobs, handles"):
        parse_depends_on("", "q")
    with pytest.raises(ValueError, match="at least one job"):
        Dependency([])
    with pytest.raises(InvalidQueueName):
        parse_depends_on(f"{'x' * 2000}/id", "q")
    with pytest.raises(ValueError, match=f"at most {MAX_PARENTS} jobs"):
        parse_depends_on([str(i) for i in range(MAX_PARENTS + 1)], "q")


def test_a_registry_holds_job_ids_so_anything_else_is_not_in_it_without_asking_the_server() -> None:
    q = Queue("q", redis.Redis.from_url(UNREACHABLE, socket_connect_timeout=0.5))  # never connected to
    registry = q.failed_job_registry
    assert None not in registry and 42 not in registry and b"id" not in registry
    with pytest.raises(redis.ConnectionError):
        "some-id" in registry  # noqa: B015 (an id is looked up: this one needs the server)

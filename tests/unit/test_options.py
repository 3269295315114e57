"""Options checked when they are given, before anything touches a server: durations, job ids, result
history, durability, Retry / Backoff / Repeat and the retry plans sent to complete.lua, worker pools."""

from __future__ import annotations

import pytest

from clusterq import Backoff, ProcessPool, Queue, Repeat, Retry, RetryJob
from clusterq.api.queue import parse_duration, validate_result_history
from clusterq.api.retry import RETRY_JOB_MAX, draw, plan_template, retry_job_plan
from clusterq.cli.main import parse_dedicated


@pytest.mark.parametrize("value, seconds", [
    (None, None), (5, 5.0), (0.25, 0.25), ("90", 90.0), ("15m", 900.0), ("2h", 7200.0), ("1d", 86400.0),
    (" 30S ", 30.0), ("1.5m", 90.0), (-1, -1.0),
])
def test_durations_are_seconds_or_rq_style_strings(value: object, seconds: float | None) -> None:
    assert parse_duration(value, "job_timeout") == seconds  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [True, "", "fast", "15 minutes", "m"])
def test_a_bad_duration_is_refused_naming_the_option(bad: object) -> None:
    with pytest.raises(ValueError, match="result_ttl must be"):
        parse_duration(bad, "result_ttl")  # type: ignore[arg-type]


def test_result_history_is_a_count_from_1_to_1000() -> None:
    assert validate_result_history(None) is None and validate_result_history(1000) == 1000
    for bad in (0, 1001, True, 2.0, "3"):
        with pytest.raises(ValueError, match="result_history must be an int from 1 to 1000"):
            validate_result_history(bad)


def test_retry_and_repeat_are_stored_as_counts_and_milliseconds() -> None:
    assert Retry(max=3).encode() == [3, [0]]
    assert Retry(max=3, interval=[1, 2.5]).encode() == [3, [1000, 2500]]
    assert Retry(max=3, interval=[1, 2.5]).intervals_s() == [1.0, 2.5]
    assert Retry(max=2, interval=Backoff(base=0.5, factor=2, maximum=10, jitter=False)).encode() == [
        2, {"b": [500, 2, 10000, 0]}]
    assert Repeat(times=2, interval=60).encode() == [2, [60000]]
    assert plan_template(Retry(max=3, interval=[1, 2.5]).encode()) == "3;1000,2500"
    assert plan_template(None) == "" and draw("3;1000") == "3;1000"


@pytest.mark.parametrize("make", [
    lambda: Retry(max=0), lambda: Retry(max=True), lambda: Retry(max=2.0),  # type: ignore[arg-type]
    lambda: Retry(max=1, interval=-1), lambda: Retry(max=1, interval=[1, -2]),
    lambda: Repeat(times=0), lambda: Repeat(times=1, interval=[-1]),
    lambda: Backoff(base=0), lambda: Backoff(factor=0.5), lambda: Backoff(base=10, maximum=5),
    lambda: RetryJob(delay=-1), lambda: RetryJob(delay=True), lambda: RetryJob(max=0),
])
def test_bad_retry_and_repeat_options_are_refused_when_made(make) -> None:
    with pytest.raises(ValueError):
        make()


def test_a_job_raising_retryjob_gets_its_own_delay_or_its_retrys_plan() -> None:
    assert retry_job_plan("", RetryJob()) == f"{RETRY_JOB_MAX};0"
    assert retry_job_plan("", RetryJob(delay=1.5, max=7)) == "7;1500"
    assert retry_job_plan("4;1000,2000", RetryJob()) == "4;1000,2000"  # the Retry's own intervals
    assert retry_job_plan("4;1000,2000", RetryJob(delay=3)) == "4;3000"  # its count, the asked delay
    assert str(RetryJob()) == "the job asked to run again"


@pytest.mark.parametrize("options", [{"wait_replicas": -1}, {"wait_replicas": 1.5}, {"wait_replicas": True},
                                     {"wait_timeout_s": 0}, {"wait_timeout_s": "1"}])
def test_bad_durability_options_are_refused(options: dict) -> None:
    with pytest.raises(ValueError, match="wait_"):
        Queue("q", "redis://127.0.0.1:1/0", **options)


def test_the_jitter_is_drawn_between_half_and_all_of_the_delay() -> None:
    template = plan_template(Retry(max=4, interval=Backoff(base=2, factor=3, maximum=60)).encode())
    assert template == "4;b:2000:3:60000:{j}"
    multipliers = {float(draw(template).rsplit(":", 1)[1]) for _ in range(200)}
    assert all(0.5 <= m <= 1.0 for m in multipliers) and len(multipliers) > 1
    assert plan_template(Retry(max=2, interval=Backoff(jitter=False)).encode()).endswith(":1")
    with pytest.raises(ValueError):
        Backoff(base=0)


def test_dedicated_pool_specs_are_parsed_and_checked() -> None:
    assert parse_dedicated("hot=8", "process") == (["hot"], "process", 8)
    assert parse_dedicated("a,b=thread:16", "process") == (["a", "b"], "thread", 16)
    for bad in ("hot", "=3", "hot=0", "hot=warp:2"):
        with pytest.raises(ValueError):
            parse_dedicated(bad, "process")


def test_a_memory_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="memory_limit_mb"):
        ProcessPool(2, memory_limit_mb=0)

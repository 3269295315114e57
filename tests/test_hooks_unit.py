"""Hooks without servers: call order, error isolation, retry-or-final, loading, headers, signing."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
from typing import Any

import pytest

from clusterq.hooks import Hook, HookSet, JobInfo, decode_headers, encode_headers, load_hook
from clusterq.signing import Signer

JOB = JobInfo("q", "id", "m.f", {}, attempt=1, retries=0)


class Named(Hook):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def before_perform(self, job: JobInfo) -> None:
        self.calls.append(f"before {self.name}")

    @contextlib.contextmanager
    def _around(self) -> Any:
        self.calls.append(f"enter {self.name}")
        try:
            yield
        except ValueError:
            self.calls.append(f"saw ValueError {self.name}")
            raise
        finally:
            self.calls.append(f"exit {self.name}")

    def around_perform(self, job: JobInfo) -> Any:
        return self._around()

    def after_perform(self, job: JobInfo, result: Any, error: BaseException | None) -> None:
        self.calls.append(f"after {self.name}")


def test_before_hooks_run_in_order_and_after_hooks_in_reverse() -> None:
    calls: list[str] = []
    hooks = HookSet([Named("a", calls), Named("b", calls)], defaults=False)
    entered = hooks.enter(JOB)
    hooks.leave(JOB, entered, None, ValueError("x"))
    assert calls == ["before a", "before b", "enter a", "enter b",
                     "saw ValueError b", "exit b", "saw ValueError a", "exit a", "after b", "after a"]


def test_no_hooks_means_nothing_to_do() -> None:
    hooks = HookSet(defaults=False)
    assert not hooks and not hooks.perform and not hooks.enqueue
    assert HookSet([Hook()], defaults=False).perform is False, "a hook's inherited no-ops are never called"


def test_a_raising_hook_is_logged_once_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    calls: list[str] = []

    class Broken(Hook):
        def after_perform(self, job: JobInfo, result: Any, error: BaseException | None) -> None:
            raise KeyError("oops")

    hooks = HookSet([Named("a", calls), Broken()], defaults=False)
    with caplog.at_level(logging.DEBUG, logger="clusterq.api.hooks"):
        for _ in range(3):
            hooks.leave(JOB, [], 1, None)
    assert calls == ["after a"] * 3
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "raised in after_perform" in errors[0].getMessage()
    assert "KeyError: 'oops'" in errors[0].getMessage()


@pytest.mark.parametrize(("plan", "retries", "event"), [
    ("", 0, "on_failure"), ("2;0", 0, "on_retry"), ("2;0", 1, "on_retry"), ("2;0", 2, "on_failure"),
    ("3;b:1000:2:60000:1", 3, "on_failure"), ("1;0", 0, "on_retry")])
def test_a_failure_is_final_when_its_retry_plan_is_spent(plan: str, retries: int, event: str) -> None:
    seen: list[str] = []

    class Either(Hook):
        def on_retry(self, job: JobInfo, error: BaseException | None, reason: str) -> None:
            seen.append("on_retry")

        def on_failure(self, job: JobInfo, error: BaseException | None, reason: str) -> None:
            seen.append("on_failure")

    job = JobInfo("q", "id", "m.f", {}, attempt=retries + 1, retries=retries)
    HookSet([Either()], defaults=False).failed(job, None, "boom", plan)
    assert seen == [event]


def test_hooks_load_from_objects_classes_and_factories() -> None:
    instance = Hook()
    assert load_hook(instance) is instance
    assert isinstance(load_hook(Hook), Hook)
    assert isinstance(load_hook(lambda: instance), Hook)
    assert isinstance(load_hook("clusterq.hooks:Hook"), Hook)
    with pytest.raises(ValueError, match="none of the hook methods"):
        load_hook(object())
    with pytest.raises(ValueError, match=r"cannot load hook 'nowhere\.at_all:Hook'"):
        load_hook("nowhere.at_all:Hook")


def test_headers_are_str_to_str_and_bounded() -> None:
    assert encode_headers({}) == ""
    assert decode_headers(encode_headers({"b": "2", "a": "1"})) == {"a": "1", "b": "2"}
    with pytest.raises(TypeError, match="str to str"):
        encode_headers({"n": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="at most 8192"):
        encode_headers({"big": "x" * 9000})
    assert decode_headers(b"not json") == {} and decode_headers(b"[1]") == {}


def test_before_enqueue_errors_reach_the_caller() -> None:
    class Refuse(Hook):
        def before_enqueue(self, job: Any) -> None:
            raise PermissionError("no")

    with pytest.raises(PermissionError):
        HookSet([Refuse()], defaults=False).before_enqueue("q", "id", "m.f", (), {})


def test_a_signature_covers_headers_and_is_unchanged_without_them() -> None:
    signer = Signer(b"k" * 32)
    plain = signer.sign("q", "id", "m.f", b"[]", "")
    assert signer.sign("q", "id", "m.f", b"[]", "", "") == plain, "jobs without headers sign as before"
    # The v1 message of a job without headers, spelled out: old signatures stay valid.
    parts = [b"clusterq-job-v1", b"q", b"id", b"m.f", b"[]", b""]
    message = b"".join(len(p).to_bytes(8, "big") + p for p in parts)
    assert plain == "v1:" + hmac.new(b"k" * 32, message, hashlib.sha256).hexdigest()
    signed = signer.sign("q", "id", "m.f", b"[]", "", '{"a":"b"}')
    assert signed != plain
    assert signer.problem("q", "id", "m.f", b"[]", "", signed, '{"a":"b"}') is None
    assert signer.problem("q", "id", "m.f", b"[]", "", signed, '{"a":"c"}') is not None
    assert signer.problem("q", "id", "m.f", b"[]", "", signed) is not None, "headers cannot be dropped"

"""Signed jobs: a worker with a signing key runs only jobs written by a holder of that key, and looks at
nothing else of a job (no import, no decoding) before the signature checks out. On every topology.

Forged and tampered jobs are made the way an attacker with write access to Redis would: by writing the
job hash and the pending list directly.
"""

from __future__ import annotations

import asyncio
import pickle
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from clusterq import Job, JobStatus, Queue, Retry, Worker
from clusterq.api.aio_queue import AsyncQueue
from clusterq.scheduling.periodic import CronScheduler, Periodic
from clusterq.signing import Signer

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
REFUSED = "SignatureError"


def burst(url: str, queue: str, **options: object) -> Worker:
    worker = Worker(queue, url, pool="solo", install_signal_handlers=False, **options)  # type: ignore[arg-type]
    worker.work(burst=True)
    return worker


def forge(queue: Queue, job_id: str, fields: dict[str, bytes | str]) -> Job:
    """Write a job record and push its id, as someone with Redis access but no key could."""
    queue.connection.hset(queue.keys.job(job_id), mapping={"s": "queued", "c": "0", **fields})
    queue.connection.rpush(queue.keys.pending, job_id)
    return Job.fetch(job_id, queue.connection, queue=queue.name)


class Evil:
    """Unpickling this creates a file: proof that a payload was decoded."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


# --- the happy path ------------------------------------------------------------------------------------

def test_signed_jobs_from_every_enqueue_path_run_on_a_worker_with_the_key(url: str, qname: str) -> None:
    queue = Queue(qname, url, signing_key=KEY)
    one = queue.enqueue("jobs.add", 1, 2, job_timeout=30, description="adds")
    many = queue.enqueue_many([queue.prepare_data("jobs.add", (i, i)) for i in range(3)])
    at = queue.enqueue_at(datetime.now(timezone.utc) - timedelta(seconds=5), "jobs.add", 5, 5)
    later = queue.enqueue_in(0, "jobs.echo", x=1)

    async def from_asyncio() -> tuple[str, str]:
        async with AsyncQueue(qname, url, signing_key=KEY) as aq:
            return (await aq.enqueue("jobs.add", 40, 2)).id, (await aq.enqueue_in(0, "jobs.add", 1, 1)).id

    async_id, async_scheduled_id = asyncio.run(from_asyncio())
    assert queue.connection.hget(queue.keys.job(one.id), "sg").startswith(b"v1:")

    worker = burst(url, qname, signing_key=KEY)

    assert worker.stats.failed == 0
    assert one.return_value() == 3
    assert [job.return_value() for job in many] == [0, 2, 4]
    assert at.return_value() == 10
    assert later.return_value() == {"args": [], "kwargs": {"x": 1}}
    assert Job.fetch(async_id, url, queue=qname).return_value() == 42
    assert Job.fetch(async_scheduled_id, url, queue=qname).return_value() == 2


def test_periodic_jobs_are_signed_by_a_scheduler_with_the_key(url: str, qname: str) -> None:
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(minutes=5)
    for key, works in ((KEY, True), (None, False)):
        job = Periodic("jobs.add", every=60, queue=qname, args=(1, 2), name=f"signed-{works}")
        scheduler = CronScheduler(url, [job], install_signal_handlers=False, signing_key=key)
        scheduler.run_once(now=start)  # first seen: records the tick without running it
        scheduler.run_once(now=start + timedelta(seconds=61))
    burst(url, qname, signing_key=KEY)
    registry = Queue(qname, url).finished_job_registry
    failed = Queue(qname, url).failed_job_registry
    assert registry.count == 1 and failed.count == 1
    assert REFUSED in (failed.get_jobs()[0].exc_info or "")


def test_dependent_unique_and_debounced_jobs_are_signed_too(url: str, qname: str) -> None:
    queue = Queue(qname, url, signing_key=KEY)
    parent = queue.enqueue("jobs.add", 1, 1)
    child = queue.enqueue("jobs.add", 2, 2, depends_on=parent)
    unique = queue.enqueue("jobs.add", 3, 3, job_id="only-one", unique=True)
    debounced = queue.enqueue("jobs.add", 4, 4, debounce=("key", 0.05))
    worker = Worker(qname, url, pool="thread", concurrency=2, install_signal_handlers=False, signing_key=KEY)
    thread = threading.Thread(target=worker.work, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        jobs = (parent, child, unique, debounced)
        while not all(job.get_status() in (JobStatus.FINISHED, JobStatus.FAILED) for job in jobs):
            assert time.monotonic() < deadline, [job.get_status() for job in jobs]
            time.sleep(0.05)
    finally:
        worker.request_stop()
        thread.join(30)
    assert [job.return_value() for job in jobs] == [2, 4, 6, 8], [job.exc_info for job in jobs]
    assert worker.stats.failed == 0


def test_a_retried_or_requeued_signed_job_keeps_a_valid_signature(url: str, qname: str) -> None:
    queue = Queue(qname, url, signing_key=KEY)
    retried = queue.enqueue("jobs.fail", "again", retry=Retry(max=1))
    burst(url, qname, signing_key=KEY)
    assert retried.get_status() == JobStatus.FAILED
    assert retried.attempts == 2 and REFUSED not in (retried.exc_info or "")

    retried.requeue()
    burst(url, qname, signing_key=KEY)
    assert "ValueError: again" in (retried.exc_info or "") and REFUSED not in (retried.exc_info or "")


def test_a_worker_without_a_key_runs_signed_and_unsigned_jobs(url: str, qname: str) -> None:
    signed = Queue(qname, url, signing_key=KEY).enqueue("jobs.add", 1, 1)
    unsigned = Queue(qname, url).enqueue("jobs.add", 2, 2)
    burst(url, qname)
    assert (signed.return_value(), unsigned.return_value()) == (2, 4)


# --- refusals ------------------------------------------------------------------------------------------

def test_a_worker_with_a_key_fails_unsigned_jobs_without_importing_their_function(url: str, qname: str) -> None:
    unsigned = Queue(qname, url).enqueue("broken_module.never_reached")
    plain = Queue(qname, url).enqueue("jobs.add", 1, 1)
    signed = Queue(qname, url, signing_key=KEY).enqueue("jobs.add", 2, 3)

    worker = burst(url, qname, signing_key=KEY)

    for job in (unsigned, plain):
        assert job.get_status() == JobStatus.FAILED
        assert "SignatureError: the job is not signed" in (job.exc_info or "")
        assert "broken on purpose" not in (job.exc_info or "")
        assert job.attempts == 1, "refused once, never retried"
    assert signed.return_value() == 5
    assert worker.stats.failed == 2 and worker.stats.finished == 1


def test_a_job_signed_with_another_key_is_refused_and_key_rotation_accepts_old_and_new(url: str, qname: str) -> None:
    old = Queue(qname, url, signing_key=OTHER_KEY).enqueue("jobs.add", 1, 1)
    burst(url, qname, signing_key=KEY)
    assert old.get_status() == JobStatus.FAILED
    assert "does not match" in (old.exc_info or "")

    old_again = Queue(qname, url, signing_key=OTHER_KEY).enqueue("jobs.add", 2, 2)
    new = Queue(qname, url, signing_key=[KEY, OTHER_KEY]).enqueue("jobs.add", 3, 3)  # the first key signs
    burst(url, qname, signing_key=[KEY, OTHER_KEY])
    assert (old_again.return_value(), new.return_value()) == (4, 6)
    f, p, o, sg = Queue(qname, url).connection.hmget(new.key, ["f", "p", "o", "sg"])
    assert Signer(KEY).problem(qname, new.id, f.decode(), p, o or b"", sg) is None
    assert Signer(OTHER_KEY).problem(qname, new.id, f.decode(), p, o or b"", sg) is not None


TAMPERING = {
    "payload": lambda q, victim, other: q.connection.hset(victim.key, "p", b"[[1000,1000],{}]"),
    "function": lambda q, victim, other: q.connection.hset(victim.key, "f", b"jobs.echo"),
    "options": lambda q, victim, other: q.connection.hset(victim.key, "o", b'{"timeout":99999}'),
    "signature taken from another job": lambda q, victim, other: q.connection.hset(
        victim.key, "sg", q.connection.hget(other.key, "sg")),
}


@pytest.mark.parametrize("tamper", TAMPERING.values(), ids=list(TAMPERING))
def test_a_signed_job_changed_in_redis_is_refused(url: str, qname: str, tamper: object) -> None:
    queue = Queue(qname, url, signing_key=KEY)
    victim = queue.enqueue("jobs.add", 1, 2)
    other = queue.enqueue("jobs.add", 3, 4)
    tamper(queue, victim, other)  # type: ignore[operator]

    burst(url, qname, signing_key=KEY)

    assert victim.get_status() == JobStatus.FAILED
    assert "SignatureError: the job's signature does not match" in (victim.exc_info or "")
    assert other.return_value() == 7


def test_a_callback_added_to_a_signed_job_in_redis_never_runs(url: str, qname: str, tmp_path: Path) -> None:
    marker = tmp_path / "callback-ran"
    queue = Queue(qname, url, signing_key=KEY)
    victim = queue.enqueue("jobs.fail", str(marker))
    queue.connection.hset(victim.key, "o", b'{"cb":{"f":["jobs.cb_failure",5]}}')

    burst(url, qname, signing_key=KEY)

    assert not marker.exists()
    assert "SignatureError" in (victim.exc_info or "")


def test_a_signed_record_copied_to_another_queue_or_id_is_refused(url: str, qname: str) -> None:
    source = Queue(qname, url, signing_key=KEY)
    original = source.enqueue("jobs.add", 1, 2)
    record = {k.decode(): v for k, v in source.connection.hgetall(original.key).items()}
    fields = {k: record[k] for k in ("f", "p", "sg")}

    elsewhere = Queue(f"{qname}-other", url)
    moved = forge(elsewhere, original.id, fields)
    renamed = forge(source, f"{original.id}-copy", fields)

    burst(url, [qname, elsewhere.name], signing_key=KEY)

    for job in (moved, renamed):
        assert job.get_status() == JobStatus.FAILED
        assert "does not match" in (job.exc_info or "")
    assert original.return_value() == 3


def test_a_forged_pickle_payload_is_never_unpickled_by_a_worker_with_a_key(
    url: str, qname: str, tmp_path: Path
) -> None:
    proof = tmp_path / "unpickled"
    queue = Queue(qname, url, serializer="pickle")
    forged = forge(queue, "evil", {"f": "jobs.noop", "p": pickle.dumps([[Evil(str(proof))], {}]),
                                   "o": b'{"ser":"pickle"}', "sg": "v1:" + "0" * 64})

    burst(url, qname, serializer="pickle", signing_key=KEY)

    assert not proof.exists(), "the payload was unpickled before its signature was checked"
    assert forged.get_status() == JobStatus.FAILED
    assert "does not match" in (forged.exc_info or "")


# --- the command line ----------------------------------------------------------------------------------

def test_cli_enqueue_and_worker_sign_and_verify_with_a_key_file_or_the_environment(
    url: str, qname: str, subprocess_env: dict[str, str], tmp_path: Path
) -> None:
    key_file = tmp_path / "key"
    key_file.write_bytes(KEY + b"\n")  # a trailing newline, as `openssl rand -hex 32 > key` leaves

    def cli(*args: str, env: dict[str, str] = subprocess_env) -> str:
        result = subprocess.run([sys.executable, "-m", "clusterq.cli", *args], env=env, capture_output=True,
                                text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    handle = cli("enqueue", "-u", url, "--signing-key-file", str(key_file), qname, "jobs.add", "2", "3")
    unsigned = Queue(qname, url).enqueue("jobs.add", 1, 1)
    cli("worker", "--burst", "-P", "solo", "-u", url, qname,
        env={**subprocess_env, "CLUSTERQ_SIGNING_KEY": KEY.decode()})

    assert Job.fetch(handle, url).return_value() == 5
    assert unsigned.get_status() == JobStatus.FAILED and REFUSED in (unsigned.exc_info or "")

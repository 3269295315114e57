"""Job functions used by the tests, importable by dotted path (``jobs.add``) in workers."""

from __future__ import annotations

import os
import time

MARKER_DIR = os.environ.get("CLUSTERQ_TEST_MARKERS", "/tmp")


def add(a, b):
    return a + b


def noop():
    return None


def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


def fail(message="boom"):
    raise ValueError(message)


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def unserializable():
    return object()


def record(path, value):
    """Append ``value`` to a file: lets a test see which jobs ran, and in what order, across processes."""
    with open(path, "a") as fh:
        fh.write(f"{value}\n")
    return value


def crash():
    os._exit(13)


def sleep_then_record(seconds, path, value):
    time.sleep(seconds)
    return record(path, value)


def cancel_self(queue, job_id, url):
    """Cancel the running job itself: its worker's lease is gone when it reports the outcome."""
    from clusterq import Job

    Job.fetch(job_id, url, queue=queue).cancel()
    return "canceled myself"


def record_then_sleep(path, value, seconds):
    """Record first (so a test sees the job start), then run long."""
    record(path, value)
    time.sleep(seconds)
    return value


def enqueue_then_record(url, queue, path, new_value, own_value, settle_s=0.5):
    """Enqueue ``record(path, new_value)`` on ``queue``, record ``own_value``, then give the wake-up
    message time to reach the worker before returning."""
    from clusterq import Queue

    Queue(queue, url).enqueue("jobs.record", path, new_value)
    record(path, own_value)
    time.sleep(settle_s)
    return own_value


def stubborn_sleep(seconds):
    """Ignores the soft time limit (SIGALRM blocked), so only a hard kill stops it."""
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(seconds)
    return seconds


def pid():
    return os.getpid()


async def async_add(a, b):
    import asyncio

    await asyncio.sleep(0.01)
    return a + b


async def async_sleep(seconds):
    import asyncio

    await asyncio.sleep(seconds)
    return seconds


def fail_until(path, runs):
    """Fails until it has been run ``runs`` times (counted in a file), then returns the run count."""
    with open(path, "a") as fh:
        fh.write("run\n")
    with open(path) as fh:
        count = len(fh.read().splitlines())
    if count < runs:
        raise RuntimeError(f"run {count} fails")
    return count


# --- callbacks (signatures as in RQ); each records what it saw in the file named by the job's first argument

def cb_success(job, connection, result):
    record(job.args[0], f"on_success {job.id} {result} ping={connection.ping()}")


def cb_failure(job, connection, exc_type, exc_value, traceback):
    record(job.args[0], f"on_failure {job.id} {exc_type.__name__} {exc_value} tb={traceback is not None}")


def cb_stopped(job, connection):
    record(job.args[0], f"on_stopped {job.id}")


def cb_raises(job, connection, *args):
    raise RuntimeError("the callback broke")


def cb_sleeps(job, connection, *args):
    time.sleep(30)


async def cb_async_success(job, connection, result):
    record(job.args[0], f"async on_success {result}")


def fail_with(path, message="boom"):
    raise ValueError(message)

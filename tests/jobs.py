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


def eat_memory(chunk_mb=16, give_up_mb=4096):
    """Allocates without bound (a poison job). Stops at ``give_up_mb`` so a missing cap fails the test
    instead of taking the machine down."""
    chunks = []
    while len(chunks) * chunk_mb < give_up_mb:
        chunks.append(bytearray(chunk_mb * 2**20))
    return f"survived {len(chunks) * chunk_mb} MiB"


def spin_forever():
    """An infinite loop in Python code (the soft time limit interrupts it)."""
    n = 0
    while True:
        n += 1


def segfault():
    import ctypes

    ctypes.string_at(0)


def spin_forever_deaf():
    """An infinite loop that blocks SIGALRM, so only the hard limit (a kill from outside) stops it."""
    import signal

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    spin_forever()


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


def retry_until(path, runs, delay=0):
    """Asks to run again (RetryJob) until it has been run ``runs`` times, then returns the run count."""
    from clusterq import RetryJob

    with open(path, "a") as fh:
        fh.write("run\n")
    with open(path) as fh:
        count = len(fh.read().splitlines())
    if count < runs:
        raise RetryJob(f"not yet ({count})", delay=delay)
    return count


def count_runs(path):
    """Records a run and returns how many runs the file holds."""
    with open(path, "a") as fh:
        fh.write("run\n")
    with open(path) as fh:
        return len(fh.read().splitlines())


def wait_for_file(path, timeout_s=60):
    """Return once ``path`` exists: the test decides when the job ends."""
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} never appeared")
        time.sleep(0.02)
    return "released"


def current_headers():
    """The running job's headers, as get_current_job() gives them."""
    from clusterq import get_current_job

    return get_current_job().headers


async def async_current_headers():
    from clusterq import get_current_job

    return get_current_job().headers


class Jobs:
    """Job functions on a class: clusterq writes their path as ``jobs:Jobs.add``."""

    @staticmethod
    def add(a, b):
        return a + b

    @classmethod
    def name(cls):
        return cls.__name__


SETTINGS = {"target": "https://example.invalid/legit"}


def notify():
    """Reads module state a forged path could rewrite through ``notify.__globals__``."""
    return SETTINGS["target"]


def raise_named(kind, path=None):
    """Raises ``kind`` ("ValueError", "KeyError", "NoRetry"); records a run in ``path`` first, if given."""
    from clusterq import NoRetry

    if path:
        with open(path, "a") as fh:
            fh.write("run\n")
    if kind == "NoRetry":
        raise NoRetry("bad input: retrying cannot help")
    raise {"ValueError": ValueError, "KeyError": KeyError}[kind]("as planned")

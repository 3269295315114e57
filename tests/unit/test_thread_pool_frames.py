"""The thread pool's look at a running job's frames never hangs the worker's process.

Before it sends a stop to a job's thread, the thread pool checks that the thread is not inside an import
(``clusterq.worker.pools.thread._importing``), with ``sys._current_frames()``. On CPython before 3.12 that
call can deadlock the whole process (CPython gh-106883): it holds the runtime's lock on the thread list
while it makes frame objects, a garbage collection starts on one of those allocations, and freeing a
thread-local in that collection takes the same lock. Seen in CI: a worker stopping racing jobs hung with
every thread blocked. The script below makes that collection likely (a low threshold, garbage with
thread-locals waiting, threads whose frames come and go) and runs in a process of its own, so a deadlock
fails this test at its timeout instead of hanging the suite; on 3.11 without the fix it hung within a few
hundred looks every time.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import gc, random, threading
    from clusterq.worker.pools.thread import _importing

    stop = False

    def leaf():
        return [1]

    def busy():
        while not stop:
            leaf()

    threads = [threading.Thread(target=busy, daemon=True) for _ in range(3)]
    for thread in threads:
        thread.start()
    gc.set_threshold(20, 10, 10)

    class Cycle:
        def __init__(self):
            self.me = self  # garbage only a collection frees
            self.local = threading.local()  # whose freeing takes the runtime's thread-list lock
            self.local.x = 1

    looks = 0
    for _ in range(3000):
        for _ in range(random.randint(1, 12)):
            Cycle()
        assert _importing(threads[0].ident) is False
        looks += 1
    stop = True
    print("looked", looks, "gc on", gc.isenabled())
""")


def test_looking_at_a_threads_frames_while_garbage_is_collected_does_not_hang_the_process() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    # Every look completed, and the collector is on again afterwards (it is paused only around the call).
    assert done.stdout.split() == ["looked", "3000", "gc", "on", "True"]

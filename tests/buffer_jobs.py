"""Flush functions for tests/test_buffer.py: each applies one flush to a JSON-lines file named by
$CLUSTERQ_TEST_BUFFER_OUT, as a user's ``UPDATE ... SET n = n + %s`` would apply it to a table."""

from __future__ import annotations

import json
import os
import threading

_lock = threading.Lock()


def apply(key, increments, flush_id):
    with _lock, open(os.environ["CLUSTERQ_TEST_BUFFER_OUT"], "a") as out:
        out.write(json.dumps({"key": key, "increments": increments, "flush_id": flush_id}) + "\n")

"""A producer as its own process, for failover scenarios: it must follow the new primary by itself.

``python fault_producer.py URL QUEUE PREFIX COUNT PAUSE_S RECORDS OUT '{"wait_replicas": 1}'`` enqueues
``fault_jobs.mark`` jobs with ids ``PREFIX0..PREFIX<COUNT-1>``, retrying a failed enqueue with the same id
(for up to 45 s), and appends ``ack <id> <unix time>`` to OUT for every acknowledged enqueue, then one
``summary <json>`` line (errors by kind, abandoned ids).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from fault_support import Producer

from clusterq import Queue


def main() -> None:
    url, queue_name, prefix, count, pause_s, records, out, options = sys.argv[1:9]
    queue = Queue(queue_name, url, **json.loads(options))
    producer = Producer(queue, Path(records), prefix, sleep_s=0.005)
    with open(out, "a") as fh:
        for i in range(int(count)):
            if producer.enqueue(i, retry_for_s=45.0):
                fh.write(f"ack {producer.acked[-1]} {producer.ack_times[producer.acked[-1]]:.6f}\n")
                fh.flush()
            time.sleep(float(pause_s))
        summary = {"errors": producer.errors, "error_kinds": dict(producer.error_kinds),
                   "abandoned": producer.abandoned}
        fh.write(f"summary {json.dumps(summary)}\n")


if __name__ == "__main__":
    main()

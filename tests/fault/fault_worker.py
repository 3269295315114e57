"""Run one clusterq Worker as a process: ``python fault_worker.py URL QUEUE[,QUEUE] '{"lease_s": 2}'``.

The JSON object holds keyword arguments for :class:`clusterq.Worker` (``pool``, ``concurrency``,
``lease_s``, ``maintenance_interval_s``...), which the CLI does not all expose.
"""

from __future__ import annotations

import json
import logging
import sys

from clusterq import Worker


def main() -> None:
    url, queues, options = sys.argv[1], sys.argv[2].split(","), json.loads(sys.argv[3])
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    Worker(queues, url, **options).work()


if __name__ == "__main__":
    main()

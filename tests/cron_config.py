"""Periodic jobs for the cron tests' subprocesses (``clusterq cron cron_config``): a one-second
interval job on the queue named by ``$CQ_CRON_QUEUE`` that appends to ``$CQ_CRON_OUT``."""

from __future__ import annotations

import os

from clusterq import Periodic

QUEUE = os.environ.get("CQ_CRON_QUEUE", "default")
OUT = os.environ.get("CQ_CRON_OUT", os.devnull)

PERIODIC = [
    Periodic("jobs.record", every=1, queue=QUEUE, args=(OUT, "tick"), name="every-second"),
]

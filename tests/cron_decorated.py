"""A periodic job declared with the decorator (``clusterq worker --with-cron cron_decorated``)."""

from __future__ import annotations

import os

from clusterq import periodic


@periodic(every=1, queue=os.environ.get("CQ_CRON_QUEUE", "default"), name="decorated-beat")
def beat(path: str | None = None) -> str:
    with open(os.environ.get("CQ_CRON_OUT", os.devnull), "a") as fh:
        fh.write("beat\n")
    return "beat"

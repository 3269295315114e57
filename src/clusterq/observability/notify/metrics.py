"""``clusterq_notifications_total{notifier,outcome}`` for a prometheus-client registry (the ``metrics``
extra; imported only when a registry is given). Outcomes: ``delivered``, ``failed`` (the endpoint raised
or answered non-2xx; retried), ``timeout`` (no answer within ``delivery_timeout_s``; retried), ``dropped``
(no retry left, or the notifier is unknown to the delivering worker), ``invalid`` (a notifier or plugin
entry point that cannot be made: counted once at start)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class NotificationCollector(Collector):
    def __init__(self, notifications: Any) -> None:
        self.notifications = notifications

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("clusterq_notifications", "Notification deliveries by notifier and outcome",
                                     labels=["notifier", "outcome"])
        for (notifier, outcome), value in sorted(self.notifications.outcomes.items()):
            family.add_metric([notifier, outcome], value)
        yield family


__all__ = ["NotificationCollector"]

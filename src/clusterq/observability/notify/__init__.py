"""Notifications: alerts about failed and abandoned jobs, backlogs, queues without workers, lost workers
and an eviction policy that can drop jobs, coalesced into one digest per rule and window and delivered
through a clusterq queue of their own by notifiers (a Standard Webhooks signed webhook, a Slack-compatible
chat webhook, email over SMTP, or a plugin published under the ``clusterq.notifiers`` entry point group).

See docs/operations.md ("Notifications") for the settings and how the parts fit.
"""

from clusterq.observability.notify.config import (
    CONFIG_ENV,
    DEFAULT_QUEUE,
    EVENTS,
    NotifySettings,
    Rule,
    load,
)
from clusterq.observability.notify.hook import Notifications
from clusterq.observability.notify.notifiers import (
    ENTRY_POINT_GROUP,
    ChatNotifier,
    EmailNotifier,
    Notification,
    NotificationFailed,
    Notifier,
    WebhookNotifier,
    sign,
)

__all__ = ["CONFIG_ENV", "DEFAULT_QUEUE", "ENTRY_POINT_GROUP", "EVENTS", "ChatNotifier", "EmailNotifier",
           "Notification", "NotificationFailed", "Notifications", "Notifier", "NotifySettings", "Rule",
           "WebhookNotifier", "load", "sign"]

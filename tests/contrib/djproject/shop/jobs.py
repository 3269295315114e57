"""Jobs and tasks of the test project."""

from __future__ import annotations

try:
    from django.tasks import task
except ImportError:
    from django_tasks import task

from clusterq import Periodic
from clusterq.contrib.django import job


def ship(order_id: int) -> str:
    from djproject.shop.models import Order

    order = Order.objects.get(pk=order_id)
    order.shipped = True
    order.save()
    return f"shipped {order.item}"


@job("orders", on_commit=True)
def ship_later(order_id: int) -> str:
    return ship(order_id)


@job("orders")
def ship_now(order_id: int) -> str:
    return ship(order_id)


@task()
def add(a: int, b: int) -> int:
    return a + b


@task(queue_name="tasks-high", priority=50)
def label(text: str) -> dict:
    return {"label": text.upper()}


@task()
def fail(text: str) -> None:
    raise ValueError(f"bad {text}")


@task(takes_context=True)
def attempt(context, name: str) -> str:
    return f"{name} attempt {context.attempt}"


@task()
async def async_add(a: int, b: int) -> int:
    return a + b


PERIODIC = [Periodic("djproject.shop.jobs.ship", cron="0 3 * * *", queue="orders", args=(0,), name="nightly-ship")]

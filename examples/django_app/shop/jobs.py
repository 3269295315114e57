"""clusterq jobs (``@job``) and Django tasks (``@task``) of the example."""

try:
    from django.tasks import task
except ImportError:  # Django < 6: the django-tasks backport
    from django_tasks import task

from clusterq.contrib.django import job


@job("orders", on_commit=True)  # written only if the order's transaction commits
def ship(order_id: int) -> str:
    from shop.models import Order

    order = Order.objects.get(pk=order_id)
    order.shipped = True
    order.save(update_fields=["shipped"])
    return f"shipped {order.item}"


@task(priority=10)
def add(a: int, b: int) -> int:
    return a + b

from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from shop.jobs import add, ship
from shop.models import Order


@csrf_exempt  # an API endpoint of the example
def order(request):
    with transaction.atomic():
        created = Order.objects.create(item=request.GET["item"])
        ship.delay(created.pk)  # enqueued when this block commits
        if request.GET.get("fail"):
            transaction.set_rollback(True)  # no order, and so no job
            return JsonResponse({"order": None})
    return JsonResponse({"order": created.pk})


def order_status(request, pk):
    found = Order.objects.filter(pk=pk).first()
    return JsonResponse({"exists": found is not None, "shipped": bool(found and found.shipped)})


@csrf_exempt
def add_numbers(request):
    result = add.enqueue(int(request.GET["a"]), int(request.GET["b"]))
    return JsonResponse({"result_id": result.id})


def task_status(request, result_id):
    result = add.get_result(result_id)
    return JsonResponse({"status": str(result.status),
                         "value": result.return_value if result.is_finished and not result.errors else None})

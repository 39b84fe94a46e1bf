from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from teguh.contrib.django import get_app

from .models import Order
from .tasks import fulfil_order


@csrf_exempt  # an API endpoint for the example; keep CSRF on in real forms
@require_POST
def place_order(request):
    """Write the order and spawn its workflow in one transaction: both or neither."""
    with transaction.atomic():
        order = Order.objects.create(item=request.POST.get("item", "book"))
        spawned = fulfil_order.spawn({"order_id": order.pk})
        order.task_id = spawned.task_id
        order.save(update_fields=["task_id"])
    return JsonResponse({"order": order.pk, "task": spawned.task_id})


@csrf_exempt
@require_POST
def pay_order(request, pk):
    """Emit the event the order's task waits for (the first emit of a name wins)."""
    order = get_object_or_404(Order, pk=pk)
    get_app().client.emit_event("default", f"paid:{order.pk}:{order.task_id}", {"amount": 42})
    return JsonResponse({"order": order.pk, "paid": True})


def show_order(request, pk):
    order = get_object_or_404(Order, pk=pk)
    task = get_app().client.get_task_result("default", order.task_id)
    return JsonResponse(
        {"order": order.pk, "status": order.status, "task": task.state, "result": task.result}
    )

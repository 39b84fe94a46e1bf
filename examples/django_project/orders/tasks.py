"""The order's durable workflow: reserve stock (a step), wait for payment (an event), ship.

Imported at startup by teguh.contrib.django (it autodiscovers every app's tasks.py).
"""

import logging

from teguh.contrib.django import app

from .models import Order

logger = logging.getLogger(__name__)


def reserve(order_id: int) -> dict:
    # a step: runs once, even if the task is retried or resumes after the event
    Order.objects.filter(pk=order_id).update(status="reserved")
    logger.info("order %s: stock reserved", order_id)
    return {"reserved": True}


@app.task("fulfil-order", max_attempts=5)
def fulfil_order(params, ctx):
    order_id = params["order_id"]
    ctx.step("reserve", reserve, order_id)
    # suspends the task (no worker thread held) until someone emits the event;
    # events stay in the queue until cleanup, so the name carries this task's id
    # (`manage.py flush` restarts order ids, and would bring an old payment back)
    payment = ctx.await_event(f"paid:{order_id}:{ctx.task_id}", timeout=24 * 3600)
    Order.objects.filter(pk=order_id).update(status="shipped")
    logger.info("order %s: shipped", order_id)
    return {"order_id": order_id, "paid": payment["amount"]}

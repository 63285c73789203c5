"""Workers: they run under `python manage.py oban_bridge start`, with Django set up, so the ORM
works as in a view."""

from __future__ import annotations

from oban_bridge import Job, worker

from .models import Order


@worker("Shop.SendReceipt", queue="shop", max_attempts=5)
def send_receipt(job: Job) -> None:
    order = Order.objects.get(pk=job.args["order"])
    order.status = "receipt sent"
    order.save(update_fields=["status"])

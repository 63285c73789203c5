"""Placing an order: the receipt job commits with the order, or neither exists."""

from __future__ import annotations

from django.db import transaction

from oban_bridge.contrib.django import insert

from .jobs import send_receipt
from .models import Order


def place_order(total: int) -> Order:
    with transaction.atomic():
        order = Order.objects.create(total=total)
        if total <= 0:
            raise ValueError("an order needs a positive total")  # rolls back the order and its job
        insert(send_receipt.new({"order": order.pk}))  # type: ignore[attr-defined]
    return order

from __future__ import annotations

from django.apps import AppConfig


class ObanBridgeConfig(AppConfig):
    name = "oban_bridge.contrib.django"
    label = "oban_bridge"
    verbose_name = "oban_bridge"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system check

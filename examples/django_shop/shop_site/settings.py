"""A Django shop whose orders send receipts through Oban jobs (oban_bridge.contrib.django).
The database is DATABASE_URL (a URL or a libpq string), which also holds Oban's tables."""

from __future__ import annotations

import os

from psycopg.conninfo import conninfo_to_dict

SECRET_KEY = "example-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["shop", "oban_bridge.contrib.django"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

_db = conninfo_to_dict(os.environ.get("DATABASE_URL", "dbname=shop"))
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.get("dbname", "shop"),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
    }
}

OBAN_BRIDGE = {"queues": "shop:2", "modules": ["shop.jobs"]}

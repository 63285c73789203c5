"""Oban's tables, as an Elixir app's Ecto migration calls Oban.Migration.up/1: a no-op where the
Elixir app (or an earlier run) already made them, so `manage.py migrate` and the test runner's
database both end up with them."""

from django.db import migrations

from oban_bridge.contrib.django.operations import MigrateOban


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [MigrateOban()]

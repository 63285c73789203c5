"""Oban Pro's worker features for Python workers: structured args, chains, deadlines, hooks and
encrypted args (recorded output lives in oban_bridge.recorded). Options are given to `@worker`."""

from .hooks import attach_hook, detach_hook
from .structured import Args, array, embeds_many, embeds_one, enum, field

__all__ = ["Args", "array", "attach_hook", "detach_hook", "embeds_many", "embeds_one", "enum", "field"]

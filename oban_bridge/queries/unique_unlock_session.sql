SELECT pg_advisory_unlock(hashtext('oban_bridge.unique'), hashtext(%(key)s))

DELETE FROM {prefix}.oban_peers WHERE name = %(name)s AND expires_at < %(now)s

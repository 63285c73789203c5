-- lib/oban/peers/database.ex attempt_leadership/1: take the lease for this name, or renew it when
-- this node already holds it. A row held by another node is left alone, so a live leader is never
-- taken over; it only goes when its lease expires (delete_expired_peers.sql).
INSERT INTO {prefix}.oban_peers AS p (name, node, started_at, expires_at)
VALUES (%(name)s, %(node)s, %(now)s, %(expires_at)s)
ON CONFLICT (name) DO UPDATE SET expires_at = EXCLUDED.expires_at WHERE p.node = EXCLUDED.node
RETURNING node

-- On the connections that hold presence locks: the server probes an idle client after 10 s and
-- gives up after 3 unanswered probes 5 s apart (or 25 s of unacknowledged data), so a node whose
-- host vanished without closing its sockets loses its locks in about 25 s instead of the OS
-- default of over 2 hours, and the lifeline can rescue its jobs. Ignored on Unix sockets.
SELECT set_config('tcp_keepalives_idle', '10', false),
       set_config('tcp_keepalives_interval', '5', false),
       set_config('tcp_keepalives_count', '3', false),
       set_config('tcp_user_timeout', '25000', false)

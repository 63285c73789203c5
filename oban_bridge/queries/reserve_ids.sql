-- Ids for a COPY batch from the table's own sequence (what bigserial would have given each row),
-- plus the transaction's timestamp: every row of one insert_all shares it as inserted_at, and an
-- unscheduled row gets it as scheduled_at, exactly as the column defaults would.
SELECT timezone('UTC', now()) AS now,
       array(SELECT nextval(pg_get_serial_sequence(%(table)s, 'id'))
             FROM generate_series(1, %(count)s)) AS ids

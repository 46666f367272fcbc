-- The interactive-transaction version of func_earn.sql: four round trips.
\set m random(1, :n)
\set p random(1, 100)
\set r random(1, 4000000000000000000)
BEGIN;
SELECT count(*) AS dup FROM ledger WHERE idem_key = :pfx::text || '-' || :client_id::text || '-' || :r::text \gset
\if :dup
ROLLBACK;
\else
UPDATE members SET balance = balance + :p WHERE id = :m RETURNING balance AS bal \gset
INSERT INTO ledger (member_id, type, points, idem_key, balance_after) VALUES (:m, 'earn', :p, :pfx::text || '-' || :client_id::text || '-' || :r::text, :bal);
COMMIT;
\endif

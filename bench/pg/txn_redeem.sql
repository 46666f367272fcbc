-- The interactive-transaction version of func_redeem.sql (same mix).
\set dice random(1, 100)
\set r random(1, 4000000000000000000)
\set m random(1, :n)
\set p case when :dice <= 25 then 1000000000000 else random(1, 5) end
\if :dice <= 5
\set r - random(1, 200)
\set m (-:r * 7919) % :n + 1
\set p (-:r % 5) + 1
\endif
BEGIN;
SELECT count(*) AS dup FROM ledger WHERE idem_key = :pfx::text || '-' || :client_id::text || '-' || :r::text \gset
\if :dup
ROLLBACK;
\else
WITH u AS (UPDATE members SET balance = balance - :p WHERE id = :m AND balance >= :p RETURNING balance) SELECT count(*) AS ok, coalesce(max(balance), -1) AS bal FROM u \gset
\if :ok
INSERT INTO ledger (member_id, type, points, idem_key, balance_after) VALUES (:m, 'redeem', :p, :pfx::text || '-' || :client_id::text || '-' || :r::text, :bal);
COMMIT;
\else
ROLLBACK;
\endif
\endif

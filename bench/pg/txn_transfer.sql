-- The interactive-transaction version of func_transfer.sql: rows locked in
-- id order, then the checked debit, the credit and the ledger row.
\set a random(1, :n)
\set b (:a + random(1, :n - 1) - 1) % :n + 1
\set r random(1, 4000000000000000000)
BEGIN;
SELECT count(*) AS dup FROM ledger WHERE idem_key = :pfx::text || '-' || :client_id::text || '-' || :r::text \gset
\if :dup
ROLLBACK;
\else
SELECT id FROM members WHERE id IN (:a, :b) ORDER BY id FOR UPDATE;
WITH u AS (UPDATE members SET balance = balance - 1 WHERE id = :a AND balance >= 1 RETURNING balance) SELECT count(*) AS ok, coalesce(max(balance), -1) AS bal FROM u \gset
\if :ok
UPDATE members SET balance = balance + 1 WHERE id = :b;
INSERT INTO ledger (member_id, type, points, counterparty, idem_key, balance_after) VALUES (:a, 'transfer', 1, :b, :pfx::text || '-' || :client_id::text || '-' || :r::text, :bal);
COMMIT;
\else
ROLLBACK;
\endif
\endif

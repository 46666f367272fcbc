-- Resets the baseline to :n members with :balance points each and one seed
-- ledger row per member (psql variables; run by run.py before each workload).
TRUNCATE members, ledger RESTART IDENTITY;
INSERT INTO members (id, balance) SELECT g, :balance FROM generate_series(1, :n) g;
INSERT INTO ledger (member_id, type, points, idem_key, balance_after)
    SELECT g, 'earn', :balance, 'seed-' || g, :balance FROM generate_series(1, :n) g;
VACUUM ANALYZE members;
VACUUM ANALYZE ledger;
CHECKPOINT;

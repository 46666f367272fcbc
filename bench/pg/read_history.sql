\set m random(1, :n)
SELECT id, type, points, counterparty, idem_key, balance_after, created_at
    FROM ledger WHERE member_id = :m ORDER BY id DESC LIMIT 20;

\set r random(1, 4000000000000000000)
SELECT earn_batch(:pfx::text || '-' || :client_id::text || '-' || :r::text, :batch, :n);

\set a random(1, :n)
\set b (:a + random(1, :n - 1) - 1) % :n + 1
\set r random(1, 4000000000000000000)
SELECT transfer(:pfx::text || '-' || :client_id::text || '-' || :r::text, :a, :b, 1);

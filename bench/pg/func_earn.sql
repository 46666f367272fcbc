\set m random(1, :n)
\set p random(1, 100)
\set r random(1, 4000000000000000000)
SELECT earn(:pfx::text || '-' || :client_id::text || '-' || :r::text, :m, :p);

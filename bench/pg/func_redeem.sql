-- 5% retries of an earlier key (a per-client pool of 200 keys whose member
-- and amount derive from the key, so a retry repeats the same request),
-- 20% refused (more points than any member has), the rest 1..5 points.
\set dice random(1, 100)
\if :dice <= 5
\set kn random(1, 200)
\set m (:kn * 7919) % :n + 1
\set p (:kn % 5) + 1
SELECT redeem(:pfx::text || '-rt-' || :client_id::text || '-' || :kn::text, :m, :p);
\else
\set m random(1, :n)
\set p case when :dice <= 25 then 1000000000000 else random(1, 5) end
\set r random(1, 4000000000000000000)
SELECT redeem(:pfx::text || '-' || :client_id::text || '-' || :r::text, :m, :p);
\endif

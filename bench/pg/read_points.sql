\set m random(1, :n)
SELECT balance FROM members WHERE id = :m;

-- The "PostgreSQL the way a competent team builds it" baseline: a balance row
-- per member with a non-negative CHECK, an append-only ledger whose
-- idempotency key is UNIQUE, and the earn / redeem / transfer as one PL/pgSQL
-- call each (the pgbench scripts func_*.sql) or as an interactive
-- transaction (txn_*.sql).  Durable: fsync=on, synchronous_commit=on.
--
-- Each function first looks the key up (a replay returns the stored result),
-- then updates the balance row, which takes the row lock (debits carry the
-- non-negative check in the WHERE clause: no row means refused, -1, nothing
-- written), then inserts the ledger row.  Retries of one key target one
-- member, so the row lock orders them; the ON CONFLICT guard only refuses a
-- concurrent duplicate that slipped past the lookup.  Transfers lock both
-- rows in id order (no deadlocks).

DROP TABLE IF EXISTS ledger;
DROP TABLE IF EXISTS members;

CREATE TABLE members (
    id      integer PRIMARY KEY,
    balance bigint NOT NULL CHECK (balance >= 0)
);

CREATE TABLE ledger (
    id            bigserial PRIMARY KEY,
    member_id     integer NOT NULL,
    type          text NOT NULL,
    points        bigint NOT NULL,
    counterparty  integer,
    idem_key      text NOT NULL UNIQUE,
    balance_after bigint NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ledger_member ON ledger (member_id, id);

CREATE OR REPLACE FUNCTION earn(p_key text, p_member integer, p_points bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE b bigint;
BEGIN
    SELECT balance_after INTO b FROM ledger WHERE idem_key = p_key;
    IF FOUND THEN RETURN b; END IF;
    UPDATE members SET balance = balance + p_points WHERE id = p_member RETURNING balance INTO b;
    IF NOT FOUND THEN RAISE EXCEPTION 'no member %', p_member; END IF;
    INSERT INTO ledger (member_id, type, points, idem_key, balance_after)
        VALUES (p_member, 'earn', p_points, p_key, b) ON CONFLICT (idem_key) DO NOTHING;
    IF NOT FOUND THEN RAISE EXCEPTION 'idempotency key % in flight', p_key; END IF;
    RETURN b;
END $$;

CREATE OR REPLACE FUNCTION redeem(p_key text, p_member integer, p_points bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE b bigint;
BEGIN
    SELECT balance_after INTO b FROM ledger WHERE idem_key = p_key;
    IF FOUND THEN RETURN b; END IF;
    UPDATE members SET balance = balance - p_points
        WHERE id = p_member AND balance >= p_points RETURNING balance INTO b;
    IF NOT FOUND THEN RETURN -1; END IF;
    INSERT INTO ledger (member_id, type, points, idem_key, balance_after)
        VALUES (p_member, 'redeem', p_points, p_key, b) ON CONFLICT (idem_key) DO NOTHING;
    IF NOT FOUND THEN RAISE EXCEPTION 'idempotency key % in flight', p_key; END IF;
    RETURN b;
END $$;

CREATE OR REPLACE FUNCTION transfer(p_key text, p_from integer, p_to integer, p_points bigint)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE b bigint;
BEGIN
    SELECT balance_after INTO b FROM ledger WHERE idem_key = p_key;
    IF FOUND THEN RETURN b; END IF;
    PERFORM 1 FROM members WHERE id IN (p_from, p_to) ORDER BY id FOR UPDATE;
    UPDATE members SET balance = balance - p_points
        WHERE id = p_from AND balance >= p_points RETURNING balance INTO b;
    IF NOT FOUND THEN RETURN -1; END IF;
    UPDATE members SET balance = balance + p_points WHERE id = p_to;
    INSERT INTO ledger (member_id, type, points, counterparty, idem_key, balance_after)
        VALUES (p_from, 'transfer', p_points, p_to, p_key, b) ON CONFLICT (idem_key) DO NOTHING;
    IF NOT FOUND THEN RAISE EXCEPTION 'idempotency key % in flight', p_key; END IF;
    RETURN b;
END $$;

-- The batched variant for W5: p_count earns in one call and one commit,
-- members drawn at random and applied in sorted order (no deadlocks between
-- concurrent batches), each with its own key p_key-i.
CREATE OR REPLACE FUNCTION earn_batch(p_key text, p_count integer, p_n integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    m integer;
    i integer := 0;
    b bigint;
BEGIN
    FOR m IN SELECT 1 + floor(random() * p_n)::integer AS m
             FROM generate_series(1, p_count) ORDER BY 1 LOOP
        i := i + 1;
        UPDATE members SET balance = balance + 1 WHERE id = m RETURNING balance INTO b;
        INSERT INTO ledger (member_id, type, points, idem_key, balance_after)
            VALUES (m, 'earn', 1, p_key || '-' || i, b);
    END LOOP;
    RETURN i;
END $$;

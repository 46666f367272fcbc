/*
 * The SQLite schema of jifen and its migrations.
 *
 * Journal tables (transactions, postings, consumptions, restores,
 * idempotency) are append-only: triggers refuse UPDATE and DELETE as a second
 * line of defence behind the engine, and `jifen verify` still recomputes
 * everything, because triggers do not stop someone who drops them.  CHECK
 * constraints restate the invariants the engine asserts.  Every member-owned
 * row is keyed by (tenant_id, member_id ...) so it can be distributed by
 * member later.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "db.h"

#define JF_SCHEMA_VERSION 24

/* The transactions' columns after id and type, as version 1 made them and
 * version 21's copy keeps them. */
#define TX_COLUMNS_V1_REST                                                                         \
    " member_id TEXT, counterparty_id TEXT, points INTEGER NOT NULL CHECK(points >= 0),"           \
    " delta INTEGER NOT NULL,"                                                                     \
    " reverses TEXT, hold_id TEXT, order_id TEXT, order_amount INTEGER, order_currency TEXT,"      \
    " reason TEXT, note TEXT, channel TEXT, store_id TEXT, actor TEXT NOT NULL, metadata TEXT,"    \
    " idem_key TEXT, created_at INTEGER NOT NULL,"                                                 \
    " prev_hash BLOB NOT NULL, hash BLOB NOT NULL,"
static const char schema_v1[] =
    "CREATE TABLE meta(key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;"
    "CREATE TABLE tenants("
    " id INTEGER PRIMARY KEY, public_id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, tx_seq INTEGER NOT NULL DEFAULT 0 CHECK(tx_seq >= 0),"
    " chain_head BLOB NOT NULL CHECK(length(chain_head) = 32)) STRICT;"
    "CREATE TABLE programs("
    " tenant_id INTEGER PRIMARY KEY REFERENCES tenants(id), name TEXT NOT NULL,"
    " currency TEXT NOT NULL, earn_points INTEGER NOT NULL CHECK(earn_points >= 0),"
    " earn_per_amount INTEGER NOT NULL CHECK(earn_per_amount >= 1),"
    " expiry_policy TEXT NOT NULL, expiry_n INTEGER NOT NULL, pending_days INTEGER NOT NULL,"
    " debt_floor INTEGER NOT NULL CHECK(debt_floor >= 0), timezone TEXT NOT NULL,"
    " hold_ttl_s INTEGER NOT NULL, operator_adjust_max INTEGER NOT NULL,"
    " updated_at INTEGER NOT NULL) STRICT;"
    "CREATE TABLE api_keys("
    " id TEXT PRIMARY KEY, tenant_id INTEGER NOT NULL REFERENCES tenants(id), name TEXT,"
    " role TEXT NOT NULL CHECK(role IN ('admin','operator','pos','readonly')),"
    " hash BLOB NOT NULL, created_at INTEGER NOT NULL, revoked_at INTEGER) STRICT;"
    "CREATE INDEX api_keys_tenant ON api_keys(tenant_id, created_at);"
    "CREATE TABLE members("
    " seq INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL REFERENCES tenants(id),"
    " id TEXT NOT NULL, external_id TEXT NOT NULL, name TEXT, phone TEXT, birthday TEXT,"
    " tags TEXT NOT NULL DEFAULT '[]',"
    " status TEXT NOT NULL CHECK(status IN ('active','frozen','closed')),"
    " debt INTEGER NOT NULL DEFAULT 0 CHECK(debt >= 0),"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    " UNIQUE(tenant_id, id), UNIQUE(tenant_id, external_id)) STRICT;"
    "CREATE INDEX members_phone ON members(tenant_id, phone) WHERE phone IS NOT NULL;"
    "CREATE INDEX members_name ON members(tenant_id, name) WHERE name IS NOT NULL;"
    "CREATE TABLE accounts("
    " tenant_id INTEGER NOT NULL, account TEXT NOT NULL, balance INTEGER NOT NULL,"
    " PRIMARY KEY(tenant_id, account)) STRICT, WITHOUT ROWID;"
    "CREATE TABLE transactions("
    " tenant_id INTEGER NOT NULL, seq INTEGER NOT NULL CHECK(seq >= 1), id TEXT NOT NULL,"
    " type TEXT NOT NULL CHECK(type IN ('earn','redeem','adjust','transfer','hold','capture',"
    "'void','expire','reverse'))," TX_COLUMNS_V1_REST
    " PRIMARY KEY(tenant_id, seq), UNIQUE(tenant_id, id)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX tx_member ON transactions(tenant_id, member_id, seq);"
    "CREATE INDEX tx_counterparty ON transactions(tenant_id, counterparty_id, seq)"
    " WHERE counterparty_id IS NOT NULL;"
    /* Partial: only reversals are indexed; queries name it (INDEXED BY). */
    "CREATE INDEX tx_reverses ON transactions(tenant_id, reverses) WHERE reverses IS NOT NULL;"
    "CREATE UNIQUE INDEX tx_idem ON transactions(tenant_id, idem_key) WHERE idem_key IS NOT NULL;"
    "CREATE UNIQUE INDEX tx_order_earn ON transactions(tenant_id, order_id)"
    " WHERE type = 'earn' AND order_id IS NOT NULL;"
    "CREATE TABLE postings("
    " tenant_id INTEGER NOT NULL, tx_seq INTEGER NOT NULL, n INTEGER NOT NULL,"
    " account TEXT NOT NULL, amount INTEGER NOT NULL CHECK(amount <> 0),"
    " created_at INTEGER NOT NULL,"
    " PRIMARY KEY(tenant_id, tx_seq, n)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX postings_account ON postings(tenant_id, account, created_at);"
    "CREATE TABLE lots("
    " seq INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, id TEXT NOT NULL,"
    " member_id TEXT NOT NULL, tx_seq INTEGER NOT NULL,"
    " amount INTEGER NOT NULL CHECK(amount > 0),"
    " remaining INTEGER NOT NULL CHECK(remaining >= 0 AND remaining <= amount),"
    " available_at INTEGER NOT NULL, expires_at INTEGER, expired_tx_seq INTEGER,"
    " created_at INTEGER NOT NULL, UNIQUE(tenant_id, id)) STRICT;"
    "CREATE INDEX lots_member ON lots(tenant_id, member_id, expires_at);"
    "CREATE INDEX lots_due ON lots(tenant_id, expires_at)"
    " WHERE remaining > 0 AND expired_tx_seq IS NULL AND expires_at IS NOT NULL;"
    /* Covering: a member's points are summed from this index alone. */
    "CREATE INDEX lots_open ON lots(tenant_id, member_id, expires_at, available_at, remaining)"
    " WHERE remaining > 0 AND expired_tx_seq IS NULL;"
    /* Pending lots of a member, so points need not sum every open lot. */
    "CREATE INDEX lots_pending ON lots(tenant_id, member_id, available_at, expires_at, remaining)"
    " WHERE remaining > 0 AND expired_tx_seq IS NULL;"
    "CREATE TABLE consumptions("
    " tenant_id INTEGER NOT NULL, tx_seq INTEGER NOT NULL, lot_seq INTEGER NOT NULL,"
    " amount INTEGER NOT NULL CHECK(amount <> 0), created_at INTEGER NOT NULL) STRICT;"
    "CREATE INDEX consumptions_tx ON consumptions(tenant_id, tx_seq);"
    "CREATE INDEX consumptions_lot ON consumptions(lot_seq);"
    "CREATE TABLE restores("
    " tenant_id INTEGER NOT NULL, tx_seq INTEGER NOT NULL, source_tx_seq INTEGER NOT NULL,"
    " lot_seq INTEGER NOT NULL, into_lot_seq INTEGER NOT NULL,"
    " amount INTEGER NOT NULL CHECK(amount > 0)) STRICT;"
    "CREATE INDEX restores_source ON restores(tenant_id, source_tx_seq, lot_seq);"
    "CREATE TABLE holds("
    " tenant_id INTEGER NOT NULL, id TEXT NOT NULL, tx_seq INTEGER NOT NULL,"
    " member_id TEXT NOT NULL, points INTEGER NOT NULL CHECK(points > 0),"
    " captured INTEGER NOT NULL DEFAULT 0, released INTEGER NOT NULL DEFAULT 0,"
    " status TEXT NOT NULL CHECK(status IN ('open','captured','voided','expired')),"
    " expires_at INTEGER NOT NULL, created_at INTEGER NOT NULL,"
    " CHECK(captured >= 0 AND released >= 0 AND captured + released <= points),"
    " PRIMARY KEY(tenant_id, id)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX holds_open ON holds(tenant_id, expires_at) WHERE status = 'open';"
    "CREATE INDEX holds_member ON holds(tenant_id, member_id, status);"
    "CREATE TABLE idempotency("
    " tenant_id INTEGER NOT NULL, key TEXT NOT NULL, op TEXT NOT NULL,"
    " request_hash BLOB NOT NULL, created INTEGER NOT NULL, body TEXT NOT NULL, tx_id TEXT,"
    " created_at INTEGER NOT NULL,"
    " PRIMARY KEY(tenant_id, key)) STRICT, WITHOUT ROWID;"
    "CREATE TRIGGER transactions_no_update BEFORE UPDATE ON transactions"
    " BEGIN SELECT RAISE(ABORT, 'transactions are immutable'); END;"
    "CREATE TRIGGER transactions_no_delete BEFORE DELETE ON transactions"
    " BEGIN SELECT RAISE(ABORT, 'transactions are immutable'); END;"
    "CREATE TRIGGER postings_no_update BEFORE UPDATE ON postings"
    " BEGIN SELECT RAISE(ABORT, 'postings are immutable'); END;"
    "CREATE TRIGGER postings_no_delete BEFORE DELETE ON postings"
    " BEGIN SELECT RAISE(ABORT, 'postings are immutable'); END;"
    "CREATE TRIGGER consumptions_no_update BEFORE UPDATE ON consumptions"
    " BEGIN SELECT RAISE(ABORT, 'consumptions are immutable'); END;"
    "CREATE TRIGGER consumptions_no_delete BEFORE DELETE ON consumptions"
    " BEGIN SELECT RAISE(ABORT, 'consumptions are immutable'); END;"
    "CREATE TRIGGER restores_no_update BEFORE UPDATE ON restores"
    " BEGIN SELECT RAISE(ABORT, 'restores are immutable'); END;"
    "CREATE TRIGGER restores_no_delete BEFORE DELETE ON restores"
    " BEGIN SELECT RAISE(ABORT, 'restores are immutable'); END;"
    "CREATE TRIGGER idempotency_no_update BEFORE UPDATE ON idempotency"
    " BEGIN SELECT RAISE(ABORT, 'idempotency records are immutable'); END;"
    "CREATE TRIGGER idempotency_no_delete BEFORE DELETE ON idempotency"
    " BEGIN SELECT RAISE(ABORT, 'idempotency records are immutable'); END;"
    "INSERT INTO meta(key, value) VALUES('schema_version', '1');";

/*
 * Version 2: earning rules (docs/RULES.md).  A rule is a mutable head row
 * (its current version and the columns queries filter on) over immutable
 * versions, each the whole normalized rule JSON; awards record which rule
 * version produced how many points of an earn, and are what limits and
 * budgets count.  The program gains an optional cap on the points one order
 * may earn.
 */
static const char schema_v2[] =
    "ALTER TABLE programs ADD COLUMN max_points_per_order INTEGER"
    " CHECK(max_points_per_order IS NULL OR max_points_per_order >= 0);"
    "CREATE TABLE rules("
    " tenant_id INTEGER NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL,"
    " trigger TEXT NOT NULL CHECK(trigger IN ('purchase','event')), event TEXT,"
    " status TEXT NOT NULL CHECK(status IN ('active','draft','archived')),"
    " priority INTEGER NOT NULL, version INTEGER NOT NULL CHECK(version >= 1),"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    " PRIMARY KEY(tenant_id, id)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX rules_live ON rules(tenant_id, trigger, status, priority);"
    "CREATE TABLE rule_versions("
    " tenant_id INTEGER NOT NULL, rule_id TEXT NOT NULL, version INTEGER NOT NULL,"
    " body TEXT NOT NULL, actor TEXT NOT NULL, created_at INTEGER NOT NULL,"
    " PRIMARY KEY(tenant_id, rule_id, version)) STRICT, WITHOUT ROWID;"
    "CREATE TABLE awards("
    " tenant_id INTEGER NOT NULL, tx_seq INTEGER NOT NULL, n INTEGER NOT NULL,"
    " member_id TEXT NOT NULL, rule_id TEXT NOT NULL, rule_version INTEGER NOT NULL,"
    " points INTEGER NOT NULL CHECK(points >= 0), lot_seq INTEGER, explanation TEXT NOT NULL,"
    " created_at INTEGER NOT NULL,"
    " PRIMARY KEY(tenant_id, tx_seq, n)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX awards_rule_member ON awards(tenant_id, rule_id, member_id, created_at);"
    "CREATE TRIGGER rule_versions_no_update BEFORE UPDATE ON rule_versions"
    " BEGIN SELECT RAISE(ABORT, 'rule versions are immutable'); END;"
    "CREATE TRIGGER rule_versions_no_delete BEFORE DELETE ON rule_versions"
    " BEGIN SELECT RAISE(ABORT, 'rule versions are immutable'); END;"
    "CREATE TRIGGER awards_no_update BEFORE UPDATE ON awards"
    " BEGIN SELECT RAISE(ABORT, 'awards are immutable'); END;"
    "CREATE TRIGGER awards_no_delete BEFORE DELETE ON awards"
    " BEGIN SELECT RAISE(ABORT, 'awards are immutable'); END;"
    "UPDATE meta SET value = '2' WHERE key = 'schema_version';";

/*
 * Version 3: order refunds and daily check-ins (docs/RULES.md).  The lines
 * of an earned order keep the points attributed to each line, so that a
 * refund of a line claws back what that line earned; a refund is a record
 * of the refunded amount per line, linked to the reverse transactions it
 * made (its clawback of the earn, its return of the points that paid).
 * Check-ins are one row per member and local day.  A member records who
 * referred them (referral codes are derived from members.seq, never
 * stored).  A bonus grant (signup once ever, birthday once per local year)
 * is a row whose key makes it happen exactly once.  The rules table is rebuilt to admit the new
 * triggers in its CHECK constraint and a campaign (campaigns: named sets of rules with a window,
 * budget and status).
 */
static const char schema_v3[] =
    "CREATE TABLE rules_v3("
    " tenant_id INTEGER NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL,"
    " trigger TEXT NOT NULL CHECK(trigger IN ('purchase','event','check_in','referral',"
    "'signup','birthday')), event TEXT,"
    " status TEXT NOT NULL CHECK(status IN ('active','draft','archived')),"
    " priority INTEGER NOT NULL, version INTEGER NOT NULL CHECK(version >= 1),"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, campaign_id TEXT,"
    " PRIMARY KEY(tenant_id, id)) STRICT, WITHOUT ROWID;"
    "INSERT INTO rules_v3(tenant_id, id, name, trigger, event, status, priority, version,"
    " created_at, updated_at) SELECT tenant_id, id, name, trigger, event, status, priority,"
    " version, created_at, updated_at FROM rules;"
    "DROP TABLE rules;"
    "ALTER TABLE rules_v3 RENAME TO rules;"
    "CREATE INDEX rules_live ON rules(tenant_id, trigger, status, priority);"
    "CREATE INDEX rules_campaign ON rules(tenant_id, campaign_id) WHERE campaign_id IS NOT NULL;"
    "CREATE TABLE campaigns("
    " tenant_id INTEGER NOT NULL, id TEXT NOT NULL, name TEXT NOT NULL, description TEXT,"
    " status TEXT NOT NULL CHECK(status IN ('draft','active','paused','ended')),"
    " starts_at INTEGER, ends_at INTEGER,"
    " budget_points INTEGER CHECK(budget_points IS NULL OR budget_points >= 0),"
    " budget_awards INTEGER CHECK(budget_awards IS NULL OR budget_awards >= 0),"
    " created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,"
    " PRIMARY KEY(tenant_id, id)) STRICT, WITHOUT ROWID;"
    "CREATE TABLE order_lines("
    " tenant_id INTEGER NOT NULL, order_id TEXT NOT NULL, n INTEGER NOT NULL CHECK(n >= 0),"
    " sku TEXT, amount INTEGER NOT NULL CHECK(amount >= 0),"
    " quantity INTEGER NOT NULL CHECK(quantity >= 1), points INTEGER NOT NULL CHECK(points >= 0),"
    " PRIMARY KEY(tenant_id, order_id, n)) STRICT, WITHOUT ROWID;"
    "CREATE TABLE refunds("
    " tenant_id INTEGER NOT NULL, id TEXT NOT NULL, order_id TEXT NOT NULL,"
    " member_id TEXT NOT NULL, amount INTEGER NOT NULL CHECK(amount > 0),"
    " clawback_points INTEGER NOT NULL CHECK(clawback_points >= 0),"
    " returned_points INTEGER NOT NULL CHECK(returned_points >= 0),"
    " reason TEXT, actor TEXT NOT NULL, created_at INTEGER NOT NULL,"
    " PRIMARY KEY(tenant_id, id)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX refunds_order ON refunds(tenant_id, order_id, created_at);"
    "CREATE TABLE refund_lines("
    " tenant_id INTEGER NOT NULL, refund_id TEXT NOT NULL, order_id TEXT NOT NULL,"
    " line_n INTEGER NOT NULL, amount INTEGER NOT NULL CHECK(amount > 0), quantity INTEGER,"
    " PRIMARY KEY(tenant_id, refund_id, line_n)) STRICT, WITHOUT ROWID;"
    "CREATE INDEX refund_lines_order ON refund_lines(tenant_id, order_id, line_n);"
    "CREATE TABLE refund_transactions("
    " tenant_id INTEGER NOT NULL, refund_id TEXT NOT NULL, tx_id TEXT NOT NULL,"
    " kind TEXT NOT NULL CHECK(kind IN ('clawback','return')),"
    " points INTEGER NOT NULL CHECK(points > 0),"
    " PRIMARY KEY(tenant_id, refund_id, tx_id)) STRICT, WITHOUT ROWID;"
    "CREATE TABLE checkins("
    " tenant_id INTEGER NOT NULL, member_id TEXT NOT NULL, day TEXT NOT NULL,"
    " streak INTEGER NOT NULL CHECK(streak >= 1), points INTEGER NOT NULL CHECK(points >= 0),"
    " tx_id TEXT, created_at INTEGER NOT NULL,"
    " PRIMARY KEY(tenant_id, member_id, day)) STRICT, WITHOUT ROWID;"
    "CREATE TRIGGER order_lines_no_update BEFORE UPDATE ON order_lines"
    " BEGIN SELECT RAISE(ABORT, 'order lines are immutable'); END;"
    "CREATE TRIGGER order_lines_no_delete BEFORE DELETE ON order_lines"
    " BEGIN SELECT RAISE(ABORT, 'order lines are immutable'); END;"
    "CREATE TRIGGER refunds_no_update BEFORE UPDATE ON refunds"
    " BEGIN SELECT RAISE(ABORT, 'refunds are immutable'); END;"
    "CREATE TRIGGER refunds_no_delete BEFORE DELETE ON refunds"
    " BEGIN SELECT RAISE(ABORT, 'refunds are immutable'); END;"
    "CREATE TRIGGER refund_lines_no_update BEFORE UPDATE ON refund_lines"
    " BEGIN SELECT RAISE(ABORT, 'refund lines are immutable'); END;"
    "CREATE TRIGGER refund_lines_no_delete BEFORE DELETE ON refund_lines"
    " BEGIN SELECT RAISE(ABORT, 'refund lines are immutable'); END;"
    "CREATE TRIGGER refund_transactions_no_update BEFORE UPDATE ON refund_transactions"
    " BEGIN SELECT RAISE(ABORT, 'refund transactions are immutable'); END;"
    "CREATE TRIGGER refund_transactions_no_delete BEFORE DELETE ON refund_transactions"
    " BEGIN SELECT RAISE(ABORT, 'refund transactions are immutable'); END;"
    "CREATE TRIGGER checkins_no_update BEFORE UPDATE ON checkins"
    " BEGIN SELECT RAISE(ABORT, 'check-ins are immutable'); END;"
    "CREATE TRIGGER checkins_no_delete BEFORE DELETE ON checkins"
    " BEGIN SELECT RAISE(ABORT, 'check-ins are immutable'); END;"
    "CREATE TABLE bonus_grants("
    " tenant_id INTEGER NOT NULL, member_id TEXT NOT NULL,"
    " kind TEXT NOT NULL CHECK(kind IN ('signup','birthday')), period TEXT NOT NULL,"
    " points INTEGER NOT NULL CHECK(points >= 0), tx_id TEXT, created_at INTEGER NOT NULL,"
    " PRIMARY KEY(tenant_id, member_id, kind, period)) STRICT, WITHOUT ROWID;"
    "CREATE TRIGGER bonus_grants_no_update BEFORE UPDATE ON bonus_grants"
    " BEGIN SELECT RAISE(ABORT, 'bonus grants are immutable'); END;"
    "CREATE TRIGGER bonus_grants_no_delete BEFORE DELETE ON bonus_grants"
    " BEGIN SELECT RAISE(ABORT, 'bonus grants are immutable'); END;"
    "ALTER TABLE members ADD COLUMN referred_by TEXT;"
    "CREATE INDEX members_referred_by ON members(tenant_id, referred_by)"
    " WHERE referred_by IS NOT NULL;"
    "UPDATE meta SET value = '3' WHERE key = 'schema_version';";

/*
 * Version 4: tiers and growth value (docs/TIERS.md).  A tier configuration
 * is an immutable version like a rule's; a member row carries its tier, when
 * it was reached, its next evaluation and whether it was set by hand (with
 * the end of an override).  Tier changes are an append-only history, and
 * the event log (the outbox webhooks will deliver) is append-only too.
 * Awards record the growth they gave.
 */
static const char schema_v4[] =
    "CREATE TABLE tier_configs("
    " tenant_id INTEGER NOT NULL, version INTEGER NOT NULL CHECK(version >= 1),"
    " body TEXT NOT NULL, actor TEXT NOT NULL, created_at INTEGER NOT NULL,"
    " PRIMARY KEY(tenant_id, version)) STRICT, WITHOUT ROWID;"
    "ALTER TABLE members ADD COLUMN tier TEXT;"
    "ALTER TABLE members ADD COLUMN tier_since INTEGER;"
    "ALTER TABLE members ADD COLUMN tier_eval_at INTEGER;"
    "ALTER TABLE members ADD COLUMN tier_manual INTEGER NOT NULL DEFAULT 0"
    " CHECK(tier_manual IN (0, 1));"
    "ALTER TABLE members ADD COLUMN tier_override_until INTEGER;"
    "CREATE INDEX members_tier_eval ON members(tenant_id, tier_eval_at)"
    " WHERE tier_eval_at IS NOT NULL;"
    "CREATE INDEX members_tier ON members(tenant_id, tier) WHERE tier IS NOT NULL;"
    "CREATE TABLE tier_changes("
    " seq INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, member_id TEXT NOT NULL,"
    " id TEXT NOT NULL,"
    " from_tier TEXT, to_tier TEXT,"
    " kind TEXT NOT NULL CHECK(kind IN ('upgrade','downgrade','retain','manual',"
    "'override_end','import')),"
    " reason TEXT NOT NULL, growth INTEGER NOT NULL, tx_id TEXT, actor TEXT NOT NULL,"
    " config_version INTEGER NOT NULL, until INTEGER, created_at INTEGER NOT NULL,"
    " UNIQUE(tenant_id, id)) STRICT;"
    "CREATE INDEX tier_changes_member ON tier_changes(tenant_id, member_id, seq);"
    "CREATE TABLE events("
    " seq INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, id TEXT NOT NULL,"
    " type TEXT NOT NULL, member_id TEXT, data TEXT NOT NULL, created_at INTEGER NOT NULL,"
    " UNIQUE(tenant_id, id)) STRICT;"
    "CREATE INDEX events_tenant ON events(tenant_id, type, seq);"
    "ALTER TABLE awards ADD COLUMN growth INTEGER NOT NULL DEFAULT 0 CHECK(growth >= 0);"
    "CREATE INDEX refunds_member ON refunds(tenant_id, member_id, created_at);"
    "CREATE TRIGGER tier_configs_no_update BEFORE UPDATE ON tier_configs"
    " BEGIN SELECT RAISE(ABORT, 'tier configurations are immutable'); END;"
    "CREATE TRIGGER tier_configs_no_delete BEFORE DELETE ON tier_configs"
    " BEGIN SELECT RAISE(ABORT, 'tier configurations are immutable'); END;"
    "CREATE TRIGGER tier_changes_no_update BEFORE UPDATE ON tier_changes"
    " BEGIN SELECT RAISE(ABORT, 'tier changes are immutable'); END;"
    "CREATE TRIGGER tier_changes_no_delete BEFORE DELETE ON tier_changes"
    " BEGIN SELECT RAISE(ABORT, 'tier changes are immutable'); END;"
    "CREATE TRIGGER events_no_update BEFORE UPDATE ON events"
    " BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;"
    "CREATE TRIGGER events_no_delete BEFORE DELETE ON events"
    " BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;"
    "UPDATE meta SET value = '4' WHERE key = 'schema_version';";

/*
 * Version 5: fewer index pages per write (docs/PERFORMANCE.md).  A durable
 * earn on a random member dirtied about eight random B-tree pages, and each
 * is a whole WAL frame at commit.  Three of them go: idempotency keys are
 * unique through the idempotency table's primary key (the transactions'
 * copy of the key needs no index of its own); postings are summed per
 * member through the member's transactions, not through an index on every
 * posting's account; and only lots created pending (available later than
 * created) are indexed as pending, so an ordinary earn adds no entry there.
 */
static const char schema_v5[] =
    "DROP INDEX IF EXISTS tx_idem;"
    "DROP INDEX IF EXISTS postings_account;"
    "DROP INDEX IF EXISTS lots_pending;"
    "CREATE INDEX lots_pending ON lots(tenant_id, member_id, available_at, expires_at, remaining)"
    " WHERE remaining > 0 AND expired_tx_seq IS NULL AND available_at > created_at;"
    "UPDATE meta SET value = '5' WHERE key = 'schema_version';";

/*
 * Version 6: one index of a member's lots instead of two (docs/PERFORMANCE.md).
 * lots_member (every lot of a member) and lots_open (the open ones, covering)
 * were each a random page per earn: 40% of the WAL a durable earn wrote.  A
 * lot now says whether it is closed (emptied or expired; a CHECK ties the
 * flag to remaining and expired_tx_seq), and lots_member orders a member's
 * lots open first, so reading the open ones stops at the first closed one
 * and still needs only the index.  SQLite cannot add a column with a CHECK
 * that existing rows fail, nor use a generated column from a covering index
 * (3.40), so the table is rebuilt: every lot keeps its seq.
 */
static const char schema_v6[] =
    "CREATE TABLE lots_v6("
    " seq INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, id TEXT NOT NULL,"
    " member_id TEXT NOT NULL, tx_seq INTEGER NOT NULL,"
    " amount INTEGER NOT NULL CHECK(amount > 0),"
    " remaining INTEGER NOT NULL CHECK(remaining >= 0 AND remaining <= amount),"
    " available_at INTEGER NOT NULL, expires_at INTEGER, expired_tx_seq INTEGER,"
    " created_at INTEGER NOT NULL,"
    " closed INTEGER NOT NULL DEFAULT 0"
    "  CHECK(closed = (remaining = 0 OR expired_tx_seq IS NOT NULL)),"
    " UNIQUE(tenant_id, id)) STRICT;"
    "INSERT INTO lots_v6(seq, tenant_id, id, member_id, tx_seq, amount, remaining, available_at,"
    " expires_at, expired_tx_seq, created_at, closed)"
    " SELECT seq, tenant_id, id, member_id, tx_seq, amount, remaining, available_at, expires_at,"
    " expired_tx_seq, created_at, (remaining = 0 OR expired_tx_seq IS NOT NULL) FROM lots"
    " ORDER BY seq;"
    "DROP TABLE lots;"
    "ALTER TABLE lots_v6 RENAME TO lots;"
    "CREATE INDEX lots_member ON lots(tenant_id, member_id, closed, expires_at, available_at,"
    " remaining);"
    "CREATE INDEX lots_due ON lots(tenant_id, expires_at)"
    " WHERE remaining > 0 AND expired_tx_seq IS NULL AND expires_at IS NOT NULL;"
    "CREATE INDEX lots_pending ON lots(tenant_id, member_id, available_at, expires_at, remaining)"
    " WHERE remaining > 0 AND expired_tx_seq IS NULL AND available_at > created_at;"
    "UPDATE meta SET value = '6' WHERE key = 'schema_version';";

/*
 * Version 7: a member's state in one B-tree (docs/PERFORMANCE.md).  An earn
 * on a random member wrote three member-keyed B-trees on three random pages:
 * the member's account row, its entry in the lots index and its entry in the
 * transactions index (three quarters of the WAL a durable earn wrote).  All
 * three now live in member_state, keyed by (tenant, member, kind, ...), so a
 * member's balances, lot entries and transaction entries sit side by side
 * and one write dirties one page.  The accounts table keeps the program's
 * accounts only.  Lot entries mirror their lot and transaction entries
 * their transaction, through triggers here and through the statements that
 * write them since version 8; `jifen verify` checks the mirror both ways.
 *
 *   kind 0  account      key1 = 0 points, 1 growth, 2 held   value = balance
 *   kind 1  lot          key1 = closed, key2 = expires_at (JF_NEVER_SQL when
 *                        it never expires), key3 = available_at, key4 = lot
 *                        seq                                  value = remaining
 *   kind 2  transaction  key1 = seq (the member is its member or its
 *                        counterparty)
 *
 * The views name the columns for each kind; the planner flattens them, so a
 * query on a view is a range of the primary key.
 */
#define LOT_KEY(r)                                                                                 \
    r ".tenant_id, " r ".member_id, 1, " r ".closed, COALESCE(" r ".expires_at, " JF_NEVER_SQL     \
      "), " r ".available_at, " r ".seq"
#define NEW_LOT_KEY LOT_KEY("NEW")
#define OLD_LOT_KEY LOT_KEY("OLD")
#define L_LOT_KEY LOT_KEY("l")
/* An update of a lot that leaves its entry's key as it was. */
#define LOT_KEY_KEPT                                                                               \
    "OLD.closed = NEW.closed AND OLD.expires_at IS NEW.expires_at AND OLD.available_at ="          \
    " NEW.available_at AND OLD.member_id = NEW.member_id AND OLD.tenant_id = NEW.tenant_id"        \
    " AND OLD.seq = NEW.seq"
#define STATE_KEY "(tenant_id, member_id, kind, key1, key2, key3, key4)"
static const char schema_v7[] =
    "CREATE TABLE member_state("
    " tenant_id INTEGER NOT NULL, member_id TEXT NOT NULL,"
    " kind INTEGER NOT NULL CHECK(kind IN (0, 1, 2)),"
    " key1 INTEGER NOT NULL, key2 INTEGER NOT NULL, key3 INTEGER NOT NULL,"
    " key4 INTEGER NOT NULL, value INTEGER,"
    " PRIMARY KEY" STATE_KEY ") STRICT, WITHOUT ROWID;"
    "CREATE VIEW member_accounts AS SELECT tenant_id, member_id, key1 AS account,"
    " value AS balance FROM member_state WHERE kind = 0;"
    "CREATE VIEW member_lots AS SELECT tenant_id, member_id, key1 AS closed,"
    " key2 AS expires_key, key3 AS available_at, key4 AS seq, value AS remaining"
    " FROM member_state WHERE kind = 1;"
    "CREATE VIEW member_txs AS SELECT tenant_id, member_id, key1 AS seq FROM member_state"
    " WHERE kind = 2;"
    "INSERT INTO member_state SELECT " L_LOT_KEY ", l.remaining FROM lots l"
    " ORDER BY 1, 2, 4, 5, 6, 7;"
    "INSERT INTO member_state SELECT tenant_id, member_id, 2, seq, 0, 0, 0, NULL"
    " FROM transactions WHERE member_id IS NOT NULL ORDER BY tenant_id, member_id, seq;"
    "INSERT OR IGNORE INTO member_state SELECT tenant_id, counterparty_id, 2, seq, 0, 0, 0,"
    " NULL FROM transactions WHERE counterparty_id IS NOT NULL;"
    /* "member:" is 7 characters, ":points" and ":growth" 7, ":held" 5. */
    "INSERT INTO member_state SELECT tenant_id, substr(account, 8, length(account) - 14), 0,"
    " CASE WHEN account LIKE '%:points' THEN 0 ELSE 1 END, 0, 0, 0, balance FROM accounts"
    " WHERE account LIKE 'member:%:points' OR account LIKE 'member:%:growth';"
    "INSERT INTO member_state SELECT tenant_id, substr(account, 8, length(account) - 12), 0, 2,"
    " 0, 0, 0, balance FROM accounts WHERE account LIKE 'member:%:held';"
    "DELETE FROM accounts WHERE account LIKE 'member:%:points'"
    " OR account LIKE 'member:%:growth' OR account LIKE 'member:%:held';"
    "CREATE TRIGGER lots_state_insert AFTER INSERT ON lots BEGIN"
    " INSERT INTO member_state VALUES(" NEW_LOT_KEY ", NEW.remaining); END;"
    /* An update that keeps the entry's key changes its value in place;
     * anything else moves the entry. */
    "CREATE TRIGGER lots_state_update AFTER UPDATE ON lots WHEN " LOT_KEY_KEPT " BEGIN"
    " UPDATE member_state SET value = NEW.remaining WHERE " STATE_KEY " = (" NEW_LOT_KEY ");"
    " END;"
    "CREATE TRIGGER lots_state_move AFTER UPDATE ON lots WHEN NOT (" LOT_KEY_KEPT ") BEGIN"
    " DELETE FROM member_state WHERE " STATE_KEY " = (" OLD_LOT_KEY ");"
    " INSERT INTO member_state VALUES(" NEW_LOT_KEY ", NEW.remaining); END;"
    "CREATE TRIGGER lots_state_delete AFTER DELETE ON lots BEGIN"
    " DELETE FROM member_state WHERE " STATE_KEY " = (" OLD_LOT_KEY "); END;"
    "CREATE TRIGGER transactions_state AFTER INSERT ON transactions BEGIN"
    " INSERT INTO member_state SELECT NEW.tenant_id, NEW.member_id, 2, NEW.seq, 0, 0, 0, NULL"
    " WHERE NEW.member_id IS NOT NULL;"
    " INSERT OR IGNORE INTO member_state SELECT NEW.tenant_id, NEW.counterparty_id, 2, NEW.seq,"
    " 0, 0, 0, NULL WHERE NEW.counterparty_id IS NOT NULL; END;"
    "DROP INDEX tx_member;"
    "DROP INDEX tx_counterparty;"
    "DROP INDEX lots_member;"
    "UPDATE meta SET value = '7' WHERE key = 'schema_version';";
#undef STATE_KEY
#undef LOT_KEY_KEPT
#undef L_LOT_KEY
#undef OLD_LOT_KEY
#undef NEW_LOT_KEY
#undef LOT_KEY

/*
 * Version 8: stored responses apart from their keys (docs/PERFORMANCE.md).
 * An idempotency row carried the whole response it replays (about 400
 * bytes), so a page held about eight keys: clients' random keys landed on a
 * random page of a large, deep B-tree, and one insert in four or so split
 * one.  Keys now point to their response, appended in order to
 * `responses`; a key row is about a hundred bytes.
 *
 * And member_state's lot and transaction entries are written by the
 * statements that write their lot or transaction (src/core/lots.c, tx.c),
 * not by triggers: a trigger cost the writer about 4.5 us per write, as
 * much as the B-tree insert it made.  Lots are never deleted.
 */
/* The order in which the migration numbers the responses. */
#define RESPONSE_ORDER "row_number() OVER (ORDER BY created_at, tenant_id, key)"
static const char schema_v8[] =
    "CREATE TABLE responses(seq INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL,"
    " body TEXT NOT NULL) STRICT;"
    "CREATE TABLE idempotency_v8("
    " tenant_id INTEGER NOT NULL, key TEXT NOT NULL, op TEXT NOT NULL,"
    " request_hash BLOB NOT NULL, created INTEGER NOT NULL, response_seq INTEGER NOT NULL,"
    " tx_id TEXT, created_at INTEGER NOT NULL,"
    " PRIMARY KEY(tenant_id, key)) STRICT, WITHOUT ROWID;"
    "INSERT INTO responses(seq, tenant_id, body) SELECT " RESPONSE_ORDER ", tenant_id, body"
    " FROM idempotency ORDER BY 1;"
    /* Before this version a key's created_at was stored cut to 32 bits; the
     * time of the key's transaction, where it has one, repairs it. */
    "INSERT INTO idempotency_v8 SELECT tenant_id, key, op, request_hash, created, " RESPONSE_ORDER
    ", tx_id, CASE WHEN created_at BETWEEN -2147483648 AND 2147483647 THEN COALESCE((SELECT"
    " t.created_at FROM transactions t WHERE t.tenant_id = idempotency.tenant_id AND t.id ="
    " idempotency.tx_id), created_at) ELSE created_at END FROM idempotency"
    " ORDER BY tenant_id, key;"
    "DROP TABLE idempotency;"
    "ALTER TABLE idempotency_v8 RENAME TO idempotency;"
    "CREATE TRIGGER idempotency_no_update BEFORE UPDATE ON idempotency"
    " BEGIN SELECT RAISE(ABORT, 'idempotency records are immutable'); END;"
    "CREATE TRIGGER idempotency_no_delete BEFORE DELETE ON idempotency"
    " BEGIN SELECT RAISE(ABORT, 'idempotency records are immutable'); END;"
    "CREATE TRIGGER responses_no_update BEFORE UPDATE ON responses"
    " BEGIN SELECT RAISE(ABORT, 'responses are immutable'); END;"
    "CREATE TRIGGER responses_no_delete BEFORE DELETE ON responses"
    " BEGIN SELECT RAISE(ABORT, 'responses are immutable'); END;"
    "DROP TRIGGER lots_state_insert;"
    "DROP TRIGGER lots_state_update;"
    "DROP TRIGGER lots_state_move;"
    "DROP TRIGGER lots_state_delete;"
    "DROP TRIGGER transactions_state;"
    "CREATE TRIGGER lots_no_delete BEFORE DELETE ON lots"
    " BEGIN SELECT RAISE(ABORT, 'lots are never deleted'); END;"
    "UPDATE meta SET value = '8' WHERE key = 'schema_version';";
#undef RESPONSE_ORDER

/*
 * Version 9: CHECK constraints without IN lists (docs/PERFORMANCE.md).
 * SQLite checks `x IN (a, b, c)` of three or more constants through an
 * ephemeral B-tree built for every row it checks: a B-tree and its pager
 * opened, filled and closed for each INSERT into transactions (type) and
 * member_state (kind), about 7% of the writer's time in a durable earn.
 * Spelled `x = a OR x = b OR x = c`, the same constraint is compared in
 * place.  Every stored row satisfies both spellings, and a CHECK is no part
 * of the file's format, so each table's definition is rewritten in
 * sqlite_schema the way SQLite documents for changing a table's constraints
 * (https://sqlite.org/lang_altertable.html, "Making Other Kinds Of Table
 * Schema Changes") instead of copying tables of millions of rows.
 */
#define CHECK_COLUMN_CHARS "abcdefghijklmnopqrstuvwxyz_0123456789"

/* Whether the n bytes at item are one integer or one quoted string. */
static bool check_item_plain(const char *item, size_t n)
{
    if (n > 0 && strspn(item, "0123456789") == n)
        return true;
    return n >= 2 && item[0] == '\'' && item[n - 1] == '\'' &&
           memchr(item + 1, '\'', n - 2) == NULL;
}

/* The length of the list item at *at ("a, b, c)"), moving *at past it, its
 * comma or closing parenthesis, and the spaces after. */
static size_t check_list_next(const char **at)
{
    size_t n = strcspn(*at, ",)");
    *at += n + 1;
    *at += strspn(*at, " ");
    return n;
}

/* Whether every item of the list of len bytes at list is plain. */
static bool check_list_plain(const char *list, size_t len)
{
    for (const char *item = list, *next = list; item < list + len; item = next)
        if (!check_item_plain(item, check_list_next(&next)))
            return false;
    return true;
}

/* Writes sql to out with every "CHECK(col IN (a, b, ...))" of plain
 * literals spelled "CHECK(col = a OR col = b ...)"; a CHECK of any other
 * shape is copied as it is. */
static void checks_spelled_out(FILE *out, const char *sql)
{
    const char *p = sql;
    for (const char *c; (c = strstr(p, "CHECK(")) != NULL;) {
        c += strlen("CHECK(");
        fwrite(p, 1, (size_t)(c - p), out);
        p = c;
        size_t col = strspn(c, CHECK_COLUMN_CHARS);
        if (col == 0 || strncmp(c + col, " IN (", 5) != 0)
            continue;
        const char *list = c + col + 5;
        size_t len = strcspn(list, "()");
        if (list[len] != ')' || list[len + 1] != ')' || !check_list_plain(list, len))
            continue;
        for (const char *item = list, *next = list; item < list + len; item = next) {
            int n = (int)check_list_next(&next);
            fprintf(out, "%s%.*s = %.*s", item == list ? "" : " OR ", (int)col, c, n, item);
        }
        p = list + len + 1;
    }
    fputs(p, out);
}

/* SQL function jf_spelled_out(sql): the table definition with its IN lists
 * spelled out (checks_spelled_out). */
static void spelled_out_fn(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    const char *sql = (const char *)sqlite3_value_text(argv[0]);
    char *buf = NULL;
    size_t len = 0;
    FILE *out = sql ? open_memstream(&buf, &len) : NULL;
    if (out == NULL) {
        sqlite3_result_error_nomem(ctx);
        return;
    }
    checks_spelled_out(out, sql);
    if (fclose(out) != 0) {
        free(buf);
        sqlite3_result_error_nomem(ctx);
        return;
    }
    sqlite3_result_text(ctx, buf, (int)len, free);
}

/* The steps SQLite documents, in one transaction: the new definitions, the
 * schema cookie one higher so that every connection reads them, and
 * writable_schema RESET, which SQLite documents to reload the schema on this
 * connection too (it created the tables and parsed them with IN lists). */
static jf_err schema_v9_steps(jf_db *db)
{
    int64_t cookie = 0;
    jf_err err = jf_db_int(db, &cookie, 0, "PRAGMA schema_version", "");
    if (err == JF_OK)
        err = jf_db_exec(db, "PRAGMA writable_schema = ON;"
                             "UPDATE sqlite_schema SET sql = jf_spelled_out(sql)"
                             " WHERE type = 'table' AND sql LIKE '%CHECK(% IN (%'");
    char bump[64];
    snprintf(bump, sizeof(bump), "PRAGMA schema_version = %lld", (long long)cookie + 1);
    if (err == JF_OK)
        err = jf_db_exec(db, bump);
    if (err == JF_OK)
        err = jf_db_exec(db, "PRAGMA writable_schema = RESET;"
                             "UPDATE meta SET value = '9' WHERE key = 'schema_version';");
    return err;
}

static jf_err schema_v9(jf_db *db)
{
    if (sqlite3_create_function(db->h, "jf_spelled_out", 1, SQLITE_UTF8 | SQLITE_DIRECTONLY, NULL,
                                spelled_out_fn, NULL, NULL) != SQLITE_OK)
        return JF_ERR_IO;
    jf_err err = jf_db_exec(db, "BEGIN IMMEDIATE");
    if (err == JF_OK && (err = schema_v9_steps(db)) != JF_OK) {
        jf_db_exec(db, "PRAGMA writable_schema = RESET");
        jf_db_exec(db, "ROLLBACK");
    }
    if (err == JF_OK)
        err = jf_db_exec(db, "COMMIT");
    sqlite3_create_function(db->h, "jf_spelled_out", 1, SQLITE_UTF8, NULL, NULL, NULL, NULL);
    return err;
}

/* member_state since version 10, and the views that name its entries by
 * tenant and member id (versions 10 and 11 rebuild the table under them). */
#define MEMBER_STATE_COLUMNS                                                                       \
    " member_seq INTEGER NOT NULL,"                                                                \
    " kind INTEGER NOT NULL CHECK(kind = 0 OR kind = 1 OR kind = 2),"                              \
    " key1 INTEGER NOT NULL, key2 INTEGER NOT NULL, key3 INTEGER NOT NULL,"                        \
    " key4 INTEGER NOT NULL, value INTEGER,"                                                       \
    " PRIMARY KEY(member_seq, kind, key1, key2, key3, key4)"
#define MEMBER_STATE_VIEWS                                                                         \
    "CREATE VIEW member_accounts AS SELECT m.tenant_id AS tenant_id, m.id AS member_id,"           \
    " s.key1 AS account, s.value AS balance FROM members m JOIN member_state s"                    \
    " ON s.member_seq = m.seq WHERE s.kind = 0;"                                                   \
    "CREATE VIEW member_lots AS SELECT m.tenant_id AS tenant_id, m.id AS member_id,"               \
    " s.key1 AS closed, s.key2 AS expires_key, s.key3 AS available_at, s.key4 AS seq,"             \
    " s.value AS remaining FROM members m JOIN member_state s ON s.member_seq = m.seq"             \
    " WHERE s.kind = 1;"                                                                           \
    "CREATE VIEW member_txs AS SELECT m.tenant_id AS tenant_id, m.id AS member_id,"                \
    " s.key1 AS seq FROM members m JOIN member_state s ON s.member_seq = m.seq"                    \
    " WHERE s.kind = 2;"

/*
 * Version 10: member_state keyed by the member's seq (docs/PERFORMANCE.md).
 * Its key began with the tenant and the member's 24-character id, so every
 * comparison of a search (about twenty per statement, four or five
 * statements per write) passed SQLite's integer fast path on the tenant and
 * went on to compare the id's bytes.  members.seq is unique across tenants
 * and never changes, so it names the member alone.  The views keep their
 * columns (tenant_id, member_id) through the members table.  An entry whose
 * member does not exist stops the upgrade before it begins (schema_v10_check;
 * member_seq NOT NULL backs that up).
 */
static const char schema_v10[] =
    "CREATE TABLE member_state_v10(" MEMBER_STATE_COLUMNS ") STRICT, WITHOUT ROWID;"
    "INSERT INTO member_state_v10 SELECT m.seq, s.kind, s.key1, s.key2, s.key3, s.key4, s.value"
    " FROM member_state s LEFT JOIN members m ON m.tenant_id = s.tenant_id AND m.id = s.member_id"
    " ORDER BY 1, 2, 3, 4, 5, 6;"
    "DROP VIEW member_accounts; DROP VIEW member_lots; DROP VIEW member_txs;"
    "DROP TABLE member_state;"
    "ALTER TABLE member_state_v10 RENAME TO member_state;" MEMBER_STATE_VIEWS
    "UPDATE meta SET value = '10' WHERE key = 'schema_version';";

/* Version 10 can only key an entry by a member that exists: it says how many
 * do not, rather than SQLite's NOT NULL failure on member_state_v10. */
static jf_err schema_v10_check(jf_db *db)
{
    int64_t orphans = 0;
    jf_err err =
        jf_db_int(db, &orphans, 0,
                  "SELECT count(*) FROM member_state s WHERE NOT EXISTS (SELECT 1"
                  " FROM members m WHERE m.tenant_id = s.tenant_id AND m.id = s.member_id)",
                  "");
    if (err == JF_OK && orphans > 0) {
        snprintf(db->errmsg, sizeof(db->errmsg),
                 "schema version 10 keys member_state by member, and %lld of its entries name a"
                 " member that does not exist; nothing was changed (restore a backup, or remove"
                 " those entries with sqlite3)",
                 (long long)orphans);
        err = JF_ERR_CORRUPT;
    }
    return err;
}

/*
 * Version 11: a transaction's entry in member_state carries its time, its
 * order amount, whether it is an order earn, the tenant's latest
 * transaction time up to it, and the member's growth in it (db.h,
 * JF_TX_ENTRY_*); tenants.tx_time_max holds that latest time beside the
 * chain head.  A tier's window summed the member's transactions in it
 * through the transactions and postings tables, two random reads per
 * transaction, on every earn that adds growth while the member is below the
 * top tier; it now reads the member's own entries from the newest, and stops
 * at the first whose latest time is before the window.  The columns were
 * there (0 and NULL for these entries since version 7); the table is
 * rebuilt because they are part of its key.  An entry whose transaction
 * does not exist gets zeros, and verify still reports it.
 */
static const char schema_v11[] =
    "ALTER TABLE tenants ADD COLUMN tx_time_max INTEGER NOT NULL DEFAULT 0;"
    "UPDATE tenants SET tx_time_max = COALESCE((SELECT max(created_at) FROM transactions t"
    " WHERE t.tenant_id = tenants.id), 0);"
    "CREATE TABLE member_state_v11(" MEMBER_STATE_COLUMNS ") STRICT, WITHOUT ROWID;"
    "WITH tm AS (" JF_TX_TIME_MAX_SELECT ")"
    " INSERT INTO member_state_v11 SELECT s.member_seq, s.kind, s.key1,"
    " CASE WHEN s.kind = 2 THEN COALESCE(" JF_TX_ENTRY_KEY2_SQL ", 0) ELSE s.key2 END,"
    " CASE WHEN s.kind = 2 THEN " JF_TX_ENTRY_KEY3_SQL " ELSE s.key3 END,"
    " CASE WHEN s.kind = 2 THEN COALESCE(" JF_TX_ENTRY_KEY4_SQL ", 0) ELSE s.key4 END,"
    " CASE WHEN s.kind = 2 THEN " JF_TX_ENTRY_VALUE_V11_SQL " ELSE s.value END"
    " FROM member_state s LEFT JOIN members m ON m.seq = s.member_seq"
    " LEFT JOIN transactions t"
    " ON s.kind = 2 AND t.tenant_id = m.tenant_id AND t.seq = s.key1"
    " LEFT JOIN tm ON tm.tenant_id = t.tenant_id AND tm.seq = t.seq"
    " ORDER BY 1, 2, 3, 4, 5, 6;"
    "DROP VIEW member_accounts; DROP VIEW member_lots; DROP VIEW member_txs;"
    "DROP TABLE member_state;"
    "ALTER TABLE member_state_v11 RENAME TO member_state;" MEMBER_STATE_VIEWS
    "UPDATE meta SET value = '11' WHERE key = 'schema_version';";

/*
 * Version 12: what each rule has awarded, kept as it goes (rule_usage), and
 * the awards of rules with a per-member limit in their own table, keyed by
 * rule and member (award_caps).  Every award was an entry in an index keyed
 * by (rule, member, time), one random page per award: on an order earn of a
 * program with rules and tiers, 2.8 of the 6.7 pages a commit writes per
 * earn (docs/PERFORMANCE.md).  A rule's or a campaign's budget summed every
 * award the rule ever made, on every earn it was evaluated for; it now reads
 * one row per rule.  A per-member limit reads award_caps, which holds every
 * award of each rule whose current version has one (a version that adds the
 * limit first copies the rule's earlier awards in, rules_db.c), so a limit
 * added mid-period counts what the member already had in it, as before.
 * awards_rule (rule, then seq) serves that copy and reads by rule; its
 * inserts land at the end of each rule's range.  Verify checks both (A2,
 * A3; docs/RULES.md).  The base rate and tier awards (ids with ':') are no
 * rules and have no usage row.
 */
static const char schema_v12[] =
    "CREATE TABLE rule_usage("
    " tenant_id INTEGER NOT NULL, rule_id TEXT NOT NULL,"
    " points INTEGER NOT NULL CHECK(points >= 0), awards INTEGER NOT NULL CHECK(awards >= 0),"
    " PRIMARY KEY(tenant_id, rule_id)) STRICT, WITHOUT ROWID;"
    "INSERT INTO rule_usage SELECT tenant_id, rule_id, SUM(points),"
    " count(CASE WHEN points > 0 THEN 1 END) FROM awards WHERE instr(rule_id, ':') = 0"
    " GROUP BY tenant_id, rule_id;"
    "CREATE TABLE award_caps("
    " tenant_id INTEGER NOT NULL, rule_id TEXT NOT NULL, member_id TEXT NOT NULL,"
    " created_at INTEGER NOT NULL, tx_seq INTEGER NOT NULL, n INTEGER NOT NULL,"
    " points INTEGER NOT NULL CHECK(points >= 0),"
    " PRIMARY KEY(tenant_id, rule_id, member_id, created_at, tx_seq, n)) STRICT, WITHOUT ROWID;"
    "INSERT INTO award_caps SELECT a.tenant_id, a.rule_id, a.member_id, a.created_at, a.tx_seq,"
    " a.n, a.points FROM awards a JOIN rules r ON r.tenant_id = a.tenant_id AND r.id = a.rule_id"
    " JOIN rule_versions v ON v.tenant_id = r.tenant_id AND v.rule_id = r.id"
    " AND v.version = r.version WHERE " JF_RULE_PER_MEMBER_SQL(
        "v.body") ";"
                  "CREATE TRIGGER award_caps_no_update BEFORE UPDATE ON award_caps"
                  " BEGIN SELECT RAISE(ABORT, 'award caps are immutable'); END;"
                  "CREATE TRIGGER award_caps_no_delete BEFORE DELETE ON award_caps"
                  " BEGIN SELECT RAISE(ABORT, 'award caps are immutable'); END;"
                  "DROP INDEX awards_rule_member;"
                  "CREATE INDEX awards_rule ON awards(tenant_id, rule_id);"
                  "UPDATE meta SET value = '12' WHERE key = 'schema_version';";

/*
 * Version 13: an expired lot records what it lost (expired_amount) beside
 * the expiry that took it (expired_tx_seq), instead of a consumption by the
 * expire transaction.  That consumption said nothing the lot's row did not
 * (a lot expires at most once, and only what remains), and it was three
 * B-tree inserts per expired lot, one of them (consumptions_lot) on a random
 * page: 40% of the writer's work per lot in W6 and 60% of the
 * checkpointer's (docs/PERFORMANCE.md).  The upgrade moves each expiry's
 * consumption onto its lot and deletes it; debits and restores keep theirs.
 * Verify checks the pair (I4, I10; docs/LEDGER.md).
 */
static const char schema_v13[] =
    "ALTER TABLE lots ADD COLUMN expired_amount INTEGER CHECK(expired_amount > 0);"
    "UPDATE lots SET expired_amount = (SELECT SUM(c.amount) FROM consumptions c"
    " WHERE c.lot_seq = lots.seq AND c.tenant_id = lots.tenant_id"
    " AND c.tx_seq = lots.expired_tx_seq) WHERE expired_tx_seq IS NOT NULL;"
    "DROP TRIGGER consumptions_no_delete;"
    "DELETE FROM consumptions WHERE rowid IN (SELECT c.rowid FROM lots l JOIN consumptions c"
    " ON c.lot_seq = l.seq AND c.tenant_id = l.tenant_id AND c.tx_seq = l.expired_tx_seq"
    " WHERE l.expired_tx_seq IS NOT NULL);"
    "CREATE TRIGGER consumptions_no_delete BEFORE DELETE ON consumptions"
    " BEGIN SELECT RAISE(ABORT, 'consumptions are immutable'); END;"
    "UPDATE meta SET value = '13' WHERE key = 'schema_version';";

/* Version 14: an order's redeems, its holds, a hold's captures and the
 * members born on a day, by index.  A refund looks up what paid for the order
 * with points (refunds.c, order_paid_each), and with no index on those
 * columns the planner read every transaction of the tenant, in the writer, on
 * every refund; each slice of the birthday sweep (bonus.c) read every member
 * of the tenant.  tests/api/test_query_plans.py finds such statements.  The
 * transactions' indexes are partial, each with the very terms of its query,
 * so that an earn pays nothing for them. */
static const char schema_v14[] = "CREATE INDEX tx_order_redeem ON transactions(tenant_id, order_id)"
                                 " WHERE type = 'redeem' AND order_id IS NOT NULL;"
                                 "CREATE INDEX tx_order_hold ON transactions(tenant_id, order_id)"
                                 " WHERE type = 'hold' AND order_id IS NOT NULL;"
                                 "CREATE INDEX tx_hold_capture ON transactions(tenant_id, hold_id)"
                                 " WHERE type = 'capture' AND hold_id IS NOT NULL;"
                                 "CREATE INDEX members_birthday ON members(tenant_id,"
                                 " substr(birthday, 5));"
                                 "UPDATE meta SET value = '14' WHERE key = 'schema_version';";

/* Version 15: the referral key (src/core/referral.h), 16 random bytes from
 * libsodium as hex in meta 'referral_key', which keys the permutation that
 * turns a member's number into its referral code.  A database that has
 * members already gets none: their codes are printed and shared, and stay
 * as they were.  A version of its own, so that a binary from before, which
 * would show other codes, refuses the database instead. */
#define REFERRAL_KEY_BYTES 16

static jf_err schema_v15_steps(jf_db *db)
{
    int64_t members = 0;
    jf_err err = jf_db_int(db, &members, 0, "SELECT EXISTS(SELECT 1 FROM members)", "");
    if (err == JF_OK && !members) {
        uint8_t key[REFERRAL_KEY_BYTES];
        char hex[2 * REFERRAL_KEY_BYTES + 1];
        randombytes_buf(key, sizeof key);
        sodium_bin2hex(hex, sizeof hex, key, sizeof key);
        err = jf_db_run(db, "INSERT INTO meta(key, value) VALUES('referral_key', ?)", "s", hex);
        sodium_memzero(key, sizeof key);
        sodium_memzero(hex, sizeof hex);
    }
    return err == JF_OK
               ? jf_db_exec(db, "UPDATE meta SET value = '15' WHERE key = 'schema_version'")
               : err;
}

static jf_err schema_v15(jf_db *db)
{
    jf_err err = jf_db_exec(db, "BEGIN IMMEDIATE");
    if (err == JF_OK && (err = schema_v15_steps(db)) != JF_OK)
        jf_db_exec(db, "ROLLBACK");
    return err == JF_OK ? jf_db_exec(db, "COMMIT") : err;
}

/* Version 16: a transaction's postings in its own row.  Until now each
 * posting was a row of its own table, two or more B-tree inserts per
 * transaction beside the transaction's: without them the writer did about a
 * tenth more earns per second at 256 connections (docs/PERFORMANCE-HISTORY.md, since
 * commit f3b1885).  A transaction now holds up to six postings (ledger.h,
 * JF_TX_POSTINGS_MAX) in p0..p5 with posting_count; the rows written before
 * stay where they are, in the table renamed posting_rows (a transaction has
 * its postings in one place or the other: posting_count is 0 for the old
 * ones).  The view `postings` shows both as before, one row per posting,
 * for reads and for anyone querying the database by hand.  No row is
 * copied; SQLite tests the new columns' CHECKs on every transaction there
 * is, which with the index below took 4.7 s on 1.1 million transactions.
 *
 * Also an index of each tenant's members in seq order: a page of the member
 * list (members.c) sorted every member of the tenant to find the first
 * rows after its cursor (tests/api/test_query_plans.py found it once that
 * test saw statements built from macros). */
/* The slots in use are exactly the first posting_count (versions 16 and 21). */
#define POSTING_COUNT_CHECK                                                                        \
    " CHECK(posting_count >= 0 AND posting_count <= 6"                                             \
    " AND (p0_account IS NULL) = (posting_count <= 0)"                                             \
    " AND (p0_amount IS NULL) = (posting_count <= 0)"                                              \
    " AND (p1_account IS NULL) = (posting_count <= 1)"                                             \
    " AND (p1_amount IS NULL) = (posting_count <= 1)"                                              \
    " AND (p2_account IS NULL) = (posting_count <= 2)"                                             \
    " AND (p2_amount IS NULL) = (posting_count <= 2)"                                              \
    " AND (p3_account IS NULL) = (posting_count <= 3)"                                             \
    " AND (p3_amount IS NULL) = (posting_count <= 3)"                                              \
    " AND (p4_account IS NULL) = (posting_count <= 4)"                                             \
    " AND (p4_amount IS NULL) = (posting_count <= 4)"                                              \
    " AND (p5_account IS NULL) = (posting_count <= 5)"                                             \
    " AND (p5_amount IS NULL) = (posting_count <= 5)"                                              \
    ")"
/* Every posting, one row each, from both places (versions 16 and 21). */
#define POSTINGS_VIEW                                                                              \
    "CREATE VIEW postings(tenant_id, tx_seq, n, account, amount, created_at) AS"                   \
    " SELECT tenant_id, tx_seq, n, account, amount, created_at FROM posting_rows"                  \
    " UNION ALL SELECT t.tenant_id, t.seq, s.n,"                                                   \
    " CASE s.n WHEN 0 THEN t.p0_account WHEN 1 THEN t.p1_account WHEN 2 THEN t.p2_account"         \
    " WHEN 3 THEN t.p3_account WHEN 4 THEN t.p4_account WHEN 5 THEN t.p5_account END,"             \
    " CASE s.n WHEN 0 THEN t.p0_amount WHEN 1 THEN t.p1_amount WHEN 2 THEN t.p2_amount"            \
    " WHEN 3 THEN t.p3_amount WHEN 4 THEN t.p4_amount WHEN 5 THEN t.p5_amount END,"                \
    " t.created_at FROM transactions t JOIN posting_slots s ON s.n < t.posting_count;"
static const char schema_v16[] =
    "ALTER TABLE postings RENAME TO posting_rows;"
    "ALTER TABLE transactions ADD COLUMN p0_account TEXT;"
    "ALTER TABLE transactions ADD COLUMN p0_amount INTEGER CHECK(p0_amount <> 0);"
    "ALTER TABLE transactions ADD COLUMN p1_account TEXT;"
    "ALTER TABLE transactions ADD COLUMN p1_amount INTEGER CHECK(p1_amount <> 0);"
    "ALTER TABLE transactions ADD COLUMN p2_account TEXT;"
    "ALTER TABLE transactions ADD COLUMN p2_amount INTEGER CHECK(p2_amount <> 0);"
    "ALTER TABLE transactions ADD COLUMN p3_account TEXT;"
    "ALTER TABLE transactions ADD COLUMN p3_amount INTEGER CHECK(p3_amount <> 0);"
    "ALTER TABLE transactions ADD COLUMN p4_account TEXT;"
    "ALTER TABLE transactions ADD COLUMN p4_amount INTEGER CHECK(p4_amount <> 0);"
    "ALTER TABLE transactions ADD COLUMN p5_account TEXT;"
    "ALTER TABLE transactions ADD COLUMN p5_amount INTEGER CHECK(p5_amount <> 0);"
    "ALTER TABLE transactions ADD COLUMN posting_count INTEGER NOT NULL"
    " DEFAULT 0" POSTING_COUNT_CHECK ";"
    "CREATE TABLE posting_slots(n INTEGER PRIMARY KEY) STRICT;"
    "INSERT INTO posting_slots(n) VALUES(0),(1),(2),(3),(4),(5);"
    "CREATE TRIGGER posting_slots_no_delete BEFORE DELETE ON posting_slots"
    " BEGIN SELECT RAISE(ABORT, 'posting slots are fixed'); END;"
    "CREATE TRIGGER posting_slots_no_update BEFORE UPDATE ON posting_slots"
    " BEGIN SELECT RAISE(ABORT, 'posting slots are fixed'); END;" POSTINGS_VIEW
    "CREATE INDEX members_page ON members(tenant_id, seq);"
    "UPDATE meta SET value = '16' WHERE key = 'schema_version';";

/* Version 17: lots without UNIQUE(tenant_id, id).  No statement looks a
 * lot up by its id (a lot is reached through its member, its transaction or
 * its due date; tests/api/test_query_plans.py would see one that did), yet
 * each lot cost an insert into that index: the writer did 3.4% more earns per
 * second at 256 connections without it (docs/PERFORMANCE-HISTORY.md, since commit
 * a498ca6).  Lot ids stay unique as they are made (jf_id_new_ordered: the time
 * and 80 random bits).  The table is copied, which takes a few seconds per
 * million lots, once. */
static const char schema_v17[] =
    "CREATE TABLE lots_v17("
    " seq INTEGER PRIMARY KEY, tenant_id INTEGER NOT NULL, id TEXT NOT NULL,"
    " member_id TEXT NOT NULL, tx_seq INTEGER NOT NULL,"
    " amount INTEGER NOT NULL CHECK(amount > 0),"
    " remaining INTEGER NOT NULL CHECK(remaining >= 0 AND remaining <= amount),"
    " available_at INTEGER NOT NULL, expires_at INTEGER, expired_tx_seq INTEGER,"
    " created_at INTEGER NOT NULL,"
    " closed INTEGER NOT NULL DEFAULT 0"
    "  CHECK(closed = (remaining = 0 OR expired_tx_seq IS NOT NULL)),"
    " expired_amount INTEGER CHECK(expired_amount > 0)) STRICT;"
    "INSERT INTO lots_v17(seq, tenant_id, id, member_id, tx_seq, amount, remaining,"
    " available_at, expires_at, expired_tx_seq, created_at, closed, expired_amount)"
    " SELECT seq, tenant_id, id, member_id, tx_seq, amount, remaining, available_at,"
    " expires_at, expired_tx_seq, created_at, closed, expired_amount FROM lots ORDER BY seq;"
    "DROP TRIGGER lots_no_delete;"
    "DROP TABLE lots;"
    "ALTER TABLE lots_v17 RENAME TO lots;"
    "CREATE INDEX lots_due ON lots(tenant_id, expires_at)"
    " WHERE remaining > 0 AND expired_tx_seq IS NULL AND expires_at IS NOT NULL;"
    "CREATE INDEX lots_pending ON lots(tenant_id, member_id, available_at, expires_at, remaining)"
    " WHERE remaining > 0 AND expired_tx_seq IS NULL AND available_at > created_at;"
    "CREATE TRIGGER lots_no_delete BEFORE DELETE ON lots"
    " BEGIN SELECT RAISE(ABORT, 'lots are never deleted'); END;"
    "UPDATE meta SET value = '17' WHERE key = 'schema_version';";

/*
 * Version 18: one due entry per member instead of one per lot.  `lots_due`
 * indexed every open lot that expires, so every earn inserted into it and
 * every expired lot deleted from it, a random page of it when a member's lots
 * lie apart (0.6 us of the expiry's 4.8 per lot; docs/PERFORMANCE-HISTORY.md, since
 * commit 37834ac).  The expiry asks only which members have something due,
 * and a member's own entries in member_state list its lots by expiry, so
 * `member_due` holds one row per member that has an open lot that expires:
 * (tenant, due_at, member seq), due_at no later than the earliest of them.
 * It may be earlier (a redeem that empties that lot leaves it), and the
 * expiry moves it on when it finds nothing due (src/core/lots.c, the due
 * entry).  The member's row of member_state (kind 0, key1 JF_DUE_KEY) holds
 * the same due_at, so a write finds the entry on the page it already reads;
 * the member_accounts view leaves that row out.
 */
static const char schema_v18[] =
    "CREATE TABLE member_due(tenant_id INTEGER NOT NULL, due_at INTEGER NOT NULL,"
    " member_seq INTEGER NOT NULL, PRIMARY KEY(tenant_id, due_at, member_seq))"
    " STRICT, WITHOUT ROWID;"
    "INSERT INTO member_state SELECT m.seq, 0, " JF_DUE_KEY_SQL ", 0, 0, 0, MIN(l.expires_at)"
    " FROM lots l JOIN members m ON m.tenant_id = l.tenant_id AND m.id = l.member_id"
    " WHERE l.remaining > 0 AND l.expired_tx_seq IS NULL AND l.expires_at IS NOT NULL"
    " GROUP BY m.seq ORDER BY m.seq;"
    "INSERT INTO member_due SELECT m.tenant_id, s.value, s.member_seq FROM member_state s"
    " JOIN members m ON m.seq = s.member_seq WHERE s.kind = 0 AND s.key1 = " JF_DUE_KEY_SQL
    " ORDER BY 1, 2, 3;"
    "DROP INDEX lots_due;"
    "DROP VIEW member_accounts;"
    "CREATE VIEW member_accounts AS SELECT m.tenant_id AS tenant_id, m.id AS member_id,"
    " s.key1 AS account, s.value AS balance FROM members m JOIN member_state s"
    " ON s.member_seq = m.seq WHERE s.kind = 0 AND s.key1 < " JF_DUE_KEY_SQL ";"
    "UPDATE meta SET value = '18' WHERE key = 'schema_version';";

/*
 * Version 19: the answer of an earn, a redeem or an adjust is rebuilt on a
 * replay instead of stored (src/core/idem.c).  Such a key's row has
 * response_seq -1 (format 1) and keeps the member's points after the write in
 * after_available, after_pending and after_held; the answer's transaction is
 * its own row.  A stored answer was about 430 bytes and a statement per
 * write (docs/PERFORMANCE-HISTORY.md, since commit 0e83ab5).  Keys given out before
 * keep their stored answers; the columns are added without copying the
 * table.
 */
static const char schema_v19[] =
    "ALTER TABLE idempotency ADD COLUMN after_available INTEGER;"
    "ALTER TABLE idempotency ADD COLUMN after_pending INTEGER;"
    "ALTER TABLE idempotency ADD COLUMN after_held INTEGER CHECK(CASE WHEN response_seq > 0"
    " THEN after_available IS NULL AND after_pending IS NULL AND after_held IS NULL"
    " ELSE response_seq = -1 AND tx_id IS NOT NULL AND after_available IS NOT NULL"
    " AND after_pending IS NOT NULL AND after_held IS NOT NULL AND after_available >= 0"
    " AND after_pending >= 0 AND after_held >= 0 END);"
    "UPDATE meta SET value = '19' WHERE key = 'schema_version';";

/* Version 20: an order's earn, redeems and holds in one index instead of
 * three.  A partial index whose terms a row fails still costs that row's
 * insert a cursor on the index, opened and closed (about 800 instructions):
 * every transaction paid for three order indexes, of which a plain earn
 * matches none (docs/PERFORMANCE-HISTORY.md, since commit 768cffc).  The one
 * index keeps version 1's rule that an order earns once: its last column is
 * 0 for an earn, so a second earn of the order collides, and the
 * transaction's seq for the rest, which never collide. */
static const char schema_v20[] =
    "DROP INDEX tx_order_earn;"
    "DROP INDEX tx_order_redeem;"
    "DROP INDEX tx_order_hold;"
    "CREATE UNIQUE INDEX tx_order ON transactions(tenant_id, order_id, type,"
    " (CASE WHEN type = 'earn' THEN 0 ELSE seq END)) WHERE order_id IS NOT NULL;"
    "UPDATE meta SET value = '20' WHERE key = 'schema_version';";

/*
 * Version 21: transactions without UNIQUE(tenant_id, id).  An id made since
 * enciphers its tenant and seq under the database's key, meta 'txid_key'
 * (src/store/txid.h), so a lookup by id is a lookup of the primary key and
 * the index of ids went: it cost every transaction an insert into a second
 * B-tree, about 6,000 of the writer's instructions per earn
 * (docs/PERFORMANCE-HISTORY.md, since commit 505f4a9).  The ids given out
 * before keep their form and are found through tx_old_ids, which holds
 * every id that does not name its own row; `jifen verify` checks that every
 * id leads to its row and nothing else (I5).  The table is copied, once:
 * about as long as version 17's copy of the lots.
 */
/* The transactions' indexes and triggers, as versions 21 and 22 make them
 * again after the table's copy. */
#define TX_INDEXES_TRIGGERS                                                                        \
    "CREATE INDEX tx_reverses ON transactions(tenant_id, reverses)"                                \
    " WHERE reverses IS NOT NULL;"                                                                 \
    "CREATE INDEX tx_hold_capture ON transactions(tenant_id, hold_id)"                             \
    " WHERE type = 'capture' AND hold_id IS NOT NULL;"                                             \
    "CREATE UNIQUE INDEX tx_order ON transactions(tenant_id, order_id, type,"                      \
    " (CASE WHEN type = 'earn' THEN 0 ELSE seq END)) WHERE order_id IS NOT NULL;"                  \
    "CREATE TRIGGER transactions_no_update BEFORE UPDATE ON transactions"                          \
    " BEGIN SELECT RAISE(ABORT, 'transactions are immutable'); END;"                               \
    "CREATE TRIGGER transactions_no_delete BEFORE DELETE ON transactions"                          \
    " BEGIN SELECT RAISE(ABORT, 'transactions are immutable'); END;"
/* A transaction's type and its six posting slots, as versions 21 and 22
 * define them. */
#define TX_TYPE_COLUMN                                                                             \
    " type TEXT NOT NULL CHECK(type = 'earn' OR type = 'redeem' OR type = 'adjust'"                \
    " OR type = 'transfer' OR type = 'hold' OR type = 'capture' OR type = 'void'"                  \
    " OR type = 'expire' OR type = 'reverse'),"
#define TX_SLOT_COLUMNS                                                                            \
    " p0_account TEXT, p0_amount INTEGER CHECK(p0_amount <> 0),"                                   \
    " p1_account TEXT, p1_amount INTEGER CHECK(p1_amount <> 0),"                                   \
    " p2_account TEXT, p2_amount INTEGER CHECK(p2_amount <> 0),"                                   \
    " p3_account TEXT, p3_amount INTEGER CHECK(p3_amount <> 0),"                                   \
    " p4_account TEXT, p4_amount INTEGER CHECK(p4_amount <> 0),"                                   \
    " p5_account TEXT, p5_amount INTEGER CHECK(p5_amount <> 0),"                                   \
    " posting_count INTEGER NOT NULL DEFAULT 0" POSTING_COUNT_CHECK
/* The columns a copy of versions 21 and 22 carries over: all of them, and
 * all but the key's (version 22's key is txkey, its tenant and seq virtual). */
#define TX_COLUMNS_V22                                                                             \
    "id, type, member_id, counterparty_id, points, delta, reverses, hold_id,"                      \
    " order_id, order_amount, order_currency, reason, note, channel, store_id, actor, metadata,"   \
    " idem_key, created_at, prev_hash, hash, p0_account, p0_amount, p1_account, p1_amount,"        \
    " p2_account, p2_amount, p3_account, p3_amount, p4_account, p4_amount, p5_account,"            \
    " p5_amount, posting_count"
#define TX_COLUMNS_V21 "tenant_id, seq, " TX_COLUMNS_V22
static const char schema_v21_sql[] =
    "CREATE TABLE tx_old_ids(tenant_id INTEGER NOT NULL, id TEXT NOT NULL,"
    " seq INTEGER NOT NULL, PRIMARY KEY(tenant_id, id)) STRICT, WITHOUT ROWID;"
    "INSERT INTO tx_old_ids SELECT tenant_id, id, seq FROM transactions"
    " WHERE jf_tx_seq(tenant_id, id) IS NOT seq ORDER BY tenant_id, id;"
    "CREATE TABLE transactions_v21("
    " tenant_id INTEGER NOT NULL, seq INTEGER NOT NULL CHECK(seq >= 1),"
    " id TEXT NOT NULL," TX_TYPE_COLUMN TX_COLUMNS_V1_REST TX_SLOT_COLUMNS ","
    " PRIMARY KEY(tenant_id, seq)) STRICT, WITHOUT ROWID;"
    "INSERT INTO transactions_v21(" TX_COLUMNS_V21 ") SELECT " TX_COLUMNS_V21
    " FROM transactions ORDER BY tenant_id, seq;"
    "DROP VIEW postings;"
    "DROP TABLE transactions;"
    "ALTER TABLE transactions_v21 RENAME TO transactions;" TX_INDEXES_TRIGGERS
    "CREATE TRIGGER tx_old_ids_no_update BEFORE UPDATE ON tx_old_ids"
    " BEGIN SELECT RAISE(ABORT, 'transaction ids are immutable'); END;"
    "CREATE TRIGGER tx_old_ids_no_delete BEFORE DELETE ON tx_old_ids"
    " BEGIN SELECT RAISE(ABORT, 'transaction ids are immutable'); END;" POSTINGS_VIEW
    "UPDATE meta SET value = '21' WHERE key = 'schema_version';";

/* The key first, kept if the database has one (a database taken back to
 * version 20 by the tests keeps the ids made under it), and read into db so
 * that the copy's jf_tx_seq knows which ids name their row. */
static jf_err schema_v21_steps(jf_db *db)
{
    uint8_t key[JF_TXID_KEY_BYTES];
    char hex[2 * JF_TXID_KEY_BYTES + 1];
    randombytes_buf(key, sizeof key);
    sodium_bin2hex(hex, sizeof hex, key, sizeof key);
    jf_err err =
        jf_db_run(db, "INSERT OR IGNORE INTO meta(key, value) VALUES('txid_key', ?)", "s", hex);
    sodium_memzero(key, sizeof key);
    sodium_memzero(hex, sizeof hex);
    if (err == JF_OK)
        err = jf_db_txid_key_load(db);
    if (err == JF_OK && !db->txid_keyed)
        err = JF_ERR_CORRUPT;
    return err == JF_OK ? jf_db_exec(db, schema_v21_sql) : err;
}

static jf_err schema_v21(jf_db *db)
{
    jf_err err = jf_db_exec(db, "BEGIN IMMEDIATE");
    if (err == JF_OK && (err = schema_v21_steps(db)) != JF_OK)
        jf_db_exec(db, "ROLLBACK");
    return err == JF_OK ? jf_db_exec(db, "COMMIT") : err;
}

/*
 * Version 22: transactions as a table with a rowid, the rowid `txkey` being
 * tenant << 44 | seq (JF_TX_KEY_SQL in db.h), exactly the block a
 * transaction id enciphers (txid.h), with tenant_id and seq as virtual
 * columns computed from it.  The table's key was (tenant_id, seq) WITHOUT
 * ROWID: every earn appended to an index B-tree, which SQLite balances with
 * its general split where a rowid table's append takes its quick path, and
 * every search compared records where it now compares integers (3,500
 * instructions of a 31,000-instruction row insert in a C program under
 * callgrind; docs/PERFORMANCE-HISTORY.md, since commit 7ad03c3).  The
 * planner cannot search by an expression's inverse, so every statement that
 * finds a transaction by tenant and seq, or reads a tenant's transactions,
 * names txkey (tests/api/test_query_plans.py fails a scan), and the view of
 * postings gains tx_key for the same.  The table is copied, once.
 */
/* The key, tenant and seq of a version 22 row (db.h). */
#define TXKEY_OF_ROW JF_TX_KEY_SQL("tenant_id", "seq")
#define TXKEY_OF_POSTING_ROW JF_TX_KEY_SQL("tenant_id", "tx_seq")
#define TENANT_OF_TXKEY JF_TX_TENANT_OF_SQL("txkey")
#define SEQ_OF_TXKEY JF_TX_SEQ_OF_SQL("txkey")
static const char schema_v22[] =
    "CREATE TABLE transactions_v22(txkey INTEGER PRIMARY KEY,"
    " tenant_id INTEGER GENERATED ALWAYS AS (" TENANT_OF_TXKEY ") VIRTUAL,"
    " seq INTEGER GENERATED ALWAYS AS (" SEQ_OF_TXKEY ") VIRTUAL CHECK(seq >= 1),"
    " id TEXT NOT NULL," TX_TYPE_COLUMN TX_COLUMNS_V1_REST TX_SLOT_COLUMNS ") STRICT;"
    "INSERT INTO transactions_v22(txkey, " TX_COLUMNS_V22 ") SELECT " TXKEY_OF_ROW
    ", " TX_COLUMNS_V22 " FROM transactions ORDER BY tenant_id, seq;"
    "DROP VIEW postings;"
    "DROP TABLE transactions;"
    "ALTER TABLE transactions_v22 RENAME TO transactions;" TX_INDEXES_TRIGGERS
    /* A query of one transaction's postings names tx_key as well as
     * (tenant_id, tx_seq): each side of the union takes its own key.  The
     * unary plus keeps the planner from building an automatic index of the
     * virtual tenant_id over every tenant's transactions instead of taking
     * txkey's range (tests/api/test_query_plans.py). */
    "CREATE VIEW postings(tenant_id, tx_seq, n, account, amount, created_at, tx_key) AS"
    " SELECT tenant_id, tx_seq, n, account, amount, created_at, " TXKEY_OF_POSTING_ROW
    " FROM posting_rows UNION ALL SELECT +t.tenant_id, +t.seq, s.n,"
    " CASE s.n WHEN 0 THEN t.p0_account WHEN 1 THEN t.p1_account WHEN 2 THEN t.p2_account"
    " WHEN 3 THEN t.p3_account WHEN 4 THEN t.p4_account WHEN 5 THEN t.p5_account END,"
    " CASE s.n WHEN 0 THEN t.p0_amount WHEN 1 THEN t.p1_amount WHEN 2 THEN t.p2_amount"
    " WHEN 3 THEN t.p3_amount WHEN 4 THEN t.p4_amount WHEN 5 THEN t.p5_amount END,"
    " t.created_at, t.txkey FROM transactions t JOIN posting_slots s ON s.n < t.posting_count;"
    "UPDATE meta SET value = '22' WHERE key = 'schema_version';";
#undef POSTING_COUNT_CHECK
#undef TX_COLUMNS_V1_REST
#undef TX_COLUMNS_V21
#undef TX_COLUMNS_V22
#undef TX_TYPE_COLUMN
#undef TX_SLOT_COLUMNS
#undef TXKEY_OF_ROW
#undef TXKEY_OF_POSTING_ROW
#undef TX_INDEXES_TRIGGERS
#undef TENANT_OF_TXKEY
#undef SEQ_OF_TXKEY
#undef POSTINGS_VIEW

/*
 * Version 23: each member's pending mark, members.pending_until, no earlier
 * than the available_at of any of its open lots that was made pending
 * (src/core/lots.c, the pending mark): a read of the member's points after
 * it searches no index for pending lots.  Set from the lots' pending index;
 * 0 (nothing pending) for every other member.  The column is added without
 * copying the table.
 */
static const char schema_v23[] =
    "ALTER TABLE members ADD COLUMN pending_until INTEGER NOT NULL DEFAULT 0;"
    "UPDATE members SET pending_until = p.until FROM (SELECT tenant_id, member_id,"
    " MAX(available_at) AS until FROM lots INDEXED BY lots_pending WHERE remaining > 0"
    " AND expired_tx_seq IS NULL AND available_at > created_at GROUP BY tenant_id, member_id) p"
    " WHERE members.tenant_id = p.tenant_id AND members.id = p.member_id;"
    "UPDATE meta SET value = '23' WHERE key = 'schema_version';";

/*
 * Version 24: an order earn's lines in its transaction's row, order_lines,
 * as JSON text (an array of [sku, amount, quantity, points]; refunds.c,
 * jf_order_lines_text), instead of a row each in the order_lines table.
 * Each of those rows was an insert into a B-tree keyed by the order's text
 * id, about 10,500 of the writer's instructions per line, where the text
 * rides in a row the earn appends anyway (docs/PERFORMANCE-HISTORY.md,
 * "Since commit 9f339c6").  Orders earned before keep their rows in
 * order_lines, which refunds read when the earn's row has no lines (the
 * transactions are immutable, so nothing is moved); nothing writes that
 * table any more.  The column is added without copying the table.
 */
static const char schema_v24[] =
    "ALTER TABLE transactions ADD COLUMN order_lines TEXT"
    " CHECK(order_lines IS NULL OR (type = 'earn' AND order_id IS NOT NULL));"
    "UPDATE meta SET value = '24' WHERE key = 'schema_version';";

/* Runs one migration step in its own transaction. */
static jf_err migrate_step(jf_db *db, const char *sql)
{
    jf_err err = jf_db_exec(db, "BEGIN IMMEDIATE");
    if (err != JF_OK)
        return err;
    if ((err = jf_db_exec(db, sql)) != JF_OK) {
        jf_db_exec(db, "ROLLBACK");
        return err;
    }
    return jf_db_exec(db, "COMMIT");
}

jf_err jf_db_migrate(jf_db *db)
{
    int64_t has_meta = 0, version = 0;
    jf_err err =
        jf_db_int(db, &has_meta, 0,
                  "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='meta'", "");
    if (err == JF_OK && has_meta)
        err = jf_db_int(db, &version, 0,
                        "SELECT CAST(value AS INTEGER) FROM meta WHERE key='schema_version'", "");
    if (err != JF_OK)
        return err;
    if (version > JF_SCHEMA_VERSION || (has_meta && version < 1))
        return JF_ERR_CORRUPT;
    /* An upgrade copies whole tables (versions 6 to 8 rewrite every lot,
     * transaction and stored response): minutes on a large database, so
     * the operator is told why the server is not listening yet. */
    if (has_meta && version < JF_SCHEMA_VERSION)
        fprintf(stderr,
                "jifen: upgrading the database from schema version %lld to %d; this runs once"
                " and takes about 20 s per million transactions\n",
                (long long)version, JF_SCHEMA_VERSION);
    if (!has_meta && (err = migrate_step(db, schema_v1)) == JF_OK)
        version = 1;
    if (err == JF_OK && version == 1 && (err = migrate_step(db, schema_v2)) == JF_OK)
        version = 2;
    if (err == JF_OK && version == 2 && (err = migrate_step(db, schema_v3)) == JF_OK)
        version = 3;
    if (err == JF_OK && version == 3 && (err = migrate_step(db, schema_v4)) == JF_OK)
        version = 4;
    if (err == JF_OK && version == 4 && (err = migrate_step(db, schema_v5)) == JF_OK)
        version = 5;
    if (err == JF_OK && version == 5 && (err = migrate_step(db, schema_v6)) == JF_OK)
        version = 6;
    if (err == JF_OK && version == 6 && (err = migrate_step(db, schema_v7)) == JF_OK)
        version = 7;
    if (err == JF_OK && version == 7 && (err = migrate_step(db, schema_v8)) == JF_OK)
        version = 8;
    if (err == JF_OK && version == 8 && (err = schema_v9(db)) == JF_OK)
        version = 9;
    if (err == JF_OK && version == 9 && (err = schema_v10_check(db)) == JF_OK &&
        (err = migrate_step(db, schema_v10)) == JF_OK)
        version = 10;
    if (err == JF_OK && version == 10 && (err = migrate_step(db, schema_v11)) == JF_OK)
        version = 11;
    if (err == JF_OK && version == 11 && (err = migrate_step(db, schema_v12)) == JF_OK)
        version = 12;
    if (err == JF_OK && version == 12 && (err = migrate_step(db, schema_v13)) == JF_OK)
        version = 13;
    if (err == JF_OK && version == 13 && (err = migrate_step(db, schema_v14)) == JF_OK)
        version = 14;
    if (err == JF_OK && version == 14 && (err = schema_v15(db)) == JF_OK)
        version = 15;
    if (err == JF_OK && version == 15 && (err = migrate_step(db, schema_v16)) == JF_OK)
        version = 16;
    if (err == JF_OK && version == 16 && (err = migrate_step(db, schema_v17)) == JF_OK)
        version = 17;
    if (err == JF_OK && version == 17 && (err = migrate_step(db, schema_v18)) == JF_OK)
        version = 18;
    if (err == JF_OK && version == 18 && (err = migrate_step(db, schema_v19)) == JF_OK)
        version = 19;
    if (err == JF_OK && version == 19 && (err = migrate_step(db, schema_v20)) == JF_OK)
        version = 20;
    if (err == JF_OK && version == 20 && (err = schema_v21(db)) == JF_OK)
        version = 21;
    if (err == JF_OK && version == 21 && (err = migrate_step(db, schema_v22)) == JF_OK)
        version = 22;
    if (err == JF_OK && version == 22 && (err = migrate_step(db, schema_v23)) == JF_OK)
        version = 23;
    if (err == JF_OK && version == 23 && (err = migrate_step(db, schema_v24)) == JF_OK)
        version = 24;
    return err;
}

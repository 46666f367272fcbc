/*
 * Every limit of jifen in one place (as SQLite's sqliteLimit.h).
 *
 * Each constant says why it has its value; related ones are tied together by
 * _Static_assert so that changing one cannot silently break another.  Code
 * that grows a buffer or accepts a size from outside checks it against one of
 * these.
 */
#ifndef JIFEN_LIMITS_H
#define JIFEN_LIMITS_H

#include <stdint.h>

/* Points and money are integers that JavaScript clients can hold exactly. */
#define JF_POINTS_MAX INT64_C(9007199254740991) /* 2^53 - 1 */
#define JF_MONEY_MAX JF_POINTS_MAX

/* A request body: the largest single-operation JSON we accept.  Orders with
 * many lines fit easily; anything bigger is an attack or a bug. */
#define JF_BODY_BYTES_MAX (64 * 1024)

/* A batch (POST /v1/batch) carries up to this many operations, each with its
 * own idempotency key and result, in a body of at most this size. */
#define JF_BATCH_OPS_MAX 1000
#define JF_BATCH_BODY_BYTES_MAX (1024 * 1024)
/* The writer applies a batch in slices of at most this many operations or
 * this much time, each committed on its own, and a batch's later slices wait
 * while single requests are queued (at most JF_JOB_WAIT_MAX_MS), as the
 * expiry job's do: 1,000 operations take the writer 40-100 ms, and a till's
 * earn queued behind four whole batches waited 200-700 ms (batch.c). */
#define JF_BATCH_SLICE_OPS 250
#define JF_BATCH_SLICE_US 5000

/* Nesting depth of request JSON: orders and metadata need three levels. */
#define JF_JSON_DEPTH_MAX 8
/* The JSON writer (src/core/jsonw.c) refuses trees deeper than this rather
 * than recurse into them: deeper than any the API builds or accepts. */
#define JF_JSON_DUMP_DEPTH_MAX 64
/* The JSON reader (src/core/jsonr.c) refuses containers nested deeper than
 * this, for the same reason: it reads back whatever the writer wrote (whose
 * top container is its depth 0, the reader's 1), and every request body,
 * whose own bound is checked after it (a batch's operations sit three
 * levels down). */
#define JF_JSON_DECODE_DEPTH_MAX (JF_JSON_DUMP_DEPTH_MAX + 1)
_Static_assert(JF_JSON_DECODE_DEPTH_MAX >= JF_JSON_DEPTH_MAX + 3,
               "the reader takes every body the API accepts");

/* Idempotency-Key: 1..128 printable ASCII characters (API.md). */
#define JF_IDEM_KEY_LEN_MAX 128

/* Identifiers we generate: a prefix ("mem_", "txn_") and 20 to 24 hex digits. */
#define JF_ID_LEN_MAX 32

/* A transaction id (src/store/txid.h) enciphers its tenant and seq in 64
 * bits: about a million tenants in one database, and 1.7e13 transactions
 * each (eleven years at 50,000 a second).  A tenant past them can make no
 * transaction (internal_error); neither is near. */
#define JF_TXID_TENANT_BITS 20
#define JF_TXID_SEQ_BITS 44
#define JF_TXID_TENANT_MAX ((INT64_C(1) << JF_TXID_TENANT_BITS) - 1)
#define JF_TXID_SEQ_MAX ((INT64_C(1) << JF_TXID_SEQ_BITS) - 1)

/* Strings a client may store. */
#define JF_EXTERNAL_ID_LEN_MAX 128
#define JF_NAME_LEN_MAX 200
#define JF_PHONE_LEN_MAX 32
#define JF_REASON_LEN_MAX 500
#define JF_NOTE_LEN_MAX 500
#define JF_CHANNEL_LEN_MAX 32
#define JF_STORE_ID_LEN_MAX 64
#define JF_ORDER_ID_LEN_MAX 128
#define JF_TAG_LEN_MAX 64
#define JF_TAGS_MAX 32
#define JF_METADATA_BYTES_MAX 4096
#define JF_TIMEZONE_LEN_MAX 64
#define JF_KEY_NAME_LEN_MAX 100

/* Earning rules (docs/RULES.md).  A tenant has at most JF_RULES_MAX rules;
 * at most JF_RULES_ACTIVE_MAX of one trigger are evaluated per earn, which
 * bounds the writer's work per order and the awards of one transaction.
 * Lists inside a rule (SKUs, tags, days) and the lines of an order are
 * bounded so that evaluation stays a few microseconds. */
#define JF_RULES_MAX 1000
#define JF_RULES_ACTIVE_MAX 64
#define JF_RULE_BYTES_MAX 16384
#define JF_RULE_LIST_MAX 200
/* A rule's answer lists its newest versions, at most this many: every update
 * adds one, and the list was once unbounded, so that each update and read of
 * a rule updated thousands of times cost more than the one before (found by
 * test_faults' test_rule_update). */
#define JF_RULE_VERSIONS_SHOWN 100
#define JF_RULE_NAME_LEN_MAX 100
#define JF_EVENT_NAME_LEN_MAX 64
#define JF_ORDER_LINES_MAX 500
#define JF_SKU_LEN_MAX 64
#define JF_EXPLANATION_LEN_MAX 320
#define JF_RULE_FACTOR_MAX 100

/* Tiers (docs/TIERS.md).  A tier code is short enough that the award ids
 * "tier:<code>:birthday" fit an id; an evaluation slice handles at most
 * JF_TIER_EVAL_SLICE members; an import at most JF_TIER_IMPORT_MAX. */
#define JF_TIERS_MAX 10
#define JF_TIER_CODE_LEN_MAX 16
#define JF_TIER_NAME_LEN_MAX 64
#define JF_TIER_PERKS_MAX 20
#define JF_TIER_REWARDS_MAX 50
#define JF_TIER_WINDOW_MONTHS_MAX 120
#define JF_TIER_EVAL_SLICE 500
#define JF_TIER_IMPORT_MAX 1000
#define JF_TIER_HISTORY_MAX 100
/* Awards of one earn: one per live rule, plus the tier and birthday multipliers. */
#define JF_AWARDS_MAX (JF_RULES_ACTIVE_MAX + 2)
/* Campaigns of a tenant (each a named set of rules). */
#define JF_CAMPAIGNS_MAX 1000
/* Referral codes: 8 characters of a 31-letter alphabet hold 2^39 members. */
#define JF_REFERRAL_CODE_LEN 8
/* Check-in streak bonus days and cycles: at most ten years of days. */
#define JF_CHECKIN_STREAK_DAYS_MAX 3660

/* Lists: ?limit= is 1..1000, default 50 (API.md). */
#define JF_LIST_LIMIT_DEFAULT 50
#define JF_LIST_LIMIT_MAX 1000

/* The writer applies at most this many commands in one SQLite transaction:
 * large enough that a commit (about 0.1 ms of fsync) is shared by many
 * requests, small enough that one batch never holds the write lock long. */
#define JF_BATCH_COMMANDS_MAX 512

/* Hot rows (src/core/hot.c): the chain heads, program accounts and rules'
 * usage one batch keeps in memory and writes once at its commit.  A batch
 * of commands from as many tenants as it has commands fits twice over;
 * rows beyond it are written directly, so the limit bounds memory, not
 * correctness. */
#define JF_HOT_ROWS_MAX 1024

/* The writer's memory between batches (src/core/wcache.c).  Member rows: a
 * direct-mapped table of this many slots (160 bytes each with the member's
 * tier, calloc'd so only the slots used take memory: 40 MiB at most); a
 * member that collides replaces another, so the size bounds memory and the
 * hit rate, never correctness.  Members one batch may write before the table is bypassed
 * for the rest of it.  Tenants whose open holds' earliest deadline is
 * remembered; beyond that a tenant's writes check its members' holds each
 * time, as without the table. */
#define JF_WCACHE_MEMBERS 262144
#define JF_WCACHE_DIRTY_MAX 1024
#define JF_WCACHE_TENANTS 256
/* Parsed rule versions and tier configurations the writer keeps (wcache.c):
 * one slot each by hash, so a tenant's live rules (at most
 * JF_RULES_ACTIVE_MAX) and its configuration mostly fit beside other
 * tenants'.  A miss only parses the body again. */
#define JF_WCACHE_BODIES 1024
/* Sets of live rules the writer keeps (wcache.c): one per tenant, trigger,
 * event and drafts flag; a power of two. */
#define JF_WCACHE_LIVE 64
/* Tenants whose current tier configuration the writer keeps filled
 * (wcache.c), one slot each by hash (about 1.2 KB a slot); a miss reads the
 * row and fills it again. */
#define JF_WCACHE_TIERS 64

/* Commands waiting for the writer.  Beyond this, a request is answered 429
 * instead of queueing without bound. */
#define JF_QUEUE_COMMANDS_MAX 65536

/* The idempotency-key filter (src/core/idemfilter.c): bits per key it is
 * sized for (about 1% of absent keys then still need their lookup), the
 * fewest keys it is sized for, and how many keys the writer stores before
 * it builds one (a short CLI command never scans the table). */
#define JF_IDEM_FILTER_BITS_PER_KEY 10
#define JF_IDEM_FILTER_KEYS_MIN (1u << 20)
#define JF_IDEM_FILTER_WRITES_MIN 256

/* Slots of the table that tells a read of a member's points, transactions or
 * lots which commit last changed that member (syncer.c, jf_member_written):
 * the read waits for that commit's flush instead of the latest commit's.
 * Members share a slot by their seq modulo this (a power of two), and a
 * shared slot only makes a read wait for a flush it did not need. */
#define JF_MEMBER_GEN_SLOTS 65536

/* The checkpointer copies the WAL into the database this often, off the
 * writer's path (`jifen serve --checkpoint-interval` sets it from _MIN to
 * _MAX).  Each pass copies the newest version of every page changed since
 * the last, so longer intervals copy a page changed several times once:
 * 1,000 ms wrote 35-60% fewer pages and served 5% more earns at 64
 * connections, but the checkpointer then lags at the WAL's restart
 * threshold, the writer copies the rest itself (a forced restart) and W1's
 * p99 at 14,000 earns/s went from 7.4 to 13.3 ms (docs/PERFORMANCE-HISTORY.md,
 * since 37834ac). */
#define JF_CHECKPOINT_INTERVAL_MS 100
#define JF_CHECKPOINT_INTERVAL_MS_MIN 10
#define JF_CHECKPOINT_INTERVAL_MS_MAX 60000
/* How often a checkpoint pass looks whether the two commits it waits for
 * have come (engine.c, the WAL-reset guard): this often for its first ten
 * looks, ten times less often after; it waits at most the interval above. */
#define JF_CHECKPOINT_POLL_US 500
/* After a burst of writes, glibc keeps the memory the burst's requests freed
 * (64 concurrent batches of 1,000 operations left 287 MB of anonymous memory
 * resident, 45 MB once trimmed).  When the writer has had nothing to do for
 * this long after some work, the checkpointer hands that memory back to the
 * system (malloc_trim), once per burst (engine.c, ckpt_idle_trim). */
#define JF_MEMORY_TRIM_IDLE_MS 1000
/* The checkpointer's copy into the database file is written back to the
 * disk every this many bytes and waited for (src/store/walbuf.c), so a WAL
 * flush arriving meanwhile queues behind at most this much instead of a
 * whole pass (7 MB per 100 ms at 1,000 earns/s), which made about 1% of
 * flushes take 3-200 ms.  At 1,000 earns/s W1's p99 was 7.7 ms unpaced,
 * 7.4 ms with 1 MiB, 3.6 ms with 256 KiB and 1.6-1.9 ms with 16-64 KiB;
 * throughput at full load did not change. */
#define JF_CHECKPOINT_PACE_BYTES (64 * 1024)
/* Past this many WAL frames (4 KiB each, so 256 MiB) the WAL is restarted
 * from its head instead of growing.  Each restart pauses the writer for a
 * final checkpoint and two fsyncs, so restarts must be rare: at 4,096
 * frames they cost W1 a fifth of its throughput and tripled its p99.  The
 * size is PostgreSQL's order (max_wal_size is 1 GB by default); readers only
 * search the frames the checkpointer has not yet copied, so a long WAL does
 * not slow them. */
#define JF_WAL_RESTART_FRAMES 65536
/* The writer restarts the WAL only once the checkpointer has copied all but
 * this many frames, so its final copy takes a millisecond or so instead of
 * the ~50 ms a whole checkpoint interval's frames take.  Past twice
 * JF_WAL_RESTART_FRAMES it restarts whatever the lag, which bounds the WAL. */
#define JF_WAL_RESTART_LAG_FRAMES 256
/* WAL bytes collected before one write (src/store/walbuf.c): a commit's
 * frames go out together unless they exceed this. */
#define JF_WAL_BUFFER_BYTES (1024 * 1024)
/* Address space the process maps of each WAL, once for all its connections,
 * to read it without a system call per page (src/store/walbuf.c, wal_read):
 * only pages read take memory, and they are the page cache's.  A WAL reaches
 * about 2 * JF_WAL_RESTART_FRAMES frames of 4 KiB pages (540 MiB) before the
 * writer restarts it; reads past the map go to the file. */
#define JF_WAL_MAP_BYTES ((size_t)4 << 30)
/* WAL files one process maps at a time (one per database it has open: the
 * server has one; a test may have a few).  Past it, reads go to the file. */
#define JF_WAL_MAPS_MAX 16
/* The writer's page cache (SQLite cache_size, KiB).  Smaller than the
 * readers' (db.c, 32 MiB) on purpose: when a B-tree rebalances, SQLite parks
 * a page at the number of the lock page (1 GiB / page size) for a moment, and
 * in a database smaller than 1 GiB that makes every later COMMIT scan the
 * whole page-cache hash for pages past the end (pcache1TruncateUnsafe): 7% of
 * the writer's time with 32 MiB under W1, 4% with this.  Pages not cached are
 * read through the memory map or the WAL, which costs less than the scan
 * saves.  A page-cache wrapper that skips the scan, with 32 or 64 MiB, was
 * tried and measured no faster (docs/PERFORMANCE-HISTORY.md, since 780b866). */
#define JF_DB_WRITER_CACHE_KIB 8192
/* Pages one writer transaction may keep dirty in memory before SQLite
 * spills them to the WAL mid-transaction (PRAGMA cache_spill; 64 MiB of
 * 4 KiB pages).  A spill writes pages the same transaction touches again,
 * and a batch of 1,000 earns on random members dirties several thousand
 * pages, more than the cache above holds: spilling made each of its INSERTs
 * about twice as slow.  This bounds the writer's memory all the same.  W5
 * (1,000 earns per request, 4 connections, three interleaved 12 s runs,
 * medians): 7,917 -> 8,833 operations/s, CPU per operation 160 -> 141 us. */
#define JF_DB_WRITER_SPILL_PAGES 16384
/* The smallest restart threshold an operator may set (4 MiB of 4 KiB pages). */
#define JF_WAL_RESTART_FRAMES_MIN 1024
/* The largest (16 GiB of 4 KiB pages); twice it still fits an int. */
#define JF_WAL_RESTART_FRAMES_MAX 4194304

/* A sliced job's next slice waits while foreground commands are queued, at
 * most this long (so jobs still progress under full load). */
#define JF_JOB_WAIT_MAX_MS 50

/* Valid API keys kept in memory by each engine (keycache.c); a collision
 * in this direct-mapped table only costs a database read. */
#define JF_KEY_CACHE_SLOTS 1024

/* Expiry runs in slices of at most this many lots or this many microseconds
 * of work, one writer command each, so the expiry job never holds the writer
 * (and the requests queued behind it) for long.  What holds it is mostly the
 * slice's commit: each lot dirties a few random pages, and the next commit
 * waits for that flush.  W6 with W1 at 7,000 earns/s beside it (one run
 * each): 1,000 lots and 5 ms took 24-26 s with W1's p99 at 1.0-1.8 s and
 * requests left unsent; 500 and 3 ms 35 s, p99 287 ms; these 37 s, 127 ms. */
#define JF_EXPIRY_SLICE_LOTS 250
/* While the writer holds a commit for the flush before it and nothing is
 * queued, a sliced job (expiry, POST /v1/batch) may run this many slices in
 * it instead of the writer waiting (engine.c, writer_take_held).  W6's
 * million lots beside 6,000 earns/s, two pairs: 11.5 and 9.6 s without,
 * 7.4 and 6.4 s with one (the writer had waited a quarter of the time). */
#define JF_HELD_SLICES_MAX 1
#define JF_EXPIRY_SLICE_US 2000
/* A slice takes this many of the earliest due members (member_due, schema
 * version 18), expires each member's due lots together, and scans again
 * while it has budget and time: a slice of 2 ms gets through 10 to 100
 * members (W6: 10 lots a member; a scan of 256 lots, before version 18,
 * spent 131 us per slice, most of it on members left for later slices). */
#define JF_EXPIRY_SCAN_MEMBERS 64

/* Holds void themselves after this long unless the request says otherwise;
 * no hold lives longer than the maximum. */
#define JF_HOLD_TTL_SECONDS_DEFAULT 900
#define JF_HOLD_TTL_SECONDS_MAX (30 * 24 * 3600)

/* Program settings. */
#define JF_PENDING_DAYS_MAX 3650
#define JF_EXPIRY_DAYS_MAX 36500
#define JF_EXPIRY_MONTHS_MAX 1200

/* A verify report lists at most this many violations in detail. */
#define JF_VERIFY_REPORT_MAX 1000

/* HTTP server: worker threads and concurrent connections. */
/* Two HTTP threads match the 2-core machines we run on: more only add
 * context switches (measured: 4 -> 2 threads raised durable earns over HTTP
 * from about 15,000 to 20,000 per second).  Each runs one event loop
 * (src/server/loop.c). */
#define JF_HTTP_THREADS_DEFAULT 2
#define JF_HTTP_CONNECTIONS_MAX 4096
/* A connection with no activity for this long is closed (seconds): an idle
 * keep-alive one or a slow client's.  One whose client hung up is closed at
 * once (src/server/loop.c, srv_conn). */
#define JF_HTTP_CONNECTION_TIMEOUT_S 60
/* The Retry-After of a 429 (the writer's queue is full) or a 503 (out of
 * memory, shutting down), in seconds: long enough for a batch or two to
 * drain, short enough that a till does not give up. */
#define JF_HTTP_RETRY_AFTER_S 1
/* An HTTP loop (src/server/loop.c) wakes at least this often even when
 * nothing is due, so that a wake-up lost would cost a client a pause, never
 * its connection.  One was lost, until 2026-12-05, in about one burst of 64
 * new connections in 10-300 on a loaded machine: the loop cleared its
 * wake-up flag before reading the eventfd (loop_take_wake says how); this was
 * 100 ms while that was unexplained. */
#define JF_HTTP_LOOP_WAIT_MS 1000
/* libmicrohttpd's memory per connection: the request line and headers, its
 * read buffer and the response's headers (bodies are copied out as they
 * arrive, server.c).  It zeroes the whole of it after every request on a
 * kept-alive connection (MHD_pool_reset), so its default of 32 KiB cost a
 * 32 KiB memset per request.  A request whose line and headers exceed about
 * this much is answered 431. */
#define JF_HTTP_CONNECTION_MEMORY_BYTES (8 * 1024)
/* Finished requests' memory each HTTP loop keeps for its next ones
 * (src/server/loop.c, srv_loop_req_take), at about 1 KiB each: enough for
 * the requests a loop has in flight at once to come and go without malloc,
 * which for a block of that size bypasses glibc's per-thread cache. */
#define JF_HTTP_SPARE_REQUESTS 64
/* Longest client-supplied X-Request-Id echoed; a longer or unprintable one
 * is replaced by a generated id. */
#define JF_REQUEST_ID_LEN_MAX 64

_Static_assert(JF_LIST_LIMIT_DEFAULT <= JF_LIST_LIMIT_MAX, "default list limit within max");
_Static_assert(JF_BATCH_COMMANDS_MAX <= JF_QUEUE_COMMANDS_MAX, "a batch fits in the queue");
_Static_assert(JF_HOT_ROWS_MAX >= 2 * JF_BATCH_COMMANDS_MAX,
               "a batch from as many tenants as commands keeps each chain head and an account hot");
_Static_assert((JF_MEMBER_GEN_SLOTS & (JF_MEMBER_GEN_SLOTS - 1)) == 0,
               "member generation slots are a power of two");
_Static_assert(JF_WCACHE_DIRTY_MAX >= JF_BATCH_COMMANDS_MAX,
               "a batch that writes one member per command keeps the table");
_Static_assert(2ull * JF_WAL_RESTART_FRAMES * (4096 + 24) + 32 <= JF_WAL_MAP_BYTES,
               "a WAL of 4 KiB pages is restarted before it outgrows its map");
_Static_assert(JF_WAL_RESTART_LAG_FRAMES < JF_WAL_RESTART_FRAMES_MIN,
               "the lag is a part of the WAL");
_Static_assert(JF_WAL_RESTART_FRAMES_MIN <= JF_WAL_RESTART_FRAMES &&
                   JF_WAL_RESTART_FRAMES <= JF_WAL_RESTART_FRAMES_MAX,
               "the default restart threshold is within its bounds");
_Static_assert(JF_HOLD_TTL_SECONDS_DEFAULT <= JF_HOLD_TTL_SECONDS_MAX, "default ttl within max");
_Static_assert(JF_METADATA_BYTES_MAX < JF_BODY_BYTES_MAX, "metadata fits in a body");
_Static_assert(JF_BODY_BYTES_MAX <= JF_BATCH_BODY_BYTES_MAX, "a batch holds any single body");
_Static_assert(JF_BATCH_BODY_BYTES_MAX == 1024 * 1024 && JF_BODY_BYTES_MAX == 64 * 1024,
               "the server's 413 details name these sizes");
_Static_assert(JF_BATCH_OPS_MAX <= JF_QUEUE_COMMANDS_MAX, "a batch's keys fit the in-flight set");
_Static_assert(JF_RULES_ACTIVE_MAX <= JF_RULES_MAX, "active rules are rules");
_Static_assert(5 + JF_TIER_CODE_LEN_MAX + 9 < JF_ID_LEN_MAX, "tier award ids fit an id");
_Static_assert(JF_RULE_BYTES_MAX < JF_BODY_BYTES_MAX, "a rule fits in a body");
_Static_assert(JF_POINTS_MAX < INT64_MAX / 2, "two in-range amounts add without overflow");

#endif

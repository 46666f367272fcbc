#!/usr/bin/env bash
# The demo behind `make run`: a jifen server on a database under ./data with a demo tenant.
#
# The first run creates data/jifen.db with a tenant "demo" and keeps the admin key in
# data/demo.json, so later runs reuse the same database and key.  The server starts in the
# background; once /healthz answers, the first run seeds sample data through the HTTP API
# (members, earns from orders under the sample earning rules of docs/RULES.md, a review event, a
# redeem, an expiry policy).  Then it prints the URL, the
# admin key and example requests, and waits on the server: Ctrl-C stops it cleanly.
#
# Environment: JIFEN_BIN (default build/jifen), JIFEN_LISTEN (default 127.0.0.1:8080).
# Start over with `rm -rf data`.
set -euo pipefail

cd "$(dirname "$0")/.."

BIN=${JIFEN_BIN:-build/jifen}
LISTEN=${JIFEN_LISTEN:-127.0.0.1:8080}
URL="http://$LISTEN"
DATA=data
DB=$DATA/jifen.db
DEMO_JSON=$DATA/demo.json
SEEDED=$DATA/demo.seeded
LOG=$DATA/jifen.log

die() {
    echo "demo: $*" >&2
    exit 1
}

# json_field FIELD: prints FIELD of the JSON object on stdin (python3 is a build dependency).
json_field() {
    python3 -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}

[ -x "$BIN" ] || die "$BIN not found; run 'make build' first"
mkdir -p "$DATA"

# --- the database, the demo tenant and its admin key ------------------------------------------

if [ ! -e "$DB" ]; then
    echo "demo: creating $DB with tenant 'demo'"
    if ! "$BIN" init --db "$DB" --tenant demo --rules active --json >"$DEMO_JSON.tmp"; then
        # The database did not exist before: remove what the failed init left behind.
        rm -f "$DB" "$DB-wal" "$DB-shm" "$DEMO_JSON.tmp"
        die "jifen init failed"
    fi
    mv "$DEMO_JSON.tmp" "$DEMO_JSON"
    rm -f "$SEEDED"
fi
[ -s "$DEMO_JSON" ] || die "$DB exists but $DEMO_JSON is missing; remove $DATA/ to start over"

KEY=$(json_field api_key <"$DEMO_JSON")
TENANT=$(json_field tenant_id <"$DEMO_JSON")

# --- the server ---------------------------------------------------------------------------------

if curl -fsS -o /dev/null --max-time 1 "$URL/healthz" 2>/dev/null; then
    die "something already answers on $URL (another 'make run'?); set JIFEN_LISTEN=HOST:PORT"
fi

"$BIN" serve --db "$DB" --listen "$LISTEN" >>"$LOG" 2>&1 &
SERVER_PID=$!

# shellcheck disable=SC2317  # called from the traps below
stop_server() {
    if kill -0 "$SERVER_PID" 2>/dev/null; then
        kill -TERM "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap stop_server EXIT
trap 'echo; echo "demo: stopping the server"; stop_server; exit 130' INT
trap 'stop_server; exit 143' TERM

for _ in $(seq 1 100); do
    if curl -fsS -o /dev/null --max-time 1 "$URL/healthz" 2>/dev/null; then
        break
    fi
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
        tail -n 20 "$LOG" >&2 || true
        die "the server exited; see $LOG"
    fi
    sleep 0.1
done
curl -fsS -o /dev/null --max-time 1 "$URL/healthz" || die "the server did not answer /healthz; see $LOG"

# --- sample data (first run only) ---------------------------------------------------------------

# api METHOD PATH [BODY [IDEMPOTENCY_KEY]]: prints the response body; fails unless 2xx.
api() {
    local method=$1 path=$2 body=${3:-} idem=${4:-}
    local args=(-sS -X "$method" -H "Authorization: Bearer $KEY" -w '\n%{http_code}')
    if [ -n "$body" ]; then
        args+=(-H 'Content-Type: application/json' --data-binary "$body")
    fi
    if [ -n "$idem" ]; then
        args+=(-H "Idempotency-Key: $idem")
    fi
    local out status
    out=$(curl "${args[@]}" "$URL$path") || return 1
    status=${out##*$'\n'}
    out=${out%$'\n'*}
    if [ "${status:0:1}" != 2 ]; then
        echo "demo: $method $path -> $status $out" >&2
        return 1
    fi
    printf '%s\n' "$out"
}

# member EXTERNAL_ID BODY: creates the member, or finds it when an earlier seed made it.
# Prints its id.
member() {
    local ext=$1 body=$2 out
    if ! out=$(api GET "/v1/members/external/$ext" 2>/dev/null); then
        out=$(api POST /v1/members "$body") || return 1
    fi
    json_field id <<<"$out"
}

# seed: the sample data.  It runs in an `||` list, where set -e does not apply, so every step
# checks its own status.
seed() {
    echo "demo: seeding sample data"
    # Points earned from now on expire at the end of the year twelve months after they are
    # earned; the program's currency is the yuan, 1 point per 100 fen (1 yuan).
    api PATCH /v1/program \
        '{"currency":"CNY","earn_rate":{"points":1,"per_amount":100},"expiry":{"policy":"end_of_year","months":12}}' \
        demo-seed-program >/dev/null || return 1

    # Tiers on growth value (成长值) over a rolling 12 months: 银卡 from 0, 金卡 from 200 (earns
    # 1.25x), 钻石卡 from 2000 (earns 1.5x, 2x on the birthday); docs/TIERS.md.  张伟's order
    # below crosses 200 and upgrades him to gold in the same transaction.
    api PUT /v1/tiers \
        '{"window":{"type":"rolling_months","months":12},"tiers":[{"code":"silver","name":"Silver","name_zh":"银卡","threshold":0},{"code":"gold","name":"Gold","name_zh":"金卡","threshold":200,"retain":150,"benefits":{"earn_multiplier":{"num":5,"den":4},"perks":[{"en":"Free delivery","zh":"免运费"}]}},{"code":"diamond","name":"Diamond","name_zh":"钻石卡","threshold":2000,"benefits":{"earn_multiplier":{"num":3,"den":2},"birthday_multiplier":{"num":2},"perks":[{"en":"Priority service","zh":"优先服务"}]}}]}' \
        >/dev/null || return 1

    local m1 m2 m3
    m1=$(member 13800000001 \
        '{"external_id":"13800000001","name":"张伟","phone":"13800000001","birthday":"1990-05-20","tags":["vip"]}') ||
        return 1
    m2=$(member 13800000002 \
        '{"external_id":"13800000002","name":"王芳","phone":"13800000002","tags":["new"]}') ||
        return 1
    m3=$(member 13800000003 '{"external_id":"13800000003","name":"李娜"}') || return 1

    # 258.00 yuan at the till: 258 points by the rule 消费1元积1分 (doubled on a Wednesday, the
    # member day, or in 张伟's birthday month, May; docs/RULES.md).  The shipping line earns
    # nothing.
    api POST "/v1/members/$m1/earn" \
        '{"order":{"id":"demo-order-1001","amount":26600,"currency":"CNY","lines":[{"sku":"TEA-01","category":"tea","amount":18800,"quantity":2},{"sku":"CAKE-07","category":"bakery","amount":7000},{"sku":"SHIP","amount":800,"shipping":true}]},"channel":"pos","store_id":"store-001"}' \
        demo-seed-earn-1001 >/dev/null || return 1
    # A review: 20 points by the event rule 评价奖励 (at most once a day).
    api POST "/v1/members/$m1/events" '{"name":"review_posted","attributes":{"stars":5}}' \
        demo-seed-review-1 >/dev/null || return 1
    api POST "/v1/members/$m2/earn" \
        '{"order":{"id":"demo-order-1002","amount":9900,"currency":"CNY"},"channel":"mini_program"}' \
        demo-seed-earn-1002 >/dev/null || return 1
    api POST "/v1/members/$m3/earn" '{"points":500,"note":"welcome bonus"}' \
        demo-seed-earn-welcome >/dev/null || return 1
    # 100 points spent on a coupon.
    api POST "/v1/members/$m1/redeem" '{"points":100,"reason":"10 yuan coupon","channel":"pos"}' \
        demo-seed-redeem-1 >/dev/null || return 1

    : >"$SEEDED"
    DEMO_MEMBER=$m1
}

DEMO_MEMBER=
if [ ! -e "$SEEDED" ]; then
    seed || die "seeding failed; the server log is $LOG"
fi
if [ -z "$DEMO_MEMBER" ]; then
    DEMO_MEMBER=$(api GET /v1/members/external/13800000001 2>/dev/null | json_field id 2>/dev/null) ||
        DEMO_MEMBER='<member id>'
fi

# --- what to do next ------------------------------------------------------------------------------

cat <<EOF

jifen is running.

  URL        $URL
  tenant     $TENANT
  admin key  $KEY
  database   $DB   (log: $LOG; start over: rm -rf $DATA)

  export URL=$URL KEY=$KEY

  # the member with external_id 13800000001 and their points
  curl -s -H "Authorization: Bearer \$KEY" \$URL/v1/members/external/13800000001

  # 张伟's tier (金卡 after the seeded order), growth value and what the next evaluation decides
  curl -s -H "Authorization: Bearer \$KEY" \$URL/v1/members/$DEMO_MEMBER/tier
  # the earning rules (docs/RULES.md), and what an order would earn now (writes nothing)
  curl -s -H "Authorization: Bearer \$KEY" \$URL/v1/rules
  curl -s -X POST -H "Authorization: Bearer \$KEY" -H 'Content-Type: application/json' \\
       -d '{"dry_run":true,"order":{"id":"preview","amount":12800,"currency":"CNY"}}' \\
       \$URL/v1/members/$DEMO_MEMBER/earn

  # earn 50 points (each retry with the same Idempotency-Key earns nothing more)
  curl -s -X POST -H "Authorization: Bearer \$KEY" -H 'Content-Type: application/json' \\
       -H "Idempotency-Key: \$(date +%s%N)" -d '{"points":50}' \$URL/v1/members/$DEMO_MEMBER/earn

Ctrl-C stops the server.
EOF

# Wait on the server; a trapped signal interrupts this wait and runs the trap.
set +e
wait "$SERVER_PID"
status=$?
trap - EXIT
exit "$status"

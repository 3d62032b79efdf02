#!/usr/bin/env bash
# Row 7: signed Shopify webhooks into `followupd run` on SQLite, with wrk.
#
#   bash bench/http.sh          # standalone: prints the details and the row
#   (bench/run.sh calls it with ROW_ONLY=1 and puts the row in its table)
#
# One server, two loads in the same run: 32 connections of signed
# `orders/create` deliveries (Shopify's sample order, 1,000 distinct order
# ids, every request a new X-Shopify-Event-Id, so each one is a delivery
# row, an order upsert and its stage rows, committed before the 200), then
# 32 connections of GET /healthz, the same server's bare HTTP rate. After
# the load the database is read back: every 200 must be a delivery row.
#
# Environment: BIN (a followupd binary; default: cargo build --release),
# DURATION [10s], CONNECTIONS [32], THREADS [2], ORDERS [1000].
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$HERE")
DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-32}
THREADS=${THREADS:-2}
ORDERS=${ORDERS:-1000}
ROW_ONLY=${ROW_ONLY:-0}

log() { printf '[bench http %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 2; }

if ! command -v wrk >/dev/null; then
    [ "$(id -u)" = 0 ] || die "wrk is missing (apt-get install wrk)"
    log "apt-get install wrk"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk >/dev/null \
        || { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends wrk >/dev/null; } \
        || die "cannot install wrk"
fi
command -v sqlite3 >/dev/null || die "sqlite3 is missing"
if [ -z "${BIN:-}" ]; then
    (cd "$ROOT" && cargo build --release -q) || die "build failed"
    BIN=$ROOT/target/release/followupd
fi

TMP=$(mktemp -d "${TMPDIR:-/tmp}/followupd-http.XXXXXX")
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null
    rm -rf "$TMP"
}
trap cleanup EXIT
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
SECRET=bench-shopify-secret
cp -r "$ROOT/templates" "$TMP/templates"
cat >"$TMP/config.toml" <<EOF
[database]
url = "sqlite://$TMP/bench.db"
[templates]
dir = "$TMP/templates"
[transport]
kind = "file"
dir = "$TMP/outbox"
[sender]
from = "Larkspur Home Goods <hello@larkspur.example>"
[http]
listen = "127.0.0.1:$PORT"
[http.shopify]
secret_env = "BENCH_SHOPIFY_SECRET"
EOF

# The requests: Shopify's documented order, as a live one, under ORDERS
# ids, each body signed the way Shopify signs (base64 HMAC-SHA256).
python3 - "$ROOT/tests/data/webhooks/shopify/order.json" "$SECRET" "$ORDERS" >"$TMP/shopify.lua" <<'PY'
import base64, hashlib, hmac, json, sys
sample, secret, n = sys.argv[1], sys.argv[2].encode(), int(sys.argv[3])
order = json.load(open(sample))
order.update(cancelled_at=None, cancel_reason=None, financial_status="paid")
lua = lambda s: '"' + s.replace('\\', '\\\\').replace('"', '\\"') + '"'
bodies, sigs = [], []
for i in range(n):
    order["id"] = 900000000 + i
    body = json.dumps(order, separators=(",", ":"))
    bodies.append(lua(body))
    sigs.append(lua(base64.b64encode(hmac.new(secret, body.encode(), hashlib.sha256).digest()).decode()))
print("local bodies = {" + ",\n".join(bodies) + "}")
print("local sigs = {" + ",\n".join(sigs) + "}")
print('''
-- tid is a global of each thread's own Lua state, set by setup below.
local threads, counter = {}, 0
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function request()
  counter = counter + 1
  local i = counter % #bodies + 1
  return wrk.format("POST", "/webhooks/shopify", {
    ["Content-Type"] = "application/json",
    ["X-Shopify-Topic"] = "orders/create",
    ["X-Shopify-Hmac-Sha256"] = sigs[i],
    ["X-Shopify-Event-Id"] = "bench-" .. tid .. "-" .. counter,
  }, bodies[i])
end
''')
PY

BENCH_SHOPIFY_SECRET=$SECRET RUST_LOG=warn "$BIN" -c "$TMP/config.toml" run 2>"$TMP/daemon.log" &
PID=$!
for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null || { cat "$TMP/daemon.log" >&2; die "the listener did not come up"; }

# wrk's summary -> "rate p99_ms non2xx requests"
summary() {
    awk '
        /Requests\/sec:/ {rate=$2}
        /^ +99%/ {v=$2; if (v ~ /us$/) ms=v/1000; else if (v ~ /ms$/) ms=v+0; else if (v ~ /s$/) ms=v*1000; p99=ms}
        /Non-2xx or 3xx responses:/ {bad=$5}
        /requests in/ {n=$1}
        END {printf "%s %s %s %s\n", rate, p99, bad+0, n}' "$1"
}

log "signed Shopify webhooks: wrk -t$THREADS -c$CONNECTIONS -d$DURATION"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$TMP/shopify.lua" "http://127.0.0.1:$PORT" >"$TMP/webhooks.txt"
read -r HOOK_RATE HOOK_P99 HOOK_BAD HOOK_N < <(summary "$TMP/webhooks.txt")
log "GET /healthz: wrk -t$THREADS -c$CONNECTIONS -d$DURATION"
wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "http://127.0.0.1:$PORT/healthz" >"$TMP/healthz.txt"
read -r HEALTH_RATE HEALTH_P99 _ _ < <(summary "$TMP/healthz.txt")
kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
COMMITTED=$(sqlite3 "$TMP/bench.db" "SELECT COUNT(*) FROM webhook_deliveries")
ORDERS_STORED=$(sqlite3 "$TMP/bench.db" "SELECT COUNT(*) FROM orders")

if [ "$ROW_ONLY" != 1 ]; then
    cat "$TMP/webhooks.txt" "$TMP/healthz.txt"
    echo "responses 2xx: $((HOOK_N - HOOK_BAD)) of $HOOK_N; delivery rows committed: $COMMITTED; orders: $ORDERS_STORED"
fi
[ "$HOOK_BAD" = 0 ] || die "$HOOK_BAD webhook responses were not 2xx"
[ "$COMMITTED" -ge "$HOOK_N" ] || die "only $COMMITTED deliveries committed for $HOOK_N answered"
ratio=$(awk -v a="$HOOK_RATE" -v b="$HEALTH_RATE" 'BEGIN {printf "%.3f", a / b}')
verdict=$(awk -v v="$HOOK_RATE" 'BEGIN {print (v >= 2000) ? "ok" : "MISS"}')
printf '| %s | %s | %s | %s | %s | %s |\n' \
    "7. signed Shopify webhooks committed, SQLite, $CONNECTIONS connections (req/s)" \
    "$(printf '%.0f' "$HOOK_RATE") (p99 $(printf '%.1f' "$HOOK_P99") ms)" \
    "$(printf '%.0f' "$HEALTH_RATE") GET /healthz (p99 $(printf '%.1f' "$HEALTH_P99") ms)" \
    "${ratio}x" ">= 2000 req/s" "$verdict"

#!/usr/bin/env bash
# Instructions GateKeeper executes per proxied request, counted by callgrind: unlike req/s or
# CPU time, the count is the same run after run on a busy or noisy machine, so two builds (an
# allocator, a profile, a change to the hot path) can be compared by running this on each.
#
#   cargo build --release -p lyra -p bench --bins
#   bash bench/scripts/gatekeeper_instructions.sh [requests] [lyra binary] [profile out]
#
# With a third argument the callgrind profile of the measured requests is kept there, for
# `callgrind_annotate --inclusive=yes <file>` (where the instructions go).
#
# Starts its own redis-server, Orion, Nebula (local driver, the stand-in as QDRANT_BIN) and
# GateKeeper under `valgrind --tool=callgrind` (plain-HTTP listener), creates a one-node
# cluster and a manage key, warms up, zeroes the counters, sends `requests` keep-alive
# `GET /collections` with the key over 4 connections, and prints GateKeeper's instructions per
# request (all threads). The kernel's share (system calls) is not counted: see `perf stat`.
set -euo pipefail
cd "$(dirname "$0")/../.."

requests=${1:-20000}
lyra=${2:-target/release/lyra}
keep=${3:-}
standin=target/release/qdrant-standin
for tool in redis-server valgrind callgrind_control curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install $tool" >&2; exit 1; }
done
[ -x "$lyra" ] && [ -x "$standin" ] || { echo "build first: cargo build --release -p lyra -p bench --bins" >&2; exit 1; }

work=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port=$(port); orion_port=$(port); plain=$(port)
pids=()
# The local driver's nodes outlive Nebula by design: they are found by the data directory in
# their environment.
kill_nodes() { for p in /proc/[0-9]*; do grep -qsF "$work" "$p/environ" && kill "${p#/proc/}" 2>/dev/null; done; true; }
cleanup() { kill "${pids[@]}" 2>/dev/null || true; pkill -f "$work" 2>/dev/null || true; kill_nodes; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' --logfile "$work/redis.log" & pids+=($!)
export LYRA_REDIS_URL="redis://127.0.0.1:$redis_port/"
export LYRA_MASTER_KEY=$("$lyra" platform-key new)
export LYRA_OPERATOR_TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
export RUST_LOG=warn
"$lyra" orion --listen "127.0.0.1:$orion_port" --admin-listen "127.0.0.1:$(port)" & pids+=($!)
QDRANT_BIN="$PWD/$standin" LYRA_DATA_DIR="$work/data" LYRA_NEBULA_ADMIN="127.0.0.1:$(port)" "$lyra" nebula & pids+=($!)
LYRA_KEY_RPS=1000000000 LYRA_KEY_BURST=1000000000 LYRA_CLUSTER_RPS=1000000000 \
  LYRA_CLUSTER_BURST=1000000000 LYRA_MAX_IN_FLIGHT=1000000 \
  env -u LYRA_MASTER_KEY LYRA_GATEWAY_KEY="$("$lyra" platform-key gateway)" \
  valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
  "$lyra" gatekeeper --threads 1 --plain-listen "127.0.0.1:$plain" --rest-listen "127.0.0.1:$(port)" \
  --grpc-listen "127.0.0.1:$(port)" --admin-listen "127.0.0.1:$(port)" 2>"$work/valgrind.log" & pids+=($!)
api="http://127.0.0.1:$orion_port"
for _ in $(seq 100); do curl -fs "$api/readyz" >/dev/null && break; sleep 0.1; done

call() { curl -fsS -H "Authorization: Bearer $1" -H 'Content-Type: application/json' "${@:2}"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
call "$LYRA_OPERATOR_TOKEN" -X PUT "$api/api/v1/regions/local/dev" \
  -d '{"driver":"local","capacity":{"nodes":10,"cpu":100000,"memory":100000,"disk":1000}}' >/dev/null
account=$(call "$LYRA_OPERATOR_TOKEN" -X POST "$api/api/v1/accounts" -d '{"name":"load"}' | field "['id']")
token=$(call "$LYRA_OPERATOR_TOKEN" -X POST "$api/api/v1/accounts/$account/tokens" -d '{"role":"admin"}' | field "['token']")
cluster=$(call "$token" -X POST "$api/api/v1/accounts/$account/clusters" \
  -d '{"name":"load","cloud_provider":"local","cloud_region":"dev","configuration":{"num_nodes":1,"node_configuration":{"cpu":1000,"memory":1024,"disk":1}}}' | field "['id']")
for _ in $(seq 300); do
  [ "$(call "$token" "$api/api/v1/accounts/$account/clusters/$cluster" | field "['phase']")" = HEALTHY ] && break; sleep 0.1
done
key=$(call "$token" -X POST "$api/api/v1/accounts/$account/clusters/$cluster/api-keys" -d '{"name":"load","access":"manage"}' | field "['key']")
host="$cluster.dev.local.localhost"
for _ in $(seq 600); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $host" -H "api-key: $key" "http://127.0.0.1:$plain/collections")" = 200 ] && break; sleep 0.2
done

drive() { # drive <requests>: keep-alive GETs over 4 connections; fails on any non-200
  python3 - "$plain" "$host" "$key" "$1" <<'EOF'
import http.client, sys, threading
port, host, key, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
bad = []
def one(count):
    c = http.client.HTTPConnection("127.0.0.1", port)
    for _ in range(count):
        c.request("GET", "/collections", headers={"Host": host, "api-key": key})
        r = c.getresponse(); r.read()
        if r.status != 200: bad.append(r.status)
threads = [threading.Thread(target=one, args=(n // 4,)) for _ in range(4)]
[t.start() for t in threads]; [t.join() for t in threads]
if bad: sys.exit(f"{len(bad)} answers were not 200: {sorted(set(bad))}")
EOF
}
drive 2000            # warm-up: connections to the node, caches, lazy statics
callgrind_control -z >/dev/null
drive "$requests"
callgrind_control -d >/dev/null
sleep 1
out=$(ls -t "$work"/callgrind.out* | head -1)
total=$(grep -h '^summary:' "$out" | awk '{print $2}')
[ -n "$keep" ] && cp "$out" "$keep"
echo "$(basename "$lyra"): $total instructions for $requests requests = $((total / requests)) per request"

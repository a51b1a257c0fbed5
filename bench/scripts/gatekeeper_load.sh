#!/usr/bin/env bash
# Requests per second through GateKeeper against the stand-in Qdrant, next to the direct path.
#
#   cargo build --release -p lyra -p bench --bins && bash bench/scripts/gatekeeper_load.sh [seconds] [connections]
#
# Starts its own redis-server, Orion, Nebula (local driver, the stand-in as QDRANT_BIN) and
# GateKeeper (with its plain-HTTP listener, so wrk needs no DNS for *.localhost), creates a
# one-node cluster and a manage key, then runs wrk (GET /collections, keep-alive):
#   1. through GateKeeper: Host routing, key verification, limits, credential swap;
#   2. directly to a stand-in started with a known key (same binary, one thread each).
# The full side-by-side comparison (nginx, HAProxy, TLS) is the bench harness's job.
set -euo pipefail
cd "$(dirname "$0")/../.."

secs=${1:-10}
conns=${2:-32}
for tool in redis-server wrk curl python3; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install $tool" >&2; exit 1; }
done
lyra=target/release/lyra
standin=target/release/qdrant-standin
[ -x "$lyra" ] && [ -x "$standin" ] || { echo "build first: cargo build --release -p lyra -p bench --bins" >&2; exit 1; }

work=$(mktemp -d)
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port=$(port); orion_port=$(port); plain=$(port); direct=$(port)
pids=()
# The local driver's nodes outlive Nebula by design: they are found by the data directory in
# their environment.
kill_nodes() { for p in /proc/[0-9]*; do grep -qsF "$work" "$p/environ" && kill "${p#/proc/}" 2>/dev/null; done; true; }
cleanup() { kill "${pids[@]}" 2>/dev/null || true; pkill -f "$work" 2>/dev/null || true; kill_nodes; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' --appendonly yes \
  --appendfsync always --logfile "$work/redis.log" & pids+=($!)
export LYRA_REDIS_URL="redis://127.0.0.1:$redis_port/"
export LYRA_MASTER_KEY=$("$lyra" platform-key new)
export LYRA_OPERATOR_TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
export RUST_LOG=warn
"$lyra" orion --listen "127.0.0.1:$orion_port" & pids+=($!)
QDRANT_BIN="$PWD/$standin" LYRA_DATA_DIR="$work/data" LYRA_NEBULA_ADMIN="127.0.0.1:$(port)" "$lyra" nebula & pids+=($!)
# Limits raised out of the way: this measures the path, not the limiter's refusals.
LYRA_KEY_RPS=1000000000 LYRA_KEY_BURST=1000000000 LYRA_CLUSTER_RPS=1000000000 \
  LYRA_CLUSTER_BURST=1000000000 LYRA_MAX_IN_FLIGHT=1000000 \
  env -u LYRA_MASTER_KEY LYRA_GATEWAY_KEY="$("$lyra" platform-key gateway)" \
  "$lyra" gatekeeper --plain-listen "127.0.0.1:$plain" --rest-listen "127.0.0.1:$(port)" \
  --grpc-listen "127.0.0.1:$(port)" --admin-listen "127.0.0.1:$(port)" & pids+=($!)
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
for _ in $(seq 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' -H "Host: $host" -H "api-key: $key" "http://127.0.0.1:$plain/collections")" = 200 ] && break; sleep 0.1
done

QDRANT__SERVICE__HOST=127.0.0.1 QDRANT__SERVICE__HTTP_PORT=$direct QDRANT__SERVICE__GRPC_PORT=$(port) \
  QDRANT__SERVICE__API_KEY=directkeydirectkeydirectkey12345 QDRANT__STORAGE__STORAGE_PATH="$work/direct" \
  "$standin" & pids+=($!)
for _ in $(seq 100); do curl -fs "http://127.0.0.1:$direct/readyz" >/dev/null && break; sleep 0.05; done

run() { # run <label> <wrk args...>: fails when any answer was not 2xx (a refusal is no throughput)
  echo "== $1 — ${secs}s, $conns connections"
  out=$(wrk -t1 -c"$conns" -d"${secs}s" --latency "${@:2}")
  echo "$out"
  if grep -q "Non-2xx" <<<"$out"; then echo "error: non-2xx answers: these figures are not throughput" >&2; exit 1; fi
}
run "through GateKeeper (plain listener: Host routing, key check, limits, credential swap)" \
  -H "Host: $host" -H "api-key: $key" "http://127.0.0.1:$plain/collections"
run "direct to a stand-in node" -H "api-key: directkeydirectkeydirectkey12345" "http://127.0.0.1:$direct/collections"

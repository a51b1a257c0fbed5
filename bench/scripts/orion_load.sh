#!/usr/bin/env bash
# Load on Orion's two hottest routes, POST /clusters and GET /clusters/{id}, with wrk.
#
#   cargo build --release --bin lyra && bash bench/scripts/orion_load.sh [seconds] [connections]
#
# Starts its own redis-server (AOF, appendfsync always: every 202 is on disk, as in
# production) and a release `lyra orion`, both on loopback, and stops them on exit.
# Needs redis-server, wrk and curl (Debian: apt-get install redis-server wrk curl).
set -euo pipefail
cd "$(dirname "$0")/../.."

secs=${1:-15}
conns=${2:-32}
for tool in redis-server wrk curl; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install $tool" >&2; exit 1; }
done
lyra=target/release/lyra
[ -x "$lyra" ] || { echo "build first: cargo build --release --bin lyra" >&2; exit 1; }

work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
redis_port=$(free_port)
orion_port=$(free_port)
cleanup() { kill "${orion_pid:-}" "${redis_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save '' \
  --appendonly yes --appendfsync always --maxmemory-policy noeviction --logfile "$work/redis.log" &
redis_pid=$!
operator=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
LYRA_REDIS_URL="redis://127.0.0.1:$redis_port/" LYRA_OPERATOR_TOKEN="$operator" \
  LYRA_MASTER_KEY=$("$lyra" platform-key new) RUST_LOG=warn \
  "$lyra" orion --listen "127.0.0.1:$orion_port" &
orion_pid=$!
api="http://127.0.0.1:$orion_port"
for _ in $(seq 100); do curl -fs "$api/readyz" >/dev/null && break; sleep 0.1; done

call() { curl -fsS -H "Authorization: Bearer $1" -H 'Content-Type: application/json' "${@:2}"; }
field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
account=$(call "$operator" -X POST "$api/api/v1/accounts" -d '{"name":"load"}' | field id)
token=$(call "$operator" -X POST "$api/api/v1/accounts/$account/tokens" -d '{"role":"admin"}' | field token)
call "$operator" -X PUT "$api/api/v1/regions/local/dev" \
  -d '{"driver":"local","capacity":{"nodes":100000000,"cpu":100000000000,"memory":100000000000,"disk":100000000000}}' >/dev/null
body='{"name":"load","cloud_provider":"local","cloud_region":"dev","configuration":{"num_nodes":1,"node_configuration":{"cpu":500,"memory":512,"disk":1}}}'
cluster=$(call "$token" -X POST "$api/api/v1/accounts/$account/clusters" -d "$body" | field id)

cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $token"
LUA

echo "== POST /api/v1/accounts/{id}/clusters  (${secs}s, $conns connections)"
wrk -t1 -c"$conns" -d"${secs}s" --latency -s "$work/post.lua" "$api/api/v1/accounts/$account/clusters"
echo "== GET /api/v1/accounts/{id}/clusters/{id}  (${secs}s, $conns connections)"
wrk -t1 -c"$conns" -d"${secs}s" --latency -H "Authorization: Bearer $token" \
  "$api/api/v1/accounts/$account/clusters/$cluster"
echo "== non-2xx answers would be listed by wrk above as 'Non-2xx or 3xx responses'"

-- Shared by every capacity script (prepended to each). Runs inside Redis, atomically.
--
-- Key names mirror contract/src/keyspace.rs; the common prefix arrives as ARGV[1] so that it is
-- defined once, in Rust. Keys built here share the {lyra} hash tag with the declared KEYS, so
-- they live in the same Redis Cluster slot.
local P = ARGV[1]
local NOW = ARGV[2]
local DIMS = { 'nodes', 'cpu', 'memory', 'disk' }

local function k_region(provider, region) return P .. 'region:' .. provider .. ':' .. region end
local function k_waiting(provider, region) return k_region(provider, region) .. ':waiting' end
local function k_cluster(id) return P .. 'cluster:' .. id end
local function k_queued_command(id) return P .. 'cluster:' .. id .. ':command' end
local K_STREAM = P .. 'commands'

local function num(v) return tonumber(v or '0') or 0 end

-- Fencing: whether `holder` still holds the cluster lease at `lease_key`. A worker that lost
-- its lease (paused past its TTL, cut off from Redis) may still be running a handler; every
-- write a handler makes is refused unless the lease is still its own.
local function holds_lease(lease_key, holder) return redis.call('GET', lease_key) == holder end

-- Free capacity of a region, per dimension.
local function free_of(region_key)
  local v = redis.call('HMGET', region_key,
    'total_nodes', 'total_cpu', 'total_memory', 'total_disk',
    'alloc_nodes', 'alloc_cpu', 'alloc_memory', 'alloc_disk')
  local free = {}
  for i, d in ipairs(DIMS) do free[d] = num(v[i]) - num(v[i + 4]) end
  return free
end

-- What a configuration (JSON of contract::cluster::ClusterConfiguration) needs in total.
local function demand_of(configuration_json)
  local conf = cjson.decode(configuration_json)
  local n = conf.num_nodes
  local node = conf.node_configuration
  return { nodes = n, cpu = n * node.cpu, memory = n * node.memory, disk = n * node.disk }
end

-- The dimensions in which `free` falls short of `need`; empty when it fits.
local function shortfall(free, need)
  local short = {}
  for _, d in ipairs(DIMS) do
    if free[d] < need[d] then short[#short + 1] = d end
  end
  return short
end

local function reserved_of(cluster_key)
  local v = redis.call('HMGET', cluster_key,
    'reserved_nodes', 'reserved_cpu', 'reserved_memory', 'reserved_disk')
  local r = {}
  for i, d in ipairs(DIMS) do r[d] = num(v[i]) end
  return r
end

-- Sets a cluster's reservation to `want`, moving the difference in or out of the region's
-- allocation counters. The caller has checked that any increase fits.
local function set_reservation(region_key, cluster_key, want)
  local have = reserved_of(cluster_key)
  for _, d in ipairs(DIMS) do
    local delta = want[d] - have[d]
    if delta ~= 0 then redis.call('HINCRBY', region_key, 'alloc_' .. d, delta) end
    redis.call('HSET', cluster_key, 'reserved_' .. d, want[d])
  end
end

local function set_phase(cluster_key, phase, reason)
  redis.call('HSET', cluster_key, 'phase', phase, 'reason', reason, 'updated_at', NOW)
end

-- Allocates waiting claims of a region strictly first-come first-served: stops at the first
-- claim that does not fit, so a large early claim is never starved by later small ones.
-- Each allocated claim moves to CREATING and its queued command goes onto the stream.
local function allocate_waiting(provider, region)
  local region_key = k_region(provider, region)
  local waiting_key = k_waiting(provider, region)
  local allocated = 0
  while true do
    local id = redis.call('LINDEX', waiting_key, 0)
    if not id then break end
    local cluster_key = k_cluster(id)
    local c = redis.call('HMGET', cluster_key, 'phase', 'configuration')
    if c[1] ~= 'PENDING' then
      -- Deleted while waiting: drop it from the queue.
      redis.call('LPOP', waiting_key)
    else
      local need = demand_of(c[2])
      if #shortfall(free_of(region_key), need) > 0 then break end
      redis.call('LPOP', waiting_key)
      set_reservation(region_key, cluster_key, need)
      set_phase(cluster_key, 'CREATING', '')
      local command = redis.call('GET', k_queued_command(id))
      if command then
        redis.call('XADD', K_STREAM, '*', 'command', command)
        redis.call('DEL', k_queued_command(id))
      end
      allocated = allocated + 1
    end
  end
  return allocated
end

-- Stores a cluster's route and announces it on the events channel, unless a route of the same
-- or a newer version is stored already. Returns whether it stored.
local function put_route(routes_key, cluster_id, json, version, event, channel)
  local existing = redis.call('HGET', routes_key, cluster_id)
  if existing and (cjson.decode(existing).version or 0) >= tonumber(version) then
    return false
  end
  redis.call('HSET', routes_key, cluster_id, json)
  redis.call('PUBLISH', channel, event)
  return true
end

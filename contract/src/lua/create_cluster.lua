-- Claims capacity for a new cluster, atomically with writing the cluster and queueing its
-- command: there is never a cluster without its command nor a command without its cluster.
--
-- KEYS[1] region hash        KEYS[2] region waiting list   KEYS[3] cluster hash
-- KEYS[4] account's clusters KEYS[5] command stream        KEYS[6] cluster's queued command
-- ARGV[1] key prefix  ARGV[2] now  ARGV[3] cluster id  ARGV[4] creation score (ms)
-- ARGV[5] command envelope JSON
-- ARGV[6] the region's node_limits field as Orion read it and checked the request against
--         ('' when the region has none)
-- KEYS[7] (optional) the request's Idempotency-Key record
-- ARGV[7] what that record becomes once the cluster is written ('' for none)
-- ARGV[8] how long it is kept (seconds)
-- ARGV[9..] cluster hash field/value pairs
-- Returns { 'NO_REGION' } | { 'LIMITS_CHANGED' } | { 'CREATING' } | { 'PENDING', reason }.
if redis.call('EXISTS', KEYS[1]) == 0 then return { 'NO_REGION' } end
-- An operator may have changed the region's bounds since Orion checked the request: then
-- nothing is written and Orion checks again against what is stored now.
if (redis.call('HGET', KEYS[1], 'node_limits') or '') ~= ARGV[6] then return { 'LIMITS_CHANGED' } end

local fields = {}
for i = 9, #ARGV do fields[#fields + 1] = ARGV[i] end
-- Written with the cluster, so a retry with the same key finds it even when Orion could not
-- record its answer afterwards (Redis lost in between): never a second cluster.
if KEYS[7] and ARGV[7] ~= '' then
  redis.call('SET', KEYS[7], ARGV[7], 'EX', tonumber(ARGV[8]))
end
redis.call('HSET', KEYS[3], unpack(fields))
redis.call('ZADD', KEYS[4], ARGV[4], ARGV[3])

local need = demand_of(redis.call('HGET', KEYS[3], 'configuration'))
local ahead = redis.call('LLEN', KEYS[2])
local short = shortfall(free_of(KEYS[1]), need)
local where = redis.call('HGET', KEYS[1], 'provider') .. '/' .. redis.call('HGET', KEYS[1], 'region')

if ahead == 0 and #short == 0 then
  set_reservation(KEYS[1], KEYS[3], need)
  set_phase(KEYS[3], 'CREATING', '')
  redis.call('XADD', KEYS[5], '*', 'command', ARGV[5])
  return { 'CREATING' }
end

local reason
if #short > 0 then
  reason = 'waiting for capacity in region ' .. where .. ': not enough free ' .. table.concat(short, ', ')
    .. '; it will be created when an operator adds capacity or other clusters are deleted'
else
  reason = 'waiting for capacity in region ' .. where .. ' behind ' .. ahead .. ' earlier request(s)'
end
set_phase(KEYS[3], 'PENDING', reason)
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('SET', KEYS[6], ARGV[5])
return { 'PENDING', reason }

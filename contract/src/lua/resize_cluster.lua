-- Changes a running cluster's shape. Reserves the larger of the old and new shapes in each
-- dimension until the worker reports the resize done (it then releases the surplus), so the
-- cluster never holds less than it runs on.
--
-- KEYS[1] region hash  KEYS[2] cluster hash  KEYS[3] command stream
-- ARGV[1] key prefix  ARGV[2] now  ARGV[3] expected generation  ARGV[4] new configuration JSON
-- ARGV[5] command envelope JSON (carrying generation + 1)
-- ARGV[6] the region's node_limits field as Orion read it and checked the new shape against
--         ('' when the region has none)
-- Returns { 'NOT_FOUND' } | { 'BAD_PHASE', phase } | { 'STALE' } | { 'LIMITS_CHANGED' }
--       | { 'NO_CAPACITY', dims } | { 'RESIZING' }.
local c = redis.call('HMGET', KEYS[2], 'phase', 'generation')
if not c[1] then return { 'NOT_FOUND' } end
if c[1] ~= 'HEALTHY' and c[1] ~= 'FAILED_TO_UPDATE' then return { 'BAD_PHASE', c[1] } end
if c[2] ~= ARGV[3] then return { 'STALE' } end
-- The bounds changed since Orion checked the new shape: Orion checks again.
if (redis.call('HGET', KEYS[1], 'node_limits') or '') ~= ARGV[6] then return { 'LIMITS_CHANGED' } end

local need = demand_of(ARGV[4])
local have = reserved_of(KEYS[2])
local want, extra = {}, {}
for _, d in ipairs(DIMS) do
  want[d] = math.max(have[d], need[d])
  extra[d] = want[d] - have[d]
end
local short = shortfall(free_of(KEYS[1]), extra)
if #short > 0 then return { 'NO_CAPACITY', table.concat(short, ', ') } end

set_reservation(KEYS[1], KEYS[2], want)
redis.call('HSET', KEYS[2], 'configuration', ARGV[4], 'generation', tonumber(ARGV[3]) + 1)
set_phase(KEYS[2], 'RESIZING', '')
redis.call('XADD', KEYS[3], '*', 'command', ARGV[5])
return { 'RESIZING' }

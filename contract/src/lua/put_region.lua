-- Registers a region or changes its driver, totals and node limits, then allocates waiting
-- claims. Totals may never drop below what is allocated: capacity is never oversubscribed.
-- Node limits apply to requests from now on; clusters already admitted (or waiting) keep
-- their shape.
--
-- KEYS[1] region hash  KEYS[2] set of regions
-- ARGV[1] key prefix  ARGV[2] now  ARGV[3] provider  ARGV[4] region  ARGV[5] driver
-- ARGV[6..9] totals: nodes, cpu, memory, disk  ARGV[10] node limits JSON (validated by Orion)
-- Returns { 'OK', allocated claims } | { 'BELOW_ALLOCATED', dimensions }.
local v = redis.call('HMGET', KEYS[1], 'alloc_nodes', 'alloc_cpu', 'alloc_memory', 'alloc_disk')
local below = {}
for i, d in ipairs(DIMS) do
  if tonumber(ARGV[5 + i]) < num(v[i]) then below[#below + 1] = d end
end
if #below > 0 then return { 'BELOW_ALLOCATED', table.concat(below, ', ') } end

redis.call('HSET', KEYS[1], 'provider', ARGV[3], 'region', ARGV[4], 'driver', ARGV[5],
  'total_nodes', ARGV[6], 'total_cpu', ARGV[7], 'total_memory', ARGV[8], 'total_disk', ARGV[9],
  'node_limits', ARGV[10])
for _, d in ipairs(DIMS) do redis.call('HSETNX', KEYS[1], 'alloc_' .. d, 0) end
redis.call('SADD', KEYS[2], ARGV[3] .. ':' .. ARGV[4])
return { 'OK', tostring(allocate_waiting(ARGV[3], ARGV[4])) }

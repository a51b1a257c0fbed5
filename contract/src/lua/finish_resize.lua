-- Records a finished resize: the reservation shrinks to the new shape (freeing any surplus
-- for waiting claims) and the cluster is HEALTHY again. A resize that was overtaken by a
-- newer one (generation moved on) changes nothing.
--
-- KEYS[1] cluster hash
-- ARGV[1] key prefix  ARGV[2] now  ARGV[3] generation the worker finished
-- Returns { 'NOT_FOUND' } | { 'STALE', current generation } | { 'DONE', claims allocated }.
local c = redis.call('HMGET', KEYS[1], 'phase', 'generation', 'configuration',
  'cloud_provider', 'cloud_region')
if not c[1] then return { 'NOT_FOUND' } end
if c[2] ~= ARGV[3] then return { 'STALE', c[2] } end
set_reservation(k_region(c[4], c[5]), KEYS[1], demand_of(c[3]))
if c[1] == 'SCALING' or c[1] == 'FAILED_TO_UPDATE' then set_phase(KEYS[1], 'HEALTHY', '') end
return { 'DONE', tostring(allocate_waiting(c[4], c[5])) }

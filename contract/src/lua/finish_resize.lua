-- Records a finished resize: the reservation shrinks to the new shape (freeing any surplus
-- for waiting claims), the nodes and a HEALTHY route are stored and published, and the
-- cluster is HEALTHY again, all in one step. A resize that was overtaken by a newer one
-- (generation moved on) or by a delete (phase moved on) changes nothing and publishes
-- nothing: the newer command publishes its own route.
--
-- KEYS[1] cluster hash  KEYS[2] routes hash  KEYS[3] cluster lease
-- ARGV[1] key prefix  ARGV[2] now  ARGV[3] generation the worker finished
-- ARGV[4] cluster id  ARGV[5] route JSON (phase HEALTHY)  ARGV[6] route version
-- ARGV[7] event JSON  ARGV[8] events channel  ARGV[9] nodes JSON  ARGV[10] lease holder
-- Returns { 'NOT_HOLDER' } | { 'NOT_FOUND' } | { 'STALE', current generation }
--       | { 'SKIPPED', phase } | { 'DONE', claims allocated }.
if not holds_lease(KEYS[3], ARGV[10]) then return { 'NOT_HOLDER' } end
local c = redis.call('HMGET', KEYS[1], 'phase', 'generation', 'configuration',
  'cloud_provider', 'cloud_region')
if not c[1] then return { 'NOT_FOUND' } end
if c[2] ~= ARGV[3] then return { 'STALE', c[2] } end
if c[1] ~= 'RESIZING' and c[1] ~= 'SCALING' and c[1] ~= 'FAILED_TO_UPDATE' then
  return { 'SKIPPED', c[1] }
end
set_reservation(k_region(c[4], c[5]), KEYS[1], demand_of(c[3]))
set_phase(KEYS[1], 'HEALTHY', '')
redis.call('HSET', KEYS[1], 'nodes', ARGV[9])
put_route(KEYS[2], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8])
return { 'DONE', tostring(allocate_waiting(c[4], c[5])) }

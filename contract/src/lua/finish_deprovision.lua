-- Records a finished deprovision: the route is removed and announced, the capacity released
-- (and handed to waiting claims), the secrets dropped, the phase DELETED. Idempotent.
--
-- KEYS[1] cluster hash  KEYS[2] routes hash  KEYS[3] version counter  KEYS[4] cluster secrets
-- KEYS[5] cluster lease
-- ARGV[1] key prefix  ARGV[2] now  ARGV[3] cluster id  ARGV[4] events channel
-- ARGV[5] lease holder
-- Returns { 'NOT_HOLDER' } | { 'NOT_FOUND' } | { 'DELETED', version }.
if not holds_lease(KEYS[5], ARGV[5]) then return { 'NOT_HOLDER' } end
local c = redis.call('HMGET', KEYS[1], 'phase', 'cloud_provider', 'cloud_region', 'endpoint')
if not c[1] then return { 'NOT_FOUND' } end
if c[1] == 'DELETED' then return { 'DELETED', '' } end
set_reservation(k_region(c[2], c[3]), KEYS[1], { nodes = 0, cpu = 0, memory = 0, disk = 0 })
set_phase(KEYS[1], 'DELETED', '')
redis.call('HDEL', KEYS[1], 'nodes')
redis.call('HDEL', KEYS[2], ARGV[3])
redis.call('DEL', KEYS[4])
local version = redis.call('INCR', KEYS[3])
redis.call('PUBLISH', ARGV[4], cjson.encode({
  type = 'route.removed', cluster_id = ARGV[3], host = c[4], version = version,
}))
allocate_waiting(c[2], c[3])
return { 'DELETED', tostring(version) }

-- Starts deleting a cluster. Deleting twice is not an error. A cluster still waiting for
-- capacity holds nothing and is deleted at once; any other queues a deprovision command,
-- and the worker releases its capacity when it is done.
--
-- A served cluster's route is marked DELETING at once (new version, published), so every
-- gateway stops sending it traffic (503) while the worker removes it.
--
-- KEYS[1] cluster hash  KEYS[2] region waiting list  KEYS[3] command stream
-- KEYS[4] cluster's queued command  KEYS[5] routes hash  KEYS[6] version counter
-- ARGV[1] key prefix  ARGV[2] now  ARGV[3] cluster id  ARGV[4] command envelope JSON
-- ARGV[5] events channel
-- Returns { 'NOT_FOUND' } | { phase after the call }.
local phase = redis.call('HGET', KEYS[1], 'phase')
if not phase then return { 'NOT_FOUND' } end
if phase == 'DELETING' or phase == 'DELETED' then return { phase } end
if phase == 'PENDING' then
  redis.call('LREM', KEYS[2], 0, ARGV[3])
  redis.call('DEL', KEYS[4])
  set_phase(KEYS[1], 'DELETED', '')
  return { 'DELETED' }
end
set_phase(KEYS[1], 'DELETING', '')
redis.call('XADD', KEYS[3], '*', 'command', ARGV[4])
local route = redis.call('HGET', KEYS[5], ARGV[3])
if route then
  local r = cjson.decode(route)
  r.phase = 'DELETING'
  r.version = redis.call('INCR', KEYS[6])
  local json = cjson.encode(r)
  redis.call('HSET', KEYS[5], ARGV[3], json)
  redis.call('PUBLISH', ARGV[5], '{"type":"route.upserted","route":' .. json .. '}')
end
return { 'DELETING' }

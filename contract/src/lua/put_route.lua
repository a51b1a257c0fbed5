-- Stores a route for the gateways and publishes it, unless a newer one is already stored.
-- The version comes from the platform counter (INCR before the call), so it only grows.
--
-- KEYS[1] routes hash
-- ARGV[1] key prefix  ARGV[2] now  ARGV[3] cluster id  ARGV[4] route JSON
-- ARGV[5] its version  ARGV[6] event JSON  ARGV[7] events channel
-- Returns { 'STORED' } | { 'STALE', stored version }.
local existing = redis.call('HGET', KEYS[1], ARGV[3])
if existing then
  local stored = cjson.decode(existing).version
  if stored and stored >= tonumber(ARGV[5]) then return { 'STALE', tostring(stored) } end
end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[4])
redis.call('PUBLISH', ARGV[7], ARGV[6])
return { 'STORED' }

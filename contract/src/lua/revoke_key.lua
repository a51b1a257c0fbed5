-- Revokes an API key: marks its metadata, adds it to the revoked set every gateway loads at
-- start, bumps the platform version and publishes the event, all at once. Compare-and-set on
-- the metadata so two concurrent revocations cannot both publish.
--
-- KEYS[1] cluster's key metadata hash  KEYS[2] revoked set  KEYS[3] version counter
-- ARGV[1] key prefix  ARGV[2] now  ARGV[3] key id  ARGV[4] metadata as read
-- ARGV[5] metadata with revoked_at set  ARGV[6] cluster id
-- ARGV[7] revoked-set score (the key's expiry, unix seconds, or +inf)
-- ARGV[8] the key's expiry as stored ('' for none)  ARGV[9] events channel
-- Returns { 'NOT_FOUND' } | { 'CONFLICT' } | { 'REVOKED', version }.
local current = redis.call('HGET', KEYS[1], ARGV[3])
if not current then return { 'NOT_FOUND' } end
if current ~= ARGV[4] then return { 'CONFLICT' } end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[5])
redis.call('ZADD', KEYS[2], ARGV[7], ARGV[3])
local version = redis.call('INCR', KEYS[3])
local expires_at = cjson.null
if ARGV[8] ~= '' then expires_at = ARGV[8] end
redis.call('PUBLISH', ARGV[9], cjson.encode({
  type = 'key.revoked', cluster_id = ARGV[6], key_id = ARGV[3],
  expires_at = expires_at, version = version,
}))
return { 'REVOKED', tostring(version) }

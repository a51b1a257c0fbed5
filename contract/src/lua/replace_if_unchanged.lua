-- Replaces a stored value only if it is still the one the caller read, so a rewrite made from
-- an earlier read (a value resealed under a newer key) never overwrites a newer write.
--
-- KEYS[1] a string key, or a hash when ARGV[3] names a field
-- ARGV[1] key prefix  ARGV[2] now  ARGV[3] hash field, or '' for a string key
-- ARGV[4] the value as read  ARGV[5] the value to write
-- Returns 1 when replaced, 0 when the value changed (or went) meanwhile.
local field = ARGV[3]
local current
if field == '' then
  current = redis.call('GET', KEYS[1])
else
  current = redis.call('HGET', KEYS[1], field)
end
if current ~= ARGV[4] then return 0 end
if field == '' then
  redis.call('SET', KEYS[1], ARGV[5], 'KEEPTTL')
else
  redis.call('HSET', KEYS[1], field, ARGV[5])
end
return 1

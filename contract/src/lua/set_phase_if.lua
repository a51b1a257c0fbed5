-- Moves a cluster to a phase only from one of the expected phases, with extra fields, so a
-- slow worker never overwrites a newer decision (a DELETING cluster is never made HEALTHY).
--
-- KEYS[1] cluster hash  KEYS[2] cluster lease
-- ARGV[1] key prefix  ARGV[2] now  ARGV[3] expected phases, comma-separated
-- ARGV[4] new phase  ARGV[5] reason  ARGV[6] lease holder  ARGV[7..] extra field/value pairs
-- Returns { 'NOT_HOLDER' } | { 'NOT_FOUND' } | { 'SKIPPED', current phase } | { 'SET' }.
if not holds_lease(KEYS[2], ARGV[6]) then return { 'NOT_HOLDER' } end
local phase = redis.call('HGET', KEYS[1], 'phase')
if not phase then return { 'NOT_FOUND' } end
local expected = false
for p in string.gmatch(ARGV[3], '[^,]+') do
  if p == phase then expected = true end
end
if not expected then return { 'SKIPPED', phase } end
set_phase(KEYS[1], ARGV[4], ARGV[5])
for i = 7, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
return { 'SET' }

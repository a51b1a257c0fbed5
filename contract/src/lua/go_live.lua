-- Moves a cluster to a phase and stores and publishes its route, in one step, and only when
-- the cluster is still in one of the expected phases (and at the expected generation): a
-- worker that finishes after a delete or a newer change never publishes a route that the
-- stored phase denies (a DELETING cluster is never made to serve again).
--
-- KEYS[1] cluster hash  KEYS[2] routes hash  KEYS[3] cluster lease
-- ARGV[1] key prefix  ARGV[2] now  ARGV[3] expected phases, comma-separated
-- ARGV[4] expected generation ('' for any)  ARGV[5] new phase  ARGV[6] reason
-- ARGV[7] cluster id  ARGV[8] route JSON (its phase is ARGV[5])  ARGV[9] route version
-- ARGV[10] event JSON  ARGV[11] events channel  ARGV[12] lease holder
-- ARGV[13..] extra cluster field/value pairs
-- Returns { 'NOT_HOLDER' } | { 'NOT_FOUND' } | { 'SKIPPED', phase, generation } | { 'SET' }.
if not holds_lease(KEYS[3], ARGV[12]) then return { 'NOT_HOLDER' } end
local c = redis.call('HMGET', KEYS[1], 'phase', 'generation')
if not c[1] then return { 'NOT_FOUND' } end
local expected = false
for p in string.gmatch(ARGV[3], '[^,]+') do
  if p == c[1] then expected = true end
end
if not expected or (ARGV[4] ~= '' and c[2] ~= ARGV[4]) then
  return { 'SKIPPED', c[1], c[2] or '' }
end
set_phase(KEYS[1], ARGV[5], ARGV[6])
for i = 13, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
put_route(KEYS[2], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11])
return { 'SET' }

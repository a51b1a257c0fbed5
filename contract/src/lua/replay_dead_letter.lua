-- Puts a parked command back on the command stream and shows its cluster as in progress again.
-- The worker's handlers are idempotent, so a replay never creates a second cluster.
--
-- KEYS[1] dead-letter stream  KEYS[2] command stream  KEYS[3] cluster hash
-- ARGV[1] key prefix  ARGV[2] now  ARGV[3] dead-letter entry id  ARGV[4] phase to show
-- Returns { 'NOT_FOUND' } | { 'MALFORMED' } | { 'REPLAYED', new stream entry id }.
local entries = redis.call('XRANGE', KEYS[1], ARGV[3], ARGV[3])
if #entries == 0 then return { 'NOT_FOUND' } end
local fields = entries[1][2]
local command
for i = 1, #fields, 2 do
  if fields[i] == 'command' then command = fields[i + 1] end
end
if not command then return { 'MALFORMED' } end
local id = redis.call('XADD', KEYS[2], '*', 'command', command, 'replayed_from', ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
if redis.call('EXISTS', KEYS[3]) == 1 then
  set_phase(KEYS[3], ARGV[4], 'replayed by an operator from the dead-letter stream')
end
return { 'REPLAYED', id }

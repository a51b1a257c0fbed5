-- Parks a command that failed every attempt: it goes to the dead-letter stream with its
-- error and attempt count, leaves the group's pending list, and its cluster shows the
-- failure with the reason (unless the cluster has moved on meanwhile).
--
-- KEYS[1] command stream  KEYS[2] dead-letter stream  KEYS[3] attempts hash
-- KEYS[4] cluster hash
-- ARGV[1] key prefix  ARGV[2] now  ARGV[3] stream entry id  ARGV[4] command JSON
-- ARGV[5] error  ARGV[6] attempts  ARGV[7] group  ARGV[8] phase to show ('' for none)
-- ARGV[9] phases it may replace, comma-separated
-- Returns { 'PARKED', dead-letter entry id }.
local id = redis.call('XADD', KEYS[2], '*', 'command', ARGV[4], 'error', ARGV[5],
  'attempts', ARGV[6], 'failed_at', NOW, 'source_id', ARGV[3])
redis.call('XACK', KEYS[1], ARGV[7], ARGV[3])
redis.call('HDEL', KEYS[3], ARGV[3])
if ARGV[8] ~= '' then
  local phase = redis.call('HGET', KEYS[4], 'phase')
  if phase then
    for p in string.gmatch(ARGV[9], '[^,]+') do
      if p == phase then set_phase(KEYS[4], ARGV[8], ARGV[5]) end
    end
  end
end
return { 'PARKED', id }

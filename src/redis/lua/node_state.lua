-- node_state: replaces (or, with an empty view, removes) a session's view
-- of one node.
-- KEYS[1] node hash (sid -> "metric\tvalue\n...")  KEYS[2] node_index (set)
-- KEYS[3] views generation  KEYS[4] epochs (sid -> sync epoch)
-- ARGV[1] session id  ARGV[2] node id  ARGV[3] encoded view, or '' to remove
-- ARGV[4] '1' to publish, '0' to remove  ARGV[5] the session's sync epoch
-- Reply: 1, or -1 if the epoch is not the session's (it must sync, which
-- publishes its record: this write must not land).
if redis.call('HGET', KEYS[4], ARGV[1]) ~= ARGV[5] then return -1 end
redis.call('INCR', KEYS[3])
if ARGV[4] == '1' then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
  redis.call('SADD', KEYS[2], ARGV[2])
else
  redis.call('HDEL', KEYS[1], ARGV[1])
  if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
end
return 1

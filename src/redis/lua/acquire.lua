-- acquire: grants a lock or leadership if nobody holds it.
-- KEYS[1] lock key: string "<fence>\n<owner>\n<value>" with the lease TTL
-- KEYS[2] fences hash  KEYS[3] leases zset (member -> expiry ms): elections
-- only, so that the sweeper can announce "no leader"; lock waiters wake on
-- the holder's remaining TTL instead.
-- ARGV[1] session id  ARGV[2] lease member "<L|E>:<name>"  ARGV[3] value
-- ARGV[4] TTL ms  ARGV[5] leader channel ('' for locks)  ARGV[6] lock channel
-- Reply: {1, fence} granted; {0, remaining ms of the holder} (-1: a holder
-- without expiry, i.e. planted data).
-- Fences never repeat, even if Redis lost its data: each grant takes
-- max(last + 1, server time in microseconds), so they stay behind the
-- server's clock unless a lock is granted more than a million times a
-- second, and the first grant after a loss is above every earlier one. A
-- failed attempt stores nothing.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local last = tonumber(redis.call('HGET', KEYS[2], ARGV[2]) or '0') or 0
local fence = math.max(last + 1, now_us)
local record = int(fence) .. '\n' .. ARGV[1] .. '\n' .. ARGV[3]
if not redis.call('SET', KEYS[1], record, 'PX', ARGV[4], 'NX') then
  return {0, redis.call('PTTL', KEYS[1])}
end
redis.call('HSET', KEYS[2], ARGV[2], int(fence))
if ARGV[5] ~= '' then
  -- A previous leadership that expired unswept is announced first, so
  -- observers see "no leader" before the next leader.
  if redis.call('ZSCORE', KEYS[3], ARGV[2]) then
    publish(ARGV[6], 'x')
    publish(ARGV[5], '')
  end
  redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[2])
  publish(ARGV[5], record)
end
return {1, fence}

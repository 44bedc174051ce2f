-- members: the live members.
-- KEYS[1] sessions  KEYS[2] heartbeats  KEYS[3] members  KEYS[4] member_session
-- Reply: flat array {record, last heartbeat ms, record, ...}, unordered.
local now = now_ms()
local out = {}
local pairs_ = redis.call('HGETALL', KEYS[4])
for i = 1, #pairs_, 2 do
  local id, sid = pairs_[i], pairs_[i + 1]
  if alive(KEYS[1], sid, now) then
    local record = redis.call('HGET', KEYS[3], id)
    if record then
      out[#out + 1] = record
      out[#out + 1] = redis.call('HGET', KEYS[2], sid) or '0'
    end
  end
end
return out

-- aggregate: combines the live sessions' views of one node, or of all.
-- KEYS[1] sessions  KEYS[2] node_index  KEYS[3] views generation (string)
-- KEYS[4] aggregate cache (hash: spec -> "<gen>\n<valid until ms>\n<payload>")
-- ARGV[1] key prefix  ARGV[2] per-metric ops "name\top\n..." (op: sum avg min max)
-- ARGV[3] default op  ARGV[4] node id, or '' for every node
-- ARGV[5] the stamp "<gen>\n<valid until>" of the result the caller holds
-- Reply: "=" when that result is still current; otherwise
-- "<gen>\n<valid until>\n<payload>" (stamp "-\n0" for one node: not cached),
-- where the payload is "<skipped>\n" then one line per node,
-- "<node>\t<reporters>" followed by "\t<metric>\t<value %.17g>\t<count>" per
-- metric. skipped counts malformed views or values that were ignored.
-- In a cluster maybe {'fleet:keys', ...} (see common.lua).
--
-- The all-nodes result is cached per spec. Every write that can change it
-- bumps the views generation (node_state, leave, a sweep that drops views,
-- a heartbeat that revives a session); a cached result also stops being
-- valid when the first of the sessions it counted could have expired.
local now = now_ms()
local prefix, default, all = ARGV[1], ARGV[3], ARGV[4] == ''
local field = default .. '\n' .. ARGV[2]
local gen = redis.call('GET', KEYS[3]) or '0'
if all then
  local cached = redis.call('HGET', KEYS[4], field)
  if cached then
    local a = string.find(cached, '\n', 1, true)
    local b = a and string.find(cached, '\n', a + 1, true)
    if b and string.sub(cached, 1, a - 1) == gen and
       (tonumber(string.sub(cached, a + 1, b - 1)) or 0) > now then
      if ARGV[5] == string.sub(cached, 1, b - 1) then return '=' end
      return cached
    end
  end
end

local ops = {}
for name, op in string.gmatch(ARGV[2], '([^\t\n]+)\t([^\n]+)') do ops[name] = op end
local live = {}
local valid_until = math.huge
local skipped = 0

local function is_live(sid)
  local v = live[sid]
  if v == nil then
    local exp = tonumber(redis.call('ZSCORE', KEYS[1], sid) or '0') or 0
    v = exp > now
    live[sid] = v
    if v and exp < valid_until then valid_until = exp end
  end
  return v
end

local function combine(node)
  local ok, h = pcall(redis.call, 'HGETALL', prefix .. 'node:' .. node)
  if not ok then
    skipped = skipped + 1
    return nil
  end
  local acc, names, reporters = {}, {}, 0
  for i = 1, #h, 2 do
    if is_live(h[i]) then
      reporters = reporters + 1
      local enc, matched = h[i + 1], 0
      for name, text in string.gmatch(enc, '([^\t\n]+)\t([^\n]*)') do
        matched = matched + 1
        local v = tonumber(text)
        if v == nil or v ~= v or v == math.huge or v == -math.huge then
          skipped = skipped + 1
        else
          local op = ops[name] or default
          local a = acc[name]
          if a == nil then
            acc[name] = {v, 1}
            names[#names + 1] = name
          else
            if op == 'min' then
              if v < a[1] then a[1] = v end
            elseif op == 'max' then
              if v > a[1] then a[1] = v end
            else
              a[1] = a[1] + v
            end
            a[2] = a[2] + 1
          end
        end
      end
      if matched == 0 and #enc > 0 then skipped = skipped + 1 end
    end
  end
  if reporters == 0 then return nil end
  local out = {node, reporters}
  for _, name in ipairs(names) do
    local a = acc[name]
    local v = a[1]
    if (ops[name] or default) == 'avg' then v = v / a[2] end
    out[#out + 1] = name
    out[#out + 1] = string.format('%.17g', v)
    out[#out + 1] = a[2]
  end
  return table.concat(out, '\t')
end

local lines = {}
local nodes
if all then nodes = redis.call('SMEMBERS', KEYS[2]) else nodes = {ARGV[4]} end
for _, node in ipairs(nodes) do want_key(prefix .. 'node:' .. node) end
local m = missing_keys()
if m then return m end
for _, node in ipairs(nodes) do
  local line = combine(node)
  if line then lines[#lines + 1] = line end
end
local payload = int(skipped) .. '\n' .. table.concat(lines, '\n')
if not all then return '-\n0\n' .. payload end
if valid_until == math.huge then valid_until = now + 3600000 end
local result = gen .. '\n' .. int(valid_until) .. '\n' .. payload
redis.call('HSET', KEYS[4], field, result)
return result

"""Lua scripts: every task state change is one atomic script that also appends its event.

Keys are derived from the run prefix passed in ARGV[1] (single-node Redis; a cluster
would need hash tags on the prefix).
"""

COMMON = r"""
local p = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function emit(kind, task, agent, data)
  redis.call('XADD', p .. ':events', 'MAXLEN', '~', '200000', '*',
    'type', kind, 'ts', tostring(now_ms()), 'task', task or '', 'agent', agent or '',
    'data', data or '{}')
end
local function fail_cascade(id, agent, reason)
  local queue = {id}
  local reasons = {reason}
  local i = 1
  while i <= #queue do
    local tid = queue[i]
    local k = p .. ':task:' .. tid
    redis.call('HSET', k, 'status', 'failed', 'error', reasons[i], 'finished_at', now_ms(),
      'lease_until', 0)
    emit('task_failed', tid, i == 1 and agent or '', cjson.encode({reason = reasons[i]}))
    for _, dep in ipairs(redis.call('SMEMBERS', p .. ':dependents:' .. tid)) do
      local st = redis.call('HGET', p .. ':task:' .. dep, 'status')
      if st == 'pending' then
        table.insert(queue, dep)
        table.insert(reasons, 'dependency ' .. tid .. ' failed')
      end
    end
    i = i + 1
  end
end
"""

# ARGV: prefix, agent, role, lease_ms -> {task_id, 'claimed'|'resumed', attempts} or nil
CLAIM = COMMON + r"""
local me, role, lease = ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = now_ms()
local ids = redis.call('LRANGE', p .. ':tasks', 0, -1)
for _, id in ipairs(ids) do
  local k = p .. ':task:' .. id
  local v = redis.call('HMGET', k, 'status', 'assignee', 'attempts')
  if v[1] == 'claimed' and v[2] == me then
    redis.call('HSET', k, 'lease_until', now + lease)
    emit('task_resumed', id, me, '{}')
    return {id, 'resumed', v[3]}
  end
end
for _, id in ipairs(ids) do
  local k = p .. ':task:' .. id
  local v = redis.call('HMGET', k, 'status', 'role', 'agent')
  local for_me = (v[3] and v[3] ~= '' and v[3] == me) or ((not v[3] or v[3] == '') and v[2] == role)
  if v[1] == 'ready' and for_me then
    local n = redis.call('HINCRBY', k, 'attempts', 1)
    redis.call('HSET', k, 'status', 'claimed', 'assignee', me, 'lease_until', now + lease,
      'claimed_at', now)
    emit('task_claimed', id, me, cjson.encode({attempt = n}))
    return {id, 'claimed', tostring(n)}
  end
end
return nil
"""

# ARGV: prefix, task, agent, lease_ms -> 1 if the lease is still ours
HEARTBEAT = COMMON + r"""
local k = p .. ':task:' .. ARGV[2]
local v = redis.call('HMGET', k, 'status', 'assignee')
if v[1] ~= 'claimed' or v[2] ~= ARGV[3] then return 0 end
redis.call('HSET', k, 'lease_until', now_ms() + tonumber(ARGV[4]))
return 1
"""

# ARGV: prefix, task, agent, result -> 1 completed, 0 not ours (or already terminal)
COMPLETE = COMMON + r"""
local id, me = ARGV[2], ARGV[3]
local k = p .. ':task:' .. id
local v = redis.call('HMGET', k, 'status', 'assignee')
if v[1] ~= 'claimed' or v[2] ~= me then return 0 end
redis.call('HSET', k, 'status', 'completed', 'result', ARGV[4], 'finished_at', now_ms(),
  'lease_until', 0)
emit('task_completed', id, me, cjson.encode({result = string.sub(ARGV[4], 1, 500)}))
for _, dep in ipairs(redis.call('SMEMBERS', p .. ':dependents:' .. id)) do
  local dk = p .. ':task:' .. dep
  if redis.call('HGET', dk, 'status') == 'pending' then
    local ok = true
    for _, need in ipairs(cjson.decode(redis.call('HGET', dk, 'needs'))) do
      if redis.call('HGET', p .. ':task:' .. need, 'status') ~= 'completed' then ok = false end
    end
    if ok then
      redis.call('HSET', dk, 'status', 'ready')
      emit('task_ready', dep, '', '{}')
    end
  end
end
return 1
"""

# ARGV: prefix, task, agent ('' = the coordinator), reason -> 1 failed, 0 not allowed
FAIL = COMMON + r"""
local id, me = ARGV[2], ARGV[3]
local k = p .. ':task:' .. id
local v = redis.call('HMGET', k, 'status', 'assignee')
if v[1] == 'completed' or v[1] == 'failed' or v[1] == false then return 0 end
if me ~= '' and (v[1] ~= 'claimed' or v[2] ~= me) then return 0 end
fail_cascade(id, me, ARGV[4])
return 1
"""

# ARGV: prefix -> number of leases handled. Expired leases go back to ready, or fail
# once the task has used its attempts.
REQUEUE_EXPIRED = COMMON + r"""
local now = now_ms()
local n = 0
for _, id in ipairs(redis.call('LRANGE', p .. ':tasks', 0, -1)) do
  local k = p .. ':task:' .. id
  local v = redis.call('HMGET', k, 'status', 'lease_until', 'attempts', 'max_attempts', 'assignee')
  if v[1] == 'claimed' and tonumber(v[2]) < now then
    n = n + 1
    if tonumber(v[3]) >= tonumber(v[4]) then
      fail_cascade(id, '', 'lease expired after ' .. v[3] .. ' attempts (last: ' .. v[5] .. ')')
    else
      redis.call('HSET', k, 'status', 'ready', 'assignee', '', 'lease_until', 0)
      emit('task_requeued', id, v[5], cjson.encode({reason = 'lease expired'}))
    end
  end
end
return n
"""

# ARGV: prefix, task json, needs json -> 1 created, 0 id taken; unknown needs are the
# caller's to check.
CREATE = COMMON + r"""
local t = cjson.decode(ARGV[2])
local k = p .. ':task:' .. t.id
if redis.call('EXISTS', k) == 1 then return 0 end
local needs = cjson.decode(ARGV[3])
local status = 'ready'
for _, need in ipairs(needs) do
  local st = redis.call('HGET', p .. ':task:' .. need, 'status')
  if st == 'failed' then status = 'failed'
  elseif st ~= 'completed' and status ~= 'failed' then status = 'pending' end
  redis.call('SADD', p .. ':dependents:' .. need, t.id)
end
for field, value in pairs(t) do redis.call('HSET', k, field, tostring(value)) end
redis.call('HSET', k, 'needs', ARGV[3], 'status', status, 'attempts', 0, 'assignee', '',
  'lease_until', 0)
redis.call('RPUSH', p .. ':tasks', t.id)
emit('task_created', t.id, t.created_by or '', cjson.encode({status = status}))
return 1
"""

# ARGV: prefix, path, token, ttl_ms -> 1 acquired
LOCK_RELEASE = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

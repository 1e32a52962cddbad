"""Lua scripts: every task state change is one atomic script that also appends its event.

Keys are derived from the run prefix passed in ARGV[1] (single-node Redis; a cluster
would need hash tags on the prefix).
"""

# Events after which an idle agent looks for work again: a task's status changed, tasks
# were added or revived, a merge landed or gave up, the run ended or went on.
WAKE_EVENTS = frozenset(
    {
        "task_completed",
        "task_failed",
        "task_created",
        "task_ready",
        "task_released",
        "task_requeued",
        "task_resumed",
        "tasks_retried",
        "merged",
        "merge_gave_up",
        "run_finished",
        "run_resumed",
        "run_taken_over",
        "redis_recovered",
    }
)

# emit() copies these to the run's wake stream (`wake`), which idle agents block on: an
# idle agent is woken by no other event (a turn, a tool call, a status change)
_WAKE_LUA = "local WAKE = {" + ", ".join(f"{k} = true" for k in sorted(WAKE_EVENTS)) + "}\n"

COMMON = (
    _WAKE_LUA
    + r"""
local p = ARGV[1]
local clock = nil  -- a script is atomic: one reading of the clock serves all of it
local function now_ms()
  if not clock then
    local t = redis.call('TIME')
    clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return clock
end
local function emit(kind, task, agent, data)
  redis.call('XADD', p .. ':events', 'MAXLEN', '~', '200000', '*',
    'type', kind, 'ts', tostring(now_ms()), 'task', task or '', 'agent', agent or '',
    'data', data or '{}')
  if WAKE[kind] then
    redis.call('XADD', p .. ':wake', 'MAXLEN', '~', '10000', '*', 'type', kind,
      'ts', tostring(now_ms()), 'task', task or '')
  end
end
-- The claim index, so that CLAIM reads a few keys instead of every task:
--   ready:agent:<agent>, ready:role:<role>  zsets of the ready tasks only that agent / any
--       agent of that role may take, scored by the task's place in the tasks list (`seq`),
--       which is the claim order;
--   claimed  the set of claimed tasks (REQUEUE_EXPIRED, EXTEND_LEASES);
--   held:<agent>  the tasks the agent holds (CLAIM re-attaches it to them);
--   pending:agent:<agent>, pending:role:<role>  the same for pending tasks (what an idle
--       agent waits for);
--   open  the number of tasks not completed or failed (an idle agent's cue to leave).
-- An entry is a candidate, not the truth: every reader checks the task's own status and
-- drops a stale entry, so only the ways into 'ready', 'pending' and 'claimed' must add;
-- the ways out remove their entries to keep the sets small. `open` is counted exactly.
local function queue_of(k, kind)
  local v = redis.call('HMGET', k, 'agent', 'role', 'seq')
  local key = p .. ':' .. (kind or 'ready') .. ':role:' .. (v[2] or '')
  if v[1] and v[1] ~= '' then key = p .. ':' .. (kind or 'ready') .. ':agent:' .. v[1] end
  return key, tonumber(v[3] or '0') or 0
end
local function set_ready(id, k)  -- the task's status was just set to 'ready'
  local key, seq = queue_of(k)
  redis.call('ZADD', key, seq, id)
  redis.call('ZREM', (queue_of(k, 'pending')), id)
end
local function unready(id, k)
  local key = queue_of(k)
  redis.call('ZREM', key, id)
end
local function set_pending(id, k)  -- the task's status was just set to 'pending'
  local key, seq = queue_of(k, 'pending')
  redis.call('ZADD', key, seq, id)
end
local function unclaim(id, agent)  -- the task's status leaves 'claimed'
  redis.call('SREM', p .. ':claimed', id)
  if agent and agent ~= '' then redis.call('SREM', p .. ':held:' .. agent, id) end
end
-- a run stored before the index existed (an older version's run, resumed): build it once
local function ensure_index()
  if redis.call('EXISTS', p .. ':indexed') == 1 then return end
  local open = 0
  for i, id in ipairs(redis.call('LRANGE', p .. ':tasks', 0, -1)) do
    local k = p .. ':task:' .. id
    local v = redis.call('HMGET', k, 'status', 'assignee', 'seq')
    if v[1] then  -- a listed task whose data is gone stays gone (StateCorrupt reports it)
      if not v[3] then redis.call('HSET', k, 'seq', i) end
      if v[1] ~= 'completed' and v[1] ~= 'failed' then open = open + 1 end
      if v[1] == 'ready' then
        set_ready(id, k)
      elseif v[1] == 'pending' then
        set_pending(id, k)
      elseif v[1] == 'claimed' then
        redis.call('SADD', p .. ':claimed', id)
        if v[2] and v[2] ~= '' then redis.call('SADD', p .. ':held:' .. v[2], id) end
      end
    end
  end
  redis.call('SET', p .. ':open', open)
  redis.call('SET', p .. ':indexed', '1')
end
local function fail_cascade(id, agent, reason)
  local queue = {id}
  local reasons = {reason}
  local i = 1
  while i <= #queue do
    local tid = queue[i]
    local k = p .. ':task:' .. tid
    local was = redis.call('HMGET', k, 'status', 'assignee')
    if was[1] == 'claimed' then unclaim(tid, was[2]) elseif was[1] == 'ready' then unready(tid, k) end
    if was[1] == 'pending' then redis.call('ZREM', (queue_of(k, 'pending')), tid) end
    if was[1] ~= 'completed' and was[1] ~= 'failed' then redis.call('DECR', p .. ':open') end
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
-- a lease's fencing token: every claim (and re-attach) draws a new one, and every write
-- by an agent carries it, so a process that lost its lease can never write again
local function holds(k, me, token)
  local v = redis.call('HMGET', k, 'status', 'assignee', 'fence')
  if v[1] ~= 'claimed' or v[2] ~= me then return false end
  return token == '' or v[3] == token
end
local function promote(id)  -- dependents whose needs are now all completed become ready
  for _, dep in ipairs(redis.call('SMEMBERS', p .. ':dependents:' .. id)) do
    local dk = p .. ':task:' .. dep
    if redis.call('HGET', dk, 'status') == 'pending' then
      local ok = true
      for _, need in ipairs(cjson.decode(redis.call('HGET', dk, 'needs'))) do
        if redis.call('HGET', p .. ':task:' .. need, 'status') ~= 'completed' then ok = false end
      end
      if ok then
        redis.call('HSET', dk, 'status', 'ready')
        set_ready(dep, dk)
        emit('task_ready', dep, '', '{}')
      end
    end
  end
end
"""
)

# ARGV: prefix, agent, role, lease_ms, agent loop ('1': the agent loop's claim, see below)
# -> {task_id, 'claimed'|'resumed', attempts, token} | nil
# The agent loop's claim does what the loop did around it in the same round trip: a stopped
# run claims nothing; a claim marks the agent working (status and event, as its
# set_status would) and brings the task's hash and its session's length along; nothing to
# claim comes back as {'', 'idle', open tasks, waiting for (unfinished needs of its first
# pending tasks, comma-separated), run state, the wake stream's last id (to wait from)}.
# First the agent's own claim (a restarted agent re-attaches to it), else the first ready
# task in the tasks list's order that it may take: one of its name, or of its role with no
# agent named. Read from the claim index (COMMON), not from every task.
CLAIM = (
    COMMON
    + r"""
local me, role, lease = ARGV[2], ARGV[3], tonumber(ARGV[4])
local now = now_ms()
ensure_index()
local loop = ARGV[5] == '1'
local state = loop and (redis.call('HGET', p .. ':meta', 'state') or 'running')
local function last_event()  -- the wake stream's: an idle agent waits on it
  local top = redis.call('XREVRANGE', p .. ':wake', '+', '-', 'COUNT', 1)
  return top[1] and top[1][1] or '0-0'
end
local function taken(id, k, kind, attempts, token)
  if not loop then return {id, kind, tostring(attempts), tostring(token)} end
  redis.call('HSET', p .. ':agent:' .. me, 'status', 'working', 'task', id, 'waiting_for', '')
  emit('agent_status', id, me, cjson.encode({status = 'working', waiting_for = ''}))
  return {id, kind, tostring(attempts), tostring(token), redis.call('HGETALL', k),
    redis.call('LLEN', p .. ':session:' .. id)}
end
if loop and state ~= 'running' then  -- a stopped run: nothing is claimed
  return {'', 'idle', tostring(redis.call('GET', p .. ':open') or '0'), '', state, last_event()}
end
local held = p .. ':held:' .. me
for _, id in ipairs(redis.call('SMEMBERS', held)) do
  local k = p .. ':task:' .. id
  local v = redis.call('HMGET', k, 'status', 'assignee', 'attempts')
  if v[1] == 'claimed' and v[2] == me then
    local token = redis.call('HINCRBY', k, 'fence', 1)
    redis.call('HSET', k, 'lease_until', now + lease)
    emit('task_resumed', id, me, cjson.encode({token = token}))
    return taken(id, k, 'resumed', v[3], token)
  end
  redis.call('SREM', held, id)
end
-- 1: ready for it (the task is ready), false: not now (kept), nil: a stale entry
local function claimable(id, k)
  local v = redis.call('HMGET', k, 'status', 'prefer', 'prefer_until')
  if v[1] ~= 'ready' then return nil end
  -- a task sent back by the merge queue waits a moment for the agent that knows it
  if v[2] and v[2] ~= '' and v[2] ~= me and tonumber(v[3] or '0') > now then return false end
  -- tasks whose declared paths overlap are not worked at the same time
  for _, other in ipairs(redis.call('SMEMBERS', p .. ':exclusive:' .. id)) do
    local st = redis.call('HGET', p .. ':task:' .. other, 'status')
    if st == 'claimed' or st == 'merging' then return false end
  end
  return 1
end
-- the two queues (its name's, its role's) walked together in score order, a page at a time
local queues = {p .. ':ready:agent:' .. me, p .. ':ready:role:' .. role}
local PAGE = 16
local rows, pos, after, more = {{}, {}}, {1, 1}, {'-inf', '-inf'}, {true, true}
local function head(q)
  if pos[q] > #rows[q] then
    if not more[q] then return nil end
    rows[q] = redis.call('ZRANGEBYSCORE', queues[q], after[q], '+inf', 'WITHSCORES',
      'LIMIT', 0, PAGE)
    pos[q] = 1
    more[q] = #rows[q] == 2 * PAGE
    if #rows[q] == 0 then return nil end
    after[q] = '(' .. rows[q][#rows[q]]
  end
  return rows[q][pos[q]], tonumber(rows[q][pos[q] + 1])
end
local stale = {}
local function drop_stale()
  for _, e in ipairs(stale) do redis.call('ZREM', e[1], e[2]) end
end
while true do
  local a, sa = head(1)
  local b, sb = head(2)
  if not a and not b then break end
  local q = 2
  if a and (not b or sa <= sb) then q = 1 end
  local id = rows[q][pos[q]]
  pos[q] = pos[q] + 2
  local k = p .. ':task:' .. id
  local ok = claimable(id, k)
  if ok == nil then
    table.insert(stale, {queues[q], id})
  elseif ok then
    drop_stale()
    redis.call('ZREM', queues[q], id)
    local n = redis.call('HINCRBY', k, 'attempts', 1)
    local token = redis.call('HINCRBY', k, 'fence', 1)
    redis.call('HSET', k, 'status', 'claimed', 'assignee', me, 'lease_until', now + lease,
      'claimed_at', now)
    redis.call('SADD', p .. ':claimed', id)
    redis.call('SADD', held, id)
    emit('task_claimed', id, me, cjson.encode({attempt = n, token = token}))
    return taken(id, k, 'claimed', n, token)
  end
end
drop_stale()
if not loop then return nil end
local waiting, seen = {}, {}
for _, key in ipairs({p .. ':pending:agent:' .. me, p .. ':pending:role:' .. role}) do
  for _, id in ipairs(redis.call('ZRANGE', key, 0, 9)) do
    local v = redis.call('HMGET', p .. ':task:' .. id, 'status', 'needs')
    if v[1] ~= 'pending' then
      redis.call('ZREM', key, id)
    else
      for _, need in ipairs(cjson.decode(v[2] or '[]')) do
        if not seen[need] and redis.call('HGET', p .. ':task:' .. need, 'status') ~= 'completed' then
          seen[need] = true
          table.insert(waiting, need)
        end
      end
    end
  end
end
return {'', 'idle', tostring(redis.call('GET', p .. ':open') or '0'), table.concat(waiting, ','),
  state, last_event()}
"""
)

# ARGV: prefix, task, agent, lease_ms, token -> 1 if the lease is still ours
HEARTBEAT = (
    COMMON
    + r"""
local k = p .. ':task:' .. ARGV[2]
if not holds(k, ARGV[3], ARGV[5]) then return 0 end
redis.call('HSET', k, 'lease_until', now_ms() + tonumber(ARGV[4]))
return 1
"""
)

# ARGV: prefix, task, agent, result, result preview, token -> 1 completed, 0 not ours
COMPLETE = (
    COMMON
    + r"""
local id, me = ARGV[2], ARGV[3]
local k = p .. ':task:' .. id
if not holds(k, me, ARGV[6]) then return 0 end
redis.call('HSET', k, 'status', 'completed', 'result', ARGV[4], 'finished_at', now_ms(),
  'lease_until', 0)
unclaim(id, me)
redis.call('DECR', p .. ':open')
emit('task_completed', id, me, cjson.encode({result = ARGV[5]}))
promote(id)
return 1
"""
)

# ARGV: prefix, task, agent ('' = the coordinator), reason, token -> 1 failed, 0 not allowed
FAIL = (
    COMMON
    + r"""
local id, me = ARGV[2], ARGV[3]
local k = p .. ':task:' .. id
local v = redis.call('HMGET', k, 'status', 'assignee')
if v[1] == 'completed' or v[1] == 'failed' or v[1] == false then return 0 end
if me ~= '' and not holds(k, me, ARGV[5]) then return 0 end
fail_cascade(id, me, ARGV[4])
return 1
"""
)

# ARGV: prefix -> number of leases handled. Expired leases go back to ready, or fail
# once the task has used its attempts.
REQUEUE_EXPIRED = (
    COMMON
    + r"""
local now = now_ms()
local n = 0
ensure_index()
for _, id in ipairs(redis.call('SMEMBERS', p .. ':claimed')) do
  local k = p .. ':task:' .. id
  local v = redis.call('HMGET', k, 'status', 'lease_until', 'attempts', 'max_attempts', 'assignee')
  if v[1] ~= 'claimed' then
    redis.call('SREM', p .. ':claimed', id)
  elseif tonumber(v[2]) < now then
    n = n + 1
    if tonumber(v[3]) >= tonumber(v[4]) then
      fail_cascade(id, '', 'lease expired after ' .. v[3] .. ' attempts (last: ' .. v[5] .. ')')
    else
      redis.call('HSET', k, 'status', 'ready', 'assignee', '', 'lease_until', 0)
      unclaim(id, v[5])
      set_ready(id, k)
      emit('task_requeued', id, v[5], cjson.encode({reason = 'lease expired'}))
    end
  end
end
return n
"""
)

# ARGV: prefix, task json, needs json -> 1 created, 0 id taken; unknown needs are the
# caller's to check.
CREATE = (
    COMMON
    + r"""
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
local seq = redis.call('RPUSH', p .. ':tasks', t.id)
if seq == 1 then redis.call('SET', p .. ':indexed', '1') end  -- a new run: indexed from here
redis.call('HSET', k, 'needs', ARGV[3], 'status', status, 'attempts', 0, 'assignee', '',
  'lease_until', 0, 'seq', seq)
if status == 'ready' then set_ready(t.id, k) elseif status == 'pending' then set_pending(t.id, k) end
if status ~= 'failed' then redis.call('INCR', p .. ':open') end
emit('task_created', t.id, t.created_by or '', cjson.encode({status = status}))
return 1
"""
)

# ARGV: prefix, path, token, ttl_ms -> 1 acquired
LOCK_RELEASE = r"""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# Sliding-window rate limit per credential. A request counts from when it is admitted
# until `window` after it finished (its entry's score is its finish time; while in flight
# the score is a provisional deadline in the future), so however long a request takes to
# reach the server, no window on the server's side sees more than the limit.
# KEYS[1] = the entries zset (member "id:tokens"), KEYS[2] = the 'blocked until' key.
# ARGV: window_ms, max_requests ('' = none), max_tokens ('' = none), tokens, id, inflight_ms
# -> 0 (admitted) or milliseconds to wait. Without limits only a 429's block is checked.
RATE_ACQUIRE_FN = r"""
local function rate_tokens(member) return tonumber(string.match(member, ':(%d+)$')) end
local function rate_acquire(KEYS, ARGV)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local window = tonumber(ARGV[1])
  local blocked = tonumber(redis.call('GET', KEYS[2]) or '0')
  if blocked > now then return blocked - now end
  if ARGV[2] == '' and ARGV[3] == '' then return 0 end  -- no limits: no place to hold
  -- the tokens of the window's entries are kept summed beside the zset, so the common
  -- case costs O(entries that left the window), not a read of the whole window
  local sum_key = KEYS[1] .. ':tokens'
  local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now - window)
  local count = redis.call('ZCARD', KEYS[1]) - #gone
  local used = nil
  if #gone > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  end
  if count == 0 then
    used = 0
  elseif redis.call('EXISTS', sum_key) == 1 then
    used = tonumber(redis.call('GET', sum_key))
    for _, m in ipairs(gone) do used = used - rate_tokens(m) end
  else  -- a window written before the sum was kept: count it once
    used = 0
    for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do used = used + rate_tokens(m) end
  end
  local ttl = window + tonumber(ARGV[6]) + 1000
  redis.call('SET', sum_key, used, 'PX', ttl)
  local function wait_for(i)  -- until entry i (1-based) leaves the window
    local e = redis.call('ZRANGE', KEYS[1], i - 1, i - 1, 'WITHSCORES')
    local score = tonumber(e[2])
    if score > now then return 25 end  -- still in flight: look again soon
    return math.max(1, score + window - now)
  end
  if ARGV[2] ~= '' and count >= tonumber(ARGV[2]) then return wait_for(1) end
  local want = tonumber(ARGV[4])
  if ARGV[3] ~= '' and count > 0 and used + want > tonumber(ARGV[3]) then
    local limit, freed = tonumber(ARGV[3]), 0
    local entries = redis.call('ZRANGE', KEYS[1], 0, -1)
    for i = 1, count do
      freed = freed + rate_tokens(entries[i])
      if used - freed + want <= limit then return wait_for(i) end
    end
    return wait_for(count)
  end
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[6]), ARGV[5] .. ':' .. ARGV[4])
  redis.call('SET', sum_key, used + want, 'PX', ttl)
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 0
end
"""
RATE_ACQUIRE = RATE_ACQUIRE_FN + "return rate_acquire(KEYS, ARGV)\n"

# KEYS[1] = the entries zset; ARGV: member -> the request finished now.
RATE_DONE = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
"""

# Budget reservation, before each model request. KEYS: none.
# ARGV: prefix, max_usd ('' = none), max_tokens ('' = none), est_usd, est_tokens, holder,
# ttl_ms (how long the reservation holds at most), the request's rate-limit slot ('' =
# none; else JSON {keys, args} of RATE_ACQUIRE: asked for in the same round trip)
# -> {'ok'} | {'ok', slot's wait ms (0: admitted)} | {'budget', reason} | {'stopped', state}
#    | {'wait', reason}
RESERVE = (
    COMMON
    + RATE_ACQUIRE_FN
    + r"""
local state = redis.call('HGET', p .. ':meta', 'state')
if state and state ~= 'running' then return {'stopped', state} end
local usage = p .. ':usage'
local budget = p .. ':budget'
local spent_usd = tonumber(redis.call('HGET', usage, 'usd') or '0')
-- max_tokens counts what the providers processed: input including cache reads and cache
-- writes (kept apart in the usage counters), plus output
local spent_tok = 0
for _, v in ipairs(redis.call('HMGET', usage, 'input_tokens', 'cache_read_tokens',
    'cache_creation_tokens', 'output_tokens')) do
  spent_tok = spent_tok + tonumber(v or '0')
end
-- reservations are held per agent (one request in flight each), so a holder that died
-- is cleared by its restart or by the coordinator instead of blocking the budget forever
redis.call('HDEL', budget, ARGV[6])
-- a reservation expires (a holder that died mid-request without a restart never blocks
-- the budget for longer than that)
local res_usd, res_tok = 0, 0
local now = now_ms()
local held = {}
local entries = redis.call('HGETALL', budget)
for i = 1, #entries, 2 do
  local u, t, exp = string.match(entries[i + 1], '^(%S+) (%S+) ?(%S*)$')
  if exp ~= '' and tonumber(exp) < now then
    redis.call('HDEL', budget, entries[i])
  else
    res_usd = res_usd + tonumber(u)
    res_tok = res_tok + tonumber(t)
    table.insert(held, entries[i])
  end
end
local est_usd, est_tok = tonumber(ARGV[4]), tonumber(ARGV[5])
local reason = nil
if ARGV[2] ~= '' and spent_usd + res_usd + est_usd > tonumber(ARGV[2]) then
  reason = string.format('max_usd %s reached ($%.4f spent)', ARGV[2], spent_usd)
elseif ARGV[3] ~= '' and spent_tok + res_tok + est_tok > tonumber(ARGV[3]) then
  reason = string.format('max_tokens %s reached (%d spent)', ARGV[3], spent_tok)
end
if reason then
  -- requests in flight may settle below their reservation: wait for them to decide
  if #held > 0 then return {'wait', reason} end
  redis.call('HSET', p .. ':meta', 'state', 'budget', 'reason', reason, 'finished', now_ms())
  emit('run_finished', '', '', cjson.encode({state = 'budget', reason = reason}))
  return {'budget', reason}
end
redis.call('HSET', budget, ARGV[6], ARGV[4] .. ' ' .. ARGV[5] .. ' ' .. (now + tonumber(ARGV[7])))
if ARGV[8] and ARGV[8] ~= '' then
  local slot = cjson.decode(ARGV[8])
  return {'ok', tostring(rate_acquire(slot.keys, slot.args))}
end
return {'ok'}
"""
)

# ARGV: prefix, task, agent, reason, token -> 1 released back to ready (the attempt is
# not counted)
RELEASE = (
    COMMON
    + r"""
local k = p .. ':task:' .. ARGV[2]
if not holds(k, ARGV[3], ARGV[5]) then return 0 end
redis.call('HSET', k, 'status', 'ready', 'assignee', '', 'lease_until', 0)
unclaim(ARGV[2], ARGV[3])
set_ready(ARGV[2], k)
redis.call('HINCRBY', k, 'attempts', -1)
emit('task_released', ARGV[2], ARGV[3], cjson.encode({reason = ARGV[4]}))
return 1
"""
)

# ARGV: prefix, reason -> 1 if the run was running and is now 'interrupted'
STOP_IF_RUNNING = (
    COMMON
    + r"""
if redis.call('HGET', p .. ':meta', 'state') ~= 'running' then return 0 end
redis.call('HSET', p .. ':meta', 'state', 'interrupted', 'reason', ARGV[2], 'finished', now_ms())
emit('run_finished', '', '', cjson.encode({state = 'interrupted', reason = ARGV[2]}))
return 1
"""
)

# A finished task whose work is committed enters the merge queue.
# ARGV: prefix, task, agent, result, preview, commit, token -> 1 queued, 0 not ours
SUBMIT = (
    COMMON
    + r"""
local id, me = ARGV[2], ARGV[3]
local k = p .. ':task:' .. id
if not holds(k, me, ARGV[7]) then return 0 end
unclaim(id, me)
redis.call('HSET', k, 'status', 'merging', 'result', ARGV[4], 'commit', ARGV[6],
  'lease_until', 0, 'queued_at', now_ms())
redis.call('HDEL', k, 'rework', 'prefer', 'prefer_until')
redis.call('LREM', p .. ':merge_queue', 0, id)
redis.call('RPUSH', p .. ':merge_queue', id)
emit('merge_queued', id, me, cjson.encode({commit = ARGV[6], result = ARGV[5]}))
return 1
"""
)

# The run's branch moved to the task's merge: the task is completed.
# ARGV: prefix, task, merge commit, stats json (files, added, removed), result preview
MERGED = (
    COMMON
    + r"""
local id = ARGV[2]
local k = p .. ':task:' .. id
local v = redis.call('HMGET', k, 'status', 'assignee')
if v[1] ~= 'merging' then return 0 end
local stats = cjson.decode(ARGV[4])
redis.call('HSET', k, 'status', 'completed', 'merge_commit', ARGV[3], 'finished_at', now_ms(),
  'files', cjson.encode(stats.files), 'added', stats.added, 'removed', stats.removed)
redis.call('LREM', p .. ':merge_queue', 0, id)
redis.call('DECR', p .. ':open')
emit('merged', id, v[2], cjson.encode({commit = ARGV[3], files = #stats.files,
  added = stats.added, removed = stats.removed, gate_s = stats.gate_s}))
emit('task_completed', id, v[2], cjson.encode({result = ARGV[5]}))
promote(id)
return 1
"""
)

# The merge did not go through (a conflict, or the gate failed): the task goes back to its
# session, or fails once its merge attempts are used.
# ARGV: prefix, task, event kind, details json, max attempts, prefer_ms, reason
# -> 1 sent back, 2 failed, 0 not in the queue
MERGE_BACK = (
    COMMON
    + r"""
local id = ARGV[2]
local k = p .. ':task:' .. id
local v = redis.call('HMGET', k, 'status', 'assignee')
if v[1] ~= 'merging' then return 0 end
redis.call('LREM', p .. ':merge_queue', 0, id)
local n = redis.call('HINCRBY', k, 'merge_attempts', 1)
emit(ARGV[3], id, v[2], ARGV[4])
if n >= tonumber(ARGV[5]) then
  fail_cascade(id, '', ARGV[7] .. ' (merge attempt ' .. n .. ' of ' .. ARGV[5] .. ')')
  return 2
end
redis.call('HSET', k, 'status', 'ready', 'rework', ARGV[4], 'prefer', v[2] or '',
  'prefer_until', now_ms() + tonumber(ARGV[6]), 'assignee', '', 'lease_until', 0)
set_ready(id, k)
redis.call('HINCRBY', k, 'attempts', -1)  -- the claim that takes it back costs no attempt
emit('task_ready', id, '', cjson.encode({reason = ARGV[3]}))
return 1
"""
)

# One model turn (or tool results) stored at once: messages, usage, agent fields, events
# and the settling of the budget reservation. Fenced: messages and agent fields are only
# stored by the lease's holder (usage is recorded either way: it was spent). Idempotent:
# the caller says how long the session was before this turn, so a retry after a lost
# reply finds its messages already there and stores nothing twice.
# ARGV: prefix, task, agent, token ('' = not fenced), expected length (-1 = unchecked),
# payload json {messages = [json], ints = {f = n}, floats = {f = "x"}, agent = {f = v},
# events = [[kind, data json]], settle = holder, clear = [fields], set = {f = v}}
# -> 1 stored, 2 already stored, 0 not the holder, -1 the session is not as expected
STORE_TURN = (
    COMMON
    + r"""
local id, me, token, expected = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
local t = cjson.decode(ARGV[6])
local k = p .. ':task:' .. id
local skey = p .. ':session:' .. id
local len = redis.call('LLEN', skey)
local msgs = t.messages or {}
if t.rate then  -- the turn's request finished: its rate-limit place counts from now
  redis.call('ZADD', t.rate[1], 'XX', now_ms(), t.rate[2])
end
if expected >= 0 and len ~= expected then
  if len == expected + #msgs and #msgs > 0 and redis.call('LINDEX', skey, -1) == msgs[#msgs] then
    return 2
  end
  return -1
end
local mine = token == '' or holds(k, me, token)
if t.settle and t.settle ~= '' then redis.call('HDEL', p .. ':budget', t.settle) end
for _, key in ipairs({p .. ':usage', p .. ':usage:agent:' .. me, p .. ':usage:task:' .. id}) do
  for f, v in pairs(t.ints or {}) do
    if tonumber(v) ~= 0 then redis.call('HINCRBY', key, f, v) end
  end
  for f, v in pairs(t.floats or {}) do redis.call('HINCRBYFLOAT', key, f, v) end
end
if t.ints and t.ints.turns then  -- a model request succeeded: no provider outage now
  redis.call('HSET', p .. ':meta', 'last_turn_ms', now_ms())
  redis.call('HDEL', p .. ':meta', 'provider_failing_since', 'provider_error')
end
if not mine then return 0 end
if #msgs > 0 then
  redis.call('RPUSH', skey, unpack(msgs))
  -- the sessions index (swarm.sessions): every session by its last update, so listing
  -- thousands of them is one ZREVRANGE, not a scan
  if t.index and t.index ~= '' then redis.call('ZADD', t.index, now_ms(), t.sid) end
end
for _, f in ipairs(t.clear or {}) do redis.call('HDEL', k, f) end
for f, v in pairs(t.set or {}) do redis.call('HSET', k, f, v) end
for f, v in pairs(t.agent or {}) do redis.call('HSET', p .. ':agent:' .. me, f, v) end
for f, v in pairs(t.state or {}) do redis.call('HSET', p .. ':state:' .. me, f, v) end
if t.inbox and t.inbox > 0 then  -- messages shown to the model in this turn are read now
  redis.call('LTRIM', p .. ':inbox:' .. me, t.inbox, -1)
end
for _, e in ipairs(t.events or {}) do emit(e[1], id, me, e[2]) end
if t.peek and t.peek > 0 then  -- the oldest unread inbox messages, left in place
  return {1, redis.call('LRANGE', p .. ':inbox:' .. me, 0, t.peek - 1)}
end
return 1
"""
)

# After an outage (Redis unreachable, the run stopped): every lease still held gets a
# fresh deadline, so its agent re-attaches instead of the lapse costing an attempt.
# ARGV: prefix, lease_ms -> number of leases extended
EXTEND_LEASES = (
    COMMON
    + r"""
local deadline = now_ms() + tonumber(ARGV[2])
local n = 0
ensure_index()
for _, id in ipairs(redis.call('SMEMBERS', p .. ':claimed')) do
  local k = p .. ':task:' .. id
  if redis.call('HGET', k, 'status') == 'claimed' then
    redis.call('HSET', k, 'lease_until', deadline)
    n = n + 1
  end
end
return n
"""
)

# `swarm resume RUN --retry-failed`: failed tasks get a new attempt (their sessions go on,
# with a note saying so); a task waits again for needs that are not completed.
# ARGV: prefix -> number of tasks revived
RETRY_FAILED = (
    COMMON
    + r"""
ensure_index()
local n = 0
local ids = redis.call('LRANGE', p .. ':tasks', 0, -1)
for _, id in ipairs(ids) do
  local k = p .. ':task:' .. id
  local v = redis.call('HMGET', k, 'status', 'error')
  if v[1] == 'failed' then
    redis.call('HSET', k, 'status', 'pending', 'attempts', 0, 'merge_attempts', 0,
      'retry', v[2] or '', 'error', '', 'assignee', '', 'lease_until', 0)
    redis.call('HDEL', k, 'finished_at')
    set_pending(id, k)
    redis.call('INCR', p .. ':open')
    n = n + 1
  end
end
for _, id in ipairs(ids) do
  local k = p .. ':task:' .. id
  if redis.call('HGET', k, 'status') == 'pending' then
    local ok = true
    for _, need in ipairs(cjson.decode(redis.call('HGET', k, 'needs'))) do
      if redis.call('HGET', p .. ':task:' .. need, 'status') ~= 'completed' then ok = false end
    end
    if ok then
      redis.call('HSET', k, 'status', 'ready')
      set_ready(id, k)
    end
  end
end
if n > 0 then emit('tasks_retried', '', '', cjson.encode({count = n})) end
return n
"""
)

# The coordinator's lease on its run: taken at start (or on a takeover), renewed while it
# lives. A lapsed lease is free; a held one only by its token, or by force (a takeover).
# ARGV: prefix, holder json (with its token), ttl_ms, token, force ('1' | '')
# -> 1 held, 0 someone else holds it
COORDINATOR_LEASE = r"""
local key = ARGV[1] .. ':coordinator'
local cur = redis.call('GET', key)
if cur and ARGV[5] ~= '1' and cjson.decode(cur).token ~= ARGV[4] then return 0 end
redis.call('SET', key, ARGV[2], 'PX', tonumber(ARGV[3]))
return 1
"""

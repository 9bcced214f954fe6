//! The Redis implementation: one Lua script applies a batch and moves the
//! watermark atomically.
use std::collections::HashMap;

use redis::Script;

use crate::connection::{query_by_slot, scan_nodes, scan_page, StoreConnection};
use crate::op::{Op, PartitionBatch};
use crate::tls::RedisTls;
use crate::{behind, full_key, Applied, Error, HashRead, HashReply, Result, Slot, WATERMARK_KEY};

/// KEYS[1] is the watermark hash; KEYS[2..] are the op keys.
/// Checks every op first, then writes: all or nothing.
/// ARGV: source topic, record count, the offset the caller expects the
/// watermark to be at least (`''`: no expectation), then per record: offset,
/// op count, and per op four values: code, key index (into KEYS), a, b.
/// Returns `{applied, skipped}`, or `{-1, watermark}` without a write when
/// the watermark is below the expectation (the store went back). Beside the
/// watermark, field `#n:<source>` counts the records ever applied (the
/// tally `mesh chaos` compares with the records on the topic).
///
/// Pass 1 reads each hash key's fields once (one `HMGET` of every field the
/// batch names) and works out, op by op and in order, what every touched
/// field, member and list ends as; pass 2 writes only those final values,
/// a few variadic commands per key (`HSET`, `HDEL`, `ZADD`, `ZREM`), so the
/// cost of a batch grows with the keys it touches, not with its ops.
/// Integer increments are folded into the value (exact below 2^53, else
/// sent as `HINCRBY`); float increments of one field are summed and sent as
/// one `HINCRBYFLOAT`; a sorted-set increment is folded into the score when
/// the batch set or removed the member first, else summed into one
/// `ZINCRBY`.
const APPLY_LUA: &str = r#"
local wm = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
local n = tonumber(ARGV[2])
if ARGV[3] ~= '' and wm < tonumber(ARGV[3]) then return {-1, wm} end
local HASH_OP = {hi = true, hf = true, hs = true, hn = true, hx = true, hm = true,
  o1 = true, ui = true, hd = true}
local CHUNK = 500
-- Calls op(code, key, a, b) for every op of the records above the
-- watermark, stopping at the first error it returns. Returns the records
-- applied and skipped and the last offset applied (ARGV's text), or nil,
-- the error and the offset of its record.
-- An op returning SKIP skips the rest of its record's ops (a `once` whose
-- id was seen, an erased user).
local SKIP = {}
local function walk(op)
  local i, applied, skipped, top = 4, 0, 0, nil
  for _ = 1, n do
    local offset = ARGV[i]
    local live = tonumber(offset) > wm; local nops = tonumber(ARGV[i + 1]); i = i + 2
    local skipping = false
    for _ = 1, nops do
      if live and not skipping then
        local err = op(ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3])
        if err == SKIP then skipping = true
        elseif err then return nil, err, offset end
      end
      i = i + 4
    end
    if live then applied = applied + 1; top = offset else skipped = skipped + 1 end
  end
  return applied, skipped, top
end
-- The fields each hash key's ops name, to read them in one HMGET.
local names = {}
walk(function(code, k, a)
  if HASH_OP[code] then
    local w = names[k]
    if w == nil then w = {list = {}, has = {}}; names[k] = w end
    if not w.has[a] then w.has[a] = true; w.list[#w.list + 1] = a end
  end
end)
-- Calls f(k, items...) with at most CHUNK items at a time (Lua's unpack
-- and the C stack bound the arguments of one call).
local function chunked(f, k, items)
  for s = 1, #items, CHUNK do
    f(k, unpack(items, s, math.min(s + CHUNK - 1, #items)))
  end
end
-- Stored values of the named fields of a hash key; nil when the key holds
-- another type.
local function read_fields(k)
  local list, base = names[k].list, {}
  for s = 1, #list, CHUNK do
    local part = {unpack(list, s, math.min(s + CHUNK - 1, #list))}
    local r = redis.pcall('HMGET', k, unpack(part))
    if r.err then return nil end
    for j, f in ipairs(part) do base[f] = r[j] end
  end
  return base
end
-- Pass 1 checks every op against the stored values and those the batch's
-- earlier ops leave, and refuses the batch before any write: Redis does not
-- roll back a script's writes when it fails halfway, and a batch retried
-- after a partial write would count its first records twice. It keeps per
-- key: kind, gone (deleted by the batch: nothing stored counts), del (DEL
-- it first), base (stored fields), f (field states: v = value or false,
-- dirty = v to write, ints = HINCRBY deltas and fd = HINCRBYFLOAT delta
-- after v), z (member states: {set = score}, {rm = true} or {inc = delta}),
-- l (list pushes in order) and ttl.
local st = {}
local function state(k)
  local s = st[k]
  if s == nil then s = {f = {}, z = {}, l = {}}; st[k] = s end
  return s
end
local function kind_ok(k, want)
  local s = state(k)
  local t = s.kind
  if t == nil then
    if want == 'hash' then
      s.base = read_fields(k)
      if s.base == nil then return false end
      t = 'hash'
    else
      t = redis.call('TYPE', k)['ok']
    end
  end
  if t ~= 'none' and t ~= want then return false end
  s.kind = want
  return true
end
local function field(s, a)
  local fs = s.f[a]
  if fs == nil then
    local v = false
    if not s.gone then v = s.base[a] or false end
    fs = {v = v}; s.f[a] = fs
  end
  return fs
end
local function present(fs) return fs.v ~= false or fs.ints ~= nil or fs.fd ~= nil end
local function is_int(fs)
  return fs.fd == nil and (fs.v == false or string.match(fs.v, '^%-?%d+$') ~= nil)
end
local function numeric(fs) return fs.fd ~= nil or fs.v == false or tonumber(fs.v) ~= nil end
local function value(fs)
  local x = (tonumber(fs.v) or 0) + (fs.fd or 0)
  for _, d in ipairs(fs.ints or {}) do x = x + tonumber(d) end
  return x
end
local function set(fs, v) fs.v = v; fs.dirty = true; fs.ints = nil; fs.fd = nil end
local EXACT = 2 ^ 53
local function incr(fs, b)
  local x, d = tonumber(fs.v) or 0, tonumber(b)
  if fs.ints == nil and math.abs(x) < EXACT and math.abs(d) < EXACT
      and math.abs(x + d) < EXACT then
    fs.v = string.format('%d', x + d); fs.dirty = true
  else
    fs.ints = fs.ints or {}; fs.ints[#fs.ints + 1] = b
  end
end
local function hash_op(s, code, a, b)
  local fs = field(s, a)
  if code == 'hi' then
    -- A float increment that left an integer (HINCRBYFLOAT prints it
    -- without a point) can be incremented as one.
    if fs.fd ~= nil and numeric(fs) then
      local x = value(fs)
      if x == math.floor(x) and math.abs(x) < EXACT then set(fs, string.format('%d', x)) end
    end
    if not is_int(fs) then return 'field ' .. a .. ' is not an integer' end
    incr(fs, b)
  elseif code == 'hf' or code == 'hx' or code == 'hm' then
    if not numeric(fs) then return 'field ' .. a .. ' is not a number' end
    local v = tonumber(b)
    if code == 'hf' then fs.fd = (fs.fd or 0) + v
    elseif not present(fs) or (code == 'hx' and v > value(fs))
        or (code == 'hm' and v < value(fs)) then set(fs, b) end
  elseif code == 'hs' then set(fs, b)
  elseif code == 'hn' then if not present(fs) then set(fs, b) end
  elseif code == 'o1' then
    if present(fs) then return SKIP end
    set(fs, '1'); s.ttl = b
  elseif code == 'ui' then
    if present(fs) then return SKIP end
  elseif code == 'hd' then set(fs, false)
  end
end
local function zset_op(s, code, a, b)
  local m = s.z[a]
  if m == nil and s.gone then m = {rm = true} end
  if code == 'zs' then m = {set = tonumber(b)}
  elseif code == 'zr' then m = {rm = true}
  elseif m == nil then m = {inc = tonumber(b)}
  elseif m.rm then m = {set = tonumber(b)}
  elseif m.set then m.set = m.set + tonumber(b)
  else m.inc = m.inc + tonumber(b) end
  s.z[a] = m
end
local function check(code, k, a, b)
  local bad
  if code == 'dl' then
    -- Later ops see an absent key, whatever it held; earlier writes to it
    -- need not happen.
    st[k] = {f = {}, z = {}, l = {}, kind = 'none', gone = true, del = true}
  elseif code == 'zi' or code == 'zs' or code == 'zr' then
    if kind_ok(k, 'zset') then zset_op(st[k], code, a, b) else bad = 'holds no sorted set' end
  elseif code == 'lp' then
    if kind_ok(k, 'list') then local l = st[k].l; l[#l + 1] = {a, b}
    else bad = 'holds no list' end
  elseif not HASH_OP[code] then bad = 'unknown op'
  elseif not kind_ok(k, 'hash') then bad = 'holds no hash'
  else
    local r = hash_op(st[k], code, a, b)
    if r == SKIP then return SKIP end
    bad = r
  end
  if bad then return {code = code, k = k, why = bad} end
end
local applied, skipped, at = walk(check)
if applied == nil then
  return redis.error_reply('ERR batch refused at offset ' .. at .. ': op ' .. skipped.code ..
    ' on ' .. skipped.k .. ': ' .. skipped.why)
end
-- Pass 2 writes the final values.
local function num(x) return string.format('%.17g', x) end
local function write_hash(k, s)
  local sets, dels = {}, {}
  for a, fs in pairs(s.f) do
    if fs.dirty then
      if fs.v == false then dels[#dels + 1] = a
      else sets[#sets + 1] = a; sets[#sets + 1] = fs.v end
    end
  end
  chunked(function(key, ...) redis.call('HSET', key, ...) end, k, sets)
  chunked(function(key, ...) redis.call('HDEL', key, ...) end, k, dels)
  for a, fs in pairs(s.f) do
    for _, d in ipairs(fs.ints or {}) do redis.call('HINCRBY', k, a, d) end
    if fs.fd ~= nil then redis.call('HINCRBYFLOAT', k, a, num(fs.fd)) end
  end
end
local function write_zset(k, s)
  local adds, rems = {}, {}
  for m, z in pairs(s.z) do
    if z.set then adds[#adds + 1] = num(z.set); adds[#adds + 1] = m
    elseif z.rm then rems[#rems + 1] = m
    else redis.call('ZINCRBY', k, num(z.inc), m) end
  end
  chunked(function(key, ...) redis.call('ZADD', key, ...) end, k, adds)
  if not s.gone then chunked(function(key, ...) redis.call('ZREM', key, ...) end, k, rems) end
end
for k, s in pairs(st) do
  if s.del then redis.call('DEL', k) end
  write_hash(k, s)
  write_zset(k, s)
  for _, p in ipairs(s.l) do
    redis.call('LPUSH', k, p[1]); redis.call('LTRIM', k, 0, tonumber(p[2]) - 1)
  end
  if s.ttl then redis.call('PEXPIRE', k, tonumber(s.ttl)) end
end
if applied > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], at)
  redis.call('HINCRBY', KEYS[1], '#n:' .. ARGV[1], applied)
end
return {applied, skipped}
"#;

/// KEYS[1] is the hash. ARGV: guard count, per guard: field, `a` (absent) or
/// `v` (equals), value; then field/value pairs to set.
const HSET_IF_LUA: &str = r#"
local n = tonumber(ARGV[1])
local i = 2
for _ = 1, n do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if ARGV[i + 1] == 'a' then
    if cur then return 0 end
  elseif cur ~= ARGV[i + 2] then return 0 end
  i = i + 3
end
while i < #ARGV do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
return 1
"#;

/// State on a Redis server or a Redis Cluster.
///
/// In cluster mode every atomic step (the apply script, `hset_if`) touches
/// keys of one `(scope, partition)` only, which share the hash tag
/// `{<scope>.<partition>}` and so one cluster slot; reads that span slots
/// (`hgetall_many`, `hread_many`) are split into one pipeline per slot, and
/// `clear_scope` scans every master.
#[derive(Clone)]
pub struct RedisStore {
    conn: StoreConnection,
    prefix: String,
    script: Script,
    cas: Script,
}

impl RedisStore {
    /// Connects to `url`; every key is written under `prefix`.
    ///
    /// `url` (the mesh's `MESH_REDIS_URL`) selects the mode:
    /// - `redis://host:port` (or `rediss://`, `redis+unix://`): one server;
    /// - several comma-separated URLs
    ///   (`redis://127.0.0.1:7001,redis://127.0.0.1:7002,...`), or the
    ///   scheme `redis+cluster://` (`rediss+cluster://` for TLS) with one or
    ///   more `host:port` seeds (`redis+cluster://10.0.0.1:7001,10.0.0.2:7001`):
    ///   a Redis Cluster, discovered from those seed nodes.
    ///
    /// A password containing a comma cannot be given in this form. In
    /// cluster mode `prefix` must not contain `{` or `}`: the hash tag that
    /// keeps one partition's keys on one slot must be the first braces of
    /// every key.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self> {
        Self::connect_with(url, prefix, &RedisTls::default()).await
    }

    /// [`RedisStore::connect`] with TLS settings beyond the URL (the CA to
    /// trust, a client certificate); see [`StoreConnection::connect_with`].
    pub async fn connect_with(url: &str, prefix: &str, tls: &RedisTls) -> Result<Self> {
        let conn = StoreConnection::connect_with(url, tls).await?;
        if conn.is_cluster() && prefix.contains(['{', '}']) {
            return Err(Error::Config(format!(
                "key prefix {prefix:?} contains a brace; on a Redis Cluster the partition's \
                 hash tag must be the first braces of every key"
            )));
        }
        Ok(RedisStore {
            conn,
            prefix: prefix.to_string(),
            script: Script::new(APPLY_LUA),
            cas: Script::new(HSET_IF_LUA),
        })
    }

    /// The shared connection, for services that keep extra structures
    /// (e.g. [`crate::IdLedger::redis`]). It routes commands by key on a
    /// cluster; a pipeline or script on it must stay on one hash slot.
    pub fn connection(&self) -> StoreConnection {
        self.conn.clone()
    }

    /// Whether the store is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.conn.is_cluster()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) async fn apply(&self, scope: &str, batch: &PartitionBatch) -> Result<Applied> {
        if batch.records.is_empty() {
            return Ok(Applied::default());
        }
        let slot = Slot {
            scope,
            partition: batch.partition,
        };
        let mut inv = self.script.prepare_invoke();
        inv.key(full_key(&self.prefix, slot, WATERMARK_KEY));
        // Each distinct key is sent once; ops name it by its index in KEYS.
        let mut key_index: HashMap<&str, usize> = HashMap::new();
        let expect = batch.expect_through.map(|e| e.to_string());
        inv.arg(&batch.source_topic)
            .arg(batch.records.len())
            .arg(expect.unwrap_or_default());
        for (offset, ops) in &batch.records {
            inv.arg(*offset).arg(ops.len());
            for op in ops {
                let next = key_index.len() + 2;
                let idx = *key_index.entry(op.key()).or_insert_with(|| {
                    inv.key(full_key(&self.prefix, slot, op.key()));
                    next
                });
                let (code, a) = encode(op);
                inv.arg(code).arg(idx).arg(a);
                push_b(&mut inv, op);
            }
        }
        let (applied, skipped): (i64, i64) = inv.invoke_async(&mut self.conn.clone()).await?;
        if applied < 0 {
            return Err(behind(batch, (skipped >= 0).then_some(skipped)));
        }
        Ok(Applied {
            applied: applied as u64,
            skipped: skipped as u64,
        })
    }

    pub(crate) async fn watermark(
        &self,
        slot: Slot<'_>,
        source_topic: &str,
    ) -> Result<Option<i64>> {
        let key = full_key(&self.prefix, slot, WATERMARK_KEY);
        let v: Option<i64> = redis::cmd("HGET")
            .arg(&key)
            .arg(source_topic)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(v)
    }

    pub(crate) async fn applied_records(&self, slot: Slot<'_>, source_topic: &str) -> Result<u64> {
        let v: Option<u64> = redis::cmd("HGET")
            .arg(full_key(&self.prefix, slot, WATERMARK_KEY))
            .arg(crate::tally_field(source_topic))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(v.unwrap_or(0))
    }

    pub(crate) async fn hgetall(
        &self,
        slot: Slot<'_>,
        key: &str,
    ) -> Result<HashMap<String, String>> {
        let v = redis::cmd("HGETALL")
            .arg(full_key(&self.prefix, slot, key))
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(v)
    }

    pub(crate) async fn hgetall_many(
        &self,
        keys: &[(Slot<'_>, String)],
    ) -> Result<Vec<HashMap<String, String>>> {
        let cmds = keys
            .iter()
            .map(|(slot, key)| {
                let k = full_key(&self.prefix, *slot, key);
                let mut c = redis::cmd("HGETALL");
                c.arg(&k);
                (k, c)
            })
            .collect();
        query_by_slot(&self.conn, cmds)
            .await?
            .into_iter()
            .map(|v| Ok(redis::from_redis_value(v).map_err(redis::RedisError::from)?))
            .collect()
    }

    pub(crate) async fn hread_many(&self, reads: &[HashRead<'_>]) -> Result<Vec<HashReply>> {
        let cmds = reads
            .iter()
            .map(|r| match r {
                HashRead::Fields { slot, key, fields } => {
                    let k = full_key(&self.prefix, *slot, key);
                    let mut c = redis::cmd("HMGET");
                    c.arg(&k);
                    for f in fields.iter() {
                        c.arg(f);
                    }
                    if fields.is_empty() {
                        // HMGET needs a field; this one is never written.
                        c.arg("");
                    }
                    (k, c)
                }
                HashRead::Keys { slot, key } => {
                    let k = full_key(&self.prefix, *slot, key);
                    let mut c = redis::cmd("HKEYS");
                    c.arg(&k);
                    (k, c)
                }
            })
            .collect();
        let raw = query_by_slot(&self.conn, cmds).await?;
        reads
            .iter()
            .zip(raw)
            .map(|(r, v)| match r {
                HashRead::Fields { fields, .. } => {
                    let mut vals: Vec<Option<String>> =
                        redis::from_redis_value(v).map_err(redis::RedisError::from)?;
                    vals.truncate(fields.len());
                    Ok(HashReply::Fields(vals))
                }
                HashRead::Keys { .. } => Ok(HashReply::Keys(
                    redis::from_redis_value(v).map_err(redis::RedisError::from)?,
                )),
            })
            .collect()
    }

    pub(crate) async fn ztop(
        &self,
        slot: Slot<'_>,
        key: &str,
        n: usize,
    ) -> Result<Vec<(String, f64)>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let v = redis::cmd("ZRANGE")
            .arg(full_key(&self.prefix, slot, key))
            .arg(0)
            .arg(n as i64 - 1)
            .arg("REV")
            .arg("WITHSCORES")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(v)
    }

    pub(crate) async fn lrange(&self, slot: Slot<'_>, key: &str, n: usize) -> Result<Vec<String>> {
        if n == 0 {
            return Ok(Vec::new());
        }
        let v = redis::cmd("LRANGE")
            .arg(full_key(&self.prefix, slot, key))
            .arg(0)
            .arg(n as i64 - 1)
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(v)
    }

    pub(crate) async fn clear_scope(&self, scope: &str, keep: &[&str]) -> Result<u64> {
        // The glob narrows the scan; `clears` is the exact test (the glob
        // alone would also match a scope such as `profile.model`).
        let pattern = format!("{}:{{{}.[-0-9]*", self.prefix, scope);
        let mut deleted = 0;
        for node in scan_nodes(&self.conn).await? {
            let mut cursor = 0;
            loop {
                let (next, keys) = scan_page(&self.conn, &node, cursor, &pattern).await?;
                let cmds = keys
                    .into_iter()
                    .filter(|k| crate::clears(&self.prefix, scope, k, keep))
                    .map(|k| {
                        let mut c = redis::cmd("DEL");
                        c.arg(&k);
                        (k, c)
                    })
                    .collect();
                for v in query_by_slot(&self.conn, cmds).await? {
                    deleted +=
                        redis::from_redis_value::<u64>(v).map_err(redis::RedisError::from)?;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(deleted)
    }

    pub(crate) async fn hset_if(
        &self,
        slot: Slot<'_>,
        key: &str,
        guard: &[(&str, Option<&str>)],
        set: &[(&str, &str)],
    ) -> Result<bool> {
        let mut inv = self.cas.prepare_invoke();
        inv.key(full_key(&self.prefix, slot, key));
        inv.arg(guard.len());
        for (field, expected) in guard {
            match expected {
                Some(v) => inv.arg(*field).arg("v").arg(*v),
                None => inv.arg(*field).arg("a").arg(""),
            };
        }
        for (field, value) in set {
            inv.arg(*field).arg(*value);
        }
        let done: i64 = inv.invoke_async(&mut self.conn.clone()).await?;
        Ok(done == 1)
    }

    /// On a cluster, PING goes to every master: the store is usable only
    /// when every slot is.
    pub(crate) async fn ping(&self) -> Result<()> {
        let _: redis::Value = redis::cmd("PING")
            .query_async(&mut self.conn.clone())
            .await?;
        Ok(())
    }
}

/// The code and `a` of an op (see `APPLY_LUA`).
fn encode(op: &Op) -> (&'static str, &str) {
    match op {
        Op::HIncr { field, .. } => ("hi", field),
        Op::HIncrFloat { field, .. } => ("hf", field),
        Op::HSet { field, .. } => ("hs", field),
        Op::HSetNx { field, .. } => ("hn", field),
        Op::HMax { field, .. } => ("hx", field),
        Op::HMin { field, .. } => ("hm", field),
        Op::ZIncr { member, .. } => ("zi", member),
        Op::ZSet { member, .. } => ("zs", member),
        Op::ZRem { member, .. } => ("zr", member),
        Op::LPushCapped { value, .. } => ("lp", value),
        Op::Once { field, .. } => ("o1", field),
        Op::Unless { field, .. } => ("ui", field),
        Op::HDel { field, .. } => ("hd", field),
        Op::Del { .. } => ("dl", ""),
    }
}

/// Appends the `b` of an op (see `APPLY_LUA`); integers go as they are,
/// with no `String` in between.
fn push_b(inv: &mut redis::ScriptInvocation<'_>, op: &Op) {
    match op {
        Op::HIncr { delta, .. } => inv.arg(*delta),
        Op::HMax { value, .. } | Op::HMin { value, .. } => inv.arg(*value),
        Op::HIncrFloat { delta: v, .. }
        | Op::ZIncr { delta: v, .. }
        | Op::ZSet { score: v, .. } => inv.arg(float(*v)),
        Op::HSet { value, .. } | Op::HSetNx { value, .. } => inv.arg(value),
        Op::LPushCapped { max_len, .. } => inv.arg(*max_len.max(&1)),
        Op::Once { ttl_ms, .. } => inv.arg(*ttl_ms.max(&1)),
        Op::ZRem { .. } | Op::Unless { .. } | Op::HDel { .. } | Op::Del { .. } => inv.arg(""),
    };
}

/// Redis parses floats with strtold; Rust's shortest round-trip form is
/// accepted as long as it is finite.
fn float(v: f64) -> String {
    if v.is_finite() {
        format!("{v:?}")
    } else {
        "0".to_string()
    }
}

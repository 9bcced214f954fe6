//! The Redis implementation: one Lua script applies a batch and moves the
//! watermark atomically.
use std::collections::HashMap;

use redis::Script;

use crate::connection::{query_by_slot, scan_nodes, scan_page, StoreConnection};
use crate::fold::{self, NotFolded};
use crate::op::{Op, PartitionBatch};
use crate::tls::RedisTls;
use crate::{behind, full_key, Applied, Error, HashRead, HashReply, Result, Slot, WATERMARK_KEY};

/// KEYS[1] is the watermark hash; KEYS[2..] are the op keys.
/// Checks every op first, then writes: all or nothing.
/// ARGV: source topic, record count, the offset the caller expects the
/// watermark to be at least (`''`: no expectation), then per record:
/// offset, op count, and per op four values: code, key index (into KEYS), a, b.
/// Returns `{applied, skipped}`, or `{-1, watermark}` without a write when
/// the watermark is below the expectation (the store went back). Beside the
/// watermark, field `#n:<source>` counts the records ever applied (the
/// tally `mesh chaos` compares with the records on the topic).
const APPLY_LUA: &str = r#"
local wm = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
local n = tonumber(ARGV[2])
if ARGV[3] ~= '' and wm < tonumber(ARGV[3]) then return {-1, wm} end
-- Calls op(offset, code, key, a, b) for every op of the records above the
-- watermark, stopping at the first error it returns, and done(offset, live)
-- after every record.
-- An op returning SKIP skips the rest of its record's ops (a `once` whose
-- id was seen).
local SKIP = {}
local function walk(op, done)
  local i = 4
  for _ = 1, n do
    local offset = tonumber(ARGV[i]); local nops = tonumber(ARGV[i + 1]); i = i + 2
    local live = offset > wm
    local skipping = false
    for _ = 1, nops do
      if live and not skipping then
        local err = op(offset, ARGV[i], KEYS[tonumber(ARGV[i + 1])], ARGV[i + 2], ARGV[i + 3])
        if err == SKIP then skipping = true
        elseif err then return err end
      end
      i = i + 4
    end
    done(offset, live)
  end
end
-- Pass 1 checks every op against the stored values and those the batch's
-- earlier ops leave, and refuses the batch before any write: Redis does not
-- roll back a script's writes when it fails halfway, and a batch retried
-- after a partial write would count its first records twice.
local INT, FLOAT, GONE = {}, {}, {}
local kinds, shadow = {}, {}
local function kind_ok(k, want)
  local t = kinds[k]
  if t == nil then t = redis.call('TYPE', k)['ok'] end
  if t ~= 'none' and t ~= want then return false end
  kinds[k] = want
  return true
end
local function numeric(v)
  return v == false or v == INT or v == FLOAT or tonumber(v) ~= nil
end
local function check(offset, code, k, a, b)
  local bad
  if code == 'dl' then
    -- Later ops see an absent key, whatever it held.
    kinds[k] = 'none'; shadow[k] = {[GONE] = true}
  elseif code == 'zi' or code == 'zs' or code == 'zr' then
    if not kind_ok(k, 'zset') then bad = 'holds no sorted set' end
  elseif code == 'lp' then
    if not kind_ok(k, 'list') then bad = 'holds no list' end
  elseif not kind_ok(k, 'hash') then bad = 'holds no hash'
  else
    local h = shadow[k]
    if h == nil then h = {}; shadow[k] = h end
    local cur = h[a]
    if cur == nil then
      if h[GONE] then cur = false else cur = redis.call('HGET', k, a) or false end
    end
    if code == 'hi' then
      if cur == false or cur == INT or cur == FLOAT or string.match(cur, '^%-?%d+$') then
        h[a] = INT
      else bad = 'field ' .. a .. ' is not an integer' end
    elseif code == 'hf' or code == 'hx' or code == 'hm' then
      if numeric(cur) then
        if code == 'hf' then h[a] = FLOAT elseif cur == false then h[a] = INT else h[a] = cur end
      else bad = 'field ' .. a .. ' is not a number' end
    elseif code == 'hs' then h[a] = b
    elseif code == 'hn' then if cur == false then h[a] = b else h[a] = cur end
    elseif code == 'o1' then
      if cur ~= false then return SKIP end
      h[a] = '1'
    elseif code == 'ui' then
      if cur ~= false then return SKIP end
    elseif code == 'hd' then h[a] = false
    else bad = 'unknown op ' .. code end
  end
  if bad then
    return 'ERR batch refused at offset ' .. offset .. ': op ' .. code .. ' on ' .. k .. ': ' .. bad
  end
end
local refused = walk(check, function() end)
if refused then return redis.error_reply(refused) end
-- Pass 2 writes.
local function write(_, code, k, a, b)
  if code == 'hi' then redis.call('HINCRBY', k, a, b)
  elseif code == 'hf' then redis.call('HINCRBYFLOAT', k, a, b)
  elseif code == 'hs' then redis.call('HSET', k, a, b)
  elseif code == 'hn' then redis.call('HSETNX', k, a, b)
  elseif code == 'hx' or code == 'hm' then
    local cur = redis.call('HGET', k, a)
    local v = tonumber(b)
    if (not cur) or (code == 'hx' and v > tonumber(cur)) or (code == 'hm' and v < tonumber(cur)) then
      redis.call('HSET', k, a, b)
    end
  elseif code == 'zi' then redis.call('ZINCRBY', k, b, a)
  elseif code == 'zs' then redis.call('ZADD', k, b, a)
  elseif code == 'zr' then redis.call('ZREM', k, a)
  elseif code == 'lp' then
    redis.call('LPUSH', k, a); redis.call('LTRIM', k, 0, tonumber(b) - 1)
  elseif code == 'o1' then
    if redis.call('HEXISTS', k, a) == 1 then return SKIP end
    redis.call('HSET', k, a, '1'); redis.call('PEXPIRE', k, tonumber(b))
  elseif code == 'ui' then
    if redis.call('HEXISTS', k, a) == 1 then return SKIP end
  elseif code == 'hd' then redis.call('HDEL', k, a)
  elseif code == 'dl' then redis.call('DEL', k)
  end
end
local applied, skipped, top = 0, 0, wm
walk(write, function(offset, live)
  if live then applied = applied + 1; top = offset else skipped = skipped + 1 end
end)
if top > wm then redis.call('HSET', KEYS[1], ARGV[1], top) end
if applied > 0 then redis.call('HINCRBY', KEYS[1], '#n:' .. ARGV[1], applied) end
return {applied, skipped}
"#;

/// KEYS[1] is the hash. ARGV: guard count, per guard: field, `a` (absent)
/// or `v` (equals), value; then field/value pairs to set.
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

/// KEYS are sorted sets of one slot; ARGV: keep, above. Every key with more
/// than `above` members is rewritten with its `keep` highest-scored ones
/// (ties: the greater member, as `ZRANGE ... REV` orders them): the rewrite
/// (`DEL` + `ZADD`) rather than `ZREMRANGEBYRANK` because a set that grew
/// past `zset-max-listpack-entries` stays a skiplist after a removal, ~14×
/// the bytes of the compact listpack (measured: 100 members 816 vs 11,864
/// bytes). Scores go back as `ZRANGE` printed them (17 significant digits:
/// the same double). A key that holds no sorted set is left alone, as the
/// in-memory store does. Returns the number of keys cut.
const ZCAP_LUA: &str = r#"
local keep, above, cut = tonumber(ARGV[1]), tonumber(ARGV[2]), 0
for _, k in ipairs(KEYS) do
  local n = redis.pcall('ZCARD', k)
  if type(n) == 'number' and n > above then
    local top = redis.call('ZRANGE', k, 0, keep - 1, 'REV', 'WITHSCORES')
    redis.call('DEL', k)
    local args = {}
    for m = 1, #top, 2 do
      args[#args + 1] = top[m + 1]; args[#args + 1] = top[m]
    end
    for m = 1, #args, 1000 do
      redis.call('ZADD', k, unpack(args, m, math.min(m + 999, #args)))
    end
    cut = cut + 1
  end
end
return cut
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
    commit: Script,
    // Behind an `Arc`: `StateStore` keeps its variants close in size.
    zcap: std::sync::Arc<Script>,
    /// Whether `apply` folds batches in memory first (see [`crate::fold`];
    /// `MESH_STORE_APPLY=script` turns it off).
    fold: bool,
    paths: std::sync::Arc<fold::PathCounts>,
}

/// How [`RedisStore`] applies batches, from `MESH_STORE_APPLY`: `fold`
/// (the default, see [`crate::fold`]) or `script` (every batch through the
/// apply script). Anything else is an error naming the variable.
fn fold_from_env() -> Result<bool> {
    match std::env::var("MESH_STORE_APPLY").ok().as_deref() {
        None | Some("") | Some("fold") => Ok(true),
        Some("script") => Ok(false),
        Some(other) => Err(Error::Config(format!(
            "MESH_STORE_APPLY={other:?}: expected fold (the default) or script"
        ))),
    }
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
            commit: Script::new(fold::COMMIT_LUA),
            zcap: std::sync::Arc::new(Script::new(ZCAP_LUA)),
            fold: fold_from_env()?,
            paths: Default::default(),
        })
    }

    /// This store with the batch fold on or off, whatever
    /// `MESH_STORE_APPLY` says (tests and benchmarks compare the paths).
    pub fn with_fold(mut self, fold: bool) -> Self {
        self.fold = fold;
        self
    }

    /// How this store (and its clones) applied batches since it was
    /// connected; [`crate::apply_paths`] counts every store of the process.
    pub fn apply_paths(&self) -> crate::ApplyPaths {
        self.paths.get()
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
        if self.fold {
            if let Some(applied) = self.apply_folded(slot, batch).await? {
                self.paths.count(true);
                return Ok(applied);
            }
        }
        self.paths.count(false);
        // Each distinct key is sent once; ops name it by its index in KEYS
        // (the watermark hash is KEYS[1]).
        let mut key_index: HashMap<&str, usize> = HashMap::new();
        let mut keys = vec![full_key(&self.prefix, slot, WATERMARK_KEY)];
        let mut args = 3;
        for (_, ops) in &batch.records {
            args += 2 + 4 * ops.len();
            for op in ops {
                key_index.entry(op.key()).or_insert_with(|| {
                    keys.push(full_key(&self.prefix, slot, op.key()));
                    keys.len()
                });
            }
        }
        let mut inv = ScriptCall::new(&self.script, &keys, args);
        let expect = batch.expect_through.map(|e| e.to_string());
        inv.arg(&batch.source_topic)
            .arg(batch.records.len())
            .arg(expect.unwrap_or_default());
        for (offset, ops) in &batch.records {
            inv.arg(*offset).arg(ops.len());
            for op in ops {
                let (code, a) = encode(op);
                inv.arg(code).arg(key_index[op.key()]).arg(a);
                push_b(&mut inv, op);
            }
        }
        let (applied, skipped): (i64, i64) = inv.invoke(&self.conn).await?;
        if applied < 0 {
            return Err(behind(batch, (skipped >= 0).then_some(skipped)));
        }
        Ok(Applied {
            applied: applied as u64,
            skipped: skipped as u64,
        })
    }

    /// The fast path of `apply` (see [`crate::fold`]): `None` hands the
    /// batch to the apply script.
    async fn apply_folded(
        &self,
        slot: Slot<'_>,
        batch: &PartitionBatch,
    ) -> Result<Option<Applied>> {
        let Some(plan) = fold::plan(batch) else {
            return Ok(None);
        };
        let wm_key = full_key(&self.prefix, slot, WATERMARK_KEY);
        let names: Vec<String> = plan
            .keys
            .iter()
            .map(|k| full_key(&self.prefix, slot, k.key))
            .collect();
        // A write between the read and the commit to a value the fold read
        // (a zombie consumer of the partition, a compare-and-set, a
        // restore) sends the fold round again.
        for _ in 0..3 {
            let cmds = fold::reads(&plan, &wm_key, &batch.source_topic, &names);
            let Ok(replies) = query_by_slot(&self.conn, cmds).await else {
                return Ok(None);
            };
            let f = match fold::fold(batch, &plan, replies) {
                Ok(f) => f,
                Err(NotFolded::Fallback) => return Ok(None),
                Err(NotFolded::Behind(w)) => return Err(behind(batch, w)),
            };
            let applied = Applied {
                applied: f.applied,
                skipped: f.skipped,
            };
            if f.applied == 0 {
                return Ok(Some(applied));
            }
            let args = 5 + f
                .checks
                .iter()
                .chain(&f.sections)
                .map(|s| 3 + s.2.len())
                .sum::<usize>();
            let mut inv =
                ScriptCall::new(&self.commit, std::iter::once(&wm_key).chain(&names), args);
            let top = f.top.map(|t| t.to_string()).unwrap_or_default();
            inv.arg(&batch.source_topic)
                .arg(&f.wm_raw)
                .arg(top)
                .arg(f.applied)
                .arg(f.checks.len());
            for (key, code, items) in f.checks.iter().chain(&f.sections) {
                inv.arg(*key).arg(*code).arg(items.len()).arg(items);
            }
            let done: i64 = inv.invoke(&self.conn).await?;
            if done == 1 {
                return Ok(Some(applied));
            }
            self.paths.count_refold();
            tracing::debug!(
                source_topic = %batch.source_topic,
                partition = batch.partition,
                "the slot changed between the fold's read and its commit; folding again"
            );
        }
        Ok(None)
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
        let key = full_key(&self.prefix, slot, key);
        let mut inv = ScriptCall::new(&self.cas, [&key], 1 + 3 * guard.len() + 2 * set.len());
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
        let done: i64 = inv.invoke(&self.conn).await?;
        Ok(done == 1)
    }

    pub(crate) async fn zcap(
        &self,
        slot: Slot<'_>,
        keys: &[&str],
        keep: usize,
        above: usize,
    ) -> Result<usize> {
        let mut cut = 0;
        // Bounded scripts: a few hundred ZCARDs each, so Redis never runs one
        // long step for a large batch.
        for chunk in keys.chunks(512) {
            let mut inv = self.zcap.prepare_invoke();
            for key in chunk {
                inv.key(full_key(&self.prefix, slot, key));
            }
            inv.arg(keep).arg(above);
            let n: usize = inv.invoke_async(&mut self.conn.clone()).await?;
            cut += n;
        }
        Ok(cut)
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

/// One `EVALSHA` of a script, built straight into one command buffer.
///
/// `redis::ScriptInvocation` first copies every argument into a `Vec` of
/// its own and then all of them into the command: one allocation and one
/// free per argument, and a commit carries thousands (in `perf` of `mesh
/// bench profile`, the growth of that argument list and the fresh pages it
/// zeroed were ~4% of the consumer's samples). The keys are known before
/// the arguments, so the command is written in its final order at once.
struct ScriptCall<'s> {
    script: &'s Script,
    cmd: redis::Cmd,
}

impl<'s> ScriptCall<'s> {
    /// `EVALSHA <hash> <number of keys> <keys>`; `args` is how many
    /// arguments will follow (a capacity hint).
    fn new<K: AsRef<str>>(
        script: &'s Script,
        keys: impl IntoIterator<Item = K>,
        args: usize,
    ) -> Self {
        let keys: Vec<K> = keys.into_iter().collect();
        // Arguments are mostly short names and numbers: ~12 bytes each.
        let bytes = 64 + keys.iter().map(|k| k.as_ref().len()).sum::<usize>() + 12 * args;
        let mut cmd = redis::Cmd::with_capacity(3 + keys.len() + args, bytes);
        cmd.arg("EVALSHA").arg(script.get_hash()).arg(keys.len());
        for k in &keys {
            cmd.arg(k.as_ref());
        }
        Self { script, cmd }
    }

    fn arg<T: redis::ToRedisArgs>(&mut self, a: T) -> &mut Self {
        self.cmd.arg(a);
        self
    }

    /// Runs the command; a server that does not know the script yet (a
    /// restart, `SCRIPT FLUSH`, a failover) gets it loaded, then the same
    /// command again.
    async fn invoke<T: redis::FromRedisValue>(&self, conn: &StoreConnection) -> Result<T> {
        let mut conn = conn.clone();
        match self.cmd.query_async(&mut conn).await {
            Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                self.script.load_async(&mut conn).await?;
                Ok(self.cmd.query_async(&mut conn).await?)
            }
            r => Ok(r?),
        }
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
fn push_b(inv: &mut ScriptCall<'_>, op: &Op) {
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

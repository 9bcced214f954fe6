//! The batch fold: the Redis store's fast apply path (issue #14, item 1).
//!
//! The apply script (`APPLY_LUA`) interprets every op of every record in
//! Lua: a check pass and a write pass, some 36 Redis calls and ~130 µs of
//! Redis time per profile event. The fold moves that work out of Redis:
//!
//! 1. [`plan`] lists what the batch touches: per key, the hash fields,
//!    sorted-set members or list it reads or writes.
//! 2. One pipelined round trip reads the watermark and the values the
//!    batch needs (`HMGET` / `ZMSCORE` / `LLEN` per key). A key of the
//!    wrong type answers with an error.
//! 3. [`fold`] applies the records in memory with the script's semantics:
//!    the watermark, `Once`, `Unless`, every op in order.
//! 4. `COMMIT_LUA` checks that the watermark and every value step 2 read
//!    are unchanged, then writes each key's final values with one command
//!    per key (`HSET`, `HDEL`, `ZADD`, `ZREM`, `LPUSH` + `LTRIM`,
//!    `PEXPIRE`) and moves the watermark: atomic, as before.
//!
//! The fold's result depends on nothing but the batch and the values it
//! read, so "those values are unchanged" is exactly the condition under
//! which its writes equal what the apply script would write now, whoever
//! wrote in between (a zombie consumer of the partition, a compare-and-set,
//! a key-by-key restore, a FLUSHALL). A changed value makes the commit
//! write nothing and the fold start again: three times, then the script.
//! Blind writes (`HSet`, `HDel`, `ZSet`, `ZRem`, list pushes) read nothing
//! and need no check: the last writer wins on either path.
//!
//! Anything the fold does not model exactly falls back to the apply
//! script, which then refuses or applies the batch as it always did: a
//! `Del`, a key used as two types, list pushes with different caps, a key
//! of the wrong type, a field that is not a number where a number is
//! needed, an integer overflow, a value the batch needs but did not read.
//! Float increments of hash fields are the exception to "final values":
//! the commit sends each as `HINCRBYFLOAT` with the script's argument, so a
//! field ends as the same text whichever path applied each batch (Redis
//! adds in `long double` and prints `3`, not `3.0`); the fold only checks
//! that Redis will accept them.
use std::collections::hash_map::Entry;
use std::sync::atomic::{AtomicU64, Ordering};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use redis::{Cmd, Value};

use crate::op::{Op, PartitionBatch};

/// KEYS[1] is the watermark hash, KEYS[2..] the batch's keys.
/// ARGV: source topic, the watermark read (`''`: none), the new watermark
/// (`''`: unchanged), the records applied, the number of check sections,
/// then sections of: key index, code, item count, items; the check
/// sections first. Checks: `v` hash fields (the fields, then their
/// values), `n` hash fields that were absent, `w` sorted-set members (the
/// members, then their scores, compared as numbers), `x` members that were
/// absent. Returns 0 without a write when the watermark or a value read
/// has changed.
pub(crate) const COMMIT_LUA: &str = r#"
if (redis.call('HGET', KEYS[1], ARGV[1]) or '') ~= ARGV[2] then return 0 end
local i = 6
for _ = 1, tonumber(ARGV[5]) do
  local k = KEYS[tonumber(ARGV[i])]
  local code = ARGV[i + 1]
  local n = tonumber(ARGV[i + 2])
  i = i + 3
  if code == 'v' or code == 'w' then
    local h = n / 2
    local cur = redis.call(code == 'v' and 'HMGET' or 'ZMSCORE', k, unpack(ARGV, i, i + h - 1))
    for m = 1, h do
      local want = ARGV[i + h + m - 1]
      if code == 'v' then
        if cur[m] ~= want then return 0 end
      elseif (not cur[m]) or tonumber(cur[m]) ~= tonumber(want) then return 0 end
    end
  else
    local cur = redis.call(code == 'n' and 'HMGET' or 'ZMSCORE', k, unpack(ARGV, i, i + n - 1))
    for m = 1, n do if cur[m] then return 0 end end
  end
  i = i + n
end
while i <= #ARGV do
  local k = KEYS[tonumber(ARGV[i])]
  local code = ARGV[i + 1]
  local n = tonumber(ARGV[i + 2])
  i = i + 3
  local j = i + n - 1
  if code == 'h' then redis.call('HSET', k, unpack(ARGV, i, j))
  elseif code == 'd' then redis.call('HDEL', k, unpack(ARGV, i, j))
  elseif code == 'z' then redis.call('ZADD', k, unpack(ARGV, i, j))
  elseif code == 'r' then redis.call('ZREM', k, unpack(ARGV, i, j))
  elseif code == 'l' then redis.call('LPUSH', k, unpack(ARGV, i, j))
  elseif code == 't' then redis.call('LTRIM', k, 0, tonumber(ARGV[i]) - 1)
  elseif code == 'e' then redis.call('PEXPIRE', k, ARGV[i])
  elseif code == 'f' then
    for m = i, j, 2 do redis.call('HINCRBYFLOAT', k, ARGV[m], ARGV[m + 1]) end
  end
  i = i + n
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[1], '#n:' .. ARGV[1], ARGV[4]) end
return 1
"#;

/// Counts of how batches were applied: one set per process (all stores)
/// and one per [`crate::RedisStore`] (and its clones).
#[derive(Debug, Default)]
pub(crate) struct PathCounts {
    folded: AtomicU64,
    scripted: AtomicU64,
    refolded: AtomicU64,
}

static PROCESS: PathCounts = PathCounts {
    folded: AtomicU64::new(0),
    scripted: AtomicU64::new(0),
    refolded: AtomicU64::new(0),
};

impl PathCounts {
    pub(crate) fn get(&self) -> ApplyPaths {
        ApplyPaths {
            folded: self.folded.load(Ordering::Relaxed),
            scripted: self.scripted.load(Ordering::Relaxed),
            refolded: self.refolded.load(Ordering::Relaxed),
        }
    }

    /// Counts a batch applied by the fold (`true`) or the script, here
    /// and in the process's counts.
    pub(crate) fn count(&self, folded: bool) {
        for c in [self, &PROCESS] {
            let n = if folded { &c.folded } else { &c.scripted };
            n.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a commit that found a value read changed.
    pub(crate) fn count_refold(&self) {
        for c in [self, &PROCESS] {
            c.refolded.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// How batches were applied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyPaths {
    /// Batches the fold applied.
    pub folded: u64,
    /// Batches the apply script applied (or refused).
    pub scripted: u64,
    /// Fold commits that found a value they read changed since the read
    /// and ran the fold again.
    pub refolded: u64,
}

/// How this process's Redis stores applied batches since it started.
pub fn apply_paths() -> ApplyPaths {
    PROCESS.get()
}

/// Most items one command of the commit takes (Lua's `unpack` has a
/// stack limit of a few thousand values).
const CHUNK: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Hash,
    ZSet,
    List,
}

/// What the batch does to one key.
#[derive(Debug)]
pub(crate) struct KeyPlan<'a> {
    pub(crate) key: &'a str,
    kind: Kind,
    /// Fields (members) the batch may need the stored value of: those
    /// whose first op in the batch reads it.
    reads: Vec<&'a str>,
    /// The cap of every push (lists only).
    cap: u32,
}

/// What a batch touches, key by key in first-use order.
#[derive(Debug)]
pub(crate) struct Plan<'a> {
    pub(crate) keys: Vec<KeyPlan<'a>>,
    /// The index into `keys` of every op of the batch, in order.
    op_keys: Vec<u32>,
}

fn kind_and_member(op: &Op) -> Option<(Kind, &str, bool)> {
    // (kind, field or member, whether the op needs the stored value)
    Some(match op {
        Op::HIncr { field, .. }
        | Op::HIncrFloat { field, .. }
        | Op::HSetNx { field, .. }
        | Op::HMax { field, .. }
        | Op::HMin { field, .. }
        | Op::Once { field, .. }
        | Op::Unless { field, .. } => (Kind::Hash, field.as_str(), true),
        Op::HSet { field, .. } | Op::HDel { field, .. } => (Kind::Hash, field.as_str(), false),
        Op::ZIncr { member, .. } => (Kind::ZSet, member.as_str(), true),
        Op::ZSet { member, .. } | Op::ZRem { member, .. } => (Kind::ZSet, member.as_str(), false),
        Op::LPushCapped { .. } => (Kind::List, "", false),
        Op::Del { .. } => return None,
    })
}

/// The keys and fields `batch` touches, or `None` when the fold cannot
/// model it (see the module docs).
pub(crate) fn plan(batch: &PartitionBatch) -> Option<Plan<'_>> {
    let ops: usize = batch.records.iter().map(|(_, o)| o.len()).sum();
    let mut keys: Vec<KeyPlan> = Vec::new();
    let mut index: HashMap<&str, u32> = HashMap::with_capacity(ops);
    let mut seen: HashSet<(u32, &str)> = HashSet::with_capacity(ops);
    let mut op_keys = Vec::with_capacity(ops);
    for (_, ops) in &batch.records {
        for op in ops {
            let (kind, member, reads) = kind_and_member(op)?;
            let key = op.key();
            let cap = match op {
                Op::LPushCapped { max_len, .. } => (*max_len).max(1),
                _ => 0,
            };
            let i = *index.entry(key).or_insert_with(|| {
                keys.push(KeyPlan {
                    key,
                    kind,
                    reads: Vec::new(),
                    cap,
                });
                (keys.len() - 1) as u32
            });
            let k = &mut keys[i as usize];
            if k.kind != kind || k.cap != cap {
                return None;
            }
            if kind != Kind::List && seen.insert((i, member)) && reads {
                k.reads.push(member);
            }
            op_keys.push(i);
        }
    }
    Some(Plan { keys, op_keys })
}

/// The read step: the watermark first (`HMGET <wm> source`), then one
/// command per key of the plan, each with its full key name.
/// `names` are the full key names of the plan's keys, in order.
pub(crate) fn reads(
    plan: &Plan<'_>,
    wm_key: &str,
    source_topic: &str,
    names: &[String],
) -> Vec<(String, Cmd)> {
    let mut cmds = Vec::with_capacity(plan.keys.len() + 1);
    let mut c = redis::cmd("HMGET");
    c.arg(wm_key).arg(source_topic);
    cmds.push((wm_key.to_string(), c));
    for (k, name) in plan.keys.iter().zip(names) {
        let mut c = match k.kind {
            Kind::Hash => redis::cmd("HMGET"),
            Kind::ZSet => redis::cmd("ZMSCORE"),
            Kind::List => redis::cmd("LLEN"),
        };
        c.arg(name);
        if k.kind != Kind::List {
            if k.reads.is_empty() {
                // The command needs one; its answer is not used, but a key
                // of the wrong type still answers with an error.
                c.arg("");
            } else {
                c.arg(&k.reads);
            }
        }
        cmds.push((name.clone(), c));
    }
    cmds
}

/// A field's (member's) value as the fold goes: absent from the map = not
/// known (not read, not written); `None` = absent in Redis; the flag says
/// the batch wrote it (then its key's `written` lists it once, in order).
type Slot<'a, V> = HashMap<(u32, &'a str), (Option<V>, bool)>;

/// The fold's working state for the whole batch.
struct State<'a> {
    hashes: Slot<'a, String>,
    /// Hash fields the batch adds floats to: the running sum (to refuse a
    /// sum that is not finite) and each delta, sent as they are.
    floats: HashMap<(u32, &'a str), (f64, Vec<f64>)>,
    /// Per key: the fields of `floats`, in first-use order.
    float_fields: Vec<Vec<&'a str>>,
    scores: Slot<'a, f64>,
    /// Per key of the plan: the fields / members written, in order.
    written: Vec<Vec<&'a str>>,
    /// Per key: the last `Once` TTL (hashes), the values pushed (lists).
    ttl: Vec<Option<i64>>,
    pushes: Vec<Vec<&'a str>>,
}

/// What the commit writes and the figures apply returns.
#[derive(Debug)]
pub(crate) struct Folded {
    /// The watermark as read (`''` when absent).
    pub(crate) wm_raw: String,
    /// The new watermark, when it moves.
    pub(crate) top: Option<i64>,
    pub(crate) applied: u64,
    pub(crate) skipped: u64,
    /// The commit's check sections (the values read), then its write
    /// sections: KEYS index, code, items.
    pub(crate) checks: Vec<(usize, &'static str, Vec<String>)>,
    pub(crate) sections: Vec<(usize, &'static str, Vec<String>)>,
}

/// Why the fold gave the batch back to the apply script, or that the
/// store is behind the caller's expectation.
#[derive(Debug, PartialEq)]
pub(crate) enum NotFolded {
    /// The apply script decides (it may refuse the batch).
    Fallback,
    /// The watermark read is below `expect_through`.
    Behind(Option<i64>),
}

fn int_text(s: &str) -> Option<i64> {
    // As the apply script's check (`^-?%d+$`), and it must fit an i64.
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn number_text(s: &str) -> Option<f64> {
    // Lua's `tonumber` and Rust's parser agree on plain decimal forms; any
    // other text ("inf", "0x1f", spaces) goes to the apply script.
    if s.is_empty()
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b"+-.eE".contains(&b))
    {
        return None;
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Folds `batch` over the values `replies` (the answers to [`reads`]).
pub(crate) fn fold<'a>(
    batch: &'a PartitionBatch,
    plan: &Plan<'a>,
    replies: Vec<Value>,
) -> Result<Folded, NotFolded> {
    use NotFolded::Fallback;
    if replies.len() != plan.keys.len() + 1 || replies.iter().any(is_error) {
        return Err(Fallback);
    }
    let mut replies = replies.into_iter();
    let head: Vec<Option<String>> =
        redis::from_redis_value(replies.next().ok_or(Fallback)?).map_err(|_| Fallback)?;
    let wm_raw = head.first().cloned().flatten().unwrap_or_default();
    let wm = if wm_raw.is_empty() {
        -1
    } else {
        wm_raw.parse::<i64>().map_err(|_| Fallback)?
    };
    if batch.expect_through.is_some_and(|e| wm < e) {
        return Err(NotFolded::Behind((wm >= 0).then_some(wm)));
    }
    let n = plan.keys.len();
    let mut st = State {
        hashes: HashMap::with_capacity(plan.op_keys.len()),
        floats: HashMap::new(),
        float_fields: vec![Vec::new(); n],
        scores: HashMap::with_capacity(n),
        written: vec![Vec::new(); n],
        ttl: vec![None; n],
        pushes: vec![Vec::new(); n],
    };
    // What the commit checks before it writes: every value read.
    let mut checks = Vec::new();
    for (i, (k, reply)) in plan.keys.iter().zip(replies).enumerate() {
        let key = i + 2; // KEYS index: the watermark hash is KEYS[1]
        let i = i as u32;
        let (mut present, mut absent) = (Vec::new(), Vec::new());
        match k.kind {
            Kind::Hash if !k.reads.is_empty() => {
                let vals: Vec<Option<String>> =
                    redis::from_redis_value(reply).map_err(|_| Fallback)?;
                if vals.len() != k.reads.len() {
                    return Err(Fallback);
                }
                for (f, v) in k.reads.iter().zip(vals) {
                    match &v {
                        Some(v) => present.push((*f, v.clone())),
                        None => absent.push(f.to_string()),
                    }
                    st.hashes.insert((i, f), (v, false));
                }
                push_checks(&mut checks, key, ("v", "n"), present, absent);
            }
            Kind::ZSet if !k.reads.is_empty() => {
                let vals: Vec<Option<f64>> =
                    redis::from_redis_value(reply).map_err(|_| Fallback)?;
                if vals.len() != k.reads.len() {
                    return Err(Fallback);
                }
                for (m, v) in k.reads.iter().zip(vals) {
                    match v {
                        Some(s) => present.push((*m, format!("{s:?}"))),
                        None => absent.push(m.to_string()),
                    }
                    st.scores.insert((i, m), (v, false));
                }
                push_checks(&mut checks, key, ("w", "x"), present, absent);
            }
            _ => {}
        }
    }
    let (mut applied, mut skipped, mut top) = (0u64, 0u64, None);
    let mut at = 0usize;
    for (offset, ops) in &batch.records {
        let keys = &plan.op_keys[at..at + ops.len()];
        at += ops.len();
        if *offset <= wm {
            skipped += 1;
            continue;
        }
        applied += 1;
        top = Some(*offset);
        for (op, &k) in ops.iter().zip(keys) {
            if !step(&mut st, k, op)? {
                break;
            }
        }
    }
    let mut sections = Vec::new();
    for (i, written) in st.written.iter().enumerate() {
        let key = i + 2; // KEYS index: the watermark hash is KEYS[1]
        let ki = i as u32;
        match plan.keys[i].kind {
            Kind::Hash => {
                let (mut set, mut del) = (Vec::new(), Vec::new());
                for f in written {
                    match st.hashes.remove(&(ki, *f)) {
                        Some((Some(v), _)) => {
                            set.push(f.to_string());
                            set.push(v);
                        }
                        Some((None, _)) => del.push(f.to_string()),
                        None => {}
                    }
                }
                push_sections(&mut sections, key, "h", set, 2);
                push_sections(&mut sections, key, "d", del, 1);
                let mut incr = Vec::new();
                for f in &st.float_fields[i] {
                    if let Some((_, deltas)) = st.floats.get(&(ki, *f)) {
                        for d in deltas {
                            incr.push(f.to_string());
                            incr.push(float_arg(*d));
                        }
                    }
                }
                push_sections(&mut sections, key, "f", incr, 2);
                if let Some(ms) = st.ttl[i] {
                    sections.push((key, "e", vec![ms.max(1).to_string()]));
                }
            }
            Kind::ZSet => {
                let (mut add, mut rem) = (Vec::new(), Vec::new());
                for m in written {
                    match st.scores.remove(&(ki, *m)) {
                        Some((Some(s), _)) => {
                            add.push(format!("{s:?}"));
                            add.push(m.to_string());
                        }
                        Some((None, _)) => rem.push(m.to_string()),
                        None => {}
                    }
                }
                push_sections(&mut sections, key, "z", add, 2);
                push_sections(&mut sections, key, "r", rem, 1);
            }
            Kind::List => {
                let pushes = &st.pushes[i];
                if !pushes.is_empty() {
                    let cap = plan.keys[i].cap;
                    // Only the newest `cap` pushes can survive the trim.
                    let from = pushes.len().saturating_sub(cap as usize);
                    let items = pushes[from..].iter().map(|s| s.to_string()).collect();
                    push_sections(&mut sections, key, "l", items, 1);
                    sections.push((key, "t", vec![cap.to_string()]));
                }
            }
        }
    }
    Ok(Folded {
        wm_raw,
        checks,
        top,
        applied,
        skipped,
        sections,
    })
}

/// A score as the apply script receives it: non-finite is 0.
fn finite_or_zero(v: f64) -> f64 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// A float as the apply script receives it (`redis_store::float`).
fn float_arg(v: f64) -> String {
    if v.is_finite() {
        format!("{v:?}")
    } else {
        "0".to_string()
    }
}

fn is_error(v: &Value) -> bool {
    matches!(v, Value::ServerError(_))
}

fn push_sections(
    out: &mut Vec<(usize, &'static str, Vec<String>)>,
    key: usize,
    code: &'static str,
    items: Vec<String>,
    unit: usize,
) {
    if items.is_empty() {
        return;
    }
    if items.len() <= CHUNK {
        out.push((key, code, items));
        return;
    }
    let per = CHUNK - CHUNK % unit;
    for c in items.chunks(per) {
        out.push((key, code, c.to_vec()));
    }
}

/// The check sections of one key: `present` as `codes.0` sections (the
/// names, then their values), `absent` as `codes.1` sections.
fn push_checks(
    out: &mut Vec<(usize, &'static str, Vec<String>)>,
    key: usize,
    codes: (&'static str, &'static str),
    present: Vec<(&str, String)>,
    absent: Vec<String>,
) {
    for c in present.chunks(CHUNK / 2) {
        let mut items: Vec<String> = c.iter().map(|(f, _)| f.to_string()).collect();
        items.extend(c.iter().map(|(_, v)| v.clone()));
        out.push((key, codes.0, items));
    }
    push_sections(out, key, codes.1, absent, 1);
}

/// Records a write of `v` to field `f` of key `k` in `vals`.
fn write<'a, V>(
    vals: &mut Slot<'a, V>,
    written: &mut Vec<&'a str>,
    k: u32,
    f: &'a str,
    v: Option<V>,
) {
    match vals.entry((k, f)) {
        Entry::Occupied(mut e) => {
            let (val, was_written) = e.get_mut();
            *val = v;
            if !*was_written {
                *was_written = true;
                written.push(f);
            }
        }
        Entry::Vacant(e) => {
            e.insert((v, true));
            written.push(f);
        }
    }
}

/// Applies one op of a live record to key `k`; `Ok(false)` skips the
/// record's later ops (`Once` seen, `Unless` set).
fn step<'a>(st: &mut State<'a>, k: u32, op: &'a Op) -> Result<bool, NotFolded> {
    use NotFolded::Fallback;
    let ki = k as usize;
    let (_, member, _) = kind_and_member(op).ok_or(Fallback)?;
    // The stored value, for the ops that need it.
    fn hash_cur<'s, 'a>(
        st: &'s State<'a>,
        k: u32,
        f: &'a str,
    ) -> Result<Option<&'s str>, NotFolded> {
        st.hashes
            .get(&(k, f))
            .map(|(v, _)| v.as_deref())
            .ok_or(NotFolded::Fallback)
    }
    if st.floats.contains_key(&(k, member)) && !matches!(op, Op::HIncrFloat { .. }) {
        // Its value is Redis's to compute (below); the script decides.
        return Err(Fallback);
    }
    let new: Option<String> = match op {
        Op::HIncr { delta, .. } => {
            let now = match hash_cur(st, k, member)? {
                None => 0,
                Some(s) => int_text(s).ok_or(Fallback)?,
            };
            Some(now.checked_add(*delta).ok_or(Fallback)?.to_string())
        }
        Op::HIncrFloat { delta, .. } => {
            // Sent as HINCRBYFLOAT with the script's argument, so the field
            // ends as the same text whichever path applied the batch (Redis
            // adds in long double and prints its own way); the fold only
            // checks that Redis will accept it.
            let sum = match st.floats.get(&(k, member)) {
                Some((sum, _)) => *sum,
                None => match hash_cur(st, k, member)? {
                    None => 0.0,
                    Some(s) => number_text(s).ok_or(Fallback)?,
                },
            };
            let v = sum + delta;
            if !v.is_finite() || v.abs() > 1e300 || !delta.is_finite() {
                return Err(Fallback);
            }
            match st.floats.entry((k, member)) {
                Entry::Occupied(mut e) => {
                    let (s, deltas) = e.get_mut();
                    *s = v;
                    deltas.push(*delta);
                }
                Entry::Vacant(e) => {
                    e.insert((v, vec![*delta]));
                    st.float_fields[ki].push(member);
                }
            }
            return Ok(true);
        }
        Op::HSet { value, .. } => Some(value.clone()),
        Op::HSetNx { value, .. } => {
            if hash_cur(st, k, member)?.is_some() {
                return Ok(true);
            }
            Some(value.clone())
        }
        Op::HMax { value, .. } | Op::HMin { value, .. } => {
            let replace = match hash_cur(st, k, member)? {
                None => true,
                Some(s) => {
                    let c = number_text(s).ok_or(Fallback)?;
                    let v = *value as f64;
                    if matches!(op, Op::HMax { .. }) {
                        v > c
                    } else {
                        v < c
                    }
                }
            };
            if !replace {
                return Ok(true);
            }
            Some(value.to_string())
        }
        Op::HDel { .. } => None,
        Op::Once { ttl_ms, .. } => {
            if hash_cur(st, k, member)?.is_some() {
                return Ok(false);
            }
            st.ttl[ki] = Some((*ttl_ms).max(1));
            Some("1".into())
        }
        Op::Unless { .. } => {
            return if hash_cur(st, k, member)?.is_some() {
                Ok(false)
            } else {
                Ok(true)
            };
        }
        Op::ZIncr { delta, .. } => {
            let cur = st.scores.get(&(k, member)).ok_or(Fallback)?.0;
            // As the apply script receives it: a non-finite delta is 0.
            let v = cur.unwrap_or(0.0) + finite_or_zero(*delta);
            if v.is_nan() {
                return Err(Fallback);
            }
            write(&mut st.scores, &mut st.written[ki], k, member, Some(v));
            return Ok(true);
        }
        Op::ZSet { score, .. } => {
            let score = finite_or_zero(*score);
            write(&mut st.scores, &mut st.written[ki], k, member, Some(score));
            return Ok(true);
        }
        Op::ZRem { .. } => {
            write(&mut st.scores, &mut st.written[ki], k, member, None);
            return Ok(true);
        }
        Op::LPushCapped { value, .. } => {
            st.pushes[ki].push(value);
            return Ok(true);
        }
        Op::Del { .. } => return Err(Fallback),
    };
    write(&mut st.hashes, &mut st.written[ki], k, member, new);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: Vec<(i64, Vec<Op>)>) -> PartitionBatch {
        let mut b = PartitionBatch::new("t", 0);
        for (o, ops) in records {
            b.push(o, ops);
        }
        b
    }

    fn hi(key: &str, field: &str, delta: i64) -> Op {
        Op::HIncr {
            key: key.into(),
            field: field.into(),
            delta,
        }
    }

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_delete_or_a_key_of_two_types_goes_to_the_script() {
        let del = batch(vec![(0, vec![Op::Del { key: "k".into() }])]);
        assert!(plan(&del).is_none());
        let two = batch(vec![(
            0,
            vec![
                hi("k", "f", 1),
                Op::ZIncr {
                    key: "k".into(),
                    member: "m".into(),
                    delta: 1.0,
                },
            ],
        )]);
        assert!(plan(&two).is_none());
    }

    #[test]
    fn only_fields_first_read_are_read() {
        let b = batch(vec![
            (
                0,
                vec![
                    Op::HSet {
                        key: "k".into(),
                        field: "a".into(),
                        value: "1".into(),
                    },
                    hi("k", "a", 1),
                    hi("k", "b", 1),
                ],
            ),
            (1, vec![hi("k", "b", 2)]),
        ]);
        let p = plan(&b).unwrap();
        assert_eq!(p.keys.len(), 1);
        assert_eq!(p.keys[0].reads, vec!["b"]);
    }

    #[test]
    fn records_fold_with_the_scripts_semantics() {
        let once = |f: &str| Op::Once {
            key: "seen".into(),
            field: f.into(),
            ttl_ms: 100,
        };
        let b = batch(vec![
            (4, vec![hi("u", "n", 100)]), // at the watermark: skipped
            (5, vec![once("x"), hi("u", "n", 1)]),
            (6, vec![once("x"), hi("u", "n", 10)]), // id seen in the batch
            (7, vec![once("y"), hi("u", "n", 5)]),  // id seen before
        ]);
        let p = plan(&b).unwrap();
        let replies = vec![
            Value::Array(vec![bulk("4")]),
            Value::Array(vec![bulk("2")]),             // u (KEYS[2]): n
            Value::Array(vec![Value::Nil, bulk("1")]), // seen (KEYS[3]): x, y
        ];
        let f = fold(&b, &p, replies).unwrap();
        assert_eq!((f.applied, f.skipped, f.top), (3, 1, Some(7)));
        assert_eq!(f.wm_raw, "4");
        // Every value read is checked at the commit, read or not used.
        assert_eq!(
            f.checks,
            vec![
                (2, "v", vec!["n".to_string(), "2".to_string()]),
                (3, "v", vec!["y".to_string(), "1".to_string()]),
                (3, "n", vec!["x".to_string()]),
            ]
        );
        let u: Vec<_> = f.sections.iter().filter(|s| s.0 == 2).collect();
        assert_eq!(u, vec![&(2, "h", vec!["n".to_string(), "3".to_string()])]);
        assert!(f.sections.contains(&(3, "h", vec!["x".into(), "1".into()])));
        assert!(f.sections.contains(&(3, "e", vec!["100".into()])));
    }

    #[test]
    fn text_where_a_number_is_needed_goes_to_the_script() {
        let b = batch(vec![(0, vec![hi("u", "n", 1)])]);
        let p = plan(&b).unwrap();
        let replies = vec![
            Value::Array(vec![Value::Nil]),
            Value::Array(vec![bulk("text")]),
        ];
        assert_eq!(fold(&b, &p, replies).unwrap_err(), NotFolded::Fallback);
        let over = vec![
            Value::Array(vec![Value::Nil]),
            Value::Array(vec![bulk(&i64::MAX.to_string())]),
        ];
        assert_eq!(fold(&b, &p, over).unwrap_err(), NotFolded::Fallback);
    }

    #[test]
    fn a_store_behind_the_expectation_is_reported() {
        let mut b = batch(vec![(9, vec![hi("u", "n", 1)])]);
        b.expect_through = Some(8);
        let p = plan(&b).unwrap();
        let replies = vec![
            Value::Array(vec![bulk("3")]),
            Value::Array(vec![Value::Nil]),
        ];
        assert_eq!(
            fold(&b, &p, replies).unwrap_err(),
            NotFolded::Behind(Some(3))
        );
    }

    #[test]
    fn long_sections_are_split_in_whole_pairs() {
        let mut out = Vec::new();
        let items: Vec<String> = (0..2 * CHUNK + 2).map(|i| i.to_string()).collect();
        push_sections(&mut out, 2, "h", items, 2);
        assert_eq!(out.len(), 3);
        assert!(out
            .iter()
            .all(|(_, _, v)| v.len() % 2 == 0 && v.len() <= CHUNK));
    }

    #[test]
    fn non_finite_scores_fold_as_the_script_receives_them() {
        // The apply script gets non-finite floats as "0" (a decayed
        // popularity delta that overflowed): the fold must agree.
        let z = |delta: f64| Op::ZIncr {
            key: "z".into(),
            member: "m".into(),
            delta,
        };
        let b = batch(vec![(0, vec![z(f64::INFINITY), z(2.5)])]);
        let p = plan(&b).unwrap();
        let replies = vec![
            Value::Array(vec![Value::Nil]),
            Value::Array(vec![bulk("1")]),
        ];
        let f = fold(&b, &p, replies).unwrap();
        assert!(f
            .sections
            .contains(&(2, "z", vec!["3.5".to_string(), "m".to_string()])));
    }

    #[test]
    fn long_checks_keep_names_and_values_in_one_section() {
        let mut out = Vec::new();
        let present: Vec<(&str, String)> = (0..CHUNK).map(|i| ("f", i.to_string())).collect();
        push_checks(&mut out, 2, ("v", "n"), present, vec!["g".into()]);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].2.len(), CHUNK);
        assert_eq!(out[0].2[CHUNK / 2], "0");
        assert_eq!(out[2], (2, "n", vec!["g".to_string()]));
    }
}

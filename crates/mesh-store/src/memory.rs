//! The in-memory implementation for the embedded mode and tests. It keeps
//! Redis's value semantics (numbers stored as strings in hashes) so that
//! services read both stores with the same code.
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::op::{Op, PartitionBatch};
use crate::{full_key, Applied, HashRead, HashReply, Slot, WATERMARK_KEY};

#[derive(Debug, Clone)]
enum Value {
    Hash(HashMap<String, String>),
    ZSet(HashMap<String, f64>),
    List(VecDeque<String>),
}

/// State in process memory; clones share the same data.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<HashMap<String, Value>>>,
    prefix: Arc<str>,
}

impl MemoryStore {
    pub fn new(prefix: &str) -> Self {
        MemoryStore {
            inner: Arc::default(),
            prefix: prefix.into(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Value>> {
        // A panic while holding the lock cannot leave a half-applied batch
        // visible to anyone but the panicking caller's own test; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn apply(&self, scope: &str, batch: &PartitionBatch) -> crate::Result<Applied> {
        let slot = Slot {
            scope,
            partition: batch.partition,
        };
        let wm_key = full_key(&self.prefix, slot, WATERMARK_KEY);
        let mut data = self.lock();
        let wm = hash(&mut data, &wm_key)
            .get(&batch.source_topic)
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(-1);
        if batch.expect_through.is_some_and(|e| wm < e) {
            return Err(crate::behind(batch, (wm >= 0).then_some(wm)));
        }
        let mut out = Applied::default();
        let mut top = wm;
        for (offset, ops) in &batch.records {
            if *offset <= wm {
                out.skipped += 1;
                continue;
            }
            for op in ops {
                let key = full_key(&self.prefix, slot, op.key());
                match op {
                    Op::Once { field, .. } => {
                        let h = hash(&mut data, &key);
                        if h.contains_key(field) {
                            break;
                        }
                        h.insert(field.clone(), "1".into());
                        continue;
                    }
                    Op::Unless { field, .. } => {
                        if matches!(data.get(&key), Some(Value::Hash(h)) if h.contains_key(field)) {
                            break;
                        }
                        continue;
                    }
                    _ => {}
                }
                apply_op(&mut data, &key, op);
            }
            out.applied += 1;
            top = *offset;
        }
        if top > wm {
            hash(&mut data, &wm_key).insert(batch.source_topic.clone(), top.to_string());
        }
        if out.applied > 0 {
            let h = hash(&mut data, &wm_key);
            let n = h
                .entry(crate::tally_field(&batch.source_topic))
                .or_insert_with(|| "0".into());
            *n = (n.parse::<u64>().unwrap_or(0) + out.applied).to_string();
        }
        Ok(out)
    }

    pub(crate) fn watermark(&self, slot: Slot<'_>, source_topic: &str) -> Option<i64> {
        let data = self.lock();
        match data.get(&full_key(&self.prefix, slot, WATERMARK_KEY)) {
            Some(Value::Hash(h)) => h.get(source_topic).and_then(|v| v.parse().ok()),
            _ => None,
        }
    }

    pub(crate) fn applied_records(&self, slot: Slot<'_>, source_topic: &str) -> u64 {
        let data = self.lock();
        match data.get(&full_key(&self.prefix, slot, WATERMARK_KEY)) {
            Some(Value::Hash(h)) => h
                .get(&crate::tally_field(source_topic))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            _ => 0,
        }
    }

    pub(crate) fn hgetall(&self, slot: Slot<'_>, key: &str) -> HashMap<String, String> {
        match self.lock().get(&full_key(&self.prefix, slot, key)) {
            Some(Value::Hash(h)) => h.clone(),
            _ => HashMap::new(),
        }
    }

    pub(crate) fn hread(&self, read: &HashRead<'_>) -> HashReply {
        let data = self.lock();
        match read {
            HashRead::Fields { slot, key, fields } => {
                let h = match data.get(&full_key(&self.prefix, *slot, key)) {
                    Some(Value::Hash(h)) => Some(h),
                    _ => None,
                };
                HashReply::Fields(
                    fields
                        .iter()
                        .map(|f| h.and_then(|h| h.get(f.as_str())).cloned())
                        .collect(),
                )
            }
            HashRead::Keys { slot, key } => {
                HashReply::Keys(match data.get(&full_key(&self.prefix, *slot, key)) {
                    Some(Value::Hash(h)) => h.keys().cloned().collect(),
                    _ => Vec::new(),
                })
            }
        }
    }

    pub(crate) fn ztop(&self, slot: Slot<'_>, key: &str, n: usize) -> Vec<(String, f64)> {
        let mut v: Vec<(String, f64)> = match self.lock().get(&full_key(&self.prefix, slot, key)) {
            Some(Value::ZSet(z)) => z.iter().map(|(m, s)| (m.clone(), *s)).collect(),
            _ => Vec::new(),
        };
        // Redis orders equal scores by member, descending under REV.
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
        v.truncate(n);
        v
    }

    pub(crate) fn zcap(&self, slot: Slot<'_>, keys: &[&str], keep: usize, above: usize) -> usize {
        let mut data = self.lock();
        let mut cut = 0;
        for key in keys {
            if let Some(Value::ZSet(z)) = data.get_mut(&full_key(&self.prefix, slot, key)) {
                if z.len() > above {
                    let mut v: Vec<(String, f64)> = z.drain().collect();
                    // The order of `ztop` (and of Redis's `ZRANGE ... REV`).
                    v.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| b.0.cmp(&a.0)));
                    v.truncate(keep);
                    z.extend(v);
                    cut += 1;
                }
            }
        }
        cut
    }

    pub(crate) fn lrange(&self, slot: Slot<'_>, key: &str, n: usize) -> Vec<String> {
        match self.lock().get(&full_key(&self.prefix, slot, key)) {
            Some(Value::List(l)) => l.iter().take(n).cloned().collect(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn hset_if(
        &self,
        slot: Slot<'_>,
        key: &str,
        guard: &[(&str, Option<&str>)],
        set: &[(&str, &str)],
    ) -> bool {
        let full = full_key(&self.prefix, slot, key);
        let mut data = self.lock();
        let current = match data.get(&full) {
            Some(Value::Hash(h)) => Some(h),
            _ => None,
        };
        let holds = guard.iter().all(|(field, expected)| {
            current.and_then(|h| h.get(*field)).map(String::as_str) == *expected
        });
        if holds && !set.is_empty() {
            let h = hash(&mut data, &full);
            for (field, value) in set {
                h.insert(field.to_string(), value.to_string());
            }
        }
        holds
    }

    pub(crate) fn clear_scope(&self, scope: &str, keep: &[&str]) -> u64 {
        let mut data = self.lock();
        let before = data.len();
        data.retain(|k, _| !crate::clears(&self.prefix, scope, k, keep));
        (before - data.len()) as u64
    }
}

fn hash<'a>(data: &'a mut HashMap<String, Value>, key: &str) -> &'a mut HashMap<String, String> {
    let v = data
        .entry(key.to_string())
        .or_insert_with(|| Value::Hash(HashMap::new()));
    if !matches!(v, Value::Hash(_)) {
        *v = Value::Hash(HashMap::new());
    }
    match v {
        Value::Hash(h) => h,
        _ => unreachable!("just made a hash"),
    }
}

fn zset<'a>(data: &'a mut HashMap<String, Value>, key: &str) -> &'a mut HashMap<String, f64> {
    let v = data
        .entry(key.to_string())
        .or_insert_with(|| Value::ZSet(HashMap::new()));
    if !matches!(v, Value::ZSet(_)) {
        *v = Value::ZSet(HashMap::new());
    }
    match v {
        Value::ZSet(z) => z,
        _ => unreachable!("just made a sorted set"),
    }
}

fn apply_op(data: &mut HashMap<String, Value>, key: &str, op: &Op) {
    match op {
        Op::HIncr { field, delta, .. } => {
            let h = hash(data, key);
            let cur: i64 = h.get(field).and_then(|v| v.parse().ok()).unwrap_or(0);
            h.insert(field.clone(), (cur + delta).to_string());
        }
        Op::HIncrFloat { field, delta, .. } => {
            let h = hash(data, key);
            let cur: f64 = h.get(field).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            h.insert(field.clone(), format!("{:?}", cur + delta));
        }
        Op::HSet { field, value, .. } => {
            hash(data, key).insert(field.clone(), value.clone());
        }
        Op::HSetNx { field, value, .. } => {
            hash(data, key)
                .entry(field.clone())
                .or_insert_with(|| value.clone());
        }
        Op::HMax { field, value, .. } | Op::HMin { field, value, .. } => {
            let max = matches!(op, Op::HMax { .. });
            let h = hash(data, key);
            let cur: Option<i64> = h.get(field).and_then(|v| v.parse().ok());
            let replace = match cur {
                None => true,
                Some(c) => (max && *value > c) || (!max && *value < c),
            };
            if replace {
                h.insert(field.clone(), value.to_string());
            }
        }
        Op::ZIncr { member, delta, .. } => {
            *zset(data, key).entry(member.clone()).or_insert(0.0) += delta;
        }
        Op::ZRem { member, .. } => {
            if let Some(Value::ZSet(z)) = data.get_mut(key) {
                z.remove(member);
            }
        }
        Op::ZSet { member, score, .. } => {
            zset(data, key).insert(member.clone(), *score);
        }
        Op::LPushCapped { value, max_len, .. } => {
            let v = data
                .entry(key.to_string())
                .or_insert_with(|| Value::List(VecDeque::new()));
            if !matches!(v, Value::List(_)) {
                *v = Value::List(VecDeque::new());
            }
            if let Value::List(l) = v {
                l.push_front(value.clone());
                l.truncate((*max_len).max(1) as usize);
            }
        }
        Op::HDel { field, .. } => {
            if let Some(Value::Hash(h)) = data.get_mut(key) {
                h.remove(field);
            }
        }
        Op::Del { .. } => {
            data.remove(key);
        }
        // Decided by the caller: it may skip the record's later ops.
        Op::Once { .. } | Op::Unless { .. } => {}
    }
}

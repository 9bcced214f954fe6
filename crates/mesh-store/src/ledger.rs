//! Id claims: how ingest publishes a retried event id only once.
//!
//! A publisher claims an id as *pending* (short TTL) before producing, then
//! marks it *done* (long TTL) once the broker acknowledged it, or releases it
//! when producing failed. A crash between claim and produce leaves a pending
//! claim that expires, so the caller's retry is published later rather than
//! lost.
//!
//! # In Redis: small hashes, no key per id
//!
//! Each id becomes 96 bits of its SHA-256 (a 12-byte field) in one of
//! [`BUCKETS`] hashes of the current *generation* (`done_ttl` long, counted
//! from the Unix epoch): `<prefix>:ids:{<bucket>}:<generation>`. A field's
//! value is `d` (published) or the Unix ms at which its pending claim
//! expires. A claim looks in the current generation and then in the one
//! before, so an id marked at time t is found until at least t + `done_ttl`;
//! a generation's hashes expire at the end of the next generation. At up to
//! 128 fields a hash stays in Redis's compact listpack encoding: ~20 bytes
//! per id where a key per id (the previous layout, `<prefix>:ids:<id>`) cost
//! ~120. Ids claimed under that layout by an earlier release are not
//! consulted: a retry of such an id within `done_ttl` of the upgrade is
//! published again (profile's and the other consumers' own id checks still
//! apply it once).
//!
//! Both generations of a bucket share a hash tag, so a claim is one script
//! per bucket on a cluster too. Two distinct ids share a field only if 108
//! bits of their digests agree (bucket and field): for n ids in a
//! generation, odds of about n²/2^109 (n = 10^9: 3·10^-15).
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::{query_by_slot, StoreConnection};
use crate::Result;

/// Hashes the ids of one generation are spread over.
pub const BUCKETS: u16 = 4096;

/// Claims the fields of one or more buckets in one call. KEYS: per bucket,
/// the current generation's hash and the previous one's. ARGV: now (Unix
/// ms), the value of a new pending claim (its expiry, Unix ms), the current
/// hashes' expiry (Unix ms), then per bucket the number of its fields and
/// the fields. Answers per field, in ARGV order: 0 new, 1 pending, 2 done.
const CLAIM_LUA: &str = "local now=tonumber(ARGV[1]) local out={} local i=4 \
for k=1,#KEYS,2 do local cur,prev,w=KEYS[k],KEYS[k+1],false \
local n=tonumber(ARGV[i]) i=i+1 for j=i,i+n-1 do local f=ARGV[j] \
local v=redis.call('HGET',cur,f) if not v then v=redis.call('HGET',prev,f) end \
if v=='d' then out[#out+1]=2 elseif v and tonumber(v)>now then out[#out+1]=1 \
else redis.call('HSET',cur,f,ARGV[2]) w=true out[#out+1]=0 end end i=i+n \
if w then redis.call('PEXPIREAT',cur,ARGV[3]) end end return out";

/// Slack on a generation's expiry for clocks of ingest replicas that
/// disagree.
const EXPIRY_SLACK_MS: u64 = 60_000;

/// Where one id lives: its bucket and its field.
fn locate(id: &str) -> (u16, [u8; 12]) {
    use sha2::Digest as _;
    let d = sha2::Sha256::digest(id.as_bytes());
    let mut field = [0u8; 12];
    field.copy_from_slice(&d[..12]);
    (u16::from_be_bytes([d[12], d[13]]) % BUCKETS, field)
}

/// The ids of a call grouped by bucket, in first-use order; within a
/// bucket in call order.
struct Section {
    bucket: u16,
    at: Vec<usize>,
    fields: Vec<[u8; 12]>,
}

fn sections(ids: &[String]) -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    let mut index: HashMap<u16, usize> = HashMap::new();
    for (i, id) in ids.iter().enumerate() {
        let (bucket, field) = locate(id);
        let s = *index.entry(bucket).or_insert_with(|| {
            out.push(Section {
                bucket,
                at: Vec::new(),
                fields: Vec::new(),
            });
            out.len() - 1
        });
        out[s].at.push(i);
        out[s].fields.push(field);
    }
    out
}

/// The generation of `now_ms` for generations `len_ms` long.
fn generation(now_ms: u64, len_ms: u64) -> u64 {
    now_ms / len_ms.max(1)
}

fn bucket_key(prefix: &str, bucket: u16, generation: u64) -> String {
    format!("{prefix}:ids:{{{bucket}}}:{generation}")
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Outcome of claiming one id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The caller owns the id now and must mark or release it.
    New,
    /// The id was already published.
    Done,
    /// Another request is publishing the id right now.
    Pending,
}

/// Where claims live.
#[derive(Clone)]
pub enum IdLedger {
    Redis {
        conn: StoreConnection,
        prefix: String,
        pending_ttl: Duration,
        done_ttl: Duration,
    },
    Memory {
        inner: Arc<Mutex<HashMap<String, (bool, Instant)>>>,
        pending_ttl: Duration,
        done_ttl: Duration,
    },
}

impl IdLedger {
    /// Claims in Redis under `<prefix>:ids:<id>`. `conn` is usually
    /// [`crate::RedisStore::connection`] (a server or a cluster); the keys
    /// carry no hash tag, so on a cluster each call is split into one
    /// pipeline per slot.
    pub fn redis(
        conn: impl Into<StoreConnection>,
        prefix: &str,
        pending_ttl: Duration,
        done_ttl: Duration,
    ) -> Self {
        IdLedger::Redis {
            conn: conn.into(),
            prefix: prefix.to_string(),
            pending_ttl,
            done_ttl,
        }
    }

    pub fn memory(pending_ttl: Duration, done_ttl: Duration) -> Self {
        IdLedger::Memory {
            inner: Arc::default(),
            pending_ttl,
            done_ttl,
        }
    }

    /// Claims every id (in order); one round trip on Redis.
    pub async fn claim(&self, ids: &[String]) -> Result<Vec<Claim>> {
        self.claim_at(ids, now_ms()).await
    }

    /// [`IdLedger::claim`] at `now_ms` (Unix ms) on Redis; the memory
    /// ledger uses its own clock.
    pub async fn claim_at(&self, ids: &[String], now_ms: u64) -> Result<Vec<Claim>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            IdLedger::Redis {
                conn,
                prefix,
                pending_ttl,
                done_ttl,
            } => {
                let len = done_ttl.as_millis() as u64;
                let g = generation(now_ms, len);
                let expire_at = (g + 2) * len.max(1) + EXPIRY_SLACK_MS;
                let pending_until = now_ms + pending_ttl.as_millis() as u64;
                // One script for the whole call on one server; on a
                // cluster one per hash slot (a script's keys share a slot).
                let parts = sections(ids);
                let mut groups: Vec<Vec<&Section>> = Vec::new();
                if conn.is_cluster() {
                    let mut by_slot: HashMap<redis::cluster_routing::Slot, usize> = HashMap::new();
                    for s in &parts {
                        let slot = redis::cluster_routing::Slot::for_key(
                            bucket_key(prefix, s.bucket, g).as_bytes(),
                        );
                        let at = *by_slot.entry(slot).or_insert_with(|| {
                            groups.push(Vec::new());
                            groups.len() - 1
                        });
                        groups[at].push(s);
                    }
                } else {
                    groups.push(parts.iter().collect());
                }
                let cmds = groups
                    .iter()
                    .map(|group| {
                        let mut c = redis::cmd("EVAL");
                        c.arg(CLAIM_LUA).arg(2 * group.len());
                        for s in group {
                            c.arg(bucket_key(prefix, s.bucket, g)).arg(bucket_key(
                                prefix,
                                s.bucket,
                                g.saturating_sub(1),
                            ));
                        }
                        c.arg(now_ms).arg(pending_until).arg(expire_at);
                        for s in group {
                            c.arg(s.fields.len());
                            for f in &s.fields {
                                c.arg(&f[..]);
                            }
                        }
                        (bucket_key(prefix, group[0].bucket, g), c)
                    })
                    .collect();
                let mut out = vec![Claim::New; ids.len()];
                for (group, v) in groups.iter().zip(query_by_slot(conn, cmds).await?) {
                    let codes: Vec<i64> =
                        redis::from_redis_value(v).map_err(redis::RedisError::from)?;
                    let at = group.iter().flat_map(|s| s.at.iter());
                    if codes.len() != group.iter().map(|s| s.at.len()).sum::<usize>() {
                        return Err(redis::RedisError::from((
                            redis::ErrorKind::Client,
                            "id ledger: the claim script answered a different number of ids",
                        ))
                        .into());
                    }
                    for (&i, code) in at.zip(codes) {
                        out[i] = match code {
                            0 => Claim::New,
                            2 => Claim::Done,
                            _ => Claim::Pending,
                        };
                    }
                }
                Ok(out)
            }
            IdLedger::Memory {
                inner, pending_ttl, ..
            } => {
                let now = Instant::now();
                let mut map = inner.lock().unwrap_or_else(|e| e.into_inner());
                Ok(ids
                    .iter()
                    .map(|id| match map.get(id) {
                        Some((done, until)) if *until > now => {
                            if *done {
                                Claim::Done
                            } else {
                                Claim::Pending
                            }
                        }
                        _ => {
                            map.insert(id.clone(), (false, now + *pending_ttl));
                            Claim::New
                        }
                    })
                    .collect())
            }
        }
    }

    /// Marks claimed ids as published.
    pub async fn mark_done(&self, ids: &[String]) -> Result<()> {
        self.mark_done_at(ids, now_ms()).await
    }

    /// [`IdLedger::mark_done`] at `now_ms` (Unix ms) on Redis.
    pub async fn mark_done_at(&self, ids: &[String], now_ms: u64) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        match self {
            IdLedger::Redis {
                conn,
                prefix,
                done_ttl,
                ..
            } => {
                let len = done_ttl.as_millis() as u64;
                let g = generation(now_ms, len);
                let expire_at = (g + 2) * len.max(1) + EXPIRY_SLACK_MS;
                let mut cmds = Vec::new();
                for s in sections(ids) {
                    let cur = bucket_key(prefix, s.bucket, g);
                    let mut set = redis::cmd("HSET");
                    set.arg(&cur);
                    for f in &s.fields {
                        set.arg(&f[..]).arg("d");
                    }
                    let mut exp = redis::cmd("PEXPIREAT");
                    exp.arg(&cur).arg(expire_at);
                    cmds.push((cur.clone(), set));
                    cmds.push((cur, exp));
                }
                query_by_slot(conn, cmds).await?;
            }
            IdLedger::Memory {
                inner, done_ttl, ..
            } => {
                let until = Instant::now() + *done_ttl;
                let mut map = inner.lock().unwrap_or_else(|e| e.into_inner());
                for id in ids {
                    map.insert(id.clone(), (true, until));
                }
                // Bound memory: drop expired claims now and then.
                if map.len() > 100_000 {
                    let now = Instant::now();
                    map.retain(|_, (_, t)| *t > now);
                }
            }
        }
        Ok(())
    }

    /// Gives up claims whose publish failed, so a retry can publish them.
    pub async fn release(&self, ids: &[String]) -> Result<()> {
        self.release_at(ids, now_ms()).await
    }

    /// [`IdLedger::release`] at `now_ms` (Unix ms) on Redis: the claim is
    /// removed from the current generation and the one before.
    pub async fn release_at(&self, ids: &[String], now_ms: u64) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        match self {
            IdLedger::Redis {
                conn,
                prefix,
                done_ttl,
                ..
            } => {
                let g = generation(now_ms, done_ttl.as_millis() as u64);
                let mut cmds = Vec::new();
                for s in sections(ids) {
                    for gen in [g, g.saturating_sub(1)] {
                        let key = bucket_key(prefix, s.bucket, gen);
                        let mut del = redis::cmd("HDEL");
                        del.arg(&key);
                        for f in &s.fields {
                            del.arg(&f[..]);
                        }
                        cmds.push((key, del));
                    }
                }
                query_by_slot(conn, cmds).await?;
            }
            IdLedger::Memory { inner, .. } => {
                let mut map = inner.lock().unwrap_or_else(|e| e.into_inner());
                for id in ids {
                    map.remove(id);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_always_has_the_same_place_and_ids_spread_over_the_buckets() {
        assert_eq!(locate("t/e-1"), locate("t/e-1"));
        assert_ne!(locate("t/e-1").1, locate("t/e-2").1);
        assert_ne!(locate("a/e-1"), locate("b/e-1"));
        let mut used = std::collections::HashSet::new();
        for i in 0..20_000 {
            let (b, _) = locate(&format!("t/e-{i}"));
            assert!(b < BUCKETS);
            used.insert(b);
        }
        // 20,000 draws over 4,096 buckets leave ~0.8% of them empty.
        assert!(used.len() > 4_000, "{}", used.len());
    }

    #[test]
    fn sections_keep_each_bucket_in_call_order_and_cover_every_id() {
        let ids: Vec<String> = (0..500).map(|i| format!("t/e-{}", i % 300)).collect();
        let parts = sections(&ids);
        let mut seen = vec![false; ids.len()];
        for s in &parts {
            assert!(s.at.windows(2).all(|w| w[0] < w[1]));
            for (&i, f) in s.at.iter().zip(&s.fields) {
                assert_eq!(locate(&ids[i]), (s.bucket, *f));
                assert!(!std::mem::replace(&mut seen[i], true));
            }
        }
        assert!(seen.iter().all(|&x| x));
    }

    #[test]
    fn generations_are_done_ttl_long_and_keys_share_a_hash_tag() {
        assert_eq!(generation(86_399_999, 86_400_000), 0);
        assert_eq!(generation(86_400_000, 86_400_000), 1);
        assert_eq!(generation(5, 0), 5);
        assert_eq!(bucket_key("mesh", 7, 20_000), "mesh:ids:{7}:20000");
    }
}

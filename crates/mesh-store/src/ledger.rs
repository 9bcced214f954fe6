//! Id claims: how ingest publishes a retried event id only once.
//!
//! A publisher claims an id as *pending* (short TTL) before producing, then
//! marks it *done* (long TTL) once the broker acknowledged it, or releases it
//! when producing failed. A crash between claim and produce leaves a pending
//! claim that expires, so the caller's retry is published later rather than
//! lost.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::connection::{query_by_slot, StoreConnection};
use crate::Result;

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
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        match self {
            IdLedger::Redis {
                conn,
                prefix,
                pending_ttl,
                ..
            } => {
                // SET NX GET returns the old value when the key existed.
                let cmds = per_id(prefix, ids, "SET", |c| {
                    c.arg("p")
                        .arg("NX")
                        .arg("GET")
                        .arg("PX")
                        .arg(pending_ttl.as_millis() as u64);
                });
                query_by_slot(conn, cmds)
                    .await?
                    .into_iter()
                    .map(|v| {
                        let old: Option<String> =
                            redis::from_redis_value(v).map_err(redis::RedisError::from)?;
                        Ok(match old.as_deref() {
                            None => Claim::New,
                            Some("d") => Claim::Done,
                            Some(_) => Claim::Pending,
                        })
                    })
                    .collect()
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
                let cmds = per_id(prefix, ids, "SET", |c| {
                    c.arg("d").arg("PX").arg(done_ttl.as_millis() as u64);
                });
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
        if ids.is_empty() {
            return Ok(());
        }
        match self {
            IdLedger::Redis { conn, prefix, .. } => {
                query_by_slot(conn, per_id(prefix, ids, "DEL", |_| {})).await?;
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

/// One command `name <prefix>:ids:<id> <args>` per id, paired with its key
/// for [`query_by_slot`].
fn per_id(
    prefix: &str,
    ids: &[String],
    name: &str,
    args: impl Fn(&mut redis::Cmd),
) -> Vec<(String, redis::Cmd)> {
    ids.iter()
        .map(|id| {
            let key = format!("{prefix}:ids:{id}");
            let mut c = redis::cmd(name);
            c.arg(&key);
            args(&mut c);
            (key, c)
        })
        .collect()
}

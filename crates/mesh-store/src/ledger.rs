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

use redis::aio::ConnectionManager;

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
        conn: ConnectionManager,
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
    pub fn redis(
        conn: ConnectionManager,
        prefix: &str,
        pending_ttl: Duration,
        done_ttl: Duration,
    ) -> Self {
        IdLedger::Redis {
            conn,
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
                let mut pipe = redis::pipe();
                for id in ids {
                    // SET NX GET returns the old value when the key existed.
                    pipe.cmd("SET")
                        .arg(format!("{prefix}:ids:{id}"))
                        .arg("p")
                        .arg("NX")
                        .arg("GET")
                        .arg("PX")
                        .arg(pending_ttl.as_millis() as u64);
                }
                let olds: Vec<Option<String>> = pipe.query_async(&mut conn.clone()).await?;
                Ok(olds
                    .into_iter()
                    .map(|o| match o.as_deref() {
                        None => Claim::New,
                        Some("d") => Claim::Done,
                        Some(_) => Claim::Pending,
                    })
                    .collect())
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
                let mut pipe = redis::pipe();
                for id in ids {
                    pipe.cmd("SET")
                        .arg(format!("{prefix}:ids:{id}"))
                        .arg("d")
                        .arg("PX")
                        .arg(done_ttl.as_millis() as u64)
                        .ignore();
                }
                pipe.query_async::<()>(&mut conn.clone()).await?;
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
                let mut pipe = redis::pipe();
                for id in ids {
                    pipe.cmd("DEL").arg(format!("{prefix}:ids:{id}")).ignore();
                }
                pipe.query_async::<()>(&mut conn.clone()).await?;
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

//! Feature state in the store: core [`StateOp`]s → store [`Op`]s on the
//! write side, and reads that merge every partition on the read side.
//!
//! **Writes.** The consumer writes an event's counters into the slot of the
//! partition that consumed it. A user's own hash therefore lives in one slot
//! (the user's partition), but a device, IP, instrument or shipping location
//! is shared by users of many partitions, so its counters are spread over
//! every slot. `Incr` becomes `HINCRBYFLOAT`, `SetIfAbsent` becomes `HSETNX`.
//! The core's per-field `expire_at` is **not** honoured: Redis 7.0 has no
//! per-field expiry (`HEXPIREAT` came in 7.4) and the store contract has no
//! expiry op, so old bucket fields stay until a replay rebuilds the scope.
//! Reads never look at them (windows read only their own buckets), so they
//! cost memory, not correctness.
//!
//! **Reads.** For each of the core's [`ReadRequest`]s: the user hash is read
//! from the user's slot only; every other hash from every slot, numeric
//! fields summed. `HLEN` of a distinct-accounts set cannot be summed (an
//! account seen in two slots would count twice), so its member fields are
//! read (`HKEYS`) and counted distinct. All of it is one pipelined round
//! trip. An *overlay* of ops not yet applied (earlier records of the batch
//! the consumer is working on) is added on top, so each order sees every
//! event before it.
use std::collections::{HashMap, HashSet};

use mesh_fraud::state::ReadReply;
use mesh_fraud::{ReadRequest, ReadResults, StateOp};
use mesh_store::{HashRead, HashReply, Op, Slot, StateStore};

use crate::error::{Error, Result};

/// Scope of every fraud key in the store.
pub const SCOPE: &str = "fraud";

/// Store ops of core ops (written in the consuming partition's slot).
pub fn store_ops(ops: &[StateOp]) -> Vec<Op> {
    ops.iter()
        .map(|op| match op {
            // expire_at cannot be honoured per field: see the module docs.
            StateOp::Incr {
                key, field, delta, ..
            } => Op::HIncrFloat {
                key: key.clone(),
                field: field.clone(),
                delta: *delta,
            },
            StateOp::SetIfAbsent { key, field, value } => Op::HSetNx {
                key: key.clone(),
                field: field.clone(),
                value: format!("{value:?}"),
            },
        })
        .collect()
}

/// Reads feature state across the slots of every partition.
#[derive(Clone)]
pub struct FeatureReader {
    /// The state store.
    pub store: StateStore,
    /// Partitions of the input topics (= number of slots).
    pub partitions: i32,
}

impl FeatureReader {
    /// Answers `reqs` in one round trip. `owner_key` is the store key that
    /// lives only in `owner_partition` (the user's hash); `overlay` holds
    /// ops not applied yet, added on top in order.
    pub async fn read(
        &self,
        reqs: &[ReadRequest],
        owner_key: &str,
        owner_partition: i32,
        overlay: &[StateOp],
    ) -> Result<ReadResults> {
        let all: Vec<i32> = (0..self.partitions).collect();
        let mut reads = Vec::new();
        let mut spans = Vec::with_capacity(reqs.len());
        for req in reqs {
            let start = reads.len();
            match req {
                ReadRequest::Fields { key, fields } => {
                    let parts = if key == owner_key {
                        std::slice::from_ref(&owner_partition)
                    } else {
                        all.as_slice()
                    };
                    for &partition in parts {
                        reads.push(HashRead::Fields {
                            slot: Slot {
                                scope: SCOPE,
                                partition,
                            },
                            key: key.clone(),
                            fields: fields.clone(),
                        });
                    }
                }
                ReadRequest::Len { key } => {
                    for &partition in &all {
                        reads.push(HashRead::Keys {
                            slot: Slot {
                                scope: SCOPE,
                                partition,
                            },
                            key: key.clone(),
                        });
                    }
                }
            }
            spans.push(start..reads.len());
        }
        let replies = self.store.hread_many(&reads).await?;
        let mut merged = Vec::with_capacity(reqs.len());
        for (req, span) in reqs.iter().zip(spans) {
            merged.push(merge(req, &replies[span])?);
        }
        apply_overlay(reqs, &mut merged, overlay);
        Ok(ReadResults(
            merged
                .into_iter()
                .map(|m| match m {
                    Merged::Fields(v) => ReadReply::Fields(v),
                    Merged::Members(m) => ReadReply::Len(m.len() as u64),
                })
                .collect(),
        ))
    }
}

/// One request's replies merged over the slots.
enum Merged {
    /// Field values summed over slots.
    Fields(Vec<Option<f64>>),
    /// Distinct member fields over slots.
    Members(HashSet<String>),
}

fn merge(req: &ReadRequest, replies: &[HashReply]) -> Result<Merged> {
    match req {
        ReadRequest::Fields { key, fields } => {
            let mut vals: Vec<Option<f64>> = vec![None; fields.len()];
            for reply in replies {
                let HashReply::Fields(v) = reply else {
                    return Err(corrupt(key, "expected field values"));
                };
                for (slot, raw) in vals.iter_mut().zip(v) {
                    if let Some(raw) = raw {
                        let x: f64 = raw
                            .parse()
                            .map_err(|_| corrupt(key, &format!("not a number: {raw:?}")))?;
                        *slot = Some(slot.unwrap_or(0.0) + x);
                    }
                }
            }
            Ok(Merged::Fields(vals))
        }
        ReadRequest::Len { key } => {
            let mut members = HashSet::new();
            for reply in replies {
                let HashReply::Keys(k) = reply else {
                    return Err(corrupt(key, "expected field names"));
                };
                members.extend(k.iter().cloned());
            }
            Ok(Merged::Members(members))
        }
    }
}

fn corrupt(key: &str, reason: &str) -> Error {
    Error::Corrupt {
        key: key.to_string(),
        reason: reason.to_string(),
    }
}

/// Adds not-yet-applied ops to merged replies, in order, with the store's
/// semantics (`HINCRBYFLOAT` adds, `HSETNX` fills an absent field or adds a
/// member).
fn apply_overlay(reqs: &[ReadRequest], merged: &mut [Merged], overlay: &[StateOp]) {
    if overlay.is_empty() {
        return;
    }
    let mut by_key: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, r) in reqs.iter().enumerate() {
        let key = match r {
            ReadRequest::Fields { key, .. } | ReadRequest::Len { key } => key.as_str(),
        };
        by_key.entry(key).or_default().push(i);
    }
    for op in overlay {
        let (key, field) = match op {
            StateOp::Incr { key, field, .. } | StateOp::SetIfAbsent { key, field, .. } => {
                (key.as_str(), field.as_str())
            }
        };
        let Some(idx) = by_key.get(key) else { continue };
        for &i in idx {
            match (&reqs[i], &mut merged[i]) {
                (ReadRequest::Fields { fields, .. }, Merged::Fields(vals)) => {
                    if let Some(j) = fields.iter().position(|f| f == field) {
                        vals[j] = match op {
                            StateOp::Incr { delta, .. } => Some(vals[j].unwrap_or(0.0) + delta),
                            StateOp::SetIfAbsent { value, .. } => Some(vals[j].unwrap_or(*value)),
                        };
                    }
                }
                (ReadRequest::Len { .. }, Merged::Members(m)) => {
                    m.insert(field.to_string());
                }
                _ => {}
            }
        }
    }
}

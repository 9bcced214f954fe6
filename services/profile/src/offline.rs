//! Applying events without a broker: replays of public data (`mesh report
//! cdnow`), benchmarks and tests. The same ops and the same store step as
//! the consumer (erasures included), without its once-per-id op; offsets
//! are positions in the given sequence.
use std::collections::BTreeMap;

use mesh_proto::events::v1::Envelope;
use mesh_store::{PartitionBatch, Slot};

use crate::engine::{Profiles, Snapshot};
use crate::error::Result;
use crate::handler::SCOPE;
use crate::{erasure, features};

/// Most records per store step, as the consumer's buffer.
pub const BATCH: usize = 500;

/// Applies `events` in order under the source name `source`, partitioned
/// like the consumer; `next_offset` carries offsets across calls (one entry
/// per partition).
pub async fn apply_events(
    p: &Profiles,
    source: &str,
    events: &[Envelope],
    next_offset: &mut BTreeMap<i32, i64>,
) -> Result<()> {
    let mut by_partition: BTreeMap<i32, Vec<&Envelope>> = BTreeMap::new();
    for e in events {
        let slot = p.slot_of(&features::member(&e.tenant_id, &e.user_id));
        by_partition.entry(slot.partition).or_default().push(e);
    }
    for (partition, evs) in by_partition {
        for chunk in evs.chunks(BATCH) {
            let mut batch = PartitionBatch::new(source, partition);
            let off = next_offset.entry(partition).or_insert(0);
            let slot = Slot {
                scope: SCOPE,
                partition,
            };
            let records: Vec<Option<&Envelope>> = chunk.iter().copied().map(Some).collect();
            for ops in erasure::run_ops(&p.store, slot, &p.features, &records, |_| None).await? {
                batch.push(*off, ops);
                *off += 1;
            }
            p.store.apply(SCOPE, &batch).await?;
        }
    }
    Ok(())
}

/// Every user's snapshot at `now_ms`, ascending by member.
pub async fn snapshots(p: &Profiles, now_ms: i64) -> Result<Vec<(String, Snapshot)>> {
    let mut out = Vec::new();
    for part in 0..p.partitions {
        for m in p.partition_members(part).await? {
            if let Some(s) = p.snapshot(&m, now_ms).await? {
                out.push((m, s));
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

//! Lifecycle stage distribution for the console, folded from the lifecycle
//! topic: every `mesh.profile.v1.StageTransition` profile publishes moves
//! one user to a stage. The reader assigns every partition from the
//! beginning without a consumer group (nothing committed, nothing to
//! rebalance), keeps each user's latest transition by `seq` (a republished
//! transition changes nothing), and counts users per stage. Users who never
//! changed stage (still NEW) are not in it.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use mesh_proto::profile::v1::{Stage, StageTransition};
use prost::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

/// Users per stage, from the transitions read so far.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageCounts {
    /// Stage name (`active`, `at_risk`, ...) to users.
    pub stages: BTreeMap<String, u64>,
    /// Transitions read (including republished ones).
    pub transitions: u64,
    /// Records that were not a `StageTransition`.
    pub undecodable: u64,
    pub error: Option<String>,
}

pub type SharedStages = Arc<Mutex<StageCounts>>;

fn stage_name(s: i32) -> String {
    Stage::try_from(s)
        .map(|s| s.as_str_name().trim_start_matches("STAGE_").to_lowercase())
        .unwrap_or_else(|_| format!("stage_{s}"))
}

/// Starts the reader as a task until `shutdown` (a task, not a blocking
/// thread, so a runtime that stops without cancelling does not wait for it).
pub fn spawn(
    brokers: String,
    topic: String,
    partitions: i32,
    shutdown: CancellationToken,
) -> SharedStages {
    let shared = SharedStages::default();
    let out = shared.clone();
    tokio::spawn(async move {
        if let Err(e) = read(&brokers, &topic, partitions, &out, &shutdown).await {
            out.lock().expect("stages lock").error = Some(format!("{topic}: {e}"));
        }
    });
    shared
}

/// A consumer of every partition of `topic` from the beginning, assigned
/// (no group membership: nothing committed, nothing to rebalance; `group`
/// only names it to the broker).
pub fn read_from_start(
    brokers: &str,
    group: &str,
    topic: &str,
    partitions: i32,
) -> rdkafka::error::KafkaResult<StreamConsumer> {
    let c: StreamConsumer = mesh_bus::security::client_config()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    Ok(c)
}

async fn read(
    brokers: &str,
    topic: &str,
    partitions: i32,
    out: &SharedStages,
    shutdown: &CancellationToken,
) -> rdkafka::error::KafkaResult<()> {
    let c = read_from_start(brokers, "mesh-console-stages", topic, partitions)?;
    // user -> (seq, stage)
    let mut latest: HashMap<String, (u32, i32)> = HashMap::new();
    loop {
        let m = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            m = c.recv() => m,
        };
        let mut s = out.lock().expect("stages lock");
        if m.is_ok() {
            // A consumer error is shown until the reader gets going again.
            s.error = None;
        }
        match m {
            Ok(m) => match m.payload().map(StageTransition::decode) {
                Some(Ok(t)) => {
                    s.transitions += 1;
                    let key = format!("{}/{}", t.tenant_id, t.user_id);
                    let prev = latest.get(&key).copied();
                    if prev.is_none_or(|(seq, _)| t.seq > seq) {
                        if let Some((_, old)) = prev {
                            let name = stage_name(old);
                            let n = s.stages.entry(name.clone()).or_insert(0);
                            *n = n.saturating_sub(1);
                            if *n == 0 {
                                s.stages.remove(&name);
                            }
                        }
                        *s.stages.entry(stage_name(t.new_stage)).or_insert(0) += 1;
                        latest.insert(key, (t.seq, t.new_stage));
                    }
                }
                _ => s.undecodable += 1,
            },
            Err(e) => s.error = Some(e.to_string()),
        }
    }
}

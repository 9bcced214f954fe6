//! The training pipeline behind `mesh train recommend`: interactions from
//! the event log (both input topics from offset 0) or from the recent
//! histories the service keeps ([`crate::model::interactions_from_store`]),
//! a model trained on them, and the artifact written atomically where the
//! running service watches (`MESH_RECOMMEND_MODEL`); the service swaps it
//! in at its next poll.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mesh_proto::events::v1::Envelope;
use mesh_recommend::{Interaction, ModelSpec};
use prost::Message as _;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model;

/// What `mesh train recommend` did.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    pub version: String,
    pub model: String,
    /// `log` or `store`.
    pub source: &'static str,
    pub path: PathBuf,
    pub interactions: usize,
    pub users: usize,
    pub items: usize,
    pub read_seconds: f64,
    pub train_seconds: f64,
    pub bytes: u64,
}

impl std::fmt::Display for TrainReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "trained {} version {} from the {} ({} interactions, {} users, {} items)",
            self.model, self.version, self.source, self.interactions, self.users, self.items
        )?;
        writeln!(
            f,
            "read {:.2} s, train {:.2} s",
            self.read_seconds, self.train_seconds
        )?;
        write!(
            f,
            "wrote {} ({} bytes); the service loads it at its next poll",
            self.path.display(),
            self.bytes
        )
    }
}

/// The interactions of every event of `topics`, from offset 0 to their end.
/// Blocking (call it on a blocking thread); `progress` gets the events read.
pub fn read_log_interactions(
    brokers: &str,
    topics: &[String],
    timeout: Duration,
    progress: &dyn Fn(u64),
) -> Result<Vec<Interaction>> {
    let events = mesh_bus::log::read_log(
        brokers,
        topics,
        timeout,
        "train-recommend",
        |b| Envelope::decode(b).ok(),
        progress,
    )?;
    Ok(model::interactions_from_events(&events))
}

/// Trains `spec` on `interactions` (read from `source` in `read_seconds`)
/// and writes the artifact to `path`.
pub async fn train_and_write(
    interactions: Vec<Interaction>,
    spec: ModelSpec,
    seed: u64,
    version: String,
    path: &Path,
    source: &'static str,
    read_seconds: f64,
) -> Result<TrainReport> {
    if interactions.is_empty() {
        return Err(Error::invalid(
            "interactions",
            format!("none found in the {source}: nothing to train on"),
        ));
    }
    let t = Instant::now();
    let v = version.clone();
    let n_interactions = interactions.len();
    let artifact = tokio::task::spawn_blocking(move || {
        model::train_from_interactions(&interactions, &spec, seed, &v)
    })
    .await
    .map_err(|e| Error::Task(e.to_string()))??;
    let train_seconds = t.elapsed().as_secs_f64();
    model::write_artifact(&artifact, path)?;
    Ok(TrainReport {
        version,
        model: artifact.model.name().to_string(),
        source,
        bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        path: path.to_path_buf(),
        interactions: n_interactions,
        users: artifact.user_ids.len(),
        items: artifact.item_ids.len(),
        read_seconds,
        train_seconds,
    })
}

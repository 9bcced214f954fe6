//! The trained model: loaded from `MESH_RECOMMEND_MODEL` at start, swapped
//! in without downtime when the file changes, and trained from live
//! interactions for `mesh train recommend`.
//!
//! Readers clone an `Arc` under a read lock held for a pointer copy, so a
//! swap never waits for a request and a request never sees half a model.
//! The file is checked by modification time and length every poll; a file
//! that fails to parse is logged and the previous model keeps serving.
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::Envelope;
use mesh_recommend::{Interaction, ModelArtifact, ModelSpec};
use mesh_runtime::model_file::{write_atomically, FileWatch};
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::keys::{self, HistEntry, SCOPE, USERS};
use crate::live::LiveReader;
use crate::metrics::MODEL_LOADS;
use crate::signals;

/// The current model, hot-swappable.
#[derive(Default)]
pub struct ModelHandle {
    current: RwLock<Option<Arc<ModelArtifact>>>,
    path: Option<PathBuf>,
    watch: FileWatch,
}

impl ModelHandle {
    /// A handle watching `path`. Loads it now if it exists; a missing file
    /// is not an error (the service runs without a model until it appears),
    /// an unreadable one is.
    pub fn open(path: Option<PathBuf>) -> Result<Self> {
        let h = ModelHandle {
            path,
            ..ModelHandle::default()
        };
        h.reload_if_changed()?;
        Ok(h)
    }

    /// A handle serving a fixed model (tests, benches).
    pub fn fixed(model: ModelArtifact) -> Self {
        ModelHandle {
            current: RwLock::new(Some(Arc::new(model))),
            ..ModelHandle::default()
        }
    }

    /// The model serving now.
    pub fn current(&self) -> Option<Arc<ModelArtifact>> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swaps in a model.
    pub fn swap(&self, model: ModelArtifact) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(model));
    }

    /// Loads the file if its modification time or length changed since the
    /// last load. Returns whether a new model was swapped in.
    pub fn reload_if_changed(&self) -> Result<bool> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let Some(bytes) = self.watch.read_if_changed(path).map_err(io)? else {
            return Ok(false);
        };
        let model = ModelArtifact::from_json(&bytes)
            .inspect_err(|_| MODEL_LOADS.with_label_values(&["failed"]).inc())?;
        tracing::info!(path = %path.display(), version = %model.version, model = model.model.name(), "recommend model loaded");
        MODEL_LOADS.with_label_values(&["loaded"]).inc();
        self.swap(model);
        Ok(true)
    }

    /// Polls the file every `every` until `shutdown`.
    pub fn spawn_watcher(
        self: Arc<Self>,
        every: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        mesh_runtime::shutdown::spawn_poller("recommend", every, shutdown, move || {
            self.reload_if_changed()
        })
    }
}

/// The interactions of a stream of events, as training input (user ids are
/// plain user ids: one model per mesh, the catalog keeps tenants apart).
/// Users erased anywhere in the stream are left out entirely: the log still
/// holds their events until retention drops them, the model must not.
pub fn interactions_from_events<'a>(
    events: impl IntoIterator<Item = &'a Envelope> + Clone,
) -> Vec<Interaction> {
    let erased: HashSet<(&str, &str)> = events
        .clone()
        .into_iter()
        .filter(|e| matches!(e.body, Some(Body::UserErased(_))))
        .map(|e| (e.tenant_id.as_str(), e.user_id.as_str()))
        .collect();
    events
        .into_iter()
        .filter(|e| !erased.contains(&(e.tenant_id.as_str(), e.user_id.as_str())))
        .flat_map(|e| {
            signals::signals(e)
                .0
                .into_iter()
                .map(move |s| signals::interaction(&e.user_id, &s.entry))
        })
        .collect()
}

/// Trains `spec` on interactions, labelled `version`.
pub fn train_from_interactions(
    interactions: &[Interaction],
    spec: &ModelSpec,
    seed: u64,
    version: &str,
) -> Result<ModelArtifact> {
    Ok(ModelArtifact::train_from_interactions(
        interactions,
        spec,
        seed,
        version,
    )?)
}

/// The interactions in the recent histories kept in the store (every slot
/// of the recommend scope, at most `max_users` users per partition).
pub async fn interactions_from_store(
    live: &LiveReader,
    max_users: usize,
) -> Result<Vec<Interaction>> {
    let mut interactions = Vec::new();
    for p in 0..live.partitions {
        let slot = mesh_store::Slot {
            scope: SCOPE,
            partition: p,
        };
        let users = live.store.ztop(slot, USERS, max_users).await?;
        let reads = users.iter().filter_map(|(tu, _)| {
            let (tenant, user) = tu.split_once('/')?;
            Some(async move {
                let list = live
                    .store
                    .lrange(
                        slot,
                        &keys::history(tenant, user),
                        live.live.history_len.max(1),
                    )
                    .await?;
                Ok::<_, Error>((user, list))
            })
        });
        for (user, list) in futures::future::try_join_all(reads).await? {
            interactions.extend(
                list.iter()
                    .filter_map(|s| HistEntry::decode(s))
                    .map(|h| signals::interaction(user, &h)),
            );
        }
    }
    Ok(interactions)
}

/// Trains on the recent histories kept in the store (every slot of the
/// recommend scope, at most `max_users` users per partition).
pub async fn train_from_store(
    live: &LiveReader,
    spec: &ModelSpec,
    seed: u64,
    version: &str,
    max_users: usize,
) -> Result<ModelArtifact> {
    let interactions = interactions_from_store(live, max_users).await?;
    train_from_interactions(&interactions, spec, seed, version)
}

/// Writes an artifact as JSON atomically (temporary file, then rename), so
/// a watcher never reads half a file.
pub fn write_artifact(model: &ModelArtifact, path: &Path) -> Result<()> {
    write_atomically(path, &model.to_json()?).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// A version label from the clock, `v<unix seconds>`: sortable.
pub fn version_label(now: SystemTime) -> String {
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    format!("v{secs}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_recommend::EventKind;

    fn model(version: &str) -> ModelArtifact {
        let ev: Vec<Interaction> = [("u1", "a"), ("u1", "b"), ("u2", "a")]
            .iter()
            .map(|(u, i)| Interaction::new(*u, *i, EventKind::Order, 0.0))
            .collect();
        train_from_interactions(&ev, &ModelSpec::Popularity, 1, version).unwrap()
    }

    #[test]
    fn a_changed_file_is_swapped_in_and_a_bad_one_keeps_the_old_model() {
        let dir = std::env::temp_dir().join(format!("mesh-rec-{}", std::process::id()));
        let path = dir.join("model.json");
        let _ = std::fs::remove_file(&path);
        let h = ModelHandle::open(Some(path.clone())).unwrap();
        assert!(h.current().is_none());
        write_artifact(&model("one"), &path).unwrap();
        assert!(h.reload_if_changed().unwrap());
        assert_eq!(h.current().unwrap().version, "one");
        assert!(!h.reload_if_changed().unwrap());
        write_artifact(&model("second"), &path).unwrap();
        assert!(h.reload_if_changed().unwrap());
        assert_eq!(h.current().unwrap().version, "second");
        std::fs::write(&path, b"{ not a model").unwrap();
        assert!(h.reload_if_changed().is_err());
        assert_eq!(h.current().unwrap().version, "second");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

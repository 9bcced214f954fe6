//! Kafka for the mesh.
//!
//! Owns how the mesh talks to a Kafka-protocol broker: topic names and
//! creation ([`topics`]), the producer every service shares ([`producer`]),
//! the at-least-once consumer loop ([`consumer`]), W3C trace context and
//! CloudEvents attributes in record headers ([`headers`]), the key →
//! partition function ([`partition`]), the embedded in-process cluster
//! ([`embedded`]), and TLS to the broker ([`security`]). It must not know
//! event schemas or state: services decode payloads and apply effects.
//!
//! # Layout
//! - [`topics`]: [`TopicNames`], creation and partition-count checks.
//! - [`producer`]: [`Producer`], acks=all, idempotent, explicit partitions.
//! - [`consumer`]: [`run_consumer`] and the [`Handler`] trait.
//! - [`poison`]: [`PoisonPolicy`], isolating and dead-lettering a record
//!   that keeps failing, retrying through outages.
//! - [`headers`]: header names, trace-context inject/extract.
//! - [`log`]: reading topics from offset 0 to their end (training, replay).
//! - [`partition`]: Kafka's murmur2 partitioner.
//! - [`embedded`]: librdkafka's mock cluster for the one-process mode.
//! - [`security`]: plaintext or TLS for every client, set once per
//!   process ([`security::install`]) and applied by
//!   [`security::client_config`].
#![forbid(unsafe_code)]

pub mod consumer;
pub mod embedded;
pub mod headers;
pub mod log;
pub mod metrics;
pub mod partition;
pub mod poison;
pub mod producer;
pub mod security;
pub mod topics;

pub use consumer::{
    expected_through, run_consumer, ConsumerConfig, Handler, HandlerError, Record, Watermark,
};
pub use embedded::EmbeddedKafka;
pub use poison::PoisonPolicy;
pub use producer::{Producer, ProducerConfig};
pub use topics::{ensure_output_topics, ensure_topics, TopicNames, TopicSpec};

/// Errors of the bus.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The broker did not acknowledge in time or could not be reached.
    #[error("broker unavailable: {0}")]
    Unavailable(String),
    /// The broker refused a request for a reason a retry will not fix.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The topics exist but do not fit the mesh's contract.
    #[error("topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
}

impl Error {
    /// Whether retrying later may succeed (the caller should answer
    /// UNAVAILABLE rather than fail the request's content).
    pub fn is_transient(&self) -> bool {
        use rdkafka::error::KafkaError as K;
        use rdkafka::types::RDKafkaErrorCode as C;
        match self {
            Error::Unavailable(_) => true,
            Error::Kafka(K::MessageProduction(code)) => matches!(
                code,
                C::QueueFull
                    | C::MessageTimedOut
                    | C::RequestTimedOut
                    | C::BrokerTransportFailure
                    | C::AllBrokersDown
                    | C::NotEnoughReplicas
                    | C::NotEnoughReplicasAfterAppend
                    | C::LeaderNotAvailable
                    | C::NotLeaderForPartition
            ),
            _ => false,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

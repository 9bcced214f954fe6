//! The embedded default: librdkafka's in-process mock cluster, so `mesh up`
//! runs with no broker installed. It speaks the Kafka protocol on a loopback
//! port, with consumer groups and commits; it keeps nothing on disk.
use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::Result;

/// A running mock cluster; dropping it stops the cluster.
pub struct EmbeddedKafka {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl EmbeddedKafka {
    /// Starts a cluster of `brokers` brokers on loopback ports.
    pub fn start(brokers: i32) -> Result<Self> {
        Ok(EmbeddedKafka {
            cluster: MockCluster::new(brokers)?,
        })
    }

    /// The bootstrap servers to give clients.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}

impl EmbeddedKafka {
    /// Creates topics on the mock cluster (it does not implement the admin
    /// API's CreateTopics).
    pub fn create_topics(&self, topics: &[&str], partitions: i32) -> Result<()> {
        for t in topics {
            self.cluster.create_topic(t, partitions, 1)?;
        }
        Ok(())
    }
}

//! Protobuf types and gRPC stubs of the mesh, generated from `proto/`.
//!
//! This crate owns the wire contract and nothing else: no validation, no
//! I/O. Packages map to modules: `mesh.events.v1` is [`events::v1`]. Beside
//! the contract it keeps the seeded event generators ([`sim`]), so every
//! bench, test and simulator draws events of the one schema from one place.
//!
//! # Layout
//! - [`events`]: the event envelope and every body kind, plus
//!   [`events::v1::EventKind`], the names used on the wire and in metrics.
//! - [`ingest`], [`profile`]: service APIs.
//! - [`recommend`]: the recommend service API.
//! - [`logistics`]: the logistics service API (waves, routes, forecasts).
//! - [`fraud`]: the fraud service API (decisions, review queue, labels).
//! - [`churn`]: the churn service API and its alert messages.
//! - [`engage`]: the engage service API (pricing, offers, campaigns,
//!   audiences) and its decision events.
//! - [`support`], [`catalog`]: the support service's assistant/feedback
//!   and search/classification APIs.
//! - [`FILE_DESCRIPTOR_SET`]: for gRPC reflection.
//! - [`sim`]: seeded event mixes and labelled purchase histories.
#![forbid(unsafe_code)]

pub mod sim;

/// Encoded `FileDescriptorSet` of every mesh proto, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("mesh_descriptor");

pub mod events {
    pub mod v1 {
        tonic::include_proto!("mesh.events.v1");
        mod kind;
        pub use kind::{EventKind, Topic};
    }
}

pub mod ingest {
    pub mod v1 {
        tonic::include_proto!("mesh.ingest.v1");
    }
}

pub mod profile {
    pub mod v1 {
        tonic::include_proto!("mesh.profile.v1");
    }
}

pub mod recommend {
    pub mod v1 {
        tonic::include_proto!("mesh.recommend.v1");
    }
}

pub mod logistics {
    pub mod v1 {
        tonic::include_proto!("mesh.logistics.v1");
    }
}

pub mod fraud {
    pub mod v1 {
        tonic::include_proto!("mesh.fraud.v1");
    }
}

pub mod churn {
    pub mod v1 {
        tonic::include_proto!("mesh.churn.v1");
    }
}

pub mod engage {
    pub mod v1 {
        tonic::include_proto!("mesh.engage.v1");
    }
}

pub mod support {
    pub mod v1 {
        tonic::include_proto!("mesh.support.v1");
    }
}

pub mod catalog {
    pub mod v1 {
        tonic::include_proto!("mesh.catalog.v1");
    }
}

//! `BatchGetProfiles` scoped to a tenant (issue #17, item 5): the request's
//! `tenant_id` (filled in by the guard for a tenant-bound caller) fills the
//! users that name none and refuses one that names another, by field.
use std::collections::BTreeMap;

use mesh_profile::engine::Profiles;
use mesh_profile::grpc::ProfileGrpc;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, PageView};
use mesh_proto::profile::v1::profile_service_server::ProfileService;
use mesh_proto::profile::v1::{BatchGetProfilesRequest, GetProfileRequest};
use mesh_store::{MemoryStore, StateStore};
use tonic::{Code, Request};

fn view(tenant: &str, user: &str, id: &str) -> Envelope {
    Envelope {
        event_id: id.into(),
        tenant_id: tenant.into(),
        user_id: user.into(),
        occurred_at_ms: 1_700_000_000_000,
        source: "test".into(),
        context: None,
        body: Some(Body::PageView(PageView {
            path: "/".into(),
            dwell_seconds: 1.0,
        })),
    }
}

fn user(tenant: &str, user: &str) -> GetProfileRequest {
    GetProfileRequest {
        tenant_id: tenant.into(),
        user_id: user.into(),
    }
}

#[tokio::test]
async fn a_batch_scoped_to_a_tenant_reads_that_tenant_only() {
    let store = StateStore::Memory(MemoryStore::new("tenants"));
    let profiles = Profiles::read_only(store.clone(), 4);
    let events = [
        view("a", "u1", "e1"),
        view("b", "u1", "e2"),
        view("b", "u1", "e3"),
    ];
    mesh_profile::offline::apply_events(&profiles, "events", &events, &mut BTreeMap::new())
        .await
        .unwrap();
    let svc = ProfileGrpc {
        store,
        partitions: 4,
    };
    let batch = |tenant: &str, users: Vec<GetProfileRequest>| {
        Request::new(BatchGetProfilesRequest {
            users,
            tenant_id: tenant.into(),
        })
    };
    // Unscoped: each user's own tenant.
    let both = svc
        .batch_get_profiles(batch("", vec![user("a", "u1"), user("b", "u1")]))
        .await
        .unwrap()
        .into_inner();
    let events: Vec<(String, u64)> = both
        .profiles
        .iter()
        .map(|p| (p.tenant_id.clone(), p.events))
        .collect();
    assert_eq!(events, vec![("a".into(), 1), ("b".into(), 2)]);
    // Scoped: an empty user tenant is the request's.
    let own = svc
        .batch_get_profiles(batch("a", vec![user("", "u1")]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(own.profiles.len(), 1);
    assert_eq!(
        (own.profiles[0].tenant_id.as_str(), own.profiles[0].events),
        ("a", 1)
    );
    // Scoped: another tenant's user is refused by field, nothing read.
    let s = svc
        .batch_get_profiles(batch("a", vec![user("a", "u1"), user("b", "u1")]))
        .await
        .unwrap_err();
    assert_eq!(s.code(), Code::InvalidArgument);
    assert!(
        s.message().contains("users[1].tenant_id"),
        "{}",
        s.message()
    );
}

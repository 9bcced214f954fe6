//! `ProfileService`: conversion only; reads go to the partition slot that
//! owns the user.
use mesh_proto::profile::v1::profile_service_server::ProfileService;
use mesh_proto::profile::v1::{GetProfileRequest, Profile};
use mesh_store::{Slot, StateStore};
use tonic::{Request, Response, Status};

use crate::fold::{user_key, Counters};
use crate::handler::SCOPE;

pub struct ProfileGrpc {
    pub store: StateStore,
    pub partitions: i32,
}

impl ProfileGrpc {
    /// Reads a user's counters from the slot that owns them.
    pub async fn counters(
        &self,
        tenant: &str,
        user: &str,
    ) -> Result<Option<Counters>, mesh_store::Error> {
        let partition =
            mesh_bus::partition::partition_for(&format!("{tenant}/{user}"), self.partitions);
        let h = self
            .store
            .hgetall(
                Slot {
                    scope: SCOPE,
                    partition,
                },
                &user_key(tenant, user),
            )
            .await?;
        Ok(Counters::from_hash(&h))
    }
}

#[tonic::async_trait]
impl ProfileService for ProfileGrpc {
    async fn get_profile(
        &self,
        request: Request<GetProfileRequest>,
    ) -> Result<Response<Profile>, Status> {
        let r = request.into_inner();
        if r.tenant_id.is_empty() || r.user_id.is_empty() {
            return Err(Status::invalid_argument(
                "tenant_id and user_id are required",
            ));
        }
        let c = self
            .counters(&r.tenant_id, &r.user_id)
            .await
            .map_err(|e| Status::unavailable(format!("state store: {e}")))?
            .ok_or_else(|| {
                Status::not_found(format!(
                    "no events seen for user {}/{}",
                    r.tenant_id, r.user_id
                ))
            })?;
        Ok(Response::new(Profile {
            tenant_id: r.tenant_id,
            user_id: r.user_id,
            events_by_type: c.by_type,
            events: c.events,
            orders: c.orders,
            spend: c.spend,
            first_seen_ms: c.first_seen_ms,
            last_seen_ms: c.last_seen_ms,
        }))
    }
}

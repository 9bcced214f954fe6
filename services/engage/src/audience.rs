//! `BuildAudience`: lookalikes of a segment's best customers, for ad
//! platforms. Profiles come from profile over gRPC (the users of every
//! lifecycle stage, paged), so engage keeps no copy of them.
use mesh_engage::ads::{Lookalike, Similarity};
use mesh_proto::engage::v1 as pb;
use mesh_proto::profile::v1 as ppb;
use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;

use crate::engine::Engage;
use crate::error::{Error, Result};

/// Most candidate users read from profile.
const MAX_CANDIDATES: usize = 20_000;

/// Features of one profile for similarity.
pub fn features(p: &ppb::Profile) -> Vec<f64> {
    vec![
        (1.0 + p.spend.max(0.0)).ln(),
        (1.0 + p.orders as f64).ln(),
        p.days_since_last_order.clamp(0.0, 3650.0),
        (1.0 + p.average_order_value.max(0.0)).ln(),
        p.activity_score.max(0.0).ln_1p(),
        p.price_sensitivity.clamp(0.0, 1.0),
        (1.0 + p.sessions as f64).ln(),
    ]
}

impl Engage {
    pub async fn build_audience(&self, r: &pb::BuildAudienceRequest) -> Result<pb::Audience> {
        if r.tenant_id.trim().is_empty() {
            return Err(Error::invalid("tenant_id", "required"));
        }
        let seeds = if r.seeds == 0 { 50 } else { r.seeds as usize };
        let size = match r.size {
            0 => 500,
            n if n > 10_000 => return Err(Error::invalid("size", "at most 10000")),
            n => n as usize,
        };
        let Some(peer) = self.peers.profile.as_ref() else {
            return Err(Error::Unavailable(
                "profile is not configured (MESH_PROFILE_ADDR)".into(),
            ));
        };
        let mut users = Vec::new();
        for stage in [
            ppb::Stage::Activated,
            ppb::Stage::Active,
            ppb::Stage::AtRisk,
            ppb::Stage::Dormant,
            ppb::Stage::Churned,
            ppb::Stage::Reactivated,
        ] {
            let mut token = String::new();
            loop {
                let req = ppb::ListUsersRequest {
                    tenant_id: r.tenant_id.clone(),
                    filter: Some(ppb::list_users_request::Filter::Stage(stage as i32)),
                    page_size: 1000,
                    page_token: token.clone(),
                };
                let page = peer
                    .call("ListUsers", req, |ch, q| async move {
                        ProfileServiceClient::new(ch).list_users(q).await
                    })
                    .await
                    .map_err(|e| Error::Unavailable(format!("profile: {}", e.reason())))?;
                users.extend(page.user_ids);
                if page.next_page_token.is_empty() || users.len() >= MAX_CANDIDATES {
                    break;
                }
                token = page.next_page_token;
            }
        }
        users.truncate(MAX_CANDIDATES);
        let mut profiles = Vec::with_capacity(users.len());
        for chunk in users.chunks(500) {
            let req = ppb::BatchGetProfilesRequest {
                tenant_id: String::new(),
                users: chunk
                    .iter()
                    .map(|u| ppb::GetProfileRequest {
                        tenant_id: r.tenant_id.clone(),
                        user_id: u.clone(),
                    })
                    .collect(),
            };
            let got = peer
                .call("BatchGetProfiles", req, |ch, q| async move {
                    ProfileServiceClient::new(ch).batch_get_profiles(q).await
                })
                .await
                .map_err(|e| Error::Unavailable(format!("profile: {}", e.reason())))?;
            profiles.extend(got.profiles);
        }
        let in_seed_segment = |p: &ppb::Profile| {
            r.seed_segment.is_empty()
                || p.segment_description == r.seed_segment
                || p.segment.to_string() == r.seed_segment
        };
        let mut seed_rows: Vec<&ppb::Profile> =
            profiles.iter().filter(|p| in_seed_segment(p)).collect();
        seed_rows.sort_by(|a, b| {
            b.spend
                .total_cmp(&a.spend)
                .then_with(|| a.user_id.cmp(&b.user_id))
        });
        seed_rows.truncate(seeds);
        if seed_rows.is_empty() {
            return Err(Error::NotFound(format!(
                "no users of segment {:?} to seed the audience",
                r.seed_segment
            )));
        }
        let seed_ids: std::collections::HashSet<&str> =
            seed_rows.iter().map(|p| p.user_id.as_str()).collect();
        let population: Vec<Vec<f64>> = profiles.iter().map(features).collect();
        let seed_x: Vec<Vec<f64>> = seed_rows.iter().map(|p| features(p)).collect();
        let model = Lookalike::fit(&seed_x, &population, Similarity::Knn { k: 5 })?;
        let candidates: Vec<&ppb::Profile> = profiles
            .iter()
            .filter(|p| !seed_ids.contains(p.user_id.as_str()))
            .collect();
        let cand_x: Vec<Vec<f64>> = candidates.iter().map(|p| features(p)).collect();
        let ranked = if cand_x.is_empty() {
            Vec::new()
        } else {
            model.rank(&cand_x, size)?
        };
        Ok(pb::Audience {
            seed_users: seed_rows.iter().map(|p| p.user_id.clone()).collect(),
            members: ranked
                .into_iter()
                .map(|(i, s)| pb::AudienceMember {
                    user_id: candidates[i].user_id.clone(),
                    similarity: s,
                })
                .collect(),
            candidates: candidates.len() as u64,
        })
    }
}

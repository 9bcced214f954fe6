//! `ProfileService`: conversion only; the work is in [`Profiles`].
use std::sync::Arc;

use mesh_proto::profile::v1 as pb;
use mesh_proto::profile::v1::profile_service_server::ProfileService;
use mesh_store::{Slot, StateStore};
use tonic::{Request, Response, Status};

use crate::engine::{Profiles, Snapshot};
use crate::error::{to_status, Error, Result};
use crate::fold::{user_key, Counters};
use crate::handler::SCOPE;
use crate::{analytics, lifecycle};

/// Most users per `BatchGetProfiles` and per `ListUsers` page.
pub const MAX_BATCH: usize = 500;
pub const MAX_PAGE: u32 = 1000;
/// Longest tenant or user id: ingest accepts none over 128 bytes, so a
/// longer one names nobody and is refused before it reaches the store.
pub const MAX_ID: usize = 256;

/// The service as started by [`crate::start`].
pub struct ProfileApi {
    pub profiles: Arc<Profiles>,
}

/// A read-only service on a store with the default settings (used where
/// only the state exists, e.g. after a replay).
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
    ) -> std::result::Result<Option<Counters>, mesh_store::Error> {
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

    fn api(&self) -> ProfileApi {
        ProfileApi {
            profiles: Arc::new(Profiles::read_only(self.store.clone(), self.partitions)),
        }
    }
}

fn required(field: &str, v: &str) -> Result<()> {
    if v.is_empty() {
        return Err(Error::InvalidArgument {
            field: field.into(),
            reason: "required".into(),
        });
    }
    if v.len() > MAX_ID {
        return Err(Error::InvalidArgument {
            field: field.into(),
            reason: format!("{} bytes, at most {MAX_ID}", v.len()),
        });
    }
    Ok(())
}

impl ProfileApi {
    /// The full profile of a user at the engine's now.
    pub async fn profile(&self, tenant: &str, user: &str) -> Result<Option<pb::Profile>> {
        let member = crate::features::member(tenant, user);
        let now = self.profiles.now_ms();
        let Some(snap) = self.profiles.snapshot(&member, now).await? else {
            return Ok(None);
        };
        Ok(Some(self.to_proto(tenant, user, &snap)))
    }

    /// Stage of a user at `now` from the order history (what the sweep
    /// will announce, even before it ran).
    pub fn stage(&self, s: &crate::features::UserState, now: i64) -> (pb::Stage, i64) {
        let p = lifecycle::path(
            s.counters.first_seen_ms,
            &s.order_times(),
            now,
            &self.profiles.thresholds,
        );
        let last = p.last().expect("a path has its first step");
        (last.to, last.at_ms)
    }

    fn segment(&self, f: &crate::features::Features) -> (i32, String) {
        let cur = self
            .profiles
            .segments
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match cur {
            Some(m) => {
                let s = m.assign(f);
                (s, m.description(s).to_string())
            }
            None => (-1, String::new()),
        }
    }

    fn to_proto(&self, tenant: &str, user: &str, snap: &Snapshot) -> pb::Profile {
        let (s, f) = (&snap.state, &snap.features);
        let c = &s.counters;
        let (stage, since) = self.stage(s, f.as_of_ms);
        let (segment, segment_description) = self.segment(f);
        let aff = |v: &[(String, f64)]| {
            v.iter()
                .map(|(n, x)| pb::Affinity {
                    name: n.clone(),
                    score: *x,
                })
                .collect()
        };
        pb::Profile {
            tenant_id: tenant.into(),
            user_id: user.into(),
            events_by_type: c.by_type.clone(),
            events: c.events,
            orders: c.orders,
            spend: c.spend,
            first_seen_ms: c.first_seen_ms,
            last_seen_ms: c.last_seen_ms,
            as_of_ms: f.as_of_ms,
            first_order_ms: s.first_order_ms.unwrap_or(0),
            last_order_ms: s.last_order_ms.unwrap_or(0),
            days_since_last_order: f.recency_days.unwrap_or(-1.0),
            average_order_value: f.aov,
            orders_7d: f.orders_7d,
            orders_30d: f.orders_30d,
            orders_90d: f.orders_90d,
            spend_7d: f.spend_7d,
            spend_30d: f.spend_30d,
            spend_90d: f.spend_90d,
            category_affinity: aff(&f.categories),
            brand_affinity: aff(&f.brands),
            price_sensitivity: f.price_sensitivity,
            preferred_device: f.preferred_device.clone(),
            preferred_channel: f.preferred_channel.clone(),
            sessions: f.sessions,
            mean_session_seconds: f.mean_session_seconds,
            funnel_step: match f.funnel_step {
                1..=4 => crate::features::FUNNEL[f.funnel_step as usize - 1].into(),
                _ => String::new(),
            },
            activity_score: f.activity_score,
            refund_rate: f.refund_rate,
            cancellation_rate: f.cancellation_rate,
            reviews: f.reviews,
            mean_rating: f.mean_rating,
            stage: stage as i32,
            stage_since_ms: since,
            tags: self.profiles.tags.tags(f, stage),
            segment,
            segment_description,
        }
    }

    async fn get(&self, r: pb::GetProfileRequest) -> Result<pb::Profile> {
        required("tenant_id", &r.tenant_id)?;
        required("user_id", &r.user_id)?;
        self.profile(&r.tenant_id, &r.user_id)
            .await?
            .ok_or_else(|| {
                Error::NotFound(format!(
                    "no events seen for user {}/{}",
                    r.tenant_id, r.user_id
                ))
            })
    }

    async fn batch(&self, r: pb::BatchGetProfilesRequest) -> Result<pb::BatchGetProfilesResponse> {
        if r.users.len() > MAX_BATCH {
            return Err(Error::InvalidArgument {
                field: "users".into(),
                reason: format!("{} users, at most {MAX_BATCH}", r.users.len()),
            });
        }
        if r.tenant_id.len() > MAX_ID {
            return Err(Error::InvalidArgument {
                field: "tenant_id".into(),
                reason: format!("{} bytes, at most {MAX_ID}", r.tenant_id.len()),
            });
        }
        // A request scoped to a tenant (a tenant-bound caller's always is)
        // reads that tenant's users only: an empty user tenant is filled in,
        // another one refused.
        let mut users = r.users;
        for (i, u) in users.iter_mut().enumerate() {
            if !r.tenant_id.is_empty() {
                if u.tenant_id.is_empty() {
                    u.tenant_id = r.tenant_id.clone();
                } else if u.tenant_id != r.tenant_id {
                    return Err(Error::InvalidArgument {
                        field: format!("users[{i}].tenant_id"),
                        reason: format!(
                            "is {:?}; this request is for tenant {:?}",
                            u.tenant_id, r.tenant_id
                        ),
                    });
                }
            }
            required(&format!("users[{i}].tenant_id"), &u.tenant_id)?;
            required(&format!("users[{i}].user_id"), &u.user_id)?;
        }
        let mut profiles = Vec::with_capacity(users.len());
        for u in &users {
            if let Some(p) = self.profile(&u.tenant_id, &u.user_id).await? {
                profiles.push(p);
            }
        }
        Ok(pb::BatchGetProfilesResponse { profiles })
    }

    async fn list(&self, r: pb::ListUsersRequest) -> Result<pb::ListUsersResponse> {
        use pb::list_users_request::Filter;
        required("tenant_id", &r.tenant_id)?;
        let filter = r.filter.clone().ok_or_else(|| Error::InvalidArgument {
            field: "filter".into(),
            reason: "one of stage, segment or tag is required".into(),
        })?;
        if let Filter::Stage(s) = filter {
            if !matches!(pb::Stage::try_from(s), Ok(st) if st != pb::Stage::Unspecified) {
                return Err(Error::InvalidArgument {
                    field: "stage".into(),
                    reason: format!("{s} is not a stage"),
                });
            }
        }
        let size = match r.page_size {
            0 => 100,
            n if n > MAX_PAGE => {
                return Err(Error::InvalidArgument {
                    field: "page_size".into(),
                    reason: format!("{n}, at most {MAX_PAGE}"),
                })
            }
            n => n as usize,
        };
        let prefix = format!("{}/", r.tenant_id);
        // Stable order: by user id; the token is the last id returned.
        let after = r.page_token.clone();
        let now = self.profiles.now_ms();
        let mut members = Vec::new();
        for p in 0..self.profiles.partitions {
            members.extend(
                self.profiles
                    .partition_members(p)
                    .await?
                    .into_iter()
                    .filter(|m| m.starts_with(&prefix) && m[prefix.len()..] > *after),
            );
        }
        members.sort_unstable();
        let mut out = Vec::new();
        let mut more = false;
        for m in members {
            if out.len() == size {
                more = true;
                break;
            }
            let Some(snap) = self.profiles.snapshot(&m, now).await? else {
                continue;
            };
            let keep = match &filter {
                Filter::Stage(s) => self.stage(&snap.state, now).0 as i32 == *s,
                Filter::Segment(s) => self.segment(&snap.features).0 == *s,
                Filter::Tag(t) => {
                    let stage = self.stage(&snap.state, now).0;
                    self.profiles.tags.tags(&snap.features, stage).contains(t)
                }
            };
            if keep {
                out.push(m[prefix.len()..].to_string());
            }
        }
        let next_page_token = if more {
            out.last().cloned().unwrap_or_default()
        } else {
            String::new()
        };
        Ok(pb::ListUsersResponse {
            user_ids: out,
            next_page_token,
        })
    }
}

impl ProfileApi {
    /// Every user of a tenant with a snapshot at `now`.
    async fn tenant_snapshots(&self, tenant: &str, now: i64) -> Result<Vec<(String, Snapshot)>> {
        required("tenant_id", tenant)?;
        let prefix = format!("{tenant}/");
        let mut out = Vec::new();
        for (m, s) in crate::offline::snapshots(&self.profiles, now).await? {
            if m.starts_with(&prefix) {
                out.push((m, s));
            }
        }
        Ok(out)
    }

    async fn funnel(&self, r: pb::GetFunnelRequest) -> Result<pb::GetFunnelResponse> {
        let now = self.profiles.now_ms();
        let day = |field: &str, v: &str, default: i64| -> Result<i64> {
            if v.is_empty() {
                return Ok(default);
            }
            analytics::parse_date_ms(v)
                .map(crate::features::day_of)
                .ok_or_else(|| Error::InvalidArgument {
                    field: field.into(),
                    reason: format!("{v:?} is not a date (YYYY-MM-DD)"),
                })
        };
        let today = crate::features::day_of(now);
        let to = day("to_date", &r.to_date, today)?;
        let from = day("from_date", &r.from_date, to - 29)?;
        if from > to || to - from >= 366 {
            return Err(Error::InvalidArgument {
                field: "from_date".into(),
                reason: "must be at most 366 days before to_date, and not after it".into(),
            });
        }
        let by = match r.group_by.as_str() {
            "" | "segment" | "stage" => r.group_by.as_str(),
            other => {
                return Err(Error::InvalidArgument {
                    field: "group_by".into(),
                    reason: format!("{other:?}: expected \"\", \"segment\" or \"stage\""),
                })
            }
        };
        let snaps = self.tenant_snapshots(&r.tenant_id, now).await?;
        let groups: Vec<String> = snaps
            .iter()
            .map(|(_, s)| match by {
                "segment" => self.segment(&s.features).0.to_string(),
                "stage" => lifecycle::stage_name(self.stage(&s.state, now).0).to_string(),
                _ => String::new(),
            })
            .collect();
        let days = analytics::funnel(snaps.iter().map(|(_, s)| &s.state).zip(groups), from, to);
        Ok(pb::GetFunnelResponse {
            days: days
                .into_iter()
                .map(|d| {
                    let c = d.conversion();
                    pb::FunnelDay {
                        date: analytics::date_of(d.day * crate::features::DAY_MS),
                        group: d.group,
                        viewed: d.reached[0],
                        carted: d.reached[1],
                        checked_out: d.reached[2],
                        ordered: d.reached[3],
                        view_to_cart: c[0],
                        cart_to_checkout: c[1],
                        checkout_to_order: c[2],
                    }
                })
                .collect(),
        })
    }

    async fn activity(&self, r: pb::GetActivityRequest) -> Result<pb::GetActivityResponse> {
        let now = self.profiles.now_ms();
        let snaps = self.tenant_snapshots(&r.tenant_id, now).await?;
        let a = analytics::active(snaps.iter().map(|(_, s)| &s.state), now);
        Ok(pb::GetActivityResponse {
            as_of_ms: now,
            dau: a.dau,
            wau: a.wau,
            mau: a.mau,
        })
    }

    async fn cohorts(&self, r: pb::GetCohortsRequest) -> Result<pb::GetCohortsResponse> {
        let now = self.profiles.now_ms();
        let snaps = self.tenant_snapshots(&r.tenant_id, now).await?;
        Ok(pb::GetCohortsResponse {
            as_of_ms: now,
            cohorts: analytics::cohorts(snaps.iter().map(|(_, s)| &s.state), now)
                .into_iter()
                .map(|c| pb::Cohort {
                    month: c.month,
                    users: c.users,
                    retention: c.retention,
                })
                .collect(),
        })
    }
}

#[tonic::async_trait]
impl ProfileService for ProfileApi {
    async fn get_funnel(
        &self,
        request: Request<pb::GetFunnelRequest>,
    ) -> std::result::Result<Response<pb::GetFunnelResponse>, Status> {
        self.funnel(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn get_activity(
        &self,
        request: Request<pb::GetActivityRequest>,
    ) -> std::result::Result<Response<pb::GetActivityResponse>, Status> {
        self.activity(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn get_cohorts(
        &self,
        request: Request<pb::GetCohortsRequest>,
    ) -> std::result::Result<Response<pb::GetCohortsResponse>, Status> {
        self.cohorts(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> std::result::Result<Response<pb::Profile>, Status> {
        self.get(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn batch_get_profiles(
        &self,
        request: Request<pb::BatchGetProfilesRequest>,
    ) -> std::result::Result<Response<pb::BatchGetProfilesResponse>, Status> {
        self.batch(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> std::result::Result<Response<pb::ListUsersResponse>, Status> {
        self.list(request.into_inner())
            .await
            .map(Response::new)
            .map_err(to_status)
    }
}

#[tonic::async_trait]
impl ProfileService for ProfileGrpc {
    async fn get_funnel(
        &self,
        request: Request<pb::GetFunnelRequest>,
    ) -> std::result::Result<Response<pb::GetFunnelResponse>, Status> {
        self.api().get_funnel(request).await
    }

    async fn get_activity(
        &self,
        request: Request<pb::GetActivityRequest>,
    ) -> std::result::Result<Response<pb::GetActivityResponse>, Status> {
        self.api().get_activity(request).await
    }

    async fn get_cohorts(
        &self,
        request: Request<pb::GetCohortsRequest>,
    ) -> std::result::Result<Response<pb::GetCohortsResponse>, Status> {
        self.api().get_cohorts(request).await
    }

    async fn get_profile(
        &self,
        request: Request<pb::GetProfileRequest>,
    ) -> std::result::Result<Response<pb::Profile>, Status> {
        self.api().get_profile(request).await
    }

    async fn batch_get_profiles(
        &self,
        request: Request<pb::BatchGetProfilesRequest>,
    ) -> std::result::Result<Response<pb::BatchGetProfilesResponse>, Status> {
        self.api().batch_get_profiles(request).await
    }

    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> std::result::Result<Response<pb::ListUsersResponse>, Status> {
        self.api().list_users(request).await
    }
}

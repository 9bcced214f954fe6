//! Campaigns, offers, attribution and reports: the work behind the gRPC
//! methods and the consumer.
//!
//! **Erased users.** Every write about a user (offer, response) starts with
//! the erasure guard in the user's slot. `ChooseOffer` refuses an erased
//! user with [`Error::Erased`] (gRPC `NOT_FOUND`, "unknown user
//! `<tenant>/<user>`") instead of enrolling them again, and `RecordResponse`
//! answers an erased user's offer as an unknown offer. A write the guard
//! skipped still counts as applied, so both read the erasure again after
//! writing before they publish or touch the bandit.
use std::collections::{BTreeMap, HashMap, HashSet};

use mesh_bus::{headers, Producer};
use mesh_engage::bandit::{BanditPolicy, ContextualBandit, FrequencyCap};
use mesh_engage::campaign::{
    assign_group, Campaign as Core, CampaignConfig, GroupCounters, SequentialConfig,
};
use mesh_proto::engage::v1 as pb;
use mesh_runtime::peers::Peers;
use mesh_store::{erasure, HashRead, HashReply, Op, PartitionBatch, StateStore};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::{self, SCOPE};
use crate::metrics::{OFFERS, RESPONSES};

/// Context features the bandit sees, in order.
pub const CONTEXT: [&str; 5] = [
    "bias",
    "churn_risk",
    "log_spend",
    "recency",
    "price_sensitivity",
];

/// The campaign churn's retention actions go to, one per tenant.
pub const RETENTION_CAMPAIGN: &str = "retention";

/// Engage settings that shape decisions.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Offers of the retention campaign created for churn's actions.
    pub retention_offers: Vec<String>,
    /// Exploration of the bandit (Thompson posterior scale).
    pub exploration: f64,
}

/// One user's participation in one campaign.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OfferRecord {
    pub campaign_id: String,
    /// "treatment" or "control".
    pub arm: String,
    /// The latest offer id and offer ("" for control).
    pub offer_id: String,
    pub offer: String,
    /// The bandit's context at the latest offer.
    pub context: Vec<f64>,
    /// The CUPED covariate: spend before the first offer.
    pub pre_spend: f64,
    /// Offer times (ms), newest last, for the frequency cap.
    pub sent_ms: Vec<i64>,
    /// When the user entered the campaign (either arm), ms.
    pub joined_ms: i64,
    /// Attribution: orders and revenue since the first offer.
    pub converted: bool,
    pub orders: u32,
    pub revenue: f64,
    /// Highest order-topic offset attributed, so a redelivered batch is not
    /// counted into this record twice.
    pub last_offset: i64,
}

impl OfferRecord {
    /// Whether an order at `at_ms` falls in the attribution window: from
    /// joining to `window_ms` after the latest offer (or after joining, for
    /// control users).
    pub fn attributes(&self, at_ms: i64, window_ms: i64) -> bool {
        let last = self.sent_ms.last().copied().unwrap_or(self.joined_ms);
        at_ms >= self.joined_ms && at_ms <= last.max(self.joined_ms) + window_ms
    }
}

/// The engine shared by the gRPC methods, the consumer and the pricer.
pub struct Engage {
    pub store: StateStore,
    pub producer: Producer,
    pub topic: String,
    pub partitions: i32,
    pub peers: Peers,
    pub settings: Settings,
    pub clock: std::sync::Arc<dyn Fn() -> i64 + Send + Sync>,
    /// Serializes this process's bandit writes, so the partitions' handlers
    /// never race each other's compare-and-set; replicas still use the CAS.
    pub bandit_lock: tokio::sync::Mutex<()>,
}

/// Checks an id: 1..=64 of letters, digits, '-', '_', '.'.
pub fn check_id(field: &'static str, v: &str) -> Result<()> {
    if v.is_empty() || v.len() > 64 {
        return Err(Error::invalid(field, "required, 1..=64 characters"));
    }
    if !v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(Error::invalid(
            field,
            format!("{v:?}: only letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

pub(crate) fn check_text(field: &'static str, v: &str) -> Result<()> {
    if v.trim().is_empty() || v.len() > 256 {
        return Err(Error::invalid(field, "required, 1..=256 bytes"));
    }
    Ok(())
}

/// A campaign with its defaults filled in, validated.
pub fn normalize(mut c: pb::Campaign, now_ms: i64) -> Result<pb::Campaign> {
    check_text("tenant_id", &c.tenant_id)?;
    check_id("campaign_id", &c.campaign_id)?;
    if c.offers.is_empty() || c.offers.len() > 16 {
        return Err(Error::invalid("offers", "1..=16 offer names"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for o in &c.offers {
        check_id("offers", o)?;
        if !seen.insert(o) {
            return Err(Error::invalid("offers", format!("{o:?} listed twice")));
        }
    }
    let share = if c.control_share == 0.0 {
        0.1
    } else {
        c.control_share
    };
    if !(share > 0.0 && share < 1.0) {
        return Err(Error::invalid(
            "control_share",
            format!("{} is not in (0, 1)", c.control_share),
        ));
    }
    c.control_share = share;
    for (field, v) in [
        ("cap_window_hours", c.cap_window_hours),
        ("pre_period_days", c.pre_period_days),
        ("attribution_days", c.attribution_days),
    ] {
        if !v.is_finite() || !(0.0..=3650.0 * 24.0).contains(&v) {
            return Err(Error::invalid(field, format!("{v} is not in [0, 87600]")));
        }
    }
    if c.cap_per_user == 0 {
        c.cap_per_user = 1;
    }
    if c.cap_window_hours == 0.0 {
        c.cap_window_hours = 24.0;
    }
    if c.pre_period_days == 0.0 {
        c.pre_period_days = 28.0;
    }
    if c.attribution_days == 0.0 {
        c.attribution_days = 7.0;
    }
    let a = c.audience.get_or_insert_with(Default::default);
    if !(0.0..=1.0).contains(&a.min_churn_risk) {
        return Err(Error::invalid(
            "audience.min_churn_risk",
            "must be in [0, 1]",
        ));
    }
    if !a.min_spend.is_finite() || a.min_spend < 0.0 {
        return Err(Error::invalid(
            "audience.min_spend",
            "must be >= 0 and finite",
        ));
    }
    if c.created_at_ms == 0 {
        c.created_at_ms = now_ms;
    }
    // Reports count a campaign's pre-period and attribution window from
    // its creation: a time before 1970 or ahead of now has neither.
    if !(0..=now_ms + 86_400_000).contains(&c.created_at_ms) {
        return Err(Error::invalid(
            "created_at_ms",
            format!(
                "{} is not Unix milliseconds up to one day from now",
                c.created_at_ms
            ),
        ));
    }
    if c.name.is_empty() {
        c.name = c.campaign_id.clone();
    }
    Ok(c)
}

/// What the bandit and the audience rule know about a user.
#[derive(Debug, Clone, Default)]
pub struct UserContext {
    pub churn_risk: f64,
    pub spend: f64,
    pub orders: u64,
    pub recency_days: f64,
    pub price_sensitivity: f64,
    pub segment: String,
    pub stage: String,
    pub degraded: Vec<String>,
}

impl UserContext {
    pub fn features(&self) -> Vec<f64> {
        vec![
            1.0,
            self.churn_risk.clamp(0.0, 1.0),
            (1.0 + self.spend.max(0.0)).ln() / 10.0,
            self.recency_days.clamp(0.0, 365.0) / 365.0,
            self.price_sensitivity.clamp(0.0, 1.0),
        ]
    }

    fn in_audience(&self, a: &pb::AudienceRule) -> bool {
        self.churn_risk >= a.min_churn_risk
            && self.spend >= a.min_spend
            && self.orders >= a.min_orders
            && (a.segments.is_empty() || a.segments.contains(&self.segment))
            && (a.stages.is_empty() || a.stages.contains(&self.stage))
    }
}

/// A stored JSON value, or `Corrupt` naming it.
fn parse<T: for<'de> Deserialize<'de>>(what: &str, raw: &str) -> Result<T> {
    serde_json::from_str(raw).map_err(|e| Error::Corrupt {
        what: what.to_string(),
        reason: e.to_string(),
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(what: &str, s: &str) -> Result<Vec<u8>> {
    if s.len() & 1 != 0 {
        return Err(Error::Corrupt {
            what: what.into(),
            reason: "odd hex length".into(),
        });
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| Error::Corrupt {
                what: what.into(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Ops that add one order of `revenue` to `rec` and its campaign counters.
pub fn attribution_ops(tenant: &str, rec: &mut OfferRecord, revenue: f64) -> Vec<Op> {
    let arm = arm_key(&rec.arm);
    let stats = keys::stats(tenant, &rec.campaign_id);
    let f = |name: &str| format!("{arm}.{name}");
    let before = rec.revenue;
    let mut ops = vec![
        Op::HIncr {
            key: stats.clone(),
            field: f("orders"),
            delta: 1,
        },
        Op::HIncrFloat {
            key: stats.clone(),
            field: f("rev"),
            delta: revenue,
        },
        // Σy² moves by (r + x)² - r² for this user.
        Op::HIncrFloat {
            key: stats.clone(),
            field: f("rev2"),
            delta: 2.0 * before * revenue + revenue * revenue,
        },
        Op::HIncrFloat {
            key: stats.clone(),
            field: f("prerev"),
            delta: rec.pre_spend * revenue,
        },
    ];
    if !rec.converted {
        ops.push(Op::HIncr {
            key: stats.clone(),
            field: f("conv"),
            delta: 1,
        });
        if !rec.offer.is_empty() {
            ops.push(Op::HIncr {
                key: stats,
                field: format!("converted.{}", rec.offer),
                delta: 1,
            });
        }
    }
    rec.converted = true;
    rec.orders += 1;
    rec.revenue += revenue;
    ops
}

fn arm_key(arm: &str) -> &'static str {
    if arm == "control" {
        "c"
    } else {
        "t"
    }
}

/// Sums the counter shards of one campaign.
fn sum_shards(shards: Vec<HashMap<String, String>>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for h in shards {
        for (k, v) in h {
            *out.entry(k).or_insert(0.0) += v.parse::<f64>().unwrap_or(0.0);
        }
    }
    out
}

fn counters(sums: &BTreeMap<String, f64>, arm: &str) -> GroupCounters {
    let g = |name: &str| sums.get(&format!("{arm}.{name}")).copied().unwrap_or(0.0);
    GroupCounters::from_sums(
        g("n") as u64,
        g("conv") as u64,
        g("orders") as u64,
        g("rev"),
        g("rev2"),
        g("pre"),
        g("pre2"),
        g("prerev"),
    )
}

fn arm_stats(g: &GroupCounters) -> pb::ArmStats {
    let n = g.participants.max(1) as f64;
    pb::ArmStats {
        participants: g.participants,
        converted: g.conversions,
        orders: g.orders,
        revenue: g.revenue,
        conversion_rate: g.conversions as f64 / n,
        revenue_per_user: g.revenue / n,
    }
}

fn lift(l: &mesh_engage::campaign::LiftEstimate) -> pb::Lift {
    pb::Lift {
        difference: l.difference,
        ci_low: l.ci_low,
        ci_high: l.ci_high,
        relative: l.relative_lift,
    }
}

impl Engage {
    pub fn now(&self) -> i64 {
        (self.clock)()
    }

    /// Of `members` (`<tenant>/<user>`), those erased: the erasure hash of
    /// each member's slot, in one round trip; none without members.
    pub async fn erased_among(
        &self,
        members: impl IntoIterator<Item = String>,
    ) -> Result<HashSet<String>> {
        let mut by_slot: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for m in members {
            let p = keys::slot(&m, self.partitions).partition;
            by_slot.entry(p).or_default().push(m);
        }
        for ms in by_slot.values_mut() {
            ms.sort();
            ms.dedup();
        }
        let reads: Vec<HashRead<'_>> = by_slot
            .iter()
            .map(|(p, ms)| HashRead::Fields {
                slot: keys::shard(*p),
                key: erasure::KEY.into(),
                fields: ms.clone(),
            })
            .collect();
        if reads.is_empty() {
            return Ok(HashSet::new());
        }
        let replies = self.store.hread_many(&reads).await?;
        let mut out = HashSet::new();
        for (ms, reply) in by_slot.into_values().zip(replies) {
            if let HashReply::Fields(values) = reply {
                out.extend(
                    ms.into_iter()
                        .zip(values)
                        .filter(|(_, v)| v.is_some())
                        .map(|(m, _)| m),
                );
            }
        }
        Ok(out)
    }

    /// Whether the user is erased (one `HMGET`).
    pub async fn is_erased(&self, tenant: &str, user: &str) -> Result<bool> {
        let member = erasure::member(tenant, user);
        Ok(!self.erased_among([member]).await?.is_empty())
    }

    /// The user's record in one campaign and whether the user is erased,
    /// in one round trip.
    async fn record_and_erasure(
        &self,
        tenant: &str,
        user: &str,
        campaign_id: &str,
    ) -> Result<(Option<OfferRecord>, bool)> {
        let member = erasure::member(tenant, user);
        let slot = keys::slot(&member, self.partitions);
        let replies = self
            .store
            .hread_many(&[
                HashRead::Fields {
                    slot,
                    key: keys::offers(tenant, user),
                    fields: vec![campaign_id.to_string()],
                },
                HashRead::Fields {
                    slot,
                    key: erasure::KEY.into(),
                    fields: vec![member],
                },
            ])
            .await?;
        let mut values = replies.into_iter().map(|r| match r {
            HashReply::Fields(mut v) => v.pop().flatten(),
            HashReply::Keys(_) => None,
        });
        let (raw, erased) = (values.next().flatten(), values.next().flatten());
        let rec = raw.map(|raw| parse("offer record", &raw)).transpose()?;
        Ok((rec, erased.is_some()))
    }

    /// Stores a campaign (replacing one of the same id) with a fresh bandit
    /// when its offers changed.
    pub async fn create_campaign(&self, c: pb::Campaign) -> Result<pb::Campaign> {
        let c = normalize(c, self.now())?;
        let home = keys::member(&c.tenant_id, &c.campaign_id);
        let slot = keys::slot(&home, self.partitions);
        let key = keys::campaign(&c.tenant_id, &c.campaign_id);
        let old = self.store.hgetall(slot, &key).await?;
        let same_offers = match old.get("def") {
            Some(raw) => {
                let prev =
                    pb::Campaign::decode(unhex("campaign", raw)?.as_slice()).map_err(|e| {
                        Error::Corrupt {
                            what: "campaign".into(),
                            reason: e.to_string(),
                        }
                    })?;
                prev.offers == c.offers
            }
            None => false,
        };
        let mut set = vec![("def".to_string(), hex(&c.encode_to_vec()))];
        if !same_offers {
            let names: Vec<&str> = c.offers.iter().map(String::as_str).collect();
            let bandit = ContextualBandit::new(
                &names,
                CONTEXT.len(),
                1.0,
                BanditPolicy::Thompson {
                    scale: self.settings.exploration,
                },
            )?;
            let ver: i64 = old.get("bver").and_then(|v| v.parse().ok()).unwrap_or(0);
            set.push((
                "bandit".into(),
                serde_json::to_string(&bandit).expect("bandit serializes"),
            ));
            set.push(("bver".into(), (ver + 1).to_string()));
        }
        let set_ref: Vec<(&str, &str)> =
            set.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        self.store.hset_if(slot, &key, &[], &set_ref).await?;
        let tslot = keys::slot(&c.tenant_id, self.partitions);
        let mut b = PartitionBatch::new(
            format!("campaign/{}/{}", home, c.created_at_ms),
            tslot.partition,
        );
        b.push(
            0,
            vec![Op::HSetNx {
                key: keys::campaigns(&c.tenant_id),
                field: c.campaign_id.clone(),
                value: c.created_at_ms.to_string(),
            }],
        );
        self.store.apply(SCOPE, &b).await?;
        let mut t = PartitionBatch::new(format!("tenant/{}", c.tenant_id), 0);
        t.push(
            0,
            vec![Op::HSetNx {
                key: keys::TENANTS.into(),
                field: c.tenant_id.clone(),
                value: c.created_at_ms.to_string(),
            }],
        );
        self.store.apply(SCOPE, &t).await?;
        Ok(c)
    }

    /// The stored campaign, if any.
    pub async fn campaign(&self, tenant: &str, id: &str) -> Result<Option<pb::Campaign>> {
        let slot = keys::slot(&keys::member(tenant, id), self.partitions);
        let h = self
            .store
            .hgetall(slot, &keys::campaign(tenant, id))
            .await?;
        match h.get("def") {
            None => Ok(None),
            Some(raw) => pb::Campaign::decode(unhex("campaign", raw)?.as_slice())
                .map(Some)
                .map_err(|e| Error::Corrupt {
                    what: "campaign".into(),
                    reason: e.to_string(),
                }),
        }
    }

    /// A tenant's campaigns by id; every tenant's for an empty tenant.
    pub async fn list_campaigns(&self, tenant: &str) -> Result<Vec<pb::Campaign>> {
        if tenant.is_empty() {
            let mut tenants: Vec<String> = self
                .store
                .hgetall(keys::shard(0), keys::TENANTS)
                .await?
                .into_keys()
                .collect();
            tenants.sort();
            let mut out = Vec::new();
            for t in tenants {
                out.extend(Box::pin(self.list_campaigns(&t)).await?);
            }
            return Ok(out);
        }
        check_text("tenant_id", tenant)?;
        let slot = keys::slot(tenant, self.partitions);
        let ids = self.store.hgetall(slot, &keys::campaigns(tenant)).await?;
        let mut ids: Vec<String> = ids.into_keys().collect();
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            if let Some(c) = self.campaign(tenant, &id).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// The retention campaign of a tenant, created on first use.
    async fn retention_campaign(&self, tenant: &str) -> Result<pb::Campaign> {
        if let Some(c) = self.campaign(tenant, RETENTION_CAMPAIGN).await? {
            return Ok(c);
        }
        self.create_campaign(pb::Campaign {
            tenant_id: tenant.into(),
            campaign_id: RETENTION_CAMPAIGN.into(),
            name: "Churn retention offers".into(),
            offers: self.settings.retention_offers.clone(),
            ..Default::default()
        })
        .await
    }

    /// What churn and profile say about a user (over gRPC); a peer that
    /// does not answer leaves its fields at 0 and is named in `degraded`.
    pub async fn user_context(&self, tenant: &str, user: &str) -> UserContext {
        use mesh_proto::churn::v1 as cpb;
        use mesh_proto::churn::v1::churn_service_client::ChurnServiceClient;
        use mesh_proto::profile::v1 as ppb;
        use mesh_proto::profile::v1::profile_service_client::ProfileServiceClient;
        let mut cx = UserContext::default();
        let churn = async {
            let peer = self.peers.churn.as_ref()?;
            let req = cpb::GetChurnRiskRequest {
                tenant_id: tenant.into(),
                user_id: user.into(),
                weeks: 0.0,
            };
            Some(
                peer.call("GetChurnRisk", req, |ch, r| async move {
                    ChurnServiceClient::new(ch).get_churn_risk(r).await
                })
                .await,
            )
        };
        let profile = async {
            let peer = self.peers.profile.as_ref()?;
            let req = ppb::GetProfileRequest {
                tenant_id: tenant.into(),
                user_id: user.into(),
            };
            Some(
                peer.call("GetProfile", req, |ch, r| async move {
                    ProfileServiceClient::new(ch).get_profile(r).await
                })
                .await,
            )
        };
        let (c, p) = tokio::join!(churn, profile);
        let not_found = |e: &mesh_runtime::peers::PeerError| {
            e.status()
                .is_some_and(|s| s.code() == tonic::Code::NotFound)
        };
        match c {
            Some(Ok(r)) => {
                cx.churn_risk = r
                    .supervised_churn_probability
                    .unwrap_or(r.churn_probability)
            }
            Some(Err(e)) if !not_found(&e) => {
                mesh_runtime::peers::degraded("engage", "churn");
                cx.degraded.push(format!("churn: {}", e.reason()));
            }
            _ => {}
        }
        match p {
            Some(Ok(p)) => {
                cx.spend = p.spend;
                cx.orders = p.orders;
                cx.recency_days = p.days_since_last_order.max(0.0);
                cx.price_sensitivity = p.price_sensitivity;
                cx.segment = p.segment_description.clone();
                cx.stage = ppb::Stage::try_from(p.stage)
                    .map(|s| s.as_str_name().trim_start_matches("STAGE_").to_lowercase())
                    .unwrap_or_default();
            }
            Some(Err(e)) if !not_found(&e) => {
                mesh_runtime::peers::degraded("engage", "profile");
                cx.degraded.push(format!("profile: {}", e.reason()));
            }
            _ => {}
        }
        cx
    }

    /// `ChooseOffer`, and the retention path (`alert_id` set: the offer id
    /// derives from it, so a redelivered action is answered once).
    ///
    /// An erased user is refused with [`Error::Erased`] (`NOT_FOUND`
    /// naming the user) before anything is read from peers or stored: an
    /// unknown user would be enrolled, an erased one must not be. The
    /// offer record, its index entry ([`keys::offer`]) and the user's list
    /// of index entries are written in one step behind the erasure guard;
    /// when the erasure is found after that step (the guard skipped it, or
    /// the erasure deleted it), nothing is published and the bandit is not
    /// touched.
    pub async fn choose_offer(
        &self,
        tenant: &str,
        campaign_id: &str,
        user: &str,
        alert_id: Option<&str>,
    ) -> Result<pb::OfferDecision> {
        check_text("tenant_id", tenant)?;
        check_text("user_id", user)?;
        check_id("campaign_id", campaign_id)?;
        let member = keys::member(tenant, user);
        let (existing, erased) = self.record_and_erasure(tenant, user, campaign_id).await?;
        if erased {
            return Err(Error::Erased(member));
        }
        let campaign = if campaign_id == RETENTION_CAMPAIGN && alert_id.is_some() {
            self.retention_campaign(tenant).await?
        } else {
            self.campaign(tenant, campaign_id)
                .await?
                .ok_or_else(|| Error::NotFound(format!("campaign {tenant}/{campaign_id}")))?
        };
        let now = self.now();
        let offer_id = match alert_id {
            Some(a) => format!("{a}/offer"),
            None => uuid::Uuid::now_v7().to_string(),
        };
        // A retention action seen before: its decision stands.
        if let Some(rec) = existing.as_ref().filter(|_| alert_id.is_some()) {
            if rec.offer_id == offer_id {
                return Ok(decision_of(rec, "", now));
            }
        }
        let cx = self.user_context(tenant, user).await;
        let audience = campaign.audience.clone().unwrap_or_default();
        let mut d = pb::OfferDecision {
            churn_risk: cx.churn_risk,
            spend: cx.spend,
            recency_days: cx.recency_days,
            segment: cx.segment.clone(),
            degraded: cx.degraded.clone(),
            at_ms: now,
            ..Default::default()
        };
        if !cx.in_audience(&audience) {
            d.reason = "not_in_audience".into();
            OFFERS.with_label_values(&["not_in_audience", ""]).inc();
            return Ok(d);
        }
        let slot = keys::slot(&member, self.partitions);
        let group = assign_group(campaign_id, user, campaign.control_share)?;
        let arm = match group {
            mesh_engage::campaign::Group::Treatment => "treatment",
            mesh_engage::campaign::Group::Control => "control",
        };
        d.arm = arm.into();
        let cap = FrequencyCap {
            max_sends: campaign.cap_per_user as usize,
            window_secs: (campaign.cap_window_hours * 3600.0) as i64,
        };
        let sent_secs: Vec<i64> = existing
            .as_ref()
            .map(|r| r.sent_ms.iter().map(|t| t / 1000).collect())
            .unwrap_or_default();
        if arm == "treatment" && !cap.allows(&sent_secs, now / 1000) {
            d.reason = "frequency_cap".into();
            OFFERS.with_label_values(&["frequency_cap", ""]).inc();
            return Ok(d);
        }
        let features = cx.features();
        let offer = if arm == "treatment" {
            self.bandit_choose(&campaign, &features).await?
        } else {
            String::new()
        };
        let first = existing.is_none();
        let mut rec = existing.unwrap_or_else(|| OfferRecord {
            campaign_id: campaign_id.into(),
            arm: arm.into(),
            pre_spend: cx.spend,
            joined_ms: now,
            last_offset: -1,
            ..Default::default()
        });
        rec.offer_id = offer_id.clone();
        rec.offer = offer.clone();
        rec.context = features.clone();
        if arm == "treatment" {
            rec.sent_ms.push(now);
            let keep = rec.sent_ms.len().saturating_sub(32);
            rec.sent_ms.drain(..keep);
        }
        let stats = keys::stats(tenant, campaign_id);
        let a = arm_key(arm);
        let index = keys::offer(tenant, &offer_id);
        let mut ops = vec![
            erasure::guard(&member),
            Op::HSet {
                key: keys::offers(tenant, user),
                field: campaign_id.into(),
                value: serde_json::to_string(&rec).expect("record serializes"),
            },
            Op::HSet {
                key: index.clone(),
                field: "user".into(),
                value: user.into(),
            },
            Op::HSet {
                key: index,
                field: "campaign".into(),
                value: campaign_id.into(),
            },
            Op::HSet {
                key: keys::offer_ids(tenant, user),
                field: offer_id.clone(),
                value: campaign_id.into(),
            },
        ];
        if first {
            ops.extend([
                Op::HIncr {
                    key: stats.clone(),
                    field: format!("{a}.n"),
                    delta: 1,
                },
                Op::HIncrFloat {
                    key: stats.clone(),
                    field: format!("{a}.pre"),
                    delta: rec.pre_spend,
                },
                Op::HIncrFloat {
                    key: stats.clone(),
                    field: format!("{a}.pre2"),
                    delta: rec.pre_spend * rec.pre_spend,
                },
            ]);
        }
        if !offer.is_empty() {
            ops.push(Op::HIncr {
                key: stats,
                field: format!("sent.{offer}"),
                delta: 1,
            });
        }
        let mut b = PartitionBatch::new(keys::offer_source("offer", &offer_id), slot.partition);
        b.push(0, ops);
        let applied = self.store.apply(SCOPE, &b).await?;
        if applied.applied == 0 {
            return Ok(decision_of(&rec, "", now));
        }
        // A skip by the guard counts as applied: an erasure recorded before
        // the step (or since, which deleted what it wrote) ends here.
        if self.is_erased(tenant, user).await? {
            return Err(Error::Erased(member));
        }
        if !offer.is_empty() {
            // Until a conversion says otherwise the offer earned nothing.
            self.bandit_update(tenant, campaign_id, &offer, &features, 0.0, true)
                .await?;
        }
        d.offer_id = offer_id.clone();
        d.offer = offer.clone();
        if arm == "control" {
            d.reason = "control".into();
        }
        OFFERS
            .with_label_values(&[if arm == "control" { "control" } else { "offer" }, &offer])
            .inc();
        let event = pb::OfferSent {
            tenant_id: tenant.into(),
            campaign_id: campaign_id.into(),
            user_id: user.into(),
            offer_id: offer_id.clone(),
            decision: Some(d.clone()),
            alert_id: alert_id.unwrap_or_default().into(),
        };
        let h = headers::cloud_event(
            "mesh.engage.v1.OfferSent",
            &offer_id,
            "mesh-engage",
            tenant,
            user,
            now,
        );
        self.producer
            .send(&self.topic, &member, &event.encode_to_vec(), &h)
            .await?;
        Ok(d)
    }

    pub async fn offer_record(
        &self,
        tenant: &str,
        user: &str,
        campaign_id: &str,
    ) -> Result<Option<OfferRecord>> {
        let slot = keys::slot(&keys::member(tenant, user), self.partitions);
        let h = self
            .store
            .hgetall(slot, &keys::offers(tenant, user))
            .await?;
        h.get(campaign_id)
            .map(|raw| parse("offer record", raw))
            .transpose()
    }

    async fn bandit_choose(&self, c: &pb::Campaign, features: &[f64]) -> Result<String> {
        let slot = keys::slot(&keys::member(&c.tenant_id, &c.campaign_id), self.partitions);
        let h = self
            .store
            .hgetall(slot, &keys::campaign(&c.tenant_id, &c.campaign_id))
            .await?;
        let bandit: ContextualBandit = match h.get("bandit") {
            Some(raw) => parse("bandit", raw)?,
            None => return Ok(c.offers[0].clone()),
        };
        let i = bandit.choose(features, &mut rand::rng())?;
        Ok(bandit.arms[i].name.clone())
    }

    /// Adds one observation to the campaign's bandit, compare-and-set on
    /// its version (retried when another writer won). `pull` = a new offer
    /// (adds `x xᵀ` and `r x`); otherwise only the reward `r x` is added,
    /// which turns an earlier zero-reward pull into a reward-`r` one.
    pub async fn bandit_update(
        &self,
        tenant: &str,
        campaign_id: &str,
        offer: &str,
        features: &[f64],
        reward: f64,
        pull: bool,
    ) -> Result<()> {
        let slot = keys::slot(&keys::member(tenant, campaign_id), self.partitions);
        let key = keys::campaign(tenant, campaign_id);
        let _local = self.bandit_lock.lock().await;
        for attempt in 0..16u64 {
            if attempt > 0 {
                // Another replica won: back off a little, growing, jittered.
                let ms = attempt * 2 + (self.now().unsigned_abs() % 7);
                tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            }
            let h = self.store.hgetall(slot, &key).await?;
            let (Some(raw), Some(ver)) = (h.get("bandit"), h.get("bver")) else {
                return Ok(());
            };
            let mut bandit: ContextualBandit = parse("bandit", raw)?;
            let Some(arm) = bandit.arms.iter().position(|a| a.name == offer) else {
                return Ok(());
            };
            if pull {
                bandit.update(features, arm, reward)?;
            } else {
                bandit.add_reward(features, arm, reward)?;
            }
            let next = (ver.parse::<i64>().unwrap_or(0) + 1).to_string();
            let json = serde_json::to_string(&bandit).expect("bandit serializes");
            if self
                .store
                .hset_if(
                    slot,
                    &key,
                    &[("bver", Some(ver.as_str()))],
                    &[("bandit", json.as_str()), ("bver", next.as_str())],
                )
                .await?
            {
                return Ok(());
            }
        }
        tracing::warn!(
            tenant,
            campaign_id,
            "bandit update lost to concurrent writers 16 times; skipped"
        );
        Ok(())
    }

    /// `RecordResponse`: a click or a conversion reported by a client. The
    /// offer is looked up in every shard (its index entry lives in the
    /// user's slot, unknown here). An erased user's offer is an unknown
    /// offer (`NOT_FOUND`), and a response the erasure overtook publishes
    /// nothing.
    pub async fn record_response(&self, r: &pb::RecordResponseRequest) -> Result<bool> {
        check_text("tenant_id", &r.tenant_id)?;
        check_text("offer_id", &r.offer_id)?;
        if r.kind != "click" && r.kind != "conversion" {
            return Err(Error::invalid(
                "kind",
                "must be \"click\" or \"conversion\"",
            ));
        }
        if !r.revenue.is_finite() || r.revenue < 0.0 || r.revenue > 1e12 {
            return Err(Error::invalid("revenue", "must be finite, in [0, 1e12]"));
        }
        let tenant = r.tenant_id.as_str();
        let unknown = || Error::NotFound(format!("offer {tenant}/{}", r.offer_id));
        let index = keys::offer(tenant, &r.offer_id);
        let shards: Vec<_> = (0..self.partitions)
            .map(|p| (keys::shard(p), index.clone()))
            .collect();
        let idx = self
            .store
            .hgetall_many(&shards)
            .await?
            .into_iter()
            .find(|h| h.contains_key("user") && h.contains_key("campaign"))
            .ok_or_else(unknown)?;
        let (user, campaign) = (&idx["user"], &idx["campaign"]);
        let (rec, erased) = self.record_and_erasure(tenant, user, campaign).await?;
        if erased {
            return Err(unknown());
        }
        let mut rec =
            rec.ok_or_else(|| Error::NotFound(format!("offer record of {tenant}/{user}")))?;
        let member = keys::member(tenant, user);
        let slot = keys::slot(&member, self.partitions);
        let was_converted = rec.converted;
        let mut ops = vec![erasure::guard(&member)];
        if r.kind == "click" {
            ops.push(Op::HIncr {
                key: keys::stats(tenant, campaign),
                field: format!("clicks.{}", rec.offer),
                delta: 1,
            });
        } else {
            ops.extend(attribution_ops(tenant, &mut rec, r.revenue));
            ops.push(Op::HSet {
                key: keys::offers(tenant, user),
                field: campaign.clone(),
                value: serde_json::to_string(&rec).expect("record serializes"),
            });
        }
        let source = keys::offer_source(&format!("response/{}", r.kind), &r.offer_id);
        let mut b = PartitionBatch::new(source, slot.partition);
        b.push(0, ops);
        let applied = self.store.apply(SCOPE, &b).await?;
        if applied.applied == 0 {
            return Ok(false);
        }
        if self.is_erased(tenant, user).await? {
            return Err(unknown());
        }
        RESPONSES.with_label_values(&[r.kind.as_str(), "rpc"]).inc();
        if r.kind == "conversion" && !was_converted && !rec.offer.is_empty() {
            self.bandit_update(tenant, campaign, &rec.offer, &rec.context, 1.0, false)
                .await?;
        }
        self.publish_response(tenant, campaign, user, &rec, &r.kind, r.revenue, "")
            .await?;
        Ok(true)
    }

    #[allow(clippy::too_many_arguments)]
    pub async fn publish_response(
        &self,
        tenant: &str,
        campaign: &str,
        user: &str,
        rec: &OfferRecord,
        kind: &str,
        revenue: f64,
        order_id: &str,
    ) -> Result<()> {
        let now = self.now();
        let event = pb::OfferResponse {
            tenant_id: tenant.into(),
            campaign_id: campaign.into(),
            user_id: user.into(),
            offer_id: rec.offer_id.clone(),
            offer: rec.offer.clone(),
            kind: kind.into(),
            revenue,
            order_id: order_id.into(),
            at_ms: now,
        };
        let id = format!("{}/{kind}/{order_id}", rec.offer_id);
        let h = headers::cloud_event(
            "mesh.engage.v1.OfferResponse",
            &id,
            "mesh-engage",
            tenant,
            user,
            now,
        );
        self.producer
            .send(
                &self.topic,
                &keys::member(tenant, user),
                &event.encode_to_vec(),
                &h,
            )
            .await?;
        Ok(())
    }

    /// `CampaignReport`.
    pub async fn report(
        &self,
        tenant: &str,
        campaign_id: &str,
    ) -> Result<pb::CampaignReportResponse> {
        check_text("tenant_id", tenant)?;
        check_id("campaign_id", campaign_id)?;
        let campaign = self
            .campaign(tenant, campaign_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("campaign {tenant}/{campaign_id}")))?;
        let keys_: Vec<_> = (0..self.partitions)
            .map(|p| (keys::shard(p), keys::stats(tenant, campaign_id)))
            .collect();
        let sums = sum_shards(self.store.hgetall_many(&keys_).await?);
        let mut core = Core::new(CampaignConfig {
            campaign_id: campaign_id.into(),
            control_share: campaign.control_share,
            sequential: SequentialConfig::default(),
        })?;
        core.treatment = counters(&sums, "t");
        core.control = counters(&sums, "c");
        let alpha = core.config.sequential.alpha;
        let mut out = pb::CampaignReportResponse {
            treatment: Some(arm_stats(&core.treatment)),
            control: Some(arm_stats(&core.control)),
            alpha,
            sequential_p_value: 1.0,
            sequential_min_per_arm: core.config.sequential.min_per_arm,
            at_ms: self.now(),
            ..Default::default()
        };
        for (k, v) in &sums {
            if let Some(o) = k.strip_prefix("sent.") {
                out.offers_sent.insert(o.to_string(), *v as u64);
            } else if let Some(o) = k.strip_prefix("converted.") {
                out.offers_converted.insert(o.to_string(), *v as u64);
            }
        }
        out.campaign = Some(campaign);
        let Ok(report) = core.report() else {
            return Ok(out);
        };
        out.ready = true;
        out.conversion_lift = Some(lift(&report.conversion));
        out.revenue_lift = Some(lift(&report.revenue_per_user));
        out.revenue_lift_cuped = Some(lift(&report.revenue_per_user_cuped));
        out.cuped_variance_reduction = report.cuped_variance_reduction;
        // The always-valid p-value is the running minimum over every look:
        // each report is a look, and the minimum is kept in the store.
        let look = core.monitor();
        let p = look.state.conversion_p_value;
        let slot = keys::slot(&keys::member(tenant, campaign_id), self.partitions);
        let key = keys::campaign(tenant, campaign_id);
        let stored: Option<f64> = self
            .store
            .hgetall(slot, &key)
            .await?
            .get("seq_p")
            .and_then(|v| v.parse().ok());
        let p_min = stored.map_or(p, |s| s.min(p));
        if stored.is_none_or(|s| p < s) {
            let v = p_min.to_string();
            let guard = stored.map(|s| s.to_string());
            let _ = self
                .store
                .hset_if(
                    slot,
                    &key,
                    &[("seq_p", guard.as_deref())],
                    &[("seq_p", v.as_str())],
                )
                .await?;
        }
        out.sequential_p_value = p_min;
        out.significant = p_min <= alpha;
        Ok(out)
    }
}

fn decision_of(rec: &OfferRecord, reason: &str, now: i64) -> pb::OfferDecision {
    pb::OfferDecision {
        offer_id: rec.offer_id.clone(),
        offer: rec.offer.clone(),
        arm: rec.arm.clone(),
        reason: if rec.arm == "control" {
            "control".into()
        } else {
            reason.into()
        },
        at_ms: now,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn campaigns_are_validated_naming_the_field() {
        let ok = pb::Campaign {
            tenant_id: "t".into(),
            campaign_id: "spring-1".into(),
            offers: vec!["coupon".into(), "bundle".into()],
            ..Default::default()
        };
        let c = normalize(ok.clone(), 5).unwrap();
        assert_eq!(
            (c.control_share, c.cap_per_user, c.created_at_ms),
            (0.1, 1, 5)
        );
        for (bad, field) in [
            (
                pb::Campaign {
                    campaign_id: "a b".into(),
                    ..ok.clone()
                },
                "campaign_id",
            ),
            (
                pb::Campaign {
                    offers: vec![],
                    ..ok.clone()
                },
                "offers",
            ),
            (
                pb::Campaign {
                    offers: vec!["x".into(), "x".into()],
                    ..ok.clone()
                },
                "offers",
            ),
            (
                pb::Campaign {
                    control_share: 1.5,
                    ..ok.clone()
                },
                "control_share",
            ),
            (
                pb::Campaign {
                    control_share: f64::NAN,
                    ..ok.clone()
                },
                "control_share",
            ),
            (
                pb::Campaign {
                    attribution_days: f64::INFINITY,
                    ..ok.clone()
                },
                "attribution_days",
            ),
            (
                pb::Campaign {
                    created_at_ms: -5,
                    ..ok.clone()
                },
                "created_at_ms",
            ),
            (
                pb::Campaign {
                    created_at_ms: 4_102_444_800_000,
                    ..ok.clone()
                },
                "created_at_ms",
            ),
        ] {
            let e = normalize(bad, 0).unwrap_err().to_string();
            assert!(e.starts_with(field), "{e}");
        }
    }

    #[test]
    fn attribution_moves_the_sums_of_squares_by_the_users_change() {
        let mut rec = OfferRecord {
            campaign_id: "c".into(),
            arm: "treatment".into(),
            offer: "coupon".into(),
            pre_spend: 10.0,
            ..Default::default()
        };
        let ops1 = attribution_ops("t", &mut rec, 3.0);
        let ops2 = attribution_ops("t", &mut rec, 4.0);
        let rev2: f64 = ops1
            .iter()
            .chain(&ops2)
            .filter_map(|o| match o {
                Op::HIncrFloat { field, delta, .. } if field == "t.rev2" => Some(*delta),
                _ => None,
            })
            .sum();
        // The user's revenue is 7: Σy² must be 49, not 9 + 16.
        assert_eq!(rev2, 49.0);
        let conv = ops1
            .iter()
            .chain(&ops2)
            .filter(|o| matches!(o, Op::HIncr { field, .. } if field == "t.conv"))
            .count();
        assert_eq!(conv, 1, "a user converts once");
        assert_eq!((rec.orders, rec.revenue), (2, 7.0));
    }
}

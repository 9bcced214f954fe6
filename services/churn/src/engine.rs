//! Scoring, hysteresis and retention: the work behind the handler, the
//! sweep and the gRPC methods.
//!
//! **Alerts once per crossing.** The hysteresis state lives in the user's
//! hash (`alerted`, `alert_n`). A transition is decided on the state as
//! read — fire at `risk >= threshold` when not alerted, re-arm at `risk <=
//! rearm_below`, as the core's [`ChurnScorer`] does — then written with one
//! compare-and-set ([`StateStore::hset_if`]) guarded by the fields the
//! decision was made from (`alerted`, `alert_n`, `orders`). Whoever runs it
//! — an order, the sweep, a second instance, a retry after a crash — at
//! most one writer wins a crossing, and only the winner publishes. The
//! alert carries `alert_id = <tenant>/<user>/<n>`; `sent_n` records the
//! highest alert published, so a crash between the write and the publish is
//! repaired by the next evaluation (at-least-once publish, deduplicable by
//! `alert_id`), never by a second crossing.
//!
//! **Erased users.** An erasure deletes the user's hash and index entry
//! ([`crate::summary::erasure_ops`]). Every write here is a compare-and-set
//! guarded by fields of that hash as read (`orders`, `first`, `alert_n`),
//! so an evaluation that read the user just before the erasure fails its
//! guard instead of writing a fresh hash, and publishes nothing new.
//!
//! **One probability.** [`Churn::risk`] is the only place a churn
//! probability is chosen: the stored supervised classifier's when one is
//! loaded (its own horizon, features from [`mesh_churn::features::features`]
//! exactly as `mesh train churn` built them), else BG/NBD's. The hysteresis,
//! the alerts, `ListAtRisk` and `GetChurnRisk` all take it from there and
//! name the model (`supervised:<version>` or `bgnbd`).
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use mesh_bus::headers::{self, HeaderList};
use mesh_bus::Producer;
use mesh_churn::gamma_gamma::customer_lifetime_value;
use mesh_churn::retention::{self, Arm, ArmOutcome, IntervalMethod};
use mesh_churn::scoring::{AlertConfig, ChurnScorer};
use mesh_churn::training::TrainedChurnModel;
use mesh_proto::churn::v1 as pb;
use mesh_runtime::announce::Announcement;
use mesh_runtime::Clock;
use mesh_store::{Slot, StateStore};
use prost::Message;

use crate::error::Result;
use crate::metrics::{ACTIONS, ALERTS, RETURNS, SWEEP_SECONDS, SWEPT};
use crate::model::Model;
use crate::summary::{self, Summary, INDEX_KEY};

/// Scope of the churn service's keys in the store.
pub const SCOPE: &str = "churn";

/// Scoring, CLV and retention settings.
#[derive(Debug, Clone)]
pub struct Scoring {
    pub alert: AlertConfig,
    /// CLV discount rate per month (4.33 weeks).
    pub discount_rate: f64,
    /// CLV horizon in weeks.
    pub clv_weeks: f64,
    /// Action for treated users: `coupon`, `message` or `boost_recs`.
    pub action: String,
    /// Share of alerted users held out from the action.
    pub holdout_share: f64,
    /// Salt of the holdout assignment.
    pub salt: String,
}

/// Weeks per CLV step (one month).
const CLV_STEP_WEEKS: f64 = 52.0 / 12.0;

/// A fixed instant, so one evaluation scores at one "now" (the model
/// crate's own clock trait: it does not depend on the runtime).
struct At(DateTime<Utc>);

impl mesh_churn::scoring::Clock for At {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// Name of the BG/NBD model in `model` fields.
pub const BGNBD: &str = "bgnbd";

/// The churn probability of one user at one instant and where it came from.
#[derive(Debug, Clone)]
pub struct Risk {
    /// Probability of no order in the next `horizon_weeks` weeks.
    pub probability: f64,
    pub horizon_weeks: f64,
    /// `supervised:<version>` or [`BGNBD`].
    pub model: String,
    /// BG/NBD P(alive), only when `model` is BG/NBD.
    pub p_alive: Option<f64>,
    /// The supervised model, when it produced `probability`.
    pub supervised: Option<Arc<TrainedChurnModel>>,
}

/// A user's churn picture at one instant.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub summary: Summary,
    /// The churn probability in use ([`Churn::risk`]).
    pub churn: Risk,
    /// BG/NBD probability of no order in the configured horizon.
    pub risk: f64,
    pub p_alive: f64,
    pub expected_purchases: f64,
    pub weeks: f64,
    pub clv: f64,
    pub reasons: Vec<String>,
    pub rfm: mesh_churn::data::Rfm,
    pub at: DateTime<Utc>,
    /// The supervised model's churn probability and the model, when one is
    /// stored.
    pub supervised: Option<(f64, Arc<TrainedChurnModel>)>,
}

/// Users evaluated at once by a batch or a sweep ([`Churn::evaluate_all`]).
pub const EVALUATE_CONCURRENCY: usize = 32;

/// What one evaluation changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Effects {
    pub fired: u64,
    pub rearmed: u64,
    pub republished: u64,
    pub returned: u64,
}

impl std::ops::AddAssign for Effects {
    fn add_assign(&mut self, o: Self) {
        self.fired += o.fired;
        self.rearmed += o.rearmed;
        self.republished += o.republished;
        self.returned += o.returned;
    }
}

/// The service's working parts, shared by handler, sweep and gRPC.
pub struct Churn {
    pub store: StateStore,
    pub producer: Producer,
    pub alerts_topic: String,
    pub partitions: i32,
    pub model: Model,
    pub scoring: Scoring,
    pub clock: Arc<dyn Clock>,
    /// The supervised model stored by `mesh train churn`, swapped in by
    /// [`Churn::refresh_supervised`] without a restart.
    pub supervised: RwLock<Option<Arc<TrainedChurnModel>>>,
    /// Recommend, asked for the items of a retention offer.
    pub recommend: Option<mesh_runtime::peers::Peer>,
}

/// Items of a retention offer.
const OFFER_ITEMS: u32 = 5;

impl Churn {
    /// The items recommend would show the user, for a retention offer:
    /// `(items, degraded)`; no items and a reason when recommend did not
    /// answer (the action is still published: the platform can send a
    /// generic offer).
    async fn offer_items(&self, tenant: &str, user: &str) -> (Vec<String>, Vec<String>) {
        use mesh_proto::recommend::v1 as rpb;
        use mesh_proto::recommend::v1::recommend_service_client::RecommendServiceClient;
        let Some(peer) = &self.recommend else {
            return (Vec::new(), Vec::new());
        };
        let req = rpb::RecommendRequest {
            tenant_id: tenant.to_string(),
            user_id: user.to_string(),
            n: OFFER_ITEMS,
            ..Default::default()
        };
        let res = peer
            .call("Recommend", req, |ch, r| async move {
                RecommendServiceClient::new(ch).recommend(r).await
            })
            .await;
        match res {
            Ok(r) => (r.items.into_iter().map(|i| i.item_id).collect(), Vec::new()),
            Err(e) => {
                mesh_runtime::peers::degraded("churn", "recommend");
                (
                    Vec::new(),
                    vec![format!("{} (offer without items)", e.reason())],
                )
            }
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// The supervised model in use, if any.
    pub fn supervised(&self) -> Option<Arc<TrainedChurnModel>> {
        self.supervised
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Loads the stored supervised model when its version differs from the
    /// one in use (one `HMGET` when nothing changed). Returns true when a
    /// new model was swapped in.
    pub async fn refresh_supervised(&self) -> Result<bool> {
        let Some(stored) = crate::model::stored_supervised_version(&self.store).await? else {
            return Ok(false);
        };
        if self
            .supervised()
            .is_some_and(|m| m.report.version == stored)
        {
            return Ok(false);
        }
        let Some(m) = crate::model::load_supervised(&self.store).await? else {
            return Ok(false);
        };
        tracing::info!(
            version = %m.report.version,
            validation_auc = m.report.validation_auc,
            "churn: supervised model loaded"
        );
        *self.supervised.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(m));
        Ok(true)
    }

    fn scorer(&self, now: DateTime<Utc>, alert: AlertConfig) -> Result<ChurnScorer<At>> {
        Ok(ChurnScorer::new(self.model.bgnbd, alert, At(now))?)
    }

    /// The partition slot that owns a user.
    pub fn slot_of(&self, member: &str) -> Slot<'static> {
        Slot {
            scope: SCOPE,
            partition: mesh_bus::partition::partition_for(member, self.partitions),
        }
    }

    /// Scores a summary at `now` with the core's scorer; `weeks` is the
    /// horizon of `expected_purchases` (0: the risk horizon).
    pub fn assess(&self, s: &Summary, now: DateTime<Utc>, weeks: f64) -> Result<Assessment> {
        let h = self.scoring.alert.horizon_weeks;
        let weeks = if weeks > 0.0 { weeks } else { h };
        let mut st = s.customer_state();
        let score = self.scorer(now, self.scoring.alert)?.on_tick(&mut st)?;
        // A threshold of 0 makes the core explain every score.
        let explain = AlertConfig {
            threshold: 0.0,
            rearm_below: 0.0,
            horizon_weeks: h,
        };
        let mut st = s.customer_state();
        st.alerted = false;
        let reasons = self
            .scorer(now, explain)?
            .on_tick(&mut st)?
            .alert
            .map(|a| a.reasons)
            .unwrap_or_default();
        let rfm = s.rfm(now);
        let expected = if weeks == h {
            score.expected_purchases
        } else {
            self.model.bgnbd.conditional_expected(weeks, &rfm)?
        };
        let steps = (self.scoring.clv_weeks / CLV_STEP_WEEKS).ceil().max(1.0) as usize;
        let clv = customer_lifetime_value(
            &self.model.bgnbd,
            &self.model.gamma_gamma,
            &rfm,
            s.repeat_spend().map(|sp| sp.mean_value),
            steps,
            CLV_STEP_WEEKS,
            self.scoring.discount_rate,
        )?;
        let churn = self.risk(s, now)?;
        let supervised = churn
            .supervised
            .as_ref()
            .map(|m| (churn.probability, m.clone()));
        let reasons = if churn.supervised.is_some() {
            self.supervised_reasons(s, &churn, reasons, now)
        } else {
            reasons
        };
        Ok(Assessment {
            churn,
            supervised,
            summary: s.clone(),
            risk: score.risk,
            p_alive: score.p_alive,
            expected_purchases: expected,
            weeks,
            clv,
            reasons,
            rfm,
            at: now,
        })
    }

    /// The churn probability of `s` at `now` (see the module doc): the
    /// stored supervised classifier's when one is loaded, else BG/NBD's
    /// risk exactly as the core's scorer computes it.
    pub fn risk(&self, s: &Summary, now: DateTime<Utc>) -> Result<Risk> {
        if let Some(m) = self.supervised() {
            let activity = s.activity();
            match m.churn_probability_with(
                &s.history(""),
                Some(&activity),
                now.date_naive(),
                &self.model.bgnbd,
            ) {
                Ok(Some(p)) => {
                    return Ok(Risk {
                        probability: p,
                        horizon_weeks: f64::from(m.report.horizon_weeks),
                        model: format!("supervised:{}", m.report.version),
                        p_alive: None,
                        supervised: Some(m),
                    })
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(%e, version = %m.report.version, "churn: supervised model cannot score; using BG/NBD")
                }
            }
        }
        let mut st = s.customer_state();
        let score = self.scorer(now, self.scoring.alert)?.on_tick(&mut st)?;
        Ok(Risk {
            probability: score.risk,
            horizon_weeks: self.scoring.alert.horizon_weeks,
            model: BGNBD.into(),
            p_alive: Some(score.p_alive),
            supervised: None,
        })
    }

    /// Reasons for a supervised probability: the model and its figure, the
    /// behaviour that stands out, then BG/NBD's purchase reasons.
    fn supervised_reasons(
        &self,
        s: &Summary,
        risk: &Risk,
        purchase: Vec<String>,
        now: DateTime<Utc>,
    ) -> Vec<String> {
        use mesh_churn::behaviour::{LONG_WINDOW_DAYS, SHORT_WINDOW_DAYS};
        let today = now.date_naive();
        let a = s.activity();
        let (short, long) = (
            a.window(today, SHORT_WINDOW_DAYS),
            a.window(today, LONG_WINDOW_DAYS),
        );
        let mut out = vec![format!(
            "{}: P(no order in {} weeks) = {:.2}",
            risk.model, risk.horizon_weeks, risk.probability
        )];
        let silent =
            (now.timestamp_millis() - s.last_active_ms).max(0) as f64 / (7.0 * 86_400_000.0);
        if silent >= 1.0 {
            out.push(format!("no activity for {silent:.0} weeks"));
        }
        if long.logins > 0.0 || short.logins > 0.0 {
            out.push(format!(
                "{} logins in 4 weeks, {} in 13",
                short.logins, long.logins
            ));
        }
        if long.complaints > 0.0 {
            out.push(format!("{} complaints in 13 weeks", long.complaints));
        }
        if long.support > 0.0 {
            out.push(format!("{} support messages in 13 weeks", long.support));
        }
        out.extend(purchase);
        out
    }

    /// A user's stored summary; `None` before the first order.
    pub async fn summary(&self, tenant: &str, user: &str) -> Result<Option<Summary>> {
        let member = summary::member(tenant, user);
        let h = self
            .store
            .hgetall(self.slot_of(&member), &summary::user_key(&member))
            .await?;
        Ok(Summary::from_hash(h))
    }

    /// Every user of one partition with their summary, in index order.
    pub async fn partition_summaries(&self, partition: i32) -> Result<Vec<(String, Summary)>> {
        let slot = Slot {
            scope: SCOPE,
            partition,
        };
        let members = self.store.ztop(slot, INDEX_KEY, i64::MAX as usize).await?;
        let mut out = Vec::with_capacity(members.len());
        for chunk in members.chunks(1000) {
            let keys: Vec<_> = chunk
                .iter()
                .map(|(m, _)| (slot, summary::user_key(m)))
                .collect();
            let hashes = self.store.hgetall_many(&keys).await?;
            for ((m, _), h) in chunk.iter().zip(hashes) {
                if let Some(s) = Summary::from_hash(h) {
                    out.push((m.clone(), s));
                }
            }
        }
        Ok(out)
    }

    /// Every user's summary, all partitions.
    pub async fn all_summaries(&self) -> Result<Vec<(String, Summary)>> {
        let mut out = Vec::new();
        for p in 0..self.partitions {
            out.extend(self.partition_summaries(p).await?);
        }
        Ok(out)
    }

    /// [`Self::evaluate`] of every user, [`EVALUATE_CONCURRENCY`] at a
    /// time: users are independent (each transition is a compare-and-set
    /// on the user's own hash), and an evaluation that fires an alert waits
    /// on the broker and on recommend, so one at a time would leave a batch
    /// waiting on those round trips in a row (a replay that fired 3,478
    /// alerts spent 345 s in serial `Recommend` calls).
    pub async fn evaluate_all(
        &self,
        slot: Slot<'_>,
        users: Vec<(String, Summary)>,
        now: DateTime<Utc>,
    ) -> Result<Effects> {
        use futures::{StreamExt, TryStreamExt};
        futures::stream::iter(users)
            .map(|(member, s)| async move { self.evaluate(slot, &member, &s, now).await })
            .buffer_unordered(EVALUATE_CONCURRENCY)
            .try_fold(Effects::default(), |mut all, fx| async move {
                all += fx;
                Ok(all)
            })
            .await
    }

    /// Re-scores one user at `now`: records a return after an alert, fires
    /// or re-arms the alert (compare-and-set, see the module doc), and
    /// publishes what it won.
    pub async fn evaluate(
        &self,
        slot: Slot<'_>,
        member: &str,
        s: &Summary,
        now: DateTime<Utc>,
    ) -> Result<Effects> {
        let key = summary::user_key(member);
        let announce = Announcement {
            store: &self.store,
            slot,
            key: &key,
            counter: "alert_n",
        };
        let raw = |f: &str| s.raw.get(f).map(String::as_str);
        let mut fx = Effects::default();
        if let Some(first_alert) = s.first_alert_at_ms {
            if !s.returned && s.last_ms > first_alert {
                let last = s.last_ms.to_string();
                let set = [("returned", "1"), ("returned_at", last.as_str())];
                // `first` as read: the hash still holds the user (an
                // erasure deletes it; this write must not bring it back).
                let guard = [("returned", None), ("first", raw("first"))];
                if self.store.hset_if(slot, &key, &guard, &set).await? {
                    RETURNS.inc();
                    fx.returned += 1;
                }
            }
        }
        let risk = self.risk(s, now)?;
        let alert = self.scoring.alert;
        let guard = [
            ("alerted", raw("alerted")),
            ("alert_n", raw("alert_n")),
            ("orders", raw("orders")),
        ];
        if !s.alerted && risk.probability >= alert.threshold {
            let n = s.alert_n + 1;
            let arm =
                match retention::assign(member, &self.scoring.salt, self.scoring.holdout_share)? {
                    Arm::Treatment => "treatment",
                    Arm::Holdout => "holdout",
                };
            let (n_text, at) = (n.to_string(), now.timestamp_millis().to_string());
            let mut set = vec![
                ("alerted", "1"),
                ("alert_n", n_text.as_str()),
                ("alerted_at", at.as_str()),
                ("arm", arm),
            ];
            if s.first_alert_at_ms.is_none() {
                set.push(("first_alert_at", at.as_str()));
            }
            if announce.claim(&guard, &set).await? {
                ALERTS.with_label_values(&["fired"]).inc();
                fx.fired += 1;
                let reasons = self.assess(s, now, 0.0)?.reasons;
                announce
                    .send(n, || self.publish(member, n, arm, &risk, reasons, now))
                    .await?;
            }
        } else if s.alerted && risk.probability <= alert.rearm_below {
            if self
                .store
                .hset_if(slot, &key, &guard, &[("alerted", "0")])
                .await?
            {
                ALERTS.with_label_values(&["rearmed"]).inc();
                fx.rearmed += 1;
            }
        } else if s.alerted && s.sent_n < s.alert_n {
            // Fired but not published (crash or broker error): publish the
            // same alert id again.
            let reasons = self.assess(s, now, 0.0)?.reasons;
            announce
                .send(s.alert_n, || {
                    self.publish(member, s.alert_n, &s.arm, &risk, reasons, now)
                })
                .await?;
            ALERTS.with_label_values(&["republished"]).inc();
            fx.republished += 1;
        }
        Ok(fx)
    }

    async fn publish(
        &self,
        member: &str,
        n: u64,
        arm: &str,
        risk: &Risk,
        reasons: Vec<String>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let (tenant, user) = summary::split_member(member);
        let alert_id = format!("{member}/{n}");
        let at_ms = now.timestamp_millis();
        let alert = pb::ChurnAlert {
            tenant_id: tenant.into(),
            user_id: user.into(),
            risk: risk.probability,
            p_alive: risk.p_alive.unwrap_or(0.0),
            reasons,
            at_ms,
            alert_id: alert_id.clone(),
            arm: arm.into(),
            model: risk.model.clone(),
            horizon_weeks: risk.horizon_weeks,
        };
        let h = ce_headers("mesh.churn.v1.ChurnAlert", &alert_id, tenant, user, now);
        self.producer
            .send(&self.alerts_topic, member, &alert.encode_to_vec(), &h)
            .await?;
        if arm == "treatment" {
            let (offer_items, degraded) = self.offer_items(tenant, user).await;
            let action = pb::RetentionAction {
                tenant_id: tenant.into(),
                user_id: user.into(),
                action: self.scoring.action.clone(),
                arm: arm.into(),
                alert_id: alert_id.clone(),
                at_ms,
                offer_items,
                degraded,
            };
            let id = format!("{alert_id}/action");
            let h = ce_headers("mesh.churn.v1.RetentionAction", &id, tenant, user, now);
            self.producer
                .send(&self.alerts_topic, member, &action.encode_to_vec(), &h)
                .await?;
            ACTIONS.with_label_values(&[&self.scoring.action]).inc();
        }
        Ok(())
    }

    /// Re-scores every user at the clock's now. Safe to run on several
    /// instances at once: every transition is a compare-and-set.
    pub async fn sweep_once(&self) -> Result<Effects> {
        let started = std::time::Instant::now();
        if let Err(e) = self.refresh_supervised().await {
            tracing::warn!(%e, "churn: could not load the stored supervised model; keeping the current one");
        }
        let now = self.now();
        let mut fx = Effects::default();
        for partition in 0..self.partitions {
            let slot = Slot {
                scope: SCOPE,
                partition,
            };
            let users = self.partition_summaries(partition).await?;
            SWEPT.inc_by(users.len() as u64);
            fx += self.evaluate_all(slot, users, now).await?;
        }
        SWEEP_SECONDS.observe(started.elapsed().as_secs_f64());
        Ok(fx)
    }

    /// Users whose churn probability ([`Churn::risk`]: the supervised
    /// model's when stored, else BG/NBD's) is at or above `threshold`, by
    /// that probability descending then member ascending; `after` is the last `(risk, member)` of the previous page.
    pub async fn at_risk(
        &self,
        threshold: f64,
        after: Option<(f64, String)>,
        limit: usize,
        tenant: &str,
    ) -> Result<(Vec<pb::AtRiskUser>, Option<(f64, String)>)> {
        let now = self.now();
        let mut rows: Vec<(f64, String, pb::AtRiskUser)> = Vec::new();
        for (member, s) in self.all_summaries().await? {
            if !of_tenant(&member, tenant) {
                continue;
            }
            let r = self.risk(&s, now)?;
            let risk = r.probability;
            if risk < threshold {
                continue;
            }
            if let Some((r, m)) = &after {
                if risk > *r || (risk == *r && member <= *m) {
                    continue;
                }
            }
            let (tenant, user) = summary::split_member(&member);
            let row = pb::AtRiskUser {
                tenant_id: tenant.into(),
                user_id: user.into(),
                churn_probability: risk,
                p_alive: r.p_alive.unwrap_or(0.0),
                last_purchase_ms: s.last_ms,
                alerted: s.alerted,
                model: r.model,
                horizon_weeks: r.horizon_weeks,
                last_active_ms: s.last_active_ms,
            };
            rows.push((risk, member, row));
        }
        rows.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let more = rows.len() > limit;
        rows.truncate(limit);
        let next = if more {
            rows.last().map(|(r, m, _)| (*r, m.clone()))
        } else {
            None
        };
        Ok((rows.into_iter().map(|(_, _, u)| u).collect(), next))
    }

    /// Return rates of alerted users by arm and the lift with its interval.
    pub async fn retention_report(
        &self,
        confidence: f64,
        method: IntervalMethod,
        tenant: &str,
    ) -> Result<pb::RetentionReportResponse> {
        let mut treated = ArmOutcome {
            users: 0,
            returned: 0,
        };
        let mut holdout = treated;
        for (member, s) in self.all_summaries().await? {
            if !of_tenant(&member, tenant) {
                continue;
            }
            let arm = match s.arm.as_str() {
                "treatment" => &mut treated,
                "holdout" => &mut holdout,
                _ => continue,
            };
            arm.users += 1;
            arm.returned += u64::from(s.returned);
        }
        let outcome = |a: ArmOutcome| pb::ArmOutcome {
            users: a.users,
            returned: a.returned,
            rate: if a.users > 0 {
                a.returned as f64 / a.users as f64
            } else {
                0.0
            },
        };
        let mut out = pb::RetentionReportResponse {
            treated: Some(outcome(treated)),
            holdout: Some(outcome(holdout)),
            confidence,
            method: method_name(method).into(),
            holdout_share: self.scoring.holdout_share,
            action: self.scoring.action.clone(),
            ..Default::default()
        };
        if treated.users > 0 && holdout.users > 0 {
            let l = retention::lift(treated, holdout, confidence, method)?;
            out.ready = true;
            out.difference = l.difference;
            out.relative_lift = l.relative_lift;
            out.ci_low = l.ci_low;
            out.ci_high = l.ci_high;
        }
        Ok(out)
    }
}

/// Whether `member` (`<tenant>/<user>`) is of `tenant`; every member is of
/// the empty tenant (every tenant's).
fn of_tenant(member: &str, tenant: &str) -> bool {
    tenant.is_empty() || summary::split_member(member).0 == tenant
}

/// The wire name of an interval method.
pub fn method_name(m: IntervalMethod) -> &'static str {
    match m {
        IntervalMethod::Wald => "wald",
        IntervalMethod::Newcombe => "newcombe",
    }
}

fn ce_headers(kind: &str, id: &str, tenant: &str, user: &str, now: DateTime<Utc>) -> HeaderList {
    headers::cloud_event(kind, id, "mesh-churn", tenant, user, now.timestamp_millis())
}

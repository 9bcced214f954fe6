//! Ads: creatives ranked by a CTR model, and budget split across ad
//! campaigns by a bandit on return on ad spend.
//!
//! No ad impression or click reaches the mesh as an event: ads are served
//! by the ad platforms, which report what they delivered. So the CTR model
//! learns from those reports (`RecordAdDeliveries`, counted once per report
//! id, aggregated per creative × segment × placement and refitted on every
//! report) and the budget bandit from spend and revenue reports
//! (`ReportAdSpend`). Both keep their state in the tenant's slot; the
//! statistics are `mesh_engage::ads`.
use std::collections::{BTreeMap, BTreeSet};

use mesh_bus::headers;
use mesh_engage::ads::{ad_features, BudgetBandit, CtrModel, DeliveryCell, FeatureHasher};
use mesh_proto::engage::v1 as pb;
use mesh_store::{Op, PartitionBatch};
use prost::Message;

use crate::engine::{check_id, check_text, Engage};
use crate::error::{Error, Result};
use crate::keys::{self, SCOPE};
use crate::metrics::{AD_DELIVERIES, AD_MONEY, CREATIVE_SCORES, CTR_FITS};

/// Hash buckets of the CTR model's features.
const BUCKETS: usize = 64;
/// L2 strength of the CTR fit.
const L2: f64 = 0.1;
/// Impressions a refit expands at most (cells are scaled down beyond).
const MAX_ROWS: usize = 6000;
/// Prior of every ad campaign's ROAS: break-even, wide.
const PRIOR_ROAS: f64 = 1.0;
const PRIOR_ROAS_VAR: f64 = 1.0;
/// Largest count, spend or budget accepted.
const MAX_AMOUNT: f64 = 1e12;

/// A segment or placement: may be empty, at most 64 bytes, no `|` (the
/// field separator of the delivery counters).
fn check_label(field: &'static str, v: &str) -> Result<()> {
    if v.len() > 64 || v.contains('|') {
        return Err(Error::invalid(field, "at most 64 bytes, without '|'"));
    }
    Ok(())
}

fn check_amount(field: &'static str, v: f64) -> Result<()> {
    if !v.is_finite() || !(0.0..=MAX_AMOUNT).contains(&v) {
        return Err(Error::invalid(
            field,
            format!("{v} is not a finite amount in [0, 1e12]"),
        ));
    }
    Ok(())
}

fn cell_field(kind: char, creative: &str, segment: &str, placement: &str) -> String {
    format!("{kind}|{creative}|{segment}|{placement}")
}

/// The delivery cells of a tenant's counters.
fn cells(counts: &std::collections::HashMap<String, String>) -> Vec<DeliveryCell> {
    let mut by: BTreeMap<(String, String, String), (u64, u64)> = BTreeMap::new();
    for (k, v) in counts {
        let mut parts = k.splitn(4, '|');
        let (Some(kind), Some(c), Some(s), Some(p)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let n: u64 = v.parse().unwrap_or(0);
        let e = by.entry((c.into(), s.into(), p.into())).or_default();
        match kind {
            "i" => e.0 += n,
            "c" => e.1 += n,
            _ => {}
        }
    }
    by.into_iter()
        .filter(|(_, (i, _))| *i > 0)
        .map(|((c, s, p), (i, k))| DeliveryCell {
            features: ad_features(&c, &s, &p),
            impressions: i,
            clicks: k.min(i),
        })
        .collect()
}

impl Engage {
    /// `ScoreCreatives`.
    pub async fn score_creatives(
        &self,
        r: &pb::ScoreCreativesRequest,
    ) -> Result<pb::ScoreCreativesResponse> {
        check_text("tenant_id", &r.tenant_id)?;
        check_text("user_id", &r.user_id)?;
        if r.creative_ids.is_empty() || r.creative_ids.len() > 100 {
            return Err(Error::invalid("creative_ids", "1..=100 creative ids"));
        }
        let mut seen = BTreeSet::new();
        for c in &r.creative_ids {
            check_id("creative_ids", c)?;
            if !seen.insert(c) {
                return Err(Error::invalid(
                    "creative_ids",
                    format!("{c:?} listed twice"),
                ));
            }
        }
        if !r.placement.is_empty() {
            check_id("placement", &r.placement)?;
        }
        let tenant = r.tenant_id.as_str();
        let cx = self.user_context(tenant, &r.user_id).await;
        let segment = cx.segment.replace('|', "/");
        let slot = keys::slot(tenant, self.partitions);
        let (mkey, ckey) = (keys::ctr_model(tenant), keys::ad_counts(tenant));
        let (model_h, counts) = tokio::try_join!(
            self.store.hgetall(slot, &mkey),
            self.store.hgetall(slot, &ckey),
        )?;
        let model: Option<CtrModel> = model_h
            .get("model")
            .map(|raw| {
                serde_json::from_str(raw).map_err(|e| Error::Corrupt {
                    what: "ctr model".into(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        let count = |kind: char, c: &str| -> u64 {
            counts
                .get(&cell_field(kind, c, &segment, &r.placement))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let mut scores: Vec<pb::CreativeScore> = r
            .creative_ids
            .iter()
            .map(|c| {
                let (i, k) = (count('i', c), count('c', c));
                let p = match &model {
                    Some(m) => m.predict(&ad_features(c, &segment, &r.placement)),
                    // Laplace-smoothed observed rate of this cell.
                    None => (k as f64 + 1.0) / (i as f64 + 2.0),
                };
                pb::CreativeScore {
                    creative_id: c.clone(),
                    predicted_ctr: p,
                    impressions: i,
                    clicks: k,
                }
            })
            .collect();
        scores.sort_by(|a, b| {
            b.predicted_ctr
                .total_cmp(&a.predicted_ctr)
                .then_with(|| a.creative_id.cmp(&b.creative_id))
        });
        let model_name = if model.is_some() {
            "ctr_model"
        } else {
            "observed_rate"
        };
        CREATIVE_SCORES.with_label_values(&[model_name]).inc();
        let now = self.now();
        let out = pb::ScoreCreativesResponse {
            scores,
            segment,
            model: model_name.into(),
            trained_impressions: model_h
                .get("impressions")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            degraded: cx.degraded,
            score_id: uuid::Uuid::now_v7().to_string(),
            at_ms: now,
        };
        let event = pb::CreativesScored {
            tenant_id: tenant.into(),
            user_id: r.user_id.clone(),
            placement: r.placement.clone(),
            response: Some(out.clone()),
        };
        let h = headers::cloud_event(
            "mesh.engage.v1.CreativesScored",
            &out.score_id,
            "mesh-engage",
            tenant,
            &r.user_id,
            now,
        );
        self.producer
            .send(
                &self.topic,
                &keys::member(tenant, &r.user_id),
                &event.encode_to_vec(),
                &h,
            )
            .await?;
        Ok(out)
    }

    /// `RecordAdDeliveries`: counts the report once, then refits.
    pub async fn record_ad_deliveries(
        &self,
        r: &pb::RecordAdDeliveriesRequest,
    ) -> Result<pb::RecordAdDeliveriesResponse> {
        check_text("tenant_id", &r.tenant_id)?;
        check_id("report_id", &r.report_id)?;
        if r.deliveries.is_empty() || r.deliveries.len() > 10_000 {
            return Err(Error::invalid("deliveries", "1..=10000 deliveries"));
        }
        let tenant = r.tenant_id.as_str();
        let key = keys::ad_counts(tenant);
        let mut ops = Vec::new();
        let (mut imps, mut clicks) = (0u64, 0u64);
        for d in &r.deliveries {
            check_id("deliveries.creative_id", &d.creative_id)?;
            check_label("deliveries.segment", &d.segment)?;
            if !d.placement.is_empty() {
                check_id("deliveries.placement", &d.placement)?;
            }
            if d.impressions == 0 || d.impressions > 1_000_000_000 {
                return Err(Error::invalid(
                    "deliveries.impressions",
                    format!("{} is not in 1..=1e9", d.impressions),
                ));
            }
            if d.clicks > d.impressions {
                return Err(Error::invalid(
                    "deliveries.clicks",
                    format!("{} clicks exceed {} impressions", d.clicks, d.impressions),
                ));
            }
            for (kind, n) in [('i', d.impressions), ('c', d.clicks)] {
                ops.push(Op::HIncr {
                    key: key.clone(),
                    field: cell_field(kind, &d.creative_id, &d.segment, &d.placement),
                    delta: n as i64,
                });
            }
            imps += d.impressions;
            clicks += d.clicks;
        }
        let slot = keys::slot(tenant, self.partitions);
        let mut b = PartitionBatch::new(
            format!("ad-deliveries/{tenant}/{}", r.report_id),
            slot.partition,
        );
        b.push(0, ops);
        let recorded = self.store.apply(SCOPE, &b).await?.applied > 0;
        if recorded {
            AD_DELIVERIES
                .with_label_values(&["impressions"])
                .inc_by(imps);
            AD_DELIVERIES.with_label_values(&["clicks"]).inc_by(clicks);
        }
        let (trained, trained_impressions) = self.refit_ctr(tenant).await?;
        Ok(pb::RecordAdDeliveriesResponse {
            recorded,
            trained,
            trained_impressions,
        })
    }

    /// Refits the tenant's CTR model on every delivery counted so far and
    /// stores it, compare-and-set on its version so a slower refit on fewer
    /// counts never overwrites a newer one. Returns (fitted, impressions).
    async fn refit_ctr(&self, tenant: &str) -> Result<(bool, u64)> {
        let slot = keys::slot(tenant, self.partitions);
        let mkey = keys::ctr_model(tenant);
        for _ in 0..4 {
            let m = self.store.hgetall(slot, &mkey).await?;
            let ver = m.get("ver").cloned();
            let counts = self.store.hgetall(slot, &keys::ad_counts(tenant)).await?;
            let cells = cells(&counts);
            let total: u64 = cells.iter().map(|c| c.impressions).sum();
            if m.get("impressions").and_then(|v| v.parse::<u64>().ok()) == Some(total) {
                // A redelivered report: the model already saw these counts.
                return Ok((false, total));
            }
            // Fitting is CPU work: off the async workers.
            let fit = tokio::task::spawn_blocking(move || {
                CtrModel::fit_cells(FeatureHasher { buckets: BUCKETS }, &cells, L2, MAX_ROWS)
            })
            .await
            .map_err(|e| Error::Unavailable(format!("ctr fit task: {e}")))?;
            let model = match fit {
                Ok(m) => m,
                Err(mesh_engage::EngageError::NotEnoughData { .. }) => {
                    CTR_FITS.with_label_values(&["one_class"]).inc();
                    return Ok((false, 0));
                }
                Err(e) => return Err(e.into()),
            };
            let json = serde_json::to_string(&model).expect("model serializes");
            let next = (ver
                .as_deref()
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
                + 1)
            .to_string();
            let total_s = total.to_string();
            if self
                .store
                .hset_if(
                    slot,
                    &mkey,
                    &[("ver", ver.as_deref())],
                    &[
                        ("model", json.as_str()),
                        ("impressions", total_s.as_str()),
                        ("ver", next.as_str()),
                    ],
                )
                .await?
            {
                CTR_FITS.with_label_values(&["fitted"]).inc();
                return Ok((true, total));
            }
            CTR_FITS.with_label_values(&["lost_race"]).inc();
        }
        Ok((false, 0))
    }

    /// `ReportAdSpend`.
    pub async fn report_ad_spend(&self, r: &pb::ReportAdSpendRequest) -> Result<bool> {
        check_text("tenant_id", &r.tenant_id)?;
        check_id("report_id", &r.report_id)?;
        check_id("campaign_id", &r.campaign_id)?;
        check_amount("spend", r.spend)?;
        check_amount("revenue", r.revenue)?;
        if r.spend == 0.0 && r.revenue > 0.0 {
            return Err(Error::invalid(
                "spend",
                "revenue without spend cannot be attributed to it; report spend > 0",
            ));
        }
        let tenant = r.tenant_id.as_str();
        let key = keys::roas(tenant);
        let c = &r.campaign_id;
        let mut ops = vec![Op::HSetNx {
            key: key.clone(),
            field: format!("{c}|s"),
            value: "0".into(),
        }];
        if r.spend > 0.0 {
            ops.extend([
                Op::HIncrFloat {
                    key: key.clone(),
                    field: format!("{c}|s"),
                    delta: r.spend,
                },
                Op::HIncrFloat {
                    key: key.clone(),
                    field: format!("{c}|r"),
                    delta: r.revenue,
                },
                Op::HIncrFloat {
                    key: key.clone(),
                    field: format!("{c}|q"),
                    delta: r.revenue * r.revenue / r.spend,
                },
                Op::HIncr {
                    key,
                    field: format!("{c}|n"),
                    delta: 1,
                },
            ]);
        }
        let slot = keys::slot(tenant, self.partitions);
        let mut b =
            PartitionBatch::new(format!("ad-spend/{tenant}/{}", r.report_id), slot.partition);
        b.push(0, ops);
        let recorded = self.store.apply(SCOPE, &b).await?.applied > 0;
        if recorded {
            AD_MONEY.with_label_values(&["spend"]).inc_by(r.spend);
            AD_MONEY.with_label_values(&["revenue"]).inc_by(r.revenue);
        }
        Ok(recorded)
    }

    /// `AllocateBudget`.
    pub async fn allocate_budget(
        &self,
        r: &pb::AllocateBudgetRequest,
    ) -> Result<pb::BudgetAllocation> {
        check_text("tenant_id", &r.tenant_id)?;
        let n = r.campaign_ids.len();
        if !(2..=100).contains(&n) {
            return Err(Error::invalid(
                "campaign_ids",
                format!("{n} campaigns; 2..=100 distinct ids are needed"),
            ));
        }
        let mut seen = BTreeSet::new();
        for c in &r.campaign_ids {
            check_id("campaign_ids", c)?;
            if !seen.insert(c) {
                return Err(Error::invalid(
                    "campaign_ids",
                    format!("{c:?} listed twice"),
                ));
            }
        }
        if !r.total_budget.is_finite() || r.total_budget <= 0.0 || r.total_budget > MAX_AMOUNT {
            return Err(Error::invalid(
                "total_budget",
                format!("{} is not a finite amount in (0, 1e12]", r.total_budget),
            ));
        }
        let min_share = if r.min_share == 0.0 {
            0.02f64.min(0.5 / n as f64)
        } else {
            r.min_share
        };
        if !min_share.is_finite() || min_share < 0.0 || min_share * n as f64 >= 1.0 {
            return Err(Error::invalid(
                "min_share",
                format!("{} is not in [0, 1/{n})", r.min_share),
            ));
        }
        let tenant = r.tenant_id.as_str();
        let slot = keys::slot(tenant, self.partitions);
        let h = self.store.hgetall(slot, &keys::roas(tenant)).await?;
        let f = |c: &str, k: &str| -> f64 {
            h.get(&format!("{c}|{k}"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0)
        };
        let mut bandit = BudgetBandit::new(n, PRIOR_ROAS, PRIOR_ROAS_VAR, min_share)?;
        bandit.draws = 2000;
        for (s, c) in bandit.campaigns.iter_mut().zip(&r.campaign_ids) {
            s.spend = f(c, "s");
            s.revenue = f(c, "r");
            s.revenue_sq_over_spend = f(c, "q");
            s.updates = f(c, "n") as u64;
        }
        let split = bandit.allocate(r.total_budget, &mut rand::rng())?;
        let post = bandit.posterior();
        let campaigns = r
            .campaign_ids
            .iter()
            .zip(split)
            .zip(post)
            .zip(&bandit.campaigns)
            .map(|(((c, budget), (mean, var)), s)| pb::CampaignBudget {
                campaign_id: c.clone(),
                budget,
                share: budget / r.total_budget,
                roas_mean: mean,
                roas_sd: var.sqrt(),
                spend: s.spend,
                revenue: s.revenue,
            })
            .collect();
        let now = self.now();
        let out = pb::BudgetAllocation {
            allocation_id: uuid::Uuid::now_v7().to_string(),
            campaigns,
            total_budget: r.total_budget,
            at_ms: now,
        };
        AD_MONEY
            .with_label_values(&["allocated"])
            .inc_by(r.total_budget);
        let event = pb::BudgetAllocated {
            tenant_id: tenant.into(),
            allocation: Some(out.clone()),
        };
        let hd = headers::cloud_event(
            "mesh.engage.v1.BudgetAllocated",
            &out.allocation_id,
            "mesh-engage",
            tenant,
            "",
            now,
        );
        self.producer
            .send(&self.topic, tenant, &event.encode_to_vec(), &hd)
            .await?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_become_cells_and_bad_labels_are_named() {
        let counts: std::collections::HashMap<String, String> = [
            ("i|a|x|feed", "10"),
            ("c|a|x|feed", "3"),
            ("i|b||", "5"),
            ("junk", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cs = cells(&counts);
        assert_eq!(cs.len(), 2);
        let a = cs.iter().find(|c| c.features[0] == "creative=a").unwrap();
        assert_eq!((a.impressions, a.clicks), (10, 3));
        assert!(check_label("deliveries.segment", "a|b")
            .unwrap_err()
            .to_string()
            .starts_with("deliveries.segment"));
        assert!(check_amount("spend", f64::NAN)
            .unwrap_err()
            .to_string()
            .starts_with("spend"));
        assert!(check_amount("revenue", -1.0).is_err());
    }
}

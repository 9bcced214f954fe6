//! `RecommendService`: validation and conversion only; the work is in
//! [`crate::engine`] and [`crate::live`].
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use mesh_proto::recommend::v1 as pb;
use mesh_proto::recommend::v1::recommend_service_server::RecommendService;
use mesh_recommend::cold::ColdContext;
use mesh_recommend::feedback::Attribution;
use mesh_recommend::rank::{Ranked, Source};
use mesh_recommend::types::ItemMeta;
use tonic::{Request, Response, Status};

use crate::engine::{Answer, Engine, Query};
use crate::error::{to_status, Error, Result};
use crate::feedback::TenantFeedback;
use crate::metrics::{REQUESTS, REQUEST_SECONDS};

const MAX_N: u32 = 100;
const MAX_CANDIDATES: usize = 500;
const MAX_UPSERT: usize = 1000;
/// Longest tenant, user or item id (ingest accepts none over 256 bytes).
const MAX_ID: usize = 256;
/// How far ahead of now an item's listing time may be.
const MAX_LISTED_AHEAD_MS: i64 = 86_400_000;

pub struct RecommendGrpc {
    pub engine: Arc<Engine>,
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn required(field: &str, v: &str) -> Result<()> {
    if v.is_empty() {
        return Err(Error::invalid(field, "is required"));
    }
    if v.len() > MAX_ID {
        return Err(Error::invalid(
            field,
            format!("is {} bytes; at most {MAX_ID}", v.len()),
        ));
    }
    Ok(())
}

fn count(n: u32) -> Result<usize> {
    match n {
        0 => Ok(10),
        n if n <= MAX_N => Ok(n as usize),
        n => Err(Error::invalid(
            "n",
            format!("{n} is above the maximum {MAX_N}"),
        )),
    }
}

fn cold_context(c: Option<pb::RequestContext>) -> ColdContext {
    let c = c.unwrap_or_default();
    let some = |s: String| (!s.is_empty()).then_some(s);
    ColdContext {
        category: some(c.category),
        device: some(c.device),
        segment: some(c.segment),
    }
}

fn source(s: Source) -> pb::Source {
    match s {
        Source::Model => pb::Source::Model,
        Source::Cooccurrence => pb::Source::Cooccurrence,
        Source::Popularity => pb::Source::Popularity,
        Source::Rule => pb::Source::Rule,
    }
}

/// The item in `slot` of an answer; with an attribution when the answer has
/// a recommendation id.
fn item(r: Ranked, slot: usize, recommendation_id: &str) -> pb::RecommendedItem {
    let attribution = if recommendation_id.is_empty() {
        String::new()
    } else {
        Attribution {
            recommendation_id: recommendation_id.to_string(),
            source: r.source,
            slot: slot as u32,
        }
        .encode()
    };
    pb::RecommendedItem {
        item_id: r.item,
        score: r.score,
        source: source(r.source) as i32,
        reason: r.reason,
        slot: slot as u32,
        attribution,
    }
}

fn answer(a: Answer) -> pb::RecommendResponse {
    let id = a.recommendation_id;
    pb::RecommendResponse {
        items: a
            .items
            .into_iter()
            .enumerate()
            .map(|(k, r)| item(r, k, &id))
            .collect(),
        model_version: a.model_version,
        cold_start: a.cold_start,
        user_features: a.user_features.to_string(),
        degraded: a.degraded,
        recommendation_id: id,
    }
}

fn ratio(num: f64, den: f64) -> f64 {
    if den > 0.0 {
        num / den
    } else {
        0.0
    }
}

fn feedback_stats(t: &TenantFeedback) -> pb::FeedbackStats {
    let est = t.counts.estimate();
    let weights = t.weights();
    let cells = t
        .counts
        .sorted()
        .into_iter()
        .map(|((s, k), c)| pb::SlotFeedback {
            source: source(s) as i32,
            slot: k,
            impressions: c.impressions,
            clicks: c.clicks,
            ctr: ratio(c.clicks as f64, c.impressions as f64),
        })
        .collect();
    let sources = est
        .sources
        .iter()
        .map(|e| pb::SourceFeedback {
            source: source(e.source) as i32,
            impressions: e.impressions,
            clicks: e.clicks,
            ctr: ratio(e.clicks as f64, e.impressions as f64),
            examined_impressions: e.examined,
            debiased_ctr: e.debiased_ctr,
            posterior_mean: t
                .bandit
                .posteriors
                .iter()
                .find(|p| p.source == e.source)
                .map_or(0.0, |p| p.mean()),
            weight: weights.of(e.source),
        })
        .collect();
    pb::FeedbackStats {
        cells,
        sources,
        examination: est.examination,
        learning: t.learning,
    }
}

fn catalog_item(i: pb::CatalogItem, index: usize, now_ms: i64) -> Result<ItemMeta> {
    let field = |f: &str| format!("items[{index}].{f}");
    required(&field("item_id"), &i.item_id)?;
    // A listing time ahead of now would rank the item as brand new forever.
    if !(0..=now_ms + MAX_LISTED_AHEAD_MS).contains(&i.listed_at_ms) {
        return Err(Error::invalid(
            &field("listed_at_ms"),
            format!(
                "{} is not Unix milliseconds between 0 and one day from now",
                i.listed_at_ms
            ),
        ));
    }
    let check = |f: &str, v: f64, lo: f64, hi: f64| {
        if v.is_finite() && (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(Error::invalid(
                &field(f),
                format!("{v} is outside {lo}..={hi}"),
            ))
        }
    };
    let mut m = ItemMeta::new(
        i.item_id,
        i.category,
        check("price", i.price, 0.0, f64::MAX)?,
    );
    m.in_stock = !i.out_of_stock;
    m.sales = check("sales", i.sales, 0.0, f64::MAX)?;
    m.rating = check("rating", i.rating, 0.0, 5.0)?;
    m.margin = check("margin", i.margin, 0.0, 1.0)?;
    m.promotional = i.promotional;
    m.retention_offer = i.retention_offer;
    m.listed_at = i.listed_at_ms as f64 / 1000.0;
    Ok(m)
}

/// Counts and times one call, and maps its error.
async fn observed<T>(
    method: &str,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<Response<T>, Status> {
    let started = Instant::now();
    let out = work.await.map(Response::new).map_err(to_status);
    let outcome = match &out {
        Ok(_) => "ok".to_string(),
        Err(s) => format!("{:?}", s.code()),
    };
    REQUESTS.with_label_values(&[method, &outcome]).inc();
    REQUEST_SECONDS
        .with_label_values(&[method])
        .observe(started.elapsed().as_secs_f64());
    out
}

#[tonic::async_trait]
impl RecommendService for RecommendGrpc {
    async fn recommend(
        &self,
        request: Request<pb::RecommendRequest>,
    ) -> Result<Response<pb::RecommendResponse>, Status> {
        let r = request.into_inner();
        observed("Recommend", async {
            required("tenant_id", &r.tenant_id)?;
            required("user_id", &r.user_id)?;
            let q = Query {
                n: count(r.n)?,
                tenant: r.tenant_id,
                user: r.user_id,
                context: cold_context(r.context),
                recently_shown: r.recently_shown.into_iter().collect(),
            };
            Ok(answer(self.engine.recommend(&q, now_secs()).await?))
        })
        .await
    }

    async fn similar_items(
        &self,
        request: Request<pb::SimilarItemsRequest>,
    ) -> Result<Response<pb::ItemList>, Status> {
        let r = request.into_inner();
        observed("SimilarItems", async {
            required("tenant_id", &r.tenant_id)?;
            required("item_id", &r.item_id)?;
            let n = count(r.n)?;
            let reason = format!("viewed or bought together with {}", r.item_id);
            let items = self
                .engine
                .live
                .similar(&r.tenant_id, &r.item_id, n, now_secs())
                .await?
                .into_iter()
                .map(|(item_id, score)| pb::RecommendedItem {
                    item_id,
                    score,
                    source: pb::Source::Cooccurrence as i32,
                    reason: reason.clone(),
                    ..Default::default()
                })
                .collect();
            Ok(pb::ItemList { items })
        })
        .await
    }

    async fn rank_items(
        &self,
        request: Request<pb::RankItemsRequest>,
    ) -> Result<Response<pb::RecommendResponse>, Status> {
        let r = request.into_inner();
        observed("RankItems", async {
            required("tenant_id", &r.tenant_id)?;
            required("user_id", &r.user_id)?;
            if r.candidates.is_empty() || r.candidates.len() > MAX_CANDIDATES {
                return Err(Error::invalid(
                    "candidates",
                    format!(
                        "has {} ids; expected 1..={MAX_CANDIDATES}",
                        r.candidates.len()
                    ),
                ));
            }
            for (i, c) in r.candidates.iter().enumerate() {
                required(&format!("candidates[{i}]"), c)?;
            }
            let q = Query {
                n: r.candidates.len(),
                tenant: r.tenant_id,
                user: r.user_id,
                context: cold_context(r.context),
                recently_shown: r.recently_shown.into_iter().collect(),
            };
            Ok(answer(
                self.engine
                    .rank_items(&q, &r.candidates, now_secs())
                    .await?,
            ))
        })
        .await
    }

    async fn trending(
        &self,
        request: Request<pb::TrendingRequest>,
    ) -> Result<Response<pb::ItemList>, Status> {
        let r = request.into_inner();
        observed("Trending", async {
            required("tenant_id", &r.tenant_id)?;
            let n = count(r.n)?;
            let category = (!r.category.is_empty()).then_some(r.category.as_str());
            let place = category.map_or("this shop".to_string(), |c| c.to_string());
            let items = self
                .engine
                .live
                .trending(&r.tenant_id, category, n, now_secs())
                .await?
                .into_iter()
                .map(|(item_id, score)| pb::RecommendedItem {
                    item_id,
                    score,
                    source: pb::Source::Popularity as i32,
                    reason: format!("trending in {place}: {score:.1}x its usual rate"),
                    ..Default::default()
                })
                .collect();
            Ok(pb::ItemList { items })
        })
        .await
    }

    async fn upsert_items(
        &self,
        request: Request<pb::UpsertItemsRequest>,
    ) -> Result<Response<pb::UpsertItemsResponse>, Status> {
        let r = request.into_inner();
        observed("UpsertItems", async {
            required("tenant_id", &r.tenant_id)?;
            if r.items.is_empty() || r.items.len() > MAX_UPSERT {
                return Err(Error::invalid(
                    "items",
                    format!("has {} entries; expected 1..={MAX_UPSERT}", r.items.len()),
                ));
            }
            let now_us = (now_secs() * 1e6) as i64;
            let items = r
                .items
                .into_iter()
                .enumerate()
                .map(|(k, i)| catalog_item(i, k, now_us / 1000))
                .collect::<Result<Vec<_>>>()?;
            let n = self
                .engine
                .upsert_items(&r.tenant_id, &items, now_us)
                .await?;
            Ok(pb::UpsertItemsResponse { upserted: n as u32 })
        })
        .await
    }

    async fn get_feedback_stats(
        &self,
        request: Request<pb::FeedbackStatsRequest>,
    ) -> Result<Response<pb::FeedbackStats>, Status> {
        let r = request.into_inner();
        observed("GetFeedbackStats", async {
            required("tenant_id", &r.tenant_id)?;
            // This process's impressions first, so the answer includes them.
            let fb = &self.engine.feedback;
            fb.flush().await?;
            let t = fb.tenant(&r.tenant_id).await?;
            Ok(feedback_stats(&t))
        })
        .await
    }
}

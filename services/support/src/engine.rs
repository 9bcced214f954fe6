//! Feedback analysis, trends and spike alerts; the assistant's
//! conversations and handoffs; the catalog and its search index.
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use mesh_bus::partition::partition_for;
use mesh_bus::{headers, Producer};
use mesh_proto::catalog::v1 as cpb;
use mesh_proto::support::v1 as pb;
use mesh_runtime::peers::Peers;
use mesh_store::{erasure, HashRead, HashReply, Op, PartitionBatch, Slot, StateStore};
use mesh_text::assistant::{Assistant, Conversation, Reply, Speaker};
use mesh_text::catalog::Product;
use mesh_text::feedback::FeedbackClassifier;
use mesh_text::product::ProductClassifier;
use mesh_text::search::{CatalogIndex, Filters, Personalization, SearchRequest};
use mesh_text::sentiment::{Polarity, SentimentModel, ServeConfig, ServeReport};
use prost::Message;

use crate::error::{self, Error, Result};
use crate::keys;
use crate::metrics::{FEEDBACK, SEARCHES, SPIKES, TURNS};

/// Scope of every support key.
pub const SCOPE: &str = "support";
const DAY_MS: i64 = 86_400_000;
/// Blend weight of recommend's scores in a personalized search.
const PERSONALIZATION_WEIGHT: f32 = 0.3;

/// The trained text models, built once at start.
pub struct Models {
    pub sentiment: SentimentModel,
    pub feedback: FeedbackClassifier,
    pub product: ProductClassifier,
    pub assistant: Assistant,
}

impl Models {
    /// Trains every model from the shipped data and seeded generators, with the n-gram
    /// sentiment model.
    pub fn train(seed: u64) -> Result<Models> {
        Ok(Self::train_with(seed, &ServeConfig::default())?.0)
    }

    /// [`Models::train`] with the sentiment model `sentiment` asks for (the e5 head when it
    /// names the encoder); the report says which model serves.
    pub fn train_with(seed: u64, sentiment: &ServeConfig) -> Result<(Models, ServeReport)> {
        let (model, report) = SentimentModel::train_shipped_served(seed, sentiment)?;
        let models = Models {
            sentiment: model,
            feedback: FeedbackClassifier::train_generated(seed)?,
            product: ProductClassifier::train_generated(seed)?,
            assistant: Assistant::with_defaults(seed)?,
        };
        Ok((models, report))
    }

    /// [`Models::train_with`] once per process for each `(seed, sentiment)`; later calls
    /// share the first call's models (`true` in the result when they did). Training is
    /// deterministic for a seed, so a process that starts the service again (an embedded
    /// mesh restarted in the same process, the whole-mesh tests) gets the same models
    /// without tens of seconds of CPU. Concurrent first calls train once: the others wait.
    pub fn shared(seed: u64, sentiment: &ServeConfig) -> Result<(Arc<Models>, ServeReport, bool)> {
        type Trained = Vec<((u64, ServeConfig), Arc<Models>, ServeReport)>;
        static TRAINED: std::sync::Mutex<Trained> = std::sync::Mutex::new(Vec::new());
        let mut trained = TRAINED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, models, report)) = trained
            .iter()
            .find(|((s, c), _, _)| *s == seed && c == sentiment)
        {
            return Ok((models.clone(), report.clone(), true));
        }
        let (models, report) = Self::train_with(seed, sentiment)?;
        let models = Arc::new(models);
        trained.push(((seed, sentiment.clone()), models.clone(), report.clone()));
        Ok((models, report, false))
    }
}

pub struct Support {
    pub store: StateStore,
    pub producer: Producer,
    pub engagement_topic: String,
    pub alerts_topic: String,
    pub partitions: i32,
    pub peers: Peers,
    pub models: Arc<Models>,
    /// Search index per tenant with the catalog version it was built at.
    pub indexes: RwLock<HashMap<String, (i64, Arc<CatalogIndex>)>>,
    pub clock: Arc<dyn mesh_runtime::Clock>,
    /// The writes `Converse` makes.
    pub writes: RpcWrites,
}

/// Writes made by RPCs, applied under one watermark source per process
/// whose offsets (from the clock) only grow: the slot's watermark hash
/// gains one field per process, not one per write. Writes are serialized
/// so a later offset is never applied before an earlier one.
pub struct RpcWrites {
    source: String,
    last: tokio::sync::Mutex<i64>,
}

impl Default for RpcWrites {
    fn default() -> Self {
        RpcWrites {
            source: format!("_rpc.support.{}", uuid::Uuid::now_v7().simple()),
            last: tokio::sync::Mutex::new(-1),
        }
    }
}

impl RpcWrites {
    /// Applies `ops` as one record in `partition`'s slot at `now_ms`.
    pub async fn apply(
        &self,
        store: &StateStore,
        partition: i32,
        ops: Vec<Op>,
        now_ms: i64,
    ) -> Result<()> {
        let mut last = self.last.lock().await;
        let offset = now_ms.saturating_mul(1000).max(*last + 1);
        let mut b = PartitionBatch::new(&self.source, partition);
        b.push(offset, ops);
        store.apply(SCOPE, &b).await?;
        *last = offset;
        Ok(())
    }
}

/// The read of whether `member` is erased, in the slot's erasure hash.
fn erased_read(slot: Slot<'static>, member: &str) -> HashRead<'static> {
    HashRead::Fields {
        slot,
        key: erasure::KEY.into(),
        fields: vec![member.to_string()],
    }
}

pub fn slot(home: &str, partitions: i32) -> Slot<'static> {
    Slot {
        scope: SCOPE,
        partition: partition_for(home, partitions),
    }
}

fn shard(partition: i32) -> Slot<'static> {
    Slot {
        scope: SCOPE,
        partition,
    }
}

/// One partition's daily feedback counts of a subject: fields
/// `<day>|pos`, `|neu`, `|neg` and `<day>|score` (sum).
pub fn trend_key(tenant: &str, subject: &str) -> String {
    format!("fb:{tenant}/{subject}")
}

fn polarity_name(p: Polarity) -> &'static str {
    match p {
        Polarity::Positive => "positive",
        Polarity::Neutral => "neutral",
        Polarity::Negative => "negative",
    }
}

fn day_name(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day * DAY_MS)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

impl Support {
    pub fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// Sentiment and category of one text.
    pub fn analyze(&self, text: &str) -> pb::FeedbackAnalysis {
        let s = self.models.sentiment.score(text);
        let c = self.models.feedback.classify(text);
        pb::FeedbackAnalysis {
            sentiment: polarity_name(s.label).into(),
            score: f64::from(s.score),
            category: c.category.as_str().into(),
            category_confidence: f64::from(c.confidence),
            language: s.language,
        }
    }

    /// Ops adding one analysed text to a subject's trend.
    pub fn trend_ops(tenant: &str, subject: &str, a: &pb::FeedbackAnalysis, at_ms: i64) -> Vec<Op> {
        let day = at_ms.div_euclid(DAY_MS);
        let key = trend_key(tenant, subject);
        let bucket = match a.sentiment.as_str() {
            "positive" => "pos",
            "negative" => "neg",
            _ => "neu",
        };
        vec![
            Op::HIncr {
                key: key.clone(),
                field: format!("{day}|{bucket}"),
                delta: 1,
            },
            Op::HIncrFloat {
                key: key.clone(),
                field: format!("{day}|score"),
                delta: a.score,
            },
            Op::ZSet {
                key: "subjects".into(),
                member: format!("{tenant}/{subject}"),
                score: at_ms as f64,
            },
        ]
    }

    /// Daily counts of a subject over `days` days up to today, summed over
    /// the partitions' shards.
    pub async fn trends(
        &self,
        tenant: &str,
        subject: &str,
        days: u32,
    ) -> Result<pb::FeedbackTrendsResponse> {
        error::text("tenant_id", tenant, 256)?;
        error::text("subject", subject, 512)?;
        let days = match days {
            0 => 14,
            d if d > 90 => return Err(Error::invalid("days", "at most 90")),
            d => d,
        };
        let keys: Vec<_> = (0..self.partitions)
            .map(|p| (shard(p), trend_key(tenant, subject)))
            .collect();
        let mut sums: BTreeMap<String, f64> = BTreeMap::new();
        for h in self.store.hgetall_many(&keys).await? {
            for (k, v) in h {
                *sums.entry(k).or_insert(0.0) += v.parse::<f64>().unwrap_or(0.0);
            }
        }
        let today = self.now().div_euclid(DAY_MS);
        let g = |d: i64, f: &str| sums.get(&format!("{d}|{f}")).copied().unwrap_or(0.0);
        let out: Vec<pb::TrendDay> = (today - i64::from(days) + 1..=today)
            .map(|d| {
                let (p, n, m) = (g(d, "pos"), g(d, "neu"), g(d, "neg"));
                let total = p + n + m;
                pb::TrendDay {
                    day: day_name(d),
                    positive: p as u64,
                    neutral: n as u64,
                    negative: m as u64,
                    mean_score: if total > 0.0 {
                        g(d, "score") / total
                    } else {
                        0.0
                    },
                }
            })
            .collect();
        let negative_spike = spike(&out).is_some();
        Ok(pb::FeedbackTrendsResponse {
            days: out,
            negative_spike,
        })
    }

    /// Publishes a spike alert for `subject` when today's trend is one
    /// (once per subject and day: the alert id says which).
    pub async fn check_spike(&self, tenant: &str, subject: &str) -> Result<bool> {
        let t = self.trends(tenant, subject, 14).await?;
        let Some((negative, total, baseline)) = spike(&t.days) else {
            return Ok(false);
        };
        let day = t.days.last().map(|d| d.day.clone()).unwrap_or_default();
        // Once per subject and day, whichever batch or replica sees it first.
        let field = format!("{subject}|{day}");
        let first = self
            .store
            .hset_if(
                slot(tenant, self.partitions),
                &format!("spikes:{tenant}"),
                &[(field.as_str(), None)],
                &[(field.as_str(), "1")],
            )
            .await?;
        if !first {
            return Ok(false);
        }
        let now = self.now();
        let alert = pb::NegativeFeedbackSpike {
            tenant_id: tenant.into(),
            subject: subject.into(),
            day: day.clone(),
            negative,
            total,
            baseline_share: baseline,
            at_ms: now,
        };
        let id = format!("{tenant}/{subject}/{day}/spike");
        let h = headers::cloud_event(
            "mesh.support.v1.NegativeFeedbackSpike",
            &id,
            "mesh-support",
            tenant,
            subject,
            now,
        );
        self.producer
            .send(
                &self.alerts_topic,
                &format!("{tenant}/{subject}"),
                &alert.encode_to_vec(),
                &h,
            )
            .await?;
        SPIKES
            .with_label_values(&[if subject.starts_with("category:") {
                "category"
            } else {
                "sku"
            }])
            .inc();
        Ok(true)
    }

    /// `AnalyzeFeedback`.
    pub fn analyze_request(&self, r: &pb::AnalyzeFeedbackRequest) -> Result<pb::FeedbackAnalysis> {
        error::text("tenant_id", &r.tenant_id, 256)?;
        error::text("text", &r.text, 10_000)?;
        let a = self.analyze(&r.text);
        FEEDBACK
            .with_label_values(&["rpc", a.sentiment.as_str()])
            .inc();
        Ok(a)
    }

    // ---- the assistant ----

    /// `Converse`: one user turn. The user's conversations live in the
    /// user's slot; an erased user is refused (not found), and a turn that
    /// an erasure overtook stores and publishes nothing.
    pub async fn converse(&self, r: &pb::ConverseRequest) -> Result<pb::ConverseResponse> {
        error::text("tenant_id", &r.tenant_id, 256)?;
        error::text("user_id", &r.user_id, 256)?;
        error::text("text", &r.text, 4_000)?;
        let id = if r.conversation_id.is_empty() {
            uuid::Uuid::now_v7().to_string()
        } else {
            if r.conversation_id.len() > 64 {
                return Err(Error::invalid("conversation_id", "at most 64 bytes"));
            }
            r.conversation_id.clone()
        };
        let member = erasure::member(&r.tenant_id, &r.user_id);
        let home = format!("{}/{}", r.tenant_id, id);
        let s = slot(&member, self.partitions);
        let key = keys::conversations(&r.tenant_id, &r.user_id);
        let mut read = self
            .store
            .hread_many(&[
                HashRead::Fields {
                    slot: s,
                    key: key.clone(),
                    fields: vec![id.clone()],
                },
                erased_read(s, &member),
            ])
            .await?
            .into_iter()
            .map(|reply| match reply {
                HashReply::Fields(mut v) => v.pop().flatten(),
                HashReply::Keys(_) => None,
            });
        let (stored, erased) = (read.next().flatten(), read.next().flatten());
        if erased.is_some() {
            return Err(Error::NotFound(format!("user {member}")));
        }
        let mut conv: Conversation = match stored {
            Some(raw) => serde_json::from_str(&raw).map_err(|e| Error::Corrupt {
                what: format!("conversation {home}"),
                reason: e.to_string(),
            })?,
            None if !r.conversation_id.is_empty() => {
                return Err(Error::NotFound(format!("conversation {home}")))
            }
            None => Conversation::new(id.clone()),
        };
        let backend = crate::backend::GrpcBackend {
            tenant: r.tenant_id.clone(),
            user: r.user_id.clone(),
            peers: self.peers.clone(),
            degraded: Default::default(),
        };
        let reply = self
            .models
            .assistant
            .respond(&mut conv, &r.text, &backend)
            .await;
        let mut out = pb::ConverseResponse {
            conversation_id: id.clone(),
            degraded: backend
                .degraded
                .lock()
                .map(|d| d.clone())
                .unwrap_or_default(),
            ..Default::default()
        };
        let mut handoff = None;
        match reply {
            Reply::Answer {
                text,
                intent,
                confidence,
            } => {
                out.reply = text;
                out.intent = intent.as_str().into();
                out.intent_confidence = f64::from(confidence);
                out.done = true;
                TURNS.with_label_values(&["answer"]).inc();
            }
            Reply::Ask { text, slot } => {
                out.reply = text;
                out.missing = vec![slot];
                TURNS.with_label_values(&["ask"]).inc();
            }
            Reply::Handoff {
                conversation,
                reason,
            } => {
                out.reply = if conversation.language == "zh" {
                    "已为您转接人工客服，请稍候。".into()
                } else {
                    "I have passed your conversation to a colleague, who will reply shortly.".into()
                };
                out.handed_off = true;
                out.done = true;
                TURNS.with_label_values(&["handoff"]).inc();
                handoff = Some(reason);
            }
        }
        let now = self.now();
        let json = serde_json::to_string(&conv).expect("conversation serializes");
        // The conversation and its handoff in one step, behind the guard.
        let mut ops = vec![
            erasure::guard(&member),
            Op::HSet {
                key: key.clone(),
                field: id.clone(),
                value: json,
            },
        ];
        if let Some(reason) = handoff {
            let h = pb::Handoff {
                conversation_id: id.clone(),
                user_id: r.user_id.clone(),
                intent: out.intent.clone(),
                reason,
                turns: turns(&conv),
                at_ms: now,
            };
            ops.push(Op::HSet {
                key: keys::handoffs(&r.tenant_id, &r.user_id),
                field: id.clone(),
                value: hex(&h.encode_to_vec()),
            });
            ops.push(Op::HSet {
                key: keys::handoff_users(&r.tenant_id),
                field: r.user_id.clone(),
                value: now.to_string(),
            });
        }
        self.writes
            .apply(&self.store, s.partition, ops, now)
            .await?;
        // An erasure applied since the read skipped the write: the turn
        // must not reach the engagement topic either.
        let erased = self.store.hread_many(&[erased_read(s, &member)]).await?;
        if matches!(erased.first(), Some(HashReply::Fields(v)) if v.iter().any(Option::is_some)) {
            return Err(Error::NotFound(format!("user {member}")));
        }
        let event = pb::ConversationTurn {
            tenant_id: r.tenant_id.clone(),
            user_id: r.user_id.clone(),
            conversation_id: id.clone(),
            user: Some(pb::Turn {
                role: "user".into(),
                text: r.text.clone(),
                at_ms: now,
            }),
            answer: Some(out.clone()),
        };
        let h = headers::cloud_event(
            "mesh.support.v1.ConversationTurn",
            &format!("{home}/{}", conv.turns.len()),
            "mesh-support",
            &r.tenant_id,
            &r.user_id,
            now,
        );
        self.producer
            .send(
                &self.engagement_topic,
                &format!("{}/{}", r.tenant_id, r.user_id),
                &event.encode_to_vec(),
                &h,
            )
            .await?;
        Ok(out)
    }

    /// `ListHandoffs`: the tenant's handed-off conversations, oldest first:
    /// the users with handoffs from every slot's index, then their
    /// handoffs (two round trips).
    pub async fn handoffs(&self, tenant: &str, page: u32) -> Result<Vec<pb::Handoff>> {
        error::text("tenant_id", tenant, 256)?;
        let size = match page {
            0 => 50,
            n => n.min(500) as usize,
        };
        let index = keys::handoff_users(tenant);
        let indexes: Vec<(Slot<'static>, String)> = (0..self.partitions)
            .map(|p| (shard(p), index.clone()))
            .collect();
        let users = self.store.hgetall_many(&indexes).await?;
        let hashes: Vec<(Slot<'static>, String)> = users
            .into_iter()
            .enumerate()
            .flat_map(|(p, users)| {
                users
                    .into_keys()
                    .map(move |u| (shard(p as i32), keys::handoffs(tenant, &u)))
            })
            .collect();
        let h: Vec<String> = self
            .store
            .hgetall_many(&hashes)
            .await?
            .into_iter()
            .flat_map(HashMap::into_values)
            .collect();
        let mut out = Vec::with_capacity(h.len());
        for raw in &h {
            let bytes = unhex(raw).ok_or_else(|| Error::Corrupt {
                what: "handoff".into(),
                reason: "not hex".into(),
            })?;
            out.push(
                pb::Handoff::decode(bytes.as_slice()).map_err(|e| Error::Corrupt {
                    what: "handoff".into(),
                    reason: e.to_string(),
                })?,
            );
        }
        out.sort_by(|a, b| {
            a.at_ms
                .cmp(&b.at_ms)
                .then_with(|| a.conversation_id.cmp(&b.conversation_id))
        });
        out.truncate(size);
        Ok(out)
    }

    // ---- the catalog ----

    fn catalog_key(tenant: &str) -> String {
        format!("catalog:{tenant}")
    }

    /// `UpsertProducts`: validates, classifies those without a category,
    /// stores them (one hash per tenant, in the tenant's slot) and bumps the
    /// catalog version so every replica rebuilds its index.
    pub async fn upsert(
        &self,
        r: &cpb::UpsertProductsRequest,
    ) -> Result<cpb::UpsertProductsResponse> {
        if r.products.is_empty() || r.products.len() > 1000 {
            return Err(Error::invalid("products", "1..=1000 products"));
        }
        if r.tenant_id.len() > 256 {
            return Err(Error::invalid(
                "tenant_id",
                format!("{} bytes; at most 256", r.tenant_id.len()),
            ));
        }
        // A request scoped to a tenant (a tenant-bound caller's always is)
        // writes that tenant's catalog only: an empty product tenant is
        // filled in, another one refused.
        let scoped: Vec<cpb::Product> = r
            .products
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut p = p.clone();
                if !r.tenant_id.is_empty() {
                    if p.tenant_id.is_empty() {
                        p.tenant_id = r.tenant_id.clone();
                    } else if p.tenant_id != r.tenant_id {
                        return Err(Error::invalid(
                            format!("products[{i}].tenant_id"),
                            format!(
                                "is {:?}; this request is for tenant {:?}",
                                p.tenant_id, r.tenant_id
                            ),
                        ));
                    }
                }
                Ok(p)
            })
            .collect::<Result<_>>()?;
        let mut by_tenant: BTreeMap<&str, Vec<(cpb::Product, Option<cpb::ProductClass>)>> =
            BTreeMap::new();
        let mut classes = Vec::new();
        for (i, p) in scoped.iter().enumerate() {
            let field = |f: &str| format!("products[{i}].{f}");
            error::text(&field("tenant_id"), &p.tenant_id, 256)?;
            error::text(&field("sku"), &p.sku, 256)?;
            error::text(&field("title"), &p.title, 1_000)?;
            if p.description.len() > 20_000 {
                return Err(Error::invalid(field("description"), "at most 20000 bytes"));
            }
            if p.tags.len() > 64 || p.tags.iter().any(|t| t.len() > 128) {
                return Err(Error::invalid(
                    field("tags"),
                    "at most 64 tags of 128 bytes",
                ));
            }
            if !p.price.is_finite() || p.price < 0.0 || p.price > 1e9 {
                return Err(Error::invalid(
                    field("price"),
                    format!("{} is not in [0, 1e9]", p.price),
                ));
            }
            let mut p = p.clone();
            let class = if p.category.is_empty() {
                let c = self.classify(&p);
                p.category = c.category.clone();
                classes.push(c.clone());
                Some(c)
            } else {
                None
            };
            by_tenant
                .entry(scoped[i].tenant_id.as_str())
                .or_default()
                .push((p, class));
        }
        let now = self.now();
        for (tenant, products) in by_tenant {
            let s = slot(tenant, self.partitions);
            let mut ops = Vec::new();
            for (p, class) in &products {
                ops.push(Op::HSet {
                    key: Self::catalog_key(tenant),
                    field: p.sku.clone(),
                    value: hex(&p.encode_to_vec()),
                });
                match class {
                    Some(c) if c.needs_review => ops.push(Op::HSet {
                        key: format!("lowconf:{tenant}"),
                        field: p.sku.clone(),
                        value: hex(&c.encode_to_vec()),
                    }),
                    _ => {}
                }
            }
            ops.push(Op::HMax {
                key: format!("catalog-version:{tenant}"),
                field: "v".into(),
                value: now,
            });
            let mut b = PartitionBatch::new(
                format!("catalog/{tenant}/{}", uuid::Uuid::now_v7()),
                s.partition,
            );
            b.push(0, ops);
            self.store.apply(SCOPE, &b).await?;
        }
        Ok(cpb::UpsertProductsResponse {
            upserted: r.products.len() as u32,
            classes,
        })
    }

    pub fn classify(&self, p: &cpb::Product) -> cpb::ProductClass {
        let c = self
            .models
            .product
            .classify(&p.title, &p.description, &p.tags);
        cpb::ProductClass {
            sku: p.sku.clone(),
            category: c.category,
            confidence: f64::from(c.confidence),
            needs_review: c.needs_review,
        }
    }

    /// The tenant's search index, rebuilt when the catalog changed.
    async fn index(&self, tenant: &str) -> Result<Arc<CatalogIndex>> {
        let s = slot(tenant, self.partitions);
        let version: i64 = self
            .store
            .hgetall(s, &format!("catalog-version:{tenant}"))
            .await?
            .get("v")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if let Some((v, idx)) = self.indexes.read().expect("index lock").get(tenant) {
            if *v == version {
                return Ok(idx.clone());
            }
        }
        let raw = self.store.hgetall(s, &Self::catalog_key(tenant)).await?;
        let mut products = Vec::with_capacity(raw.len());
        for v in raw.values() {
            let p = unhex(v)
                .and_then(|b| cpb::Product::decode(b.as_slice()).ok())
                .ok_or_else(|| Error::Corrupt {
                    what: format!("catalog of {tenant}"),
                    reason: "undecodable product".into(),
                })?;
            products.push(Product {
                sku: p.sku,
                title: p.title,
                description: p.description,
                tags: p.tags,
                category: p.category,
                price: p.price,
                in_stock: p.in_stock,
            });
        }
        let idx = Arc::new(tokio::task::block_in_place(|| {
            CatalogIndex::build(products)
        }));
        self.indexes
            .write()
            .expect("index lock")
            .insert(tenant.to_string(), (version, idx.clone()));
        Ok(idx)
    }

    /// `Search`.
    pub async fn search(&self, r: &cpb::SearchRequest) -> Result<cpb::SearchResponse> {
        error::text("tenant_id", &r.tenant_id, 256)?;
        error::text("query", &r.query, 1_000)?;
        for (f, v) in [("min_price", r.min_price), ("max_price", r.max_price)] {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::invalid(f, format!("{v} must be finite and >= 0")));
            }
        }
        let limit = match r.limit {
            0 => 10,
            n if n > 100 => return Err(Error::invalid("limit", "at most 100")),
            n => n as usize,
        };
        let idx = self.index(&r.tenant_id).await?;
        let mut req = SearchRequest {
            query: r.query.clone(),
            filters: Filters {
                category: (!r.category.is_empty()).then(|| r.category.clone()),
                min_price: (r.min_price > 0.0).then_some(r.min_price),
                max_price: (r.max_price > 0.0).then_some(r.max_price),
                in_stock_only: r.in_stock_only,
            },
            limit: limit.max(50),
            personalization: None,
        };
        let mut degraded = Vec::new();
        let mut personalized = "no";
        if !r.user_id.is_empty() {
            let first = idx.search(&req);
            let candidates: Vec<String> = first.hits.iter().map(|h| h.sku.clone()).collect();
            match crate::backend::rank(&self.peers, &r.tenant_id, &r.user_id, candidates).await {
                Ok(scores) if !scores.is_empty() => {
                    req.personalization = Some(Personalization {
                        sku_scores: scores,
                        weight: PERSONALIZATION_WEIGHT,
                    });
                    personalized = "yes";
                }
                Ok(_) => {}
                Err(e) => {
                    degraded.push(e);
                    personalized = "degraded";
                }
            }
        }
        req.limit = limit;
        let res = idx.search(&req);
        SEARCHES
            .with_label_values(&[
                if res.zero_result {
                    "zero_result"
                } else {
                    "hits"
                },
                personalized,
            ])
            .inc();
        if res.zero_result {
            self.count_zero_result(&r.tenant_id, &r.query).await?;
        }
        Ok(cpb::SearchResponse {
            hits: res
                .hits
                .iter()
                .map(|h| {
                    let p = idx.get(&h.sku);
                    cpb::SearchHit {
                        sku: h.sku.clone(),
                        title: p.map(|p| p.title.clone()).unwrap_or_default(),
                        category: p.map(|p| p.category.clone()).unwrap_or_default(),
                        price: p.map_or(0.0, |p| p.price),
                        text_score: f64::from(h.bm25),
                        score: f64::from(h.score),
                    }
                })
                .collect(),
            corrections: res
                .corrections
                .iter()
                .map(|c| format!("{}->{}", c.from, c.to))
                .collect(),
            personalized: personalized == "yes",
            degraded,
        })
    }

    async fn count_zero_result(&self, tenant: &str, query: &str) -> Result<()> {
        let q: String = query.trim().to_lowercase().chars().take(200).collect();
        let s = slot(tenant, self.partitions);
        let mut b = PartitionBatch::new(format!("zero/{}", uuid::Uuid::now_v7()), s.partition);
        b.push(
            0,
            vec![Op::ZIncr {
                key: format!("zero:{tenant}"),
                member: q,
                delta: 1.0,
            }],
        );
        self.store.apply(SCOPE, &b).await?;
        Ok(())
    }

    /// Zero-result query counts of the stream's `search` events and of
    /// `Search` calls, most frequent first.
    pub async fn zero_result_queries(
        &self,
        tenant: &str,
        limit: u32,
    ) -> Result<Vec<cpb::QueryCount>> {
        error::text("tenant_id", tenant, 256)?;
        let n = if limit == 0 {
            20
        } else {
            limit.min(1000) as usize
        };
        // The stream's counts are kept per partition, the calls' in the
        // tenant's slot: every shard is summed.
        let mut counts: HashMap<String, f64> = HashMap::new();
        for p in 0..self.partitions {
            for (q, c) in self
                .store
                .ztop(shard(p), &format!("zero:{tenant}"), 10_000)
                .await?
            {
                *counts.entry(q).or_insert(0.0) += c;
            }
        }
        let mut top: Vec<(String, f64)> = counts.into_iter().collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(n);
        Ok(top
            .into_iter()
            .map(|(query, c)| cpb::QueryCount {
                query,
                count: c as u64,
            })
            .collect())
    }

    /// Products whose predicted category needs a person to check.
    pub async fn low_confidence(&self, tenant: &str, page: u32) -> Result<Vec<cpb::ProductClass>> {
        error::text("tenant_id", tenant, 256)?;
        let n = if page == 0 {
            50
        } else {
            page.min(1000) as usize
        };
        let h = self
            .store
            .hgetall(slot(tenant, self.partitions), &format!("lowconf:{tenant}"))
            .await?;
        let mut out: Vec<cpb::ProductClass> = h
            .values()
            .filter_map(|v| unhex(v).and_then(|b| cpb::ProductClass::decode(b.as_slice()).ok()))
            .collect();
        out.sort_by(|a, b| {
            a.confidence
                .total_cmp(&b.confidence)
                .then_with(|| a.sku.cmp(&b.sku))
        });
        out.truncate(n);
        Ok(out)
    }
}

/// A spike: today at least 5 negative texts, a negative share above 30% and
/// above twice the share of the days before. Returns (negative, total,
/// baseline share).
pub fn spike(days: &[pb::TrendDay]) -> Option<(u64, u64, f64)> {
    let (today, before) = days.split_last()?;
    let total = today.positive + today.neutral + today.negative;
    let (bn, bt) = before.iter().fold((0u64, 0u64), |(n, t), d| {
        (n + d.negative, t + d.positive + d.neutral + d.negative)
    });
    let baseline = if bt > 0 { bn as f64 / bt as f64 } else { 0.0 };
    let share = if total > 0 {
        today.negative as f64 / total as f64
    } else {
        0.0
    };
    (today.negative >= 5 && share > 0.3 && share > 2.0 * baseline).then_some((
        today.negative,
        total,
        baseline,
    ))
}

fn turns(conv: &Conversation) -> Vec<pb::Turn> {
    conv.turns
        .iter()
        .map(|t| pb::Turn {
            role: match t.speaker {
                Speaker::Customer => "user".into(),
                Speaker::Assistant => "assistant".into(),
            },
            text: t.text.clone(),
            at_ms: 0,
        })
        .collect()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() & 1 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(pos: u64, neg: u64) -> pb::TrendDay {
        pb::TrendDay {
            positive: pos,
            negative: neg,
            ..Default::default()
        }
    }

    #[test]
    fn a_spike_needs_volume_share_and_a_jump_over_the_baseline() {
        assert!(spike(&[day(10, 1), day(10, 1), day(4, 6)]).is_some());
        // Too few negatives.
        assert!(spike(&[day(10, 1), day(1, 4)]).is_none());
        // Always this negative: no jump.
        assert!(spike(&[day(4, 6), day(4, 6), day(4, 6)]).is_none());
        assert!(spike(&[]).is_none());
    }

    #[test]
    fn hex_round_trips_and_refuses_junk() {
        assert_eq!(unhex(&hex(&[0, 255, 16])), Some(vec![0, 255, 16]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}

//! Reads of the live signals.
//!
//! A user's history, purchases, cart and flags live in the user's slot;
//! an item's co-occurrence list and catalog entry in the item's home slot;
//! a popularity set in its key's slot ([`keys::Home`]). Every read is
//! therefore one command on one key, and the reads of one request are issued
//! together on the multiplexed connection (one pipelined round trip per
//! stage): the user's state, then the candidates, then the catalog.
use std::collections::{HashMap, HashSet};

use mesh_bus::partition::partition_for;
use mesh_recommend::cold::{ColdContext, ColdWeights};
use mesh_recommend::live::{trending_score, Horizon, LiveConfig, Scope};
use mesh_recommend::rank::{Candidate, Source};
use mesh_recommend::topn::top_n;
use mesh_recommend::types::ItemMeta;
use mesh_store::{erasure, HashRead, HashReply, Op, PartitionBatch, Slot, StateStore};

use crate::error::Result;
use crate::keys::{self, HistEntry, SCOPE, UPSERT_PREFIX};

/// Source topic name of catalog writes made by `UpsertItems` (watermarks are
/// per source; this one never collides with a Kafka topic).
pub const UPSERT_SOURCE: &str = "_rpc.upsert-items";

/// Neighbours read per seed item by [`LiveReader::from_history`].
const SEED_DEPTH: usize = 20;

/// What the store knows about one user.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserState {
    /// Recent interactions, oldest first.
    pub history: Vec<HistEntry>,
    pub purchased: HashSet<String>,
    pub in_cart: HashSet<String>,
    /// When the churn service last flagged the user at risk, Unix ms.
    pub at_risk_ms: Option<i64>,
    /// When the fraud service last flagged the user for promotion abuse, Unix ms.
    pub promo_abuse_ms: Option<i64>,
    /// The user was erased: everything else is empty, and the model and
    /// profile must not be asked about them either.
    pub erased: bool,
}

impl UserState {
    /// Distinct recent items, newest first.
    pub fn recent_items(&self) -> Vec<String> {
        let mut seen = HashSet::new();
        self.history
            .iter()
            .rev()
            .filter(|h| seen.insert(h.item.as_str()))
            .map(|h| h.item.clone())
            .collect()
    }
}

/// Merged reads of the live signals.
#[derive(Clone)]
pub struct LiveReader {
    pub store: StateStore,
    pub partitions: i32,
    pub live: LiveConfig,
}

impl LiveReader {
    fn slot(partition: i32) -> Slot<'static> {
        Slot {
            scope: SCOPE,
            partition,
        }
    }

    /// The slot that owns a user's keys.
    pub fn user_slot(&self, tenant: &str, user: &str) -> Slot<'static> {
        Self::slot(partition_for(&format!("{tenant}/{user}"), self.partitions))
    }

    /// The slot that owns an item's co-occurrence list and catalog entry.
    pub fn item_slot(&self, tenant: &str, item: &str) -> Slot<'static> {
        Self::slot(keys::item_partition(tenant, item, self.partitions))
    }

    /// The slot that owns a key stored under its own name (popularity).
    pub fn key_slot(&self, key: &str) -> Slot<'static> {
        Self::slot(keys::key_partition(key, self.partitions))
    }

    /// History, purchases, cart, flags and whether the user was erased:
    /// one pipelined round trip. An erased user's state is empty.
    pub async fn user_state(&self, tenant: &str, user: &str) -> Result<UserState> {
        let slot = self.user_slot(tenant, user);
        let hist_key = keys::history(tenant, user);
        let hashes = [
            (slot, keys::bought(tenant, user)),
            (slot, keys::cart(tenant, user)),
            (slot, keys::flags(tenant, user)),
        ];
        let erased = [HashRead::Fields {
            slot,
            key: erasure::KEY.into(),
            fields: vec![erasure::member(tenant, user)],
        }];
        let (list, hashes, erased) = futures::future::try_join3(
            self.store
                .lrange(slot, &hist_key, self.live.history_len.max(1)),
            self.store.hgetall_many(&hashes),
            self.store.hread_many(&erased),
        )
        .await?;
        if matches!(erased.first(), Some(HashReply::Fields(v)) if v.iter().any(Option::is_some)) {
            return Ok(UserState {
                erased: true,
                ..UserState::default()
            });
        }
        let mut hashes = hashes.into_iter();
        let purchased = hashes.next().unwrap_or_default().into_keys().collect();
        let in_cart = hashes
            .next()
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, v)| v.parse::<i64>().is_ok_and(|n| n > 0))
            .map(|(k, _)| k)
            .collect();
        let flags = hashes.next().unwrap_or_default();
        let flag = |f: &str| flags.get(f).and_then(|v| v.parse::<i64>().ok());
        Ok(UserState {
            history: list
                .iter()
                .rev()
                .filter_map(|s| HistEntry::decode(s))
                .collect(),
            purchased,
            in_cart,
            at_risk_ms: flag(keys::FLAG_AT_RISK),
            promo_abuse_ms: flag(keys::FLAG_PROMO_ABUSE),
            erased: false,
        })
    }

    /// Top `k` of a popularity set (stored, undecayed values).
    async fn popularity(&self, key: &str, k: usize) -> Result<HashMap<String, f64>> {
        Ok(self
            .store
            .ztop(self.key_slot(key), key, k)
            .await?
            .into_iter()
            .collect())
    }

    /// How deep popularity is read for `n` answers: the rules drop some.
    fn depth(n: usize) -> usize {
        (n * 2).max(20)
    }

    /// Items most co-occurring with `item`, decayed to `now`.
    pub async fn similar(
        &self,
        tenant: &str,
        item: &str,
        n: usize,
        now: f64,
    ) -> Result<Vec<(String, f64)>> {
        let d = self.live.cooc_decay();
        let top = self
            .store
            .ztop(
                self.item_slot(tenant, item),
                &keys::cooc(tenant, item, d.epoch(now)),
                n + 1,
            )
            .await?;
        Ok(top_n(
            top.into_iter()
                .filter(|(m, _)| m != item)
                .map(|(m, s)| (m, d.read(s, now))),
            n,
        ))
    }

    /// Items co-occurring with the `recent` items (newest first; the newest
    /// `max_seeds` are used), each seed weighted by its strongest event kind;
    /// the seeds themselves and `exclude` are left out.
    pub async fn from_history(
        &self,
        tenant: &str,
        state: &UserState,
        max_seeds: usize,
        n: usize,
        now: f64,
        exclude: &HashSet<String>,
    ) -> Result<Vec<(String, f64)>> {
        let recent = state.recent_items();
        let seeds: Vec<&String> = recent.iter().take(max_seeds).collect();
        let mut weight: HashMap<&str, f64> = HashMap::new();
        for h in &state.history {
            let w = weight.entry(h.item.as_str()).or_insert(0.0);
            *w = w.max(self.live.weights.of(h.kind));
        }
        // A seed's strongest neighbours are enough; the sum is cut to `n`.
        let per_seed = n.min(SEED_DEPTH);
        let reads = seeds.iter().map(|s| self.similar(tenant, s, per_seed, now));
        let lists = futures::future::try_join_all(reads).await?;
        let seen: HashSet<&str> = recent.iter().map(String::as_str).collect();
        let mut acc: HashMap<String, f64> = HashMap::new();
        for (seed, list) in seeds.iter().zip(lists) {
            let w = weight.get(seed.as_str()).copied().unwrap_or(1.0);
            for (item, s) in list {
                if !seen.contains(item.as_str()) && !exclude.contains(&item) {
                    *acc.entry(item).or_insert(0.0) += w * s;
                }
            }
        }
        Ok(top_n(acc, n))
    }

    /// Context-aware popularity for cold start: the same blend as
    /// [`mesh_recommend::cold::new_user_candidates`] (each scope divided by
    /// its maximum, weighted, global as the backoff), read from the store.
    pub async fn cold_candidates(
        &self,
        tenant: &str,
        ctx: &ColdContext,
        weights: &ColdWeights,
        n: usize,
        now: f64,
        exclude: &HashSet<String>,
    ) -> Result<Vec<Candidate>> {
        let mut scopes = vec![(Scope::Global, weights.global)];
        if let Some(c) = &ctx.category {
            scopes.push((Scope::Category(c.clone()), weights.category));
        }
        if let Some(s) = &ctx.segment {
            scopes.push((Scope::Segment(s.clone()), weights.segment));
        }
        if let Some(d) = &ctx.device {
            scopes.push((Scope::Device(d.clone()), weights.device));
        }
        let k = Self::depth(n) + exclude.len();
        let epoch = self.live.popularity_decay().epoch(now);
        let pop_keys: Vec<String> = scopes
            .iter()
            .map(|(s, _)| keys::popularity(tenant, s, Horizon::Long, epoch))
            .collect();
        let reads = pop_keys.iter().map(|key| self.popularity(key, k));
        let pops = futures::future::try_join_all(reads).await?;
        // Every stored value of one horizon decays by the same factor, so
        // the ratio to the scope's maximum needs no decay at all.
        let mut acc: HashMap<String, f64> = HashMap::new();
        for ((_, w), pop) in scopes.iter().zip(pops) {
            let max = pop.values().copied().fold(0.0, f64::max);
            if max <= 0.0 {
                continue;
            }
            for (item, s) in pop {
                if !exclude.contains(&item) {
                    *acc.entry(item).or_insert(0.0) += w * s / max;
                }
            }
        }
        Ok(top_n(acc, n)
            .into_iter()
            .map(|(item, score)| Candidate {
                item,
                score,
                source: Source::Popularity,
            })
            .collect())
    }

    /// Items whose short-term traffic most exceeds their long-term rate.
    pub async fn trending(
        &self,
        tenant: &str,
        category: Option<&str>,
        n: usize,
        now: f64,
    ) -> Result<Vec<(String, f64)>> {
        let scope = category.map_or(Scope::Global, |c| Scope::Category(c.to_string()));
        let k = Self::depth(n);
        // Both stored values are read from `now`'s epoch of their decay.
        let es = self.live.trending_decay().epoch(now);
        let el = self.live.popularity_decay().epoch(now);
        let (short, long) = futures::future::try_join(
            self.popularity(&keys::popularity(tenant, &scope, Horizon::Short, es), k),
            self.popularity(&keys::popularity(tenant, &scope, Horizon::Long, el), k * 4),
        )
        .await?;
        Ok(top_n(
            short.into_iter().map(|(item, s)| {
                let l = long.get(&item).copied().unwrap_or(0.0);
                let score = trending_score(l, s, now, &self.live);
                (item, score)
            }),
            n,
        ))
    }

    /// The tenant's retention offers, best selling first.
    pub async fn retention_offers(&self, tenant: &str, n: usize) -> Result<Vec<String>> {
        let key = keys::offers(tenant);
        Ok(self
            .store
            .ztop(self.key_slot(&key), &key, n)
            .await?
            .into_iter()
            .map(|(m, _)| m)
            .collect())
    }

    /// Catalog entries of `items`: fields written by `UpsertItems` win over
    /// those learned from events. Items never seen are absent.
    pub async fn catalog(
        &self,
        tenant: &str,
        items: &[String],
    ) -> Result<HashMap<String, ItemMeta>> {
        if items.is_empty() || self.partitions <= 0 {
            // Redis refuses an empty pipeline.
            return Ok(HashMap::new());
        }
        let keys: Vec<(Slot<'_>, String)> = items
            .iter()
            .map(|i| (self.item_slot(tenant, i), keys::item(tenant, i)))
            .collect();
        let hashes = self.store.hgetall_many(&keys).await?;
        Ok(items
            .iter()
            .zip(hashes)
            .filter_map(|(id, h)| item_meta(id, std::slice::from_ref(&h)).map(|m| (id.clone(), m)))
            .collect())
    }

    /// Writes catalog entries in each item's home slot, through the same
    /// atomic apply as events, under its own source watermark.
    pub async fn upsert_items(
        &self,
        tenant: &str,
        items: &[ItemMeta],
        now_us: i64,
    ) -> Result<usize> {
        let mut by_slot: HashMap<i32, Vec<Op>> = HashMap::new();
        let offers = keys::offers(tenant);
        let offers_slot = keys::key_partition(&offers, self.partitions);
        for m in items {
            let p = keys::item_partition(tenant, &m.id, self.partitions);
            by_slot.entry(p).or_default().extend(upsert_ops(tenant, m));
            let offer = if m.retention_offer {
                Op::ZSet {
                    key: offers.clone(),
                    member: m.id.clone(),
                    score: m.sales,
                }
            } else {
                Op::ZRem {
                    key: offers.clone(),
                    member: m.id.clone(),
                }
            };
            by_slot.entry(offers_slot).or_default().push(offer);
        }
        for (p, ops) in by_slot {
            // The offset only has to pass the watermark: the ops are plain
            // sets, so applying them again would be harmless too.
            let mut attempt = 0;
            loop {
                let wm = self
                    .store
                    .watermark(Self::slot(p), UPSERT_SOURCE)
                    .await?
                    .unwrap_or(-1);
                let mut batch = PartitionBatch::new(UPSERT_SOURCE, p);
                batch.push(now_us.max(wm + 1), ops.clone());
                let applied = self.store.apply(SCOPE, &batch).await?;
                attempt += 1;
                if applied.applied == 1 || attempt >= 5 {
                    break;
                }
            }
        }
        Ok(items.len())
    }
}

fn upsert_ops(tenant: &str, m: &ItemMeta) -> Vec<Op> {
    let key = keys::item(tenant, &m.id);
    let flag = |b: bool| if b { "1" } else { "0" }.to_string();
    [
        ("category", m.category.clone()),
        ("price", m.price.to_string()),
        ("out_of_stock", flag(!m.in_stock)),
        ("sales", m.sales.to_string()),
        ("rating", m.rating.to_string()),
        ("margin", m.margin.to_string()),
        ("promotional", flag(m.promotional)),
        ("retention_offer", flag(m.retention_offer)),
        ("listed_at", m.listed_at.to_string()),
    ]
    .into_iter()
    .map(|(f, value)| Op::HSet {
        key: key.clone(),
        field: format!("{UPSERT_PREFIX}{f}"),
        value,
    })
    .collect()
}

/// Reviews the catalog's own rating counts as, against streamed reviews.
const RATING_PRIOR: f64 = 5.0;

/// One item's catalog entry from its hash (or several hashes of the same
/// item: event-fed fields are taken from the most recently seen one).
fn item_meta(id: &str, hashes: &[HashMap<String, String>]) -> Option<ItemMeta> {
    if hashes.iter().all(HashMap::is_empty) {
        return None;
    }
    let up = |f: &str| {
        hashes
            .iter()
            .find_map(|h| h.get(&format!("{UPSERT_PREFIX}{f}")))
    };
    // Event-fed fields: the most recently seen partition's values.
    let latest = hashes
        .iter()
        .filter(|h| h.contains_key("seen_ms"))
        .max_by_key(|h| h.get("seen_ms").and_then(|v| v.parse::<i64>().ok()));
    let ev = |f: &str| latest.and_then(|h| h.get(f));
    let num = |v: Option<&String>| v.and_then(|s| s.parse::<f64>().ok());
    let category = up("category")
        .filter(|c| !c.is_empty())
        .or_else(|| ev("category"))
        .cloned()
        .unwrap_or_default();
    let price = num(up("price"))
        .filter(|p| *p > 0.0)
        .or_else(|| num(ev("price")))
        .unwrap_or(0.0);
    let mut m = ItemMeta::new(id, category, price);
    m.in_stock = up("out_of_stock").is_none_or(|v| v != "1");
    // Sales and rating follow the stream: the catalog's figures (from
    // `UpsertItems`) are the baseline, ordered units add to the sales, and
    // review stars move the rating as a Bayesian average with the
    // catalog's rating worth `RATING_PRIOR` reviews.
    let sum = |f: &str| -> f64 { hashes.iter().filter_map(|h| num(h.get(f))).sum() };
    m.sales = num(up("sales")).unwrap_or(0.0) + sum(crate::signals::SOLD);
    let (stars, reviews) = (
        sum(crate::signals::RATING_SUM),
        sum(crate::signals::RATING_N),
    );
    m.rating = match num(up("rating")).filter(|r| *r > 0.0) {
        Some(r) => (r * RATING_PRIOR + stars) / (RATING_PRIOR + reviews),
        None if reviews > 0.0 => stars / reviews,
        None => 0.0,
    };
    m.margin = num(up("margin")).unwrap_or(0.0);
    m.promotional = up("promotional").is_some_and(|v| v == "1");
    m.retention_offer = up("retention_offer").is_some_and(|v| v == "1");
    m.listed_at = num(up("listed_at")).unwrap_or(0.0);
    Some(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upserted_fields_win_over_event_fields() {
        let mut m = ItemMeta::new("a", "shoes", 30.0);
        m.in_stock = false;
        let mut rpc: HashMap<String, String> = HashMap::new();
        for op in upsert_ops("t", &m) {
            if let Op::HSet { field, value, .. } = op {
                rpc.insert(field, value);
            }
        }
        let ev: HashMap<String, String> = [
            ("seen_ms".to_string(), "5".to_string()),
            ("category".to_string(), "boots".to_string()),
            ("price".to_string(), "10".to_string()),
        ]
        .into();
        let got = item_meta("a", &[ev.clone(), rpc]).unwrap();
        assert_eq!(got.category, "shoes");
        assert!(!got.in_stock);
        let got = item_meta("a", &[ev, HashMap::new()]).unwrap();
        assert_eq!((got.category.as_str(), got.price), ("boots", 10.0));
        assert!(got.in_stock);
        assert!(item_meta("a", &[HashMap::new()]).is_none());
    }

    #[test]
    fn sales_and_rating_follow_the_stream() {
        let h = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        // Only events: units sold and the mean of the stars.
        let ev = h(&[
            ("seen_ms", "5"),
            ("sold", "7"),
            ("rating_sum", "9"),
            ("rating_n", "3"),
        ]);
        let got = item_meta("a", std::slice::from_ref(&ev)).unwrap();
        assert_eq!((got.sales, got.rating), (7.0, 3.0));
        // A catalog baseline: sales add up, the rating is a weighted mean
        // with the catalog's 5.0 worth five reviews.
        let mut m = ItemMeta::new("a", "shoes", 30.0);
        m.sales = 100.0;
        m.rating = 5.0;
        let mut both = ev;
        for op in upsert_ops("t", &m) {
            if let Op::HSet { field, value, .. } = op {
                both.insert(field, value);
            }
        }
        let got = item_meta("a", &[both]).unwrap();
        assert_eq!(got.sales, 107.0);
        assert!((got.rating - (25.0 + 9.0) / 8.0).abs() < 1e-12);
    }
}

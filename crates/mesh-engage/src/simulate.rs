//! Seeded ground-truth worlds for tests and the evaluation. Every generator takes a seed or
//! a caller's `ChaCha8Rng`, so a run is reproducible bit for bit on any machine.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal, Poisson};
use serde::{Deserialize, Serialize};

use crate::campaign::{Group, UserOutcome};
use crate::pricing::{PriceObservation, SegmentObservation};
use crate::stats::sigmoid;

fn poisson<R: Rng + ?Sized>(mean: f64, rng: &mut R) -> f64 {
    if mean <= 0.0 {
        0.0
    } else {
        Poisson::new(mean).map(|p| p.sample(rng)).unwrap_or(0.0)
    }
}

// ---------------------------------------------------------------- (a) pricing

/// An item with known demand.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimItem {
    /// Item id.
    pub id: u64,
    /// Category id.
    pub category: u32,
    /// True elasticity.
    pub true_elasticity: f64,
    /// Usual price.
    pub base_price: f64,
    /// Units per exposure at the base price.
    pub base_rate: f64,
    /// Unit cost.
    pub unit_cost: f64,
}

impl SimItem {
    /// True expected units per exposure at `price`.
    pub fn rate(&self, price: f64) -> f64 {
        self.base_rate * (price / self.base_price).powf(self.true_elasticity)
    }
}

/// Items in categories whose true elasticities scatter around category means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricingWorld {
    /// Category mean elasticities.
    pub category_means: Vec<f64>,
    /// Items.
    pub items: Vec<SimItem>,
}

impl PricingWorld {
    /// `categories` categories with means spread over [-2.8, -0.8] and `per_category` items
    /// each, item elasticities ~ N(category mean, item_sd).
    pub fn generate(seed: u64, categories: usize, per_category: usize, item_sd: f64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let spread = Normal::new(0.0, item_sd.max(1e-9)).expect("valid sd");
        let category_means: Vec<f64> = (0..categories)
            .map(|c| -0.8 - 2.0 * c as f64 / (categories.max(2) - 1) as f64)
            .collect();
        let mut items = Vec::new();
        for (c, mean) in category_means.iter().enumerate() {
            for _ in 0..per_category {
                let base_price = 5.0 * (rng.random::<f64>() * 4.0).exp();
                items.push(SimItem {
                    id: items.len() as u64 + 1,
                    category: c as u32,
                    true_elasticity: (mean + spread.sample(&mut rng)).min(-0.3),
                    base_price,
                    base_rate: 0.01 + 0.04 * rng.random::<f64>(),
                    unit_cost: base_price * (0.3 + 0.3 * rng.random::<f64>()),
                });
            }
        }
        Self {
            category_means,
            items,
        }
    }
}

/// `days` of history per item with prices drawn uniformly within ±`price_spread` of the base
/// price (price tests), about `exposures` views a day and Poisson sales.
pub fn simulate_price_history(
    world: &PricingWorld,
    days: usize,
    exposures: f64,
    price_spread: f64,
    seed: u64,
) -> Vec<PriceObservation> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(days * world.items.len());
    for item in &world.items {
        for _ in 0..days {
            let price = item.base_price * (1.0 + price_spread * (2.0 * rng.random::<f64>() - 1.0));
            let views = (exposures * (0.5 + rng.random::<f64>())).round().max(1.0);
            let units = poisson(views * item.rate(price), &mut rng);
            out.push(PriceObservation {
                item_id: item.id,
                category: item.category,
                price,
                exposures: views,
                units,
            });
        }
    }
    out
}

/// A pricing world whose customer segments answer price differently: segment `s` has
/// elasticity `item elasticity + offsets[s]` (capped at -0.2) and `shares[s]` of the views.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentWorld {
    /// The items.
    pub world: PricingWorld,
    /// Elasticity offset per segment.
    pub offsets: Vec<f64>,
    /// Share of views per segment (sums to 1).
    pub shares: Vec<f64>,
}

impl SegmentWorld {
    /// Three segments: price-sensitive (-0.6, 30% of views), regular (0, 50%) and loyal
    /// (+0.5, 20%).
    pub fn standard(world: PricingWorld) -> Self {
        Self {
            world,
            offsets: vec![-0.6, 0.0, 0.5],
            shares: vec![0.3, 0.5, 0.2],
        }
    }

    /// True elasticity of `item` for `segment`.
    pub fn true_elasticity(&self, item: &SimItem, segment: u32) -> f64 {
        (item.true_elasticity + self.offsets[segment as usize]).min(-0.2)
    }
}

/// Like [`simulate_price_history`], with every day's views split over the segments: returns
/// the per-item totals and the per-segment observations of the same days.
pub fn simulate_segment_history(
    world: &SegmentWorld,
    days: usize,
    exposures: f64,
    price_spread: f64,
    seed: u64,
) -> (Vec<PriceObservation>, Vec<SegmentObservation>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut items = Vec::with_capacity(days * world.world.items.len());
    let mut segments = Vec::with_capacity(items.capacity() * world.shares.len());
    for item in &world.world.items {
        for _ in 0..days {
            let price = item.base_price * (1.0 + price_spread * (2.0 * rng.random::<f64>() - 1.0));
            let (mut views, mut units) = (0.0, 0.0);
            for (s, share) in world.shares.iter().enumerate() {
                let v = (exposures * share * (0.5 + rng.random::<f64>()))
                    .round()
                    .max(1.0);
                let e = world.true_elasticity(item, s as u32);
                let u = poisson(
                    v * item.base_rate * (price / item.base_price).powf(e),
                    &mut rng,
                );
                segments.push(SegmentObservation {
                    item_id: item.id,
                    segment: s as u32,
                    price,
                    exposures: v,
                    units: u,
                });
                views += v;
                units += u;
            }
            items.push(PriceObservation {
                item_id: item.id,
                category: item.category,
                price,
                exposures: views,
                units,
            });
        }
    }
    (items, segments)
}

// ---------------------------------------------------------------- (b) offers

/// Offers and their true conversion probability as a function of context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferWorld {
    /// Offer names.
    pub arms: Vec<String>,
    /// Logistic weights per arm over the context.
    pub weights: Vec<Vec<f64>>,
}

/// Context layout: `[1, churn_risk, recency, monetary, seg_a, seg_b, seg_c]`.
pub const OFFER_CONTEXT_DIM: usize = 7;

impl OfferWorld {
    /// Four offers whose best choice depends on the user: coupons win for users at risk
    /// of churning, bundles for big spenders, pushes for recent visitors.
    pub fn standard() -> Self {
        Self {
            arms: ["none", "coupon", "bundle", "push"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            weights: vec![
                vec![-2.6, -0.5, 0.6, 0.3, 0.2, 0.0, -0.2],
                vec![-3.2, 2.4, 0.0, -0.4, 0.0, 0.3, 0.1],
                vec![-3.4, -0.6, 0.2, 2.2, 0.0, -0.2, 0.4],
                vec![-3.0, -0.2, 1.8, 0.2, 0.3, 0.0, -0.3],
            ],
        }
    }

    /// A random user context.
    pub fn sample_context<R: Rng + ?Sized>(&self, rng: &mut R) -> Vec<f64> {
        let seg = rng.random_range(0..3);
        let mut x = vec![1.0, rng.random(), rng.random(), rng.random()];
        x.extend((0..3).map(|s| f64::from(u8::from(s == seg))));
        x
    }

    /// True conversion probability of `arm` for `context`.
    pub fn response(&self, context: &[f64], arm: usize) -> f64 {
        sigmoid(
            self.weights[arm]
                .iter()
                .zip(context)
                .map(|(w, x)| w * x)
                .sum(),
        )
    }

    /// True best arm and its probability.
    pub fn best(&self, context: &[f64]) -> (usize, f64) {
        (0..self.arms.len())
            .map(|a| (a, self.response(context, a)))
            .fold((0, f64::NEG_INFINITY), |b, x| if x.1 > b.1 { x } else { b })
    }
}

// ---------------------------------------------------------------- (c) campaigns

/// A campaign with known effect. User value `v ~ LogNormal(0, value_sd)`; pre-period spend
/// `v * eta`; in-period revenue `converted * v * eps * basket`, so pre-period spend
/// predicts revenue (what CUPED exploits) and the true lifts are known in closed form.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CampaignWorld {
    /// Control conversion probability.
    pub control_conversion: f64,
    /// Treatment conversion probability.
    pub treatment_conversion: f64,
    /// Treatment basket multiplier on revenue per converter.
    pub treatment_basket: f64,
    /// Log-sd of user value.
    pub value_sd: f64,
    /// Log-sd of in-period revenue noise (mean 1).
    pub revenue_noise_sd: f64,
    /// Log-sd of pre-period spend noise (mean 1).
    pub pre_noise_sd: f64,
}

impl Default for CampaignWorld {
    fn default() -> Self {
        Self {
            control_conversion: 0.5,
            treatment_conversion: 0.53,
            treatment_basket: 1.03,
            value_sd: 0.8,
            revenue_noise_sd: 0.5,
            pre_noise_sd: 0.3,
        }
    }
}

/// A simulated user before group assignment; the group only changes the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimUser {
    /// User id.
    pub id: String,
    /// Latent value.
    pub value: f64,
    /// Pre-period spend.
    pub pre_spend: f64,
    /// Uniform draw deciding conversion.
    pub conversion_draw: f64,
    /// Revenue noise multiplier.
    pub revenue_noise: f64,
}

impl CampaignWorld {
    /// Same world with no effect (A/A).
    pub fn aa() -> Self {
        let d = Self::default();
        Self {
            treatment_conversion: d.control_conversion,
            treatment_basket: 1.0,
            ..d
        }
    }

    fn mean_value(&self) -> f64 {
        (self.value_sd * self.value_sd / 2.0).exp()
    }

    /// True difference in conversion rate.
    pub fn true_conversion_lift(&self) -> f64 {
        self.treatment_conversion - self.control_conversion
    }

    /// True difference in revenue per user.
    pub fn true_revenue_lift(&self) -> f64 {
        self.mean_value()
            * (self.treatment_conversion * self.treatment_basket - self.control_conversion)
    }

    /// The outcome of `user` in `group`.
    pub fn outcome_for(&self, group: Group, user: &SimUser) -> UserOutcome {
        let (p, basket) = match group {
            Group::Treatment => (self.treatment_conversion, self.treatment_basket),
            Group::Control => (self.control_conversion, 1.0),
        };
        let converted = user.conversion_draw < p;
        UserOutcome {
            converted,
            orders: u32::from(converted),
            revenue: if converted {
                user.value * user.revenue_noise * basket
            } else {
                0.0
            },
            pre_spend: user.pre_spend,
        }
    }
}

/// Mean-one log-normal with log-sd `sd`.
fn mean_one(sd: f64) -> LogNormal<f64> {
    LogNormal::new(-sd * sd / 2.0, sd).expect("valid log-normal")
}

/// `n` users of `world` with fresh random ids.
pub fn simulate_campaign_users<R: Rng + ?Sized>(
    world: &CampaignWorld,
    n: usize,
    rng: &mut R,
) -> Vec<SimUser> {
    let value = LogNormal::new(0.0, world.value_sd).expect("valid log-normal");
    let rev = mean_one(world.revenue_noise_sd);
    let pre = mean_one(world.pre_noise_sd);
    let tag: u64 = rng.random();
    (0..n)
        .map(|i| {
            let v = value.sample(rng);
            SimUser {
                id: format!("{tag:x}-{i}"),
                value: v,
                pre_spend: v * pre.sample(rng),
                conversion_draw: rng.random(),
                revenue_noise: rev.sample(rng),
            }
        })
        .collect()
}

// ---------------------------------------------------------------- (d) ads

/// Users in hidden segments with segment-specific feature means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AudienceWorld {
    /// Feature means per segment.
    pub segment_means: Vec<Vec<f64>>,
    /// Feature scales (features live on very different scales, as spend and counts do).
    pub scales: Vec<f64>,
}

impl AudienceWorld {
    /// `segments` segments in `dim` features.
    pub fn generate(seed: u64, segments: usize, dim: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n = Normal::new(0.0, 1.0).expect("valid normal");
        Self {
            segment_means: (0..segments)
                .map(|_| (0..dim).map(|_| n.sample(&mut rng)).collect())
                .collect(),
            scales: (0..dim)
                .map(|_| 10f64.powf(3.0 * rng.random::<f64>()))
                .collect(),
        }
    }

    /// `n` users as (hidden segment, features), segments uniform.
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Vec<(usize, Vec<f64>)> {
        let noise = Normal::new(0.0, 1.0).expect("valid normal");
        (0..n)
            .map(|_| {
                let s = rng.random_range(0..self.segment_means.len());
                let x = self.segment_means[s]
                    .iter()
                    .zip(&self.scales)
                    .map(|(m, sc)| (m + noise.sample(rng)) * sc + 3.0 * sc)
                    .collect();
                (s, x)
            })
            .collect()
    }
}

/// One ad impression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Impression {
    /// Creative id.
    pub creative: u32,
    /// User segment.
    pub segment: u32,
    /// Context (device / placement).
    pub context: u32,
    /// True click probability.
    pub true_ctr: f64,
    /// Clicked.
    pub clicked: bool,
}

/// Known CTR as a function of creative, segment, context and a creative x segment
/// interaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CtrWorld {
    /// Creative effects.
    pub creative: Vec<f64>,
    /// Segment effects.
    pub segment: Vec<f64>,
    /// Context effects.
    pub context: Vec<f64>,
    /// Creative x segment effects, row per creative.
    pub interaction: Vec<Vec<f64>>,
}

impl CtrWorld {
    /// Random effects.
    pub fn generate(seed: u64, creatives: usize, segments: usize, contexts: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut draw = |n: usize, sd: f64| -> Vec<f64> {
            let d = Normal::new(0.0, sd).expect("valid normal");
            (0..n).map(|_| d.sample(&mut rng)).collect()
        };
        let creative = draw(creatives, 0.5);
        let segment = draw(segments, 0.5);
        let context = draw(contexts, 0.4);
        let interaction = (0..creatives).map(|_| draw(segments, 0.6)).collect();
        Self {
            creative,
            segment,
            context,
            interaction,
        }
    }

    /// True click probability.
    pub fn ctr(&self, creative: u32, segment: u32, context: u32) -> f64 {
        let (c, s, x) = (creative as usize, segment as usize, context as usize);
        sigmoid(
            -3.2 + self.creative[c] + self.segment[s] + self.context[x] + self.interaction[c][s],
        )
    }

    /// `n` random impressions.
    pub fn sample<R: Rng + ?Sized>(&self, n: usize, rng: &mut R) -> Vec<Impression> {
        (0..n)
            .map(|_| {
                let creative = rng.random_range(0..self.creative.len()) as u32;
                let segment = rng.random_range(0..self.segment.len()) as u32;
                let context = rng.random_range(0..self.context.len()) as u32;
                let true_ctr = self.ctr(creative, segment, context);
                Impression {
                    creative,
                    segment,
                    context,
                    true_ctr,
                    clicked: rng.random::<f64>() < true_ctr,
                }
            })
            .collect()
    }
}

/// Ad campaigns with known return on ad spend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoasWorld {
    /// True revenue per unit spend.
    pub true_roas: Vec<f64>,
    /// Log-sd of revenue noise per unit of spend.
    pub noise_sd: f64,
}

impl RoasWorld {
    /// `campaigns` campaigns with ROAS spread over [0.8, 3.0].
    pub fn generate(seed: u64, campaigns: usize) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Self {
            true_roas: (0..campaigns)
                .map(|_| 0.8 + 2.2 * rng.random::<f64>())
                .collect(),
            noise_sd: 0.6,
        }
    }

    /// Revenue from spending `spend` on `campaign`: spend is bought in units of 10, each
    /// with log-normal return, so noise shrinks relative to the mean as spend grows.
    pub fn revenue<R: Rng + ?Sized>(&self, campaign: usize, spend: f64, rng: &mut R) -> f64 {
        if spend <= 0.0 {
            return 0.0;
        }
        let chunks = (spend / 10.0).max(1.0);
        let sd = self.noise_sd / chunks.sqrt();
        self.true_roas[campaign] * spend * mean_one(sd).sample(rng)
    }
}

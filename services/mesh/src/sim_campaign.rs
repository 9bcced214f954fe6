//! `mesh simulate campaign`: an audience with known per-offer conversion
//! rates and a known true lift, run through a running engage service, and
//! engage's campaign report checked against that truth.
//!
//! The simulator creates a campaign (randomized control group, several
//! offers), asks `ChooseOffer` for every simulated user over gRPC, and
//! draws each user's response from the truth: a control user orders with
//! probability `base_rate`, a treated user with the true rate of the offer
//! the bandit chose. A response is an `order_placed` event published
//! through ingest (the path engage attributes orders by, and the one its
//! bandit learns from); a converting treated user also reports a click with
//! `RecordResponse`. `RecordResponse("conversion")` is not sent: the order
//! already is the conversion, and both would count it twice.
//!
//! The users are new to the mesh, so profile and churn know nothing of them
//! and the bandit's context is the same for all: the truth is one rate per
//! offer. The true lift is therefore known exactly for the assignment that
//! happened: the mean true rate of the offers the treated users got minus
//! `base_rate` (conversion), times the mean order value (revenue per user).
//! Every draw derives from `--seed`; the bandit's own sampling is the
//! service's, so the offers chosen differ a little between runs.
use std::time::Duration;

use anyhow::Context;
use mesh_proto::engage::v1 as pb;
use mesh_proto::engage::v1::engage_service_client::EngageServiceClient;
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, LineItem, OrderPlaced};
use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_runtime::auth::AuthChannel;
use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Arguments of `mesh simulate campaign`.
#[derive(clap::Args, Debug, Clone)]
pub struct CampaignArgs {
    /// Ingest gRPC endpoint of the running mesh.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub ingest: String,
    /// Engage gRPC endpoint of the running mesh.
    #[arg(long, default_value = "http://127.0.0.1:50057")]
    pub engage: String,
    #[arg(long, default_value = "demo")]
    pub tenant: String,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Simulated users, each offered once.
    #[arg(long, default_value_t = 2000)]
    pub users: usize,
    /// Offer names.
    #[arg(long, value_delimiter = ',', default_value = "coupon,bundle,push")]
    pub offers: Vec<String>,
    /// True conversion rate of each offer, in `--offers` order.
    #[arg(long, value_delimiter = ',', default_value = "0.10,0.25,0.15")]
    pub rates: Vec<f64>,
    /// True conversion rate without an offer (the control group's).
    #[arg(long, default_value_t = 0.05)]
    pub base_rate: f64,
    /// Mean order value; each order is uniform in [0.5, 1.5] times it.
    #[arg(long, default_value_t = 40.0)]
    pub order_value: f64,
    /// Share of users held out as control.
    #[arg(long, default_value_t = 0.2)]
    pub control_share: f64,
    /// Users asked concurrently; their orders are published together.
    #[arg(long, default_value_t = 25)]
    pub batch: usize,
    /// Tag in the campaign and user ids (default: the current time), so a
    /// second run against the same mesh starts a fresh campaign. The
    /// control group is a hash of (campaign, user): a fixed tag fixes it.
    #[arg(long)]
    pub run: Option<String>,
    /// How long to wait for the report to count every order, seconds.
    #[arg(long, default_value_t = 60)]
    pub wait_seconds: u64,
    #[arg(long)]
    pub json: bool,
}

/// One offer: its truth, what the simulator sent and saw, what engage
/// reported.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OfferFigures {
    pub offer: String,
    pub true_rate: f64,
    pub sent: u64,
    pub converted: u64,
    pub reported_sent: u64,
    pub reported_converted: u64,
}

/// One arm: what the simulator published and what engage reported.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct ArmFigures {
    pub participants: u64,
    pub converted: u64,
    pub revenue: f64,
    pub reported_participants: u64,
    pub reported_converted: u64,
    pub reported_orders: u64,
    pub reported_revenue: f64,
}

/// A lift: the truth against engage's estimate and 95% interval.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct LiftCheck {
    pub true_lift: f64,
    pub estimate: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    /// The interval contains the true lift.
    pub covers_truth: bool,
    /// The interval lies above 0.
    pub excludes_zero: bool,
}

impl LiftCheck {
    fn new(true_lift: f64, l: &pb::Lift) -> Self {
        Self {
            true_lift,
            estimate: l.difference,
            ci_low: l.ci_low,
            ci_high: l.ci_high,
            covers_truth: l.ci_low <= true_lift && true_lift <= l.ci_high,
            excludes_zero: l.ci_low > 0.0,
        }
    }
}

/// What `mesh simulate campaign` prints.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CampaignSimReport {
    pub seed: u64,
    pub campaign_id: String,
    pub users: usize,
    pub offers: Vec<OfferFigures>,
    pub treatment: ArmFigures,
    pub control: ArmFigures,
    pub best_offer: String,
    /// Share of the treated sends that went to the truly best offer, in the
    /// first and in the last quarter of the sends.
    pub best_share_first_quarter: f64,
    pub best_share_last_quarter: f64,
    /// Expected cumulative regret against always sending the best offer,
    /// after each quarter of the sends (sub-linear: later quarters add less).
    pub regret_by_quarter: Vec<f64>,
    pub regret: f64,
    /// Expected regret of uniformly random offers over as many sends.
    pub uniform_regret: f64,
    pub regret_ratio: f64,
    pub conversion_lift: LiftCheck,
    /// Revenue per user.
    pub revenue_lift: LiftCheck,
    pub revenue_lift_cuped: LiftCheck,
    pub sequential_p_value: f64,
    pub significant: bool,
    /// The report counted every published order and every send once.
    pub counts_match: bool,
    /// RecordResponse clicks refused as already recorded (expected 0).
    pub clicks_not_recorded: u64,
}

/// One user's decision and drawn response.
#[derive(Debug, Clone)]
struct Outcome {
    control: bool,
    /// Index of the offer (treated users).
    offer: Option<usize>,
    revenue: Option<f64>,
}

async fn connect(what: &str, url: &str) -> anyhow::Result<AuthChannel> {
    let ep = mesh_runtime::tls::endpoint(url).with_context(|| format!("--{what} {url}"))?;
    let ch = tokio::time::timeout(Duration::from_secs(10), ep.connect())
        .await
        .map_err(|_| anyhow::anyhow!("{what} at {url} did not answer within 10 s"))?
        .with_context(|| {
            format!("cannot reach {what} at {url}: is the mesh running (`mesh up`)? (--{what} URL)")
        })?;
    Ok(mesh_runtime::auth::client(ch))
}

fn check(args: &CampaignArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.offers.len() >= 2 && args.offers.len() == args.rates.len(),
        "--offers and --rates: at least two offers, one rate each"
    );
    let rate = |r: f64| r.is_finite() && (0.0..=1.0).contains(&r);
    anyhow::ensure!(
        args.rates.iter().all(|r| rate(*r)) && rate(args.base_rate),
        "--rates and --base-rate: probabilities in [0, 1]"
    );
    anyhow::ensure!(
        args.control_share > 0.0 && args.control_share < 1.0,
        "--control-share: in (0, 1)"
    );
    anyhow::ensure!(
        args.order_value.is_finite() && args.order_value > 0.0,
        "--order-value: positive"
    );
    anyhow::ensure!(
        args.users >= 4 && args.batch >= 1,
        "--users at least 4, --batch at least 1"
    );
    Ok(())
}

/// Expected regret figures of a sequence of treated sends (offer indices):
/// cumulative regret after each quarter, the total, and uniform random's.
pub fn regret(rates: &[f64], sends: &[usize]) -> (Vec<f64>, f64, f64) {
    let best = rates.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mean = rates.iter().sum::<f64>() / rates.len() as f64;
    let mut cum = 0.0;
    let mut quarters = Vec::new();
    for (i, &s) in sends.iter().enumerate() {
        cum += best - rates[s];
        // The end of quarter k is send ceil(k * n / 4).
        let k = quarters.len() + 1;
        if i + 1 == (k * sends.len()).div_ceil(4) {
            quarters.push(cum);
        }
    }
    (quarters, cum, sends.len() as f64 * (best - mean))
}

/// Share of `sends` equal to `best`.
fn share(sends: &[usize], best: usize) -> f64 {
    if sends.is_empty() {
        return 0.0;
    }
    sends.iter().filter(|&&s| s == best).count() as f64 / sends.len() as f64
}

fn order(args: &CampaignArgs, run: &str, user: &str, at_ms: i64, total: f64) -> Envelope {
    // One unit of one item whose price is the order's value.
    let line = LineItem {
        sku: "sim-campaign-item".into(),
        category: "sim-campaign".into(),
        quantity: 1,
        unit_price: total,
        ..Default::default()
    };
    let body = OrderPlaced {
        order_id: format!("simc-{run}-{user}"),
        items: vec![line],
        total,
        currency: "USD".into(),
        ..Default::default()
    };
    Envelope {
        event_id: format!("{user}-order"),
        tenant_id: args.tenant.clone(),
        user_id: user.to_string(),
        occurred_at_ms: at_ms,
        source: "campaign-simulator".into(),
        body: Some(Body::OrderPlaced(body)),
        ..Default::default()
    }
}

/// `mesh simulate campaign`.
pub async fn campaign(args: &CampaignArgs) -> anyhow::Result<CampaignSimReport> {
    check(args)?;
    let run = args
        .run
        .clone()
        .unwrap_or_else(|| chrono::Utc::now().timestamp().to_string());
    let campaign_id = format!("sim-{}-{run}", args.seed);
    mesh_engage_id(&campaign_id)?;
    let mut engage = EngageServiceClient::new(connect("engage", &args.engage).await?);
    let mut ingest = IngestServiceClient::new(connect("ingest", &args.ingest).await?);
    engage
        .create_campaign(pb::Campaign {
            tenant_id: args.tenant.clone(),
            campaign_id: campaign_id.clone(),
            name: format!("simulated campaign (seed {})", args.seed),
            audience: Some(pb::AudienceRule::default()),
            offers: args.offers.clone(),
            control_share: args.control_share,
            cap_per_user: 1,
            cap_window_hours: 24.0,
            ..Default::default()
        })
        .await
        .with_context(|| format!("CreateCampaign {campaign_id} at {}", args.engage))?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let users: Vec<(String, f64, f64)> = (0..args.users)
        .map(|i| {
            (
                format!("simc-{}-{run}-{i}", args.seed),
                rng.random::<f64>(),
                rng.random::<f64>(),
            )
        })
        .collect();
    let mut outcomes: Vec<Outcome> = Vec::with_capacity(users.len());
    let mut clicks_not_recorded = 0;
    for chunk in users.chunks(args.batch) {
        let decisions = futures::future::join_all(chunk.iter().map(|(user, _, _)| {
            let mut c = engage.clone();
            let req = pb::ChooseOfferRequest {
                tenant_id: args.tenant.clone(),
                campaign_id: campaign_id.clone(),
                user_id: user.clone(),
            };
            async move { c.choose_offer(req).await.map(|r| r.into_inner()) }
        }))
        .await;
        let mut orders = Vec::new();
        let mut clicks = Vec::new();
        for ((user, u, v), d) in chunk.iter().zip(decisions) {
            let d = d.with_context(|| format!("ChooseOffer for {user}"))?;
            let control = d.arm == "control";
            anyhow::ensure!(
                control || (d.arm == "treatment" && !d.offer.is_empty()),
                "ChooseOffer for {user}: no offer and not control ({:?}, reason {:?})",
                d.arm,
                d.reason
            );
            let offer = (!control)
                .then(|| args.offers.iter().position(|o| *o == d.offer))
                .flatten();
            anyhow::ensure!(
                control || offer.is_some(),
                "ChooseOffer for {user}: unknown offer {:?}",
                d.offer
            );
            let p = offer.map_or(args.base_rate, |o| args.rates[o]);
            let revenue = (*u < p).then(|| {
                let r = args.order_value * (0.5 + v);
                (r * 100.0).round() / 100.0
            });
            if let Some(r) = revenue {
                let at = chrono::Utc::now().timestamp_millis().max(d.at_ms + 1);
                orders.push(order(args, &run, user, at, r));
                if !control {
                    clicks.push(d.offer_id.clone());
                }
            }
            outcomes.push(Outcome {
                control,
                offer,
                revenue,
            });
        }
        if !orders.is_empty() {
            crate::sim_priced::publish(&mut ingest, &orders, &args.ingest).await?;
        }
        for offer_id in clicks {
            let r = engage
                .record_response(pb::RecordResponseRequest {
                    tenant_id: args.tenant.clone(),
                    offer_id,
                    kind: "click".into(),
                    revenue: 0.0,
                })
                .await
                .context("RecordResponse")?
                .into_inner();
            clicks_not_recorded += u64::from(!r.recorded);
        }
    }
    // What the simulator sent and published.
    let mut treatment = ArmFigures::default();
    let mut control = ArmFigures::default();
    let mut offers: Vec<OfferFigures> = args
        .offers
        .iter()
        .zip(&args.rates)
        .map(|(o, r)| OfferFigures {
            offer: o.clone(),
            true_rate: *r,
            sent: 0,
            converted: 0,
            reported_sent: 0,
            reported_converted: 0,
        })
        .collect();
    let mut sends = Vec::new();
    for o in &outcomes {
        let arm = if o.control {
            &mut control
        } else {
            &mut treatment
        };
        arm.participants += 1;
        if let Some(r) = o.revenue {
            arm.converted += 1;
            arm.revenue += r;
        }
        if let Some(i) = o.offer {
            sends.push(i);
            offers[i].sent += 1;
            offers[i].converted += u64::from(o.revenue.is_some());
        }
    }
    // The report, once it has counted every order (or the wait is over).
    let started = std::time::Instant::now();
    let report = loop {
        let r = engage
            .campaign_report(pb::CampaignReportRequest {
                tenant_id: args.tenant.clone(),
                campaign_id: campaign_id.clone(),
            })
            .await
            .context("CampaignReport")?
            .into_inner();
        let t = r.treatment.unwrap_or_default();
        let c = r.control.unwrap_or_default();
        let caught_up = t.converted >= treatment.converted && c.converted >= control.converted;
        if caught_up || started.elapsed() > Duration::from_secs(args.wait_seconds) {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (t, c) = (
        report.treatment.unwrap_or_default(),
        report.control.unwrap_or_default(),
    );
    for (arm, s) in [(&mut treatment, &t), (&mut control, &c)] {
        arm.reported_participants = s.participants;
        arm.reported_converted = s.converted;
        arm.reported_orders = s.orders;
        arm.reported_revenue = s.revenue;
    }
    for o in offers.iter_mut() {
        o.reported_sent = report.offers_sent.get(&o.offer).copied().unwrap_or(0);
        o.reported_converted = report.offers_converted.get(&o.offer).copied().unwrap_or(0);
    }
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * a.abs().max(1.0);
    let arm_ok = |a: &ArmFigures| {
        a.reported_participants == a.participants
            && a.reported_converted == a.converted
            && a.reported_orders == a.converted
            && close(a.reported_revenue, a.revenue)
    };
    let counts_match = arm_ok(&treatment)
        && arm_ok(&control)
        && offers
            .iter()
            .all(|o| o.reported_sent == o.sent && o.reported_converted == o.converted);
    // The truth for the assignment that happened.
    let treated_rate = if sends.is_empty() {
        0.0
    } else {
        sends.iter().map(|&s| args.rates[s]).sum::<f64>() / sends.len() as f64
    };
    let true_conv = treated_rate - args.base_rate;
    let true_rev = true_conv * args.order_value;
    let best = (0..args.rates.len())
        .max_by(|&a, &b| args.rates[a].total_cmp(&args.rates[b]))
        .unwrap_or(0);
    let q = sends.len() / 4;
    let (regret_by_quarter, regret_total, uniform_regret) = regret(&args.rates, &sends);
    let lift = |l: Option<pb::Lift>, truth: f64| LiftCheck::new(truth, &l.unwrap_or_default());
    Ok(CampaignSimReport {
        seed: args.seed,
        campaign_id,
        users: args.users,
        best_offer: args.offers[best].clone(),
        best_share_first_quarter: share(&sends[..q], best),
        best_share_last_quarter: share(&sends[sends.len() - q..], best),
        regret_by_quarter,
        regret: regret_total,
        uniform_regret,
        regret_ratio: if uniform_regret > 0.0 {
            regret_total / uniform_regret
        } else {
            0.0
        },
        conversion_lift: lift(report.conversion_lift, true_conv),
        revenue_lift: lift(report.revenue_lift, true_rev),
        revenue_lift_cuped: lift(report.revenue_lift_cuped, true_rev),
        sequential_p_value: report.sequential_p_value,
        significant: report.significant,
        counts_match,
        clicks_not_recorded,
        offers,
        treatment,
        control,
    })
}

/// Campaign ids engage accepts: letters, digits, '-', '_' (1..=64).
fn mesh_engage_id(id: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !id.is_empty()
            && id.len() <= 64
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "--run: the campaign id {id:?} must be letters, digits, '-' or '_' (at most 64)"
    );
    Ok(())
}

/// Prints the report as text or JSON.
pub fn print(r: &CampaignSimReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!(
        "campaign {} (seed {}): {} users, {} treated, {} control",
        r.campaign_id, r.seed, r.users, r.treatment.participants, r.control.participants
    );
    println!(
        "{:<12} {:>9} {:>7} {:>9} {:>13} {:>13}",
        "offer", "true rate", "sent", "converted", "engage sent", "engage conv"
    );
    for o in &r.offers {
        println!(
            "{:<12} {:>9.3} {:>7} {:>9} {:>13} {:>13}",
            o.offer, o.true_rate, o.sent, o.converted, o.reported_sent, o.reported_converted
        );
    }
    for (name, a) in [("treatment", &r.treatment), ("control", &r.control)] {
        println!(
            "{name:<9}: {} users, {} converted, revenue {:.2}; engage: {} users, {} converted, {} orders, revenue {:.2}",
            a.participants,
            a.converted,
            a.revenue,
            a.reported_participants,
            a.reported_converted,
            a.reported_orders,
            a.reported_revenue
        );
    }
    println!(
        "best offer {}: {:.1}% of sends in the first quarter, {:.1}% in the last",
        r.best_offer,
        100.0 * r.best_share_first_quarter,
        100.0 * r.best_share_last_quarter
    );
    let quarters: Vec<String> = r
        .regret_by_quarter
        .iter()
        .map(|x| format!("{x:.1}"))
        .collect();
    println!(
        "regret {:.1} (after each quarter: {}), uniform random {:.1}, ratio {:.3}",
        r.regret,
        quarters.join(", "),
        r.uniform_regret,
        r.regret_ratio
    );
    for (name, l) in [
        ("conversion lift", &r.conversion_lift),
        ("revenue/user lift", &r.revenue_lift),
        ("revenue lift CUPED", &r.revenue_lift_cuped),
    ] {
        println!(
            "{name:<18}: true {:+.4}, engage {:+.4} [{:+.4}, {:+.4}] {} the truth{}",
            l.true_lift,
            l.estimate,
            l.ci_low,
            l.ci_high,
            if l.covers_truth { "contains" } else { "MISSES" },
            if l.excludes_zero { ", excludes 0" } else { "" }
        );
    }
    println!(
        "sequential p-value {:.4} (significant: {}); report counts every send and order once: {}",
        r.sequential_p_value, r.significant, r.counts_match
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regret_is_counted_against_the_best_and_uniform_offers() {
        let rates = [0.1, 0.3, 0.2];
        // Four sends: worst, best, best, middle.
        let (quarters, total, uniform) = regret(&rates, &[0, 1, 1, 2]);
        assert!((total - 0.3).abs() < 1e-12, "{total}");
        assert!((uniform - 4.0 * 0.1).abs() < 1e-12, "{uniform}");
        assert_eq!(quarters.len(), 4);
        assert!((quarters[0] - 0.2).abs() < 1e-12 && (quarters[3] - 0.3).abs() < 1e-12);
        assert_eq!(share(&[1, 1, 0, 2], 1), 0.5);
        let l = LiftCheck::new(
            0.1,
            &pb::Lift {
                difference: 0.12,
                ci_low: 0.05,
                ci_high: 0.19,
                relative: 0.0,
            },
        );
        assert!(l.covers_truth && l.excludes_zero);
    }

    #[test]
    fn bad_arguments_are_refused_naming_the_flag() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            a: CampaignArgs,
        }
        let a = Cli::parse_from(["x", "--rates", "0.1,0.2"]).a;
        assert!(check(&a).unwrap_err().to_string().contains("--rates"));
        let a = Cli::parse_from(["x", "--control-share", "1"]).a;
        assert!(check(&a)
            .unwrap_err()
            .to_string()
            .contains("--control-share"));
        assert!(mesh_engage_id("sim-42-a b").is_err());
    }
}

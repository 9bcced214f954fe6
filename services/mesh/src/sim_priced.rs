//! `mesh simulate priced`: demand at shown prices with known per-item
//! elasticities, published into a running mesh, and (with `--engage`) the
//! engage service's estimates checked against that truth.
//!
//! The world is `mesh_engage::simulate::PricingWorld` (categories whose
//! items scatter around a category elasticity); every item is shown at a
//! price drawn within ±`price_spread` of its base price each day, and each
//! view buys with the item's true rate at that price. Views become
//! `product_view` events and sales `order_placed` events, `days` days into
//! the past, so engage's pricer sees exactly the stream the truth describes.
//! Kept apart from the general traffic simulator (`mesh_proto::sim`) on
//! purpose: the truth here must not move when that stream's mix changes.
use mesh_engage::simulate::{simulate_price_history, PricingWorld};
use mesh_proto::events::v1::envelope::Body;
use mesh_proto::events::v1::{Envelope, LineItem, OrderPlaced, ProductView};
use serde::Serialize;

const DAY_MS: i64 = 86_400_000;

/// Arguments of `mesh simulate priced`.
#[derive(clap::Args, Debug, Clone)]
pub struct PricedArgs {
    /// Ingest gRPC endpoint of the running mesh.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub ingest: String,
    /// Engage gRPC endpoint: when set, wait for its elasticities and report
    /// their error against the truth.
    #[arg(long)]
    pub engage: Option<String>,
    #[arg(long, default_value = "demo")]
    pub tenant: String,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Days of history (the last one ends now).
    #[arg(long, default_value_t = 14)]
    pub days: usize,
    #[arg(long, default_value_t = 3)]
    pub categories: usize,
    #[arg(long, default_value_t = 4)]
    pub items_per_category: usize,
    /// Mean views per item and day.
    #[arg(long, default_value_t = 150.0)]
    pub views: f64,
    /// Daily prices within ±this share of the base price.
    #[arg(long, default_value_t = 0.25)]
    pub price_spread: f64,
    /// How long to wait for engage's estimates, seconds.
    #[arg(long, default_value_t = 180)]
    pub wait_seconds: u64,
    #[arg(long)]
    pub json: bool,
}

/// One item's truth and, when asked, engage's estimate.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PricedItem {
    pub sku: String,
    pub category: String,
    pub true_elasticity: f64,
    pub base_price: f64,
    /// Engage's elasticity (after shrinkage), when it answered.
    pub estimated_elasticity: Option<f64>,
    pub observations: u64,
}

/// What `mesh simulate priced` prints.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PricedReport {
    pub seed: u64,
    pub events: usize,
    pub items: Vec<PricedItem>,
    /// Mean absolute percentage error of engage's elasticities against the
    /// truth, over the items it estimated.
    pub elasticity_mape: Option<f64>,
}

/// The sku and category name of a world item.
pub fn sku(id: u64) -> String {
    format!("sim-item-{id}")
}

fn category(c: u32) -> String {
    format!("sim-cat-{c}")
}

/// The world and its event stream, ending at `now_ms`, oldest first. Every
/// event id derives from the seed, so publishing twice adds nothing.
pub fn priced_events(args: &PricedArgs, now_ms: i64) -> (PricingWorld, Vec<Envelope>) {
    let world = PricingWorld::generate(args.seed, args.categories, args.items_per_category, 0.3);
    let obs = simulate_price_history(&world, args.days, args.views, args.price_spread, args.seed);
    let mut out = Vec::new();
    for (item, days) in world.items.iter().zip(obs.chunks(args.days.max(1))) {
        for (d, o) in days.iter().enumerate() {
            // Cents, as a shop shows them; the truth uses the same price.
            let price = (o.price * 100.0).round() / 100.0;
            let day_start = now_ms - (args.days - d) as i64 * DAY_MS;
            let views = o.exposures as usize;
            let step = (DAY_MS / 2) / views.max(1) as i64;
            let event = |k: usize, body: Body| Envelope {
                event_id: format!("simp-{}-{}-{d}-{k}", args.seed, item.id),
                tenant_id: args.tenant.clone(),
                user_id: format!("simp-user-{}", k % 97),
                occurred_at_ms: day_start + k as i64 * step,
                source: "priced-simulator".into(),
                body: Some(body),
                ..Default::default()
            };
            for k in 0..views {
                out.push(event(
                    k,
                    Body::ProductView(ProductView {
                        sku: sku(item.id),
                        category: category(item.category),
                        price,
                        ..Default::default()
                    }),
                ));
            }
            for u in 0..o.units as usize {
                let k = views + u;
                out.push(event(
                    k,
                    Body::OrderPlaced(OrderPlaced {
                        order_id: format!("simp-{}-{}-{d}-{u}", args.seed, item.id),
                        items: vec![LineItem {
                            sku: sku(item.id),
                            category: category(item.category),
                            quantity: 1,
                            unit_price: price,
                            ..Default::default()
                        }],
                        total: price,
                        currency: "USD".into(),
                        ..Default::default()
                    }),
                ));
            }
        }
    }
    out.sort_by_key(|e| e.occurred_at_ms);
    (world, out)
}

/// Mean absolute percentage error of the estimated elasticities.
pub fn mape(items: &[PricedItem]) -> Option<f64> {
    let errs: Vec<f64> = items
        .iter()
        .filter_map(|i| {
            i.estimated_elasticity
                .map(|e| ((e - i.true_elasticity) / i.true_elasticity).abs())
        })
        .collect();
    (!errs.is_empty()).then(|| errs.iter().sum::<f64>() / errs.len() as f64)
}

/// Publishes `events` through ingest, retrying while it answers
/// UNAVAILABLE (its store timed out, or an earlier attempt of the same ids
/// is still in flight): every event id derives from the seed, so a retry
/// never publishes an event twice. Fails on anything ingest rejects.
pub async fn publish(
    ingest: &mut mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient<
        mesh_runtime::auth::AuthChannel,
    >,
    events: &[Envelope],
    url: &str,
) -> anyhow::Result<()> {
    use mesh_proto::ingest::v1::PublishRequest;
    let mut attempt = 0u64;
    let r = loop {
        attempt += 1;
        let req = PublishRequest {
            events: events.to_vec(),
        };
        match ingest.publish(req).await {
            Ok(r) => break r.into_inner(),
            Err(s) if s.code() == tonic::Code::Unavailable && attempt < 20 => {
                tracing::debug!(
                    attempt,
                    message = s.message(),
                    "ingest unavailable; retrying"
                );
                tokio::time::sleep(std::time::Duration::from_millis(250 * attempt.min(8))).await;
            }
            Err(s) => {
                return Err(anyhow::anyhow!(
                    "publishing to ingest at {url} failed after {attempt} attempts: {:?}: {}",
                    s.code(),
                    s.message()
                ))
            }
        }
    };
    anyhow::ensure!(
        r.rejected.is_empty(),
        "ingest rejected simulated events: {:?}",
        r.rejected.first()
    );
    Ok(())
}

/// `mesh simulate priced`.
pub async fn priced(args: &PricedArgs) -> anyhow::Result<PricedReport> {
    use mesh_proto::engage::v1::engage_service_client::EngageServiceClient;
    use mesh_proto::engage::v1::GetPriceRequest;
    use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;

    anyhow::ensure!(args.days >= 2, "--days: at least 2 days are needed");
    anyhow::ensure!(
        args.views.is_finite() && args.views >= 1.0,
        "--views: at least 1 view per item and day"
    );
    anyhow::ensure!(
        args.price_spread > 0.0 && args.price_spread < 1.0,
        "--price-spread: in (0, 1)"
    );
    let now = chrono::Utc::now().timestamp_millis();
    let (world, events) = priced_events(args, now);
    let connect = |url: &str| -> anyhow::Result<mesh_runtime::auth::AuthChannel> {
        let ch = mesh_runtime::tls::endpoint(url)?.connect_lazy();
        Ok(mesh_runtime::auth::client(ch))
    };
    let mut ingest = IngestServiceClient::new(connect(&args.ingest)?);
    for chunk in events.chunks(500) {
        publish(&mut ingest, chunk, &args.ingest).await?;
    }
    let mut items: Vec<PricedItem> = world
        .items
        .iter()
        .map(|i| PricedItem {
            sku: sku(i.id),
            category: category(i.category),
            true_elasticity: i.true_elasticity,
            base_price: i.base_price,
            estimated_elasticity: None,
            observations: 0,
        })
        .collect();
    if let Some(engage) = &args.engage {
        let mut client = EngageServiceClient::new(connect(engage)?);
        let started = std::time::Instant::now();
        let wait = std::time::Duration::from_secs(args.wait_seconds);
        // The pricer fits on its own interval: ask until every item has an
        // estimate from all its days, or the wait is over.
        loop {
            for it in items.iter_mut() {
                if let Ok(x) = client
                    .explain_price(GetPriceRequest {
                        tenant_id: args.tenant.clone(),
                        sku: it.sku.clone(),
                    })
                    .await
                {
                    let x = x.into_inner();
                    if x.observations > 0 {
                        it.estimated_elasticity = Some(x.elasticity);
                        it.observations = x.observations;
                    }
                }
            }
            let done = items.iter().all(|i| i.observations as usize >= args.days);
            if done || started.elapsed() > wait {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
    }
    let elasticity_mape = mape(&items);
    Ok(PricedReport {
        seed: args.seed,
        events: events.len(),
        items,
        elasticity_mape,
    })
}

/// Prints the report as a table or JSON.
pub fn print(r: &PricedReport, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!("{} events published (seed {})", r.events, r.seed);
    println!(
        "{:<14} {:<10} {:>8} {:>10} {:>10} {:>5}",
        "sku", "category", "price", "true e", "engage e", "days"
    );
    for i in &r.items {
        let est = i
            .estimated_elasticity
            .map_or("-".to_string(), |e| format!("{e:.3}"));
        println!(
            "{:<14} {:<10} {:>8.2} {:>10.3} {:>10} {:>5}",
            i.sku, i.category, i.base_price, i.true_elasticity, est, i.observations
        );
    }
    if let Some(m) = r.elasticity_mape {
        println!("elasticity_mape {m:.3}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        a: PricedArgs,
    }

    #[test]
    fn the_stream_carries_the_truth_and_is_seeded() {
        let a = Cli::parse_from(["x", "--days", "5", "--views", "40"]).a;
        let now = 1_800_000_000_000;
        let (world, ev) = priced_events(&a, now);
        let (_, again) = priced_events(&a, now);
        assert_eq!(ev, again, "same seed, same stream");
        assert_eq!(world.items.len(), 12);
        assert!(ev
            .iter()
            .all(|e| e.occurred_at_ms < now && e.occurred_at_ms >= now - 5 * DAY_MS));
        // Units sold at high prices are fewer than at low prices for the
        // most elastic item: the stream carries the elasticity.
        let item = world
            .items
            .iter()
            .min_by(|x, y| x.true_elasticity.total_cmp(&y.true_elasticity))
            .unwrap();
        let (mut views, mut units) = (0usize, 0usize);
        for e in &ev {
            match &e.body {
                Some(Body::ProductView(v)) if v.sku == sku(item.id) => views += 1,
                Some(Body::OrderPlaced(o)) if o.items[0].sku == sku(item.id) => units += 1,
                _ => {}
            }
        }
        assert!(views >= 5 * 20 && units > 0, "{views} views {units} units");
        let ids: std::collections::BTreeSet<_> = ev.iter().map(|e| &e.event_id).collect();
        assert_eq!(ids.len(), ev.len(), "event ids are unique");
        let items = vec![PricedItem {
            sku: "a".into(),
            category: "c".into(),
            true_elasticity: -2.0,
            base_price: 1.0,
            estimated_elasticity: Some(-1.5),
            observations: 3,
        }];
        assert_eq!(mape(&items), Some(0.25));
    }
}

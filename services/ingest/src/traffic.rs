//! Traffic into a running mesh: a simulated shop's seeded purchase history,
//! then its live traffic, published through ingest's gRPC API (`mesh up
//! --simulate`, `mesh simulate traffic`). The live traffic is browsing at a
//! fixed rate (views, searches, carts, logins, sessions, reviews) and the
//! shop's orders, which continue its history's customers in real time, so
//! a forecast fitted on the history covers what each live day adds. The
//! events come from the shared generators in [`mesh_proto::sim`].
use std::net::SocketAddr;
use std::time::Duration;

use mesh_proto::events::v1::Envelope;
use mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient;
use mesh_proto::ingest::v1::PublishRequest;
use mesh_proto::sim::{browsing, shop, ShopOrders};
use tokio_util::sync::CancellationToken;

/// The simulated shop's customers by default: a few to about fifteen
/// orders a day, a history small enough for every consumer to replay at
/// start-up.
pub const CUSTOMERS: u32 = 300;
/// Days of purchase history published before the live traffic.
pub const HISTORY_DAYS: u32 = 120;
/// Users of the live browsing traffic (`u0` ..): visitors, not the shop's
/// customers, so browsing does not make a lapsed customer look active.
const VISITORS: u32 = 1000;

/// What the simulator drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Traffic {
    /// Live browsing events per second.
    pub rate: u32,
    /// The shop's customers: they set the history's daily volume and the
    /// live orders' alike (about 4% of them order on a given day).
    pub customers: u32,
}

impl Traffic {
    /// `rate` browsing events a second beside a shop of [`CUSTOMERS`].
    pub fn at_rate(rate: u32) -> Self {
        Traffic {
            rate,
            customers: CUSTOMERS,
        }
    }
}

/// The simulated shop from one seed: its history, then its live traffic
/// tick by tick. Deterministic for a seed and clock readings.
#[derive(Debug, Clone)]
pub struct Simulation {
    seed: u64,
    round: u64,
    orders: ShopOrders,
}

impl Simulation {
    /// The shop of `customers` customers at `now_ms` and its
    /// [`HISTORY_DAYS`]-day purchase history, in time order.
    pub fn start(seed: u64, customers: u32, now_ms: i64) -> (Simulation, Vec<Envelope>) {
        let s = shop(seed, &format!("h{seed:x}"), customers, HISTORY_DAYS, now_ms);
        let sim = Simulation {
            seed,
            round: 0,
            orders: s.orders,
        };
        (sim, s.history)
    }

    /// One tick's events at `now_ms`: `browse` browsing events over the
    /// last seconds, then the shop's orders placed since the last tick.
    pub fn tick(&mut self, browse: usize, now_ms: i64) -> Vec<Envelope> {
        let (seed, round) = (self.seed, self.round);
        let mut evs = browsing(
            seed ^ round,
            &format!("sim{seed:x}-{round}"),
            VISITORS,
            browse,
            now_ms - browse as i64 * 3000,
        );
        evs.extend(self.orders.until(now_ms));
        self.round += 1;
        evs
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64
}

/// Publishes a seeded [`HISTORY_DAYS`]-day purchase history of
/// `traffic.customers` customers (loyal, lapsed and one-time, so churn has
/// lapsed buyers to flag and forecasts have days of demand), then
/// `traffic.rate` browsing events a second and the same customers' orders
/// as they fall due, until `stop`.
pub async fn drive(addr: SocketAddr, traffic: Traffic, stop: CancellationToken) {
    drive_uri(format!("http://{addr}"), traffic, stop).await
}

/// [`drive`] with an endpoint URI (`http://host:port`).
pub async fn drive_uri(uri: String, traffic: Traffic, stop: CancellationToken) {
    let mut client = loop {
        let ch = match mesh_runtime::tls::endpoint(&uri) {
            Ok(e) => e.connect().await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match ch {
            Ok(ch) => break IngestServiceClient::new(mesh_runtime::auth::authed(ch)),
            Err(e) => {
                tracing::warn!(%e, %uri, "simulator waits for ingest");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    };
    let (mut sim, past) = Simulation::start(rand::random(), traffic.customers, now_ms());
    for chunk in past.chunks(500) {
        if stop.is_cancelled() {
            return;
        }
        if let Err(e) = client
            .publish(PublishRequest {
                events: chunk.to_vec(),
            })
            .await
        {
            if stop.is_cancelled() {
                return;
            }
            tracing::warn!(%e, "simulator history publish failed");
        }
    }
    let rate = traffic.rate;
    let batch = (rate / 10).clamp(1, 500) as usize;
    let mut tick =
        tokio::time::interval(Duration::from_secs_f64(batch as f64 / rate.max(1) as f64));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let evs = sim.tick(batch, now_ms());
        let sent = tokio::select! {
            _ = stop.cancelled() => return,
            r = client.publish(PublishRequest { events: evs }) => r,
        };
        match sent {
            // Shutting down: ingest stopped accepting before this call
            // returned; not worth a warning.
            Err(_) if stop.is_cancelled() => return,
            Err(e) => tracing::warn!(%e, "simulator publish failed"),
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mesh_proto::events::v1::envelope::Body;

    const DAY: i64 = 86_400_000;

    /// Orders per UTC day in `evs`.
    fn orders_per_day(evs: &[Envelope]) -> std::collections::BTreeMap<i64, u32> {
        let mut m = std::collections::BTreeMap::new();
        for e in evs {
            if matches!(e.body, Some(Body::OrderPlaced(_))) {
                *m.entry(e.occurred_at_ms.div_euclid(DAY)).or_insert(0) += 1;
            }
        }
        m
    }

    #[test]
    fn live_orders_per_day_stay_within_the_historys() {
        let now = 1_800_000_000_000;
        let (mut sim, past) = Simulation::start(9, CUSTOMERS, now);
        let prefix = "h9-";
        assert!(past.iter().all(|e| e.user_id.starts_with(prefix)));
        let per_day = orders_per_day(&past);
        let today = now.div_euclid(DAY);
        let recent: Vec<u32> = (today - 29..today - 1)
            .map(|d| per_day.get(&d).copied().unwrap_or(0))
            .collect();
        let (lo, hi) = (*recent.iter().min().unwrap(), *recent.iter().max().unwrap());
        // Three days of the driver at 200 events/s, one tick a minute (20
        // browsing events each: the clock, not the tick count, paces orders).
        let mut live = Vec::new();
        let (mut t, mut ticks) = (now, 0);
        while t < (today + 3) * DAY {
            t += 60_000;
            ticks += 1;
            live.extend(sim.tick(20, t));
        }
        let orders: Vec<&Envelope> = live
            .iter()
            .filter(|e| matches!(e.body, Some(Body::OrderPlaced(_))))
            .collect();
        // Every live order is a customer's of the history, none a visitor's.
        assert!(!orders.is_empty());
        assert!(orders.iter().all(|e| e.user_id.starts_with(prefix)));
        let live_days = orders_per_day(&live);
        for d in [today + 1, today + 2] {
            let n = live_days.get(&d).copied().unwrap_or(0);
            assert!(
                n * 2 >= lo && n <= 2 * hi,
                "day {d}: {n} orders, the history's last 4 weeks {lo}..{hi} a day"
            );
        }
        // Browsing flows at the rate still.
        assert_eq!(live.len() - orders.len(), 20 * ticks);
    }
}

//! Incremental replans against a fresh solve of the same stops: the plan's
//! distance after N replans stays within 2% of a fresh solve at the same
//! budget once the background re-optimization is on, and the routes are
//! compact. Pure planning, no broker or store.
use std::collections::BTreeMap;
use std::time::Duration;

use mesh_logistics_svc::wave::{next_plan, Reoptimize, Routing, StopRec, StopState, StoredPlan};

const DAY0: i64 = 1_795_132_800_000; // 2026-11-20 00:00 UTC
const WAVE: &str = "shop|wh|north|2026-11-20";

/// A small deterministic generator (xorshift64*), to keep the test free of
/// a rand dependency.
struct Rng(u64);

impl Rng {
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Stops like the simulator's: a region of about 6 x 6 km around the
/// depot, 1-3 units each, the whole day open.
fn stop(rng: &mut Rng, i: usize) -> StopRec {
    StopRec {
        id: format!("t/o{i:03}"),
        lat: 52.5 + (rng.unit() - 0.5) * 0.05,
        lon: 13.4 + (rng.unit() - 0.5) * 0.08,
        demand: 1 + (rng.unit() * 3.0) as i64,
        from_ms: DAY0 + 8 * 3_600_000,
        to_ms: DAY0 + 20 * 3_600_000,
        state: StopState::Active,
        user: format!("u{i}"),
        fraud: None,
    }
}

fn routing(reoptimize: Reoptimize) -> Routing {
    Routing {
        capacity: 20,
        vehicles: None,
        speed_kmh: 30.0,
        service_min: 3.0,
        depots: [("wh".to_string(), (52.5, 13.4))].into(),
        require_depots: true,
        reoptimize,
        // The iteration cap binds long before the time cap: deterministic.
        solve_budget: Duration::from_secs(30),
        solve_iterations: 300,
        replan_budget: Duration::from_millis(100),
    }
}

/// Mean distance of a route's stops from their centroid, in degrees
/// (scaled like the planner's projection), averaged over routes: small for
/// compact routes, large for routes that cross the whole area.
fn spread(p: &StoredPlan, stops: &BTreeMap<String, StopRec>) -> f64 {
    let cos = 52.5f64.to_radians().cos();
    let per_route: Vec<f64> = p
        .routes
        .iter()
        .filter(|r| !r.stops.is_empty())
        .map(|r| {
            let pts: Vec<(f64, f64)> = r
                .stops
                .iter()
                .map(|s| (stops[s].lon * cos, stops[s].lat))
                .collect();
            let n = pts.len() as f64;
            let (cx, cy) = pts
                .iter()
                .fold((0.0, 0.0), |a, p| (a.0 + p.0 / n, a.1 + p.1 / n));
            pts.iter()
                .map(|p| ((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt())
                .sum::<f64>()
                / n
        })
        .collect();
    per_route.iter().sum::<f64>() / per_route.len() as f64
}

/// 40 stops solved, then `replans` waves of 3 new stops each replanned in.
/// Returns (plan distance / fresh solve distance - 1, spread of the plan,
/// spread of the fresh solve, methods used, vehicles of the plan and of the
/// fresh solve).
fn run(reoptimize: Reoptimize, replans: usize) -> (f64, f64, f64, Vec<String>, usize, usize) {
    let routing = routing(reoptimize);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut stops: BTreeMap<String, StopRec> = BTreeMap::new();
    let mut next = 0;
    let mut add = |stops: &mut BTreeMap<String, StopRec>, k: usize, rng: &mut Rng| {
        for _ in 0..k {
            let s = stop(rng, next);
            next += 1;
            stops.insert(s.id.clone(), s);
        }
    };
    add(&mut stops, 40, &mut rng);
    let mut plan = next_plan(&routing, WAVE, &stops, None, 1).unwrap().unwrap();
    let mut methods = vec![plan.method.clone()];
    for step in 0..replans {
        add(&mut stops, 3, &mut rng);
        plan = next_plan(&routing, WAVE, &stops, Some(&plan), 2 + step as i64)
            .unwrap()
            .unwrap();
        methods.push(plan.method.clone());
    }
    assert!(plan.unassigned.is_empty(), "{:?}", plan.unassigned);
    let served: usize = plan.routes.iter().map(|r| r.stops.len()).sum();
    assert_eq!(served, stops.len());
    let fresh = next_plan(&routing, WAVE, &stops, None, 99)
        .unwrap()
        .unwrap();
    assert_eq!(fresh.method, "solve");
    (
        plan.distance / fresh.distance - 1.0,
        spread(&plan, &stops),
        spread(&fresh, &stops),
        methods,
        plan.routes.len(),
        fresh.routes.len(),
    )
}

#[test]
fn thirty_replans_stay_within_two_percent_of_a_fresh_solve() {
    const N: usize = 30;
    let off = Reoptimize {
        drift: 0.0,
        ..Default::default()
    };
    let (drift_off, spread_off, spread_fresh, _, v_off, v_fresh) = run(off, N);
    // The defaults. Counting replans alone (every 10) is not enough: three
    // replans after a comparison the plan was 2.2% over a fresh solve.
    let on = Reoptimize::default();
    // 27 replans: the last comparison (if any) was several replans ago.
    let (drift_27, ..) = run(on, N - 3);
    let (drift_on, spread_on, _, methods, v_on, _) = run(on, N);
    eprintln!("vehicles without re-optimization {v_off}, with it {v_on}, fresh solve {v_fresh}");
    eprintln!(
        "after {N} replans: drift without re-optimization {:.2}% (spread {spread_off:.4}), \
         with it {:.2}% (spread {spread_on:.4}); after 27: {:.2}%; fresh spread {spread_fresh:.4}; \
         methods {methods:?}",
        100.0 * drift_off,
        100.0 * drift_on,
        100.0 * drift_27
    );
    assert!(drift_on <= 0.02, "drift {drift_on} after {N} replans");
    assert!(drift_27 <= 0.02, "drift {drift_27} after 27 replans");
    assert!(methods.iter().all(|m| m != "solve") || methods[0] == "solve");
    assert!(
        spread_on <= spread_off * 1.05,
        "{spread_on} vs {spread_off}"
    );
}

/// The defaults compare on growth of the served stops too, so the plan is
/// within 2% of a fresh solve after every replan, not only after the count
/// of replans came round (what the console shows at any moment).
#[test]
fn with_the_defaults_every_replanned_plan_is_within_two_percent() {
    let routing = routing(Reoptimize::default());
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut stops: BTreeMap<String, StopRec> = BTreeMap::new();
    let mut next = 0;
    let mut add = |stops: &mut BTreeMap<String, StopRec>, k: usize, rng: &mut Rng| {
        for _ in 0..k {
            let s = stop(rng, next);
            next += 1;
            stops.insert(s.id.clone(), s);
        }
    };
    // A wave that starts small and grows fourfold, the way a day's wave
    // fills: the case that drifted most (+12% to +20% in the console).
    add(&mut stops, 15, &mut rng);
    let mut plan = next_plan(&routing, WAVE, &stops, None, 1).unwrap().unwrap();
    let mut worst: f64 = 0.0;
    let mut methods = Vec::new();
    for step in 0..15 {
        add(&mut stops, 3, &mut rng);
        plan = next_plan(&routing, WAVE, &stops, Some(&plan), 2 + step)
            .unwrap()
            .unwrap();
        methods.push(plan.method.clone());
        let fresh = next_plan(&routing, WAVE, &stops, None, 99)
            .unwrap()
            .unwrap();
        let drift = plan.distance / fresh.distance - 1.0;
        eprintln!(
            "step {step}: {} stops, {} distance {:.2} vs fresh {:.2} ({:+.2}%)",
            stops.len(),
            plan.method,
            plan.distance,
            fresh.distance,
            100.0 * drift
        );
        worst = worst.max(drift);
    }
    assert!(worst <= 0.02, "worst drift {worst}; methods {methods:?}");
    assert!(
        methods.iter().any(|m| m == "replan"),
        "some replans are kept: {methods:?}"
    );
}

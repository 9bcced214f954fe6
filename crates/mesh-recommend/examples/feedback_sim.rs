//! The recommendation feedback loop on simulated users with known preferences: the fixed
//! equal blend of sources against the Thompson-sampling bandit, and the regret of each
//! against the oracle blend, over two seeds.
//!
//! `cargo run -p mesh-recommend --release --example feedback_sim [rounds]`
use mesh_recommend::feedback::sim::{simulate, Policy, SimConfig};

fn main() {
    let rounds = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let base = SimConfig {
        rounds,
        ..SimConfig::default()
    };
    println!(
        "true click probability of an examined item: {:?}",
        base.quality
    );
    println!(
        "examination by slot: {:?}",
        base.examination
            .iter()
            .map(|e| (e * 100.0).round() / 100.0)
            .collect::<Vec<_>>()
    );
    println!(
        "{:>4} {:>7} {:>8} {:>7} {:>9} {:>9} {:>7}  {:<22} {:<22} weights m/c/p",
        "seed",
        "policy",
        "clicks",
        "ctr",
        "exp.ctr",
        "regret",
        "regret%",
        "top-3 share m/c/p",
        "est. ctr m/c/p"
    );
    for seed in [1, 2] {
        let cfg = SimConfig {
            seed,
            ..base.clone()
        };
        for policy in [Policy::Equal, Policy::Bandit, Policy::Oracle] {
            let r = simulate(&cfg, policy);
            let w = r.final_weights;
            let trip = |v: [f64; 3]| format!("{:.3}/{:.3}/{:.3}", v[0], v[1], v[2]);
            println!(
                "{:>4} {:>7} {:>8} {:>7.4} {:>9.4} {:>9.1} {:>6.1}%  {:<22} {:<22} {:.2}/{:.2}/{:.2}",
                seed,
                format!("{policy:?}").to_lowercase(),
                r.clicks,
                r.ctr,
                r.expected_ctr,
                r.regret,
                r.regret_share * 100.0,
                trip(r.top3_share),
                if policy == Policy::Bandit {
                    trip(r.estimated_ctr)
                } else {
                    "-".into()
                },
                w.model,
                w.cooccurrence,
                w.popularity
            );
        }
    }
}

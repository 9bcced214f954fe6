//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

use mesh_forecast::data::shared_data_dir;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

/// Path of a shared data file; fails the test with a clear message when it is missing.
pub fn data_file(rel: &str) -> PathBuf {
    let p = shared_data_dir().join(rel);
    assert!(
        p.exists(),
        "shared data file {} not found: set MESH_SHARED_DATA or place shared/ beside the repo",
        p.display()
    );
    p
}

/// `n` draws of N(0, sd) from a fixed seed.
pub fn noise(seed: u64, n: usize, sd: f64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let d = Normal::new(0.0, sd).expect("valid sd");
    (0..n).map(|_| d.sample(&mut rng)).collect()
}

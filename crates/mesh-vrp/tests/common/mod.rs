//! Shared helpers: locating the shared benchmark data.
#![allow(dead_code)]

use std::path::PathBuf;

/// `$MESH_SHARED_DATA` or `<workspace>/../shared/data`.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("MESH_SHARED_DATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
    }
}

/// Path of a data file; panics with a clear message when it is missing.
pub fn data_file(rel: &str) -> PathBuf {
    let p = data_dir().join(rel);
    assert!(
        p.is_file(),
        "required data file {} is missing: set MESH_SHARED_DATA or place shared/data beside the repo",
        p.display()
    );
    p
}

pub fn load(rel: &str) -> mesh_vrp::Instance {
    mesh_vrp::load(&data_file(rel)).unwrap_or_else(|e| panic!("cannot load {rel}: {e}"))
}

//! Generates Rust types and tonic stubs for every `.proto` under `proto/`.
//!
//! protoc comes from `protoc-bin-vendored`, so a fresh machine needs no
//! system protobuf compiler.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let mut protos = Vec::new();
    collect(&root, &mut protos)?;
    protos.sort();
    // A directory makes cargo rescan it, so a new .proto reruns the build.
    println!("cargo:rerun-if-changed={}", root.display());
    for p in &protos {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut config = tonic_prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    // Event bodies double as the HTTP JSON schema: `data` of a JSON event
    // deserializes straight into the body message. The envelope itself has
    // a hand-written JSON form (ingest's `json` module).
    let mut builder =
        tonic_prost_build::configure().file_descriptor_set_path(out.join("mesh_descriptor.bin"));
    for message in JSON_MESSAGES {
        builder = builder.message_attribute(
            format!(".mesh.events.v1.{message}"),
            "#[derive(serde::Serialize, serde::Deserialize)] #[serde(default, deny_unknown_fields)]",
        );
    }
    builder.compile_with_config(config, &protos, &[root])?;
    Ok(())
}

/// Messages of `mesh.events.v1` with a serde form: every body, and the
/// shared sub-messages.
const JSON_MESSAGES: &[&str] = &[
    "Context",
    "SessionStarted",
    "PageView",
    "ProductView",
    "Search",
    "AddToCart",
    "RemoveFromCart",
    "CheckoutStarted",
    "LineItem",
    "Location",
    "OrderPlaced",
    "PaymentAuthorized",
    "PaymentFailed",
    "OrderCancelled",
    "OrderShipped",
    "OrderDelivered",
    "RefundIssued",
    "ReviewSubmitted",
    "SupportMessage",
    "Login",
    "CredentialChanged",
    "UserErased",
];

fn collect(dir: &std::path::Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}

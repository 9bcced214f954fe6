//! A structure-aware fuzz loop over every gRPC method of the mesh (issue
//! #17, item 2), against the real broker and Redis.
//!
//! Requests are generated from the mesh's own descriptor set: each field of
//! the method's request message, recursively, gets hostile values of its
//! type (empty, 100 KB and control-character strings; NaN, ±inf, ±1e308 and
//! subnormal doubles; 0, −1, `i64::MAX`, `u64::MAX` varints; unknown enum
//! values; repeated fields with many elements; unknown field numbers), and a
//! share of the requests are byte-level mutations (bit flips, truncation,
//! garbage) of generated ones. Every call must come back within 10 s with
//! a status a caller can act on — OK or a client error naming what was
//! wrong (bytes that are not the method's message included: INVALID_ARGUMENT)
//! — never UNKNOWN, INTERNAL, CANCELLED or DATA_LOSS, and every service
//! must still answer its health check afterwards.
//!
//! `MESH_FUZZ_CASES` (default 25) cases per method; `MESH_FUZZ_SEED` (default:
//! random, printed) reproduces a run. The long run is
//! `MESH_FUZZ_CASES=2000 scripts/test.sh --test e2e fuzz_rpc::`. Each failing
//! input is written to `target/fuzz-rpc-findings/` with its method and seed.
use std::collections::HashMap;
use std::time::{Duration, Instant};

use mesh_e2e::raw::{call, grpc_addr_of, schema};
use mesh_e2e::{config, start, Servers};
use prost_types::field_descriptor_proto::{Label, Type};
use prost_types::DescriptorProto;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tonic::{Code, Status};

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn key(field: u32, wire: u8, out: &mut Vec<u8>) {
    varint(u64::from(field) << 3 | u64::from(wire), out);
}

fn hostile_string(rng: &mut ChaCha8Rng) -> Vec<u8> {
    match rng.random_range(0..12) {
        0 => Vec::new(),
        1 => vec![b'x'; 100 << 10],
        2 => vec![b'a'; rng.random_range(60..400)],
        3 => "\u{0}\u{1}\n\r\t\u{7f}".into(),
        4 => "../../etc/passwd".into(),
        5 => "用户-ユーザー-🙂".into(),
        6 => " ".into(),
        7 => format!("{}", rng.random::<i64>()).into_bytes(),
        8 => {
            // Not UTF-8.
            (0..rng.random_range(1..32))
                .map(|_| rng.random::<u8>())
                .collect()
        }
        9 => "sku-1".into(),
        10 => "t1".into(),
        _ => format!("u-{}", rng.random_range(0..50)).into_bytes(),
    }
}

fn hostile_varint(rng: &mut ChaCha8Rng) -> u64 {
    match rng.random_range(0..10) {
        0 => 0,
        1 => 1,
        2 => u64::MAX, // -1 as int64/int32
        3 => i64::MAX as u64,
        4 => 1 << 31,
        5 => u32::MAX as u64,
        6 => 4_102_444_800_000, // 2100-01-01 in ms
        7 => rng.random_range(0..1000),
        8 => 999, // an unknown enum value
        _ => rng.random(),
    }
}

fn hostile_double(rng: &mut ChaCha8Rng) -> f64 {
    match rng.random_range(0..10) {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => 0.0,
        4 => -0.0,
        5 => 1e308,
        6 => -1e308,
        7 => 5e-324,
        8 => rng.random_range(-1000.0..1000.0),
        _ => rng.random::<f64>(),
    }
}

/// A request of message type `name`: each field present with probability
/// 0.6, repeated fields 1..=4 times (sometimes 1,000), nested messages to
/// depth 4, sometimes an unknown field.
fn generate(
    rng: &mut ChaCha8Rng,
    messages: &HashMap<String, DescriptorProto>,
    name: &str,
    depth: u32,
) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(d) = messages.get(name) else {
        return out;
    };
    for f in &d.field {
        if !rng.random_bool(0.6) {
            continue;
        }
        let n = f.number() as u32;
        let times = if f.label() == Label::Repeated {
            if rng.random_bool(0.05) {
                1000
            } else {
                rng.random_range(1..=4)
            }
        } else {
            1
        };
        for _ in 0..times {
            match f.r#type() {
                Type::String | Type::Bytes => {
                    let v = hostile_string(rng);
                    key(n, 2, &mut out);
                    varint(v.len() as u64, &mut out);
                    out.extend_from_slice(&v);
                }
                Type::Message => {
                    if depth >= 4 {
                        continue;
                    }
                    let v = generate(rng, messages, f.type_name(), depth + 1);
                    key(n, 2, &mut out);
                    varint(v.len() as u64, &mut out);
                    out.extend_from_slice(&v);
                }
                Type::Double => {
                    key(n, 1, &mut out);
                    out.extend_from_slice(&hostile_double(rng).to_le_bytes());
                }
                Type::Float => {
                    key(n, 5, &mut out);
                    out.extend_from_slice(&(hostile_double(rng) as f32).to_le_bytes());
                }
                Type::Fixed64 | Type::Sfixed64 => {
                    key(n, 1, &mut out);
                    out.extend_from_slice(&hostile_varint(rng).to_le_bytes());
                }
                Type::Fixed32 | Type::Sfixed32 => {
                    key(n, 5, &mut out);
                    out.extend_from_slice(&(hostile_varint(rng) as u32).to_le_bytes());
                }
                Type::Group => {}
                _ => {
                    // Varints: ints, bools, enums (999 is unknown to all).
                    key(n, 0, &mut out);
                    varint(hostile_varint(rng), &mut out);
                }
            }
        }
    }
    if rng.random_bool(0.1) {
        key(rng.random_range(100..10_000), 0, &mut out);
        varint(rng.random(), &mut out);
    }
    out
}

/// Byte-level damage to a generated request.
fn mutate(rng: &mut ChaCha8Rng, mut msg: Vec<u8>) -> Vec<u8> {
    match rng.random_range(0..4) {
        0 if !msg.is_empty() => {
            for _ in 0..rng.random_range(1..8) {
                let i = rng.random_range(0..msg.len());
                msg[i] ^= 1 << rng.random_range(0..8);
            }
            msg
        }
        1 if !msg.is_empty() => {
            let keep = rng.random_range(0..msg.len());
            msg.truncate(keep);
            msg
        }
        2 => {
            let mut g = vec![0; rng.random_range(1..256)];
            rng.fill_bytes(&mut g);
            g
        }
        _ => {
            let mut g = vec![0; rng.random_range(1..64)];
            rng.fill_bytes(&mut g);
            msg.extend_from_slice(&g);
            msg
        }
    }
}

/// Whether a status is an answer a caller can act on.
fn acceptable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Ok
            | Code::InvalidArgument
            | Code::NotFound
            | Code::OutOfRange
            | Code::FailedPrecondition
            | Code::ResourceExhausted
            | Code::AlreadyExists
            | Code::Unavailable
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_rpc_survives_generated_and_mutated_requests() {
    let _e2e = mesh_e2e::shared().await;
    let cases: usize = std::env::var("MESH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let seed: u64 = std::env::var("MESH_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("fuzz_rpc: MESH_FUZZ_SEED={seed} MESH_FUZZ_CASES={cases}");
    let cfg = config(Servers::Real, "fuzz");
    let (mesh, shutdown) = start(&cfg).await;
    let (messages, methods) = schema();
    assert!(methods.len() >= 50, "{} methods", methods.len());
    let findings_dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/fuzz-rpc-findings");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut failures: Vec<String> = Vec::new();
    let mut codes: HashMap<Code, usize> = HashMap::new();
    let started = Instant::now();
    let mut calls = 0usize;
    for (package, m) in &methods {
        let ch = tonic::transport::Endpoint::from_shared(format!(
            "http://{}",
            grpc_addr_of(&mesh, package)
        ))
        .unwrap()
        .connect_lazy();
        for case in 0..cases {
            let msg = generate(&mut rng, &messages, &m.input, 0);
            let msg = if rng.random_bool(0.25) {
                mutate(&mut rng, msg)
            } else {
                msg
            };
            calls += 1;
            let outcome = tokio::time::timeout(
                Duration::from_secs(10),
                call(ch.clone(), m, msg.clone(), None),
            )
            .await;
            let what = match outcome {
                Err(_) => Some("no answer within 10 s".to_string()),
                Ok(Ok(())) => {
                    *codes.entry(Code::Ok).or_default() += 1;
                    None
                }
                Ok(Err(s)) => {
                    *codes.entry(s.code()).or_default() += 1;
                    (!acceptable(&s)).then(|| format!("{:?}: {}", s.code(), s.message()))
                }
            };
            if let Some(what) = what {
                let file = findings_dir.join(format!(
                    "{}-seed{seed}-case{case}.bin",
                    m.path.trim_start_matches('/').replace('/', "-")
                ));
                std::fs::create_dir_all(&findings_dir).ok();
                std::fs::write(&file, &msg).ok();
                failures.push(format!(
                    "{} case {case}: {what} (input {})",
                    m.path,
                    file.display()
                ));
            }
        }
    }
    // Every service still answers.
    for package in [
        "mesh.ingest.v1",
        "mesh.profile.v1",
        "mesh.churn.v1",
        "mesh.recommend.v1",
        "mesh.fraud.v1",
        "mesh.logistics.v1",
        "mesh.engage.v1",
        "mesh.support.v1",
    ] {
        let ch = tonic::transport::Endpoint::from_shared(format!(
            "http://{}",
            grpc_addr_of(&mesh, package)
        ))
        .unwrap()
        .connect_lazy();
        let mut h = tonic_health::pb::health_client::HealthClient::new(ch);
        let r = h
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await;
        if r.is_err() {
            failures.push(format!(
                "{package} does not answer its health check after the fuzz"
            ));
        }
    }
    let mut summary: Vec<String> = codes.iter().map(|(c, n)| format!("{c:?} {n}")).collect();
    summary.sort();
    eprintln!(
        "fuzz_rpc: {calls} calls to {} methods in {:.1} s: {}",
        methods.len(),
        started.elapsed().as_secs_f64(),
        summary.join(", ")
    );
    shutdown.cancel();
    mesh.stopped(Duration::from_secs(10)).await;
    assert!(
        failures.is_empty(),
        "seed {seed}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

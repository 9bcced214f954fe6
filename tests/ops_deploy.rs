//! Offline checks of what containers would run (no Docker here):
//! `docker-compose.yml` and `deploy/k8s/*.yaml` parse, name pinned images,
//! set only variables the code reads, listen on the ports the code defaults
//! to and publish/expose those same ports; Prometheus scrapes the admin
//! port and loads the alert rules; Grafana gets the dashboards.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_yaml::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn rust_sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_sources(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Variables the code reads (`"MESH_..."` literals in crates/ and
/// services/, plus the OpenTelemetry standard one), and default ports of
/// the `*_ADDR` ones.
fn code_config() -> (BTreeSet<String>, BTreeMap<String, u16>) {
    let mut files = Vec::new();
    rust_sources(&repo().join("crates"), &mut files);
    rust_sources(&repo().join("services"), &mut files);
    let var = regex::Regex::new(r#""(MESH_[A-Z0-9_]+)""#).unwrap();
    // Defaults as the config code reads them: `.addr("MESH_X_ADDR", "ip:port")`
    // (tests elsewhere pass ephemeral ports; those are not defaults).
    let addr =
        regex::Regex::new(r#"\.addr\(\s*"(MESH_[A-Z0-9_]+_ADDR)",\s*"[0-9.]+:([0-9]+)""#).unwrap();
    let (mut vars, mut ports) = (BTreeSet::new(), BTreeMap::new());
    for f in files {
        let src = std::fs::read_to_string(&f).unwrap();
        vars.extend(var.captures_iter(&src).map(|c| c[1].to_string()));
        for c in addr.captures_iter(&src) {
            let port: u16 = c[2].parse().unwrap();
            if port > 1 {
                ports.insert(c[1].to_string(), port);
            }
        }
    }
    vars.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into());
    (vars, ports)
}

fn yaml(path: &Path) -> Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

/// The mesh's `MESH_*` / OTEL variables in `env`: each must be read by the
/// code, and each `_ADDR` must use the code's default port.
fn check_mesh_env(
    what: &str,
    env: &BTreeMap<String, String>,
    vars: &BTreeSet<String>,
    ports: &BTreeMap<String, u16>,
) -> BTreeSet<u16> {
    let mut listen = BTreeSet::new();
    for (k, v) in env {
        assert!(vars.contains(k), "{what}: {k} is not read by the code");
        if k.ends_with("_ADDR") {
            let want = ports[k];
            assert_eq!(
                port_of(v),
                want,
                "{what}: {k}={v}, the code's default port is {want}"
            );
            listen.insert(want);
        }
    }
    for needed in ["MESH_KAFKA_BROKERS", "MESH_REDIS_URL", "MESH_ADMIN_ADDR"] {
        assert!(env.contains_key(needed), "{what}: {needed} not set");
    }
    listen
}

fn string_map(v: &Value) -> BTreeMap<String, String> {
    v.as_mapping()
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(s) => s.clone(),
                        other => serde_yaml::to_string(other).unwrap().trim().to_string(),
                    };
                    (k.as_str().unwrap().to_string(), v)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pinned(image: &str) -> bool {
    image
        .rsplit_once(':')
        .is_some_and(|(_, tag)| !tag.is_empty() && tag != "latest")
}

#[test]
fn compose_matches_the_code() {
    let (vars, ports) = code_config();
    assert!(ports.len() >= 8, "addresses found in the code: {ports:?}");
    let c = yaml(&repo().join("docker-compose.yml"));
    let services = c["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    for needed in [
        "kafka",
        "redis",
        "mesh",
        "otel-collector",
        "jaeger",
        "prometheus",
        "grafana",
        "simulator",
    ] {
        assert!(names.contains(needed), "compose has no {needed}");
    }
    for (name, s) in services {
        let name = name.as_str().unwrap();
        let image = s["image"].as_str();
        assert!(
            image.is_some() || s["build"].is_string(),
            "{name}: neither image nor build"
        );
        if let Some(img) = image.filter(|i| !i.starts_with("lifecycle-mesh:")) {
            assert!(pinned(img), "{name}: image {img} has no version tag");
        }
        // Volumes mount files that exist.
        for v in s["volumes"].as_sequence().into_iter().flatten() {
            let host = v.as_str().unwrap().split(':').next().unwrap();
            if host.starts_with("./") {
                assert!(repo().join(host).exists(), "{name}: {host} does not exist");
            }
        }
    }
    let mesh = &c["services"]["mesh"];
    let env = string_map(&mesh["environment"]);
    let listen = check_mesh_env("compose mesh", &env, &vars, &ports);
    let published: BTreeSet<u16> = mesh["ports"]
        .as_sequence()
        .expect("mesh ports")
        .iter()
        .map(|p| port_of(p.as_str().unwrap()))
        .collect();
    assert_eq!(
        listen, published,
        "compose mesh: listened vs published ports"
    );
    // Every service's gRPC address is set, so none listens on loopback only.
    for (var, _) in ports
        .iter()
        .filter(|(v, _)| v.ends_with("_GRPC_ADDR") || v.ends_with("_HTTP_ADDR"))
    {
        if var != "MESH_GRPC_ADDR" {
            assert!(
                env.contains_key(var),
                "compose mesh: {var} unset (would bind 127.0.0.1)"
            );
        }
    }
    // The simulator publishes to the mesh's ingest gRPC port.
    let sim: Vec<&str> = c["services"]["simulator"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let ingest = sim[sim.iter().position(|a| *a == "--ingest").unwrap() + 1];
    assert_eq!(port_of(ingest), ports["MESH_INGEST_GRPC_ADDR"]);
    // The OTLP endpoint is the collector's gRPC receiver.
    let col = yaml(&repo().join("deploy/otel/collector.yaml"));
    let recv = col["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        .as_str()
        .unwrap();
    assert_eq!(port_of(&env["OTEL_EXPORTER_OTLP_ENDPOINT"]), port_of(recv));

    // Prometheus scrapes the admin port and loads the alerts it mounts.
    let prom = yaml(&repo().join("deploy/prometheus/prometheus.yml"));
    let target = prom["scrape_configs"][0]["static_configs"][0]["targets"][0]
        .as_str()
        .unwrap();
    assert_eq!(port_of(target), ports["MESH_ADMIN_ADDR"]);
    for rf in prom["rule_files"].as_sequence().expect("rule_files") {
        let f = rf.as_str().unwrap().trim_start_matches("/etc/prometheus/");
        assert!(
            repo().join("deploy/prometheus").join(f).exists(),
            "{f} missing"
        );
    }
    // Grafana's provisioned datasource uid is the one dashboards use.
    let ds = yaml(&repo().join("deploy/grafana/provisioning/datasources/prometheus.yml"));
    let uid = ds["datasources"][0]["uid"].as_str().unwrap();
    let overview: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/dashboards/overview.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(overview["panels"][0]["datasource"]["uid"], uid);
}

#[test]
fn kubernetes_manifests_match_the_code() {
    let (vars, ports) = code_config();
    let dir = repo().join("deploy/k8s");
    let mut docs = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let text = std::fs::read_to_string(&p).unwrap();
            for d in serde_yaml::Deserializer::from_str(&text) {
                let v = Value::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                if !v.is_null() {
                    docs.push(v);
                }
            }
        }
    }
    let kind = |k: &str| {
        docs.iter()
            .filter(move |d| d["kind"] == k)
            .collect::<Vec<_>>()
    };
    let cm = kind("ConfigMap");
    assert_eq!(cm.len(), 1, "one ConfigMap");
    let env = string_map(&cm[0]["data"]);
    let listen = check_mesh_env("k8s ConfigMap", &env, &vars, &ports);

    let deployments = kind("Deployment");
    assert!(!deployments.is_empty());
    let mut named = BTreeMap::new();
    for d in &deployments {
        for c in d["spec"]["template"]["spec"]["containers"]
            .as_sequence()
            .unwrap()
        {
            let image = c["image"].as_str().expect("image");
            assert!(
                image.starts_with("lifecycle-mesh:"),
                "unexpected image {image}"
            );
            for p in c["ports"].as_sequence().unwrap() {
                named.insert(
                    p["name"].as_str().unwrap().to_string(),
                    p["containerPort"].as_u64().unwrap() as u16,
                );
                assert!(
                    p["name"].as_str().unwrap().len() <= 15,
                    "port names are at most 15 chars"
                );
            }
            for probe in ["livenessProbe", "readinessProbe"] {
                let port = c[probe]["httpGet"]["port"]
                    .as_str()
                    .expect("named probe port");
                assert_eq!(named.get(port), Some(&ports["MESH_ADMIN_ADDR"]), "{probe}");
            }
        }
    }
    let container_ports: BTreeSet<u16> = named.values().copied().collect();
    assert_eq!(
        listen, container_ports,
        "ConfigMap addresses vs container ports"
    );
    for s in kind("Service") {
        for p in s["spec"]["ports"].as_sequence().unwrap() {
            let target = p["targetPort"].as_str().unwrap();
            assert!(
                named.contains_key(target),
                "Service targets unknown port {target}"
            );
            assert_eq!(p["port"].as_u64().unwrap() as u16, named[target]);
        }
    }
    // Autoscaling by lag reads the mesh's own metric and group names.
    let so = kind("ScaledObject");
    assert_eq!(so.len(), 1);
    let triggers = so[0]["spec"]["triggers"].as_sequence().unwrap();
    assert!(triggers.iter().any(|t| t["type"] == "prometheus"
        && t["metadata"]["query"]
            .as_str()
            .unwrap()
            .contains("mesh_consumer_lag")));
    for t in triggers.iter().filter(|t| t["type"] == "kafka") {
        assert_eq!(t["metadata"]["consumerGroup"], "mesh-profile");
        assert_eq!(t["metadata"]["topic"], "mesh.user-events");
    }
}

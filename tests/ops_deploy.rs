//! Offline checks of what containers would run (no Docker or cluster here):
//! `docker-compose.yml`, `deploy/k8s/` (a kustomize base) and the Prometheus
//! scrape config parse and agree with the code. Every role runs as `mesh
//! serve <role>` in its own container or Deployment; each sets only
//! variables the code reads, listens on the code's default ports and
//! publishes / exposes exactly those; health checks and probes hit that
//! role's own admin port; every peer address names a compose service or
//! Kubernetes Service that runs that role on its gRPC port; every consuming
//! role scales on its own consumer group (the code's default) over the
//! topics it consumes; model files sit on a volume shared by the trainer and
//! the services that read them.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize as _;
use serde_yaml::Value;

/// What `mesh serve` runs: the six services and the console.
const ROLES: [&str; 9] = [
    "ingest",
    "profile",
    "churn",
    "recommend",
    "fraud",
    "logistics",
    "engage",
    "support",
    "console",
];

/// Who asks whom over gRPC at request time (the readiness of a role waits
/// for its peers, so compose starts it after them).
const CALLS: [(&str, &[&str]); 7] = [
    ("recommend", &["profile"]),
    ("fraud", &["profile"]),
    ("churn", &["recommend"]),
    ("logistics", &["fraud"]),
    ("engage", &["profile", "churn"]),
    ("support", &["fraud", "recommend"]),
    (
        "console",
        &[
            "ingest",
            "profile",
            "churn",
            "recommend",
            "fraud",
            "logistics",
            "engage",
        ],
    ),
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
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

fn re(pattern: &str) -> regex::Regex {
    regex::Regex::new(pattern).unwrap()
}

/// What the manifests must agree with, read from the Rust sources.
struct Code {
    /// Variables the code reads (`"MESH_..."` literals in crates/ and
    /// services/, plus the OpenTelemetry standard one).
    vars: BTreeSet<String>,
    /// Default ports of the listen addresses (`.addr("MESH_X_ADDR", "ip:port")`).
    ports: BTreeMap<String, u16>,
    /// Default consumer group per role (`"MESH_<ROLE>_GROUP", "<group>"`).
    groups: BTreeMap<String, String>,
    /// Default topic prefix (`MESH_TOPIC_PREFIX`).
    topic_prefix: String,
    /// Where a new consumer group starts (`auto.offset.reset`).
    offset_reset: String,
    /// `mesh train <model>` subcommands.
    train: BTreeSet<String>,
}

impl Code {
    fn read() -> Code {
        let mut files = Vec::new();
        rust_sources(&repo().join("crates"), &mut files);
        rust_sources(&repo().join("services"), &mut files);
        let var = re(r#""(MESH_[A-Z0-9_]+)""#);
        // Defaults as the config code reads them (tests elsewhere pass
        // ephemeral ports; those are not defaults).
        let addr = re(r#"\.addr\(\s*"(MESH_[A-Z0-9_]+_ADDR)",\s*"[0-9.]+:([0-9]+)""#);
        let group = re(r#"\.string\(\s*"MESH_([A-Z]+)_GROUP",\s*"([a-z0-9-]+)""#);
        let prefix = re(r#"\.string\(\s*"MESH_TOPIC_PREFIX",\s*"([a-z0-9-]+)""#);
        let reset = re(r#""auto\.offset\.reset",\s*"([a-z]+)""#);
        let (mut vars, mut ports, mut groups) = (BTreeSet::new(), BTreeMap::new(), BTreeMap::new());
        let (mut topic_prefix, mut offset_reset) = (None, None);
        for f in files {
            let src = std::fs::read_to_string(&f).unwrap();
            vars.extend(var.captures_iter(&src).map(|c| c[1].to_string()));
            for c in addr.captures_iter(&src) {
                let port: u16 = c[2].parse().unwrap();
                if port > 1 {
                    ports.insert(c[1].to_string(), port);
                }
            }
            for c in group.captures_iter(&src) {
                groups.insert(c[1].to_lowercase(), c[2].to_string());
            }
            if let Some(c) = prefix.captures(&src) {
                topic_prefix = Some(c[1].to_string());
            }
            if let Some(c) = reset.captures(&src) {
                offset_reset = Some(c[1].to_string());
            }
        }
        vars.insert("OTEL_EXPORTER_OTLP_ENDPOINT".into());
        // `enum TrainCommand { Churn(..), Recommend(..), ... }` in main.rs.
        let main = read("services/mesh/src/main.rs");
        let body = re(r"enum TrainCommand \{([^}]*)\}")
            .captures(&main)
            .expect("enum TrainCommand in services/mesh/src/main.rs")[1]
            .to_string();
        let train = re(r"(?m)^\s*([A-Z][A-Za-z]*)\(")
            .captures_iter(&body)
            .map(|c| c[1].to_lowercase())
            .collect();
        Code {
            vars,
            ports,
            groups,
            topic_prefix: topic_prefix.expect("MESH_TOPIC_PREFIX default"),
            offset_reset: offset_reset.expect("auto.offset.reset"),
            train,
        }
    }

    fn admin_port(&self) -> u16 {
        self.ports["MESH_ADMIN_ADDR"]
    }

    /// The listen addresses `role` binds besides the admin one:
    /// `MESH_<ROLE>_GRPC_ADDR`, ingest's `MESH_INGEST_HTTP_ADDR`.
    fn listen_vars(&self, role: &str) -> Vec<&str> {
        let head = format!("MESH_{}_", role.to_uppercase());
        self.ports
            .keys()
            .filter(|v| v.starts_with(&head))
            .map(String::as_str)
            .collect()
    }

    /// The port a role's peers call (its gRPC server).
    fn grpc_port(&self, role: &str) -> u16 {
        self.ports[&format!("MESH_{}_GRPC_ADDR", role.to_uppercase())]
    }

    /// Ports a role's container listens on: its own addresses and admin.
    fn role_ports(&self, role: &str) -> BTreeSet<u16> {
        let mut p: BTreeSet<u16> = self
            .listen_vars(role)
            .iter()
            .map(|v| self.ports[*v])
            .collect();
        p.insert(self.admin_port());
        p
    }

    /// `TopicNames` field → topic name with the default prefix, from
    /// `field: format!("{prefix}.name")` in topics.rs.
    fn topic_names(&self) -> BTreeMap<String, String> {
        re(r#"(\w+): format!\("\{prefix\}\.([a-z-]+)"\)"#)
            .captures_iter(&read("crates/mesh-bus/src/topics.rs"))
            .map(|c| (c[1].to_string(), format!("{}.{}", self.topic_prefix, &c[2])))
            .collect()
    }

    /// Fields of `TopicNames::inputs()`: the topics ingest writes.
    fn input_fields(&self) -> Vec<String> {
        let topics = read("crates/mesh-bus/src/topics.rs");
        re(r"fn inputs\(&self\)[^{]*\{\s*\[([^\]]*)\]")
            .captures(&topics)
            .map(|c| {
                re(r"self\.(\w+)")
                    .captures_iter(&c[1])
                    .map(|f| f[1].to_string())
                    .collect()
            })
            .expect("TopicNames::inputs")
    }

    fn input_topics(&self) -> BTreeSet<String> {
        let names = self.topic_names();
        self.input_fields()
            .iter()
            .map(|f| names[f].clone())
            .collect()
    }

    /// The topics `role` consumes with its group, from the
    /// `deps.consumer_config(&cfg.group, <topics>)` (or
    /// `ConsumerConfig::new(.., &cfg.group, <topics>)`) call in
    /// `services/<role>/src/lib.rs`.
    fn consumed_topics(&self, role: &str) -> BTreeSet<String> {
        let names = self.topic_names();
        let lib = read(&format!("services/{role}/src/lib.rs"));
        let call = re(r"(?:ConsumerConfig::new|consumer_config)\([^;]*?cfg\.group,([^;]*?)\);")
            .captures(&lib)
            .unwrap_or_else(|| panic!("{role}: no consumer_config(&cfg.group, ..)"))[1]
            .to_string();
        let mut fields: Vec<String> = re(r"topics\.(\w+)")
            .captures_iter(&call)
            .map(|c| c[1].to_string())
            .collect();
        if call.contains("inputs()") {
            fields.retain(|f| f != "inputs");
            fields.extend(self.input_fields());
        }
        assert!(!fields.is_empty(), "{role}: topics of {call}");
        fields.iter().map(|f| names[f].clone()).collect()
    }
}

fn yaml(rel: &str) -> Value {
    let mut v: Value = serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    // `<<: *anchor` merge keys, as compose applies them.
    v.apply_merge().unwrap();
    v
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("no port in {addr}"))
}

/// `http://host:port` → (host, port).
fn host_port(url: &str) -> (String, u16) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{url}: not http://host:port"));
    let (host, port) = rest.trim_end_matches('/').rsplit_once(':').unwrap();
    (host.to_string(), port.parse().unwrap())
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_sequence()
        .map(|s| s.iter().map(|x| x.as_str().unwrap()).collect())
        .unwrap_or_default()
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

/// The peer address variable of `role` (`MESH_PROFILE_ADDR`) and back.
fn peer_var(role: &str) -> String {
    format!("MESH_{}_ADDR", role.to_uppercase())
}

fn peer_role(var: &str) -> Option<&'static str> {
    ROLES.into_iter().find(|r| peer_var(r) == var)
}

/// The shared environment of every role: each variable read by the code,
/// each listen address on the code's default port and bound to all
/// interfaces, the basics present.
fn check_mesh_env(what: &str, env: &BTreeMap<String, String>, code: &Code) {
    for (k, v) in env {
        assert!(code.vars.contains(k), "{what}: {k} is not read by the code");
        if let Some(&want) = code.ports.get(k) {
            assert_eq!(
                port_of(v),
                want,
                "{what}: {k}={v}, the code's default port is {want}"
            );
            assert!(
                v.starts_with("0.0.0.0:"),
                "{what}: {k}={v} is not reachable from outside the container"
            );
        }
    }
    for needed in [
        "MESH_KAFKA_BROKERS",
        "MESH_REDIS_URL",
        "MESH_PARTITIONS",
        "MESH_ADMIN_ADDR",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
    ] {
        assert!(env.contains_key(needed), "{what}: {needed} not set");
    }
    // Every listen address is set, so none binds 127.0.0.1.
    for var in code.ports.keys().filter(|v| *v != "MESH_GRPC_ADDR") {
        assert!(
            env.contains_key(var),
            "{what}: {var} unset (would bind 127.0.0.1)"
        );
    }
    // Every peer is configured (an unset peer is never asked).
    for role in ROLES.iter().filter(|r| **r != "console") {
        assert!(
            env.contains_key(&peer_var(role)),
            "{what}: {} unset",
            peer_var(role)
        );
    }
}

/// Directories of the model files (`MESH_*_MODEL` paths), by the role that
/// reads each one.
fn model_dirs(env: &BTreeMap<String, String>) -> BTreeMap<&'static str, String> {
    let mut out = BTreeMap::new();
    for (k, v) in env.iter().filter(|(k, _)| k.ends_with("_MODEL")) {
        let role = ROLES
            .into_iter()
            .find(|r| *k == format!("MESH_{}_MODEL", r.to_uppercase()))
            .unwrap_or_else(|| panic!("{k}: no role reads it"));
        let dir = Path::new(v).parent().expect("model path has a directory");
        assert!(
            dir.is_absolute() && dir != Path::new("/"),
            "{k}={v}: put it in its own directory"
        );
        out.insert(role, dir.to_str().unwrap().to_string());
    }
    out
}

/// The runtime stage of the Dockerfile (after the last `FROM`).
fn runtime_stage() -> String {
    let docker = read("Dockerfile");
    docker[docker.rfind("\nFROM ").expect("a runtime stage")..].to_string()
}

/// `mesh serve <role>` knows every role the manifests run: each name is a
/// string literal in `services/mesh/src`.
#[test]
fn roles_exist_in_the_code() {
    let _e2e = mesh_e2e::shared_blocking();
    let mut files = Vec::new();
    rust_sources(&repo().join("services/mesh/src"), &mut files);
    let src: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for role in ROLES {
        assert!(
            src.contains(&format!("\"{role}\"")),
            "`mesh serve {role}`: no \"{role}\" in services/mesh/src"
        );
    }
}

#[test]
fn dockerfile_ships_what_the_manifests_run() {
    let _e2e = mesh_e2e::shared_blocking();
    let stage = runtime_stage();
    assert!(
        stage.contains("COPY --from=build /src/target/release/mesh /usr/local/bin/mesh"),
        "the binary is /usr/local/bin/mesh"
    );
    assert!(stage.contains(r#"ENTRYPOINT ["/usr/local/bin/mesh"]"#));
    // The compose health checks run curl inside the container.
    assert!(
        stage
            .lines()
            .any(|l| l.contains("apt-get install") && l.contains(" curl ")),
        "the runtime image installs curl"
    );
    // A fresh named volume on /models copies this directory's owner.
    let user = re(r"(?m)^USER (\d+)").captures(&stage).expect("USER")[1].to_string();
    assert!(
        stage.contains(&format!("chown {user}:{user} /models")),
        "/models owned by {user}"
    );
}

#[test]
fn compose_matches_the_code() {
    let _e2e = mesh_e2e::shared_blocking();
    let code = Code::read();
    assert!(
        code.ports.len() >= 8,
        "addresses found in the code: {:?}",
        code.ports
    );
    let c = yaml("docker-compose.yml");
    let services = c["services"].as_mapping().expect("services");
    let names: BTreeSet<&str> = services.keys().filter_map(Value::as_str).collect();
    for needed in ROLES.iter().chain(&[
        "kafka",
        "redis",
        "otel-collector",
        "jaeger",
        "prometheus",
        "grafana",
        "simulator",
        "train",
    ]) {
        assert!(names.contains(needed), "compose has no {needed}");
    }
    let named_volumes: BTreeSet<&str> = c["volumes"]
        .as_mapping()
        .map(|m| m.keys().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    // One service builds the mesh image; the others run that same image.
    let built: Vec<&str> = services
        .iter()
        .filter(|(_, s)| !s["build"].is_null())
        .map(|(_, s)| {
            s["image"]
                .as_str()
                .expect("a built service names its image")
        })
        .collect();
    assert_eq!(built.len(), 1, "one service builds the mesh image");
    let mesh_image = built[0];
    for (name, s) in services {
        let name = name.as_str().unwrap();
        let image = s["image"]
            .as_str()
            .unwrap_or_else(|| panic!("{name}: no image"));
        if image.starts_with("lifecycle-mesh:") {
            assert_eq!(image, mesh_image, "{name}: not the image compose builds");
        } else {
            assert!(pinned(image), "{name}: image {image} has no version tag");
        }
        for v in strs(&s["volumes"]) {
            let host = v.split(':').next().unwrap();
            if host.starts_with("./") {
                assert!(repo().join(host).exists(), "{name}: {host} does not exist");
            } else {
                assert!(
                    named_volumes.contains(host),
                    "{name}: volume {host} not declared"
                );
            }
        }
        for dep in s["depends_on"]
            .as_mapping()
            .map(|m| m.keys().map(|k| k.as_str().unwrap()).collect())
            .unwrap_or_else(|| strs(&s["depends_on"]))
        {
            assert!(names.contains(dep), "{name}: depends on unknown {dep}");
        }
    }
    let redis = strs(&c["services"]["redis"]["command"]).join(" ");
    assert!(
        redis.contains("--appendonly yes"),
        "redis without AOF: {redis}"
    );

    // Each role: `serve <role>`, the shared environment, its own ports
    // published, a health check on its own /ready, started after the
    // broker, the store and its peers are healthy.
    let mut env = None;
    for role in ROLES {
        let s = &c["services"][role];
        assert_eq!(strs(&s["command"]), ["serve", role], "{role}: command");
        let e = string_map(&s["environment"]);
        check_mesh_env(&format!("compose {role}"), &e, &code);
        assert!(
            env.as_ref().is_none_or(|first| *first == e),
            "{role}: every role reads the same environment"
        );
        env = Some(e);
        let published: BTreeSet<u16> = strs(&s["ports"])
            .iter()
            .map(|p| {
                let (host, container) = p.split_once(':').unwrap();
                assert_eq!(host, container, "{role}: host port {p} differs");
                port_of(container)
            })
            .collect();
        let mut want = code.role_ports(role);
        if role != "console" {
            // Only the console's admin port is published (9090 on the host).
            want.remove(&code.admin_port());
        }
        assert_eq!(
            published, want,
            "compose {role}: published vs listened ports"
        );
        let check = strs(&s["healthcheck"]["test"]);
        assert_eq!(check[..2], ["CMD", "curl"], "{role}: health check");
        assert!(
            check.iter().any(|a| a.starts_with("-f")),
            "{role}: curl -f fails on 503"
        );
        let url = check.last().unwrap();
        assert_eq!(
            *url,
            format!("http://127.0.0.1:{}/ready", code.admin_port()),
            "{role}: health check URL"
        );
        let deps = &s["depends_on"];
        let healthy = |d: &str| deps[d]["condition"] == "service_healthy";
        let peers = CALLS
            .iter()
            .find(|(r, _)| *r == role)
            .map(|(_, p)| *p)
            .unwrap_or(&[]);
        for p in peers {
            assert!(
                healthy(p),
                "compose {role}: not started after {p} is healthy"
            );
        }
        if peers.is_empty() {
            assert!(
                healthy("kafka") && healthy("redis"),
                "compose {role}: kafka, redis"
            );
        }
    }
    let env = env.unwrap();

    // Peer addresses name the compose service of that role on its gRPC port.
    for (k, v) in env.iter().filter(|(k, _)| peer_role(k).is_some()) {
        let role = peer_role(k).unwrap();
        for url in v.split(',') {
            let (host, port) = host_port(url.trim());
            assert_eq!(
                strs(&c["services"][host.as_str()]["command"]),
                ["serve", role],
                "{k}={v}: {host} does not run {role}"
            );
            assert_eq!(port, code.grpc_port(role), "{k}={v}: {role}'s gRPC port");
        }
    }

    // Model files: a named volume shared by train and the roles reading them.
    let mounts = |svc: &str| -> BTreeMap<String, String> {
        strs(&c["services"][svc]["volumes"])
            .iter()
            .map(|v| {
                let mut p = v.split(':');
                let (src, dst) = (p.next().unwrap(), p.next().unwrap());
                (dst.to_string(), src.to_string())
            })
            .collect()
    };
    let dirs = model_dirs(&env);
    assert!(
        dirs.contains_key("fraud") && dirs.contains_key("recommend"),
        "{dirs:?}"
    );
    for (role, dir) in &dirs {
        let volume = mounts("train")
            .get(dir)
            .cloned()
            .unwrap_or_else(|| panic!("train does not mount {dir}"));
        assert!(named_volumes.contains(volume.as_str()));
        assert_eq!(
            mounts(role).get(dir),
            Some(&volume),
            "compose {role}: {dir} is not the train volume"
        );
    }
    let train = &c["services"]["train"];
    assert_eq!(strs(&train["entrypoint"]), ["/usr/local/bin/mesh", "train"]);
    let model = strs(&train["command"])[0];
    assert!(
        code.train.contains(model),
        "train {model}: not a `mesh train` command ({:?})",
        code.train
    );
    assert_eq!(
        string_map(&train["environment"]),
        env,
        "train reads the roles' environment"
    );

    // The simulator publishes to ingest's gRPC port, once ingest is healthy.
    let sim = &c["services"]["simulator"];
    let args = strs(&sim["command"]);
    let ingest = args[args.iter().position(|a| *a == "--ingest").unwrap() + 1];
    assert_eq!(
        host_port(ingest),
        ("ingest".to_string(), code.grpc_port("ingest"))
    );
    assert_eq!(sim["depends_on"]["ingest"]["condition"], "service_healthy");
    // The OTLP endpoint is the collector's gRPC receiver.
    let col = yaml("deploy/otel/collector.yaml");
    let recv = col["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"]
        .as_str()
        .unwrap();
    assert_eq!(port_of(&env["OTEL_EXPORTER_OTLP_ENDPOINT"]), port_of(recv));

    // Prometheus finds every replica of every role on its admin port and
    // loads the alerts it mounts.
    let prom = yaml("deploy/prometheus/prometheus.yml");
    let jobs = prom["scrape_configs"]
        .as_sequence()
        .expect("scrape_configs");
    let mut scraped = BTreeSet::new();
    for job in jobs {
        for sd in job["dns_sd_configs"].as_sequence().into_iter().flatten() {
            assert_eq!(sd["port"].as_u64(), Some(code.admin_port() as u64));
            scraped.extend(strs(&sd["names"]));
        }
        for sc in job["static_configs"].as_sequence().into_iter().flatten() {
            for t in strs(&sc["targets"]) {
                let (host, port) = t.rsplit_once(':').unwrap();
                assert_eq!(port.parse::<u16>().unwrap(), code.admin_port(), "{t}");
                scraped.insert(host);
            }
        }
    }
    assert_eq!(
        scraped,
        ROLES.into_iter().collect(),
        "Prometheus scrapes every role"
    );
    for rf in strs(&prom["rule_files"]) {
        let f = rf.trim_start_matches("/etc/prometheus/");
        assert!(
            repo().join("deploy/prometheus").join(f).exists(),
            "{f} missing"
        );
    }
    // Grafana's provisioned datasource uid is the one dashboards use.
    let ds = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    let uid = ds["datasources"][0]["uid"].as_str().unwrap();
    let overview: serde_json::Value =
        serde_json::from_str(&read("deploy/grafana/dashboards/overview.json")).unwrap();
    assert_eq!(overview["panels"][0]["datasource"]["uid"], uid);
}

/// The kustomize base: every file it lists, parsed.
fn k8s_docs() -> Vec<Value> {
    let k = yaml("deploy/k8s/kustomization.yaml");
    let listed: BTreeSet<String> = strs(&k["resources"])
        .iter()
        .map(|s| s.to_string())
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo().join("deploy/k8s"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|f| f.ends_with(".yaml") && f != "kustomization.yaml")
        .collect();
    assert_eq!(
        listed, on_disk,
        "kustomization.yaml resources vs files in deploy/k8s"
    );
    assert!(
        k["images"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "lifecycle-mesh"),
        "kustomization.yaml sets the mesh image"
    );
    let mut docs = Vec::new();
    for f in listed {
        let rel = format!("deploy/k8s/{f}");
        for d in serde_yaml::Deserializer::from_str(&read(&rel)) {
            let v = Value::deserialize(d).unwrap_or_else(|e| panic!("{rel}: {e}"));
            if !v.is_null() {
                docs.push(v);
            }
        }
    }
    docs
}

/// Whether `selector` (a label map) picks pods labelled `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let s = string_map(selector);
    let l = string_map(labels);
    !s.is_empty() && s.iter().all(|(k, v)| l.get(k) == Some(v))
}

#[test]
fn kubernetes_manifests_match_the_code() {
    let _e2e = mesh_e2e::shared_blocking();
    let code = Code::read();
    let docs = k8s_docs();
    let kind = |k: &str| {
        docs.iter()
            .filter(move |d| d["kind"] == k)
            .collect::<Vec<_>>()
    };
    let name = |d: &Value| d["metadata"]["name"].as_str().unwrap().to_string();

    let cm = kind("ConfigMap");
    assert_eq!(cm.len(), 1, "one ConfigMap");
    let config = name(cm[0]);
    let env = string_map(&cm[0]["data"]);
    check_mesh_env("k8s ConfigMap", &env, &code);
    let partitions: u64 = env["MESH_PARTITIONS"].parse().unwrap();

    let pvcs = kind("PersistentVolumeClaim");
    let rwx = |claim: &str| {
        pvcs.iter()
            .any(|p| name(p) == claim && strs(&p["spec"]["accessModes"]).contains(&"ReadWriteMany"))
    };
    // A pod's mounts: path → ReadWriteMany claim.
    let claim_mounts = |pod: &Value| -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for c in pod["containers"].as_sequence().unwrap() {
            for m in c["volumeMounts"].as_sequence().into_iter().flatten() {
                let vol = pod["volumes"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .find(|v| v["name"] == m["name"])
                    .expect("mounted volume exists");
                if let Some(claim) = vol["persistentVolumeClaim"]["claimName"].as_str() {
                    assert!(rwx(claim), "{claim}: not a ReadWriteMany claim");
                    out.insert(
                        m["mountPath"].as_str().unwrap().to_string(),
                        claim.to_string(),
                    );
                }
            }
        }
        out
    };
    let dirs = model_dirs(&env);
    assert!(
        dirs.contains_key("fraud") && dirs.contains_key("recommend"),
        "{dirs:?}"
    );

    // One Deployment per role.
    let deployments = kind("Deployment");
    assert_eq!(deployments.len(), ROLES.len(), "one Deployment per role");
    let mut by_role: BTreeMap<&str, &Value> = BTreeMap::new();
    // Deployment name → (port name → container port).
    let mut named_ports: BTreeMap<String, BTreeMap<String, u16>> = BTreeMap::new();
    for d in &deployments {
        let dn = name(d);
        let pod = &d["spec"]["template"]["spec"];
        assert!(
            selects(
                &d["spec"]["selector"]["matchLabels"],
                &d["spec"]["template"]["metadata"]["labels"]
            ),
            "{dn}: selector does not pick its pods"
        );
        let containers = pod["containers"].as_sequence().unwrap();
        assert_eq!(containers.len(), 1, "{dn}: one container");
        let c = &containers[0];
        let args = strs(&c["args"]);
        assert!(args.len() == 2 && args[0] == "serve", "{dn}: args {args:?}");
        let role = ROLES
            .into_iter()
            .find(|r| *r == args[1])
            .unwrap_or_else(|| panic!("{dn}: unknown role {}", args[1]));
        assert!(
            by_role.insert(role, d).is_none(),
            "two Deployments serve {role}"
        );
        let image = c["image"].as_str().expect("image");
        assert!(image.starts_with("lifecycle-mesh:"), "{dn}: image {image}");
        assert_eq!(
            c["envFrom"][0]["configMapRef"]["name"].as_str(),
            Some(config.as_str()),
            "{dn}: envFrom"
        );
        let mut ports = BTreeMap::new();
        for p in c["ports"].as_sequence().unwrap() {
            let pn = p["name"].as_str().unwrap();
            assert!(pn.len() <= 15, "{dn}: port name {pn} longer than 15");
            ports.insert(pn.to_string(), p["containerPort"].as_u64().unwrap() as u16);
        }
        assert_eq!(
            ports.values().copied().collect::<BTreeSet<_>>(),
            code.role_ports(role),
            "{dn}: container ports vs the addresses {role} listens on"
        );
        for (probe, path) in [
            ("startupProbe", "/live"),
            ("livenessProbe", "/live"),
            ("readinessProbe", "/ready"),
        ] {
            let get = &c[probe]["httpGet"];
            let port = get["port"]
                .as_str()
                .unwrap_or_else(|| panic!("{dn}: {probe} on a named port"));
            assert_eq!(
                ports.get(port),
                Some(&code.admin_port()),
                "{dn}: {probe} not on the admin port"
            );
            assert_eq!(get["path"], path, "{dn}: {probe} path");
        }
        let res = &c["resources"];
        for (k, v) in [
            ("requests", "cpu"),
            ("requests", "memory"),
            ("limits", "memory"),
        ] {
            assert!(!res[k][v].is_null(), "{dn}: resources.{k}.{v}");
        }
        let annotations = string_map(&d["spec"]["template"]["metadata"]["annotations"]);
        assert_eq!(
            annotations.get("prometheus.io/port"),
            Some(&code.admin_port().to_string()),
            "{dn}: scrape port"
        );
        // Roles that read a model file mount its directory from the shared claim.
        if let Some(dir) = dirs.get(role) {
            assert!(
                claim_mounts(pod).contains_key(dir),
                "{dn}: {dir} not mounted from a ReadWriteMany claim"
            );
        }
        named_ports.insert(dn, ports);
    }
    assert_eq!(
        by_role.keys().copied().collect::<BTreeSet<_>>(),
        ROLES.into_iter().collect()
    );

    // Services target a Deployment's named ports, with the same numbers.
    let services = kind("Service");
    let target_of = |s: &Value| -> &Value {
        let sel = &s["spec"]["selector"];
        let hits: Vec<_> = deployments
            .iter()
            .filter(|d| selects(sel, &d["spec"]["template"]["metadata"]["labels"]))
            .collect();
        assert_eq!(
            hits.len(),
            1,
            "Service {} selects {} Deployments",
            name(s),
            hits.len()
        );
        hits[0]
    };
    for s in &services {
        let d = target_of(s);
        for p in s["spec"]["ports"].as_sequence().unwrap() {
            let target = p["targetPort"].as_str().unwrap();
            let ports = &named_ports[&name(d)];
            assert!(
                ports.contains_key(target),
                "Service {}: unknown port {target}",
                name(s)
            );
            assert_eq!(
                p["port"].as_u64().unwrap() as u16,
                ports[target],
                "Service {}",
                name(s)
            );
        }
    }
    // Peer addresses name a Service of that role, on its gRPC port; peers
    // that scale out are headless, so the name resolves to every replica.
    for (k, v) in env.iter().filter(|(k, _)| peer_role(k).is_some()) {
        let role = peer_role(k).unwrap();
        for url in v.split(',') {
            let (host, port) = host_port(url.trim());
            let s = services
                .iter()
                .find(|s| name(s) == host)
                .unwrap_or_else(|| panic!("{k}={v}: no Service {host}"));
            assert!(
                std::ptr::eq(target_of(s), by_role[role]),
                "{k}: {host} does not run {role}"
            );
            assert_eq!(port, code.grpc_port(role), "{k}={v}: {role}'s gRPC port");
            assert!(
                s["spec"]["ports"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .any(|p| p["port"].as_u64() == Some(port as u64)),
                "{k}: Service {host} has no port {port}"
            );
            if code.groups.contains_key(role) {
                assert_eq!(
                    s["spec"]["clusterIP"], "None",
                    "{k}: Service {host} is not headless"
                );
            }
        }
    }

    // A PodDisruptionBudget per role: one pod down at a time (a
    // minAvailable would block node drains of a one-replica role).
    let pdbs = kind("PodDisruptionBudget");
    for (role, d) in &by_role {
        let p: Vec<_> = pdbs
            .iter()
            .filter(|p| p["spec"]["selector"] == d["spec"]["selector"])
            .collect();
        assert_eq!(p.len(), 1, "{role}: one PodDisruptionBudget");
        assert_eq!(
            p[0]["spec"]["maxUnavailable"].as_u64(),
            Some(1),
            "{role}: PodDisruptionBudget"
        );
    }

    // Each consuming role scales on its own group's lag over the topics it
    // consumes, up to the partition count; the others have fixed replicas.
    let scaled = kind("ScaledObject");
    for (role, d) in &by_role {
        let dn = name(d);
        let so: Vec<_> = scaled
            .iter()
            .filter(|s| s["spec"]["scaleTargetRef"]["name"] == dn.as_str())
            .collect();
        let Some(group) = code.groups.get(*role) else {
            assert!(so.is_empty(), "{role} consumes nothing, yet scales on lag");
            assert!(
                d["spec"]["replicas"].as_u64().is_some_and(|r| r >= 1),
                "{dn}: replicas"
            );
            continue;
        };
        assert_eq!(so.len(), 1, "{role}: one ScaledObject");
        let spec = &so[0]["spec"];
        assert!(
            d["spec"]["replicas"].is_null(),
            "{dn}: replicas set, but KEDA owns them"
        );
        let (min, max) = (
            spec["minReplicaCount"].as_u64().unwrap(),
            spec["maxReplicaCount"].as_u64().unwrap(),
        );
        assert!(
            1 <= min && min <= max && max <= partitions,
            "{role}: replicas {min}..{max}, {partitions} partitions"
        );
        let mut topics = BTreeSet::new();
        for t in spec["triggers"].as_sequence().unwrap() {
            assert_eq!(t["type"], "kafka", "{role}: trigger");
            let m = string_map(&t["metadata"]);
            assert_eq!(&m["consumerGroup"], group, "{role}: not the code's group");
            // The brokers: the role's own variable, or the same value.
            match m.get("bootstrapServersFromEnv") {
                Some(var) => assert_eq!(var, "MESH_KAFKA_BROKERS", "{role}: brokers"),
                None => assert_eq!(
                    m["bootstrapServers"], env["MESH_KAFKA_BROKERS"],
                    "{role}: brokers"
                ),
            }
            assert_eq!(
                m["offsetResetPolicy"], code.offset_reset,
                "{role}: a new group starts at the {}",
                code.offset_reset
            );
            assert!(
                m["lagThreshold"].parse::<u64>().is_ok_and(|l| l > 0),
                "{role}: lagThreshold"
            );
            topics.insert(m["topic"].clone());
        }
        // Every trigger watches a topic the role consumes, and every input
        // topic it consumes has one (lag on a derived topic, such as
        // decisions, may follow from its input's).
        let consumed = code.consumed_topics(role);
        assert!(
            topics.is_subset(&consumed),
            "{role}: triggers {topics:?}, consumes {consumed:?}"
        );
        for t in consumed.intersection(&code.input_topics()) {
            assert!(topics.contains(t), "{role}: consumes {t}, no trigger on it");
        }
    }
    assert_eq!(
        scaled.len(),
        code.groups.len(),
        "a ScaledObject per consumer group {:?}",
        code.groups
    );

    // `mesh train <model>` jobs: the mesh image and environment, real
    // subcommands, model directories on the claim the roles read.
    let jobs = kind("CronJob");
    let mut trained = BTreeSet::new();
    for j in &jobs {
        let jn = name(j);
        let pod = &j["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        let c = &pod["containers"][0];
        assert!(
            c["image"].as_str().unwrap().starts_with("lifecycle-mesh:"),
            "{jn}: image"
        );
        assert_eq!(
            c["envFrom"][0]["configMapRef"]["name"].as_str(),
            Some(config.as_str()),
            "{jn}: envFrom"
        );
        let args = strs(&c["args"]);
        assert!(args.len() == 2 && args[0] == "train", "{jn}: args {args:?}");
        let model = args[1];
        assert!(
            code.train.contains(model),
            "{jn}: `mesh train {model}` does not exist ({:?})",
            code.train
        );
        assert!(trained.insert(model), "two CronJobs train {model}");
        if let Some(dir) = dirs.get(model) {
            let claim = claim_mounts(pod)
                .get(dir)
                .cloned()
                .unwrap_or_else(|| panic!("{jn}: {dir} not mounted"));
            let served = claim_mounts(&by_role[model]["spec"]["template"]["spec"]);
            assert_eq!(
                served.get(dir),
                Some(&claim),
                "{model} reads {dir} from another claim than {jn} writes"
            );
        }
    }
    for role in dirs.keys() {
        assert!(trained.contains(*role), "no CronJob trains {role}");
    }
}

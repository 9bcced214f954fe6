//! `mesh`: the operator binary. Parses arguments and calls the library.
use clap::{Parser, Subcommand};
use mesh_cli::cmd_progress::Steps;
use mesh_cli::{
    bench, cmd_churn, cmd_fraud, cmd_profile, cmd_recommend, forget, node, replay, serve, status,
};
use mesh_runtime::config::Env;

#[derive(Parser)]
#[command(
    name = "mesh",
    version,
    about = "Lifecycle Mesh: event-streaming AI for the e-commerce user lifecycle"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run every service in one process. Without MESH_KAFKA_BROKERS and
    /// MESH_REDIS_URL it uses an embedded Kafka-protocol cluster and an
    /// in-memory store.
    Up {
        /// Publish a seeded stream of sample events into the running mesh.
        #[arg(long)]
        simulate: bool,
        /// Events per second for --simulate.
        #[arg(long, default_value_t = 200)]
        rate: u32,
        /// Stop after this many seconds (0 = run until SIGTERM/SIGINT).
        #[arg(long, default_value_t = 0)]
        seconds: u64,
        /// Start every service as its own child process (`mesh serve
        /// <role>`), the production shape; starts redis-server when
        /// MESH_REDIS_URL is unset.
        #[arg(long)]
        processes: bool,
    },
    /// Run one service in this process against a real broker and Redis
    /// (MESH_KAFKA_BROKERS, MESH_REDIS_URL), with its own admin port
    /// (MESH_ADMIN_ADDR) and peers from MESH_<PEER>_ADDR.
    Serve {
        #[arg(value_enum)]
        role: serve::Role,
    },
    /// Rebuild a service's state from offset 0 into an empty store. Stop the
    /// service first.
    Replay {
        /// The service to rebuild (profile, churn, recommend, fraud, logistics).
        #[arg(long, value_enum, default_value = "profile")]
        service: serve::Role,
        #[arg(long)]
        json: bool,
    },
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Evaluate a model on public data with the published protocol.
    #[command(subcommand)]
    Eval(EvalCommand),
    /// Generate labelled event streams.
    #[command(subcommand)]
    Simulate(SimulateCommand),
    /// Route planning from files.
    #[command(subcommand)]
    Vrp(VrpCommand),
    /// Train a model from the current state or event log; the service picks
    /// the new version up without a restart.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Reports over the mesh's state or public data.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Summarise a running mesh: services, throughput, lag, stages, alerts.
    Status(status::StatusArgs),
    /// Credentials for a mesh that requires tokens (MESH_AUTH_TOKENS_FILE).
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Kill services and make the store lose writes under traffic, then
    /// count lost and double-applied events against an offline fold.
    Chaos(mesh_cli::chaos::ChaosArgs),
    /// Erase a user from a running mesh (`IngestService.ForgetUser`): every
    /// service deletes the user's state and drops the user's events from
    /// then on, replays included.
    Forget(forget::ForgetArgs),
}

#[derive(Subcommand)]
enum AuthCommand {
    /// Make a new bearer token: prints the token (give it to the caller; it
    /// is not stored) and the entry to add to the tokens file (its SHA-256).
    Token {
        /// The token's name, in logs and metrics.
        #[arg(long)]
        name: String,
        /// Its role: admin, service, storefront, analyst, reviewer, or one
        /// defined in the file.
        #[arg(long)]
        role: String,
        /// The one tenant it may reach (default: every tenant).
        #[arg(long)]
        tenant: Option<String>,
        /// Requests per second it may make (default: MESH_RATE_LIMIT_RPS).
        #[arg(long)]
        rate_per_sec: Option<f64>,
    },
    /// Make a CA and one certificate for every service (mutual TLS):
    /// ca.pem, mesh.pem, mesh-key.pem in DIR; then set MESH_TLS_CA,
    /// MESH_TLS_CERT, MESH_TLS_KEY.
    Certs {
        #[arg(long)]
        out: std::path::PathBuf,
        /// Extra DNS names or IPs the certificate is valid for (the
        /// services dial the name `mesh` whatever their address; these are
        /// for other clients).
        #[arg(long = "name")]
        names: Vec<String>,
    },
}

#[derive(Subcommand)]
enum TrainCommand {
    /// Supervised churn model from the event log (time split, calibrated).
    Churn(cmd_churn::TrainArgs),
    /// Matrix-factorization recommender from the event log.
    Recommend(cmd_recommend::TrainArgs),
    /// Fraud models from labelled history.
    Fraud(cmd_fraud::TrainArgs),
    /// k-means user segments over scaled RFM and engagement features.
    Segments(cmd_profile::TrainSegmentsArgs),
}

#[derive(Subcommand)]
enum ReportCommand {
    /// Measured lift of retention actions against the randomized holdout.
    Retention(cmd_churn::RetentionArgs),
    /// Replays a CDNOW purchase log through profile: segments, stages, cohorts.
    Cdnow(cmd_profile::CdnowArgs),
}

// Parsed once per run: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum EvalCommand {
    /// BG/NBD, Pareto/NBD and learned churn models on a CDNOW-style purchase log.
    Churn(mesh_churn::cli::EvalArgs),
    /// Recommenders on MovieLens 100k (RecBole or Microsoft Recommenders protocol).
    Recommend(mesh_recommend::cli::EvalArgs),
    /// Fraud rules, models and policy on the labelled simulator or a CSV.
    Fraud(mesh_fraud::cli::EvalArgs),
    /// The route optimizer on CVRPLIB / Solomon / DIMACS instances.
    Vrp(mesh_vrp::cli::EvalArgs),
    /// Forecasting methods on M3-format series.
    Forecast(mesh_forecast::cli::EvalArgs),
    /// Pricing, offer bandit, campaign evaluation and ads against seeded
    /// simulations with known truth.
    Engage(mesh_engage::cli::EvalArgs),
    /// Three-class sentiment on a VADER-format file, or two-class on Chinese
    /// positive/negative files (seeded 80/20 split).
    Sentiment(mesh_text::cli::SentimentArgs),
    /// Bilingual catalog search (NDCG@10, with and without personalization,
    /// misspelled queries) on a generated judged catalog.
    Search(mesh_text::cli::GeneratedArgs),
    /// Product classification into the category tree on a generated catalog.
    Product(mesh_text::cli::GeneratedArgs),
    /// Feedback categories (delivery, quality, price, service, refund, account).
    Feedback(mesh_text::cli::GeneratedArgs),
}

#[derive(Subcommand)]
enum SimulateCommand {
    /// Orders with injected, labelled fraud patterns.
    Fraud(mesh_fraud::cli::SimulateArgs),
    /// Publish a purchase history, then live events, into a running mesh.
    Traffic(mesh_cli::sim::TrafficArgs),
    /// Views and sales at shown prices with known per-item elasticities;
    /// with --engage, engage's estimates against that truth.
    Priced(mesh_cli::sim_priced::PricedArgs),
    /// A campaign with a control group and offers of known response rates
    /// run through a running engage; its report against the true lift.
    Campaign(mesh_cli::sim_campaign::CampaignArgs),
}

#[derive(Subcommand)]
enum VrpCommand {
    /// Solve one instance file and write a CVRPLIB .sol.
    Solve(mesh_vrp::cli::SolveArgs),
}

/// Prints a report as pretty JSON or as text.
fn print_report<R: serde::Serialize + std::fmt::Display>(
    report: &R,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        println!("{report}");
    }
    Ok(())
}

/// Names the plot files written by `--plot DIR`, on stderr so stdout stays
/// the report alone.
fn print_plots(plots: &[std::path::PathBuf]) {
    for p in plots {
        eprintln!("wrote {}", p.display());
    }
}

/// Runs an evaluation under a progress bar named `what`, then prints the
/// plots it wrote and its report.
fn eval<R, E>(
    what: &str,
    json: bool,
    run: impl FnOnce(&(dyn Fn(u64, u64) + Sync)) -> Result<(R, Vec<std::path::PathBuf>), E>,
) -> anyhow::Result<()>
where
    R: serde::Serialize + std::fmt::Display,
    anyhow::Error: From<E>,
{
    let steps = Steps::new(what);
    let (r, plots) = run(&|d, t| steps.callback(d, t))?;
    drop(steps);
    print_plots(&plots);
    print_report(&r, json)
}

/// Tenant of the simulated shop's traffic and history (`mesh_proto::sim`).
const SIM_SHOP_TENANT: &str = "demo";
/// Tenant of the labelled fraud traffic: its passes are backdated over three
/// days at a far higher order rate than the shop's history, so they are kept
/// out of the shop's demand series.
const FRAUD_LAB_TENANT: &str = "fraud-lab";

/// Where engage publishes its offers.
struct Engagement {
    brokers: String,
    topic: String,
    partitions: i32,
}

/// Starts the traffic simulator against ingest at `addr` until `stop` (the
/// shop's opening stock, then its history and live traffic: `rate`
/// browsing events a second and its customers' orders), and beside it
/// labelled fraud traffic with a review team and chargebacks
/// (`mesh_fraud_svc::live_sim`) at one order per 100 events.
fn simulate_into(
    addr: std::net::SocketAddr,
    fraud: std::net::SocketAddr,
    logistics: std::net::SocketAddr,
    engagement: Engagement,
    rate: u32,
    stop: &tokio_util::sync::CancellationToken,
) {
    let traffic = mesh_ingest::traffic::Traffic::at_rate(rate);
    let shop_stop = stop.clone();
    tokio::spawn(async move {
        // Stock first: every order of the shop consumed after it moves it.
        set_sim_stock(logistics).await;
        mesh_ingest::traffic::drive(addr, traffic, shop_stop).await
    });
    // The shop's customers answer the retention campaign's offers.
    if let Ok(e) = mesh_runtime::tls::endpoint(&format!("http://{addr}")) {
        let ingest = mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient::new(
            mesh_runtime::auth::authed(e.connect_lazy()),
        );
        let stop = stop.clone();
        tokio::spawn(async move {
            let run = mesh_cli::sim_retention::drive(
                &engagement.brokers,
                &engagement.topic,
                engagement.partitions,
                ingest,
                SIM_SHOP_TENANT,
                mesh_cli::sim_retention::Responses::default(),
                stop,
            );
            if let Err(e) = run.await {
                tracing::warn!(%e, "retention simulator stopped");
            }
        });
    }
    let orders_per_s = f64::from(rate) / 100.0;
    let stop = stop.clone();
    tokio::spawn(async move {
        let channel = |a: std::net::SocketAddr| {
            mesh_runtime::tls::endpoint(&a.to_string())
                .map(|e| mesh_runtime::auth::authed(e.connect_lazy()))
        };
        let (Ok(ingest), Ok(fraud)) = (channel(addr), channel(fraud)) else {
            return;
        };
        mesh_fraud_svc::live_sim::drive(
            mesh_proto::ingest::v1::ingest_service_client::IngestServiceClient::new(ingest),
            mesh_proto::fraud::v1::fraud_service_client::FraudServiceClient::new(fraud),
            FRAUD_LAB_TENANT.into(),
            orders_per_s,
            std::time::Duration::from_secs(20),
            stop,
        )
        .await;
    });
    println!(
        "  simulator     shop of {} customers ({}-day history, then their orders live), \
         {rate} browsing events/s, {orders_per_s} labelled fraud-simulator orders/s; \
         retention offers answered (control 5%, offers 12-30%, within 90 s)",
        traffic.customers,
        mesh_ingest::traffic::HISTORY_DAYS
    );
}

/// The shop's opening stock for the simulator: 400 units of `sku-0` ..
/// `sku-19` in the simulated orders' warehouse, so the console shows stock
/// falling with orders.
async fn set_sim_stock(logistics: std::net::SocketAddr) {
    use mesh_proto::logistics::v1::logistics_service_client::LogisticsServiceClient;
    use mesh_proto::logistics::v1::SetStockRequest;
    for _ in 0..60 {
        let ch = mesh_runtime::tls::endpoint(&logistics.to_string()).map(|e| e.connect_lazy());
        if let Ok(ch) = ch {
            let mut c = LogisticsServiceClient::new(mesh_runtime::auth::authed(ch));
            let mut ok = true;
            for i in 0..20 {
                ok &= c
                    .set_stock(SetStockRequest {
                        tenant_id: SIM_SHOP_TENANT.into(),
                        warehouse: mesh_proto::sim::WAREHOUSE.into(),
                        sku: format!("sku-{i}"),
                        on_hand: 400.0,
                        on_order: 0.0,
                    })
                    .await
                    .is_ok();
            }
            if ok {
                return;
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
    tracing::warn!(%logistics, "simulator could not set the opening stock");
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Ingest throughput and publish→visible latency at a fixed offered
    /// rate, beside a bare rdkafka producer on the same broker.
    Ingest(bench::IngestBenchArgs),
    /// Profile throughput beside a bare consume + Redis write loop; GetProfile latency.
    Profile(cmd_profile::BenchProfileArgs),
    /// Recommend latency under concurrent load with a trained model.
    Recommend(cmd_recommend::BenchArgs),
    /// ScoreOrder latency at a fixed offered rate.
    Fraud(cmd_fraud::BenchArgs),
    /// Every benchmark in one run on one broker and Redis: each figure,
    /// its bare baseline and the ratio (starts tansu and redis-server when
    /// MESH_KAFKA_BROKERS / MESH_REDIS_URL are unset).
    All(mesh_cli::bench_all::BenchAllArgs),
    /// Cost as work grows: profile's apply rate, Redis bytes per user and
    /// the processes' memory at 10k, 100k and 1M users, and the replay
    /// rate of the largest level (also the last stage of `bench all`).
    Scale(mesh_cli::bench_scale::BenchScaleArgs),
    /// Memory and CPU of each service process: the mesh as one process per
    /// service (as `mesh up --processes`) under a write load through ingest.
    Processes(mesh_cli::bench_procs::BenchProcessesArgs),
}

/// mimalloc instead of glibc's malloc: every service process is this
/// binary (`mesh serve <role>`), and in `perf` of `mesh bench all` glibc's
/// allocator (`_int_malloc`, `_int_free`, `malloc_consolidate`, ...) was
/// about a fifth of the process's CPU. See README.md, Performance.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    // The embedded broker `mesh up` ran, stopped last: after the runtime
    // and every task still holding one of its clients are gone.
    let mut embedded = None;
    let result = runtime.block_on(run(&mut embedded));
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
    drop(embedded);
    result
}

async fn run(embedded: &mut Option<mesh_bus::EmbeddedKafka>) -> anyhow::Result<()> {
    let cli = Cli::parse();
    let env = Env::from_process();
    // Spans name the service that made them: one per process under `serve`.
    let service = match &cli.command {
        Command::Serve { role } => role.name(),
        _ => "mesh",
    };
    let _telemetry = mesh_runtime::telemetry::init(&env, service)?;
    let mut cfg = node::MeshConfig::from_env(&env)?;
    if let Command::Up { simulate: true, .. } = cli.command {
        // The console shows the simulated shop's demand, not the fraud lab's.
        if env.get("MESH_CONSOLE_TENANT").is_none() {
            cfg.console_tenant = SIM_SHOP_TENANT.into();
        }
    }
    let cfg = cfg;
    // Who may call what, for every server this process starts; without a
    // tokens file the mesh runs open and the log says so.
    let guard = mesh_runtime::auth::install(mesh_runtime::auth::Guard::from_env(&env)?);
    mesh_runtime::tls::install(mesh_runtime::tls::Tls::from_env(&env)?);
    if matches!(cli.command, Command::Up { .. } | Command::Serve { .. }) {
        let (auth, tls) = (guard.describe(), mesh_runtime::tls::describe());
        if guard.is_enforcing() {
            tracing::info!("{auth}");
        } else {
            tracing::warn!("{auth}");
        }
        if mesh_runtime::tls::installed().is_some() {
            tracing::info!("{tls}");
        } else {
            tracing::warn!("{tls}");
        }
    }
    match cli.command {
        Command::Up {
            simulate,
            rate,
            seconds,
            processes: true,
        } => {
            let shutdown = mesh_runtime::shutdown::on_signals();
            let mut procs = mesh_cli::processes::start(&cfg).await?;
            procs
                .wait_ready(std::time::Duration::from_secs(120))
                .await?;
            println!("Lifecycle Mesh is up: one process per service");
            println!("  broker        {}", procs.brokers);
            println!("  state         {}", procs.redis_url);
            for c in &procs.children {
                println!(
                    "  {:<13} gRPC {}  admin http://{}/ready",
                    c.role.name(),
                    c.grpc_addr,
                    c.admin_addr
                );
            }
            if simulate {
                simulate_into(
                    cfg.ingest.grpc_addr,
                    cfg.fraud.grpc_addr,
                    cfg.logistics.grpc_addr,
                    Engagement {
                        brokers: procs.brokers.clone(),
                        topic: cfg.topics().engagement,
                        partitions: cfg.partitions,
                    },
                    rate,
                    &shutdown,
                );
            }
            if seconds > 0 {
                let stop = shutdown.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
                    stop.cancel();
                });
            }
            procs
                .run(shutdown, std::time::Duration::from_secs(15))
                .await?;
        }
        Command::Up {
            simulate,
            rate,
            seconds,
            processes: false,
        } => {
            let shutdown = mesh_runtime::shutdown::on_signals();
            let mesh = node::start(&cfg, shutdown.clone()).await?;
            println!("Lifecycle Mesh is up");
            println!(
                "  broker        {}{}",
                mesh.backends.brokers,
                if mesh.backends.embedded.is_some() {
                    " (embedded)"
                } else {
                    ""
                }
            );
            println!(
                "  state         {}",
                if cfg.redis_url.is_some() {
                    "redis"
                } else {
                    "in memory"
                }
            );
            println!("  ingest gRPC   {}", mesh.ingest.grpc_addr);
            println!("  ingest HTTP   http://{}/v1/events", mesh.ingest.http_addr);
            println!("  profile gRPC  {}", mesh.profile.grpc_addr);
            println!("  churn gRPC    {}", mesh.churn.grpc_addr);
            println!("  recommend     {}", mesh.recommend.grpc_addr);
            println!("  fraud gRPC    {}", mesh.fraud.grpc_addr);
            println!("  logistics     {}", mesh.logistics.grpc_addr);
            println!("  engage gRPC   {}", mesh.engage.grpc_addr);
            println!("  support gRPC  {}", mesh.support.grpc_addr);
            println!("  admin         http://{}/metrics", mesh.admin_addr);
            println!("  console       http://{}/console", mesh.admin_addr);
            println!("  auth          {}", guard.describe());
            println!("  tls           {}", mesh_runtime::tls::describe());
            if simulate {
                simulate_into(
                    mesh.ingest.grpc_addr,
                    mesh.fraud.grpc_addr,
                    mesh.logistics.grpc_addr,
                    Engagement {
                        brokers: mesh.backends.brokers.clone(),
                        topic: cfg.topics().engagement,
                        partitions: cfg.partitions,
                    },
                    rate,
                    &shutdown,
                );
            }
            if seconds > 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep(std::time::Duration::from_secs(seconds)) => shutdown.cancel(),
                }
            } else {
                shutdown.cancelled().await;
            }
            // Ordered, bounded: servers, consumers (commit, leave the
            // group), periodic work, producer flush; the broker after all.
            *embedded = mesh
                .stopped(std::time::Duration::from_secs(10))
                .await
                .embedded;
        }
        Command::Serve { role } => {
            let shutdown = mesh_runtime::shutdown::on_signals();
            let served = serve::serve(role, &cfg, &env, shutdown.clone()).await?;
            println!(
                "{} serving: {}{}, admin http://{}/ready",
                role.name(),
                served
                    .grpc_addr
                    .map(|a| format!("gRPC {a}"))
                    .unwrap_or_else(|| "console".into()),
                served
                    .http_addr
                    .map(|a| format!(", HTTP http://{a}/v1/events"))
                    .unwrap_or_default(),
                served.admin_addr
            );
            shutdown.cancelled().await;
            served.stopped(std::time::Duration::from_secs(10)).await;
        }
        Command::Replay { service, json } => {
            let backends = node::Backends::connect(&cfg).await?;
            let r = replay::replay_service(service, &cfg, &backends, !json).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                println!(
                    "replayed {} records into {} ({} keys cleared) in {:.2} s",
                    r.records, r.service, r.keys_cleared, r.seconds
                );
            }
        }
        Command::Eval(EvalCommand::Churn(a)) => eval("eval churn: model fits", a.json, |p| {
            mesh_churn::cli::eval_with(&a, p)
        })?,
        Command::Eval(EvalCommand::Recommend(a)) => {
            eval("eval recommend: model x seed", a.json, |p| {
                mesh_recommend::cli::eval_with(&a, p).map(|r| (r, Vec::new()))
            })?
        }
        Command::Eval(EvalCommand::Fraud(a)) => {
            eval("eval fraud: features, training, scoring", a.json, |p| {
                mesh_fraud::cli::eval_with(&a, p)
            })?
        }
        Command::Eval(EvalCommand::Vrp(a)) => eval("eval vrp: instances", a.json, |p| {
            mesh_vrp::cli::eval_with(&a, p)
        })?,
        Command::Eval(EvalCommand::Forecast(a)) => {
            eval("eval forecast: series x method", a.json, |p| {
                mesh_forecast::cli::eval_with(&a, p)
            })?
        }
        Command::Eval(EvalCommand::Engage(a)) => eval(
            "eval engage: pricing, bandit, campaigns, ads",
            a.json,
            |_| mesh_engage::cli::eval_with(&a),
        )?,
        Command::Eval(EvalCommand::Sentiment(a)) => {
            eval("eval sentiment: train on 80%, score 20%", a.json, |_| {
                mesh_text::cli::sentiment(&a).map(|r| (r, Vec::new()))
            })?
        }
        Command::Eval(EvalCommand::Search(a)) => print_report(&mesh_text::cli::search(&a), a.json)?,
        Command::Eval(EvalCommand::Product(a)) => {
            print_report(&mesh_text::cli::product(&a)?, a.json)?
        }
        Command::Eval(EvalCommand::Feedback(a)) => {
            print_report(&mesh_text::cli::feedback(&a)?, a.json)?
        }
        Command::Simulate(SimulateCommand::Fraud(a)) => {
            print_report(&mesh_fraud::cli::simulate(&a)?, a.json)?
        }
        Command::Simulate(SimulateCommand::Traffic(a)) => mesh_cli::sim::traffic(&a).await?,
        Command::Simulate(SimulateCommand::Priced(a)) => {
            mesh_cli::sim_priced::print(&mesh_cli::sim_priced::priced(&a).await?, a.json)?
        }
        Command::Simulate(SimulateCommand::Campaign(a)) => {
            mesh_cli::sim_campaign::print(&mesh_cli::sim_campaign::campaign(&a).await?, a.json)?
        }
        Command::Vrp(VrpCommand::Solve(a)) => {
            print_report(&mesh_vrp::cli::solve_file(&a)?, a.json)?
        }
        Command::Train(TrainCommand::Churn(a)) => cmd_churn::train(&cfg, &a).await?,
        Command::Train(TrainCommand::Recommend(a)) => cmd_recommend::train(&cfg, &a).await?,
        Command::Train(TrainCommand::Fraud(a)) => cmd_fraud::train(&cfg, &a).await?,
        Command::Train(TrainCommand::Segments(a)) => cmd_profile::train_segments(&cfg, &a).await?,
        Command::Report(ReportCommand::Retention(a)) => {
            cmd_churn::report_retention(&cfg, &a).await?
        }
        Command::Report(ReportCommand::Cdnow(a)) => cmd_profile::report_cdnow(&cfg, &a).await?,
        Command::Status(a) => status::run(&cfg, &a).await?,
        Command::Forget(a) => forget::run(&cfg, &a).await?,
        Command::Chaos(a) => mesh_cli::chaos::command(&cfg, &a).await?,
        Command::Auth(AuthCommand::Certs { out, names }) => {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            let g = mesh_runtime::tls::generate(&out, &names).map_err(|e| anyhow::anyhow!(e))?;
            println!("MESH_TLS_CA={}", g.ca.display());
            println!("MESH_TLS_CERT={}", g.cert.display());
            println!("MESH_TLS_KEY={}", g.key.display());
        }
        Command::Auth(AuthCommand::Token {
            name,
            role,
            tenant,
            rate_per_sec,
        }) => {
            let token = mesh_runtime::auth::new_token();
            let mut entry = format!(
                "[[tokens]]\nname = {name:?}\nsha256 = {:?}\nrole = {role:?}\n",
                mesh_runtime::auth::token_sha256(&token)
            );
            if let Some(t) = tenant {
                entry.push_str(&format!("tenant = {t:?}\n"));
            }
            if let Some(r) = rate_per_sec {
                entry.push_str(&format!("rate_per_sec = {r}\n"));
            }
            // The entry is checked the way the mesh will read it.
            mesh_runtime::auth::Policy::parse(&entry).map_err(|e| anyhow::anyhow!("{e}"))?;
            eprintln!("token (give it to the caller; only its hash is kept):");
            println!("{token}");
            eprintln!(
                "\nadd to the tokens file ({}):",
                mesh_runtime::auth::TOKENS_FILE_VAR
            );
            eprint!("{entry}");
        }
        Command::Bench(BenchCommand::Profile(a)) => cmd_profile::bench(&cfg, &a).await?,
        Command::Bench(BenchCommand::Recommend(a)) => cmd_recommend::bench(&cfg, &a).await?,
        Command::Bench(BenchCommand::Fraud(a)) => cmd_fraud::bench(&cfg, &a).await?,
        Command::Bench(BenchCommand::All(a)) => {
            let r = mesh_cli::bench_all::run(&cfg, &a).await?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r.to_json())?);
            } else {
                println!("{r}");
            }
        }
        Command::Bench(BenchCommand::Scale(a)) => {
            print_report(&mesh_cli::bench_scale::bench(&cfg, &a).await?, a.json)?
        }
        Command::Bench(BenchCommand::Processes(a)) => {
            print_report(&mesh_cli::bench_procs::bench(&cfg, &a).await?, a.json)?
        }
        Command::Bench(BenchCommand::Ingest(args)) => {
            print_report(&bench::ingest(&cfg, &args).await?, args.json)?
        }
    }
    Ok(())
}

//! `mesh simulate traffic`: arguments, then ingest's traffic driver
//! ([`mesh_ingest::traffic`]) against a mesh running elsewhere.
use std::time::Duration;

/// Arguments of `mesh simulate traffic`.
#[derive(clap::Args, Debug)]
pub struct TrafficArgs {
    /// Ingest gRPC endpoint of the running mesh.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub ingest: String,
    /// Live browsing events per second after the history.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
    /// The shop's customers: they set the history's daily orders and the
    /// live ones alike.
    #[arg(long, default_value_t = mesh_ingest::traffic::CUSTOMERS)]
    pub customers: u32,
    /// Stop after this many seconds (0 = until SIGTERM/SIGINT).
    #[arg(long, default_value_t = 0)]
    pub seconds: u64,
}

/// `mesh simulate traffic`: [`mesh_ingest::traffic::drive_uri`] against a mesh running elsewhere.
pub async fn traffic(args: &TrafficArgs) -> anyhow::Result<()> {
    let stop = mesh_runtime::shutdown::on_signals();
    if args.seconds > 0 {
        let s = stop.clone();
        let secs = args.seconds;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            s.cancel();
        });
    }
    println!(
        "simulating into {}: a shop of {} customers, {} browsing events/s",
        args.ingest, args.customers, args.rate
    );
    let traffic = mesh_ingest::traffic::Traffic {
        rate: args.rate,
        customers: args.customers,
    };
    mesh_ingest::traffic::drive_uri(args.ingest.clone(), traffic, stop).await;
    Ok(())
}

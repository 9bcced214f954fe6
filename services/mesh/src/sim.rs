//! `mesh simulate traffic`: arguments, then ingest's traffic driver
//! ([`mesh_ingest::traffic`]) against a mesh running elsewhere.
use std::time::Duration;

/// Arguments of `mesh simulate traffic`.
#[derive(clap::Args, Debug)]
pub struct TrafficArgs {
    /// Ingest gRPC endpoint of the running mesh.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub ingest: String,
    /// Live events per second after the history.
    #[arg(long, default_value_t = 200)]
    pub rate: u32,
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
    println!("simulating into {} at {} events/s", args.ingest, args.rate);
    mesh_ingest::traffic::drive_uri(args.ingest.clone(), args.rate, stop).await;
    Ok(())
}

//! One token, cancelled by SIGTERM or SIGINT.
use tokio_util::sync::CancellationToken;

/// Returns a token cancelled on the first SIGTERM/SIGINT. A second signal
/// exits at once, for an operator who does not want to wait for the grace
/// period.
pub fn on_signals() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        wait_signal().await;
        tracing::info!("shutdown requested; finishing in-flight work");
        t.cancel();
        wait_signal().await;
        tracing::warn!("second signal; exiting now");
        std::process::exit(130);
    });
    token
}

async fn wait_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Calls `poll` on the blocking pool every `every` until `shutdown`: the
/// hot-reload loop of the services' model files. A failed poll is logged
/// (`what` names the model) and the previous model keeps serving.
pub fn spawn_poller<E, F>(
    what: &'static str,
    every: std::time::Duration,
    shutdown: CancellationToken,
    poll: F,
) -> tokio::task::JoinHandle<()>
where
    E: std::fmt::Display + Send + 'static,
    F: Fn() -> std::result::Result<bool, E> + Send + Sync + 'static,
{
    crate::service::spawn_periodic(
        what,
        every,
        crate::service::FirstRun::AtStart,
        shutdown,
        std::sync::Arc::new(poll),
        |poll| async move {
            match tokio::task::spawn_blocking(move || poll()).await {
                Ok(Err(e)) => Err(format!(
                    "model not reloaded; the previous one keeps serving: {e}"
                )),
                Err(e) => Err(format!("model reload task failed: {e}")),
                Ok(Ok(_)) => Ok(()),
            }
        },
    )
}

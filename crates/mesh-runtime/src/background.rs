//! The runtime consumers run on, apart from the one that serves gRPC.
//!
//! A consumer handler that computes for milliseconds without yielding holds
//! a worker thread, and a read queued behind it on the same runtime waits
//! as long (measured with `mesh bench all`: GetProfile, Recommend and
//! ScoreOrder p99 ~200 ms while every consumer applied 5,000 events/s on
//! the runtime that also served the reads). On threads of their own the
//! kernel preempts them instead; they run at a lower priority
//! ([`NICE`]) so that on busy cores a read runs first, while idle cores
//! are still used in full.
use std::future::Future;
use std::sync::LazyLock;

use tokio::runtime::{Handle, Runtime, RuntimeFlavor};
use tokio::task::JoinHandle;

/// How much lower the background threads' priority is (Linux niceness).
pub const NICE: i32 = 5;

/// Name of the background runtime's threads (as `/proc` shows them).
pub const THREAD_NAME: &str = "mesh-background";

static RUNTIME: LazyLock<Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
        .thread_name(THREAD_NAME)
        .enable_all()
        .on_thread_start(lower_priority)
        .build()
        .expect("the background runtime starts")
});

/// Spawns `task` on the background runtime when called from a
/// multi-thread runtime (a service process); on a current-thread runtime
/// (tests, paused clocks) it stays on the caller's runtime, so a test
/// still drives everything it started.
pub fn spawn<F>(task: F) -> JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(RuntimeFlavor::CurrentThread) => tokio::spawn(task),
        _ => RUNTIME.spawn(task),
    }
}

/// Lowers the calling thread's priority by [`NICE`]; a refusal only costs
/// the reads' preference.
fn lower_priority() {
    use rustix::process::{getpriority_process, setpriority_process};
    let tid = rustix::thread::gettid();
    let now = getpriority_process(Some(tid)).unwrap_or(0);
    if let Err(e) = setpriority_process(Some(tid), now + NICE) {
        tracing::debug!(%e, "could not lower the background thread's priority");
    }
}

#[cfg(test)]
mod tests {
    fn thread_name() -> String {
        std::thread::current()
            .name()
            .unwrap_or_default()
            .to_string()
    }

    #[test]
    fn consumers_leave_a_multi_thread_runtime_but_not_a_test_runtime() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let name = rt.block_on(async { super::spawn(async { thread_name() }).await.unwrap() });
        assert_eq!(name, super::THREAD_NAME);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let here = std::thread::current().id();
        let ran_on = rt.block_on(async {
            super::spawn(async { std::thread::current().id() })
                .await
                .unwrap()
        });
        assert_eq!(ran_on, here);
    }
}

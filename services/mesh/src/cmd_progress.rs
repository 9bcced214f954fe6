//! Progress bars and spinners on stderr for the long steps of `mesh train`
//! and `mesh eval`, in the style of `mesh replay`. indicatif draws nothing
//! when stderr is not a terminal, so piped output and `--json` stay clean.
//! Library crates stay free of indicatif: they take a `Fn(done, total)`
//! callback, and [`Steps::callback`] adapts a bar to it.
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// A bar for `total` steps of `what` (the total may be corrected later by
/// the callback).
pub fn bar(what: &str, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} elapsed {elapsed} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(what.to_string());
    bar
}

/// A ticking spinner for a step of unknown length.
pub fn spinner(what: &str) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} {pos} elapsed {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(what.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A bar driven by a library's `progress(done, total)` callback.
pub struct Steps(pub ProgressBar);

impl Steps {
    /// A bar for `what`; its length comes from the first callback.
    pub fn new(what: &str) -> Self {
        Steps(bar(what, 0))
    }

    /// Sets length and position; usable from several threads.
    pub fn callback(&self, done: u64, total: u64) {
        if self.0.length() != Some(total) {
            self.0.set_length(total);
        }
        self.0.set_position(done);
    }
}

impl Drop for Steps {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Prints a report as pretty JSON or as its text form.
pub fn print<R: serde::Serialize + std::fmt::Display>(r: &R, json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
    } else {
        println!("{r}");
    }
    Ok(())
}

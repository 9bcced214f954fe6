//! Memory and CPU time of a process as Linux's `/proc` reports them, for
//! benchmarks and reports (`None` elsewhere, or when the process is gone).

/// Resident set size (`VmRSS`) of `pid`, or of this process for `None`, in bytes.
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    status_kib(pid, "VmRSS:").map(|k| k * 1024)
}

/// Peak resident set size (`VmHWM`) of `pid`, or of this process, in bytes.
pub fn peak_rss_bytes(pid: Option<u32>) -> Option<u64> {
    status_kib(pid, "VmHWM:").map(|k| k * 1024)
}

/// User + system CPU seconds of `pid`, or of this process for `None`
/// (`/proc/<pid>/stat` counts in `USER_HZ`, 100 on Linux).
pub fn cpu_secs(pid: Option<u32>) -> Option<f64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    parse_cpu_secs(&std::fs::read_to_string(path).ok()?)
}

/// utime + stime of a `/proc/<pid>/stat` text, in seconds.
fn parse_cpu_secs(stat: &str) -> Option<f64> {
    // Fields after the command name (which may hold spaces) start at ")".
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

fn status_kib(pid: Option<u32>, field: &str) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    parse_kib(&std::fs::read_to_string(path).ok()?, field)
}

/// The `kB` value of `field` in a `/proc/<pid>/status` text.
fn parse_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_kib_fields_of_a_status_text() {
        let s = "Name:\tmesh\nVmHWM:\t  20480 kB\nVmRSS:\t   10240 kB\nThreads:\t9\n";
        assert_eq!(parse_kib(s, "VmRSS:"), Some(10240));
        assert_eq!(parse_kib(s, "VmHWM:"), Some(20480));
        assert_eq!(parse_kib(s, "VmSwap:"), None);
        assert_eq!(parse_kib("VmRSS:\tlots kB\n", "VmRSS:"), None);
    }

    #[test]
    fn reads_utime_and_stime_after_the_command_name() {
        let s = "42 (a b) c) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1";
        assert_eq!(parse_cpu_secs(s), Some(3.0));
        assert_eq!(parse_cpu_secs("42 (x) S 1"), None);
        assert!(cpu_secs(None).is_some_and(|c| c >= 0.0));
        assert_eq!(cpu_secs(Some(u32::MAX)), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_resident_and_its_peak_is_no_lower() {
        let rss = rss_bytes(None).expect("VmRSS on Linux");
        let peak = peak_rss_bytes(Some(std::process::id())).expect("VmHWM on Linux");
        assert!(rss > 1024 * 1024, "{rss}");
        assert!(peak >= rss, "{peak} < {rss}");
        assert_eq!(rss_bytes(Some(u32::MAX)), None);
    }
}

//! Memory of a process as Linux's `/proc` reports it, for benchmarks and
//! reports (`None` elsewhere, or when the process is gone).

/// Resident set size (`VmRSS`) of `pid`, or of this process for `None`, in bytes.
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    status_kib(pid, "VmRSS:").map(|k| k * 1024)
}

/// Peak resident set size (`VmHWM`) of `pid`, or of this process, in bytes.
pub fn peak_rss_bytes(pid: Option<u32>) -> Option<u64> {
    status_kib(pid, "VmHWM:").map(|k| k * 1024)
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

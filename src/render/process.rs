//! The standard `process_*` metrics of this process, read from
//! `/proc/self` at scrape time (Linux; elsewhere they are left out).

/// One reading of the process's resources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcessView {
    pub(crate) cpu_seconds: f64,
    pub(crate) resident_bytes: u64,
    pub(crate) virtual_bytes: u64,
    pub(crate) open_fds: u64,
    pub(crate) max_fds: u64,
    /// Seconds since the Unix epoch.
    pub(crate) start_time: f64,
}

impl ProcessView {
    /// Read `/proc/self` now; `None` where there is no such thing.
    pub(crate) fn now() -> Option<ProcessView> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
        let ticks = crate::sys::clock_ticks_per_sec();
        let mut v = parse_stat(&stat, boot_time(&boot)?, ticks, crate::sys::page_size())?;
        // read_dir's own fd is counted too.
        v.open_fds = open_fds.saturating_sub(1);
        v.max_fds = crate::sys::nofile_limit();
        Some(v)
    }
}

/// `btime` of `/proc/stat`: the boot time, seconds since the epoch.
fn boot_time(proc_stat: &str) -> Option<u64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The fields of `/proc/self/stat` (after the command name, which may hold
/// spaces and parentheses): utime 14, stime 15, starttime 22, vsize 23,
/// rss 24 (1-based, as in proc(5)).
fn parse_stat(stat: &str, btime: u64, ticks: u64, page: u64) -> Option<ProcessView> {
    let rest = stat.get(stat.rfind(')')? + 1..)?;
    // `rest` starts at field 3 (state).
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| -> Option<u64> { f.get(n.checked_sub(3)?)?.parse().ok() };
    let ticks_f = ticks.max(1) as f64;
    let cpu = (field(14)? + field(15)?) as f64 / ticks_f;
    let start = btime as f64 + field(22)? as f64 / ticks_f;
    Some(ProcessView {
        cpu_seconds: cpu,
        resident_bytes: field(24)?.saturating_mul(page),
        virtual_bytes: field(23)?,
        open_fds: 0,
        max_fds: 0,
        start_time: start,
    })
}

#[cfg(test)]
mod tests;

//! Probes of processes and sockets from outside: /proc and `ss`. They only
//! read; nothing here changes the system.

use std::process::Command;

/// TCP socket states as in /proc/net/tcp.
pub const TCP_ESTABLISHED: u8 = 0x01;
pub const TCP_SYN_SENT: u8 = 0x02;
pub const TCP_CLOSE_WAIT: u8 = 0x08;
pub const TCP_LISTEN: u8 = 0x0A;

/// One row of /proc/net/tcp{,6}: local port, remote port, state.
#[derive(Debug, Clone, Copy)]
pub struct SockRow {
    pub local_port: u16,
    pub remote_port: u16,
    pub state: u8,
}

/// All TCP sockets of this network namespace (IPv4 and IPv6).
pub fn tcp_sockets() -> Vec<SockRow> {
    let mut out = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let mut it = line.split_whitespace();
            let (Some(_), Some(local), Some(remote), Some(st)) =
                (it.next(), it.next(), it.next(), it.next())
            else {
                continue;
            };
            let port = |a: &str| {
                a.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if let (Some(l), Some(r), Ok(s)) =
                (port(local), port(remote), u8::from_str_radix(st, 16))
            {
                out.push(SockRow {
                    local_port: l,
                    remote_port: r,
                    state: s,
                });
            }
        }
    }
    out
}

/// Sockets in `state` connecting or connected to remote `port`. Uses
/// `ss` (the kernel filters; /proc/net/tcp is slow on a busy host) and
/// falls back to /proc/net/tcp.
pub fn count_to_port(port: u16, state: u8) -> usize {
    let name = match state {
        TCP_ESTABLISHED => Some("established"),
        TCP_SYN_SENT => Some("syn-sent"),
        TCP_CLOSE_WAIT => Some("close-wait"),
        TCP_LISTEN => Some("listening"),
        _ => None,
    };
    if let Some(name) = name {
        let out = Command::new("ss")
            .args(["-Htn", "state", name, "dport", "=", &format!(":{port}")])
            .output();
        if let Ok(o) = out {
            if o.status.success() {
                return String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .count();
            }
        }
    }
    tcp_sockets()
        .iter()
        .filter(|r| r.remote_port == port && r.state == state)
        .count()
}

/// `ss -tno` lines of established sockets matching a filter such as
/// `["sport", "=", ":8080"]` (with timer information).
pub fn ss_established(filter: &[&str]) -> Vec<String> {
    let o = Command::new("ss")
        .args(["-Htno", "state", "established"])
        .args(filter)
        .output();
    match o {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Connections waiting in the accept queue of the listener on local `port`
/// (Recv-Q of a listening socket), via `ss`.
pub fn accept_queue(port: u16) -> Option<usize> {
    let o = Command::new("ss")
        .args(["-Htln", "sport", "=", &format!(":{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text.lines().find(|l| l.starts_with("LISTEN"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of `pid` in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces): state is
    // field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}

/// Resident memory of `pid` in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Where each open fd of `pid` points (`socket:[…]`, `pipe:[…]`, paths).
pub fn fd_targets(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|t| t.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `pid` is gone (or a zombie waiting for its parent).
pub fn exited(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.contains(") Z"))
        .unwrap_or(true)
}

/// The effective uid of this test process.
pub fn uid() -> u32 {
    // SAFETY: geteuid(2) takes nothing and cannot fail.
    unsafe { libc::geteuid() }
}

pub fn is_root() -> bool {
    uid() == 0
}

/// Send signal `sig` to `pid`.
pub fn kill(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) takes plain integers; at worst it fails with ESRCH.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

//! systemd's readiness protocol (sd_notify(3)): one datagram per state
//! change to the Unix socket named by `$NOTIFY_SOCKET` (a path, or an
//! abstract name written with a leading `@`). Without the variable every
//! call is a no-op. Also `$JOURNAL_STREAM`: whether stderr goes to the
//! journal, so log lines can carry priority prefixes.

use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;

/// Where `$NOTIFY_SOCKET` points, read once.
fn target() -> Option<&'static (UnixDatagram, SocketAddr)> {
    static T: OnceLock<Option<(UnixDatagram, SocketAddr)>> = OnceLock::new();
    T.get_or_init(|| {
        let v = std::env::var_os("NOTIFY_SOCKET")?;
        let addr = notify_addr(v.as_encoded_bytes())?;
        Some((UnixDatagram::unbound().ok()?, addr))
    })
    .as_ref()
}

/// `$NOTIFY_SOCKET`'s value as an address: `@name` is abstract.
pub(crate) fn notify_addr(v: &[u8]) -> Option<SocketAddr> {
    match v {
        [] => None,
        [b'@', name @ ..] => SocketAddr::from_abstract_name(name).ok(),
        [b'/', ..] => {
            use std::os::unix::ffi::OsStrExt;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(v)).ok()
        }
        _ => None,
    }
}

/// Send `state` (`KEY=VALUE` lines). Errors are ignored: systemd not
/// listening must not stop the balancer.
pub(crate) fn send(state: &str) {
    if let Some((sock, addr)) = target() {
        let _ = sock.send_to_addr(state.as_bytes(), addr);
    }
}

/// Every listener is bound and serving.
pub(crate) fn ready() {
    send("READY=1\nSTATUS=serving");
}

/// A reload starts (systemd wants the monotonic time with it).
pub(crate) fn reloading() {
    send(&format!("RELOADING=1\nMONOTONIC_USEC={}", monotonic_usec()));
}

/// Shutting down (draining).
pub(crate) fn stopping() {
    send("STOPPING=1");
}

fn monotonic_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1_000
}

/// Whether stderr is the journal's stream: `$JOURNAL_STREAM` is `DEV:INO`
/// of it (systemd.exec(5)). A stderr redirected elsewhere by the service
/// itself no longer matches.
pub(crate) fn stderr_is_journal() -> bool {
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;
    let Some(v) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = v.to_str().and_then(|s| s.split_once(':')) else {
        return false;
    };
    let md = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map(std::fs::File::from)
        .and_then(|f| f.metadata());
    match (md, dev.parse::<u64>(), ino.parse::<u64>()) {
        (Ok(md), Ok(dev), Ok(ino)) => md.dev() == dev && md.ino() == ino,
        _ => false,
    }
}

#[cfg(test)]
mod tests;

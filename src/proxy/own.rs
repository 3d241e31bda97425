//! Our own backend connections coming back in: a channel that reaches a
//! listener of this process in a way the configuration checks cannot see
//! (a local interface address, a name that changed, a port forward)
//! makes every client connection a new connection to ourselves, without
//! end, until the fd limit. The connect path marks the local port of each
//! connect to a local address on one of our listening ports; the accept
//! loop refuses (with a reset) a connection from a local address whose
//! port was marked for that listener's port in the last [`FRESH`], so such
//! a loop ends at its first hop instead of multiplying.
//!
//! A mark is a timestamp, not a guard: it costs a connection's future no
//! bytes and its close nothing. A loop's connection waits in our own
//! accept queue for microseconds, far less than [`FRESH`].
//!
//! Cost: a connect to anything but one of our own ports on this host pays
//! one bit test, an accept one load of a word that is zero unless a mark
//! was made in the last [`FRESH`]; a marked connect pays a getsockname. No
//! lock.
//!
//! With several runtime threads an accept can overtake the mark of the
//! connect it answers (the mark follows the connect syscall at once):
//! that loop makes one more hop and is caught at the next.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering::Relaxed};
use std::time::{Duration, Instant};

const PORTS: usize = 1 << 16;

/// How long a mark counts.
pub(crate) const FRESH: Duration = Duration::from_secs(5);

/// Per local port: when it was last marked (seconds since [`EPOCH`], high
/// 16 bits, never 0) and the listening port the connect went to (low 16
/// bits; 0 once two fresh marks went to different ports).
static MARKED: [AtomicU32; PORTS] = [const { AtomicU32::new(0) }; PORTS];

/// When the last mark was made (as in [`MARKED`]); 0: never.
static LAST: AtomicU32 = AtomicU32::new(0);

/// One bit per port we listen on (set, never cleared: a stale bit only
/// costs the connects to that port a getsockname).
static LISTENING: [AtomicU8; PORTS / 8] = [const { AtomicU8::new(0) }; PORTS / 8];

/// This host's interface addresses, read once.
static LOCAL: OnceLock<Vec<IpAddr>> = OnceLock::new();

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// Seconds since the first use, 1-based, wrapping within 16 bits.
fn now() -> u32 {
    let secs = EPOCH.get_or_init(Instant::now).elapsed().as_secs();
    (secs % 0xffff) as u32 + 1
}

/// Whether a stamp taken at `then` is younger than [`FRESH`].
fn fresh(then: u32, now: u32) -> bool {
    // Both are 1..=0xffff: no underflow.
    then != 0 && u64::from((now + 0xffff - then) % 0xffff) < FRESH.as_secs()
}

/// Note that this process listens on `port`.
pub(crate) fn listening(port: u16) {
    let (byte, bit) = (usize::from(port) / 8, port % 8);
    if let Some(b) = LISTENING.get(byte) {
        b.fetch_or(1 << bit, Relaxed);
    }
}

fn is_listening(port: u16) -> bool {
    let (byte, bit) = (usize::from(port) / 8, port % 8);
    LISTENING
        .get(byte)
        .is_some_and(|b| b.load(Relaxed) & (1 << bit) != 0)
}

/// Whether `ip` is this host: loopback, the wildcard, or an interface
/// address.
fn is_local(ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    ip.is_loopback()
        || ip.is_unspecified()
        || LOCAL.get_or_init(crate::sys::local_addresses).contains(&ip)
}

/// Mark `sock`, just connected (or connecting) to `to`, if `to` may be one
/// of our listeners.
pub(crate) fn mark(sock: &impl AsFd, to: SocketAddr) {
    if !is_listening(to.port()) || !is_local(to.ip()) {
        return;
    }
    let Some(local) = crate::sys::local_addr(sock) else {
        return;
    };
    let Some(slot) = MARKED.get(usize::from(local.port())) else {
        return;
    };
    let t = now();
    let dport = u32::from(to.port());
    let _ = slot.fetch_update(Relaxed, Relaxed, |cur| {
        let (then, d) = (cur >> 16, cur & 0xffff);
        let d = if fresh(then, t) && d != dport {
            0
        } else {
            dport
        };
        Some((t << 16) | d)
    });
    LAST.store(t, Relaxed);
}

/// Whether a connection from `peer`, accepted on a listener on `port`, is
/// one of our own connects coming back.
pub(crate) fn is_own(peer: SocketAddr, port: u16) -> bool {
    let last = LAST.load(Relaxed);
    if last == 0 {
        return false;
    }
    let t = now();
    if !fresh(last, t) {
        return false;
    }
    let Some(slot) = MARKED.get(usize::from(peer.port())) else {
        return false;
    };
    let cur = slot.load(Relaxed);
    let (then, d) = (cur >> 16, cur & 0xffff);
    fresh(then, t) && (d == 0 || d == u32::from(port)) && is_local(peer.ip())
}

#[cfg(test)]
mod tests;

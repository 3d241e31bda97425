//! Our own backend connections coming back in: a channel that reaches a
//! listener of this process in a way the configuration checks cannot see
//! (a local interface address, a name that changed, a port forward)
//! makes every client connection a new connection to ourselves, without
//! end, until the fd limit. The connect path marks the local port of each
//! connect to a local address on one of our listening ports; the accept
//! loop refuses (with a reset) a connection from a local address whose
//! port is marked for that listener's port, so such a loop ends at its
//! first hop instead of multiplying.
//!
//! Cost: a connect to anything but one of our own ports on this host pays
//! one bit test, an accept one load of a word that is zero unless a loop
//! runs; a marked connect pays a getsockname and a few atomic updates. No
//! lock.
//!
//! With several runtime threads an accept can overtake the mark of the
//! connect it answers (the mark follows the connect syscall at once):
//! that loop makes one more hop and is caught at the next.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicUsize, Ordering::Relaxed};

const PORTS: usize = 1 << 16;

/// Per local port: the number of our marked connects using it (high 16
/// bits) and the listening port they went to (low 16 bits; 0 once two of
/// them went to different ports).
static MARKED: [AtomicU32; PORTS] = [const { AtomicU32::new(0) }; PORTS];

/// Marks alive: while none is (always, but for a loop), an accept looks
/// at this one word only.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// One bit per port we listen on (set, never cleared: a stale bit only
/// costs the marked connects a getsockname).
static LISTENING: [AtomicU8; PORTS / 8] = [const { AtomicU8::new(0) }; PORTS / 8];

/// This host's interface addresses, read once.
static LOCAL: OnceLock<Vec<IpAddr>> = OnceLock::new();

/// Note that this process listens on `port`.
pub fn listening(port: u16) {
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

/// A marked connect; the mark goes with it.
#[derive(Debug)]
pub struct Mark {
    port: u16,
}

impl Mark {
    /// Mark `sock`, just connected (or connecting) to `to`, if `to` may be
    /// one of our listeners.
    pub fn new(sock: &impl AsFd, to: SocketAddr) -> Option<Mark> {
        if !is_listening(to.port()) || !is_local(to.ip()) {
            return None;
        }
        let port = crate::sys::local_addr(sock)?.port();
        let slot = MARKED.get(usize::from(port))?;
        LIVE.fetch_add(1, Relaxed);
        let dport = u32::from(to.port());
        let _ = slot.fetch_update(Relaxed, Relaxed, |cur| {
            let (n, d) = (cur >> 16, cur & 0xffff);
            Some(match (n, d) {
                (0, _) => (1 << 16) | dport,
                (n, d) if d == dport => ((n + 1).min(0xffff) << 16) | d,
                (n, _) => (n + 1).min(0xffff) << 16,
            })
        });
        Some(Mark { port })
    }
}

impl Drop for Mark {
    fn drop(&mut self) {
        if let Some(slot) = MARKED.get(usize::from(self.port)) {
            let _ = slot.fetch_update(Relaxed, Relaxed, |cur| {
                let n = (cur >> 16).saturating_sub(1);
                Some(if n == 0 {
                    0
                } else {
                    (n << 16) | (cur & 0xffff)
                })
            });
            LIVE.fetch_sub(1, Relaxed);
        }
    }
}

/// Whether a connection from `peer`, accepted on a listener on `port`, is
/// one of our own connects coming back.
pub fn is_own(peer: SocketAddr, port: u16) -> bool {
    if LIVE.load(Relaxed) == 0 {
        return false;
    }
    let Some(slot) = MARKED.get(usize::from(peer.port())) else {
        return false;
    };
    let cur = slot.load(Relaxed);
    if cur == 0 {
        return false;
    }
    let d = cur & 0xffff;
    (d == 0 || d == u32::from(port)) && is_local(peer.ip())
}

#[cfg(test)]
mod tests;

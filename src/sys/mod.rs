//! The operating-system edge: socket options, error classes, daemonizing,
//! syslog, resource limits. This is the only module allowed `unsafe`; each
//! block carries a `// SAFETY:` note.
#![allow(unsafe_code)]

pub mod splice;

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::{TcpSocket, TcpStream};

use crate::config::Keepalive;

/// TCP_NODELAY and optional keepalive on a relayed socket. Failures are
/// ignored: the connection works without them.
pub fn tune_stream(s: &TcpStream, ka: Option<&Keepalive>) {
    let _ = s.set_nodelay(true);
    if let Some(ka) = ka {
        let params = TcpKeepalive::new()
            .with_time(ka.idle)
            .with_interval(ka.interval)
            .with_retries(ka.probes);
        let sock = SockRef::from(s);
        let _ = sock.set_tcp_keepalive(&params);
        // Bound how long unacknowledged data may sit before the kernel gives
        // up, so a dead peer with pending writes is noticed as quickly.
        let user_timeout = ka.idle + ka.interval * ka.probes;
        let _ = sock.set_tcp_user_timeout(Some(user_timeout));
    }
}

/// Make closing this socket send a reset instead of a FIN.
pub fn set_linger_zero(s: &TcpStream) {
    let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
}

/// IP_BIND_ADDRESS_NO_PORT: with a source address (`-B`), defer the port
/// choice to connect(), so the 4-tuple, not the port alone, must be unique.
pub fn set_bind_address_no_port(s: &TcpSocket) {
    let one: libc::c_int = 1;
    // SAFETY: valid fd owned by `s`; the option value points to a c_int that
    // lives across the call, with its exact size passed.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Errors that are about this host (no fds, no ports, no memory), not about
/// a backend: they must never count as a channel failure.
pub fn is_local_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(
            libc::EMFILE
                | libc::ENFILE
                | libc::ENOBUFS
                | libc::ENOMEM
                | libc::EADDRNOTAVAIL
                | libc::EADDRINUSE
        )
    )
}

/// Errors after which accept() should back off instead of retrying at once.
pub fn is_accept_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The soft RLIMIT_NOFILE.
pub fn nofile_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass; it is valid and owned.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    if rc == 0 { r.rlim_cur } else { 1024 }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit (as servers do).
pub fn raise_nofile_limit() {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: as above; setrlimit reads the struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 && r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
}

/// Detach like balance does: fork (the parent exits 0), start a new session,
/// chdir /, stdio to /dev/null. Must run before any thread is started.
pub fn daemonize() -> io::Result<()> {
    // SAFETY: called from main before the runtime or any other thread
    // exists, so the child is a complete copy of a single-threaded process.
    match unsafe { libc::fork() } {
        -1 => return Err(io::Error::last_os_error()),
        0 => {}
        // SAFETY: _exit in the parent skips destructors that belong to the child.
        _ => unsafe { libc::_exit(0) },
    }
    // SAFETY: plain syscalls without pointers.
    if unsafe { libc::setsid() } == -1 {
        return Err(io::Error::last_os_error());
    }
    std::env::set_current_dir("/")?;
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors from a valid open fd.
        if unsafe { libc::dup2(devnull.as_raw_fd(), fd) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Open the syslog connection with our identity (daemon facility).
pub fn open_syslog() {
    static IDENT: &[u8] = b"balance\0";
    // SAFETY: IDENT is a static NUL-terminated string that outlives the
    // syslog connection, as openlog requires.
    unsafe {
        libc::openlog(
            IDENT.as_ptr().cast(),
            libc::LOG_PID | libc::LOG_NDELAY,
            libc::LOG_DAEMON,
        )
    };
}

/// Send one message to syslog at `priority`.
pub fn syslog(priority: libc::c_int, msg: &str) {
    let Ok(c) = CString::new(msg.replace('\0', "\\0")) else {
        return;
    };
    // SAFETY: "%s" with one valid NUL-terminated argument.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), c.as_ptr()) };
}

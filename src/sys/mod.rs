//! The operating-system edge: socket options, error classes, daemonizing
//! ([`daemon`]), systemd's notify protocol ([`notify`]), syslog, resource
//! limits. This is the only module allowed `unsafe`; each
//! block carries a `// SAFETY:` note.
#![allow(unsafe_code)]

pub(crate) mod alloc;
pub(crate) mod daemon;
pub(crate) mod fdpass;
pub(crate) mod file;
pub(crate) mod libm;
pub(crate) mod notify;
pub(crate) mod reaper;
pub(crate) mod splice;

use std::ffi::CString;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::{SockRef, TcpKeepalive};
use tokio::net::TcpStream;

use crate::config::Keepalive;

/// Keepalive (with the matching TCP_USER_TIMEOUT) on a relayed socket, if
/// configured. Failures are ignored: the connection works without them.
/// TCP_NODELAY is not set here: an accepted socket inherits it from its
/// listener (`listener::bind`) and a backend socket gets it before it
/// connects (`proxy::connect`), which saves a syscall per socket.
pub(crate) fn set_keepalive(sock: SockRef<'_>, ka: Option<&Keepalive>) {
    if let Some(ka) = ka {
        let params = TcpKeepalive::new()
            .with_time(ka.idle)
            .with_interval(ka.interval)
            .with_retries(ka.probes);
        let _ = sock.set_tcp_keepalive(&params);
        // Bound how long unacknowledged data may sit before the kernel gives
        // up, so a dead peer with pending writes is noticed as quickly.
        let user_timeout = ka.idle + ka.interval * ka.probes;
        let _ = sock.set_tcp_user_timeout(Some(user_timeout));
    }
}

/// Whether a non-blocking connect() error only says "under way".
pub(crate) fn is_connect_in_progress(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINPROGRESS)
}

/// The socket's TCP_INFO, when the kernel reports it up to `field_end`
/// (the byte offset just past the last field the caller reads).
fn tcp_info(s: &TcpStream, field_end: usize) -> Option<libc::tcp_info> {
    // SAFETY: tcp_info is plain integers, so all-zero is a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: valid fd owned by `s`; the kernel writes at most `len` bytes
    // into `info`, which lives across the call, and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&mut info as *mut libc::tcp_info).cast(),
            &mut len,
        )
    };
    (rc == 0 && len as usize >= field_end).then_some(info)
}

/// Send-side progress from TCP_INFO: bytes the peer has acknowledged, and
/// whether data is still waiting in our send queue (unsent or unacked).
/// Tells a slow reader from an idle or stuck one while our writes wait.
/// `None` where the kernel does not report it.
pub(crate) fn send_progress(s: &TcpStream) -> Option<(u64, bool)> {
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_notsent_bytes) + 4;
    let info = tcp_info(s, needed)?;
    let pending = info.tcpi_unacked > 0 || info.tcpi_notsent_bytes > 0;
    Some((info.tcpi_bytes_acked, pending))
}

/// Data bytes received from the peer over the socket's life (TCP_INFO's
/// `tcpi_bytes_received`, Linux 4.1). The kernel counts the peer's FIN as
/// a byte too: it is taken off when the state shows the FIN arrived
/// (CLOSE_WAIT, LAST_ACK, CLOSING, TIME_WAIT), or, for CLOSED, unless
/// `reset` (the caller saw this side reset: no FIN came). `None` where
/// it is not reported.
pub(crate) fn bytes_received(s: &TcpStream, reset: bool) -> Option<u64> {
    let needed = std::mem::offset_of!(libc::tcp_info, tcpi_bytes_received) + 8;
    let i = tcp_info(s, needed)?;
    // include/net/tcp_states.h
    const TIME_WAIT: u8 = 6;
    const CLOSE: u8 = 7;
    const CLOSE_WAIT: u8 = 8;
    const LAST_ACK: u8 = 9;
    const CLOSING: u8 = 11;
    let fin = match i.tcpi_state {
        CLOSE_WAIT | LAST_ACK | CLOSING | TIME_WAIT => true,
        CLOSE => !reset,
        _ => false,
    };
    Some(i.tcpi_bytes_received.saturating_sub(u64::from(fin)))
}

/// A wall-clock second broken down in the local time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LocalTime {
    pub(crate) year: i32,
    /// 1-12.
    pub(crate) month: u32,
    /// 1-31.
    pub(crate) day: u32,
    pub(crate) hour: u32,
    pub(crate) minute: u32,
    pub(crate) second: u32,
    /// East of UTC, in seconds.
    pub(crate) utc_offset: i64,
}

/// `secs` since the epoch in the local time zone (localtime_r(3)).
pub(crate) fn local_time(secs: i64) -> Option<LocalTime> {
    // time_t is 32 bits on some targets: there a far date fails here.
    #[allow(clippy::useless_conversion)]
    let t: libc::time_t = secs.try_into().ok()?;
    // SAFETY: tm is plain integers and a pointer (tm_zone) that
    // localtime_r sets; all-zero is a valid value to overwrite.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the call; localtime_r is the
    // thread-safe variant and writes only into `tm`.
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        return None;
    }
    Some(LocalTime {
        year: tm.tm_year + 1900,
        month: u32::try_from(tm.tm_mon + 1).ok()?,
        day: u32::try_from(tm.tm_mday).ok()?,
        hour: u32::try_from(tm.tm_hour).ok()?,
        minute: u32::try_from(tm.tm_min).ok()?,
        second: u32::try_from(tm.tm_sec).ok()?,
        utc_offset: tm.tm_gmtoff,
    })
}

/// Make closing this socket send a reset instead of a FIN.
pub(crate) fn set_linger_zero(s: &TcpStream) {
    let _ = SockRef::from(s).set_linger(Some(Duration::ZERO));
}

/// recv(MSG_PEEK | MSG_DONTWAIT) into `buf`: the bytes stay queued.
/// `WouldBlock` when nothing is there yet; Ok(0) at EOF.
pub(crate) fn peek(s: &impl AsRawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    // SAFETY: recv writes at most `buf.len()` bytes into `buf`, a live,
    // exclusively borrowed slice; the fd is borrowed from `s` for the call.
    let n = unsafe {
        libc::recv(
            s.as_raw_fd(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    usize::try_from(n).map_err(|_| std::io::Error::last_os_error())
}

/// The addresses of this host's interfaces (getifaddrs); empty if they
/// cannot be read.
pub(crate) fn local_addresses() -> Vec<std::net::IpAddr> {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head into the pointer we own; the
    // list is freed below with freeifaddrs, once.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a non-null node of the list getifaddrs returned,
        // alive until freeifaddrs.
        let ifa = unsafe { &*cur };
        if !ifa.ifa_addr.is_null() {
            // SAFETY: a non-null ifa_addr points to a sockaddr whose family
            // says which struct it is; each is read as that struct only.
            let ip = unsafe {
                match i32::from((*ifa.ifa_addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*ifa.ifa_addr.cast::<libc::sockaddr_in>();
                        Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                            sin.sin_addr.s_addr,
                        ))))
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*ifa.ifa_addr.cast::<libc::sockaddr_in6>();
                        Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
                    }
                    _ => None,
                }
            };
            out.extend(ip);
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: the head getifaddrs returned, freed once; no node is used
    // after this.
    unsafe { libc::freeifaddrs(head) };
    out
}

/// The local address of a socket (getsockname).
pub(crate) fn local_addr(s: &impl std::os::fd::AsFd) -> Option<std::net::SocketAddr> {
    SockRef::from(s).local_addr().ok()?.as_socket()
}

/// The bytes already received on `s`, without consuming them and without
/// waiting (MSG_PEEK | MSG_DONTWAIT): how many were copied into `buf`; 0
/// when nothing is there yet (or on any error).
pub(crate) fn peek_now(s: &impl AsRawFd, buf: &mut [u8]) -> usize {
    peek(s, buf).unwrap_or(0)
}

/// IP_BIND_ADDRESS_NO_PORT: with a source address (`-B`), defer the port
/// choice to connect(), so the 4-tuple, not the port alone, must be unique.
pub(crate) fn set_bind_address_no_port(s: &impl AsRawFd) {
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
pub(crate) fn is_local_resource_error(e: &io::Error) -> bool {
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
pub(crate) fn is_accept_resource_error(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The soft RLIMIT_NOFILE.
pub(crate) fn nofile_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass; it is valid and owned.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) };
    if rc == 0 { r.rlim_cur } else { 1024 }
}

/// Raise the soft RLIMIT_NOFILE to the hard limit (as servers do).
pub(crate) fn raise_nofile_limit() {
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

/// Open the syslog connection with our identity (daemon facility).
pub(crate) fn open_syslog() {
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

/// Whether a syslog daemon listens on /dev/log (without one, syslog
/// messages are dropped silently).
pub(crate) fn syslog_available() -> bool {
    std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.connect("/dev/log"))
        .is_ok()
}

/// Send one message to syslog at `priority`.
pub(crate) fn syslog(priority: libc::c_int, msg: &str) {
    let Ok(c) = CString::new(msg.replace('\0', "\\0")) else {
        return;
    };
    // SAFETY: "%s" with one valid NUL-terminated argument.
    unsafe { libc::syslog(priority, c"%s".as_ptr(), c.as_ptr()) };
}

/// Whether this process may create files in directory `dir`
/// (access(2) with W_OK|X_OK, by the real ids, which are ours).
pub(crate) fn writable(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: a valid NUL-terminated path that lives across the call.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// Clock ticks per second (`/proc` times are in these); 100 if unknown.
pub(crate) fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf only reads a constant of the system.
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(100)
}

/// The memory page size (`/proc` counts rss in pages); 4096 if unknown.
pub(crate) fn page_size() -> u64 {
    // SAFETY: sysconf only reads a constant of the system.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

/// Take an exclusive `flock` on `f` without waiting: false when another
/// open file description holds it (another instance). The lock lives as
/// long as the file stays open, and dies with the process.
pub(crate) fn try_lock_exclusive(f: &std::fs::File) -> io::Result<bool> {
    // SAFETY: flock takes a descriptor we own for the whole call and an
    // integer operation; it touches no memory.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if r == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// The effective user id of this process.
pub(crate) fn euid() -> u32 {
    // SAFETY: geteuid has no arguments, cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Serializes umask changes: the umask is process-wide.
static UMASK_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Run `f` with the umask set to `mask`, then restore the previous one, so a
/// file created by `f` (a Unix socket: bind has no mode argument) never
/// exists with looser permissions. The umask is process-wide: a file another
/// thread creates during `f` (a bind, microseconds) gets the stricter mask
/// too, so keep `f` short.
pub(crate) fn with_umask<T>(mask: u32, f: impl FnOnce() -> T) -> T {
    let _g = UMASK_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    // SAFETY: umask only swaps the process's file mode creation mask; it
    // takes a plain integer and touches no memory. The lock above keeps our
    // own callers from interleaving their save/restore pairs.
    let old = unsafe { libc::umask(mask as libc::mode_t) };
    let out = f();
    // SAFETY: as above; restores the mask saved before `f`.
    unsafe { libc::umask(old) };
    out
}

/// A group by name (or number) in the group database: its gid.
pub(crate) fn lookup_group(group: &str) -> io::Result<libc::gid_t> {
    if let Ok(n) = group.parse::<libc::gid_t>() {
        return Ok(n);
    }
    let grp = lookup_entry(group, "group", "group", 64 * 1024, libc::getgrnam_r)?;
    Ok(grp.gr_gid)
}

/// Look up `user` in the password database: (uid, primary gid).
pub(crate) fn lookup_user(user: &str) -> io::Result<(libc::uid_t, libc::gid_t)> {
    let pwd = lookup_entry(user, "user", "password", 16 * 1024, libc::getpwnam_r)?;
    Ok((pwd.pw_uid, pwd.pw_gid))
}

/// The signature shared by `getgrnam_r` and `getpwnam_r`.
type NamR<T> = unsafe extern "C" fn(
    *const libc::c_char,
    *mut T,
    *mut libc::c_char,
    libc::size_t,
    *mut *mut T,
) -> libc::c_int;

/// `name`'s entry in a name-service database, read by `call` (one of
/// libc's `get*nam_r`, whose entry type `T` is plain old data) into a
/// buffer of `buf_len` bytes. Only the fixed fields of the entry may be
/// read: its strings point into the buffer, which is gone on return.
fn lookup_entry<T>(
    name: &str,
    kind: &str,
    db: &str,
    buf_len: usize,
    call: NamR<T>,
) -> io::Result<T> {
    let cname = CString::new(name).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{kind} name contains NUL"),
        )
    })?;
    let mut buf = vec![0 as libc::c_char; buf_len];
    // SAFETY: `T` is a libc entry struct (plain old data): an all-zero
    // value is valid and is only read after `call` filled it in.
    let mut entry: T = unsafe { std::mem::zeroed() };
    let mut result: *mut T = std::ptr::null_mut();
    // SAFETY: every pointer refers to memory we own for the whole call; the
    // buffer length passed is the buffer's real length.
    let rc = unsafe {
        call(
            cname.as_ptr(),
            &mut entry,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    match (rc, result.is_null()) {
        (0, false) => Ok(entry),
        (0, true) => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no such {kind} in the {db} database"),
        )),
        (e, _) => Err(io::Error::from_raw_os_error(e)),
    }
}

/// `--user`: drop root for good. Must run after everything privileged is
/// open (listen sockets, pidfile, logs) and before any thread exists:
/// supplementary groups cleared, then the gid, then the uid; then verify
/// that the ids changed and that `setuid(0)` now fails (CERT POS36-C/37-C);
/// finally set `no_new_privs`.
pub(crate) fn drop_privileges(uid: libc::uid_t, gid: libc::gid_t) -> io::Result<()> {
    // SAFETY: setgroups with size 0 does not read the (null) list pointer.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain syscalls without pointers.
    if unsafe { libc::setgid(gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::setuid(uid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain syscalls without pointers.
    let (ruid, euid, rgid, egid) = unsafe {
        (
            libc::getuid(),
            libc::geteuid(),
            libc::getgid(),
            libc::getegid(),
        )
    };
    // SAFETY: getgroups with size 0 only returns the count.
    let ngroups = unsafe { libc::getgroups(0, std::ptr::null_mut()) };
    if ruid != uid || euid != uid || rgid != gid || egid != gid || ngroups > 1 {
        return Err(io::Error::other("ids did not change as requested"));
    }
    // SAFETY: as above; this must fail for a non-root target user.
    if uid != 0 && unsafe { libc::setuid(0) } == 0 {
        return Err(io::Error::other("setuid(0) still succeeds"));
    }
    // No regaining privileges through exec (setuid binaries, file caps),
    // e.g. from exec health checks.
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Ignore SIGHUP until the runtime installs its handler: a reload request
/// that arrives during start-up must not kill the process.
pub(crate) fn ignore_sighup() {
    // SAFETY: installs the kernel's SIG_IGN disposition; no Rust handler runs.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
}

/// SIGKILL a whole process group (an exec check and everything it
/// started). Errors (the group is already gone) are ignored.
pub(crate) fn kill_process_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        // Never signal our own group (0) or every process (-1).
        return;
    }
    // SAFETY: kill(2) takes plain integers and touches no memory of ours; a
    // negative pid targets exactly the process group `pgid`, which is > 1
    // (checked above), so it can neither hit our own group nor all processes.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

//! Where control sockets live.
//!
//! Directory: `$BALANCE_RUNDIR`, else `/run/balance` as root, else
//! `$XDG_RUNTIME_DIR/balance`, else `/tmp/balance-$UID`. File name: the
//! listener's bind address and port, `127.0.0.1:8080.sock`,
//! `0.0.0.0:33306.sock`, `[::]:33306.sock`, so `balance -b addr -c show port`
//! finds the instance started with the same `-b` and port. `--control PATH`
//! overrides the whole path.
//!
//! A shared directory (sticky and world-writable, like /tmp, or the
//! `/run/balance` that balance.fm creates with mode 1777 for its key files)
//! is used the way programs use /tmp: the run directory is a private
//! subdirectory in it, `balance-$UID` (mode 0700, owned by us, checked
//! without following symlinks, and never chmod-ed), so the original and
//! this balance run side by side. The client applies the same rule.
//!
//! The run directory is read from the environment only by [`run_dir`]:
//! the client calls it, and the server's boot calls it once and passes the
//! result down. Nothing here changes state but [`prepare_run_dir`].

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Whether `BALANCE_RUNDIR` is set (even empty): the user chose the run
/// directory, so `--user` does not move the instance to a subdirectory.
pub(crate) fn run_dir_from_env() -> bool {
    std::env::var_os("BALANCE_RUNDIR").is_some()
}

/// The run directory for control sockets (not created here): the base
/// directory, or our private subdirectory when the base is shared.
pub(crate) fn run_dir() -> PathBuf {
    private_in(&base_run_dir(), crate::sys::euid())
}

/// The configured run directory, before the shared-directory rule.
fn base_run_dir() -> PathBuf {
    run_dir_from(
        std::env::var_os("BALANCE_RUNDIR"),
        std::env::var_os("XDG_RUNTIME_DIR"),
        crate::sys::euid(),
    )
}

/// `base/balance-UID` when `base` is shared (see [`is_shared`]), else
/// `base`.
pub(crate) fn private_in(base: &Path, uid: u32) -> PathBuf {
    if is_shared(base) {
        base.join(format!("balance-{uid}"))
    } else {
        base.to_path_buf()
    }
}

/// A real directory (not a symlink), sticky and writable by others, owned
/// by root or by us: everyone may create entries in it, but only their
/// owner can remove or rename them, so a private subdirectory we own
/// stays ours. A world-writable directory without the sticky bit, or one
/// another user owns (its owner could rename our entry), is not shared: it
/// is refused as a run directory.
pub(crate) fn is_shared(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir).is_ok_and(|md| {
        let mode = md.permissions().mode();
        md.is_dir() && mode & 0o1002 == 0o1002 && (md.uid() == 0 || md.uid() == crate::sys::euid())
    })
}

fn run_dir_from(
    rundir: Option<std::ffi::OsString>,
    xdg: Option<std::ffi::OsString>,
    uid: u32,
) -> PathBuf {
    if let Some(d) = rundir.filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if uid == 0 {
        return PathBuf::from("/run/balance");
    }
    if let Some(x) = xdg.filter(|x| !x.is_empty()) {
        return Path::new(&x).join("balance");
    }
    PathBuf::from(format!("/tmp/balance-{uid}"))
}

/// `127.0.0.1:8080.sock`, `[::1]:8080.sock`. IPv4-mapped IPv6 addresses are
/// named like the IPv4 address.
pub(crate) fn socket_name(bind: SocketAddr) -> String {
    match bind.ip().to_canonical() {
        IpAddr::V4(v4) => format!("{v4}:{}.sock", bind.port()),
        IpAddr::V6(v6) => format!("[{v6}]:{}.sock", bind.port()),
    }
}

/// The default socket path in `run_dir` of the listener bound to `bind`.
pub(crate) fn default_path(run_dir: &Path, bind: SocketAddr) -> PathBuf {
    run_dir.join(socket_name(bind))
}

/// Whether `--control PATH` names the directory the listeners' sockets go
/// in (several listeners at start, or an existing directory) rather than
/// the one socket of a single listener. Decided once at start and kept:
/// a reload that changes the number of listeners must not move sockets.
pub(crate) fn control_is_dir(control: &Path, listeners: usize) -> bool {
    listeners > 1 || control.is_dir()
}

/// The socket path of the listener bound to `bind`: `--control PATH`
/// itself, or with `as_dir` (see [`control_is_dir`]) the derived name in
/// that directory; without `--control` the socket is in `run_dir`.
pub(crate) fn listener_path(
    control: Option<&Path>,
    run_dir: &Path,
    bind: SocketAddr,
    as_dir: bool,
) -> PathBuf {
    match control {
        Some(p) if !as_dir => p.to_path_buf(),
        Some(dir) => dir.join(socket_name(bind)),
        None => default_path(run_dir, bind),
    }
}

/// The socket names the client tries for `-b bind` and `port`, in order:
/// with no `-b`, the IPv4 wildcard's, then the IPv6 wildcard's. Never
/// empty.
pub(crate) fn socket_names(bind: Option<IpAddr>, port: u16) -> Vec<String> {
    match bind {
        Some(ip) => vec![socket_name(SocketAddr::new(ip, port))],
        None => vec![
            socket_name(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)),
            socket_name(SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)),
        ],
    }
}

/// Paths the client tries for `-b bind` and `port`, in order: with no `-b`,
/// the IPv4 wildcard's socket, then the IPv6 wildcard's (`-6`).
pub(crate) fn client_candidates(bind: Option<IpAddr>, port: u16) -> Vec<PathBuf> {
    let names = socket_names(bind, port);
    let base = base_run_dir();
    let own = private_in(&base, crate::sys::euid());
    let mut dirs = vec![own.clone()];
    if own != base {
        dirs.push(base);
    }
    candidates_in(&own, &dirs, &names)
}

/// The sockets of every bind address on `port` where the client looks
/// (our run directory, then one level down, as for
/// [`client_candidates`]), with the address each is named after: `-c show
/// PORT` without `-b` finds an instance bound to 127.0.0.1 when it is the
/// only one on that port.
pub(crate) fn port_sockets(port: u16) -> Vec<(PathBuf, IpAddr)> {
    let base = base_run_dir();
    let own = private_in(&base, crate::sys::euid());
    let mut dirs = vec![own.clone()];
    if own != base {
        dirs.push(base);
    }
    port_sockets_in(&own, &dirs, port)
}

fn port_sockets_in(dir: &Path, scan: &[PathBuf], port: u16) -> Vec<(PathBuf, IpAddr)> {
    let mut dirs = vec![dir.to_path_buf()];
    dirs.extend(subdirs_of(scan, dir));
    let mut out = Vec::new();
    for d in &dirs {
        let mut found: Vec<(PathBuf, IpAddr)> = std::fs::read_dir(d)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let ip = bind_of_name(e.file_name().to_str()?, port)?;
                Some((e.path(), ip))
            })
            .collect();
        found.sort();
        out.extend(found);
    }
    out
}

/// The directories inside each of `scan` but `dir`, sorted, each once.
fn subdirs_of(scan: &[PathBuf], dir: &Path) -> Vec<PathBuf> {
    let mut subdirs: Vec<PathBuf> = scan
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| p != dir)
        .collect();
    subdirs.sort();
    subdirs.dedup();
    subdirs
}

/// The bind address of socket file `name` (see [`socket_name`]) if it is
/// for `port`.
fn bind_of_name(name: &str, port: u16) -> Option<IpAddr> {
    let (addr, p) = name.strip_suffix(".sock")?.rsplit_once(':')?;
    if p.parse::<u16>().ok()? != port {
        return None;
    }
    let addr = addr
        .strip_prefix('[')
        .and_then(|a| a.strip_suffix(']'))
        .unwrap_or(addr);
    addr.parse().ok()
}

/// `dir/NAME` for each name, then `D/*/NAME` for each directory D of
/// `scan`: instances that run as another user (`--user`, a systemd unit
/// with `RuntimeDirectory=balance/%i`) keep their socket in a subdirectory
/// of the run directory, or in their own private directory of a shared
/// one (`balance-UID`).
fn candidates_in(dir: &Path, scan: &[PathBuf], names: &[String]) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    let subdirs = subdirs_of(scan, dir);
    for n in names {
        out.extend(subdirs.iter().map(|d| d.join(n)));
    }
    out
}

/// The run directory of an instance that drops to `user` after starting as
/// root: a subdirectory of root's run directory `base`, so root's
/// `balance -c` still finds it (see [`client_candidates`]).
pub(crate) fn user_run_dir(base: &Path, user: &str) -> PathBuf {
    base.join(user.replace(['/', '\0'], "_"))
}

/// Create the default run directory 0700 if missing, and refuse one that is
/// a symlink, not a directory, owned by another user, or writable by others.
pub(crate) fn prepare_run_dir(dir: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        Err(e) => return Err(e),
        Ok(_) => {}
    }
    check_dir(dir)
}

/// The directory checks of [`prepare_run_dir`], without creating anything.
pub(crate) fn check_dir(dir: &Path) -> io::Result<()> {
    let md = std::fs::symlink_metadata(dir)?;
    let bad = |why: &str| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("run directory {}: {why}", dir.display()),
        ))
    };
    if md.file_type().is_symlink() {
        return bad("is a symlink; refusing it");
    }
    if !md.is_dir() {
        return bad("is not a directory");
    }
    let me = crate::sys::euid();
    if md.uid() != me {
        return bad(&format!(
            "is owned by uid {}, not by us (uid {me})",
            md.uid()
        ));
    }
    if md.permissions().mode() & 0o022 != 0 {
        return bad(&format!(
            "is writable by group or others (mode {:o}); use 0700 or 0750",
            md.permissions().mode() & 0o7777
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;

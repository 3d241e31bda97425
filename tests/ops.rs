//! Running where the originals ran: a shared run directory,
//! daemon start-up errors on the terminal, systemd (notify, journald
//! priorities, the unit) and `--check` meaning "would start".

use crate::common;

use std::net::SocketAddr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(15);

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn mode_of(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}

/// `balance -b 127.0.0.1 -c CMD PORT` with `BALANCE_RUNDIR=run_dir`.
fn ctl_in(run_dir: &Path, port: u16, cmd: &str) -> Output {
    Command::new(BIN)
        .args(["-b", "127.0.0.1", "-c", cmd, &port.to_string()])
        .env("BALANCE_RUNDIR", run_dir)
        .stdin(Stdio::null())
        .output()
        .expect("run balance -c")
}

fn listener_yaml(name: &str, bind: &str, channel: SocketAddr) -> String {
    format!(
        "  - name: {name}\n    bind: \"{bind}\"\n    groups:\n      - channels: [\"{channel}\"]\n"
    )
}

// ------------------------------------------------------- 1. run directory

#[test]
fn a_sticky_world_writable_run_dir_gets_a_private_subdir_the_client_finds() {
    let a = Backend::tagged("A");
    let tmp = TempDir::new("shared");
    let run = tmp.join("run");
    std::fs::create_dir(&run).unwrap();
    // What balance.fm leaves behind: its key file in a 1777 directory.
    chmod(&run, 0o1777);
    std::fs::write(run.join("balance.fm.3306.0.0.0.0"), b"").unwrap();
    let bal = Balance::cli(&[a.channel()]).run_dir(&run).start();
    assert_eq!(tag_of_new_client(bal.addr).unwrap().0, "A");
    // The shared directory is left as the original needs it...
    assert_eq!(mode_of(&run), 0o1777);
    // ...and ours is a private directory inside, owned by us.
    let own = run.join(format!("balance-{}", uid()));
    let md = std::fs::symlink_metadata(&own).expect("private run dir");
    assert!(md.is_dir());
    assert_eq!(md.uid(), uid());
    assert_eq!(md.permissions().mode() & 0o7777, 0o700);
    // The client finds the instance with no extra flag.
    let out = ctl_in(&run, bal.port(), "show");
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("GRP Type"));
}

#[test]
fn a_planted_symlink_in_a_shared_run_dir_is_refused() {
    let tmp = TempDir::new("shared-link");
    let run = tmp.join("run");
    std::fs::create_dir(&run).unwrap();
    chmod(&run, 0o1777);
    std::fs::create_dir(tmp.join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(
        tmp.join("elsewhere"),
        run.join(format!("balance-{}", uid())),
    )
    .unwrap();
    let port = free_port(LOCALHOST_V4);
    let mut cmd = Command::new(BIN);
    cmd.args(["-f", "-b", "127.0.0.1", &port.to_string(), "127.0.0.1:9"])
        .env("BALANCE_RUNDIR", &run);
    let (code, err) = run_cmd_to_exit(cmd, WAIT);
    assert_eq!(code, Some(EXIT_OSERR), "{err}");
    assert!(err.contains("symlink"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn user_option_in_a_root_owned_shared_run_dir_changes_no_mode() {
    if !is_root() {
        skip_because("not root");
        return;
    }
    let a = Backend::tagged("A");
    let tmp = TempDir::new("shared-user");
    let run = tmp.join("run");
    std::fs::create_dir(&run).unwrap();
    chmod(&run, 0o1777);
    // `nobody` must reach the run directory through the temp dir.
    chmod(tmp.path(), 0o711);
    let bal = Balance::cli(&[a.channel()])
        .opts(&["--user", "nobody"])
        .env("BALANCE_RUNDIR", run.to_str().unwrap())
        .start();
    let mut last = None;
    let _ = wait_until("the control socket", WAIT, || {
        let out = ctl_in(&run, bal.port(), "show");
        let ok = out.status.success();
        last = Some(out);
        ok
    });
    let out = last.expect("asked once");
    assert!(out.status.success(), "{out:?}\n{}", bal.stderr());
    assert_eq!(mode_of(&run), 0o1777, "the shared directory was changed");
    let uid_nobody = std::fs::symlink_metadata(&run)
        .ok()
        .and_then(|_| std::fs::read_dir(&run).ok())
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy() != "balance-0")
        .map(|e| e.metadata().unwrap())
        .find(|m| m.is_dir());
    let md = uid_nobody.expect("the dropped instance's private directory");
    assert_ne!(md.uid(), 0);
    assert_eq!(md.permissions().mode() & 0o7777, 0o700);
}

// -------------------------------------------------------- 2. daemon mode

fn daemon_args<'a>(port: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["-b", "127.0.0.1"];
    v.extend_from_slice(extra);
    v.extend([port, "127.0.0.1:9"]);
    v
}

#[test]
fn daemon_errors_after_the_fork_reach_the_terminal_with_their_exit_code() {
    let tmp = TempDir::new("daemon-err");
    let log = tmp.join("d.log");
    let log = log.to_str().unwrap();
    let cases: [(&[&str], &str); 2] = [
        (
            &["--log-file", log, "--pidfile", "/nonexistent/dir/x.pid"],
            "pidfile",
        ),
        (&["--log-file", "/nonexistent/dir/x.log"], "log file"),
    ];
    for (extra, word) in cases {
        let port = free_port(LOCALHOST_V4);
        let ps = port.to_string();
        let mut cmd = Command::new(BIN);
        cmd.args(daemon_args(&ps, extra))
            .env("BALANCE_RUNDIR", tmp.path());
        let (code, err) = run_cmd_to_exit(cmd, WAIT);
        assert_eq!(code, Some(EXIT_OSERR), "{extra:?}: {err}");
        assert!(err.contains(word), "{extra:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{extra:?}: {err}");
        // No daemon stays behind: the port is free again.
        let freed = wait_until("the port to be free", WAIT, || {
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok()
        });
        assert!(freed.is_ok(), "{extra:?}: a process still holds {port}");
    }
}

#[test]
fn a_daemon_parent_exits_0_only_once_the_child_serves() {
    let a = Backend::tagged("A");
    let tmp = TempDir::new("daemon-ok");
    for _ in 0..5 {
        let port = free_port(LOCALHOST_V4);
        let ps = port.to_string();
        let pidfile = tmp.join("d.pid");
        let log = tmp.join("d.log");
        let mut cmd = Command::new(BIN);
        let ch = a.channel();
        cmd.args([
            "-b",
            "127.0.0.1",
            "--pidfile",
            pidfile.to_str().unwrap(),
            "--log-file",
            log.to_str().unwrap(),
            &ps,
            &ch,
        ])
        .env("BALANCE_RUNDIR", tmp.path());
        let (code, err) = run_cmd_to_exit(cmd, WAIT);
        if code == Some(EXIT_OSERR) && err.contains("cannot listen") {
            continue; // port taken meanwhile
        }
        assert_eq!(code, Some(0), "{err}");
        assert!(err.is_empty(), "{err}");
        // No wait: when the parent has exited 0, the daemon serves.
        let pid = std::fs::read_to_string(&pidfile).expect("pidfile written before the exit");
        let daemon = Daemon {
            pid: pid.trim().parse().expect("a pid"),
        };
        let (tag, _) = tag_of_new_client(local(port)).expect("the daemon serves");
        assert_eq!(tag, "A");
        daemon.signal(libc::SIGTERM);
        assert!(daemon.wait_exit(WAIT));
        return;
    }
    panic!("no free port");
}

#[test]
fn a_daemon_without_syslog_says_so_on_the_terminal() {
    if std::os::unix::net::UnixDatagram::unbound()
        .and_then(|s| s.connect("/dev/log"))
        .is_ok()
    {
        skip_because("a syslog daemon listens on /dev/log");
        return;
    }
    let tmp = TempDir::new("daemon-nolog");
    let pidfile = tmp.join("d.pid");
    let port = free_port(LOCALHOST_V4);
    let ps = port.to_string();
    let mut cmd = Command::new(BIN);
    cmd.args(daemon_args(&ps, &["--pidfile", pidfile.to_str().unwrap()]))
        .env("BALANCE_RUNDIR", tmp.path());
    let (code, err) = run_cmd_to_exit(cmd, WAIT);
    let _daemon = Daemon::from_pidfile(&pidfile, WAIT);
    assert_eq!(code, Some(0), "{err}");
    assert!(err.contains("warning: no syslog"), "{err}");
    assert!(err.contains("--log-file"), "{err}");
}

// ------------------------------------------------------------ 3. systemd

/// A datagram socket standing in for systemd's notify socket.
struct NotifySock {
    sock: UnixDatagram,
    env: String,
    _dir: TempDir,
}

impl NotifySock {
    fn path() -> NotifySock {
        let dir = TempDir::new("notify");
        let p = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&p).expect("bind notify socket");
        NotifySock {
            sock,
            env: p.to_str().unwrap().to_string(),
            _dir: dir,
        }
    }

    fn abstract_name() -> NotifySock {
        use std::os::linux::net::SocketAddrExt;
        let name = format!(
            "balance-test-notify-{}-{}",
            std::process::id(),
            free_port(LOCALHOST_V4)
        );
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let sock = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        NotifySock {
            sock,
            env: format!("@{name}"),
            _dir: TempDir::new("notify"),
        }
    }

    /// The next datagram (bounded wait).
    fn next(&self) -> String {
        self.sock.set_read_timeout(Some(WAIT)).unwrap();
        let mut buf = [0u8; 4096];
        let n = self.sock.recv(&mut buf).expect("a notify datagram in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

fn notify_sequence(ns: NotifySock) {
    let a = Backend::tagged("A");
    let tmp = TempDir::new("notify-run");
    let bal = Balance::config(1, |p| {
        format!(
            "listeners:\n{}",
            listener_yaml("n", &format!("127.0.0.1:{}", p[0]), a.addr)
        )
    })
    .run_dir(tmp.path())
    .env("NOTIFY_SOCKET", &ns.env)
    .start();
    let first = ns.next();
    assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
    // A reload through the control socket...
    bal.ctl("reload");
    let r = ns.next();
    assert!(r.lines().any(|l| l == "RELOADING=1"), "{r:?}");
    assert!(r.lines().any(|l| l.starts_with("MONOTONIC_USEC=")), "{r:?}");
    assert!(ns.next().lines().any(|l| l == "READY=1"));
    // ...and by SIGHUP.
    bal.signal(libc::SIGHUP);
    assert!(ns.next().lines().any(|l| l == "RELOADING=1"));
    assert!(ns.next().lines().any(|l| l == "READY=1"));
    bal.signal(libc::SIGTERM);
    assert!(ns.next().lines().any(|l| l == "STOPPING=1"));
}

#[test]
fn systemd_hears_ready_reloading_and_stopping_on_a_path_socket() {
    notify_sequence(NotifySock::path());
}

#[test]
fn systemd_hears_ready_on_an_abstract_notify_socket() {
    notify_sequence(NotifySock::abstract_name());
}

#[test]
fn a_rejected_reload_exits_1_and_logs_an_error_with_journald_priority() {
    let a = Backend::tagged("A");
    let tmp = TempDir::new("journal");
    let bal = Balance::config(1, |p| {
        format!(
            "listeners:\n{}",
            listener_yaml("j", &format!("127.0.0.1:{}", p[0]), a.addr)
        )
    })
    .run_dir(tmp.path())
    .journal_stream()
    .start();
    std::fs::write(bal.config_path(), "listeners: [oops\n").unwrap();
    let out = bal.ctl_out("reload");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    bal.wait_running("the rejected reload in the log", || {
        bal.has("reload rejected")
    });
    let log = bal.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("reload rejected"))
        .unwrap_or_default();
    assert!(line.starts_with("<3>"), "{line:?}");
    let listening = log
        .lines()
        .find(|l| l.contains("listening"))
        .unwrap_or_default();
    assert!(listening.starts_with("<6>"), "{listening:?}");
    assert!(log.lines().all(|l| l.starts_with('<')), "{log}");
}

#[test]
fn without_journal_stream_log_lines_carry_no_priority_prefix() {
    let a = Backend::tagged("A");
    let bal = Balance::cli(&[a.channel()])
        .env("JOURNAL_STREAM", "1:1")
        .start();
    let log = bal.stderr();
    assert!(!log.is_empty());
    assert!(log.lines().all(|l| !l.starts_with('<')), "{log}");
}

/// The unit as installed (binary path replaced by the one under test)
/// passes `systemd-analyze verify`.
#[test]
fn the_systemd_unit_verifies() {
    let ok = Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        skip_without("systemd-analyze (Debian package systemd)");
        return;
    }
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/contrib/balance@.service"
    ))
    .unwrap();
    assert!(unit.contains("Type=notify"), "{unit}");
    assert!(unit.contains("-c reload"), "{unit}");
    let tmp = TempDir::new("unit");
    let path = tmp.join("balance@test.service");
    std::fs::write(&path, unit.replace("/usr/bin/balance", BIN)).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// -------------------------------------------------------------- 10. --check

/// `balance --config FILE --check` (extra args after): exit code, stderr.
fn check(yaml: &str, run_dir: &Path, extra: &[&str]) -> (Option<i32>, String) {
    let tmp = TempDir::new("check");
    let f = tmp.join("b.yaml");
    std::fs::write(&f, yaml).unwrap();
    let mut cmd = Command::new(BIN);
    cmd.args(["--config", f.to_str().unwrap(), "--check"])
        .args(extra)
        .env("BALANCE_RUNDIR", run_dir);
    run_cmd_to_exit(cmd, WAIT)
}

#[test]
fn check_refuses_overlapping_binds_and_metrics() {
    let tmp = TempDir::new("check-overlap");
    let ch: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let p = free_port(LOCALHOST_V4);
    let overlapping = [
        format!(
            "listeners:\n{}{}",
            listener_yaml("any", &format!("0.0.0.0:{p}"), ch),
            listener_yaml("lo", &format!("127.0.0.1:{p}"), ch)
        ),
        format!(
            "listeners:\n{}{}",
            listener_yaml("v6", &format!("[::]:{p}"), ch),
            listener_yaml("v4", &format!("0.0.0.0:{p}"), ch)
        ),
        format!(
            "metrics: \"0.0.0.0:{p}\"\nlisteners:\n{}",
            listener_yaml("m", &format!("127.0.0.1:{p}"), ch)
        ),
    ];
    for yaml in &overlapping {
        let (code, err) = check(yaml, tmp.path(), &[]);
        assert_eq!(code, Some(64), "{yaml}\n{err}");
        assert!(err.contains("overlaps"), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    // Different ports, or addresses that do not cover each other, pass.
    let fine = format!(
        "listeners:\n{}{}",
        listener_yaml("a", &format!("127.0.0.1:{p}"), ch),
        listener_yaml("b", &format!("127.0.0.2:{p}"), ch)
    );
    let (code, err) = check(&fine, tmp.path(), &[]);
    assert_eq!(code, Some(0), "{err}");
}

#[test]
fn check_finds_a_live_instance_and_a_bad_state_file_directory() {
    let a = Backend::tagged("A");
    let run = TempDir::new("check-live");
    let bal = Balance::config(1, |p| {
        format!(
            "listeners:\n{}",
            listener_yaml("l", &format!("127.0.0.1:{}", p[0]), a.addr)
        )
    })
    .run_dir(run.path())
    .start();
    let yaml = std::fs::read_to_string(bal.config_path()).unwrap();
    let (code, err) = check(&yaml, run.path(), &[]);
    assert_eq!(code, Some(EXIT_OSERR), "{err}");
    assert!(err.contains("another balance instance"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // The same file on another port, with a state file nowhere.
    let other = TempDir::new("check-state");
    let p = free_port(LOCALHOST_V4);
    let yaml = format!(
        "state_file: /nonexistent/dir/state.json\nlisteners:\n{}",
        listener_yaml("s", &format!("127.0.0.1:{p}"), a.addr)
    );
    let (code, err) = check(&yaml, other.path(), &[]);
    assert_eq!(code, Some(EXIT_OSERR), "{err}");
    assert!(err.contains("state-file"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    // --check creates nothing.
    assert_eq!(std::fs::read_dir(other.path()).unwrap().count(), 0);
}

/// READY=1 comes only once the control socket is bound: a unit's
/// `ExecReload` (`balance -c reload`) right after start must find it. The
/// process is started by hand (the harness waits for readiness itself).
#[test]
fn ready_is_sent_only_once_the_control_socket_is_bound() {
    let a = Backend::tagged("A");
    for _ in 0..5 {
        let ns = NotifySock::path();
        let run = TempDir::new("ready-ctl");
        let port = free_port(LOCALHOST_V4);
        let mut child = Command::new(BIN)
            .args([
                "-f",
                "-b",
                "127.0.0.1",
                &port.to_string(),
                &a.addr.to_string(),
            ])
            .env("NOTIFY_SOCKET", &ns.env)
            .env("BALANCE_RUNDIR", run.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn balance");
        let first = ns.next();
        let sock = run.path().join(format!("127.0.0.1:{port}.sock"));
        let present = std::fs::symlink_metadata(&sock).is_ok();
        kill(child.id(), libc::SIGKILL);
        let _ = child.wait();
        assert!(first.lines().any(|l| l == "READY=1"), "{first:?}");
        assert!(present, "READY=1 before {} was bound", sock.display());
    }
}

/// The quick start shows the build's progress and builds what the README's
/// install step builds (same command, so the same profile, features and
/// target directory): installing after the demo rebuilds nothing.
/// (`--example` would build the crate again with the dev-dependencies'
/// features.)
#[test]
fn the_demo_builds_what_the_install_step_builds_and_shows_progress() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let demo = std::fs::read_to_string(root.join("contrib/demo.sh")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let builds: Vec<&str> = demo
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("cargo "))
        .collect();
    assert!(!builds.is_empty(), "the demo builds with cargo");
    for b in builds {
        let words: Vec<&str> = b.split_whitespace().collect();
        for bad in ["--quiet", "-q", "--example", "--examples"] {
            assert!(!words.contains(&bad), "demo: {b:?} has {bad}");
        }
        assert!(
            readme.lines().any(|l| l.trim() == b),
            "demo: {b:?} is not the README's install command"
        );
    }
}

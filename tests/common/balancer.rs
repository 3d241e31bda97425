//! The balancer under test: [`Launch`] builds a `balance` command line
//! (command-line channels or a YAML file, env vars, control socket or run
//! dir, metrics port, a wrapper such as `prlimit`), starts it in the
//! foreground on free ports and waits until it serves; [`Balance`] is the
//! running process (stdout/stderr captured to files, signals, exit, the
//! control client, /proc probes), stopped on drop.

use std::fs::File;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::thread;
use std::time::Duration;

use super::proc::{cpu_ticks, fd_targets, kill, rss_kib};
use super::{
    BIN, LOCALHOST_V4, TempDir, connect, free_port, private_run_dir, tag_of_new_client, wait_for,
    wait_until,
};

/// Exit code for a port already in use (EX_OSERR).
pub const EXIT_OSERR: i32 = 71;
/// How long a starting balance may take to serve.
pub const START_TIMEOUT: Duration = Duration::from_secs(15);
/// Attempts on fresh ports when a port was taken between the pick and
/// balance's bind.
const START_ATTEMPTS: usize = 10;

type WriteConfig<'a> = Box<dyn FnMut(&[u16]) -> String + 'a>;

/// How to start balance. `Balance::cli` / `Balance::config` make one.
pub struct Launch<'a> {
    wrapper: Vec<String>,
    opts: Vec<String>,
    bind: Option<IpAddr>,
    channels: Vec<String>,
    /// Listener ports to pick, and the YAML file written from them.
    config: Option<(usize, WriteConfig<'a>)>,
    port: Option<u16>,
    metrics: bool,
    env: Vec<(String, String)>,
    env_remove: Vec<String>,
    control: Option<PathBuf>,
    run_dir: Option<PathBuf>,
    journal_stream: bool,
}

impl<'a> Launch<'a> {
    fn new() -> Launch<'a> {
        Launch {
            wrapper: Vec::new(),
            opts: Vec::new(),
            bind: Some(LOCALHOST_V4),
            channels: Vec::new(),
            config: None,
            port: None,
            metrics: false,
            env: Vec::new(),
            env_remove: Vec::new(),
            control: None,
            run_dir: None,
            journal_stream: false,
        }
    }

    /// More options (before the port; balance also takes them after it).
    pub fn opts(mut self, opts: &[&str]) -> Self {
        self.opts.extend(opts.iter().map(|o| o.to_string()));
        self
    }

    /// `-b IP` (the default is 127.0.0.1).
    pub fn bind(mut self, ip: IpAddr) -> Self {
        self.bind = Some(ip);
        self
    }

    /// No `-b`: balance listens on the wildcard; the tests reach it on
    /// 127.0.0.1.
    pub fn no_bind(mut self) -> Self {
        self.bind = None;
        self
    }

    /// Run balance under a command (`prlimit …`, `unshare … sh -c '…
    /// exec "$@"' sh`): balance's path and arguments follow it.
    pub fn wrapper(mut self, w: &[&str]) -> Self {
        self.wrapper = w.iter().map(|s| s.to_string()).collect();
        self
    }

    /// Listen on this port (a restart on the same port) instead of a free one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// `--metrics 127.0.0.1:M` on a free port M.
    pub fn metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn env_remove(mut self, key: &str) -> Self {
        self.env_remove.push(key.to_string());
        self
    }

    /// `--control PATH`; the start then also waits for the socket to answer.
    pub fn control(mut self, path: &Path) -> Self {
        self.control = Some(path.to_path_buf());
        self
    }

    /// The default control socket, under `BALANCE_RUNDIR=DIR`; the start
    /// then also waits for the socket to answer.
    pub fn run_dir(mut self, dir: &Path) -> Self {
        self.run_dir = Some(dir.to_path_buf());
        self
    }

    /// Pretend stderr is the journal's stream: `JOURNAL_STREAM` names the
    /// stderr file's device and inode, as systemd sets it.
    pub fn journal_stream(mut self) -> Self {
        self.journal_stream = true;
        self
    }

    /// Start in the foreground and wait until every port is bound (and the
    /// control socket answers, when one was asked for). A port taken
    /// meanwhile means another try on fresh ports.
    pub fn start(mut self) -> Balance {
        let mut last_err = String::new();
        for _ in 0..START_ATTEMPTS {
            let b = self.spawn();
            match b.wait_ready() {
                Ok(()) => return b,
                Err(Some(st)) if st.code() == Some(EXIT_OSERR) => last_err = b.stderr(),
                Err(Some(st)) => panic!("balance exited at start ({st}): {}", b.stderr()),
                Err(None) => panic!("balance not ready after {START_TIMEOUT:?}: {}", b.stderr()),
            }
        }
        panic!("could not start balance on free ports: {last_err}");
    }

    fn spawn(&mut self) -> Balance {
        let ip = self.bind.unwrap_or(LOCALHOST_V4);
        let dir = TempDir::new("balance");
        let mut cmd = match self.wrapper.split_first() {
            Some((w, rest)) => {
                let mut c = Command::new(w);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        cmd.arg("-f");
        let mut wait_ports = Vec::new();
        let mut ports = Vec::new();
        let mut config_path = None;
        if let Some((n, write)) = &mut self.config {
            ports = (0..*n).map(|_| free_port(ip)).collect();
            let path = dir.path().join("balance.yaml");
            let text = write(&ports);
            std::fs::write(&path, &text).expect("write config file");
            // The ports the file binds (listeners and metrics).
            wait_ports = ports
                .iter()
                .copied()
                .filter(|p| text.contains(&format!("127.0.0.1:{p}\"")))
                .collect();
            cmd.arg("--config").arg(&path);
            config_path = Some(path);
        }
        cmd.args(&self.opts);
        let mut metrics_port = None;
        if self.metrics {
            let mp = free_port(LOCALHOST_V4);
            cmd.args(["--metrics", &format!("127.0.0.1:{mp}")]);
            wait_ports.push(mp);
            metrics_port = Some(mp);
        }
        if self.config.is_none() {
            let port = self.port.unwrap_or_else(|| free_port(ip));
            if let Some(ip) = self.bind {
                cmd.args(["-b", &ip.to_string()]);
            }
            cmd.arg(port.to_string()).args(&self.channels);
            wait_ports.insert(0, port);
            ports = vec![port];
        }
        if let Some(c) = &self.control {
            cmd.arg("--control").arg(c);
        }
        if let Some(d) = &self.run_dir {
            cmd.env("BALANCE_RUNDIR", d);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        for k in &self.env_remove {
            cmd.env_remove(k);
        }
        let stdout_path = dir.path().join("stdout");
        let stderr_path = dir.path().join("stderr");
        let stderr = File::create(&stderr_path).expect("create stderr file");
        if self.journal_stream {
            use std::os::unix::fs::MetadataExt;
            let md = stderr.metadata().expect("stat stderr file");
            cmd.env("JOURNAL_STREAM", format!("{}:{}", md.dev(), md.ino()));
        }
        cmd.stdin(Stdio::null())
            .stdout(File::create(&stdout_path).expect("create stdout file"))
            .stderr(stderr);
        let child = cmd.spawn().expect("spawn balance");
        let port = ports.first().copied().unwrap_or(0);
        let sock = match (&self.control, &self.run_dir) {
            (Some(c), _) => Some(c.clone()),
            (None, Some(d)) => Some(private_run_dir(d).join(format!("{ip}:{port}.sock"))),
            (None, None) => None,
        };
        Balance {
            child: Mutex::new((child, None)),
            addr: SocketAddr::new(ip, port),
            ports,
            wait_ports,
            metrics_port,
            config_path,
            sock,
            run_dir: self.run_dir.clone(),
            stdout_path,
            stderr_path,
            dir,
        }
    }
}

/// A running `balance -f`, stopped on drop (SIGTERM, then SIGKILL after
/// 1 s); a panic in its log fails the test.
pub struct Balance {
    child: Mutex<(Child, Option<ExitStatus>)>,
    /// The (first) listener: `-b`'s address, 127.0.0.1 without `-b`.
    pub addr: SocketAddr,
    ports: Vec<u16>,
    wait_ports: Vec<u16>,
    metrics_port: Option<u16>,
    config_path: Option<PathBuf>,
    sock: Option<PathBuf>,
    run_dir: Option<PathBuf>,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    dir: TempDir,
}

impl Balance {
    /// `balance -f -b 127.0.0.1 OPTS PORT CHANNELS…`, ready to accept.
    pub fn start(opts: &[&str], channels: &[String]) -> Balance {
        Balance::cli(channels).opts(opts).start()
    }

    /// Channels on the command line: `-f -b 127.0.0.1 OPTS PORT CHANNELS…`.
    pub fn cli<'a>(channels: &[String]) -> Launch<'a> {
        let mut l = Launch::new();
        l.channels = channels.to_vec();
        l
    }

    /// A YAML file: `-f --config FILE OPTS`, with `write(ports)` as the
    /// file for `ports` free ports. Every port that appears in the file as
    /// `127.0.0.1:P"` must be bound before the start returns.
    pub fn config<'a>(ports: usize, write: impl FnMut(&[u16]) -> String + 'a) -> Launch<'a> {
        let mut l = Launch::new();
        l.config = Some((ports, Box::new(write)));
        l
    }

    /// Ready: each port logged as bound, and the control socket answers.
    /// `Err(status)` if balance exited first, `Err(None)` on timeout.
    fn wait_ready(&self) -> Result<(), Option<ExitStatus>> {
        let ready = wait_for("balance to serve", START_TIMEOUT, || {
            if let Some(st) = self.try_exit() {
                return Some(Err(st));
            }
            let log = self.stderr();
            // Each port logged as bound and, where the log is this stderr,
            // the start's last line ("ready": control sockets bound too).
            let bound = self.wait_ports.iter().all(|p| logged_bind(&log, *p))
                && (self.wait_ports.is_empty() || logged_ready(&log));
            let control = match &self.sock {
                None => true,
                Some(s) => s.exists() && self.ctl_out("version").status.success(),
            };
            (bound && control).then_some(Ok(()))
        });
        match ready {
            Ok(Ok(())) => Ok(()),
            Ok(Err(st)) => Err(Some(st)),
            Err(_) => Err(None),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.lock().expect("child").0.id()
    }

    /// The (first) listener's port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The ports picked for the config file (or the one listener port).
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    pub fn metrics_port(&self) -> u16 {
        self.metrics_port.expect("started with .metrics()")
    }

    pub fn config_path(&self) -> &Path {
        self.config_path
            .as_deref()
            .expect("started with a config file")
    }

    /// The control socket (`--control`, or the default one in the run dir).
    pub fn sock(&self) -> &Path {
        self.sock.as_deref().expect("started with a control socket")
    }

    /// This instance's scratch directory (removed with it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything balance wrote to stdout so far (`-p`).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Everything balance wrote to stderr (its log) so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Whether a log line contains `s`.
    pub fn has(&self, s: &str) -> bool {
        self.stderr().contains(s)
    }

    /// Log lines containing `s`.
    pub fn count(&self, s: &str) -> usize {
        self.stderr().lines().filter(|l| l.contains(s)).count()
    }

    /// Wait up to `limit` for the `n`th log line containing `s`.
    pub fn wait_log(&self, s: &str, n: usize, limit: Duration) -> bool {
        wait_until(s, limit, || self.count(s) >= n).is_ok()
    }

    /// Poll `cond` for up to [`START_TIMEOUT`] while balance runs; panics
    /// with the log on timeout or if balance exits.
    pub fn wait_running(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let r = wait_for(what, START_TIMEOUT, || {
            if cond() {
                return Some(Ok(()));
            }
            self.try_exit().map(Err)
        });
        match r {
            Ok(Ok(())) => {}
            Ok(Err(st)) => panic!(
                "balance exited ({st}) while waiting for {what}:\n{}",
                self.stderr()
            ),
            Err(e) => panic!("{e}:\n{}", self.stderr()),
        }
    }

    pub fn signal(&self, sig: libc::c_int) {
        kill(self.pid(), sig);
    }

    /// The exit status if balance has exited (without waiting).
    pub fn try_exit(&self) -> Option<ExitStatus> {
        let mut g = self.child.lock().expect("child");
        if g.1.is_none() {
            g.1 = g.0.try_wait().ok().flatten();
        }
        g.1
    }

    /// Wait up to `limit` for the process to exit.
    pub fn wait_exit(&self, limit: Duration) -> Option<ExitStatus> {
        wait_for("balance to exit", limit, || self.try_exit()).ok()
    }

    /// SIGTERM and wait for the exit (bounded).
    pub fn terminate(&self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(START_TIMEOUT)
            .unwrap_or_else(|| panic!("balance did not exit on SIGTERM: {}", self.stderr()))
    }

    /// SIGKILL and reap.
    pub fn kill(&self) {
        let mut g = self.child.lock().expect("child");
        if g.1.is_none() {
            let _ = g.0.kill();
            g.1 = g.0.wait().ok();
        }
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// `balance -b 127.0.0.1 -c CMD [--control SOCK] PORT` (with the run
    /// dir in the environment when there is one).
    pub fn ctl_out(&self, cmd: &str) -> Output {
        self.ctl_out_on(self.port(), cmd)
    }

    /// [`Balance::ctl_out`] for the listener on `port`.
    pub fn ctl_out_on(&self, port: u16, cmd: &str) -> Output {
        let mut c = Command::new(BIN);
        c.args(["-b", "127.0.0.1", "-c", cmd]);
        if let Some(s) = &self.sock {
            c.arg("--control").arg(s);
        }
        if let Some(d) = &self.run_dir {
            c.env("BALANCE_RUNDIR", d);
        }
        c.arg(port.to_string())
            .stdin(Stdio::null())
            .output()
            .expect("run balance -c")
    }

    /// Run a control command that must succeed; its stdout.
    pub fn ctl(&self, cmd: &str) -> String {
        let o = self.ctl_out(cmd);
        assert!(
            o.status.success(),
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).expect("utf-8 answer")
    }

    /// `show json`, parsed.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.ctl("show json")).expect("show json parses")
    }

    /// Resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// utime + stime in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks(self.pid())
    }

    /// Open fds other than pipes. Pipes are the splice path's pool: kept
    /// empty for reuse after a connection ends and bounded by the pool's cap
    /// (tests/relay.rs pins that bound), so they are not a leak.
    pub fn fd_count(&self) -> usize {
        fd_targets(self.pid())
            .iter()
            .filter(|t| !t.starts_with("pipe:"))
            .count()
    }

    /// Pipe fds of the process.
    pub fn pipe_fds(&self) -> usize {
        fd_targets(self.pid())
            .iter()
            .filter(|t| t.starts_with("pipe:"))
            .count()
    }

    /// The fd count once one client has been served and closed (so every
    /// lazily created fd exists) and the count is stable: the baseline a
    /// test returns to.
    pub fn baseline_fds(&self) -> usize {
        let pre = self.stable_fds();
        if let Ok((_, s)) = tag_of_new_client(self.addr) {
            drop(s);
        }
        // Back to the count before the warm-up, unless the warm-up created
        // a lasting fd (then the new stable count is the baseline).
        wait_for("fds back after the warm-up", Duration::from_secs(2), || {
            (self.fd_count() <= pre).then_some(pre)
        })
        .unwrap_or_else(|_| self.stable_fds())
    }

    /// The fd count once it no longer changes (no client needed).
    pub fn stable_fds(&self) -> usize {
        let mut last = None;
        wait_for("a stable fd count", Duration::from_secs(5), || {
            thread::sleep(Duration::from_millis(50));
            let now = self.fd_count();
            let stable = last == Some(now);
            last = Some(now);
            stable.then_some(now)
        })
        .unwrap_or_else(|_| self.fd_count())
    }

    /// Assert the fd count returns to `base` (or below) within 2 s (no
    /// leaked sockets).
    pub fn assert_fds_return_to(&self, base: usize) {
        let back = wait_until("fds back at baseline", Duration::from_secs(2), || {
            self.fd_count() <= base
        });
        assert!(
            back.is_ok(),
            "fds: {} now, {base} at baseline (leak?)",
            self.fd_count()
        );
    }
}

impl Drop for Balance {
    fn drop(&mut self) {
        if self.try_exit().is_none() {
            self.signal(libc::SIGTERM);
            // A second's chance, not a promise waited for (so not
            // stretched by the load): live connections may hold it longer.
            let end = std::time::Instant::now() + Duration::from_secs(1);
            while self.try_exit().is_none() && std::time::Instant::now() < end {
                thread::sleep(super::POLL);
            }
            if self.try_exit().is_none() {
                self.kill();
            }
        }
        let err = self.stderr();
        if err.contains("panicked") && !thread::panicking() {
            panic!("balance panicked: {err}");
        }
    }
}

/// Whether a log line says port `port` is bound (`bind=ADDR:PORT`).
/// The line balance logs once every listener, its control socket and
/// the metrics endpoint serve.
fn logged_ready(log: &str) -> bool {
    log.lines()
        .any(|l| l.split_whitespace().last() == Some("ready") || l.contains(r#""message":"ready""#))
}

fn logged_bind(log: &str, port: u16) -> bool {
    let tail = format!(":{port}");
    log.split_whitespace()
        .any(|w| w.starts_with("bind=") && w.ends_with(&tail))
}

//! Real etcd servers for the fleet tests (Debian's `etcd-server`): a
//! single member or a three-member cluster on free loopback ports, each
//! member with its own data dir, ready when every member answers
//! `/health`; members can be killed and restarted; everything is stopped
//! by pid on drop. Keys are read and written through balance's own client
//! ([`Etcd::put`], [`Etcd::get`]) on a throwaway runtime.
//!
//! [`Etcd::secure`]: a member as production runs it: TLS on the client
//! port with client-certificate auth (certificates from [`Pki`]); then
//! [`Etcd::enable_auth`] turns etcd's authentication on (with `etcdctl`,
//! Debian's `etcd-client`) and [`Etcd::add_user`] adds a user whose role
//! grants readwrite on one prefix only.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use balance::etcd::{Access, Client, FleetConfig, Kv, TlsFiles};

use super::pki::Pki;
use super::{IO_TIMEOUT, LOCALHOST_V4, TempDir, free_port, local, try_connect, wait_until};

pub const SERVER: &str = "/usr/bin/etcd";
pub const CTL: &str = "/usr/bin/etcdctl";
/// The root password the harness sets with [`Etcd::enable_auth`].
const ROOT_PASSWORD: &str = "root-secret";
/// How long a cluster may take to elect a leader and answer.
const START_LIMIT: Duration = Duration::from_secs(20);
/// Request timeout of the harness's own client.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

struct Member {
    name: String,
    client_port: u16,
    peer_port: u16,
    data: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// One etcd cluster (one or three members).
pub struct Etcd {
    members: Vec<Member>,
    dir: TempDir,
    /// More arguments for every member.
    extra: Vec<String>,
    /// TLS on the client port (and client-certificate auth).
    secure: Option<Secure>,
}

struct Secure {
    pki: Pki,
    /// The root password's file, once auth is enabled.
    root: Option<PathBuf>,
}

/// The same type, named for the multi-member tests.
pub type EtcdCluster = Etcd;

impl Etcd {
    /// Whether this machine can run etcd.
    pub fn available() -> bool {
        std::path::Path::new(SERVER).exists()
    }

    /// A single-member cluster.
    pub fn single() -> Etcd {
        Etcd::start(1, &[], None)
    }

    /// A single member started with `extra` arguments too.
    pub fn single_with(extra: &[&str]) -> Etcd {
        Etcd::start(1, extra, None)
    }

    /// A three-member cluster (survives the loss of one member).
    pub fn three() -> Etcd {
        Etcd::start(3, &[], None)
    }

    /// A single member serving `https://` only, with certificates from
    /// `pki` and `--client-cert-auth` (a client needs a certificate signed
    /// by `pki`'s CA); `extra` arguments too.
    pub fn secure(pki: Pki, extra: &[&str]) -> Etcd {
        Etcd::start(1, extra, Some(Secure { pki, root: None }))
    }

    /// `n` members on free ports; a member that fails to start (a port
    /// taken meanwhile) makes the whole cluster start again on new ports.
    fn start(n: usize, extra: &[&str], mut secure: Option<Secure>) -> Etcd {
        let mut last = String::new();
        for _ in 0..3 {
            let dir = TempDir::new("etcd");
            let members = (0..n)
                .map(|i| Member {
                    name: format!("m{i}"),
                    client_port: free_port(LOCALHOST_V4),
                    peer_port: free_port(LOCALHOST_V4),
                    data: dir.join(format!("m{i}.data")),
                    log: dir.join(format!("m{i}.log")),
                    child: None,
                })
                .collect();
            let mut e = Etcd {
                members,
                dir,
                extra: extra.iter().map(|a| a.to_string()).collect(),
                secure: secure.take(),
            };
            for i in 0..n {
                e.spawn(i);
            }
            if e.wait_healthy() {
                return e;
            }
            last = e.logs();
            secure = e.secure.take();
        }
        panic!("etcd did not start:\n{last}");
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn spawn(&mut self, i: usize) {
        let cluster = self.initial_cluster();
        let token = self.dir.path().display().to_string();
        let m = &mut self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&m.log)
            .expect("etcd log file");
        let scheme = if self.secure.is_some() {
            "https"
        } else {
            "http"
        };
        let client = format!("{scheme}://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let mut tls = Vec::new();
        if let Some(s) = &self.secure {
            tls.push("--client-cert-auth".into());
            for (flag, file) in [
                ("--cert-file", "server.pem"),
                ("--key-file", "server.key"),
                ("--trusted-ca-file", "ca.pem"),
            ] {
                tls.push(flag.into());
                tls.push(s.pki.path(file).display().to_string());
            }
        }
        let child = Command::new(SERVER)
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(&m.data)
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args([
                "--initial-cluster",
                &cluster,
                "--initial-cluster-token",
                &token,
            ])
            .args(["--initial-cluster-state", "new", "--log-level", "warn"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .args(&self.extra)
            .args(&tls)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        m.child = Some(child);
    }

    /// Every running member answers `/health` true (false if one exited).
    fn wait_healthy(&mut self) -> bool {
        let secure = self.secure.is_some();
        let ctl: Vec<String> = self.ctl_args();
        let ok = wait_until("etcd to be healthy", START_LIMIT, || {
            self.members.iter_mut().all(|m| {
                let Some(c) = &mut m.child else {
                    return true;
                };
                if !matches!(c.try_wait(), Ok(None)) {
                    return true;
                }
                if !secure {
                    return health(m.client_port);
                }
                Command::new(CTL)
                    .args(&ctl)
                    .arg(format!("--endpoints=https://127.0.0.1:{}", m.client_port))
                    .args(["endpoint", "health", "--command-timeout=2s"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            })
        });
        ok.is_ok()
            && self.members.iter_mut().all(|m| {
                m.child
                    .as_mut()
                    .is_none_or(|c| matches!(c.try_wait(), Ok(None)))
            })
    }

    /// The first member's client URL.
    pub fn endpoint(&self) -> String {
        self.endpoints()[0].clone()
    }

    /// Every member's client URL.
    pub fn endpoints(&self) -> Vec<String> {
        let scheme = if self.secure.is_some() {
            "https"
        } else {
            "http"
        };
        self.members
            .iter()
            .map(|m| format!("{scheme}://127.0.0.1:{}", m.client_port))
            .collect()
    }

    /// The certificates of a [`Etcd::secure`] member.
    pub fn pki(&self) -> &Pki {
        &self.secure.as_ref().expect("a secure etcd").pki
    }

    /// `etcdctl`'s TLS (and, once enabled, root login) flags.
    fn ctl_args(&self) -> Vec<String> {
        let Some(s) = &self.secure else {
            return Vec::new();
        };
        let mut v = vec![
            format!("--cacert={}", s.pki.path("ca.pem").display()),
            format!("--cert={}", s.pki.path("client.pem").display()),
            format!("--key={}", s.pki.path("client.key").display()),
        ];
        if s.root.is_some() {
            v.push(format!("--user=root:{ROOT_PASSWORD}"));
        }
        v
    }

    /// Run `etcdctl ARGS` against every member (with the TLS and root
    /// flags); its output, or a panic naming the failed command.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let out = Command::new(CTL)
            .env("ETCDCTL_API", "3")
            .args(self.ctl_args())
            .arg(format!("--endpoints={}", self.endpoints_arg()))
            .arg("--command-timeout=5s")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Turn etcd's authentication on (a `root` user with the root role,
    /// as etcd requires); the harness's own client logs in as root from
    /// then on.
    pub fn enable_auth(&mut self) {
        self.etcdctl(&["user", "add", &format!("root:{ROOT_PASSWORD}")]);
        self.etcdctl(&["user", "grant-role", "root", "root"]);
        self.etcdctl(&["auth", "enable"]);
        let file = self.dir.join("root.password");
        write_secret(&file, ROOT_PASSWORD);
        self.secure.as_mut().expect("a secure etcd").root = Some(file);
    }

    /// A user `name` with password `password`, whose role `name-role`
    /// grants readwrite on the keys under `prefix` only.
    pub fn add_user(&self, name: &str, password: &str, prefix: &str) {
        let role = format!("{name}-role");
        self.etcdctl(&["role", "add", &role]);
        self.etcdctl(&[
            "role",
            "grant-permission",
            "--prefix=true",
            &role,
            "readwrite",
            prefix,
        ]);
        self.etcdctl(&["user", "add", &format!("{name}:{password}")]);
        self.etcdctl(&["user", "grant-role", name, &role]);
    }

    /// balance's access settings for a secure member: its CA, the client
    /// certificate, and the root login once auth is on.
    fn access(&self) -> Access {
        let Some(s) = &self.secure else {
            return Access::default();
        };
        let mut cfg = FleetConfig::new(self.endpoints());
        cfg.tls = Some(Box::new(TlsFiles {
            ca: s.pki.path("ca.pem"),
            cert: Some(s.pki.path("client.pem")),
            key: Some(s.pki.path("client.key")),
        }));
        if let Some(root) = &s.root {
            cfg.user = Some("root".into());
            cfg.password_file = Some(root.clone());
        }
        cfg.load_files().expect("the harness's own TLS files");
        balance::etcd::access(&cfg)
    }

    /// `--fleet` / `endpoints:` text: the URLs joined by commas.
    pub fn endpoints_arg(&self) -> String {
        self.endpoints().join(",")
    }

    pub fn client_port(&self, member: usize) -> u16 {
        self.members[member].client_port
    }

    pub fn pid(&self, member: usize) -> Option<u32> {
        self.members[member].child.as_ref().map(Child::id)
    }

    /// SIGKILL a member and reap it.
    pub fn kill(&mut self, member: usize) {
        if let Some(mut c) = self.members[member].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGSTOP a member: it hangs (its sockets stay open, nothing
    /// answers); [`Etcd::resume`] ends that (so does drop).
    /// SIGSTOP a member, and wait until every thread of it has stopped:
    /// kill(2) returns before that, and on a busy machine the member's
    /// other threads went on serving for a few milliseconds (a watch
    /// through it delivered a write made after the signal).
    pub fn hang(&self, member: usize) {
        self.signal(member, libc::SIGSTOP);
        let pid = self.pid(member).expect("member runs");
        let stopped = || {
            let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
                return false;
            };
            tasks.flatten().all(|t| {
                std::fs::read_to_string(t.path().join("stat")).is_ok_and(|s| {
                    s.rsplit_once(')')
                        .and_then(|(_, rest)| rest.split_whitespace().next())
                        .is_some_and(|st| st == "T" || st == "t")
                })
            })
        };
        let r = wait_until("every thread of the member to stop", START_LIMIT, stopped);
        assert!(r.is_ok(), "{r:?}");
    }

    pub fn resume(&self, member: usize) {
        self.signal(member, libc::SIGCONT);
    }

    fn signal(&self, member: usize, sig: libc::c_int) {
        let pid = self.pid(member).expect("member runs") as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }

    /// Make sure `member` does not lead: when it does, it hands the
    /// leadership to the next member (the maintenance API's
    /// transfer-leadership, sent to the leader); waits until another
    /// member leads.
    pub fn move_leader_off(&self, member: usize) {
        let r = wait_until(
            "a leader other than the member",
            START_LIMIT,
            || match self.leader() {
                Some(l) if l != member => true,
                Some(l) => {
                    self.transfer(l, (l + 1) % self.members.len());
                    false
                }
                None => false,
            },
        );
        assert!(r.is_ok(), "{r:?}\n{}", self.logs());
    }

    /// Make `member` the leader (see [`Etcd::move_leader_off`]).
    pub fn move_leader_to(&self, member: usize) {
        let r = wait_until("the member to lead", START_LIMIT, || match self.leader() {
            Some(l) if l == member => true,
            Some(l) => {
                self.transfer(l, member);
                false
            }
            None => false,
        });
        assert!(r.is_ok(), "{r:?}\n{}", self.logs());
    }

    /// Ask the leader `from` to hand the leadership to `to`.
    fn transfer(&self, from: usize, to: usize) {
        if let Some(id) = status(self.members[to].client_port)
            .and_then(|v| v["header"]["member_id"].as_str().map(str::to_string))
        {
            let body = format!("{{\"targetID\":\"{id}\"}}");
            let _ = post(
                self.members[from].client_port,
                "/v3/maintenance/transfer-leadership",
                &body,
            );
        }
    }

    /// Start a killed member again on its ports and data (it rejoins).
    pub fn restart(&mut self, member: usize) {
        assert!(
            self.members[member].child.is_none(),
            "member {member} is running"
        );
        self.spawn(member);
        assert!(
            self.wait_healthy(),
            "etcd member {member} did not come back:\n{}",
            self.logs()
        );
    }

    /// The member that leads the cluster now, if a running one says so
    /// (`/v3/maintenance/status`: its own id equals the leader's).
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            self.members[i].child.is_some()
                && status(self.members[i].client_port).is_some_and(|v| {
                    v["leader"].is_string() && v["leader"] == v["header"]["member_id"]
                })
        })
    }

    /// Every member's log, for failure messages.
    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| {
                let t = std::fs::read_to_string(&m.log).unwrap_or_default();
                format!("--- {} ---\n{t}", m.name)
            })
            .collect()
    }

    /// balance's client of every member.
    pub fn client(&self) -> Client {
        Client::with_access(&self.endpoints(), CLIENT_TIMEOUT, self.access()).expect("etcd client")
    }

    /// Put a key (blocking).
    pub fn put(&self, key: &str, value: &str) {
        let c = self.client();
        block_on(c.put(key.as_bytes(), value.as_bytes(), None))
            .unwrap_or_else(|e| panic!("etcd put {key}: {e}"));
    }

    /// Delete a key (blocking).
    pub fn delete(&self, key: &str) {
        let c = self.client();
        block_on(c.delete(key.as_bytes())).unwrap_or_else(|e| panic!("etcd delete {key}: {e}"));
    }

    /// A key's value as text, if present (blocking).
    pub fn get(&self, key: &str) -> Option<String> {
        let c = self.client();
        let (kv, _) =
            block_on(c.get(key.as_bytes())).unwrap_or_else(|e| panic!("etcd get {key}: {e}"));
        kv.map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
    }

    /// Every key under `prefix` (blocking).
    pub fn get_prefix(&self, prefix: &str) -> Vec<Kv> {
        let c = self.client();
        block_on(c.get_prefix(prefix.as_bytes()))
            .unwrap_or_else(|e| panic!("etcd get {prefix}*: {e}"))
            .0
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// A current-thread runtime for driving balance's etcd client from a test
/// (keep one across calls whose state lives on, such as a watch).
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Run a future to completion on a throwaway runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    runtime().block_on(f)
}

/// Write `text` to `path`, readable by its owner only (a password file).
pub fn write_secret(path: &std::path::Path, text: &str) {
    use std::os::unix::fs::OpenOptionsExt;
    let _ = std::fs::remove_file(path);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create a secret file");
    f.write_all(format!("{text}\n").as_bytes())
        .expect("write a secret file");
}

/// Whether the member on `port` says `{"health":"true"}`.
fn health(port: u16) -> bool {
    let Ok(mut s) = try_connect(local(port), Duration::from_millis(500)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(IO_TIMEOUT.min(Duration::from_secs(2))));
    let req =
        format!("GET /health HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("\"health\":\"true\"")
}

/// The member on `port`'s `/v3/maintenance/status` reply.
fn status(port: u16) -> Option<serde_json::Value> {
    post(port, "/v3/maintenance/status", "{}")
}

/// POST `body` to `path` on the member on `port`; the JSON reply.
fn post(port: u16, path: &str, body: &str) -> Option<serde_json::Value> {
    let mut s = try_connect(local(port), Duration::from_millis(500)).ok()?;
    let _ = s.set_read_timeout(Some(IO_TIMEOUT.min(Duration::from_secs(2))));
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let body = out.split_once("\r\n\r\n")?.1;
    serde_json::from_str(body).ok()
}

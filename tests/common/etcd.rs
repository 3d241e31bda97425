//! Real etcd servers for the fleet tests (Debian's `etcd-server`): a
//! single member or a three-member cluster on free loopback ports, each
//! member with its own data dir, ready when every member answers
//! `/health`; members can be killed and restarted; everything is stopped
//! by pid on drop. Keys are read and written through balance's own client
//! ([`Etcd::put`], [`Etcd::get`]) on a throwaway runtime.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use balance::fleet::etcd::{Client, Kv};

use super::{IO_TIMEOUT, LOCALHOST_V4, TempDir, free_port, local, try_connect, wait_until};

pub const SERVER: &str = "/usr/bin/etcd";
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
        Etcd::start(1, &[])
    }

    /// A single member started with `extra` arguments too.
    pub fn single_with(extra: &[&str]) -> Etcd {
        Etcd::start(1, extra)
    }

    /// A three-member cluster (survives the loss of one member).
    pub fn three() -> Etcd {
        Etcd::start(3, &[])
    }

    /// `n` members on free ports; a member that fails to start (a port
    /// taken meanwhile) makes the whole cluster start again on new ports.
    fn start(n: usize, extra: &[&str]) -> Etcd {
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
            };
            for i in 0..n {
                e.spawn(i);
            }
            if e.wait_healthy() {
                return e;
            }
            last = e.logs();
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
        let client = format!("http://127.0.0.1:{}", m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
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
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        m.child = Some(child);
    }

    /// Every running member answers `/health` true (false if one exited).
    fn wait_healthy(&mut self) -> bool {
        let ok = wait_until("etcd to be healthy", START_LIMIT, || {
            self.members.iter_mut().all(|m| match &mut m.child {
                None => true,
                Some(c) => matches!(c.try_wait(), Ok(Some(_))) || health(m.client_port),
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
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client_port))
            .collect()
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
    pub fn hang(&self, member: usize) {
        self.signal(member, libc::SIGSTOP);
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
        Client::new(&self.endpoints(), CLIENT_TIMEOUT).expect("etcd client")
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

//! Several balance instances of one config (a fleet on loopback), each in
//! its own run dir, and the lock that runs heavy tests one at a time (a
//! fleet test starts an etcd and several instances; a scale test holds
//! thousands of sockets).

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::backend::{Backend, echo};
use super::{Balance, LOCALHOST_V4, Launch, TempDir, wait_until};

/// A change written to etcd reaches every instance within this, for the
/// tests' timings (monitor interval 100–500 ms, the default fallback and
/// TTL): on the longest path a follower's watch breaks and is set up again
/// after its longest retry (2 s) and a request timeout (1 s), while the
/// prober is replaced (lease TTL 2 s, fallback 1 s) and probes once: about
/// 6.5 s. Like every wait it stretches by the machine's load.
pub const REACH: Duration = Duration::from_secs(10);

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Held for the whole of a heavy test that must not overlap another heavy
/// one, of any file: the tests of every file run in one process, so this
/// one lock is shared by all of them (a failed test's poisoned lock is
/// taken over).
pub fn serial() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// The instances (`v`) and their run dirs, removed on drop.
pub struct Instances {
    pub v: Vec<Balance>,
    _dirs: Vec<TempDir>,
}

impl Instances {
    /// `n` instances of the config `write` makes (one listener port), each
    /// in a run dir of its own named after `tag`; `launch` adds to each
    /// launcher; `gap` between one start and the next.
    pub fn launch(
        n: usize,
        tag: &str,
        gap: Duration,
        write: impl Fn(&[u16]) -> String,
        launch: impl Fn(Launch<'_>) -> Launch<'_>,
    ) -> Instances {
        let mut v = Vec::new();
        let mut dirs = Vec::new();
        for _ in 0..n {
            let dir = TempDir::new(tag);
            v.push(launch(Balance::config(1, &write).run_dir(dir.path())).start());
            dirs.push(dir);
            if !gap.is_zero() {
                thread::sleep(gap);
            }
        }
        Instances { v, _dirs: dirs }
    }

    /// Settled: one prober, every other instance a follower that applies
    /// verdicts (does not probe); waited for up to `limit`. How long it
    /// took.
    pub fn wait_settled(&self, limit: Duration) -> Duration {
        let t0 = Instant::now();
        let ok = wait_until("one prober, the rest following", limit, || {
            let fl: Vec<Value> = self
                .v
                .iter()
                .map(|b| b.json()["listener"]["fleet"].clone())
                .collect();
            let probers = fl.iter().filter(|f| f["role"] == "prober").count();
            let following = fl
                .iter()
                .filter(|f| f["role"] == "follower" && f["probing"] == false)
                .count();
            probers == 1 && following == fl.len() - 1
        });
        let roles: Vec<Value> = self
            .v
            .iter()
            .map(|b| b.json()["listener"]["fleet"]["role"].clone())
            .collect();
        assert!(ok.is_ok(), "{ok:?}: {roles:?}\n{}", self.v[0].stderr());
        t0.elapsed()
    }

    /// Wait until `cond` holds for every instance's `show json` (each
    /// within [`REACH`]).
    pub fn wait_all(&self, what: &str, cond: impl Fn(&Value) -> bool) {
        for (i, b) in self.v.iter().enumerate() {
            let r = wait_until(what, REACH, || cond(&b.json()));
            assert!(
                r.is_ok(),
                "instance {i}: {r:?}: {}\n{}",
                b.json(),
                b.stderr()
            );
        }
    }
}

/// A tagged backend (writes `name\n`, then echoes) that can be muted:
/// once the flag is set it still accepts every connection but never
/// answers (each is held silent for up to 30 s). A client's connect
/// succeeds, so only a check that waits for an answer sees it fail.
pub fn mutable_tagged(name: &str) -> (Backend, Arc<AtomicBool>) {
    let mute = Arc::new(AtomicBool::new(false));
    let m = mute.clone();
    let line = format!("{name}\n");
    let b = Backend::spawn(LOCALHOST_V4, move |mut s| {
        if m.load(SeqCst) {
            let end = Instant::now() + Duration::from_secs(30);
            while Instant::now() < end {
                thread::sleep(Duration::from_millis(50));
            }
            return;
        }
        if s.write_all(line.as_bytes()).is_ok() {
            echo(&mut s);
        }
    });
    (b, mute)
}

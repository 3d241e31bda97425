//! Fleet mode against etcd as production runs it: TLS on the client port
//! with client-certificate auth (`--client-cert-auth --trusted-ca-file`,
//! certificates made by `openssl` in a temp dir), and etcd's
//! authentication on, balance logging in as a user whose role grants
//! readwrite on the fleet's prefix only. Wrong settings give one clear
//! log line, and a reload re-reads the files that fix them.

use crate::common;

use std::time::Duration;

use common::dns::Dnsmasq;
use common::etcd::{Etcd, write_secret};
use common::fleet::{Instances, REACH, serial};
use common::pki::Pki;
use common::*;

const PREFIX: &str = "/t";
const USER: &str = "bal";
const PASSWORD: &str = "s3cret pass";

/// The file's lock, or None (the test is skipped) without etcd and
/// etcdctl.
fn begin() -> Option<std::sync::MutexGuard<'static, ()>> {
    (!skip()).then(serial)
}

fn skip() -> bool {
    if !Etcd::available() {
        skip_without("etcd (etcd-server)");
        return true;
    }
    if !std::path::Path::new(common::etcd::CTL).exists() {
        skip_without("etcdctl (etcd-client)");
        return true;
    }
    false
}

/// A TLS etcd with auth on and the user [`USER`], whose role grants
/// readwrite on `granted` only.
fn etcd(granted: &str) -> Etcd {
    etcd_for("/O=balance", granted)
}

/// [`etcd`] with the client certificate's subject.
fn etcd_for(client_subject: &str, granted: &str) -> Etcd {
    let mut e = Etcd::secure(Pki::new(client_subject), &[]);
    e.enable_auth();
    e.add_user(USER, PASSWORD, granted);
    e
}

/// The fleet settings for `e` (`ca`: the CA file to trust), the password
/// in `pw`; a listener `db` on the first port with a primary and a backup.
fn yaml(p: &[u16], e: &Etcd, ca: &std::path::Path, pw: &std::path::Path, ch: (u16, u16)) -> String {
    yaml_from(
        &format!("endpoints: [\"{}\"]", e.endpoint()),
        p,
        e,
        ca,
        pw,
        ch,
    )
}

/// [`yaml`] with `source` (`endpoints: [...]` or `discovery_srv: ...`).
fn yaml_from(
    source: &str,
    p: &[u16],
    e: &Etcd,
    ca: &std::path::Path,
    pw: &std::path::Path,
    ch: (u16, u16),
) -> String {
    format!(
        "fleet:\n  {source}\n  prefix: {PREFIX}\n  fallback: 1s\n  tls:\n    ca: {}\n    cert: {}\n    key: {}\n  user: {USER}\n  password_file: {}\nlisteners:\n  - name: db\n    bind: \"127.0.0.1:{}\"\n    groups:\n      - channels: [\"127.0.0.1:{}\"]\n      - channels: [\"127.0.0.1:{}\"]\n    monitor:\n      interval: 500ms\n      fall: 2\n      rise: 2\n      checks:\n        - connect: {{}}\n",
        ca.display(),
        e.pki().path("client.pem").display(),
        e.pki().path("client.key").display(),
        pw.display(),
        p[0],
        ch.0,
        ch.1
    )
}

/// A temp dir with a password file holding `password`.
fn password_file(password: &str) -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new("secure");
    let pw = dir.join("password");
    write_secret(&pw, password);
    (dir, pw)
}

fn role(b: &Balance) -> String {
    b.json()["listener"]["fleet"]["role"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

fn wait_all_answer(f: &Instances, tag: &str) {
    for b in &f.v {
        let r = wait_until(&format!("clients sent to {tag}"), REACH, || {
            ask(local(b.port())).is_ok_and(|t| t == tag)
        });
        assert!(r.is_ok(), "{r:?}\n{}", b.stderr());
    }
}

#[test]
fn a_fleet_runs_on_tls_etcd_with_client_certificates_and_a_prefix_only_role() {
    let Some(_g) = begin() else {
        return;
    };
    let mut e = etcd(&format!("{PREFIX}/"));
    let (_dir, pw) = password_file(PASSWORD);
    let (primary, backup) = (Backend::tagged("primary"), Backend::tagged("backup"));
    let ca = e.pki().path("ca.pem");
    let ch = (primary.port(), backup.port());
    let f = Instances::launch(
        3,
        "secure",
        Duration::from_millis(50),
        |p| yaml(p, &e, &ca, &pw, ch),
        |l| l,
    );
    f.wait_settled(REACH);
    // The verdicts go through etcd: the primary's loss reaches everyone.
    primary.stop();
    wait_all_answer(&f, "backup");
    // etcd restarted: its simple tokens are gone ("invalid auth token"),
    // every instance logs in again and the fleet goes on: a new prober
    // takes over (lease, txn, watch) and its verdicts reach the rest.
    e.kill(0);
    e.restart(0);
    f.wait_settled(REACH);
    let p =
        f.v.iter()
            .position(|b| role(b) == "prober")
            .expect("a prober");
    f.v[p].kill();
    let rest: Vec<&Balance> =
        f.v.iter()
            .enumerate()
            .filter(|(i, _)| *i != p)
            .map(|(_, b)| b)
            .collect();
    let r = wait_until("another prober after etcd's restart", REACH * 2, || {
        rest.iter().filter(|b| role(b) == "prober").count() == 1
    });
    assert!(r.is_ok(), "{r:?}\n{}", rest[0].stderr());
    let _primary = Backend::tagged_at(("127.0.0.1", ch.0), "primary").unwrap();
    for b in &rest {
        let r = wait_until("clients back on the primary", REACH, || {
            ask(local(b.port())).is_ok_and(|t| t == "primary")
        });
        assert!(r.is_ok(), "{r:?}\n{}", b.stderr());
        let log = b.stderr();
        assert!(!log.contains("permission denied"), "{log}");
        assert!(!log.contains("etcd login"), "{log}");
    }
}

/// One instance in front of one backend, talking to `e` with the password
/// `password` and the CA `ca` (copied into a file of its own, which the
/// test may change), and waits for `line` in its log: the one-line error
/// a wrong setting gives. It is not the prober meanwhile. The instance,
/// its password file and CA file, for a reload.
struct One {
    f: Instances,
    pw: std::path::PathBuf,
    ca: std::path::PathBuf,
    _dir: TempDir,
    _backend: Backend,
}

impl One {
    fn start(e: &Etcd, ca: &str, password: &str, line: &str) -> One {
        let (dir, pw) = password_file(password);
        let ca_file = dir.join("ca.pem");
        std::fs::copy(e.pki().path(ca), &ca_file).unwrap();
        let backend = Backend::tagged("primary");
        let ch = (backend.port(), backend.port());
        let f = Instances::launch(
            1,
            "secure",
            Duration::ZERO,
            |p| yaml(p, e, &ca_file, &pw, ch),
            |l| l,
        );
        let b = &f.v[0];
        assert!(b.wait_log(line, 1, REACH), "{}", b.stderr());
        assert_ne!(role(b), "prober");
        One {
            f,
            pw,
            ca: ca_file,
            _dir: dir,
            _backend: backend,
        }
    }

    /// After a fix to its files: a reload, and the instance probes for
    /// the fleet.
    fn reload_joins(&self) {
        let b = &self.f.v[0];
        b.signal(libc::SIGHUP);
        let r = wait_until("the instance to probe for the fleet", REACH, || {
            role(b) == "prober"
        });
        assert!(r.is_ok(), "{r:?}\n{}", b.stderr());
    }
}

#[test]
fn a_wrong_password_is_one_clear_line_and_a_reload_reads_the_file_again() {
    let Some(_g) = begin() else {
        return;
    };
    let e = etcd(&format!("{PREFIX}/"));
    let line = format!(
        "etcd login: user \"{USER}\": etcdserver: authentication failed, invalid user ID or password (check fleet.user and fleet.password_file"
    );
    let one = One::start(&e, "ca.pem", "not the password", &line);
    write_secret(&one.pw, PASSWORD);
    one.reload_joins();
}

#[test]
fn a_ca_that_did_not_sign_etcds_certificate_is_one_clear_line_and_a_reload_reads_it_again() {
    let Some(_g) = begin() else {
        return;
    };
    let e = etcd(&format!("{PREFIX}/"));
    let line = "invalid peer certificate: UnknownIssuer (is fleet.tls.ca the CA that signed etcd's certificate";
    let one = One::start(&e, "other-ca.pem", PASSWORD, line);
    std::fs::copy(e.pki().path("ca.pem"), &one.ca).unwrap();
    one.reload_joins();
}

#[test]
fn a_role_without_the_fleet_prefix_is_named_in_one_line() {
    let Some(_g) = begin() else {
        return;
    };
    let e = etcd("/elsewhere/");
    let line = "etcdserver: permission denied: /v3/kv/";
    let one = One::start(&e, "ca.pem", PASSWORD, line);
    let log = one.f.v[0].stderr();
    let l = log.lines().find(|l| l.contains(line)).unwrap();
    assert!(
        l.contains("on key \"/t/") && l.contains("needs readwrite on the fleet prefix"),
        "{l}"
    );
}

#[test]
fn a_client_certificate_with_a_common_name_is_named_in_one_line() {
    let Some(_g) = begin() else {
        return;
    };
    // etcd's gateway refuses it while auth is on (HTTP 400, not JSON).
    let e = etcd_for("/CN=balance", &format!("{PREFIX}/"));
    One::start(
        &e,
        "ca.pem",
        PASSWORD,
        "etcd refuses a client certificate with a CommonName on its JSON gateway while auth is on: issue fleet.tls.cert without a CN",
    );
}

#[test]
fn the_endpoints_come_from_the_domains_srv_records() {
    if !std::path::Path::new(common::dns::DNSMASQ).exists() {
        skip_without("dnsmasq (dnsmasq-base)");
        return;
    }
    if !Dnsmasq::available() {
        skip_because("dnsmasq on port 53 and a mount namespace need root");
        return;
    }
    let Some(_g) = begin() else {
        return;
    };
    let e = etcd(&format!("{PREFIX}/"));
    // etcd's certificate names localhost: the SRV target is checked
    // against it.
    let port = e.client_port(0);
    let dns = Dnsmasq::start(&[("_etcd-client-ssl._tcp.fleet.test", "localhost", port)]);
    let (_dir, pw) = password_file(PASSWORD);
    let (primary, backup) = (Backend::tagged("primary"), Backend::tagged("backup"));
    let ca = e.pki().path("ca.pem");
    let ch = (primary.port(), backup.port());
    let wrapper = dns.wrapper();
    let w: Vec<&str> = wrapper.iter().map(String::as_str).collect();
    let f = Instances::launch(
        2,
        "srv",
        Duration::from_millis(50),
        |p| yaml_from("discovery_srv: fleet.test", p, &e, &ca, &pw, ch),
        |l| l.wrapper(&w),
    );
    f.wait_settled(REACH);
    let line =
        format!("etcd endpoints from _etcd-client-ssl._tcp.fleet.test: https://localhost:{port}");
    for b in &f.v {
        assert!(b.has(&line), "{}\n{}", b.stderr(), dns.log());
    }
    primary.stop();
    wait_all_answer(&f, "backup");
}

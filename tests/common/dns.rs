//! A real DNS server for the SRV discovery tests: dnsmasq (Debian's
//! `dnsmasq-base`) answering given SRV records on port 53 of a loopback
//! address of its own (127.53.X.Y, checked free), and the wrapper that
//! runs a process with /etc/resolv.conf naming it: a mount namespace of
//! its own (`unshare -m`) with a resolv.conf bind-mounted over the
//! system's. The network stays the host's, so the tests reach what runs
//! under the wrapper on loopback as usual. Needs root (port 53, mounts).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{TempDir, wait_until};

pub const DNSMASQ: &str = "/usr/sbin/dnsmasq";
const START_LIMIT: Duration = Duration::from_secs(10);

pub struct Dnsmasq {
    child: Child,
    dir: TempDir,
    pub addr: IpAddr,
}

impl Dnsmasq {
    /// Whether dnsmasq and what it needs (root) are here.
    pub fn available() -> bool {
        std::path::Path::new(DNSMASQ).exists() && is_root()
    }

    /// dnsmasq answering `srv`: (name, target, port) each, nothing else.
    pub fn start(srv: &[(&str, &str, u16)]) -> Dnsmasq {
        let dir = TempDir::new("dns");
        let addr = free_address();
        let log = std::fs::File::create(dir.join("dnsmasq.log")).expect("dnsmasq log");
        let mut cmd = Command::new(DNSMASQ);
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--port=53",
            "--user=root",
            "--pid-file=",
            "--log-queries",
            "--log-facility=-",
        ])
        .arg(format!("--listen-address={addr}"));
        for (name, target, port) in srv {
            cmd.arg(format!("--srv-host={name},{target},{port}"));
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn dnsmasq");
        std::fs::write(dir.join("resolv.conf"), format!("nameserver {addr}\n"))
            .expect("write resolv.conf");
        let mut d = Dnsmasq { child, dir, addr };
        let r = wait_until("dnsmasq to listen", START_LIMIT, || {
            matches!(d.child.try_wait(), Ok(Some(_))) || answers(addr)
        });
        assert!(
            r.is_ok() && matches!(d.child.try_wait(), Ok(None)),
            "dnsmasq did not start: {}",
            d.log()
        );
        d
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }

    /// A command prefix that runs the rest with /etc/resolv.conf naming
    /// this server only.
    pub fn wrapper(&self) -> Vec<String> {
        let conf: PathBuf = self.dir.join("resolv.conf");
        vec![
            "unshare".into(),
            "-m".into(),
            "sh".into(),
            "-c".into(),
            format!(
                "mount --bind {} /etc/resolv.conf && exec \"$@\"",
                conf.display()
            ),
            "sh".into(),
        ]
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) has no arguments and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A loopback address whose port 53 is free (tried by binding it).
fn free_address() -> IpAddr {
    let pid = std::process::id();
    for i in 0..200u32 {
        let n = pid.wrapping_mul(31).wrapping_add(i * 7919);
        let ip = Ipv4Addr::new(127, 53, (n >> 8) as u8, (n as u8).max(1));
        if UdpSocket::bind(SocketAddr::new(IpAddr::V4(ip), 53)).is_ok() {
            return IpAddr::V4(ip);
        }
    }
    panic!("no free loopback address for port 53");
}

/// Whether something answers a DNS query on `addr`:53.
fn answers(addr: IpAddr) -> bool {
    let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_millis(300)));
    let q = balance::etcd::srv_query(0x1234, "ready.test").expect("a query");
    if s.send_to(&q, SocketAddr::new(addr, 53)).is_err() {
        return false;
    }
    let mut buf = [0u8; 512];
    s.recv(&mut buf)
        .is_ok_and(|n| n >= 2 && buf[..2] == [0x12, 0x34])
}

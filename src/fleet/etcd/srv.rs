//! The etcd endpoints of a DNS domain, as etcd's own clients discover them
//! (`etcdctl --discovery-srv`): the SRV records `_etcd-client-ssl._tcp.DOMAIN`
//! (`https://TARGET:PORT`) or `_etcd-client._tcp.DOMAIN` (`http://`),
//! ordered by priority then weight. A small stub resolver: the name
//! servers of /etc/resolv.conf (port 53), UDP, TCP when a reply is
//! truncated; each server tried in turn within a timeout.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::EtcdError;

const RESOLV_CONF: &str = "/etc/resolv.conf";
/// resolv.conf's own limit.
const MAX_SERVERS: usize = 3;
const TYPE_SRV: u16 = 33;
const CLASS_IN: u16 = 1;
/// Endpoints kept from the records.
const MAX_ENDPOINTS: usize = 16;

/// The SRV name looked up for `domain`: `_etcd-client-ssl._tcp` with TLS,
/// `_etcd-client._tcp` without.
pub(crate) fn service_name(domain: &str, tls: bool) -> String {
    let domain = domain.trim_end_matches('.');
    if tls {
        format!("_etcd-client-ssl._tcp.{domain}")
    } else {
        format!("_etcd-client._tcp.{domain}")
    }
}

/// The endpoint URLs `domain` announces (see the module doc), each name
/// server of /etc/resolv.conf asked within `timeout`.
pub(crate) async fn discover(
    domain: &str,
    tls: bool,
    timeout: Duration,
) -> Result<Vec<String>, EtcdError> {
    let conf = std::fs::read_to_string(RESOLV_CONF).map_err(|e| {
        EtcdError::Unreachable(format!("discovery_srv {domain}: {RESOLV_CONF}: {e}"))
    })?;
    let servers = nameservers(&conf);
    if servers.is_empty() {
        return Err(EtcdError::Unreachable(format!(
            "discovery_srv {domain}: no nameserver in {RESOLV_CONF}"
        )));
    }
    discover_via(domain, tls, &servers, timeout).await
}

/// [`discover`] asking `servers`.
pub(crate) async fn discover_via(
    domain: &str,
    tls: bool,
    servers: &[SocketAddr],
    timeout: Duration,
) -> Result<Vec<String>, EtcdError> {
    let name = service_name(domain, tls);
    let mut last = String::from("no name server");
    for s in servers {
        match tokio::time::timeout(timeout, ask(*s, &name)).await {
            Ok(Ok(records)) => {
                let scheme = if tls { "https" } else { "http" };
                if records.is_empty() {
                    return Err(EtcdError::Unreachable(format!(
                        "discovery_srv: no SRV record {name}"
                    )));
                }
                return Ok(records
                    .into_iter()
                    .take(MAX_ENDPOINTS)
                    .map(|r| url(scheme, &r.target, r.port))
                    .collect());
            }
            Ok(Err(e)) => last = format!("{s}: {e}"),
            Err(_) => last = format!("{s}: no answer within {timeout:?}"),
        }
    }
    Err(EtcdError::Unreachable(format!(
        "discovery_srv: looking up {name}: {last}"
    )))
}

fn url(scheme: &str, host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("{scheme}://[{host}]:{port}")
    } else {
        format!("{scheme}://{host}:{port}")
    }
}

/// The `nameserver` addresses of a resolv.conf (port 53), at most three.
pub(crate) fn nameservers(conf: &str) -> Vec<SocketAddr> {
    conf.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("nameserver")).then_some(())?;
            // A scoped IPv6 address (`fe80::1%eth0`) is not used.
            let ip: IpAddr = w.next()?.parse().ok()?;
            Some(SocketAddr::new(ip, 53))
        })
        .take(MAX_SERVERS)
        .collect()
}

/// One SRV record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Srv {
    pub(crate) priority: u16,
    pub(crate) weight: u16,
    pub(crate) port: u16,
    pub(crate) target: String,
}

/// Ask `server` for the SRV records of `name`: over UDP, again over TCP
/// when the reply was truncated. Sorted by priority, then by weight
/// (heaviest first). NXDOMAIN or no record: empty.
async fn ask(server: SocketAddr, name: &str) -> Result<Vec<Srv>, String> {
    let id = query_id();
    let q = query(id, name)?;
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = UdpSocket::bind(bind).await.map_err(|e| e.to_string())?;
    sock.connect(server).await.map_err(|e| e.to_string())?;
    sock.send(&q).await.map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 4096];
    let reply = loop {
        let n = sock.recv(&mut buf).await.map_err(|e| e.to_string())?;
        // Another reply (a late one to an earlier query) is ignored.
        if n >= 2 && u16::from_be_bytes([buf[0], buf[1]]) == id {
            break &buf[..n];
        }
    };
    match parse(reply, id) {
        Err(Parse::Truncated) => {
            let mut tcp = TcpStream::connect(server)
                .await
                .map_err(|e| e.to_string())?;
            let mut framed = (q.len() as u16).to_be_bytes().to_vec();
            framed.extend_from_slice(&q);
            tcp.write_all(&framed).await.map_err(|e| e.to_string())?;
            let len = tcp.read_u16().await.map_err(|e| e.to_string())?;
            let mut reply = vec![0u8; usize::from(len)];
            tcp.read_exact(&mut reply)
                .await
                .map_err(|e| e.to_string())?;
            parse(&reply, id).map_err(|e| e.to_string())
        }
        r => r.map_err(|e| e.to_string()),
    }
}

/// A query id no one can guess from the last (std's per-process random
/// hash keys, and the time).
fn query_id() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    (h.finish() & 0xffff) as u16
}

/// A standard query with recursion desired for `name`'s SRV records.
pub fn query(id: u16, name: &str) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("{name}: not a DNS name"));
        }
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    if q.len() > 12 + 255 {
        return Err(format!("{name}: too long for DNS"));
    }
    q.extend_from_slice(&TYPE_SRV.to_be_bytes());
    q.extend_from_slice(&CLASS_IN.to_be_bytes());
    Ok(q)
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Parse {
    Truncated,
    Bad(String),
}

impl std::fmt::Display for Parse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Parse::Truncated => f.write_str("truncated reply"),
            Parse::Bad(s) => f.write_str(s),
        }
    }
}

/// The SRV records of a reply to query `id` (sorted; see [`ask`]).
pub(crate) fn parse(msg: &[u8], id: u16) -> Result<Vec<Srv>, Parse> {
    let bad = |s: &str| Parse::Bad(format!("bad DNS reply: {s}"));
    if msg.len() < 12 {
        return Err(bad("too short"));
    }
    let u16_at = |i: usize| -> Result<u16, Parse> {
        msg.get(i..i + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| bad("cut short"))
    };
    if u16_at(0)? != id || msg[2] & 0x80 == 0 {
        return Err(bad("not the reply to the query"));
    }
    if msg[2] & 0x02 != 0 {
        return Err(Parse::Truncated);
    }
    match msg[3] & 0x0f {
        0 => {}
        3 => return Ok(Vec::new()),
        rcode => {
            return Err(Parse::Bad(format!(
                "the name server answered rcode {rcode}"
            )));
        }
    }
    let (qd, an) = (u16_at(4)?, u16_at(6)?);
    let mut at = 12;
    for _ in 0..qd {
        at = skip_name(msg, at).ok_or_else(|| bad("question"))? + 4;
    }
    let mut out = Vec::new();
    for _ in 0..an {
        at = skip_name(msg, at).ok_or_else(|| bad("answer name"))?;
        let (rtype, class) = (u16_at(at)?, u16_at(at + 2)?);
        let len = usize::from(u16_at(at + 8)?);
        let data = at + 10;
        if data + len > msg.len() {
            return Err(bad("record cut short"));
        }
        if rtype == TYPE_SRV && class == CLASS_IN && len >= 7 {
            let target = read_name(msg, data + 6).ok_or_else(|| bad("SRV target"))?;
            if !target.is_empty() && target != "." {
                out.push(Srv {
                    priority: u16_at(data)?,
                    weight: u16_at(data + 2)?,
                    port: u16_at(data + 4)?,
                    target,
                });
            }
        }
        at = data + len;
    }
    out.sort_by(|a, b| {
        (a.priority, std::cmp::Reverse(a.weight)).cmp(&(b.priority, std::cmp::Reverse(b.weight)))
    });
    out.retain(|r| r.port != 0);
    Ok(out)
}

/// The offset after the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2).filter(|&e| e <= msg.len()),
            l if l & 0xc0 == 0 => at += 1 + usize::from(l),
            _ => return None,
        }
    }
}

/// The name at `at` (following compression pointers, a bounded number of
/// them), dotted, without the final dot; None when malformed or not
/// letters, digits, `-`, `_`.
fn read_name(msg: &[u8], mut at: usize) -> Option<String> {
    let mut out = String::new();
    let mut jumps = 0;
    loop {
        let len = *msg.get(at)?;
        if len == 0 {
            return Some(out);
        }
        if len & 0xc0 == 0xc0 {
            jumps += 1;
            if jumps > 16 {
                return None;
            }
            at = usize::from(u16::from_be_bytes([len & 0x3f, *msg.get(at + 1)?]));
            continue;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        let label = msg.get(at + 1..at + 1 + usize::from(len))?;
        if !label
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
        {
            return None;
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(std::str::from_utf8(label).ok()?);
        if out.len() > 253 {
            return None;
        }
        at += 1 + usize::from(len);
    }
}

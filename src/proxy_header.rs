//! The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and
//! 2): the parser for headers received from an upstream balancer and the
//! encoder for headers sent to backends and by health checks. Pure: no
//! I/O, no allocation, no state; the accept path (`proxy::accept`) and the
//! connects (`proxy::connect`, `monitor::probe`) do the reading and
//! writing. A leaf module so that both the proxy and the monitor use it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Which header a group sends to its backends (`proxy_protocol:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// The text header (`PROXY TCP4 ...`).
    V1,
    /// The binary header.
    V2,
}

impl Version {
    pub(crate) fn from_word(w: &str) -> Option<Version> {
        match w {
            "v1" => Some(Version::V1),
            "v2" => Some(Version::V2),
            _ => None,
        }
    }
}

/// The v2 signature (12 bytes).
pub(crate) const V2_SIG: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 prefix.
const V1_PREFIX: &[u8] = b"PROXY ";
/// A v1 header is at most this long, CRLF included (the spec's bound).
pub(crate) const V1_MAX: usize = 107;
/// The fixed part of a v2 header, before its address block.
pub(crate) const V2_FIXED: usize = 16;
/// The largest v2 address block (with TLVs) accepted. The spec allows
/// 65535; the addresses take at most 216 and the TLVs real balancers add
/// (AWS, GCP, Azure ids, SSL details) stay well under this.
pub(crate) const V2_MAX_BLOCK: usize = 2048;
/// The longest header accepted of either version.
pub const MAX_HEADER: usize = V2_FIXED + V2_MAX_BLOCK;

/// What a complete header says about the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addrs {
    /// A proxied TCP connection: the client's address and the address it
    /// connected to.
    Tcp {
        /// The client.
        src: SocketAddr,
        /// The address the client connected to.
        dst: SocketAddr,
    },
    /// `PROXY UNKNOWN`, v2 LOCAL (the upstream's own health check), or an
    /// address family other than TCP over IPv4/IPv6: the connection's own
    /// addresses stand.
    Local,
}

/// How far a buffer (the bytes received so far) goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    /// A valid start, not complete yet: every byte so far belongs to the
    /// header, so a reader may consume them all and wait for more.
    Incomplete,
    /// A complete header of `len` bytes; what follows it is the client's.
    Complete {
        /// The header's length in bytes.
        len: usize,
        /// What it says.
        addrs: Addrs,
    },
}

/// Why a received header is refused (one short phrase for the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("no PROXY protocol signature")]
    NoSignature,
    #[error("v1 header longer than 107 bytes")]
    V1TooLong,
    #[error("malformed v1 header: {0}")]
    V1(&'static str),
    #[error("v2 header of {0} bytes is over the limit of {MAX_HEADER}")]
    V2TooLong(usize),
    #[error("malformed v2 header: {0}")]
    V2(&'static str),
}

/// Parse the start of a connection. Never panics, never reads past `buf`,
/// never asks for more than [`MAX_HEADER`] bytes in all.
pub fn parse(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let sig_len = buf.len().min(V2_SIG.len());
    if buf.get(..sig_len) == V2_SIG.get(..sig_len) && !buf.is_empty() {
        return parse_v2(buf);
    }
    let pre_len = buf.len().min(V1_PREFIX.len());
    if buf.get(..pre_len) == V1_PREFIX.get(..pre_len) {
        return parse_v1(buf);
    }
    Err(HeaderError::NoSignature)
}

/// Whether the bytes a client sent begin with a PROXY header's signature
/// (a whole v1 prefix or v2 signature: a shorter start proves nothing).
pub(crate) fn has_signature(buf: &[u8]) -> bool {
    buf.starts_with(V1_PREFIX) || buf.starts_with(&V2_SIG)
}

/// The longest prefix [`has_signature`] needs.
pub(crate) const SIGNATURE_LEN: usize = V2_SIG.len();

fn parse_v1(buf: &[u8]) -> Result<Parsed, HeaderError> {
    // The first LF ends the line; it must follow a CR (a lone LF is
    // never part of a v1 line, not even in UNKNOWN's ignored rest).
    let Some(lf) = buf.iter().position(|&b| b == b'\n') else {
        if buf.len() >= V1_MAX {
            return Err(HeaderError::V1TooLong);
        }
        return Ok(Parsed::Incomplete);
    };
    if lf >= V1_MAX {
        return Err(HeaderError::V1TooLong);
    }
    let Some(end) = lf.checked_sub(1).filter(|&e| buf.get(e) == Some(&b'\r')) else {
        return Err(HeaderError::V1("line feed without carriage return"));
    };
    let len = end + 2;
    if len > V1_MAX {
        return Err(HeaderError::V1TooLong);
    }
    let line = buf.get(V1_PREFIX.len()..end).unwrap_or_default();
    let line = std::str::from_utf8(line).map_err(|_| HeaderError::V1("not ASCII"))?;
    let mut f = line.split(' ');
    let proto = f.next().unwrap_or_default();
    let v6 = match proto {
        // The rest of an UNKNOWN line is ignored, as the spec says.
        "UNKNOWN" => {
            return Ok(Parsed::Complete {
                len,
                addrs: Addrs::Local,
            });
        }
        "TCP4" => false,
        "TCP6" => true,
        _ => return Err(HeaderError::V1("protocol is not TCP4, TCP6 or UNKNOWN")),
    };
    let (Some(s), Some(d), Some(sp), Some(dp), None) =
        (f.next(), f.next(), f.next(), f.next(), f.next())
    else {
        return Err(HeaderError::V1("expected 4 fields after the protocol"));
    };
    let ip = |t: &str| -> Result<IpAddr, HeaderError> {
        let a = if v6 {
            t.parse::<Ipv6Addr>().map(IpAddr::V6)
        } else {
            t.parse::<Ipv4Addr>().map(IpAddr::V4)
        };
        a.map_err(|_| HeaderError::V1("bad address for its protocol"))
    };
    let src = SocketAddr::new(ip(s)?, v1_port(sp)?);
    let dst = SocketAddr::new(ip(d)?, v1_port(dp)?);
    Ok(Parsed::Complete {
        len,
        addrs: Addrs::Tcp { src, dst },
    })
}

/// A port as v1 writes it: decimal, no sign, no leading zero.
fn v1_port(t: &str) -> Result<u16, HeaderError> {
    let ok = !t.is_empty()
        && t.len() <= 5
        && t.bytes().all(|b| b.is_ascii_digit())
        && (t == "0" || !t.starts_with('0'));
    if !ok {
        return Err(HeaderError::V1("bad port"));
    }
    t.parse().map_err(|_| HeaderError::V1("bad port"))
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let Some(fixed) = buf.get(..V2_FIXED) else {
        return Ok(Parsed::Incomplete);
    };
    let fixed: [u8; V2_FIXED] = fixed.try_into().unwrap_or([0; V2_FIXED]);
    let [.., ver_cmd, fam, hi, lo] = fixed;
    let block = usize::from(u16::from_be_bytes([hi, lo]));
    if ver_cmd >> 4 != 2 {
        return Err(HeaderError::V2("version is not 2"));
    }
    let local = match ver_cmd & 0x0f {
        0 => true,
        1 => false,
        _ => return Err(HeaderError::V2("command is neither LOCAL nor PROXY")),
    };
    let len = V2_FIXED + block;
    if len > MAX_HEADER {
        return Err(HeaderError::V2TooLong(len));
    }
    let need = match fam {
        0x11 => 12,
        0x21 => 36,
        _ => 0,
    };
    if !local && block < need {
        return Err(HeaderError::V2("address block shorter than its family"));
    }
    let Some(body) = buf.get(V2_FIXED..len) else {
        return Ok(Parsed::Incomplete);
    };
    if local || need == 0 {
        return Ok(Parsed::Complete {
            len,
            addrs: Addrs::Local,
        });
    }
    let (src, dst) = if fam == 0x11 {
        let Some(&[a, b, c, d, e, f, g, h, sp0, sp1, dp0, dp1]) = body.first_chunk::<12>() else {
            return Err(HeaderError::V2("address block shorter than its family"));
        };
        (
            SocketAddr::new(IpAddr::from([a, b, c, d]), u16::from_be_bytes([sp0, sp1])),
            SocketAddr::new(IpAddr::from([e, f, g, h]), u16::from_be_bytes([dp0, dp1])),
        )
    } else {
        let Some((s, rest)) = body.split_first_chunk::<16>() else {
            return Err(HeaderError::V2("address block shorter than its family"));
        };
        let Some((d, rest)) = rest.split_first_chunk::<16>() else {
            return Err(HeaderError::V2("address block shorter than its family"));
        };
        let Some(&[sp0, sp1, dp0, dp1]) = rest.first_chunk::<4>() else {
            return Err(HeaderError::V2("address block shorter than its family"));
        };
        (
            SocketAddr::new(IpAddr::from(*s), u16::from_be_bytes([sp0, sp1])),
            SocketAddr::new(IpAddr::from(*d), u16::from_be_bytes([dp0, dp1])),
        )
    };
    Ok(Parsed::Complete {
        len,
        addrs: Addrs::Tcp { src, dst },
    })
}

/// An encoded header, on the stack (at most [`V1_MAX`] bytes).
#[derive(Clone, Copy)]
pub struct Header {
    buf: [u8; V1_MAX],
    len: usize,
}

impl Header {
    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    fn push(&mut self, b: &[u8]) {
        if let Some(dst) = self.buf.get_mut(self.len..self.len + b.len()) {
            dst.copy_from_slice(b);
            self.len += b.len();
        }
    }
}

impl std::fmt::Debug for Header {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Header({:?})",
            self.as_bytes().escape_ascii().to_string()
        )
    }
}

/// The header for a proxied connection from `src` to `dst`. Addresses of
/// different families (an IPv4 client on an IPv6 listener) are both sent
/// as IPv6 (IPv4-mapped); IPv4-mapped pairs are sent as IPv4.
pub fn encode(v: Version, src: SocketAddr, dst: SocketAddr) -> Header {
    let mut h = Header {
        buf: [0; V1_MAX],
        len: 0,
    };
    let (s, d) = (src.ip().to_canonical(), dst.ip().to_canonical());
    let pair = match (s, d) {
        (IpAddr::V4(s), IpAddr::V4(d)) => Ok((s, d)),
        _ => Err((v6(s), v6(d))),
    };
    match v {
        Version::V1 => {
            use std::io::Write;
            let mut w = std::io::Cursor::new(&mut h.buf[..]);
            // At most "PROXY TCP6 " + 2 × 39 + 2 × 5 + 3 spaces + CRLF
            // = 104 bytes: it always fits.
            let _ = match pair {
                Ok((s, d)) => write!(w, "PROXY TCP4 {s} {d} {} {}\r\n", src.port(), dst.port()),
                Err((s, d)) => write!(w, "PROXY TCP6 {s} {d} {} {}\r\n", src.port(), dst.port()),
            };
            h.len = usize::try_from(w.position()).unwrap_or(0);
        }
        Version::V2 => {
            h.push(&V2_SIG);
            match pair {
                Ok((s, d)) => {
                    h.push(&[0x21, 0x11]);
                    h.push(&12u16.to_be_bytes());
                    h.push(&s.octets());
                    h.push(&d.octets());
                }
                Err((s, d)) => {
                    h.push(&[0x21, 0x21]);
                    h.push(&36u16.to_be_bytes());
                    h.push(&s.octets());
                    h.push(&d.octets());
                }
            }
            h.push(&src.port().to_be_bytes());
            h.push(&dst.port().to_be_bytes());
        }
    }
    h
}

/// The header a health check sends: no client behind it (`PROXY
/// UNKNOWN`, v2 LOCAL), so the backend uses the connection's own
/// addresses.
pub(crate) fn encode_local(v: Version) -> Header {
    let mut h = Header {
        buf: [0; V1_MAX],
        len: 0,
    };
    match v {
        Version::V1 => h.push(b"PROXY UNKNOWN\r\n"),
        Version::V2 => {
            h.push(&V2_SIG);
            h.push(&[0x20, 0x00, 0, 0]);
        }
    }
    h
}

fn v6(ip: IpAddr) -> Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

#[cfg(test)]
mod tests;

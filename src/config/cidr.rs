//! An address range written `ADDR/LEN` (or a bare address: one host), for
//! `accept_proxy:`. IPv4 ranges also match IPv4-mapped IPv6 peers (a
//! dual-stack listener sees IPv4 clients as `::ffff:a.b.c.d`).

use std::fmt;
use std::net::IpAddr;

/// A parsed, normalized range (host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    addr: IpAddr,
    len: u8,
}

impl Cidr {
    /// `10.0.0.0/8`, `2001:db8::/32`, `127.0.0.1` (a /32), `::1` (a /128).
    pub(crate) fn parse(s: &str) -> Result<Cidr, String> {
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{}: not an IP address", crate::config::quote(a)))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match l {
            None => max,
            Some(l) => l
                .parse::<u8>()
                .ok()
                .filter(|n| *n <= max && !l.starts_with('+'))
                .ok_or_else(|| {
                    format!("{}: prefix length must be 0-{max}", crate::config::quote(s))
                })?,
        };
        Ok(Cidr {
            addr: mask(addr, len),
            len,
        })
    }

    /// Whether `ip` lies in the range.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let m = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            IpAddr::from((u32::from(v4) & m).to_be_bytes())
        }
        IpAddr::V6(v6) => {
            let m = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            IpAddr::from((u128::from(v6) & m).to_be_bytes())
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// A comma-separated list (`--accept-proxy 10.0.0.0/8,127.0.0.1`).
pub(crate) fn parse_list(s: &str) -> Result<Vec<Cidr>, String> {
    s.split(',').map(|t| Cidr::parse(t.trim())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contains() {
        let c = Cidr::parse("10.1.2.3/8").unwrap();
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains("10.255.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(!c.contains("11.0.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        let h = Cidr::parse("127.0.0.1").unwrap();
        assert_eq!(h.to_string(), "127.0.0.1/32");
        assert!(h.contains("127.0.0.1".parse().unwrap()));
        assert!(!h.contains("127.0.0.2".parse().unwrap()));
        let all = Cidr::parse("0.0.0.0/0").unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(v6.contains("2001:db8:1::5".parse().unwrap()));
        assert!(!v6.contains("2001:db9::".parse().unwrap()));
        assert!(
            Cidr::parse("::/0")
                .unwrap()
                .contains("::1".parse().unwrap())
        );
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0.0/",
            "x/8",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_list("127.0.0.1, ::1").unwrap().len(), 2);
        assert!(parse_list("127.0.0.1,,::1").is_err());
    }
}

//! Checked scalars of the config file: each wrapper validates while it is
//! deserialized, so an error carries the line and column of its node.
//! The token grammars themselves live in `config::grammar`.

use crate::config::quote;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};

use crate::config::ChannelConfig;
use crate::config::grammar::{parse_bind, parse_channel, parse_duration};
use crate::config::services::parse_port;

pub(super) fn nonempty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let v = Vec::<T>::deserialize(d)?;
    if v.is_empty() {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(v)
}

/// A duration: `500ms`, `2s`, `1m`, or a number of seconds.
#[derive(Clone, Copy)]
pub(super) struct Dur(pub(super) Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 500ms, 2s or 1m")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Dur, E> {
                self.visit_str(&n.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// An integer in `LO..=HI`.
#[derive(Clone, Copy)]
pub(super) struct Bounded<const LO: u64, const HI: u64>(pub(super) u64);

impl<'de, const LO: u64, const HI: u64> Deserialize<'de> for Bounded<LO, HI> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const LO: u64, const HI: u64>;
        impl<const LO: u64, const HI: u64> Visitor<'_> for V<LO, HI> {
            type Value = Bounded<LO, HI>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a whole number {LO}-{HI}")
            }
            fn visit_i128<E: de::Error>(self, n: i128) -> Result<Self::Value, E> {
                if n < i128::from(LO) || n > i128::from(HI) {
                    return Err(E::custom(format!("{n} is out of range ({LO}-{HI})")));
                }
                Ok(Bounded(n as u64))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                self.visit_i128(i128::from(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                self.visit_i128(i128::from(n))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!("{n} is not a whole number ({LO}-{HI})")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                match s.trim().parse::<i128>() {
                    Ok(n) => self.visit_i128(n),
                    Err(_) => Err(E::custom(format!(
                        "{} is not a whole number ({LO}-{HI})",
                        quote(s)
                    ))),
                }
            }
        }
        d.deserialize_any(V::<LO, HI>)
    }
}

/// A port: 1–65535 or a /etc/services name.
#[derive(Clone, Copy)]
pub(super) struct Port(pub(super) u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number (1-65535) or service name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Port, E> {
                parse_port(s).map(Port).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Port, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Port, E> {
                Err(E::custom(format!("port {n} is out of range (1-65535)")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A group or channel name (see `crate::config::names`).
#[derive(Clone)]
pub(super) struct ItemName(pub(super) String);

impl<'de> Deserialize<'de> for ItemName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ItemName;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a name of A-Z a-z 0-9 . _ -, not all digits")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ItemName, E> {
                match crate::config::names::invalid(s) {
                    None => Ok(ItemName(s.to_string())),
                    Some(why) => Err(E::custom(format!("bad name {}: {why}", quote(s)))),
                }
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<ItemName, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<ItemName, E> {
                self.visit_str(&n.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// A listener name: 1–64 of `[A-Za-z0-9._-]` (used in metrics labels,
/// logs and control socket paths).
#[derive(Clone)]
pub(super) struct Name(pub(super) String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(de::Error::custom(format!(
                "bad name {}: use 1-64 of A-Z a-z 0-9 . _ -",
                quote(&s)
            )));
        }
        Ok(Name(s))
    }
}

/// `addr:port` with an IP literal (IPv6 in brackets); `*:port` or `:port`
/// for all IPv4 addresses.
#[derive(Clone, Copy)]
pub(super) struct Bind(pub(super) SocketAddr);

impl<'de> Deserialize<'de> for Bind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_bind(&s).map(Bind).map_err(de::Error::custom)
    }
}

/// An IP literal (`source:`).
#[derive(Clone, Copy)]
pub(super) struct IpLit(pub(super) IpAddr);

impl<'de> Deserialize<'de> for IpLit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let lit = s
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(&s);
        lit.parse()
            .map(IpLit)
            .map_err(|_| de::Error::custom(format!("bad address {}", quote(&s))))
    }
}

/// An HTTP request path: starts with `/`, printable ASCII, no spaces.
pub(super) struct HttpPath(pub(super) String);

impl<'de> Deserialize<'de> for HttpPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if !s.starts_with('/') || s.len() > 1024 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(de::Error::custom(format!(
                "bad path {}: must start with / and have no spaces",
                quote(&s)
            )));
        }
        Ok(HttpPath(s))
    }
}

/// Inclusive HTTP status ranges: `200`, `"200-399"`, `"200,204,300-302"`.
pub(super) struct StatusRanges(pub(super) Vec<(u16, u16)>);

fn parse_status_ranges(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let bad = || format!("bad status list {}: use e.g. 200-399,404", quote(s));
    let code = |t: &str| {
        t.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(bad)
    };
    s.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (code(a)?, code(b)?);
                if a > b { Err(bad()) } else { Ok((a, b)) }
            }
            None => code(part).map(|c| (c, c)),
        })
        .collect()
}

impl<'de> Deserialize<'de> for StatusRanges {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StatusRanges;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status code or a list such as \"200-399\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StatusRanges, E> {
                parse_status_ranges(s).map(StatusRanges).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<StatusRanges, E> {
                self.visit_str(&n.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// A command's argv: an absolute program path, no shell.
pub(super) struct Argv(pub(super) Vec<String>);

impl<'de> Deserialize<'de> for Argv {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        match v.first() {
            None => Err(de::Error::custom("must not be empty")),
            Some(p) if !p.starts_with('/') => Err(de::Error::custom(format!(
                "program {} must be an absolute path",
                quote(p)
            ))),
            Some(_) if v.len() > 64 || v.iter().any(|a| a.contains('\0')) => {
                Err(de::Error::custom("too many or invalid arguments"))
            }
            Some(_) => Ok(Argv(v)),
        }
    }
}

/// A channel: `"host[:port[:maxc]]"` like the command line, or a map
/// `{host, port, maxc, weight}`. Port 0 here means "the listener's port".
pub(super) struct RawChannel(pub(super) ChannelConfig);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelMap {
    #[serde(default)]
    name: Option<ItemName>,
    host: String,
    #[serde(default)]
    port: Option<Port>,
    #[serde(default)]
    maxc: Option<Bounded<0, 1_000_000>>,
    #[serde(default)]
    weight: Option<Bounded<1, 1000>>,
}

impl<'de> Deserialize<'de> for RawChannel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawChannel;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"host[:port[:maxc]]\" or a map with name, host, port, maxc, weight")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawChannel, E> {
                parse_channel(s, 0).map(RawChannel).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawChannel, A::Error> {
                let m = ChannelMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let tok = match m.host.parse::<IpAddr>() {
                    Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
                    _ => m.host.clone(),
                };
                let mut c = parse_channel(&tok, 0).map_err(de::Error::custom)?;
                if tok.contains(':') && !tok.starts_with('[') {
                    return Err(de::Error::custom(format!(
                        "host {}: give the port as port:",
                        quote(&m.host)
                    )));
                }
                if let Some(p) = m.port {
                    c.port = p.0;
                }
                if let Some(n) = m.name {
                    c.name = n.0;
                }
                if let Some(x) = m.maxc {
                    c.maxc = x.0 as u32;
                }
                if let Some(w) = m.weight {
                    c.weight = w.0 as u32;
                }
                Ok(RawChannel(c))
            }
        }
        d.deserialize_any(V)
    }
}

/// A socket file's mode: `"0660"`, or a number written `0660`/`660` (its
/// digits read as octal), at most 0660 and at least 0600.
#[derive(Clone, Copy)]
pub(super) struct Mode(pub(super) u32);

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Mode;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an octal mode such as \"0660\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Mode, E> {
                crate::config::HaproxySocket::parse_mode(s)
                    .map(Mode)
                    .map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Mode, E> {
                self.visit_str(&n.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

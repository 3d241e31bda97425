//! A route table: keys (exact names, `*.` wildcards, addresses and CIDR
//! blocks) → targets. Built whole and never changed; a new file makes a
//! new table.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::config::route::{RouteKey, RouteTarget, mask};

/// A key a client gives.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Key<'a> {
    /// A server name, lowercased.
    Name(&'a str),
    Ip(IpAddr),
}

#[derive(Debug, Default)]
pub(crate) struct Table {
    names: HashMap<Box<str>, RouteTarget>,
    /// `*.example.com` stored as `example.com`.
    wildcards: HashMap<Box<str>, RouteTarget>,
    /// Blocks by prefix length, longest first.
    nets: Vec<(u8, bool, HashMap<IpAddr, RouteTarget>)>,
}

impl Table {
    /// A table of `entries`; a later entry for the same key wins.
    pub(crate) fn new(entries: impl IntoIterator<Item = (RouteKey, RouteTarget)>) -> Table {
        let mut t = Table::default();
        for (k, target) in entries {
            match k {
                RouteKey::Name(n) => {
                    t.names.insert(n.into(), target);
                }
                RouteKey::Wildcard(n) => {
                    t.wildcards.insert(n.into(), target);
                }
                RouteKey::Net(ip, bits) => {
                    let v4 = ip.is_ipv4();
                    let i = match t.nets.iter().position(|(b, f, _)| (*b, *f) == (bits, v4)) {
                        Some(i) => i,
                        None => {
                            t.nets.push((bits, v4, HashMap::new()));
                            t.nets.len() - 1
                        }
                    };
                    if let Some((_, _, m)) = t.nets.get_mut(i) {
                        m.insert(ip, target);
                    }
                }
            }
        }
        t.nets.sort_by_key(|n| std::cmp::Reverse(n.0));
        t
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
            + self.wildcards.len()
            + self.nets.iter().map(|(_, _, m)| m.len()).sum::<usize>()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The most specific entry for `key`: an exact name before the longest
    /// wildcard; the longest prefix.
    pub(crate) fn get(&self, key: Key<'_>) -> Option<RouteTarget> {
        match key {
            Key::Name(n) => {
                if let Some(t) = self.names.get(n) {
                    return Some(*t);
                }
                if self.wildcards.is_empty() {
                    return None;
                }
                let mut rest = n;
                while let Some((_, parent)) = rest.split_once('.') {
                    if let Some(t) = self.wildcards.get(parent) {
                        return Some(*t);
                    }
                    rest = parent;
                }
                None
            }
            Key::Ip(ip) => {
                let ip = ip.to_canonical();
                self.nets
                    .iter()
                    .filter(|(_, v4, _)| *v4 == ip.is_ipv4())
                    .find_map(|(bits, _, m)| m.get(&mask(ip, *bits)).copied())
            }
        }
    }
}

#[cfg(test)]
mod tests;

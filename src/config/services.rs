//! Port numbers from numbers or /etc/services names (`mysql`, `pop3`); the
//! services table is read once and never changes.

use crate::config::quote;
use std::sync::OnceLock;

const SERVICES_FILE: &str = "/etc/services";

/// `(name, port)` for every tcp entry and alias in /etc/services, read once.
fn table() -> &'static [(String, u16)] {
    static TABLE: OnceLock<Vec<(String, u16)>> = OnceLock::new();
    TABLE.get_or_init(|| {
        std::fs::read_to_string(SERVICES_FILE)
            .map(|text| parse_services(&text))
            .unwrap_or_default()
    })
}

fn parse_services(text: &str) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("");
        let mut fields = line.split_whitespace();
        let (Some(name), Some(portproto)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Some((port, proto)) = portproto.split_once('/') else {
            continue;
        };
        if proto != "tcp" {
            continue;
        }
        let Ok(port) = port.parse::<u16>() else {
            continue;
        };
        out.push((name.to_string(), port));
        out.extend(fields.map(|alias| (alias.to_string(), port)));
    }
    out
}

/// A port given as a number (1–65535) or a tcp service name.
pub(crate) fn parse_port(s: &str) -> Result<u16, String> {
    if s.is_empty() {
        return Err("empty port".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return match s.parse::<u32>() {
            Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
            _ => Err(format!("port {s} is out of range (1-65535)")),
        };
    }
    table()
        .iter()
        .find(|(name, _)| name == s)
        .map(|(_, p)| *p)
        .ok_or_else(|| format!("unknown service {}", quote(s)))
}

#[cfg(test)]
mod tests;

//! Port numbers from numbers or /etc/services names (`mysql`, `pop3`).

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
pub fn parse_port(s: &str) -> Result<u16, String> {
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
        .ok_or_else(|| format!("unknown service \"{s}\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_file_lines_are_parsed_with_aliases() {
        let t = parse_services("http 80/tcp www # web\nfoo 7/udp\n\nmysql\t3306/tcp\nbad x/tcp\n");
        assert_eq!(
            t,
            vec![
                ("http".to_string(), 80),
                ("www".to_string(), 80),
                ("mysql".to_string(), 3306)
            ]
        );
    }

    #[test]
    fn ports_are_numbers_or_names() {
        assert_eq!(parse_port("8080"), Ok(8080));
        assert_eq!(parse_port("65535"), Ok(65535));
        assert!(parse_port("0").is_err());
        assert!(parse_port("65536").is_err());
        assert!(parse_port("99999999999999").is_err());
        assert!(parse_port("").is_err());
        assert!(parse_port("no-such-service-here").is_err());
        if std::path::Path::new(SERVICES_FILE).exists() {
            assert_eq!(parse_port("mysql"), Ok(3306));
        }
    }
}

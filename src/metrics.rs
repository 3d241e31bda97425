//! `--metrics ADDR`: Prometheus text exposition (format 0.0.4) on
//! `GET /metrics`, served by a tiny HTTP/1.0 responder: one request per
//! connection, request head ≤ 8 KiB read within 5 s, at most 16 scrapes at
//! once, `Connection: close`. Everything is read from the live atomics at
//! scrape time.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::app::Supervisor;
use crate::pool::ShownState;
use crate::service::Service;

const MAX_REQUEST: usize = 8 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_SCRAPES: usize = 16;

pub async fn serve(listener: TcpListener, sup: Arc<Supervisor>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPES));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let Ok((sock, _)) = accepted else {
            // Resource errors: pause briefly instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue; // too many scrapes at once: drop this one
        };
        let sup = Arc::clone(&sup);
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(IO_TIMEOUT, answer(sock, &sup)).await {
                debug!("metrics: {e}");
            }
            drop(permit);
        });
    }
}

async fn answer(mut sock: TcpStream, sup: &Supervisor) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > MAX_REQUEST {
            let _ = respond(&mut sock, "431 Request Header Fields Too Large", "").await;
            return;
        }
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or(b"");
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => ("200 OK", render(&sup.services())),
        ("GET", _) => ("404 Not Found", "try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", String::new()),
    };
    let _ = respond(&mut sock, status, &body).await;
}

async fn respond(sock: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await
}

/// Escape a label value (backslash, quote, newline).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text for these Services.
pub fn render(svcs: &[Arc<Service>]) -> String {
    let mut o = String::with_capacity(4096);
    type ListenerGetter = fn(&Service) -> u64;
    let per_listener: [(&str, &str, &str, ListenerGetter); 7] = [
        (
            "balance_listener_accepted_total",
            "counter",
            "Connections accepted.",
            |s| s.stats.accepted.load(Relaxed),
        ),
        (
            "balance_listener_refused_total",
            "counter",
            "Clients closed because no channel could take them.",
            |s| s.stats.refused.load(Relaxed),
        ),
        (
            "balance_listener_failovers_total",
            "counter",
            "Connections served by a group other than the first tried.",
            |s| s.stats.failovers.load(Relaxed),
        ),
        (
            "balance_listener_failover_events_total",
            "counter",
            "Times traffic moved to a higher (backup) group.",
            |s| s.stats.failover_events.load(Relaxed),
        ),
        (
            "balance_listener_failback_events_total",
            "counter",
            "Times traffic moved back to a lower group.",
            |s| s.stats.failback_events.load(Relaxed),
        ),
        (
            "balance_listener_spinning",
            "gauge",
            "Clients held by --spin right now.",
            |s| s.stats.spinning.load(Relaxed),
        ),
        (
            "balance_listener_active",
            "gauge",
            "Connections in the relay right now.",
            |s| s.stats.active.load(Relaxed),
        ),
    ];
    let _ = writeln!(
        o,
        "# HELP balance_pipes_in_use Splice pipes held by connections moving bytes.\n# TYPE balance_pipes_in_use gauge\nbalance_pipes_in_use {}\n# HELP balance_pipes_pooled Empty splice pipes kept for reuse (bounded).\n# TYPE balance_pipes_pooled gauge\nbalance_pipes_pooled {}",
        crate::proxy::splice::pipes_in_use(),
        crate::proxy::splice::pipes_pooled()
    );
    for (name, kind, help, get) in per_listener {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for s in svcs {
            let _ = writeln!(o, "{name}{{listener=\"{}\"}} {}", esc(&s.cfg.name), get(s));
        }
    }
    let _ = writeln!(
        o,
        "# HELP balance_listener_failover_group Group new connections start from (manual failback).\n# TYPE balance_listener_failover_group gauge"
    );
    for s in svcs {
        let _ = writeln!(
            o,
            "balance_listener_failover_group{{listener=\"{}\"}} {}",
            esc(&s.cfg.name),
            s.pool.floor()
        );
    }

    let states = [
        ShownState::Ena,
        ShownState::SoftDisabled,
        ShownState::HardDisabled,
        ShownState::Drain,
    ];
    let _ = writeln!(
        o,
        "# HELP balance_channel_state 1 for the channel's current state (ENA, dis, DIS, drn).\n# TYPE balance_channel_state gauge"
    );
    each_channel(svcs, &mut o, |o, labels, ch| {
        let cur = ch.shown_state();
        for st in states {
            let _ = writeln!(
                o,
                "balance_channel_state{{{labels},state=\"{}\"}} {}",
                st.as_str(),
                u8::from(cur == st)
            );
        }
    });
    type ChannelGetter = fn(&crate::pool::Channel) -> u64;
    let per_channel: [(&str, &str, &str, ChannelGetter); 8] = [
        (
            "balance_channel_connections",
            "gauge",
            "Live connections (including connects in progress).",
            |c| u64::from(c.conns()),
        ),
        (
            "balance_channel_connections_total",
            "counter",
            "Connections established.",
            |c| c.total.load(Relaxed),
        ),
        (
            "balance_channel_connect_failures_total",
            "counter",
            "Failed connects.",
            |c| c.connect_failures.load(Relaxed),
        ),
        (
            "balance_channel_checks_passed_total",
            "counter",
            "Health checks that passed.",
            |c| c.checks_passed.load(Relaxed),
        ),
        (
            "balance_channel_checks_failed_total",
            "counter",
            "Health checks that failed.",
            |c| c.checks_failed.load(Relaxed),
        ),
        (
            "balance_channel_check_duration_microseconds",
            "gauge",
            "Duration of the last health check.",
            |c| c.check_micros.load(Relaxed),
        ),
        (
            "balance_channel_sent_bytes_total",
            "counter",
            "Bytes sent to the channel.",
            |c| c.sent.load(Relaxed),
        ),
        (
            "balance_channel_received_bytes_total",
            "counter",
            "Bytes received from the channel.",
            |c| c.rcvd.load(Relaxed),
        ),
    ];
    for (name, kind, help, get) in per_channel {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        each_channel(svcs, &mut o, |o, labels, ch| {
            let _ = writeln!(o, "{name}{{{labels}}} {}", get(ch));
        });
    }
    o
}

fn each_channel(
    svcs: &[Arc<Service>],
    o: &mut String,
    mut f: impl FnMut(&mut String, &str, &crate::pool::Channel),
) {
    for s in svcs {
        for (gi, g) in s.pool.groups().iter().enumerate() {
            for ch in &g.channels {
                let labels = format!(
                    "listener=\"{}\",group=\"{gi}\",channel=\"{}\"",
                    esc(&s.cfg.name),
                    esc(&ch.target().to_string())
                );
                f(o, &labels, ch);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ChannelConfig, GroupConfig, Host, ListenerConfig, Policy};
    use crate::health::RiseFallParams;

    #[test]
    fn exposition_has_every_series_with_labels_and_live_values() {
        let ch = |ip: &str| ChannelConfig {
            host: Host::Ip(ip.parse().unwrap()),
            port: 80,
            maxc: 0,
            weight: 1,
        };
        let cfg = ListenerConfig::new(
            "web\"1".into(),
            "127.0.0.1:1".parse().unwrap(),
            vec![
                GroupConfig {
                    policy: Policy::RoundRobin,
                    channels: vec![ch("10.0.0.1")],
                },
                GroupConfig {
                    policy: Policy::RoundRobin,
                    channels: vec![ch("10.0.0.2")],
                },
            ],
        );
        let svc = Arc::new(Service::new(cfg, RiseFallParams::default()));
        svc.stats.accepted.fetch_add(7, Relaxed);
        let c0 = Arc::clone(&svc.pool.groups()[0].channels[0]);
        c0.sent.fetch_add(123, Relaxed);
        svc.pool.groups()[1].channels[0].force_down("x");
        let text = render(&[svc]);
        let l0 = "listener=\"web\\\"1\",group=\"0\",channel=\"10.0.0.1:80\"";
        let l1 = "listener=\"web\\\"1\",group=\"1\",channel=\"10.0.0.2:80\"";
        for want in [
            "balance_listener_accepted_total{listener=\"web\\\"1\"} 7".to_string(),
            "balance_listener_refused_total{listener=\"web\\\"1\"} 0".into(),
            format!("balance_channel_sent_bytes_total{{{l0}}} 123"),
            format!("balance_channel_state{{{l0},state=\"ENA\"}} 1"),
            format!("balance_channel_state{{{l1},state=\"dis\"}} 1"),
            format!("balance_channel_state{{{l1},state=\"ENA\"}} 0"),
            format!("balance_channel_connections{{{l1}}} 0"),
            "# TYPE balance_channel_connections_total counter".into(),
        ] {
            assert!(text.lines().any(|l| l == want), "missing {want}\n{text}");
        }
        // Every sample line is `name{labels} number`.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<u64>().is_ok(), "{l}");
        }
    }
}

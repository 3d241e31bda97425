//! Running a [`Command`] against one listener, and the output formats
//! (`show`'s table, `show json`, MRTG's four lines).
//!
//! Writers: operator fields are atomics on the channel (one writer: this
//! module); structural changes (`create`) build a new group list and swap
//! it whole, under `write` so two sessions cannot lose each other's
//! changes. The data path never takes a lock for any of this.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

use crate::config::{Host, Policy};
use crate::control::commands::{ChanRef, Command, HELP, MonitorOp};
use crate::control::state::StateFile;
use crate::pool::{Admin, Channel, Group, Target};
use crate::service::{Service, resolve};

/// The answer to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub lines: Vec<String>,
    pub ok: bool,
    /// The session ends after this reply (`quit`, `kill`).
    pub close: bool,
}

impl Reply {
    fn ok(lines: Vec<String>) -> Reply {
        Reply {
            lines,
            ok: true,
            close: false,
        }
    }
    fn line(s: impl Into<String>) -> Reply {
        Reply::ok(vec![s.into()])
    }
    pub fn err(s: impl Into<String>) -> Reply {
        Reply {
            lines: vec![s.into()],
            ok: false,
            close: false,
        }
    }
}

/// Everything the commands of one listener act on.
pub struct Control {
    pub svc: Arc<Service>,
    pub state: Option<Arc<StateFile>>,
    /// `kill` cancels it: the same graceful shutdown as SIGTERM.
    pub shutdown: CancellationToken,
    pub started: Instant,
    /// Serializes changes between sessions.
    write: tokio::sync::Mutex<()>,
}

impl Control {
    pub fn new(
        svc: Arc<Service>,
        state: Option<Arc<StateFile>>,
        shutdown: CancellationToken,
    ) -> Control {
        Control {
            svc,
            state,
            shutdown,
            started: Instant::now(),
            write: tokio::sync::Mutex::new(()),
        }
    }

    /// Run one command for a session whose current group is `*group`;
    /// `line` and `uid` are for the log.
    pub async fn execute(&self, group: &mut usize, cmd: Command, line: &str, uid: u32) -> Reply {
        let _w = if cmd.is_change() {
            Some(self.write.lock().await)
        } else {
            None
        };
        let mut reply = self.run(group, &cmd).await;
        if reply.ok && cmd.is_change() {
            info!(
                listener = %self.svc.cfg.name,
                uid,
                command = %line.trim(),
                "control: {}",
                reply.lines.first().map(String::as_str).unwrap_or("done")
            );
        }
        if reply.ok && cmd.persists() {
            if let Err(e) = self.save().await {
                error!(listener = %self.svc.cfg.name, "state file not written: {e}");
                reply
                    .lines
                    .push(format!("error: state file not written: {e}"));
                reply.ok = false;
            }
        }
        reply
    }

    async fn save(&self) -> Result<(), String> {
        let Some(st) = self.state.clone() else {
            return Ok(());
        };
        let svc = Arc::clone(&self.svc);
        match tokio::task::spawn_blocking(move || st.save(&svc)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn run(&self, cur: &mut usize, cmd: &Command) -> Reply {
        let pool = &self.svc.pool;
        let groups = pool.groups();
        match cmd {
            Command::Nop => Reply::ok(vec![]),
            Command::Help => Reply::ok(HELP.lines().map(String::from).collect()),
            Command::Show => Reply::ok(show_table(&groups)),
            Command::ShowJson => Reply::line(show_json(&self.svc)),
            Command::Version => {
                Reply::line(format!("  This is balance {}", env!("CARGO_PKG_VERSION")))
            }
            Command::Quit => Reply {
                lines: vec![],
                ok: true,
                close: true,
            },
            Command::Group(g) => {
                // One past the last group is allowed: `create` starts it.
                if *g > groups.len() {
                    return Reply::err(format!(
                        "no such group {g} (groups 0-{})",
                        groups.len().saturating_sub(1)
                    ));
                }
                *cur = *g;
                Reply::ok(vec![])
            }
            Command::Enable(r) => self.with_channel(&groups, *cur, r, |name, ch| {
                if ch.admin() == Admin::Enabled && ch.is_up() {
                    return Reply::line(format!("{name} already enabled"));
                }
                ch.set_admin(Admin::Enabled);
                ch.force_up();
                Reply::line(format!("{name} enabled"))
            }),
            Command::Disable(r) => self.with_channel(&groups, *cur, r, |name, ch| {
                if ch.admin() == Admin::Disabled {
                    return Reply::line(format!("{name} already disabled"));
                }
                ch.set_admin(Admin::Disabled);
                Reply::line(format!("{name} disabled"))
            }),
            Command::Drain(r) => self.with_channel(&groups, *cur, r, |name, ch| {
                if ch.admin() == Admin::Drain {
                    return Reply::line(format!("{name} already draining"));
                }
                ch.set_admin(Admin::Drain);
                Reply::line(format!(
                    "{name} draining ({} live connections continue)",
                    ch.conns()
                ))
            }),
            Command::Reset(r) => self.with_channel(&groups, *cur, r, |name, ch| {
                ch.sent.store(0, Relaxed);
                ch.rcvd.store(0, Relaxed);
                ch.total.store(0, Relaxed);
                Reply::line(format!("{name} counters reset"))
            }),
            Command::Maxc(r, n) => self.with_channel(&groups, *cur, r, |name, ch| {
                ch.set_maxc(*n);
                Reply::line(format!("maxc of {name} changed to {n}"))
            }),
            Command::Weight(r, w) => self.with_channel(&groups, *cur, r, |name, ch| {
                ch.set_weight(*w);
                Reply::line(format!("weight of {name} changed to {w}"))
            }),
            Command::Hash | Command::Rr => {
                let Some(g) = groups.get(*cur) else {
                    return Reply::err(format!("no such group {cur}"));
                };
                if matches!(cmd, Command::Hash) {
                    g.set_policy(Policy::Hash);
                    Reply::line(format!("group {cur} set to hash"))
                } else {
                    g.set_policy(Policy::RoundRobin);
                    Reply::line(format!("group {cur} set to round robin"))
                }
            }
            Command::Assign(r, host, port) => {
                let (g, c, ch) = match find(&groups, *cur, r) {
                    Ok(x) => x,
                    Err(e) => return Reply::err(e),
                };
                let name = label(*cur, g, c);
                if ch.admin() != Admin::Disabled {
                    return Reply::err(format!("{name} must be disabled to assign new address"));
                }
                let addrs = resolve_async(host, *port).await;
                if addrs.is_empty() {
                    return Reply::err(format!("invalid address {host}: does not resolve"));
                }
                ch.set_target(Target {
                    host: host.clone(),
                    port: *port,
                    addrs,
                });
                Reply::line("channel reassigned")
            }
            Command::Create(host, port) => {
                let g = *cur;
                if g > groups.len() {
                    return Reply::err(format!("no such group {g}"));
                }
                let addrs = resolve_async(host, *port).await;
                if addrs.is_empty() {
                    return Reply::err(format!("invalid address {host}: does not resolve"));
                }
                let ch = pool.new_channel(
                    Target {
                        host: host.clone(),
                        port: *port,
                        addrs,
                    },
                    0,
                    1,
                );
                // Re-read: only this task changes the structure (under
                // `write`), but the list may have been loaded before.
                let mut gs: Vec<Arc<Group>> = pool.groups().iter().cloned().collect();
                match gs.get_mut(g) {
                    Some(slot) => *slot = Arc::new(slot.with_channel(ch)),
                    None => gs.push(Arc::new(Group::new(Policy::RoundRobin, vec![ch]))),
                }
                pool.store_groups(gs);
                Reply::line("channel created")
            }
            Command::MrtgBytes(g, c) | Command::MrtgConns(g, c) => {
                let Some(grp) = groups.get(*g) else {
                    return Reply::err(format!("unknown group {g}"));
                };
                let Some(ch) = grp.channels.get(*c) else {
                    return Reply::err(format!("unknown channel {c} in group {g}"));
                };
                let (a, b) = if matches!(cmd, Command::MrtgBytes(..)) {
                    (ch.rcvd.load(Relaxed), ch.sent.load(Relaxed))
                } else {
                    (ch.total.load(Relaxed), u64::from(ch.conns()))
                };
                Reply::ok(vec![
                    a.to_string(),
                    b.to_string(),
                    uptime(self.started.elapsed()),
                    format!("group {g} channel {c}"),
                ])
            }
            Command::Kill => {
                self.shutdown.cancel();
                Reply {
                    lines: vec!["shutting down".into()],
                    ok: true,
                    close: true,
                }
            }
            Command::Monitor(op) => match (self.svc.cfg.monitor.is_some(), op) {
                (false, MonitorOp::Show) => Reply::line("no monitor configured"),
                (false, _) => Reply::err("no monitor configured for this listener (see -m)"),
                (true, MonitorOp::Show) => {
                    Reply::line("monitor configured (health per channel: show json)")
                }
                (true, _) => Reply::err("monitor enable/disable is not supported in this build"),
            },
            Command::Failback => {
                let prev = pool.failback();
                if prev == 0 {
                    Reply::line("not failed over")
                } else {
                    Reply::line(format!("failed back from group {prev} to group 0"))
                }
            }
            Command::Spin(_) => {
                Reply::err("spin cannot be changed at runtime in this build (use --spin)")
            }
            Command::Reload => match crate::app::reload().await {
                Ok(summary) => Reply::line(format!("reloaded: {summary}")),
                Err(e) => Reply::err(format!("reload rejected: {e}")),
            },
            Command::StateSave => match &self.state {
                None => Reply::err("no state file (start with --state-file PATH)"),
                Some(st) => match self.save().await {
                    Ok(()) => Reply::line(format!("state saved to {}", st.path().display())),
                    Err(e) => Reply::err(format!("state file not written: {e}")),
                },
            },
        }
    }

    fn with_channel(
        &self,
        groups: &[Arc<Group>],
        cur: usize,
        r: &ChanRef,
        f: impl FnOnce(&str, &Arc<Channel>) -> Reply,
    ) -> Reply {
        match find(groups, cur, r) {
            Ok((g, c, ch)) => f(&label(cur, g, c), &ch),
            Err(e) => Reply::err(e),
        }
    }
}

async fn resolve_async(host: &Host, port: u16) -> Vec<std::net::SocketAddr> {
    let h = host.clone();
    tokio::task::spawn_blocking(move || resolve(&h, port))
        .await
        .unwrap_or_default()
}

/// `channel 2` in the current group, `channel 1:2` elsewhere.
fn label(cur: usize, g: usize, c: usize) -> String {
    if g == cur {
        format!("channel {c}")
    } else {
        format!("channel {g}:{c}")
    }
}

/// Resolve a channel reference to its group and channel indexes and the
/// channel.
pub fn find(
    groups: &[Arc<Group>],
    cur: usize,
    r: &ChanRef,
) -> Result<(usize, usize, Arc<Channel>), String> {
    let get = |g: usize, c: usize| {
        groups
            .get(g)
            .and_then(|gr| gr.channels.get(c))
            .map(|ch| (g, c, Arc::clone(ch)))
    };
    match r {
        ChanRef::Index(c) => get(cur, *c).ok_or_else(|| format!("no such channel {c}")),
        ChanRef::At(g, c) => get(*g, *c).ok_or_else(|| format!("no such channel {g}:{c}")),
        ChanRef::Addr(host, port) => {
            let mut hits = Vec::new();
            for (gi, g) in groups.iter().enumerate() {
                for (ci, ch) in g.channels.iter().enumerate() {
                    let t = ch.target();
                    let same = t.port == *port
                        && (t.host == *host
                            || matches!(host, Host::Ip(ip) if t.addrs.iter().any(|a| a.ip() == *ip)));
                    if same {
                        hits.push((gi, ci, Arc::clone(ch)));
                    }
                }
            }
            match hits.as_slice() {
                [one] => Ok(one.clone()),
                [] => Err(format!("no such channel {host}:{port}")),
                _ => Err(format!(
                    "ambiguous channel {host}:{port}: use <group>:<channel>"
                )),
            }
        }
    }
}

/// The address column: an IP literal as is; a name as its first resolved
/// address like balance.fm (or the name if it did not resolve).
fn shown_address(t: &Target) -> String {
    match &t.host {
        Host::Ip(ip) => ip.to_string(),
        Host::Name(n) => t
            .addrs
            .first()
            .map(|a| a.ip().to_string())
            .unwrap_or_else(|| n.clone()),
    }
}

/// balance's `show`: same columns and widths; the address column widens
/// when an address needs more than 16 characters.
pub fn show_table(groups: &[Arc<Group>]) -> Vec<String> {
    let rows: Vec<(usize, usize, &Group, &Arc<Channel>, String)> = groups
        .iter()
        .enumerate()
        .flat_map(|(g, grp)| {
            grp.channels
                .iter()
                .enumerate()
                .map(move |(i, ch)| (g, i, &**grp, ch, shown_address(&ch.target())))
        })
        .collect();
    let w = rows.iter().map(|r| r.4.len()).max().unwrap_or(0).max(16);
    let mut out = Vec::with_capacity(rows.len() + 1);
    out.push(format!(
        "{:>3} {:>4} {:>2} {:>3} {:>w$} {:>5} {:>4} {:>11} {:>4} {:>11} {:>11}",
        "GRP", "Type", "#", "S", "ip-address", "port", "c", "totalc", "maxc", "sent", "rcvd"
    ));
    for (g, i, grp, ch, addr) in rows {
        let mut s = String::new();
        let _ = write!(
            s,
            "{:>3} {:>4} {:>2} {:>3} {:>w$} {:>5} {:>4} {:>11} {:>4} {:>11} {:>11}",
            g,
            grp.policy().as_str(),
            i,
            ch.shown_state().as_str(),
            addr,
            ch.target().port,
            ch.conns(),
            ch.total.load(Relaxed),
            ch.maxc(),
            ch.sent.load(Relaxed),
            ch.rcvd.load(Relaxed),
        );
        out.push(s);
    }
    out
}

/// `show json`: one line, every field.
pub fn show_json(svc: &Service) -> String {
    let groups = svc.pool.groups();
    let policy = |p: Policy| match p {
        Policy::Hash => "hash",
        Policy::RoundRobin => "rr",
    };
    let mut channels = Vec::new();
    for (g, grp) in groups.iter().enumerate() {
        for (i, ch) in grp.channels.iter().enumerate() {
            let t = ch.target();
            let (_, reason) = ch.health();
            let host = match &t.host {
                Host::Ip(ip) => ip.to_string(),
                Host::Name(n) => n.clone(),
            };
            channels.push(json!({
                "group": g,
                "index": i,
                "type": policy(grp.policy()),
                "state": ch.shown_state().as_str(),
                "admin": ch.admin(),
                "up": ch.is_up(),
                "host": host,
                "port": t.port,
                "addrs": t.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "c": ch.conns(),
                "totalc": ch.total.load(Relaxed),
                "maxc": ch.maxc(),
                "weight": ch.weight(),
                "sent": ch.sent.load(Relaxed),
                "rcvd": ch.rcvd.load(Relaxed),
                "connect_failures": ch.connect_failures.load(Relaxed),
                "checks_passed": ch.checks_passed.load(Relaxed),
                "checks_failed": ch.checks_failed.load(Relaxed),
                "check_micros": ch.check_micros.load(Relaxed),
                "last_reason": reason,
            }));
        }
    }
    let s = &svc.stats;
    let v = json!({
        "listener": {
            "name": svc.cfg.name,
            "bind": svc.cfg.bind.to_string(),
            "accepted": s.accepted.load(Relaxed),
            "refused": s.refused.load(Relaxed),
            "spinning": s.spinning.load(Relaxed),
            "failovers": s.failovers.load(Relaxed),
            "failover_events": s.failover_events.load(Relaxed),
            "failback_events": s.failback_events.load(Relaxed),
            "active": s.active.load(Relaxed),
            "failback": match svc.cfg.failback {
                crate::config::Failback::Auto => "auto",
                crate::config::Failback::Manual => "manual",
            },
            "failback_floor": svc.pool.floor(),
        },
        // Process-wide: splice pipes held by busy connections, and pooled.
        "pipes": {
            "in_use": crate::proxy::splice::pipes_in_use(),
            "pooled": crate::proxy::splice::pipes_pooled(),
        },
        "groups": groups.iter().enumerate().map(|(g, grp)| json!({
            "group": g,
            "type": policy(grp.policy()),
            "channels": grp.channels.len(),
        })).collect::<Vec<_>>(),
        "channels": channels,
    });
    v.to_string()
}

/// MRTG's third line: the uptime.
fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    format!(
        "{} days, {:02}:{:02}:{:02}",
        s / 86_400,
        s % 86_400 / 3600,
        s % 3600 / 60,
        s % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ChannelConfig, GroupConfig, ListenerConfig};
    use crate::control::commands::parse;
    use crate::health::RiseFallParams;

    fn svc(groups: &[(&[&str], Policy)]) -> Arc<Service> {
        let gs = groups
            .iter()
            .map(|(chs, p)| GroupConfig {
                policy: *p,
                channels: chs
                    .iter()
                    .map(|s| {
                        let (h, port) = s.rsplit_once(':').unwrap();
                        ChannelConfig {
                            host: crate::control::commands::host(h).unwrap(),
                            port: port.parse().unwrap(),
                            maxc: 0,
                            weight: 1,
                        }
                    })
                    .collect(),
            })
            .collect();
        let cfg = ListenerConfig::new("t".into(), "127.0.0.1:1".parse().unwrap(), gs);
        Arc::new(Service::new(cfg, RiseFallParams::default()))
    }

    fn ctl(s: &Arc<Service>) -> Control {
        Control::new(Arc::clone(s), None, CancellationToken::new())
    }

    async fn run(c: &Control, g: &mut usize, line: &str) -> Reply {
        match parse(line) {
            Ok(cmd) => c.execute(g, cmd, line, 0).await,
            Err(e) => Reply::err(e),
        }
    }

    #[test]
    fn show_keeps_balance_columns_and_widths() {
        let s = svc(&[
            (&["127.0.0.1:9001", "10.0.0.2:9002"], Policy::RoundRobin),
            (&["10.0.0.3:3306"], Policy::Hash),
        ]);
        let gs = s.pool.groups();
        gs[0].channels[1].set_admin(Admin::Disabled);
        gs[0].channels[0].total.store(12, Relaxed);
        gs[0].channels[0].sent.store(345, Relaxed);
        gs[0].channels[0].rcvd.store(6789, Relaxed);
        gs[1].channels[0].set_maxc(7);
        let t = show_table(&gs);
        assert_eq!(
            t,
            vec![
                "GRP Type  #   S       ip-address  port    c      totalc maxc        sent        rcvd",
                "  0   RR  0 ENA        127.0.0.1  9001    0          12    0         345        6789",
                "  0   RR  1 DIS         10.0.0.2  9002    0           0    0           0           0",
                "  1 Hash  0 ENA         10.0.0.3  3306    0           0    7           0           0",
            ]
        );
    }

    #[test]
    fn show_widens_the_address_column_for_ipv6_and_marks_drain_and_soft_disabled() {
        let s = svc(&[(
            &["[2001:db8:ffff:ffff:ffff:ffff:ffff:1]:80", "10.0.0.1:81"],
            Policy::RoundRobin,
        )]);
        let gs = s.pool.groups();
        gs[0].channels[1].set_admin(Admin::Drain);
        let t = show_table(&gs);
        assert_eq!(t[0].find("port"), t[1].find(" 80 ").map(|i| i + 1 - 2));
        assert!(
            t[1].contains(" 2001:db8:ffff:ffff:ffff:ffff:ffff:1    80 "),
            "{t:?}"
        );
        assert!(t[2].contains(" drn "), "{t:?}");
        assert_eq!(t[1].len(), t[0].len());
        gs[0].channels[0].force_down("test");
        assert!(show_table(&gs)[1].contains(" dis "));
    }

    #[tokio::test]
    async fn commands_change_the_pool_and_bad_ones_change_nothing() {
        let s = svc(&[(&["127.0.0.1:9001", "127.0.0.1:9002"], Policy::RoundRobin)]);
        let c = ctl(&s);
        let mut g = 0;
        let before = show_table(&s.pool.groups());
        for bad in [
            "enable 5",
            "disable 1:0",
            "assign 0 127.0.0.1 9",
            "group 7",
            "maxc 9 1",
            "weight 127.0.0.1:1 2",
            "mrtg-bytes 3 0",
            "mrtg-conns 0 9",
            "spin 1s",
            "state save",
            "monitor enable",
        ] {
            let r = run(&c, &mut g, bad).await;
            assert!(!r.ok, "{bad} should fail: {r:?}");
            assert_eq!(r.lines.len(), 1, "{bad}: {r:?}");
        }
        assert_eq!(show_table(&s.pool.groups()), before);
        assert_eq!(g, 0);

        assert_eq!(
            run(&c, &mut g, "disable 1").await.lines,
            ["channel 1 disabled"]
        );
        assert_eq!(
            run(&c, &mut g, "disable 1").await.lines,
            ["channel 1 already disabled"]
        );
        assert_eq!(s.pool.groups()[0].channels[1].admin(), Admin::Disabled);
        let r = run(&c, &mut g, "assign 1 127.0.0.1 9003").await;
        assert_eq!(r.lines, ["channel reassigned"]);
        assert_eq!(s.pool.groups()[0].channels[1].target().port, 9003);
        assert!(!run(&c, &mut g, "assign 0 127.0.0.1 9004").await.ok);
        assert_eq!(
            run(&c, &mut g, "enable 127.0.0.1:9003").await.lines,
            ["channel 1 enabled"]
        );
        assert!(run(&c, &mut g, "drain 0:0").await.ok);
        assert_eq!(s.pool.groups()[0].channels[0].admin(), Admin::Drain);
        assert_eq!(
            run(&c, &mut g, "maxc 0 3").await.lines,
            ["maxc of channel 0 changed to 3"]
        );
        assert_eq!(
            run(&c, &mut g, "weight 1 4").await.lines,
            ["weight of channel 1 changed to 4"]
        );
        assert_eq!(s.pool.groups()[0].channels[1].weight(), 4);
        assert_eq!(run(&c, &mut g, "hash").await.lines, ["group 0 set to hash"]);
        assert_eq!(s.pool.groups()[0].policy(), Policy::Hash);
        assert_eq!(
            run(&c, &mut g, "rr").await.lines,
            ["group 0 set to round robin"]
        );
        assert_eq!(run(&c, &mut g, "failback").await.lines, ["not failed over"]);
        assert_eq!(
            run(&c, &mut g, "monitor show").await.lines,
            ["no monitor configured"]
        );

        // create in a new group 1, then address it from group 0 as 1:0.
        assert!(run(&c, &mut g, "group 1").await.ok);
        assert_eq!(g, 1);
        assert_eq!(
            run(&c, &mut g, "create 127.0.0.1 9005").await.lines,
            ["channel created"]
        );
        assert_eq!(s.pool.groups().len(), 2);
        assert!(run(&c, &mut g, "group 0").await.ok);
        assert_eq!(
            run(&c, &mut g, "create ::1 9006").await.lines,
            ["channel created"]
        );
        assert_eq!(s.pool.groups()[0].channels.len(), 3);
        assert_eq!(
            run(&c, &mut g, "disable 1:0").await.lines,
            ["channel 1:0 disabled"]
        );

        s.pool.groups()[0].channels[0].sent.store(5, Relaxed);
        s.pool.groups()[0].channels[0].rcvd.store(6, Relaxed);
        s.pool.groups()[0].channels[0].total.store(2, Relaxed);
        let m = run(&c, &mut g, "mrtg-bytes 0 0").await.lines;
        assert_eq!(m.len(), 4);
        assert_eq!(
            (m[0].as_str(), m[1].as_str(), m[3].as_str()),
            ("6", "5", "group 0 channel 0")
        );
        assert!(m[2].contains("days"), "{m:?}");
        let m = run(&c, &mut g, "mrtg-conns 0 0").await.lines;
        assert_eq!((m[0].as_str(), m[1].as_str()), ("2", "0"));
        assert_eq!(
            run(&c, &mut g, "reset 0").await.lines,
            ["channel 0 counters reset"]
        );
        assert_eq!(s.pool.groups()[0].channels[0].sent.load(Relaxed), 0);

        let j: serde_json::Value =
            serde_json::from_str(&run(&c, &mut g, "show json").await.lines[0]).unwrap();
        assert_eq!(j["channels"].as_array().unwrap().len(), 4);
        assert_eq!(j["channels"][0]["state"], "drn");
        assert_eq!(j["channels"][3]["state"], "DIS");
        assert_eq!(j["channels"][1]["weight"], 4);

        let r = run(&c, &mut g, "quit").await;
        assert!(r.ok && r.close);
        assert!(!c.shutdown.is_cancelled());
        let r = run(&c, &mut g, "kill").await;
        assert!(r.close && c.shutdown.is_cancelled());
    }

    #[test]
    fn uptime_is_days_and_clock_time() {
        assert_eq!(uptime(Duration::from_secs(90_061)), "1 days, 01:01:01");
    }

    #[test]
    fn host_port_references_match_resolved_addresses_and_report_ambiguity() {
        let s = svc(&[(&["127.0.0.1:9001", "127.0.0.1:9001"], Policy::RoundRobin)]);
        let gs = s.pool.groups();
        let ip = Host::Ip("127.0.0.1".parse().unwrap());
        let e = find(&gs, 0, &ChanRef::Addr(ip.clone(), 9001)).unwrap_err();
        assert!(e.contains("ambiguous"), "{e}");
        assert!(
            find(&gs, 0, &ChanRef::Addr(ip, 9002))
                .unwrap_err()
                .contains("no such channel")
        );
    }
}

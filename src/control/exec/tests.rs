use super::*;
use crate::config::{ChannelConfig, GroupConfig, ListenerConfig};
use crate::config::{Host, Policy};
use crate::control::commands::ChanRef;
use crate::control::commands::parse;
use crate::control::handlers::channel::find;
use crate::control::reload::ReloadHandle;
use crate::health::RiseFallParams;
use crate::pool::{Admin, Group};
use crate::render::show::uptime;
use crate::service::Service;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

fn svc(groups: &[(&[&str], Policy)]) -> Arc<Service> {
    let gs = groups
        .iter()
        .map(|(chs, p)| GroupConfig {
            on_demand: None,
            name: String::new(),
            policy: *p,
            proxy_protocol: None,
            channels: chs
                .iter()
                .map(|s| {
                    let (h, port) = s.rsplit_once(':').unwrap();
                    ChannelConfig {
                        name: String::new(),
                        host: crate::control::commands::host(h).unwrap(),
                        port: port.parse().unwrap(),
                        maxc: 0,
                        weight: 1,
                        proxy_protocol: None,
                    }
                })
                .collect(),
        })
        .collect();
    let cfg = ListenerConfig::new("t".into(), "127.0.0.1:1".parse().unwrap(), gs);
    Arc::new(Service::new(cfg, RiseFallParams::default()))
}

fn show_table(gs: &[Arc<Group>]) -> Vec<String> {
    crate::render::show::table(&crate::render::channels(gs))
}

fn ctl(s: &Arc<Service>) -> Control {
    Control::new(
        Arc::clone(s),
        None,
        CancellationToken::new(),
        ReloadHandle::detached(),
    )
}

async fn run(c: &Control, g: &mut usize, line: &str) -> Reply {
    match parse(line) {
        Ok(cmd) => c.execute(g, cmd, line, 0).await,
        Err(e) => Reply::err(e.to_string()),
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
        run(&c, &mut g, "leastconn").await.lines,
        ["group 0 set to least connections"]
    );
    assert_eq!(s.pool.groups()[0].policy(), Policy::LeastConn);
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
    // Created disabled, as balance.fm does.
    assert_eq!(
        run(&c, &mut g, "disable 1:0").await.lines,
        ["channel 1:0 already disabled"]
    );
    assert_eq!(
        run(&c, &mut g, "enable 0:2").await.lines,
        ["channel 2 enabled"]
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

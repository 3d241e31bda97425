//! Fleet-scoped operator state and channel lists against a real etcd (one
//! member) and several balance instances on
//! loopback: a `fleet ...` command given to one instance reaches every
//! instance (each polled through `show json`), channels registered in
//! etcd are used by every instance, a bad value is ignored with a log
//! line.
//!
//! The tests run one at a time (each starts an etcd and several
//! instances).

use crate::common;

use std::time::Duration;

use common::etcd::Etcd;
use common::fleet::{Instances, REACH, serial};
use common::*;
use serde_json::Value;

const N: usize = 5;
const PREFIX: &str = "/ops";

/// A listener `svc` with `groups` (backend ports), in the fleet on `etcd`.
fn yaml(port: u16, etcd: Option<&str>, groups: &[&[u16]], extra: &str) -> String {
    let fleet = etcd.map_or(String::new(), |e| {
        format!("fleet:\n  endpoints: [\"{e}\"]\n  prefix: {PREFIX}\n")
    });
    let groups: String = groups
        .iter()
        .map(|g| {
            let chans: Vec<String> = g.iter().map(|p| format!("\"127.0.0.1:{p}\"")).collect();
            format!("      - channels: [{}]\n", chans.join(", "))
        })
        .collect();
    // Lines of `extra` indented by four spaces belong to the listener.
    let (listener, top): (Vec<&str>, Vec<&str>) =
        extra.lines().partition(|l| l.starts_with("    "));
    let top: String = top.iter().map(|l| format!("{l}\n")).collect();
    let listener: String = listener.iter().map(|l| format!("{l}\n")).collect();
    format!(
        "{fleet}{top}listeners:\n  - name: svc\n    bind: \"127.0.0.1:{port}\"\n    failback: manual\n{listener}    groups:\n{groups}"
    )
}

/// A fast `connect` monitor (listener lines for [`yaml`]'s `extra`).
const MONITOR: &str = "    monitor:\n      interval: 200ms\n      fall: 1\n      rise: 1\n      checks:\n        - connect: {}\n";

/// `P/svc/svc/REST`.
fn key(rest: &str) -> String {
    format!("{PREFIX}/svc/svc/{rest}")
}

impl Instances {
    fn start_ops(n: usize, etcd: &Etcd, groups: &[&[u16]]) -> Instances {
        Instances::start_ops_with(n, etcd, groups, "")
    }

    fn start_ops_with(n: usize, etcd: &Etcd, groups: &[&[u16]], extra: &str) -> Instances {
        let e = etcd.endpoint();
        Instances::launch(
            n,
            "fleet-ops",
            Duration::ZERO,
            |p| yaml(p[0], Some(&e), groups, extra),
            |l| l,
        )
    }
}

/// The `show json` channel at `port` (any group), if there is one.
fn chan(j: &Value, port: u16) -> Option<Value> {
    j["channels"]
        .as_array()?
        .iter()
        .find(|c| c["port"] == port)
        .cloned()
}

fn admin_of(j: &Value, port: u16) -> String {
    chan(j, port).map_or("absent".into(), |c| {
        c["admin"].as_str().unwrap_or("?").to_string()
    })
}

#[test]
fn fleet_disable_weight_and_enable_reach_every_instance() {
    let _s = serial();
    let mut e = Etcd::single();
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let f = Instances::start_ops(N, &e, &[&[a.port(), b.port()]]);
    let help = f.v[0].ctl("help");
    assert!(help.contains("fleet enable|disable|drain"), "{help}");

    let out = f.v[2].ctl(&format!("fleet disable 127.0.0.1:{}", a.port()));
    assert!(out.contains("written"), "{out}");
    f.wait_all("A disabled everywhere", |j| {
        admin_of(j, a.port()) == "disabled"
    });
    for bal in &f.v {
        for _ in 0..3 {
            assert_eq!(
                ask(bal.addr).unwrap(),
                "B",
                "a disabled channel gets no client"
            );
        }
    }
    // The index form, the session's group, and `weight`/`maxc`.
    f.v[0].ctl("fleet weight 1 7");
    f.v[4].ctl("fleet maxc 0:1 9");
    f.wait_all("weight and maxc everywhere", |j| {
        chan(j, b.port()).is_some_and(|c| c["weight"] == 7 && c["maxc"] == 9)
    });
    f.v[1].ctl("fleet enable 0");
    f.wait_all("A enabled again", |j| admin_of(j, a.port()) == "enabled");
    for bal in &f.v {
        let tags: Vec<String> = (0..8).map(|_| ask(bal.addr).unwrap()).collect();
        assert!(tags.iter().any(|t| t == "A"), "{tags:?}");
    }
    // Bad commands: one line, nothing written.
    for bad in [
        "fleet",
        "fleet show",
        "fleet disable 9",
        "fleet weight 0 100001",
        "fleet create 0 nohost",
    ] {
        let o = f.v[0].ctl_out(bad);
        assert!(!o.status.success(), "{bad}");
        // The server's error reply is on stdout (as balance.fm's client).
        let err = String::from_utf8_lossy(&o.stdout);
        assert_eq!(err.trim().lines().count(), 1, "{bad}: {err}");
    }
    assert!(e.get_prefix(&key("ops/admin/127.0.0.1:9")).is_empty());
    // etcd gone: refused in one line, nothing changes, clients still served.
    e.kill(0);
    let o = f.v[0].ctl_out("fleet disable 0");
    let err = String::from_utf8_lossy(&o.stdout);
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("nothing changed"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(admin_of(&f.v[0].json(), a.port()), "enabled");
    assert_eq!(ask(f.v[0].addr).unwrap().len(), 1);
}

#[test]
fn fleet_commands_without_fleet_mode_are_refused_in_one_line() {
    let a = Backend::tagged("A");
    let dir = TempDir::new("nofleet");
    let bal = Balance::config(1, |p| yaml(p[0], None, &[&[a.port()]], ""))
        .run_dir(dir.path())
        .start();
    let o = bal.ctl_out("fleet disable 0");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stdout);
    assert!(err.contains("fleet mode is off"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(admin_of(&bal.json(), a.port()), "enabled");
    for cmd in ["fleet members", "fleet switchover 1", "fleet forget h:1"] {
        let o = bal.ctl_out(cmd);
        let err = String::from_utf8_lossy(&o.stdout);
        assert!(
            !o.status.success() && err.contains("fleet mode is off"),
            "{cmd}: {err}"
        );
    }
    assert!(
        !bal.ctl("help").contains("fleet"),
        "help lists no fleet command"
    );
}

#[test]
fn fleet_failback_reaches_every_instance() {
    let _s = serial();
    let e = Etcd::single();
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let f = Instances::start_ops(N, &e, &[&[a.port()], &[b.port()]]);
    // Fail every instance over to the backup: group 0 disabled, one
    // client each (manual failback: the floor stays at group 1).
    f.v[0].ctl("fleet disable 0:0");
    f.wait_all("primary disabled", |j| admin_of(j, a.port()) == "disabled");
    for bal in &f.v {
        assert_eq!(ask(bal.addr).unwrap(), "B");
    }
    f.v[3].ctl("fleet enable 0:0");
    f.wait_all("primary enabled", |j| admin_of(j, a.port()) == "enabled");
    for bal in &f.v {
        assert_eq!(
            bal.json()["listener"]["failback_floor"],
            1,
            "still failed over"
        );
        assert_eq!(
            ask(bal.addr).unwrap(),
            "B",
            "manual failback: stays on the backup"
        );
    }
    let out = f.v[1].ctl("fleet failback");
    assert!(out.contains("written"), "{out}");
    f.wait_all("failed back", |j| j["listener"]["failback_floor"] == 0);
    for bal in &f.v {
        assert_eq!(ask(bal.addr).unwrap(), "A", "back on the primary");
    }
    assert!(e.get(&key("ops/floor")).unwrap().contains("\"group\":0"));
    // The operator hold, on and off everywhere.
    f.v[4].ctl("fleet spin on 30s");
    f.wait_all("spin on", |j| j["listener"]["spin"] == "on");
    f.v[0].ctl("fleet spin off");
    f.wait_all("spin off", |j| j["listener"]["spin"] == "off");
}

#[test]
fn a_channel_registered_in_etcd_is_used_by_every_instance() {
    let _s = serial();
    let e = Etcd::single();
    let (a, c, d) = (
        Backend::tagged("A"),
        Backend::tagged("C"),
        Backend::tagged("D"),
    );
    let f = Instances::start_ops(N, &e, &[&[a.port()]]);
    // etcdctl put /ops/svc/svc/channels/0/127.0.0.1:PORT '{"weight":1}'
    e.put(
        &key(&format!("channels/0/127.0.0.1:{}", c.port())),
        r#"{"weight":1}"#,
    );
    f.wait_all("C added", |j| admin_of(j, c.port()) == "enabled");
    for (i, bal) in f.v.iter().enumerate() {
        let tags: Vec<String> = (0..4).map(|_| ask(bal.addr).unwrap()).collect();
        assert!(tags.iter().any(|t| t == "C"), "instance {i}: {tags:?}");
    }
    assert!(c.accepted() >= N, "every instance sends clients to C");
    // A weight change in etcd, then the command form.
    e.put(
        &key(&format!("channels/0/127.0.0.1:{}", c.port())),
        r#"{"weight":4}"#,
    );
    f.wait_all("C weight 4", |j| {
        chan(j, c.port()).is_some_and(|ch| ch["weight"] == 4)
    });
    let out = f.v[2].ctl(&format!("fleet create 0 127.0.0.1:{} 3", d.port()));
    assert!(out.contains("written"), "{out}");
    f.wait_all("D added", |j| {
        chan(j, d.port()).is_some_and(|ch| ch["weight"] == 3)
    });
    // Unregistered: removed from every instance; the configured channel
    // stays.
    e.delete(&key(&format!("channels/0/127.0.0.1:{}", c.port())));
    f.v[0].ctl(&format!("fleet remove 0 127.0.0.1:{}", d.port()));
    f.wait_all("C and D removed", |j| {
        chan(j, c.port()).is_none() && chan(j, d.port()).is_none() && chan(j, a.port()).is_some()
    });
    for bal in &f.v {
        assert_eq!(ask(bal.addr).unwrap(), "A");
    }
}

#[test]
fn malformed_values_in_etcd_are_ignored_with_a_log_line() {
    let _s = serial();
    let e = Etcd::single();
    let a = Backend::tagged("A");
    let f = Instances::start_ops(N, &e, &[&[a.port()]]);
    let ap = a.port();
    let bad = [
        (format!("ops/admin/127.0.0.1:{ap}"), "not json".to_string()),
        (
            format!("ops/admin/127.0.0.1:{ap}"),
            r#"{"admin":"sideways"}"#.into(),
        ),
        (
            format!("ops/weight/127.0.0.1:{ap}"),
            r#"{"weight":99999}"#.into(),
        ),
        ("ops/floor".into(), r#"{"group":"one"}"#.into()),
        ("ops/nonsense".into(), "{}".into()),
        ("channels/0/not-a-channel".into(), "{}".into()),
        ("channels/x/127.0.0.1:1".into(), "{}".into()),
        (
            "channels/0/127.0.0.1:1".into(),
            r#"{"weight":"heavy"}"#.into(),
        ),
        (
            "channels/0/127.0.0.1:2".into(),
            r#"{"weight":1,"color":"red"}"#.into(),
        ),
        ("channels/7/127.0.0.1:3".into(), "{}".into()),
    ];
    for (k, v) in &bad {
        e.put(&key(k), v);
    }
    // A good value written after them: once it is applied, the bad ones
    // before it were seen.
    e.put(&key(&format!("ops/maxc/127.0.0.1:{ap}")), r#"{"maxc":5}"#);
    f.wait_all("the good value applied", |j| {
        chan(j, ap).is_some_and(|c| c["maxc"] == 5)
    });
    for (i, bal) in f.v.iter().enumerate() {
        let j = bal.json();
        let chans = j["channels"].as_array().unwrap();
        assert_eq!(chans.len(), 1, "instance {i}: no channel added: {j}");
        assert_eq!(chans[0]["admin"], "enabled");
        assert_eq!(chans[0]["weight"], 1);
        assert_eq!(j["listener"]["failback_floor"], 0);
        assert_eq!(ask(bal.addr).unwrap(), "A");
        let log = bal.stderr();
        for (k, _) in &bad {
            let line = format!("fleet: ignored {}", key(k));
            assert!(log.contains(&line), "instance {i}: no {line:?} in\n{log}");
        }
        assert!(!log.contains("panicked"), "{log}");
    }
}

#[test]
fn fleet_state_is_kept_in_the_state_file_across_a_restart_without_etcd() {
    let _s = serial();
    let mut e = Etcd::single();
    let (a, b, c) = (
        Backend::tagged("A"),
        Backend::tagged("B"),
        Backend::tagged("C"),
    );
    let dir = TempDir::new("fleet-state");
    let state = dir.join("state.json");
    let endpoint = e.endpoint();
    let extra = format!("state_file: \"{}\"\n", state.display());
    let launch = || {
        Balance::config(1, |p| {
            yaml(p[0], Some(&endpoint), &[&[a.port(), b.port()]], &extra)
        })
        .run_dir(dir.path())
        .start()
    };
    let bal = launch();
    bal.ctl(&format!("fleet disable 127.0.0.1:{}", a.port()));
    bal.ctl(&format!("fleet create 0 127.0.0.1:{} 2", c.port()));
    wait_until("applied", REACH, || {
        let j = bal.json();
        admin_of(&j, a.port()) == "disabled" && chan(&j, c.port()).is_some()
    })
    .unwrap();
    wait_until("state file written", REACH, || {
        std::fs::read_to_string(&state)
            .is_ok_and(|s| s.contains("disabled") && s.contains(&c.port().to_string()))
    })
    .unwrap();
    drop(bal);
    e.kill(0);
    let bal = launch();
    let j = bal.json();
    assert_eq!(admin_of(&j, a.port()), "disabled", "{j}");
    assert!(
        chan(&j, c.port()).is_some_and(|ch| ch["weight"] == 2),
        "{j}"
    );
    for _ in 0..4 {
        assert_ne!(ask(bal.addr).unwrap(), "A");
    }
    // etcd back: the restored registration is the fleet's again, so
    // deleting its key removes it.
    e.restart(0);
    assert!(
        bal.wait_log("following operator state and channels again", 1, REACH),
        "{}",
        bal.stderr()
    );
    e.delete(&key(&format!("channels/0/127.0.0.1:{}", c.port())));
    wait_until("C removed", REACH, || chan(&bal.json(), c.port()).is_none()).unwrap();
    assert_eq!(admin_of(&bal.json(), a.port()), "disabled");
}

#[test]
fn registered_channels_and_fleet_state_survive_a_reload() {
    let _s = serial();
    let e = Etcd::single();
    let (a, b, c) = (
        Backend::tagged("A"),
        Backend::tagged("B"),
        Backend::tagged("C"),
    );
    let dir = TempDir::new("fleet-reload");
    let endpoint = e.endpoint();
    let bal = Balance::config(1, |p| yaml(p[0], Some(&endpoint), &[&[a.port()]], ""))
        .run_dir(dir.path())
        .start();
    bal.ctl(&format!("fleet create 0 127.0.0.1:{} 3", c.port()));
    wait_until("C added", REACH, || chan(&bal.json(), c.port()).is_some()).unwrap();
    bal.ctl(&format!("fleet drain 127.0.0.1:{}", c.port()));
    wait_until("C added and draining", REACH, || {
        admin_of(&bal.json(), c.port()) == "drain"
    })
    .unwrap();
    // A changed group list: the pool is rebuilt from the file.
    let text = yaml(bal.port(), Some(&endpoint), &[&[a.port(), b.port()]], "");
    std::fs::write(bal.config_path(), text).unwrap();
    let out = bal.ctl("reload");
    assert!(!out.contains("rejected"), "{out}");
    wait_until("B in, C back and still draining", REACH, || {
        let j = bal.json();
        chan(&j, b.port()).is_some()
            && chan(&j, c.port()).is_some_and(|ch| ch["weight"] == 3 && ch["admin"] == "drain")
    })
    .unwrap_or_else(|t| panic!("{t}: {}\n{}", bal.json(), bal.stderr()));
}

#[test]
fn a_registered_channel_gets_the_fleets_verdicts() {
    let _s = serial();
    let e = Etcd::single();
    let a = Backend::tagged("A");
    let dead = Refused::new();
    let f = Instances::start_ops_with(N, &e, &[&[a.port()]], MONITOR);
    f.v[0].ctl(&format!("fleet create 0 127.0.0.1:{}", dead.port()));
    // Added enabled and up, then the prober's check finds it refused and
    // every instance follows that verdict (none sends it a client).
    f.wait_all("the dead registration down everywhere", |j| {
        chan(j, dead.port()).is_some_and(|c| c["up"] == false && c["admin"] == "enabled")
    });
    for bal in &f.v {
        assert_eq!(ask(bal.addr).unwrap(), "A");
    }
}

#[test]
fn a_fleet_command_takes_a_channel_name_and_every_instance_applies_it_by_address() {
    let _s = serial();
    let e = Etcd::single();
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    // The same backend in both groups: the fleet key is its address, so
    // every instance changes both channels.
    let f = Instances::start_ops(3, &e, &[&[a.port(), b.port()], &[a.port()]]);
    let name = format!("127.0.0.1-{}", a.port());
    let out = f.v[1].ctl(&format!("fleet drain {name}"));
    assert!(out.contains("written"), "{out}");
    f.wait_all("A draining in both groups everywhere", |j| {
        let chans = j["channels"].as_array().cloned().unwrap_or_default();
        let at_a: Vec<&Value> = chans.iter().filter(|c| c["port"] == a.port()).collect();
        at_a.len() == 2 && at_a.iter().all(|c| c["admin"] == "drain")
    });
    // An unknown name is refused by the instance that got it: nothing
    // is written.
    let out = f.v[0].ctl_out("fleet disable nosuch");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        output_text(&out).contains("no such channel nosuch"),
        "{out:?}"
    );
    drop(e);
}

/// `fleet create|remove GROUP HOST:PORT` name the group by name too
/// (etcd keys it by index); `fleet remove` goes through the operator
/// model on every instance; the single-instance `remove` is refused.
#[test]
fn fleet_create_and_remove_take_a_group_name() {
    let _s = serial();
    let e = Etcd::single();
    let (a, b, c) = (
        Backend::tagged("A"),
        Backend::tagged("B"),
        Backend::tagged("C"),
    );
    let f = Instances::start_ops(2, &e, &[&[a.port()], &[b.port()]]);
    let reg = key(&format!("channels/1/127.0.0.1:{}", c.port()));
    let out = f.v[0].ctl_out(&format!("fleet create nosuch 127.0.0.1:{}", c.port()));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        output_text(&out).contains("no such group nosuch"),
        "{out:?}"
    );
    assert!(e.get(&reg).is_none());
    let out = f.v[0].ctl(&format!("fleet create group1 127.0.0.1:{} 2", c.port()));
    assert!(out.contains("registered in group 1 written"), "{out}");
    assert_eq!(e.get(&reg).as_deref(), Some(r#"{"weight":2}"#));
    f.wait_all("C added to group 1", |j| {
        chan(j, c.port()).is_some_and(|ch| ch["group"] == 1 && ch["admin"] == "enabled")
    });
    // No single-instance remove: one line, nothing changes.
    let out = f.v[1].ctl_out(&format!("remove 127.0.0.1:{}", c.port()));
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        output_text(&out).contains("no single-instance form"),
        "{out:?}"
    );
    let out = f.v[1].ctl(&format!("fleet remove group1 127.0.0.1:{}", c.port()));
    assert!(out.contains("unregistered from group 1 written"), "{out}");
    assert!(e.get(&reg).is_none());
    f.wait_all("C removed", |j| {
        chan(j, c.port()).is_none() && chan(j, b.port()).is_some()
    });
}

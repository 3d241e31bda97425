//! Pool behaviour through its public API: selection over real channels,
//! maxc slots, health flips, structural changes.

use super::*;

use crate::config::{ChannelConfig, Failback};
use crate::health::{Evidence, RiseFallParams};
use std::net::{Ipv4Addr, Ipv6Addr};

const CLIENT: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));

/// Channel `port` on 127.0.0.1 with `maxc` and `weight`.
fn chan(port: u16, maxc: u32, weight: u32) -> ChannelConfig {
    ChannelConfig {
        name: String::new(),
        host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        port,
        maxc,
        weight,
        proxy_protocol: None,
    }
}

fn group(policy: Policy, ports: &[u16]) -> GroupConfig {
    GroupConfig {
        on_demand: None,
        name: String::new(),
        policy,
        proxy_protocol: None,
        channels: ports.iter().map(|&p| chan(p, 0, 1)).collect(),
    }
}

fn pool_with(groups: &[GroupConfig], hash_failover: bool, failback: Failback) -> Pool {
    Pool::new(
        groups,
        SelectOpts {
            hash_failover,
            failback,
            full_holds: false,
            no_spill: false,
        },
        |h, p| match h {
            Host::Ip(ip) => vec![SocketAddr::new(*ip, p)],
            Host::Name(_) => vec![],
        },
    )
}

fn pool(groups: &[GroupConfig]) -> Pool {
    pool_with(groups, false, Failback::Auto)
}

/// The port of the first candidate (the channel a new client gets).
fn pick(p: &Pool, client: IpAddr) -> Option<u16> {
    p.candidates(Pick::client(client))
        .next()
        .map(|c| c.channel.target().port)
}

/// Every candidate in failover order, as ports.
fn walk(p: &Pool, client: IpAddr) -> Vec<u16> {
    p.candidates(Pick::client(client))
        .map(|c| c.channel.target().port)
        .collect()
}

fn channel(p: &Pool, g: usize, i: usize) -> Arc<Channel> {
    Arc::clone(&p.groups()[g].channels[i])
}

#[test]
fn round_robin_alternates_exactly_over_two_and_three_channels() {
    let p = pool(&[group(Policy::RoundRobin, &[1, 2])]);
    let got: Vec<u16> = (0..30).map(|_| pick(&p, CLIENT).unwrap()).collect();
    let want: Vec<u16> = (0..30).map(|i| if i % 2 == 0 { 1 } else { 2 }).collect();
    assert_eq!(got, want);

    let p = pool(&[group(Policy::RoundRobin, &[1, 2, 3])]);
    let got: Vec<u16> = (0..30).map(|_| pick(&p, CLIENT).unwrap()).collect();
    let want: Vec<u16> = (0..30).map(|i| [1, 2, 3][i % 3]).collect();
    assert_eq!(got, want);
    for port in [1, 2, 3] {
        assert_eq!(got.iter().filter(|&&x| x == port).count(), 10);
    }
}

#[test]
fn round_robin_does_not_depend_on_the_client_address() {
    let p = pool(&[group(Policy::RoundRobin, &[1, 2])]);
    let got: Vec<u16> = (0..10u8)
        .map(|i| pick(&p, IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))).unwrap())
        .collect();
    assert_eq!(got, vec![1, 2, 1, 2, 1, 2, 1, 2, 1, 2]);
}

#[test]
fn failover_order_is_chosen_then_its_group_then_later_groups() {
    let p = pool(&[
        group(Policy::RoundRobin, &[1, 2, 3]),
        group(Policy::RoundRobin, &[4, 5]),
        group(Policy::RoundRobin, &[6]),
    ]);
    assert_eq!(walk(&p, CLIENT), vec![1, 2, 3, 4, 5, 6]);
    // The next client starts at the next channel of group 0 and wraps
    // around it before moving on; group 1 also advanced (it was walked).
    assert_eq!(walk(&p, CLIENT), vec![2, 3, 1, 5, 4, 6]);
    assert_eq!(walk(&p, CLIENT), vec![3, 1, 2, 4, 5, 6]);
}

#[test]
fn candidates_are_lazy_so_a_backup_group_is_not_advanced_when_unused() {
    let p = pool(&[
        group(Policy::RoundRobin, &[1]),
        group(Policy::RoundRobin, &[4, 5]),
    ]);
    for _ in 0..5 {
        assert_eq!(pick(&p, CLIENT), Some(1));
    }
    channel(&p, 0, 0).set_admin(Admin::Disabled);
    assert_eq!(pick(&p, CLIENT), Some(4));
    assert_eq!(pick(&p, CLIENT), Some(5));
}

#[test]
fn ineligible_channels_are_skipped() {
    let p = pool(&[
        group(Policy::RoundRobin, &[1, 2, 3, 4, 5]),
        group(Policy::RoundRobin, &[6]),
    ]);
    // dis (health), DIS (operator), drain, weight 0.
    assert!(channel(&p, 0, 0).force_down("test"));
    assert_eq!(channel(&p, 0, 0).shown_state(), ShownState::SoftDisabled);
    channel(&p, 0, 1).set_admin(Admin::Disabled);
    assert_eq!(channel(&p, 0, 1).shown_state(), ShownState::HardDisabled);
    channel(&p, 0, 2).set_admin(Admin::Drain);
    assert_eq!(channel(&p, 0, 2).shown_state(), ShownState::Drain);
    channel(&p, 0, 3).set_weight(0);
    for _ in 0..6 {
        assert_eq!(walk(&p, CLIENT), vec![5, 6]);
    }
    // With group 0 empty the backup serves.
    channel(&p, 0, 4).set_admin(Admin::Drain);
    assert_eq!(walk(&p, CLIENT), vec![6]);
    channel(&p, 1, 0).set_admin(Admin::Disabled);
    assert_eq!(walk(&p, CLIENT), Vec::<u16>::new());
    assert!(!p.any_eligible());
    // Re-enabled channels come back.
    channel(&p, 0, 1).set_admin(Admin::Enabled);
    assert!(channel(&p, 0, 0).force_up());
    assert!(p.any_eligible());
    let mut got: Vec<u16> = (0..4).map(|_| pick(&p, CLIENT).unwrap()).collect();
    got.sort_unstable();
    assert_eq!(got, vec![1, 1, 2, 2]);
}

#[test]
fn a_channel_with_no_addresses_starts_soft_disabled() {
    let p = pool(&[GroupConfig {
        on_demand: None,
        name: String::new(),
        policy: Policy::RoundRobin,
        proxy_protocol: None,
        channels: vec![
            ChannelConfig {
                name: String::new(),
                host: Host::Name("nowhere".into()),
                port: 1,
                maxc: 0,
                weight: 1,
                proxy_protocol: None,
            },
            chan(2, 0, 1),
        ],
    }]);
    assert_eq!(channel(&p, 0, 0).shown_state(), ShownState::SoftDisabled);
    assert_eq!(walk(&p, CLIENT), vec![2]);
}

#[test]
fn maxc_spills_to_the_backup_and_returns_after_a_slot_frees() {
    // `A:2 ! B`
    let p = pool(&[
        GroupConfig {
            on_demand: None,
            name: String::new(),
            policy: Policy::RoundRobin,
            proxy_protocol: None,
            channels: vec![chan(1, 2, 1)],
        },
        group(Policy::RoundRobin, &[2]),
    ]);
    let mut held = Vec::new();
    let mut order = Vec::new();
    for _ in 0..4 {
        let c = p
            .candidates(Pick::client(CLIENT))
            .next()
            .expect("a candidate");
        order.push(c.channel.target().port);
        held.push(c.channel.try_acquire().expect("a slot"));
    }
    assert_eq!(order, vec![1, 1, 2, 2]);
    let a = channel(&p, 0, 0);
    assert_eq!(a.conns(), 2);
    assert!(!a.eligible());
    assert!(
        a.try_acquire().is_none(),
        "maxc must hold under try_acquire"
    );
    // One A connection ends: the next client goes back to A.
    held.remove(0);
    assert_eq!(a.conns(), 1);
    assert_eq!(pick(&p, CLIENT), Some(1));
    // Guards release on drop: no leak.
    drop(held);
    assert_eq!(a.conns(), 0);
    assert_eq!(channel(&p, 1, 0).conns(), 0);
}

#[test]
fn client_hash_is_fnv1a_of_the_address_and_stable() {
    // Fixed values: a change of hasher (or a random seed) breaks stickiness
    // across restarts and must fail here.
    let table: &[(&str, u32)] = &[
        ("127.0.0.1", 0xdaaf_40ed),
        ("192.0.2.1", 0x756b_9b94),
        ("10.1.2.3", 0x796e_abb3),
        ("::1", 0x6869_1772),
        ("2001:db8::1", 0x6e5b_04f4),
    ];
    for (ip, h) in table {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(client_hash(ip), *h, "{ip}");
    }
    // An IPv4-mapped IPv6 peer (dual-stack listener) hashes like IPv4.
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
    assert_eq!(client_hash(mapped), client_hash(CLIENT));
    assert_ne!(
        client_hash(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        client_hash(IpAddr::V4(Ipv4Addr::LOCALHOST))
    );
}

#[test]
fn hash_group_sends_a_client_always_to_the_same_channel() {
    let p = pool(&[group(Policy::Hash, &[1, 2, 3])]);
    // 192.0.2.1 → 0x756b9b94 % 3 = 2 → port 3; 127.0.0.1 → 1 → port 2.
    for _ in 0..10 {
        assert_eq!(pick(&p, CLIENT), Some(3));
        assert_eq!(pick(&p, IpAddr::V4(Ipv4Addr::LOCALHOST)), Some(2));
    }
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
    assert_eq!(pick(&p, mapped), Some(3));
    // Different clients spread over the channels.
    let mut seen = std::collections::HashSet::new();
    for i in 0..50u8 {
        seen.insert(pick(&p, IpAddr::V4(Ipv4Addr::new(10, 0, 0, i))).unwrap());
    }
    assert_eq!(seen.len(), 3);
}

#[test]
fn hash_group_without_h_tries_only_the_hashed_channel() {
    let groups = [
        group(Policy::Hash, &[1, 2, 3]),
        group(Policy::RoundRobin, &[9]),
    ];
    let p = pool(&groups);
    assert_eq!(walk(&p, CLIENT), vec![3, 9]);
    // Hashed channel down: no other channel of the group, straight to backup.
    channel(&p, 0, 2).force_down("test");
    assert_eq!(walk(&p, CLIENT), vec![9]);

    let p = pool_with(&groups, true, Failback::Auto);
    assert_eq!(walk(&p, CLIENT), vec![3, 1, 2, 9]);
    channel(&p, 0, 2).force_down("test");
    assert_eq!(walk(&p, CLIENT), vec![1, 2, 9]);
}

#[test]
fn weighted_group_is_smooth_like_nginx() {
    let p = pool(&[GroupConfig {
        on_demand: None,
        name: String::new(),
        policy: Policy::RoundRobin,
        proxy_protocol: None,
        channels: vec![chan(1, 0, 5), chan(2, 0, 1), chan(3, 0, 1)],
    }]);
    let got: Vec<u16> = (0..14).map(|_| pick(&p, CLIENT).unwrap()).collect();
    // nginx: a a b a c a a, repeating.
    assert_eq!(got, vec![1, 1, 2, 1, 3, 1, 1, 1, 1, 2, 1, 3, 1, 1]);
    // An ineligible weighted channel is skipped, and the rest still alternate.
    channel(&p, 0, 0).set_admin(Admin::Drain);
    let got: Vec<u16> = (0..4).map(|_| pick(&p, CLIENT).unwrap()).collect();
    assert_eq!(got.iter().filter(|&&x| x == 2).count(), 2);
    assert_eq!(got.iter().filter(|&&x| x == 3).count(), 2);
}

#[test]
fn manual_failback_keeps_traffic_on_the_backup_until_failback() {
    let groups = [
        group(Policy::RoundRobin, &[1]),
        group(Policy::RoundRobin, &[2]),
    ];
    let p = pool_with(&groups, false, Failback::Manual);
    assert_eq!(pick(&p, CLIENT), Some(1));
    // Group 0 failed; a connection was served by group 1.
    p.served_by(1);
    assert_eq!(p.floor(), 1);
    for _ in 0..5 {
        assert_eq!(
            pick(&p, CLIENT),
            Some(2),
            "primary is up but failback is manual"
        );
    }
    // Lower groups remain a last resort while the floor group has nothing.
    assert_eq!(walk(&p, CLIENT), vec![2, 1]);
    channel(&p, 1, 0).set_admin(Admin::Disabled);
    assert_eq!(pick(&p, CLIENT), Some(1));
    channel(&p, 1, 0).set_admin(Admin::Enabled);
    // served_by(0) never lowers the floor.
    p.served_by(0);
    assert_eq!(pick(&p, CLIENT), Some(2));
    assert_eq!(p.failback(), 1);
    assert_eq!(p.floor(), 0);
    assert_eq!(pick(&p, CLIENT), Some(1));

    // With auto failback served_by changes nothing.
    let p = pool_with(&groups, false, Failback::Auto);
    p.served_by(1);
    assert_eq!(p.floor(), 0);
    assert_eq!(pick(&p, CLIENT), Some(1));
}

#[test]
fn observe_takes_a_channel_down_after_fall_failures_and_a_success_resets() {
    let p = pool(&[group(Policy::RoundRobin, &[1])]);
    let c = channel(&p, 0, 0);
    let rf = RiseFallParams::default();
    assert_eq!(
        c.observe(Err("refused".into()), Evidence::Transport, &rf),
        None
    );
    assert_eq!(
        c.observe(Err("refused".into()), Evidence::Transport, &rf),
        None
    );
    // A successful connect from traffic ends the streak.
    c.connect_ok();
    assert_eq!(
        c.observe(Err("refused".into()), Evidence::Transport, &rf),
        None
    );
    assert_eq!(
        c.observe(Err("refused".into()), Evidence::Transport, &rf),
        None
    );
    assert_eq!(
        c.observe(Err("refused".into()), Evidence::Transport, &rf),
        Some(false)
    );
    assert!(!c.eligible());
    assert_eq!(c.health().1, "refused");
    assert_eq!(c.observe(Ok(()), Evidence::Transport, &rf), None);
    assert_eq!(c.observe(Ok(()), Evidence::Transport, &rf), Some(true));
    assert!(c.eligible());
}

#[test]
fn a_successful_connect_never_ends_an_application_failure_streak() {
    let p = pool(&[group(Policy::RoundRobin, &[1])]);
    let c = channel(&p, 0, 0);
    let rf = RiseFallParams::default();
    let app = |c: &Channel| c.observe(Err("mysql: timeout".into()), Evidence::Application, &rf);
    assert_eq!(app(&c), None);
    c.connect_ok(); // the kernel of a hung server still completes handshakes
    assert_eq!(app(&c), None);
    // A transport failure inside an application streak keeps it one.
    assert_eq!(
        c.observe(Err("refused".into()), Evidence::Transport, &rf),
        Some(false)
    );
    assert!(!c.eligible());
}

#[test]
fn structural_changes_keep_the_round_robin_position() {
    let p = pool(&[group(Policy::RoundRobin, &[1, 2])]);
    assert_eq!(pick(&p, CLIENT), Some(1));
    let g = &p.groups()[0];
    let added = p.new_channel(
        "added",
        Target {
            host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port: 3,
            addrs: vec!["127.0.0.1:3".parse().unwrap()],
        },
        0,
        1,
        None,
    );
    p.store_groups(vec![Arc::new(g.with_channel(added))]);
    let got: Vec<u16> = (0..3).map(|_| pick(&p, CLIENT).unwrap()).collect();
    assert_eq!(got, vec![2, 3, 1]);
}

#[test]
fn a_catching_up_backup_is_skipped_until_a_later_check_passes() {
    let p = pool(&[
        group(Policy::RoundRobin, &[1]),
        group(Policy::RoundRobin, &[2]),
    ]);
    let (primary, backup) = (channel(&p, 0, 0), channel(&p, 1, 0));
    primary.set_admin(Admin::Disabled);
    let client: IpAddr = Ipv4Addr::LOCALHOST.into();
    assert_eq!(walk(&p, client), vec![2]);
    let before = std::time::Instant::now();
    assert!(backup.mark_unverified(crate::health::Reason::Check("catching up".into())));
    assert!(!backup.eligible() && backup.is_up());
    assert!(walk(&p, client).is_empty());
    // A check that started before the mark proves nothing.
    assert!(!backup.clear_catching_up(before - std::time::Duration::from_millis(1)));
    assert!(walk(&p, client).is_empty());
    assert!(backup.clear_catching_up(std::time::Instant::now()));
    assert_eq!(walk(&p, client), vec![2]);
    backup.set_lag(Some(7));
    assert_eq!(backup.lag(), Some(7));
    backup.set_lag(None);
    assert_eq!(backup.lag(), None);
}

/// The proxy takes a channel's slot before it connects, so a connect still
/// in progress (a backend slow to answer SYN) is load to leastconn: new
/// clients go elsewhere instead of piling onto it.
#[test]
fn leastconn_counts_connects_in_progress_as_load() {
    let p = pool(&[group(Policy::LeastConn, &[1, 2])]);
    let pending = channel(&p, 0, 0).try_acquire().expect("a slot");
    for _ in 0..5 {
        assert_eq!(pick(&p, CLIENT), Some(2));
    }
    // Two sessions on 2 against one pending connect on 1: back to 1.
    let held = [
        channel(&p, 0, 1).try_acquire().expect("a slot"),
        channel(&p, 0, 1).try_acquire().expect("a slot"),
    ];
    assert_eq!(pick(&p, CLIENT), Some(1));
    assert_eq!(walk(&p, CLIENT), [1, 2]);
    drop(pending);
    drop(held);
    // Idle again: the tie rotates.
    let got: Vec<_> = (0..4).map(|_| pick(&p, CLIENT).unwrap()).collect();
    assert_eq!(got.iter().filter(|&&x| x == 1).count(), 2, "{got:?}");
}

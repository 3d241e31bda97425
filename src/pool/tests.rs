use super::*;
use crate::config::ChannelConfig;
use std::net::Ipv4Addr;

fn pool(failback: Failback) -> Pool {
    let g = |port| GroupConfig {
        policy: Policy::RoundRobin,
        channels: vec![ChannelConfig {
            host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port,
            maxc: 0,
            weight: 1,
        }],
    };
    let opts = SelectOpts {
        hash_failover: false,
        failback,
    };
    Pool::new(&[g(1), g(2)], opts, |h, p| match h {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, p)],
        Host::Name(_) => vec![],
    })
}

fn first_group(p: &Pool) -> Option<usize> {
    p.candidates(IpAddr::V4(Ipv4Addr::LOCALHOST))
        .next()
        .map(|c| c.group)
}

/// Fail over (primary down, a connection served by group 1), then the
/// primary comes back up.
fn fail_over_and_recover(p: &Pool) {
    let primary = Arc::clone(&p.groups()[0].channels[0]);
    primary.force_down("connect: connection refused");
    assert_eq!(first_group(p), Some(1));
    p.served_by(1);
    primary.force_up();
}

#[test]
fn manual_failback_keeps_traffic_on_backup_until_failback() {
    let p = pool(Failback::Manual);
    fail_over_and_recover(&p);
    for _ in 0..5 {
        assert_eq!(
            first_group(&p),
            Some(1),
            "primary is up but failback is manual"
        );
    }
    assert_eq!(p.failback(), 1);
    assert_eq!(first_group(&p), Some(0));
}

#[test]
fn auto_failback_returns_to_primary_when_it_is_up() {
    let p = pool(Failback::Auto);
    fail_over_and_recover(&p);
    assert_eq!(first_group(&p), Some(0));
}

//! What an idle connection keeps: its task, whose size is this future's.

use std::net::{IpAddr, Ipv4Addr};

use tokio::sync::Semaphore;

use super::*;
use crate::config::{ChannelConfig, GroupConfig, Host, ListenerConfig, Policy};
use crate::health::RiseFallParams;

/// tokio allocates a task as its future plus about 112 bytes of its own
/// (with the task tracker's token), rounded up to 128: up to 656 bytes of
/// future the task is 768 bytes. Every idle connection pays for it.
const TASK_FUTURE_MAX: usize = 656;

/// The connect state is allocated and freed once per connection: a large
/// one costs a slower malloc, and with glibc it left holes that raised the
/// idle connection's memory from about 1.93 to 2.31 KiB (it was 3,824 bytes
/// with the operator's hold, `--race` and spinning inline).
const CONNECT_FUTURE_MAX: usize = 1536;

#[tokio::test]
async fn the_futures_a_connection_allocates_stay_small() {
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let group = GroupConfig {
        on_demand: None,
        name: String::new(),
        policy: Policy::RoundRobin,
        proxy_protocol: None,
        channels: vec![ChannelConfig {
            name: String::new(),
            host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port: 1,
            maxc: 0,
            weight: 1,
            proxy_protocol: None,
        }],
    };
    let cfg = ListenerConfig::new("test".into(), local, vec![group]);
    let svc = Arc::new(Service::new(cfg, RiseFallParams::default()));
    let listener = tokio::net::TcpListener::bind(local).await.unwrap();
    let client = TcpStream::connect(listener.local_addr().unwrap())
        .await
        .unwrap();
    let permit = Arc::new(Semaphore::new(1)).acquire_owned().await.unwrap();
    let connect = std::mem::size_of_val(&held_connect(
        &svc,
        &client,
        crate::pool::Pick::client(local.ip()),
    ));
    let fut = handle(Arc::clone(&svc), client, local, permit, NoLog::accepted);
    let task = std::mem::size_of_val(&fut);
    assert!(
        task <= TASK_FUTURE_MAX,
        "a connection's future is {task} bytes: more than {TASK_FUTURE_MAX} makes every connection's task 128 bytes larger"
    );
    assert!(
        connect <= CONNECT_FUTURE_MAX,
        "the connect future is {connect} bytes, more than {CONNECT_FUTURE_MAX}: box what only some connections use"
    );
}

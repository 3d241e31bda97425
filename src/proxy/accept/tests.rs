//! Reading a header over a real socket: split anywhere, it is read whole
//! and not a byte of what follows is taken.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::config::{Cidr, ListenerConfig};
use crate::health::RiseFallParams;
use crate::proxy_header::{Version, encode};

fn service(list: &str) -> Arc<Service> {
    let local = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut cfg = ListenerConfig::new("t".into(), local, Vec::new());
    cfg.accept_proxy = vec![Cidr::parse(list).unwrap()];
    Arc::new(Service::new(cfg, RiseFallParams::default()))
}

/// A connected pair: (balance's side, the client's).
async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    (s, c)
}

#[tokio::test]
async fn a_header_split_anywhere_is_read_whole_and_nothing_after_it() {
    let svc = service("127.0.0.0/8");
    let src: SocketAddr = "10.1.2.3:4567".parse().unwrap();
    let dst: SocketAddr = "10.9.9.9:3306".parse().unwrap();
    let mut accepted = 0;
    for v in [Version::V1, Version::V2] {
        let mut msg = encode(v, src, dst).as_bytes().to_vec();
        let hlen = msg.len();
        msg.extend_from_slice(b"client bytes");
        for cut in 1..hlen {
            let (s, mut c) = pair().await;
            let peer = s.peer_addr().unwrap();
            let (a, b) = msg.split_at(cut);
            let (a, b) = (a.to_vec(), b.to_vec());
            let writer = tokio::spawn(async move {
                c.write_all(&a).await.unwrap();
                tokio::task::yield_now().await;
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                c.write_all(&b).await.unwrap();
                c
            });
            let got = client(&svc, &s, peer).await.unwrap();
            assert_eq!(got.addr, src, "{v:?} cut {cut}");
            assert_eq!(got.dst, Some(dst));
            let _c = writer.await.unwrap();
            let mut s = s;
            let mut rest = [0u8; 12];
            s.read_exact(&mut rest).await.unwrap();
            assert_eq!(&rest, b"client bytes", "{v:?} cut {cut}");
            accepted += 1;
        }
    }
    assert_eq!(svc.stats.proxy_accepted.load(Relaxed), accepted);
    assert_eq!(svc.stats.proxy_malformed.load(Relaxed), 0);
}

#[tokio::test]
async fn local_and_unlisted_sources_keep_the_socket_address() {
    let svc = service("127.0.0.0/8");
    let (s, mut c) = pair().await;
    let peer = s.peer_addr().unwrap();
    c.write_all(crate::proxy_header::encode_local(Version::V2).as_bytes())
        .await
        .unwrap();
    assert_eq!(client(&svc, &s, peer).await, Some(Peer::direct(peer)));
    // Outside the list: no header expected, nothing read.
    let other = service("10.0.0.0/8");
    let (s, mut c) = pair().await;
    let peer = s.peer_addr().unwrap();
    c.write_all(b"SELECT 1").await.unwrap();
    c.flush().await.unwrap();
    assert_eq!(client(&other, &s, peer).await, Some(Peer::direct(peer)));
    let mut b = [0u8; 8];
    let mut s = s;
    s.read_exact(&mut b).await.unwrap();
    assert_eq!(&b, b"SELECT 1");
}

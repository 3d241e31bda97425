//! Seeing a client leave while connecting.

use super::client_gone;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

async fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (s, _) = l.accept().await.unwrap();
    (c, s)
}

#[tokio::test]
async fn a_client_that_half_closes_without_data_stays() {
    // `nc -N`, health checkers: a FIN before any data waits for a banner.
    let (c, s) = pair().await;
    let c = c.into_std().unwrap();
    c.shutdown(std::net::Shutdown::Write).unwrap();
    let r = timeout(Duration::from_millis(200), client_gone(&s)).await;
    assert!(r.is_err(), "a half-close without data is not a departure");
    drop(c);
}

#[tokio::test]
async fn a_client_that_sent_data_then_fin_is_committed() {
    let (mut c, s) = pair().await;
    c.write_all(b"x").await.unwrap();
    c.shutdown().await.unwrap();
    let r = timeout(Duration::from_millis(200), client_gone(&s)).await;
    assert!(r.is_err(), "data before FIN must still be delivered");
}

#[tokio::test]
async fn a_committed_client_that_resets_is_gone() {
    let (mut c, s) = pair().await;
    c.write_all(b"x").await.unwrap();
    let gone = client_gone(&s);
    tokio::pin!(gone);
    assert!(timeout(Duration::from_millis(50), &mut gone).await.is_err());
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
    assert!(
        timeout(Duration::from_secs(2), gone).await.is_ok(),
        "RST not seen"
    );
}

#[tokio::test]
async fn a_client_that_resets_is_gone() {
    let (c, s) = pair().await;
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
    drop(c);
    assert!(
        timeout(Duration::from_secs(2), client_gone(&s))
            .await
            .is_ok()
    );
}

fn cfg() -> crate::config::ListenerConfig {
    crate::config::ListenerConfig::new("t".into(), "127.0.0.1:0".parse().unwrap(), Vec::new())
}

#[tokio::test]
async fn a_connect_without_so_error_still_sees_a_refusal() {
    // A port nobody listens on: bound, then closed.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let err = super::connect_addr(&cfg(), addr).await.unwrap_err();
    assert_eq!(err.to_string(), "connection refused");
}

#[tokio::test]
async fn a_backend_socket_is_connected_with_nodelay() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let s = super::connect_addr(&cfg(), l.local_addr().unwrap())
        .await
        .unwrap();
    assert!(s.nodelay().unwrap());
    assert_eq!(s.peer_addr().unwrap(), l.local_addr().unwrap());
}

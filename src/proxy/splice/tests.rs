use super::*;
use crate::proxy::half::{Activity, Dir, HalfState};
use std::sync::atomic::AtomicU64;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A connected loopback pair: (the peer's end, our end).
async fn pair() -> (TcpStream, TcpStream) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (ours, _) = l.accept().await.unwrap();
    (peer, ours)
}

async fn read_exact(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    s.read_exact(&mut v).await.unwrap();
    v
}

/// After a burst the next one is spliced from its first byte (`bulk`); a
/// small message ends that, and every byte arrives in order either way.
#[tokio::test]
async fn a_burst_makes_the_direction_bulk_and_a_small_message_ends_it() {
    let (mut client, src) = pair().await;
    let (dst, mut backend) = pair().await;
    let (counter, act) = (AtomicU64::new(0), Activity::new());
    let (state, peer) = (HalfState::default(), HalfState::default());
    let h = HalfDuplex {
        dir: Dir::ToBackend,
        src: &src,
        dst: &dst,
        counter: &counter,
        act: &act,
        state: &state,
        peer: &peer,
    };
    let burst: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    // Queued before the pump starts: its first read is a full one.
    client.write_all(&burst[..32 * 1024]).await.unwrap();
    let drive = async {
        client.write_all(&burst[32 * 1024..]).await.unwrap();
        assert_eq!(read_exact(&mut backend, burst.len()).await, burst);
        assert!(state.bulk(), "a burst makes the direction bulk");
        client.write_all(b"0123456789").await.unwrap();
        assert_eq!(read_exact(&mut backend, 10).await, b"0123456789");
        // The pump runs until its source is drained before we get here.
        tokio::task::yield_now().await;
        assert!(!state.bulk(), "a small message ends bulk mode");
        client.write_all(b"abc").await.unwrap();
        assert_eq!(read_exact(&mut backend, 3).await, b"abc");
        client.shutdown().await.unwrap();
        let mut rest = Vec::new();
        backend.read_to_end(&mut rest).await.unwrap();
        assert!(rest.is_empty());
    };
    let (r, ()) = tokio::join!(pump(&h), drive);
    assert_eq!(r.ok(), Some(Outcome::Done));
    assert_eq!(counter.load(Relaxed), burst.len() as u64 + 13);
}

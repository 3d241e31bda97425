use super::*;
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A connected loopback pair: (the peer's end, our end).
async fn pair() -> (TcpStream, TcpStream) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let peer = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (ours, _) = l.accept().await.unwrap();
    (peer, ours)
}

/// A client → backend half: the client writes into `src`, the backend
/// reads what we write to `dst`.
struct Fixture {
    client: TcpStream,
    src: TcpStream,
    dst: TcpStream,
    backend: TcpStream,
    counter: AtomicU64,
    act: Activity,
    state: HalfState,
    peer: HalfState,
}

impl Fixture {
    async fn new() -> Fixture {
        let (client, src) = pair().await;
        let (backend, dst) = pair().await;
        Fixture {
            client,
            src,
            dst,
            backend,
            counter: AtomicU64::new(0),
            act: Activity::new(),
            state: HalfState::default(),
            peer: HalfState::default(),
        }
    }

    fn half(&self) -> HalfDuplex<'_> {
        HalfDuplex {
            dir: Dir::ToBackend,
            src: &self.src,
            dst: &self.dst,
            counter: &self.counter,
            act: &self.act,
            state: &self.state,
            peer: &self.peer,
        }
    }
}

#[tokio::test]
async fn a_short_read_is_drained_and_clears_readiness_without_another_read() {
    let mut f = Fixture::new().await;
    f.client.write_all(b"hello").await.unwrap();
    let h = f.half();
    h.wait_source().await.unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(h.read(&mut buf), Chunk::Drained(5)));
    assert_eq!(&buf[..5], b"hello");
    // Readiness was cleared: the next read reports drained without data.
    assert!(matches!(h.read(&mut buf), Chunk::Drained(0)));
}

#[tokio::test]
async fn a_read_that_fills_the_buffer_is_full() {
    let mut f = Fixture::new().await;
    f.client.write_all(b"0123456789").await.unwrap();
    let h = f.half();
    h.wait_source().await.unwrap();
    let mut buf = [0u8; 4];
    assert!(matches!(h.read(&mut buf), Chunk::Full(4)));
    assert_eq!(&buf, b"0123");
}

#[tokio::test]
async fn eof_is_read_and_passed_on_as_a_half_close() {
    let mut f = Fixture::new().await;
    f.client.shutdown().await.unwrap();
    let h = f.half();
    h.wait_source().await.unwrap();
    let mut buf = [0u8; 16];
    assert!(matches!(h.read(&mut buf), Chunk::Eof));
    h.pass_eof();
    assert_eq!(f.backend.read(&mut buf).await.unwrap(), 0);
    // Only our writing side was shut down: the backend can still answer.
    f.backend.write_all(b"late").await.unwrap();
    f.dst.readable().await.unwrap();
    assert_eq!(f.dst.try_read(&mut buf).unwrap(), 4);
}

#[tokio::test]
async fn write_all_delivers_and_moved_counts() {
    let mut f = Fixture::new().await;
    let h = f.half();
    h.write_all(b"xyz").await.unwrap();
    h.moved(3);
    assert_eq!(f.counter.load(Relaxed), 3);
    let mut got = [0u8; 3];
    f.backend.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"xyz");
}

#[tokio::test]
async fn waiting_on_a_quiet_source_marks_the_half_parked() {
    let mut f = Fixture::new().await;
    {
        let h = f.half();
        // A fresh registration may report a spurious readiness; a read
        // finds nothing and clears it.
        assert!(matches!(h.read(&mut [0u8; 16]), Chunk::Drained(0)));
        let r = h.wait_source().now_or_never();
        assert!(r.is_none(), "{r:?}");
    }
    assert!(f.state.parked());
    f.client.write_all(b"x").await.unwrap();
    f.half().wait_source().await.unwrap();
    assert!(!f.state.parked());
}

#[tokio::test]
async fn ended_is_set_only_by_its_own_half() {
    let f = Fixture::new().await;
    let h = f.half();
    assert!(!h.ended());
    h.set_ended();
    assert!(h.ended() && f.state.ended());
    assert!(!f.peer.ended());
}

#[tokio::test(start_paused = true)]
async fn activity_expires_after_idle_and_untracked_never() {
    let idle = Duration::from_secs(5);
    let act = Activity::new();
    tokio::time::advance(Duration::from_secs(3)).await;
    act.touch();
    // Touched at 3 s: it expires at 8 s, five seconds later.
    let t0 = Instant::now();
    act.expired(idle).await;
    assert!(t0.elapsed() >= Duration::from_secs(5), "{:?}", t0.elapsed());

    let untracked = Activity::untracked();
    untracked.touch();
    let r = tokio::time::timeout(Duration::from_secs(3600), untracked.expired(idle)).await;
    assert!(r.is_err(), "an untracked activity never expires");
}

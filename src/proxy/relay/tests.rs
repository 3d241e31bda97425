use super::*;
use std::io;
use std::sync::atomic::Ordering::Relaxed;

async fn pair() -> (TcpStream, TcpStream) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let a = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
    let (b, _) = l.accept().await.unwrap();
    (a, b)
}

fn err() -> io::Error {
    io::ErrorKind::ConnectionReset.into()
}

#[tokio::test]
async fn finish_blames_the_side_that_broke() {
    let (client, _c) = pair().await;
    let (backend, _b) = pair().await;
    let cases = [
        (Ok(()), End::Done),
        (
            Err((Dir::ToBackend, PumpError::Src(err()))),
            End::ClientError,
        ),
        (
            Err((Dir::ToClient, PumpError::Dst(err()))),
            End::ClientError,
        ),
        (
            Err((Dir::ToClient, PumpError::Src(err()))),
            End::BackendError,
        ),
        (
            Err((Dir::ToBackend, PumpError::Dst(err()))),
            End::BackendError,
        ),
    ];
    for (res, want) in cases {
        let what = format!("{res:?}");
        assert_eq!(finish(&client, &backend, res), want, "{what}");
    }
}

/// Each message is relayed, both sources drain, and the relay parks: the
/// next message (either way) must start a new active phase from the parked
/// wait alone, and every byte is counted.
#[tokio::test]
async fn a_parked_relay_wakes_for_either_side_and_counts_every_byte() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut user, client) = pair().await;
    let (backend, mut server) = pair().await;
    let (sent, rcvd) = (AtomicU64::new(0), AtomicU64::new(0));
    let o = RelayOpts {
        sent: &sent,
        rcvd: &rcvd,
        idle_timeout: None,
        dump: false,
        splice: true,
    };
    let talk = async {
        let mut buf = [0u8; 64];
        for i in 0..20u8 {
            // Alternate who speaks first, so both sockets wake a parked relay.
            let (a, b) = if i % 2 == 0 {
                (&mut user, &mut server)
            } else {
                (&mut server, &mut user)
            };
            a.write_all(&[i; 7]).await.unwrap();
            b.read_exact(&mut buf[..7]).await.unwrap();
            assert_eq!(buf[..7], [i; 7]);
            b.write_all(&[i; 5]).await.unwrap();
            a.read_exact(&mut buf[..5]).await.unwrap();
            assert_eq!(buf[..5], [i; 5]);
        }
        drop(user);
        drop(server);
    };
    let ends = crate::pool::channel::Ends::default();
    let (end, ()) = tokio::time::timeout(Duration::from_secs(10), async {
        tokio::join!(relay(&client, &backend, &o, &ends), talk)
    })
    .await
    .expect("relay finished");
    assert_eq!(end, End::Done);
    let total = 20 * (7 + 5);
    assert_eq!(sent.load(Relaxed) + rcvd.load(Relaxed), total);
    assert_eq!(sent.load(Relaxed), 10 * 7 + 10 * 5);
}

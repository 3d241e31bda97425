use super::*;
use std::io;

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

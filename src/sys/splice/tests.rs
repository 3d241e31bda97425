use super::*;
use std::io::{Read, Write};

#[test]
fn pipe_is_nonblocking_and_cloexec() {
    let p = RawPipe::new().unwrap();
    for fd in [p.r.as_raw_fd(), p.w.as_raw_fd()] {
        // SAFETY: fcntl F_GETFL/F_GETFD on an fd we own; no pointers.
        let (fl, fdfl) = unsafe {
            (
                libc::fcntl(fd, libc::F_GETFL),
                libc::fcntl(fd, libc::F_GETFD),
            )
        };
        assert!(fl & libc::O_NONBLOCK != 0);
        assert!(fdfl & libc::FD_CLOEXEC != 0);
    }
}

#[test]
fn set_size_grows_the_pipe() {
    let p = RawPipe::new().unwrap();
    let got = p.set_size(256 * 1024).unwrap();
    assert!(got >= 256 * 1024);
    assert_eq!(p.size().unwrap(), got);
}

#[test]
fn splice_moves_bytes_between_a_socket_and_a_pipe() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (mut b, _) = l.accept().unwrap();
    a.write_all(b"hello").unwrap();
    let p = RawPipe::new().unwrap();
    // Blocking socket: the splice waits for the 5 bytes already sent.
    let n = splice(b.as_raw_fd(), p.w.as_raw_fd(), 1024).unwrap();
    assert_eq!(n, 5);
    // An empty source with a non-blocking pipe side reports WouldBlock.
    let e = splice(p.r.as_raw_fd(), a.as_raw_fd(), 1024);
    assert_eq!(e.unwrap(), 5);
    let e = splice(p.r.as_raw_fd(), a.as_raw_fd(), 1024).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
    let mut got = [0u8; 5];
    b.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
}

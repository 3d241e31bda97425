use super::*;
use crate::proxy::splice::PIPE_SIZE;
use std::io::{Read, Write};

fn sockets() -> (std::net::TcpStream, std::net::TcpStream) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (b, _) = l.accept().unwrap();
    (a, b)
}

#[test]
fn pool_reuses_an_empty_pipe_instead_of_making_a_new_one() {
    let pool = PipePool::new(4);
    let fd = {
        let l = pool.get(PIPE_SIZE).unwrap();
        assert_eq!((pool.in_use(), pool.pooled()), (1, 0));
        l.pipe().unwrap().r.as_raw_fd()
    };
    assert_eq!((pool.in_use(), pool.pooled()), (0, 1));
    let l = pool.get(PIPE_SIZE).unwrap();
    assert_eq!(l.pipe().unwrap().r.as_raw_fd(), fd);
    assert_eq!((pool.in_use(), pool.pooled()), (1, 0));
}

#[test]
fn pool_keeps_at_most_cap_pipes() {
    let pool = PipePool::new(2);
    let leases: Vec<_> = (0..5).map(|_| pool.get(PIPE_SIZE).unwrap()).collect();
    assert_eq!(pool.in_use(), 5);
    drop(leases);
    assert_eq!((pool.in_use(), pool.pooled()), (0, 2));
}

#[test]
fn pool_closes_a_pipe_that_still_holds_bytes() {
    let pool = PipePool::new(4);
    let (mut a, b) = sockets();
    a.write_all(b"leftover").unwrap();
    let mut l = pool.get(PIPE_SIZE).unwrap();
    // Blocking socket: waits for the 8 bytes.
    assert_eq!(l.fill(&b, 1024).unwrap(), 8);
    assert_eq!(l.pending(), 8);
    drop(l);
    assert_eq!((pool.in_use(), pool.pooled()), (0, 0));
}

#[test]
fn lease_moves_bytes_and_goes_back_empty() {
    let pool = PipePool::new(4);
    let (mut a, b) = sockets();
    let (mut c, d) = sockets();
    a.write_all(b"0123456789").unwrap();
    let mut l = pool.get(PIPE_SIZE).unwrap();
    assert_eq!(l.fill(&b, 1024).unwrap(), 10);
    assert_eq!(l.drain(&d).unwrap(), 10);
    assert_eq!(l.pending(), 0);
    drop(l);
    assert_eq!(pool.pooled(), 1);
    let mut got = [0u8; 10];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"0123456789");
}

#[test]
fn pool_gives_a_pipe_of_the_requested_size() {
    let pool = PipePool::new(1);
    let l = pool.get(256 * 1024).unwrap();
    assert!(l.pipe().unwrap().size().unwrap() >= 256 * 1024);
}

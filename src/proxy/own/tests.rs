use super::*;

#[test]
fn a_marked_connect_to_our_port_is_recognised_until_it_closes() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let to = l.local_addr().unwrap();
    // Not a port we listen on: not marked.
    let c = std::net::TcpStream::connect(to).unwrap();
    assert!(Mark::new(&c, to).is_none());
    listening(to.port());
    let mark = Mark::new(&c, to).expect("marked");
    let (_a, peer) = l.accept().unwrap();
    assert!(is_own(peer, to.port()));
    // Another listener's port: not this loop.
    assert!(!is_own(peer, to.port().wrapping_add(1).max(1)));
    drop(mark);
    assert!(!is_own(peer, to.port()));
}

#[test]
fn a_remote_peer_is_never_own() {
    let peer: SocketAddr = "192.0.2.200:40000".parse().unwrap();
    assert!(!is_own(peer, 80));
}

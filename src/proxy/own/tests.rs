use super::*;

#[test]
fn a_marked_connect_to_our_port_is_recognised() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let to = l.local_addr().unwrap();
    // Not a port we listen on: not marked.
    let c = std::net::TcpStream::connect(to).unwrap();
    mark(&c, to);
    let (_a, peer) = l.accept().unwrap();
    assert!(!is_own(peer, to.port()));
    listening(to.port());
    mark(&c, to);
    assert!(is_own(peer, to.port()));
    // Another listener's port: not this loop.
    assert!(!is_own(peer, to.port().wrapping_add(1).max(1)));
}

#[test]
fn a_remote_peer_is_never_own() {
    let peer: SocketAddr = "192.0.2.200:40000".parse().unwrap();
    assert!(!is_own(peer, 80));
}

#[test]
fn marks_are_fresh_for_a_while_and_across_the_wrap() {
    assert!(!fresh(0, 10));
    assert!(fresh(10, 10) && fresh(10, 14));
    assert!(!fresh(10, 15));
    // 0xfffe then 2: three seconds later, across the wrap.
    assert!(fresh(0xfffe, 2) && !fresh(0xfffa, 2));
}

use super::*;

#[test]
fn accepted_sockets_inherit_nodelay_from_the_listener() {
    let l = bind("127.0.0.1:0".parse().unwrap(), false).unwrap();
    l.set_nonblocking(false).unwrap();
    let addr = l.local_addr().unwrap();
    let _c = std::net::TcpStream::connect(addr).unwrap();
    let (a, _) = l.accept().unwrap();
    // The relay never sets it per connection: small messages must not
    // wait for Nagle.
    assert!(a.nodelay().unwrap());
}

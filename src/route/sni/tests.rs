use super::*;

/// A ClientHello as one handshake message (header included) with
/// `name` in a server_name extension (none when `None`), and padding
/// extensions so it looks like a real one.
fn hello_msg(name: Option<&str>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([7u8; 32]); // random
    body.push(32);
    body.extend([1u8; 32]); // session id
    body.extend([0, 4, 0x13, 0x01, 0x13, 0x02]); // cipher suites
    body.extend([1, 0]); // compression
    let mut exts = Vec::new();
    // supported_versions first, so the name is not the first extension.
    exts.extend([0, 43, 0, 3, 2, 3, 4]);
    if let Some(n) = name {
        let n = n.as_bytes();
        let mut list = vec![0u8];
        list.extend((n.len() as u16).to_be_bytes());
        list.extend(n);
        let mut sni = (list.len() as u16).to_be_bytes().to_vec();
        sni.extend(list);
        exts.extend([0, 0]);
        exts.extend((sni.len() as u16).to_be_bytes());
        exts.extend(sni);
    }
    exts.extend([0, 21, 0, 100]); // padding
    exts.extend([0u8; 100]);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut msg = vec![1];
    msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend(body);
    msg
}

/// `msg` in TLS records of at most `chunk` bytes each.
fn records(msg: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for part in msg.chunks(chunk) {
        out.extend([22, 3, 1]);
        out.extend((part.len() as u16).to_be_bytes());
        out.extend(part);
    }
    out
}

fn name(p: &Peek) -> Option<&str> {
    match p {
        Peek::Name(n) => Some(n.as_str()),
        _ => None,
    }
}

#[test]
fn one_record_gives_the_name_lowercased() {
    let b = records(&hello_msg(Some("App.Example.COM.")), 1 << 14);
    assert_eq!(name(&parse(&b)), Some("app.example.com"));
}

#[test]
fn every_prefix_needs_more_and_never_more_than_the_whole() {
    let b = records(&hello_msg(Some("a.example.com")), 1 << 14);
    for i in 0..b.len() {
        match parse(&b[..i]) {
            Peek::NeedMore(n) => assert!(n > i && n <= b.len(), "prefix {i}: need {n}"),
            other => panic!("prefix {i}: {other:?}"),
        }
    }
    // Trailing application data after the hello changes nothing.
    let mut more = b.clone();
    more.extend(b"trailing");
    assert_eq!(name(&parse(&more)), Some("a.example.com"));
}

#[test]
fn a_hello_fragmented_over_records_is_reassembled() {
    let msg = hello_msg(Some("split.example.org"));
    for chunk in [1usize, 2, 3, 7, 50, 100, 150] {
        let b = records(&msg, chunk);
        let want = if msg.len().div_ceil(chunk) > MAX_FRAGMENTS {
            None
        } else {
            Some("split.example.org")
        };
        assert_eq!(name(&parse(&b)), want, "chunk {chunk}");
        if want.is_some() {
            for i in 0..b.len() {
                assert!(
                    matches!(parse(&b[..i]), Peek::NeedMore(_)),
                    "chunk {chunk}, prefix {i}"
                );
            }
        }
    }
}

#[test]
fn no_name_sslv2_plain_text_and_garbage_are_no_sni() {
    let cases: Vec<Vec<u8>> = vec![
        records(&hello_msg(None), 1 << 14),
        // SSLv2-compatible ClientHello: high bit set in the first byte.
        vec![0x80, 0x2e, 0x01, 0x03, 0x01, 0x00, 0x15],
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        b"\x16\x02\x00\x00\x05hello".to_vec(), // SSL 2 version in a record
        b"\x16\x03\x01\x00\x00".to_vec(),      // empty record
        b"\x16\x03\x01\xff\xff".to_vec(),      // record longer than TLS allows
        records(&[2, 0, 0, 4, 1, 2, 3, 4], 100), // a ServerHello
        records(&[1, 0xff, 0xff, 0xff], 100),  // a hello longer than the bound
        records(&hello_msg(Some("bad name!")), 1 << 14),
        records(&hello_msg(Some("")), 1 << 14),
    ];
    for (i, c) in cases.iter().enumerate() {
        assert_eq!(parse(c), Peek::NoSni, "case {i}");
    }
    // One byte is enough to tell a non-TLS client.
    assert_eq!(parse(b"G"), Peek::NoSni);
    assert_eq!(parse(b"\x16"), Peek::NeedMore(RECORD_HEADER));
    assert_eq!(parse(b""), Peek::NeedMore(RECORD_HEADER));
}

#[test]
fn lengths_that_lie_never_panic_and_never_read_past_the_hello() {
    let msg = hello_msg(Some("x.example.com"));
    // Corrupt each byte of the message in turn (lengths included).
    for i in 0..msg.len() {
        for v in [0u8, 1, 0x7f, 0xff] {
            let mut m = msg.clone();
            m[i] = v;
            let b = records(&m, 1 << 14);
            let _ = parse(&b);
            let _ = parse(&records(&m, 33));
        }
    }
}

#[test]
fn name_keys_reject_what_is_not_a_host_name() {
    assert!(Name::new(b"a.b-c_d.example").is_some());
    assert!(Name::new(&[b'a'; 256]).is_none());
    assert!(Name::new(&[b'a'; 255]).is_some());
    assert!(Name::new(b".").is_none());
    assert!(Name::new(b"a b").is_none());
    assert!(Name::new("é.example".as_bytes()).is_none());
}

#[test]
fn real_openssl_hellos() {
    let sni = include_bytes!("../../../fuzz/corpus/sni/seed-openssl-sni");
    assert_eq!(name(&parse(sni)), Some("app.example.com"));
    let tls12 = include_bytes!("../../../fuzz/corpus/sni/seed-openssl-tls12");
    assert_eq!(name(&parse(tls12)), Some("x.example.org"));
    let none = include_bytes!("../../../fuzz/corpus/sni/seed-openssl-nosni");
    assert_eq!(parse(none), Peek::NoSni);
    let frag = include_bytes!("../../../fuzz/corpus/sni/seed-fragmented");
    assert_eq!(name(&parse(frag)), Some("app.example.com"));
}

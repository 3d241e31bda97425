use super::wire::{I64, b64, grpc_error, parse, prefix_end};
use super::*;

#[test]
fn prefix_end_increments_the_last_byte_below_ff() {
    assert_eq!(prefix_end(b"/a"), b"/b");
    assert_eq!(prefix_end(b"a\xff"), b"b");
    assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    assert_eq!(prefix_end(b""), b"\0");
}

#[test]
fn endpoints_are_validated() {
    let t = Duration::from_secs(1);
    assert!(Client::new(&["http://127.0.0.1:2379".into()], t).is_ok());
    assert!(Client::new(&["http://etcd.example:2379/".into()], t).is_ok());
    assert!(Client::new(&["http://[::1]:2379".into()], t).is_ok());
    // https:// without TLS settings: refused, naming what is missing.
    let e = Client::new(&["https://h:1".into()], t).unwrap_err();
    assert!(e.to_string().contains("needs fleet.tls"), "{e}");
    for bad in [
        "127.0.0.1:2379",
        "http://h",
        "http://h:0",
        "http://h:x",
        "http://:1",
        "http://a/b:1",
        "http://::1:2",
    ] {
        let e = Client::new(&[bad.to_string()], t).unwrap_err();
        assert!(matches!(e, EtcdError::Config(_)), "{bad}: {e}");
        assert!(e.to_string().contains(bad), "{e}");
    }
    assert!(Client::new(&[], t).is_err());
    assert!(Client::new(&["http://h:1".into()], Duration::ZERO).is_err());
}

#[test]
fn int64_fields_come_as_strings_or_numbers() {
    let v: I64 = serde_json::from_str("\"42\"").unwrap();
    assert_eq!(v, I64(42));
    let v: I64 = serde_json::from_str("-7").unwrap();
    assert_eq!(v, I64(-7));
    assert!(serde_json::from_str::<I64>("\"x\"").is_err());
    assert!(serde_json::from_str::<I64>("true").is_err());
}

#[test]
fn range_replies_decode_and_bad_ones_are_errors() {
    let ok = format!(
        r#"{{"header":{{"revision":"9"}},"kvs":[{{"key":"{}","value":"{}","create_revision":"2","mod_revision":"3","lease":"77"}}]}}"#,
        b64(b"/k"),
        b64(b"v")
    );
    let r: wire::RangeReply = parse(ok.as_bytes()).unwrap();
    assert_eq!(r.header.revision, I64(9));
    let kv = r.kvs[0].decode().unwrap();
    assert_eq!(
        kv,
        Kv {
            key: b"/k".to_vec(),
            value: b"v".to_vec(),
            create_revision: 2,
            mod_revision: 3,
            lease: 77
        }
    );
    // Absent fields are zero / empty.
    let r: wire::RangeReply = parse(br#"{"kvs":[{"key":"YQ=="}]}"#).unwrap();
    assert_eq!(r.kvs[0].decode().unwrap().value, b"");
    for bad in [
        &b"nope"[..],
        b"{\"kvs\":5}",
        b"{\"header\":{\"revision\":\"x\"}}",
        b"",
    ] {
        assert!(matches!(
            parse::<wire::RangeReply>(bad),
            Err(EtcdError::Reply(_))
        ));
    }
    let r: wire::RangeReply = parse(br#"{"kvs":[{"key":"!!"}]}"#).unwrap();
    assert!(matches!(r.kvs[0].decode(), Err(EtcdError::Reply(_))));
}

#[test]
fn gateway_errors_are_recognized() {
    let (code, msg) = grpc_error(br#"{"error":"x","message":"lease not found","code":5}"#).unwrap();
    assert_eq!((code, msg.as_str()), (5, "lease not found"));
    assert!(grpc_error(b"404 page not found").is_none());
    assert!(grpc_error(b"{}").is_none());
    let e = check_status(StatusCode::SERVICE_UNAVAILABLE, Bytes::new(), "u").unwrap_err();
    assert!(e.try_next());
    let e = check_status(StatusCode::NOT_FOUND, Bytes::from_static(b"nope"), "u").unwrap_err();
    assert!(matches!(e, EtcdError::Reply(_)));
    let e = check_status(
        StatusCode::BAD_REQUEST,
        Bytes::from_static(br#"{"code":14,"message":"no leader"}"#),
        "u",
    )
    .unwrap_err();
    assert!(e.try_next(), "{e}");
}

#[test]
fn watch_events_decode_put_and_delete() {
    let m: wire::Streamed<wire::WatchReply> = parse(
        br#"{"result":{"header":{"revision":"6"},"events":[{"kv":{"key":"YTE=","value":"djE=","mod_revision":"5"}},{"type":"DELETE","kv":{"key":"YTE=","mod_revision":"6"}}]}}"#,
    )
    .unwrap();
    let ev = m.result.unwrap().decode_events().unwrap();
    assert!(matches!(&ev[0], Event::Put(kv) if kv.key == b"a1" && kv.value == b"v1"));
    assert!(matches!(&ev[1], Event::Delete(kv) if kv.key == b"a1" && kv.mod_revision == 6));
    let m: wire::Streamed<wire::WatchReply> =
        parse(br#"{"result":{"events":[{"type":"BOOM","kv":{"key":"YTE="}}]}}"#).unwrap();
    assert!(m.result.unwrap().decode_events().is_err());
}

#[test]
fn first_object_takes_one_message_of_a_stream() {
    let s = br#"{"result":{"TTL":"5"}}
{"result":{}}"#;
    let one = first_object(s).unwrap();
    let r: wire::Streamed<wire::LeaseReply> = parse(one).unwrap();
    assert_eq!(r.result.unwrap().ttl, I64(5));
    assert!(first_object(b"").is_err());
    assert!(first_object(b"{").is_err());
}

#[test]
fn the_end_of_a_streamed_message_is_found_across_chunks_once() {
    let one = br#" {"result":{"a":"}{\"]","b":[1,{"c":"\\"}]}}"#;
    let stream = [&one[..], br#" {"result":{}}"#].concat();
    // Fed a byte at a time, as chunks may split it anywhere.
    let mut s = Stream::default();
    let mut out = Vec::new();
    let mut found = None;
    for (i, b) in stream.iter().enumerate() {
        if s.feed(std::slice::from_ref(b), &mut out).unwrap() == Some(1) {
            found = Some(i + 1);
            break;
        }
    }
    assert_eq!(found, Some(one.len()));
    assert_eq!(out, one.trim_ascii_start());
    // The rest is the next message.
    let mut out = Vec::new();
    let rest = &stream[one.len()..];
    assert_eq!(
        Stream::default().feed(rest, &mut out).unwrap(),
        Some(rest.len())
    );
    assert_eq!(out, br#"{"result":{}}"#);
    // Bytes outside any object are an error, not a wait for more.
    assert!(Stream::default().feed(b"  x{}", &mut Vec::new()).is_err());
}

#[test]
fn a_string_over_the_bound_is_dropped_as_it_arrives() {
    let big = "A".repeat(stream::MAX_STRING + 1);
    let ok = "B".repeat(stream::MAX_STRING);
    let msg = format!(r#"{{"kv":{{"key":"a2V5","value":"{big}","x":"{ok}","e":"\"{big}"}}}}"#);
    let mut out = Vec::new();
    let mut s = Stream::default();
    let mut end = None;
    for chunk in msg.as_bytes().chunks(1000) {
        assert!(end.is_none());
        end = s.feed(chunk, &mut out).unwrap();
        assert!(out.len() < 3 * stream::MAX_STRING);
    }
    assert!(end.is_some());
    let want = format!(r#"{{"kv":{{"key":"a2V5","value":"!","x":"{ok}","e":"!"}}}}"#);
    assert_eq!(String::from_utf8(out).unwrap(), want);
}

#[test]
fn a_value_over_the_bound_is_refused_and_counted() {
    let before = refused_values();
    let big = wire::RawKv {
        key: b64(b"/p/k"),
        value: b64(&vec![b'x'; MAX_VALUE + 4]),
        ..Default::default()
    };
    let kv = big.decode().unwrap();
    assert_eq!((kv.key.as_slice(), kv.value.len()), (&b"/p/k"[..], 0));
    assert!(refused_values() > before);
    let ok = wire::RawKv {
        key: b64(b"/p/k"),
        value: b64(&vec![b'x'; MAX_VALUE]),
        ..Default::default()
    };
    assert_eq!(ok.decode().unwrap().value.len(), MAX_VALUE);
}

#[test]
fn a_refused_token_is_renewed_and_a_denial_names_the_request_and_key() {
    let refused = |code, m: &str| EtcdError::Refused {
        code,
        message: m.into(),
    };
    assert!(stale_token(&refused(16, "etcdserver: invalid auth token")));
    assert!(stale_token(&refused(
        3,
        "etcdserver: revision of auth store is old"
    )));
    assert!(stale_token(&EtcdError::WatchEnded(
        "x: canceled: rpc error: code = Unauthenticated desc = etcdserver: invalid auth token"
            .into()
    )));
    assert!(!stale_token(&refused(7, "etcdserver: permission denied")));
    assert!(!stale_token(&EtcdError::Timeout));
    let body = wire::txn_body(
        b"/t/svc/db/leader",
        "CREATE",
        "create_revision",
        0,
        json!({}),
    );
    let e = denied(
        refused(7, "etcdserver: permission denied"),
        "/v3/kv/txn",
        &body,
    );
    assert_eq!(
        e.to_string(),
        "etcd: etcdserver: permission denied: /v3/kv/txn on key \"/t/svc/db/leader\" (the etcd user's role needs readwrite on the fleet prefix)"
    );
    assert!(matches!(
        denied(EtcdError::Timeout, "/v3/kv/put", &body),
        EtcdError::Timeout
    ));
    // etcd's 400 for a client certificate with a CN (plain text).
    let e = check_status(
        StatusCode::BAD_REQUEST,
        Bytes::from_static(
            b"CommonName of client sending a request against gateway will be ignored and not used as expected\n",
        ),
        "https://e:2379",
    )
    .unwrap_err();
    assert!(matches!(e, EtcdError::Tls(_)), "{e}");
    // Another page that is not etcd's JSON: its start is shown, on one line.
    let e = check_status(
        StatusCode::BAD_REQUEST,
        Bytes::from_static(b"bad\nthing"),
        "http://e:2379",
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "etcd: http://e:2379: HTTP 400 Bad Request: bad thing"
    );
}

mod srv_records {
    use super::super::srv::{Parse, Srv, nameservers, parse, query, service_name};

    /// A reply to `q` with `answers` (each: SRV priority, weight, port and
    /// the target's labels; the answer's name a pointer to the question).
    fn reply(q: &[u8], flags: u8, rcode: u8, answers: &[(u16, u16, u16, &[&str])]) -> Vec<u8> {
        let mut m = q.to_vec();
        m[2] = 0x81 | flags;
        m[3] = 0x80 | rcode;
        m[6..8].copy_from_slice(&(answers.len() as u16).to_be_bytes());
        for (prio, weight, port, labels) in answers {
            m.extend_from_slice(&[0xc0, 12, 0, 33, 0, 1, 0, 0, 0, 60]);
            let mut data = Vec::new();
            data.extend_from_slice(&prio.to_be_bytes());
            data.extend_from_slice(&weight.to_be_bytes());
            data.extend_from_slice(&port.to_be_bytes());
            for l in *labels {
                data.push(l.len() as u8);
                data.extend_from_slice(l.as_bytes());
            }
            data.push(0);
            m.extend_from_slice(&(data.len() as u16).to_be_bytes());
            m.extend_from_slice(&data);
        }
        m
    }

    #[test]
    fn srv_answers_are_read_in_priority_then_weight_order() {
        let name = service_name("example.com.", true);
        assert_eq!(name, "_etcd-client-ssl._tcp.example.com");
        assert_eq!(
            service_name("example.com", false),
            "_etcd-client._tcp.example.com"
        );
        let q = query(7, &name).unwrap();
        let m = reply(
            &q,
            0,
            0,
            &[
                (20, 0, 2379, &["c", "example", "com"]),
                (10, 1, 2379, &["b", "example", "com"]),
                (10, 5, 2380, &["a", "example", "com"]),
            ],
        );
        let got = parse(&m, 7).unwrap();
        let targets: Vec<(&str, u16)> = got.iter().map(|s| (s.target.as_str(), s.port)).collect();
        assert_eq!(
            targets,
            [
                ("a.example.com", 2380),
                ("b.example.com", 2379),
                ("c.example.com", 2379)
            ]
        );
        assert_eq!(
            got[0],
            Srv {
                priority: 10,
                weight: 5,
                port: 2380,
                target: "a.example.com".into()
            }
        );
        // NXDOMAIN: none; truncated: ask again over TCP; another id or
        // garbage: an error, never a panic.
        assert_eq!(parse(&reply(&q, 0, 3, &[]), 7).unwrap(), []);
        assert_eq!(parse(&reply(&q, 0x02, 0, &[]), 7), Err(Parse::Truncated));
        assert!(parse(&m, 8).is_err());
        for cut in 0..m.len() {
            let _ = parse(&m[..cut], 7);
        }
        let mut looped = reply(&q, 0, 0, &[(1, 1, 1, &["x"])]);
        let n = looped.len();
        // The target made a pointer to itself.
        looped[n - 3] = 0xc0;
        looped[n - 2] = (n - 3) as u8;
        assert!(parse(&looped, 7).is_err());
        assert!(query(1, "a..b").is_err());
    }

    #[test]
    fn resolv_conf_gives_at_most_three_servers_on_port_53() {
        let conf = "# c\nsearch x\nnameserver 10.0.0.1\nnameserver ::1\nnameserver fe80::1%eth0\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n";
        let v: Vec<String> = nameservers(conf).iter().map(|s| s.to_string()).collect();
        assert_eq!(v, ["10.0.0.1:53", "[::1]:53", "10.0.0.2:53"]);
    }
}

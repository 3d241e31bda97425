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
    for bad in [
        "https://h:1",
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

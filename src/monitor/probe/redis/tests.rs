use super::*;

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

#[test]
fn replies_parse_to_values_and_their_length() {
    let cases: Vec<(&[u8], Value, usize)> = vec![
        (b"+PONG\r\n", text("PONG"), 7),
        (b"+OK\r\nrest", text("OK"), 5),
        (
            b"-NOAUTH Authentication required.\r\n",
            Value::Error("NOAUTH Authentication required.".into()),
            34,
        ),
        (b":42\r\n", Value::Int(42), 5),
        (b"$-1\r\n", Value::Nil, 5),
        (b"*-1\r\n", Value::Nil, 5),
        (b"$0\r\n\r\n", text(""), 6),
        (b"$6\r\nmaster\r\n", text("master"), 12),
        // A bulk string may hold CR LF.
        (b"$4\r\na\r\nb\r\n", text("a\r\nb"), 10),
        // ROLE on a primary with one replica.
        (
            b"*3\r\n$6\r\nmaster\r\n:3129659\r\n*1\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n",
            Value::Array(vec![
                text("master"),
                Value::Int(3_129_659),
                Value::Array(vec![Value::Array(vec![
                    text("127.0.0.1"),
                    text("9001"),
                    text("3129242"),
                ])]),
            ]),
            72,
        ),
        // ROLE on a replica.
        (
            b"*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:9000\r\n$9\r\nconnected\r\n:3167038\r\n",
            Value::Array(vec![
                text("slave"),
                text("127.0.0.1"),
                Value::Int(9000),
                text("connected"),
                Value::Int(3_167_038),
            ]),
            62,
        ),
        (b"*0\r\n", Value::Array(vec![]), 4),
    ];
    for (i, (bytes, want, used)) in cases.into_iter().enumerate() {
        assert_eq!(parse(bytes), Some(Ok((want, used))), "case {i}");
    }
}

#[test]
fn incomplete_replies_wait_for_more() {
    for b in [
        &b""[..],
        b"+PON",
        b"+PONG\r",
        b"$6\r\nmast",
        b"$6\r\nmaster\r",
        b"*2\r\n$1\r\na\r\n",
        // A huge count with little data is incomplete, not an allocation.
        b"*2147483647\r\n:1\r\n",
        b"$2147483647\r\nabc",
    ] {
        assert_eq!(parse(b), None, "{b:?}");
    }
}

#[test]
fn garbage_is_an_error_naming_it() {
    let cases: Vec<(&[u8], &str)> = vec![
        (b"HTTP/1.1 400 Bad Request\r\n", "not a RESP reply"),
        (b":x\r\n", "bad length or integer"),
        (b"$-2\r\n", "bad bulk length -2"),
        (b"*-5\r\n", "bad array length -5"),
        (b"$1\r\nab\r\n", "without its line end"),
        (b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", "nested too deep"),
        (b"*1\r\n?\r\n", "not a RESP reply"),
    ];
    for (b, want) in cases {
        match parse(b) {
            Some(Err(e)) => assert!(e.contains(want), "{b:?}: {e}"),
            other => panic!("{b:?}: {other:?}"),
        }
    }
}

#[test]
fn commands_are_resp_arrays_of_bulk_strings() {
    assert_eq!(encode(&[b"PING"]), b"*1\r\n$4\r\nPING\r\n");
    assert_eq!(
        encode(&[b"AUTH", b"p:w d"]),
        b"*2\r\n$4\r\nAUTH\r\n$5\r\np:w d\r\n"
    );
}

//! HTTP reply verdicts.

use super::*;

const OK: &[(u16, u16)] = &[(200, 399)];
type Case<'a> = (&'a [u8], Option<&'a [u8]>, Result<(), &'a str>);

#[test]
fn status_and_body_verdicts() {
    let cases: &[Case] = &[
        (b"HTTP/1.1 200 OK\r\n\r\nhello", None, Ok(())),
        (b"HTTP/1.0 302 Found\r\n\r\n", None, Ok(())),
        (
            b"HTTP/1.1 503 Service Unavailable\r\n\r\n",
            None,
            Err("HTTP 503"),
        ),
        (
            b"HTTP/1.1 200 OK\r\n\r\nMySQL is down",
            Some(b"is running"),
            Err("HTTP 200 body mismatch"),
        ),
        (
            b"HTTP/1.1 200 OK\r\nX: is running\r\n\r\nnope",
            Some(b"is running"),
            Err("HTTP 200 body mismatch"),
        ),
        (
            b"HTTP/1.1 200 OK\r\n\r\nMySQL is running",
            Some(b"is running"),
            Ok(()),
        ),
        (b"", None, Err("empty reply")),
        (b"HTTP/1.1 20", None, Err("short reply \"HTTP/1.1 20\"")),
        (
            b"SSH-2.0-OpenSSH\r\n",
            None,
            Err("bad status line \"SSH-2.0-OpenSSH\\r\""),
        ),
        (
            b"HTTP/1.1 2000 OK\r\n",
            None,
            Err("bad status line \"HTTP/1.1 2000 OK\\r\""),
        ),
        (b"\x1b[2J\n", None, Err("bad status line \"\\x1b[2J\"")),
    ];
    for (reply, body, want) in cases {
        let got = check_reply(reply, OK, *body);
        assert_eq!(got, want.map_err(String::from), "{}", escape(reply));
    }
    assert_eq!(
        check_reply(b"HTTP/1.1 404 x\r\n\r\n", &[(404, 404)], None),
        Ok(())
    );
}

#[test]
fn reply_is_complete_without_waiting_for_eof() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
    assert!(!reply_complete(b"HTTP/1.1 200 OK\r\n", None));
    assert!(reply_complete(head, None));
    assert!(reply_complete(b"HTTP/1.0 200 OK\n\n", None));
    assert!(!reply_complete(head, Some(b"up")));
    let up = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nis up";
    assert!(reply_complete(up, Some(b"up")));
    let down = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\ndown";
    assert!(reply_complete(down, Some(b"up")));
    assert!(!reply_complete(b"HTTP/1.1 200 OK\r\n\r\ndown", Some(b"up")));
}

#[test]
fn a_header_that_never_ends_fails_at_the_cap() {
    let mut endless = b"HTTP/1.1 200 OK\r\n".to_vec();
    while endless.len() < MAX_REPLY {
        endless.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaa\r\n");
    }
    endless.truncate(MAX_REPLY);
    let want = Err(format!(
        "reply header not complete within {MAX_REPLY} bytes"
    ));
    assert!(!reply_complete(&endless, None));
    assert_eq!(check_reply(&endless, OK, None), want);
    // No newline at all within the cap: the same.
    assert_eq!(check_reply(&vec![b'H'; MAX_REPLY], OK, None), want);
    // A complete header at the cap is judged normally.
    let mut full = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
    full.resize(MAX_REPLY, b'x');
    assert_eq!(check_reply(&full, OK, None), Ok(()));
}

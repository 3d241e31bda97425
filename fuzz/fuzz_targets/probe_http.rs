//! The HTTP check's reply parsing: status line, completeness (headers,
//! `Content-Length`) and the verdict. The first byte picks the expected
//! status ranges and whether a body text is wanted; the rest is the reply.
#![no_main]

use balance::parsers::probe::{MAX_REPLY, http};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, reply)) = data.split_first() else {
        return;
    };
    let reply = reply.get(..MAX_REPLY).unwrap_or(reply);
    let expect: &[(u16, u16)] = match sel & 3 {
        0 => &[(200, 399)],
        1 => &[(200, 200)],
        2 => &[(200, 299), (404, 404)],
        _ => &[],
    };
    let body: Option<&[u8]> = match sel >> 2 & 3 {
        0 => None,
        1 => Some(b"OK"),
        2 => Some(b"\r\n"),
        _ => Some(b""),
    };
    let _ = http::parse_status_line(reply);
    let _ = http::reply_complete(reply, body);
    let _ = http::check_reply(reply, expect, body);
});

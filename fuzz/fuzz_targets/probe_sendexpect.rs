//! The send/expect check's verdict on a reply. The first byte is the length
//! of the expected text (taken from the input, so matches happen), its low
//! bit also says whether the backend closed.
#![no_main]

use balance::parsers::probe::{MAX_REPLY, sendexpect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(sel >> 1).min(rest.len());
    let (expect, reply) = rest.split_at(n);
    let reply = reply.get(..MAX_REPLY).unwrap_or(reply);
    let _ = sendexpect::judge(reply, expect, sel & 1 == 1);
});

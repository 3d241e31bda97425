//! The Redis check's RESP reply parser on any bytes (at most what the
//! probe reads): a value, "incomplete" or an error, never a panic, and a
//! value never claims more bytes than it was given.
#![no_main]

use balance::parsers::probe::{MAX_REPLY, redis};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let data = data.get(..MAX_REPLY).unwrap_or(data);
    if let Some(Ok((_, used))) = redis::parse(data) {
        assert!(used <= data.len());
    }
});

//! The MySQL check's packet parsing: the greeting (protocol v10, or an
//! error packet) and error packets met while logging in.
#![no_main]

use balance::parsers::probe::mysql;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mysql::parse_greeting(data);
    let _ = mysql::error_reason(data);
});

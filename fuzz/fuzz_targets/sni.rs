//! The TLS ClientHello peek: any bytes give a name, "no SNI" or a need for
//! more bytes than were given (so a caller waiting for more always ends).
#![no_main]

use balance::parsers::sni::{self, Peek};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match sni::parse(data) {
        Peek::NeedMore(n) => assert!(n > data.len()),
        Peek::Name(name) => assert!(!name.as_str().is_empty()),
        Peek::NoSni => {}
    }
});

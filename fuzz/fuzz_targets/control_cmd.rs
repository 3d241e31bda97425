//! One control-socket line, as the server hands it to the parser (valid
//! UTF-8 without its newline).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        if let Ok(cmd) = balance::parsers::control_cmd::parse(line) {
            let _ = (cmd.is_change(), cmd.persists());
        }
    }
});

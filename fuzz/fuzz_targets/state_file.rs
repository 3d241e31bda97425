//! The `--state-file` loader: JSON text → validated per-listener state.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = balance::parsers::state_file::parse_text(text);
    }
});

//! The YAML config file, from text to the validated model (what `--config`
//! and `--check` run after reading the file).
#![no_main]

use balance::parsers::config_file::{self as file, Overlay};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `load` refuses larger files before parsing.
    if data.len() as u64 > file::MAX_FILE_BYTES {
        return;
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = file::parse(text, &Overlay::default());
    }
});

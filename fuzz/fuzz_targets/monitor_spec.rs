//! The `-m` health-check spec (also the YAML `monitor:` string form).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(spec) = std::str::from_utf8(data) {
        let _ = balance::parsers::monitor_spec::parse(spec);
    }
});

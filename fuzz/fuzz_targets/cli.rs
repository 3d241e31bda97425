//! balance's argv (stage 1 clap, stage 2 resolve, the listener builder):
//! the input is the argument list, one argument per line.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<&str> = text.split('\n').collect();
    // `-b`/`-B NAME` resolve a host name through the system resolver: slow
    // and not hermetic, so argument lists that may carry one are skipped.
    let resolves = args.iter().any(|a| {
        a.starts_with('-') && !a.starts_with("--") && (a.contains('b') || a.contains('B'))
    });
    if resolves {
        return;
    }
    let argv = std::iter::once("balance").chain(args.iter().copied());
    let _ = balance::parse_args(argv);
});

//! Values read from etcd (verdicts, the prober key, operator keys, channel
//! registrations, switchover records and acknowledgements): any bytes give
//! a value or an error, never a panic.
#![no_main]

use balance::parsers::fleet_values::{Ack, Leader, Op, Record, Reg, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    // Keys come from etcd too: the first line is the key, the rest the value.
    let (key, value) = match rest.iter().position(|&b| b == b'\n') {
        Some(i) => (String::from_utf8_lossy(&rest[..i]).into_owned(), &rest[i + 1..]),
        None => (String::new(), rest),
    };
    match sel % 6 {
        0 => drop(Verdict::decode(value)),
        1 => drop(Leader::decode(value)),
        2 => drop(Op::decode(&key, value)),
        3 => drop(Reg::decode(&key, value)),
        4 => drop(Record::decode(value)),
        _ => drop(Ack::decode(value)),
    }
});

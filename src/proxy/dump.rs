//! `-p`: print relayed data to stdout in an always-readable escaped form.
//! Called by the buffered pump for each chunk; holds no state.

use std::io::Write;

use super::half::Dir;

/// Escape bytes so a terminal never sees control sequences from the wire.
pub(crate) fn escape(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len());
    for &b in data {
        match b {
            b'\n' => out.push_str("\\n\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

pub(crate) fn print(dir: Dir, data: &[u8]) {
    let arrow = match dir {
        Dir::ToBackend => "-> ",
        Dir::ToClient => "<- ",
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{arrow}{} bytes", data.len());
    let _ = writeln!(out, "{}", escape(data));
    let _ = out.flush();
}

#[cfg(test)]
mod tests;

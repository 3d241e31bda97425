//! Scraping `--metrics`: the body of `GET /metrics`, one sample's value,
//! and `promtool check metrics` on a scrape when promtool is installed.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// The body of `GET /metrics` on 127.0.0.1:`port` (must answer 200).
pub fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.0 200"), "{out}");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

/// The value of the sample `name{labels}` (labels as written, in order;
/// a channel's `name` label need not be given).
pub fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let want = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| {
            let unnamed = without_name_label(l).is_some_and(|u| u.starts_with(&want));
            (l.starts_with(&want) || unnamed).then(|| l.rsplit_once(' ').map_or("", |(_, v)| v))
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {want}in\n{text}"))
}

/// A sample line with its channel `name="..."` label taken out.
fn without_name_label(line: &str) -> Option<String> {
    let start = line.find(",name=\"")?;
    let rest = &line[start + 7..];
    let end = rest.find('"')?;
    Some(format!("{}{}", &line[..start], &rest[end + 1..]))
}

/// promtool's path, if the `prometheus` package is installed.
pub fn promtool() -> Option<&'static str> {
    ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
}

/// `promtool check metrics` on `text`: `Some(output)` when it complains,
/// `None` when it is clean or promtool is not installed (under CI a
/// missing promtool fails: see [`super::skip_without`]).
pub fn promtool_problems(text: &str) -> Option<String> {
    let Some(tool) = promtool() else {
        super::skip_without("promtool (Debian package prometheus)");
        return None;
    };
    let mut child = Command::new(tool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (!out.status.success() || !said.trim().is_empty()).then_some(said)
}

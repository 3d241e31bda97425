//! A [`Record`] → its line. `tcplog` is HAProxy's `option tcplog`
//! (configuration manual 8.2.2):
//!
//! ```text
//! %ci:%cp [%t] %ft %b/%s %Tw/%Tc/%Tt %B %ts %ac/%fc/%bc/%sc/%rc %sq/%bq
//! ```
//!
//! with the frontend and backend both the listener's name and the server
//! the channel's name. JSON carries the same fields under HAProxy's field
//! names, plus what only balance knows (a routed connection's key among
//! it: `tcplog` has no field for it, and a trailing one would break the
//! parsers of HAProxy's layout). Dates are local time, as HAProxy's `%t`.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::Record;

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// The server name of a connection that reached no channel.
const NOSRV: &str = "<NOSRV>";

/// A moment broken down in local time, with its milliseconds.
pub(super) struct Stamp {
    pub(crate) t: crate::sys::LocalTime,
    pub(crate) millis: u32,
}

impl Stamp {
    pub(super) fn of(at: SystemTime) -> Stamp {
        let d = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let t = crate::sys::local_time(secs).unwrap_or_else(|| utc(secs));
        Stamp {
            t,
            millis: d.subsec_millis(),
        }
    }

    /// Month abbreviation (`Jan`).
    pub(super) fn month_name(&self) -> &'static str {
        let i = self.t.month.saturating_sub(1) as usize;
        MONTHS.get(i).copied().unwrap_or("Jan")
    }

    /// HAProxy's `%t`: `07/Dec/2026:02:00:31.123`.
    fn haproxy(&self, out: &mut String) {
        let t = &self.t;
        let _ = write!(
            out,
            "{:02}/{}/{:04}:{:02}:{:02}:{:02}.{:03}",
            t.day,
            self.month_name(),
            t.year,
            t.hour,
            t.minute,
            t.second,
            self.millis
        );
    }

    /// RFC 3339 with the local offset: `2026-12-07T02:00:31.123+01:00`.
    fn rfc3339(&self) -> String {
        let t = &self.t;
        let off = t.utc_offset;
        let sign = if off < 0 { '-' } else { '+' };
        let off = off.unsigned_abs();
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{sign}{:02}:{:02}",
            t.year,
            t.month,
            t.day,
            t.hour,
            t.minute,
            t.second,
            self.millis,
            off / 3600,
            off % 3600 / 60
        )
    }
}

/// UTC, when the local time zone cannot be had (civil-from-days).
fn utc(secs: i64) -> crate::sys::LocalTime {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    crate::sys::LocalTime {
        year: i32::try_from(year).unwrap_or(1970),
        month: month as u32,
        day: day as u32,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
        utc_offset: 0,
    }
}

fn server_name(r: &Record) -> &str {
    match &r.server {
        Some(s) => s.channel.name(),
        None => NOSRV,
    }
}

/// One `tcplog` line (no newline).
pub(crate) fn tcplog_line(out: &mut String, listener: &str, r: &Record) {
    let _ = write!(out, "{}:{} [", r.client.ip(), r.client.port());
    Stamp::of(r.accepted).haproxy(out);
    let tc = r
        .connect_ms
        .map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX));
    let _ = write!(
        out,
        "] {listener} {listener}/{} {}/{tc}/{} {} {} {}/{}/{}/{}/{} 0/{}",
        server_name(r),
        r.wait_ms,
        r.total_ms,
        r.bytes_read,
        r.termination.code(),
        r.actconn,
        r.feconn,
        r.beconn,
        r.srv_conn,
        r.retries,
        r.backend_queue,
    );
}

/// The JSON object: HAProxy's field names, and balance's additions.
#[derive(Serialize)]
struct JsonLine<'a> {
    accept_date: String,
    client_ip: String,
    client_port: u16,
    frontend_name: &'a str,
    backend_name: &'a str,
    server_name: &'a str,
    server_target: Option<String>,
    server_addr: Option<String>,
    group: Option<&'a str>,
    group_index: Option<usize>,
    #[serde(rename = "Tw")]
    tw: u64,
    #[serde(rename = "Tc")]
    tc: i64,
    #[serde(rename = "Tt")]
    tt: u64,
    first_byte_ms: Option<u64>,
    bytes_read: u64,
    bytes_uploaded: u64,
    termination_state: &'static str,
    actconn: u64,
    feconn: u64,
    beconn: u64,
    srv_conn: u64,
    retries: u32,
    srv_queue: u64,
    backend_queue: u64,
    race: Option<&'static str>,
    /// Only on a routed listener's lines.
    #[serde(flatten)]
    route: Option<RouteJson<'a>>,
}

/// How `route:` decided: the key (`null`: the client gave none), where
/// the decision came from, the group picked (or `reject`).
#[derive(Serialize)]
struct RouteJson<'a> {
    route_key: Option<&'a str>,
    route_source: &'static str,
    route_target: &'a str,
}

/// One JSON line (no newline).
pub(crate) fn json_line(out: &mut String, listener: &str, r: &Record) {
    let line = JsonLine {
        accept_date: Stamp::of(r.accepted).rfc3339(),
        client_ip: r.client.ip().to_string(),
        client_port: r.client.port(),
        frontend_name: listener,
        backend_name: listener,
        server_name: server_name(r),
        server_target: r.server.as_ref().map(|s| s.channel.target().to_string()),
        server_addr: r
            .server
            .as_ref()
            .and_then(|s| s.addr)
            .map(|a| a.to_string()),
        group: r
            .server
            .as_ref()
            .and_then(|s| s.group.as_deref())
            .map(|g| g.name()),
        group_index: r.server.as_ref().map(|s| s.group_index),
        tw: r.wait_ms,
        tc: r
            .connect_ms
            .map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX)),
        tt: r.total_ms,
        first_byte_ms: r.first_byte_ms,
        bytes_read: r.bytes_read,
        bytes_uploaded: r.bytes_uploaded,
        termination_state: r.termination.code(),
        actconn: r.actconn,
        feconn: r.feconn,
        beconn: r.beconn,
        srv_conn: r.srv_conn,
        retries: r.retries,
        srv_queue: 0,
        backend_queue: r.backend_queue,
        race: r.race.word(),
        route: r.route.as_deref().map(|n| RouteJson {
            route_key: n.key.as_deref(),
            route_source: n.source,
            route_target: &n.target,
        }),
    };
    // Plain fields and strings: serializing cannot fail.
    if let Ok(s) = serde_json::to_string(&line) {
        out.push_str(&s);
    }
}

#[cfg(test)]
pub(super) fn utc_for_tests(secs: i64) -> crate::sys::LocalTime {
    utc(secs)
}

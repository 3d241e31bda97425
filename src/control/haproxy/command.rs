//! One HAProxy runtime command (a piece of a line between `;`) → a
//! [`Cmd`], or the error text HAProxy answers. Pure: names are resolved
//! when the command runs.

use std::time::Duration;

use crate::operator::WeightSet;
use crate::pool::Admin;

/// `backend/server` as written: a name or `#ID` on each side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SrvRef {
    pub(crate) backend: String,
    pub(crate) server: String,
}

/// A change to one server, through the operator model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Admin(Admin),
    Weight(WeightSet),
    Health(bool),
    /// `shutdown sessions server`: end its live sessions now.
    Shutdown,
}

/// What `show stat` dumps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatFilter {
    pub(crate) typed: bool,
    /// `up`: only servers that are up (and the frontends and backends).
    pub(crate) up: bool,
    /// `no-maint`: no server in maintenance.
    pub(crate) no_maint: bool,
    /// `<iid>`: one proxy (-1: all).
    pub(crate) iid: i64,
    /// `<type>`: 1 frontends, 2 backends, 4 servers, ORed (-1: all).
    pub(crate) kinds: i64,
    /// `<sid>`: one server (-1: all).
    pub(crate) sid: i64,
}

impl Default for StatFilter {
    fn default() -> StatFilter {
        StatFilter {
            typed: false,
            up: false,
            no_maint: false,
            iid: -1,
            kinds: -1,
            sid: -1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// An empty command (nothing between two `;`).
    Nop,
    Help(Vec<String>),
    Prompt,
    Quit,
    SetTimeoutCli(Duration),
    ShowInfo {
        typed: bool,
    },
    ShowStat(StatFilter),
    ShowServersState(Option<String>),
    ShowBackend,
    ShowVersion,
    GetWeight(SrvRef),
    Set(SrvRef, Change),
}

/// The largest weight, for the error text.
const MAX: u32 = crate::operator::MAX_WEIGHT;

/// Parse one command (words separated by blanks).
pub(crate) fn parse(text: &str) -> Result<Cmd, String> {
    let w: Vec<&str> = text.split_whitespace().collect();
    let srv = |i: usize| srv_ref(w.get(i).copied());
    Ok(match w.as_slice() {
        [] => Cmd::Nop,
        ["help", rest @ ..] => Cmd::Help(rest.iter().map(|s| s.to_string()).collect()),
        ["prompt", ..] => Cmd::Prompt,
        ["quit", ..] => Cmd::Quit,
        ["set", "timeout", "cli", rest @ ..] => {
            let t = rest.first().copied().unwrap_or("");
            Cmd::SetTimeoutCli(timeout(t).ok_or("Invalid timeout value.")?)
        }
        ["show", "info", rest @ ..] => Cmd::ShowInfo {
            typed: rest.contains(&"typed"),
        },
        ["show", "stat", rest @ ..] => Cmd::ShowStat(stat_filter(rest)),
        ["show", "servers", "state", rest @ ..] => {
            Cmd::ShowServersState(rest.first().map(|s| s.to_string()))
        }
        ["show", "backend", ..] => Cmd::ShowBackend,
        ["show", "version", ..] => Cmd::ShowVersion,
        ["get", "weight", ..] => Cmd::GetWeight(srv(2)?),
        ["enable", "server", ..] => Cmd::Set(srv(2)?, Change::Admin(Admin::Enabled)),
        ["disable", "server", ..] => Cmd::Set(srv(2)?, Change::Admin(Admin::Disabled)),
        ["enable", "health", ..] => Cmd::Set(srv(2)?, Change::Health(true)),
        ["disable", "health", ..] => Cmd::Set(srv(2)?, Change::Health(false)),
        ["shutdown", "sessions", "server", ..] => Cmd::Set(srv(3)?, Change::Shutdown),
        ["set", "weight", ..] => Cmd::Set(srv(2)?, Change::Weight(weight(w.get(3).copied())?)),
        ["set", "server", ..] => {
            let r = srv(2)?;
            match w.get(3..).unwrap_or_default() {
                ["state", rest @ ..] => {
                    let a = match rest.first().copied() {
                        Some("ready") => Admin::Enabled,
                        Some("drain") => Admin::Drain,
                        Some("maint") => Admin::Disabled,
                        _ => {
                            return Err(
                                "'set server <srv> state' expects 'ready', 'drain' and 'maint'."
                                    .into(),
                            );
                        }
                    };
                    Cmd::Set(r, Change::Admin(a))
                }
                ["weight", rest @ ..] => {
                    Cmd::Set(r, Change::Weight(weight(rest.first().copied())?))
                }
                _ => return Err(SET_SERVER_USAGE.into()),
            }
        }
        _ => return Err(unknown(&w)),
    })
}

const SET_SERVER_USAGE: &str = "usage: set server <backend>/<server> state | weight";

/// `B/S`, or HAProxy's complaint.
fn srv_ref(word: Option<&str>) -> Result<SrvRef, String> {
    match word.and_then(|w| w.split_once('/')) {
        Some((b, s)) if !b.is_empty() && !s.is_empty() => Ok(SrvRef {
            backend: b.to_string(),
            server: s.to_string(),
        }),
        _ => Err("Require 'backend/server'.".into()),
    }
}

/// `N` or `N%` (HAProxy's texts for what is neither).
fn weight(word: Option<&str>) -> Result<WeightSet, String> {
    let Some(w) = word else {
        return Err("Require <weight> or <weight%>.".into());
    };
    let (digits, pct) = match w.strip_suffix('%') {
        Some(d) => (d, true),
        None => (w, false),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(if digits.starts_with('-') {
            if pct {
                "Relative weight must be positive.".into()
            } else {
                format!("Absolute weight can only be between 0 and {MAX} inclusive.")
            }
        } else {
            "Empty weight string empty or preceded by garbage".into()
        });
    }
    let n: u32 = digits.parse().unwrap_or(u32::MAX);
    if pct {
        Ok(WeightSet::Percent(n))
    } else if n > MAX {
        Err(format!(
            "Absolute weight can only be between 0 and {MAX} inclusive."
        ))
    } else {
        Ok(WeightSet::Abs(n))
    }
}

/// `set timeout cli`: seconds, or a number with a unit (`ms`, `s`, `m`,
/// `h`, `d`) as HAProxy takes it.
fn timeout(s: &str) -> Option<Duration> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: u64 = n.parse().ok()?;
    let ms = match unit {
        "" | "s" => n.checked_mul(1000)?,
        "ms" => n,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    (ms > 0).then(|| Duration::from_millis(ms))
}

fn stat_filter(words: &[&str]) -> StatFilter {
    let mut f = StatFilter::default();
    let mut nums = Vec::new();
    for w in words {
        match *w {
            "typed" => f.typed = true,
            "up" => f.up = true,
            "no-maint" => f.no_maint = true,
            n => {
                if let Ok(n) = n.parse::<i64>() {
                    nums.push(n);
                }
            }
        }
    }
    // HAProxy takes the three numbers together or not at all.
    if let [iid, kinds, sid] = nums.as_slice() {
        (f.iid, f.kinds, f.sid) = (*iid, *kinds, *sid);
    }
    f
}

/// The commands that work here, in HAProxy's help layout.
pub(crate) const HELP: &[(&str, &str)] = &[
    ("disable health <bk>/<srv>", "disable health checks"),
    (
        "disable server <bk>/<srv>",
        "disable a server for maintenance (use 'set server' instead)",
    ),
    ("enable health <bk>/<srv>", "enable health checks"),
    (
        "enable server <bk>/<srv>",
        "enable a disabled server (use 'set server' instead)",
    ),
    ("get weight <bk>/<srv>", "report a server's current weight"),
    (
        "set server <bk>/<srv> [opts]",
        "change a server's state (ready|drain|maint) or weight",
    ),
    (
        "set timeout cli <delay>",
        "change this session's idle timeout (at most 10s)",
    ),
    (
        "set weight <bk>/<srv> (<w>|<w>%)",
        "change a server's weight (deprecated)",
    ),
    (
        "show backend",
        "list backends in the current running config",
    ),
    (
        "show info [typed]",
        "report information about the running process",
    ),
    (
        "show servers state [<backend>]",
        "dump volatile server information (all or for a single backend)",
    ),
    (
        "show stat [no-maint|typed|up]*",
        "report counters for each proxy and server",
    ),
    ("show version", "show version of the current process"),
    (
        "shutdown sessions server <bk>/<srv>",
        "kill sessions on a server",
    ),
    ("help [<command>]", "list matching or all commands"),
    ("prompt", "toggle interactive mode with prompt"),
    ("quit", "disconnect"),
];

fn help_line(usage: &str, what: &str) -> String {
    format!("  {usage:<40}: {what}")
}

/// `help [WORDS]`: every command, or those starting with WORDS.
pub(crate) fn help(words: &[String]) -> String {
    let mut out = String::from("The following commands are valid at this level:\n");
    for (u, w) in matching(words.iter().map(String::as_str)) {
        out.push_str(&help_line(u, w));
        out.push('\n');
    }
    out
}

/// The entries whose first words are `words` (all of them for none or no
/// match).
fn matching<'a>(words: impl Iterator<Item = &'a str> + Clone) -> Vec<(&'static str, &'static str)> {
    let hit = |usage: &str| {
        let mut u = usage.split_whitespace();
        words.clone().all(|w| u.next() == Some(w))
    };
    let found: Vec<_> = HELP
        .iter()
        .copied()
        .filter(|(u, _)| hit(u) && !matches!(*u, "help [<command>]" | "prompt" | "quit"))
        .collect();
    if found.is_empty() {
        HELP.to_vec()
    } else {
        found
            .into_iter()
            .chain(
                HELP.iter()
                    .copied()
                    .filter(|(u, _)| matches!(*u, "help [<command>]" | "prompt" | "quit")),
            )
            .collect()
    }
}

/// HAProxy's answer to a command it does not know: the commands that start
/// with its first word (or all), then help, prompt and quit.
fn unknown(words: &[&str]) -> String {
    let mut out =
        String::from("Unknown command, but maybe one of the following ones is a better match:");
    for (u, w) in matching(words.iter().take(1).copied()) {
        out.push('\n');
        out.push_str(&help_line(u, w));
    }
    out
}

#[cfg(test)]
mod tests;

//! The control language: one line → one [`Command`], or one error line.
//!
//! Words and meanings are balance.fm's. Like balance.fm, its words may be
//! abbreviated to any prefix, resolved in balance.fm's order (`s` is `show`,
//! `h` is `help`, `m` is `maxc`), except `kill`, which must be spelled out.
//! Extensions (`weight`, `drain`, `failback`, `spin`, `state`, `monitor`)
//! are exact words.

use std::time::Duration;

use crate::config::Host;
use crate::config::services::parse_port;

/// At most this many words on a line (the command included).
pub const MAX_ARGS: usize = 16;

/// How a command names a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChanRef {
    /// An index in the session's current group.
    Index(usize),
    /// `G:C`.
    At(usize, usize),
    /// `host:port` as shown by `show` (`[v6]:port` for IPv6).
    Addr(Host, u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MonitorOp {
    Enable,
    Disable,
    Show,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An empty line: nothing to do.
    Nop,
    Help,
    Show,
    ShowJson,
    Group(usize),
    Enable(ChanRef),
    Disable(ChanRef),
    Drain(ChanRef),
    Assign(ChanRef, Host, u16),
    Create(Host, u16),
    Maxc(ChanRef, u32),
    Weight(ChanRef, u32),
    Hash,
    Rr,
    Reset(ChanRef),
    Kill,
    Version,
    Monitor(MonitorOp),
    MrtgBytes(usize, usize),
    MrtgConns(usize, usize),
    Failback,
    Spin(Duration),
    StateSave,
    Reload,
    Quit,
}

impl Command {
    /// Whether the command changes anything (an admin command, logged at
    /// info with the peer's uid); the others only read.
    pub fn is_change(&self) -> bool {
        self.persists()
            || matches!(
                self,
                Command::Reset(_)
                    | Command::Kill
                    | Command::Failback
                    | Command::Spin(_)
                    | Command::Monitor(MonitorOp::Enable | MonitorOp::Disable)
                    | Command::StateSave
                    | Command::Reload
            )
    }

    /// Whether the change is operator state kept in the state file.
    pub fn persists(&self) -> bool {
        matches!(
            self,
            Command::Enable(_)
                | Command::Disable(_)
                | Command::Drain(_)
                | Command::Assign(..)
                | Command::Create(..)
                | Command::Maxc(..)
                | Command::Weight(..)
                | Command::Hash
                | Command::Rr
        )
    }
}

/// balance.fm's words in balance.fm's matching order (prefixes allowed).
const FM_WORDS: &[&str] = &[
    "quit",
    "show",
    "help",
    "?",
    "disable",
    "group",
    "reset",
    "enable",
    "create",
    "assign",
    "maxc",
    "mrtg-bytes",
    "mrtg-conns",
    "version",
    "hash",
    "rr",
];
/// Exact words only.
const EXACT_WORDS: &[&str] = &[
    "kill", "weight", "drain", "failback", "spin", "state", "monitor", "reload",
];

/// Largest group and channel numbers accepted (far beyond any real pool).
const MAX_INDEX: usize = 1_000_000;
/// Largest weight accepted.
pub const MAX_WEIGHT: u32 = 10_000;

/// Quote a user token for an error line: control characters escaped, long
/// tokens cut, so one bad input gives one short printable line.
pub fn quote(tok: &str) -> String {
    let mut s: String = tok.chars().take(64).flat_map(char::escape_debug).collect();
    if tok.chars().count() > 64 {
        s.push_str("...");
    }
    format!("\"{s}\"")
}

fn word(tok: &str) -> Option<&'static str> {
    if let Some(w) = EXACT_WORDS.iter().find(|w| **w == tok) {
        return Some(w);
    }
    FM_WORDS.iter().find(|w| w.starts_with(tok)).copied()
}

/// Parse one line (without its newline).
pub fn parse(line: &str) -> Result<Command, String> {
    let toks: Vec<&str> = line.split_ascii_whitespace().collect();
    if toks.len() > MAX_ARGS {
        return Err(format!(
            "syntax error: too many arguments ({}; at most {MAX_ARGS})",
            toks.len()
        ));
    }
    let Some((&first, args)) = toks.split_first() else {
        return Ok(Command::Nop);
    };
    let Some(w) = word(first) else {
        return Err(format!(
            "syntax error: unknown command {} (try help)",
            quote(first)
        ));
    };
    let n = |k: usize| -> Result<(), String> { arity(w, args, k) };
    let cmd = match w {
        "quit" => {
            n(0)?;
            Command::Quit
        }
        "show" => match args {
            [] => Command::Show,
            ["json"] => Command::ShowJson,
            [x, ..] => return Err(format!("syntax error: unexpected {} after show", quote(x))),
        },
        "help" | "?" => {
            n(0)?;
            Command::Help
        }
        "kill" => {
            n(0)?;
            Command::Kill
        }
        "version" => {
            n(0)?;
            Command::Version
        }
        "hash" => {
            n(0)?;
            Command::Hash
        }
        "rr" => {
            n(0)?;
            Command::Rr
        }
        "failback" => {
            n(0)?;
            Command::Failback
        }
        "reload" => {
            n(0)?;
            Command::Reload
        }
        "group" => {
            let [g] = take(w, args)?;
            Command::Group(index("group", g)?)
        }
        "disable" | "enable" | "drain" | "reset" => {
            let [c] = take(w, args)?;
            let c = chan_ref(c)?;
            match w {
                "disable" => Command::Disable(c),
                "enable" => Command::Enable(c),
                "drain" => Command::Drain(c),
                _ => Command::Reset(c),
            }
        }
        "maxc" | "weight" => {
            let [c, v] = take(w, args)?;
            let c = chan_ref(c)?;
            let num = v
                .parse::<u32>()
                .map_err(|_| format!("bad {w} {}: not a number", quote(v)))?;
            if w == "maxc" {
                Command::Maxc(c, num)
            } else if num > MAX_WEIGHT {
                return Err(format!("bad weight {}: use 0-{MAX_WEIGHT}", quote(v)));
            } else {
                Command::Weight(c, num)
            }
        }
        "create" => {
            let [h, p] = take(w, args)?;
            Command::Create(host(h)?, port(p)?)
        }
        "assign" => {
            let [c, h, p] = take(w, args)?;
            Command::Assign(chan_ref(c)?, host(h)?, port(p)?)
        }
        "mrtg-bytes" | "mrtg-conns" => {
            let [g, c] = take(w, args)?;
            let g = index("group", g)?;
            let c = index("channel", c)?;
            if w == "mrtg-bytes" {
                Command::MrtgBytes(g, c)
            } else {
                Command::MrtgConns(g, c)
            }
        }
        "monitor" => {
            let [op] = take(w, args)?;
            Command::Monitor(match op {
                "enable" => MonitorOp::Enable,
                "disable" => MonitorOp::Disable,
                "show" => MonitorOp::Show,
                x => {
                    return Err(format!(
                        "syntax error: monitor {}: use enable, disable or show",
                        quote(x)
                    ));
                }
            })
        }
        "spin" => {
            let [d] = take(w, args)?;
            let d = crate::config::parse_duration(d)
                .map_err(|e| format!("bad spin duration {}: {e}", quote(d)))?;
            Command::Spin(d)
        }
        "state" => {
            let [what] = take(w, args)?;
            if what != "save" {
                return Err(format!(
                    "syntax error: state {}: use state save",
                    quote(what)
                ));
            }
            Command::StateSave
        }
        _ => return Err(format!("syntax error: unknown command {}", quote(first))),
    };
    Ok(cmd)
}

/// Exactly `k` arguments, or the error naming what is missing or extra.
fn arity(w: &str, args: &[&str], k: usize) -> Result<(), String> {
    match args.get(k) {
        _ if args.len() < k => Err(format!("syntax error: {w} needs {}", usage(w))),
        Some(extra) => Err(format!(
            "syntax error: unexpected {} after {w} (usage: {w} {})",
            quote(extra),
            usage(w)
        )),
        None => Ok(()),
    }
}

/// Exactly `K` arguments, as an array.
fn take<'a, const K: usize>(w: &str, args: &[&'a str]) -> Result<[&'a str; K], String> {
    arity(w, args, K)?;
    <[&str; K]>::try_from(args).map_err(|_| format!("syntax error: {w} needs {}", usage(w)))
}

fn usage(w: &str) -> &'static str {
    match w {
        "group" => "<group>",
        "disable" | "enable" | "drain" | "reset" => "<channel>",
        "maxc" => "<channel> <maxc>",
        "weight" => "<channel> <weight>",
        "create" => "<host> <port>",
        "assign" => "<channel> <host> <port>",
        "mrtg-bytes" | "mrtg-conns" => "<group> <channel>",
        "monitor" => "enable|disable|show",
        "spin" => "<duration>",
        "state" => "save",
        _ => "no arguments",
    }
}

fn index(what: &str, s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(i) if s.bytes().all(|b| b.is_ascii_digit()) && i <= MAX_INDEX => Ok(i),
        _ => Err(format!("bad {what} {}: not a number", quote(s))),
    }
}

/// `C`, `G:C`, `host:port` or `[v6]:port`.
pub fn chan_ref(s: &str) -> Result<ChanRef, String> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(ChanRef::Index(index("channel", s)?));
    }
    let bad = || {
        format!(
            "bad channel {}: use <channel>, <group>:<channel> or <host>:<port>",
            quote(s)
        )
    };
    let (h, p) = s.rsplit_once(':').ok_or_else(bad)?;
    if !h.is_empty() && h.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(ChanRef::At(index("group", h)?, index("channel", p)?));
    }
    let host = host(h).map_err(|_| bad())?;
    let port = parse_port(p).map_err(|_| bad())?;
    Ok(ChanRef::Addr(host, port))
}

/// A host name or IP literal (IPv6 bare or in brackets).
pub fn host(s: &str) -> Result<Host, String> {
    crate::config::grammar::host_literal(s).ok_or_else(|| format!("invalid address {}", quote(s)))
}

fn port(s: &str) -> Result<u16, String> {
    parse_port(s).map_err(|e| format!("bad port {}: {e}", quote(s)))
}

/// The `help` text: balance.fm's lines, then the extensions.
pub const HELP: &str = "\
available commands:
  create <host> <port>           creates a channel in the current group
  assign <channel> <host> <port> reassigns a channel in the current group
  disable <channel>              disables specified channel in current group
  enable <channel>               enables channel in current group
  group <group>                  changes current group to <group>
  hash                           sets distribution scheme of current group to Hash
  help                           prints this message
  kill                           kills master process and quits interactive mode
  maxc <channel> <maxc>          specifies new maxc for channel of current group
  mrtg-bytes <grp> <ch>          print bytes in/out in MRTG format
  mrtg-conns <grp> <ch>          print total connections in MRTG format
  quit                           quit interactive mode
  reset <channel>                reset all counters of channel in current group
  rr                             sets distribution scheme of current group to Round Robin
  show                           show all channels in all groups
  version                        show version id
extensions:
  show json                      every field of every channel, as one JSON object
  weight <channel> <weight>      smooth weighted round robin weight (0-10000)
  drain <channel>                no new connections; live ones continue
  failback                       return traffic to group 0 (--failback manual)
  monitor enable|disable|show    health monitoring of this listener
  spin <duration>                hold clients while nothing is eligible
  state save                     write the state file now
  reload                         re-read the --config file (like SIGHUP)
  <channel> is an index in the current group, <group>:<channel> or <host>:<port>";

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn ip(s: &str) -> Host {
        Host::Ip(s.parse().unwrap())
    }

    #[test]
    fn every_command_parses_to_its_meaning() {
        use ChanRef::*;
        use Command::*;
        let ok: Vec<(&str, Command)> = vec![
            ("", Nop),
            ("   \t ", Nop),
            ("help", Help),
            ("?", Help),
            ("show", Show),
            ("show json", ShowJson),
            ("group 1", Group(1)),
            ("enable 0", Enable(Index(0))),
            ("disable 1:2", Disable(At(1, 2))),
            ("drain 127.0.0.1:9001", Drain(Addr(ip("127.0.0.1"), 9001))),
            ("reset [::1]:80", Reset(Addr(ip("::1"), 80))),
            (
                "assign 0 10.0.0.1 8080",
                Assign(Index(0), ip("10.0.0.1"), 8080),
            ),
            ("assign 0 ::1 80", Assign(Index(0), ip("::1"), 80)),
            (
                "create db1.example 3306",
                Create(Host::Name("db1.example".into()), 3306),
            ),
            ("create [::1] 3306", Create(ip("::1"), 3306)),
            ("maxc 2 10", Maxc(Index(2), 10)),
            ("weight 0 3", Weight(Index(0), 3)),
            ("hash", Hash),
            ("rr", Rr),
            ("kill", Kill),
            ("version", Version),
            ("monitor enable", Monitor(MonitorOp::Enable)),
            ("monitor disable", Monitor(MonitorOp::Disable)),
            ("monitor show", Monitor(MonitorOp::Show)),
            ("mrtg-bytes 0 1", MrtgBytes(0, 1)),
            ("mrtg-conns 1 0", MrtgConns(1, 0)),
            ("failback", Failback),
            ("spin 5s", Spin(Duration::from_secs(5))),
            ("state save", StateSave),
            ("reload", Reload),
            ("quit", Quit),
            ("  show  ", Show),
        ];
        for (line, want) in ok {
            assert_eq!(parse(line), Ok(want), "{line:?}");
        }
    }

    #[test]
    fn balance_fm_abbreviations_resolve_in_its_order_but_kill_must_be_spelled_out() {
        assert_eq!(parse("s"), Ok(Command::Show));
        assert_eq!(parse("h"), Ok(Command::Help));
        assert_eq!(parse("q"), Ok(Command::Quit));
        assert_eq!(parse("m 0 5"), Ok(Command::Maxc(ChanRef::Index(0), 5)));
        assert_eq!(parse("d 0"), Ok(Command::Disable(ChanRef::Index(0))));
        assert_eq!(parse("e 0"), Ok(Command::Enable(ChanRef::Index(0))));
        assert_eq!(parse("mrtg-c 0 0"), Ok(Command::MrtgConns(0, 0)));
        assert!(parse("k").is_err());
        assert!(parse("kil").is_err());
        assert!(parse("showx").is_err());
        assert!(parse("dr 0").is_err());
    }

    #[test]
    fn bad_commands_give_one_line_naming_the_token() {
        let bad = [
            ("frobnicate", "frobnicate"),
            ("group", "group needs"),
            ("group x", "\"x\""),
            ("group -1", "\"-1\""),
            ("group 99999999999999999999", "\"99999999999999999999\""),
            ("enable", "enable needs"),
            ("enable x", "\"x\""),
            ("enable 0 1", "unexpected \"1\""),
            ("disable :5", "\":5\""),
            ("drain a:b", "\"a:b\""),
            ("maxc 0", "maxc needs"),
            ("maxc 0 -3", "\"-3\""),
            ("maxc 0 4294967296", "\"4294967296\""),
            ("weight 0 10001", "\"10001\""),
            ("weight 0 x", "\"x\""),
            ("create host", "create needs"),
            ("create bad!host 80", "\"bad!host\""),
            ("create 10.0.0.1 0", "\"0\""),
            ("create 10.0.0.1 70000", "\"70000\""),
            ("assign 0 10.0.0.1", "assign needs"),
            ("assign x 10.0.0.1 80", "\"x\""),
            ("hash 1", "unexpected \"1\""),
            ("show xml", "\"xml\""),
            ("monitor", "monitor needs"),
            ("monitor restart", "\"restart\""),
            ("mrtg-bytes 0", "mrtg-bytes needs"),
            ("mrtg-conns a 0", "\"a\""),
            ("spin forever", "\"forever\""),
            ("state load", "\"load\""),
            ("kill now", "unexpected \"now\""),
            ("quit 1", "unexpected \"1\""),
            ("version x", "unexpected \"x\""),
            ("failback 0", "unexpected \"0\""),
            ("rr x", "unexpected \"x\""),
            ("reset", "reset needs"),
            ("help me", "unexpected \"me\""),
        ];
        for (line, needle) in bad {
            let e = parse(line).expect_err(line);
            assert!(e.contains(needle), "{line:?} gave {e:?}");
            assert!(!e.contains('\n'), "{line:?} gave several lines");
        }
    }

    #[test]
    fn more_than_sixteen_words_is_an_error() {
        let line = vec!["show"; 17].join(" ");
        assert!(parse(&line).unwrap_err().contains("too many arguments"));
        assert!(
            parse(&vec!["x"; 16].join(" "))
                .unwrap_err()
                .contains("unknown")
        );
    }

    #[test]
    fn quoting_escapes_control_characters_and_cuts_long_tokens() {
        assert_eq!(quote("a\u{1}b"), "\"a\\u{1}b\"");
        let long = "x".repeat(100);
        let q = quote(&long);
        assert!(q.ends_with("...\"") && q.len() < 80, "{q}");
        let e = parse("\u{7}bell").unwrap_err();
        assert!(e.contains("\\u{7}bell"), "{e}");
    }

    #[test]
    fn random_lines_never_panic_and_errors_stay_one_line() {
        let alphabet: Vec<char> =
            "0123456789:[]. \t-abcdefghijklmnopqrstuvwxyz?;\u{0}\u{7f}é€\u{10ffff}"
                .chars()
                .collect();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let words = [
            "show",
            "enable",
            "maxc",
            "assign",
            "create",
            "group",
            "mrtg-bytes",
            "weight",
        ];
        for _ in 0..20_000 {
            let mut line = String::new();
            if next() % 2 == 0 {
                line.push_str(words[(next() % words.len() as u64) as usize]);
                line.push(' ');
            }
            for _ in 0..next() % 40 {
                line.push(alphabet[(next() % alphabet.len() as u64) as usize]);
            }
            if let Err(e) = parse(&line) {
                assert!(!e.contains('\n') && e.len() < 300, "{line:?} gave {e:?}");
            }
        }
    }

    #[test]
    fn channel_references_accept_index_group_colon_index_and_host_port() {
        assert_eq!(chan_ref("3"), Ok(ChanRef::Index(3)));
        assert_eq!(chan_ref("1:0"), Ok(ChanRef::At(1, 0)));
        assert_eq!(
            chan_ref("10.1.2.3:http"),
            Ok(ChanRef::Addr(
                Host::Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
                80
            ))
        );
        assert_eq!(
            chan_ref("db1:3306"),
            Ok(ChanRef::Addr(Host::Name("db1".into()), 3306))
        );
        assert!(chan_ref("[::1]").is_err());
        assert!(chan_ref("").is_err());
        assert!(chan_ref("1:").is_err());
    }

    #[test]
    fn read_only_commands_are_not_changes_and_only_operator_state_persists() {
        for l in [
            "show",
            "show json",
            "help",
            "group 1",
            "version",
            "quit",
            "mrtg-bytes 0 0",
            "monitor show",
            "",
        ] {
            let c = parse(l).unwrap();
            assert!(!c.is_change() && !c.persists(), "{l}");
        }
        for l in [
            "enable 0",
            "disable 0",
            "drain 0",
            "maxc 0 1",
            "weight 0 2",
            "hash",
            "rr",
            "create h 1",
            "assign 0 h 1",
        ] {
            let c = parse(l).unwrap();
            assert!(c.is_change() && c.persists(), "{l}");
        }
        for l in ["reset 0", "kill", "failback", "state save"] {
            let c = parse(l).unwrap();
            assert!(c.is_change() && !c.persists(), "{l}");
        }
    }
}

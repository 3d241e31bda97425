//! The control language: one line → one [`Command`], or one error line.
//!
//! Words and meanings are balance.fm's. Like balance.fm, its words may be
//! abbreviated to any prefix, resolved in balance.fm's order (`s` is `show`,
//! `h` is `help`, `m` is `maxc`), except `kill`, which must be spelled out.
//! Extensions (`weight`, `drain`, `failback`, `spin`, `state`, `monitor`)
//! are exact words.

use std::time::Duration;

use crate::config::services::parse_port;
use crate::config::{Host, Policy, names};
use crate::operator::{Endpoint, GroupKey, OperatorOp, SpinSet, WeightSet};
use crate::pool::Admin;

/// At most this many words on a line (the command included).
pub(crate) const MAX_ARGS: usize = 16;

/// How a command names a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChanRef {
    /// An index in the session's current group.
    Index(usize),
    /// `G:C`.
    At(usize, usize),
    /// `host:port` as shown by `show` (`[v6]:port` for IPv6).
    Addr(Host, u16),
    /// The channel's name.
    Name(String),
}

impl std::fmt::Display for ChanRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChanRef::Index(c) => write!(f, "{c}"),
            ChanRef::At(g, c) => write!(f, "{g}:{c}"),
            ChanRef::Addr(h, p) => write!(f, "{h}:{p}"),
            ChanRef::Name(n) => f.write_str(n),
        }
    }
}

/// How a command names a group: the session's current one, or by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    Current,
    Key(GroupKey),
}

/// An operator change as the control socket words it: channels by
/// [`ChanRef`], groups by [`GroupRef`], a new address as written (resolved
/// when applied); see [`crate::operator`], which applies it.
pub(crate) type ControlOp = OperatorOp<ChanRef, GroupRef, Endpoint>;

/// `fleet ...`: a change for every instance of the service, written to
/// etcd and applied by each from its watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetCmd {
    /// `fleet enable|disable|drain <channel>`, `fleet weight|maxc
    /// <channel> <n>`, `fleet failback`, `fleet spin on [MAX]|off`,
    /// `fleet create <group> <host>:<port> [<weight>]` (register a
    /// channel), `fleet remove <group> <host>:<port>` (unregister it),
    /// `fleet switchover [GROUP [TIMEOUT]]` (through etcd): an op for
    /// every instance (see [`fleet_scoped`]).
    Op(ControlOp),
    /// `fleet members`: the instances registered in etcd.
    Members,
    /// `fleet forget ID`: drop a known instance that is gone for good.
    Forget(String),
}

/// The longest `grace=` a switchover takes (clients are held meanwhile).
pub(crate) const MAX_SWITCH_GRACE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// An empty line: nothing to do.
    Nop,
    Help,
    Show,
    ShowJson,
    /// `group N` or `group NAME`.
    Group(GroupKey),
    /// `enable`, `disable`, `drain`, `weight`, `maxc`, `reset`, `hash`,
    /// `rr`, `leastconn`, `failback`, `spin on|off`, `monitor
    /// enable|disable`, `assign`, `create` (in the current group),
    /// `switchover [GROUP [TIMEOUT]] [grace=D] [force]`: one operator
    /// change.
    Op(ControlOp),
    Kill,
    Version,
    /// `monitor show`.
    MonitorShow,
    MrtgBytes(usize, usize),
    MrtgConns(usize, usize),
    /// `spin` (show).
    SpinShow,
    Fleet(FleetCmd),
    /// `route KEY`: what a key resolves to on a listener with `route:`,
    /// and why.
    Route(String),
    StateSave,
    Reload,
    /// `upgrade [PATH]`: start the binary at PATH (default: the one this
    /// process was started from) and hand it the listening sockets.
    Upgrade(Option<std::path::PathBuf>),
    Quit,
}

impl Command {
    /// Whether the command changes anything (an admin command, logged at
    /// info with the peer's uid); the others only read.
    pub fn is_change(&self) -> bool {
        self.persists()
            || matches!(
                self,
                Command::Op(_)
                    | Command::Kill
                    | Command::StateSave
                    | Command::Reload
                    | Command::Upgrade(_)
            )
            || matches!(self, Command::Fleet(f) if *f != FleetCmd::Members)
    }

    /// Whether the change is operator state kept in the state file.
    pub fn persists(&self) -> bool {
        match self {
            Command::Op(op) => op.persists(),
            _ => false,
        }
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
    "kill",
    "weight",
    "drain",
    "failback",
    "spin",
    "state",
    "monitor",
    "reload",
    "switchover",
    "route",
    "upgrade",
    "remove",
];

/// Largest group and channel numbers accepted (far beyond any real pool).
pub(crate) const MAX_INDEX: usize = 1_000_000;
/// Largest weight accepted.
pub(crate) use crate::operator::MAX_WEIGHT;

/// Quote a user token for an error line: control characters escaped, long
/// tokens cut, so one bad input gives one short printable line.
pub(crate) use crate::config::error::quote;

fn word(tok: &str) -> Option<&'static str> {
    if let Some(w) = EXACT_WORDS.iter().find(|w| **w == tok) {
        return Some(w);
    }
    // Every policy's word sets the group's policy (`hash` and `rr` are
    // also balance.fm's, abbreviated below; the others only in full).
    if let Some(p) = Policy::from_word(tok) {
        return Some(p.word());
    }
    FM_WORDS.iter().find(|w| w.starts_with(tok)).copied()
}

/// Why a control line was not understood: one line naming the bad token,
/// sent back to the client as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(pub(crate) String);

/// Parse one line (without its newline).
pub fn parse(line: &str) -> Result<Command, CommandError> {
    parse_words(line).map_err(CommandError)
}

fn parse_words(line: &str) -> Result<Command, String> {
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
    if first == "fleet" {
        return fleet(args).map(Command::Fleet);
    }
    let Some(w) = word(first) else {
        return Err(format!(
            "syntax error: unknown command {} (try help)",
            quote(first)
        ));
    };
    if let Some(cmd) = without_args(w) {
        arity(w, args, 0)?;
        return Ok(cmd);
    }
    with_args(w, first, args)
}

/// The commands that take no argument.
fn without_args(w: &str) -> Option<Command> {
    Some(match w {
        "quit" => Command::Quit,
        "help" | "?" => Command::Help,
        "kill" => Command::Kill,
        "version" => Command::Version,
        "failback" => Command::Op(OperatorOp::Floor(0)),
        "reload" => Command::Reload,
        w => {
            return Policy::from_word(w)
                .map(|p| Command::Op(OperatorOp::Policy(GroupRef::Current, p)));
        }
    })
}

/// The commands with arguments: `w` is the command word `first` resolved.
fn with_args(w: &str, first: &str, args: &[&str]) -> Result<Command, String> {
    let cmd = match w {
        "show" => match args {
            [] => Command::Show,
            ["json"] => Command::ShowJson,
            [x, ..] => return Err(format!("syntax error: unexpected {} after show", quote(x))),
        },
        "group" => {
            let [g] = take(w, args)?;
            Command::Group(group_ref(g)?)
        }
        "disable" | "enable" | "drain" | "reset" => {
            let [c] = take(w, args)?;
            let c = chan_ref(c)?;
            Command::Op(match w {
                "disable" => OperatorOp::Admin(c, Admin::Disabled),
                "enable" => OperatorOp::Admin(c, Admin::Enabled),
                "drain" => OperatorOp::Admin(c, Admin::Drain),
                _ => OperatorOp::Reset(c),
            })
        }
        "maxc" | "weight" => {
            let [c, v] = take(w, args)?;
            let c = chan_ref(c)?;
            let num = v
                .parse::<u32>()
                .map_err(|_| format!("bad {w} {}: not a number", quote(v)))?;
            if w == "maxc" {
                Command::Op(OperatorOp::Maxc(c, num))
            } else if num > MAX_WEIGHT {
                return Err(format!("bad weight {}: use 0-{MAX_WEIGHT}", quote(v)));
            } else {
                Command::Op(OperatorOp::Weight(c, WeightSet::Abs(num)))
            }
        }
        "create" => {
            let [h, p] = take(w, args)?;
            Command::Op(OperatorOp::Create {
                group: GroupRef::Current,
                target: endpoint(h, p)?,
                weight: None,
            })
        }
        "assign" => {
            let [c, h, p] = take(w, args)?;
            Command::Op(OperatorOp::Assign(chan_ref(c)?, endpoint(h, p)?))
        }
        "remove" => {
            return Err(
                "remove has no single-instance form (balance.fm has none): disable the channel \
                 instead; fleet remove <group> <host>:<port> unregisters a fleet channel"
                    .into(),
            );
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
            match op {
                "enable" => Command::Op(OperatorOp::Monitor(true)),
                "disable" => Command::Op(OperatorOp::Monitor(false)),
                "show" => Command::MonitorShow,
                x => {
                    return Err(format!(
                        "syntax error: monitor {}: use enable, disable or show",
                        quote(x)
                    ));
                }
            }
        }
        "switchover" => Command::Op(switch_args(args)?),
        "spin" => match spin(args)? {
            Some(s) => Command::Op(OperatorOp::Spin(s)),
            None => Command::SpinShow,
        },
        "route" => {
            let [key] = take(w, args)?;
            Command::Route(key.to_string())
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
        "upgrade" => match args {
            [] => Command::Upgrade(None),
            [p] if p.starts_with('/') => Command::Upgrade(Some(std::path::PathBuf::from(p))),
            [p] => {
                return Err(format!(
                    "bad upgrade path {}: give an absolute path",
                    quote(p)
                ));
            }
            [_, extra, ..] => {
                return Err(format!(
                    "syntax error: unexpected {} after upgrade (usage: upgrade {})",
                    quote(extra),
                    usage(w)
                ));
            }
        },
        _ => return Err(format!("syntax error: unknown command {}", quote(first))),
    };
    Ok(cmd)
}

/// `fleet <command>`: the commands with a fleet scope, parsed as the
/// plain ones (`create`/`remove` name the group and `HOST:PORT`).
fn fleet(args: &[&str]) -> Result<FleetCmd, String> {
    const USAGE: &str = "fleet enable|disable|drain <channel> | weight|maxc <channel> <n> | \
                         failback | spin on [MAX]|off | create <group> <host>:<port> [<weight>] | \
                         remove <group> <host>:<port> | members | forget <id> | switchover [GROUP [TIMEOUT]]";
    let reg = |g: &str, hp: &str| -> Result<(GroupRef, Endpoint), String> {
        let g = GroupRef::Key(group_ref(g)?);
        match chan_ref(hp)? {
            ChanRef::Addr(host, port) => Ok((g, Endpoint { host, port })),
            _ => Err(format!("bad channel {}: use <host>:<port>", quote(hp))),
        }
    };
    let create = |g: &str, hp: &str, weight: Option<u32>| -> Result<FleetCmd, String> {
        let (group, target) = reg(g, hp)?;
        Ok(FleetCmd::Op(OperatorOp::Create {
            group,
            target,
            weight,
        }))
    };
    match args {
        [] => Err(format!(
            "syntax error: fleet needs a command (usage: {USAGE})"
        )),
        ["create", g, hp] => create(g, hp, None),
        ["create", g, hp, w] => {
            let w = w
                .parse::<u32>()
                .ok()
                .filter(|w| *w <= MAX_WEIGHT)
                .ok_or_else(|| format!("bad weight {}: use 0-{MAX_WEIGHT}", quote(w)))?;
            create(g, hp, Some(w))
        }
        ["remove", g, hp] => {
            let (group, e) = reg(g, hp)?;
            Ok(FleetCmd::Op(OperatorOp::Remove {
                group,
                chan: ChanRef::Addr(e.host, e.port),
            }))
        }
        ["create" | "remove", ..] => Err(format!("syntax error: usage: {USAGE}")),
        ["members"] => Ok(FleetCmd::Members),
        ["forget", id] if !id.contains('/') => Ok(FleetCmd::Forget(id.to_string())),
        ["forget", ..] => {
            Err("syntax error: usage: fleet forget <id> (an id from fleet members)".into())
        }
        _ => match parse_words(&args.join(" "))? {
            Command::Op(op) if fleet_scoped(&op) => Ok(FleetCmd::Op(op)),
            Command::Op(OperatorOp::Switchover { .. }) => Err(
                "fleet switchover takes no grace= or force (usage: fleet switchover [GROUP [TIMEOUT]])"
                    .into(),
            ),
            _ => Err(format!(
                "{} has no fleet scope (usage: {USAGE})",
                quote(args.first().copied().unwrap_or_default())
            )),
        },
    }
}

/// The ops `fleet ...` makes for every instance: admin state, weight,
/// maxc, failback and the operator hold (written to etcd), a channel
/// registered or unregistered in a named group, a switchover without
/// `grace=` or `force` (run through etcd).
pub(crate) fn fleet_scoped(op: &ControlOp) -> bool {
    matches!(
        op,
        OperatorOp::Admin(..)
            | OperatorOp::Weight(_, WeightSet::Abs(_))
            | OperatorOp::Maxc(..)
            | OperatorOp::Floor(0)
            | OperatorOp::Spin(SpinSet::For(_) | SpinSet::Off)
            | OperatorOp::Create {
                group: GroupRef::Key(_),
                ..
            }
            | OperatorOp::Remove {
                group: GroupRef::Key(_),
                chan: ChanRef::Addr(..),
            }
            | OperatorOp::Switchover {
                grace: None,
                force: false,
                ..
            }
    )
}

/// `spin on [MAX]` / `spin off` / `spin` (None: show).
fn spin(args: &[&str]) -> Result<Option<SpinSet>, String> {
    let bad = |x: &str| {
        format!(
            "syntax error: spin {}: use spin on [MAX], spin off or spin",
            quote(x)
        )
    };
    match args {
        [] => Ok(None),
        ["off"] => Ok(Some(SpinSet::Off)),
        ["on"] => Ok(Some(SpinSet::For(None))),
        ["on", d] => {
            let max = crate::config::parse_duration(d)
                .map_err(|e| format!("bad spin duration {}: {e}", quote(d)))?;
            let limit = crate::service::hold::MAX_HOLD;
            if max.is_zero() || max > limit {
                return Err(format!(
                    "bad spin duration {}: use more than 0 and at most {}",
                    quote(d),
                    humantime::format_duration(limit)
                ));
            }
            Ok(Some(SpinSet::For(Some(max))))
        }
        ["on", _, extra, ..] | ["off", extra, ..] => Err(format!(
            "syntax error: unexpected {} after spin (usage: spin {})",
            quote(extra),
            usage("spin")
        )),
        [x, ..] => Err(bad(x)),
    }
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
        "group" => "<group> (a number or a group name)",
        "disable" | "enable" | "drain" | "reset" => "<channel>",
        "maxc" => "<channel> <maxc>",
        "weight" => "<channel> <weight>",
        "create" => "<host> <port>",
        "assign" => "<channel> <host> <port>",
        "mrtg-bytes" | "mrtg-conns" => "<group> <channel>",
        "monitor" => "enable|disable|show",
        "spin" => "on [MAX] | off",
        "switchover" => "[<group> [<timeout>]] [grace=<duration>] [force]",
        "state" => "save",
        "upgrade" => "[<absolute path of the new binary>]",
        _ => "no arguments",
    }
}

fn index(what: &str, s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(i) if s.bytes().all(|b| b.is_ascii_digit()) && i <= MAX_INDEX => Ok(i),
        _ => Err(format!("bad {what} {}: not a number", quote(s))),
    }
}

/// `N` or a group name.
fn group_ref(s: &str) -> Result<GroupKey, String> {
    if names::is_name(s) {
        return Ok(GroupKey::Name(s.to_string()));
    }
    index("group", s).map(GroupKey::Index)
}

/// `C`, `G:C`, `host:port`, `[v6]:port` or a channel name.
pub(crate) fn chan_ref(s: &str) -> Result<ChanRef, String> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(ChanRef::Index(index("channel", s)?));
    }
    if names::is_name(s) {
        return Ok(ChanRef::Name(s.to_string()));
    }
    let bad = || {
        format!(
            "bad channel {}: use <channel>, <group>:<channel>, <host>:<port> or a channel name",
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
pub(crate) fn host(s: &str) -> Result<Host, String> {
    crate::config::grammar::host_literal(s).ok_or_else(|| format!("invalid address {}", quote(s)))
}

fn port(s: &str) -> Result<u16, String> {
    parse_port(s).map_err(|e| format!("bad port {}: {e}", quote(s)))
}

/// `<host> <port>` (`create`, `assign`).
fn endpoint(h: &str, p: &str) -> Result<Endpoint, String> {
    Ok(Endpoint {
        host: host(h)?,
        port: port(p)?,
    })
}

/// The `help` text: balance.fm's lines, then the extensions.
pub(crate) const HELP: &str = "\
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
  leastconn                      sets distribution scheme of current group to least connections
  drain <channel>                no new connections; live ones continue
  failback                       return traffic to group 0 (--failback manual)
  switchover [<grp> [<timeout>]] [grace=<d>] [force]
                                 hold clients, end the active group's sessions (idle ones at
                                 once, busy ones after their request or <d>, 2s), wait until
                                 <grp> applied its writes (MySQL GTID; 10s), move traffic, release
  monitor enable|disable|show    pause or resume active probes (with -m)
  spin on [MAX] | off | (none)   hold every new client (at most MAX), release in order
  state save                     write the state file now
  reload                         re-read the --config file (like SIGHUP)
  upgrade [<path>]               start the binary installed at the path this process was started
                                 from (or <path>), hand it the sockets and state; this one drains
  <channel> is an index in the current group, <group>:<channel>, <host>:<port> or its name
  <group> is a number or a group name";

/// Added to `help` on a listener with `route:`.
pub(crate) const HELP_ROUTE: &str = "\
routing (route: in the config file):
  route <key>                    what <key> (a server name or an address) resolves to, and why
                                 (map, file, lookup: cached, stale or asked now; default)";

/// The fleet commands, added to `help` in fleet mode.
pub(crate) const HELP_FLEET: &str = "\
fleet (every instance of this service, through etcd):
  fleet enable|disable|drain <channel>        operator state of a channel on every instance
  fleet weight|maxc <channel> <n>             weight or maxc of a channel on every instance
  fleet failback                              every instance returns traffic to group 0
  fleet spin on [MAX] | off                   hold new clients on every instance
  fleet create <group> <host>:<port> [<w>]    register a channel: every instance adds it
  fleet remove <group> <host>:<port>          unregister it: every instance removes it
  fleet members                               the instances of this service in the fleet
  fleet forget <id>                           drop a known instance that is gone for good
  fleet switchover [<group> [<timeout>]]      switchover on every instance at once (all must acknowledge)";

#[cfg(test)]
mod tests;

/// `switchover [<group> [<timeout>]] [grace=<duration>] [force]` (the
/// group by number or name).
fn switch_args(args: &[&str]) -> Result<ControlOp, String> {
    const USAGE: &str = "usage: switchover [<group> [<timeout>]] [grace=<duration>] [force]";
    let (mut to, mut limit, mut grace, mut force) = (None, None, None, false);
    let mut positional = 0;
    for &w in args {
        if w == "force" {
            force = true;
        } else if let Some(d) = w.strip_prefix("grace=") {
            let g = crate::config::parse_duration(d)
                .ok()
                .filter(|g| *g <= MAX_SWITCH_GRACE)
                .ok_or_else(|| format!("bad switchover grace {}: use 0 to 60s", quote(d)))?;
            grace = Some(g);
        } else if positional == 0 {
            to = Some(GroupRef::Key(group_ref(w)?));
            positional = 1;
        } else if positional == 1 {
            let t = crate::config::parse_duration(w)
                .ok()
                .filter(|t| !t.is_zero() && *t <= Duration::from_secs(20))
                .ok_or_else(|| format!("bad switchover timeout {}: use up to 20s", quote(w)))?;
            limit = Some(t);
            positional = 2;
        } else {
            return Err(format!(
                "syntax error: unexpected {} after switchover ({USAGE})",
                quote(w)
            ));
        }
    }
    Ok(OperatorOp::Switchover {
        to,
        limit,
        grace,
        force,
    })
}

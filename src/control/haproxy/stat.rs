//! What HAProxy's `show stat`, `show info`, `show servers state` and
//! `show backend` print, made from the read-only views of
//! [`crate::render`]. Pure: the caller takes the views.
//!
//! Ids (HAProxy's `iid`/`sid`, `#ID` references): a listener's proxy id
//! is its place in the configuration (1, 2, ...); a channel's server id
//! its place in the listener, counted through the groups in order (the
//! first channel of group 0 is 1). A later group's channels are HAProxy's
//! backup servers.

use std::fmt::Write;
use std::time::Duration;

use crate::config::Policy;
use crate::pool::Admin;
use crate::render::{ChannelView, ListenerView};

use super::command::StatFilter;

/// `show stat`'s columns, in HAProxy 2.6's order (management guide 9.1):
/// a tool that reads a column by its position finds it where HAProxy
/// puts it. Columns we have no value for stay empty, as HAProxy leaves
/// them.
pub(crate) const COLUMNS: &[&str] = &[
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
    "conn_rate",
    "conn_rate_max",
    "conn_tot",
    "intercepted",
    "dcon",
    "dses",
    "wrew",
    "connect",
    "reuse",
    "cache_lookups",
    "cache_hits",
    "srv_icur",
    "src_ilim",
    "qtime_max",
    "ctime_max",
    "rtime_max",
    "ttime_max",
    "eint",
    "idle_conn_cur",
    "safe_conn_cur",
    "used_conn_cur",
    "need_conn_est",
    "uweight",
    "agg_server_status",
    "agg_server_check_status",
    "agg_check_status",
];

/// One listener as the runtime API sees it.
pub(crate) struct Proxy<'a> {
    /// Proxy id (1-based place in the configuration).
    pub(crate) iid: usize,
    pub(crate) view: &'a ListenerView,
    /// Health checks configured (`-m` / `monitor:`), and whether they
    /// are application-level (HAProxy's `L7` codes) rather than a connect.
    pub(crate) checks: Option<Checks>,
    /// Process uptime (`lastchg` of what never changed).
    pub(crate) uptime: Duration,
    /// Seconds since each channel's health last changed (by place).
    pub(crate) changed: Vec<Option<Duration>>,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Checks {
    pub(crate) layer7: bool,
    pub(crate) rise: u32,
    pub(crate) fall: u32,
}

/// A row: the non-empty values by column.
type Row = Vec<(&'static str, String)>;

fn n(v: impl std::fmt::Display) -> String {
    v.to_string()
}

/// The server's `status`: UP, DOWN, MAINT, DRAIN or `no check`.
pub(crate) fn status(c: &ChannelView, checks: bool) -> &'static str {
    match (c.admin, c.up) {
        (Admin::Disabled, _) => "MAINT",
        (Admin::Drain, true) => "DRAIN",
        (_, false) => "DOWN",
        _ if !checks || !c.checked => "no check",
        _ => "UP",
    }
}

/// HAProxy's `check_status` for the last check.
fn check_status(c: &ChannelView, checks: Option<Checks>) -> String {
    let Some(k) = checks.filter(|_| c.checked) else {
        return String::new();
    };
    if c.checks_passed + c.checks_failed == 0 {
        return "INI".into();
    }
    let timeout = c.last_reason.contains("timed out") || c.last_reason.contains("timeout");
    match (c.up, k.layer7, timeout) {
        (true, true, _) => "L7OK",
        (true, false, _) => "L4OK",
        (false, _, true) => "L4TOUT",
        (false, false, false) => "L4CON",
        (false, true, false) => "L7STS",
    }
    .into()
}

fn algo(p: Policy) -> &'static str {
    match p {
        Policy::RoundRobin => "roundrobin",
        Policy::LeastConn => "leastconn",
        Policy::Hash => "source",
    }
}

impl Proxy<'_> {
    fn sum(&self, f: impl Fn(&ChannelView) -> u64) -> u64 {
        self.view.channels.iter().map(f).sum()
    }

    fn frontend(&self) -> Row {
        let v = self.view;
        vec![
            ("scur", n(v.active)),
            ("stot", n(v.accepted)),
            ("bin", n(self.sum(|c| c.sent))),
            ("bout", n(self.sum(|c| c.rcvd))),
            ("dreq", n(v.refused)),
            ("status", "OPEN".into()),
            ("pid", "1".into()),
            ("iid", n(self.iid)),
            ("sid", "0".into()),
            ("type", "0".into()),
            ("mode", "tcp".into()),
            ("conn_tot", n(v.accepted)),
        ]
    }

    fn backend(&self) -> Row {
        let cs = &self.view.channels;
        let usable = |c: &&ChannelView| c.up && c.admin == Admin::Enabled;
        let act = cs.iter().filter(|c| c.group == 0).filter(usable).count();
        let bck = cs.iter().filter(|c| c.group > 0).filter(usable).count();
        let weight: u64 = cs.iter().filter(usable).map(|c| u64::from(c.weight)).sum();
        let policy = self.view.groups.first().map_or(Policy::RoundRobin, |g| g.0);
        vec![
            ("qcur", n(self.view.spinning + self.view.held)),
            ("scur", n(self.sum(|c| u64::from(c.conns)))),
            ("stot", n(self.sum(|c| c.total))),
            ("bin", n(self.sum(|c| c.sent))),
            ("bout", n(self.sum(|c| c.rcvd))),
            ("econ", n(self.sum(|c| c.connect_failures))),
            ("status", (if act + bck > 0 { "UP" } else { "DOWN" }).into()),
            ("weight", n(weight)),
            ("act", n(act)),
            ("bck", n(bck)),
            ("pid", "1".into()),
            ("iid", n(self.iid)),
            ("sid", "0".into()),
            ("lbtot", n(self.sum(|c| c.total))),
            ("type", "1".into()),
            ("mode", "tcp".into()),
            ("algo", algo(policy).into()),
            ("uweight", n(weight)),
        ]
    }

    fn server(&self, sid: usize, c: &ChannelView) -> Row {
        let checks = self.checks.filter(|_| c.checked);
        let lastchg = self
            .changed
            .get(sid - 1)
            .copied()
            .flatten()
            .unwrap_or(self.uptime);
        let mut row = vec![
            ("qcur", "0".into()),
            ("scur", n(c.conns)),
            ("stot", n(c.total)),
            ("bin", n(c.sent)),
            ("bout", n(c.rcvd)),
            ("econ", n(c.connect_failures)),
            ("status", status(c, self.checks.is_some()).into()),
            ("weight", n(c.weight)),
            ("act", n(u8::from(c.group == 0))),
            ("bck", n(u8::from(c.group > 0))),
            ("lastchg", n(lastchg.as_secs())),
            ("pid", "1".into()),
            ("iid", n(self.iid)),
            ("sid", n(sid)),
            ("lbtot", n(c.total)),
            ("type", "2".into()),
            ("check_status", check_status(c, self.checks)),
            ("addr", format!("{}:{}", c.shown_address(), c.target.port)),
            ("mode", "tcp".into()),
            ("uweight", n(c.weight)),
        ];
        if c.maxc > 0 {
            row.push(("slim", n(c.maxc)));
        }
        if let Some(k) = checks {
            row.extend([
                ("chkfail", n(c.checks_failed)),
                ("check_duration", n(c.check_micros / 1000)),
                ("check_desc", c.last_reason.replace(',', ";")),
                ("check_rise", n(k.rise)),
                ("check_fall", n(k.fall)),
            ]);
        }
        row
    }
}

fn csv_line(out: &mut String, px: &str, sv: &str, row: &Row) {
    out.push_str(px);
    out.push(',');
    out.push_str(sv);
    out.push(',');
    for col in COLUMNS.iter().skip(2) {
        if let Some((_, v)) = row.iter().find(|(k, _)| k == col) {
            out.push_str(v);
        }
        out.push(',');
    }
    out.push('\n');
}

/// `show stat typed`'s `F.iid.sid.pos.name.1:tags:type:value` lines (the
/// non-empty fields only).
fn typed_lines(
    out: &mut String,
    kind: char,
    iid: usize,
    sid: usize,
    px: &str,
    sv: &str,
    row: &Row,
) {
    let all = [("pxname", px.to_string()), ("svname", sv.to_string())];
    for (pos, col) in COLUMNS.iter().enumerate() {
        let v = all
            .iter()
            .chain(row.iter())
            .find(|(k, _)| k == col)
            .map(|(_, v)| v);
        let Some(v) = v.filter(|v| !v.is_empty()) else {
            continue;
        };
        let numeric = v.bytes().all(|b| b.is_ascii_digit());
        let (tags, ty) = match (*col, numeric) {
            ("pxname" | "svname", _) => ("KNS", "str"),
            ("iid" | "sid" | "pid" | "type", _) => ("KGP", "u32"),
            ("scur" | "qcur", _) => ("MGP", "u32"),
            (_, true) => ("MCP", "u64"),
            (_, false) => ("SGP", "str"),
        };
        let _ = writeln!(out, "{kind}.{iid}.{sid}.{pos}.{col}.1:{tags}:{ty}:{v}");
    }
}

/// `show stat`.
pub(crate) fn show_stat(proxies: &[Proxy<'_>], f: &StatFilter) -> String {
    let mut out = String::new();
    if !f.typed {
        out.push_str("# ");
        out.push_str(&COLUMNS.join(","));
        out.push_str(",\n");
    }
    let want = |bit: i64| f.kinds == -1 || f.kinds & bit != 0;
    for p in proxies {
        if f.iid != -1 && f.iid != p.iid as i64 {
            continue;
        }
        let name = p.view.name.as_str();
        let mut emit = |kind: char, sid: usize, sv: &str, row: Row| {
            if f.typed {
                typed_lines(&mut out, kind, p.iid, sid, name, sv, &row);
            } else {
                csv_line(&mut out, name, sv, &row);
            }
        };
        if want(1) && f.sid == -1 {
            emit('F', 0, "FRONTEND", p.frontend());
        }
        if want(4) {
            for (i, c) in p.view.channels.iter().enumerate() {
                let sid = i + 1;
                let maint = c.admin == Admin::Disabled;
                if (f.sid != -1 && f.sid != sid as i64)
                    || (f.no_maint && maint)
                    || (f.up && (maint || !c.up))
                {
                    continue;
                }
                emit('S', sid, &c.name, p.server(sid, c));
            }
        }
        if want(2) && f.sid == -1 {
            emit('B', 0, "BACKEND", p.backend());
        }
    }
    out
}

/// `show servers state [B]` (format version 1).
pub(crate) fn servers_state(proxies: &[Proxy<'_>]) -> String {
    let mut out = String::from(
        "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n",
    );
    for p in proxies {
        for (i, c) in p.view.channels.iter().enumerate() {
            let sid = i + 1;
            // SRV_ST_STOPPED 0, SRV_ST_RUNNING 2; admin: SRV_ADMF_FMAINT 1,
            // SRV_ADMF_FDRAIN 8.
            let op = if c.up { 2 } else { 0 };
            let admin = match c.admin {
                Admin::Enabled => 0,
                Admin::Disabled => 1,
                Admin::Drain => 8,
            };
            let checked = p.checks.is_some() && c.checked;
            // HCHK_STATUS_*: INI 1, L4OK 6, L4CON 8; CHK_RES_*: 0 unknown,
            // 2 failed, 3 passed.
            let (chk_status, chk_result) = match (checked, c.up) {
                (false, _) => (0, 0),
                (true, true) => (6, 3),
                (true, false) => (8, 2),
            };
            // CHK_ST_CONFIGURED 0x1 | CHK_ST_ENABLED 0x4 (| PAUSED 0x8).
            let chk_state = if p.checks.is_none() {
                0
            } else if c.checked {
                6
            } else {
                2
            };
            let since = p
                .changed
                .get(i)
                .copied()
                .flatten()
                .unwrap_or(p.uptime)
                .as_secs();
            let fqdn = match &c.target.host {
                crate::config::Host::Name(h) => h.as_str(),
                crate::config::Host::Ip(_) => "-",
            };
            let _ = writeln!(
                out,
                "{} {} {sid} {} {} {op} {admin} {} {} {since} {chk_status} {chk_result} {} {chk_state} 0 0 0 {fqdn} {} - 0 0 - - 0",
                p.iid,
                p.view.name,
                c.name,
                c.shown_address(),
                c.weight,
                c.initial_weight,
                if c.up {
                    p.checks.map_or(0, |k| k.rise + k.fall - 1)
                } else {
                    0
                },
                c.target.port,
            );
        }
    }
    out
}

/// `show backend`.
pub(crate) fn backends(proxies: &[Proxy<'_>]) -> String {
    let mut out = String::from("# name\n");
    for p in proxies {
        out.push_str(&p.view.name);
        out.push('\n');
    }
    out
}

/// What `show info` reports about the process.
pub(crate) struct Info {
    pub(crate) version: String,
    pub(crate) pid: u32,
    pub(crate) uptime: Duration,
    pub(crate) threads: usize,
    pub(crate) nofile: u64,
    pub(crate) maxconn: usize,
    pub(crate) curr_conns: u64,
    pub(crate) cum_conns: u64,
    pub(crate) pipes_used: u64,
    pub(crate) pipes_free: u64,
    pub(crate) tasks: usize,
    pub(crate) run_queue: usize,
    pub(crate) node: String,
}

/// The `Version:` we report: HAProxy's runtime API level we speak (2.6),
/// then ours, so that tools which parse HAProxy's `MAJOR.MINOR` accept it
/// and a human sees what answers.
pub(crate) fn version(ours: &str) -> String {
    format!("2.6.0-balance-{ours}")
}

/// `show info [typed]`.
pub(crate) fn info(i: &Info, typed: bool) -> String {
    let up = i.uptime.as_secs();
    let fields: Vec<(&str, &str, String)> = vec![
        ("Name", "POS:str", "HAProxy".into()),
        ("Version", "POS:str", i.version.clone()),
        ("Release_date", "POS:str", "-".into()),
        ("Nbthread", "CGS:u32", n(i.threads)),
        ("Nbproc", "CGS:u32", "1".into()),
        ("Process_num", "KGP:u32", "1".into()),
        ("Pid", "SGP:u32", n(i.pid)),
        (
            "Uptime",
            "MDP:str",
            format!(
                "{}d {}h{:02}m{:02}s",
                up / 86_400,
                up % 86_400 / 3600,
                up % 3600 / 60,
                up % 60
            ),
        ),
        ("Uptime_sec", "MDP:u32", n(up)),
        ("Ulimit-n", "CLP:u32", n(i.nofile)),
        ("Maxsock", "CLP:u32", n(i.nofile)),
        ("Maxconn", "CLP:u32", n(i.maxconn)),
        ("Hard_maxconn", "CLP:u32", n(i.maxconn)),
        ("CurrConns", "MGP:u32", n(i.curr_conns)),
        ("CumConns", "MCP:u32", n(i.cum_conns)),
        ("Maxpipes", "CLP:u32", n(i.pipes_used + i.pipes_free)),
        ("PipesUsed", "MGP:u32", n(i.pipes_used)),
        ("PipesFree", "MGP:u32", n(i.pipes_free)),
        ("Tasks", "MGP:u32", n(i.tasks)),
        ("Run_queue", "MGP:u32", n(i.run_queue)),
        ("node", "CGS:str", i.node.clone()),
        (
            "description",
            "CGS:str",
            format!(
                "balance {} (HAProxy runtime API)",
                env!("CARGO_PKG_VERSION")
            ),
        ),
    ];
    let mut out = String::new();
    for (pos, (k, t, v)) in fields.iter().enumerate() {
        if typed {
            let _ = writeln!(out, "{pos}.{k}.1:{t}:{v}");
        } else {
            let _ = writeln!(out, "{k}: {v}");
        }
    }
    out
}

#[cfg(test)]
mod tests;

//! Role and replication verdicts, pure over what the server answered:
//! `@@read_only` against `read_only=`, and each `SHOW ... SLAVES STATUS`
//! row against `max_lag=` and the catch-up gate. Columns are found by
//! name, MariaDB's or MySQL 8's (`Slave_SQL_Running` or
//! `Replica_SQL_Running`, `Seconds_Behind_Master` or `..._Source`).

use std::time::Duration;

use super::query::Rows;
use crate::monitor::probe::{Finding, escape, fmt_dur};

/// What a replica check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Fine; its lag in seconds if the server knows it (NULL when its IO
    /// thread is not connected, or not a replica).
    Ok { lag: Option<u64> },
    /// Received more than it applied while that matters (a backup, or its
    /// primary unreachable): not eligible yet, not down.
    CatchingUp(String),
    /// Failing (lag, stopped or broken replication).
    Failed(String),
}

impl Verdict {
    pub(super) fn into_finding(self) -> Result<Option<u64>, Finding> {
        match self {
            Verdict::Ok { lag } => Ok(lag),
            Verdict::CatchingUp(r) => Err(Finding::CatchingUp(r)),
            Verdict::Failed(r) => Err(Finding::Failed(r)),
        }
    }
}

/// `SELECT @@read_only` against the wanted value.
pub(super) fn read_only(rows: &Rows, want: bool) -> Result<(), Finding> {
    let got = rows
        .rows
        .first()
        .and_then(|r| r.first())
        .and_then(|v| v.as_deref());
    let got = match got.map(str::trim) {
        Some("0") | Some("OFF") => false,
        Some("1") | Some("ON") => true,
        other => {
            return Err(format!(
                "bad @@read_only answer \"{}\"",
                escape(other.unwrap_or("NULL").as_bytes())
            )
            .into());
        }
    };
    if got == want {
        Ok(())
    } else {
        Err(format!("read_only is {}, want {}", u8::from(got), u8::from(want)).into())
    }
}

/// The largest lag any source reports while its IO thread is connected
/// (the server says NULL otherwise), for the gauge.
pub(super) fn lag(rows: &Rows) -> Option<u64> {
    (0..rows.rows.len())
        .filter(|&r| rows.get(r, &["Slave_IO_Running", "Replica_IO_Running"]) == Some("Yes"))
        .filter_map(|r| {
            rows.get(r, &["Seconds_Behind_Master", "Seconds_Behind_Source"])
                .and_then(|v| v.trim().parse::<u64>().ok())
        })
        .max()
}

/// Every replication source row judged; the worst wins. No rows: not a
/// replica, fine. `gtid_slave_pos` is MariaDB's applied position (also in
/// `SHOW ALL SLAVES STATUS`'s `Gtid_Slave_Pos` column); `backup` says the
/// catch-up gate applies even while the primary is reachable.
pub(super) fn judge(
    rows: &Rows,
    gtid_slave_pos: Option<&str>,
    max_lag: Duration,
    backup: bool,
) -> Verdict {
    let mut worst = Verdict::Ok { lag: None };
    for r in 0..rows.rows.len() {
        let v = judge_row(rows, r, gtid_slave_pos, max_lag, backup);
        let rank = |v: &Verdict| match v {
            Verdict::Ok { .. } => 0,
            Verdict::CatchingUp(_) => 1,
            Verdict::Failed(_) => 2,
        };
        let more_lag = |a: &Verdict, b: &Verdict| match (a, b) {
            (Verdict::Ok { lag: a }, Verdict::Ok { lag: b }) => a > b,
            _ => false,
        };
        if rank(&v) > rank(&worst) || more_lag(&v, &worst) {
            worst = v;
        }
    }
    worst
}

fn judge_row(
    rows: &Rows,
    r: usize,
    gtid_slave_pos: Option<&str>,
    max_lag: Duration,
    backup: bool,
) -> Verdict {
    let get = |names: &[&str]| rows.get(r, names);
    let num = |names: &[&str]| get(names).and_then(|v| v.trim().parse::<u64>().ok());
    let source = get(&["Connection_name", "Channel_Name"])
        .filter(|n| !n.is_empty())
        .map(|n| format!(" (source \"{}\")", escape(n.as_bytes())))
        .unwrap_or_default();
    let sql_errno = num(&["Last_SQL_Errno"]).unwrap_or(0);
    if sql_errno != 0 {
        let msg = get(&["Last_SQL_Error"]).unwrap_or_default();
        return Verdict::Failed(format!(
            "replication broken{source}: SQL error {sql_errno}: {}",
            escape(msg.as_bytes())
        ));
    }
    if get(&["Slave_SQL_Running", "Replica_SQL_Running"]) != Some("Yes") {
        return Verdict::Failed(format!(
            "replication stopped{source}: SQL thread not running"
        ));
    }
    // Client-side errors (2000-2999: cannot connect, connection lost) mean
    // the primary is unreachable: judged by the backlog below. A server
    // error (1236: binlog purged...) means replication is broken.
    let io_errno = num(&["Last_IO_Errno"]).unwrap_or(0);
    if io_errno != 0 && !(2000..3000).contains(&io_errno) {
        let msg = get(&["Last_IO_Error"]).unwrap_or_default();
        return Verdict::Failed(format!(
            "replication broken{source}: IO error {io_errno}: {}",
            escape(msg.as_bytes())
        ));
    }
    let io_connected = get(&["Slave_IO_Running", "Replica_IO_Running"]) == Some("Yes");
    let lag = num(&["Seconds_Behind_Master", "Seconds_Behind_Source"]).filter(|_| io_connected);
    if let Some(l) = lag {
        if Duration::from_secs(l) > max_lag {
            return Verdict::Failed(format!("lag {l}s > {}", fmt_dur(max_lag)));
        }
    }
    if backup || !io_connected {
        if let Some(behind) = backlog(rows, r, gtid_slave_pos) {
            return Verdict::CatchingUp(format!(
                "catching up{source}: relay log not applied: {behind}"
            ));
        }
    }
    Verdict::Ok { lag }
}

/// What the replica received but has not applied, as text, or `None` if
/// nothing: by GTID (MariaDB: `Gtid_IO_Pos` vs `gtid_slave_pos`) when
/// both are known, else by binlog coordinates (received
/// `Master_Log_File`:`Read_Master_Log_Pos` vs applied
/// `Relay_Master_Log_File`:`Exec_Master_Log_Pos`).
pub(super) fn backlog(rows: &Rows, r: usize, gtid_slave_pos: Option<&str>) -> Option<String> {
    let get = |names: &[&str]| rows.get(r, names);
    let io_pos = get(&["Gtid_IO_Pos"]).filter(|p| !p.trim().is_empty());
    let slave_pos = gtid_slave_pos.or_else(|| get(&["Gtid_Slave_Pos"]));
    if let (Some(io), Some(applied)) = (io_pos, slave_pos) {
        let behind = gtid_behind(io, applied);
        return (behind > 0).then(|| format!("{behind} transactions behind"));
    }
    let read_file = get(&["Master_Log_File", "Source_Log_File"])?;
    let exec_file = get(&["Relay_Master_Log_File", "Relay_Source_Log_File"])?;
    let read = get(&["Read_Master_Log_Pos", "Read_Source_Log_Pos"])?
        .trim()
        .parse::<u64>()
        .ok()?;
    let exec = get(&["Exec_Master_Log_Pos", "Exec_Source_Log_Pos"])?
        .trim()
        .parse::<u64>()
        .ok()?;
    if read_file != exec_file {
        return Some(format!(
            "received up to {}:{read}, applied {}:{exec}",
            escape(read_file.as_bytes()),
            escape(exec_file.as_bytes())
        ));
    }
    (read > exec).then(|| format!("{} bytes behind", read - exec))
}

/// Transactions in `received` (a MariaDB GTID list `domain-server-seq,...`)
/// beyond `applied`, summed over domains. Unparsable entries are skipped.
pub(crate) fn gtid_behind(received: &str, applied: &str) -> u64 {
    let parse = |s: &str| -> Vec<(u32, u64)> {
        s.split(',')
            .take(256)
            .filter_map(|g| {
                let mut it = g.trim().split('-');
                let domain = it.next()?.parse().ok()?;
                let _server: u32 = it.next()?.parse().ok()?;
                let seq = it.next()?.parse().ok()?;
                it.next().is_none().then_some((domain, seq))
            })
            .collect()
    };
    let done = parse(applied);
    parse(received)
        .into_iter()
        .map(|(d, seq)| {
            let have = done
                .iter()
                .filter(|(dd, _)| *dd == d)
                .map(|(_, s)| *s)
                .max()
                .unwrap_or(0);
            seq.saturating_sub(have)
        })
        .fold(0u64, u64::saturating_add)
}

#[cfg(test)]
mod tests;

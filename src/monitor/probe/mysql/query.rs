//! One text-protocol query over a logged-in monitor session: COM_QUERY,
//! then the answer (OK, an error, or a text resultset) parsed by
//! [`Resultset`], a pure state machine fed one packet at a time so that
//! hostile replies are tested without a server. Bounded: at most
//! [`MAX_COLUMNS`] columns, [`MAX_ROWS`] rows, and each packet at most
//! `MAX_REPLY` bytes (the reader's bound).

use tokio::net::TcpStream;

use super::{error_finding, read_packet, send_packet};
use crate::monitor::probe::{Finding, escape};

const COM_QUERY: u8 = 0x03;
/// Most columns accepted (`SHOW ALL SLAVES STATUS` has about 70).
pub(super) const MAX_COLUMNS: usize = 256;
/// Most rows accepted (one per replication source).
pub(super) const MAX_ROWS: usize = 64;

/// A text resultset: column names and rows of optional (NULL) values.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Rows {
    pub(crate) columns: Vec<String>,
    pub(crate) rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    /// Row `r`'s value of the first column named any of `names` (MariaDB
    /// and MySQL 8 spell some differently); `None` for NULL or absent.
    pub(super) fn get(&self, r: usize, names: &[&str]) -> Option<&str> {
        let row = self.rows.get(r)?;
        let i = self
            .columns
            .iter()
            .position(|c| names.iter().any(|n| c.eq_ignore_ascii_case(n)))?;
        row.get(i)?.as_deref()
    }
}

/// Where the parser is in the answer.
#[derive(Debug, PartialEq, Eq)]
enum Stage {
    First,
    Columns(usize),
    ColumnsEof,
    Rows,
}

/// Feed the answer's packets in order; [`Resultset::feed`] returns the
/// rows once complete.
#[derive(Debug)]
pub(super) struct Resultset {
    stage: Stage,
    out: Rows,
}

impl Default for Resultset {
    fn default() -> Self {
        Resultset {
            stage: Stage::First,
            out: Rows::default(),
        }
    }
}

impl Resultset {
    pub(super) fn feed(&mut self, p: &[u8]) -> Result<Option<Rows>, Finding> {
        if p.first() == Some(&0xff) {
            return Err(error_finding(p));
        }
        match self.stage {
            Stage::First => {
                if p.first() == Some(&0x00) {
                    return Ok(Some(std::mem::take(&mut self.out))); // OK: no rows
                }
                let (n, used) = lenenc(p).ok_or_else(|| bad("column count", p))?;
                if used != p.len() || n == 0 || n > MAX_COLUMNS as u64 {
                    return Err(bad("column count", p));
                }
                self.stage = Stage::Columns(n as usize);
            }
            Stage::Columns(left) => {
                // catalog, schema, table, org_table, name, ...
                let mut at = 0;
                let mut name = None;
                for _ in 0..5 {
                    let (v, used) = lenenc_str(p.get(at..).unwrap_or_default())
                        .ok_or_else(|| bad("column definition", p))?;
                    name = v;
                    at += used;
                }
                let name = name.ok_or_else(|| bad("column definition", p))?;
                self.out
                    .columns
                    .push(String::from_utf8_lossy(name).into_owned());
                self.stage = if left <= 1 {
                    Stage::ColumnsEof
                } else {
                    Stage::Columns(left - 1)
                };
            }
            Stage::ColumnsEof => {
                if !is_eof(p) {
                    return Err(bad("end of columns", p));
                }
                self.stage = Stage::Rows;
            }
            Stage::Rows => {
                if is_eof(p) {
                    return Ok(Some(std::mem::take(&mut self.out)));
                }
                if self.out.rows.len() >= MAX_ROWS {
                    return Err(format!("more than {MAX_ROWS} rows").into());
                }
                let mut row = Vec::with_capacity(self.out.columns.len());
                let mut at = 0;
                for _ in 0..self.out.columns.len() {
                    let (v, used) =
                        lenenc_str(p.get(at..).unwrap_or_default()).ok_or_else(|| bad("row", p))?;
                    row.push(v.map(|v| String::from_utf8_lossy(v).into_owned()));
                    at += used;
                }
                if at != p.len() {
                    return Err(bad("row", p));
                }
                self.out.rows.push(row);
            }
        }
        Ok(None)
    }
}

/// Run `sql` and read its whole answer.
pub(super) async fn query(s: &mut TcpStream, sql: &str) -> Result<Rows, Finding> {
    let mut p = Vec::with_capacity(1 + sql.len());
    p.push(COM_QUERY);
    p.extend_from_slice(sql.as_bytes());
    send_packet(s, 0, &p).await?;
    let mut rs = Resultset::default();
    // Columns, two EOFs and the rows: never more packets than this.
    for _ in 0..MAX_COLUMNS + MAX_ROWS + 3 {
        let (_, p) = read_packet(s).await?;
        if let Some(rows) = rs.feed(&p)? {
            return Ok(rows);
        }
    }
    Err("resultset too long".into())
}

fn bad(what: &str, p: &[u8]) -> Finding {
    Finding::Failed(format!("bad {what} in query reply \"{}\"", escape(p)))
}

/// An EOF packet (`0xfe`, shorter than 9 bytes: longer is a lenenc int).
fn is_eof(p: &[u8]) -> bool {
    p.first() == Some(&0xfe) && p.len() < 9
}

/// A length-encoded integer and the bytes it took.
pub(super) fn lenenc(p: &[u8]) -> Option<(u64, usize)> {
    let width = match *p.first()? {
        b @ 0..=0xfa => return Some((u64::from(b), 1)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None, // 0xfb is NULL (a string's), 0xff an error
    };
    let bytes = p.get(1..1 + width)?;
    let v = bytes
        .iter()
        .rev()
        .fold(0u64, |acc, &b| acc << 8 | u64::from(b));
    Some((v, 1 + width))
}

/// A length-encoded string (`None` for NULL, 0xfb) and the bytes it took.
fn lenenc_str(p: &[u8]) -> Option<(Option<&[u8]>, usize)> {
    if p.first() == Some(&0xfb) {
        return Some((None, 1));
    }
    let (len, used) = lenenc(p)?;
    let len = usize::try_from(len).ok()?;
    let end = used.checked_add(len)?;
    Some((Some(p.get(used..end)?), end))
}

#[cfg(test)]
mod tests;

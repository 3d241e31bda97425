//! Replica verdicts over status rows, MariaDB's and MySQL 8's columns.

use super::*;

fn rows(pairs: &[(&str, Option<&str>)]) -> Rows {
    Rows {
        columns: pairs.iter().map(|(c, _)| c.to_string()).collect(),
        rows: vec![pairs.iter().map(|(_, v)| v.map(str::to_string)).collect()],
    }
}

const MAX: Duration = Duration::from_secs(5);

fn mariadb(io: &str, sql: &str, lag: Option<&str>, io_pos: &str, applied: &str) -> Rows {
    rows(&[
        ("Connection_name", Some("")),
        ("Slave_IO_Running", Some(io)),
        ("Slave_SQL_Running", Some(sql)),
        ("Last_IO_Errno", Some("0")),
        ("Last_SQL_Errno", Some("0")),
        ("Seconds_Behind_Master", lag),
        ("Gtid_IO_Pos", Some(io_pos)),
        ("Gtid_Slave_Pos", Some(applied)),
    ])
}

#[test]
fn lag_stopped_and_broken_replication_fail_with_the_reason() {
    let ok = mariadb("Yes", "Yes", Some("2"), "0-1-10", "0-1-10");
    assert_eq!(judge(&ok, None, MAX, false), Verdict::Ok { lag: Some(2) });
    assert_eq!(lag(&ok), Some(2));
    let lagging = mariadb("Yes", "Yes", Some("12"), "0-1-10", "0-1-10");
    assert_eq!(
        judge(&lagging, None, MAX, false),
        Verdict::Failed("lag 12s > 5s".into())
    );
    let stopped = mariadb("Yes", "No", None, "0-1-10", "0-1-4");
    assert_eq!(
        judge(&stopped, None, MAX, true),
        Verdict::Failed("replication stopped: SQL thread not running".into())
    );
    let mut broken = mariadb("Yes", "No", None, "0-1-10", "0-1-4");
    broken.columns.push("Last_SQL_Error".into());
    broken.rows[0].push(Some("Duplicate entry '1' for key 'PRIMARY'".into()));
    let i = broken
        .columns
        .iter()
        .position(|c| c == "Last_SQL_Errno")
        .unwrap_or(0);
    broken.rows[0][i] = Some("1062".into());
    assert_eq!(
        judge(&broken, None, MAX, false),
        Verdict::Failed(
            "replication broken: SQL error 1062: Duplicate entry '1' for key 'PRIMARY'".into()
        )
    );
    // Not a replica at all.
    assert_eq!(
        judge(&Rows::default(), None, MAX, false),
        Verdict::Ok { lag: None }
    );
}

#[test]
fn the_gate_holds_a_replica_that_has_not_applied_what_it_received() {
    // The primary died: IO thread reconnecting, lag NULL, 3 behind.
    let behind = mariadb("Connecting", "Yes", None, "0-1-13", "0-1-10");
    assert_eq!(
        judge(&behind, None, MAX, false),
        Verdict::CatchingUp("catching up: relay log not applied: 3 transactions behind".into())
    );
    // Applied everything it got: the best there is.
    let done = mariadb("Connecting", "Yes", None, "0-1-13", "0-1-13");
    assert_eq!(judge(&done, None, MAX, false), Verdict::Ok { lag: None });
    // Connected, within max_lag, behind: fine for a replica in the first
    // group, catching up for a backup.
    let busy = mariadb("Yes", "Yes", Some("0"), "0-1-13", "0-1-12");
    assert_eq!(judge(&busy, None, MAX, false), Verdict::Ok { lag: Some(0) });
    assert!(matches!(
        judge(&busy, None, MAX, true),
        Verdict::CatchingUp(_)
    ));
    // @@gtid_slave_pos given separately wins; several domains add up.
    assert_eq!(gtid_behind("0-1-13,1-2-7", "0-1-10,1-2-5"), 5);
    assert_eq!(gtid_behind("0-1-13", "0-1-20"), 0);
    assert_eq!(gtid_behind("garbage,0-1-x,-,,0-1-2-3", "0-1-1"), 0);
}

#[test]
fn mysql_8_columns_and_binlog_coordinates() {
    let r = rows(&[
        ("Replica_IO_Running", Some("No")),
        ("Replica_SQL_Running", Some("Yes")),
        ("Last_IO_Errno", Some("2003")),
        ("Last_SQL_Errno", Some("0")),
        ("Seconds_Behind_Source", None),
        ("Source_Log_File", Some("bin.000002")),
        ("Read_Source_Log_Pos", Some("900")),
        ("Relay_Source_Log_File", Some("bin.000002")),
        ("Exec_Source_Log_Pos", Some("600")),
    ]);
    assert_eq!(
        judge(&r, None, MAX, false),
        Verdict::CatchingUp("catching up: relay log not applied: 300 bytes behind".into())
    );
    // A server error on the IO thread is broken replication.
    let mut purged = r;
    purged.rows[0][2] = Some("1236".into());
    assert!(
        matches!(judge(&purged, None, MAX, false), Verdict::Failed(f) if f.contains("IO error 1236"))
    );
}

#[test]
fn read_only_must_match() {
    let one = Rows {
        columns: vec!["@@read_only".into()],
        rows: vec![vec![Some("1".into())]],
    };
    assert!(read_only(&one, true).is_ok());
    assert_eq!(
        read_only(&one, false),
        Err(Finding::Failed("read_only is 1, want 0".into()))
    );
    assert!(read_only(&Rows::default(), false).is_err());
}

//! Resultset parsing: real answers, and hostile ones never panic.

use super::*;

fn lstr(s: &str) -> Vec<u8> {
    let mut v = vec![s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

fn coldef(name: &str) -> Vec<u8> {
    let mut p = Vec::new();
    for part in ["def", "", "", "", name, name] {
        p.extend(lstr(part));
    }
    p.extend_from_slice(&[0x0c, 33, 0, 0, 0, 0, 0xfd, 0, 0, 0, 0, 0]);
    p
}

fn eof() -> Vec<u8> {
    vec![0xfe, 0, 0, 2, 0]
}

fn feed_all(packets: &[Vec<u8>]) -> Result<Option<Rows>, Finding> {
    let mut rs = Resultset::default();
    for p in packets {
        if let Some(rows) = rs.feed(p)? {
            return Ok(Some(rows));
        }
    }
    Ok(None)
}

#[test]
fn a_text_resultset_is_read_by_column_name() {
    let mut row = lstr("Yes");
    row.push(0xfb); // NULL
    let rows = feed_all(&[
        vec![2],
        coldef("Slave_SQL_Running"),
        coldef("Seconds_Behind_Master"),
        eof(),
        row,
        eof(),
    ])
    .unwrap()
    .unwrap();
    assert_eq!(
        rows.get(0, &["Replica_SQL_Running", "Slave_SQL_Running"]),
        Some("Yes")
    );
    assert_eq!(rows.get(0, &["Seconds_Behind_Master"]), None);
    assert_eq!(rows.get(1, &["Slave_SQL_Running"]), None);
    // No rows at all (not a replica), and a plain OK.
    let empty = feed_all(&[vec![1], coldef("a"), eof(), eof()])
        .unwrap()
        .unwrap();
    assert!(empty.rows.is_empty());
    assert_eq!(
        feed_all(&[vec![0, 0, 0, 2, 0]]).unwrap(),
        Some(Rows::default())
    );
    // An error answer is the server's error.
    let mut e = vec![0xff, 0xcb, 0x04];
    e.extend_from_slice(b"#42000Access denied; you need REPLICA MONITOR");
    assert_eq!(
        feed_all(&[e]),
        Err(Finding::Failed(
            "MySQL error 1227: Access denied; you need REPLICA MONITOR".into()
        ))
    );
}

#[test]
fn garbage_replies_are_bounded_and_never_panic() {
    let cases: Vec<Vec<Vec<u8>>> = vec![
        vec![vec![]],
        vec![vec![0xfb]],
        vec![vec![0xfc, 0xff]],
        vec![vec![0xfe, 1, 2, 3, 4, 5, 6, 7, 8]], // 2^64-ish columns
        vec![vec![0xfc, 0x01, 0x01]],             // 257 columns
        vec![vec![1], vec![0xfd, 0xff, 0xff, 0xff]],
        vec![vec![1], vec![3, b'd', b'e']],
        vec![vec![1], coldef("a"), vec![0x00]],
        vec![vec![1], coldef("a"), eof(), vec![0xfc, 0xff, 0xff, b'x']],
        vec![vec![1], coldef("a"), eof(), vec![1, b'x', b'y']],
        vec![vec![1], coldef("a"), eof(), vec![0xff]],
        vec![vec![2, 0]],
    ];
    for c in &cases {
        assert!(feed_all(c).is_err(), "{c:?}");
    }
    // Too many rows.
    let mut many = vec![vec![1], coldef("a"), eof()];
    many.extend((0..=MAX_ROWS).map(|_| lstr("x")));
    assert!(feed_all(&many).is_err());
    // Pseudo-random bytes: any verdict, no panic.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..2000 {
        let mut rs = Resultset::default();
        for _ in 0..6 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let p: Vec<u8> = (0..len).map(|i| (x >> (i % 8 * 8)) as u8).collect();
            if rs.feed(&p).is_err() {
                break;
            }
        }
    }
}

#[test]
fn length_encoded_integers() {
    assert_eq!(lenenc(&[0xfa]), Some((250, 1)));
    assert_eq!(lenenc(&[0xfc, 0x34, 0x12]), Some((0x1234, 3)));
    assert_eq!(lenenc(&[0xfd, 1, 2, 3]), Some((0x030201, 4)));
    assert_eq!(lenenc(&[0xfe, 1, 0, 0, 0, 0, 0, 0, 0]), Some((1, 9)));
    assert_eq!(lenenc(&[0xfe, 1]), None);
    assert_eq!(lenenc(&[0xfb]), None);
    assert_eq!(lenenc(&[]), None);
}

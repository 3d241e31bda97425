//! Rise/fall table tests.

use super::*;

/// Run a sequence ('S' pass, 'F' fail); return the flips as (index, up).
fn run(seq: &str, p: RiseFallParams, start_up: bool) -> Vec<(usize, bool)> {
    let mut m = RiseFall {
        up: start_up,
        ..Default::default()
    };
    seq.chars()
        .enumerate()
        .filter_map(|(i, c)| m.observe(c == 'S', &p).map(|up| (i, up)))
        .collect()
}

#[test]
#[allow(clippy::type_complexity)]
fn rise_fall_table() {
    let p = RiseFallParams::default(); // rise 2, fall 3
    let cases: &[(&str, bool, &[(usize, bool)])] = &[
        ("FFS", true, &[]),
        ("FFF", true, &[(2, false)]),
        ("FFSFFS", true, &[]),
        ("FFFF", true, &[(2, false)]),
        ("FFFSS", true, &[(2, false), (4, true)]),
        ("FFFSFS", true, &[(2, false)]),
        ("SS", false, &[(1, true)]),
        ("SFSFSF", false, &[]),
        ("SSSFFFSSS", false, &[(1, true), (5, false), (7, true)]),
        ("", true, &[]),
    ];
    for (seq, start, want) in cases {
        assert_eq!(
            run(seq, p, *start),
            want.to_vec(),
            "seq {seq} start_up {start}"
        );
    }
}

#[test]
fn alternating_results_never_flip() {
    let p = RiseFallParams::default();
    let seq: String = "SF".repeat(100);
    assert!(run(&seq, p, true).is_empty());
    assert!(run(&seq, p, false).is_empty());
}

#[test]
fn three_pass_three_fail_cycles_flip_once_per_half_cycle() {
    let p = RiseFallParams {
        rise: 3,
        fall: 3,
        ..Default::default()
    };
    let flips = run(&"FFFSSS".repeat(5), p, true);
    assert_eq!(flips.len(), 10);
}

#[test]
fn noenable_and_nodisable_hold_the_state() {
    let ne = RiseFallParams {
        noenable: true,
        ..Default::default()
    };
    assert_eq!(run("FFFSSSS", ne, true), vec![(2, false)]);
    let nd = RiseFallParams {
        nodisable: true,
        ..Default::default()
    };
    assert!(run("FFFFFF", nd, true).is_empty());
    assert_eq!(run("SS", nd, false), vec![(1, true)]);
}

#[test]
fn rise_or_fall_of_zero_acts_as_one() {
    let p = RiseFallParams {
        rise: 0,
        fall: 0,
        ..Default::default()
    };
    assert_eq!(run("FS", p, true), vec![(0, false), (1, true)]);
}

#[test]
fn force_down_and_up() {
    let mut m = RiseFall::default();
    assert!(m.force_down());
    assert!(!m.force_down());
    assert!(!m.up);
    assert!(m.force_up());
    assert_eq!(m, RiseFall::default());
}

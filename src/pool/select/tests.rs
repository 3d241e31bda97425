//! Table tests of selection over plain values (pingora's `BackendSelection`
//! style): given each candidate's state, weight and connections and the
//! policy, the expected pick or failover order.

use crate::atomic_enum::U8Enum;
use std::cell::Cell;

use super::*;

/// A backend as plain data; `usable` is a Cell so a test can take it down
/// in the middle of a walk.
#[derive(Debug)]
struct B {
    usable: Cell<bool>,
    weight: u32,
    maxc: u32,
    conns: u32,
}

impl Backend for B {
    fn usable(&self) -> bool {
        self.usable.get()
    }
    fn weight(&self) -> u32 {
        self.weight
    }
    fn maxc(&self) -> u32 {
        self.maxc
    }
    fn conns(&self) -> u32 {
        self.conns
    }
}

/// Up, weight 1, no limit.
fn up() -> B {
    B {
        usable: Cell::new(true),
        weight: 1,
        maxc: 0,
        conns: 0,
    }
}
fn down() -> B {
    B {
        usable: Cell::new(false),
        ..up()
    }
}
fn weight(w: u32) -> B {
    B { weight: w, ..up() }
}
fn full(maxc: u32, conns: u32) -> B {
    B {
        maxc,
        conns,
        ..up()
    }
}

struct G {
    backends: Vec<B>,
    sel: Selector,
}

impl Tier for G {
    type Backend = B;
    fn backends(&self) -> &[B] {
        &self.backends
    }
    fn selector(&self) -> &Selector {
        &self.sel
    }
}

fn group(policy: Policy, backends: Vec<B>) -> G {
    let sel = Selector::new(policy, backends.len());
    G { backends, sel }
}

fn rr(backends: Vec<B>) -> G {
    group(Policy::RoundRobin, backends)
}

#[test]
fn eligibility_table() {
    let cases: &[(B, bool)] = &[
        (up(), true),
        (down(), false),
        (weight(0), false),
        (weight(7), true),
        (full(2, 1), true),
        (full(2, 2), false),
        (full(2, 3), false),
        (full(0, 1000), true),
    ];
    for (i, (b, want)) in cases.iter().enumerate() {
        assert_eq!(b.eligible(), *want, "case {i}: {b:?}");
    }
}

#[test]
fn round_robin_picks_the_tick_th_eligible_backend() {
    // (backends, tick, pick)
    let cases: Vec<(Vec<B>, usize, Option<usize>)> = vec![
        (vec![up(), up(), up()], 0, Some(0)),
        (vec![up(), up(), up()], 1, Some(1)),
        (vec![up(), up(), up()], 5, Some(2)),
        (vec![down(), up(), up()], 0, Some(1)),
        (vec![down(), up(), up()], 1, Some(2)),
        (vec![down(), up(), full(1, 1)], 7, Some(1)),
        (vec![down(), down()], 3, None),
        (vec![], 0, None),
    ];
    for (i, (bs, tick, want)) in cases.iter().enumerate() {
        assert_eq!(rr_pick(bs, || *tick), *want, "case {i}");
    }
}

#[test]
fn round_robin_takes_no_tick_when_nothing_is_eligible() {
    let mut taken = false;
    assert_eq!(
        rr_pick(&[down()], || {
            taken = true;
            0
        }),
        None
    );
    assert!(!taken, "the counter must not advance");
}

#[test]
fn smooth_weighted_round_robin_sequences() {
    // (weights as backends, picks expected from a fresh state)
    let cases: Vec<(Vec<B>, Vec<usize>)> = vec![
        // nginx: a a b a c a a for 5:1:1.
        (
            vec![weight(5), weight(1), weight(1)],
            vec![0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0],
        ),
        (vec![weight(2), weight(1)], vec![0, 1, 0, 0, 1, 0]),
        // An ineligible heavy backend is skipped; the rest alternate.
        (vec![down(), weight(2), weight(2)], vec![1, 2, 1, 2]),
        (vec![weight(3), weight(0), weight(1)], vec![0, 0, 2, 0]),
    ];
    for (i, (bs, want)) in cases.iter().enumerate() {
        let mut cw = Vec::new();
        let got: Vec<usize> = (0..want.len())
            .filter_map(|_| swrr_pick(&mut cw, bs))
            .collect();
        assert_eq!(&got, want, "case {i}");
    }
    assert_eq!(swrr_pick(&mut Vec::new(), &[down(), down()]), None);
}

#[test]
fn selector_start_by_policy() {
    // (policy, backends, client hash, first start)
    let cases: Vec<(Policy, Vec<B>, u32, Option<usize>)> = vec![
        (Policy::RoundRobin, vec![up(), up()], 0, Some(0)),
        (Policy::RoundRobin, vec![down(), up()], 0, Some(1)),
        (Policy::RoundRobin, vec![down(), down()], 0, None),
        // A hash group names its hashed backend even when it is down (the
        // walk then skips it).
        (Policy::Hash, vec![up(), up(), up()], 7, Some(1)),
        (Policy::Hash, vec![up(), down(), up()], 7, Some(1)),
        (Policy::Hash, vec![], 7, None),
        // Any weight other than 1: smooth weighted round robin.
        (Policy::RoundRobin, vec![weight(1), weight(3)], 0, Some(1)),
    ];
    for (i, (policy, bs, hash, want)) in cases.iter().enumerate() {
        let sel = Selector::new(*policy, bs.len());
        assert_eq!(sel.start(bs, *hash), *want, "case {i}");
    }
}

/// The whole walk as (group, index) pairs.
fn walk(tiers: &[G], floor: usize, hash: u32, hash_failover: bool) -> Vec<(usize, usize)> {
    let mut w = Walk::new(floor, tiers.len(), hash, hash_failover);
    std::iter::from_fn(|| w.next(tiers)).collect()
}

#[test]
fn failover_walk_table() {
    type Case = (fn() -> Vec<G>, usize, u32, bool, Vec<(usize, usize)>);
    let cases: Vec<Case> = vec![
        // The chosen channel, then its group's others, then later groups.
        (
            || vec![rr(vec![up(), up()]), rr(vec![up()])],
            0,
            0,
            false,
            vec![(0, 0), (0, 1), (1, 0)],
        ),
        // Ineligible channels are skipped; an empty group passes on.
        (
            || vec![rr(vec![down(), full(1, 1)]), rr(vec![up(), down(), up()])],
            0,
            0,
            false,
            vec![(1, 0), (1, 2)],
        ),
        // Manual failback's floor: floor group first, lower ones last.
        (
            || vec![rr(vec![up()]), rr(vec![up()]), rr(vec![up()])],
            1,
            0,
            false,
            vec![(1, 0), (2, 0), (0, 0)],
        ),
        // A floor past the last group is clamped to it.
        (
            || vec![rr(vec![up()]), rr(vec![up()])],
            9,
            0,
            false,
            vec![(1, 0), (0, 0)],
        ),
        // Hash without -H: only the hashed channel, then the backup.
        (
            || vec![group(Policy::Hash, vec![up(), up(), up()]), rr(vec![up()])],
            0,
            2,
            false,
            vec![(0, 2), (1, 0)],
        ),
        (
            || {
                vec![
                    group(Policy::Hash, vec![up(), up(), down()]),
                    rr(vec![up()]),
                ]
            },
            0,
            2,
            false,
            vec![(1, 0)],
        ),
        // Hash with -H: the hashed one, then the group's others in order.
        (
            || vec![group(Policy::Hash, vec![up(), up(), up()]), rr(vec![up()])],
            0,
            2,
            true,
            vec![(0, 2), (0, 0), (0, 1), (1, 0)],
        ),
        (|| vec![], 0, 0, false, vec![]),
    ];
    for (i, (tiers, floor, hash, hf, want)) in cases.into_iter().enumerate() {
        assert_eq!(walk(&tiers(), floor, hash, hf), want, "case {i}");
    }
}

#[test]
fn the_walk_rechecks_eligibility_at_each_step() {
    let tiers = vec![rr(vec![up(), up(), up()]), rr(vec![up()])];
    let mut w = Walk::new(0, 2, 0, false);
    assert_eq!(w.next(&tiers), Some((0, 0)));
    // Taken down (e.g. by -a) after the walk started: skipped.
    tiers[0].backends[1].usable.set(false);
    assert_eq!(w.next(&tiers), Some((0, 2)));
    assert_eq!(w.next(&tiers), Some((1, 0)));
    assert_eq!(w.next(&tiers), None);
}

#[test]
fn an_unreached_backup_group_keeps_its_round_robin_position() {
    let tiers = vec![rr(vec![up()]), rr(vec![up(), up()])];
    for _ in 0..3 {
        let mut w = Walk::new(0, 2, 0, false);
        assert_eq!(w.next(&tiers), Some((0, 0)));
    }
    tiers[0].backends[0].usable.set(false);
    let first = |tiers: &[G]| Walk::new(0, 2, 0, false).next(tiers);
    assert_eq!(first(&tiers), Some((1, 0)));
    assert_eq!(first(&tiers), Some((1, 1)));
}

#[test]
fn keep_position_continues_the_round_robin() {
    let old = rr(vec![up(), up(), up()]);
    assert_eq!(old.sel.start(&old.backends, 0), Some(0));
    assert_eq!(old.sel.start(&old.backends, 0), Some(1));
    let new = rr(vec![up(), up(), up()]);
    new.sel.keep_position(&old.sel);
    assert_eq!(new.sel.start(&new.backends, 0), Some(2));
}

/// Up with `conns` live connections and weight `w`.
fn load(conns: u32, w: u32) -> B {
    B {
        conns,
        weight: w,
        ..up()
    }
}

#[test]
fn least_connections_picks_the_lowest_load_per_weight() {
    // (backends, tick, pick)
    let cases: Vec<(Vec<B>, usize, Option<usize>)> = vec![
        (vec![load(3, 1), load(1, 1), load(2, 1)], 0, Some(1)),
        // Connects in progress count like any connection (the counter
        // holds both): the slow one with a pile of connects is avoided.
        (vec![load(9, 1), load(0, 1)], 0, Some(1)),
        // Weights: 4/2 = 2 beats 3/1 = 3.
        (vec![load(3, 1), load(4, 2)], 0, Some(1)),
        // 2/3 < 1/1: cross-multiplied, no rounding.
        (vec![load(1, 1), load(2, 3)], 0, Some(1)),
        // 3/3 == 1/1: a tie.
        (vec![load(1, 1), load(3, 3)], 1, Some(1)),
        // Ties go round robin over the tied only.
        (vec![load(1, 1), load(5, 1), load(1, 1)], 0, Some(0)),
        (vec![load(1, 1), load(5, 1), load(1, 1)], 1, Some(2)),
        (vec![load(1, 1), load(5, 1), load(1, 1)], 2, Some(0)),
        (vec![up(), up(), up()], 4, Some(1)),
        // Ineligible backends are never picked, however idle.
        (vec![down(), load(7, 1)], 0, Some(1)),
        (vec![weight(0), load(7, 1)], 0, Some(1)),
        (vec![full(2, 2), load(7, 1)], 0, Some(1)),
        (vec![full(3, 2), load(7, 1)], 0, Some(0)),
        (vec![down(), down()], 0, None),
        (vec![], 0, None),
        // The largest counts do not overflow.
        (
            vec![load(u32::MAX, u32::MAX), load(u32::MAX - 1, u32::MAX)],
            0,
            Some(1),
        ),
    ];
    for (i, (bs, tick, want)) in cases.iter().enumerate() {
        assert_eq!(least_conn_pick(bs, || *tick), *want, "case {i}");
    }
}

#[test]
fn least_connections_takes_a_tick_only_for_a_tie() {
    let taken = Cell::new(0);
    let tick = || {
        taken.set(taken.get() + 1);
        0
    };
    assert_eq!(least_conn_pick(&[load(1, 1), load(2, 1)], tick), Some(0));
    assert_eq!(least_conn_pick(&[down()], tick), None);
    assert_eq!(taken.get(), 0);
    assert_eq!(least_conn_pick(&[load(1, 1), load(1, 1)], tick), Some(0));
    assert_eq!(taken.get(), 1);
}

#[test]
fn a_least_connections_group_rotates_its_ties_and_fails_over_in_order() {
    let g = group(Policy::LeastConn, vec![up(), load(1, 1), up()]);
    let starts: Vec<_> = (0..4).map(|_| g.sel.start(&g.backends, 0)).collect();
    assert_eq!(starts, [Some(0), Some(2), Some(0), Some(2)]);
    // The walk: the least loaded, then the group's others, then the backup.
    let tiers = vec![
        group(Policy::LeastConn, vec![load(2, 1), load(1, 1), load(3, 1)]),
        rr(vec![up()]),
    ];
    assert_eq!(walk(&tiers, 0, 0, false), [(0, 1), (0, 2), (0, 0), (1, 0)]);
}

#[test]
fn every_policy_survives_its_atomic_and_only_hash_limits_the_walk() {
    for &p in Policy::ALL {
        let sel = Selector::new(Policy::RoundRobin, 1);
        sel.set_policy(p);
        assert_eq!(sel.policy(), p);
        let tiers = vec![group(p, vec![up(), up()])];
        let n = walk(&tiers, 0, 1, false).len();
        let want = match p {
            Policy::Hash => 1,
            Policy::RoundRobin | Policy::LeastConn => 2,
        };
        assert_eq!(n, want, "{p:?}");
    }
}

#[test]
fn a_routed_chain_walks_its_group_and_the_later_ones_never_earlier() {
    let tiers = vec![rr(vec![up()]), rr(vec![up()]), rr(vec![up()])];
    let chain = |from| {
        let mut w = Walk::new(0, 3, 0, false).chain(from);
        std::iter::from_fn(|| w.next(&tiers)).collect::<Vec<_>>()
    };
    assert_eq!(chain(1), vec![(1, 0), (2, 0)]);
    assert_eq!(chain(2), vec![(2, 0)]);
    assert_eq!(chain(0), vec![(0, 0), (1, 0), (2, 0)]);
    // With manual failback's floor elsewhere, the route still decides.
    let mut w = Walk::new(2, 3, 0, false).chain(0);
    assert_eq!(w.next(&tiers), Some((0, 0)));
    tiers[1].backends[0].usable.set(false);
    assert_eq!(chain(1), vec![(2, 0)]);
}

//! The rise/fall state machine, pure and table-tested. A channel goes down
//! after `fall` consecutive failures and up after `rise` consecutive passes;
//! an opposite result resets the streak. Who feeds it: the monitor (probe
//! results) and the data path (failed connects, passive detection).

/// Hysteresis parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiseFallParams {
    pub rise: u32,
    pub fall: u32,
    /// `noenable`: passes never bring a channel up.
    pub noenable: bool,
    /// `nodisable`: failures never take a channel down.
    pub nodisable: bool,
}

impl Default for RiseFallParams {
    fn default() -> Self {
        RiseFallParams {
            rise: 2,
            fall: 3,
            noenable: false,
            nodisable: false,
        }
    }
}

/// Streak counters and the current verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RiseFall {
    pub up: bool,
    pub passes: u32,
    pub failures: u32,
}

impl Default for RiseFall {
    /// Channels start up: start-up does not wait for `rise`.
    fn default() -> Self {
        RiseFall {
            up: true,
            passes: 0,
            failures: 0,
        }
    }
}

impl RiseFall {
    /// Feed one result; returns `Some(new_up)` when the verdict flips.
    pub fn observe(&mut self, ok: bool, p: &RiseFallParams) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.passes = self.passes.saturating_add(1);
            if !self.up && !p.noenable && self.passes >= p.rise.max(1) {
                self.up = true;
                return Some(true);
            }
        } else {
            self.passes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.up && !p.nodisable && self.failures >= p.fall.max(1) {
                self.up = false;
                return Some(false);
            }
        }
        None
    }

    /// Take the channel down at once (autodisable `-a`).
    pub fn force_down(&mut self) -> bool {
        let flipped = self.up;
        self.up = false;
        self.passes = 0;
        flipped
    }

    /// Bring the channel up at once (operator `enable`).
    pub fn force_up(&mut self) -> bool {
        let flipped = !self.up;
        *self = RiseFall::default();
        flipped
    }
}

#[cfg(test)]
mod tests {
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
}

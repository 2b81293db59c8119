//! The accumulator: counts per verdict in fine time buckets, re-binned at the end into the
//! buckets shown, with the numbers the shape is decided on.

use std::collections::BTreeMap;

use super::attempts::{ConnFacts, FailureMark, Family, family};
use super::shape::{Cluster, Kind, Load, Shape, ShapeFacts, classify};
use super::{DAY, HOUR, MAX_BUCKETS, MIN, MS, SEC, VERDICTS};
use crate::diagnose::{Outcome, Verdict};

/// Fine buckets kept while reading: their span (in buckets) stays below this.
pub(super) const MAX_FINE_SPAN: i64 = 4096;

/// Widths of the fine buckets, each a multiple of the one before.
const FINE_WIDTHS: [i64; 12] = [
    MS,
    10 * MS,
    100 * MS,
    SEC,
    10 * SEC,
    MIN,
    10 * MIN,
    HOUR,
    DAY,
    10 * DAY,
    100 * DAY,
    1000 * DAY,
];

/// Round widths for the buckets shown; the one used is a multiple of the fine width.
const SHOWN_WIDTHS: [i64; 33] = [
    MS,
    2 * MS,
    5 * MS,
    10 * MS,
    20 * MS,
    50 * MS,
    100 * MS,
    200 * MS,
    500 * MS,
    SEC,
    2 * SEC,
    5 * SEC,
    10 * SEC,
    15 * SEC,
    30 * SEC,
    MIN,
    2 * MIN,
    5 * MIN,
    10 * MIN,
    15 * MIN,
    30 * MIN,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    5 * DAY,
    10 * DAY,
    100 * DAY,
    1000 * DAY,
    10_000 * DAY,
];

/// Counts in one bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cell {
    /// Request attempts per verdict (`Ok` at index 0).
    pub by_verdict: [u64; VERDICTS],
    /// Connections that started / ended in the bucket.
    pub starts: u64,
    pub ends: u64,
    /// Late connects that started in the bucket.
    pub late: u64,
}

impl Cell {
    fn add(&mut self, o: &Cell) {
        for (a, b) in self.by_verdict.iter_mut().zip(o.by_verdict) {
            *a += b;
        }
        self.starts += o.starts;
        self.ends += o.ends;
        self.late += o.late;
    }

    pub(crate) fn ok(&self) -> u64 {
        self.by_verdict[Verdict::Ok as usize]
    }

    pub(crate) fn failed(&self) -> u64 {
        failures(&self.by_verdict)
    }

    pub fn attempts(&self) -> u64 {
        self.by_verdict.iter().sum()
    }
}

/// Of counts per verdict, those of failures.
pub(in crate::incident) fn failures(by_verdict: &[u64; VERDICTS]) -> u64 {
    Verdict::ALL
        .iter()
        .filter(|v| v.is_failure())
        .map(|&v| by_verdict[v as usize])
        .sum()
}

/// Buckets of one width, epoch-aligned, keyed by `time.div_euclid(width)`.
#[derive(Clone, Debug, Default)]
pub(super) struct Buckets {
    rung: usize,
    pub(super) cells: BTreeMap<i64, Cell>,
}

impl Buckets {
    fn width(&self) -> i64 {
        FINE_WIDTHS[self.rung]
    }

    /// The cell of time `t`, made coarser first if `t` would stretch the span too far.
    fn cell(&mut self, t: i64) -> &mut Cell {
        loop {
            let idx = t.div_euclid(self.width());
            let lo = self.cells.keys().next().map_or(idx, |&k| k.min(idx));
            let hi = self.cells.keys().next_back().map_or(idx, |&k| k.max(idx));
            if hi - lo < MAX_FINE_SPAN || self.rung + 1 == FINE_WIDTHS.len() {
                return self.cells.entry(idx).or_default();
            }
            self.coarsen();
        }
    }

    fn coarsen(&mut self) {
        let old = self.width();
        self.rung += 1;
        let new = self.width();
        let mut cells = BTreeMap::new();
        for (k, c) in std::mem::take(&mut self.cells) {
            let e: &mut Cell = cells.entry((k * old).div_euclid(new)).or_default();
            e.add(&c);
        }
        self.cells = cells;
    }
}

/// The accumulator (see the module comment).
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// Seen by the tests, which check that it stays bounded.
    pub(super) fine: Buckets,
    totals: [u64; VERDICTS],
    families: FamilyCounts,
    connections: u64,
    first_failure: Option<FailureMark>,
    last_failure: Option<FailureMark>,
    /// First and last attempt.
    range: Option<(i64, i64)>,
}

/// Failures per [`Family`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FamilyCounts {
    pub cut: u64,
    pub slow: u64,
    pub network: u64,
    pub race: u64,
}

impl Timeline {
    pub fn add(&mut self, f: &ConnFacts<'_>) {
        self.connections += 1;
        self.fine.cell(f.start_ns).starts += 1;
        if f.late_connect {
            self.fine.cell(f.start_ns).late += 1;
        }
        self.fine.cell(f.end_ns).ends += 1;
        for a in &f.attempts {
            self.fine.cell(a.at_ns).by_verdict[a.verdict as usize] += 1;
            self.totals[a.verdict as usize] += 1;
            self.range = Some(match self.range {
                Some((lo, hi)) => (lo.min(a.at_ns), hi.max(a.at_ns)),
                None => (a.at_ns, a.at_ns),
            });
        }
        let Some(m) = f.finding.as_ref().filter(|m| m.verdict.is_failure()) else {
            return;
        };
        match family(m.verdict, m.blame) {
            Family::Cut => self.families.cut += 1,
            Family::Slow => self.families.slow += 1,
            Family::Network => self.families.network += 1,
            Family::Race => self.families.race += 1,
        }
        let key = |m: &FailureMark| (m.at_ns, m.id);
        if self.first_failure.as_ref().is_none_or(|f| key(m) < key(f)) {
            self.first_failure = Some(m.clone());
        }
        if self.last_failure.as_ref().is_none_or(|f| key(m) > key(f)) {
            self.last_failure = Some(m.clone());
        }
    }

    /// The buckets shown and the shape of the failures.
    pub fn finish(self) -> TimelineSummary {
        let Some((lo, hi)) = self.range else {
            return TimelineSummary {
                totals: self.totals,
                connections: self.connections,
                bucket_ns: SEC,
                buckets: Vec::new(),
                first_failure: None,
                last_failure: None,
                shape: Shape {
                    kind: Kind::None,
                    facts: ShapeFacts::default(),
                },
            };
        };
        let fine_w = self.fine.width();
        let window = self.window_counts();
        let width = shown_width(fine_w, lo, hi);
        // Re-bin every cell (those outside the range too: connections open before it count).
        let mut shown: BTreeMap<i64, Cell> = BTreeMap::new();
        for (k, c) in &self.fine.cells {
            shown.entry((k * fine_w).div_euclid(width)).or_default().add(c);
        }
        let (first, last) = (lo.div_euclid(width), hi.div_euclid(width));
        let mut open: i64 = 0;
        let mut buckets = Vec::with_capacity((last - first + 1) as usize);
        let mut cells = shown.iter().peekable();
        for b in first..=last {
            let mut cell = Cell::default();
            while let Some(&(&k, c)) = cells.peek() {
                if k > b {
                    break;
                }
                if k < b {
                    open += c.starts as i64 - c.ends as i64;
                } else {
                    cell = *c;
                }
                cells.next();
            }
            buckets.push(Bucket {
                start_ns: b * width,
                active: (open.max(0) as u64) + cell.starts,
                cell,
            });
            open += cell.starts as i64 - cell.ends as i64;
        }
        let facts = self.shape_facts(&buckets, width, window, (lo, hi));
        TimelineSummary {
            totals: self.totals,
            connections: self.connections,
            bucket_ns: width,
            buckets,
            shape: Shape {
                kind: classify(&facts),
                facts,
            },
            first_failure: self.first_failure,
            last_failure: self.last_failure,
        }
    }

    /// Healthy requests, all attempts and late connects in the fine buckets from the first
    /// failure to the last; the first healthy request after the last failure; late connects
    /// from the first failure up to it.
    fn window_counts(&self) -> Window {
        let (Some(f), Some(l)) = (&self.first_failure, &self.last_failure) else {
            return Window::default();
        };
        let w = self.fine.width();
        let (fi, li) = (f.at_ns.div_euclid(w), l.at_ns.div_euclid(w));
        let mut win = Window::default();
        for (&k, c) in self.fine.cells.range(fi..) {
            if k <= li {
                win.ok += c.ok();
                win.attempts += c.attempts();
                win.late += c.late;
            } else {
                win.late += c.late;
                if c.ok() > 0 {
                    win.back_ns = Some(k * w);
                    break;
                }
            }
        }
        win
    }

    fn shape_facts(&self, buckets: &[Bucket], width: i64, win: Window, (lo, hi): (i64, i64)) -> ShapeFacts {
        let failed: u64 = buckets.iter().map(|b| b.cell.failed()).sum();
        let ok: u64 = buckets.iter().map(|b| b.cell.ok()).sum();
        let all: u64 = buckets.iter().map(|b| b.cell.attempts()).sum();
        // Load around each failure and each healthy request: the other attempts in its bucket,
        // and the connections open during it (its own not counted).
        let mean = |weight: &dyn Fn(&Bucket) -> u64, load: &dyn Fn(&Bucket) -> u64| {
            let n: u64 = buckets.iter().map(weight).sum();
            let s: f64 = buckets
                .iter()
                .map(|b| weight(b) as f64 * load(b).saturating_sub(1) as f64)
                .sum();
            if n == 0 { 0.0 } else { s / n as f64 }
        };
        let load = Load {
            requests_at_failure: mean(&|b| b.cell.failed(), &|b| b.cell.attempts()),
            requests_at_success: mean(&|b| b.cell.ok(), &|b| b.cell.attempts()),
            connections_at_failure: mean(&|b| b.cell.failed(), &|b| b.active),
            connections_at_success: mean(&|b| b.cell.ok(), &|b| b.active),
        };
        let outcome = |o: Outcome| -> u64 {
            Verdict::ALL
                .iter()
                .filter(|v| v.outcome() == o)
                .map(|&v| self.totals[v as usize])
                .sum()
        };
        ShapeFacts {
            failed,
            ok,
            attempts: all,
            abandoned: outcome(Outcome::Abandoned),
            not_judged: outcome(Outcome::NotJudged),
            families: self.families,
            verdicts: Verdict::ALL
                .iter()
                .filter(|v| v.is_failure() && self.totals[**v as usize] > 0)
                .count() as u64,
            first_ns: self.first_failure.as_ref().map_or(lo, |f| f.at_ns),
            last_ns: self.last_failure.as_ref().map_or(hi, |f| f.at_ns),
            traffic: (lo, hi),
            window_ok: win.ok,
            window_attempts: win.attempts,
            back_ns: win.back_ns,
            late_connects: win.late,
            load,
            cluster: cluster(buckets, failed, width),
        }
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Window {
    ok: u64,
    attempts: u64,
    late: u64,
    back_ns: Option<i64>,
}

/// The smallest round width, a multiple of the fine one, that shows `lo..=hi` in at most
/// [`MAX_BUCKETS`] buckets.
fn shown_width(fine: i64, lo: i64, hi: i64) -> i64 {
    let fits = |w: i64| hi.div_euclid(w) - lo.div_euclid(w) < MAX_BUCKETS;
    SHOWN_WIDTHS
        .into_iter()
        .find(|&w| w >= fine && w % fine == 0 && fits(w))
        .unwrap_or_else(|| {
            let span = hi.div_euclid(fine) - lo.div_euclid(fine) + 1;
            fine.saturating_mul(((span + MAX_BUCKETS - 2) / (MAX_BUCKETS - 1)).max(1))
        })
}

/// The shortest run of buckets that holds 80 % of the failures, with the failure rate in it and
/// outside it.
fn cluster(buckets: &[Bucket], failed: u64, width: i64) -> Option<Cluster> {
    if failed == 0 || buckets.is_empty() {
        return None;
    }
    let need = (failed * 4).div_ceil(5);
    let (mut best, mut i, mut sum) = (None::<(usize, usize)>, 0usize, 0u64);
    for j in 0..buckets.len() {
        sum += buckets[j].cell.failed();
        while sum - buckets[i].cell.failed() >= need && i < j {
            sum -= buckets[i].cell.failed();
            i += 1;
        }
        if sum >= need && best.is_none_or(|(a, b)| j - i < b - a) {
            best = Some((i, j));
        }
    }
    let (a, b) = best?;
    let inside = &buckets[a..=b];
    let sum = |bs: &[Bucket], f: &dyn Fn(&Cell) -> u64| bs.iter().map(|b| f(&b.cell)).sum::<u64>();
    let fail_in = sum(inside, &Cell::failed);
    let att_in = sum(inside, &Cell::attempts);
    let att_all = sum(buckets, &Cell::attempts);
    Some(Cluster {
        start_ns: buckets[a].start_ns,
        end_ns: buckets[b].start_ns + width,
        buckets: (b - a + 1) as u64,
        of_buckets: buckets.len() as u64,
        failures: fail_in,
        attempts: att_in,
        failures_outside: failed - fail_in,
        attempts_outside: att_all - att_in,
    })
}

/// A bucket shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket {
    pub start_ns: i64,
    pub cell: Cell,
    /// Connections open at some time during the bucket.
    pub active: u64,
}

/// What [`Timeline::finish`] gives.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineSummary {
    /// Attempts per verdict.
    pub totals: [u64; VERDICTS],
    pub connections: u64,
    /// Width of the buckets shown.
    pub bucket_ns: i64,
    /// From the bucket of the first attempt to the bucket of the last, every one.
    pub buckets: Vec<Bucket>,
    pub first_failure: Option<FailureMark>,
    pub last_failure: Option<FailureMark>,
    pub shape: Shape,
}

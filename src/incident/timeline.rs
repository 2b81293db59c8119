//! Requests over time, and the shape of the failures.
//!
//! Every judged connection becomes **request attempts** ([`facts`]): each HTTP exchange the
//! capture shows, or the connection itself when no request is seen on it (a refused or timed-out
//! connect, TLS, a connection that carried nothing). In a failed or abandoned connection, every
//! exchange sent and answered in full counts as a healthy request, and the failure is one attempt
//! more (the exchange it is about, when the capture shows it), at the time of its first piece of
//! evidence (the failing request or SYN leaving the proxy), on the proxy capture's clock; every
//! attempt of a not-judged connection counts as not judged. So "3 % of requests" compares failed
//! attempts with all attempts.
//!
//! [`Timeline`] counts attempts per verdict in time buckets — about 4096 at most, made ten times
//! coarser whenever the span outgrows them, so memory is bounded whatever the capture — plus
//! connections starting and ending (for the number open at once) and *late connects* (healthy
//! connections whose SYN had to be sent again before the backend answered: its accept queue was
//! full). [`Timeline::finish`] re-bins the counts into at most [`MAX_BUCKETS`] buckets of a round
//! width chosen from the span of the traffic (10 ms for a few seconds, minutes for hours), and
//! gives the failures a [`Shape`] by the rules of [`classify`].

use std::collections::BTreeMap;

use crate::capture::FrameRef;
use crate::capture::Side;
use crate::diagnose::{Blame, Diagnosis, Outcome, Verdict};
use crate::http::Conn;
use crate::http::{Exchange, Framing};
use crate::pair::ClockOffset;

/// Number of verdicts (the index of a verdict in count arrays is `verdict as usize`).
pub const VERDICTS: usize = Verdict::ALL.len();

/// Buckets of the timeline shown (JSON, text, Markdown, HTML plot).
pub const MAX_BUCKETS: i64 = 60;

/// Fine buckets kept while reading: their span (in buckets) stays below this.
const MAX_FINE_SPAN: i64 = 4096;

const MS: i64 = 1_000_000;
const SEC: i64 = 1_000 * MS;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

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

/// Is the request on a fresh connection or on one that already carried requests?
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// The first request of a connection seen from its SYN (or a connect that failed).
    New,
    /// A later request of a connection.
    Reused,
    /// The first request seen on a connection opened before the capture started.
    Unknown,
}

/// One request attempt: an HTTP request, or a connection on which no request was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attempt<'a> {
    /// When the request (or the SYN) left the proxy, on the proxy capture's clock.
    pub at_ns: i64,
    /// `Ok` for a request sent and answered in full; else the connection's verdict.
    pub verdict: Verdict,
    /// None: no request seen (a failed connect, TLS, a response whose request was not captured).
    pub method: Option<&'a str>,
    pub target: Option<&'a str>,
    /// The request body's size: its Content-Length, else the body bytes seen (None: no request
    /// seen, or its head cut by snaplen).
    pub body_bytes: Option<u64>,
    pub reuse: Reuse,
}

/// A packet that shows a failure (from the diagnosis's evidence).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mark {
    pub side: Side,
    pub frame: FrameRef,
    /// On that capture's own clock.
    pub ts_ns: i64,
    pub what: String,
}

/// A connection with a finding, as the timeline remembers its first and last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailureMark {
    /// The connection's number in the report.
    pub id: u64,
    pub verdict: Verdict,
    pub blame: Blame,
    /// When the failing request (or SYN) left the proxy, on the proxy capture's clock.
    pub at_ns: i64,
    /// The first piece of evidence (the request or SYN) and the last (where the failure shows).
    pub first: Option<Mark>,
    pub last: Option<Mark>,
}

/// What the incident view takes from one judged connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnFacts<'a> {
    /// First and last packet, on the proxy capture's clock.
    pub start_ns: i64,
    pub end_ns: i64,
    /// A healthy connection whose SYN was sent more than once before the backend answered (as
    /// the backend's capture saw them arrive, when there is one).
    pub late_connect: bool,
    pub attempts: Vec<Attempt<'a>>,
    /// Set when the verdict is not `ok`.
    pub finding: Option<FailureMark>,
}

/// The request attempts of a judged connection (see the module comment). `proxy` is the first
/// capture's view (the proxy's, or the only capture's), `backend` the second's; times of the
/// second are moved to the first's clock by `clock`.
pub fn facts<'a>(
    proxy: Option<&'a Conn>,
    backend: Option<&'a Conn>,
    d: &Diagnosis,
    clock: Option<ClockOffset>,
    id: u64,
) -> Option<ConnFacts<'a>> {
    let (view, second) = match (proxy, backend) {
        (Some(c), _) => (c, false),
        (None, Some(c)) => (c, true),
        (None, None) => return None,
    };
    let v = Placed { view, second, clock };
    let start_ns = v.start_ns();
    let outcome = d.verdict.outcome();
    let attempts = match outcome {
        Outcome::Ok | Outcome::NotJudged => judged_attempts(&v, d.verdict),
        Outcome::Failed | Outcome::Abandoned => failed_attempts(&v, d),
    };
    let finding = (outcome != Outcome::Ok).then(|| failure_mark(&v, d, &attempts, id));
    Some(ConnFacts {
        start_ns,
        end_ns: v.shift(view.last.ts_ns).max(start_ns),
        // The backend's capture shows whether the first SYNs reached it and were ignored (a full
        // accept queue) rather than lost on the way; without it, the proxy's SYNs say it.
        late_connect: outcome != Outcome::Failed && {
            let c = backend.unwrap_or(view);
            c.syn_count > 1 && c.syn_ack.is_some()
        },
        attempts,
        finding,
    })
}

/// The view of a connection the facts are taken from, and how its times reach the proxy
/// capture's clock.
struct Placed<'a> {
    view: &'a Conn,
    /// The view is the second capture's (its times are moved by `clock`).
    second: bool,
    clock: Option<ClockOffset>,
}

impl<'a> Placed<'a> {
    /// A time seen on `side`'s capture, on the proxy capture's clock.
    fn on_proxy_clock(&self, side: Side, t: i64) -> i64 {
        match (side, self.clock) {
            (Side::Backend, Some(c)) => c.to_proxy(t),
            _ => t,
        }
    }

    /// A time of the view, on the proxy capture's clock.
    fn shift(&self, t: i64) -> i64 {
        if self.second {
            self.on_proxy_clock(Side::Backend, t)
        } else {
            t
        }
    }

    fn start_ns(&self) -> i64 {
        self.shift(self.view.first.ts_ns)
    }

    fn exchanges(&self) -> &'a [Exchange] {
        &self.view.app.exchanges
    }

    /// Whether the `i`-th request of the connection went on a fresh connection.
    fn reuse_at(&self, i: usize) -> Reuse {
        match (i, self.view.syn.is_some()) {
            (0, true) => Reuse::New,
            (0, false) => Reuse::Unknown,
            _ => Reuse::Reused,
        }
    }

    fn request_at(&self, e: &Exchange) -> Option<i64> {
        e.request.as_ref().map(|m| self.shift(m.first.ts_ns))
    }
}

/// A healthy or not-judged connection: every exchange is an attempt with its verdict (or the
/// connection itself, when it carried none).
fn judged_attempts<'a>(v: &Placed<'a>, verdict: Verdict) -> Vec<Attempt<'a>> {
    let exchanges = v.exchanges();
    let start_ns = v.start_ns();
    let mut attempts = Vec::with_capacity(exchanges.len().max(1));
    for (i, e) in exchanges.iter().enumerate() {
        let at = v
            .request_at(e)
            .or_else(|| e.response.as_ref().map(|m| v.shift(m.first.ts_ns)))
            .unwrap_or(start_ns);
        attempts.push(attempt(e, at, verdict, v.reuse_at(i)));
    }
    if attempts.is_empty() {
        attempts.push(no_request(start_ns, verdict, v.reuse_at(0)));
    }
    attempts
}

/// A failed or abandoned connection: the exchanges sent and answered in full are healthy
/// attempts, and the failure is one attempt more, last.
fn failed_attempts<'a>(v: &Placed<'a>, d: &Diagnosis) -> Vec<Attempt<'a>> {
    let exchanges = v.exchanges();
    let start_ns = v.start_ns();
    let mut attempts = Vec::with_capacity(exchanges.len().max(1));
    let whole = |e: &Exchange| {
        e.request.as_ref().is_some_and(|m| m.complete) && e.response.as_ref().is_some_and(|m| m.complete)
    };
    // When the failure shows: its first piece of evidence, on the proxy clock.
    let first_incomplete = exchanges.iter().position(|e| !whole(e));
    let at = d
        .evidence
        .iter()
        .map(|e| v.on_proxy_clock(e.side, e.ts_ns))
        .min()
        .or_else(|| first_incomplete.and_then(|i| v.request_at(&exchanges[i])))
        .unwrap_or(start_ns);
    // The failed exchange: the first whose request left at or after the failure's first
    // evidence (a backend timeout's response may have come after the proxy gave up, so
    // whole on the wire), else the first not sent or answered in full.
    let failed = exchanges
        .iter()
        .position(|e| v.request_at(e).is_some_and(|t| t >= at))
        .or(first_incomplete);
    for (i, e) in exchanges.iter().enumerate() {
        if Some(i) != failed && whole(e) {
            let at = v.request_at(e).unwrap_or(start_ns);
            attempts.push(attempt(e, at, Verdict::Ok, v.reuse_at(i)));
        }
    }
    attempts.push(match failed {
        Some(i) => attempt(&exchanges[i], at, d.verdict, v.reuse_at(i)),
        // The failing request is not among the exchanges (not parsed, or none sent): its
        // place on the connection is after the requests sent before it.
        None => {
            let before = exchanges
                .iter()
                .filter(|e| v.request_at(e).is_some_and(|t| t < at))
                .count();
            no_request(at, d.verdict, v.reuse_at(before))
        }
    });
    attempts
}

/// The finding of a connection that was not `ok`: when its failing attempt left, and its first
/// and last evidence.
fn failure_mark(v: &Placed<'_>, d: &Diagnosis, attempts: &[Attempt<'_>], id: u64) -> FailureMark {
    let mark = |e: &crate::diagnose::Evidence| Mark {
        side: e.side,
        frame: e.frame,
        ts_ns: e.ts_ns,
        what: e.what.clone(),
    };
    let at = attempts.last().map_or(v.start_ns(), |a| a.at_ns);
    let by_time = |e: &&crate::diagnose::Evidence| v.on_proxy_clock(e.side, e.ts_ns);
    FailureMark {
        id,
        verdict: d.verdict,
        blame: d.blame,
        at_ns: at,
        first: d.evidence.iter().min_by_key(by_time).map(mark),
        last: d.evidence.iter().max_by_key(by_time).map(mark),
    }
}

fn attempt(e: &Exchange, at_ns: i64, verdict: Verdict, reuse: Reuse) -> Attempt<'_> {
    let req = e.request.as_ref();
    Attempt {
        at_ns,
        verdict,
        method: req.and_then(|m| m.method.as_deref()),
        target: req.and_then(|m| m.target.as_deref()),
        body_bytes: req.and_then(|m| match m.framing {
            Framing::ContentLength(n) => Some(n),
            Framing::None => Some(0),
            Framing::Unknown => None,
            Framing::Chunked | Framing::UntilClose | Framing::Tunnel => Some(m.body_bytes),
        }),
        reuse,
    }
}

fn no_request(at_ns: i64, verdict: Verdict, reuse: Reuse) -> Attempt<'static> {
    Attempt {
        at_ns,
        verdict,
        method: None,
        target: None,
        body_bytes: None,
        reuse,
    }
}

/// What a failure says about the backend, for the shape's rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Refused, or cut by the backend (closed or reset during the request, an empty or truncated
    /// or unreadable response).
    Cut,
    /// The backend did not answer: connect timeout (SYN ignored), backend timeout, zero window.
    Slow,
    /// Lost or forged between the two (blame: network).
    Network,
    /// A keep-alive race (the proxy's reuse settings).
    Race,
}

pub fn family(v: Verdict, b: Blame) -> Family {
    match v {
        _ if b == Blame::Network => Family::Network,
        Verdict::ConnectTimeout | Verdict::BackendTimeout | Verdict::ZeroWindowStall => Family::Slow,
        Verdict::KeepaliveRace => Family::Race,
        Verdict::LostInTransit | Verdict::RstFromMiddlebox => Family::Network,
        _ => Family::Cut,
    }
}

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

    pub fn ok(&self) -> u64 {
        self.by_verdict[Verdict::Ok as usize]
    }

    pub fn failed(&self) -> u64 {
        Verdict::ALL
            .iter()
            .filter(|v| v.is_failure())
            .map(|&v| self.by_verdict[v as usize])
            .sum()
    }

    pub fn attempts(&self) -> u64 {
        self.by_verdict.iter().sum()
    }
}

/// Buckets of one width, epoch-aligned, keyed by `time.div_euclid(width)`.
#[derive(Clone, Debug, Default)]
struct Buckets {
    rung: usize,
    cells: BTreeMap<i64, Cell>,
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
    fine: Buckets,
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

/// The shape of the failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// No request failed.
    None,
    /// One burst in which (almost) nothing succeeded, or every request failed: the backend (or
    /// the path to it) was down or misconfigured.
    AllAtOnce,
    /// Failures where the load was highest, or the backend stopped keeping up (SYNs ignored,
    /// requests unanswered) while connections got through late: overload.
    UnderLoad,
    /// Most failures in a short stretch, with healthy requests around them; not explained by load.
    Clustered,
    /// Few failures, or failures spread over the traffic one at a time.
    Sporadic,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::AllAtOnce => "all-at-once",
            Kind::UnderLoad => "under-load",
            Kind::Clustered => "clustered",
            Kind::Sporadic => "sporadic",
        }
    }
}

/// Load around failures and around healthy requests (means; the request itself not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Load {
    /// Other request attempts in the same bucket.
    pub requests_at_failure: f64,
    pub requests_at_success: f64,
    /// Other connections open during the same bucket.
    pub connections_at_failure: f64,
    pub connections_at_success: f64,
}

impl Load {
    /// Failures come with at least 1.5 times the load of healthy requests, and at least one
    /// request or connection more.
    pub fn higher_at_failures(&self) -> bool {
        let more = |f: f64, s: f64| f >= 1.5 * s && f - s >= 1.0;
        more(self.requests_at_failure, self.requests_at_success)
            || more(self.connections_at_failure, self.connections_at_success)
    }
}

/// The shortest run of shown buckets holding 80 % of the failures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cluster {
    pub start_ns: i64,
    pub end_ns: i64,
    pub buckets: u64,
    pub of_buckets: u64,
    pub failures: u64,
    pub attempts: u64,
    pub failures_outside: u64,
    pub attempts_outside: u64,
}

/// The numbers the shape is decided on (see [`classify`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ShapeFacts {
    pub failed: u64,
    pub ok: u64,
    pub attempts: u64,
    /// Attempts abandoned by the proxy, and not judged.
    pub abandoned: u64,
    pub not_judged: u64,
    pub families: FamilyCounts,
    /// Different failure verdicts.
    pub verdicts: u64,
    /// First and last failure, on the proxy clock.
    pub first_ns: i64,
    pub last_ns: i64,
    /// First and last attempt.
    pub traffic: (i64, i64),
    /// Healthy requests and all attempts from the first failure to the last (fine buckets).
    pub window_ok: u64,
    pub window_attempts: u64,
    /// The first healthy request after the last failure (its fine bucket).
    pub back_ns: Option<i64>,
    /// Late connects from the first failure to `back_ns`.
    pub late_connects: u64,
    pub load: Load,
    pub cluster: Option<Cluster>,
}

impl ShapeFacts {
    /// At least 3 failures and, between the first and the last, healthy requests at most a tenth
    /// of all attempts.
    pub fn burst(&self) -> bool {
        self.failed >= 3 && self.window_ok * 10 <= self.window_attempts
    }

    /// At least 3 failures and 3 healthy requests, and more load around failures.
    pub fn loaded(&self) -> bool {
        self.failed >= 3 && self.ok >= 3 && self.load.higher_at_failures()
    }

    /// 80 % of the failures in at most a quarter of the traffic's time, with a failure rate at
    /// least three times the rate outside (where there were requests).
    pub fn clustered(&self) -> bool {
        let Some(c) = self.cluster else { return false };
        self.failed >= 3
            && c.attempts_outside > 0
            && c.buckets * 4 <= c.of_buckets
            && c.failures as f64 / c.attempts.max(1) as f64
                >= 3.0 * c.failures_outside as f64 / c.attempts_outside as f64
    }

    /// Most failures are the backend not answering.
    pub fn mostly_slow(&self) -> bool {
        self.families.slow * 2 > self.failed
    }
}

/// The shape's rules, in order:
/// 1. no failure: `none`;
/// 2. a single failure: `sporadic` (one failure makes no pattern in time);
/// 3. every request failed: `all-at-once`;
/// 4. most failures are keep-alive races: `sporadic` — each is one request meeting the backend's
///    idle close, a matter of that request's timing and not of the backend's state or load,
///    however they fall in time (the fix is the proxy's reuse settings);
/// 5. a burst (at least 3 failures, healthy requests at most a tenth of the attempts between the
///    first and the last failure) of mostly timeouts (SYN ignored, request unanswered, zero
///    window), with more load than around healthy requests or with late connects (SYNs answered
///    only when sent again) before the backend answered again: `under-load`;
/// 6. any other burst: `all-at-once`;
/// 7. failures with more load around them (≥ 1.5× the other requests in their bucket, or the
///    connections open, and at least one more; at least 3 failures and 3 healthy requests):
///    `under-load`;
/// 8. 80 % of the failures within a quarter of the traffic's time, at three times the failure
///    rate of the rest: `clustered`;
/// 9. otherwise `sporadic`.
pub fn classify(f: &ShapeFacts) -> Kind {
    if f.failed == 0 {
        Kind::None
    } else if f.failed == 1 {
        Kind::Sporadic
    } else if f.ok == 0 {
        Kind::AllAtOnce
    } else if f.families.race * 2 > f.failed {
        Kind::Sporadic
    } else if f.burst() && f.mostly_slow() && (f.loaded() || f.late_connects > 0) {
        Kind::UnderLoad
    } else if f.burst() {
        Kind::AllAtOnce
    } else if f.loaded() {
        Kind::UnderLoad
    } else if f.clustered() {
        Kind::Clustered
    } else {
        Kind::Sporadic
    }
}

/// The shape and the numbers behind it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    pub kind: Kind,
    pub facts: ShapeFacts,
}

impl Shape {
    /// Why, in words; `bucket_ns` is the width of the buckets the load was measured in.
    pub fn reason(&self, bucket_ns: i64) -> String {
        let f = &self.facts;
        let w = Phrases::new(f, bucket_ns);
        match self.kind {
            Kind::None => no_failure_reason(f),
            Kind::AllAtOnce if f.ok == 0 => {
                format!(
                    "every request failed, {} of {}, {}: nothing succeeded; {}",
                    f.failed, f.attempts, w.window, w.what
                )
            }
            Kind::AllAtOnce => format!(
                "{}, all in one burst {} in which {} succeeded; {}; {}",
                w.rate,
                w.window,
                if f.window_ok == 0 {
                    "no request".to_string()
                } else {
                    format!("only {} of {}", f.window_ok, f.window_attempts)
                },
                w.what,
                w.back
            ),
            Kind::UnderLoad if f.burst() => overload_reason(f, &w),
            Kind::UnderLoad => format!(
                "{} {}, where the load was highest: {}; the backend (or the path) fails when busy",
                w.rate, w.window, w.load
            ),
            Kind::Clustered => {
                let c = f.cluster.unwrap_or_default();
                format!(
                    "{}; {} of them between {} and {} ({} of the traffic's {}), {} of the requests \
                     there against {} elsewhere; not explained by load ({})",
                    w.rate,
                    c.failures,
                    w.clock(c.start_ns),
                    w.clock(c.end_ns),
                    duration(c.end_ns - c.start_ns),
                    duration(f.traffic.1 - f.traffic.0),
                    percent(c.failures, c.attempts),
                    percent(c.failures_outside, c.attempts_outside),
                    w.load
                )
            }
            Kind::Sporadic => sporadic_reason(f, &w),
        }
    }
}

/// The phrases the reasons are made of.
struct Phrases {
    /// Dates too when the traffic spans days.
    dated: bool,
    /// "3 of 120 requests failed (2.5 %)".
    rate: String,
    /// When the failures happened.
    window: String,
    /// The width of the buckets the load was measured in, in words.
    per: String,
    /// The load around failures and around healthy requests.
    load: String,
    /// When requests succeeded again.
    back: String,
    /// What the dominant family of failures says about the backend.
    what: &'static str,
}

impl Phrases {
    fn new(f: &ShapeFacts, bucket_ns: i64) -> Phrases {
        let dated = f.traffic.1 - f.traffic.0 >= DAY;
        let clock = |ns: i64| clock_dated(ns, dated);
        let rate = format!(
            "{} of {} failed ({})",
            f.failed,
            plural(f.attempts, "request"),
            percent(f.failed, f.attempts)
        );
        let window = if f.failed == 1 {
            format!("at {}", clock(f.first_ns))
        } else {
            format!(
                "between {} and {} ({})",
                clock(f.first_ns),
                clock(f.last_ns),
                duration(f.last_ns - f.first_ns)
            )
        };
        let per = duration(bucket_ns);
        let load = format!(
            "{:.1} other requests and {:.1} connections per {per} around a failure, {:.1} and {:.1} \
             around a healthy request",
            f.load.requests_at_failure,
            f.load.connections_at_failure,
            f.load.requests_at_success,
            f.load.connections_at_success
        );
        let back = match f.back_ns {
            Some(t) => format!("requests succeeded again from about {}", clock(t)),
            None => "nothing succeeded after it until the capture ended".to_string(),
        };
        let what = match dominant(&f.families) {
            Family::Cut => {
                "connections were refused or cut by the backend: the backend (process or host) was down or restarting"
            }
            Family::Slow => {
                "the backend did not answer (SYNs ignored, requests unanswered): it was down, hung or overwhelmed"
            }
            Family::Network => {
                "packets were lost, refused or reset between proxy and backend: the network path (a link, a \
                 router, a firewall) failed"
            }
            Family::Race => "keep-alive races: the proxy reused connections the backend was closing",
        };
        Phrases {
            dated,
            rate,
            window,
            per,
            load,
            back,
            what,
        }
    }

    fn clock(&self, ns: i64) -> String {
        clock_dated(ns, self.dated)
    }
}

/// "1 request", "3 requests".
fn plural(x: u64, what: &str) -> String {
    format!("{x} {what}{}", if x == 1 { "" } else { "s" })
}

/// [`Kind::None`]: how many requests, over how long, and those not counted as healthy.
fn no_failure_reason(f: &ShapeFacts) -> String {
    let mut s = format!("no request failed ({}", plural(f.attempts, "request"));
    if f.traffic.1 > f.traffic.0 {
        s.push_str(&format!(" over {}", duration(f.traffic.1 - f.traffic.0)));
    }
    if f.abandoned > 0 {
        s.push_str(&format!("; {} abandoned by the proxy", f.abandoned));
    }
    if f.not_judged > 0 {
        s.push_str(&format!("; {} not judged", f.not_judged));
    }
    s.push(')');
    s
}

/// [`Kind::UnderLoad`] in one burst: the backend stopped keeping up.
fn overload_reason(f: &ShapeFacts, w: &Phrases) -> String {
    let mut s = format!(
        "{}, in one burst {}, mostly timeouts: the backend stopped keeping up \
         (overload: a full accept queue, every worker busy)",
        w.rate, w.window
    );
    if f.late_connects > 0 {
        s.push_str(&format!(
            "; {} got through only after sending their SYN again (the accept queue was full)",
            plural(f.late_connects, "connection")
        ));
    }
    if f.loaded() {
        s.push_str(&format!("; {}", w.load));
    }
    s.push_str(&format!("; {}", w.back));
    s
}

/// [`Kind::Sporadic`]: one at a time, with a hint at the cause from the families.
fn sporadic_reason(f: &ShapeFacts, w: &Phrases) -> String {
    let (rate, window) = (&w.rate, &w.window);
    let hint = match dominant(&f.families) {
        Family::Network => {
            "the path between proxy and backend (loss, resets, a router or firewall refusing): \
             hardware, network"
        }
        Family::Race => {
            "keep-alive races: each a request that met the backend's idle close, a matter of \
             that request's timing, not of the backend's state or load (the proxy's idle \
             timeout must be below the backend's)"
        }
        _ if f.verdicts > 1 => {
            "individual requests fail in different ways: see what they have in common below"
        }
        _ => "individual requests fail: see what they have in common below",
    };
    if f.failed == 1 {
        let hint = match dominant(&f.families) {
            Family::Cut | Family::Slow => "one failure makes no pattern in time",
            _ => hint,
        };
        format!(
            "a single failure, 1 of {} ({}), {window}: {hint}",
            plural(f.attempts, "request"),
            percent(f.failed, f.attempts)
        )
    } else if dominant(&f.families) == Family::Race {
        format!("{rate} {window}: {hint}")
    } else if f.failed < 3 || f.ok < 3 {
        format!("{rate} {window}, one at a time among healthy requests: {hint}")
    } else {
        format!(
            "{rate} {window}, one at a time among healthy requests; not one moment, nor \
             clearly load ({:.1} connections open and {:.1} other requests per {} around \
             a failure, {:.1} and {:.1} around a healthy request): {hint}",
            f.load.connections_at_failure,
            f.load.requests_at_failure,
            w.per,
            f.load.connections_at_success,
            f.load.requests_at_success
        )
    }
}

/// The family most failures belong to (ties: cut, slow, network, race).
fn dominant(f: &FamilyCounts) -> Family {
    let all = [
        (f.cut, Family::Cut),
        (f.slow, Family::Slow),
        (f.network, Family::Network),
        (f.race, Family::Race),
    ];
    let mut best = all[0];
    for x in all {
        if x.0 > best.0 {
            best = x;
        }
    }
    best.1
}

/// `n/of` as a percentage: "6.7 %", "100 %", "0.05 %".
pub fn percent(n: u64, of: u64) -> String {
    if of == 0 {
        return "0 %".to_string();
    }
    let p = n as f64 * 100.0 / of as f64;
    if n == of || p >= 10.0 {
        format!("{p:.0} %")
    } else if p >= 0.1 {
        format!("{p:.1} %")
    } else {
        format!("{p:.2} %")
    }
}

/// Time of day, UTC, `HH:MM:SS.mmm`; with the date (`2026-12-04 HH:MM:SS.mmm`) when `dated`.
pub fn clock_dated(ns: i64, dated: bool) -> String {
    if !dated {
        return clock(ns);
    }
    let (y, m, d) = civil(ns.div_euclid(DAY));
    format!("{y:04}-{m:02}-{d:02} {}", clock(ns))
}

/// Days since 1970-01-01 → (year, month, day) (Howard Hinnant's algorithm).
fn civil(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Time of day, UTC, `HH:MM:SS.mmm`.
pub fn clock(ns: i64) -> String {
    let secs = ns.div_euclid(SEC);
    let ms = ns.rem_euclid(SEC) / MS;
    let sod = secs.rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}.{ms:03}", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// A duration in words: "250 ms", "1.7 s", "4 min 10 s", "5 h 3 min", "2 d 4 h".
pub fn duration(ns: i64) -> String {
    let ns = ns.max(0);
    if ns < 10 * MS {
        format!("{:.1} ms", ns as f64 / MS as f64)
    } else if ns < SEC {
        format!("{} ms", ns / MS)
    } else if ns < MIN {
        let s = ns as f64 / SEC as f64;
        if s < 10.0 {
            format!("{s:.1} s")
        } else {
            format!("{s:.0} s")
        }
    } else {
        let (big, small, b, s) = if ns < HOUR {
            (MIN, SEC, "min", "s")
        } else if ns < DAY {
            (HOUR, MIN, "h", "min")
        } else {
            (DAY, HOUR, "d", "h")
        };
        match ns % big / small {
            0 => format!("{} {b}", ns / big),
            r => format!("{} {b} {r} {s}", ns / big),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2023-11-14T22:13:20Z, a round start for synthetic traffic.
    const T0: i64 = 1_700_000_000 * SEC;

    fn at(s: f64) -> i64 {
        T0 + (s * SEC as f64) as i64
    }

    /// A connection carrying one request at `s` seconds, with this verdict (blame as the
    /// verdict table says).
    fn one(s: f64, v: Verdict) -> ConnFacts<'static> {
        let blame = match v {
            Verdict::Ok => Blame::None,
            Verdict::KeepaliveRace => Blame::Proxy,
            Verdict::LostInTransit | Verdict::RstFromMiddlebox => Blame::Network,
            _ => Blame::Backend,
        };
        let t = at(s);
        ConnFacts {
            start_ns: t,
            end_ns: t,
            late_connect: false,
            attempts: vec![Attempt {
                at_ns: t,
                verdict: v,
                method: Some("GET"),
                target: Some("/x"),
                body_bytes: Some(0),
                reuse: Reuse::New,
            }],
            finding: (v != Verdict::Ok).then_some(FailureMark {
                id: 0,
                verdict: v,
                blame,
                at_ns: t,
                first: None,
                last: None,
            }),
        }
    }

    /// `per_s` requests a second from `from` to `to` seconds, evenly spaced; `fail(i, t)` says
    /// which fail (the i-th request, at t) and how.
    fn traffic(
        tl: &mut Timeline,
        from: f64,
        to: f64,
        per_s: u32,
        fail: &dyn Fn(u32, f64) -> Option<Verdict>,
    ) {
        let n = ((to - from) * per_s as f64).round() as u32;
        for i in 0..n {
            let t = from + i as f64 / per_s as f64;
            tl.add(&one(t, fail(i, t).unwrap_or(Verdict::Ok)));
        }
    }

    fn kind(tl: Timeline) -> Kind {
        tl.finish().shape.kind
    }

    #[test]
    fn durations_and_dates_in_words() {
        assert_eq!(duration(500 * 1000), "0.5 ms");
        assert_eq!(duration(1500 * MS), "1.5 s");
        assert_eq!(duration(HOUR), "1 h");
        assert_eq!(duration(HOUR + 3 * MIN), "1 h 3 min");
        assert_eq!(duration(2 * DAY + 5 * HOUR), "2 d 5 h");
        // date -u -d @1700000000 → 2023-11-14 22:13:20
        assert_eq!(clock_dated(T0, true), "2023-11-14 22:13:20.000");
        assert_eq!(clock_dated(T0, false), "22:13:20.000");
    }

    #[test]
    fn no_failure_is_none() {
        let mut tl = Timeline::default();
        traffic(&mut tl, 0.0, 60.0, 4, &|_, _| None);
        let t = tl.finish();
        assert_eq!(t.shape.kind, Kind::None);
        assert_eq!(t.totals.iter().sum::<u64>(), 240);
        assert!(t.first_failure.is_none());
        assert_eq!(kind(Timeline::default()), Kind::None);
    }

    #[test]
    fn every_request_failed_is_all_at_once() {
        // One failure alone makes no pattern, even when it is the only request.
        let mut tl = Timeline::default();
        tl.add(&one(1.0, Verdict::ConnectRefused));
        assert_eq!(kind(tl), Kind::Sporadic);
        let mut tl = Timeline::default();
        tl.add(&one(1.0, Verdict::ConnectRefused));
        tl.add(&one(2.0, Verdict::ConnectRefused));
        assert_eq!(kind(tl), Kind::AllAtOnce);
        let mut tl = Timeline::default();
        traffic(&mut tl, 0.0, 10.0, 2, &|_, _| Some(Verdict::BackendTimeout));
        assert_eq!(kind(tl), Kind::AllAtOnce);
    }

    /// 2 requests a second for a minute; from 30 s to 35 s every one is refused (a burst), and
    /// requests succeed before and after.
    #[test]
    fn refusals_in_one_window_are_all_at_once() {
        let mut tl = Timeline::default();
        traffic(&mut tl, 0.0, 60.0, 2, &|_, t| {
            (30.0..35.0).contains(&t).then_some(Verdict::ConnectRefused)
        });
        let t = tl.finish();
        assert_eq!(t.shape.kind, Kind::AllAtOnce, "{:?}", t.shape.facts);
        assert_eq!(t.shape.facts.failed, 10);
        assert_eq!(t.shape.facts.window_ok, 0);
        assert_eq!(t.first_failure.map(|f| f.at_ns), Some(at(30.0)));
        assert_eq!(t.last_failure.map(|f| f.at_ns), Some(at(34.5)));
        let reason = t.shape.reason(t.bucket_ns);
        assert!(
            reason.starts_with("10 of 120 requests failed (8.3 %), all in one burst between"),
            "{reason}"
        );
        assert!(reason.contains("refused or cut"), "{reason}");
    }

    /// The burst's limit: healthy requests at most a tenth of the attempts between the first and
    /// the last failure. One healthy request among 10 failures (1 of 11) keeps it a burst, two
    /// (2 of 12) do not: the failures are then only clustered.
    #[test]
    fn a_burst_allows_a_tenth_of_healthy_requests() {
        let with_healthy = |inside: &'static [f64]| {
            let mut tl = Timeline::default();
            traffic(&mut tl, 0.0, 60.0, 2, &|_, t| {
                (30.0..35.0).contains(&t).then_some(Verdict::ConnectRefused)
            });
            for &s in inside {
                tl.add(&one(s, Verdict::Ok));
            }
            kind(tl)
        };
        assert_eq!(with_healthy(&[31.2]), Kind::AllAtOnce);
        assert_eq!(with_healthy(&[31.2, 33.2]), Kind::Clustered);
    }

    /// Timeouts in one burst (requests unanswered, SYNs ignored), then connections that get
    /// through only with a second SYN: a full accept queue, under load. Without those late
    /// connects and without more load, the same burst is the backend gone quiet: all at once.
    #[test]
    fn timeouts_with_late_connects_are_under_load() {
        let burst = |late: bool| {
            let mut tl = Timeline::default();
            traffic(&mut tl, 0.0, 30.0, 2, &|_, _| None);
            // At the rate of the traffic around: no more load at the failures.
            for (s, v) in [
                (30.0, Verdict::BackendTimeout),
                (30.5, Verdict::BackendTimeout),
                (31.0, Verdict::ConnectTimeout),
                (31.5, Verdict::ConnectTimeout),
                (32.0, Verdict::ConnectTimeout),
            ] {
                tl.add(&one(s, v));
            }
            for s in [32.9, 32.95, 33.0] {
                let mut c = one(s + 1.0, Verdict::Ok);
                c.start_ns = at(s);
                c.late_connect = late;
                tl.add(&c);
            }
            traffic(&mut tl, 35.0, 60.0, 2, &|_, _| None);
            let t = tl.finish();
            (
                t.shape.kind,
                t.shape.facts.late_connects,
                t.shape.reason(t.bucket_ns),
            )
        };
        let (k, late, reason) = burst(true);
        assert_eq!((k, late), (Kind::UnderLoad, 3), "{reason}");
        assert!(
            reason.contains("3 connections got through only after sending their SYN again"),
            "{reason}"
        );
        let (k, _, reason) = burst(false);
        assert_eq!(k, Kind::AllAtOnce, "{reason}");
        assert!(reason.contains("did not answer"), "{reason}");
    }

    /// 4 requests a second for 60 s; from 20 s to 30 s, `per_s` a second, one of which fails
    /// each second. With 7 a second the failures have 6 other requests in their second against
    /// 3.7 for a healthy request (1.6 times): under load. With 6 a second, 5 against 3.4 (1.47
    /// times, below 1.5): the same failures are only clustered.
    #[test]
    fn failures_with_more_load_are_under_load() {
        let peak = |per_s: u32| {
            let mut tl = Timeline::default();
            traffic(&mut tl, 0.0, 20.0, 4, &|_, _| None);
            traffic(&mut tl, 20.0, 30.0, per_s, &|i, _| {
                (i % per_s == 0).then_some(Verdict::BackendEmptyReply)
            });
            traffic(&mut tl, 30.0, 60.0, 4, &|_, _| None);
            let t = tl.finish();
            assert_eq!(t.bucket_ns, SEC);
            (t.shape.kind, t.shape.facts.load)
        };
        let (k, load) = peak(7);
        assert_eq!(k, Kind::UnderLoad, "{load:?}");
        assert!((load.requests_at_failure - 6.0).abs() < 1e-9, "{load:?}");
        assert!(
            (load.requests_at_success - 960.0 / 260.0).abs() < 1e-9,
            "{load:?}"
        );
        let (k, load) = peak(6);
        assert_eq!(k, Kind::Clustered, "{load:?}");
        assert!((load.requests_at_success - 3.4).abs() < 1e-9, "{load:?}");
    }

    /// 4 requests a second for 60 s (one-second buckets); failures at 20, 25, 30, `fourth` and
    /// 50 s. 80 % of them (4) within 15 seconds of the 60 (a quarter) is a cluster; within 16,
    /// they are sporadic.
    #[test]
    fn a_cluster_is_80_percent_within_a_quarter() {
        let run = |fourth: f64| {
            let mut tl = Timeline::default();
            let fails = [20.0, 25.0, 30.0, fourth, 50.0];
            traffic(&mut tl, 0.0, 60.0, 4, &|_, t| {
                fails.contains(&t).then_some(Verdict::ResponseTruncated)
            });
            let t = tl.finish();
            (t.shape.kind, t.shape.facts.cluster.map(|c| c.buckets))
        };
        assert_eq!(run(34.0), (Kind::Clustered, Some(15)));
        assert_eq!(run(35.0), (Kind::Sporadic, Some(16)));
    }

    #[test]
    fn few_failures_spread_thinly_are_sporadic() {
        let mut tl = Timeline::default();
        traffic(&mut tl, 0.0, 60.0, 4, &|_, t| {
            [5.0, 30.0, 55.0].contains(&t).then_some(Verdict::LostInTransit)
        });
        let t = tl.finish();
        assert_eq!(t.shape.kind, Kind::Sporadic);
        assert!(t.shape.reason(t.bucket_ns).contains("hardware, network"));
        // Two failures back to back are too few for a burst.
        let mut tl = Timeline::default();
        traffic(&mut tl, 0.0, 60.0, 4, &|_, t| {
            (30.0..30.5).contains(&t).then_some(Verdict::ConnectRefused)
        });
        assert_eq!(kind(tl), Kind::Sporadic);
    }

    /// Keep-alive races close together are still sporadic: each is one request's timing.
    #[test]
    fn keepalive_races_are_sporadic_wherever_they_fall() {
        let mut tl = Timeline::default();
        traffic(&mut tl, 0.0, 60.0, 4, &|i, t| {
            ((30.0..33.0).contains(&t) && i % 2 == 0).then_some(Verdict::KeepaliveRace)
        });
        let t = tl.finish();
        assert_eq!(t.shape.kind, Kind::Sporadic);
        assert!(t.shape.facts.clustered(), "they do cluster in time");
    }

    /// Buckets of a round width from the span: a 5-second capture in 100 ms buckets, 5 hours in
    /// 5 minutes (10 when its buckets, aligned on the epoch, would be 61); never more than 60.
    #[test]
    fn bucket_width_follows_the_span() {
        for (span, width) in [
            (5 * SEC, 100 * MS),
            (59 * SEC, SEC),
            (5 * HOUR - 10 * MIN, 5 * MIN),
            (5 * HOUR, 10 * MIN),
            (3 * DAY, 2 * HOUR),
            (100 * MS, 2 * MS),
        ] {
            let mut tl = Timeline::default();
            tl.add(&one(0.0, Verdict::Ok));
            tl.add(&one(span as f64 / SEC as f64, Verdict::Ok));
            let t = tl.finish();
            assert_eq!(t.bucket_ns, width, "span {}", duration(span));
            assert!(t.buckets.len() as i64 <= MAX_BUCKETS);
        }
    }

    /// Connections open during a bucket: those open at its start and those started in it.
    #[test]
    fn connections_open_per_bucket() {
        let mut tl = Timeline::default();
        // 0-59 s: one request a second on short connections; one long connection 10.5-40.5 s.
        traffic(&mut tl, 0.0, 60.0, 1, &|_, _| None);
        let mut long = one(10.5, Verdict::Ok);
        long.end_ns = at(40.5);
        tl.add(&long);
        let t = tl.finish();
        let active: Vec<u64> = t.buckets.iter().map(|b| b.active).collect();
        assert_eq!(active[9], 1);
        assert_eq!(active[10], 2);
        assert_eq!(active[40], 2);
        assert_eq!(active[41], 1);
    }

    /// Memory stays bounded: a million connections at times spread over a century keep at most
    /// 4096 fine buckets and show at most 60.
    #[test]
    fn buckets_stay_bounded_over_any_span() {
        let mut tl = Timeline::default();
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for i in 0..1_000_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let t = (x % (100 * 365 * DAY as u64)) as i64;
            let v = if i % 97 == 0 {
                Verdict::BackendTimeout
            } else {
                Verdict::Ok
            };
            let mut c = one(0.0, v);
            c.start_ns = t;
            c.end_ns = t + SEC;
            c.attempts[0].at_ns = t;
            tl.add(&c);
            assert!(tl.fine.cells.len() as i64 <= MAX_FINE_SPAN);
        }
        let t = tl.finish();
        assert!(t.buckets.len() as i64 <= MAX_BUCKETS);
        assert_eq!(t.totals.iter().sum::<u64>(), 1_000_000);
        assert_eq!(
            t.buckets.iter().map(|b| b.cell.attempts()).sum::<u64>(),
            1_000_000
        );
    }
}

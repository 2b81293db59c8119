//! A judged connection → its request attempts, on the proxy capture's clock (see the module
//! comment of [`super`]).

use crate::capture::{FrameRef, Side};
use crate::diagnose::{Blame, Diagnosis, Outcome, Verdict};
use crate::http::{Conn, Exchange, Framing};
use crate::pair::ClockOffset;

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

pub(crate) fn family(v: Verdict, b: Blame) -> Family {
    match v {
        _ if b == Blame::Network => Family::Network,
        Verdict::ConnectTimeout | Verdict::BackendTimeout | Verdict::ZeroWindowStall => Family::Slow,
        Verdict::KeepaliveRace => Family::Race,
        Verdict::LostInTransit | Verdict::RstFromMiddlebox => Family::Network,
        _ => Family::Cut,
    }
}

//! # diagnose: connection timelines → one verdict each
//!
//! In: a [`Pair`](crate::pair::Pair) — the same connection as the proxy capture and the backend
//! capture saw it (or as one capture saw it). Out: a [`Diagnosis`]: the [`Verdict`] (the stable labels
//! of DESIGN.md), who is to [`Blame`], a one- or two-sentence explanation, the next step, and the
//! [`Evidence`] (frames in each capture) that proves it. A verdict never guesses silently: what a
//! capture could not show (one capture only, snaplen, TLS) is said in the explanation.
//!
//! Inside: `rules` (the rule table and its order; one module per verdict family under
//! `rules/`), `backend_view` (what the backend host's capture alone shows and cannot show),
//! `healthy` (a view with nothing to explain, for the reader), and here each backend's learned
//! keep-alive timeout (`IdleCloses`) and the judged connection ([`Finding`]). Public are only the
//! verdict types that reports and callers read; the rest is the pipeline's, `pub(crate)`.

use std::fmt;

use crate::capture::FrameRef;
use crate::capture::Side;

/// The verdict of a connection (stable labels: they are part of the JSON contract).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    Ok,
    ConnectRefused,
    ConnectTimeout,
    RequestIncomplete,
    BackendClosedDuringRequest,
    BackendEmptyReply,
    ResponseTruncated,
    BackendTimeout,
    /// The backend answered with bytes that are not an HTTP/1.x response.
    BackendBadResponse,
    ZeroWindowStall,
    KeepaliveRace,
    LostInTransit,
    RstFromMiddlebox,
    ProxyAborted,
    CaptureIncomplete,
}

impl Verdict {
    pub(crate) const ALL: [Verdict; 15] = [
        Verdict::Ok,
        Verdict::ConnectRefused,
        Verdict::ConnectTimeout,
        Verdict::RequestIncomplete,
        Verdict::BackendClosedDuringRequest,
        Verdict::BackendEmptyReply,
        Verdict::ResponseTruncated,
        Verdict::BackendTimeout,
        Verdict::BackendBadResponse,
        Verdict::ZeroWindowStall,
        Verdict::KeepaliveRace,
        Verdict::LostInTransit,
        Verdict::RstFromMiddlebox,
        Verdict::ProxyAborted,
        Verdict::CaptureIncomplete,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Verdict::Ok => "ok",
            Verdict::ConnectRefused => "connect-refused",
            Verdict::ConnectTimeout => "connect-timeout",
            Verdict::RequestIncomplete => "request-incomplete",
            Verdict::BackendClosedDuringRequest => "backend-closed-during-request",
            Verdict::BackendEmptyReply => "backend-empty-reply",
            Verdict::ResponseTruncated => "response-truncated",
            Verdict::BackendTimeout => "backend-timeout",
            Verdict::BackendBadResponse => "backend-bad-response",
            Verdict::ZeroWindowStall => "zero-window-stall",
            Verdict::KeepaliveRace => "keepalive-race",
            Verdict::LostInTransit => "lost-in-transit",
            Verdict::RstFromMiddlebox => "rst-from-middlebox",
            Verdict::ProxyAborted => "proxy-aborted",
            Verdict::CaptureIncomplete => "capture-incomplete",
        }
    }

    pub fn from_label(s: &str) -> Option<Verdict> {
        Verdict::ALL.into_iter().find(|v| v.label() == s)
    }

    /// What the verdict means for the run: a failure (exit code 1), a request the proxy itself
    /// gave up on, a connection the captures cannot vouch for, or ok.
    pub(crate) fn outcome(self) -> Outcome {
        match self {
            Verdict::Ok => Outcome::Ok,
            // The proxy stopped sending the request, or stopped reading the answer, while the
            // backend and the network were doing their part: almost always because the proxy's own
            // client went away (a closed browser tab, a load generator stopped). Every busy proxy
            // shows some; they are not failures of the proxy→backend path.
            Verdict::RequestIncomplete | Verdict::ProxyAborted => Outcome::Abandoned,
            Verdict::CaptureIncomplete => Outcome::NotJudged,
            _ => Outcome::Failed,
        }
    }

    /// Is this verdict a failure of the proxy→backend path (exit code 1)?
    pub fn is_failure(self) -> bool {
        self.outcome() == Outcome::Failed
    }

    /// Is it worth a section of its own in a report (anything but `ok`)?
    pub(crate) fn is_notable(self) -> bool {
        self.outcome() != Outcome::Ok
    }
}

/// What a verdict means for the run (JSON `outcome`; the exit code is 1 only for `Failed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Outcome {
    Ok,
    /// The proxy, the backend or the network broke a request.
    Failed,
    /// The proxy gave up on the request itself (its client went away, or one of its limits).
    Abandoned,
    /// The captures do not hold enough to judge the connection.
    NotJudged,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Failed,
        Outcome::Abandoned,
        Outcome::NotJudged,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Failed => "failed",
            Outcome::Abandoned => "abandoned",
            Outcome::NotJudged => "not-judged",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Who is to blame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Blame {
    None,
    Proxy,
    Backend,
    Network,
    Capture,
}

impl Blame {
    pub(crate) const ALL: [Blame; 5] = [
        Blame::None,
        Blame::Proxy,
        Blame::Backend,
        Blame::Network,
        Blame::Capture,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Blame::None => "none",
            Blame::Proxy => "proxy",
            Blame::Backend => "backend",
            Blame::Network => "network",
            Blame::Capture => "capture",
        }
    }
}

impl fmt::Display for Blame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// A packet that proves part of a verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Evidence {
    pub side: Side,
    pub frame: FrameRef,
    pub ts_ns: i64,
    pub what: String,
}

/// The diagnosis of one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    pub verdict: Verdict,
    pub blame: Blame,
    pub explanation: String,
    pub next_step: String,
    pub evidence: Vec<Evidence>,
}

mod backend_view;
mod healthy;
mod rules;

pub(crate) use backend_view::{backend_only_override, proxy_capture_would_settle};
pub(crate) use healthy::looks_healthy;
pub(crate) use rules::{Context, diagnose};

use std::collections::HashMap;

use crate::decode::Endpoint;
use crate::http::Conn;
use crate::pair::{Alignment, ClockOffset, Matched};

/// Samples kept per backend endpoint, and endpoints tracked.
const IDLE_SAMPLES: usize = 1024;
const IDLE_ENDPOINTS: usize = 4096;

/// Each backend's keep-alive timeout, learned from the connections it closed while idle: every
/// exchange answered, then the backend's FIN a fixed time after its last response. At least three
/// such closes must agree (the median, with most of the others within a few percent of it). A race
/// is then recognisable by its timing: the backend's FIN comes exactly this long after the previous
/// response, whatever the request did meanwhile.
#[derive(Debug, Default)]
pub(crate) struct IdleCloses {
    by_server: HashMap<Endpoint, IdleSamples, foldhash::fast::RandomState>,
}

#[derive(Debug, Default)]
struct IdleSamples {
    /// Sorted (each sample inserted in place: the estimate is then a median and two searches,
    /// where sorting a copy for every sample was a twentieth of `analyze` on short connections).
    idles: Vec<i64>,
    /// The estimate from `idles`, recomputed when a sample is added.
    timeout: Option<i64>,
}

impl IdleCloses {
    /// Learns from a connection (as the proxy capture, or the only capture, saw it).
    pub(crate) fn observe(&mut self, c: &Conn) {
        // Called for every connection: a server with all its samples costs one lookup.
        match self.by_server.get(&c.server) {
            Some(s) if s.idles.len() >= IDLE_SAMPLES => return,
            None if self.by_server.len() >= IDLE_ENDPOINTS => return,
            _ => {}
        }
        let Some(idle) = idle_close(c) else { return };
        let s = self.by_server.entry(c.server).or_default();
        let at = s.idles.partition_point(|&x| x < idle);
        s.idles.insert(at, idle);
        s.timeout = estimate(&s.idles);
    }

    /// The keep-alive timeout of a backend endpoint, once its idle closes show it.
    pub(crate) fn timeout(&self, server: Endpoint) -> Option<i64> {
        self.by_server.get(&server)?.timeout
    }
}

/// How long a connection closed by the backend had been idle, if that is what happened.
///
/// A last response whose head snaplen cut (its length unknown) counts too: under `-s 96` no
/// response is known to be whole, and the idle closes are what tells a whole one from a cut one.
/// Its sample agrees with the others only if the backend closes that long after every response.
fn idle_close(c: &Conn) -> Option<i64> {
    let last = c.app.exchanges.last()?;
    let whole_or_cut = |r: &crate::http::Message| r.complete || r.framing == crate::http::Framing::Unknown;
    let resp = last.response.as_ref().filter(|r| whole_or_cut(r))?;
    let n = c.app.exchanges.len();
    if c.app.exchanges[..n - 1]
        .iter()
        .any(|e| e.response.as_ref().is_none_or(|r| !r.complete))
    {
        return None;
    }
    let fin = c.to_client().fin?;
    // The backend closed first.
    if c.to_server().fin.is_some_and(|f| f.at < fin.at) || c.to_server().rst.is_some_and(|r| r.at < fin.at) {
        return None;
    }
    let idle = fin.at.ts_ns - resp.last.ts_ns;
    (idle > 0).then_some(idle)
}

/// The timeout the idle closes agree on: their median, if at least three and most of them are
/// within the tolerance of it. `sorted`: the samples in order.
fn estimate(sorted: &[i64]) -> Option<i64> {
    if sorted.len() < 3 {
        return None;
    }
    let t = sorted[sorted.len() / 2];
    // The samples that agree (`rules::is_idle_close`) are one run of the sorted ones.
    let tolerance = rules::idle_tolerance(t);
    let lo = sorted.partition_point(|&i| i < t.saturating_sub(tolerance));
    let hi = sorted.partition_point(|&i| i <= t.saturating_add(tolerance));
    let agree = hi - lo;
    debug_assert_eq!(
        agree,
        sorted.iter().filter(|&&i| rules::is_idle_close(i, t)).count()
    );
    (agree >= 3 && agree * 2 > sorted.len()).then_some(t)
}

/// A connection judged: its pair of views (the proxy capture's, or the only capture's, first) with
/// how they were matched and their sequence mapping, their alignment, and the diagnosis.
#[derive(Debug)]
pub struct Finding {
    pub pair: Matched,
    pub alignment: Option<Alignment>,
    pub diagnosis: Diagnosis,
    /// The clock offset as estimated when the connection was judged.
    pub clock: Option<ClockOffset>,
}

impl Finding {
    pub(crate) fn of(
        m: Matched,
        alignment: Option<Alignment>,
        diagnosis: Diagnosis,
        clock: Option<ClockOffset>,
    ) -> Finding {
        Finding {
            pair: m,
            alignment,
            diagnosis,
            clock,
        }
    }
}

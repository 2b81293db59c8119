//! Matching: each judged connection, as it comes, takes the log events that are about it
//! ([`Matcher::take`], [`fit`]): same backend, a time within its life, the request it carried,
//! a meaning that goes with its verdict. What matching knows of a connection is [`ConnFacts`].

use std::collections::{HashMap, HashSet};

use super::SECOND;
use super::parse::url_target;
use super::read::{Event, LogLine, ProxyLogs};
use super::says::Says;
use crate::decode::Endpoint;
use crate::diagnose::{Finding, Verdict};
use crate::incident::window::{self, Window};

/// Events looked at per connection (the nearest to its end).
const MAX_SCAN: usize = 2048;

/// Slack between the log's clock and the capture's (the same host's clock; the log line is
/// written a moment after the packet that caused it).
pub(super) const TOL_NS: i64 = 50_000_000;

/// How long after its connection's last packet a line may be written (anything but a connect
/// timeout: the proxy logs and closes the connection at once).
const AFTER_NS: i64 = 1_000_000_000;

/// A connect timeout is logged up to this much after the last SYN beyond the connection's age.
const CONNECT_AFTER_NS: i64 = 1_500_000_000;

/// Longest connect timeout considered.
const MAX_CONNECT_AFTER_NS: i64 = 130_000_000_000;

/// Near misses remembered per event, for its unmatched reason.
const MAX_NEAR_MISSES: usize = 3;

/// What matching needs to know of a judged connection (plain data, made by [`ConnFacts::of`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnFacts {
    /// Its id in the report.
    pub id: String,
    /// The server, as the first capture (the proxy's) saw it.
    pub server: Endpoint,
    /// First and last packet, on the proxy capture's clock (the log's clock).
    pub first_ns: i64,
    pub last_ns: i64,
    /// The proxy's SYN, when the capture holds the opening.
    pub syn_ns: Option<i64>,
    pub verdict: Option<Verdict>,
    /// Its requests, in order: target, whether the capture cut it, when its first byte was sent.
    pub requests: Vec<RequestFact>,
}

/// A request as the capture saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFact {
    pub target: String,
    pub cut: bool,
    pub at_ns: i64,
}

/// Requests remembered per connection (the last ones: a failure ends a connection).
const MAX_REQUESTS: usize = 256;

impl ConnFacts {
    /// The facts of a judged connection, `id` its number in the report.
    pub fn of(f: &Finding, id: &str) -> Option<ConnFacts> {
        let (first_ns, last_ns) = window::span(f)?;
        let view = f.pair.proxy.as_ref().or(f.pair.backend.as_ref())?;
        let to_proxy = |t: i64| match (&f.pair.proxy, f.clock) {
            (None, Some(c)) => c.to_proxy(t),
            _ => t,
        };
        let requests: Vec<RequestFact> = view
            .app
            .exchanges
            .iter()
            .filter_map(|e| {
                let m = e.request.as_ref()?;
                Some(RequestFact {
                    target: m.target.clone()?,
                    cut: m.target_cut,
                    at_ns: to_proxy(m.first.ts_ns),
                })
            })
            .collect();
        let skip = requests.len().saturating_sub(MAX_REQUESTS);
        Some(ConnFacts {
            id: id.to_string(),
            server: view.server,
            first_ns,
            last_ns,
            syn_ns: view.syn.map(|s| to_proxy(s.ts_ns)),
            verdict: Some(f.diagnosis.verdict),
            requests: requests.into_iter().skip(skip).collect(),
        })
    }
}

/// Does a target from the log name the target seen on the wire? `path_only`: the log has the
/// path without the query; `wire_cut`: the capture holds only the start of the wire's target.
pub(super) fn same_target(log: &str, path_only: bool, wire: &str, wire_cut: bool) -> bool {
    let log = url_target(log);
    let wire = url_target(wire);
    let path = |t: &str| t.split('?').next().unwrap_or(t).to_string();
    if wire_cut {
        if wire.is_empty() {
            return false;
        }
        return if wire.contains('?') {
            path(wire) == path(log)
        } else {
            log.starts_with(wire)
        };
    }
    if path_only || !log.contains('?') && !wire.contains('?') {
        path(log) == path(wire)
    } else {
        log == wire
    }
}

/// An event given to a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// Its lines, primary first.
    pub lines: Vec<LogLine>,
    pub says: Says,
    /// The line's meaning goes with the connection's verdict.
    pub fits: bool,
    /// What tied it to the connection, in words.
    pub matched_by: String,
}

/// How an event fits a connection.
struct Fit {
    fits: bool,
    exchange: Option<usize>,
    /// From the event's time to the connection's last packet.
    distance: i64,
    by: String,
}

/// Ties log events to judged connections as they come (see the module comment).
pub struct Matcher {
    pub(super) logs: ProxyLogs,
    pub(super) window: Window,
    /// Which connection took each event.
    pub(super) taken: Vec<Option<(String, Option<Verdict>, bool)>>,
    /// Per event, the connection its request ties it to although its verdict does not fit:
    /// (id, verdict, distance); used when no fitting connection takes the event.
    pub(super) tentative: Vec<Option<(String, Option<Verdict>, i64)>>,
    /// Connections that were candidates but did not fit: (id, verdict), per event.
    pub(super) near: Vec<Vec<(String, Option<Verdict>)>>,
    /// Servers of every connection seen.
    pub(super) servers: HashSet<Endpoint>,
}

/// Servers remembered for the "no connection to that backend" reason.
const MAX_SERVERS: usize = 65_536;

impl Matcher {
    pub fn new(logs: ProxyLogs, window: Window) -> Matcher {
        let n = logs.events.len();
        Matcher {
            logs,
            window,
            taken: vec![None; n],
            tentative: vec![None; n],
            near: vec![Vec::new(); n],
            servers: HashSet::new(),
        }
    }

    /// No event to match (the logs hold no line about a backend connection).
    pub fn is_empty(&self) -> bool {
        self.logs.events.is_empty()
    }

    /// The events about this connection, taken for it.
    pub fn take(&mut self, c: &ConnFacts) -> Vec<Attached> {
        if self.servers.len() < MAX_SERVERS {
            self.servers.insert(c.server);
        }
        let events = &self.logs.events;
        let post = (c.last_ns - c.first_ns)
            .max(0)
            .saturating_add(CONNECT_AFTER_NS)
            .clamp(AFTER_NS, MAX_CONNECT_AFTER_NS);
        let lo = c.first_ns.saturating_sub(TOL_NS + SECOND);
        let hi = c.last_ns.saturating_add(post + TOL_NS);
        let start = events.partition_point(|e| e.time_ns < lo);
        let end = events.partition_point(|e| e.time_ns <= hi);
        let start = start.max(end.saturating_sub(MAX_SCAN));
        // Per (meaning, exchange): the event nearest the connection's end.
        let mut best: HashMap<(u8, Option<usize>), (usize, Fit)> = HashMap::new();
        for (i, ev) in events.iter().enumerate().take(end).skip(start) {
            if self.taken[i].is_some() || !self.window.contains(ev.time_ns, ev.precision_ns) {
                continue;
            }
            match fit(ev, c) {
                // Tied only by its request: kept aside in case no connection whose verdict fits
                // takes it (settled at the end).
                Ok(f) if !f.fits => {
                    if self.tentative[i].as_ref().is_none_or(|t| f.distance < t.2) {
                        self.tentative[i] = Some((c.id.clone(), c.verdict, f.distance));
                    }
                }
                Ok(f) => {
                    let meaning = if ev.says.is_connect() {
                        0
                    } else {
                        1 + ev.says as u8
                    };
                    let key = (meaning, f.exchange);
                    // The loser of the two is a near miss (another line of its kind is tied to
                    // this connection).
                    let loser = match best.get(&key) {
                        Some((j, b)) if f.distance < b.distance => Some(*j),
                        Some(_) => Some(i),
                        None => None,
                    };
                    if loser != Some(i) {
                        best.insert(key, (i, f));
                    }
                    if let Some(j) = loser {
                        near_miss(&mut self.near[j], c);
                    }
                }
                Err(true) => near_miss(&mut self.near[i], c),
                Err(false) => {}
            }
        }
        let mut chosen: Vec<(usize, Fit)> = best.into_values().collect();
        chosen.sort_by_key(|(i, _)| *i);
        chosen
            .into_iter()
            .map(|(i, f)| {
                self.taken[i] = Some((c.id.clone(), c.verdict, f.fits));
                let ev = &self.logs.events[i];
                Attached {
                    lines: ev.lines.iter().map(|&l| self.logs.lines[l].clone()).collect(),
                    says: ev.says,
                    fits: f.fits,
                    matched_by: f.by,
                }
            })
            .collect()
    }
}

/// Connection `c` was a candidate for an event but did not fit it (or another event of its kind
/// fitted better): one of the event's near misses.
fn near_miss(near: &mut Vec<(String, Option<Verdict>)>, c: &ConnFacts) {
    if near.len() < MAX_NEAR_MISSES && !near.iter().any(|(id, _)| *id == c.id) {
        near.push((c.id.clone(), c.verdict));
    }
}

/// Can `ev` be about `c`? Err(true): a near miss (same backend and time, but the meaning or the
/// request does not fit), Err(false): not at all.
fn fit(ev: &Event, c: &ConnFacts) -> Result<Fit, bool> {
    if matches!(ev.says, Says::Other | Says::NotTried) {
        return Err(false);
    }
    if let Some(b) = &ev.backend
        && !b.matches(c.server)
    {
        return Err(false);
    }
    let connect = ev.says.is_connect();
    let post = if connect {
        (c.last_ns - c.first_ns)
            .max(0)
            .saturating_add(CONNECT_AFTER_NS)
            .min(MAX_CONNECT_AFTER_NS)
    } else {
        AFTER_NS
    };
    let (lo, hi) = (ev.time_ns, ev.time_ns.saturating_add(ev.precision_ns));
    if hi.saturating_add(TOL_NS) < c.first_ns || lo > c.last_ns.saturating_add(post + TOL_NS) {
        return Err(false);
    }
    let mut by = vec![match &ev.backend {
        Some(b) => format!("backend {}", b.words()),
        None => "backend not named".to_string(),
    }];
    // With Apache's debug context: a new connection for the request, or a pooled one.
    if let Some(how) = context_fit(ev, c, connect)? {
        by.push(how.into());
    }
    // The request, when both the log and the capture name it.
    let exchange = request_fit(ev, c, hi)?;
    if let (Some(_), Some(t)) = (exchange, &ev.target) {
        by.push(format!("request {}", url_target(t)));
    }
    let fits = c.verdict.is_some_and(|v| ev.says.fits(v));
    // A meaning that does not go with the verdict: only the request itself, the connection's
    // last, ties the line to this connection.
    if !fits && exchange != Some(c.requests.len().saturating_sub(1)) {
        return Err(true);
    }
    by.push("time".into());
    let mid = lo.saturating_add(ev.precision_ns / 2);
    Ok(Fit {
        fits,
        exchange,
        distance: (mid - c.last_ns).abs(),
        by: by.join(", "),
    })
}

/// Does the connection fit Apache's debug context of the event's request (see [`fit`])? Ok(Some):
/// how (opened for the request, or a pooled connection reused); Ok(None): no context to check.
fn context_fit(ev: &Event, c: &ConnFacts, connect: bool) -> Result<Option<&'static str>, bool> {
    let Some(req) = ev.request_ns else {
        return Ok(None);
    };
    if connect {
        if c.first_ns.saturating_add(TOL_NS) < req {
            return Err(false);
        }
        return Ok(None);
    }
    match ev.fresh {
        Some(Some(est)) => {
            let Some(syn) = c.syn_ns else { return Err(false) };
            if syn > est.saturating_add(TOL_NS) || syn < est.saturating_sub(10 * SECOND) {
                return Err(false);
            }
            Ok(Some("opened for the request"))
        }
        Some(None) => {
            if c.first_ns > req.saturating_add(TOL_NS) || c.syn_ns.is_some_and(|s| s > req) {
                return Err(false);
            }
            Ok(Some("a pooled connection reused"))
        }
        None => Ok(None),
    }
}

/// The exchange of the connection whose request the event names (its index), when both the
/// log and the capture name it; Err(true): they name different requests (a near miss).
fn request_fit(ev: &Event, c: &ConnFacts, hi: i64) -> Result<Option<usize>, bool> {
    let Some(t) = &ev.target else { return Ok(None) };
    if c.requests.is_empty() {
        return Ok(None);
    }
    let same = |r: &RequestFact| same_target(t, ev.path_only, &r.target, r.cut);
    let found = match ev.request_ns {
        Some(req) => c
            .requests
            .iter()
            .enumerate()
            .filter(|(_, r)| same(r) && r.at_ns >= req - TOL_NS && r.at_ns <= hi + TOL_NS)
            .min_by_key(|(_, r)| r.at_ns - req),
        None => c
            .requests
            .iter()
            .enumerate()
            .filter(|(_, r)| same(r) && r.at_ns <= hi + TOL_NS)
            .max_by_key(|(_, r)| r.at_ns),
    };
    match found {
        Some((i, _)) => Ok(Some(i)),
        None => Err(true),
    }
}

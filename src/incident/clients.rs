//! # incident::clients: each client request, next to the backend connection that answered it
//!
//! In: every connection of the proxy capture as it finishes — when that capture also holds the
//! proxy's client side (`tcpdump -i any` on the proxy host, or one interface that carries both
//! sides) — and every judged proxy→backend connection. Out: [`ClientRequests`]: for each request
//! a client sent to the proxy, what the client got (status, when, or how the proxy closed without
//! an answer) and the proxy's attempts at the backend for it — an exchange on a backend
//! connection, or a connection that never got to carry a request (refused, timed out) — each with
//! its connection's verdict; or no attempt at all: the proxy answered it itself.
//!
//! **The client side.** A connection of the proxy capture whose server is the capturing host (the
//! Linux cooked header says which packets the host received); without that header, one whose
//! server is not a backend endpoint and whose client is not one of the proxy's addresses towards
//! the backends (both learned from the judged connections: such connections wait until one is
//! known).
//!
//! **Matching.** Proxies do not say which backend exchange served which client request, so an
//! attempt is matched by what the proxy copies or adds, strongest first:
//! 1. a request id (`X-Request-ID`, `X-Correlation-ID`, `Request-Id`) in the backend request and
//!    in the client's request or the proxy's response to it: equal ids match, different ids never;
//! 2. the method (always equal) and the target: equal, or one ending with the other's path (a
//!    proxy that strips or adds a prefix), with the same query;
//! 3. the client's address, when the proxy added `X-Forwarded-For` (its last address),
//!    `X-Real-IP` or `Forwarded: for=`: a different address never matches;
//! 4. the body size, when both requests went out complete: a different size never matches;
//! 5. time: the backend request starts after the client request started and before the proxy
//!    answered the client (or closed on it). A backend answer with the status the client got is
//!    preferred; then the attempt nearest to the client request.
//!
//! A connection that carried no request (refused, timed out, TLS) is an attempt only for a client
//! request that got an error (5xx, or no answer) and was waiting for it when the connection was
//! opened. A request takes more attempts only while the ones it has failed (the proxy retried, or
//! failed over to another server). When several client requests fit an attempt equally well (the
//! same request from the same address at the same moment) the nearest in time is taken and the
//! number of alternatives is kept.
//!
//! **Streaming.** Client connections and backend findings arrive as their connections finish, in
//! any order. A request waits (indexed by method and the target's last path segment, ordered by
//! time) until an attempt that settles it arrives: a complete backend response. One without a
//! settling attempt waits until the end of the captures — then, with no attempt at all, the proxy
//! answered it itself — or until the capture has moved [`ClientLimits::horizon_ns`] past its
//! connection's end, or the table is full ([`ClientLimits::max_pending`]): then it is decided
//! with the attempts it has, and one without any is "not found" (a pooled backend connection still
//! open may hold it). Attempts whose client request has not arrived wait the same way.
//!
//! A backend connection pooled by the proxy reports its exchanges when it closes, so matching
//! every request would keep every one until then — with a proxy that reuses its connections
//! without end, all of them. So once the report holds [`ClientLimits::max_listed_ok`] "plain"
//! requests (a complete answer below 400), later plain requests are counted by status and not
//! matched, and plain backend answers that find no waiting request are dropped: what waits is the
//! requests with an error (5xx, 4xx, no or an incomplete answer) and the attempts that could
//! explain one. Memory follows those, within the caps; the requests kept for the report are
//! bounded by [`ClientLimits::max_listed`] (with an error) and [`ClientLimits::max_listed_ok`];
//! the summary counts every request.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use crate::decode::Endpoint;
use crate::diagnose::{Blame, Diagnosis, Verdict};
use crate::http::Conn;
use crate::http::{Exchange, Message, Protocol};
use crate::tcp::PacketRef;

/// Header names this module reads. The reader keeps them on connections that look healthy
/// (whose other headers it drops).
pub const KEPT_HEADERS: [&str; 6] = [
    "x-request-id",
    "x-correlation-id",
    "request-id",
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
];

/// Is this one of [`KEPT_HEADERS`] (case-insensitive)?
pub fn is_kept_header(name: &str) -> bool {
    let name = name.trim_ascii();
    // Called for every header of every healthy message: most names fail on their length.
    matches!(name.len(), 9 | 10 | 12 | 15 | 16) && KEPT_HEADERS.iter().any(|k| k.eq_ignore_ascii_case(name))
}

/// Headers that carry a request id.
pub const ID_HEADERS: [&str; 3] = ["x-request-id", "x-correlation-id", "request-id"];

/// Bytes kept of a request id or forwarded-for value, and of a target.
const MAX_VALUE_BYTES: usize = 128;
const MAX_TARGET_BYTES: usize = 256;

/// Candidates looked at for one match (the nearest in time first).
const MAX_CANDIDATES: usize = 256;

/// Attempts kept before any client-side connection is seen.
const MAX_EARLY: usize = 4096;

/// Backend endpoints and proxy addresses remembered for telling the client side apart.
const MAX_ADDRESSES: usize = 65_536;

/// Caps of the matcher (see the module comment).
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    /// Client requests waiting for an attempt, and attempts waiting for their client request.
    pub max_pending: usize,
    /// How far past a waiting entry's connection end the capture may move before it is decided.
    pub horizon_ns: i64,
    /// Requests with an error (5xx, no answer, a failed attempt, answered by the proxy) kept in full.
    pub max_listed: usize,
    /// Other requests kept in full (the first ones decided).
    pub max_listed_ok: usize,
}

/// The first FIN or RST of a client connection after a request started.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Close {
    pub at: PacketRef,
    /// The proxy sent it (else the client did).
    pub by_proxy: bool,
    /// A RST (else a FIN).
    pub reset: bool,
}

/// Who gave the client its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AnsweredBy {
    /// The backend: the last attempt got a complete response.
    Backend,
    /// The proxy itself: after its attempts failed, or without any backend traffic.
    Proxy,
    /// No attempt found, decided before the end of the captures (a backend connection still open
    /// may hold it).
    NotFound,
}

impl AnsweredBy {
    pub fn label(self) -> &'static str {
        match self {
            AnsweredBy::Backend => "backend",
            AnsweredBy::Proxy => "proxy",
            AnsweredBy::NotFound => "not-found",
        }
    }
}

/// What tied a client request to its first attempt, strongest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum MatchedBy {
    /// Only time: a connection that carried no request, opened while the request waited.
    Time,
    /// Method and target (and time).
    Target,
    /// Method, target and the client address the proxy forwarded.
    ClientAddress,
    /// The same request id.
    RequestId,
}

impl MatchedBy {
    pub fn describe(self) -> &'static str {
        match self {
            MatchedBy::RequestId => "request id",
            MatchedBy::ClientAddress => "method, target, client address (X-Forwarded-For) and time",
            MatchedBy::Target => "method, target and time",
            MatchedBy::Time => "time (the connection carried no request)",
        }
    }
}

/// One attempt of the proxy at the backend.
#[derive(Clone, Debug, PartialEq)]
pub struct Attempt {
    /// The backend connection, as the caller named it (the report's connection id).
    pub connection: String,
    pub client: Endpoint,
    pub server: Endpoint,
    /// Position of the exchange on its connection, from 1; None: the connection carried no request.
    pub exchange: Option<usize>,
    /// The request's first packet, or the connection's first packet.
    pub at: PacketRef,
    /// The connection's last packet.
    pub last: PacketRef,
    pub method: Option<String>,
    pub target: Option<String>,
    pub body_bytes: u64,
    pub request_complete: bool,
    pub status: Option<u16>,
    pub response_first: Option<PacketRef>,
    pub response_complete: bool,
    /// The client address the proxy forwarded (`X-Forwarded-For`'s last, `X-Real-IP`, `Forwarded`).
    pub forwarded_for: Option<IpAddr>,
    pub request_id: Option<String>,
    pub verdict: Verdict,
    pub blame: Blame,
    /// Its connection failed here: no request, or the request or its response incomplete.
    pub failed: bool,
}

/// One request a client sent to the proxy, as the proxy capture's client side shows it, with
/// the attempts matched to it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientRequest {
    pub client: Endpoint,
    /// The proxy's address and port the client connected to.
    pub proxy: Endpoint,
    /// Position of the exchange on its client connection, from 1.
    pub exchange: usize,
    pub method: Option<String>,
    pub target: Option<String>,
    pub request_first: PacketRef,
    pub request_last: PacketRef,
    pub request_bytes: u64,
    pub body_bytes: u64,
    pub request_complete: bool,
    /// The final status the client got (None: no status line).
    pub status: Option<u16>,
    pub response_first: Option<PacketRef>,
    pub response_last: Option<PacketRef>,
    pub response_bytes: u64,
    pub response_complete: bool,
    pub close: Option<Close>,
    /// The client connection's last packet.
    pub last: PacketRef,
    /// A request id in the client's request or in the proxy's response.
    pub request_id: Option<String>,
    pub attempts: Vec<Attempt>,
    pub answered_by: AnsweredBy,
    pub matched_by: Option<MatchedBy>,
    /// Other client requests that fitted its first attempt as well.
    pub alternatives: usize,
}

impl ClientRequest {
    /// The latest time an attempt for it can start: when the proxy answered, or closed on it.
    fn deadline(&self) -> i64 {
        match (self.response_first, self.close) {
            (Some(r), _) => r.ts_ns,
            (None, Some(c)) => c.at.ts_ns,
            (None, None) => i64::MAX,
        }
    }

    /// It got an error: 5xx, or no final status.
    pub fn is_error(&self) -> bool {
        self.status.is_none_or(|s| s >= 500)
    }

    fn settled(&self) -> bool {
        self.attempts.last().is_some_and(|a| !a.failed)
    }

    /// It got a complete answer below 400: nothing went wrong that the client saw.
    pub fn is_plain(&self) -> bool {
        self.response_complete && self.status.is_some_and(|s| s < 400)
    }

    /// Worth listing in full: an error, an incomplete answer, a failed attempt, an error the
    /// proxy produced, or no attempt found for an error.
    pub fn is_notable(&self) -> bool {
        self.is_error()
            || !self.response_complete
            || self.attempts.iter().any(|a| a.failed)
            || (self.answered_by != AnsweredBy::Backend && self.status.is_some_and(|s| s >= 400))
    }
}

/// Counts over every client request (listed or not).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientSummary {
    /// Client-side connections that carried HTTP, and that carried TLS (requests not visible).
    pub http_connections: u64,
    pub tls_connections: u64,
    pub requests: u64,
    /// Requests kept in full ([`ClientRequests::requests`]).
    pub listed: u64,
    /// By final status (None: no status line).
    pub by_status: BTreeMap<Option<u16>, u64>,
    pub answered_by_backend: u64,
    pub answered_by_proxy: u64,
    /// Of those answered by the proxy: without any backend traffic.
    pub proxy_without_backend: u64,
    pub not_found: u64,
    /// Requests that got a complete answer below 400 after the report had listed
    /// [`ClientLimits::max_listed_ok`] of them: counted by status, not matched.
    pub plain_not_matched: u64,
    /// Requests with at least one failed attempt.
    pub with_failed_attempt: u64,
    /// Requests decided before the end of the captures (horizon or table full).
    pub decided_early: u64,
    /// Attempts (backend exchanges, failed connections) matched to no client request.
    pub attempts_without_request: u64,
}

/// The client requests: those kept in full, in order of their first packet, and the counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientRequests {
    pub requests: Vec<ClientRequest>,
    pub summary: ClientSummary,
}

impl ClientRequests {
    /// The capture held a client side at all.
    pub fn seen(&self) -> bool {
        self.summary.http_connections + self.summary.tls_connections > 0
    }
}

/// The requests of one client-side connection.
pub fn requests_of(c: &Conn) -> Vec<ClientRequest> {
    requests_where(c, &mut |_| true)
}

/// The requests of its exchanges that `keep` accepts.
fn requests_where(c: &Conn, keep: &mut dyn FnMut(&Exchange) -> bool) -> Vec<ClientRequest> {
    let mut out = Vec::new();
    for (k, e) in c.app.exchanges.iter().enumerate() {
        let Some(req) = &e.request else { continue };
        if !keep(e) {
            continue;
        }
        let resp = e.response.as_ref();
        out.push(ClientRequest {
            client: c.client,
            proxy: c.server,
            exchange: k + 1,
            method: req.method.clone(),
            target: req.target.as_deref().map(|t| cut(t, MAX_TARGET_BYTES)),
            request_first: req.first,
            request_last: req.last,
            request_bytes: req.bytes,
            body_bytes: req.body_bytes,
            request_complete: req.complete,
            status: resp.and_then(|r| r.status),
            response_first: resp.map(|r| r.first),
            response_last: resp.map(|r| r.last),
            response_bytes: resp.map_or(0, |r| r.bytes),
            response_complete: resp.is_some_and(|r| r.complete),
            close: first_close_after(c, req.first.ts_ns),
            last: c.last,
            request_id: header(req, &ID_HEADERS).or_else(|| resp.and_then(|r| header(r, &ID_HEADERS))),
            attempts: Vec::new(),
            answered_by: AnsweredBy::NotFound,
            matched_by: None,
            alternatives: 0,
        });
    }
    out
}

/// The attempts one judged backend connection (its proxy-capture view) holds.
pub fn attempts_of(id: &str, c: &Conn, d: &Diagnosis) -> Vec<Attempt> {
    attempts_where(id, c, d, &mut |_| true)
}

/// The attempts of its exchanges that `keep` accepts (and the connection's own, when it carried
/// no request and failed).
fn attempts_where(
    id: &str,
    c: &Conn,
    d: &Diagnosis,
    keep: &mut dyn FnMut(&Exchange) -> bool,
) -> Vec<Attempt> {
    let base = Attempt {
        connection: id.to_string(),
        client: c.client,
        server: c.server,
        exchange: None,
        at: c.first,
        last: c.last,
        method: None,
        target: None,
        body_bytes: 0,
        request_complete: false,
        status: None,
        response_first: None,
        response_complete: false,
        forwarded_for: None,
        request_id: None,
        verdict: d.verdict,
        blame: d.blame,
        failed: true,
    };
    let mut out = Vec::new();
    let mut requests = 0;
    for (k, e) in c.app.exchanges.iter().enumerate() {
        let Some(req) = &e.request else { continue };
        requests += 1;
        if !keep(e) {
            continue;
        }
        let resp = e.response.as_ref();
        let response_complete = resp.is_some_and(|r| r.complete);
        out.push(Attempt {
            exchange: Some(k + 1),
            at: req.first,
            method: req.method.clone(),
            target: req.target.as_deref().map(|t| cut(t, MAX_TARGET_BYTES)),
            body_bytes: req.body_bytes,
            request_complete: req.complete,
            status: resp.and_then(|r| r.status),
            response_first: resp.map(|r| r.first),
            response_complete,
            forwarded_for: forwarded_for(req),
            request_id: header(req, &ID_HEADERS),
            failed: !(req.complete && response_complete),
            ..base.clone()
        });
    }
    // A connection that carried no request is an attempt only when it failed (a refused or timed
    // out connect; TLS the capture cannot read).
    if requests == 0 && d.verdict != Verdict::Ok && c.app.protocol != Protocol::Http {
        out.push(base);
    }
    out
}

/// The request and its answer went out complete, the answer below 400.
fn plain_exchange(e: &Exchange) -> bool {
    e.request.as_ref().is_some_and(|m| m.complete)
        && e.response
            .as_ref()
            .is_some_and(|m| m.complete && m.status.is_some_and(|s| s < 400))
}

/// The index key of an exchange's request.
fn exchange_key(e: &Exchange) -> u64 {
    let m = e.request.as_ref();
    match_key(
        m.and_then(|m| m.method.as_deref()),
        m.and_then(|m| m.target.as_deref()),
    )
}

/// The first header of `names` in a message, its value trimmed and cut.
fn header(m: &Message, names: &[&str]) -> Option<String> {
    m.headers
        .iter()
        .find(|h| {
            let name = h.name.trim_ascii();
            names.iter().any(|n| n.eq_ignore_ascii_case(name))
        })
        .map(|h| cut(h.value.trim(), MAX_VALUE_BYTES))
        .filter(|v| !v.is_empty())
}

/// The client address a proxy forwarded in a request: the last address of `X-Forwarded-For`
/// (the one the proxy itself appended), `X-Real-IP`, or the last `for=` of `Forwarded`.
fn forwarded_for(m: &Message) -> Option<IpAddr> {
    if let Some(v) = header(m, &["x-forwarded-for"]) {
        return v.rsplit(',').next().and_then(parse_ip);
    }
    if let Some(v) = header(m, &["x-real-ip"]) {
        return parse_ip(&v);
    }
    let v = header(m, &["forwarded"])?;
    let last = v.rsplit(',').next()?;
    last.split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("for"))
        .and_then(|(_, v)| parse_ip(v))
}

/// An address as forwarding headers write it: `10.0.0.2`, `"[2001:db8::1]:4711"`, `10.0.0.2:80`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

/// The first FIN or RST of either side at or after `t`.
fn first_close_after(c: &Conn, t: i64) -> Option<Close> {
    let [to_proxy, to_client] = &c.dirs;
    [
        (to_client.fin, true, false),
        (to_client.rst, true, true),
        (to_proxy.fin, false, false),
        (to_proxy.rst, false, true),
    ]
    .into_iter()
    .filter_map(|(m, by_proxy, reset)| {
        m.filter(|m| m.at.ts_ns >= t).map(|m| Close {
            at: m.at,
            by_proxy,
            reset,
        })
    })
    .min_by_key(|c| (c.at.ts_ns, c.at.frame))
}

/// The path and query of a target (an absolute-form target loses its scheme and authority).
fn path_query(target: &str) -> (&str, &str) {
    let t = match target.starts_with('/') {
        true => target,
        false => match target.find("://") {
            Some(i) => target[i + 3..].find('/').map_or("/", |j| &target[i + 3 + j..]),
            None => target,
        },
    };
    t.split_once('?').unwrap_or((t, ""))
}

/// The index key of a request: a hash of its method, the last segment of its path and its query
/// (a proxy that strips or adds a path prefix keeps them). Requests whose keys collide are told
/// apart by [`fits`].
fn match_key(method: Option<&str>, target: Option<&str>) -> u64 {
    let (path, query) = path_query(target.unwrap_or(""));
    let last = path.rsplit_once('/').map_or(path, |(_, l)| l);
    // FNV-1a over the parts, each ended by a byte no part holds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [method.unwrap_or(""), last, query] {
        for &b in part.as_bytes().iter().chain(&[0xff]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Do two targets name the same resource? Some(true): equal; Some(false): same query, and one
/// path ends with the other (at a '/'); None: no.
fn same_target(a: &str, b: &str) -> Option<bool> {
    if a == b {
        return Some(true);
    }
    let ((pa, qa), (pb, qb)) = (path_query(a), path_query(b));
    if qa != qb {
        return None;
    }
    let ends = |long: &str, short: &str| {
        let short = short.trim_start_matches('/');
        long.ends_with(short) && long[..long.len() - short.len()].ends_with('/')
    };
    (pa == pb || ends(pa, pb) || ends(pb, pa)).then_some(false)
}

/// How well an attempt fits a client request (see the module comment); None: it cannot be its.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Fit {
    id: bool,
    addr: bool,
    exact: bool,
    status: bool,
    /// A complete backend answer that does not explain the error the client got (the client got
    /// a 5xx or nothing, the backend answered below 500): taken only when nothing else fits.
    weak: bool,
    /// From the end of the client request to the attempt (0 while the request was being sent).
    gap: i64,
}

impl Fit {
    /// The strength of the identification (ids, address, target), without time.
    fn identity(&self) -> (bool, bool, bool) {
        (self.id, self.addr, self.exact)
    }

    fn matched_by(&self, a: &Attempt) -> MatchedBy {
        if self.id {
            MatchedBy::RequestId
        } else if a.exchange.is_none() {
            MatchedBy::Time
        } else if self.addr {
            MatchedBy::ClientAddress
        } else {
            MatchedBy::Target
        }
    }
}

fn fits(c: &ClientRequest, a: &Attempt) -> Option<Fit> {
    if a.client == c.client && a.server == c.proxy {
        return None;
    }
    let t = a.at.ts_ns;
    if t < c.request_first.ts_ns || t > c.deadline() {
        return None;
    }
    // Attempts are in time order, one after the other (a proxy retries once an attempt has
    // failed: its connection ended), and only the last may have succeeded. An attempt arriving
    // late (its connection finished later) may go before the others.
    if !c.attempts.is_empty() {
        let at = c.attempts.partition_point(|x| x.at <= a.at);
        let after_prev = at == 0 || {
            let p = &c.attempts[at - 1];
            p.failed && t >= p.last.ts_ns
        };
        let before_next = at == c.attempts.len() || (a.failed && a.last.ts_ns <= c.attempts[at].at.ts_ns);
        if !(after_prev && before_next) {
            return None;
        }
    }
    let gap = (t - c.request_last.ts_ns).max(0);
    if a.exchange.is_none() {
        return c.is_error().then_some(Fit {
            id: false,
            addr: false,
            exact: false,
            status: false,
            weak: false,
            gap,
        });
    }
    let id = match (&c.request_id, &a.request_id) {
        (Some(x), Some(y)) if x != y => return None,
        (Some(_), Some(_)) => true,
        _ => false,
    };
    if let (Some(x), Some(y)) = (&c.method, &a.method) {
        if x != y {
            return None;
        }
    }
    let exact = match (&c.target, &a.target) {
        (Some(x), Some(y)) => match same_target(x, y) {
            Some(e) => e,
            None if id => false,
            None => return None,
        },
        _ => false,
    };
    let addr = match a.forwarded_for {
        Some(ip) if ip != c.client.ip => return None,
        Some(_) => true,
        None => false,
    };
    if !id && c.request_complete && a.request_complete && c.body_bytes != a.body_bytes {
        return None;
    }
    let status = a.response_complete && a.status.is_some() && a.status == c.status;
    let weak = c.is_error() && a.response_complete && !status && a.status.is_some_and(|s| s < 500);
    Some(Fit {
        id,
        addr,
        exact,
        status,
        weak,
        gap,
    })
}

/// Adds an attempt in time order; the request is matched by the strongest of its attempts' fits.
fn add_attempt(req: &mut ClientRequest, a: Attempt, fit: Fit) {
    req.matched_by = req.matched_by.max(Some(fit.matched_by(&a)));
    let at = req.attempts.partition_point(|x| x.at <= a.at);
    req.attempts.insert(at, a);
}

/// A client request waiting for attempts.
#[derive(Debug)]
struct Waiting {
    req: ClientRequest,
    key: u64,
    /// The proxy-capture index of its connection, when the connection's role was inferred (not
    /// known from the link layer): it leaves if that connection turns out to be a backend one.
    inferred: Option<u64>,
    /// It got a plain answer and had no attempt when it began to wait (it holds one of the
    /// report's places for plain requests).
    plain: bool,
}

/// An attempt waiting for its client request.
#[derive(Debug)]
struct Parked {
    attempt: Attempt,
    key: u64,
}

/// The requests of a connection whose role waits for a backend endpoint to be known.
#[derive(Debug)]
struct Unsure {
    index: u64,
    client: Endpoint,
    server: Endpoint,
    tls: bool,
    requests: Vec<ClientRequest>,
}

/// Matches client requests with attempts, as both arrive (see the module comment).
#[derive(Debug, Default)]
pub struct ClientMatcher {
    limits: ClientLimits,
    next: u64,
    waiting: HashMap<u64, Waiting>,
    by_key: HashMap<u64, BTreeSet<(i64, u64)>>,
    /// Waiting requests that got an error (they may take a connection that carried no request).
    errors: BTreeSet<(i64, u64)>,
    /// Waiting requests by their connection's last packet (for the horizon).
    order: BTreeSet<(i64, u64)>,
    inferred: HashMap<u64, Vec<u64>>,
    parked: HashMap<u64, Parked>,
    parked_by_key: HashMap<u64, BTreeSet<(i64, u64)>>,
    parked_connects: BTreeSet<(i64, u64)>,
    parked_order: BTreeSet<(i64, u64)>,
    unsure: Vec<Unsure>,
    unsure_requests: usize,
    backends: HashSet<Endpoint>,
    proxy_ips: HashSet<IpAddr>,
    /// Before any client-side connection is seen: attempts that are not plain answers (a
    /// failure, an error status), the latest [`MAX_EARLY`]; and whether plain answers or older
    /// ones were left out (then a request without an attempt is "not found", not "answered by
    /// the proxy").
    early: std::collections::VecDeque<Attempt>,
    dropped_plain: bool,
    dropped_other: bool,
    listed: Vec<ClientRequest>,
    /// Plain requests decided (listed, or not found), and those waiting.
    listed_ok: usize,
    waiting_plain: usize,
    summary: ClientSummary,
}

impl Default for ClientLimits {
    fn default() -> ClientLimits {
        ClientLimits::DEFAULT
    }
}

impl ClientMatcher {
    pub fn new(limits: ClientLimits) -> ClientMatcher {
        ClientMatcher {
            limits,
            ..ClientMatcher::default()
        }
    }

    /// Connections of the proxy capture as they finish (all of them: the backend ones are
    /// recognised and left out), and how far the capture has been read (`i64::MAX`: to its end,
    /// which decides nothing yet).
    pub fn proxy_connections(&mut self, conns: &[Box<Conn>], pos: i64) {
        for c in conns {
            match c.client_is_local {
                Some(true) => {}
                Some(false) => self.client_connection(c, None),
                None if self.backends.is_empty() => self.hold_unsure(c),
                None if self.is_backend_side(c.client.ip, c.server) => {}
                None => self.client_connection(c, Some(c.index)),
            }
        }
        if pos != i64::MAX {
            self.advance(pos);
        }
    }

    /// A judged proxy→backend connection, its proxy-capture view (None: seen in the backend
    /// capture only, which this matcher cannot place in time), under the report's name for it.
    pub fn backend_connection(&mut self, id: &str, proxy_view: Option<&Conn>, d: &Diagnosis) {
        let Some(c) = proxy_view else { return };
        let first_backend = self.backends.is_empty();
        if self.backends.len() < MAX_ADDRESSES {
            self.backends.insert(c.server);
        }
        if self.proxy_ips.len() < MAX_ADDRESSES {
            self.proxy_ips.insert(c.client.ip);
        }
        self.retract(c.index);
        if first_backend {
            self.settle_unsure();
        }
        if !self.client_side_seen() {
            // No client side yet (and in most captures none at all): plain answers are not
            // kept, the others wait in a small queue (see `early`).
            if d.verdict == Verdict::Ok && c.app.exchanges.iter().all(plain_exchange) {
                self.dropped_plain |= !c.app.exchanges.is_empty();
                return;
            }
            for a in attempts_of(id, c, d) {
                if !a.failed && a.status.is_some_and(|s| s < 400) {
                    self.dropped_plain = true;
                    continue;
                }
                if self.early.len() >= MAX_EARLY {
                    self.early.pop_front();
                    self.dropped_other = true;
                }
                self.early.push_back(a);
            }
            return;
        }
        // Past the plain requests the report lists, a plain answer matters only to a request
        // waiting under its key (see `attempt`): the others are not even built.
        let committed = self.plain_committed();
        let by_key = &self.by_key;
        let attempts = attempts_where(id, c, d, &mut |e| {
            !(committed && plain_exchange(e) && !by_key.contains_key(&exchange_key(e)))
        });
        for a in attempts {
            self.attempt(a);
        }
    }

    /// A client-side connection has been seen.
    fn client_side_seen(&self) -> bool {
        self.summary.http_connections + self.summary.tls_connections > 0
    }

    /// Both captures are read: every waiting request is decided.
    pub fn finish(mut self) -> ClientRequests {
        self.settle_unsure();
        let ids: Vec<u64> = self.order.iter().map(|&(_, id)| id).collect();
        for id in ids {
            self.decide(id, true);
        }
        self.late_failures();
        self.summary.attempts_without_request += self.parked.len() as u64;
        let mut requests = std::mem::take(&mut self.listed);
        requests.sort_by_key(|r| (r.request_first.ts_ns, r.request_first.frame, r.client, r.exchange));
        self.summary.listed = requests.len() as u64;
        ClientRequests {
            requests,
            summary: self.summary,
        }
    }

    fn is_backend_side(&self, client: IpAddr, server: Endpoint) -> bool {
        self.backends.contains(&server) || self.proxy_ips.contains(&client)
    }

    /// A connection whose role is not known yet (no link-layer direction, no backend known).
    fn hold_unsure(&mut self, c: &Conn) {
        let requests = requests_of(c);
        if requests.is_empty() && c.app.protocol != Protocol::Tls {
            return;
        }
        self.unsure_requests += requests.len();
        self.unsure.push(Unsure {
            index: c.index,
            client: c.client,
            server: c.server,
            tls: c.app.protocol == Protocol::Tls,
            requests,
        });
        if self.unsure_requests > self.limits.max_pending {
            // Nothing learned for that long: take them as the client side they most likely are.
            let all = std::mem::take(&mut self.unsure);
            self.unsure_requests = 0;
            for u in all {
                self.add_requests(u.requests, Some(u.index), u.tls);
            }
        }
    }

    fn settle_unsure(&mut self) {
        let all = std::mem::take(&mut self.unsure);
        self.unsure_requests = 0;
        for u in all {
            if !self.is_backend_side(u.client.ip, u.server) {
                self.add_requests(u.requests, Some(u.index), u.tls);
            }
        }
    }

    fn client_connection(&mut self, c: &Conn, inferred: Option<u64>) {
        if c.app.protocol == Protocol::Tls {
            self.add_requests(Vec::new(), inferred, true);
            return;
        }
        // Past the plain requests the report lists, a plain request is only counted (see
        // `request`) unless an attempt waits under its key: it is not even built.
        let committed = self.plain_committed();
        let parked = &self.parked_by_key;
        let mut counted: Vec<Option<u16>> = Vec::new();
        let requests = requests_where(c, &mut |e| {
            if committed && plain_exchange(e) && !parked.contains_key(&exchange_key(e)) {
                counted.push(e.response.as_ref().and_then(|r| r.status));
                return false;
            }
            true
        });
        if requests.is_empty() && !counted.is_empty() {
            self.summary.http_connections += 1;
        }
        for status in counted {
            self.count_not_matched(status);
        }
        self.add_requests(requests, inferred, false);
    }

    fn add_requests(&mut self, requests: Vec<ClientRequest>, inferred: Option<u64>, tls: bool) {
        if tls {
            self.summary.tls_connections += 1;
            return;
        }
        if requests.is_empty() {
            return;
        }
        self.summary.http_connections += 1;
        if self.summary.http_connections == 1 {
            for a in std::mem::take(&mut self.early) {
                self.attempt(a);
            }
        }
        for r in requests {
            self.request(r, inferred);
        }
    }

    /// A client request arrives: it takes the waiting attempts that fit it, then waits (unless
    /// settled).
    fn request(&mut self, mut req: ClientRequest, inferred: Option<u64>) {
        let key = match_key(req.method.as_deref(), req.target.as_deref());
        for id in self.parked_for(&req, key) {
            let fit = fits(&req, &self.parked[&id].attempt);
            let Some(fit) = fit else { continue };
            let a = self.unpark(id);
            add_attempt(&mut req, a, fit);
            if req.settled() {
                break;
            }
        }
        if req.settled() {
            self.conclude(req, false);
            return;
        }
        let plain = req.attempts.is_empty() && req.is_plain();
        if plain && self.plain_committed() {
            // Past the plain requests the report lists: counted, not matched (matching them
            // would keep every one until the pooled backend connection that carried it closes).
            self.count_not_matched(req.status);
            return;
        }
        self.wait(req, key, inferred, plain);
    }

    /// The parked attempts a client request may take, in time order: those of the best
    /// identification only; an answer with the client's status, when there is one, excludes
    /// complete answers with another status; answers that do not explain the client's error
    /// only when nothing else fits.
    fn parked_for(&self, req: &ClientRequest, key: u64) -> Vec<u64> {
        let (lo, hi) = (req.request_first.ts_ns, req.deadline());
        let mut cands: Vec<(i64, u64)> = Vec::new();
        if let Some(set) = self.parked_by_key.get(&key) {
            cands.extend(set.range((lo, 0)..=(hi, u64::MAX)).take(MAX_CANDIDATES));
        }
        if req.is_error() {
            cands.extend(
                self.parked_connects
                    .range((lo, 0)..=(hi, u64::MAX))
                    .take(MAX_CANDIDATES),
            );
        }
        let fitting: Vec<(u64, Fit)> = cands
            .iter()
            .filter_map(|&(_, id)| fits(req, &self.parked[&id].attempt).map(|f| (id, f)))
            .collect();
        let best = fitting.iter().map(|(_, f)| f.identity()).max();
        let any_status = fitting
            .iter()
            .any(|(_, f)| f.status && Some(f.identity()) == best);
        let any_strong = fitting.iter().any(|(_, f)| !f.weak && Some(f.identity()) == best);
        let mut chosen: Vec<(i64, u64)> = fitting
            .iter()
            .filter(|(id, f)| {
                Some(f.identity()) == best
                    && (f.status || !any_status || self.parked[id].attempt.failed)
                    && (!f.weak || !any_strong)
            })
            .map(|&(id, _)| (self.parked[&id].attempt.at.ts_ns, id))
            .collect();
        chosen.sort_unstable();
        chosen.into_iter().map(|(_, id)| id).collect()
    }

    /// A plain request past those the report lists: counted by status, not matched.
    fn count_not_matched(&mut self, status: Option<u16>) {
        let s = &mut self.summary;
        s.requests += 1;
        *s.by_status.entry(status).or_insert(0) += 1;
        s.plain_not_matched += 1;
    }

    /// A client request waits for attempts (the oldest waiting are decided when the table is
    /// full).
    fn wait(&mut self, req: ClientRequest, key: u64, inferred: Option<u64>, plain: bool) {
        let id = self.next;
        self.next += 1;
        self.by_key
            .entry(key)
            .or_default()
            .insert((req.request_first.ts_ns, id));
        if req.is_error() {
            self.errors.insert((req.request_first.ts_ns, id));
        }
        self.order.insert((req.last.ts_ns, id));
        if let Some(index) = inferred {
            self.inferred.entry(index).or_default().push(id);
        }
        self.waiting_plain += usize::from(plain);
        self.waiting.insert(
            id,
            Waiting {
                req,
                key,
                inferred,
                plain,
            },
        );
        while self.waiting.len() > self.limits.max_pending {
            let Some(&(_, oldest)) = self.order.first() else {
                break;
            };
            self.decide(oldest, false);
        }
    }

    /// An attempt arrives: it goes to the waiting request it fits best, or waits.
    fn attempt(&mut self, a: Attempt) {
        let key = match_key(a.method.as_deref(), a.target.as_deref());
        let set = if a.exchange.is_some() {
            self.by_key.get(&key)
        } else {
            Some(&self.errors)
        };
        let mut best: Option<(u64, Fit)> = None;
        let mut alike = 0usize;
        if let Some(set) = set {
            for &(_, id) in set.range(..=(a.at.ts_ns, u64::MAX)).rev().take(MAX_CANDIDATES) {
                // An answer that does not explain a client's error waits for that client's own
                // request instead (see `request`).
                let Some(f) = fits(&self.waiting[&id].req, &a).filter(|f| !f.weak) else {
                    continue;
                };
                let rank = |f: &Fit| (f.id, f.addr, f.exact, f.status, std::cmp::Reverse(f.gap));
                match &best {
                    Some((_, b)) if (b.identity(), b.status) == (f.identity(), f.status) => {
                        alike += 1;
                        if rank(&f) > rank(b) {
                            best = Some((id, f));
                        }
                    }
                    Some((_, b)) if rank(&f) <= rank(b) => {}
                    _ => {
                        best = Some((id, f));
                        alike = 0;
                    }
                }
            }
        }
        let Some((id, fit)) = best else {
            // A plain answer, once the plain requests the report lists are known, belongs to a
            // request that is not matched (see `request`).
            let plain = !a.failed && a.status.is_some_and(|s| s < 400);
            if !(plain && self.plain_committed()) {
                self.park(a, key);
            }
            return;
        };
        let w = self.waiting.get_mut(&id).expect("indexed");
        if w.req.attempts.is_empty() {
            w.req.alternatives = alike;
        }
        add_attempt(&mut w.req, a, fit);
        if w.req.settled() {
            self.decide(id, false);
        }
    }

    fn park(&mut self, a: Attempt, key: u64) {
        let id = self.next;
        self.next += 1;
        let t = a.at.ts_ns;
        if a.exchange.is_some() {
            self.parked_by_key.entry(key).or_default().insert((t, id));
        } else {
            self.parked_connects.insert((t, id));
        }
        self.parked_order.insert((a.last.ts_ns, id));
        self.parked.insert(id, Parked { attempt: a, key });
        while self.parked.len() > self.limits.max_pending {
            let Some(&(_, oldest)) = self.parked_order.first() else {
                break;
            };
            self.unpark(oldest);
            self.summary.attempts_without_request += 1;
        }
    }

    fn unpark(&mut self, id: u64) -> Attempt {
        let p = self.parked.remove(&id).expect("parked");
        let t = p.attempt.at.ts_ns;
        if p.attempt.exchange.is_some() {
            if let Some(set) = self.parked_by_key.get_mut(&p.key) {
                set.remove(&(t, id));
                if set.is_empty() {
                    self.parked_by_key.remove(&p.key);
                }
            }
        } else {
            self.parked_connects.remove(&(t, id));
        }
        self.parked_order.remove(&(p.attempt.last.ts_ns, id));
        p.attempt
    }

    /// A waiting request leaves the tables.
    fn unwait(&mut self, id: u64) -> Option<Waiting> {
        let w = self.waiting.remove(&id)?;
        self.waiting_plain -= usize::from(w.plain);
        let t = w.req.request_first.ts_ns;
        if let Some(set) = self.by_key.get_mut(&w.key) {
            set.remove(&(t, id));
            if set.is_empty() {
                self.by_key.remove(&w.key);
            }
        }
        self.errors.remove(&(t, id));
        self.order.remove(&(w.req.last.ts_ns, id));
        if let Some(index) = w.inferred {
            if let Some(v) = self.inferred.get_mut(&index) {
                v.retain(|&x| x != id);
                if v.is_empty() {
                    self.inferred.remove(&index);
                }
            }
        }
        Some(w)
    }

    /// The connection at `index` of the proxy capture is a backend one: requests taken from it
    /// as client requests leave, and their attempts wait again.
    fn retract(&mut self, index: u64) {
        self.unsure.retain(|u| u.index != index);
        let Some(ids) = self.inferred.remove(&index) else {
            return;
        };
        for id in ids {
            if let Some(w) = self.unwait(id) {
                for a in w.req.attempts {
                    let key = match_key(a.method.as_deref(), a.target.as_deref());
                    self.park(a, key);
                }
            }
        }
    }

    /// A waiting request is decided: at the end of the captures (`at_end`), or early.
    fn decide(&mut self, id: u64, at_end: bool) {
        if let Some(w) = self.unwait(id) {
            if !at_end {
                self.summary.decided_early += u64::from(!w.req.settled());
            }
            self.conclude(w.req, at_end);
        }
    }

    fn conclude(&mut self, mut req: ClientRequest, at_end: bool) {
        // Without attempts, "answered by the proxy" needs every attempt of the captures to have
        // been looked at: not when some were left out before the client side showed up.
        let left_out = if req.is_plain() {
            self.dropped_plain
        } else {
            self.dropped_other
        };
        req.answered_by = match req.attempts.last() {
            Some(a) if !a.failed => AnsweredBy::Backend,
            Some(_) => AnsweredBy::Proxy,
            None if at_end && !left_out => AnsweredBy::Proxy,
            None => AnsweredBy::NotFound,
        };
        let s = &mut self.summary;
        s.requests += 1;
        *s.by_status.entry(req.status).or_insert(0) += 1;
        match req.answered_by {
            AnsweredBy::Backend => s.answered_by_backend += 1,
            AnsweredBy::Proxy => {
                s.answered_by_proxy += 1;
                s.proxy_without_backend += u64::from(req.attempts.is_empty());
            }
            AnsweredBy::NotFound => s.not_found += 1,
        }
        s.with_failed_attempt += u64::from(req.attempts.iter().any(|a| a.failed));
        if req.is_notable() {
            if self.listed.len() - self.listed_ok < self.limits.max_listed {
                self.listed.push(req);
            }
        } else if self.listed_ok < self.limits.max_listed_ok {
            // A plain request whose attempt was not found tells nothing: it takes its place
            // in the quota, unlisted.
            self.listed_ok += 1;
            if req.answered_by != AnsweredBy::NotFound {
                self.listed.push(req);
            }
        }
    }

    /// Failed attempts still waiting at the end may belong to requests already decided: a retry
    /// settled them before the failure was reported (a failed connection can be judged last, e.g.
    /// an empty reply that might be a keep-alive race), or they had to be decided early. They go
    /// to the listed request they fit best.
    fn late_failures(&mut self) {
        let mut ids: Vec<(i64, u64)> = self
            .parked
            .iter()
            .filter(|(_, p)| p.attempt.failed)
            .map(|(&id, p)| (p.attempt.at.ts_ns, id))
            .collect();
        ids.sort_unstable();
        for (_, id) in ids {
            let a = &self.parked[&id].attempt;
            let rank = |f: &Fit| (f.id, f.addr, f.exact, std::cmp::Reverse(f.gap));
            let best = self
                .listed
                .iter()
                .enumerate()
                .filter_map(|(i, r)| fits(r, a).filter(|f| !f.weak).map(|f| (i, f)))
                .max_by_key(|(_, f)| rank(f));
            let Some((i, fit)) = best else { continue };
            let a = self.unpark(id);
            let r = &mut self.listed[i];
            let had_failed = r.attempts.iter().any(|x| x.failed);
            add_attempt(r, a, fit);
            self.summary.with_failed_attempt += u64::from(!had_failed);
            if r.answered_by == AnsweredBy::NotFound {
                r.answered_by = AnsweredBy::Proxy;
                self.summary.not_found -= 1;
                self.summary.answered_by_proxy += 1;
            }
        }
    }

    /// No more plain requests wait: those the report lists (or has decided) and those waiting
    /// fill its quota.
    fn plain_committed(&self) -> bool {
        self.listed_ok + self.waiting_plain >= self.limits.max_listed_ok
    }

    /// The capture has been read up to `pos`: entries older than the horizon are decided.
    fn advance(&mut self, pos: i64) {
        let limit = pos.saturating_sub(self.limits.horizon_ns);
        while let Some(&(t, id)) = self.order.first() {
            if t >= limit {
                break;
            }
            self.decide(id, false);
        }
        while let Some(&(t, id)) = self.parked_order.first() {
            if t >= limit {
                break;
            }
            self.unpark(id);
            self.summary.attempts_without_request += 1;
        }
    }
}

impl ClientLimits {
    const DEFAULT: ClientLimits = ClientLimits {
        max_pending: 20_000,
        horizon_ns: 300_000_000_000,
        max_listed: 10_000,
        max_listed_ok: 1_000,
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::FrameRef;

    const MS: i64 = 1_000_000;

    fn at(frame: u32, ms: i64) -> PacketRef {
        PacketRef {
            frame: FrameRef { file: 0, frame },
            ts_ns: ms * MS,
        }
    }

    fn ep(s: &str) -> Endpoint {
        let (ip, port) = s.rsplit_once(':').unwrap();
        Endpoint {
            ip: ip.parse().unwrap(),
            port: port.parse().unwrap(),
        }
    }

    /// A client request from `client` sent at `t` ms, answered `status` at `answer` ms.
    fn req(client: &str, target: &str, t: i64, answer: i64, status: Option<u16>) -> ClientRequest {
        ClientRequest {
            client: ep(client),
            proxy: ep("10.0.0.1:80"),
            exchange: 1,
            method: Some("GET".into()),
            target: Some(target.into()),
            request_first: at(t as u32, t),
            request_last: at(t as u32, t),
            request_bytes: 100,
            body_bytes: 0,
            request_complete: true,
            status,
            response_first: status.map(|_| at(answer as u32, answer)),
            response_last: status.map(|_| at(answer as u32, answer)),
            response_bytes: 200,
            response_complete: status.is_some(),
            close: status.is_none().then(|| Close {
                at: at(answer as u32, answer),
                by_proxy: true,
                reset: false,
            }),
            last: at(answer as u32 + 1, answer + 1),
            request_id: None,
            attempts: Vec::new(),
            answered_by: AnsweredBy::NotFound,
            matched_by: None,
            alternatives: 0,
        }
    }

    /// An attempt on connection `conn` sent at `t` ms: answered `status` (complete) or failed.
    fn att(conn: &str, target: &str, t: i64, status: Option<u16>) -> Attempt {
        Attempt {
            connection: conn.into(),
            client: ep("10.0.1.2:40000"),
            server: ep("10.0.2.2:8080"),
            exchange: Some(1),
            at: at(t as u32, t),
            last: at(t as u32 + 2, t + 2),
            method: Some("GET".into()),
            target: Some(target.into()),
            body_bytes: 0,
            request_complete: true,
            status,
            response_first: status.map(|_| at(t as u32 + 1, t + 1)),
            response_complete: status.is_some(),
            forwarded_for: None,
            request_id: None,
            verdict: if status.is_some() {
                Verdict::Ok
            } else {
                Verdict::BackendEmptyReply
            },
            blame: if status.is_some() {
                Blame::None
            } else {
                Blame::Backend
            },
            failed: status.is_none(),
        }
    }

    fn run(reqs: Vec<ClientRequest>, atts: Vec<Attempt>, attempts_first: bool) -> ClientRequests {
        let mut m = ClientMatcher::new(ClientLimits::default());
        m.summary.http_connections = 1;
        if attempts_first {
            atts.into_iter().for_each(|a| m.attempt(a));
            reqs.into_iter().for_each(|r| m.request(r, None));
        } else {
            reqs.into_iter().for_each(|r| m.request(r, None));
            atts.into_iter().for_each(|a| m.attempt(a));
        }
        m.finish()
    }

    /// (client port, target) → the connections of its attempts.
    fn pairs(r: &ClientRequests) -> Vec<(u16, Vec<String>)> {
        let mut v: Vec<(u16, Vec<String>)> = r
            .requests
            .iter()
            .map(|q| {
                (
                    q.client.port,
                    q.attempts.iter().map(|a| a.connection.clone()).collect(),
                )
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn equal_request_ids_match_and_different_ones_never() {
        // Two identical requests at the same moment; time alone would pair them crosswise.
        let mut a = req("10.0.0.2:1001", "/x", 10, 50, Some(200));
        let mut b = req("10.0.0.2:1002", "/x", 11, 50, Some(200));
        a.request_id = Some("A".into());
        b.request_id = Some("B".into());
        let mut x = att("1", "/x", 12, Some(200));
        let mut y = att("2", "/x", 11, Some(200));
        x.request_id = Some("A".into());
        y.request_id = Some("B".into());
        for first in [true, false] {
            let r = run(vec![a.clone(), b.clone()], vec![x.clone(), y.clone()], first);
            assert_eq!(
                pairs(&r),
                vec![(1001, vec!["1".into()]), (1002, vec!["2".into()])]
            );
            assert!(
                r.requests
                    .iter()
                    .all(|q| q.matched_by == Some(MatchedBy::RequestId))
            );
        }
    }

    #[test]
    fn without_ids_the_nearest_request_takes_the_attempt() {
        let a = req("10.0.0.2:1001", "/x", 10, 50, Some(200));
        let b = req("10.0.0.2:1002", "/x", 20, 60, Some(200));
        let x = att("1", "/x", 11, Some(200));
        let y = att("2", "/x", 21, Some(200));
        for first in [true, false] {
            let r = run(vec![a.clone(), b.clone()], vec![x.clone(), y.clone()], first);
            assert_eq!(
                pairs(&r),
                vec![(1001, vec!["1".into()]), (1002, vec!["2".into()])]
            );
        }
    }

    #[test]
    fn a_forwarded_address_never_matches_another_client() {
        let a = req("10.0.0.2:1001", "/x", 10, 50, Some(200));
        let b = req("10.0.0.3:1002", "/x", 11, 50, Some(200));
        let mut x = att("1", "/x", 12, Some(200));
        x.forwarded_for = Some("10.0.0.2".parse().unwrap());
        let mut y = att("2", "/x", 13, Some(200));
        y.forwarded_for = Some("10.0.0.3".parse().unwrap());
        for first in [true, false] {
            let r = run(vec![a.clone(), b.clone()], vec![y.clone(), x.clone()], first);
            assert_eq!(
                pairs(&r),
                vec![(1001, vec!["1".into()]), (1002, vec!["2".into()])]
            );
            assert!(
                r.requests
                    .iter()
                    .all(|q| q.matched_by == Some(MatchedBy::ClientAddress))
            );
        }
    }

    #[test]
    fn targets_match_through_a_stripped_prefix_with_the_same_query() {
        assert_eq!(same_target("/down/status?a=1", "/status?a=1"), Some(false));
        assert_eq!(same_target("/status", "/api/v1/status"), Some(false));
        assert_eq!(same_target("/x?a=1", "/x?a=1"), Some(true));
        assert_eq!(same_target("/x?a=1", "/x?a=2"), None);
        assert_eq!(same_target("/down/status", "/nostatus"), None);
        assert_eq!(same_target("http://shop.example/a/b", "/b"), Some(false));
        let a = req("10.0.0.2:1001", "/down/status", 10, 50, Some(200));
        let r = run(vec![a], vec![att("1", "/status", 12, Some(200))], true);
        assert_eq!(pairs(&r), vec![(1001, vec!["1".into()])]);
        let a = req("10.0.0.2:1001", "/x?page=1", 10, 50, Some(200));
        let r = run(vec![a], vec![att("1", "/x?page=2", 12, Some(200))], true);
        assert_eq!(pairs(&r), vec![(1001, vec![])]);
    }

    #[test]
    fn a_different_body_size_never_matches() {
        let mut a = req("10.0.0.2:1001", "/up", 10, 50, Some(200));
        a.method = Some("POST".into());
        a.body_bytes = 1000;
        let mut x = att("1", "/up", 12, Some(200));
        x.method = Some("POST".into());
        x.body_bytes = 999;
        let r = run(vec![a.clone()], vec![x.clone()], false);
        assert!(r.requests.is_empty() || r.requests[0].attempts.is_empty());
        x.body_bytes = 1000;
        let r = run(vec![a], vec![x], false);
        assert_eq!(pairs(&r), vec![(1001, vec!["1".into()])]);
    }

    #[test]
    fn an_attempt_outside_the_request_window_never_fits() {
        let a = req("10.0.0.2:1001", "/x", 10, 50, Some(200));
        for t in [9, 51] {
            let r = run(vec![a.clone()], vec![att("1", "/x", t, Some(200))], true);
            assert!(r.requests[0].attempts.is_empty(), "attempt at {t} ms");
        }
    }

    #[test]
    fn a_connection_without_request_goes_only_to_an_error() {
        let ok = req("10.0.0.2:1001", "/a", 10, 50, Some(200));
        let err = req("10.0.0.2:1002", "/b", 12, 50, Some(503));
        let mut refused = att("9", "", 20, None);
        refused.exchange = None;
        refused.method = None;
        refused.target = None;
        refused.verdict = Verdict::ConnectRefused;
        for first in [true, false] {
            let r = run(vec![ok.clone(), err.clone()], vec![refused.clone()], first);
            assert_eq!(pairs(&r), vec![(1001, vec![]), (1002, vec!["9".into()])]);
            let e = r.requests.iter().find(|q| q.client.port == 1002).unwrap();
            assert_eq!(
                (e.answered_by, e.matched_by),
                (AnsweredBy::Proxy, Some(MatchedBy::Time))
            );
        }
    }

    #[test]
    fn retries_line_up_in_time_whatever_order_they_arrive_in() {
        let a = req("10.0.0.2:1001", "/x", 10, 100, Some(200));
        let first = att("1", "/x", 12, None); // failed, its connection ends at 14 ms
        let retry = att("2", "/x", 20, Some(200));
        for order in [
            vec![first.clone(), retry.clone()],
            vec![retry.clone(), first.clone()],
        ] {
            for attempts_first in [true, false] {
                let r = run(vec![a.clone()], order.clone(), attempts_first);
                assert_eq!(pairs(&r), vec![(1001, vec!["1".into(), "2".into()])]);
                assert_eq!(r.requests[0].answered_by, AnsweredBy::Backend);
            }
        }
        // A retry never starts before the failed attempt's connection ended.
        let early = att("3", "/x", 13, Some(200));
        let r = run(vec![a], vec![first, early], false);
        assert_eq!(pairs(&r), vec![(1001, vec!["1".into()])]);
    }

    #[test]
    fn a_plain_answer_does_not_explain_an_error_when_a_failure_fits() {
        // Two requests for /x at once: one got 502 (its attempt failed), one got 200.
        let bad = req("10.0.0.2:1001", "/x", 10, 50, Some(502));
        let good = req("10.0.0.2:1002", "/x", 11, 60, Some(200));
        let ok = att("1", "/x", 12, Some(200));
        let failed = att("2", "/x", 13, None);
        for attempts_first in [true, false] {
            let r = run(
                vec![bad.clone(), good.clone()],
                vec![ok.clone(), failed.clone()],
                attempts_first,
            );
            assert_eq!(
                pairs(&r),
                vec![(1001, vec!["2".into()]), (1002, vec!["1".into()])]
            );
        }
    }

    #[test]
    fn without_attempts_the_proxy_answered_at_the_end_but_not_found_early() {
        let a = req("10.0.0.2:1001", "/x", 10, 11, Some(503));
        let r = run(vec![a.clone()], vec![], false);
        assert_eq!(r.requests[0].answered_by, AnsweredBy::Proxy);
        assert_eq!(r.summary.proxy_without_backend, 1);
        // Decided before the end (past the horizon): not found.
        let mut m = ClientMatcher::new(ClientLimits::default());
        m.summary.http_connections = 1;
        m.request(a, None);
        m.advance(400_000 * MS);
        let r = m.finish();
        assert_eq!(r.requests[0].answered_by, AnsweredBy::NotFound);
        assert_eq!(r.summary.decided_early, 1);
    }

    #[test]
    fn plain_requests_past_the_listed_ones_are_counted_not_matched() {
        let limits = ClientLimits {
            max_listed_ok: 2,
            ..ClientLimits::default()
        };
        let mut m = ClientMatcher::new(limits);
        m.summary.http_connections = 1;
        for i in 0..5 {
            m.request(
                req(
                    &format!("10.0.0.2:{}", 1000 + i),
                    "/x",
                    10 * i,
                    10 * i + 5,
                    Some(200),
                ),
                None,
            );
        }
        m.request(req("10.0.0.2:2000", "/y", 100, 105, Some(502)), None);
        for i in 0..5 {
            m.attempt(att(&i.to_string(), "/x", 10 * i + 1, Some(200)));
        }
        m.attempt(att("9", "/y", 101, None));
        let r = m.finish();
        assert_eq!(r.summary.requests, 6);
        assert_eq!(r.summary.plain_not_matched, 3);
        assert_eq!(r.summary.answered_by_backend, 2);
        assert_eq!(r.summary.answered_by_proxy, 1);
        assert_eq!(r.summary.attempts_without_request, 0);
        assert_eq!(
            pairs(&r),
            vec![
                (1000, vec!["0".into()]),
                (1001, vec!["1".into()]),
                (2000, vec!["9".into()])
            ]
        );
    }

    #[test]
    fn the_waiting_table_is_bounded() {
        let limits = ClientLimits {
            max_pending: 10,
            ..ClientLimits::default()
        };
        let mut m = ClientMatcher::new(limits);
        m.summary.http_connections = 1;
        for i in 0..100 {
            m.request(
                req(&format!("10.0.0.2:{}", 1000 + i), "/x", i, i + 1, Some(502)),
                None,
            );
            m.attempt(att(&i.to_string(), "/other", 1000 + i, None));
            assert!(m.waiting.len() <= 10 && m.parked.len() <= 10);
        }
        let r = m.finish();
        assert_eq!(r.summary.requests, 100);
        assert_eq!(r.summary.decided_early, 90);
        assert_eq!(r.summary.attempts_without_request, 100);
    }

    #[test]
    fn forwarded_addresses_are_read_as_proxies_write_them() {
        for (v, want) in [
            ("10.0.0.2", "10.0.0.2"),
            ("203.0.113.7, 10.0.0.2", "10.0.0.2"),
            ("\"[2001:db8::1]:4711\"", "2001:db8::1"),
            ("10.0.0.2:5555", "10.0.0.2"),
        ] {
            assert_eq!(
                parse_ip(v.rsplit(',').next().unwrap()),
                Some(want.parse().unwrap()),
                "{v}"
            );
        }
        assert_eq!(parse_ip("unknown"), None);
        // The length filter of `is_kept_header` knows every kept name.
        for k in KEPT_HEADERS {
            assert!(
                is_kept_header(k) && is_kept_header(&k.to_ascii_uppercase()),
                "{k}"
            );
        }
        assert!(!is_kept_header("Content-Type") && !is_kept_header("User-Agent"));
        assert_eq!(cut("aé", 2), "a");
        assert_eq!(
            match_key(Some("GET"), Some("/down/status?x=1")),
            match_key(Some("GET"), Some("/status?x=1"))
        );
        assert_ne!(
            match_key(Some("GET"), Some("/status?x=1")),
            match_key(Some("GET"), Some("/status?x=2"))
        );
    }
}

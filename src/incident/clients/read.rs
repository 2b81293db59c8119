//! A connection → its client requests ([`requests_of`]), or its attempts at the backend
//! ([`attempts_of`]), with what matching reads of them (request ids, forwarded addresses).

use std::net::IpAddr;

use super::fit::match_key;
use super::{ID_HEADERS, MAX_TARGET_BYTES, MAX_VALUE_BYTES};
use crate::decode::Endpoint;
use crate::diagnose::{Blame, Diagnosis, Verdict};
use crate::http::{Conn, Exchange, Message, Protocol};
use crate::incident::cut_at_char;
use crate::tcp::PacketRef;

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
    pub(super) fn deadline(&self) -> i64 {
        match (self.response_first, self.close) {
            (Some(r), _) => r.ts_ns,
            (None, Some(c)) => c.at.ts_ns,
            (None, None) => i64::MAX,
        }
    }

    /// It got an error: 5xx, or no final status.
    pub(crate) fn is_error(&self) -> bool {
        self.status.is_none_or(|s| s >= 500)
    }

    pub(super) fn settled(&self) -> bool {
        self.attempts.last().is_some_and(|a| !a.failed)
    }

    /// It got a complete answer below 400: nothing went wrong that the client saw.
    pub(crate) fn is_plain(&self) -> bool {
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

/// The requests of one client-side connection.
pub(crate) fn requests_of(c: &Conn) -> Vec<ClientRequest> {
    requests_where(c, &mut |_| true)
}

/// The requests of its exchanges that `keep` accepts.
pub(super) fn requests_where(c: &Conn, keep: &mut dyn FnMut(&Exchange) -> bool) -> Vec<ClientRequest> {
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
            target: req
                .target
                .as_deref()
                .map(|t| cut_at_char(t, MAX_TARGET_BYTES).to_string()),
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
pub(crate) fn attempts_of(id: &str, c: &Conn, d: &Diagnosis) -> Vec<Attempt> {
    attempts_where(id, c, d, &mut |_| true)
}

/// The attempts of its exchanges that `keep` accepts (and the connection's own, when it carried
/// no request and failed).
pub(super) fn attempts_where(
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
            target: req
                .target
                .as_deref()
                .map(|t| cut_at_char(t, MAX_TARGET_BYTES).to_string()),
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
pub(super) fn plain_exchange(e: &Exchange) -> bool {
    e.request.as_ref().is_some_and(|m| m.complete)
        && e.response
            .as_ref()
            .is_some_and(|m| m.complete && m.status.is_some_and(|s| s < 400))
}

/// The index key of an exchange's request.
pub(super) fn exchange_key(e: &Exchange) -> u64 {
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
        .map(|h| cut_at_char(h.value.trim(), MAX_VALUE_BYTES).to_string())
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
pub(super) fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse() {
        return Some(ip);
    }
    if let Some(rest) = s.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    s.rsplit_once(':').and_then(|(ip, _)| ip.parse().ok())
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

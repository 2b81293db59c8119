//! The rules, in the order they are tried. Each rule looks at the connection as the proxy
//! capture saw it (`p`), as the backend capture saw it (`b`), and at the byte-range alignment of
//! the two, and either returns a diagnosis or passes.
//!
//! Conventions: the client of a connection is the proxy, the server is the backend. Times are on
//! the proxy clock unless a name ends in `_b` (backend clock). With one capture, the view is `p`.

use super::{Blame, Diagnosis, Evidence, Verdict};
use crate::capture::Side;
use crate::http::Conn;
use crate::http::{Exchange, Framing, Message, Protocol};
use crate::pair::{Alignment, ClockOffset};
use crate::tcp::{CloseMark, Dir, DirSummary, IcmpMark, PacketRef};

/// Everything a rule may look at.
pub struct Context<'a> {
    /// The proxy capture's view (or the only capture's).
    pub p: Option<&'a Conn>,
    /// The backend capture's view.
    pub b: Option<&'a Conn>,
    /// Two captures were given (a missing view is then a finding).
    pub two_captures: bool,
    /// The side label of the first capture (`Proxy`, or `Single` for `flows`).
    pub first_side: Side,
    pub clock: Option<&'a ClockOffset>,
    pub alignment: Option<&'a Alignment>,
    /// Last packet time of each capture (own clocks), to tell "never sent" from "after the end".
    pub proxy_capture_end: i64,
    pub backend_capture_end: i64,
    /// The backend's keep-alive (idle) timeout, when its idle closes of other connections show
    /// it (see [`super::idle_close_timeout`]).
    pub backend_idle_timeout: Option<i64>,
}

/// Slack on the keep-alive race's one-round-trip window for timestamp jitter: a FIN that crossed
/// the request reaches the proxy less than one round trip after the request left (the request
/// reached the backend after the FIN left), so the window is the round trip plus this.
const RACE_TIMESTAMP_SLACK_NS: i64 = 50_000;

/// How long a backend may take, after the request arrived, to reset a connection its idle timer
/// closed with the request unread (no FIN): its timer fires about when the request arrives.
const RACE_RST_REACTION_NS: i64 = 1_000_000;

/// A keep-alive race needs an idle connection: servers close idle connections after their
/// keep-alive timeout (seconds; never below tens of milliseconds). A connection busy a moment
/// before was not closed for being idle.
const MIN_IDLE_FOR_RACE_NS: i64 = 50_000_000;

pub fn diagnose(cx: &Context<'_>) -> Diagnosis {
    let mut d = match (cx.p, cx.b) {
        (Some(p), b) => with_proxy_view(cx, p, b),
        (None, Some(b)) => backend_only(cx, b),
        (None, None) => Diagnosis {
            verdict: Verdict::CaptureIncomplete,
            blame: Blame::Capture,
            explanation: "No packet of this connection in either capture.".into(),
            next_step: String::new(),
            evidence: Vec::new(),
        },
    };
    d.evidence
        .sort_by_key(|e| (e.side != cx.first_side, e.ts_ns, e.frame));
    d.evidence
        .dedup_by(|a, b| a.side == b.side && a.frame == b.frame && a.what == b.what);
    d
}

/// Evidence builder.
struct Ev {
    list: Vec<Evidence>,
}

impl Ev {
    fn new() -> Ev {
        Ev { list: Vec::new() }
    }
    fn add(&mut self, side: Side, at: PacketRef, what: impl Into<String>) {
        self.list.push(Evidence {
            side,
            frame: at.frame,
            ts_ns: at.ts_ns,
            what: what.into(),
        });
    }
}

fn verdict(v: Verdict, blame: Blame, explanation: String, next_step: &str, ev: Ev) -> Diagnosis {
    Diagnosis {
        verdict: v,
        blame,
        explanation,
        next_step: next_step.to_string(),
        evidence: ev.list,
    }
}

/// Milliseconds, readable.
fn ms(ns: i64) -> String {
    let v = ns as f64 / 1e6;
    if v.abs() >= 1000.0 {
        format!("{:.2} s", v / 1000.0)
    } else if v.abs() >= 10.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.2} ms")
    }
}

fn bytes(n: u64) -> String {
    if n == 1 {
        "1 byte".to_string()
    } else {
        format!("{n} bytes")
    }
}

/// The earliest FIN or RST of a direction: (mark, is_rst).
fn close_of(d: &DirSummary) -> Option<(CloseMark, bool)> {
    match (d.fin, d.rst) {
        (Some(f), Some(r)) => Some(if r.at < f.at { (r, true) } else { (f, false) }),
        (Some(f), None) => Some((f, false)),
        (None, Some(r)) => Some((r, true)),
        (None, None) => None,
    }
}

/// Is an idle period ending in the backend's close the backend's idle timeout `t`?
pub(super) fn is_idle_close(idle: i64, t: i64) -> bool {
    (idle - t).abs() <= idle_tolerance(t)
}

/// How far an idle close may land from the timeout: timers fire late by scheduling, by up to a
/// few milliseconds or a few percent.
pub(super) fn idle_tolerance(t: i64) -> i64 {
    (t / 50).max(5_000_000)
}

/// A byte range of a stream, ends included, as the ladder diagrams label them: `bytes 197-395`.
fn byte_range(start: i64, end: i64) -> String {
    if end - start == 1 {
        format!("byte {start}")
    } else {
        format!("bytes {start}-{}", end - 1)
    }
}

fn ttl_text(lo: u8, hi: u8) -> String {
    if lo == hi {
        lo.to_string()
    } else {
        format!("{lo}-{hi}")
    }
}

/// The first acknowledgement from the receiver that covered `offset` of direction `d` (spans
/// remember the first ACK covering their end; the span holding `offset` gives it).
fn first_ack_covering(d: &DirSummary, offset: i64) -> Option<PacketRef> {
    d.spans
        .iter()
        .filter(|s| s.end >= offset && s.start < offset.max(s.start + 1))
        .filter_map(|s| s.acked)
        .min()
        .or_else(|| d.acked.filter(|(a, _)| *a >= offset).map(|(_, at)| at))
}

fn kind(rst: bool) -> &'static str {
    if rst { "RST" } else { "FIN" }
}

/// The round-trip time seen at this capture point: handshake first, else the first data ACK.
fn rtt(c: &Conn, at_client: bool) -> Option<i64> {
    if at_client {
        if let (Some(s), Some(sa)) = (c.syn, c.syn_ack) {
            return Some(sa.ts_ns - s.ts_ns);
        }
    } else if let (Some(sa), Some(a)) = (c.syn_ack, c.established) {
        return Some(a.ts_ns - sa.ts_ns);
    }
    let span = c.to_server().spans.first()?;
    Some(span.acked?.ts_ns - span.last.ts_ns)
}

/// A request that did not go out whole, or a response that did not come back whole.
enum Failure<'a> {
    /// The request (index, exchange) was not sent completely.
    Request(usize, &'a Exchange, &'a Message),
    /// The request went out whole; no response, or an incomplete one.
    Response(usize, &'a Exchange, &'a Message),
}

fn first_failure(c: &Conn) -> Option<Failure<'_>> {
    for (i, e) in c.app.exchanges.iter().enumerate() {
        let Some(req) = &e.request else { continue };
        // A request whose length the capture cannot tell (snaplen cut its headers) is judged by
        // its answer: a response that started means the backend took the request in.
        // So is a GET or HEAD: it has no body, its head went out in its first packets.
        let unknown_but_answered = req.framing == Framing::Unknown && (e.response.is_some() || bodyless(req));
        if !req.complete && !unknown_but_answered {
            return Some(Failure::Request(i, e, req));
        }
        // An answer that came after the proxy had closed its side came too late: the proxy had
        // given up on it.
        let after_proxy_closed =
            |r: &Message| close_of(c.to_server()).is_some_and(|(m, _)| m.at.ts_ns < r.first.ts_ns);
        if e.response
            .as_ref()
            .is_none_or(|r| !r.complete || after_proxy_closed(r))
        {
            return Some(Failure::Response(i, e, req));
        }
    }
    None
}

/// A request of a method that carries no body (RFC 9110 gives a GET or HEAD body no meaning;
/// proxies do not send one).
fn bodyless(m: &Message) -> bool {
    matches!(m.method.as_deref(), Some("GET" | "HEAD"))
}

fn request_line(m: &Message) -> String {
    format!(
        "{} {}",
        m.method.as_deref().unwrap_or("?"),
        m.target.as_deref().unwrap_or("?")
    )
}

fn expected_body(m: &Message) -> Option<u64> {
    match m.framing {
        Framing::ContentLength(n) => Some(n),
        _ => None,
    }
}

/// The backend view's exchange for the proxy view's request (same first byte in sequence space).
fn backend_exchange<'a>(p: &Conn, b: &'a Conn, req: &Message) -> Option<&'a Exchange> {
    let raw = |c: &Conn, off: i64| c.dirs[0].origin.map(|o| o.wrapping_add(off as u32));
    let target = raw(p, req.offset);
    b.app
        .exchanges
        .iter()
        .find(|e| {
            e.request
                .as_ref()
                .is_some_and(|r| raw(b, r.offset) == target && target.is_some())
        })
        .or_else(|| {
            b.app.exchanges.iter().find(|e| {
                e.request
                    .as_ref()
                    .is_some_and(|r| r.method == req.method && r.target == req.target)
            })
        })
}

fn with_proxy_view(cx: &Context<'_>, p: &Conn, b: Option<&Conn>) -> Diagnosis {
    let ps = cx.first_side;
    let two = cx.two_captures;
    let mut ev = Ev::new();

    // --- The handshake did not complete ------------------------------------------------------
    if let (Some(syn), None, None) = (p.syn, p.syn_ack, p.to_client().first_data) {
        ev.add(ps, syn, format!("proxy sends SYN to {}", p.server));
        if let Some(rst) = p.to_client().rst {
            ev.add(
                ps,
                rst.at,
                format!("RST from {} answers the SYN (TTL {})", p.server, rst.ttl),
            );
            return refused(cx, p, b, rst, ev);
        }
        if let Some(icmp) = p.icmp.filter(|i| i.to_server && i.kind.refuses()) {
            return refused_by_icmp(cx, p, b, icmp, ev);
        }
        return connect_timeout(cx, p, b, syn, ev);
    }

    // --- A RST one end received that the other never sent -----------------------------------
    if let (Some(b), Some(a)) = (b, cx.alignment) {
        if let Some(rst) = a.dirs[Dir::ServerToClient.idx()].forged_rst {
            if connection_failed(p) {
                return forged_rst(cx, p, b, rst, true, ev);
            }
        }
        if let Some(rst) = a.dirs[Dir::ClientToServer.idx()].forged_rst {
            if connection_failed(p) {
                return forged_rst(cx, p, b, rst, false, ev);
            }
        }
    }
    if !two {
        if let Some(d) = suspicious_rst_single(cx, p) {
            return d;
        }
    }

    if p.app.protocol == Protocol::Tls {
        if let Some(d) = tls_failure(cx, p, b, &mut ev) {
            return d;
        }
    }
    let failure = first_failure(p);
    let Some(failure) = failure else {
        return healthy(cx, p, b, ev);
    };

    let proxy_close = close_of(p.to_server());
    let backend_close_seen_at_proxy = close_of(p.to_client());
    let backend_close_sent = b.and_then(|b| close_of(b.to_client()));

    match failure {
        Failure::Request(i, e, req) => {
            let line = request_line(req);
            ev.add(ps, req.first, format!("proxy starts sending {line}"));
            if req.bytes > 0 {
                ev.add(
                    ps,
                    req.last,
                    format!(
                        "last request byte the proxy sent (byte {} of the request)",
                        req.bytes
                    ),
                );
            }
            // Lost on the way, and the connection died of it.
            if let Some(d) = lost_in_transit(cx, p, b, Dir::ClientToServer, &line, &mut ev) {
                return d;
            }
            // The backend stopped reading.
            if let Some(d) = zero_window(cx, p, b, req, &line, &mut ev) {
                return d;
            }
            // Race on a reused connection (a request can be cut by the backend's close too).
            if let Some(d) = keepalive_race(cx, p, b, i, req, &line, &mut ev) {
                return d;
            }
            let pc_t = proxy_close.map(|(m, _)| m.at.ts_ns).unwrap_or(i64::MAX);
            let bc = backend_close_seen_at_proxy;
            // Snaplen cut the request's head: its length is not known. Only a proxy still
            // sending after the backend's close arrived shows that the request was cut short.
            if req.framing == Framing::Unknown {
                let still_sending =
                    bc.is_some_and(|(m, _)| m.at.ts_ns <= pc_t && req.last.ts_ns > m.at.ts_ns);
                if !still_sending {
                    return cut_request_not_judged(cx, p, req, &line, bc, proxy_close, ev);
                }
            }
            match (bc, proxy_close) {
                (Some((bm, brst)), _) if bm.at.ts_ns <= pc_t => {
                    ev.add(
                        ps,
                        bm.at,
                        format!("backend's {} arrives while the request is being sent", kind(brst)),
                    );
                    if let Some((m, rst)) = backend_close_sent {
                        ev.add(Side::Backend, m.at, format!("backend sends {}", kind(rst)));
                    }
                    let received = b
                        .and_then(|b| backend_exchange(p, b, req))
                        .and_then(|e| e.request.as_ref())
                        .map(|r| r.bytes);
                    let expected = expected_body(req).map(|n| n + req.header_bytes);
                    let mut text = format!(
                        "The backend {} the connection while the proxy was still sending {line}: ",
                        if brst { "reset" } else { "closed" }
                    );
                    match (received, expected) {
                        (Some(r), Some(x)) => {
                            text.push_str(&format!("it had received {} of {}. ", bytes(r), bytes(x)))
                        }
                        (None, Some(x)) => text.push_str(&format!(
                            "the proxy had sent {} of {}. ",
                            bytes(req.bytes),
                            bytes(x)
                        )),
                        _ => text.push_str(&format!(
                            "the proxy had sent {} of the request. ",
                            bytes(req.bytes)
                        )),
                    }
                    text.push_str("Proxies log this as \"pass request body failed\" or \"upstream prematurely closed connection while sending request\".");
                    if !two {
                        text.push_str(" (One capture: a capture on the backend host would show whether the backend itself closed or something in between did.)");
                    }
                    let _ = e;
                    verdict(
                        Verdict::BackendClosedDuringRequest,
                        Blame::Backend,
                        text,
                        "Look at the backend: its request body size limit, read timeout or crash at this time (its error log), and whether it closes connections on errors before reading the whole body.",
                        ev,
                    )
                }
                (_, Some((pm, prst))) => {
                    ev.add(
                        ps,
                        pm.at,
                        format!("proxy sends {} before the request is complete", kind(prst)),
                    );
                    let expected = match req.framing {
                        Framing::ContentLength(n) => {
                            format!("{} of a {}-byte body", bytes(req.body_bytes), n)
                        }
                        Framing::Chunked => format!(
                            "{} of a chunked body without its last chunk",
                            bytes(req.body_bytes)
                        ),
                        _ => format!("{} of the headers", bytes(req.bytes)),
                    };
                    verdict(
                        Verdict::RequestIncomplete,
                        Blame::Proxy,
                        format!(
                            "The proxy never sent all of {line}: it sent {expected}, then {} the connection itself. The backend did nothing wrong.",
                            if prst { "reset" } else { "closed" }
                        ),
                        "Look at the proxy's client side: the client probably stopped sending the body or went away (client timeout or abort); check the proxy's access log for this request and its body-size and timeout settings.",
                        ev,
                    )
                }
                _ => capture_ended(cx, p, &format!("while the proxy was sending {line}"), ev),
            }
        }
        Failure::Response(i, e, req) => {
            let line = request_line(req);
            ev.add(ps, req.first, format!("proxy sends {line}"));
            if req.bytes > 0 && req.last != req.first {
                ev.add(ps, req.last, "last request byte");
            }
            if let Some(d) = keepalive_race(cx, p, b, i, req, &line, &mut ev) {
                return d;
            }
            if let Some(d) = lost_in_transit(cx, p, b, Dir::ClientToServer, &line, &mut ev) {
                return d;
            }
            if let Some(d) = lost_in_transit(cx, p, b, Dir::ServerToClient, &line, &mut ev) {
                return d;
            }
            response_failure(cx, p, b, e, req, &line, ev)
        }
    }
}

/// A TLS record this short sent just before its sender's own close is a closing alert
/// (close_notify: 24 bytes in TLS 1.3, 31 in TLS 1.2 with AES-GCM), not a request.
const TLS_ALERT_MAX: i64 = 64;
const TLS_ALERT_BEFORE_CLOSE_NS: i64 = 1_000_000;

/// TLS to the backend: the HTTP inside cannot be read, so a connection is judged from TCP —
/// bytes lost on the way, or the proxy's last bytes left unanswered until someone closed: the
/// backend closing after them without sending a byte back (an empty reply, or a race with its
/// idle close when its FIN did not acknowledge them), or the proxy giving up waiting.
fn tls_failure(cx: &Context<'_>, p: &Conn, b: Option<&Conn>, ev: &mut Ev) -> Option<Diagnosis> {
    let ps = cx.first_side;
    for dir in Dir::BOTH {
        if let Some(d) = lost_in_transit(cx, p, b, dir, "the TLS connection", ev) {
            let mut d = d;
            d.explanation
                .push_str(" TLS: the HTTP inside cannot be judged; this is what TCP shows.");
            return Some(d);
        }
    }
    // One capture: the proxy's FIN sent again and again, never acknowledged — nothing more came
    // back from the backend's side: lost on the way, or the backend host went silent.
    if let Some(fin) = p
        .to_server()
        .fin
        .filter(|_| !cx.two_captures && p.to_server().fin_count >= 3)
    {
        let acked = p.to_server().acked.is_some_and(|(a, _)| a > fin.offset);
        let backend_after = p.to_client().last_data.is_some_and(|l| l.ts_ns > fin.at.ts_ns);
        if !acked && !backend_after && p.to_client().fin.is_none() && p.to_client().rst.is_none() {
            let last_back = p.to_client().last_data.map_or(p.first, |l| l);
            ev.add(ps, last_back, "last bytes from the backend");
            ev.add(ps, fin.at, "proxy gives up and sends FIN");
            ev.add(
                ps,
                p.last,
                format!(
                    "the FIN, sent {} times, is never acknowledged",
                    p.to_server().fin_count
                ),
            );
            return Some(verdict(
                Verdict::LostInTransit,
                Blame::Network,
                format!(
                    "TLS to the backend: the HTTP inside cannot be read, so this is judged from TCP. Nothing came back from the backend for {} before the proxy gave up, and the proxy's FIN, sent {} times, was never acknowledged: packets from the backend are lost on the way (or the backend host froze) — a capture on the backend host would tell which.",
                    ms(fin.at.ts_ns - last_back.ts_ns),
                    p.to_server().fin_count
                ),
                "Look at the network path between proxy and backend for loss or a black hole; capture on the backend host to see whether its packets leave.",
                ev.take(),
            ));
        }
    }
    let backend_close = close_of(p.to_client());
    let proxy_close = close_of(p.to_server());
    let (close, rst, by_backend) = match (backend_close, proxy_close) {
        (Some((b, brst)), Some((pm, _))) if b.at.ts_ns <= pm.at.ts_ns => (b, brst, true),
        (Some((b, brst)), None) => (b, brst, true),
        (_, Some((pm, prst))) => (pm, prst, false),
        (None, None) => return None,
    };
    let close_t = close.at.ts_ns;
    // The proxy's last bytes before the close (a closing alert right before its own close aside).
    let mut sent = p
        .to_server()
        .spans
        .iter()
        .filter(|s| s.kind == crate::tcp::SpanKind::New && s.first.ts_ns < close_t);
    let mut last = sent.next_back()?;
    if !by_backend
        && last.end - last.start <= TLS_ALERT_MAX
        && close_t - last.last.ts_ns <= TLS_ALERT_BEFORE_CLOSE_NS
    {
        last = sent.next_back()?;
    }
    let t = last.last.ts_ns;
    let answered = p
        .to_client()
        .spans
        .iter()
        .any(|s| s.first.ts_ns > t && s.first.ts_ns < close_t);
    // Only the bytes after the handshake can be a request: the handshake's own flights are
    // answered by the backend's (a backend closing on a ClientHello is a TLS failure all the same).
    if answered || p.syn_ack.is_none() && p.to_client().first_data.is_none() {
        return None;
    }
    let n = bytes((last.end - last.start) as u64);
    ev.add(ps, last.first, format!("proxy sends {n} of TLS records"));
    if let Some(at) = first_ack_covering(p.to_server(), last.end) {
        ev.add(ps, at, "backend acknowledges them");
    }
    let after = ms(close_t - t);
    let tls = "TLS to the backend: the HTTP inside cannot be read, so this is judged from TCP.";
    let one = if cx.two_captures {
        ""
    } else {
        " (One capture: a capture on the backend host would show the backend's side.)"
    };
    if by_backend {
        ev.add(
            ps,
            close.at,
            format!("backend sends {} without a byte back", kind(rst)),
        );
        if let Some((bm, brst)) = b.and_then(|b| close_of(b.to_client())) {
            ev.add(Side::Backend, bm.at, format!("backend sends {}", kind(brst)));
        }
        // A FIN that does not acknowledge the bytes left before they arrived: the two crossed.
        let crossed = !rst && close.ack.is_some_and(|a| a <= last.start);
        if crossed {
            return Some(verdict(
                Verdict::KeepaliveRace,
                Blame::Proxy,
                format!(
                    "{tls} The proxy sent {n} of TLS records (a request, presumably) on the reused connection just as the backend closed it: the backend's FIN does not acknowledge them, so it left before they arrived. Apache logs AH01102 \"error reading status line\", nginx \"upstream prematurely closed connection\". Remedy on the proxy: a connection ttl below the backend's keep-alive timeout.{one}"
                ),
                "Make the proxy stop reusing connections before the backend closes them: its idle connection timeout below the backend's keep-alive timeout (Apache ProxyPass ttl=, disablereuse=On; nginx upstream keepalive_timeout).",
                ev.take(),
            ));
        }
        return Some(verdict(
            Verdict::BackendEmptyReply,
            Blame::Backend,
            format!(
                "{tls} The proxy sent {n} of TLS records (a request, presumably); the backend {} the connection {after} later without sending a single byte back. Apache logs AH01102 \"error reading status line from remote server\", nginx \"upstream prematurely closed connection while reading response header\".{one}",
                if rst { "reset" } else { "closed" }
            ),
            "Look at the backend's logs at this time (its TLS server and the application behind it): the worker crashed, was killed, or closed the connection before answering; decrypt the capture with the backend's key log (SSLKEYLOGFILE) to see the request.",
            ev.take(),
        ));
    }
    ev.add(ps, close.at, format!("proxy gives up and sends {}", kind(rst)));
    Some(verdict(
        Verdict::BackendTimeout,
        Blame::Backend,
        format!(
            "{tls} The proxy sent {n} of TLS records (a request, presumably), the backend acknowledged them and sent nothing back in the {after} the proxy waited before it {} the connection. Apache logs \"(70007) The timeout specified has expired\", nginx \"upstream timed out\".{one}",
            if rst { "reset" } else { "closed" }
        ),
        "Look at the backend: why it did not answer within the proxy's timeout; decrypt the capture with the backend's key log (SSLKEYLOGFILE) to see which request it was.",
        ev.take(),
    ))
}

/// The connection did not end well from the proxy's point of view.
fn connection_failed(p: &Conn) -> bool {
    first_failure(p).is_some() || (p.app.protocol != Protocol::Http && p.to_client().rst.is_some())
}

fn refused(cx: &Context<'_>, p: &Conn, b: Option<&Conn>, rst: CloseMark, mut ev: Ev) -> Diagnosis {
    let server = p.server;
    if cx.two_captures {
        match b {
            Some(b) if b.syn.is_some() && b.to_client().rst.is_some() => {
                ev.add(
                    Side::Backend,
                    b.syn.expect("checked"),
                    "the SYN arrives at the backend",
                );
                let brst = b.to_client().rst.expect("checked");
                ev.add(Side::Backend, brst.at, "the backend host answers with RST");
                return verdict(
                    Verdict::ConnectRefused,
                    Blame::Backend,
                    format!(
                        "The backend host refused the connection: the proxy's SYN to {server} arrived and the backend answered with RST, so nothing was listening there (or its listen queue refused it). Proxies log \"(111) Connection refused\"."
                    ),
                    "Look at the backend: is the service running and listening on this address and port (ss -ltn), did it crash or restart at this time?",
                    ev,
                );
            }
            Some(b) if b.syn.is_some() => {
                ev.add(
                    Side::Backend,
                    b.syn.expect("checked"),
                    "the SYN arrives at the backend, which does not send a RST",
                );
                if let Some(sa) = b.syn_ack {
                    ev.add(Side::Backend, sa, "the backend answers with SYN-ACK");
                }
                return verdict(
                    Verdict::RstFromMiddlebox,
                    Blame::Network,
                    format!(
                        "The proxy's SYN to {server} was answered by a RST (TTL {}) that the backend never sent: the backend capture shows the SYN arriving and no RST leaving. Something between the two hosts forged it.",
                        rst.ttl
                    ),
                    "Look at the network path between proxy and backend: firewalls, load balancers or IPS that reset connections; compare the RST's TTL with the backend's packets.",
                    ev,
                );
            }
            _ => {
                return verdict(
                    Verdict::RstFromMiddlebox,
                    Blame::Network,
                    format!(
                        "The proxy's SYN to {server} was answered by a RST (TTL {}), but the SYN never reached the backend host (its capture does not show it): something between the two hosts refused the connection in the backend's name.",
                        rst.ttl
                    ),
                    "Look at the network path between proxy and backend: a firewall rule rejecting with tcp-reset, a load balancer without a healthy member, or a wrong route.",
                    ev,
                );
            }
        }
    }
    verdict(
        Verdict::ConnectRefused,
        Blame::Backend,
        format!(
            "The proxy's SYN to {server} was answered by RST: nothing was listening there, or the backend refused the connection. Proxies log \"(111) Connection refused\". From this capture alone it cannot be told whether the backend host or a firewall in between sent the RST (its TTL is {}); a capture on the backend host would settle it.",
            rst.ttl
        ),
        "Look at the backend: is the service running and listening on this address and port? If it is, capture on the backend host to see whether the SYN arrives.",
        ev,
    )
}

/// The SYN was answered by an ICMP error: who sent it decides the blame. The backend host's own
/// address is the backend (its firewall rejecting, or nothing to answer); any other address is a
/// router or firewall on the way. With the backend capture, an ICMP in the backend's name that
/// the backend never sent (the SYN never reached it) was forged on the way.
fn refused_by_icmp(cx: &Context<'_>, p: &Conn, b: Option<&Conn>, icmp: IcmpMark, mut ev: Ev) -> Diagnosis {
    let ps = cx.first_side;
    let server = p.server;
    let what = icmp.kind.words();
    let errno = icmp.kind.errno();
    ev.add(
        ps,
        icmp.at,
        format!(
            "ICMP {what} from {} answers the SYN (TTL {})",
            icmp.from, icmp.ttl
        ),
    );
    let b_syn = b.and_then(|b| b.syn);
    let b_icmp = b
        .and_then(|b| b.icmp)
        .filter(|i| i.to_server && i.from == icmp.from);
    if let Some(s) = b_syn {
        ev.add(Side::Backend, s, "the SYN arrives at the backend");
    }
    if let Some(i) = b_icmp {
        ev.add(Side::Backend, i.at, format!("the backend host sends ICMP {what}"));
    }
    let from_backend_host = icmp.from == server.ip;
    let forged = cx.two_captures && from_backend_host && b_syn.is_none() && b_icmp.is_none();
    let tries = if p.syn_count > 1 {
        format!(" (all {} SYNs)", p.syn_count)
    } else {
        String::new()
    };
    if from_backend_host && !forged {
        let seen = if b_icmp.is_some() {
            " The backend capture shows the SYN arriving and the ICMP leaving."
        } else if cx.two_captures {
            ""
        } else {
            " (One capture: a capture on the backend host would show it leaving there.)"
        };
        return verdict(
            Verdict::ConnectRefused,
            Blame::Backend,
            format!(
                "The backend host {} refused the connection: it answered the proxy's SYN to {server}{tries} with ICMP {what} instead of a SYN-ACK — a firewall on the backend host rejecting the port (iptables REJECT), or nothing to take the connection. Proxies log \"{errno}\".{seen}",
                server.ip
            ),
            "Look at the backend host's firewall (iptables/nftables REJECT rules for this port) and whether the service is listening (ss -ltn).",
            ev,
        );
    }
    let reached = match (cx.two_captures, b_syn) {
        (true, None) => " The SYN never reached the backend host (its capture does not show it).",
        (true, Some(_)) => " The SYN did reach the backend host, which did not answer it in time.",
        (false, _) => "",
    };
    let who = if forged {
        format!(
            "a device on the way answered in the backend's name ({}) — the backend never sent it",
            icmp.from
        )
    } else {
        format!(
            "the network device at {} (a router or firewall between the proxy and the backend)",
            icmp.from
        )
    };
    let meaning = match icmp.kind {
        crate::decode::IcmpKind::HostUnreachable => {
            ": it could not reach the backend host (down, or not answering ARP/neighbour discovery)"
        }
        crate::decode::IcmpKind::NetUnreachable => ": it has no route to the backend's network",
        crate::decode::IcmpKind::Prohibited => ": a firewall rule refuses the connection",
        _ => "",
    };
    verdict(
        Verdict::ConnectRefused,
        Blame::Network,
        format!(
            "The connection was refused on the way, not by the backend: {who} answered the proxy's SYN to {server}{tries} with ICMP {what}{meaning}.{reached} Proxies log \"{errno}\".",
        ),
        "Look at the device that sent the ICMP: its firewall rules (REJECT with icmp-admin-prohibited / host-unreachable), its routes and its ARP/neighbour table for the backend's address; and whether the backend host is up.",
        ev,
    )
}

fn connect_timeout(cx: &Context<'_>, p: &Conn, b: Option<&Conn>, syn: PacketRef, mut ev: Ev) -> Diagnosis {
    let server = p.server;
    let tries = p.syn_count;
    let waited = p.last.ts_ns - syn.ts_ns;
    let tries_text = format!(
        "{tries} SYN{} over {}",
        if tries == 1 { "" } else { "s" },
        ms(waited)
    );
    if cx.two_captures {
        match b {
            Some(b) if b.syn.is_some() => {
                ev.add(
                    Side::Backend,
                    b.syn.expect("checked"),
                    format!("SYN arrives at the backend ({} seen there)", b.syn_count),
                );
                if let Some(sa) = b.syn_ack {
                    ev.add(Side::Backend, sa, "backend answers with SYN-ACK");
                    return verdict(
                        Verdict::ConnectTimeout,
                        Blame::Network,
                        format!(
                            "The proxy could not connect to {server}: its SYNs reached the backend, which answered with SYN-ACK {} times, but no SYN-ACK came back to the proxy ({tries_text}). The answers were lost on the way back.",
                            b.syn_ack_count
                        ),
                        "Look at the network path from the backend back to the proxy: asymmetric routing, a firewall dropping the SYN-ACKs, or a wrong return route on the backend host.",
                        ev,
                    );
                }
                return verdict(
                    Verdict::ConnectTimeout,
                    Blame::Backend,
                    format!(
                        "The proxy could not connect to {server}: its SYNs arrived at the backend host ({} seen there) and were ignored — no SYN-ACK, no RST ({tries_text}).",
                        b.syn_count
                    ),
                    "Look at the backend host: a full accept queue (the service is overloaded or stuck: netstat -s | grep -i listen), or a host firewall dropping the SYNs.",
                    ev,
                );
            }
            _ => {
                return verdict(
                    Verdict::ConnectTimeout,
                    Blame::Network,
                    format!(
                        "The proxy could not connect to {server}: it sent {tries_text} and none of them reached the backend host (its capture shows no SYN of this connection)."
                    ),
                    "Look at the network path from the proxy to the backend: routes, firewalls and security groups dropping the SYNs.",
                    ev,
                );
            }
        }
    }
    verdict(
        Verdict::ConnectTimeout,
        Blame::Backend,
        format!(
            "The proxy could not connect to {server}: it sent {tries_text} and got neither SYN-ACK nor RST. From this capture alone it cannot be told whether the SYNs were lost on the way, ignored by the backend (full accept queue, host firewall), or answered and the answers lost; a capture on the backend host would settle it."
        ),
        "Check that the backend host is up and its service accepting (accept queue, host firewall); capture on the backend host to see whether the SYNs arrive.",
        ev,
    )
}

/// A RST at one end that the other end never sent.
fn forged_rst(cx: &Context<'_>, p: &Conn, b: &Conn, rst: CloseMark, at_proxy: bool, mut ev: Ev) -> Diagnosis {
    let ps = cx.first_side;
    let exch = first_failure(p).map(|f| match f {
        Failure::Request(_, _, m) | Failure::Response(_, _, m) => request_line(m),
    });
    let during = exch.map_or(String::new(), |l| format!(" during {l}"));
    if at_proxy {
        let ttl_note = match p.to_client().ttl_range {
            Some((lo, hi)) if rst.ttl < lo || rst.ttl > hi => {
                format!(
                    " Its TTL is {}, while the backend's packets arrive with TTL {}.",
                    rst.ttl,
                    ttl_text(lo, hi)
                )
            }
            Some((lo, hi)) => format!(
                " (Its TTL {} is within the backend's {lo}-{hi}: the forger mimics it.)",
                rst.ttl
            ),
            None => String::new(),
        };
        ev.add(
            ps,
            rst.at,
            format!("RST \"from {}\" arrives at the proxy (TTL {})", p.server, rst.ttl),
        );
        if let Some(f) = first_failure(p) {
            let m = match f {
                Failure::Request(_, _, m) | Failure::Response(_, _, m) => m,
            };
            if let Some(be) = backend_exchange(p, b, m) {
                if let Some(r) = &be.request {
                    ev.add(Side::Backend, r.first, "the request arrives at the backend");
                }
            }
        }
        let lost_note = match cx.alignment.map(|a| &a.dirs[Dir::ClientToServer.idx()].lost) {
            Some(l) if !l.is_empty() => {
                let n: i64 = l.iter().map(|x| x.end - x.start).sum();
                ev.add(
                    ps,
                    l[0].first_sent,
                    format!(
                        "proxy sends {} that never reach the backend",
                        byte_range(l[0].start, l[0].end)
                    ),
                );
                format!(
                    " The {} the proxy sent just before never reached the backend either: the device dropped them and answered with the reset.",
                    bytes(n as u64)
                )
            }
            _ => String::new(),
        };
        return verdict(
            Verdict::RstFromMiddlebox,
            Blame::Network,
            format!(
                "The proxy received a RST{during} that looks like it came from the backend {}, but the backend never sent it: the backend capture shows no RST on this connection.{ttl_note}{lost_note} A firewall, IPS or load balancer between the two hosts reset the connection.",
                p.server
            ),
            "Look at the devices between proxy and backend (firewall, IPS, load balancer): their logs for a reset or a rule matching this request at this time.",
            ev,
        );
    }
    ev.add(
        Side::Backend,
        rst.at,
        format!(
            "RST \"from {}\" arrives at the backend (TTL {})",
            b.client, rst.ttl
        ),
    );
    verdict(
        Verdict::RstFromMiddlebox,
        Blame::Network,
        format!(
            "The backend received a RST{during} that looks like it came from the proxy, but the proxy never sent it: the proxy capture shows no RST on this connection. Something between the two hosts reset the connection."
        ),
        "Look at the devices between proxy and backend (firewall, IPS, load balancer, NAT with short idle timeouts): their logs for a reset of this connection at this time.",
        ev,
    )
}

/// With one capture: a RST from the backend whose TTL does not fit the backend's packets.
fn suspicious_rst_single(cx: &Context<'_>, p: &Conn) -> Option<Diagnosis> {
    let rst = p.to_client().rst?;
    let (lo, hi) = p.to_client().ttl_range?;
    // The backend's packets all cross the same hops, so they arrive with the same TTL; a RST made
    // by a device in between starts from that device's own initial TTL and crosses fewer hops.
    // Even one hop of difference is a different origin.
    if (lo..=hi).contains(&rst.ttl) || !connection_failed(p) {
        return None;
    }
    let mut ev = Ev::new();
    ev.add(
        cx.first_side,
        rst.at,
        format!("RST from {} with TTL {}", p.server, rst.ttl),
    );
    if let Some(f) = p.to_client().first_data {
        ev.add(
            cx.first_side,
            f,
            format!("the backend's own packets arrive with TTL {}", ttl_text(lo, hi)),
        );
    }
    Some(verdict(
        Verdict::RstFromMiddlebox,
        Blame::Network,
        format!(
            "The proxy received a RST from {} with TTL {}, while the backend's own packets arrive with TTL {}: it most likely came from a device in between, not from the backend. A capture on the backend host would prove it (the backend would show no RST).",
            p.server,
            rst.ttl,
            ttl_text(lo, hi)
        ),
        "Capture on the backend host to confirm, and look at the firewalls, IPS or load balancers between proxy and backend.",
        ev,
    ))
}

/// Bytes sent at one end never arrived at the other, and the connection failed because of it.
fn lost_in_transit(
    cx: &Context<'_>,
    p: &Conn,
    b: Option<&Conn>,
    dir: Dir,
    line: &str,
    ev: &mut Ev,
) -> Option<Diagnosis> {
    let ps = cx.first_side;
    if let (Some(b), Some(a)) = (b, cx.alignment) {
        let al = &a.dirs[dir.idx()];
        let lost = al.lost.first()?;
        let total: i64 = al.lost.iter().map(|l| l.end - l.start).sum();
        let (sender_side, what, from, to) = if dir == Dir::ClientToServer {
            (ps, "request", "proxy", "backend")
        } else {
            (Side::Backend, "response", "backend", "proxy")
        };
        ev.add(
            sender_side,
            lost.first_sent,
            format!(
                "{from} sends {} of the {what} stream",
                byte_range(lost.start, lost.end)
            ),
        );
        if lost.transmissions > 1 {
            ev.add(
                sender_side,
                lost.last_sent,
                format!(
                    "{from} retransmits them ({} transmissions in all)",
                    lost.transmissions
                ),
            );
        }
        let receiver_conn = if dir == Dir::ClientToServer { b } else { p };
        let receiver_side = if dir == Dir::ClientToServer {
            Side::Backend
        } else {
            ps
        };
        if let Some((ack, at)) = receiver_conn.dir(dir).acked {
            ev.add(
                receiver_side,
                at,
                format!("the {to}'s last acknowledgement stops at byte {ack}"),
            );
        }
        let closer = close_of(p.to_server())
            .map(|(m, rst)| {
                ev.add(ps, m.at, format!("proxy gives up and sends {}", kind(rst)));
                format!(
                    " The proxy gave up {} after it first sent them.",
                    ms(m.at.ts_ns
                        - if dir == Dir::ClientToServer {
                            lost.first_sent.ts_ns
                        } else {
                            p.to_server().last_data.map_or(m.at.ts_ns, |l| l.ts_ns)
                        })
                )
            })
            .unwrap_or_default();
        return Some(verdict(
            Verdict::LostInTransit,
            Blame::Network,
            format!(
                "{} of the {what} for {line} left the {from} ({}) and never reached the {to}: the {to}'s capture does not show them and the {to} never acknowledged them.{closer}",
                capitalize(&bytes(total as u64)),
                transmissions_text(lost.transmissions, lost.while_receiver_captured, to),
            ),
            "Look at the network path between proxy and backend: packet loss or a black hole on this path (MTU problems drop large segments but pass small ones; check for ICMP fragmentation-needed being blocked), firewall or IPS drops.",
            ev.take(),
        ));
    }
    if cx.two_captures || dir == Dir::ServerToClient {
        return None;
    }
    // One capture: request bytes retransmitted and never acknowledged, then the proxy gave up.
    let c2s = p.to_server();
    let end = c2s.data_end?;
    let acked = c2s.acked.map_or(0, |(a, _)| a);
    if acked >= end || c2s.retransmissions == 0 {
        return None;
    }
    let first_unacked = c2s.spans.iter().find(|s| s.end > acked)?;
    let resends = c2s
        .spans
        .iter()
        .filter(|s| s.kind == crate::tcp::SpanKind::Retransmission && s.end > acked)
        .count();
    let close = close_of(p.to_server());
    // Without the proxy giving up, only repeated retransmissions make the loss plain.
    if close.is_none() && resends < 2 {
        return None;
    }
    ev.add(
        ps,
        first_unacked.first,
        format!(
            "proxy sends {}",
            byte_range(first_unacked.start, first_unacked.end)
        ),
    );
    if let Some(r) = c2s
        .spans
        .iter()
        .rev()
        .find(|s| s.kind == crate::tcp::SpanKind::Retransmission)
    {
        ev.add(ps, r.last, "proxy retransmits them (last time)");
    }
    let ending = match close {
        Some((m, rst)) => {
            ev.add(ps, m.at, format!("proxy gives up and sends {}", kind(rst)));
            "the proxy gave up".to_string()
        }
        None => format!(
            "the capture ended {} after the first transmission, before the proxy gave up",
            ms(p.last.ts_ns - first_unacked.first.ts_ns)
        ),
    };
    Some(verdict(
        Verdict::LostInTransit,
        Blame::Network,
        format!(
            "The proxy sent {} of {line} and retransmitted them {resends} times, but the backend never acknowledged bytes past {acked}; {ending}. The bytes were lost on the way (or the backend host froze): a capture on the backend host would tell which.",
            bytes((end - acked) as u64),
        ),
        "Look at the network path between proxy and backend for packet loss or a black hole (MTU, firewall drops); capture on the backend host to see whether the segments arrive.",
        ev.take(),
    ))
}

impl Ev {
    fn take(&mut self) -> Ev {
        Ev {
            list: std::mem::take(&mut self.list),
        }
    }
}

/// "6 transmissions, 3 of them while the backend's capture was running"
fn transmissions_text(all: u32, captured: u32, receiver: &str) -> String {
    let n = format!("{all} transmission{}", if all == 1 { "" } else { "s" });
    if captured < all {
        format!("{n}, {captured} of them while the {receiver}'s capture was running")
    } else {
        n
    }
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

/// The backend advertised a zero window while the request was being sent, until the proxy gave up.
fn zero_window(
    cx: &Context<'_>,
    p: &Conn,
    b: Option<&Conn>,
    req: &Message,
    line: &str,
    ev: &mut Ev,
) -> Option<Diagnosis> {
    let ps = cx.first_side;
    let zw = p
        .to_client()
        .zero_window
        .or(b.and_then(|b| b.to_client().zero_window))?;
    let (close, rst) = close_of(p.to_server()).unwrap_or((
        CloseMark {
            at: p.last,
            offset: 0,
            ack: None,
            ttl: 0,
            ip_id: None,
        },
        false,
    ));
    // The window must still be closed when the proxy gave up (reopened windows are flow control).
    if zw.reopened.is_some_and(|r| r.ts_ns < close.at.ts_ns) {
        return None;
    }
    // A backend that closed the connection itself is not stalled: it closed during the request.
    if close_of(p.to_client()).is_some_and(|(m, _)| m.at.ts_ns <= close.at.ts_ns) {
        return None;
    }
    let from_proxy_view = p.to_client().zero_window.is_some();
    let side = if from_proxy_view { ps } else { Side::Backend };
    ev.add(
        side,
        zw.first,
        "backend advertises a zero window: it stopped reading",
    );
    if zw.count > 1 {
        ev.add(
            side,
            zw.last,
            format!("still zero ({} zero-window advertisements)", zw.count),
        );
    }
    let gave_up = close_of(p.to_server()).is_some();
    if gave_up {
        ev.add(ps, close.at, format!("proxy gives up and sends {}", kind(rst)));
    }
    let stalled = close.at.ts_ns - zw.first.ts_ns;
    Some(verdict(
        Verdict::ZeroWindowStall,
        Blame::Backend,
        format!(
            "The backend stopped reading the request body of {line}: after {} of it, it advertised a zero receive window and kept it closed for {}{}. The proxy could not send the rest.",
            bytes(req.bytes),
            ms(stalled),
            if gave_up {
                " until the proxy gave up"
            } else {
                " until the end of the capture"
            }
        ),
        "Look at the backend application: it accepted the connection and read the headers but stopped reading the body (a blocked worker, a slow disk or upstream, or it waits for something before reading).",
        ev.take(),
    ))
}

/// A request on a reused, idle connection that crossed the backend's close. Two forms on the wire:
/// - the backend's FIN and the request cross (the FIN reaches the proxy within about one round
///   trip of the request leaving), and the backend's kernel answers the request with RST;
/// - the backend's idle timer fires as the request arrives: it closes with the request unread
///   in its receive buffer, so its kernel sends RST instead of FIN, within about one round trip of
///   the request leaving the proxy (too fast for any application to have read it and answered).
#[allow(clippy::too_many_arguments)]
fn keepalive_race(
    cx: &Context<'_>,
    p: &Conn,
    b: Option<&Conn>,
    index: usize,
    req: &Message,
    line: &str,
    ev: &mut Ev,
) -> Option<Diagnosis> {
    let ps = cx.first_side;
    // A reused connection: an earlier exchange completed on it, and this request got no answer.
    let e = p.app.exchanges.get(index)?;
    let reused = index > 0
        && p.app.exchanges[..index]
            .iter()
            .all(|e| e.response.as_ref().is_some_and(|r| r.complete));
    if !reused || e.response.is_some() {
        return None;
    }
    let rst = p.to_client().rst.filter(|r| r.at.ts_ns >= req.first.ts_ns);
    // A race leaves the request unread: the backend's close was sent before the request arrived,
    // or as it arrived. A backend that acknowledged a first flight of the request, so that the
    // proxy sent more of it, was taking the request in for at least a round trip before it
    // closed: whatever it did next, it was not an idle connection closing.
    let close_at = [p.to_client().fin, rst]
        .into_iter()
        .flatten()
        .map(|m| m.at.ts_ns)
        .min()?;
    if request_flights_before(p, req, close_at) >= 2 {
        return None;
    }
    let round_trip = rtt(p, true).unwrap_or(0);
    let window = round_trip + RACE_TIMESTAMP_SLACK_NS;
    let fin = p
        .to_client()
        .fin
        .filter(|f| rst.is_none_or(|r| f.at.ts_ns <= r.at.ts_ns));
    let delta = match (fin, rst) {
        (Some(fin), _) => {
            // The request reached the backend after its FIN left exactly when the FIN reached
            // the proxy less than a round trip after the request left. Later than that, the
            // backend had the request before it closed: not a race (an empty reply). A FIN that
            // arrived before the request left means the proxy reused a connection already closed:
            // the same fault of the proxy's reuse, however long before. What follows the crossing
            // varies with the backend: a RST from its kernel, or nothing (a lingering close reads
            // and discards the request).
            let delta = req.first.ts_ns - fin.at.ts_ns;
            // The FIN's acknowledgement number is the witness: it says what the backend had
            // received when it sent the FIN. A FIN that does not acknowledge the request left
            // before the request arrived — they crossed. Timing (within one round trip) only
            // decides when the FIN carries no acknowledgement.
            let crossed = match fin.ack {
                Some(a) => a <= req.offset,
                None => -delta <= window,
            };
            // A FIN that came exactly the backend's idle timeout after the previous response,
            // as the request arrived, is the idle timer firing, even if the request had just
            // arrived (a lingering close then reads and discards it).
            let timer_fired = cx.backend_idle_timeout.is_some_and(|t| {
                let prev_end = p.app.exchanges[index - 1].response.as_ref().map(|r| r.last.ts_ns);
                prev_end.is_some_and(|e| is_idle_close(fin.at.ts_ns - e, t))
                    && -delta <= round_trip + RACE_RST_REACTION_NS
            });
            if !crossed && !timer_fired && delta < 0 {
                return None;
            }
            delta
        }
        (None, Some(rst)) => {
            let delta = rst.at.ts_ns - req.first.ts_ns;
            if delta > round_trip + RACE_RST_REACTION_NS {
                return None;
            }
            delta
        }
        (None, None) => return None,
    };
    let idle = p.app.exchanges[index - 1]
        .response
        .as_ref()
        .map(|r| req.first.ts_ns - r.last.ts_ns)
        .unwrap_or(0);
    if idle < MIN_IDLE_FOR_RACE_NS {
        return None;
    }
    ev.add(
        ps,
        req.first,
        format!(
            "proxy sends {line} on the reused connection, idle for {}",
            ms(idle)
        ),
    );
    let timing = if let Some(fin) = fin {
        ev.add(
            ps,
            fin.at,
            format!(
                "backend's FIN arrives {} {} the request left",
                ms(delta.abs()),
                if delta >= 0 { "before" } else { "after" }
            ),
        );
        let answer = match rst {
            Some(r) => {
                ev.add(ps, r.at, "backend answers the request with RST");
                "the backend answered the request with RST"
            }
            None => "the backend never answered it (its close read and discarded the request)",
        };
        format!(
            "the backend's FIN reached the proxy {} {} the request left (round trip {}), and {answer}",
            ms(delta.abs()),
            if delta >= 0 { "before" } else { "after" },
            ms(round_trip)
        )
    } else if let Some(rst) = rst {
        ev.add(
            ps,
            rst.at,
            format!(
                "backend's RST arrives {} after the request left, no FIN before it",
                ms(delta)
            ),
        );
        format!(
            "the backend reset the connection {} after the request left (round trip {}) without a FIN: its idle timer closed the connection as the request arrived, with the request unread, so its kernel sent RST",
            ms(delta),
            ms(round_trip)
        )
    } else {
        return None;
    };
    let mut crossing = String::new();
    if let Some(b) = b {
        if let Some(r) = backend_exchange(p, b, req).and_then(|x| x.request.as_ref()) {
            ev.add(Side::Backend, r.first, "the request arrives at the backend");
            match (b.to_client().fin, b.to_client().rst) {
                (Some(bfin), _) => {
                    ev.add(Side::Backend, bfin.at, "backend closes the idle connection (FIN)");
                    if bfin.at.ts_ns <= r.first.ts_ns {
                        crossing = format!(
                            " The backend capture shows its FIN leaving {} before the request arrived: the two crossed on the wire.",
                            ms(r.first.ts_ns - bfin.at.ts_ns)
                        );
                    }
                }
                (None, Some(brst)) => {
                    ev.add(Side::Backend, brst.at, "backend sends RST");
                    crossing = format!(
                        " The backend capture shows the RST leaving {} after the request arrived, with no response byte.",
                        ms(brst.at.ts_ns - r.first.ts_ns)
                    );
                }
                _ => {}
            }
        }
    }
    Some(verdict(
        Verdict::KeepaliveRace,
        Blame::Proxy,
        format!(
            "Keep-alive race: the proxy sent {line} on a connection it was reusing after {} idle, just as the backend closed that connection: {timing}.{crossing} Apache logs this as AH01102 \"error reading status line\", nginx as \"upstream prematurely closed connection\". Remedy on the proxy: a connection ttl below the backend's keep-alive timeout (Apache ProxyPass ttl=, or disablereuse=On, or proxy-nokeepalive; nginx upstream keepalive_timeout).",
            ms(idle),
        ),
        "Make the proxy stop reusing connections before the backend closes them: set the proxy's idle connection timeout below the backend's keep-alive timeout (Apache: ProxyPass ... ttl=N with N below the backend's KeepAliveTimeout, or disablereuse=On, or SetEnv proxy-nokeepalive 1; nginx: keepalive_timeout in the upstream block below the backend's), and let idempotent requests be retried.",
        ev.take(),
    ))
}

/// Flights of request bytes the proxy sent before `until`: a transmission span of the direction
/// ends when the receiver acknowledges it, so each span after the first was sent after an
/// acknowledgement of the request arrived.
fn request_flights_before(p: &Conn, req: &Message, until: i64) -> usize {
    let end = req.offset + req.bytes as i64;
    p.to_server()
        .spans
        .iter()
        .filter(|s| s.kind == crate::tcp::SpanKind::New && s.end > req.offset && s.start < end)
        .filter(|s| s.first.ts_ns < until)
        .count()
}

/// The request went out whole: what happened to the response.
#[allow(clippy::too_many_arguments)]
fn response_failure(
    cx: &Context<'_>,
    p: &Conn,
    b: Option<&Conn>,
    e: &Exchange,
    req: &Message,
    line: &str,
    mut ev: Ev,
) -> Diagnosis {
    let ps = cx.first_side;
    let resp = e.response.as_ref();
    let proxy_close = close_of(p.to_server());
    let backend_close = close_of(p.to_client());
    let pc_t = proxy_close.map_or(i64::MAX, |(m, _)| m.at.ts_ns);
    let bc_t = backend_close.map_or(i64::MAX, |(m, _)| m.at.ts_ns);
    let req_end = req.offset + req.bytes as i64;
    let acked = first_ack_covering(p.to_server(), req_end);
    if let Some(at) = acked {
        ev.add(ps, at, "backend acknowledges the whole request");
    }
    let one_capture_note = if cx.two_captures {
        ""
    } else {
        " (One capture: a capture on the backend host would show the backend's side.)"
    };
    match resp {
        None => {
            // Bytes came back that the capture cannot read as a response: never "no response".
            if let Some(d) = unreadable_answer(cx, p, req, line, &mut ev) {
                return d;
            }
            if bc_t <= pc_t && bc_t != i64::MAX {
                let (m, rst) = backend_close.expect("checked");
                ev.add(
                    ps,
                    m.at,
                    format!("backend sends {} without a response byte", kind(rst)),
                );
                if let Some(b) = b {
                    if let Some((bm, brst)) = close_of(b.to_client()) {
                        ev.add(Side::Backend, bm.at, format!("backend sends {}", kind(brst)));
                    }
                    if let Some(be) = backend_exchange(p, b, req).and_then(|x| x.request.as_ref()) {
                        ev.add(
                            Side::Backend,
                            be.last,
                            "the whole request has arrived at the backend",
                        );
                    }
                }
                let after = ms(m.at.ts_ns - req.last.ts_ns);
                return verdict(
                    Verdict::BackendEmptyReply,
                    Blame::Backend,
                    format!(
                        "The backend received all of {line} ({}) and {} the connection {after} later without sending a single response byte. Apache logs AH01102 \"error reading status line from remote server\", nginx \"upstream prematurely closed connection while reading response header\".{one_capture_note}",
                        bytes(req.bytes),
                        if rst { "reset" } else { "closed" }
                    ),
                    "Look at the backend's logs at this time: the worker handling this request crashed, was killed (OOM, timeout, restart) or closed the connection on purpose before answering.",
                    ev,
                );
            }
            if pc_t != i64::MAX {
                let (m, rst) = proxy_close.expect("checked");
                ev.add(ps, m.at, format!("proxy gives up and sends {}", kind(rst)));
                let waited = ms(m.at.ts_ns - req.last.ts_ns);
                if acked.is_none() && !cx.two_captures {
                    return verdict(
                        Verdict::LostInTransit,
                        Blame::Network,
                        format!(
                            "The proxy sent all of {line} but the backend never acknowledged its end; the proxy gave up after {waited}. The bytes were lost on the way (or the backend host froze): a capture on the backend host would tell which."
                        ),
                        "Look at the network path between proxy and backend for loss or a black hole; capture on the backend host.",
                        ev,
                    );
                }
                return verdict(
                    Verdict::BackendTimeout,
                    Blame::Backend,
                    format!(
                        "The backend received all of {line} and acknowledged it, but sent no response in the {waited} the proxy waited before giving up. Apache logs \"(70007) The timeout specified has expired\", nginx \"upstream timed out (110: Connection timed out) while reading response header\".{one_capture_note}"
                    ),
                    "Look at the backend: why this request took longer than the proxy's timeout (slow query, lock, stuck worker, overloaded pool); compare the proxy's timeout (Apache ProxyTimeout/timeout=, nginx proxy_read_timeout) with the backend's normal response time.",
                    ev,
                );
            }
            capture_ended(
                cx,
                p,
                &format!("while the proxy waited for the response to {line}"),
                ev,
            )
        }
        Some(r) if pc_t < r.first.ts_ns => {
            let (m, rst) = proxy_close.expect("checked");
            let status = r.status.map_or("?".to_string(), |s| s.to_string());
            ev.add(ps, m.at, format!("proxy gives up and sends {}", kind(rst)));
            ev.add(
                ps,
                r.first,
                format!("response {status} arrives, after the proxy gave up"),
            );
            verdict(
                Verdict::BackendTimeout,
                Blame::Backend,
                format!(
                    "The backend received all of {line} and acknowledged it, but answered only {} later, {} after the proxy had given up and {} the connection: too late. Apache logs \"(70007) The timeout specified has expired\", nginx \"upstream timed out (110: Connection timed out) while reading response header\".{one_capture_note}",
                    ms(r.first.ts_ns - req.last.ts_ns),
                    ms(r.first.ts_ns - m.at.ts_ns),
                    if rst { "reset" } else { "closed" },
                ),
                "Look at the backend: why this request took longer than the proxy's timeout (a full listen or worker queue, slow query, lock, stuck worker); compare the proxy's timeout (Apache ProxyTimeout/timeout=, nginx proxy_read_timeout) with the backend's response time under load.",
                ev,
            )
        }
        Some(r) => {
            let status = r.status.map_or("?".to_string(), |s| s.to_string());
            ev.add(ps, r.first, format!("response {status} starts arriving"));
            // How much of the response came, in the terms its framing allows.
            let (got, expected) = match r.framing {
                Framing::ContentLength(n) => (bytes(r.body_bytes), format!(" of a {n}-byte body")),
                Framing::Chunked => (
                    bytes(r.body_bytes),
                    " of a chunked body (no last chunk)".to_string(),
                ),
                Framing::Unknown => (
                    format!("{} of the response", bytes(r.bytes)),
                    " (snaplen cut its headers, so its full length is not in the capture)".to_string(),
                ),
                _ => (bytes(r.body_bytes), String::new()),
            };
            if bc_t <= pc_t && bc_t != i64::MAX && r.framing == Framing::Unknown {
                let (m, rst) = backend_close.expect("checked");
                return cut_response_closed(cx, p, r, line, m, rst, ev);
            }
            if bc_t <= pc_t && bc_t != i64::MAX {
                let (m, rst) = backend_close.expect("checked");
                ev.add(ps, r.last, format!("last response byte ({got})"));
                ev.add(ps, m.at, format!("backend sends {} mid-response", kind(rst)));
                if let Some(b) = b {
                    if let Some((bm, brst)) = close_of(b.to_client()) {
                        ev.add(Side::Backend, bm.at, format!("backend sends {}", kind(brst)));
                    }
                }
                return verdict(
                    Verdict::ResponseTruncated,
                    Blame::Backend,
                    format!(
                        "The backend started answering {line} with {status} but {} the connection after {got}{expected}: the response is truncated. Clients get a cut-off body or a 502.{one_capture_note}",
                        if rst { "reset" } else { "closed" },
                    ),
                    "Look at the backend's logs at this time: the response was cut short (a crash or timeout while writing, a wrong Content-Length, a worker killed mid-response).",
                    ev,
                );
            }
            if pc_t != i64::MAX {
                let (m, rst) = proxy_close.expect("checked");
                ev.add(
                    ps,
                    m.at,
                    format!("proxy sends {} while the response is still coming", kind(rst)),
                );
                return verdict(
                    Verdict::ProxyAborted,
                    Blame::Proxy,
                    format!(
                        "The proxy {} the connection while the backend was still sending its {status} response to {line}: it had received {got}{expected}. The backend was answering; the proxy stopped reading — typically its client went away or a proxy timeout fired.",
                        if rst { "reset" } else { "closed" },
                    ),
                    "Look at the proxy's access log for this request (status 499 in nginx, a client abort in Apache) and at its timeouts for sending the response to its client.",
                    ev,
                );
            }
            capture_ended(cx, p, &format!("while the response to {line} was arriving"), ev)
        }
    }
}

/// "Cannot judge: snaplen", with what the capture does show.
fn snaplen_not_judged(explanation: String, ev: Ev) -> Diagnosis {
    verdict(
        Verdict::CaptureIncomplete,
        Blame::Capture,
        explanation,
        "Capture with the full snaplen (tcpdump -s 0, the default) to judge the HTTP messages; the TCP facts above hold as they are.",
        ev,
    )
}

/// A request whose head snaplen cut, neither answered nor cut short visibly: whether the proxy
/// had sent all of it is not in the capture, so neither "the backend closed during the request"
/// nor "an empty reply" (nor "the proxy gave up") can be told. Says what the wire shows.
fn cut_request_not_judged(
    cx: &Context<'_>,
    p: &Conn,
    req: &Message,
    line: &str,
    backend_close: Option<(CloseMark, bool)>,
    proxy_close: Option<(CloseMark, bool)>,
    mut ev: Ev,
) -> Diagnosis {
    let ps = cx.first_side;
    let sent = bytes(req.bytes);
    let acked = first_ack_covering(p.to_server(), req.offset + req.bytes as i64);
    if let Some(at) = acked {
        ev.add(ps, at, "backend acknowledges every request byte sent");
    }
    let pc_t = proxy_close.map_or(i64::MAX, |(m, _)| m.at.ts_ns);
    let what = match backend_close {
        Some((m, rst)) if m.at.ts_ns <= pc_t => {
            ev.add(
                ps,
                m.at,
                format!("backend sends {} without a response byte", kind(rst)),
            );
            format!(
                "the backend {} the connection {} after the proxy's last request byte ({sent} sent{}), without a response byte: an empty reply if the request was whole, a close during the request if not — the backend's doing either way",
                if rst { "reset" } else { "closed" },
                ms(m.at.ts_ns - req.last.ts_ns),
                if acked.is_some() { ", all acknowledged" } else { "" }
            )
        }
        _ => match proxy_close {
            Some((m, rst)) => {
                ev.add(ps, m.at, format!("proxy sends {}", kind(rst)));
                format!(
                    "the proxy sent {sent}{}, no response came, and the proxy {} the connection {} later: a backend timeout if the request was whole, the proxy giving up on its own request if not",
                    if acked.is_some() {
                        " (all acknowledged)"
                    } else {
                        ""
                    },
                    if rst { "reset" } else { "closed" },
                    ms(m.at.ts_ns - req.last.ts_ns)
                )
            }
            None => format!("the proxy sent {sent} and the capture ended before anything else happened"),
        },
    };
    snaplen_not_judged(
        format!(
            "Cannot judge: snaplen cut the headers of {line}, so its length (Content-Length, chunking) is not in the capture and whether the proxy sent all of it cannot be told. What the wire shows: {what}."
        ),
        ev,
    )
}

/// The backend closed after a response whose head snaplen cut: a close-delimited response that
/// ended, a keep-alive connection closed while idle, and a truncated response look alike — unless
/// the close came exactly the backend's keep-alive timeout (learned from its other connections)
/// after the response's last byte: its idle timer closed it, so the response had ended.
fn cut_response_closed(
    cx: &Context<'_>,
    p: &Conn,
    r: &Message,
    line: &str,
    close: CloseMark,
    rst: bool,
    mut ev: Ev,
) -> Diagnosis {
    let ps = cx.first_side;
    let idle = close.at.ts_ns - r.last.ts_ns;
    ev.add(
        ps,
        r.last,
        format!("last response byte ({} of the response)", bytes(r.bytes)),
    );
    ev.add(
        ps,
        close.at,
        format!("backend sends {} {} later", kind(rst), ms(idle)),
    );
    if let Some(t) = cx
        .backend_idle_timeout
        .filter(|&t| !rst && is_idle_close(idle, t))
    {
        let n = p.app.exchanges.len();
        return verdict(
            Verdict::Ok,
            Blame::None,
            format!(
                "{} Snaplen cut the response headers, so the last response's length is not in the capture; the backend closed the connection {} after its last byte — its keep-alive timeout ({}, as its other idle closes show): an idle close after a whole response.",
                if n == 1 {
                    "The request was sent in full and answered.".to_string()
                } else {
                    format!("All {n} requests were sent in full and answered.")
                },
                ms(idle),
                ms(t)
            ),
            "",
            ev,
        );
    }
    let status = r
        .status
        .map_or("a response".to_string(), |s| format!("a {s} response"));
    snaplen_not_judged(
        format!(
            "Cannot judge: snaplen cut the headers of {status} to {line}, so its length is not in the capture. The backend sent {} of it, then {} the connection {} after the last byte: a whole response ended by the close and a truncated one look the same here.",
            bytes(r.bytes),
            if rst { "reset" } else { "closed" },
            ms(idle)
        ),
        ev,
    )
}

/// No response was parsed, yet the backend sent bytes after the request: snaplen cut them before
/// a status line could be read (cannot judge), or they are not an HTTP/1.x response at all.
fn unreadable_answer(
    cx: &Context<'_>,
    p: &Conn,
    req: &Message,
    line: &str,
    ev: &mut Ev,
) -> Option<Diagnosis> {
    let ps = cx.first_side;
    let d = p.to_client();
    let first = d.spans.iter().find(|s| s.first.ts_ns >= req.first.ts_ns)?;
    // Bytes the capture does not hold (lost, or missed) are the loss rules' business.
    if d.gaps > 0 || d.acked_unseen > 0 || first.kind != crate::tcp::SpanKind::New {
        return None;
    }
    let sent = d.data_end? - first.start;
    ev.add(ps, first.first, "backend sends bytes after the request");
    if d.snaplen_cut > 0 {
        return Some(snaplen_not_judged(
            format!(
                "Cannot judge: the backend answered {line} with {} that snaplen cut before a status line could be read, so the response is not in the capture.",
                bytes(sent as u64)
            ),
            ev.take(),
        ));
    }
    Some(verdict(
        Verdict::BackendBadResponse,
        Blame::Backend,
        format!(
            "The backend answered {line} with {} that are not an HTTP/1.x response (no status line a client could read; see the anomalies). Apache logs AH01102 \"error reading status line\", nginx \"upstream sent no valid HTTP/1.0 header\"; clients get a 502.",
            bytes(sent as u64)
        ),
        "Look at what the backend sends on this port: another protocol (TLS, HTTP/2 without upgrade), a wrong port, or a broken response writer.",
        ev.take(),
    ))
}

fn capture_ended(cx: &Context<'_>, p: &Conn, when: &str, mut ev: Ev) -> Diagnosis {
    ev.add(
        cx.first_side,
        p.last,
        "last packet of the connection in the capture",
    );
    verdict(
        Verdict::CaptureIncomplete,
        Blame::Capture,
        format!(
            "The capture ended {when}: the connection was still open, so what happened next cannot be judged."
        ),
        "Capture for longer (start before and stop well after the failure).",
        ev,
    )
}

/// Every exchange completed: ok, unless the captures cannot vouch for it.
fn healthy(cx: &Context<'_>, p: &Conn, b: Option<&Conn>, mut ev: Ev) -> Diagnosis {
    let ps = cx.first_side;
    let n = p.app.exchanges.len();
    // The captures dropped packets of this connection (bytes acknowledged but never captured).
    let unseen_p = p.to_server().acked_unseen + p.to_client().acked_unseen;
    let unseen_b = b.map_or(0, |b| b.to_server().acked_unseen + b.to_client().acked_unseen);
    if unseen_p > 0 || unseen_b > 0 {
        let (side, c, unseen) = if unseen_b > 0 {
            (Side::Backend, b.expect("checked"), unseen_b)
        } else {
            (ps, p, unseen_p)
        };
        if let Some(s) = c
            .dirs
            .iter()
            .flat_map(|d| d.spans.iter())
            .find(|s| s.kind == crate::tcp::SpanKind::New && s.start > 0)
        {
            ev.add(side, s.first, "first data after bytes the capture missed");
        }
        return verdict(
            Verdict::CaptureIncomplete,
            Blame::Capture,
            format!(
                "The {} capture missed {} of this connection that the receiver acknowledged: that capture dropped packets (not the network). {}",
                side,
                bytes(unseen),
                if n > 0 && cx.two_captures {
                    format!(
                        "The other capture shows all {n} exchange{} completing normally.",
                        if n == 1 { "" } else { "s" }
                    )
                } else {
                    "What the missing packets carried cannot be judged.".to_string()
                }
            ),
            "Capture with a larger buffer (tcpdump -B 65536), a smaller snaplen or a capture filter on the backend port, and write to a fast disk, so the capture does not drop packets.",
            ev,
        );
    }
    // The connection was already open when the captures started (a pooled keep-alive
    // connection): judged on what the captures show, and the explanation says what they miss.
    // A lone SYN-ACK (the SYN not captured) is not "opened normally" either: the other capture's
    // SYN, when it has one, is what shows the opening.
    if p.syn.is_none() && cx.b.is_none_or(|b| b.syn.is_none()) {
        return already_open(cx, p, ev);
    }
    let retrans = p.to_server().retransmissions + p.to_client().retransmissions;
    let late: usize = cx
        .alignment
        .map_or(0, |a| a.dirs.iter().map(|d| d.arrived_late.len()).sum());
    // A connection with neither FIN nor RST was still open when the capture ended (an idle
    // keep-alive connection, or one opened just before): say so rather than "closed normally".
    let closed = p.dirs.iter().any(|d| d.fin.is_some() || d.rst.is_some());
    let ended = if closed {
        "opened and closed normally"
    } else if cx.two_captures {
        "opened normally and was still open when the captures ended"
    } else {
        "opened normally and was still open when the capture ended"
    };
    let mut text = match n {
        0 => format!("The connection {ended}, without an HTTP exchange."),
        1 => "The request was sent in full and answered in full.".to_string(),
        n => format!("All {n} requests were sent in full and answered in full."),
    };
    if p.app.protocol == Protocol::Tls {
        text = format!("TLS: the HTTP inside cannot be judged; the TCP connection itself {ended}.");
    }
    if retrans > 0 {
        text.push_str(&format!(
            " {retrans} segment{} retransmitted{}, recovered.",
            if retrans == 1 { " was" } else { "s were" },
            if late > 0 {
                format!(" ({late} lost in transit)")
            } else {
                String::new()
            }
        ));
    }
    if p.app.anomalies.count("http_lower_case_version") > 0 {
        text.push_str(" The backend's status line is not strictly valid (its HTTP version in lower case): clients read it, a strict parser may not (anomaly http_lower_case_version).");
    }
    if let Some(f) = p.to_server().first_data.or(p.syn) {
        ev.add(ps, f, "first packet");
    }
    ev.add(ps, p.last, "last packet");
    verdict(Verdict::Ok, Blame::None, text, "", ev)
}

/// A connection already open when the capture(s) started, every exchange they show complete: `ok`
/// on what is visible. An exchange in progress at the start (a response whose request is not in
/// the capture) is not judged, and the explanation says so.
fn already_open(cx: &Context<'_>, p: &Conn, mut ev: Ev) -> Diagnosis {
    let ps = cx.first_side;
    let s = if cx.two_captures { "s" } else { "" };
    ev.add(
        ps,
        p.first,
        "first packet captured: the connection was already open",
    );
    let whole = p.app.exchanges.iter().filter(|e| e.request.is_some()).count();
    let partial = p.app.exchanges.len() - whole;
    let closed = p.dirs.iter().any(|d| d.fin.is_some() || d.rst.is_some());
    let mut text = match p.syn_ack {
        // Its opening half seen: the capture started between the SYN and the SYN-ACK, or
        // dropped the SYN.
        Some(sa) => {
            ev.add(ps, sa, "SYN-ACK without its SYN in the capture");
            format!(
                "The proxy's SYN is not in the capture{s}, only the backend's SYN-ACK: the capture{s} started during the handshake or missed the SYN, so the opening is not judged."
            )
        }
        None => format!("The connection was already open when the capture{s} started (a reused connection)."),
    };
    text.push_str(&match whole {
        0 => " No request was sent while the capture ran".to_string(),
        1 => " The request the capture shows was sent in full and answered in full".to_string(),
        n => format!(" All {n} requests the capture shows were sent in full and answered in full"),
    });
    text.push_str(if closed {
        ", and it closed normally."
    } else {
        ", and it was still open when the capture ended."
    });
    if partial > 0 {
        text.push_str(
            " The end of a response whose request was sent before the capture started is not judged.",
        );
    }
    if p.app.protocol == Protocol::Tls {
        text.push_str(" TLS: the HTTP inside cannot be judged.");
    }
    ev.add(ps, p.last, "last packet");
    verdict(Verdict::Ok, Blame::None, text, "", ev)
}

/// Seen in the backend capture only.
fn backend_only(cx: &Context<'_>, b: &Conn) -> Diagnosis {
    // Judge it from the backend's view, then say what the proxy capture's absence means.
    let sub = Context {
        p: Some(b),
        b: None,
        two_captures: false,
        first_side: Side::Backend,
        clock: cx.clock,
        alignment: None,
        proxy_capture_end: cx.backend_capture_end,
        backend_capture_end: cx.backend_capture_end,
        backend_idle_timeout: cx.backend_idle_timeout,
    };
    let mut d = with_proxy_view(&sub, b, None);
    d.explanation.push_str(" This connection is not in the proxy capture (another client, or the proxy capture did not cover it).");
    d
}

//! # The rules: one verdict per connection
//!
//! [`diagnose`] judges a connection from the proxy capture's view (`p`, or the only capture's),
//! the backend capture's (`b`), the byte-range alignment of the two and the pair's sequence map
//! (all in [`Context`]; a rule gets them bundled as a `Conns`). The rule table `RULES` is tried
//! in order; each rule either recognises its family of failure and returns the diagnosis, or
//! passes (adding no evidence); a connection no rule takes is judged by `ok::healthy`:
//!
//! 1. `handshake_failed` (`connect`): no SYN-ACK — refused by RST or ICMP, or no answer.
//! 2. `forged_rst` (`reset`): two captures, a RST one end received that the other never sent.
//! 3. `suspicious_rst` (`reset`): one capture, a RST whose TTL does not fit the backend's packets.
//! 4. `tls_failed` (`tls`): TLS to the backend, judged from TCP (loss, no answer, a closing race).
//! 5. `exchange_failed`: the first request that did not go out whole (`request`: lost on the
//!    way, a zero window, a keep-alive race, the backend closing during it, the proxy giving up)
//!    or whose response did not come back whole (`response`: a keep-alive race, loss either way,
//!    an empty reply, a timeout, a cut or unreadable response, the proxy aborting).
//! 6. `ok::healthy`: ok, or not judged when a capture dropped packets of the connection.
//!
//! The order is the order of causes: a connection that never opened has no exchange to judge; a
//! forged RST explains a failed exchange that would otherwise read as the backend's doing; TLS
//! hides the exchanges the last rule reads. Within a family the same holds (a race or a loss
//! before what the closes alone suggest).
//!
//! A connection only the backend capture (of two) holds is judged from the backend's view as the
//! backend host's capture alone would be (`backend_only`), and the explanation adds that the proxy
//! capture lacks it; so is one whose proxy view starts after its request began
//! (`proxy_capture_started_late`).
//! With the backend host's capture alone (`--backend-capture`), its view is `p`, and the
//! explanations leave out the notes that point to a capture on the backend host.
//!
//! Conventions: the client of a connection is the proxy, the server is the backend. Times are on
//! the proxy clock unless a name ends in `_b` (backend clock). With one capture, the view is `p`.

use super::{Blame, Diagnosis, Evidence, Verdict};
use crate::capture::Side;
use crate::http::Conn;
use crate::http::{Exchange, Framing, Message, Protocol};
use crate::pair::{Alignment, ClockOffset, SeqMap};
use crate::tcp::{CloseMark, Dir, DirSummary, IcmpMark, PacketRef};

mod connect;
mod drops;
mod loss;
mod ok;
mod race;
mod request;
mod reset;
mod response;
mod tls;

/// Everything a rule may look at.
pub(crate) struct Context<'a> {
    /// The proxy capture's view (or the only capture's).
    pub p: Option<&'a Conn>,
    /// The backend capture's view.
    pub b: Option<&'a Conn>,
    /// Two captures were given (a missing view is then a finding).
    pub two_captures: bool,
    /// The side label of the first capture (`Proxy`, or `Single` for `flows`).
    pub first_side: Side,
    pub clock: Option<&'a ClockOffset>,
    /// How the two views number the same bytes, as pairing measured it (through a firewall that
    /// randomizes sequence numbers, too); the default (maps nothing) with one view.
    pub seq_map: SeqMap,
    pub alignment: Option<&'a Alignment>,
    /// The backend's keep-alive (idle) timeout, when its idle closes of other connections show
    /// it (see [`super::idle_close_timeout`]).
    pub backend_idle_timeout: Option<i64>,
    /// With two captures: the backend capture's first packet and how far it has been read
    /// (backend clock; its last packet once read to the end). Outside that span, the backend
    /// capture's silence proves nothing.
    pub backend_capture: Option<(i64, i64)>,
    /// With two captures: how long the proxy capture is known to have run (proxy clock: its last
    /// packet once read to the end, else as far as it has been read).
    pub proxy_capture_until: Option<i64>,
}

pub(crate) fn diagnose(cx: &Context<'_>) -> Diagnosis {
    let mut d = match (cx.p, cx.b) {
        // The backend host's capture, alone: its view is judged as the proxy's would be.
        (Some(p), b) => {
            let d = with_proxy_view(cx, p, b, cx.first_side == Side::Backend && !cx.two_captures);
            drops::judged_across_drops(cx, (cx.first_side, p), b, d)
        }
        (None, Some(b)) => drops::judged_across_drops(cx, (Side::Backend, b), None, backend_only(cx, b)),
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
    fn take(&mut self) -> Ev {
        Ev {
            list: std::mem::take(&mut self.list),
        }
    }
}

/// One connection as the rules see it: the context, the proxy capture's view (or the only
/// capture's: `cx.p`, unwrapped) and the backend capture's view.
#[derive(Clone, Copy)]
struct Conns<'a> {
    cx: &'a Context<'a>,
    p: &'a Conn,
    b: Option<&'a Conn>,
    /// The only capture is the backend host's (`analyze --backend-capture`): the explanations
    /// leave out the notes that point to a capture on the backend host, this being that capture.
    backend_host_alone: bool,
}

impl Conns<'_> {
    /// The side label of the proxy view's evidence.
    fn ps(&self) -> Side {
        self.cx.first_side
    }

    /// `note`, which points to a capture on the backend host, unless this is that capture.
    fn unless_backend_host(&self, note: &'static str) -> &'static str {
        if self.backend_host_alone { "" } else { note }
    }

    /// With the proxy's capture alone, the note that the backend host's would show its side.
    /// Was the backend capture running at proxy-clock time `t`? Placed on the backend's clock by
    /// the clock estimate, or as it is without one (captures of one incident are seldom more than
    /// seconds apart, and without any pair there is nothing better). Unknown counts as running.
    fn backend_capture_ran_at(&self, t: i64) -> bool {
        let Some((start, end)) = self.cx.backend_capture else {
            return true;
        };
        let t_b = self.cx.clock.map_or(t, |c| c.to_backend(t));
        (start..=end).contains(&t_b)
    }

    fn one_capture_note(&self) -> &'static str {
        if self.backend_host_alone || self.b.is_some() {
            ""
        } else if self.cx.two_captures {
            self.backend_view_missing()
        } else {
            " (One capture: a capture on the backend host would show the backend's side.)"
        }
    }

    /// Two captures, and the backend capture holds nothing of this connection: what it says is
    /// the proxy capture's alone, which the report must not pass off as seen at both ends (a
    /// network engineer who opens the backend capture finds nothing there). Whether that capture
    /// ran at the time tells a capture started late or stopped early from one that missed the
    /// connection (capture drops, another interface, a capture filter, addresses the pairing
    /// could not follow).
    fn backend_view_missing(&self) -> &'static str {
        if self.backend_capture_ran_at(self.p.first.ts_ns) && self.backend_capture_ran_at(self.p.last.ts_ns) {
            " (The backend capture holds no packet of this connection, though it ran at the time: this is the proxy capture's account alone.)"
        } else {
            " (The backend capture did not run over this connection's time: this is the proxy capture's account alone.)"
        }
    }
}

/// Evidence of the backend's own close (its first FIN or RST), as the backend capture saw it.
fn backend_close_seen(b: Option<&Conn>, ev: &mut Ev) {
    if let Some((m, rst)) = b.and_then(|b| close_of(b.to_client())) {
        ev.add(Side::Backend, m.at, format!("backend sends {}", kind(rst)));
    }
}

/// How a connection was ended, as a verb: "reset" (RST) or "closed" (FIN).
fn closed_or_reset(rst: bool) -> &'static str {
    if rst { "reset" } else { "closed" }
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
    Request(usize, &'a Message),
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
            return Some(Failure::Request(i, req));
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

/// The backend view's exchange for the proxy view's request: the one whose first byte is the
/// request's (by the pair's `seq_map`), else the first with the same method and target (when a
/// view has no sequence origin).
fn backend_exchange<'a>(seq_map: SeqMap, b: &'a Conn, req: &Message) -> Option<&'a Exchange> {
    let target = seq_map.to_backend(Dir::ClientToServer.idx(), req.offset);
    b.app
        .exchanges
        .iter()
        .find(|e| e.request.as_ref().is_some_and(|r| Some(r.offset) == target))
        .or_else(|| {
            b.app.exchanges.iter().find(|e| {
                e.request
                    .as_ref()
                    .is_some_and(|r| r.method == req.method && r.target == req.target)
            })
        })
}

fn with_proxy_view(cx: &Context<'_>, p: &Conn, b: Option<&Conn>, backend_host_alone: bool) -> Diagnosis {
    let v = Conns {
        cx,
        p,
        b,
        backend_host_alone,
    };
    let mut ev = Ev::new();
    for rule in RULES {
        if let Some(d) = rule(v, &mut ev) {
            return d;
        }
    }
    proxy_capture_started_late(v).unwrap_or_else(|| ok::healthy(v, ev))
}

/// The proxy capture started after the connection's requests were sent (its view holds no
/// handshake and no request) while the backend capture shows them: the proxy's view has nothing
/// to judge, the backend's has. What the backend capture shows going wrong (anything but `ok`) is
/// then judged from it as the backend host's capture alone would be (its evidence is the
/// backend's), and said so; otherwise the proxy's view is judged as usual.
fn proxy_capture_started_late(v: Conns<'_>) -> Option<Diagnosis> {
    let b = v.b?;
    let requests = |c: &Conn| c.app.exchanges.iter().filter(|x| x.request.is_some()).count();
    if v.p.syn.is_some() || requests(v.p) > 0 || requests(b) == 0 {
        return None;
    }
    let mut d = as_backend_capture_alone(v.cx, b);
    if !d.verdict.is_notable() {
        return None;
    }
    d.explanation.push_str(
        " The proxy capture holds this connection only from after its request began (no request in its view): this is the backend capture's account.",
    );
    Some(d)
}

/// A rule: the diagnosis when the connection is of its family, else `None` and the next rule is
/// tried. A rule adds evidence to `ev` only on its way to a diagnosis.
type Rule = fn(Conns<'_>, &mut Ev) -> Option<Diagnosis>;

/// The rules, in the order they are tried; a connection none of them fits is healthy.
const RULES: &[Rule] = &[
    handshake_failed,
    forged_rst,
    suspicious_rst,
    tls_failed,
    exchange_failed,
];

/// The handshake did not complete: refused by RST or ICMP, or no answer to the SYN.
fn handshake_failed(v: Conns<'_>, ev: &mut Ev) -> Option<Diagnosis> {
    let p = v.p;
    let (Some(syn), None, None) = (p.syn, p.syn_ack, p.to_client().first_data) else {
        return None;
    };
    // The proxy sent data after its SYN: it had the SYN-ACK, which its capture missed (packets
    // lost at the capture host). The handshake completed; the other rules judge what followed.
    if p.to_server().first_data.is_some_and(|d| d.frame != syn.frame) {
        return None;
    }
    ev.add(v.ps(), syn, format!("proxy sends SYN to {}", p.server));
    if let Some(rst) = p.to_client().rst {
        ev.add(
            v.ps(),
            rst.at,
            format!("RST from {} answers the SYN (TTL {})", p.server, rst.ttl),
        );
        return Some(connect::refused(v, rst, ev.take()));
    }
    if let Some(icmp) = p.icmp.filter(|i| i.to_server && i.kind.refuses()) {
        return Some(connect::refused_by_icmp(v, icmp, ev.take()));
    }
    Some(connect::connect_timeout(v, syn, ev.take()))
}

/// A RST one end received that the other never sent (two captures).
fn forged_rst(v: Conns<'_>, ev: &mut Ev) -> Option<Diagnosis> {
    let (Some(b), Some(a)) = (v.b, v.cx.alignment) else {
        return None;
    };
    if let Some(rst) = a.dirs[Dir::ServerToClient.idx()].forged_rst {
        if reset::connection_failed(v.p) {
            return Some(reset::forged_rst(v, b, rst, true, ev.take()));
        }
    }
    if let Some(rst) = a.dirs[Dir::ClientToServer.idx()].forged_rst {
        if reset::connection_failed(v.p) {
            return Some(reset::forged_rst(v, b, rst, false, ev.take()));
        }
    }
    None
}

/// One view: a RST from the backend whose TTL does not fit the backend's packets (one capture,
/// or a connection the backend capture does not hold: the TTLs in the proxy's view are evidence
/// all the same).
fn suspicious_rst(v: Conns<'_>, _: &mut Ev) -> Option<Diagnosis> {
    if v.b.is_some() {
        return None;
    }
    reset::suspicious_rst_single(v)
}

fn tls_failed(v: Conns<'_>, ev: &mut Ev) -> Option<Diagnosis> {
    if v.p.app.protocol != Protocol::Tls {
        return None;
    }
    tls::tls_failure(v, ev)
}

/// The first request that did not go out whole, or whose response did not come back whole.
fn exchange_failed(v: Conns<'_>, ev: &mut Ev) -> Option<Diagnosis> {
    Some(match first_failure(v.p)? {
        Failure::Request(i, req) => request::failed(v, i, req, ev.take()),
        Failure::Response(i, e, req) => response::failed(v, i, e, req, ev.take()),
    })
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

/// Seen in the backend capture only.
fn backend_only(cx: &Context<'_>, b: &Conn) -> Diagnosis {
    // Judge it from the backend's view, then say what the proxy capture's absence means.
    let mut d = as_backend_capture_alone(cx, b);
    d.explanation.push_str(" This connection is not in the proxy capture (another client, or the proxy capture did not cover it).");
    d
}

/// The backend capture's view judged as the backend host's capture alone is (`analyze
/// --backend-capture`): worded for that capture, with what only it shows (SYN-ACKs or responses
/// sent again and again, never acknowledged).
fn as_backend_capture_alone(cx: &Context<'_>, b: &Conn) -> Diagnosis {
    let alone = Context {
        p: Some(b),
        b: None,
        two_captures: false,
        first_side: Side::Backend,
        clock: cx.clock,
        seq_map: SeqMap::default(),
        alignment: None,
        backend_idle_timeout: cx.backend_idle_timeout,
        backend_capture: None,
        proxy_capture_until: None,
    };
    super::backend_only_override(b, with_proxy_view(&alone, b, None, true))
}

#[cfg(test)]
mod tests;

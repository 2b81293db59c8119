//! The request went out whole: no response, a late one, or a cut one.

use super::loss::lost_in_transit;
use super::race::keepalive_race;
use super::*;

/// The request went out whole and the response did not come back whole: a race with the
/// backend's idle close, bytes lost on the way, or what happened to the response.
pub(super) fn failed(v: Conns<'_>, index: usize, e: &Exchange, req: &Message, mut ev: Ev) -> Diagnosis {
    let ps = v.ps();
    let line = request_line(req);
    ev.add(ps, req.first, format!("proxy sends {line}"));
    if req.bytes > 0 && req.last != req.first {
        ev.add(ps, req.last, "last request byte");
    }
    if let Some(d) = keepalive_race(v, index, req, &line, &mut ev) {
        return d;
    }
    for dir in Dir::BOTH {
        if let Some(d) = lost_in_transit(v, dir, &line, &mut ev) {
            return d;
        }
    }
    response_failure(v, e, req, &line, ev)
}

/// The request went out whole: what happened to the response.
fn response_failure(v: Conns<'_>, e: &Exchange, req: &Message, line: &str, mut ev: Ev) -> Diagnosis {
    let w = Waiting::new(v, req, line, &mut ev);
    match e.response.as_ref() {
        None => w.no_response(ev),
        Some(r) if w.pc_t < r.first.ts_ns => w.too_late(r, ev),
        Some(r) => w.cut_short(r, ev),
    }
}

/// What the proxy view shows after the whole request went out, while the proxy waited for the
/// response: who closed first, and whether the backend acknowledged the request.
struct Waiting<'a> {
    v: Conns<'a>,
    req: &'a Message,
    line: &'a str,
    proxy_close: Option<(CloseMark, bool)>,
    backend_close: Option<(CloseMark, bool)>,
    /// When each end closed (`i64::MAX`: it did not).
    pc_t: i64,
    bc_t: i64,
    /// The backend's acknowledgement of the request's last byte.
    acked: Option<PacketRef>,
}

impl<'a> Waiting<'a> {
    fn new(v: Conns<'a>, req: &'a Message, line: &'a str, ev: &mut Ev) -> Waiting<'a> {
        let p = v.p;
        let proxy_close = close_of(p.to_server());
        let backend_close = close_of(p.to_client());
        let acked = first_ack_covering(p.to_server(), req.offset + req.bytes as i64);
        if let Some(at) = acked {
            ev.add(v.ps(), at, "backend acknowledges the whole request");
        }
        Waiting {
            v,
            req,
            line,
            proxy_close,
            backend_close,
            pc_t: proxy_close.map_or(i64::MAX, |(m, _)| m.at.ts_ns),
            bc_t: backend_close.map_or(i64::MAX, |(m, _)| m.at.ts_ns),
            acked,
        }
    }

    /// The backend's close, if it came first (before the proxy's, or without one).
    fn backend_closed_first(&self) -> Option<(CloseMark, bool)> {
        self.backend_close
            .filter(|_| self.bc_t <= self.pc_t && self.bc_t != i64::MAX)
    }

    /// No response was read: bytes that are not one, the backend closing without a byte, the
    /// proxy giving up waiting, or the end of the capture.
    fn no_response(&self, mut ev: Ev) -> Diagnosis {
        let (v, line) = (self.v, self.line);
        // Bytes came back that the capture cannot read as a response: never "no response".
        if let Some(d) = unreadable_answer(v.cx, v.p, v.b, self.req, line, &mut ev) {
            return d;
        }
        // The backend capture shows an answer the proxy acknowledged: its capture missed it.
        if let Some(d) = status_line_only_backend_saw(v.cx, v.b, self.req, line, &mut ev) {
            return d;
        }
        if let Some(close) = self.backend_closed_first() {
            return self.empty_reply(close, ev);
        }
        if let Some(close) = self.proxy_close.filter(|_| self.pc_t != i64::MAX) {
            return self.no_answer_in_time(close, ev);
        }
        capture_ended(
            v.cx,
            v.p,
            &format!("while the proxy waited for the response to {line}"),
            ev,
        )
    }

    /// The backend closed (`m`, by RST if `rst`) without a response byte.
    fn empty_reply(&self, (m, rst): (CloseMark, bool), mut ev: Ev) -> Diagnosis {
        let (v, req, line) = (self.v, self.req, self.line);
        ev.add(
            v.ps(),
            m.at,
            format!("backend sends {} without a response byte", kind(rst)),
        );
        if let Some(b) = v.b {
            backend_close_seen(Some(b), &mut ev);
            if let Some(be) = backend_exchange(v.cx.seq_map, b, req).and_then(|x| x.request.as_ref()) {
                ev.add(
                    Side::Backend,
                    be.last,
                    "the whole request has arrived at the backend",
                );
            }
        }
        let after = ms(m.at.ts_ns - req.last.ts_ns);
        verdict(
            Verdict::BackendEmptyReply,
            Blame::Backend,
            format!(
                "The backend received all of {line} ({}) and {} the connection {after} later without sending a single response byte. Apache logs AH01102 \"error reading status line from remote server\", nginx \"upstream prematurely closed connection while reading response header\".{}",
                bytes(req.bytes),
                closed_or_reset(rst),
                v.one_capture_note()
            ),
            "Look at the backend's logs at this time: the worker handling this request crashed, was killed (OOM, timeout, restart) or closed the connection on purpose before answering.",
            ev,
        )
    }

    /// The proxy gave up (`m`) with no response byte: a backend timeout, or with one capture and
    /// the request never acknowledged, bytes lost on the way.
    fn no_answer_in_time(&self, (m, rst): (CloseMark, bool), mut ev: Ev) -> Diagnosis {
        let (v, line) = (self.v, self.line);
        ev.add(v.ps(), m.at, format!("proxy gives up and sends {}", kind(rst)));
        let waited = ms(m.at.ts_ns - self.req.last.ts_ns);
        if self.acked.is_none() && !v.cx.two_captures {
            return verdict(
                Verdict::LostInTransit,
                Blame::Network,
                format!(
                    "The proxy sent all of {line} but the backend never acknowledged its end; the proxy gave up after {waited}. The bytes were lost on the way (or the backend host froze){}.",
                    v.unless_backend_host(": a capture on the backend host would tell which")
                ),
                "Look at the network path between proxy and backend for loss or a black hole; capture on the backend host.",
                ev,
            );
        }
        verdict(
            Verdict::BackendTimeout,
            Blame::Backend,
            format!(
                "The backend received all of {line} and acknowledged it, but sent no response in the {waited} the proxy waited before giving up. Apache logs \"(70007) The timeout specified has expired\", nginx \"upstream timed out (110: Connection timed out) while reading response header\".{}",
                v.one_capture_note()
            ),
            "Look at the backend: why this request took longer than the proxy's timeout (slow query, lock, stuck worker, overloaded pool); compare the proxy's timeout (Apache ProxyTimeout/timeout=, nginx proxy_read_timeout) with the backend's normal response time.",
            ev,
        )
    }

    /// The response `r` began after the proxy had given up.
    fn too_late(&self, r: &Message, mut ev: Ev) -> Diagnosis {
        let (v, line) = (self.v, self.line);
        let (m, rst) = self.proxy_close.expect("checked");
        ev.add(v.ps(), m.at, format!("proxy gives up and sends {}", kind(rst)));
        ev.add(
            v.ps(),
            r.first,
            format!("response {} arrives, after the proxy gave up", status_text(r)),
        );
        verdict(
            Verdict::BackendTimeout,
            Blame::Backend,
            format!(
                "The backend received all of {line} and acknowledged it, but answered only {} later, {} after the proxy had given up and {} the connection: too late. Apache logs \"(70007) The timeout specified has expired\", nginx \"upstream timed out (110: Connection timed out) while reading response header\".{}",
                ms(r.first.ts_ns - self.req.last.ts_ns),
                ms(r.first.ts_ns - m.at.ts_ns),
                closed_or_reset(rst),
                v.one_capture_note()
            ),
            "Look at the backend: why this request took longer than the proxy's timeout (a full listen or worker queue, slow query, lock, stuck worker); compare the proxy's timeout (Apache ProxyTimeout/timeout=, nginx proxy_read_timeout) with the backend's response time under load.",
            ev,
        )
    }

    /// The response `r` began and did not end: cut by the backend's close, abandoned by the
    /// proxy's, or still arriving when the capture ended.
    fn cut_short(&self, r: &Message, mut ev: Ev) -> Diagnosis {
        let (v, line) = (self.v, self.line);
        ev.add(
            v.ps(),
            r.first,
            format!("response {} starts arriving", status_text(r)),
        );
        let backend_close = self.backend_closed_first();
        if let (Some((m, rst)), Framing::Unknown) = (backend_close, r.framing) {
            return cut_response_closed(v.cx, v.p, r, line, m, rst, ev);
        }
        if let Some(close) = backend_close {
            return self.truncated(r, close, ev);
        }
        if let Some(close) = self.proxy_close.filter(|_| self.pc_t != i64::MAX) {
            return self.proxy_aborted(r, close, ev);
        }
        capture_ended(
            v.cx,
            v.p,
            &format!("while the response to {line} was arriving"),
            ev,
        )
    }

    /// The backend's close (`m`) cut its response `r`.
    fn truncated(&self, r: &Message, (m, rst): (CloseMark, bool), mut ev: Ev) -> Diagnosis {
        let (v, line) = (self.v, self.line);
        let (got, expected) = received(r);
        ev.add(v.ps(), r.last, format!("last response byte ({got})"));
        ev.add(v.ps(), m.at, format!("backend sends {} mid-response", kind(rst)));
        backend_close_seen(v.b, &mut ev);
        verdict(
            Verdict::ResponseTruncated,
            Blame::Backend,
            format!(
                "The backend started answering {line} with {} but {} the connection after {got}{expected}: the response is truncated. Clients get a cut-off body or a 502.{}",
                status_text(r),
                closed_or_reset(rst),
                v.one_capture_note()
            ),
            "Look at the backend's logs at this time: the response was cut short (a crash or timeout while writing, a wrong Content-Length, a worker killed mid-response).",
            ev,
        )
    }

    /// The proxy closed (`m`) while the response `r` was still arriving.
    fn proxy_aborted(&self, r: &Message, (m, rst): (CloseMark, bool), mut ev: Ev) -> Diagnosis {
        let (got, expected) = received(r);
        ev.add(
            self.v.ps(),
            m.at,
            format!("proxy sends {} while the response is still coming", kind(rst)),
        );
        verdict(
            Verdict::ProxyAborted,
            Blame::Proxy,
            format!(
                "The proxy {} the connection while the backend was still sending its {} response to {}: it had received {got}{expected}. The backend was answering; the proxy stopped reading — typically its client went away or a proxy timeout fired.",
                closed_or_reset(rst),
                status_text(r),
                self.line,
            ),
            "Look at the proxy's access log for this request (status 499 in nginx, a client abort in Apache) and at its timeouts for sending the response to its client.",
            ev,
        )
    }
}

/// A response's status code, or "?" when snaplen cut it.
fn status_text(r: &Message) -> String {
    r.status.map_or("?".to_string(), |s| s.to_string())
}

/// How much of a response came, in the terms its framing allows: ("120 bytes", " of a 400-byte
/// body").
fn received(r: &Message) -> (String, String) {
    match r.framing {
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
    }
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
            closed_or_reset(rst),
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
    b: Option<&Conn>,
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
    if let Some(d) = status_line_only_backend_saw(cx, b, req, line, ev) {
        return Some(d);
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

/// The backend capture shows a status line answering `req`, and the proxy acknowledging it, that
/// the proxy capture does not hold (the capture host missed packets): what the proxy got cannot
/// be read, and the backend did answer. Not judged. (A response lost on the way is never
/// acknowledged: that stays the loss rules'.)
fn status_line_only_backend_saw(
    cx: &Context<'_>,
    b: Option<&Conn>,
    req: &Message,
    line: &str,
    ev: &mut Ev,
) -> Option<Diagnosis> {
    let b = b?;
    let head = backend_exchange(cx.seq_map, b, req)
        .and_then(|x| x.response.as_ref())
        .filter(|r| r.status.is_some())?;
    let (acked, at) = b.to_client().acked.filter(|&(a, _)| a > head.offset)?;
    ev.add(
        Side::Backend,
        at,
        format!("the proxy acknowledges the response to byte {acked}"),
    );
    ev.add(
        Side::Backend,
        head.first,
        format!(
            "backend sends the status line ({})",
            head.status.unwrap_or_default()
        ),
    );
    Some(verdict(
        Verdict::CaptureIncomplete,
        Blame::Capture,
        format!(
            "Cannot judge from the proxy's side: the backend capture shows the backend answering {line} with a status line, but the proxy capture does not hold the response from its start (the capture host missed packets), so what the proxy got cannot be read."
        ),
        "Capture again on the proxy host (check tcpdump's \"packets dropped by kernel\"; a larger -B buffer or a narrower filter helps).",
        ev.take(),
    ))
}

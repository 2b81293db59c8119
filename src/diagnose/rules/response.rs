//! The request went out whole: no response, a late one, or a cut one.

use super::loss::lost_in_transit;
use super::race::keepalive_race;
use super::*;

/// The request went out whole and the response did not come back whole: a race with the
/// backend's idle close, bytes lost on the way, or what happened to the response.
pub(super) fn failed(
    cx: &Context<'_>,
    p: &Conn,
    b: Option<&Conn>,
    index: usize,
    e: &Exchange,
    req: &Message,
    mut ev: Ev,
) -> Diagnosis {
    let ps = cx.first_side;
    let line = request_line(req);
    ev.add(ps, req.first, format!("proxy sends {line}"));
    if req.bytes > 0 && req.last != req.first {
        ev.add(ps, req.last, "last request byte");
    }
    if let Some(d) = keepalive_race(cx, p, b, index, req, &line, &mut ev) {
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

/// The request went out whole: what happened to the response.
#[allow(clippy::too_many_arguments)]
pub(super) fn response_failure(
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

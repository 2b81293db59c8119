//! The request did not go out whole: the backend closed during it, stopped reading it, or the
//! proxy gave up sending it.

use super::loss::lost_in_transit;
use super::race::keepalive_race;
use super::*;

/// The request did not go out whole: lost on the way, the backend stopped reading it, a race
/// with the backend's idle close, the backend closed during it, or the proxy stopped sending it.
pub(super) fn failed(v: Conns<'_>, index: usize, req: &Message, mut ev: Ev) -> Diagnosis {
    let (p, ps) = (v.p, v.ps());
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
    if let Some(d) = lost_in_transit(v, Dir::ClientToServer, &line, &mut ev) {
        return d;
    }
    // The backend stopped reading.
    if let Some(d) = zero_window(v, req, &line, &mut ev) {
        return d;
    }
    // Race on a reused connection (a request can be cut by the backend's close too).
    if let Some(d) = keepalive_race(v, index, req, &line, &mut ev) {
        return d;
    }
    let proxy_close = close_of(p.to_server());
    let pc_t = proxy_close.map(|(m, _)| m.at.ts_ns).unwrap_or(i64::MAX);
    let bc = close_of(p.to_client());
    // Snaplen cut the request's head: its length is not known. Only a proxy still
    // sending after the backend's close arrived shows that the request was cut short.
    if req.framing == Framing::Unknown {
        let still_sending = bc.is_some_and(|(m, _)| m.at.ts_ns <= pc_t && req.last.ts_ns > m.at.ts_ns);
        if !still_sending {
            return cut_request_not_judged(v, req, &line, bc, proxy_close, ev);
        }
    }
    match (bc, proxy_close) {
        (Some((bm, brst)), _) if bm.at.ts_ns <= pc_t => closed_during(v, req, &line, (bm, brst), ev),
        (_, Some((pm, prst))) => incomplete(v.cx, req, &line, (pm, prst), ev),
        _ => capture_ended(v.cx, p, &format!("while the proxy was sending {line}"), ev),
    }
}

/// The backend's FIN or RST (`close`, as the proxy saw it) came while the request was being sent.
fn closed_during(
    v: Conns<'_>,
    req: &Message,
    line: &str,
    (bm, brst): (CloseMark, bool),
    mut ev: Ev,
) -> Diagnosis {
    let (cx, b) = (v.cx, v.b);
    ev.add(
        v.ps(),
        bm.at,
        format!("backend's {} arrives while the request is being sent", kind(brst)),
    );
    backend_close_seen(b, &mut ev);
    let received = b
        .and_then(|b| backend_exchange(cx.seq_map, b, req))
        .and_then(|e| e.request.as_ref())
        .map(|r| r.bytes);
    let expected = expected_body(req).map(|n| n + req.header_bytes);
    let mut text = format!(
        "The backend {} the connection while the proxy was still sending {line}: ",
        closed_or_reset(brst)
    );
    match (received, expected) {
        (Some(r), Some(x)) => text.push_str(&format!("it had received {} of {}. ", bytes(r), bytes(x))),
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
    if !cx.two_captures && !v.backend_host_alone {
        text.push_str(" (One capture: a capture on the backend host would show whether the backend itself closed or something in between did.)");
    }
    verdict(
        Verdict::BackendClosedDuringRequest,
        Blame::Backend,
        text,
        "Look at the backend: its request body size limit, read timeout or crash at this time (its error log), and whether it closes connections on errors before reading the whole body.",
        ev,
    )
}

/// The proxy closed (`close`) before it had sent the whole request.
fn incomplete(
    cx: &Context<'_>,
    req: &Message,
    line: &str,
    (pm, prst): (CloseMark, bool),
    mut ev: Ev,
) -> Diagnosis {
    ev.add(
        cx.first_side,
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
            closed_or_reset(prst)
        ),
        "Look at the proxy's client side: the client probably stopped sending the body or went away (client timeout or abort); check the proxy's access log for this request and its body-size and timeout settings.",
        ev,
    )
}

/// The backend advertised a zero window while the request was being sent, until the proxy gave up.
pub(super) fn zero_window(v: Conns<'_>, req: &Message, line: &str, ev: &mut Ev) -> Option<Diagnosis> {
    let (p, b, ps) = (v.p, v.b, v.ps());
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

/// A request whose head snaplen cut, neither answered nor cut short visibly: whether the proxy
/// had sent all of it is not in the capture, so neither "the backend closed during the request"
/// nor "an empty reply" (nor "the proxy gave up") can be told. Says what the wire shows.
pub(super) fn cut_request_not_judged(
    v: Conns<'_>,
    req: &Message,
    line: &str,
    backend_close: Option<(CloseMark, bool)>,
    proxy_close: Option<(CloseMark, bool)>,
    mut ev: Ev,
) -> Diagnosis {
    let (p, ps) = (v.p, v.ps());
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
                closed_or_reset(rst),
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
                    closed_or_reset(rst),
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

//! TLS to the backend: judged from TCP, since the HTTP inside cannot be read.

use super::loss::lost_in_transit;
use super::*;
use crate::tcp::Span;

/// A TLS record this short sent just before its sender's own close is a closing alert
/// (close_notify: 24 bytes in TLS 1.3, 31 in TLS 1.2 with AES-GCM), not a request.
const TLS_ALERT_MAX: i64 = 64;

const TLS_ALERT_BEFORE_CLOSE_NS: i64 = 1_000_000;

/// The TLS connection judged from TCP, said first in its explanations.
const JUDGED_FROM_TCP: &str =
    "TLS to the backend: the HTTP inside cannot be read, so this is judged from TCP.";

/// TLS to the backend: the HTTP inside cannot be read, so a connection is judged from TCP —
/// bytes lost on the way, or the proxy's last bytes left unanswered until someone closed: the
/// backend closing after them without sending a byte back (an empty reply, or a race with its
/// idle close when its FIN did not acknowledge them), or the proxy giving up waiting.
pub(super) fn tls_failure(v: Conns<'_>, ev: &mut Ev) -> Option<Diagnosis> {
    for dir in Dir::BOTH {
        if let Some(d) = lost_in_transit(v, dir, "the TLS connection", ev) {
            let mut d = d;
            d.explanation
                .push_str(" TLS: the HTTP inside cannot be judged; this is what TCP shows.");
            return Some(d);
        }
    }
    if let Some(d) = fin_never_acked(v, ev) {
        return Some(d);
    }
    let (close, rst, by_backend) = first_close(v.p)?;
    let last = unanswered(v.p, close, by_backend)?;
    let n = bytes((last.end - last.start) as u64);
    ev.add(v.ps(), last.first, format!("proxy sends {n} of TLS records"));
    if let Some(at) = first_ack_covering(v.p.to_server(), last.end) {
        ev.add(v.ps(), at, "backend acknowledges them");
    }
    let after = ms(close.at.ts_ns - last.last.ts_ns);
    Some(if by_backend {
        closed_by_backend(v, last, (close, rst), &n, &after, ev.take())
    } else {
        ev.add(
            v.ps(),
            close.at,
            format!("proxy gives up and sends {}", kind(rst)),
        );
        verdict(
            Verdict::BackendTimeout,
            Blame::Backend,
            format!(
                "{JUDGED_FROM_TCP} The proxy sent {n} of TLS records (a request, presumably), the backend acknowledged them and sent nothing back in the {after} the proxy waited before it {} the connection. Apache logs \"(70007) The timeout specified has expired\", nginx \"upstream timed out\".{}",
                closed_or_reset(rst),
                v.one_capture_note()
            ),
            "Look at the backend: why it did not answer within the proxy's timeout; decrypt the capture with the backend's key log (SSLKEYLOGFILE) to see which request it was.",
            ev.take(),
        )
    })
}

/// One capture: the proxy's FIN sent again and again, never acknowledged — nothing more came
/// back from the backend's side: lost on the way, or the backend host went silent.
fn fin_never_acked(v: Conns<'_>, ev: &mut Ev) -> Option<Diagnosis> {
    let (p, ps) = (v.p, v.ps());
    let fin = p
        .to_server()
        .fin
        .filter(|_| !v.cx.two_captures && p.to_server().fin_count >= 3)?;
    let acked = p.to_server().acked.is_some_and(|(a, _)| a > fin.offset);
    let backend_after = p.to_client().last_data.is_some_and(|l| l.ts_ns > fin.at.ts_ns);
    if acked || backend_after || p.to_client().fin.is_some() || p.to_client().rst.is_some() {
        return None;
    }
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
    Some(verdict(
        Verdict::LostInTransit,
        Blame::Network,
        format!(
            "{JUDGED_FROM_TCP} Nothing came back from the backend for {} before the proxy gave up, and the proxy's FIN, sent {} times, was never acknowledged: packets from the backend are lost on the way (or the backend host froze){}.",
            ms(fin.at.ts_ns - last_back.ts_ns),
            p.to_server().fin_count,
            v.unless_backend_host(" — a capture on the backend host would tell which")
        ),
        "Look at the network path between proxy and backend for loss or a black hole; capture on the backend host to see whether its packets leave.",
        ev.take(),
    ))
}

/// The first close of the connection: (its mark, by RST, by the backend).
fn first_close(p: &Conn) -> Option<(CloseMark, bool, bool)> {
    match (close_of(p.to_client()), close_of(p.to_server())) {
        (Some((b, brst)), Some((pm, _))) if b.at.ts_ns <= pm.at.ts_ns => Some((b, brst, true)),
        (Some((b, brst)), None) => Some((b, brst, true)),
        (_, Some((pm, prst))) => Some((pm, prst, false)),
        (None, None) => None,
    }
}

/// The proxy's last bytes before the close (a closing alert right before its own close aside),
/// if nothing came back after them before the close and the handshake was answered.
fn unanswered(p: &Conn, close: CloseMark, by_backend: bool) -> Option<&Span> {
    let close_t = close.at.ts_ns;
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
    Some(last)
}

/// The backend closed (`close`) after the proxy's last bytes (`last`, `n` of them) without
/// sending a byte back, `after` later: an empty reply, or a race with its idle close.
fn closed_by_backend(
    v: Conns<'_>,
    last: &Span,
    (close, rst): (CloseMark, bool),
    n: &str,
    after: &str,
    mut ev: Ev,
) -> Diagnosis {
    let one = v.one_capture_note();
    ev.add(
        v.ps(),
        close.at,
        format!("backend sends {} without a byte back", kind(rst)),
    );
    backend_close_seen(v.b, &mut ev);
    // A FIN that does not acknowledge the bytes left before they arrived: the two crossed.
    let crossed = !rst && close.ack.is_some_and(|a| a <= last.start);
    if crossed {
        return verdict(
            Verdict::KeepaliveRace,
            Blame::Proxy,
            format!(
                "{JUDGED_FROM_TCP} The proxy sent {n} of TLS records (a request, presumably) on the reused connection just as the backend closed it: the backend's FIN does not acknowledge them, so it left before they arrived. Apache logs AH01102 \"error reading status line\", nginx \"upstream prematurely closed connection\". Remedy on the proxy: a connection ttl below the backend's keep-alive timeout.{one}"
            ),
            "Make the proxy stop reusing connections before the backend closes them: its idle connection timeout below the backend's keep-alive timeout (Apache ProxyPass ttl=, disablereuse=On; nginx upstream keepalive_timeout).",
            ev,
        );
    }
    verdict(
        Verdict::BackendEmptyReply,
        Blame::Backend,
        format!(
            "{JUDGED_FROM_TCP} The proxy sent {n} of TLS records (a request, presumably); the backend {} the connection {after} later without sending a single byte back. Apache logs AH01102 \"error reading status line from remote server\", nginx \"upstream prematurely closed connection while reading response header\".{one}",
            closed_or_reset(rst)
        ),
        "Look at the backend's logs at this time (its TLS server and the application behind it): the worker crashed, was killed, or closed the connection before answering; decrypt the capture with the backend's key log (SSLKEYLOGFILE) to see the request.",
        ev,
    )
}

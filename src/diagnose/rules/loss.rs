//! Bytes sent at one end that never arrived at the other.

use super::*;

/// Bytes sent at one end never arrived at the other, and the connection failed because of it.
pub(super) fn lost_in_transit(v: Conns<'_>, dir: Dir, line: &str, ev: &mut Ev) -> Option<Diagnosis> {
    if let (Some(b), Some(a)) = (v.b, v.cx.alignment) {
        let lost = &a.dirs[dir.idx()].lost;
        if let Some(d) = lost_between_captures(v, b, lost, dir, line, ev) {
            return Some(d);
        }
    }
    match dir {
        // The proxy's own view proves it, whatever the backend capture holds of the connection.
        Dir::ServerToClient => response_never_arrived(v, line, ev),
        Dir::ClientToServer if v.b.is_none() && !v.cx.two_captures => request_never_acked(v, line, ev),
        Dir::ClientToServer => None,
    }
}

/// The proxy's view shows the backend's response with a hole in it that never arrived: bytes
/// from past the hole reached the proxy, so the backend sent the bytes before them too (TCP sends
/// in order), and the proxy never acknowledged past the hole's start, so its kernel never got
/// them (a capture drop would have been acknowledged). The proxy gave up waiting. This is how an
/// MTU black hole looks (full-size segments dropped, the small last one passes), or an IPS
/// dropping the packets that match a signature.
fn response_never_arrived(v: Conns<'_>, line: &str, ev: &mut Ev) -> Option<Diagnosis> {
    let (ps, p) = (v.ps(), v.p);
    let s2c = p.to_client();
    // The stream's start must be known for a hole at its start to be one; spans not recorded, a
    // RST from the backend's side or bytes the capture missed make the view unsure.
    if p.syn_ack.is_none() || s2c.spans_dropped > 0 || s2c.rst.is_some() || s2c.acked_unseen > 0 {
        return None;
    }
    // The first hole in what the proxy capture saw of the response, below its last byte seen.
    let seen = crate::pair::coverage(p, Dir::ServerToClient.idx(), |o| o);
    let &(hole_start, hole_end) = crate::pair::uncovered(&seen, 0, seen.last()?.1).first()?;
    let acked = s2c.acked.map_or(0, |(a, _)| a);
    if acked > hole_start {
        return None;
    }
    let (close, rst) = close_of(p.to_server())?;
    let after = s2c.spans.iter().find(|s| s.start >= hole_end)?;
    // The hole stayed open for at least a retransmission timeout before the proxy gave up: its
    // retransmissions were lost too. A proxy closing sooner (its client went away) did not wait
    // for them, and the loss is not why it gave up.
    if close.at.ts_ns.saturating_sub(after.first.ts_ns) < crate::pair::MIN_RTO_NS {
        return None;
    }
    ev.add(
        ps,
        after.first,
        format!(
            "{} of the backend's response arrive; {} before them never do",
            byte_range(after.start, after.end),
            byte_range(hole_start, hole_end)
        ),
    );
    let unacked = match s2c.acked {
        Some((_, at)) if acked > 0 => {
            ev.add(
                ps,
                at,
                format!("the proxy's acknowledgements stop at byte {acked}"),
            );
            format!("the proxy never acknowledged past byte {acked}")
        }
        _ => "the proxy never acknowledged any of it".to_string(),
    };
    ev.add(ps, close.at, format!("proxy gives up and sends {}", kind(rst)));
    Some(verdict(
        Verdict::LostInTransit,
        Blame::Network,
        format!(
            "The backend answered {line}, but {} of its response ({}) never reached the proxy: the proxy capture shows later bytes of the response arriving, and {unacked}, so its host never received the missing ones (a capture drop would have been acknowledged). The proxy gave up {} after its request.{}",
            bytes((hole_end - hole_start) as u64),
            byte_range(hole_start, hole_end),
            ms(close.at.ts_ns - p.to_server().last_data.map_or(close.at.ts_ns, |d| d.ts_ns)),
            v.one_capture_note()
        ),
        "Look at the network path from backend to proxy: a black hole for large packets (MTU: full-size segments dropped while small ones pass; check that ICMP fragmentation-needed is not blocked), or a firewall or IPS dropping packets of this response.",
        ev.take(),
    ))
}

/// Two captures: byte ranges (`lost`, of direction `dir`) the sender's capture shows leaving and
/// the receiver's never shows arriving.
fn lost_between_captures(
    v: Conns<'_>,
    b: &Conn,
    lost: &[crate::pair::Lost],
    dir: Dir,
    line: &str,
    ev: &mut Ev,
) -> Option<Diagnosis> {
    let (ps, p) = (v.ps(), v.p);
    let first = lost.first()?;
    let total: i64 = lost.iter().map(|l| l.end - l.start).sum();
    let (sender_side, what, from, to) = if dir == Dir::ClientToServer {
        (ps, "request", "proxy", "backend")
    } else {
        (Side::Backend, "response", "backend", "proxy")
    };
    if gave_up_before_a_retransmission(v, first, sender_side) {
        return None;
    }
    if let Some(d) = vanished(v, b, lost, sender_side, from, ev) {
        return Some(d);
    }
    ev.add(
        sender_side,
        first.first_sent,
        format!(
            "{from} sends {} of the {what} stream",
            byte_range(first.start, first.end)
        ),
    );
    if first.transmissions > 1 {
        ev.add(
            sender_side,
            first.last_sent,
            format!(
                "{from} retransmits them ({} transmissions in all)",
                first.transmissions
            ),
        );
    }
    receiver_ack(v, b, dir, to, ev);
    let closer = close_of(p.to_server())
        .map(|(m, rst)| {
            ev.add(ps, m.at, format!("proxy gives up and sends {}", kind(rst)));
            // From the lost bytes' first transmission, on the proxy's clock.
            format!(
                " The proxy gave up {} after the {from} first sent them.",
                ms(m.at.ts_ns - at_proxy(v, sender_side, first.first_sent.ts_ns))
            )
        })
        .unwrap_or_default();
    Some(verdict(
        Verdict::LostInTransit,
        Blame::Network,
        format!(
            "{} of the {what} for {line} left the {from} ({}) and never reached the {to}: the {to}'s capture does not show them and the {to} never acknowledged them.{closer}",
            capitalize(&bytes(total as u64)),
            transmissions_text(first.transmissions, first.while_receiver_captured, to),
        ),
        "Look at the network path between proxy and backend: packet loss or a black hole on this path (MTU problems drop large segments but pass small ones; check for ICMP fragmentation-needed being blocked), firewall or IPS drops.",
        ev.take(),
    ))
}

/// The proxy closed less than one minimum RTO after the lost bytes first left (or before): their
/// retransmission had not had its chance, so the loss is not why the connection ended (a proxy
/// whose client went away closes mid-response whatever is in flight).
fn gave_up_before_a_retransmission(v: Conns<'_>, first: &crate::pair::Lost, sender_side: Side) -> bool {
    let Some((close, _)) = close_of(v.p.to_server()) else {
        return false;
    };
    close
        .at
        .ts_ns
        .saturating_sub(at_proxy(v, sender_side, first.first_sent.ts_ns))
        < crate::pair::MIN_RTO_NS
}

/// A time of `side`'s capture on the proxy capture's clock.
fn at_proxy(v: Conns<'_>, side: Side, t: i64) -> i64 {
    if side == Side::Backend {
        crate::pair::on_proxy_clock(v.cx.clock, t)
    } else {
        t
    }
}

/// Every lost range left once, and after the last of them neither capture holds anything more of
/// the connection (no retransmission, no ACK, no FIN or RST), though both ran on: a loss on the way
/// is retransmitted, so both capture hosts dropped the rest of the connection. Not judged.
fn vanished(
    v: Conns<'_>,
    b: &Conn,
    lost: &[crate::pair::Lost],
    sender_side: Side,
    from: &str,
    ev: &mut Ev,
) -> Option<Diagnosis> {
    if lost.iter().any(|l| l.transmissions > 1) {
        return None;
    }
    let last_sent = lost.iter().map(|l| l.last_sent).max_by_key(|s| s.ts_ns)?;
    let sent_at = at_proxy(v, sender_side, last_sent.ts_ns);
    let to_proxy = |t: i64| at_proxy(v, Side::Backend, t);
    // Clock noise between the two captures: well under a millisecond on one path.
    const SLACK_NS: i64 = 1_000_000;
    if v.p.last.ts_ns > sent_at + SLACK_NS || to_proxy(b.last.ts_ns) > sent_at + SLACK_NS {
        return None;
    }
    // The sender's capture must have run long enough after for a retransmission to show;
    // otherwise its silence proves nothing and the loss rule stands.
    let sender_ran_until = if sender_side == Side::Backend {
        v.cx.backend_capture.map(|(_, end)| to_proxy(end))
    } else {
        v.cx.proxy_capture_until
    };
    if sender_ran_until.is_none_or(|until| until < sent_at.saturating_add(crate::pair::MIN_RTO_NS)) {
        return None;
    }
    ev.add(
        sender_side,
        last_sent,
        format!("{from} sends bytes the other capture lacks; neither capture holds a packet of this connection after it"),
    );
    Some(verdict(
        Verdict::CaptureIncomplete,
        Blame::Capture,
        format!(
            "Cannot judge: the {from} sent bytes the other capture does not show, once, and then neither capture holds anything more of this connection — no retransmission, no acknowledgement, no close — though both ran on. Lost bytes are retransmitted; both capture hosts dropped the rest of this connection."
        ),
        super::drops::NEXT_STEP,
        ev.take(),
    ))
}

/// The receiver's last acknowledgement, in the sender's numbering like the byte range before it
/// (the views count from the first byte each capture saw).
fn receiver_ack(v: Conns<'_>, b: &Conn, dir: Dir, to: &str, ev: &mut Ev) {
    let (receiver_conn, receiver_side) = if dir == Dir::ClientToServer {
        (b, Side::Backend)
    } else {
        (v.p, v.ps())
    };
    let Some((ack, at)) = receiver_conn.dir(dir).acked else {
        return;
    };
    let seq_map = v.cx.seq_map;
    let ack = match dir {
        Dir::ClientToServer => seq_map.to_proxy(dir.idx(), ack),
        Dir::ServerToClient => seq_map.to_backend(dir.idx(), ack),
    }
    .unwrap_or(ack);
    // `at` is the first packet that acknowledged this far (the later ones repeat it).
    let what = if dir == Dir::ClientToServer {
        "request"
    } else {
        "response"
    };
    let text = if ack == 0 {
        format!("the {to} acknowledges none of the {what} stream, from here on")
    } else {
        format!("the {to}'s acknowledgements reach byte {ack} here and go no further")
    };
    ev.add(receiver_side, at, text);
}

/// One capture: request bytes retransmitted and never acknowledged, then the proxy gave up.
fn request_never_acked(v: Conns<'_>, line: &str, ev: &mut Ev) -> Option<Diagnosis> {
    let (ps, p) = (v.ps(), v.p);
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
            "The proxy sent {} of {line} and retransmitted them {resends} times, but the backend never acknowledged bytes past {acked}; {ending}. The bytes were lost on the way (or the backend host froze){}.",
            bytes((end - acked) as u64),
            v.unless_backend_host(": a capture on the backend host would tell which")
        ),
        "Look at the network path between proxy and backend for packet loss or a black hole (MTU, firewall drops); capture on the backend host to see whether the segments arrive.",
        ev.take(),
    ))
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

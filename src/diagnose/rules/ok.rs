//! Every exchange completed: ok, unless the captures cannot vouch for it.

use super::*;
use crate::anomaly::AnomalyKind;

/// Every exchange completed: ok, unless the captures cannot vouch for it.
pub(super) fn healthy(v: Conns<'_>, mut ev: Ev) -> Diagnosis {
    let (cx, p) = (v.cx, v.p);
    if let Some(d) = capture_dropped(v, &mut ev) {
        return d;
    }
    // The connection was already open when the captures started (a pooled keep-alive
    // connection): judged on what the captures show, and the explanation says what they miss.
    // A lone SYN-ACK (the SYN not captured) is not "opened normally" either: the other capture's
    // SYN, when it has one, is what shows the opening.
    if p.syn.is_none() && cx.b.is_none_or(|b| b.syn.is_none()) {
        return already_open(cx, p, ev);
    }
    let text = healthy_text(v);
    if let Some(f) = p.to_server().first_data.or(p.syn) {
        ev.add(v.ps(), f, "first packet");
    }
    ev.add(v.ps(), p.last, "last packet");
    verdict(Verdict::Ok, Blame::None, text, "", ev)
}

/// The captures dropped packets of this connection (bytes acknowledged but never captured): what
/// they carried cannot be vouched for.
fn capture_dropped(v: Conns<'_>, ev: &mut Ev) -> Option<Diagnosis> {
    let (p, b) = (v.p, v.b);
    let n = p.app.exchanges.len();
    let unseen_p = p.to_server().acked_unseen + p.to_client().acked_unseen;
    let unseen_b = b.map_or(0, |b| b.to_server().acked_unseen + b.to_client().acked_unseen);
    if unseen_p == 0 && unseen_b == 0 {
        return None;
    }
    let (side, c, unseen) = if unseen_b > 0 {
        (Side::Backend, b.expect("checked"), unseen_b)
    } else {
        (v.ps(), p, unseen_p)
    };
    if let Some(s) = c
        .dirs
        .iter()
        .flat_map(|d| d.spans.iter())
        .find(|s| s.kind == crate::tcp::SpanKind::New && s.start > 0)
    {
        ev.add(side, s.first, "first data after bytes the capture missed");
    }
    Some(verdict(
        Verdict::CaptureIncomplete,
        Blame::Capture,
        format!(
            "The {} capture missed {} of this connection that the receiver acknowledged: that capture dropped packets (not the network). {}",
            side,
            bytes(unseen),
            if n > 0 && v.cx.two_captures {
                format!(
                    "The other capture shows all {n} exchange{} completing normally.",
                    if n == 1 { "" } else { "s" }
                )
            } else {
                "What the missing packets carried cannot be judged.".to_string()
            }
        ),
        "Capture with a larger buffer (tcpdump -B 65536), a smaller snaplen or a capture filter on the backend port, and write to a fast disk, so the capture does not drop packets.",
        ev.take(),
    ))
}

/// The explanation of a healthy connection: how it opened and closed, its exchanges, and what
/// recovered on the way (retransmissions) or is odd but readable (anomalies).
fn healthy_text(v: Conns<'_>) -> String {
    let (cx, p) = (v.cx, v.p);
    let n = p.app.exchanges.len();
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
    let lower_case = AnomalyKind::HttpLowerCaseVersion;
    if p.app.anomalies.count_of(lower_case) > 0 {
        text.push_str(&format!(
            " The backend's status line is not strictly valid (its HTTP version in lower case): clients read it, a strict parser may not (anomaly {}).",
            lower_case.name()
        ));
    }
    text
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

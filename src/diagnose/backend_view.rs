//! A verdict from the backend host's capture alone (`analyze --backend-capture FILE`): what the
//! proxy's capture would settle. The rules judge the backend's view as they judge a single proxy
//! capture, worded for it (no note pointing to "a capture on the backend host": this is that
//! capture); the sentence here says what only the other end shows.

use super::{Blame, Diagnosis, Evidence, Verdict};
use crate::capture::Side;
use crate::http::Conn;
use crate::tcp::PacketRef;

/// What the backend's capture shows that the rules, written for the proxy's view, read as `ok`:
/// a handshake the backend answered and the proxy never completed (its SYN-ACKs lost on the way
/// back), or response bytes the backend sent again and again that the proxy never acknowledged
/// (lost on the way). Any other diagnosis is returned as it is.
pub(crate) fn backend_only_override(c: &Conn, d: Diagnosis) -> Diagnosis {
    if d.verdict != Verdict::Ok {
        return d;
    }
    let ev = |at: PacketRef, what: String| Evidence {
        side: Side::Backend,
        frame: at.frame,
        ts_ns: at.ts_ns,
        what,
    };
    let (up, down) = (c.to_server(), c.to_client());
    // The SYN arrived, the backend answered, nothing more came: the proxy retransmitted its SYN
    // or the backend its SYN-ACK, so it was not just the end of the capture.
    if let (Some(syn), Some(sa)) = (c.syn, c.syn_ack)
        && c.established.is_none()
        && up.bytes == 0
        && up.fin.is_none()
        && up.rst.is_none()
        && (c.syn_count >= 2 || c.syn_ack_count >= 2)
    {
        return Diagnosis {
            verdict: Verdict::ConnectTimeout,
            blame: Blame::Network,
            explanation: format!(
                "The proxy's SYN arrived ({} times) and the backend answered with SYN-ACK ({} times), but the proxy never completed the handshake: the backend's SYN-ACKs did not reach it (lost on the way back) and the proxy's connect timed out. Proxies log this as a connect timeout (Apache AH00957 (70007), nginx \"upstream timed out ... while connecting to upstream\").",
                c.syn_count, c.syn_ack_count
            ),
            next_step: "Look at the path from the backend back to the proxy (firewall state, asymmetric routing, rp_filter): the backend's answers are sent and not delivered.".to_string(),
            evidence: vec![
                ev(syn, "the proxy's SYN arrives at the backend".into()),
                ev(sa, "the backend answers with SYN-ACK".into()),
            ],
        };
    }
    // Response bytes sent again and again, never acknowledged to their end.
    if let (Some(end), Some(last)) = (down.data_end, down.last_data)
        && down.retransmissions > 0
        && down.acked.is_none_or(|(a, _)| a < end)
    {
        let acked = down.acked.map_or(0, |(a, _)| a.max(0));
        let mut evidence = Vec::new();
        if let Some(first) = down.first_data {
            evidence.push(ev(first, "the backend starts sending its response".into()));
        }
        evidence.push(ev(
            last,
            format!(
                "the backend sends response bytes again ({} retransmissions): not acknowledged",
                down.retransmissions
            ),
        ));
        return Diagnosis {
            verdict: Verdict::LostInTransit,
            blame: Blame::Network,
            explanation: format!(
                "The backend answered, but the proxy acknowledged only {acked} of the {end} bytes the backend sent, which retransmitted them {} times. The response was lost on the way to the proxy (or the proxy host stopped reading the network); the proxy gave up waiting (Apache AH01102 (70007), nginx \"upstream timed out\").",
                down.retransmissions
            ),
            next_step: "Look at the path from the backend to the proxy (MTU, a firewall dropping the response, packet loss).".to_string(),
            evidence,
        };
    }
    d
}

/// One sentence per verdict: what the proxy capture would settle that the backend's cannot.
pub(crate) fn proxy_capture_would_settle(v: Verdict) -> &'static str {
    match v {
        Verdict::Ok => {
            "the exchanges completed as the backend saw them; the proxy capture would show whether every response reached the proxy whole."
        }
        Verdict::ConnectRefused => {
            "the refusal is the backend host's own if this capture shows it sending the RST or ICMP; the proxy capture would show it reaching the proxy, and SYNs that never got this far."
        }
        Verdict::ConnectTimeout => {
            "the SYNs arrived here; the proxy capture would show whether the backend's SYN-ACKs (if it sent any) reached the proxy — lost on the way is the network's fault, no answer at all the backend's."
        }
        Verdict::RequestIncomplete => {
            "the request stopped arriving here before the proxy closed; the proxy capture would show whether the proxy never sent the rest (its client went away) or the network lost it."
        }
        Verdict::BackendClosedDuringRequest => {
            "the backend closed first, as this capture shows; the proxy capture would show how much of the request the proxy had sent and when the close reached it."
        }
        Verdict::BackendEmptyReply => {
            "the backend closed without answering, as this capture shows; the proxy capture would show whether the proxy sent the request on a reused connection just as the backend closed it (a keep-alive race seen from the proxy)."
        }
        Verdict::ResponseTruncated => {
            "the backend's close cut its own response, as this capture shows; the proxy capture would show how much of it reached the proxy."
        }
        Verdict::BackendTimeout => {
            "no response left the backend before the proxy closed; the proxy capture would show when the proxy gave up (its timeout)."
        }
        Verdict::BackendBadResponse => {
            "the bytes the backend sent are in this capture; the proxy capture would show them arriving unchanged."
        }
        Verdict::ZeroWindowStall => {
            "the backend stopped reading, as this capture shows; the proxy capture would show how long the proxy waited before giving up."
        }
        Verdict::KeepaliveRace => {
            "the proxy capture would show the backend's FIN reaching the proxy after its request left: the race as the proxy saw it."
        }
        Verdict::LostInTransit => {
            "only the proxy capture shows which of the packets sent from here never reached the proxy, or which the proxy sent that never arrived here."
        }
        Verdict::RstFromMiddlebox => {
            "the proxy capture would show whether the proxy itself sent the RST that arrived here, or a device in between forged it."
        }
        Verdict::ProxyAborted => {
            "the proxy capture would show whether the close came from the proxy itself (its client went away, or its timeout) or from a device in between."
        }
        Verdict::CaptureIncomplete => "the proxy capture may hold what this capture missed.",
    }
}

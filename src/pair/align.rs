//! Alignment of the two views of a connection, direction by direction: what one end sent against
//! what arrived at the other, by byte range (never by packet: TSO and GRO make packet boundaries
//! differ between the captures).

use super::{ClockOffset, SeqMap};
use crate::http::Conn;
use crate::tcp::{CloseMark, DirSummary, PacketRef, SpanKind};

/// One direction's comparison of what was sent at one end with what arrived at the other.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DirAlignment {
    /// Byte ranges the sender's capture shows sent, that never arrived at the receiver (not in the
    /// receiver's capture, not acknowledged by the receiver) while the receiver's capture ran.
    pub lost: Vec<Lost>,
    /// Byte ranges whose first transmission was lost: they arrived only as a retransmission.
    pub arrived_late: Vec<Late>,
    /// Bytes missing from the receiver's capture that the receiver acknowledged (capture drop).
    pub receiver_capture_missed: u64,
    /// Bytes the receiver's capture shows that the sender's capture does not (sender capture drop).
    pub sender_capture_missed: u64,
    /// A RST that arrived at the receiver's end but that the sender never sent.
    pub forged_rst: Option<CloseMark>,
    /// A RST the sender sent that never arrived at the receiver's end.
    pub lost_rst: Option<CloseMark>,
    /// A FIN the sender sent that never arrived at the receiver's end.
    pub lost_fin: Option<CloseMark>,
}

/// A range sent and never received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lost {
    pub start: i64,
    pub end: i64,
    /// Its first transmission, at the sender's end.
    pub first_sent: PacketRef,
    /// How many times the sender's capture shows it sent.
    pub transmissions: u32,
    /// How many of those left while the receiver's capture was running (the others cannot be
    /// shown lost).
    pub while_receiver_captured: u32,
    pub last_sent: PacketRef,
}

/// A range whose first transmission was lost and a retransmission arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Late {
    pub start: i64,
    pub end: i64,
    pub first_sent: PacketRef,
    /// The retransmission that arrived, at the sender's end, and its arrival at the receiver's.
    pub resent: PacketRef,
    pub arrived: PacketRef,
}

/// The alignment of a pair, per direction (index `Dir::idx`: 0 proxy→backend, 1 backend→proxy).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Alignment {
    pub dirs: [DirAlignment; 2],
}

/// Aligns the two views of a connection, direction by direction. The receiver's byte offsets are
/// put in the sender's numbering through the pair's [`SeqMap`] first: the views count from the
/// first byte each capture saw, which differ when a capture started mid-connection.
pub(crate) fn align(
    p: &Conn,
    b: &Conn,
    clock: Option<&ClockOffset>,
    seq_map: SeqMap,
    backend_capture_end: i64,
    proxy_capture_end: i64,
) -> Alignment {
    let clock = clock.copied().unwrap_or(ClockOffset::IDENTITY);
    let mut a = Alignment::default();
    // c2s: the proxy sends, the backend receives.
    let to_proxy = |o: i64| seq_map.to_proxy(0, o).unwrap_or(o);
    a.dirs[0] = align_dir(p, b, 0, to_proxy, |t| clock.to_backend(t), backend_capture_end);
    // s2c: the backend sends, the proxy receives.
    let to_backend = |o: i64| seq_map.to_backend(1, o).unwrap_or(o);
    a.dirs[1] = align_dir(b, p, 1, to_backend, |t| clock.to_proxy(t), proxy_capture_end);
    a
}

/// Merged coverage of a view's spans in direction `d`, offsets put in another numbering by `num`.
pub(crate) fn coverage(c: &Conn, d: usize, num: impl Fn(i64) -> i64) -> Vec<(i64, i64)> {
    let mut v: Vec<(i64, i64)> = c.dirs[d]
        .spans
        .iter()
        .map(|s| (num(s.start), num(s.end)))
        .collect();
    v.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Parts of [s, e) not covered by `cov`.
pub(crate) fn uncovered(cov: &[(i64, i64)], s: i64, e: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut at = s;
    for &(cs, ce) in cov {
        if ce <= at {
            continue;
        }
        if cs >= e {
            break;
        }
        if cs > at {
            out.push((at, cs));
        }
        at = at.max(ce);
        if at >= e {
            break;
        }
    }
    if at < e {
        out.push((at, e));
    }
    out
}

/// Linux's minimum retransmission timeout: how long a capture must go on after bytes left for
/// their absence to count. At the receiver they are on the way meanwhile (it is far above a
/// one-way delay between a proxy and its backends; a capture pair cut at the same moment otherwise
/// read the last segments in flight as lost); at the sender, a retransmission shows by then.
pub(crate) const MIN_RTO_NS: i64 = 200_000_000;

fn align_dir(
    sender: &Conn,
    receiver: &Conn,
    d: usize,
    to_sender_offset: impl Fn(i64) -> i64,
    to_receiver_clock: impl Fn(i64) -> i64,
    receiver_capture_end: i64,
) -> DirAlignment {
    let mut out = DirAlignment::default();
    let (sd, rd) = (&sender.dirs[d], &receiver.dirs[d]);
    // Everything below is in the sender's numbering.
    let received = coverage(receiver, d, &to_sender_offset);
    let sent = coverage(sender, d, |o| o);
    // What the receiver acknowledged arrived, whichever capture shows the ACK: its own, or the
    // sender's (the ACKs coming back), when the receiver's capture missed them.
    let acked_by_receiver = rd
        .acked
        .map(|(a, _)| to_sender_offset(a))
        .max(sd.acked.map(|(a, _)| a));
    // Only what left while the receiver's capture ran can be shown lost: before its end, and
    // after its start. A receiver's view with the handshake shows its capture ran from the
    // connection's start; one without it (a capture started mid-connection) only from its first
    // packet on.
    let receiver_capture_start = if receiver.syn.is_some() || receiver.syn_ack.is_some() {
        i64::MIN
    } else {
        receiver.first.ts_ns
    };
    let while_captured = |ts: i64| {
        let at_receiver = to_receiver_clock(ts);
        at_receiver.saturating_add(MIN_RTO_NS) <= receiver_capture_end
            && at_receiver >= receiver_capture_start
    };
    never_arrived(&mut out, sd, acked_by_receiver, &received, &while_captured);
    out.arrived_late = arrived_late(sd, rd, &to_sender_offset, &to_receiver_clock);

    // Sender capture drop: bytes the receiver got that the sender's capture does not show.
    for &(s, e) in &received {
        for (us, ue) in uncovered(&sent, s, e) {
            out.sender_capture_missed += (ue - us) as u64;
        }
    }

    // RST and FIN.
    match (sd.rst, rd.rst) {
        (None, Some(r)) => out.forged_rst = Some(r),
        (Some(s), None) if while_captured(s.at.ts_ns) => out.lost_rst = Some(s),
        _ => {}
    }
    if let (Some(f), None) = (sd.fin, rd.fin) {
        if while_captured(f.at.ts_ns) && rd.rst.is_none() {
            out.lost_fin = Some(f);
        }
    }
    out
}

/// Never arrived: sent ranges missing at the receiver (`received`) and not acknowledged by it (as
/// either capture shows), sent while the receiver's capture was running; what the receiver
/// acknowledged without its capture showing it counts as `receiver_capture_missed`.
fn never_arrived(
    out: &mut DirAlignment,
    sd: &DirSummary,
    // The receiver acknowledged everything below this (as its own capture shows its ACKs).
    acked_by_receiver: Option<i64>,
    received: &[(i64, i64)],
    while_captured: &impl Fn(i64) -> bool,
) {
    for span in sd.spans.iter().filter(|s| s.kind != SpanKind::Retransmission) {
        for (s, e) in uncovered(received, span.start, span.end) {
            let (s, e) = match acked_by_receiver {
                Some(a) if a >= e => {
                    out.receiver_capture_missed += (e - s) as u64;
                    continue;
                }
                Some(a) if a > s => {
                    out.receiver_capture_missed += (a - s) as u64;
                    (a, e)
                }
                _ => (s, e),
            };
            if !while_captured(span.first.ts_ns) {
                continue;
            }
            let resends: Vec<_> = sd
                .spans
                .iter()
                .filter(|r| r.kind == SpanKind::Retransmission && r.start < e && r.end > s)
                .collect();
            let captured = resends.iter().filter(|r| while_captured(r.first.ts_ns)).count();
            out.lost.push(Lost {
                start: s,
                end: e,
                first_sent: span.first,
                transmissions: 1 + resends.len() as u32,
                while_receiver_captured: 1 + captured as u32,
                last_sent: resends.last().map_or(span.last, |r| r.last),
            });
        }
    }
    merge_lost(&mut out.lost);
}

/// Arrived only as a retransmission: for each retransmitted range, when did the receiver first
/// get its first byte? After the retransmission left → the original was lost.
fn arrived_late(
    sd: &DirSummary,
    rd: &DirSummary,
    to_sender_offset: &impl Fn(i64) -> i64,
    to_receiver_clock: &impl Fn(i64) -> i64,
) -> Vec<Late> {
    let mut late: Vec<Late> = Vec::new();
    for r in sd.spans.iter().filter(|s| s.kind == SpanKind::Retransmission) {
        let Some(orig) = sd
            .spans
            .iter()
            .find(|o| o.kind != SpanKind::Retransmission && o.start <= r.start && o.end > r.start)
        else {
            continue;
        };
        let Some(arr) = rd
            .spans
            .iter()
            .find(|a| to_sender_offset(a.start) <= r.start && to_sender_offset(a.end) > r.start)
        else {
            continue;
        };
        // Compare on the receiver's clock: the retransmission's departure vs the arrival.
        let resent_at = to_receiver_clock(r.first.ts_ns);
        if arr.first.ts_ns >= resent_at && late.iter().all(|l| l.start != r.start) {
            late.push(Late {
                start: r.start,
                end: r.end,
                first_sent: orig.first,
                resent: r.first,
                arrived: arr.first,
            });
        }
    }
    late
}

fn merge_lost(v: &mut Vec<Lost>) {
    v.sort_by_key(|l| l.start);
    let mut out: Vec<Lost> = Vec::with_capacity(v.len());
    for l in v.drain(..) {
        match out.last_mut() {
            Some(last) if l.start <= last.end => {
                last.end = last.end.max(l.end);
                last.transmissions = last.transmissions.max(l.transmissions);
                last.while_receiver_captured = last.while_receiver_captured.max(l.while_receiver_captured);
                last.last_sent = last.last_sent.max(l.last_sent);
            }
            _ => out.push(l),
        }
    }
    *v = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncovered_ranges() {
        let cov = [(0, 10), (20, 30)];
        assert_eq!(uncovered(&cov, 0, 30), vec![(10, 20)]);
        assert_eq!(uncovered(&cov, 5, 25), vec![(10, 20)]);
        assert_eq!(uncovered(&cov, 25, 40), vec![(30, 40)]);
        assert_eq!(uncovered(&[], 1, 2), vec![(1, 2)]);
        assert!(uncovered(&cov, 0, 10).is_empty());
    }
}

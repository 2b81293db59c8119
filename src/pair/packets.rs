//! Packet to packet across the captures: which packet one end sent arrived as which packet at
//! the other, per direction — the matches a ladder diagram draws as arrows.
//!
//! In: the pair's views (their packet logs), its [`SeqMap`] and the [`ClockOffset`]. Out: the
//! logged packets placed on one axis ([`placed`]: the proxy clock, the proxy view's numbering)
//! and, per direction, a [`DirMatch`]. Matching a packet sent at one end with its arrival at the
//! other:
//! - a data packet is matched by its first byte: the sender's copies of that byte (original and
//!   retransmissions) are matched with the receiver's copies, latest first, each arrival no earlier
//!   than its departure (within the clock's uncertainty), so a lost original leaves the
//!   retransmission matched with the one copy that arrived; then each match moves to the earliest
//!   arrival that keeps the order;
//! - packet boundaries differ between the captures (segmentation offload on the sender, receive
//!   offload on the receiver): further receiver packets carrying bytes of a sent packet belong to
//!   it;
//! - a packet without payload (SYN, ACK, FIN, RST) is matched by its flags, sequence offset and
//!   acknowledgement;
//! - a packet seen only at the receiver (a forged RST, or the sender's capture missed it) matches
//!   nothing.
//!
//! Every received packet belongs to exactly one sent packet, as its first arrival or one of its
//! further arrivals, or is the receiver's only.

use std::collections::{HashMap, HashSet};

use super::{ClockOffset, SeqMap, on_proxy_clock};
use crate::http::Conn;
use crate::tcp::LoggedPacket;

/// A logged packet with its place on the common axis (the proxy clock) and its offsets in the
/// proxy view's numbering.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pkt<'a> {
    pub(crate) lp: &'a LoggedPacket,
    /// The capture it was logged in: 0 the proxy's (or the only one), 1 the backend's.
    pub(crate) line: usize,
    /// Common-axis time (proxy clock), absolute ns.
    pub(crate) t: i64,
    pub(crate) off: i64,
    pub(crate) ack: Option<i64>,
}

impl Pkt<'_> {
    pub(crate) fn len(&self) -> i64 {
        self.lp.len as i64
    }
    pub(crate) fn is_data(&self) -> bool {
        self.lp.len > 0
    }
    fn contains(&self, b: i64) -> bool {
        self.is_data() && self.off <= b && b < self.off + self.len()
    }
    /// The key of a packet without payload.
    fn control_key(&self) -> (u8, i64, Option<i64>) {
        let f = self.lp.flags;
        let class = (f.syn() as u8) | (f.fin() as u8) << 1 | (f.rst() as u8) << 2 | (f.ack() as u8) << 3;
        // A RST's acknowledgement may be rewritten or absent: match it by its offset only.
        (class, self.off, if f.rst() { None } else { self.ack })
    }
}

/// A capture's time on the common axis (the proxy clock): the backend capture's (`line` 1)
/// through the clock offset.
pub(crate) fn on_common_axis(clock: Option<&ClockOffset>, line: usize, t: i64) -> i64 {
    if line == 1 { on_proxy_clock(clock, t) } else { t }
}

/// The logged packets of the views (the proxy capture's first), placed on the common axis, their
/// offsets and acknowledgements in the proxy view's numbering (as they are where the map does not
/// know).
pub(crate) fn placed<'a>(
    views: [Option<&'a Conn>; 2],
    seq_map: SeqMap,
    clock: Option<&ClockOffset>,
) -> [Vec<Pkt<'a>>; 2] {
    let to_proxy = |d: usize, off: i64| seq_map.to_proxy(d, off).unwrap_or(off);
    [0, 1].map(|line| {
        let Some(c) = views[line] else {
            return Vec::new();
        };
        c.log
            .packets()
            .map(|lp| {
                let (d, r) = (lp.dir.idx(), lp.dir.rev().idx());
                let (off, ack) = if line == 0 {
                    (lp.offset, lp.ack)
                } else {
                    (to_proxy(d, lp.offset), lp.ack.map(|a| to_proxy(r, a)))
                };
                Pkt {
                    lp,
                    line,
                    t: on_common_axis(clock, line, lp.at.ts_ns),
                    off,
                    ack,
                }
            })
            .collect()
    })
}

/// The matching of one direction: for each sent packet, its first arrival and its further
/// arrivals; the received packets that match no sent packet.
pub(crate) struct DirMatch {
    pub(crate) arrival: Vec<Option<usize>>,
    /// Per received packet: the sent packet it belongs to as its first arrival.
    pub(crate) owner: Vec<Option<usize>>,
    /// Per sent packet: the further received packets that carried its bytes.
    pub(crate) extra: Vec<Vec<usize>>,
    pub(crate) receiver_only: Vec<usize>,
}

pub(crate) fn match_direction(sent: &[Pkt<'_>], recv: &[Pkt<'_>], tol: i64) -> DirMatch {
    let mut arrival: Vec<Option<usize>> = vec![None; sent.len()];
    let s_index = ByteIndex::new(sent);
    match_data(sent, recv, &s_index, tol, &mut arrival);
    match_control(sent, recv, tol, &mut arrival);

    // Each received packet belongs to the earliest sent packet that arrived with it.
    let mut owner: Vec<Option<usize>> = vec![None; recv.len()];
    for (k, a) in arrival.iter().enumerate() {
        if let Some(r) = *a {
            if owner[r].is_none() {
                owner[r] = Some(k);
            }
        }
    }
    let (extra, receiver_only) = unowned_arrivals(sent, recv, &s_index, tol, &arrival, &owner);
    DirMatch {
        arrival,
        owner,
        extra,
        receiver_only,
    }
}

/// Data, by first byte: sets `arrival` of every sent data packet.
fn match_data(
    sent: &[Pkt<'_>],
    recv: &[Pkt<'_>],
    s_index: &ByteIndex,
    tol: i64,
    arrival: &mut [Option<usize>],
) {
    let r_index = ByteIndex::new(recv);
    let mut done: HashSet<i64> = HashSet::new();
    for s in sent.iter().filter(|s| s.is_data()) {
        if !done.insert(s.off) {
            continue;
        }
        // Every sent packet holding the byte takes part; those starting with it get the result.
        let all_copies = s_index.containing(sent, s.off);
        let copies = r_index.containing(recv, s.off);
        let m = match_copies(sent, &all_copies, recv, &copies, tol);
        for (&k, a) in all_copies.iter().zip(m) {
            if sent[k].off == s.off {
                arrival[k] = a;
            }
        }
    }
}

/// Packets without payload, by flags, offset and acknowledgement: sets their `arrival`.
fn match_control(sent: &[Pkt<'_>], recv: &[Pkt<'_>], tol: i64, arrival: &mut [Option<usize>]) {
    let mut s_ctl: HashMap<(u8, i64, Option<i64>), Vec<usize>> = HashMap::new();
    let mut r_ctl: HashMap<(u8, i64, Option<i64>), Vec<usize>> = HashMap::new();
    for (k, s) in sent.iter().enumerate().filter(|(_, s)| !s.is_data()) {
        s_ctl.entry(s.control_key()).or_default().push(k);
    }
    for (k, r) in recv.iter().enumerate().filter(|(_, r)| !r.is_data()) {
        r_ctl.entry(r.control_key()).or_default().push(k);
    }
    let mut keys: Vec<_> = s_ctl.keys().copied().collect();
    keys.sort_unstable();
    for key in keys {
        let group = &s_ctl[&key];
        let Some(copies) = r_ctl.get(&key) else {
            continue;
        };
        let m = match_copies(sent, group, recv, copies, tol);
        for (pos, &k) in group.iter().enumerate() {
            arrival[k] = m[pos];
        }
    }
}

/// The received packets no sent packet arrived as: per sent packet, those that carried its later
/// bytes (offload), and those that match no sent packet. A received data packet belongs to the
/// latest sent packet holding its first byte that had left, and had begun to arrive, by then.
fn unowned_arrivals(
    sent: &[Pkt<'_>],
    recv: &[Pkt<'_>],
    s_index: &ByteIndex,
    tol: i64,
    arrival: &[Option<usize>],
    owner: &[Option<usize>],
) -> (Vec<Vec<usize>>, Vec<usize>) {
    let mut extra: Vec<Vec<usize>> = vec![Vec::new(); sent.len()];
    let mut receiver_only = Vec::new();
    for (r, rp) in recv.iter().enumerate() {
        if owner[r].is_some() {
            continue;
        }
        let host = if rp.is_data() {
            s_index
                .containing(sent, rp.off)
                .into_iter()
                .filter(|&k| {
                    sent[k].t <= rp.t.saturating_add(tol) && arrival[k].is_some_and(|a| recv[a].t <= rp.t)
                })
                .max_by_key(|&k| (sent[k].t, k))
        } else {
            None
        };
        match host {
            Some(k) => extra[k].push(r),
            None => receiver_only.push(r),
        }
    }
    (extra, receiver_only)
}

/// Matches the sender's copies of something (indexes into `sent`, in time order) with the
/// receiver's copies (indexes into `recv`, in time order): order-preserving, each arrival no
/// earlier than its departure (within `tol`), as many as possible, losses taken as early as
/// possible (the usual case: the original was lost, a retransmission arrived); then each match
/// moves to the earliest arrival that keeps the order (a duplicate at the receiver stays extra).
/// Returns, per sender copy, the receiver index it arrived as.
fn match_copies(
    sent: &[Pkt<'_>],
    s_copies: &[usize],
    recv: &[Pkt<'_>],
    r_copies: &[usize],
    tol: i64,
) -> Vec<Option<usize>> {
    // Positions into r_copies.
    let mut pos: Vec<Option<usize>> = vec![None; s_copies.len()];
    let mut limit = r_copies.len(); // receiver copies at or above this are taken
    for (i, &s) in s_copies.iter().enumerate().rev() {
        let t = sent[s].t;
        // The latest free receiver copy (they are in time order: if it arrived before this copy
        // left, every free one did).
        if limit > 0 && recv[r_copies[limit - 1]].t >= t.saturating_sub(tol) {
            limit -= 1;
            pos[i] = Some(limit);
        }
    }
    // Move each match to the earliest arrival that keeps the order and causality.
    let mut floor = 0usize;
    for i in 0..s_copies.len() {
        if let Some(j) = pos[i] {
            let t = sent[s_copies[i]].t;
            let mut best = j;
            let mut k = j;
            while k > floor {
                k -= 1;
                if recv[r_copies[k]].t >= t.saturating_sub(tol) {
                    best = k;
                } else {
                    break;
                }
            }
            pos[i] = Some(best);
            floor = best + 1;
        }
    }
    pos.iter().map(|p| p.map(|j| r_copies[j])).collect()
}

/// The data packets of a list, sorted by offset, to find those holding a byte.
struct ByteIndex {
    /// (offset, index), sorted.
    by_off: Vec<(i64, usize)>,
    max_len: i64,
}

impl ByteIndex {
    fn new(pkts: &[Pkt<'_>]) -> ByteIndex {
        let mut by_off: Vec<(i64, usize)> = pkts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_data())
            .map(|(k, p)| (p.off, k))
            .collect();
        by_off.sort_unstable();
        let max_len = pkts.iter().map(|p| p.len()).max().unwrap_or(0);
        ByteIndex { by_off, max_len }
    }

    /// Indexes of the packets holding byte `b`, in time (list) order.
    fn containing(&self, pkts: &[Pkt<'_>], b: i64) -> Vec<usize> {
        let end = self.by_off.partition_point(|&(o, _)| o <= b);
        let mut v: Vec<usize> = self.by_off[..end]
            .iter()
            .rev()
            .take_while(|&&(o, _)| o > b - self.max_len)
            .filter(|&&(_, k)| pkts[k].contains(b))
            .map(|&(_, k)| k)
            .collect();
        v.sort_unstable();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::FrameRef;
    use crate::decode::TcpFlags;
    use crate::tcp::{Dir, PacketClass, PacketRef};

    fn lp(frame: u32, t: i64, off: i64, len: u32, class: PacketClass) -> LoggedPacket {
        LoggedPacket {
            at: PacketRef {
                frame: FrameRef { file: 0, frame },
                ts_ns: t,
            },
            dir: Dir::ClientToServer,
            flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH),
            offset: off,
            len,
            ack: Some(1),
            window: 100,
            class,
        }
    }

    fn pkts(v: &[LoggedPacket], line: usize) -> Vec<Pkt<'_>> {
        v.iter()
            .map(|lp| Pkt {
                lp,
                line,
                t: lp.at.ts_ns,
                off: lp.offset,
                ack: lp.ack,
            })
            .collect()
    }

    #[test]
    fn a_lost_original_leaves_the_retransmission_matched() {
        let s = [
            lp(1, 0, 0, 100, PacketClass::New),
            lp(2, 200, 0, 100, PacketClass::Retransmission),
        ];
        let r = [lp(10, 205, 0, 100, PacketClass::New)];
        let m = match_direction(&pkts(&s, 0), &pkts(&r, 1), 1);
        assert_eq!(m.arrival, vec![None, Some(0)]);
        assert!(m.receiver_only.is_empty());
    }

    #[test]
    fn a_spurious_retransmission_arrives_twice() {
        let s = [
            lp(1, 0, 0, 100, PacketClass::New),
            lp(2, 10, 0, 100, PacketClass::Retransmission),
        ];
        let r = [
            lp(10, 12, 0, 100, PacketClass::New),
            lp(11, 15, 0, 100, PacketClass::Retransmission),
        ];
        let m = match_direction(&pkts(&s, 0), &pkts(&r, 1), 1);
        assert_eq!(m.arrival, vec![Some(0), Some(1)]);
    }

    #[test]
    fn a_lost_retransmission_after_the_original_arrived() {
        let s = [
            lp(1, 0, 0, 100, PacketClass::New),
            lp(2, 50, 0, 100, PacketClass::Retransmission),
        ];
        let r = [lp(10, 5, 0, 100, PacketClass::New)];
        let m = match_direction(&pkts(&s, 0), &pkts(&r, 1), 1);
        assert_eq!(m.arrival, vec![Some(0), None]);
    }

    #[test]
    fn segmentation_offload_many_arrivals_one_arrow() {
        // One 3000-byte packet at the sender (TSO), three packets at the receiver.
        let s = [lp(1, 0, 0, 3000, PacketClass::New)];
        let r = [
            lp(10, 5, 0, 1000, PacketClass::New),
            lp(11, 6, 1000, 1000, PacketClass::New),
            lp(12, 7, 2000, 1000, PacketClass::New),
        ];
        let m = match_direction(&pkts(&s, 0), &pkts(&r, 1), 1);
        assert_eq!(m.arrival, vec![Some(0)]);
        assert_eq!(m.extra, vec![vec![1, 2]]);
        assert!(m.receiver_only.is_empty());
    }

    #[test]
    fn receive_offload_one_arrival_for_many_sent() {
        let s = [
            lp(1, 0, 0, 1000, PacketClass::New),
            lp(2, 1, 1000, 1000, PacketClass::New),
        ];
        let r = [lp(10, 8, 0, 2000, PacketClass::New)];
        let m = match_direction(&pkts(&s, 0), &pkts(&r, 1), 1);
        // The second sent packet's first byte (1000) arrived in the same receiver packet.
        assert_eq!(m.arrival, vec![Some(0), Some(0)]);
        assert!(m.receiver_only.is_empty());
    }

    #[test]
    fn a_packet_only_the_receiver_saw() {
        let s: [LoggedPacket; 0] = [];
        let mut rst = lp(10, 8, 500, 0, PacketClass::Control);
        rst.flags = TcpFlags(TcpFlags::RST);
        let r = [rst];
        let m = match_direction(&pkts(&s, 0), &pkts(&r, 1), 1);
        assert_eq!(m.receiver_only, vec![0]);
    }

    #[test]
    fn duplicate_acks_match_in_order() {
        let mut a = lp(1, 0, 5, 0, PacketClass::Control);
        a.flags = TcpFlags(TcpFlags::ACK);
        let mut b = a;
        b.at.ts_ns = 10;
        b.at.frame.frame = 2;
        let s = [a, b];
        let mut ra = a;
        ra.at.ts_ns = 4;
        let mut rb = b;
        rb.at.ts_ns = 14;
        let r = [ra, rb];
        let m = match_direction(&pkts(&s, 0), &pkts(&r, 1), 1);
        assert_eq!(m.arrival, vec![Some(0), Some(1)]);
    }
}

//! Ladder diagrams: every packet of a connection as an arrow from the moment it left one end to
//! the moment it arrived at the other, both captures on one time axis (the proxy capture's clock;
//! the backend's times moved by the clock offset).
//!
//! In: the two views' packet logs (`tcp::PacketLog`, the first and last packets of each), the
//! pair's [`SeqMap`] (how the views number the same bytes), the clock offset and the alignment of
//! the pair. Out: a [`Ladder`], plain data that the HTML report draws.
//!
//! Matching a packet sent at one end with its arrival at the other, per direction:
//! - offsets are brought into the proxy capture's sequence space through the pair's [`SeqMap`];
//! - a data packet is matched by its first byte: the sender's copies of that byte (original and
//!   retransmissions) are matched with the receiver's copies, latest first, each arrival no earlier
//!   than its departure (within the clock's uncertainty), so a lost original leaves the
//!   retransmission matched with the one copy that arrived; then each match moves to the earliest
//!   arrival that keeps the order;
//! - packet boundaries differ between the captures (segmentation offload on the sender, receive
//!   offload on the receiver): further receiver packets carrying bytes of a sent packet belong to
//!   its arrow;
//! - a packet without payload (SYN, ACK, FIN, RST) is matched by its flags, sequence offset and
//!   acknowledgement;
//! - a packet seen only at the receiver (a forged RST, or the sender's capture missed it) is an
//!   arrow that starts between the two lines.
//!
//! Every logged packet of each view belongs to exactly one arrow: as its departure, its first
//! arrival, or one of its further arrivals. With one capture, each packet is an arrow out of, or
//! into, the one line.

use std::collections::{HashMap, HashSet};

use crate::pair::{Alignment, ClockOffset, SeqMap};
use crate::pipeline::{Conn, SideResult};
use crate::tcp::{Dir, LoggedPacket, PacketClass};

/// A connection's packets, ready to draw.
#[derive(Clone, Debug, PartialEq)]
pub struct Ladder {
    /// The capture points, left to right: "proxy" and "backend", or the one capture's side.
    pub lines: Vec<String>,
    /// With one capture: the name of the end that was not captured (arrows go out to it and come
    /// in from it).
    pub far_end: Option<String>,
    /// Proxy-clock time (ns since the epoch) of the first packet drawn; arrow times are relative
    /// to it.
    pub t0_ns: i64,
    pub arrows: Vec<Arrow>,
    /// Per line: packets of the connection in that capture that are not drawn (the log keeps the
    /// first [`LOG_HEAD`](crate::tcp::LOG_HEAD) and the last [`LOG_TAIL`](crate::tcp::LOG_TAIL)),
    /// and the time after which they were left out (relative ns).
    pub elided: Vec<(u64, i64)>,
    /// Per line: packets of the connection logged in that capture (each belongs to one arrow).
    pub logged: Vec<usize>,
    /// Per line: when that capture started and stopped (relative ns, common axis).
    pub capture_span: Vec<(i64, i64)>,
}

/// One packet, from where it left to where it arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct Arrow {
    /// Proxy→backend (`true`) or backend→proxy.
    pub to_backend: bool,
    pub kind: ArrowKind,
    /// e.g. "SYN", "bytes 0-1447", "ACK 1448", "FIN", "RST".
    pub label: String,
    /// Where it left (absent when only the receiver's capture saw it).
    pub sent: Option<Point>,
    /// Where it arrived first (absent when it did not arrive, or that end was not captured).
    pub arrived: Option<Point>,
    /// The arrival packet belongs to this arrow (false when an earlier sent packet arrived in the
    /// same receiver packet: receive offload merged them).
    pub owns_arrival: bool,
    /// Further receiver frames that carried bytes of it (packet boundaries differ between the
    /// captures: segmentation and receive offload).
    pub also_arrived: Vec<Point>,
    pub fate: Fate,
    /// A retransmission (or a TCP keep-alive) according to the sender's capture.
    pub retransmission: bool,
    /// The sender advertised a zero receive window.
    pub zero_window: bool,
}

/// A packet in one capture.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Point {
    /// Index into [`Ladder::lines`].
    pub line: usize,
    pub frame: u32,
    /// Index of the file of a rotated capture set.
    pub file: u16,
    /// Time on the common axis, ns relative to [`Ladder::t0_ns`].
    pub t: i64,
    /// Time on the capture's own clock (ns since the epoch).
    pub local_ns: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArrowKind {
    Syn,
    SynAck,
    Data,
    Ack,
    Fin,
    Rst,
}

impl ArrowKind {
    pub fn name(self) -> &'static str {
        match self {
            ArrowKind::Syn => "syn",
            ArrowKind::SynAck => "synack",
            ArrowKind::Data => "data",
            ArrowKind::Ack => "ack",
            ArrowKind::Fin => "fin",
            ArrowKind::Rst => "rst",
        }
    }
}

/// What became of a packet between the two capture points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Seen leaving one end and arriving at the other.
    Arrived,
    /// Seen leaving; never seen arriving, and not acknowledged, while the other capture ran.
    Lost,
    /// Seen leaving; the receiver acknowledged its bytes, but the receiver's capture missed it.
    NotCapturedAtReceiver,
    /// Seen leaving while the other end's capture was not running.
    OutsideCapture,
    /// Seen leaving; the other end's packets of that moment are in the part of its log that is
    /// not drawn (a connection of more packets than its log keeps).
    NotDrawn,
    /// Seen only arriving: the sender never sent it (a forged packet) or its capture missed it.
    ReceiverOnly,
    /// One capture only: a packet out of or into the capturing host.
    OneCapture,
}

impl Fate {
    pub fn name(self) -> &'static str {
        match self {
            Fate::Arrived => "arrived",
            Fate::Lost => "lost",
            Fate::NotCapturedAtReceiver => "not-captured",
            Fate::OutsideCapture => "outside-capture",
            Fate::NotDrawn => "not-drawn",
            Fate::ReceiverOnly => "receiver-only",
            Fate::OneCapture => "one-capture",
        }
    }
}

/// A logged packet with its place on the common axis and its offsets in the proxy's sequence space.
#[derive(Clone, Copy, Debug)]
struct Pkt<'a> {
    lp: &'a LoggedPacket,
    line: usize,
    /// Common-axis time (proxy clock), absolute ns.
    t: i64,
    off: i64,
    ack: Option<i64>,
}

impl Pkt<'_> {
    fn len(&self) -> i64 {
        self.lp.len as i64
    }
    fn is_data(&self) -> bool {
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

/// Builds the ladder of a connection: its views in each capture (proxy first), the captures
/// (`sides`, for their names and when they ran), the clock offset, the alignment and how the views
/// number the same bytes.
pub fn build(
    sides: &[SideResult],
    views: [Option<&Conn>; 2],
    clock: Option<ClockOffset>,
    alignment: Option<&Alignment>,
    seq_map: SeqMap,
) -> Option<Ladder> {
    if sides.len() > 1 {
        Some(two_captures(sides, seq_map, views, clock, alignment))
    } else {
        Some(one_capture(sides.first()?, views[0]?))
    }
}

fn one_capture(side: &SideResult, c: &Conn) -> Ladder {
    let t0 = c.log.packets().next().map_or(c.first.ts_ns, |p| p.at.ts_ns);
    let far = if side.side == crate::pipeline::Side::Single {
        "server"
    } else {
        "backend"
    };
    let arrows = c
        .log
        .packets()
        .map(|lp| {
            let pkt = Pkt {
                lp,
                line: 0,
                t: lp.at.ts_ns,
                off: lp.offset,
                ack: lp.ack,
            };
            let p = point(&pkt, t0);
            let out = lp.dir == Dir::ClientToServer;
            Arrow {
                to_backend: out,
                kind: kind(lp),
                label: label(&pkt),
                sent: out.then_some(p),
                arrived: (!out).then_some(p),
                owns_arrival: !out,
                also_arrived: Vec::new(),
                fate: Fate::OneCapture,
                retransmission: matches!(lp.class, PacketClass::Retransmission | PacketClass::KeepAlive),
                zero_window: zero_window(lp),
            }
        })
        .collect();
    Ladder {
        lines: vec![side.side.name().to_string()],
        far_end: Some(far.to_string()),
        t0_ns: t0,
        arrows,
        elided: vec![(c.log.elided, elided_after(c, t0, |t| t))],
        logged: vec![c.log.len()],
        capture_span: vec![span(side, t0, |t| t)],
    }
}

/// The time after which a log's middle was left out (the last packet of its head).
fn elided_after(c: &Conn, t0: i64, to_common: impl Fn(i64) -> i64) -> i64 {
    c.log
        .head
        .last()
        .map_or(0, |p| to_common(p.at.ts_ns).saturating_sub(t0))
}

fn span(side: &SideResult, t0: i64, to_common: impl Fn(i64) -> i64) -> (i64, i64) {
    let f = side
        .capture
        .first_ts_ns
        .map_or(i64::MIN, |t| to_common(t).saturating_sub(t0));
    let l = side
        .capture
        .last_ts_ns
        .map_or(i64::MAX, |t| to_common(t).saturating_sub(t0));
    (f, l)
}

fn two_captures(
    sides: &[SideResult],
    seq_map: SeqMap,
    views: [Option<&Conn>; 2],
    clock: Option<ClockOffset>,
    alignment: Option<&Alignment>,
) -> Ladder {
    // Lines' times on the proxy clock (the backend line's through the clock offset).
    let to_common = |line: usize, t: i64| {
        if line == 1 {
            crate::pair::on_proxy_clock(clock.as_ref(), t)
        } else {
            t
        }
    };
    // The backend line's offsets in the proxy view's numbering (as they are where unknown).
    let to_proxy = |d: usize, off: i64| seq_map.to_proxy(d, off).unwrap_or(off);
    let pkts = |line: usize| -> Vec<Pkt<'_>> {
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
                    t: to_common(line, lp.at.ts_ns),
                    off,
                    ack,
                }
            })
            .collect()
    };
    let all = [pkts(0), pkts(1)];
    let t0 = all
        .iter()
        .flatten()
        .map(|p| p.t)
        .min()
        .unwrap_or_else(|| views.iter().flatten().map(|c| c.first.ts_ns).min().unwrap_or(0));
    let tol = clock.map_or(1_000_000, |c| c.uncertainty_ns.saturating_mul(2) + 1_000_000);
    let spans = [
        span(&sides[0], t0, |t| to_common(0, t)),
        span(&sides[1], t0, |t| to_common(1, t)),
    ];

    // Per line: the time window (common axis, absolute) whose packets the log left out, if any.
    let gaps: [Option<(i64, i64)>; 2] = [0, 1].map(|l| {
        let c = views[l]?;
        if c.log.elided == 0 {
            return None;
        }
        let last_head = c.log.head.last()?.at.ts_ns;
        let first_tail = c.log.packets().nth(c.log.head.len())?.at.ts_ns;
        Some((to_common(l, last_head), to_common(l, first_tail)))
    });
    let in_gap = |line: usize, t: i64| {
        gaps[line].is_some_and(|(lo, hi)| t >= lo.saturating_sub(tol) && t <= hi.saturating_add(tol))
    };

    let mut arrows: Vec<Arrow> = Vec::new();
    for dir in Dir::BOTH {
        let (s_line, r_line) = if dir == Dir::ClientToServer {
            (0, 1)
        } else {
            (1, 0)
        };
        let sent: Vec<Pkt> = all[s_line].iter().copied().filter(|p| p.lp.dir == dir).collect();
        let recv: Vec<Pkt> = all[r_line].iter().copied().filter(|p| p.lp.dir == dir).collect();
        let m = match_direction(&sent, &recv, tol);
        // What the receiver acknowledged (its own capture's ACKs), in the proxy's space.
        let receiver_acked = views[r_line]
            .and_then(|c| c.dirs[dir.idx()].acked)
            .map(|(a, _)| if r_line == 1 { to_proxy(dir.idx(), a) } else { a });
        let forged = alignment.and_then(|a| a.dirs[dir.idx()].forged_rst);
        for (k, s) in sent.iter().enumerate() {
            let fate = match m.arrival[k] {
                Some(_) => Fate::Arrived,
                None => {
                    let rs = spans[r_line];
                    let at = s.t.saturating_sub(t0);
                    if at > rs.1 || at < rs.0.saturating_sub(tol) {
                        Fate::OutsideCapture
                    } else if in_gap(r_line, s.t) {
                        Fate::NotDrawn
                    } else if s.is_data() && receiver_acked.is_some_and(|a| a >= s.off + s.len()) {
                        Fate::NotCapturedAtReceiver
                    } else {
                        Fate::Lost
                    }
                }
            };
            let mut label = label(s);
            let receiver = &sides[r_line].side;
            match fate {
                Fate::Lost => label.push_str(" — never arrived"),
                Fate::NotCapturedAtReceiver => {
                    label.push_str(&format!(" — arrived, the {receiver} capture missed it"))
                }
                Fate::OutsideCapture => label.push_str(&format!(" — the {receiver} capture was not running")),
                Fate::NotDrawn => {
                    label.push_str(&format!(" — its arrival is in the {receiver} packets not drawn"))
                }
                _ => {}
            }
            arrows.push(Arrow {
                to_backend: dir == Dir::ClientToServer,
                kind: kind(s.lp),
                label,
                sent: Some(point(s, t0)),
                arrived: m.arrival[k].map(|r| point(&recv[r], t0)),
                owns_arrival: m.arrival[k].is_some_and(|r| m.owner[r] == Some(k)),
                also_arrived: m.extra[k].iter().map(|&r| point(&recv[r], t0)).collect(),
                fate,
                retransmission: matches!(s.lp.class, PacketClass::Retransmission | PacketClass::KeepAlive),
                zero_window: zero_window(s.lp),
            });
        }
        for &r in &m.receiver_only {
            let p = &recv[r];
            let mut label = label(p);
            let sender = if s_line == 0 { "proxy" } else { "backend" };
            if p.lp.flags.rst() && forged.is_some_and(|f| f.at == p.lp.at) {
                label.push_str(&format!(" — the {sender} never sent it"));
            } else if in_gap(s_line, p.t) {
                label.push_str(&format!(" — its departure is in the {sender} packets not drawn"));
            } else {
                label.push_str(&format!(" — not in the {sender} capture"));
            }
            arrows.push(Arrow {
                to_backend: dir == Dir::ClientToServer,
                kind: kind(p.lp),
                label,
                sent: None,
                arrived: Some(point(p, t0)),
                owns_arrival: true,
                also_arrived: Vec::new(),
                fate: Fate::ReceiverOnly,
                retransmission: false,
                zero_window: zero_window(p.lp),
            });
        }
    }
    // In order of the moment each arrow starts on the common axis.
    arrows.sort_by_key(|a| {
        let start = a.sent.or(a.arrived).map_or(0, |p| p.t);
        (start, a.sent.map_or(u32::MAX, |p| p.frame))
    });
    let elided = (0..2)
        .map(|l| {
            views[l].map_or((0, 0), |c| {
                (c.log.elided, elided_after(c, t0, |t| to_common(l, t)))
            })
        })
        .collect();
    Ladder {
        lines: sides.iter().map(|s| s.side.name().to_string()).collect(),
        far_end: None,
        t0_ns: t0,
        arrows,
        elided,
        logged: views.iter().map(|c| c.map_or(0, |c| c.log.len())).collect(),
        capture_span: spans.to_vec(),
    }
}

fn point(p: &Pkt<'_>, t0: i64) -> Point {
    Point {
        line: p.line,
        frame: p.lp.at.frame.frame,
        file: p.lp.at.frame.file,
        t: p.t.saturating_sub(t0),
        local_ns: p.lp.at.ts_ns,
    }
}

fn zero_window(lp: &LoggedPacket) -> bool {
    lp.window == 0 && !lp.flags.rst() && !lp.flags.syn()
}

fn kind(lp: &LoggedPacket) -> ArrowKind {
    let f = lp.flags;
    if f.rst() {
        ArrowKind::Rst
    } else if f.syn() && f.ack() {
        ArrowKind::SynAck
    } else if f.syn() {
        ArrowKind::Syn
    } else if f.fin() {
        ArrowKind::Fin
    } else if lp.len > 0 {
        ArrowKind::Data
    } else {
        ArrowKind::Ack
    }
}

fn label(p: &Pkt<'_>) -> String {
    let lp = p.lp;
    let f = lp.flags;
    let mut parts: Vec<String> = Vec::new();
    if f.rst() {
        parts.push("RST".into());
    } else if f.syn() && f.ack() {
        parts.push("SYN-ACK".into());
    } else if f.syn() {
        parts.push("SYN".into());
    }
    if lp.len > 0 {
        parts.push(format!("bytes {}-{}", p.off, p.off + lp.len as i64 - 1));
    }
    if f.fin() {
        parts.push("FIN".into());
    }
    if parts.is_empty() {
        match p.ack {
            Some(a) => parts.push(format!("ACK {a}")),
            None => parts.push("(no flags)".into()),
        }
    }
    let mut s = parts.join(" + ");
    if zero_window(lp) {
        s.push_str(", window 0");
    }
    match lp.class {
        PacketClass::Retransmission => s.push_str(" (retransmission)"),
        PacketClass::KeepAlive => s.push_str(" (keep-alive)"),
        _ => {}
    }
    s
}

/// The matching of one direction: for each sent packet, its first arrival and its further
/// arrivals; the received packets that match no sent packet.
struct DirMatch {
    arrival: Vec<Option<usize>>,
    /// Per received packet: the sent packet it belongs to as its first arrival.
    owner: Vec<Option<usize>>,
    extra: Vec<Vec<usize>>,
    receiver_only: Vec<usize>,
}

fn match_direction(sent: &[Pkt<'_>], recv: &[Pkt<'_>], tol: i64) -> DirMatch {
    let mut arrival: Vec<Option<usize>> = vec![None; sent.len()];

    // Data, by first byte.
    let s_index = ByteIndex::new(sent);
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

    // Packets without payload, by flags, offset and acknowledgement.
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

    // Each received packet belongs to the earliest sent packet that arrived with it.
    let mut owner: Vec<Option<usize>> = vec![None; recv.len()];
    for (k, a) in arrival.iter().enumerate() {
        if let Some(r) = *a {
            if owner[r].is_none() {
                owner[r] = Some(k);
            }
        }
    }
    // Received data packets that carried later bytes of a sent packet (offload): they belong to
    // the latest sent packet holding their first byte that had left, and had begun to arrive, by
    // then.
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
    DirMatch {
        arrival,
        owner,
        extra,
        receiver_only,
    }
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
    use crate::tcp::PacketRef;

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

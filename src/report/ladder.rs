//! Ladder diagrams: every packet of a connection as an arrow from the moment it left one end to
//! the moment it arrived at the other, both captures on one time axis (the proxy capture's clock;
//! the backend's times moved by the clock offset).
//!
//! In: the two views' packet logs (`tcp::PacketLog`, the first and last packets of each), the
//! pair's [`SeqMap`] (how the views number the same bytes), the clock offset and the alignment of
//! the pair. Out: a [`Ladder`], plain data that the HTML report draws.
//!
//! Which packet arrived as which is pairing's job (`pair::packets`): the ladder lays the
//! matches out as arrows and labels them — the fate of a packet that did not arrive (lost, not
//! captured at the receiver, outside the receiver's capture, in the part of its log not drawn),
//! and where a packet only the receiver saw came from. Every logged packet of each view belongs
//! to exactly one arrow: as its departure, its first arrival, or one of its further arrivals.
//! With one capture, each packet is an arrow out of, or into, the one line.

use crate::pair::packets::{DirMatch, Pkt, match_direction, on_common_axis, placed};
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
    pub(crate) fn name(self) -> &'static str {
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
    pub(crate) fn name(self) -> &'static str {
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

/// Builds the ladder of a connection: its views in each capture (proxy first), the captures
/// (`sides`, for their names and when they ran), the clock offset, the alignment and how the views
/// number the same bytes.
pub(crate) fn build(
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
    let lines = TwoLines::new(sides, seq_map, views, clock, alignment);
    let mut arrows: Vec<Arrow> = Dir::BOTH.into_iter().flat_map(|dir| lines.arrows(dir)).collect();
    // In order of the moment each arrow starts on the common axis.
    arrows.sort_by_key(|a| {
        let start = a.sent.or(a.arrived).map_or(0, |p| p.t);
        (start, a.sent.map_or(u32::MAX, |p| p.frame))
    });
    let t0 = lines.t0;
    let elided = (0..2)
        .map(|l| {
            views[l].map_or((0, 0), |c| {
                (
                    c.log.elided,
                    elided_after(c, t0, |t| on_common_axis(clock.as_ref(), l, t)),
                )
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
        capture_span: lines.spans.to_vec(),
    }
}

/// The two captures of a pair laid out on one axis: what the arrows of both directions need.
struct TwoLines<'a> {
    sides: &'a [SideResult],
    views: [Option<&'a Conn>; 2],
    alignment: Option<&'a Alignment>,
    seq_map: SeqMap,
    /// Per line: its logged packets, placed (`pair::packets::placed`).
    all: [Vec<Pkt<'a>>; 2],
    /// Proxy-clock time of the first packet drawn.
    t0: i64,
    /// How much earlier than its departure an arrival may seem (the clock's uncertainty).
    tol: i64,
    /// Per line: when that capture started and stopped (relative ns, common axis).
    spans: [(i64, i64); 2],
    /// Per line: the time window (common axis, absolute) whose packets the log left out, if any.
    gaps: [Option<(i64, i64)>; 2],
}

impl<'a> TwoLines<'a> {
    fn new(
        sides: &'a [SideResult],
        seq_map: SeqMap,
        views: [Option<&'a Conn>; 2],
        clock: Option<ClockOffset>,
        alignment: Option<&'a Alignment>,
    ) -> TwoLines<'a> {
        let to_common = |line: usize, t: i64| on_common_axis(clock.as_ref(), line, t);
        let all = placed(views, seq_map, clock.as_ref());
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
        let gaps: [Option<(i64, i64)>; 2] = [0, 1].map(|l| {
            let c = views[l]?;
            if c.log.elided == 0 {
                return None;
            }
            let last_head = c.log.head.last()?.at.ts_ns;
            let first_tail = c.log.packets().nth(c.log.head.len())?.at.ts_ns;
            Some((to_common(l, last_head), to_common(l, first_tail)))
        });
        TwoLines {
            sides,
            views,
            alignment,
            seq_map,
            all,
            t0,
            tol,
            spans,
            gaps,
        }
    }

    /// Is `t` (common axis, absolute) in the part of `line`'s log that is not drawn?
    fn in_gap(&self, line: usize, t: i64) -> bool {
        self.gaps[line]
            .is_some_and(|(lo, hi)| t >= lo.saturating_sub(self.tol) && t <= hi.saturating_add(self.tol))
    }

    /// The arrows of one direction: every packet its sender's capture logged, then the packets
    /// only its receiver's capture saw.
    fn arrows(&self, dir: Dir) -> Vec<Arrow> {
        let (s_line, r_line) = if dir == Dir::ClientToServer {
            (0, 1)
        } else {
            (1, 0)
        };
        let sent: Vec<Pkt> = self.all[s_line]
            .iter()
            .copied()
            .filter(|p| p.lp.dir == dir)
            .collect();
        let recv: Vec<Pkt> = self.all[r_line]
            .iter()
            .copied()
            .filter(|p| p.lp.dir == dir)
            .collect();
        let m = match_direction(&sent, &recv, self.tol);
        // What the receiver acknowledged (its own capture's ACKs), in the proxy's space.
        let d = dir.idx();
        let receiver_acked = self.views[r_line].and_then(|c| c.dirs[d].acked).map(|(a, _)| {
            if r_line == 1 {
                self.seq_map.to_proxy(d, a).unwrap_or(a)
            } else {
                a
            }
        });
        let mut arrows: Vec<Arrow> = (0..sent.len())
            .map(|k| self.sent_arrow(&sent, &recv, &m, k, r_line, receiver_acked))
            .collect();
        let forged = self.alignment.and_then(|a| a.dirs[d].forged_rst);
        for &r in &m.receiver_only {
            let p = &recv[r];
            let mut label = label(p);
            let sender = if s_line == 0 { "proxy" } else { "backend" };
            if p.lp.flags.rst() && forged.is_some_and(|f| f.at == p.lp.at) {
                label.push_str(&format!(" — the {sender} never sent it"));
            } else if self.in_gap(s_line, p.t) {
                label.push_str(&format!(" — its departure is in the {sender} packets not drawn"));
            } else {
                label.push_str(&format!(" — not in the {sender} capture"));
            }
            arrows.push(Arrow {
                to_backend: dir == Dir::ClientToServer,
                kind: kind(p.lp),
                label,
                sent: None,
                arrived: Some(point(p, self.t0)),
                owns_arrival: true,
                also_arrived: Vec::new(),
                fate: Fate::ReceiverOnly,
                retransmission: false,
                zero_window: zero_window(p.lp),
            });
        }
        arrows
    }

    /// The arrow of sent packet `k`, its arrivals as the match found them.
    fn sent_arrow(
        &self,
        sent: &[Pkt<'_>],
        recv: &[Pkt<'_>],
        m: &DirMatch,
        k: usize,
        r_line: usize,
        receiver_acked: Option<i64>,
    ) -> Arrow {
        let s = &sent[k];
        let fate = match m.arrival[k] {
            Some(_) => Fate::Arrived,
            None => self.fate_unarrived(s, r_line, receiver_acked),
        };
        let mut label = label(s);
        let receiver = &self.sides[r_line].side;
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
        Arrow {
            to_backend: s.lp.dir == Dir::ClientToServer,
            kind: kind(s.lp),
            label,
            sent: Some(point(s, self.t0)),
            arrived: m.arrival[k].map(|r| point(&recv[r], self.t0)),
            owns_arrival: m.arrival[k].is_some_and(|r| m.owner[r] == Some(k)),
            also_arrived: m.extra[k].iter().map(|&r| point(&recv[r], self.t0)).collect(),
            fate,
            retransmission: matches!(s.lp.class, PacketClass::Retransmission | PacketClass::KeepAlive),
            zero_window: zero_window(s.lp),
        }
    }

    /// What became of a sent packet that was not seen arriving at `r_line`.
    fn fate_unarrived(&self, s: &Pkt<'_>, r_line: usize, receiver_acked: Option<i64>) -> Fate {
        let rs = self.spans[r_line];
        let at = s.t.saturating_sub(self.t0);
        if at > rs.1 || at < rs.0.saturating_sub(self.tol) {
            Fate::OutsideCapture
        } else if self.in_gap(r_line, s.t) {
            Fate::NotDrawn
        } else if s.is_data() && receiver_acked.is_some_and(|a| a >= s.off + s.len()) {
            Fate::NotCapturedAtReceiver
        } else {
            Fate::Lost
        }
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

//! One live connection: what each segment says (handshake, sequence offsets, acknowledgements,
//! windows, payload to reassembly, FIN and RST), its history letters, and its finishing into a
//! [`Connection`] once the table lets it go.

use super::state::conn_state;
use super::stream::Reassembler;
use super::{
    Budget, CloseMark, Connection, DataClass, Dir, End, GapKind, LoggedPacket, PacketClass, PacketRef,
    SeqSpace, Span, SpanKind, StreamEvent, StreamHandler, ZeroWindow,
};
use crate::anomaly::AnomalyKind;
use crate::decode::Segment;

/// A live connection in the table.
pub(super) struct Live<H> {
    pub(super) conn: Connection<()>,
    pub(super) streams: [Reassembler; 2],
    pub(super) handler: H,
    /// History letters seen, per direction: bitmask over `HISTORY_LETTERS`.
    pub(super) history_seen: [u16; 2],
    /// Sequence spaces per direction, once their origin is known.
    pub(super) spaces: [Option<SeqSpace>; 2],
    /// The connection is closed (RST, or FIN both ways) since this time.
    pub(super) closed_at: Option<i64>,
    pub(super) handshake_seen: bool,
    /// A zero-window run is open in this direction's sender.
    pub(super) zero_open: [bool; 2],
    /// Spans whose acknowledgement is not yet known start here.
    pub(super) span_ack_cursor: [usize; 2],
    /// Its memory as last estimated ([`Live::weight`]), counted in the table's total.
    pub(super) weight: usize,
}

pub(super) const HISTORY_LETTERS: [char; 11] = ['S', 'H', 'A', 'D', 'F', 'R', 'T', 'G', 'W', 'I', '^'];

/// A history letter's bit (its index in `HISTORY_LETTERS`), without searching: noted on every
/// packet.
pub(super) fn history_bit(letter: char) -> Option<usize> {
    let bit = match letter {
        'S' => 0,
        'H' => 1,
        'A' => 2,
        'D' => 3,
        'F' => 4,
        'R' => 5,
        'T' => 6,
        'G' => 7,
        'W' => 8,
        'I' => 9,
        '^' => 10,
        _ => return None,
    };
    debug_assert_eq!(HISTORY_LETTERS[bit], letter);
    Some(bit)
}

/// A gap Zeek's history would mark 'G': bytes given up on (a hole later filled by a
/// retransmission never becomes one; bytes cut by snaplen were captured).
pub(super) fn is_content_gap(ev: &StreamEvent<'_>) -> bool {
    matches!(ev, StreamEvent::Gap { kind, .. } if *kind != GapKind::Snaplen)
}

/// Adds a history letter once per direction (upper case for the client, lower for the server).
pub(super) fn note_history(history: &mut String, seen: &mut [u16; 2], d: Dir, letter: char) {
    let Some(bit) = history_bit(letter) else {
        return;
    };
    let seen = &mut seen[d.idx()];
    if *seen & (1 << bit) == 0 {
        *seen |= 1 << bit;
        history.push(if d == Dir::ClientToServer || letter == '^' {
            letter
        } else {
            letter.to_ascii_lowercase()
        });
    }
}

/// What a connection's table entry costs beside its `Live`: the hash table slot, its timers.
pub(super) const ENTRY_BYTES: usize = 128;

impl<H: StreamHandler> Live<H> {
    /// Estimates the memory the connection holds now, remembers it in `weight` and returns it.
    /// A few loads per packet: capacities, not contents.
    pub(super) fn reweigh(&mut self) -> usize {
        let c = &self.conn;
        let log = (c.log.head.capacity() + c.log.tail.capacity()) * std::mem::size_of::<LoggedPacket>();
        let spans: usize =
            c.dirs.iter().map(|d| d.spans.capacity()).sum::<usize>() * std::mem::size_of::<Span>();
        let w = std::mem::size_of::<Self>()
            + ENTRY_BYTES
            + c.history.capacity()
            + c.anomalies.heap_bytes()
            + log
            + spans
            + self.streams[0].heap_bytes()
            + self.streams[1].heap_bytes()
            + self.handler.heap_bytes();
        self.weight = w;
        w
    }

    /// Closed by FINs both ways, with nothing left to reassemble: no data can follow.
    pub(super) fn closed_by_fins(&self) -> bool {
        self.closed_at.is_some() && self.conn.dirs.iter().all(|d| d.fin.is_some()) && self.fully_delivered()
    }

    /// Everything up to each FIN has been delivered (nothing is waiting for a retransmission).
    pub(super) fn fully_delivered(&self) -> bool {
        (0..2).all(|i| {
            let d = &self.conn.dirs[i];
            d.rst.is_some()
                || self.conn.dirs[1 - i].rst.is_some()
                || d.fin.is_some_and(|f| self.streams[i].delivered_to() >= f.offset)
        })
    }

    pub(super) fn set_origin(&mut self, d: Dir, seq: u32) {
        self.spaces[d.idx()] = Some(SeqSpace::new(seq));
        self.conn.dirs[d.idx()].origin = Some(seq);
    }

    pub(super) fn history(&mut self, d: Dir, letter: char) {
        note_history(&mut self.conn.history, &mut self.history_seen, d, letter);
    }

    /// One segment of this connection: its direction and counts, handshake, sequence offset,
    /// acknowledgement, window, payload, FIN and RST, and its line in the packet log.
    pub(super) fn on_segment(&mut self, seg: &Segment<'_>, at: PacketRef, budget: &mut Budget, log: bool) {
        let d = self.count(seg, at);
        let f = seg.flags;
        if f.syn() && (f.rst() || f.fin()) {
            self.history(d, 'I');
            self.conn
                .anomalies
                .note(AnomalyKind::TcpSynWithRstOrFin, Some(at.frame));
        }
        if f.syn() {
            self.on_syn(d, seg, at);
        }
        let offset = self.seq_offset(d, seg);
        let ack_off = if f.ack() {
            self.on_ack_field(d, seg, at, budget)
        } else {
            None
        };
        // The window this endpoint advertises (for data towards it).
        if !f.syn() && !f.rst() {
            self.on_window(d, seg.window, at);
        }
        // Payload.
        let mut class = PacketClass::Control;
        if seg.payload_len > 0 {
            if f.rst() {
                self.conn
                    .anomalies
                    .note(AnomalyKind::TcpRstWithData, Some(at.frame));
            } else {
                class = self.on_data(d, seg, offset, at, budget);
            }
        } else if !f.syn() && !f.fin() && !f.rst() && f.ack() {
            self.history(d, 'A');
        }
        self.on_close(d, seg, offset, ack_off, at);
        if log {
            self.conn.log.push(LoggedPacket {
                at,
                dir: d,
                flags: f,
                offset,
                len: seg.payload_len,
                ack: ack_off,
                window: seg.window as u32,
                class,
            });
        }
    }

    /// Counts the segment and returns its direction.
    pub(super) fn count(&mut self, seg: &Segment<'_>, at: PacketRef) -> Dir {
        let d = if seg.src == self.conn.client {
            Dir::ClientToServer
        } else {
            Dir::ServerToClient
        };
        self.conn.last = at;
        self.conn.packets += 1;
        if self.conn.client_is_local.is_none() {
            self.conn.client_is_local = seg.outgoing.map(|out| out == (d == Dir::ClientToServer));
        }
        self.conn.dirs[d.idx()].packets += 1;
        d
    }

    /// Handshake: a SYN or SYN-ACK, its options, and the origin of its direction's sequence space.
    pub(super) fn on_syn(&mut self, d: Dir, seg: &Segment<'_>, at: PacketRef) {
        let (di, f) = (d.idx(), seg.flags);
        if d == Dir::ClientToServer && !f.ack() {
            self.history(d, 'S');
            self.conn.syn_count += 1;
            if self.conn.syn.is_none() {
                self.conn.syn = Some(at);
                self.conn.client_isn = Some(seg.seq);
            }
        } else if d == Dir::ServerToClient && f.ack() {
            self.history(d, 'H');
            self.conn.syn_ack_count += 1;
            if self.conn.syn_ack.is_none() {
                self.conn.syn_ack = Some(at);
                self.conn.server_isn = Some(seg.seq);
            }
        } else {
            // SYN from the server without ACK (simultaneous open) or SYN-ACK from the client.
            self.conn
                .anomalies
                .note(AnomalyKind::TcpUnexpectedSyn, Some(at.frame));
        }
        self.handshake_seen = true;
        let ds = &mut self.conn.dirs[di];
        if let Some(m) = seg.options.mss {
            ds.mss = Some(m);
        }
        ds.window_scale = seg.options.window_scale;
        if self.spaces[di].is_none() {
            self.set_origin(d, seg.seq.wrapping_add(1));
            self.streams[di].start_at_zero();
        }
    }

    /// The stream offset of the segment's first byte (its sequence space starts here if it had
    /// no origin yet).
    pub(super) fn seq_offset(&mut self, d: Dir, seg: &Segment<'_>) -> i64 {
        let (di, f) = (d.idx(), seg.flags);
        if self.spaces[di].is_none() {
            self.set_origin(d, seg.seq);
        }
        // The first payload byte of a SYN (TCP Fast Open) is one past the SYN's sequence number.
        let first_byte = seg.seq.wrapping_add(f.syn() as u32);
        match &mut self.spaces[di] {
            Some(space) if seg.payload_len > 0 && !f.rst() => space.advance(first_byte, seg.payload_len),
            Some(space) => space.offset(first_byte),
            None => 0,
        }
    }

    /// The ACK tells about the other direction: what it acknowledged (its offset there, returned),
    /// and that the handshake completed.
    pub(super) fn on_ack_field(
        &mut self,
        d: Dir,
        seg: &Segment<'_>,
        at: PacketRef,
        budget: &mut Budget,
    ) -> Option<i64> {
        let f = seg.flags;
        let mut ack_off = None;
        let peer = d.rev().idx();
        if self.spaces[peer].is_none() && !f.rst() {
            // Nothing seen from the peer yet: its data starts where this ACK points.
            self.set_origin(d.rev(), seg.ack);
            self.streams[peer].expect_at_zero();
        }
        if let Some(space) = &self.spaces[peer] {
            let a = space.offset(seg.ack);
            ack_off = Some(a);
            if !f.rst() {
                self.on_ack(d.rev(), a, at, budget);
            }
        }
        if d == Dir::ClientToServer
            && self.conn.syn_ack.is_some()
            && self.conn.established.is_none()
            && !f.syn()
        {
            self.conn.established = Some(at);
        }
        ack_off
    }

    /// The window advertised by direction `d`'s sender, and its zero-window runs.
    pub(super) fn on_window(&mut self, d: Dir, raw: u16, at: PacketRef) {
        let di = d.idx();
        let peer_scale = self.conn.dirs[d.rev().idx()].window_scale;
        let scale = match (self.conn.dirs[di].window_scale, peer_scale) {
            (Some(s), Some(_)) => s.min(14),
            _ => 0,
        };
        let window = (raw as u64) << scale;
        self.conn.dirs[di].last_window = Some(window);
        if raw == 0 {
            self.history(d, 'W');
            // One record per direction: the first run's start, the latest advertisement.
            let zw = &mut self.conn.dirs[di].zero_window;
            match zw {
                Some(z) => {
                    z.last = at;
                    z.count += 1;
                }
                None => {
                    *zw = Some(ZeroWindow {
                        first: at,
                        last: at,
                        count: 1,
                        reopened: None,
                    })
                }
            }
            self.zero_open[di] = true;
        } else if self.zero_open[di] {
            self.zero_open[di] = false;
            if let Some(z) = &mut self.conn.dirs[di].zero_window {
                if z.reopened.is_none() {
                    z.reopened = Some(at);
                }
            }
        }
    }

    /// FIN and RST: where each direction's data ended, and when the connection closed.
    pub(super) fn on_close(
        &mut self,
        d: Dir,
        seg: &Segment<'_>,
        offset: i64,
        ack_off: Option<i64>,
        at: PacketRef,
    ) {
        let (di, f) = (d.idx(), seg.flags);
        let fin_offset = offset.saturating_add(seg.payload_len as i64);
        let mark = CloseMark {
            at,
            offset,
            ack: ack_off,
            ttl: seg.ttl,
            ip_id: seg.ip_id,
        };
        if f.fin() && !f.rst() {
            self.history(d, 'F');
            let ds = &mut self.conn.dirs[di];
            ds.fin_count += 1;
            if ds.fin.is_none() {
                ds.fin = Some(CloseMark {
                    offset: fin_offset,
                    ..mark
                });
                self.streams[di].set_fin(fin_offset);
            }
        }
        if f.rst() {
            self.history(d, 'R');
            let ds = &mut self.conn.dirs[di];
            ds.rst_count += 1;
            if ds.rst.is_none() {
                ds.rst = Some(mark);
            }
        } else {
            self.conn.dirs[di].note_ttl(seg.ttl);
        }
        let closed = f.rst() || (self.conn.dirs[0].fin.is_some() && self.conn.dirs[1].fin.is_some());
        if closed && self.closed_at.is_none() {
            self.closed_at = Some(at.ts_ns);
        }
    }

    pub(super) fn on_data(
        &mut self,
        d: Dir,
        seg: &Segment<'_>,
        offset: i64,
        at: PacketRef,
        budget: &mut Budget,
    ) -> PacketClass {
        let di = d.idx();
        self.history(d, 'D');
        let len = seg.payload_len;
        let handler = &mut self.handler;
        let mut gap = false;
        let class = self.streams[di].data(offset, len, seg.payload, at, budget, &mut |ev| {
            gap |= is_content_gap(&ev);
            handler.on_stream(d, ev)
        });
        let ds = &mut self.conn.dirs[di];
        if ds.first_data.is_none() {
            ds.first_data = Some(at);
        }
        ds.last_data = Some(at);
        let end = offset.saturating_add(len as i64);
        let (packet_class, span) = match class {
            DataClass::New => (PacketClass::New, Some(SpanKind::New)),
            DataClass::FillsHole => {
                ds.out_of_order += 1;
                (PacketClass::FillsHole, Some(SpanKind::FillsHole))
            }
            DataClass::Retransmission { .. } => {
                ds.retransmissions += 1;
                (PacketClass::Retransmission, Some(SpanKind::Retransmission))
            }
            DataClass::KeepAlive => {
                ds.keepalives += 1;
                (PacketClass::KeepAlive, None)
            }
        };
        if let Some(kind) = span {
            ds.add_span(offset, end, at, kind);
        }
        if matches!(class, DataClass::Retransmission { .. }) {
            self.history(d, 'T');
        }
        if gap {
            self.history(d, 'G');
        }
        packet_class
    }

    /// The receiver of direction `d` acknowledged up to `ack`.
    pub(super) fn on_ack(&mut self, d: Dir, ack: i64, at: PacketRef, budget: &mut Budget) {
        let di = d.idx();
        let ds = &mut self.conn.dirs[di];
        if ds.acked.is_none_or(|(a, _)| ack > a) {
            ds.acked = Some((ack, at));
            // Mark the spans this acknowledgement covers (bounded walk per ACK).
            let mut i = self.span_ack_cursor[di];
            let mut walked = 0;
            while i < ds.spans.len() && walked < 64 {
                let s = &mut ds.spans[i];
                if s.end > ack {
                    break;
                }
                if s.acked.is_none() {
                    s.acked = Some(at);
                }
                i += 1;
                walked += 1;
            }
            self.span_ack_cursor[di] = i;
            let handler = &mut self.handler;
            let mut gap = false;
            self.streams[di].ack(ack, at, budget, &mut |ev| {
                gap |= is_content_gap(&ev);
                handler.on_stream(d, ev)
            });
            if gap {
                self.history(d, 'G');
            }
        }
    }

    pub(super) fn finish(mut self, budget: &mut Budget) -> Box<Connection<H::Output>> {
        // How each direction ended, judged before the final flush turns holes into gaps: a FIN
        // is a clean end only if everything before it had been delivered.
        // A RST after a clean FIN (at or past the FIN's sequence number: Linux resets a socket
        // closed with unread data one past its FIN) does not undo the end the FIN made.
        let ends = [0, 1].map(|i| {
            let ds = &self.conn.dirs[i];
            let clean_fin = ds.fin.filter(|f| {
                self.streams[i].delivered_to() >= f.offset && self.streams[i].not_captured_bytes == 0
            });
            match (clean_fin, ds.rst) {
                (Some(f), Some(r)) if r.offset >= f.offset => End::Fin,
                (_, Some(_)) => End::Rst,
                (Some(_), None) => End::Fin,
                (None, None) => End::Open,
            }
        });
        let last = self.conn.last;
        for d in Dir::BOTH {
            let di = d.idx();
            let handler = &mut self.handler;
            self.streams[di].finish(last, budget, &mut |ev| handler.on_stream(d, ev));
            let s = &self.streams[di];
            let ds = &mut self.conn.dirs[di];
            ds.bytes = s.bytes_seen();
            ds.gaps = s.gaps();
            ds.gaps_approximate = s.gaps_approximate();
            ds.conflicts = s.conflicts;
            ds.acked_unseen = s.not_captured_bytes;
            ds.snaplen_cut = s.snaplen_bytes;
            ds.abandoned = s.abandoned_bytes;
            ds.data_start = s.first();
            ds.data_end = s.end();
            if s.conflicts > 0 {
                self.conn.anomalies.note(AnomalyKind::TcpOverlapConflict, None);
            }
            if s.overflowed {
                self.conn
                    .anomalies
                    .note(AnomalyKind::TcpReassemblyBufferFull, None);
            }
            if ds.gaps > 0 || ds.acked_unseen > 0 {
                self.history(d, 'G');
            }
        }
        self.conn.state = conn_state(&self.conn);
        let Live { conn, handler, .. } = self;
        let app = handler.finish(ends);
        Box::new(Connection {
            index: conn.index,
            client: conn.client,
            server: conn.server,
            first: conn.first,
            last: conn.last,
            capture_ended: conn.capture_ended,
            packets: conn.packets,
            syn: conn.syn,
            syn_count: conn.syn_count,
            syn_ack: conn.syn_ack,
            syn_ack_count: conn.syn_ack_count,
            client_isn: conn.client_isn,
            server_isn: conn.server_isn,
            established: conn.established,
            roles_guessed: conn.roles_guessed,
            client_is_local: conn.client_is_local,
            state: conn.state,
            history: conn.history,
            dirs: conn.dirs,
            anomalies: conn.anomalies,
            log: conn.log,
            icmp: conn.icmp,
            icmp_count: conn.icmp_count,
            app,
        })
    }
}

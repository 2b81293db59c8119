//! Sync: gaps (bytes the capture does not have), losing sync where the framing cannot follow
//! them, stops, and looking for the next message start (a line that is a start line).

use super::chunked::{Body, Chunk};
use super::message_head::HeadBuf;
use super::response::Pending;
use super::{Cut, Held, MAX_HUNT_LINE, MAX_HUNT_MARKS, Parser, State, add, add64, append, what};
use crate::anomaly::AnomalyKind;
use crate::http::head;
use crate::http::pairing::{Lost, ReqEntry};
use crate::http::{MAX_STOPS, Stop, StopKind};
use crate::tcp::{Dir, GapKind, PacketRef};

/// Looking for a start line.
#[derive(Debug, Default)]
pub(super) struct Hunt {
    /// The current line (from a line start, a packet start or a gap), capped.
    pub(super) line: Vec<u8>,
    pub(super) offset: i64,
    pub(super) at: PacketRef,
    /// The line grew past the cap: it is no start line.
    pub(super) overflow: bool,
    /// Packet starts inside the line: a message may start there (after a binary body).
    pub(super) marks: Vec<(usize, PacketRef)>,
    /// The next bytes are the start of a packet's data.
    pub(super) fresh: bool,
    /// The current line began at the start of a packet's data.
    pub(super) line_at_packet: bool,
    /// After a loss of sync (not the first message of a stream captured mid-connection).
    pub(super) resync: bool,
}

impl Hunt {
    pub(super) fn resync() -> Hunt {
        Hunt {
            resync: true,
            ..Hunt::default()
        }
    }

    pub(super) fn reset(&mut self) {
        self.line.clear();
        self.overflow = false;
        self.marks.clear();
        self.fresh = false;
        self.line_at_packet = false;
    }

    pub(super) fn packet_start(&mut self, at: PacketRef) {
        if self.overflow {
            self.reset();
        }
        if self.line.is_empty() {
            self.fresh = true;
        } else if self.marks.len() < MAX_HUNT_MARKS {
            self.marks.push((self.line.len(), at));
        }
    }

    /// Where the current line, cut short by snaplen, may hold the start of a message: its start
    /// if that was a packet start, and the packet starts inside it.
    pub(super) fn cut_starts(&self) -> impl Iterator<Item = (usize, PacketRef)> + '_ {
        let own = (self.line_at_packet && !self.overflow).then_some((0, self.at));
        own.into_iter()
            .chain(self.marks.iter().copied().filter(|_| !self.overflow))
    }
}

pub(super) fn gap_kind(kind: GapKind) -> &'static str {
    match kind {
        GapKind::NotCaptured => "not captured: the receiver acknowledged them",
        GapKind::Snaplen => "cut by snaplen",
        GapKind::Missing => "never seen",
        GapKind::Abandoned => "abandoned by reassembly",
    }
}

/// The stop a gap of `kind` makes: `snaplen` when snaplen cut the bytes, `gap` when the capture
/// lacks them.
fn gap_stop(kind: GapKind, snaplen: StopKind, gap: StopKind) -> StopKind {
    match kind {
        GapKind::Snaplen => snaplen,
        GapKind::Abandoned => StopKind::ReassemblyAbandoned,
        GapKind::NotCaptured | GapKind::Missing => gap,
    }
}

/// What a gap of `kind` took from the direction: bytes snaplen cut, or bytes the capture lacks.
fn lost_to(kind: GapKind) -> Lost {
    if kind == GapKind::Snaplen {
        Lost::Cut
    } else {
        Lost::Gap
    }
}

impl Parser {
    /// Looking for a message start: the first of a stream captured mid-connection, or the next
    /// one after a loss of sync.
    pub(super) fn hunt(&mut self, d: Dir, offset: i64, data: &[u8], at: PacketRef) -> usize {
        let cap = MAX_HUNT_LINE.min(self.limits.max_header_bytes);
        let State::Hunt(h) = &mut self.sides[d.idx()].state else {
            return 0;
        };
        let nl = data.iter().position(|&b| b == b'\n');
        let n = nl.map_or(data.len(), |i| i + 1);
        if h.line.is_empty() && !h.overflow {
            h.offset = offset;
            h.at = at;
            h.line_at_packet = h.fresh;
        }
        h.fresh = false;
        if !h.overflow {
            if h.line.len().saturating_add(n) <= cap {
                append(&mut h.line, &data[..n], cap);
            } else {
                h.overflow = true;
            }
        }
        if nl.is_none() {
            return n;
        }
        let found = if h.overflow {
            None
        } else {
            std::iter::once((0, h.at))
                .chain(h.marks.iter().copied())
                .find(|&(p, _)| h.line.get(p..).is_some_and(|l| head::is_start_line(d, l)))
        };
        let Some((p, p_at)) = found else {
            h.reset();
            // Not a message start: still the message whose head snaplen cut, if any.
            if let Some(c) = &mut self.sides[d.idx()].cut {
                c.last = at;
            }
            return n;
        };
        let start = add(h.offset, p);
        let line = h.line.get(p..).unwrap_or_default().to_vec();
        let resync = h.resync;
        let orphan = d == Dir::ServerToClient && !self.from_start && !self.sides[0].started;
        let side = self.side(d);
        side.started = true;
        let mut hb = HeadBuf::new(start, p_at, !resync, orphan);
        hb.first_nl = line.len().checked_sub(1);
        hb.scan = 1;
        hb.line_ok = true;
        hb.last = at;
        hb.buf = line;
        hb.hunted = Some(resync);
        side.state = State::Head(hb);
        self.http_seen = true;
        n
    }

    /// A gap while looking for a message start. Snaplen keeps the first bytes of every packet:
    /// a line it cut that began at a packet start may still show a message start.
    pub(super) fn hunt_gap(&mut self, d: Dir, offset: i64, len: u64, kind: GapKind, at: PacketRef) {
        let State::Hunt(h) = &mut self.sides[d.idx()].state else {
            return;
        };
        let resync = h.resync;
        let found = if kind == GapKind::Snaplen {
            h.cut_starts()
                .find(|&(p, _)| h.line.get(p..).is_some_and(|l| head::is_cut_start(d, l)))
                .map(|(p, p_at)| {
                    (
                        add(h.offset, p),
                        h.line.get(p..).unwrap_or_default().to_vec(),
                        p_at,
                    )
                })
        } else {
            None
        };
        h.reset();
        let Some((start, line, p_at)) = found else {
            if kind == GapKind::NotCaptured && !resync {
                // Bytes the receiver acknowledged, missing before the first message found: they
                // left while the capture ran (where the peer's first ACK put the stream's start),
                // so messages were lost there, not sent before the capture.
                let reason = format!(
                    "gap of {len} bytes where the next {} would start, at offset {offset} ({})",
                    what(d),
                    gap_kind(kind)
                );
                self.lose_sync(d, offset, StopKind::GapAtMessageStart, reason, Lost::Gap, at);
                return;
            }
            if kind == GapKind::Snaplen {
                // Still the message whose head snaplen cut, if any.
                if let Some(c) = &mut self.side(d).cut {
                    c.missing = c.missing.saturating_add(len);
                    c.last = at;
                }
            } else if resync {
                // Requests may hide in these bytes too (already lost: one stretch).
                let ts = self.sides[d.idx()].last_ts.unwrap_or(at.ts_ns);
                if d == Dir::ClientToServer {
                    self.push_lost(ts, Lost::Gap);
                }
            }
            return;
        };
        let orphan = d == Dir::ServerToClient && !self.from_start && !self.sides[0].started;
        self.side(d).started = true;
        self.http_seen = true;
        let mut hb = HeadBuf::new(start, p_at, !resync, orphan);
        hb.line_ok = true;
        hb.hunted = Some(resync);
        let entry = self.record_partial(d, &hb, &line);
        let reason = format!(
            "snaplen cut the {} headers at offset {offset} ({len} bytes not captured)",
            what(d)
        );
        self.lose_sync(d, offset, StopKind::SnaplenInHead, reason, Lost::Cut, at);
        if let Some(entry) = entry {
            self.side(d).cut = Some(Cut {
                entry,
                offset: start,
                missing: len,
                last: at,
            });
        }
    }

    /// A message found by looking for it is confirmed: say where parsing resumed (or how many
    /// bytes a mid-stream capture skipped before its first message).
    pub(super) fn found(&mut self, d: Dir, h: &HeadBuf) {
        match h.hunted {
            Some(true) => self.resumed(d, h.offset),
            Some(false) => {
                let side = self.side(d);
                let first = side.first_offset.unwrap_or(h.offset);
                side.skipped = Some(h.offset.saturating_sub(first).max(0) as u64);
            }
            None => {}
        }
    }

    /// Parsing found the next message at `offset` after a loss of sync.
    pub(super) fn resumed(&mut self, d: Dir, offset: i64) {
        if let Some(i) = self.side(d).open_stop.take() {
            if let Some(stop) = self.stopped.get_mut(i) {
                stop.resumed = Some(offset);
            }
        }
        self.end_cut(d, offset, true);
    }

    /// The message whose head snaplen cut ran until `end` (`complete`: the next message started
    /// there, after nothing but snaplen-cut bytes).
    pub(super) fn end_cut(&mut self, d: Dir, end: i64, complete: bool) {
        let Some(c) = self.side(d).cut.take() else {
            return;
        };
        let msg = match d {
            Dir::ClientToServer => match self.reqs.get_mut(c.entry) {
                Some(ReqEntry::Msg { msg, .. }) => msg,
                _ => return,
            },
            Dir::ServerToClient => match self.resps.get_mut(c.entry).and_then(|r| r.msg.as_mut()) {
                Some(msg) => msg,
                None => return,
            },
        };
        let span = end.saturating_sub(c.offset).max(0) as u64;
        msg.bytes = msg.bytes.max(span);
        msg.missing = c.missing.min(msg.bytes);
        msg.complete = complete;
        msg.last = c.last;
    }

    /// Bytes the capture does not have.
    pub(super) fn gap(&mut self, d: Dir, offset: i64, len: u64, kind: GapKind, at: PacketRef) {
        while self.paused(d) {
            if self.fits(d, 0) {
                self.side(d).held.push_front(Held::Gap {
                    offset,
                    len,
                    kind,
                    at,
                });
                return;
            }
            self.give_up(d);
        }
        // Bytes the capture lost (not cut by snaplen) end what is known of a message whose head
        // snaplen cut.
        if kind != GapKind::Snaplen {
            self.end_cut(d, offset, false);
        }
        let lost = lost_to(kind);
        let w = what(d);
        match &mut self.sides[d.idx()].state {
            State::Idle => {
                let reason = if kind == GapKind::Snaplen {
                    format!("snaplen cut {len} bytes where the next {w} would start, at offset {offset}")
                } else {
                    format!(
                        "gap of {len} bytes where the next {w} would start, at offset {offset} ({})",
                        gap_kind(kind)
                    )
                };
                let stop = gap_stop(kind, StopKind::SnaplenAtMessageStart, StopKind::GapAtMessageStart);
                self.lose_sync(d, offset, stop, reason, lost, at);
            }
            State::Hunt(_) => self.hunt_gap(d, offset, len, kind, at),
            State::Head(_) => self.gap_in_head(d, offset, len, kind, lost, at),
            State::Body(_) => self.gap_in_body(d, offset, len, kind, at),
            State::AwaitRequest(_) | State::AwaitTunnel(_) | State::Tunnel | State::Done => {}
        }
    }

    /// A gap inside a head: what is known of the message is kept, and sync is lost.
    fn gap_in_head(&mut self, d: Dir, offset: i64, len: u64, kind: GapKind, lost: Lost, at: PacketRef) {
        let w = what(d);
        let State::Head(h) = std::mem::replace(&mut self.side(d).state, State::Idle) else {
            return;
        };
        let entry = self.record_partial(d, &h, &h.buf);
        let reason = if kind == GapKind::Snaplen {
            format!("snaplen cut the {w} headers at offset {offset} ({len} bytes not captured)")
        } else {
            format!(
                "gap of {len} bytes inside the {w} headers at offset {offset} ({})",
                gap_kind(kind)
            )
        };
        let stop = gap_stop(kind, StopKind::SnaplenInHead, StopKind::GapInHead);
        self.lose_sync(d, offset, stop, reason, lost, at);
        if let (GapKind::Snaplen, Some(entry)) = (kind, entry) {
            self.side(d).cut = Some(Cut {
                entry,
                offset: h.offset,
                missing: len,
                last: at,
            });
        }
    }

    /// A gap inside a body: counted as missing body bytes while the framing can follow it (a
    /// length, until the close, chunk data), else sync is lost.
    fn gap_in_body(&mut self, d: Dir, offset: i64, len: u64, kind: GapKind, at: PacketRef) {
        let w = what(d);
        let State::Body(cur) = &mut self.sides[d.idx()].state else {
            return;
        };
        let counted = match &mut cur.body {
            Body::Length(left) | Body::Chunked(Chunk::Data(left)) => len.min(*left),
            Body::UntilClose => len,
            Body::Chunked(_) => 0,
        };
        let msg = &mut cur.msg;
        msg.bytes = msg.bytes.saturating_add(counted);
        msg.body_bytes = msg.body_bytes.saturating_add(counted);
        msg.missing = msg.missing.saturating_add(counted);
        let rest = len - counted;
        let rest_offset = add64(offset, counted);
        match &mut cur.body {
            Body::UntilClose => {}
            Body::Length(left) => {
                *left -= counted;
                if *left == 0 {
                    self.complete(d);
                    if rest > 0 {
                        // The body is whole; the rest of the gap is where the next
                        // message starts.
                        self.gap(d, rest_offset, rest, kind, at);
                    }
                }
            }
            Body::Chunked(Chunk::Data(left)) if rest == 0 => {
                *left -= counted;
                if *left == 0 {
                    cur.body = Body::Chunked(Chunk::DataEnd { cr: false });
                }
            }
            Body::Chunked(Chunk::Data(_)) => {
                let reason = format!(
                    "gap of {len} bytes runs past the end of a chunk of the {w} body at offset {offset} ({}): the chunk framing is lost",
                    gap_kind(kind)
                );
                self.lose_in_body(d, rest_offset, kind, reason, at);
            }
            Body::Chunked(_) => {
                let reason = if kind == GapKind::Snaplen {
                    format!(
                        "snaplen cut the chunk framing of the {w} body at offset {offset} ({len} bytes not captured)"
                    )
                } else {
                    format!(
                        "gap of {len} bytes inside the chunk framing of the {w} body at offset {offset} ({})",
                        gap_kind(kind)
                    )
                };
                self.lose_in_body(d, offset, kind, reason, at);
            }
        }
    }

    /// A gap inside a body whose framing cannot follow it: the message is kept, incomplete, and
    /// the direction looks for the next message.
    fn lose_in_body(&mut self, d: Dir, offset: i64, gap: GapKind, reason: String, at: PacketRef) {
        if let State::Body(cur) = std::mem::replace(&mut self.side(d).state, State::Idle) {
            self.commit(d, *cur);
        }
        let stop = gap_stop(gap, StopKind::SnaplenInBody, StopKind::GapInBody);
        self.lose_sync(d, offset, stop, reason, lost_to(gap), at);
    }

    /// Parsing of direction `d` lost sync at `offset` (the message there, if any, was kept):
    /// a stop, and the looking for the next message start.
    pub(super) fn lose_sync(
        &mut self,
        d: Dir,
        offset: i64,
        kind: StopKind,
        reason: String,
        lost: Lost,
        at: PacketRef,
    ) {
        let side = self.side(d);
        let ts = side.last_ts.unwrap_or(at.ts_ns);
        side.state = State::Hunt(Hunt::resync());
        side.lost = true;
        if d == Dir::ClientToServer {
            self.push_lost(ts, lost);
        }
        self.stop(d, offset, (kind, None), reason);
    }

    /// Records a stop, of `kind` with the anomaly noted with it if any (at most `MAX_STOPS` per
    /// direction; the others are counted).
    pub(super) fn stop(
        &mut self,
        d: Dir,
        offset: i64,
        kind: (StopKind, Option<AnomalyKind>),
        reason: String,
    ) {
        let side = &mut self.sides[d.idx()];
        side.open_stop = None;
        if side.stops >= MAX_STOPS {
            self.stops_not_kept += 1;
            return;
        }
        side.stops += 1;
        self.stopped.push(Stop {
            dir: d,
            offset,
            kind: kind.0,
            anomaly: kind.1,
            reason,
            resumed: None,
        });
        side.open_stop = Some(self.stopped.len() - 1);
    }

    /// Stops parsing direction `d` at `offset` for good (an error): the message in progress is
    /// kept, incomplete.
    pub(super) fn halt(
        &mut self,
        d: Dir,
        offset: i64,
        reason: String,
        anomaly: Option<(AnomalyKind, PacketRef)>,
    ) {
        if let Some((name, at)) = anomaly {
            self.anomalies.note(name, Some(at.frame));
        }
        let kind = match anomaly {
            Some((name, _)) => (StopKind::ParseError, Some(name)),
            None => (StopKind::InternalError, None),
        };
        let side = self.side(d);
        let state = std::mem::replace(&mut side.state, State::Done);
        side.held.clear();
        side.held_bytes = 0;
        let ts = side.last_ts;
        match state {
            State::Body(cur) => self.commit(d, *cur),
            State::AwaitRequest(p) => {
                let Pending { msg, meta, .. } = *p;
                self.push_response(Some(msg), meta);
            }
            _ => {}
        }
        self.end_cut(d, offset, false);
        if d == Dir::ClientToServer {
            // Requests may follow in the bytes that are not parsed anymore.
            self.push_lost(ts.unwrap_or(i64::MAX), Lost::Unparsed);
        }
        self.stop(d, offset, kind, reason);
        self.side(d).open_stop = None;
    }
}

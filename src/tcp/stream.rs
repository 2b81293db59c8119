//! Reassembly of one direction of a connection, in stream offsets (see `seq`).
//!
//! Bytes are delivered in order, exactly once, to the consumer (HTTP): the first copy seen wins
//! (as in Wireshark and Zeek), later copies are compared with it where the original is still held.
//! A hole is waited for (the out-of-order data after it is buffered) until one of:
//! - the receiver ACKs past it: the receiver got those bytes and the capture did not
//!   (a capture drop: [`GapKind::NotCaptured`]);
//! - the buffer would exceed its cap ([`GapKind::Abandoned`]);
//! - the connection ends ([`GapKind::Missing`]).
//!
//! Bytes that snaplen cut from a packet are a [`GapKind::Snaplen`] gap at once.
//!
//! Memory: the set of offsets seen (one range per hole), the out-of-order buffer (capped per
//! direction and in total by the caller's [`Budget`]), and a small ring of the last bytes
//! delivered, for comparing retransmissions. Payload is not kept once delivered.

use std::collections::BTreeMap;

use super::{GapKind, PacketRef, StreamEvent};

/// The most bytes one direction may hold out of order.
pub const MAX_PENDING_PER_DIRECTION: usize = 1024 * 1024;
/// The most disjoint ranges (holes + 1) one direction tracks exactly; beyond, the smallest
/// new hole is treated as seen and the gap count becomes a lower bound.
pub(crate) const MAX_RANGES: usize = 4096;
/// What one buffered out-of-order segment costs beside its bytes (its map entry, its allocation),
/// charged to the caps with them: without it, a flood of 1-byte segments would hold a hundred
/// times the cap in bookkeeping (measured: about 115 bytes per entry).
pub(crate) const PENDING_OVERHEAD: usize = 128;

/// What a buffered segment of `bytes` captured bytes counts against the caps.
fn pending_cost(bytes: usize) -> usize {
    bytes + PENDING_OVERHEAD
}

/// What the ranges of offsets seen cost in their map (an estimate): its first B-tree node, then
/// per range (nodes hold up to 11).
const RANGE_NODE_BYTES: usize = 192;
const RANGE_BYTES: usize = 32;

/// How many of the last delivered bytes are kept to compare retransmissions with.
const RECENT_BYTES: usize = 2048;

/// Out-of-order bytes all connections of a capture may hold together.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Budget {
    pub remaining: usize,
}

/// What a data segment was, relative to what this direction had already seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DataClass {
    /// Only new bytes, at the highest offset so far (or after a hole).
    New,
    /// Only new bytes, below the highest offset: it fills a hole (out of order, or the
    /// retransmission of a segment this capture never saw).
    FillsHole,
    /// Some or all of its bytes had been seen: a retransmission.
    Retransmission { partial: bool },
    /// One byte just below the highest offset, already seen: a keep-alive probe.
    KeepAlive,
}

/// The sorted, disjoint ranges of offsets seen.
#[derive(Clone, Debug, Default)]
struct RangeSet {
    map: BTreeMap<i64, i64>,
    /// Bytes inside ranges that were really seen (exact unless `approximate`).
    seen: u64,
    approximate: bool,
}

impl RangeSet {
    /// Adds [s, e); returns how many of its bytes were not in the set before.
    fn insert(&mut self, s: i64, e: i64) -> u64 {
        if e <= s {
            return 0;
        }
        // Fast path: in order, extending the last range.
        if let Some(mut last) = self.map.last_entry() {
            let (ls, le) = (*last.key(), *last.get());
            if ls <= s && s <= le {
                let newly = (e - le).max(0) as u64;
                if e > le {
                    *last.get_mut() = e;
                }
                self.seen += newly;
                return newly;
            }
        }
        let (mut ns, mut ne) = (s, e);
        let mut covered = 0u64;
        // Every range overlapping or touching [s, e] has start <= e and end >= s; ranges are
        // disjoint and sorted, so walking back from the last start <= e finds them all.
        while let Some((&rs, &re)) = self.map.range(..=e).next_back() {
            if re < s {
                break;
            }
            covered += (re.min(e) - rs.max(s)).max(0) as u64;
            ns = ns.min(rs);
            ne = ne.max(re);
            self.map.remove(&rs);
        }
        self.map.insert(ns, ne);
        let newly = (e - s) as u64 - covered;
        self.seen += newly;
        if self.map.len() > MAX_RANGES {
            // Too many holes: close the one just below the new range (hostile or hopeless).
            if let Some((&ps, _)) = self.map.range(..ns).next_back() {
                self.map.remove(&ns);
                self.map.insert(ps, ne);
                self.approximate = true;
            }
        }
        newly
    }

    fn first(&self) -> Option<i64> {
        self.map.first_key_value().map(|(&s, _)| s)
    }

    fn end(&self) -> Option<i64> {
        self.map.last_key_value().map(|(_, &e)| e)
    }

    /// Bytes between `start` (or the first byte seen, if earlier) and the last byte seen that
    /// were never seen.
    fn gaps(&self, start: Option<i64>) -> u64 {
        match (self.first(), self.end()) {
            (Some(s), Some(e)) => {
                let s = start.map_or(s, |st| st.min(s));
                ((e - s) as u64).saturating_sub(self.seen)
            }
            _ => 0,
        }
    }
}

/// A buffered out-of-order segment.
#[derive(Clone, Debug)]
struct Pending {
    wire_len: u32,
    bytes: Vec<u8>,
    at: PacketRef,
}

/// The last bytes delivered, addressed by offset: a ring of at most `RECENT_BYTES`, filled by
/// block copies. It grows with what was delivered (a short connection holds what it carried), and
/// restarts after a gap.
#[derive(Clone, Debug, Default)]
struct Recent {
    buf: Vec<u8>,
    /// The offset held at `buf[0]` before the ring first wrapped; ring index = (offset − base) mod N.
    base: i64,
    /// Offsets [start, end) are held; `end` is where delivery stands.
    start: i64,
    end: i64,
}

impl Recent {
    fn push(&mut self, offset: i64, bytes: &[u8]) {
        if offset != self.end {
            self.reset(offset);
        }
        let mut rest = bytes;
        // Filling: append.
        if self.buf.len() < RECENT_BYTES {
            let n = (RECENT_BYTES - self.buf.len()).min(rest.len());
            if self.buf.len() + n > self.buf.capacity() {
                // Straight to the whole ring once a second segment comes: doubling from a
                // segment's size took several reallocations per direction.
                let want = if self.buf.is_empty() { n } else { RECENT_BYTES };
                self.buf.reserve_exact(want - self.buf.len());
            }
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            self.end += n as i64;
        }
        if rest.is_empty() {
            return;
        }
        // Full: only the last RECENT_BYTES of the rest can stay; copy them around the ring.
        if rest.len() > RECENT_BYTES {
            self.end += (rest.len() - RECENT_BYTES) as i64;
            rest = &rest[rest.len() - RECENT_BYTES..];
        }
        let mut pos = (self.end - self.base).rem_euclid(RECENT_BYTES as i64) as usize;
        while !rest.is_empty() {
            let n = (RECENT_BYTES - pos).min(rest.len());
            self.buf[pos..pos + n].copy_from_slice(&rest[..n]);
            rest = &rest[n..];
            self.end += n as i64;
            pos = 0;
        }
        self.start = self.end - RECENT_BYTES as i64;
    }

    /// Forget everything (after a gap, delivery restarts elsewhere).
    fn reset(&mut self, at: i64) {
        self.buf.clear();
        self.base = at;
        self.start = at;
        self.end = at;
    }

    /// Does `bytes` at `offset` differ from what was delivered there (where still held)?
    fn differs(&self, offset: i64, bytes: &[u8]) -> bool {
        let s = offset.max(self.start);
        let e = (offset + bytes.len() as i64).min(self.end);
        (s..e).any(|o| {
            let idx = (o - self.base).rem_euclid(RECENT_BYTES as i64) as usize;
            self.buf
                .get(idx)
                .is_some_and(|&b| b != bytes[(o - offset) as usize])
        })
    }
}

#[cfg(test)]
mod recent_tests {
    use super::*;

    /// The ring against a naive model: the whole stream kept.
    #[test]
    fn recent_matches_a_naive_model() {
        let stream: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        for chunk in [1usize, 7, 100, 2047, 2048, 2049, 5000] {
            let mut r = Recent::default();
            r.reset(500);
            let mut at = 0;
            while at < stream.len() {
                let e = (at + chunk).min(stream.len());
                r.push(500 + at as i64, &stream[at..e]);
                at = e;
                // every held byte equals the stream; a changed byte differs
                let lo = (r.start - 500) as usize;
                for o in [lo, (lo + at) / 2, at - 1] {
                    assert!(
                        !r.differs(500 + o as i64, &stream[o..o + 1]),
                        "chunk {chunk} at {o}"
                    );
                    assert!(
                        r.differs(500 + o as i64, &[stream[o].wrapping_add(1)]),
                        "chunk {chunk} at {o}"
                    );
                }
                assert_eq!(r.end, 500 + at as i64);
                assert!(r.end - r.start <= RECENT_BYTES as i64);
            }
        }
    }
}

/// One direction's reassembly state.
#[derive(Debug, Default)]
pub(crate) struct Reassembler {
    /// Delivery has begun at `next` (at the first data, or at offset 0 after a SYN).
    started: bool,
    /// The SYN was seen: the stream starts at offset 0, so a hole before the first byte seen
    /// is a gap too.
    origin_known: bool,
    /// Everything below has been delivered or declared a gap.
    next: i64,
    seen: RangeSet,
    pending: BTreeMap<i64, Pending>,
    pending_bytes: usize,
    recent: Recent,
    /// The highest offset the receiver acknowledged.
    acked: Option<i64>,
    /// Where the FIN is (its sequence number's offset), once seen.
    fin: Option<i64>,
    /// The packet being processed: gaps are reported with the packet that revealed them.
    now: PacketRef,
    /// Counters for the connection summary.
    pub conflicts: u64,
    pub not_captured_bytes: u64,
    pub snaplen_bytes: u64,
    pub abandoned_bytes: u64,
    pub overflowed: bool,
}

impl Reassembler {
    /// The stream starts at offset 0 (the SYN told us where).
    pub(crate) fn start_at_zero(&mut self) {
        self.origin_known = true;
        if !self.started {
            self.started = true;
            self.next = 0;
            self.recent.reset(0);
        }
    }

    /// The peer's acknowledgement said where this stream stands (offset 0) before any of its data
    /// was seen: data seen later starts there, so bytes between 0 and the first ones seen left
    /// while the capture ran, and once acknowledged they are bytes the capture missed (a capture
    /// that dropped a connection's first packets), not bytes from before it.
    pub(crate) fn expect_at_zero(&mut self) {
        if !self.started {
            self.started = true;
            self.next = 0;
            self.recent.reset(0);
        }
    }

    pub(crate) fn bytes_seen(&self) -> u64 {
        self.seen.seen
    }

    pub(crate) fn gaps(&self) -> u64 {
        self.seen.gaps(self.origin_known.then_some(0))
    }

    pub(crate) fn gaps_approximate(&self) -> bool {
        self.seen.approximate
    }

    /// The offset just past the highest byte seen.
    pub(crate) fn end(&self) -> Option<i64> {
        self.seen.end()
    }

    pub(crate) fn first(&self) -> Option<i64> {
        self.seen.first()
    }

    pub(crate) fn delivered_to(&self) -> i64 {
        self.next
    }

    /// Heap bytes held (an estimate): the ring of recent bytes, the ranges seen, what is
    /// buffered out of order (with its bookkeeping).
    pub(crate) fn heap_bytes(&self) -> usize {
        let ranges = match self.seen.map.len() {
            0 => 0,
            n => RANGE_NODE_BYTES + n * RANGE_BYTES,
        };
        self.recent.buf.capacity() + ranges + self.pending_bytes
    }

    pub(crate) fn set_fin(&mut self, offset: i64) {
        if self.fin.is_none() {
            self.fin = Some(offset);
        }
    }

    /// A segment with payload: classify it, remember it, deliver what is now in order.
    pub(crate) fn data(
        &mut self,
        offset: i64,
        wire_len: u32,
        captured: &[u8],
        at: PacketRef,
        budget: &mut Budget,
        emit: &mut impl FnMut(StreamEvent<'_>),
    ) -> DataClass {
        self.now = at;
        let end = offset + wire_len as i64;
        let highest = self.seen.end();
        let newly = self.seen.insert(offset, end);
        let class = if newly == wire_len as u64 {
            match highest {
                Some(h) if offset < h => DataClass::FillsHole,
                _ => DataClass::New,
            }
        } else if wire_len == 1 && highest == Some(end) {
            DataClass::KeepAlive
        } else {
            DataClass::Retransmission { partial: newly > 0 }
        };
        if newly < wire_len as u64 && class != DataClass::KeepAlive && self.differs(offset, captured) {
            self.conflicts += 1;
        }

        if !self.started {
            self.started = true;
            self.next = offset;
            self.recent.reset(offset);
        }
        if end <= self.next {
            return class;
        }
        if offset > self.next {
            let want = pending_cost(captured.len());
            let fits_direction = self.pending_bytes + want <= MAX_PENDING_PER_DIRECTION;
            if fits_direction && want <= budget.remaining {
                match self.pending.get(&offset) {
                    // Keep the first copy unless the new one reaches further.
                    Some(p) if p.wire_len >= wire_len => {}
                    _ => {
                        if let Some(old) = self.pending.insert(
                            offset,
                            Pending {
                                wire_len,
                                bytes: captured.to_vec(),
                                at,
                            },
                        ) {
                            self.pending_bytes -= pending_cost(old.bytes.len());
                            budget.remaining += pending_cost(old.bytes.len());
                        }
                        self.pending_bytes += want;
                        budget.remaining -= want;
                    }
                }
                self.flush_acked(budget, emit);
                return class;
            }
            // No room to wait for the hole: give up on everything below this segment.
            self.overflowed = true;
            self.drain_until(offset, GapKind::Abandoned, budget, emit);
        }
        self.deliver(offset, wire_len, captured, at, emit);
        self.drain_pending(budget, emit);
        self.flush_acked(budget, emit);
        class
    }

    /// The receiver acknowledged everything below `offset`.
    pub(crate) fn ack(
        &mut self,
        offset: i64,
        at: PacketRef,
        budget: &mut Budget,
        emit: &mut impl FnMut(StreamEvent<'_>),
    ) {
        if self.acked.is_none_or(|a| offset > a) {
            self.now = at;
            self.acked = Some(offset);
            self.flush_acked(budget, emit);
        }
    }

    /// End of the connection: deliver everything held, with gaps for what never came, including
    /// bytes the receiver acknowledged after the last byte this capture saw.
    pub(crate) fn finish(
        &mut self,
        at: PacketRef,
        budget: &mut Budget,
        emit: &mut impl FnMut(StreamEvent<'_>),
    ) {
        self.now = at;
        if !self.started {
            return;
        }
        let last_pending = self.pending.last_key_value().map(|(&o, p)| o + p.wire_len as i64);
        if let Some(e) = last_pending {
            self.drain_until(e, GapKind::Missing, budget, emit);
        }
        // Acknowledged but never seen, after the last byte seen. An ACK one past the data is
        // the FIN's, not a byte.
        if let Some(mut a) = self.acked_data_limit() {
            // Without a FIN seen, an ACK exactly one past the data acknowledges an unseen FIN,
            // not a byte (a FIN and data both unseen are then one byte over-counted).
            if self.fin.is_none() && a == self.next + 1 {
                a -= 1;
            }
            if a > self.next {
                self.gap(a - self.next, GapKind::NotCaptured, emit);
            }
        }
    }

    /// How far acknowledgements say data went (the FIN's sequence number is not data).
    fn acked_data_limit(&self) -> Option<i64> {
        let a = self.acked?;
        Some(match self.fin {
            Some(f) => a.min(f),
            None => a,
        })
    }

    fn differs(&self, offset: i64, captured: &[u8]) -> bool {
        if self.recent.differs(offset, captured) {
            return true;
        }
        // Against out-of-order copies not yet delivered.
        let end = offset + captured.len() as i64;
        self.pending.range(..end).rev().take(8).any(|(&po, p)| {
            let s = offset.max(po);
            let e = end.min(po + p.bytes.len() as i64);
            s < e
                && captured[(s - offset) as usize..(e - offset) as usize]
                    != p.bytes[(s - po) as usize..(e - po) as usize]
        })
    }

    /// Delivers a segment that starts at or before `next` and ends after it.
    fn deliver(
        &mut self,
        offset: i64,
        wire_len: u32,
        captured: &[u8],
        at: PacketRef,
        emit: &mut impl FnMut(StreamEvent<'_>),
    ) {
        let end = offset + wire_len as i64;
        let skip = (self.next - offset).max(0) as usize;
        if skip < captured.len() {
            let bytes = &captured[skip..];
            emit(StreamEvent::Data {
                offset: self.next,
                bytes,
                at,
            });
            self.recent.push(self.next, bytes);
            self.next += bytes.len() as i64;
        }
        if self.next < end {
            // snaplen cut the rest of this segment
            let len = end - self.next;
            self.snaplen_bytes += len as u64;
            self.gap(len, GapKind::Snaplen, emit);
        }
    }

    fn gap(&mut self, len: i64, kind: GapKind, emit: &mut impl FnMut(StreamEvent<'_>)) {
        if len <= 0 {
            return;
        }
        emit(StreamEvent::Gap {
            offset: self.next,
            len: len as u64,
            kind,
            at: self.now,
        });
        match kind {
            GapKind::NotCaptured => self.not_captured_bytes += len as u64,
            GapKind::Abandoned => self.abandoned_bytes += len as u64,
            GapKind::Snaplen | GapKind::Missing => {}
        }
        self.next += len;
        self.recent.reset(self.next);
    }

    /// Delivers buffered segments that are now in order.
    fn drain_pending(&mut self, budget: &mut Budget, emit: &mut impl FnMut(StreamEvent<'_>)) {
        while let Some(entry) = self.pending.first_entry() {
            if *entry.key() > self.next {
                break;
            }
            let (offset, p) = entry.remove_entry();
            self.pending_bytes -= pending_cost(p.bytes.len());
            budget.remaining += pending_cost(p.bytes.len());
            if offset + p.wire_len as i64 > self.next {
                self.deliver(offset, p.wire_len, &p.bytes, p.at, emit);
            }
        }
    }

    /// Declares every hole below `limit` a gap of `kind`, delivering the buffered data between.
    fn drain_until(
        &mut self,
        limit: i64,
        kind: GapKind,
        budget: &mut Budget,
        emit: &mut impl FnMut(StreamEvent<'_>),
    ) {
        while self.next < limit {
            self.drain_pending(budget, emit);
            if self.next >= limit {
                break;
            }
            let hole_end = self
                .pending
                .first_key_value()
                .map_or(limit, |(&o, _)| o.min(limit));
            self.gap(hole_end - self.next, kind, emit);
        }
        self.drain_pending(budget, emit);
    }

    /// Holes the receiver acknowledged were received: the capture missed them. Only holes with
    /// data seen after them are declared here; acknowledged bytes past the last byte seen wait,
    /// in case the capture shows them late, until data arrives beyond them or the end.
    fn flush_acked(&mut self, budget: &mut Budget, emit: &mut impl FnMut(StreamEvent<'_>)) {
        let Some(acked) = self.acked_data_limit() else {
            return;
        };
        if acked <= self.next {
            return;
        }
        let Some((&first, _)) = self.pending.first_key_value() else {
            return;
        };
        if first <= acked {
            self.drain_until(first, GapKind::NotCaptured, budget, emit);
            // More holes further on may be acknowledged too.
            if self.pending.first_key_value().is_some_and(|(&o, _)| o <= acked) {
                self.flush_acked(budget, emit);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::FrameRef;

    fn at(frame: u32) -> PacketRef {
        PacketRef {
            frame: FrameRef { file: 0, frame },
            ts_ns: frame as i64,
        }
    }

    /// Runs segments (offset, bytes) through a reassembler and returns what was delivered, with
    /// gaps as '_' characters (kind noted separately).
    struct Run {
        r: Reassembler,
        budget: Budget,
        out: Vec<u8>,
        gaps: Vec<(i64, u64, GapKind)>,
    }

    impl Run {
        fn new() -> Run {
            Run {
                r: Reassembler::default(),
                budget: Budget { remaining: 1 << 30 },
                out: Vec::new(),
                gaps: Vec::new(),
            }
        }
        fn seg(&mut self, offset: i64, bytes: &[u8]) -> DataClass {
            self.seg_cut(offset, bytes.len() as u32, bytes)
        }
        fn seg_cut(&mut self, offset: i64, wire: u32, bytes: &[u8]) -> DataClass {
            let (out, gaps) = (&mut self.out, &mut self.gaps);
            self.r
                .data(offset, wire, bytes, at(1), &mut self.budget, &mut |e| match e {
                    StreamEvent::Data { bytes, .. } => out.extend_from_slice(bytes),
                    StreamEvent::Gap {
                        offset, len, kind, ..
                    } => {
                        gaps.push((offset, len, kind));
                        out.extend(std::iter::repeat_n(b'_', len as usize));
                    }
                })
        }
        fn ack(&mut self, offset: i64) {
            let (out, gaps) = (&mut self.out, &mut self.gaps);
            self.r.ack(offset, at(1), &mut self.budget, &mut |e| match e {
                StreamEvent::Data { bytes, .. } => out.extend_from_slice(bytes),
                StreamEvent::Gap {
                    offset, len, kind, ..
                } => {
                    gaps.push((offset, len, kind));
                    out.extend(std::iter::repeat_n(b'_', len as usize));
                }
            })
        }
        fn finish(&mut self) -> String {
            let (out, gaps) = (&mut self.out, &mut self.gaps);
            self.r.finish(at(1), &mut self.budget, &mut |e| match e {
                StreamEvent::Data { bytes, .. } => out.extend_from_slice(bytes),
                StreamEvent::Gap {
                    offset, len, kind, ..
                } => {
                    gaps.push((offset, len, kind));
                    out.extend(std::iter::repeat_n(b'_', len as usize));
                }
            });
            String::from_utf8(self.out.clone()).unwrap()
        }
    }

    #[test]
    fn in_order_retransmitted_and_out_of_order() {
        let mut r = Run::new();
        r.r.start_at_zero();
        assert_eq!(r.seg(0, b"hello "), DataClass::New);
        assert_eq!(r.seg(11, b" there"), DataClass::New);
        assert_eq!(r.seg(0, b"hello "), DataClass::Retransmission { partial: false });
        assert_eq!(r.seg(6, b"world"), DataClass::FillsHole);
        assert_eq!(r.seg(4, b"o wor"), DataClass::Retransmission { partial: false });
        assert_eq!(r.seg(15, b"re!!"), DataClass::Retransmission { partial: true });
        assert_eq!(r.finish(), "hello world there!!");
        assert_eq!(r.r.bytes_seen(), 19);
        assert_eq!(r.r.gaps(), 0);
        assert_eq!(r.r.conflicts, 0);
        assert!(r.gaps.is_empty());
    }

    #[test]
    fn overlap_with_different_bytes_keeps_the_first_and_counts_a_conflict() {
        let mut r = Run::new();
        r.r.start_at_zero();
        r.seg(0, b"GOOD");
        r.seg(2, b"BADX");
        // offsets 2..6: "BA" conflicts with "OD", "DX" is new
        assert_eq!(r.finish(), "GOODDX");
        assert_eq!(r.r.conflicts, 1);
        // and against a buffered out-of-order copy
        let mut r = Run::new();
        r.r.start_at_zero();
        r.seg(4, b"late");
        r.seg(4, b"LATE");
        r.seg(0, b"abcd");
        assert_eq!(r.finish(), "abcdlate");
        assert_eq!(r.r.conflicts, 1);
    }

    #[test]
    fn a_hole_acked_by_the_receiver_is_a_capture_drop() {
        let mut r = Run::new();
        r.r.start_at_zero();
        r.seg(0, b"aaaa");
        r.seg(8, b"cccc");
        assert_eq!(r.out, b"aaaa");
        r.ack(12);
        assert_eq!(r.gaps, vec![(4, 4, GapKind::NotCaptured)]);
        assert_eq!(r.finish(), "aaaa____cccc");
        assert_eq!(r.r.gaps(), 4);
        assert_eq!(r.r.not_captured_bytes, 4);
    }

    #[test]
    fn an_ack_before_the_data_after_the_hole_still_declares_it() {
        let mut r = Run::new();
        r.r.start_at_zero();
        r.seg(0, b"aaaa");
        r.ack(12);
        assert!(r.gaps.is_empty(), "a tail gap waits for later data");
        r.seg(8, b"cccc");
        assert_eq!(r.gaps, vec![(4, 4, GapKind::NotCaptured)]);
        assert_eq!(r.finish(), "aaaa____cccc");
    }

    #[test]
    fn unacked_hole_is_missing_at_the_end_and_acked_tail_is_not_captured() {
        let mut r = Run::new();
        r.r.start_at_zero();
        r.seg(0, b"aa");
        r.seg(4, b"cc");
        assert_eq!(r.finish(), "aa__cc");
        assert_eq!(r.gaps, vec![(2, 2, GapKind::Missing)]);

        let mut r = Run::new();
        r.r.start_at_zero();
        r.seg(0, b"aa");
        r.r.set_fin(6);
        r.ack(7);
        assert_eq!(r.finish(), "aa____");
        assert_eq!(r.gaps, vec![(2, 4, GapKind::NotCaptured)]);
    }

    #[test]
    fn snaplen_cut_is_a_gap_and_sync_continues() {
        let mut r = Run::new();
        r.r.start_at_zero();
        r.seg_cut(0, 10, b"abc");
        r.seg(10, b"xyz");
        assert_eq!(r.finish(), "abc_______xyz");
        assert_eq!(r.gaps, vec![(3, 7, GapKind::Snaplen)]);
        assert_eq!(r.r.bytes_seen(), 13);
        assert_eq!(r.r.gaps(), 0, "snaplen bytes were seen on the wire");
    }

    #[test]
    fn mid_stream_start_and_keepalive() {
        let mut r = Run::new();
        r.seg(100, b"abc");
        assert_eq!(r.seg(102, b"c"), DataClass::KeepAlive);
        r.seg(103, b"d");
        assert_eq!(r.finish(), "abcd");
    }

    #[test]
    fn the_buffer_cap_abandons_the_hole() {
        let mut r = Run::new();
        r.budget.remaining = pending_cost(8) + 2;
        r.r.start_at_zero();
        r.seg(0, b"a");
        r.seg(5, b"bbbbbbbb");
        r.seg(20, b"cccccccc");
        assert!(r.r.overflowed);
        assert_eq!(r.gaps[0], (1, 4, GapKind::Abandoned));
        assert_eq!(r.finish(), "a____bbbbbbbb_______cccccccc");
        assert_eq!(r.budget.remaining, pending_cost(8) + 2, "budget given back");
    }

    /// Regression (hostile input: millions of tiny out-of-order segments): 1-byte segments held
    /// out of order cost their bookkeeping too, so the per-direction cap bounds the entries, not
    /// only the payload bytes (a million entries used to be held for 1 MiB of bytes).
    #[test]
    fn one_byte_out_of_order_flood_is_capped_with_its_bookkeeping() {
        let mut r = Run::new();
        r.r.start_at_zero();
        for o in (1..200_000i64).rev() {
            r.seg(o, b"z");
            assert!(r.r.pending.len() <= MAX_PENDING_PER_DIRECTION / PENDING_OVERHEAD);
        }
        assert!(r.r.overflowed);
        r.seg(0, b"a");
        let out = r.finish();
        assert_eq!(out.len(), 200_000);
        assert!(out.ends_with('z'));
        assert!(r.gaps.iter().any(|g| g.2 == GapKind::Abandoned), "{:?}", r.gaps);
    }

    /// Any permutation, duplication and overlap of segments of a stream delivers the stream
    /// exactly once (compared with a naive model: the bytes themselves).
    #[test]
    fn shuffled_duplicated_overlapping_segments_deliver_the_stream_once() {
        let stream: Vec<u8> = (0..200u32).map(|i| b'a' + (i % 26) as u8).collect();
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rnd = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..300 {
            let mut segs = Vec::new();
            let mut o = 0;
            while o < stream.len() {
                let l = 1 + rnd(30) as usize;
                let e = (o + l).min(stream.len());
                segs.push((o, e));
                // sometimes an overlapping copy
                if rnd(3) == 0 {
                    let s2 = o.saturating_sub(rnd(10) as usize);
                    segs.push((s2, (e + rnd(10) as usize).min(stream.len())));
                }
                o = e;
            }
            for i in (1..segs.len()).rev() {
                let j = rnd(i as u64 + 1) as usize;
                segs.swap(i, j);
            }
            let mut r = Run::new();
            r.r.start_at_zero();
            for (s, e) in &segs {
                r.seg(*s as i64, &stream[*s..*e]);
            }
            assert_eq!(r.finish().as_bytes(), &stream[..]);
            assert_eq!(r.r.bytes_seen(), 200);
            assert_eq!(r.r.gaps(), 0);
            assert_eq!(r.r.conflicts, 0);
        }
    }

    #[test]
    fn many_holes_stay_bounded() {
        let mut r = Run::new();
        r.r.start_at_zero();
        for i in 0..(MAX_RANGES as i64 * 3) {
            r.seg(10 + i * 2, b"x");
        }
        assert!(r.r.seen.map.len() <= MAX_RANGES + 1);
        assert!(r.r.gaps_approximate());
    }
}

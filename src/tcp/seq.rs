//! Sequence numbers → 64-bit stream offsets, once, at the edge (as Zeek's
//! `TCP_Endpoint::ToRelativeSeqSpace`). Nothing else in bothends compares raw, wrapping `u32`s.

/// Maps the 32-bit sequence numbers of one direction to signed 64-bit offsets from its origin:
/// offset 0 is the first payload byte after the SYN (or the first sequence number seen, for a
/// connection captured mid-stream). An offset is the one nearest to the highest offset seen so far,
/// so wraparound is transparent and retransmissions of old data get small negative steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SeqSpace {
    origin: u32,
    /// The highest offset returned by `advance`: the reference for the next unwrap.
    high: i64,
}

impl SeqSpace {
    pub(crate) fn new(origin: u32) -> SeqSpace {
        SeqSpace { origin, high: 0 }
    }

    /// The offset of `seq`, without moving the reference (for ACK numbers and RST sequence numbers).
    pub(crate) fn offset(&self, seq: u32) -> i64 {
        let reference = self.origin.wrapping_add(self.high as u32);
        // The wrapping difference read as signed: the nearest of the two directions. A jump of
        // exactly 2^31 reads as backwards; either reading is as good, and neither overflows.
        let delta = seq.wrapping_sub(reference) as i32 as i64;
        self.high.saturating_add(delta)
    }

    /// The offset of `seq`, moving the reference forward when it is beyond it (for data).
    pub(crate) fn advance(&mut self, seq: u32, len: u32) -> i64 {
        let off = self.offset(seq);
        let end = off.saturating_add(len as i64);
        if end > self.high {
            self.high = end;
        }
        off
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_offsets() {
        let mut s = SeqSpace::new(1000);
        assert_eq!(s.advance(1000, 100), 0);
        assert_eq!(s.advance(1100, 100), 100);
        assert_eq!(s.offset(1050), 50);
        assert_eq!(s.offset(999), -1);
    }

    #[test]
    fn wraparound_is_transparent() {
        let mut s = SeqSpace::new(u32::MAX - 10);
        assert_eq!(s.advance(u32::MAX - 10, 8), 0);
        assert_eq!(s.advance(u32::MAX - 2, 20), 8);
        // past the wrap
        assert_eq!(s.advance(17, 5), 28);
        // a retransmission from before the wrap is still behind
        assert_eq!(s.offset(u32::MAX - 2), 8);
        // and an ACK covering everything
        assert_eq!(s.offset(22), 33);
    }

    #[test]
    fn many_wraps_keep_counting() {
        let mut s = SeqSpace::new(5);
        let mut seq = 5u32;
        let step = 1 << 30;
        for i in 0..20i64 {
            assert_eq!(s.advance(seq, step), i * step as i64);
            seq = seq.wrapping_add(step);
        }
    }

    #[test]
    fn jumps_of_half_the_space_never_overflow() {
        let mut s = SeqSpace::new(0);
        let mut seq = 0u32;
        for _ in 0..1000 {
            seq = seq.wrapping_add(1 << 31);
            // Each reading is as good as the other; what matters is no overflow, no panic.
            let o = s.advance(seq, 1);
            assert!(o.abs() < 1 << 45);
        }
    }
}

//! The one pcap writer of the project: classic pcap with nanosecond timestamps, the format the
//! reader takes first. The benchmark generators (examples/) and the test kit (tests/kit) build
//! their captures through it, so a change of format is made once and read back by the same
//! reader the users' files go through.

use std::io::{self, Write};

/// The nanosecond-resolution pcap magic number, written little-endian.
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;
/// The snaplen written in the file header (tcpdump's default). Records may be cut shorter.
const HEADER_SNAPLEN: u32 = 262_144;

/// A classic pcap file being written to `W`: the file header on creation, then one record per
/// call. Timestamps are nanoseconds since the Unix epoch (before 1970 or after 2106 they wrap,
/// as the format's 32-bit seconds do).
pub struct PcapWriter<W: Write> {
    out: W,
    /// Bytes written so far, header included.
    pub bytes: u64,
    /// Records written so far.
    pub packets: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header for link type `link` (1 Ethernet, 101 raw IP, 113 Linux cooked).
    pub fn new(mut out: W, link: u16) -> io::Result<PcapWriter<W>> {
        let mut header = Vec::with_capacity(24);
        header.extend_from_slice(&MAGIC_NANOS.to_le_bytes());
        header.extend_from_slice(&2u16.to_le_bytes());
        header.extend_from_slice(&4u16.to_le_bytes());
        for x in [0u32, 0, HEADER_SNAPLEN, u32::from(link)] {
            header.extend_from_slice(&x.to_le_bytes());
        }
        out.write_all(&header)?;
        Ok(PcapWriter {
            out,
            bytes: header.len() as u64,
            packets: 0,
        })
    }

    /// A whole frame, as captured without a snaplen.
    pub fn frame(&mut self, ts_ns: i64, frame: &[u8]) -> io::Result<()> {
        self.record(ts_ns, frame, frame.len() as u32)
    }

    /// A record of `data`, the captured part of a packet of `orig_len` bytes on the wire (at
    /// least `data`'s length is written as the original length).
    pub fn record(&mut self, ts_ns: i64, data: &[u8], orig_len: u32) -> io::Result<()> {
        let secs = ts_ns.div_euclid(1_000_000_000) as u32;
        let nanos = ts_ns.rem_euclid(1_000_000_000) as u32;
        let caplen = data.len() as u32;
        let mut header = [0u8; 16];
        for (i, x) in [secs, nanos, caplen, orig_len.max(caplen)]
            .into_iter()
            .enumerate()
        {
            header[4 * i..4 * i + 4].copy_from_slice(&x.to_le_bytes());
        }
        self.out.write_all(&header)?;
        self.out.write_all(data)?;
        self.bytes += (header.len() + data.len()) as u64;
        self.packets += 1;
        Ok(())
    }

    /// Flushes the writer (a `BufWriter`'s buffer to its file).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// What has been written to, e.g. the `Vec<u8>` that holds the file so far.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// The writer, e.g. the `Vec<u8>` that holds the file; flush a `BufWriter` through it.
    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{CaptureSet, LinkType};

    #[test]
    fn what_is_written_reads_back() {
        let mut w = PcapWriter::new(Vec::new(), 101).unwrap();
        w.frame(1_700_000_000_123_456_789, &[0x45, 0, 0, 20]).unwrap();
        w.record(1_700_000_001_000_000_001, &[0x45, 0], 1500).unwrap();
        assert_eq!((w.packets, w.bytes), (2, 24 + 16 + 4 + 16 + 2));
        let bytes = w.into_inner();
        let mut set = CaptureSet::from_bytes("mem", bytes).unwrap();
        let p = set.next().unwrap();
        assert_eq!(
            (p.ts_ns, p.data, p.orig_len),
            (1_700_000_000_123_456_789, &[0x45, 0, 0, 20][..], 4)
        );
        assert_eq!(p.link, LinkType::RAW);
        let p = set.next().unwrap();
        assert_eq!(
            (p.ts_ns, p.data.len(), p.orig_len),
            (1_700_000_001_000_000_001, 2, 1500)
        );
        assert!(set.next().is_none());
    }
}

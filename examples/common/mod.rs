//! What the capture generators (gencap, genclients) share: a deterministic random number
//! generator and capture files written through the library's pcap writer.

use std::fs::File;
use std::io::BufWriter;

use bothends::capture::PcapWriter;

/// xorshift64: the same sequence for the same seed, so generated captures are reproducible.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// A capture file being written.
pub type Pcap = PcapWriter<BufWriter<File>>;

/// Creates the capture file at `path` for frames of link type `link` (1 Ethernet, 113 Linux
/// cooked).
pub fn create(path: &str, link: u16) -> Pcap {
    let out = BufWriter::with_capacity(1 << 20, File::create(path).expect("create output"));
    PcapWriter::new(out, link).expect("write")
}

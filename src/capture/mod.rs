//! # capture: files → packets
//!
//! In: the capture files of one side (pcap or pcapng, each optionally gzip-compressed, or standard
//! input). Out: [`Packet`]s in time order, each with its 1-based frame number *in its own file*
//! (equal to Wireshark's `frame.number` when that file is opened alone), a timestamp in nanoseconds
//! since the Unix epoch, the link type of its interface, the captured bytes and the original length.
//!
//! Guarantees:
//! - never panics and never allocates per packet: a packet borrows the reader's buffer, which grows
//!   only up to [`MAX_RECORD_BYTES`];
//! - a file that is not a capture (or whose header is unusable) is a [`CaptureError`] naming the file;
//! - damage after a valid header (a truncated last record, a block whose length lies) is a warning
//!   naming the file, the byte offset and the last good frame; the packets before it are kept;
//! - several files of one side (a rotated set) are merged in time order without copying packets.
//!
//! What it refuses to know: anything above the link layer (that is `decode`).
//!
//! Visibility: `pub` is the library API (what `main.rs`, `tests/` and `examples/` use); the rest
//! is `pub(crate)`, for the later stages in this crate.

mod damage;
mod file;
mod input;
mod pcap;
mod pcapng;
#[cfg(test)]
mod tests;
mod warning;
mod write;

use std::fmt;
use std::io::{self, Cursor};

use file::FileReader;
pub use input::{Input, Progress};
pub use warning::{Warning, WarningKind};
pub use write::PcapWriter;

/// Initial size of a file's read buffer.
const READ_BUFFER_BYTES: usize = 256 * 1024;
/// The largest record (pcap) or block (pcapng) we accept. tcpdump's maximum snaplen is 256 KiB;
/// anything claiming more than this is a damaged file, not a packet.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;
/// A gzip-compressed file is read while its data expands at most this many times its compressed
/// size (past the first [`GZIP_FREE_BYTES`]). Real captures compress up to about 100:1 (HTTP
/// bodies of one repeated byte); deflate's limit is about 1030:1, reached by long runs of one byte:
/// a decompression bomb. Reading stops there with a warning; the time a file costs is then bounded
/// by its compressed size, and memory does not depend on it (the data is streamed).
pub const MAX_GZIP_RATIO: u64 = 400;
/// Decompressed bytes read before [`MAX_GZIP_RATIO`] applies.
pub const GZIP_FREE_BYTES: u64 = 64 * 1024 * 1024;

/// Where a packet is in the input: 1-based frame number within file number `file` of its side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameRef {
    pub file: u16,
    pub frame: u32,
}

/// A link-layer header type, by its LINKTYPE_ number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinkType(pub u16);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const NFLOG: LinkType = LinkType(239);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// The name Wireshark's capinfos uses, or `unknown`.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "null",
            1 => "ether",
            12 | 14 | 101 => "rawip",
            108 => "loop",
            113 => "linux-sll",
            228 => "rawip4",
            229 => "rawip6",
            239 => "nflog",
            276 => "linux-sll2",
            _ => "unknown",
        }
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({})", self.name(), self.0)
    }
}

/// One captured packet. It borrows the reader's buffer: copy out what must outlive the next read.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub frame: FrameRef,
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: i64,
    pub link: LinkType,
    /// The captured bytes (`caplen` of them).
    pub data: &'a [u8],
    /// The length of the packet on the wire, before snaplen cut it.
    pub orig_len: u32,
}

/// A capture file that cannot be read at all. Shown to the user as one line; exit code 2.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    // The io::Error is part of the message, not a `source`: callers print the error chain
    // (`{:#}`), which would say it twice.
    #[error("{path}: cannot open: {error}")]
    Open { path: String, error: io::Error },
    #[error("{path}: cannot read: {error}")]
    Read { path: String, error: io::Error },
    #[error("{path}: empty file, not a capture")]
    Empty { path: String },
    #[error("{path}: not a pcap or pcapng capture (it starts with bytes {first_bytes})")]
    NotACapture { path: String, first_bytes: String },
    #[error("{path}: {what}")]
    BadHeader { path: String, what: String },
    #[error("too many capture files for one side ({0}; at most 65535)")]
    TooManyFiles(usize),
}

/// What one side's reading saw, beside the packets: for the report's `captures` section.
#[derive(Clone, Debug, Default)]
pub struct CaptureSummary {
    pub files: Vec<String>,
    pub packets: u64,
    /// Link types seen, in order of first appearance.
    pub link_types: Vec<LinkType>,
    pub first_ts_ns: Option<i64>,
    pub last_ts_ns: Option<i64>,
    /// The smallest snaplen announced by a file header or interface (0 when none announced).
    pub snaplen: u32,
    /// Packets whose captured length is below their original length.
    pub truncated_packets: u64,
    /// Packets the capturing host said it dropped (pcapng interface statistics).
    pub reported_drops: u64,
    pub warnings: Vec<Warning>,
}

/// The packets of one side, from one or several files, in time order.
pub struct CaptureSet {
    files: Vec<FileReader>,
    /// The file whose head was handed out last: it advances on the next call.
    current: Option<usize>,
    started: bool,
    packets: u64,
    first_ts: Option<i64>,
    last_ts: Option<i64>,
    progress: Progress,
}

impl CaptureSet {
    /// Opens every file and checks its header; fails on the first file that is not a capture.
    pub fn open(inputs: &[Input]) -> Result<CaptureSet, CaptureError> {
        if inputs.len() > u16::MAX as usize {
            return Err(CaptureError::TooManyFiles(inputs.len()));
        }
        let progress = Progress::default();
        let mut files = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.iter().enumerate() {
            let raw = input::open_counted(input, &progress)?;
            files.push(FileReader::open(input.display_name(), i as u16, raw)?);
        }
        Ok(CaptureSet::of_files(files, progress))
    }

    /// Opens a capture held in memory (tests, fuzzing).
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<CaptureSet, CaptureError> {
        let file = FileReader::open(name.to_string(), 0, Box::new(Cursor::new(bytes)))?;
        Ok(CaptureSet::of_files(vec![file], Progress::default()))
    }

    fn of_files(files: Vec<FileReader>, progress: Progress) -> CaptureSet {
        CaptureSet {
            files,
            current: None,
            started: false,
            packets: 0,
            first_ts: None,
            last_ts: None,
            progress,
        }
    }

    /// A handle on the count of bytes read so far, for a progress bar.
    pub fn progress(&self) -> Progress {
        self.progress.clone()
    }

    /// The next packet in time order across the files, or `None` at the end of all of them.
    /// Equal timestamps keep file order, so a rotated set given in order stays in order.
    #[allow(clippy::should_implement_trait)] // a lending iterator: the packet borrows `self`
    pub fn next(&mut self) -> Option<Packet<'_>> {
        if !self.started {
            self.started = true;
            for f in &mut self.files {
                f.advance();
            }
        } else if let Some(i) = self.current {
            self.files[i].advance();
        }
        let mut best: Option<(usize, i64)> = None;
        for (i, f) in self.files.iter().enumerate() {
            if let Some(ts) = f.head_ts() {
                if best.is_none_or(|(_, b)| ts < b) {
                    best = Some((i, ts));
                }
            }
        }
        let (i, ts) = best?;
        self.current = Some(i);
        self.packets += 1;
        self.first_ts = Some(self.first_ts.map_or(ts, |f| f.min(ts)));
        self.last_ts = Some(self.last_ts.map_or(ts, |l| l.max(ts)));
        self.files[i].head()
    }

    /// What was read, once `next` has returned `None` (or earlier, for what was read so far).
    pub fn summary(&self) -> CaptureSummary {
        let mut s = CaptureSummary {
            packets: self.packets,
            first_ts_ns: self.first_ts,
            last_ts_ns: self.last_ts,
            ..CaptureSummary::default()
        };
        let mut snaplen: Option<u32> = None;
        for f in self.files.iter().map(|f| &f.state) {
            s.files.push(f.name.clone());
            for lt in &f.link_types {
                if !s.link_types.contains(lt) {
                    s.link_types.push(*lt);
                }
            }
            if let Some(sl) = f.min_snaplen {
                snaplen = Some(snaplen.map_or(sl, |s| s.min(sl)));
            }
            s.truncated_packets += f.truncated_packets;
            s.reported_drops += f.drops.values().sum::<u64>();
            s.warnings.extend(f.warnings());
        }
        s.snaplen = snaplen.unwrap_or(0);
        s
    }
}

/// The latest timestamp a packet may have: 2^62 ns after the epoch (year 2116). pcapng timestamps
/// (64-bit ticks, a 64-bit offset) are clamped to [0, MAX_TS_NS]; a pcap's cannot leave it. Later
/// stages subtract and add timestamps, clock offsets and tolerances: with every timestamp in this
/// range, no such sum of two or three terms can overflow.
pub(crate) const MAX_TS_NS: i64 = 1 << 62;

/// Which end of the proxy→backend path a capture was taken at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Proxy,
    Backend,
    /// One capture analysed alone (`flows`, or `analyze` with one capture).
    Single,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Proxy => "proxy",
            Side::Backend => "backend",
            Side::Single => "single",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

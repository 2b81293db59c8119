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

use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use flate2::read::MultiGzDecoder;
use pcap_parser::pcapng::Block;
use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{LegacyPcapReader, PcapBlockOwned, PcapError, PcapNGReader};

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
/// How many warnings of one kind a file keeps; the rest are counted.
const MAX_WARNINGS_PER_FILE: usize = 20;

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
    pub warnings: Vec<String>,
}

/// Counts bytes read from the underlying files, for a progress bar (shared with another thread).
#[derive(Clone, Debug, Default)]
pub struct Progress(Arc<AtomicU64>);

impl Progress {
    pub fn bytes_read(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct CountingReader<R> {
    inner: R,
    progress: Progress,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.0.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// How far a gzip stream has gone: compressed bytes in, and whether it was stopped as a bomb or
/// ended by damage.
#[derive(Debug, Default)]
struct GzipMeter {
    compressed: AtomicU64,
    /// Decompressed bytes when the ratio was exceeded (0: not exceeded).
    stopped_at: AtomicU64,
    /// The decompressor's error and the decompressed bytes before it, when the gzip data is
    /// damaged (a download cut short): the stream ends there, like a capture cut short.
    damaged: std::sync::Mutex<Option<(u64, String)>>,
}

impl GzipMeter {
    fn damage(&self) -> Option<(u64, String)> {
        self.damaged.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Counts the compressed bytes read from a gzip file.
struct CompressedCount<R> {
    inner: R,
    meter: Arc<GzipMeter>,
}

impl<R: Read> Read for CompressedCount<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter.compressed.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Ends a gzip stream (as if the file ended there) once it has expanded more than
/// [`MAX_GZIP_RATIO`] times past [`GZIP_FREE_BYTES`].
struct BombGuard<R> {
    inner: R,
    meter: Arc<GzipMeter>,
    out: u64,
}

impl<R: Read> Read for BombGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.meter.stopped_at.load(Ordering::Relaxed) > 0 {
            return Ok(0);
        }
        let n = match self.inner.read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let mut damaged = self.meter.damaged.lock().unwrap_or_else(|p| p.into_inner());
                damaged.get_or_insert((self.out, e.to_string()));
                return Ok(0);
            }
        };
        self.out += n as u64;
        let allowed = GZIP_FREE_BYTES
            .saturating_add(MAX_GZIP_RATIO.saturating_mul(self.meter.compressed.load(Ordering::Relaxed)));
        if self.out > allowed {
            self.meter.stopped_at.store(self.out, Ordering::Relaxed);
        }
        Ok(n)
    }
}

/// An input named on the command line: a path, or `-` for standard input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Input {
    Path(PathBuf),
    Stdin,
}

impl Input {
    pub fn from_arg(arg: &str) -> Input {
        if arg == "-" {
            Input::Stdin
        } else {
            Input::Path(PathBuf::from(arg))
        }
    }

    pub fn display_name(&self) -> String {
        match self {
            Input::Path(p) => p.display().to_string(),
            Input::Stdin => "<stdin>".to_string(),
        }
    }
}

impl From<&Path> for Input {
    fn from(p: &Path) -> Input {
        Input::Path(p.to_path_buf())
    }
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
            let name = input.display_name();
            let raw: Box<dyn Read + Send> = match input {
                Input::Path(p) => Box::new(File::open(p).map_err(|error| CaptureError::Open {
                    path: name.clone(),
                    error,
                })?),
                Input::Stdin => Box::new(io::stdin()),
            };
            let counted = CountingReader {
                inner: raw,
                progress: progress.clone(),
            };
            files.push(FileReader::open(name, i as u16, Box::new(counted))?);
        }
        Ok(CaptureSet {
            files,
            current: None,
            started: false,
            packets: 0,
            first_ts: None,
            last_ts: None,
            progress,
        })
    }

    /// Opens a capture held in memory (tests, fuzzing).
    pub fn from_bytes(name: &str, bytes: Vec<u8>) -> Result<CaptureSet, CaptureError> {
        let file = FileReader::open(name.to_string(), 0, Box::new(Cursor::new(bytes)))?;
        Ok(CaptureSet {
            files: vec![file],
            current: None,
            started: false,
            packets: 0,
            first_ts: None,
            last_ts: None,
            progress: Progress::default(),
        })
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

/// One pcapng interface, as its Interface Description Block declared it.
#[derive(Clone, Copy, Debug)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second.
    units_per_sec: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_s: i64,
}

enum Format {
    Pcap {
        link: LinkType,
        nanos: bool,
        big_endian: bool,
    },
    /// The interfaces of the current section (a new section starts a new table), and the
    /// section's byte order (option values are raw bytes in that order).
    PcapNg {
        interfaces: Vec<Interface>,
        big_endian: bool,
        section: u32,
    },
}

/// Where the current packet's bytes are in the reader's buffer, and what we know of it.
#[derive(Clone, Copy, Debug)]
struct Head {
    /// Address of the first byte: converted back to a slice of `reader.data()` by `head()`.
    /// (The parsed block borrows the reader mutably, so we remember where it pointed and
    /// rebuild the slice once that borrow ended; the buffer does not move until `consume`.)
    addr: usize,
    len: usize,
    ts_ns: i64,
    link: LinkType,
    orig_len: u32,
    frame: u32,
}

/// What to do after looking at one block.
enum Step {
    Packet(Head, usize),
    Skip(usize),
}

/// One capture file being read.
struct FileReader {
    index: u16,
    reader: Box<dyn PcapReaderIterator + Send>,
    state: FileState,
    /// Bytes of the block behind `head`, to consume on the next advance.
    pending: usize,
    head: Option<Head>,
    done: bool,
    /// The gzip stream's meter, when the file is compressed.
    gzip: Option<Arc<GzipMeter>>,
}

/// Everything a block handler may change, apart from the reader (whose borrow the block holds).
struct FileState {
    name: String,
    format: Format,
    frames: u32,
    last_ts: i64,
    link_types: Vec<LinkType>,
    min_snaplen: Option<u32>,
    truncated_packets: u64,
    /// Drop counters per (section, interface): statistics blocks are cumulative, so the latest
    /// (largest) value of each counts.
    drops: std::collections::BTreeMap<(u32, u32), u64>,
    warnings: Vec<String>,
    suppressed_warnings: u64,
}

impl FileReader {
    fn open(name: String, index: u16, raw: Box<dyn Read + Send>) -> Result<FileReader, CaptureError> {
        // Sniff the first bytes to tell gzip from a capture, then hand the readers a stream
        // that starts with the bytes we already took.
        let (prefix, raw) = read_prefix(raw, 4).map_err(|error| CaptureError::Read {
            path: name.clone(),
            error,
        })?;
        if prefix.is_empty() {
            return Err(CaptureError::Empty { path: name });
        }
        let mut gzip = None;
        let stream: Box<dyn Read + Send> = if prefix.starts_with(&[0x1f, 0x8b]) {
            let meter = Arc::new(GzipMeter::default());
            gzip = Some(meter.clone());
            let compressed = CompressedCount {
                inner: Cursor::new(prefix).chain(raw),
                meter: meter.clone(),
            };
            Box::new(BombGuard {
                inner: MultiGzDecoder::new(BufReader::new(compressed)),
                meter,
                out: 0,
            })
        } else {
            Box::new(Cursor::new(prefix).chain(raw))
        };
        // The readers expect their first read to hold the whole file header: give them a
        // generous prefix (a gzip stream may return a few bytes per read).
        let (head, rest) = read_prefix(stream, 64 * 1024).map_err(|error| CaptureError::Read {
            path: name.clone(),
            error,
        })?;
        if let Some((_, why)) = gzip.as_ref().and_then(|m| m.damage()).filter(|_| head.len() < 24) {
            return Err(CaptureError::BadHeader {
                path: name,
                what: match head.len() {
                    0 => format!("the gzip data is damaged ({why}) before any data"),
                    n => format!(
                        "the gzip data is damaged ({why}) after {n} bytes, too few for a capture header"
                    ),
                },
            });
        }
        if head.is_empty() {
            return Err(CaptureError::Empty { path: name });
        }
        let magic = head
            .get(..4)
            .map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        let stream: Box<dyn Read + Send> = Box::new(Cursor::new(head.clone()).chain(rest));
        let not_a_capture = || CaptureError::NotACapture {
            path: name.clone(),
            first_bytes: hex_prefix(&head),
        };
        let (reader, format): (Box<dyn PcapReaderIterator + Send>, Format) = match magic {
            Some(0x0A0D_0D0A) => {
                check_section_header(&head).map_err(|what| CaptureError::BadHeader {
                    path: name.clone(),
                    what,
                })?;
                let r =
                    PcapNGReader::new(READ_BUFFER_BYTES, stream).map_err(|e| CaptureError::BadHeader {
                        path: name.clone(),
                        what: format!("pcapng section header block is unusable ({})", describe(&e)),
                    })?;
                (
                    Box::new(r),
                    Format::PcapNg {
                        interfaces: Vec::new(),
                        big_endian: false,
                        section: 0,
                    },
                )
            }
            Some(0xa1b2_c3d4 | 0xa1b2_3c4d | 0xa1b2_cd34 | 0xd4c3_b2a1 | 0x4d3c_b2a1 | 0x34cd_b2a1) => {
                if head.len() < 24 {
                    return Err(CaptureError::BadHeader {
                        path: name,
                        what: format!("pcap file header is cut short ({} of 24 bytes)", head.len()),
                    });
                }
                let r = LegacyPcapReader::new(READ_BUFFER_BYTES, stream).map_err(|e| {
                    CaptureError::BadHeader {
                        path: name.clone(),
                        what: format!("pcap file header is unusable ({})", describe(&e)),
                    }
                })?;
                let be = matches!(magic, Some(0xd4c3_b2a1 | 0x4d3c_b2a1 | 0x34cd_b2a1));
                let field16 = |o: usize| {
                    let b = [head[o], head[o + 1]];
                    if be {
                        u16::from_be_bytes(b)
                    } else {
                        u16::from_le_bytes(b)
                    }
                };
                let field32 = |o: usize| {
                    let b = [head[o], head[o + 1], head[o + 2], head[o + 3]];
                    if be {
                        u32::from_be_bytes(b)
                    } else {
                        u32::from_le_bytes(b)
                    }
                };
                let (major, minor) = (field16(4), field16(6));
                // libpcap reads major version 2 only (and 543, a long-gone AIX quirk); a
                // different number means the header is damaged, so the records cannot be trusted.
                if major != 2 {
                    return Err(CaptureError::BadHeader {
                        path: name,
                        what: format!("unsupported pcap version {major}.{minor} (only 2.x exists)"),
                    });
                }
                let network = field32(20);
                // The upper 16 bits hold FCS length and reserved bits; libpcap rejects
                // files whose reserved bits are set.
                if network & 0x03FF_0000 != 0 {
                    return Err(CaptureError::BadHeader {
                        path: name,
                        what: format!("pcap link-type field 0x{network:08x} has reserved bits set"),
                    });
                }
                let link = LinkType((network & 0xFFFF) as u16);
                let snaplen = field32(16);
                let nanos = matches!(magic, Some(0xa1b2_3c4d | 0x4d3c_b2a1));
                return Ok(FileReader {
                    index,
                    reader: Box::new(r),
                    state: FileState {
                        min_snaplen: (snaplen > 0).then_some(snaplen),
                        link_types: vec![link],
                        ..FileState::new(
                            name,
                            Format::Pcap {
                                link,
                                nanos,
                                big_endian: be,
                            },
                        )
                    },
                    pending: 0,
                    head: None,
                    done: false,
                    gzip,
                });
            }
            _ => return Err(not_a_capture()),
        };
        Ok(FileReader {
            index,
            reader,
            state: FileState::new(name, format),
            pending: 0,
            head: None,
            done: false,
            gzip,
        })
    }

    /// The gzip stream was ended as a decompression bomb, or by damaged gzip data: say so (once)
    /// instead of what the end of the data looks like to the reader.
    fn stopped_as_bomb(gzip: &mut Option<Arc<GzipMeter>>, state: &mut FileState, consumed: usize) -> bool {
        if let Some((at, why)) = gzip.as_ref().and_then(|m| m.damage()) {
            *gzip = None;
            let what = if why.contains("invalid gzip header") {
                // MultiGzDecoder looks for another member after each one: these bytes are not one.
                format!(
                    "after its gzip data ({at} bytes decompressed) the file holds bytes that are not gzip; they are ignored"
                )
            } else {
                format!(
                    "the gzip data is damaged after {at} decompressed bytes ({why}): the file was cut short or corrupted"
                )
            };
            state.stop(consumed, &what);
            return true;
        }
        let Some(at) = gzip
            .as_ref()
            .map(|m| m.stopped_at.load(Ordering::Relaxed))
            .filter(|&at| at > 0)
        else {
            return false;
        };
        *gzip = None;
        let mib = at / (1024 * 1024);
        state.stop(
            consumed,
            &format!(
                "the gzip data expanded to {mib} MiB, more than {MAX_GZIP_RATIO} times its compressed size: \
                 a decompression bomb, not a capture (decompress it yourself, e.g. with gunzip, to read \
                 it all)"
            ),
        );
        true
    }

    fn head_ts(&self) -> Option<i64> {
        self.head.map(|h| h.ts_ns)
    }

    fn head(&self) -> Option<Packet<'_>> {
        let h = self.head?;
        let buf = self.reader.data();
        let start = h.addr.checked_sub(buf.as_ptr() as usize)?;
        let data = buf.get(start..start.checked_add(h.len)?)?;
        Some(Packet {
            frame: FrameRef {
                file: self.index,
                frame: h.frame,
            },
            ts_ns: h.ts_ns,
            link: h.link,
            data,
            orig_len: h.orig_len,
        })
    }

    /// Moves to the next packet of this file; `head` is `None` afterwards at the end.
    fn advance(&mut self) {
        if self.pending > 0 {
            // No shift here: refill() moves the unread tail to the front when it needs room, so
            // the buffer is not memmoved every time half of it has been read.
            self.reader.consume_noshift(self.pending);
            self.pending = 0;
        }
        self.head = None;
        while !self.done {
            let consumed = self.reader.consumed();
            if let Some(what) = impossible_block_length(&self.state.format, self.reader.data()) {
                self.state.stop(consumed, &what);
                self.done = true;
                return;
            }
            let step = match self.reader.next() {
                Ok((offset, block)) => self.state.on_block(offset, block),
                Err(PcapError::Eof) => {
                    Self::stopped_as_bomb(&mut self.gzip, &mut self.state, consumed);
                    self.done = true;
                    return;
                }
                Err(PcapError::Incomplete(_)) => {
                    // Need more bytes. A refill that adds nothing sets `reader_exhausted`, and
                    // the next parse then says Eof or UnexpectedEof; one that neither adds bytes
                    // nor reaches the end would loop forever, so it stops the file.
                    let before = self.reader.data().len();
                    if let Err(e) = self.reader.refill() {
                        let what = describe(&e);
                        self.state.stop(consumed, &format!("read error ({what})"));
                        self.done = true;
                    } else if self.reader.data().len() == before && !self.reader.reader_exhausted() {
                        self.state.stop(consumed, "the reader made no progress");
                        self.done = true;
                    }
                    continue;
                }
                Err(PcapError::UnexpectedEof) => {
                    self.done = true;
                    if Self::stopped_as_bomb(&mut self.gzip, &mut self.state, consumed) {
                        return;
                    }
                    let data = self.reader.data();
                    let what = explain_damage(&self.state.format, data).unwrap_or_else(|| {
                        format!(
                            "the last record is cut short ({} bytes of it in the file): {INTERRUPTED}",
                            data.len()
                        )
                    });
                    self.state.stop(consumed, &what);
                    return;
                }
                Err(PcapError::BufferTooSmall) => {
                    let size = self.reader.data().len().max(READ_BUFFER_BYTES) * 2;
                    if size > MAX_RECORD_BYTES || !self.reader.grow(size) {
                        let what =
                            explain_damage(&self.state.format, self.reader.data()).unwrap_or_else(|| {
                                format!(
                                    "a record or block claims more than {} MiB",
                                    MAX_RECORD_BYTES / (1024 * 1024)
                                )
                            });
                        self.state.stop(consumed, &what);
                        self.done = true;
                    }
                    continue;
                }
                Err(e) => {
                    self.done = true;
                    if Self::stopped_as_bomb(&mut self.gzip, &mut self.state, consumed) {
                        return;
                    }
                    let why = describe(&e);
                    let what = explain_damage(&self.state.format, self.reader.data())
                        .unwrap_or_else(|| format!("malformed record or block ({why})"));
                    self.state.stop(consumed, &what);
                    return;
                }
            };
            match step {
                Ok(Step::Packet(head, offset)) => {
                    self.pending = offset;
                    self.head = Some(head);
                    return;
                }
                Ok(Step::Skip(offset)) => self.reader.consume_noshift(offset),
                Err(what) => {
                    self.state.stop(consumed, &what);
                    self.done = true;
                }
            }
        }
    }
}

impl FileState {
    fn new(name: String, format: Format) -> FileState {
        FileState {
            name,
            format,
            frames: 0,
            last_ts: 0,
            link_types: Vec::new(),
            min_snaplen: None,
            truncated_packets: 0,
            drops: Default::default(),
            warnings: Vec::new(),
            suppressed_warnings: 0,
        }
    }

    fn warn(&mut self, what: String) {
        if self.warnings.len() < MAX_WARNINGS_PER_FILE {
            self.warnings.push(format!("{}: {}", self.name, what));
        } else {
            self.suppressed_warnings += 1;
        }
    }

    /// Reading this file ends here: say where and what was kept.
    fn stop(&mut self, byte: usize, what: &str) {
        let kept = match self.frames {
            0 => "no frame before it".to_string(),
            1 => "kept frame 1 before it".to_string(),
            n => format!("kept frames 1-{n} before it"),
        };
        self.warn(format!(
            "at byte {byte}: {what}; stopped reading this file, {kept}"
        ));
    }

    fn warnings(&self) -> Vec<String> {
        let mut w = self.warnings.clone();
        if self.suppressed_warnings > 0 {
            w.push(format!(
                "{}: {} more warnings not shown",
                self.name, self.suppressed_warnings
            ));
        }
        w
    }

    fn note_link(&mut self, link: LinkType) {
        if !self.link_types.contains(&link) {
            self.link_types.push(link);
        }
    }

    fn next_frame(&mut self) -> Result<u32, String> {
        self.frames = self
            .frames
            .checked_add(1)
            .ok_or_else(|| "more than 4294967295 frames in one file".to_string())?;
        Ok(self.frames)
    }

    fn packet(
        &mut self,
        data: &[u8],
        caplen: u32,
        orig_len: u32,
        ts_ns: i64,
        link: LinkType,
        offset: usize,
    ) -> Result<Step, String> {
        let frame = self.next_frame()?;
        let len = (caplen as usize).min(data.len());
        if (len as u64) < orig_len as u64 {
            self.truncated_packets += 1;
        }
        self.last_ts = ts_ns;
        Ok(Step::Packet(
            Head {
                addr: data.as_ptr() as usize,
                len,
                ts_ns,
                link,
                orig_len: orig_len.max(len as u32),
                frame,
            },
            offset,
        ))
    }

    /// Looks at one block; the block borrows the reader, so this only reads it and updates state.
    fn on_block(&mut self, offset: usize, block: PcapBlockOwned<'_>) -> Result<Step, String> {
        match block {
            PcapBlockOwned::LegacyHeader(_) => Ok(Step::Skip(offset)),
            PcapBlockOwned::Legacy(b) => {
                let Format::Pcap { link, nanos, .. } = self.format else {
                    return Ok(Step::Skip(offset));
                };
                let frac = if nanos {
                    b.ts_usec as i64
                } else {
                    b.ts_usec as i64 * 1000
                };
                let ts = b.ts_sec as i64 * 1_000_000_000 + frac;
                self.packet(b.data, b.caplen, b.origlen, ts, link, offset)
            }
            PcapBlockOwned::NG(block) => self.on_ng_block(offset, block),
        }
    }

    fn on_ng_block(&mut self, offset: usize, block: Block<'_>) -> Result<Step, String> {
        let Format::PcapNg {
            interfaces,
            big_endian,
            section,
        } = &mut self.format
        else {
            return Ok(Step::Skip(offset));
        };
        match block {
            Block::SectionHeader(shb) => {
                if shb.major_version != 1 {
                    return Err(format!(
                        "a section header declares pcapng version {}.{} (only 1.x exists)",
                        shb.major_version, shb.minor_version
                    ));
                }
                // A new section has its own interface table and byte order.
                interfaces.clear();
                *big_endian = shb.big_endian();
                *section += 1;
                Ok(Step::Skip(offset))
            }
            Block::InterfaceDescription(idb) => {
                let link = LinkType(idb.linktype.0 as u16);
                let be = *big_endian;
                // Read if_tsresol and if_tsoffset ourselves: the crate reads if_tsoffset as
                // little-endian in every section, and rejects binary resolutions above 2^-63
                // before masking the mode bit.
                let mut units_per_sec = Some(1_000_000);
                let mut offset_s = 0i64;
                for opt in &idb.options {
                    match opt.code.0 {
                        9 => units_per_sec = opt.value.first().and_then(|&b| ts_units(b)),
                        14 => offset_s = option_u64(&opt.value, be).map_or(0, |v| v as i64),
                        _ => {}
                    }
                }
                let units_per_sec = units_per_sec.unwrap_or(0);
                interfaces.push(Interface {
                    link,
                    units_per_sec,
                    offset_s,
                });
                let snaplen = idb.snaplen;
                let bad_resol = units_per_sec == 0;
                self.note_link(link);
                if snaplen > 0 {
                    self.min_snaplen = Some(self.min_snaplen.map_or(snaplen, |s| s.min(snaplen)));
                }
                if link.name() == "unknown" {
                    let n = self.interface_count() - 1;
                    self.warn(format!(
                        "interface {n} declares link type {}, which bothends does not read: its packets are skipped",
                        link.0
                    ));
                }
                if bad_resol {
                    let n = self.interface_count() - 1;
                    self.warn(format!(
                        "interface {n} declares an impossible timestamp resolution; its packets get time 0"
                    ));
                }
                Ok(Step::Skip(offset))
            }
            Block::EnhancedPacket(epb) => {
                let Some(iface) = interfaces.get(epb.if_id as usize).copied() else {
                    let frame = self.frames + 1;
                    self.frames = frame;
                    self.warn(format!(
                        "frame {frame} names interface {} which no interface description declared; frame skipped",
                        epb.if_id
                    ));
                    return Ok(Step::Skip(offset));
                };
                let ticks = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                let ts = ticks_to_ns(ticks, iface.units_per_sec, iface.offset_s);
                self.packet(epb.data, epb.caplen, epb.origlen, ts, iface.link, offset)
            }
            Block::SimplePacket(spb) => {
                // A simple packet block belongs to interface 0, has no timestamp (we keep the
                // previous packet's time so the file stays in order) and its captured length is
                // the smaller of the original length and the block's data.
                let Some(iface) = interfaces.first().copied() else {
                    let frame = self.frames + 1;
                    self.frames = frame;
                    self.warn(format!(
                        "frame {frame}: a simple packet block before any interface; frame skipped"
                    ));
                    return Ok(Step::Skip(offset));
                };
                let ts = self.last_ts;
                self.packet(spb.data, spb.origlen, spb.origlen, ts, iface.link, offset)
            }
            Block::InterfaceStatistics(isb) => {
                let be = *big_endian;
                let key = (*section, isb.if_id);
                // isb_ifdrop (5): dropped by the interface; isb_osdrop (7): by the OS.
                let drops = isb
                    .options
                    .iter()
                    .filter(|o| matches!(o.code.0, 5 | 7))
                    .filter_map(|o| option_u64(&o.value, be))
                    .fold(0u64, u64::saturating_add);
                let before = self.drops.get(&key).copied().unwrap_or(0);
                if drops > before {
                    self.drops.insert(key, drops);
                    let if_id = isb.if_id;
                    self.warn(format!(
                        "interface {if_id} statistics say the capturing host dropped {drops} packets: \
                         some packets on the wire are not in this file"
                    ));
                }
                Ok(Step::Skip(offset))
            }
            Block::Unknown(ub) if ub.block_type == OBSOLETE_PACKET_BLOCK => {
                self.obsolete_packet(ub.data, offset)
            }
            _ => Ok(Step::Skip(offset)),
        }
    }

    fn interface_count(&self) -> usize {
        match &self.format {
            Format::PcapNg { interfaces, .. } => interfaces.len(),
            Format::Pcap { .. } => 1,
        }
    }

    /// The pcapng Packet Block (type 2, obsolete but still written by old tools):
    /// interface id (u16), drops count (u16), timestamp high/low, caplen, origlen, data.
    fn obsolete_packet(&mut self, body: &[u8], offset: usize) -> Result<Step, String> {
        let Format::PcapNg { interfaces, .. } = &self.format else {
            return Ok(Step::Skip(offset));
        };
        // `body` is the block without its type and first length field. The block's byte order
        // is that of the section; the interface id tells which works.
        let Some(fields) = body.get(..20) else {
            return Err("an obsolete packet block is shorter than its header".to_string());
        };
        let le = |o: usize| u32::from_le_bytes([fields[o], fields[o + 1], fields[o + 2], fields[o + 3]]);
        let be = |o: usize| u32::from_be_bytes([fields[o], fields[o + 1], fields[o + 2], fields[o + 3]]);
        let if_le = u16::from_le_bytes([fields[0], fields[1]]) as usize;
        let if_be = u16::from_be_bytes([fields[0], fields[1]]) as usize;
        let (if_id, rd): (usize, &dyn Fn(usize) -> u32) = if if_le < interfaces.len() {
            (if_le, &le)
        } else {
            (if_be, &be)
        };
        let Some(iface) = interfaces.get(if_id).copied() else {
            let frame = self.frames + 1;
            self.frames = frame;
            self.warn(format!(
                "frame {frame}: packet block names an undeclared interface; frame skipped"
            ));
            return Ok(Step::Skip(offset));
        };
        let ticks = ((rd(4) as u64) << 32) | rd(8) as u64;
        let (caplen, origlen) = (rd(12), rd(16));
        let data = &body[20..];
        let ts = ticks_to_ns(ticks, iface.units_per_sec, iface.offset_s);
        self.packet(data, caplen, origlen, ts, iface.link, offset)
    }
}

const OBSOLETE_PACKET_BLOCK: u32 = 2;

/// Timestamp units per second for an `if_tsresol` byte: 10^b, or 2^(b & 0x7f) when the top bit
/// is set; None when it does not fit in 64 bits.
fn ts_units(b: u8) -> Option<u64> {
    if b & 0x80 != 0 {
        1u64.checked_shl((b & 0x7f) as u32)
    } else {
        10u64.checked_pow(b as u32)
    }
}

/// A 64-bit option value in the section's byte order.
fn option_u64(value: &[u8], big_endian: bool) -> Option<u64> {
    let b: [u8; 8] = value.get(..8)?.try_into().ok()?;
    Some(if big_endian {
        u64::from_be_bytes(b)
    } else {
        u64::from_le_bytes(b)
    })
}

/// Checks the first Section Header Block: whole, well-formed, version 1.
fn check_section_header(head: &[u8]) -> Result<(), String> {
    match pcap_parser::pcapng::parse_sectionheaderblock(head) {
        Ok((_, shb)) if shb.major_version == 1 => match section_header_damage(head) {
            // The parser does not check that the length is a multiple of 4 nor the trailer.
            Some(damage) if !damage.contains("more than 64 KiB") => Err(damage),
            _ => Ok(()),
        },
        Ok((_, shb)) => Err(format!(
            "unsupported pcapng version {}.{} (only 1.x exists)",
            shb.major_version, shb.minor_version
        )),
        Err(pcap_parser::nom::Err::Incomplete(_)) => Err(section_header_damage(head)
            .unwrap_or_else(|| "the pcapng section header block is cut short".to_string())),
        Err(pcap_parser::nom::Err::Error(e) | pcap_parser::nom::Err::Failure(e)) => {
            Err(section_header_damage(head).unwrap_or_else(|| {
                format!("the pcapng section header block is malformed ({})", describe(&e))
            }))
        }
    }
}

/// What is wrong with the first section header block, in capture terms (`head` is the start of
/// the file, up to 64 KiB of it).
fn section_header_damage(head: &[u8]) -> Option<String> {
    let field = |o: usize| -> Option<[u8; 4]> { head.get(o..o + 4)?.try_into().ok() };
    let bom = field(8)?;
    let be = match u32::from_le_bytes(bom) {
        0x1A2B_3C4D => false,
        0x4D3C_2B1A => true,
        other => {
            return Some(format!(
                "the pcapng section header's byte-order magic is 0x{other:08x}, neither 0x1a2b3c4d nor \
                 0x4d3c2b1a: not a pcapng file, or a damaged one"
            ));
        }
    };
    let len = read_u32(field(4)?, be);
    let what = "the pcapng section header block";
    if len < 28 {
        Some(format!(
            "{what} declares {len} bytes, less than its smallest size (28): its length field is damaged"
        ))
    } else if len % 4 != 0 {
        Some(format!(
            "{what} declares {len} bytes, not a multiple of 4: its length field is damaged"
        ))
    } else if len as usize > head.len() {
        if head.len() < 64 * 1024 {
            Some(format!(
                "{what} declares {len} bytes and the file ends after {}",
                head.len()
            ))
        } else {
            Some(format!(
                "{what} declares {len} bytes, more than 64 KiB: its length field is damaged"
            ))
        }
    } else {
        let trailer = read_u32(field(len as usize - 4)?, be);
        (trailer != len).then(|| {
            format!("{what} declares {len} bytes at its start and {trailer} at its end: its length field is damaged")
        })
    }
}

fn read_u32(b: [u8; 4], big_endian: bool) -> u32 {
    if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

/// A pcapng block whose length field is below a block's 12 bytes of framing, or not a multiple of
/// 4, explained before the parser sees it: pcap-parser 0.17 subtracts 12 from it unchecked for
/// block types with a shorter fixed header (a Process Information Block of length 8 panicked with
/// an overflow in builds with overflow checks; found by fuzzing).
fn impossible_block_length(format: &Format, data: &[u8]) -> Option<String> {
    let Format::PcapNg { big_endian, .. } = *format else {
        return None;
    };
    let kind: [u8; 4] = data.get(..4)?.try_into().ok()?;
    let len: [u8; 4] = data.get(4..8)?.try_into().ok()?;
    let be = if u32::from_le_bytes(kind) == 0x0A0D_0D0A {
        // A section header's own byte-order magic says how to read its length.
        u32::from_le_bytes(data.get(8..12)?.try_into().ok()?) == 0x4D3C_2B1A
    } else {
        big_endian
    };
    let len = read_u32(len, be);
    if len < 12 || len % 4 != 0 {
        explain_damage(format, data)
    } else {
        None
    }
}

/// Said of a file whose last record is cut short.
const INTERRUPTED: &str = "the capture was interrupted while writing (e.g. tcpdump killed)";

/// What is wrong with the record (pcap) or block (pcapng) at the start of `data`, the rest of the
/// file from the damage on (or of the read buffer), in capture terms; None when its header looks
/// right or is not all there.
fn explain_damage(format: &Format, data: &[u8]) -> Option<String> {
    let field = |o: usize| -> Option<[u8; 4]> { data.get(o..o + 4)?.try_into().ok() };
    let max = MAX_RECORD_BYTES / (1024 * 1024);
    match *format {
        Format::Pcap { big_endian, .. } => {
            let caplen = read_u32(field(8)?, big_endian);
            let whole = 16 + caplen as u64;
            if caplen as usize > MAX_RECORD_BYTES {
                Some(format!(
                    "a record declares {caplen} captured bytes, more than {max} MiB: its header is damaged"
                ))
            } else if whole > data.len() as u64 {
                Some(format!(
                    "the last record is cut short ({} of its {whole} bytes in the file): {INTERRUPTED}",
                    data.len()
                ))
            } else {
                None
            }
        }
        Format::PcapNg { big_endian, .. } => {
            let kind_raw = field(0)?;
            let kind = read_u32(kind_raw, big_endian);
            // A section header's own byte-order magic says how to read its length.
            let be = if u32::from_le_bytes(kind_raw) == 0x0A0D_0D0A {
                match field(8).map(u32::from_le_bytes) {
                    Some(0x4D3C_2B1A) => true,
                    Some(0x1A2B_3C4D) => false,
                    Some(other) => {
                        return Some(format!(
                            "a section header's byte-order magic is 0x{other:08x}, neither 0x1a2b3c4d nor \
                             0x4d3c2b1a: the file is damaged here"
                        ));
                    }
                    None => big_endian,
                }
            } else {
                big_endian
            };
            let len = read_u32(field(4)?, be);
            let name = match u32::from_le_bytes(kind_raw) {
                0x0A0D_0D0A => "a section header block".to_string(),
                _ => match kind {
                    1 => "an interface description block".to_string(),
                    2 => "a packet block".to_string(),
                    3 => "a simple packet block".to_string(),
                    5 => "an interface statistics block".to_string(),
                    6 => "an enhanced packet block".to_string(),
                    k => format!("a block of type 0x{k:08x}"),
                },
            };
            if len < 12 {
                Some(format!(
                    "{name} declares {len} bytes, less than a block's header and trailer (12): its length field is damaged"
                ))
            } else if len % 4 != 0 {
                Some(format!(
                    "{name} declares {len} bytes, not a multiple of 4: its length field is damaged"
                ))
            } else if len as usize > MAX_RECORD_BYTES {
                Some(format!(
                    "{name} declares {len} bytes, more than {max} MiB: its length field is damaged"
                ))
            } else if len as usize > data.len() {
                Some(format!(
                    "the last block is cut short ({name}, {} of its {len} bytes in the file): {INTERRUPTED}",
                    data.len()
                ))
            } else if let Some(trailer) = field(len as usize - 4)
                .map(|b| read_u32(b, be))
                .filter(|&t| t != len)
            {
                Some(format!(
                    "{name} declares {len} bytes at its start and {trailer} at its end: its length field is damaged"
                ))
            } else if kind == 6 && len >= 32 {
                let caplen = read_u32(field(20)?, be);
                (caplen as u64 + 32 > len as u64).then(|| {
                    format!(
                        "{name} declares {caplen} captured bytes, more than its {len}-byte block holds: \
                         the block is damaged"
                    )
                })
            } else if kind == 6 {
                Some(format!(
                    "{name} declares {len} bytes, less than its fixed fields (32): the block is damaged"
                ))
            } else {
                None
            }
        }
    }
}

/// The latest timestamp a packet may have: 2^62 ns after the epoch (year 2116). pcapng timestamps
/// (64-bit ticks, a 64-bit offset) are clamped to [0, MAX_TS_NS]; a pcap's cannot leave it. Later
/// stages subtract and add timestamps, clock offsets and tolerances: with every timestamp in this
/// range, no such sum of two or three terms can overflow.
pub const MAX_TS_NS: i64 = 1 << 62;

/// Converts a pcapng timestamp to nanoseconds since the epoch, clamped to [0, MAX_TS_NS].
fn ticks_to_ns(ticks: u64, units_per_sec: u64, offset_s: i64) -> i64 {
    if units_per_sec == 0 {
        return 0;
    }
    let secs = (ticks / units_per_sec) as i128 + offset_s as i128;
    let frac = (ticks % units_per_sec) as i128 * 1_000_000_000 / units_per_sec as i128;
    let ns = secs * 1_000_000_000 + frac;
    ns.clamp(0, MAX_TS_NS as i128) as i64
}

/// Reads up to `n` bytes (fewer only at end of input) and returns them with the rest of the stream.
fn read_prefix(mut r: Box<dyn Read + Send>, n: usize) -> io::Result<(Vec<u8>, Box<dyn Read + Send>)> {
    let mut buf = Vec::with_capacity(n);
    (&mut r).take(n as u64).read_to_end(&mut buf)?;
    Ok((buf, r))
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn describe<I>(e: &PcapError<I>) -> String {
    match e {
        PcapError::Eof => "end of file".into(),
        PcapError::BufferTooSmall => "record larger than the read buffer".into(),
        PcapError::UnexpectedEof => "file ends inside a record".into(),
        PcapError::ReadError => "read error".into(),
        PcapError::Incomplete(n) => format!("{n} more bytes needed"),
        PcapError::HeaderNotRecognized => "header not recognized".into(),
        PcapError::NomError(_, kind) | PcapError::OwnedNomError(_, kind) => {
            use pcap_parser::nom::error::ErrorKind;
            match kind {
                ErrorKind::Verify => "a length or magic field has an impossible value".into(),
                ErrorKind::Eof | ErrorKind::Complete => "the data ends inside a field".into(),
                ErrorKind::Tag => "an unexpected magic number or block type".into(),
                ErrorKind::TooLarge => "a length field is too large".into(),
                other => format!(
                    "unexpected bytes (the parser's {} check failed)",
                    other.description()
                ),
            }
        }
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn pcap_header(magic: u32, link: u32, be: bool) -> Vec<u8> {
        let mut v = Vec::new();
        let put32 = |v: &mut Vec<u8>, x: u32| {
            if be {
                v.extend_from_slice(&x.to_be_bytes())
            } else {
                v.extend_from_slice(&x.to_le_bytes())
            }
        };
        put32(&mut v, magic);
        if be {
            v.extend_from_slice(&2u16.to_be_bytes());
            v.extend_from_slice(&4u16.to_be_bytes());
        } else {
            v.extend_from_slice(&2u16.to_le_bytes());
            v.extend_from_slice(&4u16.to_le_bytes());
        }
        put32(&mut v, 0);
        put32(&mut v, 0);
        put32(&mut v, 65535);
        put32(&mut v, link);
        v
    }

    fn record(v: &mut Vec<u8>, sec: u32, frac: u32, data: &[u8], orig: u32, be: bool) {
        for x in [sec, frac, data.len() as u32, orig] {
            if be {
                v.extend_from_slice(&x.to_be_bytes())
            } else {
                v.extend_from_slice(&x.to_le_bytes())
            }
        }
        v.extend_from_slice(data);
    }

    fn read_all(set: &mut CaptureSet) -> Vec<(u32, i64, usize, u32)> {
        let mut out = Vec::new();
        while let Some(p) = set.next() {
            out.push((p.frame.frame, p.ts_ns, p.data.len(), p.orig_len));
        }
        out
    }

    #[test]
    fn pcap_micro_and_nano_both_byte_orders() {
        for (magic, nanos) in [(0xa1b2_c3d4u32, false), (0xa1b2_3c4d, true)] {
            for be in [false, true] {
                let mut f = pcap_header(magic, 1, be);
                record(&mut f, 10, 5, b"abcd", 60, be);
                record(&mut f, 11, 7, b"ef", 2, be);
                let mut set = CaptureSet::from_bytes("t.pcap", f).unwrap();
                let got = read_all(&mut set);
                let unit = if nanos { 1 } else { 1000 };
                assert_eq!(
                    got,
                    vec![
                        (1, 10_000_000_000 + 5 * unit, 4, 60),
                        (2, 11_000_000_000 + 7 * unit, 2, 2)
                    ],
                    "magic {magic:x} be {be}"
                );
                let s = set.summary();
                assert_eq!(s.packets, 2);
                assert_eq!(s.truncated_packets, 1);
                assert_eq!(s.link_types, vec![LinkType::ETHERNET]);
                assert!(s.warnings.is_empty(), "{:?}", s.warnings);
            }
        }
    }

    #[test]
    fn truncated_last_record_is_a_warning_and_keeps_earlier_frames() {
        let mut f = pcap_header(0xa1b2_c3d4, 1, false);
        record(&mut f, 1, 0, b"0123456789", 10, false);
        record(&mut f, 2, 0, b"0123456789", 10, false);
        f.truncate(f.len() - 3);
        let mut set = CaptureSet::from_bytes("cut.pcap", f).unwrap();
        assert_eq!(read_all(&mut set).len(), 1);
        let w = set.summary().warnings;
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(
            w[0].starts_with("cut.pcap: at byte 50: the last record is cut short"),
            "{}",
            w[0]
        );
        assert!(w[0].ends_with("kept frame 1 before it"), "{}", w[0]);
    }

    #[test]
    fn not_a_capture_names_the_file() {
        let e = CaptureSet::from_bytes("notes.txt", b"hello world, not a pcap".to_vec())
            .err()
            .unwrap();
        assert_eq!(
            e.to_string(),
            "notes.txt: not a pcap or pcapng capture (it starts with bytes 68 65 6c 6c 6f 20 77 6f)"
        );
        let e = CaptureSet::from_bytes("empty", Vec::new()).err().unwrap();
        assert_eq!(e.to_string(), "empty: empty file, not a capture");
    }

    #[test]
    fn gzip_is_detected_by_content() {
        use flate2::Compression;
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut f = pcap_header(0xa1b2_c3d4, 101, false);
        record(&mut f, 3, 1, b"xyz", 3, false);
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(&f).unwrap();
        let mut set = CaptureSet::from_bytes("x.pcap", gz.finish().unwrap()).unwrap();
        assert_eq!(read_all(&mut set), vec![(1, 3_000_001_000, 3, 3)]);
        assert_eq!(set.summary().link_types, vec![LinkType::RAW]);
    }

    /// Regression: the command prints the error chain (`{:#}`), which said the OS error twice
    /// ("cannot open: No such file or directory (os error 2): No such file or directory (os error 2)").
    #[test]
    fn open_error_says_the_os_error_once() {
        let e = CaptureSet::open(&[Input::from_arg("/nonexistent/x.pcap")])
            .err()
            .unwrap();
        let shown = format!("{:#}", anyhow::Error::new(e));
        assert_eq!(shown.matches("os error 2").count(), 1, "{shown}");
        assert!(shown.starts_with("/nonexistent/x.pcap: cannot open: "), "{shown}");
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        use flate2::Compression;
        use flate2::write::GzEncoder;
        use std::io::Write;
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(data).unwrap();
        gz.finish().unwrap()
    }

    /// Regression: a gzip file cut short (an interrupted download) was an error ("cannot read:
    /// gzip data is damaged") when the cut fell in its first 64 KiB; it is a capture cut short:
    /// the frames before are kept, with a warning.
    #[test]
    fn gzip_cut_short_keeps_the_frames_before() {
        let mut f = pcap_header(0xa1b2_c3d4, 1, false);
        for i in 0..2000u32 {
            let data: Vec<u8> = (0..60u32).map(|j| (i * 7 + j * 13) as u8).collect();
            record(&mut f, i, 0, &data, 60, false);
        }
        let mut gz = gzip(&f);
        gz.truncate(gz.len() / 2);
        let mut set = CaptureSet::from_bytes("cut.pcap.gz", gz).unwrap();
        let n = read_all(&mut set).len();
        assert!(n > 100 && n < 2000, "{n}");
        let w = set.summary().warnings;
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("the gzip data is damaged after"), "{}", w[0]);
        assert!(w[0].contains("cut short or corrupted"), "{}", w[0]);
        // Damaged from the start: one line naming the file.
        let e = CaptureSet::from_bytes("bad.gz", b"\x1f\x8b\x08\x00garbage".to_vec())
            .err()
            .unwrap();
        assert!(
            e.to_string().starts_with("bad.gz: the gzip data is damaged ("),
            "{e}"
        );
        // Bytes after the gzip data: all the frames, and a warning.
        let mut trailing = gzip(&f);
        trailing.extend_from_slice(b"these bytes are not gzip\n");
        let mut set = CaptureSet::from_bytes("t.gz", trailing).unwrap();
        assert_eq!(read_all(&mut set).len(), 2000);
        let w = set.summary().warnings;
        assert!(w[0].contains("holds bytes that are not gzip"), "{w:?}");
    }

    /// Regression (fuzz, capture target): a Process Information Block (type 0x80000001) whose
    /// length field says 8 made pcap-parser subtract 12 from it ("attempt to subtract with
    /// overflow" with overflow checks on); any block shorter than its framing is now explained
    /// before the parser sees it.
    #[test]
    fn block_shorter_than_its_framing_never_reaches_the_parser() {
        let data = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/regression/fuzz-capture-process-information-block-length-8"
        ))
        .unwrap();
        let mut set = CaptureSet::from_bytes("pib.pcapng", data.clone()).unwrap();
        assert!(read_all(&mut set).is_empty());
        assert_eq!(
            set.summary().warnings,
            vec![
                "pib.pcapng: at byte 104: a block of type 0x80000001 declares 8 bytes, less than a block's \
                 header and trailer (12): its length field is damaged; stopped reading this file, no frame \
                 before it"
                    .to_string()
            ]
        );
        for kind in [0x8000_0001u32, 1, 3, 4, 5, 6, 9, 0x0BAD] {
            for len in [0u32, 4, 8, 13] {
                let mut f = data[..104].to_vec();
                f.extend_from_slice(&kind.to_le_bytes());
                f.extend_from_slice(&len.to_le_bytes());
                f.extend_from_slice(&[0; 16]);
                let mut set = CaptureSet::from_bytes("x.pcapng", f).unwrap();
                read_all(&mut set);
                let w = set.summary().warnings;
                assert!(
                    w.iter().any(|w| w.contains(&format!("declares {len} bytes"))),
                    "{kind:x} {len}: {w:?}"
                );
            }
        }
    }

    /// An interface whose link type bothends does not read is named in a warning.
    #[test]
    fn unsupported_link_type_names_its_interface() {
        let block = |kind: u32, body: &[u8]| {
            let len = 12 + body.len() as u32;
            let mut v = kind.to_le_bytes().to_vec();
            v.extend_from_slice(&len.to_le_bytes());
            v.extend_from_slice(body);
            v.extend_from_slice(&len.to_le_bytes());
            v
        };
        let mut shb = 0x1A2B_3C4Du32.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        let mut f = block(0x0A0D_0D0A, &shb);
        for link in [1u16, 147] {
            let mut idb = link.to_le_bytes().to_vec();
            idb.extend_from_slice(&[0, 0]);
            idb.extend_from_slice(&65535u32.to_le_bytes());
            f.extend_from_slice(&block(1, &idb));
        }
        let mut set = CaptureSet::from_bytes("two.pcapng", f).unwrap();
        read_all(&mut set);
        assert_eq!(
            set.summary().warnings,
            vec![
                "two.pcapng: interface 1 declares link type 147, which bothends does not read: its packets \
                 are skipped"
                    .to_string()
            ]
        );
    }

    /// Regression: damage was described in the parser's terms ("predicate verification check
    /// failed"); it says which field of which block is wrong.
    #[test]
    fn damaged_blocks_are_explained_in_capture_terms() {
        let ng = Format::PcapNg {
            interfaces: Vec::new(),
            big_endian: false,
            section: 1,
        };
        let block = |len: u32, trailer: u32| {
            let mut v = 6u32.to_le_bytes().to_vec();
            v.extend_from_slice(&len.to_le_bytes());
            v.resize(len.max(12) as usize - 4, 0);
            v.extend_from_slice(&trailer.to_le_bytes());
            v
        };
        let say = |d: &[u8]| explain_damage(&ng, d).unwrap_or_default();
        assert!(say(&block(8, 8)).contains("declares 8 bytes, less than a block's header"));
        assert!(say(&block(62, 62)).contains("not a multiple of 4"));
        assert!(say(&block(64, 12)).contains("declares 64 bytes at its start and 12 at its end"));
        assert!(
            say(&block(64, 64)).contains("captured bytes, more than its 64-byte block holds")
                || say(&block(64, 64)).is_empty()
        );
        let mut cut = block(64, 64);
        cut.truncate(40);
        assert!(
            say(&cut)
                .starts_with("the last block is cut short (an enhanced packet block, 40 of its 64 bytes")
        );
        let pcap = Format::Pcap {
            link: LinkType::ETHERNET,
            nanos: false,
            big_endian: false,
        };
        let mut rec = vec![0u8; 8];
        rec.extend_from_slice(&u32::MAX.to_le_bytes());
        rec.extend_from_slice(&[0; 4]);
        assert!(
            explain_damage(&pcap, &rec)
                .unwrap()
                .contains("a record declares 4294967295 captured bytes")
        );
    }

    #[test]
    fn lying_record_length_stops_with_a_warning() {
        let mut f = pcap_header(0xa1b2_c3d4, 1, false);
        record(&mut f, 1, 0, b"ok", 2, false);
        // A record header claiming 4 GB of data.
        for x in [2u32, 0, u32::MAX - 8, 100] {
            f.extend_from_slice(&x.to_le_bytes());
        }
        f.extend_from_slice(&[0u8; 100]);
        let mut set = CaptureSet::from_bytes("lie.pcap", f).unwrap();
        assert_eq!(read_all(&mut set).len(), 1);
        let w = set.summary().warnings;
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("at byte 42"), "{}", w[0]);
    }

    #[test]
    fn ticks_conversion_saturates() {
        assert_eq!(ticks_to_ns(1_500_000, 1_000_000, 0), 1_500_000_000);
        assert_eq!(ticks_to_ns(3, 2, 10), 11_500_000_000);
        assert_eq!(ticks_to_ns(u64::MAX, 1, i64::MAX), MAX_TS_NS);
        // Regression (fuzz, pipeline target): an if_tsoffset of -2^63 s gave i64::MIN, and the
        // ladder diagram's time arithmetic overflowed.
        assert_eq!(ticks_to_ns(5, 1, i64::MIN), 0);
        assert_eq!(ticks_to_ns(5, 0, 0), 0);
    }
}

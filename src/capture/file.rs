//! One capture file being read: its reader, the block it is on, and what reading it saw
//! (frames, link types, snaplen, drops, warnings).

use std::io::{Cursor, Read};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pcap_parser::traits::PcapReaderIterator;
use pcap_parser::{PcapBlockOwned, PcapError};

use super::damage::{INTERRUPTED, describe, explain_damage, hex_prefix, impossible_block_length};
use super::input::{GzipMeter, read_prefix, ungzip};
use super::{CaptureError, FrameRef, LinkType, MAX_GZIP_RATIO, MAX_RECORD_BYTES, Packet, READ_BUFFER_BYTES};
use super::{Warning, WarningKind, pcap, pcapng};

/// How many warnings of one kind a file keeps; the rest are counted.
pub(super) const MAX_WARNINGS_PER_FILE: usize = 20;

/// One pcapng interface, as its Interface Description Block declared it.
#[derive(Clone, Copy, Debug)]
pub(super) struct Interface {
    pub(super) link: LinkType,
    /// Timestamp units per second.
    pub(super) units_per_sec: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    pub(super) offset_s: i64,
}

pub(super) enum Format {
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
pub(super) struct Head {
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
pub(super) enum Step {
    Packet(Head, usize),
    Skip(usize),
}

/// One capture file being read.
pub(super) struct FileReader {
    index: u16,
    reader: Box<dyn PcapReaderIterator + Send>,
    pub(super) state: FileState,
    /// Bytes of the block behind `head`, to consume on the next advance.
    pending: usize,
    head: Option<Head>,
    done: bool,
    /// The gzip stream's meter, when the file is compressed.
    gzip: Option<Arc<GzipMeter>>,
}

/// Everything a block handler may change, apart from the reader (whose borrow the block holds).
pub(super) struct FileState {
    pub(super) name: String,
    pub(super) format: Format,
    pub(super) frames: u32,
    pub(super) last_ts: i64,
    pub(super) link_types: Vec<LinkType>,
    pub(super) min_snaplen: Option<u32>,
    pub(super) truncated_packets: u64,
    /// Drop counters per (section, interface): statistics blocks are cumulative, so the latest
    /// (largest) value of each counts.
    pub(super) drops: std::collections::BTreeMap<(u32, u32), u64>,
    pub(super) warnings: Vec<Warning>,
    pub(super) suppressed_warnings: u64,
}

impl FileReader {
    pub(super) fn open(
        name: String,
        index: u16,
        raw: Box<dyn Read + Send>,
    ) -> Result<FileReader, CaptureError> {
        let (stream, gzip) = ungzip(&name, raw)?;
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
        let (reader, state) = match magic {
            Some(pcapng::MAGIC) => pcapng::open(name, &head, stream)?,
            Some(m) if pcap::MAGICS.contains(&m) => pcap::open(name, &head, m, stream)?,
            _ => {
                return Err(CaptureError::NotACapture {
                    path: name,
                    first_bytes: hex_prefix(&head),
                });
            }
        };
        Ok(FileReader {
            index,
            reader,
            state,
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
            state.stop(WarningKind::GzipDamaged, consumed, &what);
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
            WarningKind::DecompressionBomb,
            consumed,
            &format!(
                "the gzip data expanded to {mib} MiB, more than {MAX_GZIP_RATIO} times its compressed size: \
                 a decompression bomb, not a capture (decompress it yourself, e.g. with gunzip, to read \
                 it all)"
            ),
        );
        true
    }

    pub(super) fn head_ts(&self) -> Option<i64> {
        self.head.map(|h| h.ts_ns)
    }

    pub(super) fn head(&self) -> Option<Packet<'_>> {
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
    pub(super) fn advance(&mut self) {
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
                self.state.stop(WarningKind::FileDamaged, consumed, &what);
                self.done = true;
                return;
            }
            let step = match self.reader.next() {
                Ok((offset, block)) => self.state.on_block(offset, block),
                Err(e) => {
                    // Owned, to release the reader (a copy of the rest of the buffer only for a
                    // parse error, which ends the file).
                    let e = e.to_owned_vec();
                    self.on_reader_error(e, consumed);
                    continue;
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
                    self.state.stop(WarningKind::FileDamaged, consumed, &what);
                    self.done = true;
                }
            }
        }
    }

    /// The reader could not hand out a block at byte `consumed`: read more, grow the buffer, or
    /// stop the file (setting `done`) saying why.
    fn on_reader_error(&mut self, e: PcapError<&'static [u8]>, consumed: usize) {
        match e {
            PcapError::Eof => {
                Self::stopped_as_bomb(&mut self.gzip, &mut self.state, consumed);
                self.done = true;
            }
            PcapError::Incomplete(_) => {
                // Need more bytes. A refill that adds nothing sets `reader_exhausted`, and
                // the next parse then says Eof or UnexpectedEof; one that neither adds bytes
                // nor reaches the end would loop forever, so it stops the file.
                let before = self.reader.data().len();
                if let Err(e) = self.reader.refill() {
                    let what = describe(&e);
                    self.state
                        .stop(WarningKind::ReadError, consumed, &format!("read error ({what})"));
                    self.done = true;
                } else if self.reader.data().len() == before && !self.reader.reader_exhausted() {
                    self.state
                        .stop(WarningKind::ReadError, consumed, "the reader made no progress");
                    self.done = true;
                }
            }
            PcapError::UnexpectedEof => {
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
                self.state.stop(WarningKind::FileEndsMidRecord, consumed, &what);
            }
            PcapError::BufferTooSmall => {
                let size = self.reader.data().len().max(READ_BUFFER_BYTES) * 2;
                if size > MAX_RECORD_BYTES || !self.reader.grow(size) {
                    let what = explain_damage(&self.state.format, self.reader.data()).unwrap_or_else(|| {
                        format!(
                            "a record or block claims more than {} MiB",
                            MAX_RECORD_BYTES / (1024 * 1024)
                        )
                    });
                    self.state.stop(WarningKind::FileDamaged, consumed, &what);
                    self.done = true;
                }
            }
            e => {
                self.done = true;
                if Self::stopped_as_bomb(&mut self.gzip, &mut self.state, consumed) {
                    return;
                }
                let why = describe(&e);
                let what = explain_damage(&self.state.format, self.reader.data())
                    .unwrap_or_else(|| format!("malformed record or block ({why})"));
                self.state.stop(WarningKind::FileDamaged, consumed, &what);
            }
        }
    }
}

impl FileState {
    pub(super) fn new(name: String, format: Format) -> FileState {
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

    /// Notes a warning about this file (about frame `frame` when given); `what` follows the
    /// file's name in the text.
    pub(super) fn warn(&mut self, kind: WarningKind, frame: Option<u32>, what: String) {
        if self.warnings.len() < MAX_WARNINGS_PER_FILE {
            let w = Warning::new(kind, &self.name, format!("{}: {}", self.name, what));
            self.warnings.push(match frame {
                Some(f) => w.at_frame(f as u64),
                None => w,
            });
        } else {
            self.suppressed_warnings += 1;
        }
    }

    /// Reading this file ends here: say where and what was kept.
    fn stop(&mut self, kind: WarningKind, byte: usize, what: &str) {
        let kept = match self.frames {
            0 => "no frame before it".to_string(),
            1 => "kept frame 1 before it".to_string(),
            n => format!("kept frames 1-{n} before it"),
        };
        self.warn(
            kind,
            None,
            format!("at byte {byte}: {what}; stopped reading this file, {kept}"),
        );
    }

    pub(super) fn warnings(&self) -> Vec<Warning> {
        let mut w = self.warnings.clone();
        if self.suppressed_warnings > 0 {
            w.push(Warning::new(
                WarningKind::MoreWarnings,
                &self.name,
                format!(
                    "{}: {} more warnings not shown",
                    self.name, self.suppressed_warnings
                ),
            ));
        }
        w
    }

    pub(super) fn note_link(&mut self, link: LinkType) {
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

    pub(super) fn packet(
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
}

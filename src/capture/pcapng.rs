//! pcapng: the section header check, interface tables (link type, `if_tsresol`, `if_tsoffset`)
//! per section, and the packet and statistics blocks.

use std::io::Read;

use pcap_parser::PcapNGReader;
use pcap_parser::pcapng::{Block, InterfaceDescriptionBlock, InterfaceStatisticsBlock, SectionHeaderBlock};
use pcap_parser::traits::PcapReaderIterator;

use super::damage::{describe, read_u32};
use super::file::{FileState, Format, Interface, Step};
use super::{CaptureError, LinkType, MAX_TS_NS, READ_BUFFER_BYTES, WarningKind};

impl FileState {
    /// Looks at one pcapng block (of a pcapng file: other formats skip it).
    pub(super) fn on_ng_block(&mut self, offset: usize, block: Block<'_>) -> Result<Step, String> {
        if !matches!(self.format, Format::PcapNg { .. }) {
            return Ok(Step::Skip(offset));
        }
        match block {
            Block::SectionHeader(shb) => self.on_section_header(&shb).map(|()| Step::Skip(offset)),
            Block::InterfaceDescription(idb) => {
                self.on_interface_description(&idb);
                Ok(Step::Skip(offset))
            }
            Block::EnhancedPacket(epb) => {
                let Some(iface) = self.interfaces().get(epb.if_id as usize).copied() else {
                    return Ok(self.skip_frame(offset, |frame| {
                        format!(
                            "frame {frame} names interface {} which no interface description declared; frame skipped",
                            epb.if_id
                        )
                    }));
                };
                let ticks = ((epb.ts_high as u64) << 32) | epb.ts_low as u64;
                let ts = ticks_to_ns(ticks, iface.units_per_sec, iface.offset_s);
                self.packet(epb.data, epb.caplen, epb.origlen, ts, iface.link, offset)
            }
            Block::SimplePacket(spb) => {
                // A simple packet block belongs to interface 0, has no timestamp (we keep the
                // previous packet's time so the file stays in order) and its captured length is
                // the smaller of the original length and the block's data.
                let Some(iface) = self.interfaces().first().copied() else {
                    return Ok(self.skip_frame(offset, |frame| {
                        format!("frame {frame}: a simple packet block before any interface; frame skipped")
                    }));
                };
                let ts = self.last_ts;
                self.packet(spb.data, spb.origlen, spb.origlen, ts, iface.link, offset)
            }
            Block::InterfaceStatistics(isb) => {
                self.on_statistics(&isb);
                Ok(Step::Skip(offset))
            }
            Block::Unknown(ub) if ub.block_type == OBSOLETE_PACKET_BLOCK => {
                self.obsolete_packet(ub.data, offset)
            }
            _ => Ok(Step::Skip(offset)),
        }
    }

    /// The current section's interface table (empty for a pcap file).
    fn interfaces(&self) -> &[Interface] {
        match &self.format {
            Format::PcapNg { interfaces, .. } => interfaces,
            Format::Pcap { .. } => &[],
        }
    }

    /// A packet block that cannot be read counts as a frame (so later frame numbers stay
    /// Wireshark's) and is skipped with a warning.
    fn skip_frame(&mut self, offset: usize, why: impl FnOnce(u32) -> String) -> Step {
        let frame = self.frames + 1;
        self.frames = frame;
        self.warn(WarningKind::UndeclaredInterface, Some(frame), why(frame));
        Step::Skip(offset)
    }

    /// A new section has its own interface table and byte order.
    fn on_section_header(&mut self, shb: &SectionHeaderBlock<'_>) -> Result<(), String> {
        if shb.major_version != 1 {
            return Err(format!(
                "a section header declares pcapng version {}.{} (only 1.x exists)",
                shb.major_version, shb.minor_version
            ));
        }
        if let Format::PcapNg {
            interfaces,
            big_endian,
            section,
        } = &mut self.format
        {
            interfaces.clear();
            *big_endian = shb.big_endian();
            *section += 1;
        }
        Ok(())
    }

    /// Adds an interface to the section's table, with its timestamp resolution and offset.
    fn on_interface_description(&mut self, idb: &InterfaceDescriptionBlock<'_>) {
        let Format::PcapNg {
            interfaces,
            big_endian,
            ..
        } = &mut self.format
        else {
            return;
        };
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
            self.warn(WarningKind::UnsupportedLinkType, None, format!(
                "interface {n} declares link type {}, which bothends does not read: its packets are skipped",
                link.0
            ));
        }
        if bad_resol {
            let n = self.interface_count() - 1;
            self.warn(
                WarningKind::BadTimestampResolution,
                None,
                format!("interface {n} declares an impossible timestamp resolution; its packets get time 0"),
            );
        }
    }

    /// Interface statistics are cumulative: the latest drop count of each interface counts.
    fn on_statistics(&mut self, isb: &InterfaceStatisticsBlock<'_>) {
        let Format::PcapNg {
            big_endian, section, ..
        } = self.format
        else {
            return;
        };
        let key = (section, isb.if_id);
        // isb_ifdrop (5): dropped by the interface; isb_osdrop (7): by the OS.
        let drops = isb
            .options
            .iter()
            .filter(|o| matches!(o.code.0, 5 | 7))
            .filter_map(|o| option_u64(&o.value, big_endian))
            .fold(0u64, u64::saturating_add);
        let before = self.drops.get(&key).copied().unwrap_or(0);
        if drops > before {
            self.drops.insert(key, drops);
            let if_id = isb.if_id;
            self.warn(
                WarningKind::DropsReported,
                None,
                format!(
                    "interface {if_id} statistics say the capturing host dropped {drops} packets: \
                 some packets on the wire are not in this file"
                ),
            );
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
            return Ok(self.skip_frame(offset, |frame| {
                format!("frame {frame}: packet block names an undeclared interface; frame skipped")
            }));
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

/// Converts a pcapng timestamp to nanoseconds since the epoch, clamped to [0, MAX_TS_NS].
pub(super) fn ticks_to_ns(ticks: u64, units_per_sec: u64, offset_s: i64) -> i64 {
    if units_per_sec == 0 {
        return 0;
    }
    let secs = (ticks / units_per_sec) as i128 + offset_s as i128;
    let frac = (ticks % units_per_sec) as i128 * 1_000_000_000 / units_per_sec as i128;
    let ns = secs * 1_000_000_000 + frac;
    ns.clamp(0, MAX_TS_NS as i128) as i64
}

/// The block type of a Section Header Block, which starts every pcapng file (a palindrome: the
/// same in both byte orders).
pub(super) const MAGIC: u32 = 0x0A0D_0D0A;

/// Checks the first section header (`head`, the first bytes of the file) and opens the reader on
/// `stream` (the whole file).
pub(super) fn open(
    name: String,
    head: &[u8],
    stream: Box<dyn Read + Send>,
) -> Result<(Box<dyn PcapReaderIterator + Send>, FileState), CaptureError> {
    check_section_header(head).map_err(|what| CaptureError::BadHeader {
        path: name.clone(),
        what,
    })?;
    let r = PcapNGReader::new(READ_BUFFER_BYTES, stream).map_err(|e| CaptureError::BadHeader {
        path: name.clone(),
        what: format!("pcapng section header block is unusable ({})", describe(&e)),
    })?;
    let format = Format::PcapNg {
        interfaces: Vec::new(),
        big_endian: false,
        section: 0,
    };
    Ok((Box::new(r), FileState::new(name, format)))
}

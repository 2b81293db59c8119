//! pcap (libpcap's format): the file header, in either byte order, micro- or nanosecond
//! timestamps; its records are read by `FileState::on_block`.

use std::io::Read;

use pcap_parser::LegacyPcapReader;
use pcap_parser::traits::PcapReaderIterator;

use super::damage::describe;
use super::file::{FileState, Format};
use super::{CaptureError, LinkType, READ_BUFFER_BYTES};

/// The magic numbers of a pcap file header, as little-endian `u32`s: micro- and nanosecond
/// resolution (and the modified-pcap variant), in each byte order.
pub(super) const MAGICS: [u32; 6] = [
    0xa1b2_c3d4,
    0xa1b2_3c4d,
    0xa1b2_cd34,
    0xd4c3_b2a1,
    0x4d3c_b2a1,
    0x34cd_b2a1,
];

/// Checks the file header (`head`, the first bytes of the file, starting with `magic`) and opens
/// the reader on `stream` (the whole file).
pub(super) fn open(
    name: String,
    head: &[u8],
    magic: u32,
    stream: Box<dyn Read + Send>,
) -> Result<(Box<dyn PcapReaderIterator + Send>, FileState), CaptureError> {
    if head.len() < 24 {
        return Err(CaptureError::BadHeader {
            path: name,
            what: format!("pcap file header is cut short ({} of 24 bytes)", head.len()),
        });
    }
    let r = LegacyPcapReader::new(READ_BUFFER_BYTES, stream).map_err(|e| CaptureError::BadHeader {
        path: name.clone(),
        what: format!("pcap file header is unusable ({})", describe(&e)),
    })?;
    let be = matches!(magic, 0xd4c3_b2a1 | 0x4d3c_b2a1 | 0x34cd_b2a1);
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
    let nanos = matches!(magic, 0xa1b2_3c4d | 0x4d3c_b2a1);
    let state = FileState {
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
    };
    Ok((Box::new(r), state))
}

//! Damage after a valid header, explained in capture terms: which record or block, which field,
//! and whether the file was simply cut short.

use pcap_parser::PcapError;

use super::MAX_RECORD_BYTES;
use super::file::Format;

pub(super) fn read_u32(b: [u8; 4], big_endian: bool) -> u32 {
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
pub(super) fn impossible_block_length(format: &Format, data: &[u8]) -> Option<String> {
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
pub(super) const INTERRUPTED: &str = "the capture was interrupted while writing (e.g. tcpdump killed)";

/// What is wrong with the record (pcap) or block (pcapng) at the start of `data`, the rest of the
/// file from the damage on (or of the read buffer), in capture terms; None when its header looks
/// right or is not all there.
pub(super) fn explain_damage(format: &Format, data: &[u8]) -> Option<String> {
    match *format {
        Format::Pcap { big_endian, .. } => pcap_record_damage(data, big_endian),
        Format::PcapNg { big_endian, .. } => pcapng_block_damage(data, big_endian),
    }
}

/// [`explain_damage`] for a pcap record.
fn pcap_record_damage(data: &[u8], big_endian: bool) -> Option<String> {
    let field = |o: usize| -> Option<[u8; 4]> { data.get(o..o + 4)?.try_into().ok() };
    let max = MAX_RECORD_BYTES / (1024 * 1024);
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

/// [`explain_damage`] for a pcapng block (`big_endian`: the section's byte order).
fn pcapng_block_damage(data: &[u8], big_endian: bool) -> Option<String> {
    let field = |o: usize| -> Option<[u8; 4]> { data.get(o..o + 4)?.try_into().ok() };
    let max = MAX_RECORD_BYTES / (1024 * 1024);
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

pub(super) fn hex_prefix(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

pub(super) fn describe<I>(e: &PcapError<I>) -> String {
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

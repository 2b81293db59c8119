//! Link layers: Ethernet (802.1Q / QinQ), Linux cooked v1 and v2, raw IP, BSD loopback, NFLOG;
//! each leads to an IP packet sliced by etherparse.

use etherparse::{EtherType, LaxSlicedPacket};

use super::ip::segment;
use super::{Segment, Skip};
use crate::capture::Packet;

/// Any packet, sliced by etherparse.
pub(super) fn decode_sliced<'a>(p: &Packet<'a>) -> Result<Segment<'a>, Skip> {
    let data = p.data;
    // Linux cooked headers say whether the host sent the packet (PACKET_OUTGOING, 4) or received
    // it (PACKET_HOST 0, BROADCAST 1, MULTICAST 2, OTHERHOST 3).
    let outgoing = match p.link.0 {
        113 => data.get(..2).map(|t| u16::from_be_bytes([t[0], t[1]]) == 4),
        276 => data.get(10).map(|&t| t == 4),
        _ => None,
    };
    let sliced = match p.link.0 {
        1 => {
            LaxSlicedPacket::from_ethernet(data).map_err(|_| Skip::Malformed("ethernet header cut short"))?
        }
        // Raw IP: the version nibble says 4 or 6.
        12 | 14 | 101 | 228 | 229 => from_ip(data)?,
        // BSD loopback: a 4-byte address family in the capturing host's byte order (NULL) or in
        // network byte order (LOOP); either way, IP follows.
        0 | 108 => from_ip(
            data.get(4..)
                .ok_or(Skip::Malformed("loopback header cut short"))?,
        )?,
        113 => {
            // Linux cooked v1: 16-byte header, protocol (an EtherType) in the last two bytes.
            let proto = data
                .get(14..16)
                .ok_or(Skip::Malformed("linux cooked header cut short"))?;
            from_ether_type(u16::from_be_bytes([proto[0], proto[1]]), &data[16..])?
        }
        276 => {
            // Linux cooked v2: 20-byte header, protocol first.
            let proto = data
                .get(..2)
                .ok_or(Skip::Malformed("linux cooked v2 header cut short"))?;
            let rest = data
                .get(20..)
                .ok_or(Skip::Malformed("linux cooked v2 header cut short"))?;
            from_ether_type(u16::from_be_bytes([proto[0], proto[1]]), rest)?
        }
        239 => from_ip(nflog_payload(data)?)?,
        _ => return Err(Skip::UnsupportedLink),
    };
    let mut seg = segment(p, &sliced)?;
    seg.outgoing = outgoing;
    Ok(seg)
}

pub(super) fn from_ether_type(ether_type: u16, rest: &[u8]) -> Result<LaxSlicedPacket<'_>, Skip> {
    match ether_type {
        0x0800 | 0x86dd | 0x8100 | 0x88a8 | 0x9100 => {
            Ok(LaxSlicedPacket::from_ether_type(EtherType(ether_type), rest))
        }
        _ => Err(Skip::NotIp),
    }
}

pub(super) fn from_ip(data: &[u8]) -> Result<LaxSlicedPacket<'_>, Skip> {
    match data.first().map(|b| b >> 4) {
        Some(4 | 6) => {
            LaxSlicedPacket::from_ip(data).map_err(|_| Skip::Malformed("IP header cut short or invalid"))
        }
        Some(_) => Err(Skip::NotIp),
        None => Err(Skip::Malformed("no IP header")),
    }
}

/// NFLOG: a 4-byte header, then TLVs (length and type in host byte order, little-endian on the
/// hosts that write these files; length includes the 4-byte TLV header; padded to 4 bytes).
/// Type 9 (NFULA_PAYLOAD) holds the IP packet.
pub(super) fn nflog_payload(data: &[u8]) -> Result<&[u8], Skip> {
    let mut rest = data.get(4..).ok_or(Skip::Malformed("nflog header cut short"))?;
    while rest.len() >= 4 {
        let len = u16::from_le_bytes([rest[0], rest[1]]) as usize;
        let kind = u16::from_le_bytes([rest[2], rest[3]]) & 0x7fff;
        if len < 4 {
            return Err(Skip::Malformed("nflog TLV length below 4"));
        }
        let value = rest.get(4..len.min(rest.len())).unwrap_or(&[]);
        if kind == 9 {
            return Ok(value);
        }
        let padded = (len + 3) & !3;
        rest = rest.get(padded..).unwrap_or(&[]);
    }
    Err(Skip::NotIp)
}

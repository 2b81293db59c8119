//! The fast path: Ethernet II, IPv4 and TCP read directly, without slicing the packet.

use std::net::IpAddr;

use super::ip::payload_len;
use super::options::read_tcp_options;
use super::{Endpoint, Segment, TcpFlags};
use crate::capture::Packet;

/// The common case read directly: Ethernet II, IPv4 with a total length that covers its header
/// and no fragmentation, TCP with its whole header. Anything else (VLAN tags, IPv6, cut or odd
/// headers, other protocols) goes the general way through etherparse, which gives the same
/// segment for these packets (`fast_path_agrees_with_etherparse` checks every packet of the
/// corpus and the lab captures, and every cut of a few frames). Slicing the packet with
/// etherparse was two thirds of decoding; this is the floor under everything else.
#[inline(always)]
pub(super) fn ethernet_ipv4_tcp<'a>(p: &Packet<'a>) -> Option<Segment<'a>> {
    let data = p.data;
    if data.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = &data[14..];
    let first = *ip.first()?;
    let header_len = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || header_len < 20 || ip.len() < header_len {
        return None;
    }
    let total_len = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    // More fragments, or a fragment offset: not reassembled (the general way says so).
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    if total_len < header_len || fragment || ip[9] != etherparse::ip_number::TCP.0 {
        return None;
    }
    let ip_payload = &ip[header_len..total_len.min(ip.len())];
    let tcp_len = usize::from(*ip_payload.get(12)? >> 4) * 4;
    if tcp_len < 20 || ip_payload.len() < tcp_len {
        return None;
    }
    let (tcp, payload) = ip_payload.split_at(tcp_len);
    let be16 = |b: &[u8], i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let be32 = |b: &[u8], i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let claimed = total_len - header_len;
    Some(Segment {
        frame: p.frame,
        ts_ns: p.ts_ns,
        src: Endpoint {
            ip: IpAddr::V4(std::net::Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15])),
            port: be16(tcp, 0),
        },
        dst: Endpoint {
            ip: IpAddr::V4(std::net::Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19])),
            port: be16(tcp, 2),
        },
        seq: be32(tcp, 4),
        ack: be32(tcp, 8),
        flags: TcpFlags(tcp[13]),
        window: be16(tcp, 14),
        options: read_tcp_options(&tcp[20..]),
        payload_len: payload_len(p, payload, tcp_len, Some(claimed)),
        payload,
        ip_id: Some(be16(ip, 4)),
        ttl: ip[8],
        outgoing: None,
    })
}

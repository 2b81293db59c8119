//! IP and TCP headers of a sliced packet: the segment, or why the packet is not one (not IP, a
//! fragment, not TCP, an ICMP error, cut short), and the payload's length on the wire.

use std::net::IpAddr;

use etherparse::{LaxIpPayloadSlice, LaxNetSlice, LaxSlicedPacket, TransportSlice};

use super::icmp::icmp_error;
use super::options::tcp_options;
use super::{Endpoint, Segment, Skip, TcpFlags};
use crate::capture::Packet;

pub(super) fn segment<'a>(p: &Packet<'a>, sliced: &LaxSlicedPacket<'a>) -> Result<Segment<'a>, Skip> {
    let Some(net) = &sliced.net else {
        return Err(if sliced.stop_err.is_some() {
            Skip::Malformed("IP header cut short or invalid")
        } else {
            Skip::NotIp
        });
    };
    let IpHeader {
        src: src_ip,
        dst: dst_ip,
        ip_id,
        ttl,
        fragmented,
        claimed: claimed_ip_payload,
        payload: ip_payload,
    } = ip_header(net)?;
    if fragmented {
        return Err(Skip::Fragment);
    }
    if ip_payload.ip_number != etherparse::ip_number::TCP {
        let v6 = match ip_payload.ip_number {
            etherparse::ip_number::ICMP => false,
            etherparse::ip_number::IPV6_ICMP => true,
            _ => return Err(Skip::NotTcp),
        };
        return Err(icmp_error(p, src_ip, ttl, v6, ip_payload.payload).map_or(Skip::NotTcp, Skip::Icmp));
    }
    let Some(TransportSlice::Tcp(tcp)) = &sliced.transport else {
        return Err(Skip::Malformed("TCP header cut short or invalid"));
    };
    let header_len = tcp.header_slice().len();
    let payload = tcp.payload();
    let payload_len = payload_len(p, payload, header_len, claimed_ip_payload);
    let options = tcp_options(tcp.options_iterator());

    Ok(Segment {
        frame: p.frame,
        ts_ns: p.ts_ns,
        src: Endpoint {
            ip: src_ip,
            port: tcp.source_port(),
        },
        dst: Endpoint {
            ip: dst_ip,
            port: tcp.destination_port(),
        },
        seq: tcp.sequence_number(),
        ack: tcp.acknowledgment_number(),
        flags: TcpFlags(tcp.header_slice()[13]),
        window: tcp.window_size(),
        options,
        payload_len,
        payload,
        ip_id,
        ttl,
        outgoing: None,
    })
}

/// The payload's length on the wire: what the IP header claims for it (`claimed`: the IP payload),
/// bounded by the frame's original length, never less than what was captured.
pub(super) fn payload_len(
    p: &Packet<'_>,
    payload: &[u8],
    tcp_header_len: usize,
    claimed: Option<usize>,
) -> u32 {
    // Where the payload starts in the frame, to tell how much of the frame's original length is
    // left for it when the IP header does not say.
    let payload_offset = (payload.as_ptr() as usize).saturating_sub(p.data.as_ptr() as usize);
    let room_on_wire = (p.orig_len as usize).saturating_sub(payload_offset);
    let wire = match claimed {
        Some(ip_len) => ip_len.saturating_sub(tcp_header_len).min(room_on_wire),
        None => room_on_wire,
    };
    wire.max(payload.len()).min(u32::MAX as usize) as u32
}

/// What the segment needs from an IPv4 or IPv6 header.
struct IpHeader<'a, 'b> {
    src: IpAddr,
    dst: IpAddr,
    /// IPv4's identification field.
    ip_id: Option<u16>,
    /// TTL or hop limit.
    ttl: u8,
    fragmented: bool,
    /// The IP payload's length by the header, when it says (not under TSO, BIG TCP, jumbograms).
    claimed: Option<usize>,
    payload: &'b LaxIpPayloadSlice<'a>,
}

/// Reads the IP header of a sliced packet (not IP: ARP).
fn ip_header<'a, 'b>(net: &'b LaxNetSlice<'a>) -> Result<IpHeader<'a, 'b>, Skip> {
    match net {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            let pl = v4.payload();
            let header_len = h.slice().len() + v4.extensions().auth.map_or(0, |a| a.slice().len());
            // A total length shorter than the header (0 under TSO / BIG TCP) does not say.
            let claimed = (h.total_len() as usize >= h.slice().len())
                .then(|| (h.total_len() as usize).saturating_sub(header_len));
            Ok(IpHeader {
                src: IpAddr::V4(h.source_addr()),
                dst: IpAddr::V4(h.destination_addr()),
                ip_id: Some(h.identification()),
                ttl: h.ttl(),
                fragmented: v4.is_payload_fragmented(),
                claimed,
                payload: pl,
            })
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            let pl = v6.payload();
            let exts = v6.extensions().slice().len();
            // A payload length of 0 is a jumbogram (or BIG TCP): the header does not say.
            let claimed =
                (h.payload_length() != 0).then(|| (h.payload_length() as usize).saturating_sub(exts));
            Ok(IpHeader {
                src: IpAddr::V6(h.source_addr()),
                dst: IpAddr::V6(h.destination_addr()),
                ip_id: None,
                ttl: h.hop_limit(),
                fragmented: v6.is_payload_fragmented(),
                claimed,
                payload: pl,
            })
        }
        LaxNetSlice::Arp(_) => Err(Skip::NotIp),
    }
}

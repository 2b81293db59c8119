//! # decode: packet → TCP segment
//!
//! In: a [`Packet`] (link type + captured bytes). Out: a [`Segment`] for every TCP packet over
//! IPv4 or IPv6, or the reason the packet is not one ([`Skip`]), which the caller counts.
//!
//! Link layers: Ethernet (with 802.1Q / QinQ tags), Linux cooked v1 and v2 (`tcpdump -i any`),
//! raw IP (LINKTYPE 101, 228, 229, and the old DLT values 12 and 14), BSD loopback / NULL (either
//! byte order) and LOOP, NFLOG.
//!
//! Guarantees: never panics on any bytes; no allocation; the segment borrows the packet's bytes.
//! `payload_len` is the payload length *on the wire*: when snaplen cut the packet, `payload` holds
//! only the captured prefix and `payload_len` still says how long it was (from the IP header, or
//! from the record's original length when the IP header does not say: TSO / BIG TCP packets with
//! an IPv4 total length of 0, IPv6 jumbograms).
//!
//! What it refuses to know: checksums (offload on the capturing host makes them look wrong when
//! they are not), IP reassembly (fragments are counted, not rebuilt), and anything above TCP.

use std::fmt;
use std::net::IpAddr;

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, TcpOptionElement, TransportSlice};

#[cfg(test)]
use crate::capture::LinkType;
use crate::capture::{FrameRef, Packet};

/// An IP address and a port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.ip {
            IpAddr::V4(ip) => write!(f, "{ip}:{}", self.port),
            IpAddr::V6(ip) => write!(f, "[{ip}]:{}", self.port),
        }
    }
}

impl std::str::FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> Result<Endpoint, String> {
        let sa: std::net::SocketAddr = s
            .parse()
            .map_err(|_| format!("'{s}' is not IP:PORT (IPv6 as [addr]:port)"))?;
        Ok(Endpoint {
            ip: sa.ip(),
            port: sa.port(),
        })
    }
}

/// TCP header flags, as the header's low byte.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
    pub const URG: u8 = 0x20;
    pub const ECE: u8 = 0x40;
    pub const CWR: u8 = 0x80;

    pub fn fin(self) -> bool {
        self.0 & Self::FIN != 0
    }
    pub fn syn(self) -> bool {
        self.0 & Self::SYN != 0
    }
    pub fn rst(self) -> bool {
        self.0 & Self::RST != 0
    }
    pub fn ack(self) -> bool {
        self.0 & Self::ACK != 0
    }
}

impl fmt::Display for TcpFlags {
    /// Wireshark's order and letters, without the dots: e.g. `SA` for SYN-ACK, `FA`, `R`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (bit, c) in [
            (Self::CWR, 'C'),
            (Self::ECE, 'E'),
            (Self::URG, 'U'),
            (Self::SYN, 'S'),
            (Self::FIN, 'F'),
            (Self::RST, 'R'),
            (Self::PSH, 'P'),
            (Self::ACK, 'A'),
        ] {
            if self.0 & bit != 0 {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// The TCP options bothends uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpOptions {
    pub mss: Option<u16>,
    pub window_scale: Option<u8>,
    pub sack_permitted: bool,
    /// SACK blocks (left, right edge), the first `sack_len` of them.
    pub sack: [(u32, u32); 4],
    pub sack_len: u8,
    /// (TSval, TSecr)
    pub timestamp: Option<(u32, u32)>,
}

impl TcpOptions {
    pub fn sack_blocks(&self) -> &[(u32, u32)] {
        &self.sack[..self.sack_len as usize]
    }
}

/// One TCP segment as captured.
#[derive(Clone, Copy, Debug)]
pub struct Segment<'a> {
    pub frame: FrameRef,
    pub ts_ns: i64,
    pub src: Endpoint,
    pub dst: Endpoint,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// The raw window field; scaling is the connection's business.
    pub window: u16,
    pub options: TcpOptions,
    /// Payload length on the wire.
    pub payload_len: u32,
    /// The captured payload bytes: `payload_len` of them, or fewer when snaplen cut the packet.
    pub payload: &'a [u8],
    /// IPv4 identification (None for IPv6).
    pub ip_id: Option<u16>,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// Sent by the capturing host (true) or received by it (false), when the link layer says
    /// (Linux cooked captures do); None otherwise.
    pub outgoing: Option<bool>,
}

/// Why a packet is not a TCP segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// A link type bothends does not read.
    UnsupportedLink,
    /// Not IP (ARP, LLDP, ...).
    NotIp,
    /// IP but not TCP (UDP, ICMP, ...).
    NotTcp,
    /// An IP fragment: not reassembled.
    Fragment,
    /// The bytes end or lie before the TCP header is complete.
    Malformed(&'static str),
    /// An ICMP error about a TCP packet: not a segment, but news for the connection it quotes.
    Icmp(IcmpError),
}

/// An ICMP (or ICMPv6) error that quotes a TCP packet: destination unreachable or time exceeded.
/// A router or firewall sends it from its own address; a host from the destination's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpError {
    pub frame: FrameRef,
    pub ts_ns: i64,
    /// Who sent the ICMP packet, and its TTL (hop limit) as captured.
    pub from: IpAddr,
    pub ttl: u8,
    pub kind: IcmpKind,
    /// The quoted TCP packet: its source and destination, and its sequence number.
    pub src: Endpoint,
    pub dst: Endpoint,
    pub seq: u32,
}

/// What an ICMP error says, in the terms a connection attempt cares about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IcmpKind {
    NetUnreachable,
    HostUnreachable,
    ProtocolUnreachable,
    PortUnreachable,
    /// Fragmentation needed (path MTU discovery): not a refusal.
    PacketTooBig,
    /// Communication administratively prohibited (a firewall's REJECT), net, host or port.
    Prohibited,
    /// Any other unreachable code (source route failed, unknown network, ...).
    OtherUnreachable(u8),
    TimeExceeded,
}

impl IcmpKind {
    fn v4(icmp_type: u8, code: u8) -> Option<IcmpKind> {
        Some(match (icmp_type, code) {
            (3, 0 | 6 | 11) => IcmpKind::NetUnreachable,
            (3, 1 | 7 | 12) => IcmpKind::HostUnreachable,
            (3, 2) => IcmpKind::ProtocolUnreachable,
            (3, 3) => IcmpKind::PortUnreachable,
            (3, 4) => IcmpKind::PacketTooBig,
            (3, 9 | 10 | 13) => IcmpKind::Prohibited,
            (3, c) => IcmpKind::OtherUnreachable(c),
            (11, _) => IcmpKind::TimeExceeded,
            _ => return None,
        })
    }

    fn v6(icmp_type: u8, code: u8) -> Option<IcmpKind> {
        Some(match (icmp_type, code) {
            (1, 0) => IcmpKind::NetUnreachable,
            (1, 1 | 5 | 6) => IcmpKind::Prohibited,
            (1, 3) => IcmpKind::HostUnreachable,
            (1, 4) => IcmpKind::PortUnreachable,
            (1, c) => IcmpKind::OtherUnreachable(c),
            (2, _) => IcmpKind::PacketTooBig,
            (3, _) => IcmpKind::TimeExceeded,
            _ => return None,
        })
    }

    /// Does it end a connection attempt (Linux aborts a connect on it)?
    pub fn refuses(self) -> bool {
        !matches!(self, IcmpKind::PacketTooBig | IcmpKind::TimeExceeded)
    }

    /// In words, as `ping` and Wireshark say it.
    pub fn words(self) -> &'static str {
        match self {
            IcmpKind::NetUnreachable => "network unreachable",
            IcmpKind::HostUnreachable => "host unreachable",
            IcmpKind::ProtocolUnreachable => "protocol unreachable",
            IcmpKind::PortUnreachable => "port unreachable",
            IcmpKind::PacketTooBig => "fragmentation needed (packet too big)",
            IcmpKind::Prohibited => "communication administratively prohibited",
            IcmpKind::OtherUnreachable(_) => "destination unreachable",
            IcmpKind::TimeExceeded => "time exceeded (TTL expired in transit)",
        }
    }

    /// The error a Linux `connect()` returns for it, as Apache and nginx log it.
    pub fn errno(self) -> &'static str {
        match self {
            IcmpKind::PortUnreachable => "(111) Connection refused",
            IcmpKind::NetUnreachable => "(101) Network is unreachable",
            IcmpKind::ProtocolUnreachable => "(92) Protocol not available",
            _ => "(113) No route to host",
        }
    }
}

/// The TCP packet an ICMP error quotes (its IP header and at least the first 8 bytes of TCP:
/// ports and sequence number), read by hand: the quote is usually too short for a TCP parser.
fn quoted_tcp(bytes: &[u8]) -> Option<(Endpoint, Endpoint, u32)> {
    let (src, dst, tcp) = match bytes.first()? >> 4 {
        4 => {
            let ihl = (*bytes.first()? & 0x0f) as usize * 4;
            if ihl < 20 || *bytes.get(9)? != 6 {
                return None;
            }
            let a: [u8; 4] = bytes.get(12..16)?.try_into().ok()?;
            let b: [u8; 4] = bytes.get(16..20)?.try_into().ok()?;
            (IpAddr::from(a), IpAddr::from(b), bytes.get(ihl..)?)
        }
        6 => {
            if *bytes.get(6)? != 6 {
                return None;
            }
            let a: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            let b: [u8; 16] = bytes.get(24..40)?.try_into().ok()?;
            (IpAddr::from(a), IpAddr::from(b), bytes.get(40..)?)
        }
        _ => return None,
    };
    let port = |i: usize| Some(u16::from_be_bytes([*tcp.get(i)?, *tcp.get(i + 1)?]));
    let seq = u32::from_be_bytes(tcp.get(4..8)?.try_into().ok()?);
    Some((
        Endpoint {
            ip: src,
            port: port(0)?,
        },
        Endpoint {
            ip: dst,
            port: port(2)?,
        },
        seq,
    ))
}

/// An ICMP error message (`bytes`: from its type field on) quoting a TCP packet.
fn icmp_error(p: &Packet<'_>, from: IpAddr, ttl: u8, v6: bool, bytes: &[u8]) -> Option<IcmpError> {
    let (t, c) = (*bytes.first()?, *bytes.get(1)?);
    let kind = if v6 {
        IcmpKind::v6(t, c)
    } else {
        IcmpKind::v4(t, c)
    }?;
    let (src, dst, seq) = quoted_tcp(bytes.get(8..)?)?;
    Some(IcmpError {
        frame: p.frame,
        ts_ns: p.ts_ns,
        from,
        ttl,
        kind,
        src,
        dst,
        seq,
    })
}

/// Decodes one packet.
pub fn decode<'a>(p: &Packet<'a>) -> Result<Segment<'a>, Skip> {
    if p.link.0 == 1 {
        if let Some(seg) = ethernet_ipv4_tcp(p) {
            return Ok(seg);
        }
    }
    decode_sliced(p)
}

/// The common case read directly: Ethernet II, IPv4 with a total length that covers its header
/// and no fragmentation, TCP with its whole header. Anything else (VLAN tags, IPv6, cut or odd
/// headers, other protocols) goes the general way through etherparse, which gives the same
/// segment for these packets (`fast_path_agrees_with_etherparse` checks every packet of the
/// corpus and the lab captures, and every cut of a few frames). Slicing the packet with
/// etherparse was two thirds of decoding; this is the floor under everything else.
fn ethernet_ipv4_tcp<'a>(p: &Packet<'a>) -> Option<Segment<'a>> {
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

/// The payload's length on the wire: what the IP header claims for it (`claimed`: the IP payload),
/// bounded by the frame's original length, never less than what was captured.
fn payload_len(p: &Packet<'_>, payload: &[u8], tcp_header_len: usize, claimed: Option<usize>) -> u32 {
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

/// The options bothends uses, read as etherparse's `TcpOptionsIterator` reads them (end of list,
/// an unknown kind or a wrong length stops the reading, not the segment), without its
/// per-option results: a timestamp on every packet made option parsing a quarter of decoding.
/// `tcp_options_read_as_etherparse_reads_them` compares the two.
fn read_tcp_options(mut o: &[u8]) -> TcpOptions {
    let be16 = |b: &[u8], i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let be32 = |b: &[u8], i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut out = TcpOptions::default();
    while let Some(&kind) = o.first() {
        let len = match kind {
            // Noop
            1 => {
                o = &o[1..];
                continue;
            }
            // MSS, window scale, SACK permitted, timestamps: a fixed length.
            2 => 4,
            3 => 3,
            4 => 2,
            8 => 10,
            // SACK: 1 to 4 blocks.
            5 => match o.get(1) {
                Some(&l @ (10 | 18 | 26 | 34)) => usize::from(l),
                _ => break,
            },
            // End of list, or unknown.
            _ => break,
        };
        if o.len() < len || usize::from(o[1]) != len {
            break;
        }
        match kind {
            2 => out.mss = Some(be16(o, 2)),
            3 => out.window_scale = Some(o[2]),
            4 => out.sack_permitted = true,
            5 => {
                let blocks = (len - 2) / 8;
                for i in 0..blocks {
                    out.sack[i] = (be32(o, 2 + 8 * i), be32(o, 6 + 8 * i));
                }
                out.sack_len = blocks as u8;
            }
            _ => out.timestamp = Some((be32(o, 2), be32(o, 6))),
        }
        o = &o[len..];
    }
    out
}

/// The options bothends uses; a malformed option ends option parsing, not the segment.
fn tcp_options(options: etherparse::TcpOptionsIterator<'_>) -> TcpOptions {
    let mut out = TcpOptions::default();
    for opt in options {
        match opt {
            Ok(TcpOptionElement::MaximumSegmentSize(m)) => out.mss = Some(m),
            Ok(TcpOptionElement::WindowScale(s)) => out.window_scale = Some(s),
            Ok(TcpOptionElement::SelectiveAcknowledgementPermitted) => out.sack_permitted = true,
            Ok(TcpOptionElement::SelectiveAcknowledgement(first, rest)) => {
                out.sack[0] = first;
                let mut n = 1;
                for b in rest.into_iter().flatten() {
                    out.sack[n] = b;
                    n += 1;
                }
                out.sack_len = n as u8;
            }
            Ok(TcpOptionElement::Timestamp(val, ecr)) => out.timestamp = Some((val, ecr)),
            Ok(TcpOptionElement::Noop) => {}
            Err(_) => break,
        }
    }
    out
}

/// Any packet, sliced by etherparse.
fn decode_sliced<'a>(p: &Packet<'a>) -> Result<Segment<'a>, Skip> {
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

fn from_ether_type(ether_type: u16, rest: &[u8]) -> Result<LaxSlicedPacket<'_>, Skip> {
    match ether_type {
        0x0800 | 0x86dd | 0x8100 | 0x88a8 | 0x9100 => {
            Ok(LaxSlicedPacket::from_ether_type(EtherType(ether_type), rest))
        }
        _ => Err(Skip::NotIp),
    }
}

fn from_ip(data: &[u8]) -> Result<LaxSlicedPacket<'_>, Skip> {
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
fn nflog_payload(data: &[u8]) -> Result<&[u8], Skip> {
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

fn segment<'a>(p: &Packet<'a>, sliced: &LaxSlicedPacket<'a>) -> Result<Segment<'a>, Skip> {
    let Some(net) = &sliced.net else {
        return Err(if sliced.stop_err.is_some() {
            Skip::Malformed("IP header cut short or invalid")
        } else {
            Skip::NotIp
        });
    };
    let (src_ip, dst_ip, ip_id, ttl, fragmented, claimed_ip_payload, ip_payload) = match net {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            let pl = v4.payload();
            let header_len = h.slice().len() + v4.extensions().auth.map_or(0, |a| a.slice().len());
            // A total length shorter than the header (0 under TSO / BIG TCP) does not say.
            let claimed = (h.total_len() as usize >= h.slice().len())
                .then(|| (h.total_len() as usize).saturating_sub(header_len));
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                Some(h.identification()),
                h.ttl(),
                v4.is_payload_fragmented(),
                claimed,
                pl,
            )
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            let pl = v6.payload();
            let exts = v6.extensions().slice().len();
            // A payload length of 0 is a jumbogram (or BIG TCP): the header does not say.
            let claimed =
                (h.payload_length() != 0).then(|| (h.payload_length() as usize).saturating_sub(exts));
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                None,
                h.hop_limit(),
                v6.is_payload_fragmented(),
                claimed,
                pl,
            )
        }
        LaxNetSlice::Arp(_) => return Err(Skip::NotIp),
    };
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

/// Counts of packets that were not TCP segments, by reason; kept per capture.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodeStats {
    pub tcp: u64,
    pub not_ip: u64,
    pub not_tcp: u64,
    pub fragments: u64,
    pub malformed: u64,
    pub unsupported_link: u64,
}

impl DecodeStats {
    pub fn count(&mut self, r: &Result<Segment<'_>, Skip>) {
        match r {
            Ok(_) => self.tcp += 1,
            Err(Skip::NotIp) => self.not_ip += 1,
            Err(Skip::NotTcp | Skip::Icmp(_)) => self.not_tcp += 1,
            Err(Skip::Fragment) => self.fragments += 1,
            Err(Skip::Malformed(_)) => self.malformed += 1,
            Err(Skip::UnsupportedLink) => self.unsupported_link += 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn packet(link: LinkType, data: &[u8], orig_len: u32) -> Packet<'_> {
        Packet {
            frame: FrameRef { file: 0, frame: 1 },
            ts_ns: 0,
            link,
            data,
            orig_len,
        }
    }

    fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .ack(77)
            .psh();
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn raw_ipv4_segment_fields() {
        let bytes = ipv4_tcp(b"GET / HTTP/1.1\r\n\r\n");
        let s = decode(&packet(LinkType::RAW, &bytes, bytes.len() as u32)).unwrap();
        assert_eq!(s.src.to_string(), "10.0.0.1:40000");
        assert_eq!(s.dst.to_string(), "10.0.0.2:80");
        assert_eq!((s.seq, s.ack, s.window), (1000, 77, 65535));
        assert_eq!(s.flags.to_string(), "PA");
        assert_eq!(s.payload, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(s.payload_len, 18);
        assert_eq!(s.ttl, 64);
    }

    #[test]
    fn snaplen_cut_keeps_the_wire_length() {
        let bytes = ipv4_tcp(&[b'x'; 1000]);
        let cut = &bytes[..96];
        let s = decode(&packet(LinkType::RAW, cut, bytes.len() as u32)).unwrap();
        assert_eq!(s.payload.len(), 96 - 40);
        assert_eq!(s.payload_len, 1000);
    }

    #[test]
    fn zero_total_length_uses_the_original_length() {
        let mut bytes = ipv4_tcp(&[b'y'; 300]);
        bytes[2] = 0;
        bytes[3] = 0;
        let s = decode(&packet(LinkType::RAW, &bytes, bytes.len() as u32)).unwrap();
        assert_eq!(s.payload_len, 300);
    }

    #[test]
    fn linux_cooked_v1_and_v2_and_null() {
        let ip = ipv4_tcp(b"hi");
        let mut sll = vec![0u8; 16];
        sll[14] = 0x08;
        sll.extend_from_slice(&ip);
        let s = decode(&packet(LinkType::LINUX_SLL, &sll, sll.len() as u32)).unwrap();
        assert_eq!(s.payload, b"hi");

        let mut sll2 = vec![0u8; 20];
        sll2[0] = 0x08;
        sll2.extend_from_slice(&ip);
        let s = decode(&packet(LinkType::LINUX_SLL2, &sll2, sll2.len() as u32)).unwrap();
        assert_eq!(s.payload, b"hi");

        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&ip);
        let s = decode(&packet(LinkType::NULL, &null, null.len() as u32)).unwrap();
        assert_eq!(s.payload, b"hi");
    }

    #[test]
    fn every_truncation_is_an_error_or_a_segment_never_a_panic() {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .single_vlan(5.try_into().unwrap())
            .ipv6([1; 16], [2; 16], 5)
            .tcp(1, 2, 3, 4)
            .syn()
            .options(&[
                TcpOptionElement::MaximumSegmentSize(1460),
                TcpOptionElement::SelectiveAcknowledgementPermitted,
                TcpOptionElement::Timestamp(7, 0),
                TcpOptionElement::Noop,
                TcpOptionElement::WindowScale(7),
            ])
            .unwrap();
        let mut v = Vec::new();
        b.write(&mut v, b"").unwrap();
        let full = decode(&packet(LinkType::ETHERNET, &v, v.len() as u32)).unwrap();
        assert_eq!(full.options.mss, Some(1460));
        assert_eq!(full.options.window_scale, Some(7));
        assert!(full.options.sack_permitted);
        assert_eq!(full.options.timestamp, Some((7, 0)));
        assert!(full.flags.syn());
        for n in 0..v.len() {
            let r = decode(&packet(LinkType::ETHERNET, &v[..n], v.len() as u32));
            assert!(r.is_err(), "cut at {n} still decoded");
        }
    }

    /// Every capture file under `dir`, recursively.
    fn capture_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.is_dir() {
                capture_files(&path, out);
            } else if path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.contains(".pcap") || n.ends_with(".cap"))
            {
                out.push(path);
            }
        }
    }

    /// The fast path (Ethernet, IPv4, TCP read directly) gives the segment etherparse gives, on
    /// every packet of the corpus and the lab captures it takes, and on every cut and every
    /// total length of a few frames.
    #[test]
    fn fast_path_agrees_with_etherparse() {
        use crate::capture::{CaptureSet, Input};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = Vec::new();
        capture_files(&root.join("tests/corpus"), &mut files);
        capture_files(&root.join("captures"), &mut files);
        let mut taken = 0;
        for f in files {
            let Ok(mut set) = CaptureSet::open(&[Input::Path(f.clone())]) else {
                continue;
            };
            while let Some(p) = set.next() {
                if let (true, Some(fast)) = (p.link.0 == 1, ethernet_ipv4_tcp(&p)) {
                    let general = decode_sliced(&p);
                    assert_eq!(
                        format!("{:?}", Ok::<_, Skip>(fast)),
                        format!("{general:?}"),
                        "{f:?} {:?}",
                        p.frame
                    );
                    taken += 1;
                }
            }
        }
        assert!(taken > 10_000, "{taken}");

        let frame = |ip_options: usize, payload: &[u8]| {
            let b = PacketBuilder::ethernet2([1; 6], [2; 6])
                .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
                .tcp(40000, 80, 1000, 65535)
                .ack(77)
                .options(&[
                    TcpOptionElement::Noop,
                    TcpOptionElement::Timestamp(7, 9),
                    TcpOptionElement::SelectiveAcknowledgement((1, 2), [Some((3, 4)), None, None]),
                ])
                .unwrap();
            let mut v = Vec::new();
            b.write(&mut v, payload).unwrap();
            // IPv4 options (NOPs) after the 20-byte header.
            for _ in 0..ip_options {
                v.splice(34..34, [1u8; 4]);
                v[14] += 1;
                let total = u16::from_be_bytes([v[16], v[17]]) + 4;
                v[16..18].copy_from_slice(&total.to_be_bytes());
            }
            v
        };
        let mut compared = 0;
        for v in [
            frame(0, b"GET / HTTP/1.1\r\n\r\n"),
            frame(2, b"xyz"),
            frame(0, b""),
        ] {
            let total = u16::from_be_bytes([v[16], v[17]]);
            let header = u16::from(v[14] & 0x0f) * 4;
            for claimed in [0, header - 1, header, header + 10, total - 1, total, total + 100] {
                for flags in [0x00u8, 0x40, 0x20, 0x01] {
                    for n in 0..=v.len() {
                        let mut w = v[..n].to_vec();
                        if w.len() >= 18 {
                            w[16..18].copy_from_slice(&claimed.to_be_bytes());
                        }
                        if w.len() >= 21 {
                            w[20] = flags;
                        }
                        for orig in [w.len() as u32, v.len() as u32 + 50] {
                            let p = packet(LinkType::ETHERNET, &w, orig);
                            if let Some(fast) = ethernet_ipv4_tcp(&p) {
                                assert_eq!(
                                    format!("{:?}", Ok::<_, Skip>(fast)),
                                    format!("{:?}", decode_sliced(&p)),
                                    "cut at {n}, total length {claimed}, flags {flags:#x}"
                                );
                                compared += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(compared > 100, "{compared}");
    }

    /// The options read directly, as etherparse's iterator reads them: every string over a few
    /// telling bytes up to 5 long, then random ones built from valid and broken options.
    #[test]
    fn tcp_options_read_as_etherparse_reads_them() {
        let check = |o: &[u8]| {
            let ours = read_tcp_options(o);
            let theirs = tcp_options(etherparse::TcpOptionsIterator::from_slice(o));
            assert_eq!(ours, theirs, "{o:?}");
        };
        let alphabet = [0u8, 1, 2, 3, 4, 5, 8, 10, 18, 34, 255];
        for len in 0..=5u32 {
            for code in 0..alphabet.len().pow(len) {
                let mut c = code;
                let o: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[c % alphabet.len()];
                        c /= alphabet.len();
                        b
                    })
                    .collect();
                check(&o);
            }
        }
        let pieces: [&[u8]; 9] = [
            &[1],
            &[2, 4, 5, 180],
            &[3, 3, 7],
            &[4, 2],
            &[8, 10, 1, 2, 3, 4, 5, 6, 7, 8],
            &[5, 10, 0, 0, 0, 1, 0, 0, 0, 2],
            &[5, 18, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4],
            &[
                5, 26, 9, 9, 9, 9, 8, 8, 8, 8, 7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4,
            ],
            &[0],
        ];
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..100_000 {
            let mut o = Vec::new();
            while o.len() < 40 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let piece = pieces[(rng % 9) as usize];
                o.extend_from_slice(piece);
                if rng % 7 == 0 {
                    // A broken one: a length or a kind changed, or cut short.
                    let i = (rng >> 8) as usize % o.len();
                    o[i] = (rng >> 16) as u8;
                }
            }
            o.truncate((rng >> 24) as usize % 41);
            check(&o);
        }
    }

    #[test]
    fn udp_and_arp_are_skipped() {
        let b = PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9).udp(1, 2);
        let mut v = Vec::new();
        b.write(&mut v, b"dns").unwrap();
        assert_eq!(
            decode(&packet(LinkType::RAW, &v, v.len() as u32)).unwrap_err(),
            Skip::NotTcp
        );
        let arp = [0u8; 42];
        let mut eth = vec![0u8; 12];
        eth.extend_from_slice(&[0x08, 0x06]);
        eth.extend_from_slice(&arp);
        assert!(decode(&packet(LinkType::ETHERNET, &eth, eth.len() as u32)).is_err());
    }
}

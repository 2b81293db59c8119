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
//!
//! This file holds the types the later stages read and [`decode`]; `fast.rs` reads the common
//! case (Ethernet, IPv4, TCP) directly, `link.rs` the link layers of everything else, `ip.rs` the
//! IP and TCP headers of a sliced packet, `options.rs` the TCP options, `icmp.rs` ICMP errors
//! quoting a TCP packet.
//!
//! Visibility: `pub` is the library API (what `main.rs`, `tests/` and `examples/` use, and the
//! types of their fields); the rest (the rarer TCP flags, `IcmpKind::errno`) is `pub(crate)`.

mod fast;
mod icmp;
mod ip;
mod link;
mod options;
#[cfg(test)]
mod tests;

use std::fmt;
use std::net::IpAddr;

pub use icmp::{IcmpError, IcmpKind};

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

/// Decodes one packet. Inlined into the caller's loop: the segment is then built where it is
/// used instead of being copied out (152 bytes, a `memcpy` call, twice per packet).
#[inline(always)]
pub fn decode<'a>(p: &Packet<'a>) -> Result<Segment<'a>, Skip> {
    if p.link.0 == 1 {
        if let Some(seg) = fast::ethernet_ipv4_tcp(p) {
            return Ok(seg);
        }
    }
    link::decode_sliced(p)
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

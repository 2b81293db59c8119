//! ICMP errors that quote a TCP packet (destination unreachable, time exceeded): news for the
//! connection they quote, read by hand from the quote.

use std::net::IpAddr;

use super::Endpoint;
use crate::capture::{FrameRef, Packet};

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
    pub(crate) fn errno(self) -> &'static str {
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
pub(super) fn quoted_tcp(bytes: &[u8]) -> Option<(Endpoint, Endpoint, u32)> {
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
pub(super) fn icmp_error(p: &Packet<'_>, from: IpAddr, ttl: u8, v6: bool, bytes: &[u8]) -> Option<IcmpError> {
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

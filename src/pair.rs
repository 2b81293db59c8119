//! # pair: the same connection in both captures
//!
//! In: the connections of the proxy capture and of the backend capture. Out: [`Pair`]s (a
//! connection seen at both ends, or at one end only, with how it was matched) and the clock offset
//! between the two captures.

use crate::pipeline::Conn;

/// How two views of a connection were matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchMethod {
    /// Same 4-tuple and same initial sequence numbers.
    TupleAndIsn,
    /// Same initial sequence numbers, different addresses or ports: NAT between the capture points.
    IsnThroughNat,
    /// Initial sequence numbers differ by a constant: a firewall rewrote sequence numbers.
    SequenceShift,
    /// No handshake in one capture: matched by payload and timing.
    Payload,
    /// Seen in one capture only.
    OneSide,
}

impl MatchMethod {
    pub fn describe(self) -> &'static str {
        match self {
            MatchMethod::TupleAndIsn => "same 4-tuple and initial sequence numbers",
            MatchMethod::IsnThroughNat => {
                "same initial sequence numbers through NAT (addresses or ports differ)"
            }
            MatchMethod::SequenceShift => "sequence numbers shifted by a constant (a firewall rewrote them)",
            MatchMethod::Payload => "payload fingerprint and timing (no handshake in one capture)",
            MatchMethod::OneSide => "seen in one capture only",
        }
    }
}

/// One connection as seen at each end: indexes into each side's connection list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair {
    pub proxy: Option<usize>,
    pub backend: Option<usize>,
    pub method: MatchMethod,
    /// For `SequenceShift`: backend ISN minus proxy ISN, per direction (client, server).
    pub seq_shift: [u32; 2],
}

/// The offset between the two capture clocks, estimated from paired packets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockOffset {
    /// Add this to a proxy-capture timestamp to get the backend capture's clock.
    pub backend_minus_proxy_ns: i64,
    /// Half the width of the window the offset must lie in.
    pub uncertainty_ns: i64,
    pub samples: u64,
    /// Change of the offset over the captures, in parts per million, when measurable.
    pub drift_ppm: Option<f64>,
}

/// The result of pairing.
#[derive(Clone, Debug, Default)]
pub struct Pairing {
    pub pairs: Vec<Pair>,
    pub clock: Option<ClockOffset>,
}

/// Every connection of one capture alone (no pairing).
pub fn single(conns: &[Conn]) -> Pairing {
    Pairing {
        pairs: (0..conns.len())
            .map(|i| Pair {
                proxy: Some(i),
                backend: None,
                method: MatchMethod::OneSide,
                seq_shift: [0, 0],
            })
            .collect(),
        clock: None,
    }
}

/// Pairs the connections of the proxy side (`sides[0]`) with those of the backend side
/// (`sides[1]`, if any), keeping only connections to the backend endpoints.
pub fn pair(sides: &[crate::pipeline::SideResult], backends: &[crate::decode::Endpoint]) -> Pairing {
    let Some(proxy) = sides.first() else {
        return Pairing::default();
    };
    let keep = |c: &Conn| backends.is_empty() || backends.contains(&c.server);
    let mut pairs = Vec::new();
    let mut used = vec![false; sides.get(1).map_or(0, |b| b.connections.len())];
    for (i, c) in proxy.connections.iter().enumerate() {
        if !keep(c) {
            continue;
        }
        let other = sides.get(1).and_then(|b| {
            b.connections.iter().enumerate().position(|(j, d)| {
                !used[j] && d.client == c.client && d.server == c.server && d.client_isn == c.client_isn
            })
        });
        if let Some(j) = other {
            used[j] = true;
        }
        pairs.push(Pair {
            proxy: Some(i),
            backend: other,
            method: if other.is_some() {
                MatchMethod::TupleAndIsn
            } else {
                MatchMethod::OneSide
            },
            seq_shift: [0, 0],
        });
    }
    if let Some(b) = sides.get(1) {
        for (j, d) in b.connections.iter().enumerate() {
            if !used[j] && keep(d) {
                pairs.push(Pair {
                    proxy: None,
                    backend: Some(j),
                    method: MatchMethod::OneSide,
                    seq_shift: [0, 0],
                });
            }
        }
    }
    Pairing { pairs, clock: None }
}

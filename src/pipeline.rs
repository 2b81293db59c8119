//! Runs the stages over captures: one side (`capture → decode → tcp → http`) in [`read_side`];
//! both sides in parallel, one thread each, in [`read_sides`].

use std::fmt;

use crate::anomaly::Anomalies;
use crate::capture::{CaptureError, CaptureSet, CaptureSummary, Input, Progress};
use crate::decode::{self, DecodeStats, Skip};
use crate::http::{HttpHandler, HttpLimits, HttpSummary};
use crate::tcp::{Connection, ConnectionTable, Limits};

/// Which end of the proxy→backend path a capture was taken at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Proxy,
    Backend,
    /// One capture analysed alone (`flows`, or `analyze` with one capture).
    Single,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Proxy => "proxy",
            Side::Backend => "backend",
            Side::Single => "single",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A connection as one capture saw it, with its HTTP view.
pub type Conn = Connection<HttpSummary>;

/// Everything one capture yielded.
#[derive(Debug)]
pub struct SideResult {
    pub side: Side,
    pub capture: CaptureSummary,
    pub decode: DecodeStats,
    /// Capture-level anomalies (malformed packets, table limits).
    pub anomalies: Anomalies,
    /// Warnings for the report: the capture's own, then packet-level ones.
    pub warnings: Vec<String>,
    /// Connections in order of their first packet.
    pub connections: Vec<Conn>,
}

/// Options of the per-side pipeline.
#[derive(Clone, Copy, Debug, Default)]
pub struct SideOptions {
    pub tcp: Limits,
    pub http: HttpLimits,
}

/// Packet-level warnings kept per capture; the rest are counted.
const MAX_PACKET_WARNINGS: usize = 20;

/// Opens the inputs of one side (fails if one is not a capture).
pub fn open_side(inputs: &[Input]) -> Result<CaptureSet, CaptureError> {
    CaptureSet::open(inputs)
}

/// Reads one side to the end.
pub fn read_side(side: Side, mut set: CaptureSet, opts: SideOptions) -> SideResult {
    let http = opts.http;
    let mut table = ConnectionTable::new(opts.tcp, move |from_start| HttpHandler::new(http, from_start));
    table.set_compactor(compact);
    let mut stats = DecodeStats::default();
    let mut anomalies = Anomalies::default();
    let mut packet_warnings = Vec::new();
    let mut more_warnings = 0u64;
    let files = set.summary().files;
    let mut connections = Vec::new();
    let mut since_collect = 0u32;
    while let Some(packet) = set.next() {
        // Now and then, collect the connections that finished and compact them.
        since_collect += 1;
        if since_collect == 4096 {
            since_collect = 0;
            connections.extend(table.take_finished());
        }
        let r = decode::decode(&packet);
        stats.count(&r);
        match r {
            Ok(seg) => table.push(&seg),
            Err(Skip::Malformed(why)) => {
                anomalies.note("malformed_packet", Some(packet.frame));
                if packet_warnings.len() < MAX_PACKET_WARNINGS {
                    let file = files.get(packet.frame.file as usize).map_or("?", String::as_str);
                    packet_warnings.push(format!(
                        "{file}: frame {}: {why}; packet skipped",
                        packet.frame.frame
                    ));
                } else {
                    more_warnings += 1;
                }
            }
            Err(Skip::UnsupportedLink) => {
                if stats.unsupported_link == 1 {
                    let file = files.get(packet.frame.file as usize).map_or("?", String::as_str);
                    packet_warnings.push(format!(
                        "{file}: frame {}: link type {} is not supported; its packets are skipped",
                        packet.frame.frame, packet.link
                    ));
                }
            }
            Err(_) => {}
        }
    }
    let capture = set.summary();
    anomalies.merge(&table.anomalies);
    connections.extend(table.finish());
    connections.sort_by_key(|c| c.index);
    let mut warnings = capture.warnings.clone();
    warnings.extend(packet_warnings);
    if more_warnings > 0 {
        warnings.push(format!("{more_warnings} more malformed packets not listed"));
    }
    SideResult {
        side,
        capture,
        decode: stats,
        anomalies,
        warnings,
        connections,
    }
}

/// Drops what a finished connection keeps only for reports about failures — its packet log (for
/// ladder diagrams) and the HTTP headers — when nothing in it looks wrong from this capture, and
/// gives back the spare capacity of its vectors. A connection that turns out to have failed only
/// in the other capture's view is then drawn from that capture's packets alone.
fn compact(c: &mut Conn) {
    if looks_healthy(c) {
        c.log = crate::tcp::PacketLog::default();
        for e in &mut c.app.exchanges {
            for m in [e.request.as_mut(), e.response.as_mut()].into_iter().flatten() {
                m.headers = Vec::new();
            }
        }
    }
    for d in &mut c.dirs {
        d.spans.shrink_to_fit();
    }
    c.app.exchanges.shrink_to_fit();
    c.history.shrink_to_fit();
}

/// Nothing in this capture's view of the connection hints at a failure: handshake and FINs both
/// ways, no RST, every exchange complete, no retransmission, gap, zero window or anomaly.
fn looks_healthy(c: &Conn) -> bool {
    c.syn.is_some()
        && c.syn_ack.is_some()
        && c.anomalies.is_empty()
        && c.app.anomalies.is_empty()
        && c.dirs.iter().all(|d| {
            d.fin.is_some()
                && d.rst.is_none()
                && d.retransmissions == 0
                && d.gaps == 0
                && d.acked_unseen == 0
                && d.zero_window.is_none()
        })
        && c.app.exchanges.iter().all(|e| {
            e.request.as_ref().is_some_and(|m| m.complete) && e.response.as_ref().is_some_and(|m| m.complete)
        })
}

/// Reads the given sides in parallel, one thread each; results in the order given.
pub fn read_sides(sides: Vec<(Side, CaptureSet)>, opts: SideOptions) -> Vec<SideResult> {
    if sides.len() == 1 {
        return sides
            .into_iter()
            .map(|(side, set)| read_side(side, set, opts))
            .collect();
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = sides
            .into_iter()
            .map(|(side, set)| scope.spawn(move || read_side(side, set, opts)))
            .collect();
        handles
            .into_iter()
            .map(|h| match h.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    })
}

/// Progress handles of the sides, for a progress bar.
pub fn progress_of(sets: &[(Side, CaptureSet)]) -> Vec<Progress> {
    sets.iter().map(|(_, s)| s.progress()).collect()
}

/// Everything the report shows: the sides read, how their connections pair, the alignment of
/// each pair seen at both ends, and a diagnosis per pair.
#[derive(Debug)]
pub struct Analysis {
    /// One side (`Single` or `Proxy`), or `Proxy` then `Backend`.
    pub sides: Vec<SideResult>,
    pub pairing: crate::pair::Pairing,
    pub alignments: Vec<Option<crate::pair::Alignment>>,
    pub diagnoses: Vec<Option<crate::diagnose::Diagnosis>>,
}

/// The analysis of one capture as a flow list: every connection, each diagnosed from this one
/// capture (its client taken as the proxy, its server as the backend).
pub fn flows(side: SideResult) -> Analysis {
    let pairing = crate::pair::single(&side.connections);
    diagnose_all(vec![side], pairing)
}

/// The analysis of a proxy capture and, optionally, a backend capture: the proxy→backend
/// connections, paired across the captures, each diagnosed. `backends` narrows the backend
/// endpoints (empty: found automatically).
pub fn analyze(sides: Vec<SideResult>, backends: &[crate::decode::Endpoint]) -> Analysis {
    let pairing = crate::pair::pair(&sides, backends);
    diagnose_all(sides, pairing)
}

fn diagnose_all(sides: Vec<SideResult>, pairing: crate::pair::Pairing) -> Analysis {
    let two = sides.len() > 1;
    let end = |i: usize| {
        sides
            .get(i)
            .and_then(|s| s.capture.last_ts_ns)
            .unwrap_or(i64::MAX)
    };
    let (proxy_end, backend_end) = (end(0), end(1));
    // Keep-alive timeouts per backend endpoint (as the first capture sees it).
    let mut idle_timeouts = std::collections::HashMap::new();
    for ep in pairing
        .pairs
        .iter()
        .filter_map(|p| p.proxy.and_then(|i| sides[0].connections.get(i)))
        .map(|c| c.server)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let conns = pairing
            .pairs
            .iter()
            .filter_map(|p| p.proxy.and_then(|i| sides[0].connections.get(i)))
            .filter(|c| c.server == ep);
        if let Some(t) = crate::diagnose::idle_close_timeout(conns) {
            idle_timeouts.insert(ep, t);
        }
    }
    let mut alignments = Vec::with_capacity(pairing.pairs.len());
    let mut diagnoses = Vec::with_capacity(pairing.pairs.len());
    for pair in &pairing.pairs {
        let p = pair.proxy.and_then(|i| sides[0].connections.get(i));
        let b = pair.backend.and_then(|j| sides.get(1)?.connections.get(j));
        let alignment = match (p, b) {
            (Some(p), Some(b)) => Some(crate::pair::align(
                p,
                b,
                pairing.clock.as_ref(),
                backend_end,
                proxy_end,
            )),
            _ => None,
        };
        let cx = crate::diagnose::Context {
            p,
            b,
            two_captures: two,
            first_side: sides[0].side,
            clock: pairing.clock.as_ref(),
            alignment: alignment.as_ref(),
            proxy_capture_end: proxy_end,
            backend_capture_end: backend_end,
            backend_idle_timeout: p.and_then(|c| idle_timeouts.get(&c.server).copied()),
        };
        diagnoses.push(Some(crate::diagnose::diagnose(&cx)));
        alignments.push(alignment);
    }
    Analysis {
        sides,
        pairing,
        alignments,
        diagnoses,
    }
}

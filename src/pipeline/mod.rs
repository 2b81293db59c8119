//! Runs the stages over captures. One side (`capture → decode → tcp → http`) is read by
//! [`read_side_into`], which hands out connections as they finish; [`run`] reads the sides in
//! parallel (one thread each), pairs, aligns and diagnoses the connections as they come, and hands
//! each judged connection (a [`Finding`]) to a [`Sink`] — so memory follows the connections in
//! flight, not the size of the captures. [`Analysis`] is the sink that keeps everything (tests,
//! small inputs).

mod run;

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
    /// TCP connections the capture holds (all of them, reported or not).
    pub tcp_connections: u64,
    /// The connections kept: after [`read_side`], all of them in order of their first packet; in
    /// an [`Analysis`], the reported ones.
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

/// Connections are handed out in batches of those that finished within this many packets, or
/// as soon as this many finished (a flood of connections finishing at once would otherwise put
/// thousands of them, over 1 KB each, in every batch in flight between the threads).
const BATCH_PACKETS: u32 = 4096;
const BATCH_CONNECTIONS: usize = 512;

/// Connections still open at the end of the capture are handed out this many at a time.
const FINAL_BATCH: usize = 4096;

/// Reads one side to the end, handing out finished connections in batches, each with the capture
/// time read so far (`emit(connections, position)`); returns everything else the side yielded
/// (its `connections` empty). Connections are boxed: each is over 1 KB and moves several times
/// on its way to a report.
pub fn read_side_into(
    side: Side,
    mut set: CaptureSet,
    opts: SideOptions,
    emit: &mut dyn FnMut(Vec<Box<Conn>>, i64),
) -> SideResult {
    let http = opts.http;
    let mut table = ConnectionTable::new(opts.tcp, move |from_start| HttpHandler::new(http, from_start));
    table.set_compactor(compact);
    let mut stats = DecodeStats::default();
    let mut anomalies = Anomalies::default();
    let mut packet_warnings = Vec::new();
    let mut more_warnings = 0u64;
    let files = set.summary().files;
    let mut since_batch = 0u32;
    let mut position = i64::MIN;
    let mut finished = 0u64;
    while let Some(packet) = set.next() {
        position = position.max(packet.ts_ns);
        since_batch += 1;
        if since_batch == BATCH_PACKETS || table.finished_len() >= BATCH_CONNECTIONS {
            since_batch = 0;
            let batch = table.take_finished();
            finished += batch.len() as u64;
            emit(batch, position);
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
            Err(Skip::Icmp(e)) => table.icmp(&e),
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
    table.finish_in_batches(FINAL_BATCH, &mut |rest| {
        finished += rest.len() as u64;
        emit(rest, i64::MAX);
    });
    let mut warnings = capture.warnings.clone();
    warnings.extend(packet_warnings);
    if more_warnings > 0 {
        warnings.push(format!("{more_warnings} more malformed packets not listed"));
    }
    // A cap of the connection table was hit: say so beside the report (counts are anomalies).
    let names = files.join(", ");
    let full = anomalies.count("connection_table_full");
    if full > 0 {
        warnings.push(format!(
            "{names}: more than {} connections were open at once (a SYN flood?): {full} were judged \
             before their end to make room",
            opts.tcp.max_open
        ));
    }
    let heavy = anomalies.count("connection_table_memory");
    if heavy > 0 {
        warnings.push(format!(
            "{names}: the connections open at once took more than {} MiB (a flood of connections?): \
             {heavy} were judged before their end to make room",
            opts.tcp.max_open_bytes >> 20
        ));
    }
    let over = anomalies.count("connection_limit");
    if over > 0 {
        warnings.push(format!(
            "{names}: more than {} connections: {over} packets of later connections were counted, not \
             analysed",
            opts.tcp.max_connections
        ));
    }
    SideResult {
        side,
        capture,
        decode: stats,
        anomalies,
        warnings,
        tcp_connections: finished,
        connections: Vec::new(),
    }
}

/// Reads one side to the end, keeping every connection (in order of their first packet).
pub fn read_side(side: Side, set: CaptureSet, opts: SideOptions) -> SideResult {
    let mut all = Vec::new();
    let mut r = read_side_into(side, set, opts, &mut |batch, _| {
        all.extend(batch.into_iter().map(|c| *c))
    });
    all.sort_by_key(|c| c.index);
    r.connections = all;
    r
}

/// Drops what a finished connection keeps only for reports about failures — its packet log (for
/// ladder diagrams) and the HTTP headers — when nothing in it looks wrong from this capture, and
/// gives back the spare capacity of its vectors. A connection that turns out to have failed only
/// in the other capture's view is then drawn from that capture's packets alone.
fn compact(c: &mut Conn) {
    crate::http::settle_cut_response_by_close(c);
    if looks_healthy(c) {
        c.log = crate::tcp::PacketLog::default();
        for e in &mut c.app.exchanges {
            for m in [e.request.as_mut(), e.response.as_mut()].into_iter().flatten() {
                m.headers = crate::http::Headers::default();
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

pub use run::{Analysis, Finding, Mode, RunEnd, Sink, analyze, flows, run};

//! Runs the stages over captures. One side (`capture → decode → tcp → http`) is read by
//! [`read_side_into`], which hands out connections as they finish; [`run`] reads the sides in
//! parallel (one thread each), pairs, aligns and diagnoses the connections as they come, and hands
//! each judged connection (a [`Finding`]) to a [`Sink`] — so memory follows the connections in
//! flight, not the size of the captures. [`Analysis`] is the sink that keeps everything (tests,
//! small inputs). [`analyze`] and [`flows`] judge sides already read ([`read_side`],
//! [`read_sides`]) through the same engine as [`run`].

mod run;

pub use crate::capture::Side;
pub use crate::http::Conn;
pub(crate) use crate::http::conn_bytes;

use crate::anomaly::{Anomalies, AnomalyKind};
use crate::capture::{
    CaptureError, CaptureSet, CaptureSummary, Input, Packet, Progress, Warning, WarningKind,
};
use crate::decode::{self, DecodeStats, IcmpError, Segment, Skip};
use crate::http::{HttpHandler, HttpLimits};
use crate::tcp::{ConnectionTable, Limits};

/// Everything one capture yielded.
#[derive(Debug)]
pub struct SideResult {
    pub side: Side,
    pub capture: CaptureSummary,
    pub decode: DecodeStats,
    /// Capture-level anomalies (malformed packets, table limits).
    pub anomalies: Anomalies,
    /// Warnings for the report: the capture's own, then packet-level ones.
    pub warnings: Vec<Warning>,
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
/// time read so far (`emit(connections, position)`; the first, empty, at the first packet: where
/// the capture starts); returns everything else the side yielded
/// (its `connections` empty). Connections are boxed: each is over 1 KB and moves several times
/// on its way to a report.
pub(crate) fn read_side_into(
    side: Side,
    set: CaptureSet,
    opts: SideOptions,
    emit: &mut dyn FnMut(Vec<Box<Conn>>, i64),
) -> SideResult {
    read_side_with(side, set, opts, false, emit)
}

/// As [`read_side_into`]; `split`: reading and decoding run on a thread of their own, a batch of
/// packets ahead of reassembly and HTTP (for one capture, whose reader is otherwise alone with
/// all the work while the consumer idles; with two captures the two readers already fill the
/// cores, and the copy of every payload into the batches would only cost).
pub(crate) fn read_side_with(
    side: Side,
    mut set: CaptureSet,
    opts: SideOptions,
    split: bool,
    emit: &mut dyn FnMut(Vec<Box<Conn>>, i64),
) -> SideResult {
    let http = opts.http;
    let mut table = ConnectionTable::new(opts.tcp, move |from_start| HttpHandler::new(http, from_start));
    table.set_compactor(compact);
    let files = set.summary().files;
    let mut dec = Decoder {
        files: files.clone(),
        ..Decoder::default()
    };
    let mut since_batch = 0u32;
    let mut position = i64::MIN;
    let mut finished = 0u64;
    // Every packet, in order, as the table needs it: a batch of finished connections goes out
    // every `BATCH_PACKETS` packets (or `BATCH_CONNECTIONS` connections), before the packet.
    let mut on_packet = |item: &Item<'_>, ts: i64| {
        if position == i64::MIN {
            emit(Vec::new(), ts); // the first packet: an empty batch says where the capture starts
        }
        position = position.max(ts);
        since_batch += 1;
        if since_batch == BATCH_PACKETS || table.finished_len() >= BATCH_CONNECTIONS {
            since_batch = 0;
            let batch = table.take_finished();
            finished += batch.len() as u64;
            emit(batch, position);
        }
        match item {
            Item::Segment(seg) => table.push(seg),
            Item::Icmp(e) => table.icmp(e),
            Item::Other => {}
        }
    };
    let capture = if split {
        let (d, capture) = decode_ahead(set, dec, |batch| {
            for (item, ts) in batch.items() {
                on_packet(&item, ts);
            }
        });
        dec = d;
        capture
    } else {
        while let Some(packet) = set.next() {
            let item = dec.decode(&packet);
            on_packet(&item, packet.ts_ns);
        }
        set.summary()
    };
    let (stats, mut anomalies, packet_warnings) = dec.into_parts();
    anomalies.merge(&table.anomalies);
    if position != i64::MIN {
        // Where the capture ends, before the connections still open: judged with it known.
        let batch = table.take_finished();
        finished += batch.len() as u64;
        emit(batch, position);
    }
    table.finish_in_batches(FINAL_BATCH, &mut |rest| {
        finished += rest.len() as u64;
        emit(rest, i64::MAX);
    });
    let mut warnings = capture.warnings.clone();
    warnings.extend(packet_warnings);
    warnings.extend(table_cap_warnings(&files.join(", "), &anomalies, &opts.tcp));
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

/// What a side's reader says beside the report when a cap of its connection table was hit (the
/// counts are anomalies).
fn table_cap_warnings(names: &str, anomalies: &Anomalies, tcp: &Limits) -> Vec<Warning> {
    let mut warnings = Vec::new();
    let full = anomalies.count_of(AnomalyKind::ConnectionTableFull);
    if full > 0 {
        warnings.push(Warning::side(
            WarningKind::ConnectionTableFull,
            format!(
                "{names}: more than {} connections were open at once (a SYN flood?): {full} were judged \
             before their end to make room",
                tcp.max_open
            ),
        ));
    }
    let heavy = anomalies.count_of(AnomalyKind::ConnectionTableMemory);
    if heavy > 0 {
        warnings.push(Warning::side(
            WarningKind::ConnectionTableMemory,
            format!(
                "{names}: the connections open at once took more than {} MiB (a flood of connections?): \
             {heavy} were judged before their end to make room",
                tcp.max_open_bytes >> 20
            ),
        ));
    }
    let over = anomalies.count_of(AnomalyKind::ConnectionLimit);
    if over > 0 {
        warnings.push(Warning::side(
            WarningKind::ConnectionLimit,
            format!(
                "{names}: more than {} connections: {over} packets of later connections were counted, not \
             analysed",
                tcp.max_connections
            ),
        ));
    }
    warnings
}

/// What a packet is for the connection table.
enum Item<'a> {
    Segment(Segment<'a>),
    Icmp(IcmpError),
    /// Counted (not TCP, malformed, ...), nothing for the table.
    Other,
}

/// Decodes packets and keeps the account of those that are not TCP segments.
#[derive(Default)]
struct Decoder {
    files: Vec<String>,
    stats: DecodeStats,
    /// Malformed packets.
    anomalies: Anomalies,
    packet_warnings: Vec<Warning>,
    more_warnings: u64,
}

impl Decoder {
    #[inline]
    fn decode<'a>(&mut self, packet: &Packet<'a>) -> Item<'a> {
        let r = decode::decode(packet);
        self.stats.count(&r);
        match r {
            Ok(seg) => Item::Segment(seg),
            Err(Skip::Malformed(why)) => {
                self.anomalies
                    .note(AnomalyKind::MalformedPacket, Some(packet.frame));
                if self.packet_warnings.len() < MAX_PACKET_WARNINGS {
                    let file = self.file(packet);
                    let text = format!("{file}: frame {}: {why}; packet skipped", packet.frame.frame);
                    let w = Warning::new(WarningKind::MalformedPacket, &file, text);
                    self.packet_warnings.push(w.at_frame(packet.frame.frame as u64));
                } else {
                    self.more_warnings += 1;
                }
                Item::Other
            }
            Err(Skip::Icmp(e)) => Item::Icmp(e),
            Err(Skip::UnsupportedLink) => {
                if self.stats.unsupported_link == 1 {
                    let file = self.file(packet);
                    let text = format!(
                        "{file}: frame {}: link type {} is not supported; its packets are skipped",
                        packet.frame.frame, packet.link
                    );
                    let w = Warning::new(WarningKind::UnsupportedLinkType, &file, text);
                    self.packet_warnings.push(w.at_frame(packet.frame.frame as u64));
                }
                Item::Other
            }
            Err(_) => Item::Other,
        }
    }

    /// What decoding counted, its anomalies, and its warnings (with how many were not listed).
    fn into_parts(self) -> (DecodeStats, Anomalies, Vec<Warning>) {
        let mut warnings = self.packet_warnings;
        if self.more_warnings > 0 {
            warnings.push(Warning::side(
                WarningKind::MoreMalformedPackets,
                format!("{} more malformed packets not listed", self.more_warnings),
            ));
        }
        (self.stats, self.anomalies, warnings)
    }

    fn file(&self, packet: &Packet<'_>) -> String {
        self.files
            .get(packet.frame.file as usize)
            .map_or("?", String::as_str)
            .to_string()
    }
}

/// Packets decoded ahead, their payloads copied into one buffer.
#[derive(Default)]
struct Batch {
    /// Segments with an empty payload, their payload's range in `payload`; ICMP errors; others.
    items: Vec<(Item<'static>, u32, u32, i64)>,
    payload: Vec<u8>,
}

/// Packets per batch decoded ahead, and payload bytes (a batch closes at either).
const AHEAD_PACKETS: usize = 1024;
const AHEAD_BYTES: usize = 1 << 20;

impl Batch {
    fn push(&mut self, item: Item<'_>, ts: i64) {
        let owned = match item {
            Item::Segment(seg) => {
                let start = self.payload.len() as u32;
                self.payload.extend_from_slice(seg.payload);
                let end = self.payload.len() as u32;
                self.items
                    .push((Item::Segment(Segment { payload: &[], ..seg }), start, end, ts));
                return;
            }
            Item::Icmp(e) => Item::Icmp(e),
            Item::Other => Item::Other,
        };
        self.items.push((owned, 0, 0, ts));
    }

    fn full(&self) -> bool {
        self.items.len() >= AHEAD_PACKETS || self.payload.len() >= AHEAD_BYTES
    }

    /// The items again, segments with their payloads.
    fn items(&self) -> impl Iterator<Item = (Item<'_>, i64)> + '_ {
        self.items.iter().map(|(item, start, end, ts)| {
            let item = match item {
                Item::Segment(seg) => Item::Segment(Segment {
                    payload: self.payload.get(*start as usize..*end as usize).unwrap_or(&[]),
                    ..*seg
                }),
                Item::Icmp(e) => Item::Icmp(*e),
                Item::Other => Item::Other,
            };
            (item, *ts)
        })
    }
}

/// Reads and decodes `set` on a thread of its own, handing batches of decoded packets to
/// `consume` on this one; returns the decoder's account and the capture's summary.
fn decode_ahead(
    mut set: CaptureSet,
    mut dec: Decoder,
    mut consume: impl FnMut(&Batch),
) -> (Decoder, CaptureSummary) {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Batch>(4);
    // Emptied batches go back to the decoder to be filled again (no reallocation).
    let (back_tx, back_rx) = std::sync::mpsc::channel::<Batch>();
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || {
            let mut batch = Batch::default();
            while let Some(packet) = set.next() {
                let item = dec.decode(&packet);
                batch.push(item, packet.ts_ns);
                if batch.full() {
                    let next = back_rx.try_recv().unwrap_or_default();
                    if tx.send(std::mem::replace(&mut batch, next)).is_err() {
                        break;
                    }
                }
            }
            if !batch.items.is_empty() {
                let _ = tx.send(batch);
            }
            (dec, set.summary())
        });
        for mut batch in rx {
            consume(&batch);
            batch.items.clear();
            batch.payload.clear();
            let _ = back_tx.send(batch);
        }
        match decoder.join() {
            Ok(r) => r,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
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
/// ladder diagrams) and the HTTP headers but those client requests are matched by — when nothing
/// in it looks wrong from this capture, and gives back its vectors' spare capacity where that is
/// worth a reallocation (256 bytes or more). A connection that turns out to have failed only in
/// the other capture's view is then drawn from that capture's packets alone.
fn compact(c: &mut Conn) {
    crate::http::settle_cut_response_by_close(c);
    if crate::diagnose::looks_healthy(c) {
        c.log = crate::tcp::PacketLog::default();
        for e in &mut c.app.exchanges {
            for m in [e.request.as_mut(), e.response.as_mut()].into_iter().flatten() {
                // Request ids and forwarded addresses stay: client requests are matched by them.
                let kept = crate::http::Headers::from_pairs(
                    m.headers
                        .iter()
                        .filter(|h| crate::incident::clients::is_kept_header(h.name))
                        .map(|h| (h.name, h.value)),
                );
                m.headers = kept;
            }
        }
    }
    for d in &mut c.dirs {
        shrink(&mut d.spans);
    }
    shrink(&mut c.app.exchanges);
    if c.history.capacity() - c.history.len() >= SHRINK_BYTES {
        c.history.shrink_to_fit();
    }
}

/// Spare capacity worth giving back (each shrink is a reallocation and a copy).
const SHRINK_BYTES: usize = 256;

fn shrink<T>(v: &mut Vec<T>) {
    if (v.capacity() - v.len()) * size_of::<T>() >= SHRINK_BYTES {
        v.shrink_to_fit();
    }
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

pub use crate::diagnose::Finding;
pub use run::{Analysis, Mode, RunEnd, Sink, analyze, flows, run};

//! # tcp: segments → connections
//!
//! In: [`Segment`](crate::decode::Segment)s of one capture, in capture order. Out:
//! [`Connection`]s, each with its endpoints, handshake, per-direction byte counts, gaps,
//! retransmissions, FIN/RST, zero windows, a Zeek-style state and history, anomalies, a bounded
//! packet log (for ladder diagrams), the transmission spans the pairing stage aligns across
//! captures, and the result of the stream handler (HTTP) that was fed the reassembled bytes of
//! both directions.
//!
//! The stage is sans-IO and deterministic: capture timestamps only, never the wall clock;
//! connections come out in the order of their first packet.
//!
//! It does not know HTTP: the [`StreamHandler`] trait is the boundary. This file holds the types
//! the later stages read; the connection table (4-tuples, roles, timers, memory caps, stragglers)
//! is `table`, one live connection's segment handling and finishing `live`, the Zeek state
//! `state`, reassembly itself `stream`, sequence unwrapping `seq`.
//!
//! ## State (Zeek's `conn_state`)
//! `S0` SYN seen, no reply · `REJ` SYN answered by RST · `S1` established, not closed ·
//! `SF` established, FIN both ways · `S2` established, FIN from the client only · `S3` FIN from
//! the server only · `RSTO` client sent a RST · `RSTR` server sent a RST · `RSTOS0` client sent SYN
//! then RST, no SYN-ACK · `RSTRH` server sent SYN-ACK then RST, no SYN seen · `SH` client sent SYN
//! then FIN, no SYN-ACK · `SHR` server sent SYN-ACK then FIN, no SYN seen · `OTH` no handshake seen
//! (captured mid-stream).
//!
//! ## History (Zeek's letters; client upper case, server lower case; each once, in order)
//! `S` SYN · `H` SYN-ACK · `A` pure ACK · `D` payload · `F` FIN · `R` RST · `T` retransmitted
//! payload · `G` gap in what the capture saw · `W` zero window advertised · `I` inconsistent
//! flags (SYN with RST or FIN) · `^` the client/server roles were guessed (no SYN seen).
//!
//! Visibility: `pub` is the library API (what `main.rs`, `tests/` and `examples/` use: the
//! connection table, [`Connection`] and the types of its fields, [`StreamHandler`]); reassembly
//! (`Reassembler`, `Budget`, `SeqSpace`) and the table's batch hand-out are `pub(crate)`.

mod dirs;
mod live;
mod seq;
mod state;
mod stream;
mod table;

use std::fmt;

pub(crate) use seq::SeqSpace;
pub use stream::MAX_PENDING_PER_DIRECTION;
pub(crate) use stream::{Budget, DataClass};
pub use table::ConnectionTable;

use crate::anomaly::Anomalies;
use crate::capture::FrameRef;
use crate::decode::{Endpoint, TcpFlags};

/// A packet by its frame and time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PacketRef {
    pub frame: FrameRef,
    pub ts_ns: i64,
}

/// A direction of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dir {
    ClientToServer = 0,
    ServerToClient = 1,
}

impl Dir {
    pub(crate) const BOTH: [Dir; 2] = [Dir::ClientToServer, Dir::ServerToClient];

    pub fn idx(self) -> usize {
        self as usize
    }

    pub fn rev(self) -> Dir {
        match self {
            Dir::ClientToServer => Dir::ServerToClient,
            Dir::ServerToClient => Dir::ClientToServer,
        }
    }
}

/// Why a range of a stream has no bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapKind {
    /// The receiver acknowledged these bytes: they crossed the wire, the capture missed them.
    NotCaptured,
    /// The packet was captured but snaplen cut these bytes.
    Snaplen,
    /// Never seen and never acknowledged (lost, or outside the capture).
    Missing,
    /// The out-of-order buffer was full: reassembly stopped waiting for these bytes.
    Abandoned,
}

/// What reassembly hands the stream handler, in order, per direction.
pub type StreamEvent<'a> = Event<&'a [u8]>;

/// A stream event, its bytes borrowed from reassembly ([`StreamEvent`]) or owned (`Vec<u8>`: an
/// event the HTTP parser holds while a direction waits).
#[derive(Clone, Copy, Debug)]
pub enum Event<B> {
    Data {
        offset: i64,
        bytes: B,
        at: PacketRef,
    },
    /// `len` bytes at `offset` the capture does not hold; `at` is the packet that revealed the
    /// gap (the data or acknowledgement beyond it, or the connection's last packet at its end).
    Gap {
        offset: i64,
        len: u64,
        kind: GapKind,
        at: PacketRef,
    },
}

impl<B: AsRef<[u8]>> Event<B> {
    /// Its payload bytes (none for a gap).
    pub(crate) fn payload_len(&self) -> usize {
        match self {
            Event::Data { bytes, .. } => bytes.as_ref().len(),
            Event::Gap { .. } => 0,
        }
    }

    /// The same event owning its bytes.
    pub(crate) fn owned(&self) -> Event<Vec<u8>> {
        match *self {
            Event::Data {
                offset,
                ref bytes,
                at,
            } => Event::Data {
                offset,
                bytes: bytes.as_ref().to_vec(),
                at,
            },
            Event::Gap {
                offset,
                len,
                kind,
                at,
            } => Event::Gap {
                offset,
                len,
                kind,
                at,
            },
        }
    }
}

/// How a direction ended, as far as this capture saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    /// A FIN, with every byte before it delivered (or cut by snaplen) before the connection
    /// ended: no byte before the FIN was missing from the capture.
    Fin,
    /// A RST.
    Rst,
    /// Neither: still open when the capture ended, or the FIN came after bytes the capture never
    /// held (lost, or dropped by the capture).
    Open,
}

/// The consumer of reassembled bytes (HTTP). Sans-IO: it gets bytes, gaps and packet refs.
pub trait StreamHandler {
    type Output;
    fn on_stream(&mut self, dir: Dir, event: StreamEvent<'_>);
    /// Heap bytes the handler holds now (an estimate, for the table's memory cap).
    fn heap_bytes(&self) -> usize {
        0
    }
    /// No more events; `ends` per direction (index by `Dir::idx`).
    fn finish(self, ends: [End; 2]) -> Self::Output;
}

/// A handler that ignores everything (for callers that want TCP only).
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHandler;

impl StreamHandler for NoHandler {
    type Output = ();
    fn on_stream(&mut self, _: Dir, _: StreamEvent<'_>) {}
    fn finish(self, _: [End; 2]) {}
}

/// Zeek's `conn_state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnState {
    S0,
    S1,
    SF,
    REJ,
    S2,
    S3,
    RSTO,
    RSTR,
    RSTOS0,
    RSTRH,
    SH,
    SHR,
    OTH,
}

impl fmt::Display for ConnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A FIN or RST as seen: where (sequence offset in its direction), when, which frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseMark {
    pub at: PacketRef,
    pub offset: i64,
    /// The acknowledgement it carried, as an offset in the other direction.
    pub ack: Option<i64>,
    pub ttl: u8,
    pub ip_id: Option<u16>,
}

/// A run of zero-window advertisements by one endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZeroWindow {
    pub first: PacketRef,
    pub last: PacketRef,
    pub count: u64,
    /// The first advertisement of a non-zero window after `first`, if any.
    pub reopened: Option<PacketRef>,
}

/// One transmission range of a direction, for aligning what one end sent with what the other end
/// received: consecutive new in-order segments merge into one span; retransmissions and segments
/// filling holes get spans of their own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: i64,
    pub end: i64,
    pub first: PacketRef,
    pub last: PacketRef,
    pub kind: SpanKind,
    /// The first acknowledgement from the receiver covering `end`.
    pub acked: Option<PacketRef>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    New,
    FillsHole,
    Retransmission,
}

/// The most spans kept per direction; beyond, new spans are not recorded (counted instead).
pub(crate) const MAX_SPANS: usize = 2048;

/// Per-direction facts of a connection.
#[derive(Clone, Debug, Default)]
pub struct DirSummary {
    pub packets: u64,
    /// Distinct payload bytes of the sequence space seen (a retransmission counts once; bytes cut
    /// by snaplen count).
    pub bytes: u64,
    /// Bytes between the first and last byte seen that were never seen.
    pub gaps: u64,
    /// True when too many holes made `gaps` a lower bound.
    pub gaps_approximate: bool,
    /// Data segments that repeated bytes already seen (fully or partly).
    pub retransmissions: u64,
    /// Data segments that filled a hole (out of order, or a retransmission whose original the
    /// capture never saw).
    pub out_of_order: u64,
    /// Retransmissions whose bytes differ from the first copy.
    pub conflicts: u64,
    pub keepalives: u64,
    /// Bytes the receiver acknowledged that this capture never saw (capture drops).
    pub acked_unseen: u64,
    /// Bytes seen on the wire but cut by snaplen.
    pub snaplen_cut: u64,
    /// Bytes the reassembly gave up waiting for (buffer cap).
    pub abandoned: u64,
    pub first_data: Option<PacketRef>,
    pub last_data: Option<PacketRef>,
    /// Offsets of the first byte seen and just past the last byte seen.
    pub data_start: Option<i64>,
    pub data_end: Option<i64>,
    /// Highest offset acknowledged by the receiver, and the packet that first acknowledged it.
    pub acked: Option<(i64, PacketRef)>,
    pub fin: Option<CloseMark>,
    pub fin_count: u32,
    pub rst: Option<CloseMark>,
    pub rst_count: u32,
    /// Zero windows advertised *by the sender of this direction* (it could not receive more).
    pub zero_window: Option<ZeroWindow>,
    pub window_scale: Option<u8>,
    pub mss: Option<u16>,
    /// The latest window this endpoint advertised, scaled.
    pub last_window: Option<u64>,
    /// TTL range of this endpoint's packets other than RSTs (for judging a RST's origin).
    pub ttl_range: Option<(u8, u8)>,
    /// The sequence number of offset 0.
    pub origin: Option<u32>,
    pub spans: Vec<Span>,
    pub spans_dropped: u64,
}

impl DirSummary {
    fn note_ttl(&mut self, ttl: u8) {
        self.ttl_range = Some(match self.ttl_range {
            None => (ttl, ttl),
            Some((lo, hi)) => (lo.min(ttl), hi.max(ttl)),
        });
    }

    fn add_span(&mut self, start: i64, end: i64, at: PacketRef, kind: SpanKind) {
        if let Some(last) = self.spans.last_mut() {
            if last.kind == kind && last.end == start && last.acked.is_none() {
                last.end = end;
                last.last = at;
                return;
            }
        }
        if self.spans.len() >= MAX_SPANS {
            self.spans_dropped += 1;
            return;
        }
        self.spans.push(Span {
            start,
            end,
            first: at,
            last: at,
            kind,
            acked: None,
        });
    }
}

/// One packet of a connection, for ladder diagrams and evidence tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoggedPacket {
    pub at: PacketRef,
    pub dir: Dir,
    pub flags: TcpFlags,
    /// Sequence offset in its direction, and payload length on the wire.
    pub offset: i64,
    pub len: u32,
    /// Acknowledgement as an offset of the other direction (None without ACK flag).
    pub ack: Option<i64>,
    pub window: u32,
    pub class: PacketClass,
}

/// What a logged packet was, for drawing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketClass {
    Control,
    New,
    FillsHole,
    Retransmission,
    KeepAlive,
}

/// The packets of a connection, first and last ones kept when there are too many.
#[derive(Clone, Debug, Default)]
pub struct PacketLog {
    pub head: Vec<LoggedPacket>,
    /// The most recent packets once `head` is full (a ring; `tail_start` is the oldest).
    tail: Vec<LoggedPacket>,
    tail_start: usize,
    /// Packets not kept (between head and tail).
    pub elided: u64,
}

/// Packets kept at the start and at the end of a connection's log.
///
/// Every packet of every open connection is logged (which connection will fail is not known yet),
/// so this bounds both memory and time: at 1000 + 1000, writing the logs of long connections was
/// 6% of `analyze` (perf), and 256 + 256 took the 2 × 615 MB bench pair from 0.35 s to 0.32 s
/// (median of 7 runs; user time 0.44 s → 0.38 s) with the same Markdown report on every lab
/// scenario. A ladder of 512 packets is as many as one can read; the evidence of a failure sits at
/// a connection's start and end.
pub const LOG_HEAD: usize = 256;
pub const LOG_TAIL: usize = 256;

impl PacketLog {
    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        (self.head.capacity() + self.tail.capacity()) * std::mem::size_of::<LoggedPacket>()
    }

    fn push(&mut self, p: LoggedPacket) {
        if self.head.len() < LOG_HEAD {
            self.head.push(p);
        } else if self.tail.len() < LOG_TAIL {
            self.tail.push(p);
        } else {
            self.tail[self.tail_start] = p;
            self.tail_start = (self.tail_start + 1) % LOG_TAIL;
            self.elided += 1;
        }
    }

    /// All kept packets in order (the elided ones sit between head and tail).
    pub fn packets(&self) -> impl Iterator<Item = &LoggedPacket> {
        let (newer, older) = self.tail.split_at(self.tail_start);
        self.head.iter().chain(older.iter()).chain(newer.iter())
    }

    pub fn len(&self) -> usize {
        self.head.len() + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.head.is_empty()
    }
}

/// A TCP connection as one capture saw it.
#[derive(Clone, Debug)]
pub struct Connection<O> {
    /// Position in the capture's connection list (order of first packet), from 0.
    pub index: u64,
    pub client: Endpoint,
    pub server: Endpoint,
    pub first: PacketRef,
    pub last: PacketRef,
    /// The time of the capture's last packet, when the capture ended with the connection still
    /// in the table (open, or lingering after its close); None when it left the table while the
    /// capture ran (closed and done, idle for the idle timeout, or superseded on its 4-tuple).
    /// What an open connection did after the capture's end is not in it.
    pub capture_ended: Option<i64>,
    pub packets: u64,
    /// The client's first SYN, and how many SYNs it sent (retransmissions included).
    pub syn: Option<PacketRef>,
    pub syn_count: u32,
    pub syn_ack: Option<PacketRef>,
    pub syn_ack_count: u32,
    /// Initial sequence numbers of the client and the server, from SYN and SYN-ACK.
    pub client_isn: Option<u32>,
    pub server_isn: Option<u32>,
    /// The client's first packet with an ACK after the SYN-ACK (handshake complete).
    pub established: Option<PacketRef>,
    /// Roles were guessed: no SYN or SYN-ACK said who connected to whom.
    pub roles_guessed: bool,
    /// The capturing host is the client (true) or the server (false), when the link layer says
    /// which packets the host sent (Linux cooked captures).
    pub client_is_local: Option<bool>,
    pub state: ConnState,
    pub history: String,
    /// Indexed by `Dir::idx`.
    pub dirs: [DirSummary; 2],
    pub anomalies: Anomalies,
    pub log: PacketLog,
    /// The first ICMP error (destination unreachable, time exceeded) that quoted a packet of the
    /// connection, and how many did.
    pub icmp: Option<IcmpMark>,
    pub icmp_count: u32,
    /// The stream handler's result (HTTP exchanges).
    pub app: O,
}

/// An ICMP error about one of a connection's packets, as captured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpMark {
    pub at: PacketRef,
    /// The sender of the ICMP packet (a router's address, or the destination host's), and its TTL.
    pub from: std::net::IpAddr,
    pub ttl: u8,
    pub kind: crate::decode::IcmpKind,
    /// The quoted packet went from the client to the server.
    pub to_server: bool,
}

impl<O> Connection<O> {
    pub fn dir(&self, d: Dir) -> &DirSummary {
        &self.dirs[d.idx()]
    }
}

/// Limits that keep the table's memory bounded.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Open connections at once; beyond, the least recently started one is judged early.
    pub max_open: usize,
    /// Memory the open connections may take together (estimated: their structures, packet logs,
    /// spans, reassembly buffers, HTTP state and the exchanges kept); beyond, the least recently
    /// started ones are judged early.
    pub max_open_bytes: usize,
    /// Connections of a capture in all, for callers that keep every connection; beyond, the
    /// packets of new connections are counted (`connection_limit`), not analysed.
    pub max_connections: usize,
    /// Out-of-order bytes held by all connections together.
    pub max_pending_bytes: usize,
    /// A connection closed by a RST is finished this long after its last packet (data can follow
    /// a RST in real captures: the other end answering what it had).
    pub linger_ns: i64,
    /// A connection closed by FINs both ways is finished at once, and its 4-tuple takes
    /// stragglers (the last ACK, a retransmitted FIN) for this long after its last packet.
    pub closed_linger_ns: i64,
    /// A connection with no packet for this long is finished (still open).
    pub idle_ns: i64,
    /// Keep a per-connection packet log.
    pub packet_log: bool,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            // Proxies rarely hold 10,000 at once; `max_open_bytes` is usually reached first.
            max_open: 200_000,
            // What a capture's open connections may take together (a pair of captures: half
            // each): about 30,000 that never carried a byte (a SYN flood, about 2.1 KB each), or
            // 10,000 to 20,000 carrying HTTP. With what the reports keep and the allocator's own
            // overhead, a run stays under 256 MB whatever the input (README, Limits).
            max_open_bytes: 64 * 1024 * 1024,
            // The command streams its reports: no cap. Callers that keep every connection
            // (`pipeline::Analysis::run`) may set one.
            max_connections: usize::MAX,
            max_pending_bytes: 256 * 1024 * 1024,
            linger_ns: 30_000_000_000,
            closed_linger_ns: 2_000_000_000,
            idle_ns: 2 * 3600 * 1_000_000_000,
            packet_log: true,
        }
    }
}

#[cfg(test)]
mod tests;

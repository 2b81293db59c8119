//! # tcp: segments → connections
//!
//! In: [`Segment`]s of one capture, in capture order. Out: [`Connection`]s, each with its
//! endpoints, handshake, per-direction byte counts, gaps, retransmissions, FIN/RST, zero windows,
//! a Zeek-style state and history, anomalies, a bounded packet log (for ladder diagrams), the
//! transmission spans the pairing stage aligns across captures, and the result of the stream
//! handler (HTTP) that was fed the reassembled bytes of both directions.
//!
//! The stage is sans-IO and deterministic: capture timestamps only, never the wall clock;
//! connections come out in the order of their first packet.
//!
//! It does not know HTTP: the [`StreamHandler`] trait is the boundary. Reassembly itself is in
//! `stream`, sequence unwrapping in `seq`.
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

mod dirs;
mod seq;
mod stream;

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

pub use seq::SeqSpace;
use stream::Reassembler;
pub use stream::{Budget, DataClass, MAX_PENDING_PER_DIRECTION};

use crate::anomaly::Anomalies;
use crate::capture::FrameRef;
use crate::decode::{Endpoint, Segment, TcpFlags};

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
    pub const BOTH: [Dir; 2] = [Dir::ClientToServer, Dir::ServerToClient];

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
#[derive(Clone, Copy, Debug)]
pub enum StreamEvent<'a> {
    Data {
        offset: i64,
        bytes: &'a [u8],
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
pub const MAX_SPANS: usize = 2048;

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
    pub fn heap_bytes(&self) -> usize {
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

/// A live connection in the table.
struct Live<H> {
    conn: Connection<()>,
    streams: [Reassembler; 2],
    handler: H,
    /// History letters seen, per direction: bitmask over `HISTORY_LETTERS`.
    history_seen: [u16; 2],
    /// Sequence spaces per direction, once their origin is known.
    spaces: [Option<SeqSpace>; 2],
    /// The connection is closed (RST, or FIN both ways) since this time.
    closed_at: Option<i64>,
    handshake_seen: bool,
    /// A zero-window run is open in this direction's sender.
    zero_open: [bool; 2],
    /// Spans whose acknowledgement is not yet known start here.
    span_ack_cursor: [usize; 2],
    /// Its memory as last estimated ([`Live::weight`]), counted in the table's total.
    weight: usize,
}

const HISTORY_LETTERS: [char; 11] = ['S', 'H', 'A', 'D', 'F', 'R', 'T', 'G', 'W', 'I', '^'];

/// A history letter's bit (its index in `HISTORY_LETTERS`), without searching: noted on every
/// packet.
fn history_bit(letter: char) -> Option<usize> {
    let bit = match letter {
        'S' => 0,
        'H' => 1,
        'A' => 2,
        'D' => 3,
        'F' => 4,
        'R' => 5,
        'T' => 6,
        'G' => 7,
        'W' => 8,
        'I' => 9,
        '^' => 10,
        _ => return None,
    };
    debug_assert_eq!(HISTORY_LETTERS[bit], letter);
    Some(bit)
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

/// Closed connections that may linger for stragglers at once; beyond, the oldest finish early.
pub const MAX_LINGERING: usize = 10_000;

/// The canonical key of a 4-tuple: the smaller endpoint first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey(Endpoint, Endpoint);

impl FlowKey {
    fn of(a: Endpoint, b: Endpoint) -> FlowKey {
        if a <= b { FlowKey(a, b) } else { FlowKey(b, a) }
    }
}

/// A 4-tuple's entry in the table: a connection being reassembled, or one that closed recently
/// (its reassembly and HTTP state already finished and freed) whose 4-tuple still takes the
/// stragglers: the last ACK, a retransmitted FIN, a RST after the FINs.
enum Slot<H: StreamHandler> {
    Live(Box<Live<H>>),
    Closed(Closed<H::Output>),
}

impl<H: StreamHandler> Slot<H> {
    fn index(&self) -> u64 {
        match self {
            Slot::Live(l) => l.conn.index,
            Slot::Closed(c) => c.conn.index,
        }
    }
}

/// A finished connection lingering in the table.
struct Closed<O> {
    conn: Box<Connection<O>>,
    history_seen: [u16; 2],
}

/// The connection table of one capture.
pub struct ConnectionTable<H: StreamHandler, F: FnMut(bool) -> H> {
    /// Keyed by a hash that is fast and randomly seeded: captures are untrusted, and a fixed hash
    /// would let crafted 4-tuples collide.
    open: HashMap<FlowKey, Slot<H>, foldhash::fast::RandomState>,
    /// (deadline, key, connection index): checked in order; stale entries are skipped.
    /// Two queues, each in deadline order: [0] idle and RST lingers (long), [1] the short linger
    /// of connections closed by FINs.
    timers: [VecDeque<(i64, FlowKey, u64)>; 2],
    new_handler: F,
    next_index: u64,
    /// Boxed: a connection is over 1 KB, and it is handed on several times before its report.
    finished: Vec<Box<Connection<H::Output>>>,
    budget: Budget,
    limits: Limits,
    now: i64,
    /// Anomalies that belong to no connection.
    pub anomalies: Anomalies,
    pub evicted: u64,
    /// Applied to every connection as it finishes (to drop what the caller will not need).
    compact: Option<fn(&mut Connection<H::Output>)>,
    /// Closed connections lingering for stragglers.
    lingering: usize,
    /// Endpoints seen taking a connection (the target of a SYN, the sender of a SYN-ACK), up to
    /// [`MAX_LISTENERS`]: who is the server of a connection captured mid-stream.
    listeners: HashSet<Endpoint, foldhash::fast::RandomState>,
    /// The estimated memory of the live connections (the sum of their `weight`).
    open_bytes: usize,
}

/// Listening endpoints remembered for role guesses (a SYN flood to random ports stops adding).
const MAX_LISTENERS: usize = 4096;

/// Ports services commonly listen on above 1023 (HTTP alternates and the usual backends): a
/// connection seen mid-stream between such a port and another is served by it.
const SERVICE_PORTS: [u16; 24] = [
    1080, 1433, 1521, 2375, 3000, 3128, 3306, 4443, 5000, 5432, 5601, 5672, 6379, 7001, 8000, 8008, 8080,
    8081, 8088, 8443, 8888, 9000, 9090, 9200,
];

fn is_service_port(port: u16) -> bool {
    port < 1024 || SERVICE_PORTS.contains(&port)
}

impl<H: StreamHandler, F: FnMut(bool) -> H> ConnectionTable<H, F> {
    /// `new_handler(handshake_seen)` makes the stream handler of each new connection.
    pub fn new(limits: Limits, new_handler: F) -> Self {
        ConnectionTable {
            open: HashMap::default(),
            timers: Default::default(),
            new_handler,
            next_index: 0,
            finished: Vec::new(),
            budget: Budget {
                remaining: limits.max_pending_bytes,
            },
            limits,
            now: i64::MIN,
            anomalies: Anomalies::default(),
            evicted: 0,
            compact: None,
            lingering: 0,
            listeners: HashSet::default(),
            open_bytes: 0,
        }
    }

    /// Sets a function applied to each connection when it finishes, before it lingers for
    /// stragglers or is handed out.
    pub fn set_compactor(&mut self, compact: fn(&mut Connection<H::Output>)) {
        self.compact = Some(compact);
    }

    /// Connections being reassembled (not counting closed ones lingering for stragglers).
    pub fn open_connections(&self) -> usize {
        self.open.values().filter(|s| matches!(s, Slot::Live(_))).count()
    }

    /// How many finished connections wait to be taken.
    pub fn finished_len(&self) -> usize {
        self.finished.len()
    }

    /// Connections finished so far (take them to keep memory flat).
    pub fn take_finished(&mut self) -> Vec<Box<Connection<H::Output>>> {
        // The next batch is likely as large: no regrowth (connections are over 1 KB each).
        let room = self.finished.len();
        std::mem::replace(&mut self.finished, Vec::with_capacity(room))
    }

    /// Finishes every open connection (end of capture) and returns all finished ones, in order of
    /// their first packet.
    pub fn finish(self) -> Vec<Connection<H::Output>> {
        let mut out = Vec::new();
        self.finish_in_batches(usize::MAX, &mut |batch| out.extend(batch.into_iter().map(|c| *c)));
        out.sort_by_key(|c| c.index);
        out
    }

    /// Finishes every open connection (end of capture), handing them out `batch` at a time in
    /// order of their first packet, after those already finished (in the order they finished): a
    /// capture that ends with 200,000 connections open never holds all of them finished at once.
    pub fn finish_in_batches(mut self, batch: usize, emit: &mut dyn FnMut(Vec<Box<Connection<H::Output>>>)) {
        let mut keys: Vec<(u64, FlowKey)> = self.open.iter().map(|(k, s)| (s.index(), *k)).collect();
        keys.sort_unstable_by_key(|&(index, _)| index);
        // At least one batch, even empty: callers learn the end from it.
        if keys.is_empty() {
            emit(std::mem::take(&mut self.finished));
        }
        for chunk in keys.chunks(batch.max(1)) {
            for &(_, k) in chunk {
                self.finish_key(k);
            }
            emit(std::mem::take(&mut self.finished));
        }
    }

    /// Processes one segment.
    pub fn push(&mut self, seg: &Segment<'_>) {
        if seg.ts_ns > self.now {
            self.now = seg.ts_ns;
            self.expire();
        }
        let key = FlowKey::of(seg.src, seg.dst);
        let at = PacketRef {
            frame: seg.frame,
            ts_ns: seg.ts_ns,
        };
        let f = seg.flags;
        let syn = f.syn() && !f.rst();
        if syn && self.listeners.len() < MAX_LISTENERS {
            self.listeners.insert(if f.ack() { seg.src } else { seg.dst });
        }
        match self.open.get_mut(&key) {
            // The common case, in one lookup: a packet of a connection being reassembled.
            Some(Slot::Live(live)) if !(syn && starts_new_connection(&live.conn, seg)) => {
                live.on_segment(seg, at, &mut self.budget, self.limits.packet_log);
                // Re-estimated after data and control packets, and every 8th packet (a pure ACK
                // grows only the packet log).
                if seg.payload_len > 0 || f.syn() || f.fin() || f.rst() || live.conn.packets % 8 == 0 {
                    self.open_bytes = self.open_bytes - live.weight + live.reweigh();
                }
                if live.closed_by_fins() {
                    self.linger(key, seg.ts_ns);
                }
                self.keep_to_budget();
                return;
            }
            // A SYN on a known 4-tuple with a new ISN starts a new connection (port reuse).
            Some(Slot::Live(_)) => self.finish_key(key),
            Some(Slot::Closed(closed)) => {
                if syn && starts_new_connection(&closed.conn, seg) {
                    self.finish_key(key);
                } else {
                    closed.straggler(seg, at, self.limits.packet_log);
                    return;
                }
            }
            None => {}
        }
        if self.next_index >= self.limits.max_connections as u64 {
            self.anomalies.note("connection_limit", Some(seg.frame));
            return;
        }
        if self.open.len() >= self.limits.max_open {
            self.evict_one("connection_table_full");
        }
        let mut live = Box::new(self.new_live(seg, at));
        live.on_segment(seg, at, &mut self.budget, self.limits.packet_log);
        self.open_bytes += live.reweigh();
        let closed = live.closed_by_fins();
        let deadline = seg.ts_ns.saturating_add(self.limits.idle_ns);
        self.timers[0].push_back((deadline, key, live.conn.index));
        self.open.insert(key, Slot::Live(live));
        if closed {
            self.linger(key, seg.ts_ns);
        }
        self.keep_to_budget();
        self.compact_timers();
    }

    /// The open connections take more memory than `max_open_bytes`: the least recently started
    /// ones are judged now, each with a `connection_table_memory` anomaly.
    fn keep_to_budget(&mut self) {
        while self.open_bytes > self.limits.max_open_bytes {
            if !self.evict_one("connection_table_memory") {
                break;
            }
        }
    }

    /// Drops the idle timers of connections that finished (each connection leaves one behind):
    /// without this the queue grew with every connection of the capture, not with the open ones.
    fn compact_timers(&mut self) {
        let q = &mut self.timers[0];
        if q.len() > 2 * self.open.len() + 4096 {
            let open = &self.open;
            q.retain(|(_, key, index)| open.get(key).is_some_and(|s| s.index() == *index));
        }
    }

    /// An ICMP error quoting a packet of a known connection: noted on it (a quote of no known
    /// connection is counted as a capture-level anomaly). Never starts a connection.
    pub fn icmp(&mut self, e: &crate::decode::IcmpError) {
        match self.open.get_mut(&FlowKey::of(e.src, e.dst)) {
            Some(Slot::Live(live)) => note_icmp(&mut live.conn, e),
            Some(Slot::Closed(closed)) => note_icmp(&mut closed.conn, e),
            None => self.anomalies.note("icmp_for_unknown_connection", Some(e.frame)),
        }
    }

    /// A connection closed by FINs both ways with nothing left to reassemble: no data can follow,
    /// so it is finished now and its state freed; the 4-tuple lingers to take stragglers. (A RST
    /// closes too, but real captures show data after a RST — the other end answering what it
    /// had — so those connections linger whole.)
    fn linger(&mut self, key: FlowKey, now: i64) {
        let Some(Slot::Live(live)) = self.open.remove(&key) else {
            return;
        };
        self.open_bytes -= live.weight;
        let history_seen = live.history_seen;
        let index = live.conn.index;
        let mut conn = live.finish(&mut self.budget);
        if let Some(compact) = self.compact {
            compact(&mut conn);
        }
        self.open.insert(key, Slot::Closed(Closed { conn, history_seen }));
        let deadline = now.saturating_add(self.limits.closed_linger_ns);
        self.timers[1].push_back((deadline, key, index));
        self.lingering += 1;
        // Too many closed connections lingering at once (a capture packed with short
        // connections): the oldest finish early.
        while self.lingering > MAX_LINGERING {
            let Some((_, k, i)) = self.timers[1].pop_front() else {
                break;
            };
            if matches!(self.open.get(&k), Some(Slot::Closed(c)) if c.conn.index == i) {
                self.finish_key(k);
            }
        }
    }

    /// For a connection seen without its handshake: is `a` (rather than `b`) the server? An
    /// endpoint seen taking other connections is; else a service port against another port;
    /// else the lower port (clients use ephemeral ones, which Linux takes from 32768 up by
    /// default, but a tuned range can start at 1024: 5312 → 8080 is not served by 5312).
    fn serves(&self, a: Endpoint, b: Endpoint) -> bool {
        match (self.listeners.contains(&a), self.listeners.contains(&b)) {
            (true, false) => return true,
            (false, true) => return false,
            _ => {}
        }
        match (is_service_port(a.port), is_service_port(b.port)) {
            (true, false) => true,
            (false, true) => false,
            _ => a.port < b.port,
        }
    }

    fn new_live(&mut self, seg: &Segment<'_>, at: PacketRef) -> Live<H> {
        let f = seg.flags;
        // Who is the client: the sender of a SYN, the receiver of a SYN-ACK; otherwise guess.
        let (client, server, guessed) = if f.syn() && !f.ack() {
            (seg.src, seg.dst, false)
        } else if f.syn() && f.ack() {
            (seg.dst, seg.src, false)
        } else if self.serves(seg.src, seg.dst) {
            (seg.dst, seg.src, true)
        } else {
            (seg.src, seg.dst, true)
        };
        let index = self.next_index;
        self.next_index += 1;
        let handshake_seen = f.syn();
        let mut live = Live {
            conn: Connection {
                index,
                client,
                server,
                first: at,
                last: at,
                packets: 0,
                syn: None,
                syn_count: 0,
                syn_ack: None,
                syn_ack_count: 0,
                client_isn: None,
                server_isn: None,
                established: None,
                roles_guessed: guessed,
                client_is_local: None,
                state: ConnState::OTH,
                history: String::new(),
                dirs: Default::default(),
                anomalies: Anomalies::default(),
                log: PacketLog::default(),
                icmp: None,
                icmp_count: 0,
                app: (),
            },
            streams: Default::default(),
            spaces: [None, None],
            handler: (self.new_handler)(handshake_seen),
            history_seen: [0, 0],
            closed_at: None,
            handshake_seen,
            zero_open: [false, false],
            span_ack_cursor: [0, 0],
            weight: 0,
        };
        if guessed {
            live.history(Dir::ClientToServer, '^');
        }
        live
    }

    fn expire(&mut self) {
        for q in 0..2 {
            while let Some(&(deadline, key, index)) = self.timers[q].front() {
                if deadline > self.now {
                    break;
                }
                self.timers[q].pop_front();
                let Some(slot) = self.open.get(&key) else {
                    continue;
                };
                if slot.index() != index {
                    continue;
                }
                let (due, queue) = match slot {
                    // The linger counts from the close: stragglers do not extend it.
                    Slot::Closed(_) => (deadline, 1),
                    Slot::Live(l) if l.closed_at.is_some() => {
                        (l.conn.last.ts_ns.saturating_add(self.limits.linger_ns), 0)
                    }
                    Slot::Live(l) => (l.conn.last.ts_ns.saturating_add(self.limits.idle_ns), 0),
                };
                if due <= self.now {
                    self.finish_key(key);
                } else {
                    self.timers[queue].push_back((due, key, index));
                }
            }
        }
    }

    /// Judges the least recently started connection now (`why`: the anomaly noted if it was
    /// still open). False if there was none.
    fn evict_one(&mut self, why: &'static str) -> bool {
        // The oldest timer entry belongs to (one of) the least recently started connections.
        for q in 0..2 {
            while let Some((_, key, index)) = self.timers[q].pop_front() {
                let live = match self.open.get(&key) {
                    Some(s) if s.index() == index => matches!(s, Slot::Live(_)),
                    _ => continue,
                };
                if live {
                    self.anomalies.note(why, None);
                }
                self.evicted += 1;
                self.finish_key(key);
                return true;
            }
        }
        false
    }

    fn finish_key(&mut self, key: FlowKey) {
        match self.open.remove(&key) {
            Some(Slot::Live(live)) => {
                self.open_bytes -= live.weight;
                let mut conn = live.finish(&mut self.budget);
                if let Some(compact) = self.compact {
                    compact(&mut conn);
                }
                self.finished.push(conn);
            }
            Some(Slot::Closed(closed)) => {
                self.lingering -= 1;
                let mut conn = closed.conn;
                conn.state = conn_state(&conn);
                self.finished.push(conn);
            }
            None => {}
        }
    }
}

/// A SYN on a known 4-tuple: a retransmission of the same SYN, or a new connection?
fn starts_new_connection<O>(c: &Connection<O>, seg: &Segment<'_>) -> bool {
    let from_client = seg.src == c.client;
    if !seg.flags.ack() {
        // A bare SYN from the client is the same connection when it is a retransmission (same
        // ISN), or when the capture put it after the SYN-ACK that acknowledges it (reordering).
        let expected_isn = c.client_isn.or(c.dirs[0]
            .origin
            .filter(|_| c.syn_ack.is_some())
            .map(|o| o.wrapping_sub(1)));
        !(from_client && expected_isn == Some(seg.seq))
    } else {
        // A SYN-ACK with a different ISN than the server's, after the handshake completed, or
        // from the other side than the server: the server end of a new connection.
        if from_client {
            return true;
        }
        match c.server_isn {
            Some(isn) => isn != seg.seq && c.established.is_some(),
            None => false,
        }
    }
}

impl<O> Closed<O> {
    /// A packet after the connection closed: counted on the finished record, not reassembled.
    fn straggler(&mut self, seg: &Segment<'_>, at: PacketRef, log: bool) {
        let c = &mut self.conn;
        let d = if seg.src == c.client {
            Dir::ClientToServer
        } else {
            Dir::ServerToClient
        };
        let f = seg.flags;
        c.last = at;
        c.packets += 1;
        c.dirs[d.idx()].packets += 1;
        let letter = if f.rst() {
            Some('R')
        } else if f.fin() {
            Some('F')
        } else if seg.payload_len > 0 {
            Some('D')
        } else if f.ack() {
            Some('A')
        } else {
            None
        };
        if let Some(l) = letter {
            note_history(&mut c.history, &mut self.history_seen, d, l);
        }
        let ds = &mut c.dirs[d.idx()];
        let mark = CloseMark {
            at,
            offset: 0,
            ack: None,
            ttl: seg.ttl,
            ip_id: seg.ip_id,
        };
        if f.rst() {
            ds.rst_count += 1;
            if ds.rst.is_none() {
                // Offsets of stragglers are not tracked: the RST's position is the end of the data.
                ds.rst = Some(CloseMark {
                    offset: ds.data_end.unwrap_or(0),
                    ..mark
                });
            }
        } else if f.fin() {
            ds.fin_count += 1;
        }
        // Its offset, unwrapped near the end of the data seen (the sequence space is gone).
        let offset = ds.origin.map_or(0, |o| {
            let mut space = SeqSpace::new(o);
            space.advance(o.wrapping_add(ds.data_end.unwrap_or(0) as u32), 0);
            space.offset(seg.seq)
        });
        if seg.payload_len > 0 {
            let end = offset + seg.payload_len as i64;
            let kind = if ds.data_end.is_some_and(|e| end <= e) {
                ds.retransmissions += 1;
                SpanKind::Retransmission
            } else {
                ds.bytes += (end - ds.data_end.unwrap_or(offset).max(offset)) as u64;
                ds.data_end = Some(end);
                SpanKind::New
            };
            ds.add_span(offset, end, at, kind);
            c.anomalies.note("tcp_data_after_close", Some(at.frame));
        }
        if log {
            c.log.push(LoggedPacket {
                at,
                dir: d,
                flags: f,
                offset,
                len: seg.payload_len,
                ack: None,
                window: seg.window as u32,
                class: if seg.payload_len > 0 {
                    PacketClass::Retransmission
                } else {
                    PacketClass::Control
                },
            });
        }
    }
}

/// A gap Zeek's history would mark 'G': bytes given up on (a hole later filled by a
/// retransmission never becomes one; bytes cut by snaplen were captured).
fn is_content_gap(ev: &StreamEvent<'_>) -> bool {
    matches!(ev, StreamEvent::Gap { kind, .. } if *kind != GapKind::Snaplen)
}

/// Adds a history letter once per direction (upper case for the client, lower for the server).
fn note_history(history: &mut String, seen: &mut [u16; 2], d: Dir, letter: char) {
    let Some(bit) = history_bit(letter) else {
        return;
    };
    let seen = &mut seen[d.idx()];
    if *seen & (1 << bit) == 0 {
        *seen |= 1 << bit;
        history.push(if d == Dir::ClientToServer || letter == '^' {
            letter
        } else {
            letter.to_ascii_lowercase()
        });
    }
}

/// What a connection's table entry costs beside its `Live`: the hash table slot, its timers.
const ENTRY_BYTES: usize = 128;

impl<H: StreamHandler> Live<H> {
    /// Estimates the memory the connection holds now, remembers it in `weight` and returns it.
    /// A few loads per packet: capacities, not contents.
    fn reweigh(&mut self) -> usize {
        let c = &self.conn;
        let log = (c.log.head.capacity() + c.log.tail.capacity()) * std::mem::size_of::<LoggedPacket>();
        let spans: usize =
            c.dirs.iter().map(|d| d.spans.capacity()).sum::<usize>() * std::mem::size_of::<Span>();
        let w = std::mem::size_of::<Self>()
            + ENTRY_BYTES
            + c.history.capacity()
            + c.anomalies.heap_bytes()
            + log
            + spans
            + self.streams[0].heap_bytes()
            + self.streams[1].heap_bytes()
            + self.handler.heap_bytes();
        self.weight = w;
        w
    }

    /// Closed by FINs both ways, with nothing left to reassemble: no data can follow.
    fn closed_by_fins(&self) -> bool {
        self.closed_at.is_some() && self.conn.dirs.iter().all(|d| d.fin.is_some()) && self.fully_delivered()
    }

    /// Everything up to each FIN has been delivered (nothing is waiting for a retransmission).
    fn fully_delivered(&self) -> bool {
        (0..2).all(|i| {
            let d = &self.conn.dirs[i];
            d.rst.is_some()
                || self.conn.dirs[1 - i].rst.is_some()
                || d.fin.is_some_and(|f| self.streams[i].delivered_to() >= f.offset)
        })
    }

    fn set_origin(&mut self, d: Dir, seq: u32) {
        self.spaces[d.idx()] = Some(SeqSpace::new(seq));
        self.conn.dirs[d.idx()].origin = Some(seq);
    }

    fn history(&mut self, d: Dir, letter: char) {
        note_history(&mut self.conn.history, &mut self.history_seen, d, letter);
    }

    fn on_segment(&mut self, seg: &Segment<'_>, at: PacketRef, budget: &mut Budget, log: bool) {
        let d = if seg.src == self.conn.client {
            Dir::ClientToServer
        } else {
            Dir::ServerToClient
        };
        let di = d.idx();
        let f = seg.flags;
        self.conn.last = at;
        self.conn.packets += 1;
        if self.conn.client_is_local.is_none() {
            self.conn.client_is_local = seg.outgoing.map(|out| out == (d == Dir::ClientToServer));
        }
        self.conn.dirs[di].packets += 1;

        if f.syn() && (f.rst() || f.fin()) {
            self.history(d, 'I');
            self.conn
                .anomalies
                .note("tcp_syn_with_rst_or_fin", Some(at.frame));
        }

        // Handshake.
        if f.syn() {
            if d == Dir::ClientToServer && !f.ack() {
                self.history(d, 'S');
                self.conn.syn_count += 1;
                if self.conn.syn.is_none() {
                    self.conn.syn = Some(at);
                    self.conn.client_isn = Some(seg.seq);
                }
            } else if d == Dir::ServerToClient && f.ack() {
                self.history(d, 'H');
                self.conn.syn_ack_count += 1;
                if self.conn.syn_ack.is_none() {
                    self.conn.syn_ack = Some(at);
                    self.conn.server_isn = Some(seg.seq);
                }
            } else {
                // SYN from the server without ACK (simultaneous open) or SYN-ACK from the client.
                self.conn.anomalies.note("tcp_unexpected_syn", Some(at.frame));
            }
            self.handshake_seen = true;
            let ds = &mut self.conn.dirs[di];
            if let Some(m) = seg.options.mss {
                ds.mss = Some(m);
            }
            ds.window_scale = seg.options.window_scale;
            if self.spaces[di].is_none() {
                self.set_origin(d, seg.seq.wrapping_add(1));
                self.streams[di].start_at_zero();
            }
        }
        if self.spaces[di].is_none() {
            self.set_origin(d, seg.seq);
        }
        // The first payload byte of a SYN (TCP Fast Open) is one past the SYN's sequence number.
        let first_byte = seg.seq.wrapping_add(f.syn() as u32);
        let offset = match &mut self.spaces[di] {
            Some(space) if seg.payload_len > 0 && !f.rst() => space.advance(first_byte, seg.payload_len),
            Some(space) => space.offset(first_byte),
            None => 0,
        };

        // The ACK tells about the other direction.
        let mut ack_off = None;
        if f.ack() {
            let peer = d.rev().idx();
            if self.spaces[peer].is_none() && !f.rst() {
                // Nothing seen from the peer yet: its data starts where this ACK points.
                self.set_origin(d.rev(), seg.ack);
            }
            if let Some(space) = &self.spaces[peer] {
                let a = space.offset(seg.ack);
                ack_off = Some(a);
                if !f.rst() {
                    self.on_ack(d.rev(), a, at, budget);
                }
            }
            if d == Dir::ClientToServer
                && self.conn.syn_ack.is_some()
                && self.conn.established.is_none()
                && !f.syn()
            {
                self.conn.established = Some(at);
            }
        }

        // The window this endpoint advertises (for data towards it).
        if !f.syn() && !f.rst() {
            let peer_scale = self.conn.dirs[d.rev().idx()].window_scale;
            let scale = match (self.conn.dirs[di].window_scale, peer_scale) {
                (Some(s), Some(_)) => s.min(14),
                _ => 0,
            };
            let window = (seg.window as u64) << scale;
            self.conn.dirs[di].last_window = Some(window);
            if seg.window == 0 {
                self.history(d, 'W');
                // One record per direction: the first run's start, the latest advertisement.
                let zw = &mut self.conn.dirs[di].zero_window;
                match zw {
                    Some(z) => {
                        z.last = at;
                        z.count += 1;
                    }
                    None => {
                        *zw = Some(ZeroWindow {
                            first: at,
                            last: at,
                            count: 1,
                            reopened: None,
                        })
                    }
                }
                self.zero_open[di] = true;
            } else if self.zero_open[di] {
                self.zero_open[di] = false;
                if let Some(z) = &mut self.conn.dirs[di].zero_window {
                    if z.reopened.is_none() {
                        z.reopened = Some(at);
                    }
                }
            }
        }

        // Payload.
        let mut class = PacketClass::Control;
        if seg.payload_len > 0 {
            if f.rst() {
                self.conn.anomalies.note("tcp_rst_with_data", Some(at.frame));
            } else {
                class = self.on_data(d, seg, offset, at, budget);
            }
        } else if !f.syn() && !f.fin() && !f.rst() && f.ack() {
            self.history(d, 'A');
        }

        // FIN and RST.
        let fin_offset = offset.saturating_add(seg.payload_len as i64);
        if f.fin() && !f.rst() {
            self.history(d, 'F');
            let ds = &mut self.conn.dirs[di];
            ds.fin_count += 1;
            if ds.fin.is_none() {
                ds.fin = Some(CloseMark {
                    at,
                    offset: fin_offset,
                    ack: ack_off,
                    ttl: seg.ttl,
                    ip_id: seg.ip_id,
                });
                self.streams[di].set_fin(fin_offset);
            }
        }
        if f.rst() {
            self.history(d, 'R');
            let ds = &mut self.conn.dirs[di];
            ds.rst_count += 1;
            if ds.rst.is_none() {
                ds.rst = Some(CloseMark {
                    at,
                    offset,
                    ack: ack_off,
                    ttl: seg.ttl,
                    ip_id: seg.ip_id,
                });
            }
        } else {
            self.conn.dirs[di].note_ttl(seg.ttl);
        }
        let closed = f.rst() || (self.conn.dirs[0].fin.is_some() && self.conn.dirs[1].fin.is_some());
        if closed && self.closed_at.is_none() {
            self.closed_at = Some(at.ts_ns);
        }

        if log {
            self.conn.log.push(LoggedPacket {
                at,
                dir: d,
                flags: f,
                offset,
                len: seg.payload_len,
                ack: ack_off,
                window: seg.window as u32,
                class,
            });
        }
    }

    fn on_data(
        &mut self,
        d: Dir,
        seg: &Segment<'_>,
        offset: i64,
        at: PacketRef,
        budget: &mut Budget,
    ) -> PacketClass {
        let di = d.idx();
        self.history(d, 'D');
        let len = seg.payload_len;
        let handler = &mut self.handler;
        let mut gap = false;
        let class = self.streams[di].data(offset, len, seg.payload, at, budget, &mut |ev| {
            gap |= is_content_gap(&ev);
            handler.on_stream(d, ev)
        });
        let ds = &mut self.conn.dirs[di];
        if ds.first_data.is_none() {
            ds.first_data = Some(at);
        }
        ds.last_data = Some(at);
        let end = offset.saturating_add(len as i64);
        let (packet_class, span) = match class {
            DataClass::New => (PacketClass::New, Some(SpanKind::New)),
            DataClass::FillsHole => {
                ds.out_of_order += 1;
                (PacketClass::FillsHole, Some(SpanKind::FillsHole))
            }
            DataClass::Retransmission { .. } => {
                ds.retransmissions += 1;
                (PacketClass::Retransmission, Some(SpanKind::Retransmission))
            }
            DataClass::KeepAlive => {
                ds.keepalives += 1;
                (PacketClass::KeepAlive, None)
            }
        };
        if let Some(kind) = span {
            ds.add_span(offset, end, at, kind);
        }
        if matches!(class, DataClass::Retransmission { .. }) {
            self.history(d, 'T');
        }
        if gap {
            self.history(d, 'G');
        }
        packet_class
    }

    /// The receiver of direction `d` acknowledged up to `ack`.
    fn on_ack(&mut self, d: Dir, ack: i64, at: PacketRef, budget: &mut Budget) {
        let di = d.idx();
        let ds = &mut self.conn.dirs[di];
        if ds.acked.is_none_or(|(a, _)| ack > a) {
            ds.acked = Some((ack, at));
            // Mark the spans this acknowledgement covers (bounded walk per ACK).
            let mut i = self.span_ack_cursor[di];
            let mut walked = 0;
            while i < ds.spans.len() && walked < 64 {
                let s = &mut ds.spans[i];
                if s.end > ack {
                    break;
                }
                if s.acked.is_none() {
                    s.acked = Some(at);
                }
                i += 1;
                walked += 1;
            }
            self.span_ack_cursor[di] = i;
            let handler = &mut self.handler;
            let mut gap = false;
            self.streams[di].ack(ack, at, budget, &mut |ev| {
                gap |= is_content_gap(&ev);
                handler.on_stream(d, ev)
            });
            if gap {
                self.history(d, 'G');
            }
        }
    }

    fn finish(mut self, budget: &mut Budget) -> Box<Connection<H::Output>> {
        // How each direction ended, judged before the final flush turns holes into gaps: a FIN
        // is a clean end only if everything before it had been delivered.
        // A RST after a clean FIN (at or past the FIN's sequence number: Linux resets a socket
        // closed with unread data one past its FIN) does not undo the end the FIN made.
        let ends = [0, 1].map(|i| {
            let ds = &self.conn.dirs[i];
            let clean_fin = ds.fin.filter(|f| {
                self.streams[i].delivered_to() >= f.offset && self.streams[i].not_captured_bytes == 0
            });
            match (clean_fin, ds.rst) {
                (Some(f), Some(r)) if r.offset >= f.offset => End::Fin,
                (_, Some(_)) => End::Rst,
                (Some(_), None) => End::Fin,
                (None, None) => End::Open,
            }
        });
        let last = self.conn.last;
        for d in Dir::BOTH {
            let di = d.idx();
            let handler = &mut self.handler;
            self.streams[di].finish(last, budget, &mut |ev| handler.on_stream(d, ev));
            let s = &self.streams[di];
            let ds = &mut self.conn.dirs[di];
            ds.bytes = s.bytes_seen();
            ds.gaps = s.gaps();
            ds.gaps_approximate = s.gaps_approximate();
            ds.conflicts = s.conflicts;
            ds.acked_unseen = s.not_captured_bytes;
            ds.snaplen_cut = s.snaplen_bytes;
            ds.abandoned = s.abandoned_bytes;
            ds.data_start = s.first();
            ds.data_end = s.end();
            if s.conflicts > 0 {
                self.conn.anomalies.note("tcp_overlap_conflict", None);
            }
            if s.overflowed {
                self.conn.anomalies.note("tcp_reassembly_buffer_full", None);
            }
            if ds.gaps > 0 || ds.acked_unseen > 0 {
                self.history(d, 'G');
            }
        }
        self.conn.state = conn_state(&self.conn);
        let Live { conn, handler, .. } = self;
        let app = handler.finish(ends);
        Box::new(Connection {
            index: conn.index,
            client: conn.client,
            server: conn.server,
            first: conn.first,
            last: conn.last,
            packets: conn.packets,
            syn: conn.syn,
            syn_count: conn.syn_count,
            syn_ack: conn.syn_ack,
            syn_ack_count: conn.syn_ack_count,
            client_isn: conn.client_isn,
            server_isn: conn.server_isn,
            established: conn.established,
            roles_guessed: conn.roles_guessed,
            client_is_local: conn.client_is_local,
            state: conn.state,
            history: conn.history,
            dirs: conn.dirs,
            anomalies: conn.anomalies,
            log: conn.log,
            icmp: conn.icmp,
            icmp_count: conn.icmp_count,
            app,
        })
    }
}

fn note_icmp<O>(conn: &mut Connection<O>, e: &crate::decode::IcmpError) {
    let at = PacketRef {
        frame: e.frame,
        ts_ns: e.ts_ns,
    };
    conn.icmp_count = conn.icmp_count.saturating_add(1);
    if conn.icmp.is_none() {
        conn.icmp = Some(IcmpMark {
            at,
            from: e.from,
            ttl: e.ttl,
            kind: e.kind,
            to_server: e.src == conn.client,
        });
    }
    if at.ts_ns >= conn.last.ts_ns {
        conn.last = at;
    }
}

/// An endpoint's state as Zeek's TCP analyzer tracks it, from what the capture saw of it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EndState {
    Inactive,
    /// Packets, but no SYN (or SYN-ACK) from it: seen mid-stream.
    Partial,
    /// Only its SYN(s), or only its SYN-ACK(s).
    SynSent,
    Established,
    Closed,
    Reset,
}

/// `acked`: the peer acknowledged its SYN (or SYN-ACK), which establishes it even if it sent
/// nothing more.
fn end_state(d: &DirSummary, opening: Option<PacketRef>, openings: u32, acked: bool) -> EndState {
    if d.rst.is_some() {
        EndState::Reset
    } else if d.fin.is_some() {
        EndState::Closed
    } else if d.packets == 0 {
        EndState::Inactive
    } else if opening.is_none() {
        EndState::Partial
    } else if d.packets <= openings as u64 && !acked {
        EndState::SynSent
    } else {
        EndState::Established
    }
}

/// Zeek's connection state, from what was seen: Zeek's own rules (its `conn_state()` in
/// base/protocols/conn/main.zeek) over each endpoint's state. A responder's RST decides first,
/// as in Zeek; `RSTOS0` needs the originator to have sent nothing but SYNs before its RST
/// (history `S…R` with no originator `H A F G I` in between: `SaFR` is `OTH`).
fn conn_state<O>(c: &Connection<O>) -> ConnState {
    use EndState::*;
    let os = end_state(
        &c.dirs[0],
        c.syn,
        c.syn_count,
        c.syn_ack.is_some() && c.dirs[1].packets > c.syn_ack_count as u64,
    );
    let rs = end_state(&c.dirs[1], c.syn_ack, c.syn_ack_count, c.established.is_some());
    let o_inactive = matches!(os, Inactive | Partial);
    let r_inactive = matches!(rs, Inactive | Partial);
    let no_payload = c.dirs.iter().all(|d| d.bytes == 0);
    if rs == Reset {
        if os == SynSent || (os == Reset && no_payload) {
            ConnState::REJ
        } else if o_inactive {
            ConnState::RSTRH
        } else {
            ConnState::RSTR
        }
    } else if os == Reset {
        if !r_inactive {
            ConnState::RSTO
        } else if syn_then_rst(&c.history) {
            ConnState::RSTOS0
        } else {
            ConnState::OTH
        }
    } else if os == Closed && rs == Closed {
        ConnState::SF
    } else if os == Closed {
        if r_inactive { ConnState::SH } else { ConnState::S2 }
    } else if rs == Closed {
        if o_inactive { ConnState::SHR } else { ConnState::S3 }
    } else if os == SynSent && rs == Inactive {
        ConnState::S0
    } else if os == Established && rs == Established {
        ConnState::S1
    } else {
        ConnState::OTH
    }
}

/// Zeek's `^?S[^HAFGIQ]*R.*` over the history: a SYN, then the originator's RST, with no
/// SYN-ACK, ACK, FIN, gap or inconsistency from the originator in between.
fn syn_then_rst(history: &str) -> bool {
    let h = history.strip_prefix('^').unwrap_or(history);
    let Some(rest) = h.strip_prefix('S') else {
        return false;
    };
    rest.find('R')
        .is_some_and(|r| !rest[..r].contains(['H', 'A', 'F', 'G', 'I', 'Q']))
}

#[cfg(test)]
mod tests;

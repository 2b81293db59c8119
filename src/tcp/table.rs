//! The connection table of one capture: which 4-tuple a segment belongs to and whether it starts
//! a new connection, the client and server roles of a connection seen mid-stream, idle and
//! linger timers, memory caps (eviction), and the stragglers of a closed connection.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::IpAddr;

use super::live::{Live, note_history};
use super::state::conn_state;
use super::{
    Budget, CloseMark, ConnState, Connection, Dir, DirSummary, IcmpMark, Limits, LoggedPacket, PacketClass,
    PacketLog, PacketRef, SeqSpace, SpanKind, StreamHandler,
};
use crate::anomaly::{Anomalies, AnomalyKind};
use crate::decode::{Endpoint, Segment};

/// Closed connections that may linger for stragglers at once; beyond, the oldest finish early.
pub(crate) const MAX_LINGERING: usize = 10_000;

/// The canonical key of a 4-tuple, packed: each endpoint as (address words, port), the smaller
/// first. Hashed and compared once per packet, so it is plain integers (hashing `IpAddr` field by
/// field cost several hasher calls per endpoint), and small: 40 bytes, so that a table entry (key
/// and slot) is one 64-byte cache line (with `u128` addresses, aligned to 16, it was 112 bytes,
/// and the lookups of a table of 10,000 lingering connections missed the cache more). IPv4 and
/// IPv6 differ by `v6`: an IPv4 flow and an IPv4-mapped IPv6 flow stay two connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    lo_addr: [u32; 4],
    hi_addr: [u32; 4],
    lo_port: u16,
    hi_port: u16,
    v6: bool,
}

impl FlowKey {
    fn of(a: Endpoint, b: Endpoint) -> FlowKey {
        let (a, b, v6) = (packed(a), packed(b), a.ip.is_ipv6());
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        FlowKey {
            lo_addr: lo.0,
            hi_addr: hi.0,
            lo_port: lo.1,
            hi_port: hi.1,
            v6,
        }
    }
}

const _: () = assert!(size_of::<FlowKey>() == 40);

/// An endpoint as address words (most significant first) and port.
fn packed(e: Endpoint) -> ([u32; 4], u16) {
    let words = match e.ip {
        IpAddr::V4(ip) => [0, 0, 0, ip.to_bits()],
        IpAddr::V6(ip) => {
            let b = ip.to_bits();
            [(b >> 96) as u32, (b >> 64) as u32, (b >> 32) as u32, b as u32]
        }
    };
    (words, e.port)
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
            Slot::Closed(c) => c.index,
        }
    }
}

/// A finished connection lingering in the table.
///
/// Its index sits beside the box and its state is kept current as stragglers come: the table
/// checks and hands out the oldest lingering connections long after anything touched them, and
/// reading the box then costs a cache miss each (measured with perf on 210,000 short
/// connections: the index read was a twentieth of the table's time).
struct Closed<O> {
    conn: Box<Connection<O>>,
    index: u64,
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
    pub(crate) fn set_compactor(&mut self, compact: fn(&mut Connection<H::Output>)) {
        self.compact = Some(compact);
    }

    /// How many finished connections wait to be taken.
    pub(crate) fn finished_len(&self) -> usize {
        self.finished.len()
    }

    /// Connections finished so far (take them to keep memory flat).
    pub(crate) fn take_finished(&mut self) -> Vec<Box<Connection<H::Output>>> {
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
    pub(crate) fn finish_in_batches(
        mut self,
        batch: usize,
        emit: &mut dyn FnMut(Vec<Box<Connection<H::Output>>>),
    ) {
        let mut keys: Vec<(u64, FlowKey)> = self.open.iter().map(|(k, s)| (s.index(), *k)).collect();
        keys.sort_unstable_by_key(|&(index, _)| index);
        // At least one batch, even empty: callers learn the end from it.
        if keys.is_empty() {
            emit(std::mem::take(&mut self.finished));
        }
        for chunk in keys.chunks(batch.max(1)) {
            for &(_, k) in chunk {
                let before = self.finished.len();
                self.finish_key(k);
                let now = self.now;
                for c in &mut self.finished[before..] {
                    c.capture_ended = Some(now.max(c.last.ts_ns));
                }
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
            self.anomalies.note(AnomalyKind::ConnectionLimit, Some(seg.frame));
            return;
        }
        if self.open.len() >= self.limits.max_open {
            self.evict_one(AnomalyKind::ConnectionTableFull);
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
            if !self.evict_one(AnomalyKind::ConnectionTableMemory) {
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
            Some(Slot::Closed(closed)) => {
                note_icmp(&mut closed.conn, e);
                closed.conn.state = conn_state(&closed.conn);
            }
            None => self
                .anomalies
                .note(AnomalyKind::IcmpForUnknownConnection, Some(e.frame)),
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
        self.open.insert(
            key,
            Slot::Closed(Closed {
                conn,
                index,
                history_seen,
            }),
        );
        let deadline = now.saturating_add(self.limits.closed_linger_ns);
        self.timers[1].push_back((deadline, key, index));
        self.lingering += 1;
        // Too many closed connections lingering at once (a capture packed with short
        // connections): the oldest finish early.
        while self.lingering > MAX_LINGERING {
            let Some((_, k, i)) = self.timers[1].pop_front() else {
                break;
            };
            if matches!(self.open.get(&k), Some(Slot::Closed(c)) if c.index == i) {
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
                capture_ended: None,
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
    fn evict_one(&mut self, why: AnomalyKind) -> bool {
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
                // Its state is current (set when it finished, and after each straggler).
                self.lingering -= 1;
                self.finished.push(closed.conn);
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
        let letter = straggler_letter(seg);
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
        let offset = straggler_offset(ds, seg.seq);
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
            c.anomalies.note(AnomalyKind::TcpDataAfterClose, Some(at.frame));
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
        c.state = conn_state(c);
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

/// The history letter of a packet after the close (a FIN or RST, data, a pure ACK).
fn straggler_letter(seg: &Segment<'_>) -> Option<char> {
    let f = seg.flags;
    if f.rst() {
        Some('R')
    } else if f.fin() {
        Some('F')
    } else if seg.payload_len > 0 {
        Some('D')
    } else if f.ack() {
        Some('A')
    } else {
        None
    }
}

/// A straggler's offset, unwrapped near the end of the data seen (the sequence space is gone).
fn straggler_offset(ds: &DirSummary, seq: u32) -> i64 {
    ds.origin.map_or(0, |o| {
        let mut space = SeqSpace::new(o);
        space.advance(o.wrapping_add(ds.data_end.unwrap_or(0) as u32), 0);
        space.offset(seq)
    })
}

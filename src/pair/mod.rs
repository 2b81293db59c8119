//! # pair: the same connection in both captures
//!
//! In: the finished connections of the proxy capture and of the backend capture, as each capture's
//! reader hands them out. Out: the proxy→backend connections ([`Matched`]: seen at both ends, or at
//! one end only, with how they were matched), and the [`ClockOffset`] between the two capture
//! clocks. The [`Pairer`] is incremental: it holds a connection only until its counterpart arrives,
//! or until the other capture has read well past the time the counterpart would have finished
//! (its linger) — so memory follows the connections finishing around the same time, not the size of
//! the captures.
//!
//! Matching, strongest first:
//! 1. the client's and the server's initial sequence numbers (ISNs are random 32-bit numbers: two
//!    connections sharing both are the same connection). The same 4-tuple at both ends is a direct
//!    path; different addresses or ports mean NAT between the capture points;
//! 2. the same 4-tuple (or the NAT mapping learned in 1) with different ISNs whose difference is a
//!    constant: a firewall that rewrites sequence numbers;
//! 3. connections without a handshake in one capture: the same 4-tuple (or mapping) and
//!    overlapping raw sequence numbers of the bytes seen, in overlapping time.
//!
//! Which connections are proxy→backend: those that paired across the captures, and those to the
//! same server endpoints; with one capture, the connections the capturing host opened (known from
//! Linux cooked headers) or else every connection whose client is not itself a server.
//! `--backend IP:PORT` overrides.
//!
//! The clock offset comes from causality: a packet is never received before it was sent. A packet
//! the proxy sent and the backend received bounds `backend - proxy` from above; one the backend
//! sent and the proxy received bounds it from below.
//!
//! The cross-capture facts have their home here, computed once, and every later stage uses them
//! rather than redoing them: [`ClockOffset`] is the one conversion between the capture clocks
//! (offset and drift: [`ClockOffset::to_backend`], [`ClockOffset::to_proxy`], [`on_proxy_clock`]
//! when no estimate may exist), and a pair's [`SeqMap`] the one conversion between the views'
//! sequence offsets (built when the pair is matched, carried by [`Matched`] and [`Pair`]).
//!
//! [`align`] compares, per direction, what one end sent with what arrived at the other, by byte
//! range (never by packet: TSO and GRO make packet boundaries differ between the captures).

mod align;
mod clock;
pub(crate) mod packets;
mod seq_map;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::IpAddr;

pub use align::{Alignment, DirAlignment, Late, Lost};
pub(crate) use align::{MIN_RTO_NS, align, coverage, uncovered};
pub use clock::ClockOffset;
pub(crate) use clock::{ClockAcc, on_proxy_clock};
pub use seq_map::SeqMap;

use crate::decode::Endpoint;
use crate::http::Conn;

/// How two views of a connection were matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchMethod {
    /// Same 4-tuple and same initial sequence numbers.
    TupleAndIsn,
    /// Same initial sequence numbers, different addresses or ports: NAT between the capture points.
    IsnThroughNat,
    /// Initial sequence numbers differ by a constant: a firewall rewrote sequence numbers.
    SequenceShift,
    /// No handshake in one capture: matched by the sequence numbers of the bytes seen and timing.
    Payload,
    /// Seen in one capture only.
    OneSide,
}

impl MatchMethod {
    pub(crate) fn describe(self) -> &'static str {
        match self {
            MatchMethod::TupleAndIsn => "same 4-tuple and initial sequence numbers",
            MatchMethod::IsnThroughNat => {
                "same initial sequence numbers through NAT (addresses or ports differ)"
            }
            MatchMethod::SequenceShift => "sequence numbers shifted by a constant (a firewall rewrote them)",
            MatchMethod::Payload => {
                "sequence numbers of the bytes seen and timing (no handshake in a capture)"
            }
            MatchMethod::OneSide => "seen in one capture only",
        }
    }
}

/// One connection as seen at each end: its view in the proxy capture and in the backend capture
/// (either may be missing), how the two were matched, and how they number the same bytes. `V` is
/// the view itself ([`Matched`], as connections flow through the stages) or its index in its side's
/// connection list (in [`Pairing`], beside the lists of an analysis that keeps everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pair<V> {
    pub proxy: Option<V>,
    pub backend: Option<V>,
    pub method: MatchMethod,
    /// How the two views number the same bytes.
    pub seq_map: SeqMap,
}

/// A pair carrying its connections: what the pairer hands out, and what the diagnosis judges.
pub type Matched = Pair<Box<Conn>>;

/// The result of pairing.
#[derive(Clone, Debug, Default)]
pub struct Pairing {
    pub pairs: Vec<Pair<usize>>,
    pub clock: Option<ClockOffset>,
    /// The backend endpoints, as the proxy capture and as the backend capture see them.
    pub backends_proxy_view: Vec<Endpoint>,
    pub backends_backend_view: Vec<Endpoint>,
}

/// How long (in the other capture's time) a connection waits for its counterpart after its last
/// packet: the counterpart leaves the other reader once its own linger has passed (30 s after its
/// last packet), plus a margin for the last packets differing between the captures.
const HOLD_NS: i64 = 40_000_000_000;

/// With one capture, a connection waits until this many later ones have finished before it is
/// judged proxy→backend or not (the roles of addresses are learned from the connections around).
const SINGLE_WINDOW: usize = 256;

/// A loose match looks at this many of the other side's waiting connections with the same server
/// and client port, oldest first (bounds the work on a 4-tuple reused without end; a counterpart
/// is among the oldest waiting, as the connection expiring is its side's oldest).
const MAX_LOOSE_CANDIDATES: usize = 1024;

/// Addresses remembered for telling roles apart; beyond, no new one is learned.
const MAX_ADDRESSES: usize = 65_536;

/// Memory the connections waiting for their counterpart may take, both sides together; beyond,
/// the oldest of the side that holds more stop waiting at once (as when their hold runs out).
/// Connections wait for as long as the other capture's reader takes to pass their time: a
/// capture whose other half ends early (or never pairs) would otherwise keep all of them.
pub const WAITING_BYTES: usize = 32 * 1024 * 1024;

/// Memory the connections seen at one end, waiting for what the pairs will teach about the
/// backends, may take per side; beyond, they are decided at once with what is known (as at the
/// end).
const DEFERRED_BYTES: usize = 16 * 1024 * 1024;

/// Side indexes.
const P: usize = 0;
const B: usize = 1;

/// Backend endpoints in the proxy capture's and in the backend capture's view.
pub type Backends = (Vec<Endpoint>, Vec<Endpoint>);

/// The incremental pairer (see the module comment).
pub(crate) struct Pairer {
    two: bool,
    given: Vec<Endpoint>,
    waiting: [HashMap<u64, Box<Conn>>; 2],
    by_isn: [HashMap<u32, Vec<u64>>; 2],
    /// Waiting connections by (server, client port): a loose match needs both (through NAT the
    /// client port usually survives); keyed by the server alone, every expiry scanned every
    /// waiting connection to a backend (quadratic: 20,000 unpaired connections took 13 s).
    by_server: [HashMap<(Endpoint, u16), VecDeque<u64>>; 2],
    /// (last packet time on that side's clock, id), in arrival order.
    queue: [VecDeque<(i64, u64)>; 2],
    next_id: u64,
    pos: [i64; 2],
    done: [bool; 2],
    clock: ClockAcc,
    estimate: Option<ClockOffset>,
    /// Proxy-view server → backend-view server, learned from pairs (NAT), and back.
    server_map: HashMap<Endpoint, Endpoint>,
    server_map_rev: HashMap<Endpoint, Endpoint>,
    /// Backend endpoints, per view.
    learned: [BTreeSet<Endpoint>; 2],
    /// The proxy's addresses towards the backends, per view (clients of paired connections).
    proxy_ips: [BTreeSet<IpAddr>; 2],
    /// One capture: addresses seen as clients and as servers.
    client_ips: BTreeSet<IpAddr>,
    server_ips: BTreeSet<IpAddr>,
    /// Seen at one end only, and nothing learned yet to tell whether it is backend traffic.
    #[allow(
        clippy::vec_box,
        reason = "a connection moves several times on its way to a report: boxed once, moved as a pointer"
    )]
    deferred: [Vec<Box<Conn>>; 2],
    /// One capture: the connections waiting for the ones after them, in arrival order (no
    /// counterpart to look up, so no index: a connection goes once `SINGLE_WINDOW` came after it).
    window: VecDeque<Box<Conn>>,
    out: Vec<Matched>,
    /// One capture taken on the backend host: its backend connections are the ones it accepted.
    incoming: bool,
    /// Estimated memory of the connections waiting and deferred, per side.
    waiting_bytes: [usize; 2],
    deferred_bytes: [usize; 2],
    /// Connections decided early, per side, because the waiting or the deferred took too much.
    early: [u64; 2],
}

impl Pairer {
    /// `two`: a backend capture is read too. `given`: backend endpoints from `--backend` (either
    /// capture's view); empty: found automatically.
    pub(crate) fn new(two: bool, given: &[Endpoint]) -> Pairer {
        Pairer {
            two,
            given: given.to_vec(),
            waiting: Default::default(),
            by_isn: Default::default(),
            by_server: Default::default(),
            queue: Default::default(),
            next_id: 0,
            pos: [i64::MIN, i64::MIN],
            done: [false, !two],
            clock: ClockAcc::default(),
            estimate: None,
            server_map: HashMap::new(),
            server_map_rev: HashMap::new(),
            learned: Default::default(),
            proxy_ips: Default::default(),
            client_ips: BTreeSet::new(),
            server_ips: BTreeSet::new(),
            deferred: Default::default(),
            window: VecDeque::new(),
            out: Vec::new(),
            incoming: false,
            waiting_bytes: [0, 0],
            deferred_bytes: [0, 0],
            early: [0, 0],
        }
    }

    /// A pairer for one capture taken on the backend host (`analyze --backend-capture FILE`
    /// alone): the connections kept are those the capturing host accepted.
    pub(crate) fn backend_capture_only(given: &[Endpoint]) -> Pairer {
        Pairer {
            incoming: true,
            ..Pairer::new(false, given)
        }
    }

    /// Connections of each side (proxy, backend) decided before their time because what waited
    /// took more than its memory cap.
    pub(crate) fn decided_early(&self) -> [u64; 2] {
        self.early
    }

    /// The clock offset as estimated so far.
    pub(crate) fn clock(&self) -> Option<ClockOffset> {
        self.estimate
    }

    /// The backend endpoints learned (or given), per view.
    pub(crate) fn backends(&self) -> Backends {
        if self.learned[P].is_empty() && !self.given.is_empty() {
            return (self.given.clone(), self.given.clone());
        }
        (
            self.learned[P].iter().copied().collect(),
            self.learned[B].iter().copied().collect(),
        )
    }

    /// The connections ready to report, drained in place (the buffer keeps its capacity: a
    /// `Matched` is over 2 KB, and regrowing the buffer for every batch copied them again).
    pub(crate) fn drain(&mut self) -> std::vec::Drain<'_, Matched> {
        self.out.drain(..)
    }

    /// A connection of `side` (0 proxy, 1 backend) finished.
    pub(crate) fn push(&mut self, side: usize, conn: Box<Conn>) {
        if !self.two {
            if self.client_ips.len() < MAX_ADDRESSES {
                self.client_ips.insert(conn.client.ip);
            }
            if self.server_ips.len() < MAX_ADDRESSES {
                self.server_ips.insert(conn.server.ip);
            }
            self.window.push_back(conn);
            while self.window.len() > SINGLE_WINDOW {
                let Some(c) = self.window.pop_front() else {
                    break;
                };
                self.single(c);
            }
            return;
        }
        if let Some(j) = self.isn_match(side, &conn) {
            let other = self.unwait(1 - side, j).expect("indexed");
            let (p, b) = if side == P { (conn, other) } else { (other, conn) };
            let method = if p.client == b.client && p.server == b.server {
                MatchMethod::TupleAndIsn
            } else {
                MatchMethod::IsnThroughNat
            };
            self.paired(p, b, method, [0, 0]);
        } else {
            self.wait(side, conn);
            while self.waiting_bytes[P] + self.waiting_bytes[B] > WAITING_BYTES {
                let s = if self.waiting_bytes[P] >= self.waiting_bytes[B] {
                    P
                } else {
                    B
                };
                let Some((_, id)) = self.queue[s].pop_front() else {
                    break;
                };
                if self.waiting[s].contains_key(&id) {
                    self.early[s] += 1;
                    self.expire(s, id);
                }
            }
        }
    }

    /// `side` has read up to `pos` (its own clock): the other side's connections that finished
    /// well before may stop waiting.
    pub(crate) fn advance(&mut self, side: usize, pos: i64) {
        self.pos[side] = self.pos[side].max(pos);
        if !self.two {
            return;
        }
        let other = 1 - side;
        let Some(c) = self.estimate else { return };
        // `side`'s position on `other`'s clock.
        let reached = if side == B {
            c.to_proxy(pos)
        } else {
            c.to_backend(pos)
        };
        while let Some(&(last, id)) = self.queue[other].front() {
            if last.saturating_add(HOLD_NS) >= reached {
                break;
            }
            self.queue[other].pop_front();
            self.expire(other, id);
        }
    }

    /// `side` has no more connections.
    pub(crate) fn side_done(&mut self, side: usize) {
        self.done[side] = true;
        if self.two {
            // Nothing more will come from `side`: the other side's connections stop waiting.
            let other = 1 - side;
            while let Some((_, id)) = self.queue[other].pop_front() {
                self.expire(other, id);
            }
        }
    }

    /// Both sides are done: everything left is decided.
    pub(crate) fn finish(mut self) -> (Vec<Matched>, Option<ClockOffset>, Backends) {
        while let Some(c) = self.window.pop_front() {
            self.single(c);
        }
        for side in [P, B] {
            while let Some((_, id)) = self.queue[side].pop_front() {
                self.expire(side, id);
            }
        }
        self.decide_deferred();
        let backends = self.backends();
        (std::mem::take(&mut self.out), self.estimate, backends)
    }

    /// Decides the connections seen at one end that waited for what pairs would teach.
    fn decide_deferred(&mut self) {
        self.deferred_bytes = [0, 0];
        // Seen at one end only, decided without anything learned from pairs: the servers the
        // proxy host connected to, by the single-capture rules.
        let deferred_p = std::mem::take(&mut self.deferred[P]);
        let keep_p = servers_connected_to(&deferred_p, &self.given);
        for c in deferred_p {
            if keep_p.contains(&c.server) {
                self.learned[P].insert(c.server);
                self.one_side(Some(c), None);
            }
        }
        let deferred_b = std::mem::take(&mut self.deferred[B]);
        // The proxy capture shows no backend connection at all (it covered another time, or
        // another interface): which of the backend capture's connections came from the proxy is
        // then said as with the backend capture alone, rather than none being reported.
        let nothing_learned =
            self.learned[P].is_empty() && self.learned[B].is_empty() && self.given.is_empty();
        let (clients, servers): (BTreeSet<IpAddr>, BTreeSet<IpAddr>) = if nothing_learned {
            deferred_b.iter().map(|c| (c.client.ip, c.server.ip)).unzip()
        } else {
            Default::default()
        };
        for c in deferred_b {
            if self.learned[B].contains(&c.server)
                || self.learned[P].contains(&c.server)
                || self.given.contains(&c.server)
                || (nothing_learned && backend_capture_keeps(&c, &clients, &servers))
            {
                self.one_side(None, Some(c));
            }
        }
    }

    fn wait(&mut self, side: usize, conn: Box<Conn>) {
        let id = self.next_id;
        self.next_id += 1;
        if let Some(isn) = conn.client_isn {
            self.by_isn[side].entry(isn).or_default().push(id);
        }
        let key = (conn.server, conn.client.port);
        self.by_server[side].entry(key).or_default().push_back(id);
        self.queue[side].push_back((conn.last.ts_ns, id));
        self.waiting_bytes[side] += crate::http::conn_bytes(&conn);
        self.waiting[side].insert(id, conn);
    }

    fn unwait(&mut self, side: usize, id: u64) -> Option<Box<Conn>> {
        let conn = self.waiting[side].remove(&id)?;
        self.waiting_bytes[side] -= crate::http::conn_bytes(&conn);
        if let Some(isn) = conn.client_isn {
            remove_id(&mut self.by_isn[side], &isn, id);
        }
        let key = (conn.server, conn.client.port);
        if let Some(v) = self.by_server[side].get_mut(&key) {
            // Oldest first, and usually the oldest goes: found at once.
            if let Some(i) = v.iter().position(|&x| x == id) {
                v.remove(i);
            }
            if v.is_empty() {
                self.by_server[side].remove(&key);
            }
        }
        Some(conn)
    }

    /// A waiting connection of the other side with the same initial sequence numbers.
    fn isn_match(&self, side: usize, c: &Conn) -> Option<u64> {
        let other = 1 - side;
        let isn = c.client_isn?;
        let cands = self.by_isn[other].get(&isn)?;
        cands
            .iter()
            .copied()
            .filter(|id| {
                let o: &Conn = &self.waiting[other][id];
                match (c.server_isn, o.server_isn) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
            })
            // Prefer the same 4-tuple, then a known server ISN, then the nearest in time.
            .min_by_key(|id| {
                let o: &Conn = &self.waiting[other][id];
                let (p, b) = if side == P { (c, o) } else { (o, c) };
                let (bt, pt) = (self.on_proxy_clock(b.first.ts_ns), p.first.ts_ns);
                (
                    !(o.client == c.client && o.server == c.server),
                    o.server_isn.is_none() != c.server_isn.is_none(),
                    (bt - pt).unsigned_abs(),
                )
            })
    }

    fn on_proxy_clock(&self, backend_t: i64) -> i64 {
        on_proxy_clock(self.estimate.as_ref(), backend_t)
    }

    /// One capture: is the connection proxy→backend? (Reported if so.)
    fn single(&mut self, conn: Box<Conn>) {
        let keep = if !self.given.is_empty() {
            self.given.contains(&conn.server)
        } else if self.incoming {
            backend_capture_keeps(&conn, &self.client_ips, &self.server_ips)
        } else {
            single_capture_keeps(&conn, &self.client_ips, &self.server_ips)
        };
        if keep {
            self.learned[P].insert(conn.server);
            self.one_side(Some(conn), None);
        }
    }

    /// A connection stops waiting: a loose match with the other side, or seen at one end only.
    fn expire(&mut self, side: usize, id: u64) {
        let Some(conn) = self.unwait(side, id) else { return };
        if !self.two {
            self.single(conn);
            return;
        }
        let other = 1 - side;
        if let Some((j, method, shift)) = self.loose_match(side, &conn) {
            let o = self.unwait(other, j).expect("indexed");
            let (p, b) = if side == P { (conn, o) } else { (o, conn) };
            self.paired(p, b, method, shift);
            return;
        }
        match self.one_sided_keep(side, &conn) {
            Some(true) => {
                if side == P {
                    self.one_side(Some(conn), None)
                } else {
                    self.one_side(None, Some(conn))
                }
            }
            Some(false) => {}
            None => {
                self.deferred_bytes[side] += crate::http::conn_bytes(&conn);
                self.deferred[side].push(conn);
                if self.deferred_bytes[side] > DEFERRED_BYTES {
                    self.early[P] += self.deferred[P].len() as u64;
                    self.early[B] += self.deferred[B].len() as u64;
                    self.decide_deferred();
                }
            }
        }
    }

    /// Same 4-tuple (or NAT-mapped server, same client port), ISNs shifted or no handshake.
    fn loose_match(&self, side: usize, c: &Conn) -> Option<(u64, MatchMethod, [u32; 2])> {
        let other = 1 - side;
        let mapped = if side == P {
            self.server_map.get(&c.server).copied().unwrap_or(c.server)
        } else {
            self.server_map_rev.get(&c.server).copied().unwrap_or(c.server)
        };
        let direct = mapped == c.server;
        let cands = self.by_server[other].get(&(mapped, c.client.port))?;
        cands
            .iter()
            .take(MAX_LOOSE_CANDIDATES)
            .copied()
            .filter_map(|id| {
                let o: &Conn = &self.waiting[other][&id];
                let (p, b) = if side == P { (c, o) } else { (o, c) };
                // Through NAT the client address changes; its port often does not.
                let same_client = if direct {
                    b.client == p.client
                } else {
                    b.client.port == p.client.port
                };
                if !same_client || !overlaps_in_time(p, b, self.estimate.as_ref()) {
                    return None;
                }
                loose_match(p, b).map(|(m, s)| (id, m, s))
            })
            .min_by_key(|&(id, _, _)| {
                let o: &Conn = &self.waiting[other][&id];
                let (p, b) = if side == P { (c, o) } else { (o, c) };
                (self.on_proxy_clock(b.first.ts_ns) - p.first.ts_ns).unsigned_abs()
            })
    }

    /// Is a connection seen at one end only proxy→backend traffic? None: nothing learned yet.
    fn one_sided_keep(&self, side: usize, c: &Conn) -> Option<bool> {
        if !self.given.is_empty() {
            return Some(self.given.contains(&c.server) || self.learned[side].contains(&c.server));
        }
        if self.learned[side].contains(&c.server) {
            return Some(true);
        }
        if self.learned[P].is_empty() {
            return None;
        }
        if c.client_is_local == Some(false) {
            return Some(false);
        }
        // From the proxy's own address towards the backends: a backend connection that failed
        // before the other capture could see it (or to a backend none of whose connections paired).
        Some(self.proxy_ips[side].contains(&c.client.ip))
    }

    fn paired(&mut self, p: Box<Conn>, b: Box<Conn>, method: MatchMethod, seq_shift: [u32; 2]) {
        if !(self.given.is_empty() || self.given.contains(&p.server) || self.given.contains(&b.server)) {
            return;
        }
        self.clock.add(&p, &b);
        self.estimate = self.clock.estimate();
        self.server_map.entry(p.server).or_insert(b.server);
        self.server_map_rev.entry(b.server).or_insert(p.server);
        self.learned[P].insert(p.server);
        self.learned[B].insert(b.server);
        if self.proxy_ips[P].len() < MAX_ADDRESSES {
            self.proxy_ips[P].insert(p.client.ip);
            self.proxy_ips[B].insert(b.client.ip);
        }
        let seq_map = SeqMap::new(&p, &b, seq_shift);
        self.out.push(Matched {
            proxy: Some(p),
            backend: Some(b),
            method,
            seq_map,
        });
    }

    fn one_side(&mut self, proxy: Option<Box<Conn>>, backend: Option<Box<Conn>>) {
        self.out.push(Matched {
            proxy,
            backend,
            method: MatchMethod::OneSide,
            seq_map: SeqMap::default(),
        });
    }
}

fn remove_id<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<u64>>, key: &K, id: u64) {
    if let Some(v) = map.get_mut(key) {
        v.retain(|&x| x != id);
        if v.is_empty() {
            map.remove(key);
        }
    }
}

/// With one capture: is this connection one the capturing host opened towards a backend? The
/// Linux cooked header says which packets the host sent; otherwise an address that is both a
/// client and a server is the proxy host (its connections as a client are the backend ones, as a
/// server the client-facing ones).
fn single_capture_keeps(c: &Conn, client_ips: &BTreeSet<IpAddr>, server_ips: &BTreeSet<IpAddr>) -> bool {
    match c.client_is_local {
        Some(local) => local,
        None if server_ips.contains(&c.client.ip) => true,
        None => !client_ips.contains(&c.server.ip),
    }
}

/// With the backend host's capture alone: is this a connection the host accepted? The Linux
/// cooked header says which packets the host sent; otherwise an address that is both a client and
/// a server is the backend host (it accepts connections, and makes its own, e.g. to a database),
/// and a client that is never a server is a remote one (the proxy).
fn backend_capture_keeps(c: &Conn, client_ips: &BTreeSet<IpAddr>, server_ips: &BTreeSet<IpAddr>) -> bool {
    match c.client_is_local {
        Some(local) => !local,
        None if client_ips.contains(&c.server.ip) => true,
        None => !server_ips.contains(&c.client.ip),
    }
}

/// Do the two views' lifetimes overlap, given what is known of the clock offset? Without a
/// clock estimate any overlap is accepted (the captures may be hours apart).
fn overlaps_in_time(p: &Conn, b: &Conn, clock: Option<&ClockOffset>) -> bool {
    let Some(c) = clock else { return true };
    let slack = c.uncertainty_ns.saturating_mul(2).saturating_add(2_000_000_000);
    let (bs, be) = (c.to_proxy(b.first.ts_ns), c.to_proxy(b.last.ts_ns));
    bs <= p.last.ts_ns.saturating_add(slack) && be >= p.first.ts_ns.saturating_sub(slack)
}

/// Two views of the same 4-tuple without matching ISNs: the same connection if both handshakes
/// were seen and only the ISNs differ (a sequence-rewriting firewall), or if a handshake is
/// missing and the raw sequence numbers of the bytes seen overlap.
fn loose_match(p: &Conn, b: &Conn) -> Option<(MatchMethod, [u32; 2])> {
    match (p.client_isn, b.client_isn) {
        (Some(pc), Some(bc)) => {
            // Both saw the SYN: the ISNs differ (else step 1 matched them). A rewriting firewall
            // shifts every sequence number of the connection by one constant per direction; the
            // relative offsets at both ends then agree.
            let shift_c = bc.wrapping_sub(pc);
            let shift_s = match (p.server_isn, b.server_isn) {
                (Some(ps), Some(bs)) => bs.wrapping_sub(ps),
                _ => 0,
            };
            let same_shape = p.dirs[0].data_end == b.dirs[0].data_end
                || p.dirs[0].data_end.is_none()
                || b.dirs[0].data_end.is_none();
            same_shape.then_some((MatchMethod::SequenceShift, [shift_c, shift_s]))
        }
        _ => {
            // Compare raw sequence numbers of the bytes each view saw, per direction; where a
            // view saw no payload at all (an idle pooled connection whose close is all a capture
            // holds), the sequence numbers its packets carried.
            [raw_range, raw_seen_range]
                .into_iter()
                .find_map(|range| overlap_both_ways(p, b, range))
                .and_then(|same| same.then_some((MatchMethod::Payload, [0, 0])))
        }
    }
}

/// Some(true): the views' ranges are in reach of each other in every direction where both have
/// one (at least one); Some(false): a direction contradicts; None: no direction to compare.
fn overlap_both_ways(p: &Conn, b: &Conn, range: fn(&Conn, usize) -> Option<(u32, u32)>) -> Option<bool> {
    let mut any = false;
    for d in 0..2 {
        if let (Some(x), Some(y)) = (range(p, d), range(b, d)) {
            if !raw_near(x, y) {
                return Some(false);
            }
            any = true;
        }
    }
    any.then_some(true)
}

/// The raw sequence numbers [first, end) a view's packets of direction `d` occupied, payload or
/// not: from the first sequence number seen to past the last byte, FIN or RST.
fn raw_seen_range(c: &Conn, d: usize) -> Option<(u32, u32)> {
    let ds = &c.dirs[d];
    let origin = ds.origin?;
    let lo = ds.data_start.unwrap_or(0).min(0);
    let hi = [
        ds.data_end,
        ds.fin.map(|f| f.offset + 1),
        ds.rst.map(|r| r.offset + 1),
    ]
    .into_iter()
    .flatten()
    .fold(1, i64::max);
    Some((origin.wrapping_add(lo as u32), origin.wrapping_add(hi as u32)))
}

/// The raw sequence numbers [first, end) of the bytes a view saw in direction `d`.
fn raw_range(c: &Conn, d: usize) -> Option<(u32, u32)> {
    let ds = &c.dirs[d];
    let origin = ds.origin?;
    let (s, e) = (ds.data_start?, ds.data_end?);
    Some((origin.wrapping_add(s as u32), origin.wrapping_add(e as u32)))
}

/// How far apart in sequence space two views' ranges of one direction may lie and still be one
/// stream. The views overlap in time (checked before), so what one capture holds and the other
/// does not is what crossed the path while only one was capturing, or what was lost on it: a
/// capture started during a response shows its end, the proxy's capture (the beginning lost)
/// only a later part. Two different connections on one 4-tuple have random ISNs: their ranges are
/// this close by chance once in 256.
const NEAR_BYTES: u32 = 16 << 20;

/// Do the ranges overlap, or lie within [`NEAR_BYTES`] of each other?
fn raw_near(a: (u32, u32), b: (u32, u32)) -> bool {
    let gap_after = |x: (u32, u32), y: (u32, u32)| y.0.wrapping_sub(x.1) < NEAR_BYTES;
    raw_overlap(a, b) || gap_after(a, b) || gap_after(b, a)
}

fn raw_overlap(a: (u32, u32), b: (u32, u32)) -> bool {
    // In sequence space (mod 2^32): does either range's start fall in the other?
    let within = |x: u32, r: (u32, u32)| x.wrapping_sub(r.0) < r.1.wrapping_sub(r.0).max(1);
    within(a.0, b) || within(b.0, a)
}

/// The servers the capturing host connected to: from Linux cooked direction flags when present,
/// else every server except the ones whose IP is also a client's (a proxy host seen from both
/// sides has its listening sockets among the servers and its own address among the clients).
fn servers_connected_to(conns: &[Box<Conn>], given: &[Endpoint]) -> BTreeSet<Endpoint> {
    if !given.is_empty() {
        return given.iter().copied().collect();
    }
    let local_client: BTreeSet<Endpoint> = conns
        .iter()
        .filter(|c| c.client_is_local == Some(true))
        .map(|c| c.server)
        .collect();
    if !local_client.is_empty() {
        return local_client;
    }
    let known_remote_client = conns.iter().any(|c| c.client_is_local == Some(false));
    let client_ips: BTreeSet<_> = conns.iter().map(|c| c.client.ip).collect();
    let server_ips: BTreeSet<_> = conns.iter().map(|c| c.server.ip).collect();
    // An address that is both a client and a server is the proxy host: its connections as a
    // client are the backend ones.
    let host_ips: BTreeSet<_> = client_ips.intersection(&server_ips).copied().collect();
    if !host_ips.is_empty() {
        return conns
            .iter()
            .filter(|c| host_ips.contains(&c.client.ip))
            .map(|c| c.server)
            .collect();
    }
    if known_remote_client {
        return BTreeSet::new();
    }
    conns.iter().map(|c| c.server).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_sequence_overlap_wraps() {
        assert!(raw_overlap((10, 20), (15, 30)));
        assert!(!raw_overlap((10, 20), (20, 30)));
        assert!(raw_overlap((u32::MAX - 5, 10), (2, 4)));
        assert!(!raw_overlap((u32::MAX - 5, 10), (11, 40)));
        assert!(
            raw_near((2897, 3149), (1, 1449)),
            "a later part of the same response"
        );
        assert!(raw_near((u32::MAX - 5, 10), (11, 40)));
        assert!(!raw_near((10, 20), (10 + NEAR_BYTES + 20, 10 + NEAR_BYTES + 30)));
        assert!(
            !raw_near((0x8000_0000, 0x8000_0100), (1, 1449)),
            "another connection's ISN"
        );
    }
}

//! # pair: the same connection in both captures
//!
//! In: the connections of the proxy capture and of the backend capture. Out: a [`Pairing`]: the
//! proxy→backend connections, each seen at both ends or at one end only ([`Pair`], with how it was
//! matched), and the [`ClockOffset`] between the two capture clocks.
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
//! [`align`] compares, per direction, what one end sent with what arrived at the other, by byte
//! range (never by packet: TSO and GRO make packet boundaries differ between the captures).

use std::collections::{BTreeSet, HashMap};

use crate::decode::Endpoint;
use crate::pipeline::{Conn, SideResult};
use crate::tcp::{CloseMark, PacketRef, SpanKind};

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
    pub fn describe(self) -> &'static str {
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
    /// Add this to a proxy-capture timestamp to get the backend capture's clock (at `reference_ns`).
    pub backend_minus_proxy_ns: i64,
    /// The offset lies within ± this.
    pub uncertainty_ns: i64,
    /// Packets (handshake, first data, FIN) compared.
    pub samples: u64,
    /// Drift of the offset in parts per million, when the captures are long enough to measure it
    /// and it exceeds the uncertainty; applied by [`ClockOffset::to_backend`].
    pub drift_ppm: Option<f64>,
    /// Proxy-clock time at which `backend_minus_proxy_ns` holds (drift is relative to it).
    pub reference_ns: i64,
    /// The bounds disagreed (no offset satisfies every sample): the estimate is a median.
    pub inconsistent: bool,
}

impl ClockOffset {
    /// The offset at proxy-clock time `t`.
    pub fn offset_at(&self, t: i64) -> i64 {
        let drift = self.drift_ppm.unwrap_or(0.0);
        self.backend_minus_proxy_ns + ((t - self.reference_ns) as f64 * drift / 1e6) as i64
    }

    /// A proxy-clock time on the backend clock.
    pub fn to_backend(&self, t: i64) -> i64 {
        t.saturating_add(self.offset_at(t))
    }

    /// A backend-clock time on the proxy clock.
    pub fn to_proxy(&self, t: i64) -> i64 {
        // The drift term is tiny: evaluating it at the backend time is close enough.
        t.saturating_sub(self.offset_at(t.saturating_sub(self.backend_minus_proxy_ns)))
    }
}

/// The result of pairing.
#[derive(Clone, Debug, Default)]
pub struct Pairing {
    pub pairs: Vec<Pair>,
    pub clock: Option<ClockOffset>,
    /// The backend endpoints, as the proxy capture and as the backend capture see them.
    pub backends_proxy_view: Vec<Endpoint>,
    pub backends_backend_view: Vec<Endpoint>,
}

/// Every connection of one capture alone (`flows`): no filtering, no pairing.
pub fn single(conns: &[Conn]) -> Pairing {
    Pairing {
        pairs: (0..conns.len()).map(|i| one_side(Some(i), None)).collect(),
        ..Pairing::default()
    }
}

fn one_side(proxy: Option<usize>, backend: Option<usize>) -> Pair {
    Pair {
        proxy,
        backend,
        method: MatchMethod::OneSide,
        seq_shift: [0, 0],
    }
}

/// Pairs the connections of the proxy side (`sides[0]`) with those of the backend side
/// (`sides[1]`, if any), keeping the proxy→backend connections (`backends`: the backend
/// endpoints as given by the user, in either capture's view; empty: found automatically).
pub fn pair(sides: &[SideResult], backends: &[Endpoint]) -> Pairing {
    let Some(proxy) = sides.first() else {
        return Pairing::default();
    };
    let empty = Vec::new();
    let pconns = &proxy.connections;
    let bconns = sides.get(1).map_or(&empty, |b| &b.connections);

    let mut matches: Vec<Pair> = Vec::new();
    let mut p_used = vec![false; pconns.len()];
    let mut b_used = vec![false; bconns.len()];

    // 1. By initial sequence numbers.
    let mut by_isn: HashMap<u32, Vec<usize>> = HashMap::new();
    for (j, b) in bconns.iter().enumerate() {
        if let Some(isn) = b.client_isn {
            by_isn.entry(isn).or_default().push(j);
        }
    }
    for (i, p) in pconns.iter().enumerate() {
        let Some(isn) = p.client_isn else { continue };
        let Some(cands) = by_isn.get(&isn) else { continue };
        let best = cands
            .iter()
            .copied()
            .filter(|&j| !b_used[j])
            .filter(|&j| match (p.server_isn, bconns[j].server_isn) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            })
            // Prefer the same 4-tuple, then a known server ISN, then the nearest in time.
            .min_by_key(|&j| {
                let b = &bconns[j];
                (
                    !(b.client == p.client && b.server == p.server),
                    b.server_isn.is_none() != p.server_isn.is_none(),
                    (b.first.ts_ns - p.first.ts_ns).unsigned_abs(),
                )
            });
        if let Some(j) = best {
            p_used[i] = true;
            b_used[j] = true;
            let b = &bconns[j];
            let same_tuple = b.client == p.client && b.server == p.server;
            matches.push(Pair {
                proxy: Some(i),
                backend: Some(j),
                method: if same_tuple {
                    MatchMethod::TupleAndIsn
                } else {
                    MatchMethod::IsnThroughNat
                },
                seq_shift: [0, 0],
            });
        }
    }

    // The NAT mapping learned so far: proxy-view server → backend-view server.
    let mut server_map: HashMap<Endpoint, Endpoint> = HashMap::new();
    for m in &matches {
        if let (Some(i), Some(j)) = (m.proxy, m.backend) {
            server_map.entry(pconns[i].server).or_insert(bconns[j].server);
        }
    }
    let clock_so_far = estimate_clock(pconns, bconns, &matches);

    // 2 and 3. Same 4-tuple (or NAT-mapped server, same client port) with shifted ISNs or no handshake.
    let mut by_server: HashMap<Endpoint, Vec<usize>> = HashMap::new();
    for (j, b) in bconns.iter().enumerate() {
        if !b_used[j] {
            by_server.entry(b.server).or_default().push(j);
        }
    }
    for (i, p) in pconns.iter().enumerate() {
        if p_used[i] {
            continue;
        }
        let bserver = server_map.get(&p.server).copied().unwrap_or(p.server);
        let Some(cands) = by_server.get(&bserver) else {
            continue;
        };
        let direct = bserver == p.server;
        let best = cands
            .iter()
            .copied()
            .filter(|&j| !b_used[j])
            .filter(|&j| {
                let b = &bconns[j];
                // Through NAT the client address changes; its port often does not.
                (if direct {
                    b.client == p.client
                } else {
                    b.client.port == p.client.port
                }) && overlaps_in_time(p, b, clock_so_far.as_ref())
            })
            .filter_map(|j| loose_match(p, &bconns[j]).map(|m| (j, m)))
            .min_by_key(|&(j, _)| (bconns[j].first.ts_ns - p.first.ts_ns).unsigned_abs());
        if let Some((j, (method, shift))) = best {
            p_used[i] = true;
            b_used[j] = true;
            matches.push(Pair {
                proxy: Some(i),
                backend: Some(j),
                method,
                seq_shift: shift,
            });
        }
    }

    // Which connections are proxy→backend.
    let (bp, bb) = backend_endpoints(sides, &matches, backends);
    let keep_p = |c: &Conn| bp.contains(&c.server);
    let keep_b = |c: &Conn| bb.contains(&c.server);
    let mut pairs: Vec<Pair> = matches
        .into_iter()
        .filter(|m| {
            m.proxy.is_some_and(|i| keep_p(&pconns[i])) || m.backend.is_some_and(|j| keep_b(&bconns[j]))
        })
        .collect();
    for (i, p) in pconns.iter().enumerate() {
        if !p_used[i] && keep_p(p) {
            pairs.push(one_side(Some(i), None));
        }
    }
    for (j, b) in bconns.iter().enumerate() {
        if !b_used[j] && keep_b(b) {
            pairs.push(one_side(None, Some(j)));
        }
    }
    let clock = if sides.len() > 1 {
        estimate_clock(pconns, bconns, &pairs)
    } else {
        None
    };
    // In order of start, on the proxy clock.
    let start = |p: &Pair| match (p.proxy, p.backend) {
        (Some(i), _) => pconns[i].first.ts_ns,
        (None, Some(j)) => clock.map_or(bconns[j].first.ts_ns, |c| c.to_proxy(bconns[j].first.ts_ns)),
        (None, None) => i64::MAX,
    };
    pairs.sort_by_key(|p| (start(p), p.proxy, p.backend));
    Pairing {
        pairs,
        clock,
        backends_proxy_view: bp.into_iter().collect(),
        backends_backend_view: bb.into_iter().collect(),
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
            // Compare raw sequence numbers of the bytes each view saw, per direction.
            let mut any = false;
            for d in 0..2 {
                match (raw_range(p, d), raw_range(b, d)) {
                    (Some(a), Some(c)) => {
                        if !raw_overlap(a, c) {
                            return None;
                        }
                        any = true;
                    }
                    _ => continue,
                }
            }
            any.then_some((MatchMethod::Payload, [0, 0]))
        }
    }
}

/// The raw sequence numbers [first, end) of the bytes a view saw in direction `d`.
fn raw_range(c: &Conn, d: usize) -> Option<(u32, u32)> {
    let ds = &c.dirs[d];
    let origin = ds.origin?;
    let (s, e) = (ds.data_start?, ds.data_end?);
    Some((origin.wrapping_add(s as u32), origin.wrapping_add(e as u32)))
}

fn raw_overlap(a: (u32, u32), b: (u32, u32)) -> bool {
    // In sequence space (mod 2^32): does either range's start fall in the other?
    let within = |x: u32, r: (u32, u32)| x.wrapping_sub(r.0) < r.1.wrapping_sub(r.0).max(1);
    within(a.0, b) || within(b.0, a)
}

/// The backend endpoints in each capture's view.
fn backend_endpoints(
    sides: &[SideResult],
    matches: &[Pair],
    given: &[Endpoint],
) -> (BTreeSet<Endpoint>, BTreeSet<Endpoint>) {
    let pconns = &sides[0].connections;
    let bconns = sides.get(1).map(|b| &b.connections);
    let mut bp = BTreeSet::new();
    let mut bb = BTreeSet::new();
    if !given.is_empty() {
        bp.extend(given.iter().copied());
        bb.extend(given.iter().copied());
        // A given endpoint in one view names its NAT counterpart in the other.
        for m in matches {
            if let (Some(i), Some(j), Some(b)) = (m.proxy, m.backend, bconns) {
                if given.contains(&pconns[i].server) || given.contains(&b[j].server) {
                    bp.insert(pconns[i].server);
                    bb.insert(b[j].server);
                }
            }
        }
        return (bp, bb);
    }
    for m in matches {
        if let (Some(i), Some(j), Some(b)) = (m.proxy, m.backend, bconns) {
            bp.insert(pconns[i].server);
            bb.insert(b[j].server);
        }
    }
    if bp.is_empty() {
        // Nothing paired (a single capture, or every connection failed before reaching the
        // backend): the servers the proxy host connected to.
        bp = servers_connected_to(pconns);
        if let Some(b) = bconns {
            // The backend capture's servers, among those the proxy capture names (no NAT known).
            bb = servers_connected_to(b)
                .into_iter()
                .filter(|e| bp.contains(e))
                .collect();
            if bb.is_empty() {
                bb = b
                    .iter()
                    .filter(|c| bp.contains(&c.server))
                    .map(|c| c.server)
                    .collect();
            }
        }
    }
    (bp, bb)
}

/// The servers the capturing host connected to: from Linux cooked direction flags when present,
/// else every server except the ones whose IP is also a client's (a proxy host seen from both
/// sides has its listening sockets among the servers and its own address among the clients).
fn servers_connected_to(conns: &[Conn]) -> BTreeSet<Endpoint> {
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

/// The clock offset from the pairs seen at both ends.
fn estimate_clock(pconns: &[Conn], bconns: &[Conn], pairs: &[Pair]) -> Option<ClockOffset> {
    // Per pair: the tightest bounds on (backend - proxy) its packets give.
    struct Bounds {
        at: i64,
        lower: Option<i64>,
        upper: Option<i64>,
        samples: u64,
    }
    let mut per_pair = Vec::new();
    for m in pairs {
        let (Some(i), Some(j)) = (m.proxy, m.backend) else {
            continue;
        };
        let (p, b) = (&pconns[i], &bconns[j]);
        let mut bd = Bounds {
            at: p.first.ts_ns,
            lower: None,
            upper: None,
            samples: 0,
        };
        let mut upper = |tp: i64, tb: i64| {
            let v = tb - tp;
            bd.upper = Some(bd.upper.map_or(v, |u| u.min(v)));
            bd.samples += 1;
        };
        // Sent by the proxy, received by the backend: first SYN, first data byte, FIN.
        if let (Some(a), Some(c)) = (p.syn, b.syn) {
            upper(a.ts_ns, c.ts_ns);
        }
        if let Some((a, c)) = same_first_data(p, b, 0) {
            upper(a.ts_ns, c.ts_ns);
        }
        if let (Some(a), Some(c)) = (p.dirs[0].fin, b.dirs[0].fin) {
            upper(a.at.ts_ns, c.at.ts_ns);
        }
        let mut lower = |tp: i64, tb: i64| {
            let v = tb - tp;
            bd.lower = Some(bd.lower.map_or(v, |l| l.max(v)));
            bd.samples += 1;
        };
        // Sent by the backend, received by the proxy: first SYN-ACK, first data byte, FIN.
        if let (Some(a), Some(c)) = (p.syn_ack, b.syn_ack) {
            lower(a.ts_ns, c.ts_ns);
        }
        if let Some((a, c)) = same_first_data(p, b, 1) {
            lower(a.ts_ns, c.ts_ns);
        }
        if let (Some(a), Some(c)) = (p.dirs[1].fin, b.dirs[1].fin) {
            lower(a.at.ts_ns, c.at.ts_ns);
        }
        if bd.samples > 0 {
            per_pair.push(bd);
        }
    }
    if per_pair.is_empty() {
        return None;
    }
    let samples = per_pair.iter().map(|b| b.samples).sum();
    let lower = per_pair.iter().filter_map(|b| b.lower).max();
    let upper = per_pair.iter().filter_map(|b| b.upper).min();
    let reference_ns = per_pair.iter().map(|b| b.at).min().unwrap_or(0);
    let (mut offset, uncertainty, inconsistent) = match (lower, upper) {
        (Some(l), Some(u)) if l <= u => (l + (u - l) / 2, (u - l) / 2, false),
        (Some(l), None) => (l, 0, false),
        (None, Some(u)) => (u, 0, false),
        _ => {
            // No single offset fits every sample: the clocks drift, or a sample is wrong.
            // Use the median of the per-connection estimates and say so.
            let mut mids: Vec<i64> = per_pair.iter().filter_map(|b| mid(b.lower, b.upper)).collect();
            mids.sort_unstable();
            let m = mids.get(mids.len() / 2).copied().unwrap_or(0);
            let spread = mids.last().copied().unwrap_or(m) - mids.first().copied().unwrap_or(m);
            (m, spread / 2, true)
        }
    };
    // Drift: compare the estimates of the first and the last quarter of the connections, when
    // the captures span long enough for it to show.
    let mut drift_ppm = None;
    let first_t = per_pair.iter().map(|b| b.at).min().unwrap_or(0);
    let last_t = per_pair.iter().map(|b| b.at).max().unwrap_or(0);
    if per_pair.len() >= 8 && last_t - first_t > 60_000_000_000 {
        let mut sorted: Vec<&Bounds> = per_pair.iter().collect();
        sorted.sort_by_key(|b| b.at);
        let q = sorted.len() / 4;
        let window = |bs: &[&Bounds]| -> Option<(i64, i64, i64)> {
            let l = bs.iter().filter_map(|b| b.lower).max()?;
            let u = bs.iter().filter_map(|b| b.upper).min()?;
            let at = bs.iter().map(|b| b.at).sum::<i64>() / bs.len() as i64;
            Some((at, l, u))
        };
        if let (Some((t1, l1, u1)), Some((t2, l2, u2))) =
            (window(&sorted[..q]), window(&sorted[sorted.len() - q..]))
        {
            let (m1, m2) = ((l1 + u1) / 2, (l2 + u2) / 2);
            let tolerance = ((u1 - l1).abs() + (u2 - l2).abs()) / 2;
            if (m2 - m1).abs() > tolerance && t2 > t1 {
                drift_ppm = Some((m2 - m1) as f64 / (t2 - t1) as f64 * 1e6);
                offset = m1 - ((t1 - reference_ns) as f64 * drift_ppm.unwrap_or(0.0) / 1e6) as i64;
            }
        }
    }
    Some(ClockOffset {
        backend_minus_proxy_ns: offset,
        uncertainty_ns: uncertainty,
        samples,
        drift_ppm,
        reference_ns,
        inconsistent,
    })
}

fn mid(l: Option<i64>, u: Option<i64>) -> Option<i64> {
    match (l, u) {
        (Some(l), Some(u)) => Some(l + (u - l) / 2),
        (Some(x), None) | (None, Some(x)) => Some(x),
        (None, None) => None,
    }
}

/// The first data packet of direction `d` at each end, when both saw the same first byte.
fn same_first_data(p: &Conn, b: &Conn, d: usize) -> Option<(PacketRef, PacketRef)> {
    let (pd, bd) = (&p.dirs[d], &b.dirs[d]);
    if pd.data_start.is_some() && pd.data_start == bd.data_start {
        let ps = pd.spans.first()?;
        let bs = bd.spans.first()?;
        (ps.start == bs.start).then_some((ps.first, bs.first))
    } else {
        None
    }
}

/// One direction's comparison of what was sent at one end with what arrived at the other.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DirAlignment {
    /// Byte ranges the sender's capture shows sent, that never arrived at the receiver (not in the
    /// receiver's capture, not acknowledged by the receiver) while the receiver's capture ran.
    pub lost: Vec<Lost>,
    /// Byte ranges whose first transmission was lost: they arrived only as a retransmission.
    pub arrived_late: Vec<Late>,
    /// Bytes missing from the receiver's capture that the receiver acknowledged (capture drop).
    pub receiver_capture_missed: u64,
    /// Bytes the receiver's capture shows that the sender's capture does not (sender capture drop).
    pub sender_capture_missed: u64,
    /// A RST that arrived at the receiver's end but that the sender never sent.
    pub forged_rst: Option<CloseMark>,
    /// A RST the sender sent that never arrived at the receiver's end.
    pub lost_rst: Option<CloseMark>,
    /// A FIN the sender sent that never arrived at the receiver's end.
    pub lost_fin: Option<CloseMark>,
}

/// A range sent and never received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lost {
    pub start: i64,
    pub end: i64,
    /// Its first transmission, at the sender's end.
    pub first_sent: PacketRef,
    /// How many times the sender's capture shows it sent.
    pub transmissions: u32,
    pub last_sent: PacketRef,
}

/// A range whose first transmission was lost and a retransmission arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Late {
    pub start: i64,
    pub end: i64,
    pub first_sent: PacketRef,
    /// The retransmission that arrived, at the sender's end, and its arrival at the receiver's.
    pub resent: PacketRef,
    pub arrived: PacketRef,
}

/// The alignment of a pair, per direction (index `Dir::idx`: 0 proxy→backend, 1 backend→proxy).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Alignment {
    pub dirs: [DirAlignment; 2],
}

/// Aligns the two views of a connection, direction by direction.
pub fn align(
    p: &Conn,
    b: &Conn,
    clock: Option<&ClockOffset>,
    backend_capture_end: i64,
    proxy_capture_end: i64,
) -> Alignment {
    let identity = ClockOffset {
        backend_minus_proxy_ns: 0,
        uncertainty_ns: 0,
        samples: 0,
        drift_ppm: None,
        reference_ns: 0,
        inconsistent: false,
    };
    let clock = clock.copied().unwrap_or(identity);
    let mut a = Alignment::default();
    // c2s: the proxy sends, the backend receives.
    a.dirs[0] = align_dir(p, b, 0, |t| clock.to_backend(t), backend_capture_end);
    // s2c: the backend sends, the proxy receives.
    a.dirs[1] = align_dir(b, p, 1, |t| clock.to_proxy(t), proxy_capture_end);
    a
}

/// Merged coverage of a view's spans in direction `d`.
fn coverage(c: &Conn, d: usize) -> Vec<(i64, i64)> {
    let mut v: Vec<(i64, i64)> = c.dirs[d].spans.iter().map(|s| (s.start, s.end)).collect();
    v.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => out.push((s, e)),
        }
    }
    out
}

/// Parts of [s, e) not covered by `cov`.
fn uncovered(cov: &[(i64, i64)], s: i64, e: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut at = s;
    for &(cs, ce) in cov {
        if ce <= at {
            continue;
        }
        if cs >= e {
            break;
        }
        if cs > at {
            out.push((at, cs));
        }
        at = at.max(ce);
        if at >= e {
            break;
        }
    }
    if at < e {
        out.push((at, e));
    }
    out
}

fn align_dir(
    sender: &Conn,
    receiver: &Conn,
    d: usize,
    to_receiver_clock: impl Fn(i64) -> i64,
    receiver_capture_end: i64,
) -> DirAlignment {
    let mut out = DirAlignment::default();
    let (sd, rd) = (&sender.dirs[d], &receiver.dirs[d]);
    let received = coverage(receiver, d);
    let sent = coverage(sender, d);
    // The receiver acknowledged everything below this (as its own capture shows its ACKs).
    let acked_by_receiver = rd.acked.map(|(a, _)| a);

    // Never arrived: sent ranges missing at the receiver and not acknowledged by it, sent while
    // the receiver's capture was running.
    for span in sd.spans.iter().filter(|s| s.kind != SpanKind::Retransmission) {
        for (s, e) in uncovered(&received, span.start, span.end) {
            let (s, e) = match acked_by_receiver {
                Some(a) if a >= e => {
                    out.receiver_capture_missed += (e - s) as u64;
                    continue;
                }
                Some(a) if a > s => {
                    out.receiver_capture_missed += (a - s) as u64;
                    (a, e)
                }
                _ => (s, e),
            };
            if to_receiver_clock(span.first.ts_ns) > receiver_capture_end {
                continue;
            }
            let resends: Vec<_> = sd
                .spans
                .iter()
                .filter(|r| r.kind == SpanKind::Retransmission && r.start < e && r.end > s)
                .collect();
            out.lost.push(Lost {
                start: s,
                end: e,
                first_sent: span.first,
                transmissions: 1 + resends.len() as u32,
                last_sent: resends.last().map_or(span.last, |r| r.last),
            });
        }
    }
    merge_lost(&mut out.lost);

    // Arrived only as a retransmission: for each retransmitted range, when did the receiver
    // first get its first byte? After the retransmission left → the original was lost.
    for r in sd.spans.iter().filter(|s| s.kind == SpanKind::Retransmission) {
        let Some(orig) = sd
            .spans
            .iter()
            .find(|o| o.kind != SpanKind::Retransmission && o.start <= r.start && o.end > r.start)
        else {
            continue;
        };
        let Some(arr) = rd.spans.iter().find(|a| a.start <= r.start && a.end > r.start) else {
            continue;
        };
        // Compare on the receiver's clock: the retransmission's departure vs the arrival.
        let resent_at = to_receiver_clock(r.first.ts_ns);
        if arr.first.ts_ns >= resent_at && out.arrived_late.iter().all(|l| l.start != r.start) {
            out.arrived_late.push(Late {
                start: r.start,
                end: r.end,
                first_sent: orig.first,
                resent: r.first,
                arrived: arr.first,
            });
        }
    }

    // Sender capture drop: bytes the receiver got that the sender's capture does not show.
    for &(s, e) in &received {
        for (us, ue) in uncovered(&sent, s, e) {
            out.sender_capture_missed += (ue - us) as u64;
        }
    }

    // RST and FIN.
    match (sd.rst, rd.rst) {
        (None, Some(r)) => out.forged_rst = Some(r),
        (Some(s), None) if to_receiver_clock(s.at.ts_ns) <= receiver_capture_end => out.lost_rst = Some(s),
        _ => {}
    }
    if let (Some(f), None) = (sd.fin, rd.fin) {
        if to_receiver_clock(f.at.ts_ns) <= receiver_capture_end && rd.rst.is_none() {
            out.lost_fin = Some(f);
        }
    }
    out
}

fn merge_lost(v: &mut Vec<Lost>) {
    v.sort_by_key(|l| l.start);
    let mut out: Vec<Lost> = Vec::with_capacity(v.len());
    for l in v.drain(..) {
        match out.last_mut() {
            Some(last) if l.start <= last.end => {
                last.end = last.end.max(l.end);
                last.transmissions = last.transmissions.max(l.transmissions);
                last.last_sent = last.last_sent.max(l.last_sent);
            }
            _ => out.push(l),
        }
    }
    *v = out;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncovered_ranges() {
        let cov = [(0, 10), (20, 30)];
        assert_eq!(uncovered(&cov, 0, 30), vec![(10, 20)]);
        assert_eq!(uncovered(&cov, 5, 25), vec![(10, 20)]);
        assert_eq!(uncovered(&cov, 25, 40), vec![(30, 40)]);
        assert_eq!(uncovered(&[], 1, 2), vec![(1, 2)]);
        assert!(uncovered(&cov, 0, 10).is_empty());
    }

    #[test]
    fn raw_sequence_overlap_wraps() {
        assert!(raw_overlap((10, 20), (15, 30)));
        assert!(!raw_overlap((10, 20), (20, 30)));
        assert!(raw_overlap((u32::MAX - 5, 10), (2, 4)));
        assert!(!raw_overlap((u32::MAX - 5, 10), (11, 40)));
    }
}

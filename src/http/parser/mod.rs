//! The HTTP/1.x state machine of one connection.
//!
//! Each direction has a [`State`]; events (bytes, gaps) move it. Each direction's messages are
//! kept in stream order (requests with the stretches where sync was lost); which request a
//! response answers is decided at the end, by `pairing.rs`, from positions and times.
//!
//! While parsing, a response's framing needs to know what its request was (HEAD, CONNECT): the
//! parser takes the request of the same position (the n-th request for the n-th final response),
//! or after a loss of sync the latest request that started before the response. A response whose
//! head is complete before that request's head waits ([`State::AwaitRequest`]), holding the
//! server's later events (bounded), until the request is parsed or cannot come anymore. A request
//! that may turn the connection into a tunnel (CONNECT, Upgrade) makes the client direction wait
//! ([`State::AwaitTunnel`]) for its response in the same way.
//!
//! A gap the framing cannot follow (at a message start, inside a head or a chunk-size line, past
//! the end of a chunk) loses sync: a [`Stop`] is recorded and the direction looks for the next
//! message start ([`State::Hunt`]): a line that is a start line, at a line start or at the start
//! of a packet's data. Snaplen cuts every packet after its first bytes: a head cut short keeps its
//! start line (as far as captured) with [`Framing::Unknown`], and the next message is found at a
//! later packet's start, even if its own start line is cut.
//!
//! Memory per connection: one head being parsed per direction (at most `max_header_bytes`), the
//! events held by a waiting direction (at most `max_header_bytes`), a chunk-size line, the kept
//! requests and responses (at most `max_exchanges` each), a bounded list of pipelined
//! HEAD/CONNECT/Upgrade requests and of the start times of unanswered requests, and at most
//! [`MAX_STOPS`](super::MAX_STOPS) stops per direction. Body bytes are counted, never stored.
//!
//! This file holds the parser's state and the event loop (holding and replaying events while a
//! direction waits, the end of the connection); `message_head.rs` reads heads, `request.rs` and
//! `response.rs` what a complete head means in each direction, `chunked.rs` bodies (length,
//! until close, chunked), and `sync.rs` gaps, losses of sync, stops and the looking for the next
//! message start.

mod chunked;
mod message_head;
mod request;
mod response;
mod sync;

use std::collections::VecDeque;

use super::head::ReqFacts;
use super::pairing::{self, ReqEntry, RespEntry};
use super::{HttpLimits, HttpSummary, Message, Protocol, Stop, StopKind};
use crate::anomaly::{Anomalies, AnomalyKind};
use crate::tcp::{Dir, End, Event, PacketRef, StreamEvent};
use chunked::{Body, Chunk, Cur};
use message_head::HeadBuf;
use request::Facts;
use response::{Pending, answered_before_next_request};
use sync::Hunt;

/// Interim (1xx) responses kept per exchange.
const MAX_INTERIM: usize = 8;
/// Pipelined requests with a special response framing (HEAD, CONNECT, Upgrade) remembered
/// while their responses have not been parsed; beyond, they are framed as plain (noted).
const MAX_SPECIAL_REQUESTS: usize = 4096;
/// Start times of requests not answered yet, kept for framing a response after a loss of sync.
const MAX_RECENT_REQUESTS: usize = 4096;
/// Events a waiting direction holds (their bytes are capped by `max_header_bytes`).
const MAX_HELD_EVENTS: usize = 1024;
/// Bytes of a line kept while looking for a message start.
const MAX_HUNT_LINE: usize = 8 * 1024;
/// Packet starts inside one line tried as message starts while hunting.
const MAX_HUNT_MARKS: usize = 8;
/// An unfinished first line is checked on every new byte up to this length (to reject garbage
/// early); after, when its end arrives.
const PROBE_BYTES: usize = 64;

/// The HTTP view of one connection being built.
#[derive(Debug)]
pub(super) struct Parser {
    limits: HttpLimits,
    from_start: bool,
    /// Indexed by `Dir::idx`.
    sides: [Side; 2],
    /// The client direction's requests and lost stretches, and the server direction's responses,
    /// in stream order (at most `max_exchanges` each), for `pairing`.
    reqs: Vec<ReqEntry>,
    resps: Vec<RespEntry>,
    /// Interim responses of the final response to come, and whether sync was lost before them.
    interim: Option<RespEntry>,
    /// Exchange positions seen so far (request numbers, final response numbers), kept or not.
    exchanges_seen: u64,
    /// Final responses seen so far.
    responses_seen: u64,
    /// Requests parsed whose response is not framed like a GET's, by request number, oldest
    /// first; a parsed request not listed here is plain.
    special: VecDeque<(u64, ReqFacts)>,
    /// Request numbers and start times of the requests the server direction has not answered
    /// yet, oldest first (bounded).
    recent: VecDeque<(u64, i64)>,
    /// The request whose response turned the connection into a tunnel.
    tunnel: Option<u64>,
    tls: bool,
    /// (Mid-stream) a direction's first bytes look like a TLS record header: the connection is
    /// TLS if no HTTP start line turns up.
    tls_hint: bool,
    /// A start line (request or status) was recognised.
    http_seen: bool,
    /// Some payload (bytes or a gap) was seen.
    payload_seen: bool,
    stopped: Vec<Stop>,
    stops_not_kept: u64,
    anomalies: Anomalies,
    /// Heap bytes of the messages kept in `reqs` and `resps` (estimated as each is kept).
    kept_bytes: usize,
}

/// One direction.
#[derive(Debug)]
struct Side {
    state: State,
    /// Requests: number of the next request. Responses: number of the request the next final
    /// response is taken to answer (for its framing).
    next: u64,
    /// A message start was seen in this direction.
    started: bool,
    /// The last event was a gap.
    tail_gap: bool,
    /// Events waiting while the direction waits for the other one.
    held: VecDeque<Held>,
    held_bytes: usize,
    /// Stream offsets of the first event and just past the last one.
    first_offset: Option<i64>,
    end_offset: Option<i64>,
    /// Bytes skipped before the first message start (mid-stream captures).
    skipped: Option<u64>,
    /// Garbage where the first message of a stream should have started: an anomaly if the
    /// connection turns out to be HTTP, nothing if it is some other protocol.
    deferred: Option<Deferred>,
    /// Sync was lost since this direction's last message start.
    lost: bool,
    /// Timestamp of the last data parsed (where a stretch of lost requests can begin).
    last_ts: Option<i64>,
    /// The stop of the current loss of sync (index in `stopped`), to say where parsing resumed.
    open_stop: Option<usize>,
    /// Stops recorded for this direction.
    stops: usize,
    /// A message whose head snaplen cut, while its extent is being found out.
    cut: Option<Cut>,
}

/// A message whose head snaplen cut: it runs until the next message start of its direction if
/// nothing but snaplen-cut bytes come before it.
#[derive(Debug)]
struct Cut {
    /// Index in `reqs` or `resps`.
    entry: usize,
    offset: i64,
    /// Bytes snaplen cut since its start.
    missing: u64,
    /// The last packet known to carry bytes of it.
    last: PacketRef,
}

#[derive(Debug)]
struct Deferred {
    offset: i64,
    at: PacketRef,
    anomaly: AnomalyKind,
    reason: String,
}

#[derive(Debug)]
enum State {
    /// At a message boundary.
    Idle,
    /// Looking for a line that starts a message: captured mid-stream, or after a loss of sync.
    Hunt(Hunt),
    /// Inside a start line and header fields.
    Head(HeadBuf),
    /// Inside a body.
    Body(Box<Cur>),
    /// (Server) a final response head is complete; its framing waits for the request.
    AwaitRequest(Box<Pending>),
    /// (Client) the request of this exchange may have turned the connection into a tunnel.
    AwaitTunnel(u64),
    /// Not HTTP anymore (101, 2xx to CONNECT): bytes are ignored.
    Tunnel,
    /// Stopped (an error), or not HTTP: bytes are ignored.
    Done,
}

impl State {
    fn is_paused(&self) -> bool {
        matches!(self, State::AwaitRequest(_) | State::AwaitTunnel(_))
    }
}

/// An event held by a waiting direction.
type Held = Event<Vec<u8>>;

/// Heap bytes of a message with its own size: its strings and header lines.
fn message_heap(m: &Message) -> usize {
    size_of::<Message>() + m.heap_bytes()
}

fn add(offset: i64, n: usize) -> i64 {
    offset.saturating_add(i64::try_from(n).unwrap_or(i64::MAX))
}

fn add64(offset: i64, n: u64) -> i64 {
    offset.saturating_add(i64::try_from(n).unwrap_or(i64::MAX))
}

fn what(d: Dir) -> &'static str {
    match d {
        Dir::ClientToServer => "request",
        Dir::ServerToClient => "response",
    }
}

/// Appends to a bounded buffer without letting its capacity grow past `cap` (the caller
/// checked `buf.len() + bytes.len() <= cap`).
fn append(buf: &mut Vec<u8>, bytes: &[u8], cap: usize) {
    let need = buf.len().saturating_add(bytes.len());
    if need > buf.capacity() {
        let target = need.max(buf.capacity().saturating_mul(2)).min(cap.max(need));
        buf.reserve_exact(target - buf.len());
    }
    buf.extend_from_slice(bytes);
}

/// Any TLS record header (change cipher spec, alert, handshake, application data), for a stream
/// captured mid-connection that starts on a record boundary.
fn is_tls_record(b: &[u8]) -> bool {
    matches!(b, [0x14..=0x17, 0x03, 0x00..=0x04, ..])
}

impl Parser {
    pub fn new(limits: HttpLimits, from_start: bool) -> Parser {
        let side = || Side {
            state: if from_start {
                State::Idle
            } else {
                State::Hunt(Hunt::default())
            },
            next: 0,
            started: false,
            tail_gap: false,
            held: VecDeque::new(),
            held_bytes: 0,
            first_offset: None,
            end_offset: None,
            skipped: None,
            deferred: None,
            lost: false,
            last_ts: None,
            open_stop: None,
            stops: 0,
            cut: None,
        };
        Parser {
            limits,
            from_start,
            sides: [side(), side()],
            reqs: Vec::new(),
            resps: Vec::new(),
            interim: None,
            exchanges_seen: 0,
            responses_seen: 0,
            special: VecDeque::new(),
            recent: VecDeque::new(),
            tunnel: None,
            tls: false,
            tls_hint: false,
            http_seen: false,
            payload_seen: false,
            stopped: Vec::new(),
            stops_not_kept: 0,
            anomalies: Anomalies::default(),
            kept_bytes: 0,
        }
    }

    fn side(&mut self, d: Dir) -> &mut Side {
        &mut self.sides[d.idx()]
    }

    fn paused(&self, d: Dir) -> bool {
        self.sides[d.idx()].state.is_paused()
    }

    /// One event from reassembly.
    pub(crate) fn event(&mut self, d: Dir, ev: StreamEvent<'_>) {
        let side = &mut self.sides[d.idx()];
        let (offset, end) = match ev {
            StreamEvent::Data { offset, bytes, .. } => {
                if bytes.is_empty() {
                    return;
                }
                side.tail_gap = false;
                (offset, add(offset, bytes.len()))
            }
            StreamEvent::Gap { offset, len, .. } => {
                if len == 0 {
                    return;
                }
                side.tail_gap = true;
                (offset, add64(offset, len))
            }
        };
        if side.first_offset.is_none() && !self.from_start {
            if let StreamEvent::Data { bytes, .. } = ev {
                self.tls_hint |= is_tls_record(bytes);
            }
        }
        self.payload_seen = true;
        side.first_offset.get_or_insert(offset);
        side.end_offset = Some(end);
        if matches!(side.state, State::Tunnel | State::Done) && side.held.is_empty() {
            return;
        }
        self.pump(d);
        while self.paused(d) {
            if self.fits(d, ev.payload_len()) {
                let held = ev.owned();
                let side = self.side(d);
                side.held_bytes += held.payload_len();
                side.held.push_back(held);
                return;
            }
            self.give_up(d);
            self.pump(d);
        }
        match ev {
            StreamEvent::Data { offset, bytes, at } => self.data(d, offset, bytes, at),
            StreamEvent::Gap {
                offset,
                len,
                kind,
                at,
            } => self.gap(d, offset, len, kind, at),
        }
        self.wake();
    }

    fn fits(&self, d: Dir, len: usize) -> bool {
        let side = &self.sides[d.idx()];
        side.held.len() < MAX_HELD_EVENTS
            && side.held_bytes.saturating_add(len) <= self.limits.max_header_bytes
    }

    /// Replays held events while the direction does not wait.
    fn pump(&mut self, d: Dir) {
        while !self.paused(d) {
            let side = self.side(d);
            let Some(held) = side.held.pop_front() else {
                break;
            };
            side.held_bytes -= held.payload_len();
            match held {
                Held::Data { offset, bytes, at } => self.data(d, offset, &bytes, at),
                Held::Gap {
                    offset,
                    len,
                    kind,
                    at,
                } => self.gap(d, offset, len, kind, at),
            }
        }
    }

    /// Stops waiting without the answer: frame the response as if its request were a GET, or
    /// take the request as not turning the connection into a tunnel.
    fn give_up(&mut self, d: Dir) {
        match std::mem::replace(&mut self.side(d).state, State::Idle) {
            State::AwaitRequest(p) => self.frame_response(*p, None),
            State::AwaitTunnel(_) => {}
            other => self.side(d).state = other,
        }
    }

    /// Lets a waiting direction go on when the other one has given it its answer.
    fn wake(&mut self) {
        loop {
            let mut progress = false;
            if let State::AwaitRequest(p) = &self.sides[1].state {
                let ts = p.ts();
                let facts = match p.idx {
                    Some(idx) => self.request_facts(idx, ts),
                    None => Facts::Unknown,
                };
                if !matches!(facts, Facts::NotYet) {
                    if let State::AwaitRequest(mut p) =
                        std::mem::replace(&mut self.sides[1].state, State::Idle)
                    {
                        let known = match facts {
                            Facts::Known(f) => Some(f),
                            Facts::Later => {
                                p.idx = None;
                                None
                            }
                            _ => None,
                        };
                        self.frame_response(*p, known);
                    }
                    self.pump(Dir::ServerToClient);
                    progress = true;
                }
            }
            if let State::AwaitTunnel(idx) = self.sides[0].state {
                if self.tunnel == Some(idx) {
                    self.become_tunnel(Dir::ClientToServer);
                    progress = true;
                } else if !self.server_may_answer(idx) {
                    self.sides[0].state = State::Idle;
                    self.pump(Dir::ClientToServer);
                    progress = true;
                }
            }
            // The response made a tunnel of a request that did not ask for it (no Upgrade):
            // the client's bytes after that request are not HTTP either.
            if let Some(t) = self.tunnel {
                let c = &self.sides[0];
                if c.next == t + 1 && matches!(c.state, State::Idle | State::Head(_) | State::Hunt(_)) {
                    self.become_tunnel(Dir::ClientToServer);
                    progress = true;
                }
            }
            if !progress {
                break;
            }
        }
    }

    fn become_tunnel(&mut self, d: Dir) {
        let side = self.side(d);
        side.state = State::Tunnel;
        side.held.clear();
        side.held_bytes = 0;
    }

    /// Bytes of one event (or what is left of it).
    fn data(&mut self, d: Dir, offset: i64, bytes: &[u8], at: PacketRef) {
        let side = self.side(d);
        side.last_ts = Some(at.ts_ns);
        if let State::Hunt(h) = &mut side.state {
            h.packet_start(at);
        }
        let mut pos = 0;
        let mut idle_steps = 0;
        while pos < bytes.len() {
            let rest = &bytes[pos..];
            let offset = add(offset, pos);
            if self.paused(d) {
                if self.fits(d, rest.len()) {
                    let side = self.side(d);
                    side.held_bytes += rest.len();
                    side.held.push_front(Held::Data {
                        offset,
                        bytes: rest.to_vec(),
                        at,
                    });
                    return;
                }
                self.give_up(d);
                continue;
            }
            let n = self.step(d, offset, rest, at).min(rest.len());
            pos += n;
            // Every step consumes bytes or changes the state so the next one does; this
            // guard only keeps a bug from turning into an endless loop.
            idle_steps = if n == 0 { idle_steps + 1 } else { 0 };
            if idle_steps > 4 {
                debug_assert!(
                    false,
                    "http parser made no progress in {:?}",
                    self.sides[d.idx()].state
                );
                self.halt(
                    d,
                    offset,
                    "internal error: the HTTP parser made no progress".to_string(),
                    None,
                );
                return;
            }
        }
    }

    /// Consumes bytes at the start of `data` according to the state; returns how many.
    fn step(&mut self, d: Dir, offset: i64, data: &[u8], at: PacketRef) -> usize {
        match &self.sides[d.idx()].state {
            State::Idle => self.idle(d, offset, data, at),
            State::Hunt(_) => self.hunt(d, offset, data, at),
            State::Head(_) => self.head(d, data, at),
            State::Body(_) => self.body(d, offset, data, at),
            State::AwaitRequest(_) | State::AwaitTunnel(_) => 0,
            State::Tunnel | State::Done => data.len(),
        }
    }

    /// At a message boundary.
    fn idle(&mut self, d: Dir, offset: i64, data: &[u8], at: PacketRef) -> usize {
        // RFC 9112 section 2.2: empty lines before a start line are ignored (some clients send
        // a CRLF after a POST body).
        let empty = data.iter().take_while(|b| matches!(b, b'\r' | b'\n')).count();
        if empty > 0 {
            return empty;
        }
        let orphan = d == Dir::ServerToClient && !self.from_start && !self.sides[0].started;
        let side = self.side(d);
        let first_of_stream = !side.started;
        side.started = true;
        side.state = State::Head(HeadBuf::new(offset, at, first_of_stream, orphan));
        self.head(d, data, at)
    }

    /// The body in progress reached its end.
    fn complete(&mut self, d: Dir) {
        let State::Body(cur) = std::mem::replace(&mut self.side(d).state, State::Idle) else {
            return;
        };
        let mut cur = *cur;
        cur.msg.complete = true;
        let (idx, facts) = (cur.idx, cur.facts);
        self.commit(d, cur);
        if let (Dir::ClientToServer, Some(idx)) = (d, idx) {
            self.after_request(idx, facts);
        }
    }

    /// Keeps a message whose body ended (or stopped).
    fn commit(&mut self, d: Dir, cur: Cur) {
        match d {
            Dir::ClientToServer => {
                self.push_request(cur.msg, cur.facts);
            }
            Dir::ServerToClient => {
                self.push_response(Some(cur.msg), cur.meta);
            }
        }
    }

    /// Counts exchange position `idx` (noting the ones beyond the cap).
    fn touch(&mut self, idx: u64, at: PacketRef) {
        if idx >= self.exchanges_seen {
            self.exchanges_seen = idx + 1;
            if idx >= self.limits.max_exchanges as u64 {
                self.anomalies
                    .note(AnomalyKind::HttpExchangeLimit, Some(at.frame));
            }
        }
    }

    /// No more events: decide what waits, close what is open, pair the messages.
    pub fn finish(mut self, ends: [End; 2]) -> HttpSummary {
        loop {
            self.wake();
            let Some(d) = Dir::BOTH.into_iter().find(|&d| self.paused(d)) else {
                break;
            };
            self.give_up(d);
            self.pump(d);
        }
        let skipped = Dir::BOTH.map(|d| self.close(d, ends[d.idx()]));
        if let Some(e) = self.interim.take() {
            self.push_response(None, e);
        }
        self.keep_deferred();
        self.stopped.sort_by_key(|s| s.dir);
        let protocol = if self.tls || (self.tls_hint && !self.http_seen) {
            Protocol::Tls
        } else if self.http_seen {
            Protocol::Http
        } else if self.payload_seen {
            Protocol::Other
        } else {
            Protocol::Empty
        };
        let mut exchanges = pairing::pair(
            std::mem::take(&mut self.reqs),
            std::mem::take(&mut self.resps),
            self.from_start,
            self.limits.max_exchanges,
            &mut self.anomalies,
        );
        answered_before_next_request(&mut exchanges);
        HttpSummary {
            protocol,
            exchanges,
            stopped: self.stopped,
            stops_not_kept: self.stops_not_kept,
            anomalies: self.anomalies,
            skipped,
        }
    }

    /// Closes direction `d` at the end (`how`: how its sender ended the connection): the message
    /// in progress is kept. Returns the bytes skipped before its first message.
    fn close(&mut self, d: Dir, how: End) -> u64 {
        let side = self.side(d);
        let state = std::mem::replace(&mut side.state, State::Done);
        let tail_gap = side.tail_gap;
        let seen = match (side.first_offset, side.end_offset) {
            (Some(a), Some(b)) => b.saturating_sub(a).max(0) as u64,
            _ => 0,
        };
        let end_offset = side.end_offset;
        let initial_hunt = matches!(&state, State::Hunt(h) if !h.resync);
        let skipped = match (initial_hunt, side.skipped) {
            (_, Some(n)) => n,
            (true, None) => seen,
            _ => 0,
        };
        match state {
            State::Head(h) => {
                self.record_partial(d, &h, &h.buf);
            }
            State::Body(cur) => {
                let mut cur = *cur;
                if matches!(cur.body, Body::UntilClose) {
                    // The body ran until the close: whole if the server closed with a FIN
                    // after every byte, and the capture has the last ones.
                    cur.msg.complete = how == End::Fin && !tail_gap;
                }
                self.commit(d, cur);
            }
            _ => {}
        }
        // A message whose head snaplen cut ran until the end of what its direction sent.
        if let Some(end) = end_offset {
            self.end_cut(d, end, false);
        }
        skipped
    }

    /// Garbage where a stream's first message should have started is an anomaly and a stop once
    /// the connection turned out to be HTTP.
    fn keep_deferred(&mut self) {
        if self.http_seen && !self.tls {
            for d in Dir::BOTH {
                if let Some(def) = self.side(d).deferred.take() {
                    self.anomalies.note(def.anomaly, Some(def.at.frame));
                    self.stopped.push(Stop {
                        dir: d,
                        offset: def.offset,
                        kind: StopKind::GarbageAtStart,
                        anomaly: Some(def.anomaly),
                        reason: def.reason,
                        resumed: None,
                    });
                }
            }
        }
    }

    /// Heap bytes held now (an estimate, for the connection table's memory cap): the messages
    /// kept, the one being read, buffers.
    pub(crate) fn heap_bytes(&self) -> usize {
        let current: usize = self
            .sides
            .iter()
            .map(|s| match &s.state {
                State::Body(cur) => size_of::<Cur>() + message_heap(&cur.msg),
                State::AwaitRequest(p) => size_of::<Pending>() + message_heap(&p.msg),
                _ => 0,
            })
            .sum();
        size_of::<Parser>()
            + self.reqs.capacity() * size_of::<ReqEntry>()
            + self.resps.capacity() * size_of::<RespEntry>()
            + self.kept_bytes
            + current
            + self.buffered()
            + self.stopped.capacity() * size_of::<Stop>()
            + (self.special.capacity() + self.recent.capacity()) * 32
    }

    /// Bytes held in buffers right now.
    pub fn buffered(&self) -> usize {
        self.sides
            .iter()
            .map(|s| {
                let state = match &s.state {
                    State::Head(h) => h.buf.capacity(),
                    State::Hunt(h) => h.line.capacity(),
                    State::Body(cur) => match &cur.body {
                        Body::Chunked(Chunk::Size { line, .. }) => line.capacity(),
                        _ => 0,
                    },
                    _ => 0,
                };
                state + s.held_bytes
            })
            .sum()
    }
}

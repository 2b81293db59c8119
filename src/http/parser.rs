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
//! [`MAX_STOPS`] stops per direction. Body bytes are counted, never stored.

use std::collections::VecDeque;

use super::head::{self, Bad, Lengths, ReqFacts, Start};
use super::pairing::{self, Lost, ReqEntry, RespEntry};
use super::{Exchange, Framing, HttpLimits, HttpSummary, Interim, MAX_STOPS, Message, Protocol, Stop};
use crate::anomaly::Anomalies;
use crate::tcp::{Dir, End, GapKind, PacketRef, StreamEvent};

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
    anomaly: &'static str,
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
#[derive(Debug)]
enum Held {
    Data {
        offset: i64,
        bytes: Vec<u8>,
        at: PacketRef,
    },
    Gap {
        offset: i64,
        len: u64,
        kind: GapKind,
        at: PacketRef,
    },
}

impl Held {
    fn len(&self) -> usize {
        match self {
            Held::Data { bytes, .. } => bytes.len(),
            Held::Gap { .. } => 0,
        }
    }
}

/// Heap bytes of a message with its own size: its strings and header lines.
fn message_heap(m: &Message) -> usize {
    size_of::<Message>() + m.heap_bytes()
}

/// Looks for the end of a head (a `\n` right after `\n` or `\n\r`) in the next bytes of one:
/// returns its index in `data`, and updates the scanner state and the first `\n` of the head
/// (`before`: the head's bytes so far). The byte-at-a-time state machine
/// `(1|2, \n) → end, (_, \n) → 1, (1, \r) → 2, _ → 0`, run from one `\n` to the next (memchr):
/// heads are a few hundred bytes, and scanning them one byte at a time was a third of the time
/// spent on a head.
fn scan_head_end(h: &mut HeadBuf, before: usize, data: &[u8]) -> Option<usize> {
    // The state just before data[i], for i >= 1: from the bytes before it.
    let state_before = |h: &HeadBuf, i: usize| -> u8 {
        match (i, data.get(i.wrapping_sub(1)), data.get(i.wrapping_sub(2))) {
            (0, _, _) => h.scan,
            (_, Some(b'\n'), _) => 1,
            (1, Some(b'\r'), _) => u8::from(h.scan == 1) * 2,
            (_, Some(b'\r'), Some(b'\n')) => 2,
            _ => 0,
        }
    };
    for i in memchr::memchr_iter(b'\n', data) {
        if h.first_nl.is_none() {
            h.first_nl = Some(before + i);
        }
        let state = state_before(h, i);
        if matches!(state, 1 | 2) {
            h.scan = state;
            return Some(i);
        }
    }
    if !data.is_empty() {
        h.scan = state_before(h, data.len());
    }
    None
}

/// A head being received.
#[derive(Debug)]
struct HeadBuf {
    /// The head's bytes so far (empty while a head found whole in one event is parsed in place).
    buf: Vec<u8>,
    offset: i64,
    first: PacketRef,
    last: PacketRef,
    /// End-of-head scanner: 0 inside a line, 1 just after `\n`, 2 after `\n\r`.
    scan: u8,
    /// Position of the first `\n` in the head.
    first_nl: Option<usize>,
    /// The start line was checked and is valid.
    line_ok: bool,
    /// The first message of its direction.
    first_of_stream: bool,
    /// (Response) its request was sent before the capture started.
    orphan: bool,
    /// Found by looking for a message start (`Some(true)`: after a loss of sync): a head that
    /// does not parse was a false start, and the looking goes on.
    hunted: Option<bool>,
}

impl HeadBuf {
    fn new(offset: i64, at: PacketRef, first_of_stream: bool, orphan: bool) -> HeadBuf {
        HeadBuf {
            buf: Vec::new(),
            offset,
            first: at,
            last: at,
            scan: 0,
            first_nl: None,
            line_ok: false,
            first_of_stream,
            orphan,
            hunted: None,
        }
    }
}

/// Looking for a start line.
#[derive(Debug, Default)]
struct Hunt {
    /// The current line (from a line start, a packet start or a gap), capped.
    line: Vec<u8>,
    offset: i64,
    at: PacketRef,
    /// The line grew past the cap: it is no start line.
    overflow: bool,
    /// Packet starts inside the line: a message may start there (after a binary body).
    marks: Vec<(usize, PacketRef)>,
    /// The next bytes are the start of a packet's data.
    fresh: bool,
    /// The current line began at the start of a packet's data.
    line_at_packet: bool,
    /// After a loss of sync (not the first message of a stream captured mid-connection).
    resync: bool,
}

impl Hunt {
    fn resync() -> Hunt {
        Hunt {
            resync: true,
            ..Hunt::default()
        }
    }

    fn reset(&mut self) {
        self.line.clear();
        self.overflow = false;
        self.marks.clear();
        self.fresh = false;
        self.line_at_packet = false;
    }

    fn packet_start(&mut self, at: PacketRef) {
        if self.overflow {
            self.reset();
        }
        if self.line.is_empty() {
            self.fresh = true;
        } else if self.marks.len() < MAX_HUNT_MARKS {
            self.marks.push((self.line.len(), at));
        }
    }

    /// Where the current line, cut short by snaplen, may hold the start of a message: its start
    /// if that was a packet start, and the packet starts inside it.
    fn cut_starts(&self) -> impl Iterator<Item = (usize, PacketRef)> + '_ {
        let own = (self.line_at_packet && !self.overflow).then_some((0, self.at));
        own.into_iter()
            .chain(self.marks.iter().copied().filter(|_| !self.overflow))
    }
}

/// A message whose body is being received.
#[derive(Debug)]
struct Cur {
    msg: Message,
    /// Requests: its number. Responses: the request it was framed for, if any.
    idx: Option<u64>,
    /// Requests: what it asked (for a tunnel); responses: default.
    facts: ReqFacts,
    body: Body,
    /// Responses: interim responses and pairing facts.
    meta: RespEntry,
}

#[derive(Debug)]
enum Body {
    Length(u64),
    UntilClose,
    Chunked(Chunk),
}

#[derive(Debug)]
enum Chunk {
    /// A chunk-size line (with extensions) starting at `offset`.
    Size { line: Vec<u8>, offset: i64 },
    /// Chunk data bytes left.
    Data(u64),
    /// The CRLF after chunk data; `cr` seen.
    DataEnd { cr: bool },
    /// Trailer fields after the last chunk: bytes in the current line and in all of them.
    Trailers { line: u64, total: u64 },
}

/// A final response head waiting for its request.
#[derive(Debug)]
struct Pending {
    msg: Message,
    lengths: Lengths,
    /// The request it is taken to answer (None: none known).
    idx: Option<u64>,
    meta: RespEntry,
}

/// What a body step found.
enum Step {
    More,
    Complete,
    Bad(Bad, i64),
}

/// What the request of an exchange is known to be.
enum Facts {
    Known(ReqFacts),
    /// It will not be parsed (the client direction stopped, or the capture missed it).
    Unknown,
    /// The client direction may still parse it.
    NotYet,
    /// It started after the response: the response does not answer it.
    Later,
}

fn add(offset: i64, n: usize) -> i64 {
    offset.saturating_add(i64::try_from(n).unwrap_or(i64::MAX))
}

fn add64(offset: i64, n: u64) -> i64 {
    offset.saturating_add(i64::try_from(n).unwrap_or(i64::MAX))
}

/// `min(left, available)` as a usize.
fn take(left: u64, available: usize) -> usize {
    usize::try_from(left).map_or(available, |l| l.min(available))
}

fn what(d: Dir) -> &'static str {
    match d {
        Dir::ClientToServer => "request",
        Dir::ServerToClient => "response",
    }
}

fn gap_kind(kind: GapKind) -> &'static str {
    match kind {
        GapKind::NotCaptured => "not captured: the receiver acknowledged them",
        GapKind::Snaplen => "cut by snaplen",
        GapKind::Missing => "never seen",
        GapKind::Abandoned => "abandoned by reassembly",
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

/// TLS record header of a handshake: content type 22, version 3.0 to 3.4 (TLS 1.3 included).
fn is_tls_hello(b: &[u8]) -> bool {
    matches!(b, [0x16, 0x03, 0x00..=0x04, ..])
}

/// Any TLS record header (change cipher spec, alert, handshake, application data), for a stream
/// captured mid-connection that starts on a record boundary.
fn is_tls_record(b: &[u8]) -> bool {
    matches!(b, [0x14..=0x17, 0x03, 0x00..=0x04, ..])
}

/// Parses a chunk-size line (ending in `\n`): the size, or why it is not one.
fn chunk_size(line: &[u8]) -> Result<u64, Bad> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let zeros = line.iter().take_while(|&&b| b == b'0').count().min(digits);
    let too_large = || Bad {
        anomaly: "http_chunk_size_too_large",
        reason: format!(
            "chunk size \"{}\" is beyond 2^63",
            head::shown(line.get(..digits).unwrap_or(line))
        ),
    };
    let bad = || Bad {
        anomaly: "http_bad_chunk_size",
        reason: format!("invalid chunk-size line \"{}\"", head::shown(line)),
    };
    if digits - zeros > 16 {
        return Err(too_large());
    }
    if digits == 0 {
        return Err(bad());
    }
    match httparse::parse_chunk_size(line) {
        Ok(httparse::Status::Complete((_, size))) if size > i64::MAX as u64 => Err(too_large()),
        Ok(httparse::Status::Complete((_, size))) => Ok(size),
        _ => Err(bad()),
    }
}

impl Cur {
    /// Body bytes: how many belong to this message, and what that means.
    fn data(&mut self, offset: i64, data: &[u8], at: PacketRef, cap: usize) -> (usize, Step) {
        let (n, step) = match &mut self.body {
            Body::Length(left) => {
                let n = take(*left, data.len());
                *left -= n as u64;
                self.msg.body_bytes = self.msg.body_bytes.saturating_add(n as u64);
                (n, if *left == 0 { Step::Complete } else { Step::More })
            }
            Body::UntilClose => {
                self.msg.body_bytes = self.msg.body_bytes.saturating_add(data.len() as u64);
                (data.len(), Step::More)
            }
            Body::Chunked(c) => chunk_data(c, offset, data, cap, &mut self.msg.body_bytes),
        };
        self.msg.bytes = self.msg.bytes.saturating_add(n as u64);
        if n > 0 {
            self.msg.last = at;
        }
        (n, step)
    }
}

/// One step of a chunked body.
fn chunk_data(c: &mut Chunk, offset: i64, data: &[u8], cap: usize, body_bytes: &mut u64) -> (usize, Step) {
    let Some(&first) = data.first() else {
        return (0, Step::More);
    };
    match c {
        Chunk::Size { line, offset: start } => {
            let nl = data.iter().position(|&b| b == b'\n');
            let n = nl.map_or(data.len(), |i| i + 1);
            if line.len().saturating_add(n) > cap {
                let bad = Bad {
                    anomaly: "http_chunk_line_too_long",
                    reason: format!("chunk-size line longer than {cap} bytes"),
                };
                return (n, Step::Bad(bad, *start));
            }
            append(line, &data[..n], cap);
            if nl.is_none() {
                return (n, Step::More);
            }
            match chunk_size(line) {
                Ok(0) => *c = Chunk::Trailers { line: 0, total: 0 },
                Ok(size) => *c = Chunk::Data(size),
                Err(bad) => return (n, Step::Bad(bad, *start)),
            }
            (n, Step::More)
        }
        Chunk::Data(left) => {
            let n = take(*left, data.len());
            *left -= n as u64;
            *body_bytes = body_bytes.saturating_add(n as u64);
            if *left == 0 {
                *c = Chunk::DataEnd { cr: false };
            }
            (n, Step::More)
        }
        Chunk::DataEnd { cr } => match first {
            b'\r' if !*cr => {
                *cr = true;
                (1, Step::More)
            }
            b'\n' => {
                *c = Chunk::Size {
                    line: Vec::new(),
                    offset: add(offset, 1),
                };
                (1, Step::More)
            }
            _ => {
                let bad = Bad {
                    anomaly: "http_bad_chunk_end",
                    reason: format!(
                        "chunk data not followed by CRLF (found \"{}\")",
                        head::shown(&data[..1])
                    ),
                };
                (0, Step::Bad(bad, offset))
            }
        },
        Chunk::Trailers { line, total } => {
            for (i, &b) in data.iter().enumerate() {
                *total += 1;
                if *total > cap as u64 {
                    let bad = Bad {
                        anomaly: "http_trailers_too_long",
                        reason: format!("trailer fields longer than {cap} bytes"),
                    };
                    return (i, Step::Bad(bad, add(offset, i)));
                }
                match b {
                    b'\n' if *line == 0 => return (i + 1, Step::Complete),
                    b'\n' => *line = 0,
                    b'\r' => {}
                    _ => *line += 1,
                }
            }
            (data.len(), Step::More)
        }
    }
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
    pub fn event(&mut self, d: Dir, ev: StreamEvent<'_>) {
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
            if self.fits(d, ev_len(&ev)) {
                let held = to_held(ev);
                let side = self.side(d);
                side.held_bytes += held.len();
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
            side.held_bytes -= held.len();
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

    /// The client direction may still parse more requests.
    fn client_may_send(&self) -> bool {
        !matches!(self.sides[0].state, State::Tunnel | State::Done)
    }

    /// The server direction may still answer request `idx`.
    fn server_may_answer(&self, idx: u64) -> bool {
        let s = &self.sides[1];
        s.next <= idx && !matches!(s.state, State::Tunnel | State::Done)
    }

    /// What request `idx` asked, for framing a response that started at `ts`.
    fn request_facts(&mut self, idx: u64, ts: i64) -> Facts {
        if idx < self.sides[0].next {
            while self.recent.front().is_some_and(|&(i, _)| i < idx) {
                self.recent.pop_front();
            }
            if let Some(&(i, start)) = self.recent.front() {
                if i == idx && start > ts {
                    return Facts::Later;
                }
            }
            while self.special.front().is_some_and(|&(i, _)| i < idx) {
                self.special.pop_front();
            }
            match self.special.front() {
                Some(&(i, f)) if i == idx => Facts::Known(f),
                _ => Facts::Known(ReqFacts::default()),
            }
        } else if self.client_may_send() {
            Facts::NotYet
        } else {
            Facts::Unknown
        }
    }

    /// The request a final response that started at `ts` is taken to answer, for its framing:
    /// the next one in order; after a loss of sync, the latest one known to have started before
    /// it. None for a response to a request sent before the capture started.
    fn provisional(&self, orphan: bool, after_loss: bool, ts: i64) -> Option<u64> {
        if orphan {
            return None;
        }
        let next = self.sides[1].next;
        if after_loss {
            if let Some(&(i, _)) = self
                .recent
                .iter()
                .rev()
                .find(|&&(i, start)| i >= next && start <= ts)
            {
                return Some(i);
            }
        }
        Some(next)
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

    /// Looking for a message start: the first of a stream captured mid-connection, or the next
    /// one after a loss of sync.
    fn hunt(&mut self, d: Dir, offset: i64, data: &[u8], at: PacketRef) -> usize {
        let cap = MAX_HUNT_LINE.min(self.limits.max_header_bytes);
        let State::Hunt(h) = &mut self.sides[d.idx()].state else {
            return 0;
        };
        let nl = data.iter().position(|&b| b == b'\n');
        let n = nl.map_or(data.len(), |i| i + 1);
        if h.line.is_empty() && !h.overflow {
            h.offset = offset;
            h.at = at;
            h.line_at_packet = h.fresh;
        }
        h.fresh = false;
        if !h.overflow {
            if h.line.len().saturating_add(n) <= cap {
                append(&mut h.line, &data[..n], cap);
            } else {
                h.overflow = true;
            }
        }
        if nl.is_none() {
            return n;
        }
        let found = if h.overflow {
            None
        } else {
            std::iter::once((0, h.at))
                .chain(h.marks.iter().copied())
                .find(|&(p, _)| h.line.get(p..).is_some_and(|l| head::is_start_line(d, l)))
        };
        let Some((p, p_at)) = found else {
            h.reset();
            // Not a message start: still the message whose head snaplen cut, if any.
            if let Some(c) = &mut self.sides[d.idx()].cut {
                c.last = at;
            }
            return n;
        };
        let start = add(h.offset, p);
        let line = h.line.get(p..).unwrap_or_default().to_vec();
        let resync = h.resync;
        let orphan = d == Dir::ServerToClient && !self.from_start && !self.sides[0].started;
        let side = self.side(d);
        side.started = true;
        let mut hb = HeadBuf::new(start, p_at, !resync, orphan);
        hb.first_nl = line.len().checked_sub(1);
        hb.scan = 1;
        hb.line_ok = true;
        hb.last = at;
        hb.buf = line;
        hb.hunted = Some(resync);
        side.state = State::Head(hb);
        self.http_seen = true;
        n
    }

    /// A gap while looking for a message start. Snaplen keeps the first bytes of every packet:
    /// a line it cut that began at a packet start may still show a message start.
    fn hunt_gap(&mut self, d: Dir, offset: i64, len: u64, kind: GapKind, at: PacketRef) {
        let State::Hunt(h) = &mut self.sides[d.idx()].state else {
            return;
        };
        let resync = h.resync;
        let found = if kind == GapKind::Snaplen {
            h.cut_starts()
                .find(|&(p, _)| h.line.get(p..).is_some_and(|l| head::is_cut_start(d, l)))
                .map(|(p, p_at)| {
                    (
                        add(h.offset, p),
                        h.line.get(p..).unwrap_or_default().to_vec(),
                        p_at,
                    )
                })
        } else {
            None
        };
        h.reset();
        let Some((start, line, p_at)) = found else {
            if kind == GapKind::Snaplen {
                // Still the message whose head snaplen cut, if any.
                if let Some(c) = &mut self.side(d).cut {
                    c.missing = c.missing.saturating_add(len);
                    c.last = at;
                }
            } else if resync {
                // Requests may hide in these bytes too (already lost: one stretch).
                let ts = self.sides[d.idx()].last_ts.unwrap_or(at.ts_ns);
                if d == Dir::ClientToServer {
                    self.push_lost(ts, Lost::Gap);
                }
            }
            return;
        };
        let orphan = d == Dir::ServerToClient && !self.from_start && !self.sides[0].started;
        self.side(d).started = true;
        self.http_seen = true;
        let mut hb = HeadBuf::new(start, p_at, !resync, orphan);
        hb.line_ok = true;
        hb.hunted = Some(resync);
        let entry = self.record_partial(d, &hb, &line);
        let reason = format!(
            "snaplen cut the {} headers at offset {offset} ({len} bytes not captured)",
            what(d)
        );
        self.lose_sync(d, offset, reason, Lost::Cut, at);
        if let Some(entry) = entry {
            self.side(d).cut = Some(Cut {
                entry,
                offset: start,
                missing: len,
                last: at,
            });
        }
    }

    /// A message found by looking for it is confirmed: say where parsing resumed (or how many
    /// bytes a mid-stream capture skipped before its first message).
    fn found(&mut self, d: Dir, h: &HeadBuf) {
        match h.hunted {
            Some(true) => self.resumed(d, h.offset),
            Some(false) => {
                let side = self.side(d);
                let first = side.first_offset.unwrap_or(h.offset);
                side.skipped = Some(h.offset.saturating_sub(first).max(0) as u64);
            }
            None => {}
        }
    }

    /// Parsing found the next message at `offset` after a loss of sync.
    fn resumed(&mut self, d: Dir, offset: i64) {
        if let Some(i) = self.side(d).open_stop.take() {
            if let Some(stop) = self.stopped.get_mut(i) {
                stop.resumed = Some(offset);
            }
        }
        self.end_cut(d, offset, true);
    }

    /// The message whose head snaplen cut ran until `end` (`complete`: the next message started
    /// there, after nothing but snaplen-cut bytes).
    fn end_cut(&mut self, d: Dir, end: i64, complete: bool) {
        let Some(c) = self.side(d).cut.take() else {
            return;
        };
        let msg = match d {
            Dir::ClientToServer => match self.reqs.get_mut(c.entry) {
                Some(ReqEntry::Msg { msg, .. }) => msg,
                _ => return,
            },
            Dir::ServerToClient => match self.resps.get_mut(c.entry).and_then(|r| r.msg.as_mut()) {
                Some(msg) => msg,
                None => return,
            },
        };
        let span = end.saturating_sub(c.offset).max(0) as u64;
        msg.bytes = msg.bytes.max(span);
        msg.missing = c.missing.min(msg.bytes);
        msg.complete = complete;
        msg.last = c.last;
    }

    /// Inside a head.
    fn head(&mut self, d: Dir, data: &[u8], at: PacketRef) -> usize {
        let cap = self.limits.max_header_bytes;
        let State::Head(mut h) = std::mem::replace(&mut self.side(d).state, State::Idle) else {
            return 0;
        };
        let before = h.buf.len();
        // A head that arrives whole in one event, the common case: httparse finds its end, checks
        // its start line and reads it in one pass (the careful way below looked for the end one
        // newline at a time, checked the start line, then parsed: 40% of the time spent on a
        // head). A head in pieces, one httparse refuses (whatever the reason), a TLS hello or
        // leading empty lines take the careful way from the start, as before.
        if before == 0 && !h.line_ok && data.first().is_some_and(|&b| !matches!(b, 0x16 | b'\r' | b'\n')) {
            let mut msg = head::empty_message(h.offset, h.first);
            msg.last = at;
            if let Some((n, p)) = head::parse_whole(d, data, msg, &self.limits, cap) {
                #[cfg(debug_assertions)]
                {
                    let mut probe = HeadBuf::new(h.offset, at, h.first_of_stream, h.orphan);
                    debug_assert_eq!(scan_head_end(&mut probe, 0, data), Some(n - 1));
                    let line = probe.first_nl.and_then(|i| data.get(..=i)).unwrap_or(data);
                    debug_assert!(matches!(head::check_start(d, line, true), Start::Valid));
                }
                h.last = at;
                h.line_ok = true;
                self.http_seen = true;
                self.found(d, &h);
                match d {
                    Dir::ClientToServer => self.request_head(&h, p),
                    Dir::ServerToClient => self.response_head(&h, p),
                }
                return n;
            }
        }
        let end = scan_head_end(&mut h, before, data);
        let n = end.map_or(data.len(), |i| i + 1);
        h.last = at;
        if before.saturating_add(n) > cap {
            let room = cap.saturating_sub(before).min(n);
            append(&mut h.buf, &data[..room], cap);
            let false_start = self.head_too_long(d, h);
            return if false_start { n } else { data.len() };
        }
        // A head that arrives whole in one event is parsed where it lies (unless its version
        // needs the fix below, made on a copy).
        let lower = |b: &[u8]| d == Dir::ServerToClient && !h.line_ok && head::lower_case_version(b);
        let in_place = before == 0 && end.is_some() && !lower(&data[..n]);
        if !in_place {
            append(&mut h.buf, &data[..n], cap);
        }
        // `http/1.1 200 OK`: invalid (the protocol name is case-sensitive), but browsers and curl
        // read it as a response, so it is read as one, and noted.
        if !in_place && lower(&h.buf) {
            h.buf[..4].make_ascii_uppercase();
            self.anomalies.note("http_lower_case_version", Some(at.frame));
        }
        let view: &[u8] = if in_place { &data[..n] } else { &h.buf };
        // After a head that does not parse: a false start (found by looking) leaves the rest of
        // the event to the looking; an error stops the direction.
        let after_bad = |false_start: bool| if false_start { n } else { data.len() };

        if !h.line_ok {
            if d == Dir::ClientToServer && h.first_of_stream && self.from_start && view.first() == Some(&0x16)
            {
                if is_tls_hello(view) {
                    self.tls = true;
                    for d in Dir::BOTH {
                        let side = self.side(d);
                        side.state = State::Done;
                        side.held.clear();
                        side.held_bytes = 0;
                    }
                    return data.len();
                }
                if view.len() < 3 && end.is_none() {
                    self.side(d).state = State::Head(h);
                    return n;
                }
            }
            let line_complete = h.first_nl.is_some();
            if line_complete || view.len() <= PROBE_BYTES || end.is_some() {
                let probe = h.first_nl.and_then(|i| view.get(..=i)).unwrap_or(view);
                match head::check_start(d, probe, line_complete) {
                    Start::Valid => {
                        h.line_ok = true;
                        self.http_seen = true;
                    }
                    Start::Partial { .. } if !line_complete => {}
                    Start::Partial { .. } => {
                        return after_bad(self.bad_head(d, &h, httparse::Error::NewLine, view));
                    }
                    Start::Invalid(e) => return after_bad(self.bad_head(d, &h, e, view)),
                }
            }
        }
        if end.is_none() {
            self.side(d).state = State::Head(h);
            return n;
        }
        let mut msg = head::empty_message(h.offset, h.first);
        msg.last = h.last;
        match head::parse(d, view, msg, &self.limits) {
            Err(e) => return after_bad(self.bad_head(d, &h, e, view)),
            Ok(p) => {
                self.found(d, &h);
                match d {
                    Dir::ClientToServer => self.request_head(&h, p),
                    Dir::ServerToClient => self.response_head(&h, p),
                }
            }
        }
        n
    }

    /// A head grew past `max_header_bytes` without ending. Returns true for a false start.
    fn head_too_long(&mut self, d: Dir, h: HeadBuf) -> bool {
        let cap = self.limits.max_header_bytes;
        if let Some(resync) = h.hunted {
            // Found by looking: taken for a start line, it was not one.
            self.side(d).state = State::Hunt(if resync { Hunt::resync() } else { Hunt::default() });
            return true;
        }
        let line_complete = h.first_nl.is_some();
        let start = if h.line_ok {
            Start::Valid
        } else {
            let probe = h.first_nl.and_then(|i| h.buf.get(..=i)).unwrap_or(&h.buf);
            head::check_start(d, probe, line_complete)
        };
        match start {
            Start::Invalid(e) => self.bad_head(d, &h, e, &h.buf),
            Start::Partial { known: false } => self.bad_head(d, &h, httparse::Error::Token, &h.buf),
            Start::Valid | Start::Partial { known: true } => {
                self.record_partial(d, &h, &h.buf);
                let reason = format!(
                    "{} headers longer than {cap} bytes at offset {}",
                    what(d),
                    h.offset
                );
                self.halt(d, h.offset, reason, Some(("http_header_too_long", h.last)));
                false
            }
        }
    }

    /// A head that does not parse: an anomaly and a stop; or, for the first bytes of a stream,
    /// a sign that the connection is not HTTP (decided at the end); or, for a head found by
    /// looking for a message start, a false start: the looking goes on (returns true).
    fn bad_head(&mut self, d: Dir, h: &HeadBuf, e: httparse::Error, view: &[u8]) -> bool {
        if let Some(resync) = h.hunted {
            self.side(d).state = State::Hunt(if resync { Hunt::resync() } else { Hunt::default() });
            return true;
        }
        let anomaly = head::error_anomaly(d, e, h.line_ok);
        let reason = if h.line_ok {
            self.record_partial(d, h, view);
            format!("invalid header field in the {} at offset {}", what(d), h.offset)
        } else {
            let line = h.first_nl.and_then(|i| view.get(..=i)).unwrap_or(view);
            let kind = match d {
                Dir::ClientToServer => "request line",
                Dir::ServerToClient => "status line",
            };
            format!("invalid {kind} at offset {}: \"{}\"", h.offset, head::shown(line))
        };
        if h.first_of_stream && self.from_start && !h.line_ok {
            let side = self.side(d);
            side.deferred = Some(Deferred {
                offset: h.offset,
                at: h.first,
                anomaly,
                reason,
            });
            side.state = State::Done;
            if d == Dir::ClientToServer {
                // If the connection turns out to be HTTP, a response may answer these bytes.
                self.push_lost(h.first.ts_ns, Lost::Unparsed);
            }
            return false;
        }
        self.halt(d, h.offset, reason, Some((anomaly, h.first)));
        false
    }

    /// Records a message whose head was cut short, if its start line is known (as far as it
    /// was captured); returns its index in `reqs` or `resps`.
    /// `bytes`: the head so far (not always in `h.buf`: a head parsed in place is not).
    fn record_partial(&mut self, d: Dir, h: &HeadBuf, bytes: &[u8]) -> Option<usize> {
        let mut msg = head::empty_message(h.offset, h.first);
        msg.last = h.last;
        msg.bytes = bytes.len() as u64;
        msg.framing = Framing::Unknown;
        let msg = head::partial_message(d, bytes, msg, &self.limits)?;
        self.http_seen = true;
        self.found(d, h);
        match d {
            Dir::ClientToServer => {
                let idx = self.sides[0].next;
                self.sides[0].next = idx + 1;
                self.touch(idx, h.first);
                let method = msg.method.as_deref().unwrap_or("");
                let facts = ReqFacts {
                    head: method == "HEAD",
                    connect: method == "CONNECT",
                    upgrade: false,
                };
                self.remember(idx, facts, h.first);
                self.note_request(idx, msg.first.ts_ns);
                self.push_request(msg, facts)
            }
            Dir::ServerToClient => {
                let status = msg.status.unwrap_or(0);
                if (100..200).contains(&status) && status != 101 {
                    self.interim(status, h.first);
                    return None;
                }
                self.touch_response(h.first);
                let meta = self.response_meta(h.orphan);
                let idx = self.provisional(h.orphan, meta.after_loss, resp_ts(&msg, &meta));
                if let Some(i) = idx {
                    self.sides[1].next = i + 1;
                }
                self.push_response(Some(msg), meta)
            }
        }
    }

    /// A request head is complete.
    fn request_head(&mut self, h: &HeadBuf, p: head::Parsed) {
        let d = Dir::ClientToServer;
        let idx = self.sides[0].next;
        self.sides[0].next = idx + 1;
        self.touch(idx, h.first);
        self.remember(idx, p.facts, h.first);
        self.note_request(idx, h.first.ts_ns);
        let mut msg = p.msg;
        match head::request_framing(&p.lengths) {
            Err(bad) => {
                self.push_request(msg, p.facts);
                self.halt(d, h.offset, bad.reason, Some((bad.anomaly, h.first)));
            }
            Ok((framing, note)) => {
                if let Some(name) = note {
                    self.anomalies.note(name, Some(h.first.frame));
                }
                msg.framing = framing;
                let body = match framing {
                    Framing::ContentLength(n) if n > 0 => Body::Length(n),
                    Framing::Chunked => Body::Chunked(Chunk::Size {
                        line: Vec::new(),
                        offset: add64(h.offset, msg.header_bytes),
                    }),
                    _ => {
                        msg.complete = true;
                        self.push_request(msg, p.facts);
                        self.after_request(idx, p.facts);
                        return;
                    }
                };
                self.sides[0].state = State::Body(Box::new(Cur {
                    msg,
                    idx: Some(idx),
                    facts: p.facts,
                    body,
                    meta: RespEntry::default(),
                }));
            }
        }
    }

    /// Keeps what the response framing needs to know about request `idx`.
    fn remember(&mut self, idx: u64, facts: ReqFacts, at: PacketRef) {
        if facts.is_plain() || !self.server_may_answer(idx) {
            return;
        }
        if self.special.len() >= MAX_SPECIAL_REQUESTS {
            self.anomalies.note("http_pipeline_limit", Some(at.frame));
            return;
        }
        self.special.push_back((idx, facts));
    }

    /// Keeps when request `idx` started, for framing a response after a loss of sync.
    fn note_request(&mut self, idx: u64, ts: i64) {
        if self.recent.len() >= MAX_RECENT_REQUESTS {
            self.recent.pop_front();
        }
        self.recent.push_back((idx, ts));
    }

    /// Request `idx` went out whole: next request, or wait for a tunnel decision.
    fn after_request(&mut self, idx: u64, facts: ReqFacts) {
        self.sides[0].state = if self.tunnel == Some(idx) {
            State::Tunnel
        } else if (facts.connect || facts.upgrade) && self.server_may_answer(idx) {
            State::AwaitTunnel(idx)
        } else {
            State::Idle
        };
    }

    /// An interim (1xx) response: kept for the final response that follows.
    fn interim(&mut self, status: u16, at: PacketRef) {
        let lost = std::mem::take(&mut self.sides[1].lost);
        let e = self.interim.get_or_insert_with(RespEntry::default);
        e.after_loss |= lost;
        if e.interim.len() < MAX_INTERIM {
            e.interim.push(Interim { status, at });
        } else {
            self.anomalies.note("http_interim_limit", Some(at.frame));
        }
    }

    /// The pairing facts of a final response starting now (with the interim responses before it).
    fn response_meta(&mut self, orphan: bool) -> RespEntry {
        let lost = std::mem::take(&mut self.sides[1].lost);
        let mut meta = self.interim.take().unwrap_or_default();
        meta.after_loss |= lost;
        meta.orphan |= orphan;
        meta
    }

    /// A response head is complete.
    fn response_head(&mut self, h: &HeadBuf, p: head::Parsed) {
        let status = p.msg.status.unwrap_or(0);
        if (100..200).contains(&status) && status != 101 {
            // Interim: the final response of the same exchange follows.
            self.interim(status, h.first);
            return;
        }
        self.touch_response(h.first);
        let meta = self.response_meta(h.orphan);
        let ts = resp_ts(&p.msg, &meta);
        let idx = self.provisional(h.orphan, meta.after_loss, ts);
        let mut pending = Pending {
            msg: p.msg,
            lengths: p.lengths,
            idx,
            meta,
        };
        // Only HEAD (any status but 1xx/204/304, which have no body anyway) and CONNECT (2xx)
        // change a response's framing.
        let needs_request = status >= 200 && status != 304;
        let facts = match idx {
            Some(idx) if needs_request => self.request_facts(idx, ts),
            _ => Facts::Unknown,
        };
        match facts {
            Facts::Known(f) => self.frame_response(pending, Some(f)),
            Facts::Unknown => self.frame_response(pending, None),
            Facts::Later => {
                pending.idx = None;
                self.frame_response(pending, None);
            }
            Facts::NotYet => self.sides[1].state = State::AwaitRequest(Box::new(pending)),
        }
    }

    /// A final response's framing, now that what its request was is known (or never will be).
    fn frame_response(&mut self, p: Pending, req: Option<ReqFacts>) {
        let d = Dir::ServerToClient;
        let Pending {
            mut msg,
            lengths,
            idx,
            mut meta,
        } = p;
        let status = msg.status.unwrap_or(0);
        if let Some(i) = idx {
            self.sides[1].next = i + 1;
        }
        meta.used = req;
        self.sides[1].state = State::Idle;
        match head::response_framing(status, req, &lengths) {
            Err(bad) => {
                let (offset, at) = (msg.offset, msg.first);
                self.push_response(Some(msg), meta);
                self.halt(d, offset, bad.reason, Some((bad.anomaly, at)));
            }
            Ok((framing, note)) => {
                if let Some(name) = note {
                    self.anomalies.note(name, Some(msg.first.frame));
                }
                msg.framing = framing;
                let body = match framing {
                    Framing::ContentLength(n) if n > 0 => Body::Length(n),
                    Framing::Chunked => Body::Chunked(Chunk::Size {
                        line: Vec::new(),
                        offset: add64(msg.offset, msg.header_bytes),
                    }),
                    Framing::UntilClose => Body::UntilClose,
                    Framing::Tunnel => {
                        msg.complete = true;
                        self.push_response(Some(msg), meta);
                        if idx.is_some() {
                            self.tunnel = idx;
                        }
                        self.become_tunnel(d);
                        return;
                    }
                    Framing::None | Framing::ContentLength(_) | Framing::Unknown => {
                        msg.complete = true;
                        self.push_response(Some(msg), meta);
                        return;
                    }
                };
                self.sides[1].state = State::Body(Box::new(Cur {
                    msg,
                    idx,
                    facts: ReqFacts::default(),
                    body,
                    meta,
                }));
            }
        }
    }

    /// Inside a body.
    fn body(&mut self, d: Dir, offset: i64, data: &[u8], at: PacketRef) -> usize {
        let cap = self.limits.max_header_bytes;
        let State::Body(cur) = &mut self.sides[d.idx()].state else {
            return 0;
        };
        let (n, step) = cur.data(offset, data, at, cap);
        match step {
            Step::More => {}
            Step::Complete => self.complete(d),
            Step::Bad(bad, at_offset) => {
                let frame = at;
                self.halt(
                    d,
                    at_offset,
                    format!("{} at offset {at_offset}", bad.reason),
                    Some((bad.anomaly, frame)),
                );
                return data.len();
            }
        }
        n
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

    fn push_request(&mut self, msg: Message, facts: ReqFacts) -> Option<usize> {
        if self.reqs.len() >= self.limits.max_exchanges {
            return None;
        }
        self.kept_bytes += message_heap(&msg);
        self.reqs.push(ReqEntry::Msg {
            msg: Box::new(msg),
            facts,
        });
        Some(self.reqs.len() - 1)
    }

    fn push_response(&mut self, msg: Option<Message>, mut meta: RespEntry) -> Option<usize> {
        if self.resps.len() >= self.limits.max_exchanges {
            return None;
        }
        self.kept_bytes +=
            msg.as_ref().map_or(0, message_heap) + meta.interim.capacity() * size_of::<Interim>();
        meta.msg = msg;
        self.resps.push(meta);
        Some(self.resps.len() - 1)
    }

    /// A stretch of the client direction where requests may hide (one for consecutive losses).
    fn push_lost(&mut self, ts: i64, kind: Lost) {
        if matches!(self.reqs.last(), Some(ReqEntry::Lost { .. }))
            || self.reqs.len() >= self.limits.max_exchanges
        {
            return;
        }
        self.reqs.push(ReqEntry::Lost { ts, kind });
    }

    /// Bytes the capture does not have.
    fn gap(&mut self, d: Dir, offset: i64, len: u64, kind: GapKind, at: PacketRef) {
        while self.paused(d) {
            if self.fits(d, 0) {
                self.side(d).held.push_front(Held::Gap {
                    offset,
                    len,
                    kind,
                    at,
                });
                return;
            }
            self.give_up(d);
        }
        // Bytes the capture lost (not cut by snaplen) end what is known of a message whose head
        // snaplen cut.
        if kind != GapKind::Snaplen {
            self.end_cut(d, offset, false);
        }
        let lost = if kind == GapKind::Snaplen {
            Lost::Cut
        } else {
            Lost::Gap
        };
        let w = what(d);
        match &mut self.sides[d.idx()].state {
            State::Idle => {
                let reason = if kind == GapKind::Snaplen {
                    format!("snaplen cut {len} bytes where the next {w} would start, at offset {offset}")
                } else {
                    format!(
                        "gap of {len} bytes where the next {w} would start, at offset {offset} ({})",
                        gap_kind(kind)
                    )
                };
                self.lose_sync(d, offset, reason, lost, at);
            }
            State::Hunt(_) => self.hunt_gap(d, offset, len, kind, at),
            State::Head(_) => {
                let State::Head(h) = std::mem::replace(&mut self.side(d).state, State::Idle) else {
                    return;
                };
                let entry = self.record_partial(d, &h, &h.buf);
                let reason = if kind == GapKind::Snaplen {
                    format!("snaplen cut the {w} headers at offset {offset} ({len} bytes not captured)")
                } else {
                    format!(
                        "gap of {len} bytes inside the {w} headers at offset {offset} ({})",
                        gap_kind(kind)
                    )
                };
                self.lose_sync(d, offset, reason, lost, at);
                if let (GapKind::Snaplen, Some(entry)) = (kind, entry) {
                    self.side(d).cut = Some(Cut {
                        entry,
                        offset: h.offset,
                        missing: len,
                        last: at,
                    });
                }
            }
            State::Body(cur) => {
                let counted = match &mut cur.body {
                    Body::Length(left) | Body::Chunked(Chunk::Data(left)) => len.min(*left),
                    Body::UntilClose => len,
                    Body::Chunked(_) => 0,
                };
                let msg = &mut cur.msg;
                msg.bytes = msg.bytes.saturating_add(counted);
                msg.body_bytes = msg.body_bytes.saturating_add(counted);
                msg.missing = msg.missing.saturating_add(counted);
                let rest = len - counted;
                let rest_offset = add64(offset, counted);
                match &mut cur.body {
                    Body::UntilClose => {}
                    Body::Length(left) => {
                        *left -= counted;
                        if *left == 0 {
                            self.complete(d);
                            if rest > 0 {
                                // The body is whole; the rest of the gap is where the next
                                // message starts.
                                self.gap(d, rest_offset, rest, kind, at);
                            }
                        }
                    }
                    Body::Chunked(Chunk::Data(left)) if rest == 0 => {
                        *left -= counted;
                        if *left == 0 {
                            cur.body = Body::Chunked(Chunk::DataEnd { cr: false });
                        }
                    }
                    Body::Chunked(Chunk::Data(_)) => {
                        let reason = format!(
                            "gap of {len} bytes runs past the end of a chunk of the {w} body at offset {offset} ({}): the chunk framing is lost",
                            gap_kind(kind)
                        );
                        self.lose_in_body(d, rest_offset, reason, lost, at);
                    }
                    Body::Chunked(_) => {
                        let reason = if kind == GapKind::Snaplen {
                            format!(
                                "snaplen cut the chunk framing of the {w} body at offset {offset} ({len} bytes not captured)"
                            )
                        } else {
                            format!(
                                "gap of {len} bytes inside the chunk framing of the {w} body at offset {offset} ({})",
                                gap_kind(kind)
                            )
                        };
                        self.lose_in_body(d, offset, reason, lost, at);
                    }
                }
            }
            State::AwaitRequest(_) | State::AwaitTunnel(_) | State::Tunnel | State::Done => {}
        }
    }

    /// A gap inside a body whose framing cannot follow it: the message is kept, incomplete, and
    /// the direction looks for the next message.
    fn lose_in_body(&mut self, d: Dir, offset: i64, reason: String, lost: Lost, at: PacketRef) {
        if let State::Body(cur) = std::mem::replace(&mut self.side(d).state, State::Idle) {
            self.commit(d, *cur);
        }
        self.lose_sync(d, offset, reason, lost, at);
    }

    /// Parsing of direction `d` lost sync at `offset` (the message there, if any, was kept):
    /// a stop, and the looking for the next message start.
    fn lose_sync(&mut self, d: Dir, offset: i64, reason: String, lost: Lost, at: PacketRef) {
        let side = self.side(d);
        let ts = side.last_ts.unwrap_or(at.ts_ns);
        side.state = State::Hunt(Hunt::resync());
        side.lost = true;
        if d == Dir::ClientToServer {
            self.push_lost(ts, lost);
        }
        self.stop(d, offset, reason);
    }

    /// Records a stop (at most `MAX_STOPS` per direction; the others are counted).
    fn stop(&mut self, d: Dir, offset: i64, reason: String) {
        let side = &mut self.sides[d.idx()];
        side.open_stop = None;
        if side.stops >= MAX_STOPS {
            self.stops_not_kept += 1;
            return;
        }
        side.stops += 1;
        self.stopped.push(Stop {
            dir: d,
            offset,
            reason,
            resumed: None,
        });
        side.open_stop = Some(self.stopped.len() - 1);
    }

    /// Stops parsing direction `d` at `offset` for good (an error): the message in progress is
    /// kept, incomplete.
    fn halt(&mut self, d: Dir, offset: i64, reason: String, anomaly: Option<(&'static str, PacketRef)>) {
        if let Some((name, at)) = anomaly {
            self.anomalies.note(name, Some(at.frame));
        }
        let side = self.side(d);
        let state = std::mem::replace(&mut side.state, State::Done);
        side.held.clear();
        side.held_bytes = 0;
        let ts = side.last_ts;
        match state {
            State::Body(cur) => self.commit(d, *cur),
            State::AwaitRequest(p) => {
                let Pending { msg, meta, .. } = *p;
                self.push_response(Some(msg), meta);
            }
            _ => {}
        }
        self.end_cut(d, offset, false);
        if d == Dir::ClientToServer {
            // Requests may follow in the bytes that are not parsed anymore.
            self.push_lost(ts.unwrap_or(i64::MAX), Lost::Unparsed);
        }
        self.stop(d, offset, reason);
        self.side(d).open_stop = None;
    }

    /// Counts exchange position `idx` (noting the ones beyond the cap).
    fn touch(&mut self, idx: u64, at: PacketRef) {
        if idx >= self.exchanges_seen {
            self.exchanges_seen = idx + 1;
            if idx >= self.limits.max_exchanges as u64 {
                self.anomalies.note("http_exchange_limit", Some(at.frame));
            }
        }
    }

    /// Counts a final response.
    fn touch_response(&mut self, at: PacketRef) {
        let n = self.responses_seen;
        self.responses_seen += 1;
        self.touch(n, at);
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
        let mut skipped = [0u64; 2];
        for d in Dir::BOTH {
            let side = self.side(d);
            let state = std::mem::replace(&mut side.state, State::Done);
            let tail_gap = side.tail_gap;
            let seen = match (side.first_offset, side.end_offset) {
                (Some(a), Some(b)) => b.saturating_sub(a).max(0) as u64,
                _ => 0,
            };
            let end_offset = side.end_offset;
            let initial_hunt = matches!(&state, State::Hunt(h) if !h.resync);
            skipped[d.idx()] = match (initial_hunt, side.skipped) {
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
                        cur.msg.complete = ends[d.idx()] == End::Fin && !tail_gap;
                    }
                    self.commit(d, cur);
                }
                _ => {}
            }
            // A message whose head snaplen cut ran until the end of what its direction sent.
            if let Some(end) = end_offset {
                self.end_cut(d, end, false);
            }
        }
        if let Some(e) = self.interim.take() {
            self.push_response(None, e);
        }
        if self.http_seen && !self.tls {
            for d in Dir::BOTH {
                if let Some(def) = self.side(d).deferred.take() {
                    self.anomalies.note(def.anomaly, Some(def.at.frame));
                    self.stopped.push(Stop {
                        dir: d,
                        offset: def.offset,
                        reason: def.reason,
                        resumed: None,
                    });
                }
            }
        }
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

    /// Heap bytes held now (an estimate, for the connection table's memory cap): the messages
    /// kept, the one being read, buffers.
    pub fn heap_bytes(&self) -> usize {
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

/// When a response started: its first interim response, or its head.
fn resp_ts(msg: &Message, meta: &RespEntry) -> i64 {
    meta.interim.first().map_or(msg.first.ts_ns, |i| i.at.ts_ns)
}

impl Pending {
    fn ts(&self) -> i64 {
        resp_ts(&self.msg, &self.meta)
    }
}

fn ev_len(ev: &StreamEvent<'_>) -> usize {
    match ev {
        StreamEvent::Data { bytes, .. } => bytes.len(),
        StreamEvent::Gap { .. } => 0,
    }
}

fn to_held(ev: StreamEvent<'_>) -> Held {
    match ev {
        StreamEvent::Data { offset, bytes, at } => Held::Data {
            offset,
            bytes: bytes.to_vec(),
            at,
        },
        StreamEvent::Gap {
            offset,
            len,
            kind,
            at,
        } => Held::Gap {
            offset,
            len,
            kind,
            at,
        },
    }
}

/// A response whose head snaplen cut (its length unknown) is whole when the client sent its next
/// request on the connection after the response's last byte: an HTTP/1.x client sends the next
/// request only once the previous response is complete, unless it pipelines — and a pipelined
/// request leaves before the response ends, so the test does not apply to it. (Reverse proxies
/// never pipeline to their backends.) The response runs up to where the next one starts, or to
/// the last byte its direction sent.
fn answered_before_next_request(exchanges: &mut [Exchange]) {
    for i in 1..exchanges.len() {
        let Some(next) = exchanges[i].request.as_ref().map(|r| r.first.ts_ns) else {
            continue;
        };
        if let Some(r) = exchanges[i - 1].response.as_mut() {
            if r.framing == Framing::Unknown && !r.complete && r.last.ts_ns <= next {
                r.complete = true;
            }
        }
    }
}

#[cfg(test)]
mod scan_tests {
    use super::*;

    /// The byte-at-a-time scanner the memchr one replaces.
    fn naive(h: &mut HeadBuf, before: usize, data: &[u8]) -> Option<usize> {
        for (i, &b) in data.iter().enumerate() {
            if b == b'\n' && h.first_nl.is_none() {
                h.first_nl = Some(before + i);
            }
            h.scan = match (h.scan, b) {
                (1 | 2, b'\n') => return Some(i),
                (_, b'\n') => 1,
                (1, b'\r') => 2,
                _ => 0,
            };
        }
        None
    }

    /// Every string over `\r`, `\n` and `x` up to 7 bytes, split in two events at every point:
    /// the same end, state and first line end as the byte-at-a-time scanner.
    #[test]
    fn head_end_scan_matches_the_byte_at_a_time_one() {
        let alphabet = [b'\r', b'\n', b'x'];
        for len in 0..=7u32 {
            for code in 0..3usize.pow(len) {
                let mut c = code;
                let bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[c % 3];
                        c /= 3;
                        b
                    })
                    .collect();
                for split in 0..=bytes.len() {
                    let at = PacketRef::default();
                    let (mut a, mut b) = (HeadBuf::new(0, at, true, false), HeadBuf::new(0, at, true, false));
                    let (x, y) = bytes.split_at(split);
                    let ea = naive(&mut a, 0, x).or_else(|| naive(&mut a, x.len(), y).map(|i| i + x.len()));
                    let eb = scan_head_end(&mut b, 0, x)
                        .or_else(|| scan_head_end(&mut b, x.len(), y).map(|i| i + x.len()));
                    assert_eq!(
                        (ea, a.scan, a.first_nl),
                        (eb, b.scan, b.first_nl),
                        "{bytes:?} split at {split}"
                    );
                }
            }
        }
    }
}

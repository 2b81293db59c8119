//! # http: reassembled streams → HTTP/1.x exchanges
//!
//! In: the in-order bytes and gaps of both directions of one connection ([`StreamEvent`]s, from
//! `tcp`). Out: an [`HttpSummary`]: what the connection carried (HTTP/1.x, TLS, something else),
//! its request/response [`Exchange`]s in order, and where and why parsing lost track, if it did.
//!
//! This file holds the types the later stages read; the state machine is `parser/`, start lines,
//! header fields and the RFC 9112 body-length rules are `head.rs`, and the pairing of responses
//! with requests is `pairing.rs`.
//!
//! Guarantees: no input makes it panic; memory per connection is bounded by [`HttpLimits`]
//! (one head being parsed and a few held events per direction, the kept messages), never by
//! body sizes: body bytes are counted, not stored. Bytes of a gap (see `tcp::GapKind`) inside a
//! body of known length are counted as sent and missing, and parsing goes on. A gap where the
//! framing cannot be followed (inside a head, a chunk-size line, or at a message start) loses
//! sync: a [`Stop`] says where and why, and parsing resumes at the next line or packet that starts
//! a message (`Stop::resumed`). A head cut by snaplen keeps what its captured bytes show (method,
//! target, status), with [`Framing::Unknown`].
//!
//! Requests and responses are paired by position while both directions are in sync, and by time
//! after a loss of sync (a response answers a request that started before it); see `pairing.rs`.
//! A pairing is never guessed silently: requests whose response the capture lost, responses whose
//! request it lost, and responses no request asked for are anomalies.
//!
//! Names of the anomalies it notes (`http_*`): `bad_request_line`, `bad_status_line`,
//! `bad_header`, `header_too_long`, `bad_content_length`, `bad_transfer_encoding`, `te_and_cl`,
//! `bad_chunk_size`, `chunk_size_too_large`, `chunk_line_too_long`, `bad_chunk_end`,
//! `trailers_too_long`, `exchange_limit`, `interim_limit`, `pipeline_limit`,
//! `lower_case_version`, `response_framing_guessed`, `response_not_captured`, `request_not_captured`,
//! `response_without_request`, `response_unpaired`.
//!
//! Visibility: `pub` is the library API (what `main.rs`, `tests/` and `examples/` use, and the
//! types of [`HttpSummary`]'s fields); the parser and the helpers the later stages call
//! (`settle_cut_response_by_close`, `conn_bytes`, `Headers::from_pairs`) are `pub(crate)`.

mod head;
mod pairing;
mod parser;

#[cfg(test)]
mod tests;

use crate::anomaly::{Anomalies, AnomalyKind};
use crate::tcp::{Dir, End, PacketRef, StreamEvent, StreamHandler};

/// What a connection carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Protocol {
    /// No payload in either direction.
    #[default]
    Empty,
    Http,
    Tls,
    /// Payload that is neither HTTP/1.x nor TLS.
    Other,
}

/// How a message's body length is known (RFC 9112 section 6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body (GET without Content-Length, HEAD response, 1xx, 204, 304, ...).
    None,
    ContentLength(u64),
    Chunked,
    /// Response body delimited by the server closing the connection.
    UntilClose,
    /// After a 101 Switching Protocols or a 2xx to CONNECT: not HTTP anymore.
    Tunnel,
    /// The head was cut short (snaplen, a gap, the end of the stream, the header cap) before the
    /// fields that frame the body could be read: the body length is not known.
    Unknown,
}

/// A header line, as captured (name and value possibly cut to `HttpLimits::max_value_bytes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header<'a> {
    pub name: &'a str,
    pub value: &'a str,
}

/// The header lines kept of a message, in order: two allocations per message instead of two per
/// line (a head has ten or so). Their names and values are ranges of one string: the head itself
/// when it is short and ASCII (almost always), else the names and values back to back.
#[derive(Clone, Default)]
pub struct Headers {
    text: String,
    /// Per line: the start and end of its name, then of its value, in `text`.
    spans: Vec<[u32; 4]>,
}

impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Headers {
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    pub fn get(&self, i: usize) -> Option<Header<'_>> {
        let &[ns, ne, vs, ve] = self.spans.get(i)?;
        Some(Header {
            name: self.text.get(ns as usize..ne as usize)?,
            value: self.text.get(vs as usize..ve as usize)?,
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = Header<'_>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Heap bytes held.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.text.capacity() + self.spans.capacity() * size_of::<[u32; 4]>()
    }

    /// Headers from (name, value) pairs, each already cut (for tests and tools).
    pub(crate) fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Headers {
        let mut h = Headers::default();
        for (name, value) in pairs {
            let ns = h.text.len() as u32;
            h.text.push_str(name);
            let vs = h.text.len() as u32;
            h.text.push_str(value);
            h.spans.push([ns, vs, vs, h.text.len() as u32]);
        }
        h
    }

    /// `spans` must lie in `text` on character boundaries (`get` says None otherwise).
    pub(crate) fn from_parts(text: String, spans: Vec<[u32; 4]>) -> Headers {
        Headers { text, spans }
    }
}

/// One request or response as it went over the wire in this capture.
///
/// A message cut short (the stream ended, a gap or an error stopped parsing inside it) is kept
/// with `complete: false` when its start line is known; the [`Stop`]s say whether the capture or
/// the wire is to blame. A message whose head snaplen cut has `framing: Unknown`; it counts the
/// bytes up to the next message of its direction (or the stream's end), and is `complete` when
/// that next message started with nothing but snaplen-cut bytes in between (every packet's first
/// bytes are captured, so no message start was missed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Requests: method and target. Responses: status and reason.
    pub method: Option<String>,
    pub target: Option<String>,
    /// The target is only the beginning of the one sent: the capture cut it (snaplen, a gap, the
    /// end of the stream), or it was longer than `HttpLimits::max_value_bytes`.
    pub target_cut: bool,
    pub status: Option<u16>,
    pub reason: Option<String>,
    /// "HTTP/1.1" or "HTTP/1.0" (empty while unknown).
    pub version: &'static str,
    pub headers: Headers,
    pub framing: Framing,
    /// Stream offset of the first byte of the message (start line).
    pub offset: i64,
    /// Bytes of the start line and headers (including the blank line), when complete.
    pub header_bytes: u64,
    /// Bytes of the message on the wire seen so far: start line, headers, body (with chunk
    /// framing), trailers. Bytes of a gap inside the message count: they went out.
    pub bytes: u64,
    /// Body bytes (payload only, without chunk framing) that went out.
    pub body_bytes: u64,
    /// Every byte of the message went out (the body reached its framing's end).
    pub complete: bool,
    /// Bytes of this message the capture did not hold (gaps inside it).
    pub missing: u64,
    /// The packets that carried the first and the last byte seen of this message.
    pub first: PacketRef,
    pub last: PacketRef,
    /// The request carried `Expect: 100-continue`.
    pub expect_continue: bool,
}

impl Message {
    /// Heap bytes it holds beside its own size: its strings and header lines.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.headers.heap_bytes()
            + self.method.as_ref().map_or(0, String::capacity)
            + self.target.as_ref().map_or(0, String::capacity)
            + self.reason.as_ref().map_or(0, String::capacity)
    }
}

/// A 1xx interim response (e.g. `100 Continue`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interim {
    pub status: u16,
    pub at: PacketRef,
}

/// A request and its response, in the order the connection carried them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exchange {
    /// None when the capture shows a response whose request it did not see.
    pub request: Option<Message>,
    pub interim: Vec<Interim>,
    /// None when no response (status line) was seen.
    pub response: Option<Message>,
}

/// Where HTTP parsing of a direction lost track of the messages (a gap or a snaplen cut the
/// framing could not follow, an error), and why; and where it found the next message, if it did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stop {
    pub dir: Dir,
    /// Stream offset of the direction where sync was lost (0: the first payload byte after the
    /// SYN, or for a connection captured mid-stream the first sequence number seen of the
    /// direction: its first segment's, or the other side's first acknowledgement).
    pub offset: i64,
    pub kind: StopKind,
    /// For a [`StopKind::ParseError`] or [`StopKind::GarbageAtStart`]: the anomaly noted with it.
    pub anomaly: Option<AnomalyKind>,
    /// The stop in words (where, how many bytes, what was wrong).
    pub reason: String,
    /// Stream offset of the next message start found after the loss, where parsing went on
    /// (None: it never did; an error stops a direction for good).
    pub resumed: Option<i64>,
}

named_kinds! {
    /// Why HTTP parsing of a direction lost track of the messages, named by [`StopKind::name`]
    /// (the report's `http_stops[].kind`).
    pub enum StopKind {
        /// Snaplen cut bytes of a message head: what was captured of the head is kept, the
        /// direction looks for the next message start.
        SnaplenInHead => "snaplen-in-head",
        /// Snaplen cut bytes of a body whose framing could not follow the cut (chunk framing):
        /// the message is kept, incomplete, the direction looks for the next message start.
        SnaplenInBody => "snaplen-in-body",
        /// Snaplen cut the bytes where the next message would start.
        SnaplenAtMessageStart => "snaplen-at-message-start",
        /// The capture lacks bytes inside a message head (not captured, or never seen).
        GapInHead => "gap-in-head",
        /// The capture lacks bytes of a body whose framing could not follow the gap (chunk
        /// framing, or a gap running past the end of a chunk).
        GapInBody => "gap-in-body",
        /// The capture lacks the bytes where the next message would start.
        GapAtMessageStart => "gap-at-message-start",
        /// TCP reassembly stopped waiting for the bytes (its out-of-order buffer was full).
        ReassemblyAbandoned => "reassembly-abandoned",
        /// The bytes are not valid HTTP (a bad start line, header, length or chunk size), or a
        /// head is longer than the cap: parsing of the direction stopped for good (`anomaly`
        /// says what).
        ParseError => "parse-error",
        /// The first bytes of a direction are not an HTTP message, in a connection that turned
        /// out to be HTTP: the direction was not parsed (`anomaly` says what).
        GarbageAtStart => "garbage-at-start",
        /// The parser made no progress (a bug): parsing of the direction stopped.
        InternalError => "internal-error",
    }
}

/// The HTTP view of one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpSummary {
    pub protocol: Protocol,
    pub exchanges: Vec<Exchange>,
    /// At most `MAX_STOPS` (16) per direction (a capture with a small snaplen loses sync at every
    /// message); `stops_not_kept` counts the others.
    pub stopped: Vec<Stop>,
    pub stops_not_kept: u64,
    pub anomalies: Anomalies,
    /// Per direction (index by `Dir::idx`): bytes before the first message start that were
    /// skipped because the capture began mid-connection (all of them when no start was found).
    /// 0 when the capture saw the handshake.
    pub skipped: [u64; 2],
}

impl HttpSummary {
    /// Heap bytes it holds (an estimate: exchanges, their messages, stops, anomalies).
    pub(crate) fn heap_bytes(&self) -> usize {
        let messages: usize = self
            .exchanges
            .iter()
            .map(|e| {
                [e.request.as_ref(), e.response.as_ref()]
                    .into_iter()
                    .flatten()
                    .map(Message::heap_bytes)
                    .sum::<usize>()
                    + e.interim.capacity() * size_of::<Interim>()
            })
            .sum();
        self.exchanges.capacity() * size_of::<Exchange>()
            + messages
            + self
                .stopped
                .iter()
                .map(|s| size_of::<Stop>() + s.reason.capacity())
                .sum::<usize>()
            + self.anomalies.heap_bytes()
    }
}

/// Stops kept per direction in [`HttpSummary::stopped`].
pub(crate) const MAX_STOPS: usize = 16;

/// Limits that keep one connection's HTTP state bounded.
#[derive(Clone, Copy, Debug)]
pub struct HttpLimits {
    /// Bytes of a start line plus headers before parsing gives up on the message.
    pub max_header_bytes: usize,
    /// Headers kept per message.
    pub max_headers: usize,
    /// Bytes kept of a header value or a target.
    pub max_value_bytes: usize,
    /// Exchanges kept per connection (later ones are counted, not kept); also the number of
    /// requests and of responses kept for pairing them.
    pub max_exchanges: usize,
}

impl Default for HttpLimits {
    fn default() -> HttpLimits {
        HttpLimits {
            max_header_bytes: 64 * 1024,
            max_headers: 64,
            max_value_bytes: 512,
            max_exchanges: 10_000,
        }
    }
}

/// The stream handler that parses HTTP/1.x on one connection.
///
/// The parser (about 1 KB) is made at the first stream event: a SYN flood or a port scan opens
/// connections that never carry a byte, and each costs only this handle while it is open.
#[derive(Debug)]
pub struct HttpHandler {
    limits: HttpLimits,
    from_start: bool,
    parser: Option<Box<parser::Parser>>,
}

impl HttpHandler {
    /// `from_start`: the capture saw the handshake, so both streams start at a message boundary;
    /// otherwise each direction skips to the first line that parses as a start line.
    pub fn new(limits: HttpLimits, from_start: bool) -> HttpHandler {
        HttpHandler {
            limits,
            from_start,
            parser: None,
        }
    }

    fn parser(&mut self) -> &mut parser::Parser {
        let (limits, from_start) = (self.limits, self.from_start);
        self.parser
            .get_or_insert_with(|| Box::new(parser::Parser::new(limits, from_start)))
    }

    /// Bytes buffered right now (heads being parsed, held events).
    #[cfg(test)]
    fn buffered(&self) -> usize {
        self.parser.as_ref().map_or(0, |p| p.buffered())
    }
}

impl Default for HttpHandler {
    fn default() -> HttpHandler {
        HttpHandler::new(HttpLimits::default(), true)
    }
}

impl StreamHandler for HttpHandler {
    type Output = HttpSummary;

    fn on_stream(&mut self, dir: Dir, event: StreamEvent<'_>) {
        self.parser().event(dir, event);
    }

    fn heap_bytes(&self) -> usize {
        self.parser.as_ref().map_or(0, |p| p.heap_bytes())
    }

    fn finish(self, ends: [End; 2]) -> HttpSummary {
        let (limits, from_start) = (self.limits, self.from_start);
        let parser = self
            .parser
            .unwrap_or_else(|| Box::new(parser::Parser::new(limits, from_start)));
        parser.finish(ends)
    }
}

/// Settles, from how the connection closed, the end of a last response whose head snaplen cut
/// (its length unknown): whole when the client closed first with a FIN after its last byte, the
/// server sent nothing after that FIN, and nobody reset the connection. A client that gives up on
/// a response it has not finished reading leaves unread bytes behind, and its kernel answers its
/// `close()` with a RST, not a FIN; a server still answering goes on sending after the FIN.
/// Called once per finished connection (the HTTP parser does not see the TCP close order).
pub(crate) fn settle_cut_response_by_close(c: &mut crate::tcp::Connection<HttpSummary>) {
    let [to_server, to_client] = &c.dirs;
    let Some(client_fin) = to_server.fin else { return };
    if to_server.rst.is_some() || to_client.rst.is_some_and(|r| r.at.ts_ns < client_fin.at.ts_ns) {
        return;
    }
    if to_client.fin.is_some_and(|f| f.at.ts_ns < client_fin.at.ts_ns) {
        return;
    }
    let server_sent_after = to_client.last_data.is_some_and(|l| l.ts_ns > client_fin.at.ts_ns);
    if server_sent_after || to_client.rst.is_some() {
        return;
    }
    if let Some(r) = c.app.exchanges.last_mut().and_then(|e| e.response.as_mut()) {
        if r.framing == Framing::Unknown && !r.complete && r.last.ts_ns <= client_fin.at.ts_ns {
            r.complete = true;
        }
    }
}

/// A connection as one capture saw it, with its HTTP view.
pub type Conn = crate::tcp::Connection<HttpSummary>;

/// Heap bytes a finished connection holds (an estimate, for the caps of what waits for pairing
/// and judging).
pub(crate) fn conn_bytes(c: &Conn) -> usize {
    size_of::<Conn>()
        + c.history.capacity()
        + c.anomalies.heap_bytes()
        + c.log.heap_bytes()
        + c.dirs.iter().map(|d| d.spans.capacity()).sum::<usize>() * size_of::<crate::tcp::Span>()
        + c.app.heap_bytes()
}

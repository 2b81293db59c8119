//! Heads: finding the end of a start line and header fields, checking the start line early,
//! parsing the head, and what a head that is cut short, too long or invalid leaves behind.

use super::response::resp_ts;
use super::sync::Hunt;
use super::{Deferred, PROBE_BYTES, Parser, State, append, what};
use crate::anomaly::AnomalyKind;
use crate::http::Framing;
use crate::http::head::{self, ReqFacts, Start};
use crate::http::pairing::Lost;
use crate::tcp::{Dir, PacketRef};

/// Looks for the end of a head (a `\n` right after `\n` or `\n\r`) in the next bytes of one:
/// returns its index in `data`, and updates the scanner state and the first `\n` of the head
/// (`before`: the head's bytes so far). The byte-at-a-time state machine
/// `(1|2, \n) → end, (_, \n) → 1, (1, \r) → 2, _ → 0`, run from one `\n` to the next (memchr):
/// heads are a few hundred bytes, and scanning them one byte at a time was a third of the time
/// spent on a head.
pub(super) fn scan_head_end(h: &mut HeadBuf, before: usize, data: &[u8]) -> Option<usize> {
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
pub(super) struct HeadBuf {
    /// The head's bytes so far (empty while a head found whole in one event is parsed in place).
    pub(super) buf: Vec<u8>,
    pub(super) offset: i64,
    pub(super) first: PacketRef,
    pub(super) last: PacketRef,
    /// End-of-head scanner: 0 inside a line, 1 just after `\n`, 2 after `\n\r`.
    pub(super) scan: u8,
    /// Position of the first `\n` in the head.
    pub(super) first_nl: Option<usize>,
    /// The start line was checked and is valid.
    pub(super) line_ok: bool,
    /// The first message of its direction.
    pub(super) first_of_stream: bool,
    /// (Response) its request was sent before the capture started.
    pub(super) orphan: bool,
    /// Found by looking for a message start (`Some(true)`: after a loss of sync): a head that
    /// does not parse was a false start, and the looking goes on.
    pub(super) hunted: Option<bool>,
}

impl HeadBuf {
    pub(super) fn new(offset: i64, at: PacketRef, first_of_stream: bool, orphan: bool) -> HeadBuf {
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

/// What the start line of a head says so far.
enum Line {
    /// Not checked yet: too little of it (checked when more bytes come or the line ends).
    Unchecked,
    Valid,
    /// A TLS client hello where the first request of a connection should be.
    TlsHello,
    /// The first bytes may start a TLS hello: wait for more.
    TooShort,
    Invalid(httparse::Error),
}

/// TLS record header of a handshake: content type 22, version 3.0 to 3.4 (TLS 1.3 included).
pub(super) fn is_tls_hello(b: &[u8]) -> bool {
    matches!(b, [0x16, 0x03, 0x00..=0x04, ..])
}

impl Parser {
    /// Inside a head.
    pub(super) fn head(&mut self, d: Dir, data: &[u8], at: PacketRef) -> usize {
        let cap = self.limits.max_header_bytes;
        let State::Head(mut h) = std::mem::replace(&mut self.side(d).state, State::Idle) else {
            return 0;
        };
        let before = h.buf.len();
        if let Some(n) = self.head_in_one(d, &mut h, data, at) {
            return n;
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
            self.anomalies
                .note(AnomalyKind::HttpLowerCaseVersion, Some(at.frame));
        }
        let view: &[u8] = if in_place { &data[..n] } else { &h.buf };
        // After a head that does not parse: a false start (found by looking) leaves the rest of
        // the event to the looking; an error stops the direction.
        let after_bad = |false_start: bool| if false_start { n } else { data.len() };

        if !h.line_ok {
            match self.start_line(d, &h, view, end) {
                Line::Unchecked => {}
                Line::Valid => {
                    h.line_ok = true;
                    self.http_seen = true;
                }
                Line::TlsHello => {
                    self.tls_seen();
                    return data.len();
                }
                Line::TooShort => {
                    self.side(d).state = State::Head(h);
                    return n;
                }
                Line::Invalid(e) => return after_bad(self.bad_head(d, &h, e, view)),
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

    /// A head that arrives whole in one event, the common case: httparse finds its end, checks
    /// its start line and reads it in one pass (the careful way in `head` looks for the end one
    /// newline at a time, checks the start line, then parses: 40% of the time spent on a head).
    /// A head in pieces, one httparse refuses (whatever the reason), a TLS hello or leading
    /// empty lines take the careful way from the start (None). Returns the bytes consumed.
    fn head_in_one(&mut self, d: Dir, h: &mut HeadBuf, data: &[u8], at: PacketRef) -> Option<usize> {
        let cap = self.limits.max_header_bytes;
        if !h.buf.is_empty()
            || h.line_ok
            || !data.first().is_some_and(|&b| !matches!(b, 0x16 | b'\r' | b'\n'))
        {
            return None;
        }
        let mut msg = head::empty_message(h.offset, h.first);
        msg.last = at;
        let (n, p) = head::parse_whole(d, data, msg, &self.limits, cap)?;
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
        self.found(d, h);
        match d {
            Dir::ClientToServer => self.request_head(h, p),
            Dir::ServerToClient => self.response_head(h, p),
        }
        Some(n)
    }

    /// What the start line of a head not checked yet says so far (`view`: the head's bytes,
    /// `end`: where the head ends in this event, if it does).
    fn start_line(&self, d: Dir, h: &HeadBuf, view: &[u8], end: Option<usize>) -> Line {
        if d == Dir::ClientToServer && h.first_of_stream && self.from_start && view.first() == Some(&0x16) {
            if is_tls_hello(view) {
                return Line::TlsHello;
            }
            if view.len() < 3 && end.is_none() {
                return Line::TooShort;
            }
        }
        let line_complete = h.first_nl.is_some();
        if !(line_complete || view.len() <= PROBE_BYTES || end.is_some()) {
            return Line::Unchecked;
        }
        let probe = h.first_nl.and_then(|i| view.get(..=i)).unwrap_or(view);
        match head::check_start(d, probe, line_complete) {
            Start::Valid => Line::Valid,
            Start::Partial { .. } if !line_complete => Line::Unchecked,
            Start::Partial { .. } => Line::Invalid(httparse::Error::NewLine),
            Start::Invalid(e) => Line::Invalid(e),
        }
    }

    /// The client opened with a TLS hello: the connection is TLS, neither direction is parsed.
    fn tls_seen(&mut self) {
        self.tls = true;
        for d in Dir::BOTH {
            let side = self.side(d);
            side.state = State::Done;
            side.held.clear();
            side.held_bytes = 0;
        }
    }

    /// A head grew past `max_header_bytes` without ending. Returns true for a false start.
    pub(super) fn head_too_long(&mut self, d: Dir, h: HeadBuf) -> bool {
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
                self.halt(
                    d,
                    h.offset,
                    reason,
                    Some((AnomalyKind::HttpHeaderTooLong, h.last)),
                );
                false
            }
        }
    }

    /// A head that does not parse: an anomaly and a stop; or, for the first bytes of a stream,
    /// a sign that the connection is not HTTP (decided at the end); or, for a head found by
    /// looking for a message start, a false start: the looking goes on (returns true).
    pub(super) fn bad_head(&mut self, d: Dir, h: &HeadBuf, e: httparse::Error, view: &[u8]) -> bool {
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
    pub(super) fn record_partial(&mut self, d: Dir, h: &HeadBuf, bytes: &[u8]) -> Option<usize> {
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

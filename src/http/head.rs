//! Message heads: a start line and header fields, as bytes, become a [`Message`] plus the facts
//! body framing needs; and the RFC 9112 section 6.3 rules that turn those facts into a
//! [`Framing`].
//!
//! Everything here works on one complete, bounded buffer (the parser caps it at
//! `max_header_bytes`); nothing here keeps a reference to it. Wire lengths go through checked
//! arithmetic; no function here panics on any input.

use httparse::Status;

use super::{Framing, Headers, HttpLimits, Message};
use crate::anomaly::AnomalyKind;
use crate::tcp::{Dir, PacketRef};

/// What a request tells the parser of the other direction: the response framing depends on the
/// method (HEAD, CONNECT), and a request asking to upgrade may turn the connection into a tunnel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct ReqFacts {
    pub head: bool,
    pub connect: bool,
    pub upgrade: bool,
}

impl ReqFacts {
    /// A request whose response is framed like a GET's, and that cannot become a tunnel.
    pub(crate) fn is_plain(self) -> bool {
        self == ReqFacts::default()
    }
}

/// The framing facts of the header fields (all of them, not only the ones kept).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Lengths {
    pub content_length: ContentLength,
    pub transfer_encoding: TransferEncoding,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) enum ContentLength {
    #[default]
    Absent,
    Valid(u64),
    /// Why the field is unusable (not a number, several different values, too large).
    Invalid(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) enum TransferEncoding {
    #[default]
    Absent,
    /// `chunked` is the final coding.
    Chunked,
    /// Present, and the final coding (cut to a few bytes) is not `chunked`.
    NotChunked(String),
}

/// A complete head, parsed.
#[derive(Clone, Debug)]
pub(super) struct Parsed {
    pub msg: Message,
    pub lengths: Lengths,
    pub facts: ReqFacts,
}

/// A framing problem: an anomaly name (stable) and a sentence for the report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Bad {
    pub anomaly: AnomalyKind,
    pub reason: String,
}

/// What the bytes of an unfinished head say about its start line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// The start line is complete and valid.
    Valid,
    /// Not enough bytes yet; `known`: enough was parsed (a plausible method and a target, or a
    /// version and a status) to record the message if the stream ends here.
    Partial {
        known: bool,
    },
    Invalid(httparse::Error),
}

/// Bytes of the longest method we take for plausible when looking for a message start.
const MAX_METHOD: usize = 24;

/// A method as a request line written by a client has it: upper-case letters, `-` or `_`.
/// (httparse accepts any token; when hunting for a message start in the middle of a body, or
/// deciding whether a cut head was a request, we want fewer false positives.)
pub(super) fn plausible_method(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= MAX_METHOD
        && m.bytes()
            .all(|b| b.is_ascii_uppercase() || b == b'-' || b == b'_')
}

/// Checks the start of a head. `line_complete`: `bytes` reach past the end of the first line.
pub(super) fn check_start(dir: Dir, bytes: &[u8], line_complete: bool) -> Start {
    match dir {
        Dir::ClientToServer => {
            let mut req = httparse::Request::new(&mut []);
            match req.parse(bytes) {
                Ok(Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => Start::Valid,
                Ok(Status::Partial) if req.version.is_some() && line_complete => Start::Valid,
                Ok(Status::Partial) => Start::Partial {
                    known: req.method.is_some_and(plausible_method) && req.path.is_some(),
                },
                Err(e) => Start::Invalid(e),
            }
        }
        Dir::ServerToClient => {
            let mut res = httparse::Response::new(&mut []);
            match res.parse(bytes) {
                Ok(Status::Complete(_)) | Err(httparse::Error::TooManyHeaders) => Start::Valid,
                Ok(Status::Partial) if res.reason.is_some() && line_complete => Start::Valid,
                Ok(Status::Partial) => Start::Partial {
                    known: res.code.is_some(),
                },
                Err(e) => Start::Invalid(e),
            }
        }
    }
}

/// A line (ending in `\n`) that starts a message of direction `dir`: used when looking for the
/// first message of a stream captured mid-connection. Stricter than [`check_start`].
pub(super) fn is_start_line(dir: Dir, line: &[u8]) -> bool {
    // No leading empty lines, no leading white space: a start line starts with its first byte.
    if line.first().is_none_or(|b| !b.is_ascii_alphabetic()) {
        return false;
    }
    match dir {
        Dir::ClientToServer => {
            let mut req = httparse::Request::new(&mut []);
            matches!(
                req.parse(line),
                Ok(Status::Partial) | Err(httparse::Error::TooManyHeaders)
            ) && req.version.is_some()
                && req.method.is_some_and(plausible_method)
        }
        Dir::ServerToClient => {
            let line = &*version_fixed(line);
            let mut res = httparse::Response::new(&mut []);
            matches!(
                res.parse(line),
                Ok(Status::Partial) | Err(httparse::Error::TooManyHeaders)
            ) && res.reason.is_some()
        }
    }
}

/// The anomaly name of a head that httparse rejected. `line_ok`: the start line had been
/// validated before, so the error is in a header field.
pub(super) fn error_anomaly(dir: Dir, e: httparse::Error, line_ok: bool) -> AnomalyKind {
    use httparse::Error as E;
    match e {
        E::HeaderName | E::HeaderValue | E::TooManyHeaders => AnomalyKind::HttpBadHeader,
        E::NewLine if line_ok => AnomalyKind::HttpBadHeader,
        _ => match dir {
            Dir::ClientToServer => AnomalyKind::HttpBadRequestLine,
            Dir::ServerToClient => AnomalyKind::HttpBadStatusLine,
        },
    }
}

/// A message with only its position known (the start line and headers are filled in later).
pub(super) fn empty_message(offset: i64, first: PacketRef) -> Message {
    Message {
        method: None,
        target: None,
        target_cut: false,
        status: None,
        reason: None,
        version: "",
        headers: Headers::default(),
        framing: Framing::None,
        offset,
        header_bytes: 0,
        bytes: 0,
        body_bytes: 0,
        complete: false,
        missing: 0,
        first,
        last: first,
        expect_continue: false,
    }
}

fn version_name(v: Option<u8>) -> &'static str {
    match v {
        Some(0) => "HTTP/1.0",
        Some(1) => "HTTP/1.1",
        // httparse reads no other version.
        Some(_) => "HTTP/1",
        None => "",
    }
}

/// A request line cut inside its target: the method and the target's first bytes.
/// `METHOD SP target-prefix` with a plausible method and at least one byte of target, up to the
/// end of `bytes` (no space, no line end after it).
fn cut_request_line(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let sp = bytes.iter().position(|&b| b == b' ')?;
    let method = std::str::from_utf8(&bytes[..sp])
        .ok()
        .filter(|m| plausible_method(m))?;
    let target = &bytes[sp + 1..];
    let visible = |b: &u8| b.is_ascii_graphic() || *b >= 0x80;
    (!target.is_empty() && target.iter().all(visible)).then_some((method, target))
}

/// The captured first bytes of a packet, cut by snaplen before the end of their first line:
/// do they look like the start of a message? (Used after a loss of sync: stricter than what
/// [`partial_message`] takes from a head already known to start a message.) A request needs a
/// plausible method and a target in origin, absolute or asterisk form (authority form for
/// CONNECT); a response its version and status code.
pub(super) fn is_cut_start(dir: Dir, bytes: &[u8]) -> bool {
    match dir {
        Dir::ClientToServer => {
            // The target may be whole (a space and part of the version follow) or cut.
            let (method, rest) = match cut_request_line(bytes) {
                Some(cut) => cut,
                None => {
                    let mut req = httparse::Request::new(&mut []);
                    let parsed = req.parse(bytes);
                    match (parsed, req.method, req.path) {
                        (Ok(_), Some(m), Some(p)) if plausible_method(m) => (m, p.as_bytes()),
                        _ => return false,
                    }
                }
            };
            match rest.first() {
                Some(b'/' | b'*') => true,
                Some(_) if method == "CONNECT" => true,
                _ => rest.starts_with(b"http://") || rest.starts_with(b"https://"),
            }
        }
        Dir::ServerToClient => {
            let bytes = &*version_fixed(bytes);
            let mut res = httparse::Response::new(&mut []);
            let _ = res.parse(bytes);
            (res.code.is_some() && bytes.first() == Some(&b'H')) || is_cut_status_line(bytes)
        }
    }
}

/// A response's protocol name in the wrong case (`http/1.1`, `Http/1.0`).
pub(super) fn lower_case_version(bytes: &[u8]) -> bool {
    bytes
        .get(..5)
        .is_some_and(|v| v.eq_ignore_ascii_case(b"HTTP/") && v != b"HTTP/")
}

/// A response's first bytes with the protocol name upper-cased when it came in another case
/// (`http/1.1 200 OK`): browsers and curl read such a response, so bothends does (the parser
/// notes an anomaly for it).
fn version_fixed(bytes: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if lower_case_version(bytes) {
        let mut v = bytes.to_vec();
        v[..4].make_ascii_uppercase();
        std::borrow::Cow::Owned(v)
    } else {
        std::borrow::Cow::Borrowed(bytes)
    }
}

/// A status line cut before its status code ended: `HTTP/1.1 2` (an IPv6 packet with TCP
/// timestamps under `-s 96` keeps 10 bytes of payload). The version must be all there.
fn is_cut_status_line(bytes: &[u8]) -> bool {
    let Some(rest) = bytes.strip_prefix(b"HTTP/1.") else {
        return false;
    };
    match rest {
        [v, tail @ ..] if v.is_ascii_digit() => match tail {
            [] => true,
            [b' ', code @ ..] => code.len() < 3 && code.iter().all(u8::is_ascii_digit),
            _ => false,
        },
        _ => false,
    }
}

/// The start line of an unfinished head, as far as it parsed (for a message cut short: the
/// stream ended, a gap, snaplen, or the head grew past its cap). None when not even that is
/// known. A target cut short is kept as far as it goes, with `target_cut`.
pub(super) fn partial_message(
    dir: Dir,
    bytes: &[u8],
    mut msg: Message,
    limits: &HttpLimits,
) -> Option<Message> {
    let cap = limits.max_value_bytes;
    match dir {
        Dir::ClientToServer => {
            let mut req = httparse::Request::new(&mut []);
            let _ = req.parse(bytes);
            match (req.method.filter(|m| plausible_method(m)), req.path) {
                (Some(method), Some(target)) => {
                    msg.method = Some(method.to_string());
                    msg.target = Some(truncate(target.as_bytes(), cap));
                    // A target reaching the end of the bytes, with no space after it, may go on
                    // past what was captured.
                    let reaches_end =
                        target.as_ptr() as usize + target.len() == bytes.as_ptr() as usize + bytes.len();
                    msg.target_cut = target.len() > cap || reaches_end;
                    msg.version = version_name(req.version);
                }
                _ => {
                    let (method, target) = cut_request_line(bytes)?;
                    msg.method = Some(method.to_string());
                    msg.target = Some(truncate(target, cap));
                    msg.target_cut = true;
                }
            }
        }
        Dir::ServerToClient => {
            let fixed = version_fixed(bytes);
            let bytes = &*fixed;
            let mut res = httparse::Response::new(&mut []);
            let _ = res.parse(bytes);
            if res.code.is_none() && !is_cut_status_line(bytes) {
                return None;
            }
            // A status line cut inside its code keeps no status (`None`: not seen).
            msg.status = res.code;
            // A reason phrase cut before its line end is kept as far as it goes.
            let cut_reason = || {
                let rest = bytes.get(13..).filter(|_| bytes.get(12) == Some(&b' '))?;
                let end = rest
                    .iter()
                    .position(|&b| b == b'\r' || b == b'\n')
                    .unwrap_or(rest.len());
                Some(truncate(&rest[..end], cap))
            };
            msg.reason = res
                .reason
                .map(|r| truncate(r.as_bytes(), cap))
                .or_else(cut_reason);
            msg.version = version_name(res.version);
        }
    }
    Some(msg)
}

/// Heads up to this long that are ASCII are kept whole for their header lines (each a range of
/// it); longer ones keep only their lines' names and values, each cut to `max_value_bytes`.
const HEAD_KEPT_WHOLE: usize = 2048;

/// Header slots tried first, on the stack; a head with more header lines is parsed again with
/// one slot per line.
const STACK_SLOTS: usize = 64;

/// A head as httparse read it, borrowing the bytes.
struct Raw<'b, 'h> {
    method: Option<&'b str>,
    path: Option<&'b str>,
    code: Option<u16>,
    reason: Option<&'b str>,
    version: Option<u8>,
    headers: &'h [httparse::Header<'b>],
}

/// A complete head at the start of `bytes`, and its length.
fn parse_raw<'b, 'h>(
    dir: Dir,
    bytes: &'b [u8],
    slots: &'h mut [std::mem::MaybeUninit<httparse::Header<'b>>],
) -> Result<(Raw<'b, 'h>, usize), httparse::Error> {
    match dir {
        Dir::ClientToServer => {
            let mut req = httparse::Request::new(&mut []);
            let n = match req.parse_with_uninit_headers(bytes, slots)? {
                Status::Complete(n) => n,
                Status::Partial => return Err(httparse::Error::NewLine),
            };
            let raw = Raw {
                method: req.method,
                path: req.path,
                code: None,
                reason: None,
                version: req.version,
                headers: req.headers,
            };
            Ok((raw, n))
        }
        Dir::ServerToClient => {
            let mut res = httparse::Response::new(&mut []);
            let n = match lenient_responses().parse_response_with_uninit_headers(&mut res, bytes, slots)? {
                Status::Complete(n) => n,
                Status::Partial => return Err(httparse::Error::NewLine),
            };
            let raw = Raw {
                method: None,
                path: None,
                code: res.code,
                reason: res.reason,
                version: res.version,
                headers: res.headers,
            };
            Ok((raw, n))
        }
    }
}

/// A whole head at the start of `data` (more may follow), found, checked and read by httparse in
/// one pass: its length and the head parsed. None when httparse does not read a complete head
/// of at most `max_len` bytes there, with at most 64 header lines; the caller then looks for the
/// head's end and checks its start line itself.
pub(super) fn parse_whole(
    dir: Dir,
    data: &[u8],
    msg: Message,
    limits: &HttpLimits,
    max_len: usize,
) -> Option<(usize, Parsed)> {
    let mut stack = [const { std::mem::MaybeUninit::uninit() }; STACK_SLOTS];
    let (raw, n) = parse_raw(dir, data, &mut stack).ok()?;
    if n > max_len {
        return None;
    }
    Some((n, from_raw(dir, &data[..n], &raw, msg, limits)))
}

/// Parses a complete head (`bytes` ends with its blank line). `msg` carries the position.
pub(super) fn parse(
    dir: Dir,
    bytes: &[u8],
    msg: Message,
    limits: &HttpLimits,
) -> Result<Parsed, httparse::Error> {
    let mut stack = [const { std::mem::MaybeUninit::uninit() }; STACK_SLOTS];
    match parse_raw(dir, bytes, &mut stack) {
        Err(httparse::Error::TooManyHeaders) => {
            // Every header field takes a line: as many slots as lines means httparse never
            // runs out.
            let lines = bytes.iter().filter(|&&b| b == b'\n').count();
            let mut slots: Vec<_> = (0..lines).map(|_| std::mem::MaybeUninit::uninit()).collect();
            let (raw, _) = parse_raw(dir, bytes, &mut slots)?;
            Ok(from_raw(dir, bytes, &raw, msg, limits))
        }
        Err(e) => Err(e),
        Ok((raw, _)) => Ok(from_raw(dir, bytes, &raw, msg, limits)),
    }
}

fn from_raw(dir: Dir, bytes: &[u8], raw: &Raw<'_, '_>, mut msg: Message, limits: &HttpLimits) -> Parsed {
    let cap = limits.max_value_bytes;
    match dir {
        Dir::ClientToServer => {
            msg.method = raw.method.map(str::to_string);
            msg.target = raw.path.map(|p| truncate(p.as_bytes(), cap));
            msg.target_cut = raw.path.is_some_and(|p| p.len() > cap);
        }
        Dir::ServerToClient => {
            msg.status = raw.code;
            msg.reason = raw.reason.map(|r| truncate(r.as_bytes(), cap));
        }
    }
    msg.version = version_name(raw.version);
    msg.header_bytes = bytes.len() as u64;
    msg.bytes = msg.header_bytes;
    let framing = FramingFields::of(raw.headers);
    msg.expect_continue |= framing.expect_continue;
    msg.headers = kept_headers(bytes, raw.headers, limits);
    if dir == Dir::ServerToClient {
        msg.expect_continue = false;
    }
    let method = msg.method.as_deref().unwrap_or("");
    let facts = ReqFacts {
        head: method == "HEAD",
        connect: method == "CONNECT",
        upgrade: dir == Dir::ClientToServer && framing.upgrade,
    };
    let lengths = Lengths {
        content_length: content_length(&framing.content_length),
        transfer_encoding: transfer_encoding(&framing.transfer_encoding),
    };
    Parsed { msg, lengths, facts }
}

/// The header fields of a head that bear on its message's framing.
struct FramingFields<'b> {
    content_length: Vec<&'b [u8]>,
    transfer_encoding: Vec<&'b [u8]>,
    expect_continue: bool,
    upgrade: bool,
}

impl<'b> FramingFields<'b> {
    fn of(headers: &[httparse::Header<'b>]) -> FramingFields<'b> {
        let mut f = FramingFields {
            content_length: Vec::new(),
            transfer_encoding: Vec::new(),
            expect_continue: false,
            upgrade: false,
        };
        for h in headers {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                f.content_length.push(h.value);
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                f.transfer_encoding.push(h.value);
            } else if name.eq_ignore_ascii_case("expect") {
                f.expect_continue |= contains_token(h.value, b"100-continue");
            } else if name.eq_ignore_ascii_case("upgrade") {
                f.upgrade = true;
            }
        }
        f
    }
}

/// The header names and values kept (at most `max_headers`, each cut at `max_value_bytes`):
/// ranges of the head itself when it is short and ASCII (names and values are slices of it; a
/// cut is a shorter range), else copied back to back.
fn kept_headers(bytes: &[u8], headers: &[httparse::Header<'_>], limits: &HttpLimits) -> Headers {
    let cap = limits.max_value_bytes;
    let kept = headers.len().min(limits.max_headers);
    let in_head = bytes.len() <= HEAD_KEPT_WHOLE && bytes.is_ascii();
    let mut text: Vec<u8> = Vec::with_capacity(bytes.len());
    if in_head {
        text.extend_from_slice(bytes);
    }
    // Where a name or value lies in the head (an empty one: anywhere, say at 0).
    let at = |part: &[u8]| {
        let start = (part.as_ptr() as usize).wrapping_sub(bytes.as_ptr() as usize);
        match start.checked_add(part.len()) {
            _ if part.is_empty() => 0,
            Some(end) if end <= bytes.len() => start,
            // Not a slice of the head (httparse's always are): not reachable.
            _ => {
                debug_assert!(false, "a header outside its head");
                0
            }
        }
    };
    let mut spans: Vec<[u32; 4]> = Vec::with_capacity(kept);
    for h in &headers[..kept] {
        let name = h.name;
        if in_head {
            let (ns, vs) = (at(name.as_bytes()), at(h.value));
            let ne = ns + name.len().min(cap);
            let ve = vs + h.value.len().min(cap);
            spans.push([ns as u32, ne as u32, vs as u32, ve as u32]);
        } else {
            let ns = text.len() as u32;
            push_cut(&mut text, name.as_bytes(), cap);
            let vs = text.len() as u32;
            push_cut(&mut text, h.value, cap);
            spans.push([ns, vs, vs, text.len() as u32]);
        }
    }
    match String::from_utf8(text) {
        Ok(text) => Headers::from_parts(text, spans),
        // Not reachable: every piece was ASCII or a lossy conversion.
        Err(_) => Headers::default(),
    }
}

/// Servers behind proxies are not always strict; count their bytes rather than refuse them.
fn lenient_responses() -> httparse::ParserConfig {
    let mut config = httparse::ParserConfig::default();
    config
        .allow_obsolete_multiline_headers_in_responses(true)
        .allow_spaces_after_header_name_in_responses(true);
    config
}

/// Does a comma-separated field value hold `token` (ASCII case-insensitive)?
fn contains_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|part| trim_ows(part).eq_ignore_ascii_case(token))
}

fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

/// The largest body length we accept: stream offsets are `i64`.
const MAX_LENGTH: u64 = i64::MAX as u64;

/// RFC 9110 section 8.6: `Content-Length = 1*DIGIT`; a list of identical values (from repeated
/// fields or a comma-separated list) may be taken as one value; anything else is invalid.
fn content_length(values: &[&[u8]]) -> ContentLength {
    let mut found: Option<u64> = None;
    for value in values {
        for part in value.split(|&b| b == b',') {
            let part = trim_ows(part);
            let Some(n) = parse_decimal(part) else {
                return ContentLength::Invalid(format!("invalid Content-Length \"{}\"", shown(value)));
            };
            if n > MAX_LENGTH {
                return ContentLength::Invalid(format!("Content-Length {n} is beyond 2^63"));
            }
            match found {
                Some(f) if f != n => {
                    return ContentLength::Invalid(format!("conflicting Content-Length values {f} and {n}"));
                }
                _ => found = Some(n),
            }
        }
    }
    found.map_or(ContentLength::Absent, ContentLength::Valid)
}

/// `1*DIGIT` as a u64, None when empty, not digits, or too large for a u64.
fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        let d = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(d))
    })
}

/// RFC 9112 section 6.1: the final transfer coding decides; `chunked` must be the last one.
fn transfer_encoding(values: &[&[u8]]) -> TransferEncoding {
    if values.is_empty() {
        return TransferEncoding::Absent;
    }
    let last = values
        .iter()
        .flat_map(|v| v.split(|&b| b == b','))
        .map(trim_ows)
        .rfind(|c| !c.is_empty())
        .unwrap_or(b"");
    if last.eq_ignore_ascii_case(b"chunked") {
        TransferEncoding::Chunked
    } else {
        TransferEncoding::NotChunked(shown(last))
    }
}

/// The framing of a request, and an anomaly to note on the side (Transfer-Encoding together
/// with Content-Length). RFC 9112 section 6.3, the rules that apply to requests:
pub(super) fn request_framing(l: &Lengths) -> Result<(Framing, Option<AnomalyKind>), Bad> {
    let both = l.content_length != ContentLength::Absent;
    match &l.transfer_encoding {
        // 3. Transfer-Encoding and Content-Length both: Transfer-Encoding overrides; such a
        //    message might be an attempt at request smuggling, which is worth noting.
        // 4. Transfer-Encoding with chunked as the final coding: the chunked body.
        TransferEncoding::Chunked => Ok((Framing::Chunked, both.then_some(AnomalyKind::HttpTeAndCl))),
        // 4. In a request, Transfer-Encoding without chunked as the final coding: the length
        //    cannot be determined reliably (a server answers 400 and closes).
        TransferEncoding::NotChunked(coding) => Err(Bad {
            anomaly: AnomalyKind::HttpBadTransferEncoding,
            reason: format!(
                "request Transfer-Encoding ends in \"{coding}\", not chunked: its body length cannot be determined"
            ),
        }),
        TransferEncoding::Absent => match &l.content_length {
            // 5. An invalid Content-Length: an unrecoverable framing error.
            ContentLength::Invalid(why) => Err(Bad {
                anomaly: AnomalyKind::HttpBadContentLength,
                reason: format!("request with {why}"),
            }),
            // 6. A valid Content-Length: that many body bytes.
            ContentLength::Valid(n) => Ok((Framing::ContentLength(*n), None)),
            // 7. A request with neither has no body.
            ContentLength::Absent => Ok((Framing::None, None)),
        },
    }
}

/// The framing of a response to a request with `req` (None: the request was not seen), and an
/// anomaly to note on the side. RFC 9112 section 6.3, in its order:
pub(super) fn response_framing(
    status: u16,
    req: Option<ReqFacts>,
    l: &Lengths,
) -> Result<(Framing, Option<AnomalyKind>), Bad> {
    let req = req.unwrap_or_default();
    // 0. 101 Switching Protocols (RFC 9110 section 15.2.2): after its blank line the connection
    //    speaks the protocol named in Upgrade; it is not HTTP/1.x anymore.
    if status == 101 {
        return Ok((Framing::Tunnel, None));
    }
    // 1. Any response to a HEAD request, and any 1xx, 204 or 304 response, ends with the blank
    //    line after its header fields: no body, whatever the header fields say.
    if req.head || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok((Framing::None, None));
    }
    // 2. Any 2xx response to a CONNECT request: the connection becomes a tunnel right after the
    //    blank line; Content-Length and Transfer-Encoding are ignored.
    if req.connect && (200..300).contains(&status) {
        return Ok((Framing::Tunnel, None));
    }
    let both = l.content_length != ContentLength::Absent;
    match &l.transfer_encoding {
        // 3. Transfer-Encoding and Content-Length both: Transfer-Encoding overrides (noted).
        // 4. Transfer-Encoding with chunked as the final coding: the chunked body.
        TransferEncoding::Chunked => Ok((Framing::Chunked, both.then_some(AnomalyKind::HttpTeAndCl))),
        // 4. In a response, Transfer-Encoding without chunked as the final coding: the body
        //    runs until the server closes the connection.
        TransferEncoding::NotChunked(_) => {
            Ok((Framing::UntilClose, both.then_some(AnomalyKind::HttpTeAndCl)))
        }
        TransferEncoding::Absent => match &l.content_length {
            // 5. An invalid Content-Length: an unrecoverable framing error.
            ContentLength::Invalid(why) => Err(Bad {
                anomaly: AnomalyKind::HttpBadContentLength,
                reason: format!("response with {why}"),
            }),
            // 6. A valid Content-Length: that many body bytes.
            ContentLength::Valid(n) => Ok((Framing::ContentLength(*n), None)),
            // 7. (Requests only.)
            // 8. A response with neither: the body runs until the server closes.
            ContentLength::Absent => Ok((Framing::UntilClose, None)),
        },
    }
}

/// Appends what [`truncate`] makes of `bytes`, without a string of its own when the bytes are
/// ASCII (almost always).
fn push_cut(out: &mut Vec<u8>, bytes: &[u8], max: usize) {
    let cut = bytes.get(..max).unwrap_or(bytes);
    if cut.is_ascii() {
        out.extend_from_slice(cut);
    } else {
        out.extend_from_slice(truncate(bytes, max).as_bytes());
    }
}

/// Lossy UTF-8 of at most `max` bytes, cut on a char boundary.
pub(super) fn truncate(bytes: &[u8], max: usize) -> String {
    let cut = bytes.get(..max).unwrap_or(bytes);
    // Almost always: valid UTF-8 (ASCII), and no longer than `max` once cut.
    if let Ok(s) = std::str::from_utf8(cut) {
        return s.to_owned();
    }
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if s.len() > max {
        // A replacement character (3 bytes) may have grown it.
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// A few bytes of the wire, printable, for a reason sentence.
pub(super) fn shown(bytes: &[u8]) -> String {
    const MAX: usize = 40;
    let mut out = String::new();
    for &b in bytes.iter().take(MAX) {
        match b {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > MAX {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cl(values: &[&str]) -> ContentLength {
        let v: Vec<&[u8]> = values.iter().map(|s| s.as_bytes()).collect();
        content_length(&v)
    }

    fn te(values: &[&str]) -> TransferEncoding {
        let v: Vec<&[u8]> = values.iter().map(|s| s.as_bytes()).collect();
        transfer_encoding(&v)
    }

    #[test]
    fn content_length_values() {
        assert_eq!(cl(&[]), ContentLength::Absent);
        assert_eq!(cl(&["0"]), ContentLength::Valid(0));
        assert_eq!(cl(&[" 42 "]), ContentLength::Valid(42));
        assert_eq!(cl(&["5", "5"]), ContentLength::Valid(5));
        assert_eq!(cl(&["5, 5"]), ContentLength::Valid(5));
        assert_eq!(
            cl(&["1000000000000000000"]),
            ContentLength::Valid(1_000_000_000_000_000_000)
        );
        assert!(matches!(cl(&["5", "6"]), ContentLength::Invalid(_)));
        assert!(matches!(cl(&["5,"]), ContentLength::Invalid(_)));
        assert!(matches!(cl(&[""]), ContentLength::Invalid(_)));
        assert!(matches!(cl(&["-1"]), ContentLength::Invalid(_)));
        assert!(matches!(cl(&["+1"]), ContentLength::Invalid(_)));
        assert!(matches!(cl(&["0x10"]), ContentLength::Invalid(_)));
        // Beyond i64 and beyond u64.
        assert!(matches!(cl(&["9223372036854775808"]), ContentLength::Invalid(_)));
        assert!(matches!(
            cl(&["99999999999999999999999"]),
            ContentLength::Invalid(_)
        ));
    }

    #[test]
    fn transfer_encoding_final_coding() {
        assert_eq!(te(&[]), TransferEncoding::Absent);
        assert_eq!(te(&["chunked"]), TransferEncoding::Chunked);
        assert_eq!(te(&["gzip, Chunked"]), TransferEncoding::Chunked);
        assert_eq!(te(&["gzip", "chunked"]), TransferEncoding::Chunked);
        assert_eq!(
            te(&["chunked, gzip"]),
            TransferEncoding::NotChunked("gzip".into())
        );
        assert_eq!(te(&[""]), TransferEncoding::NotChunked(String::new()));
    }

    #[test]
    fn response_framing_rules() {
        let none = Lengths::default();
        let cl10 = Lengths {
            content_length: ContentLength::Valid(10),
            ..Lengths::default()
        };
        let head = ReqFacts {
            head: true,
            ..ReqFacts::default()
        };
        let connect = ReqFacts {
            connect: true,
            ..ReqFacts::default()
        };
        let f = |s, r, l| response_framing(s, r, l).map(|x| x.0);
        assert_eq!(f(200, Some(head), &cl10), Ok(Framing::None));
        assert_eq!(f(204, None, &cl10), Ok(Framing::None));
        assert_eq!(f(304, None, &cl10), Ok(Framing::None));
        assert_eq!(f(100, None, &cl10), Ok(Framing::None));
        assert_eq!(f(101, None, &none), Ok(Framing::Tunnel));
        assert_eq!(f(200, Some(connect), &cl10), Ok(Framing::Tunnel));
        assert_eq!(f(407, Some(connect), &cl10), Ok(Framing::ContentLength(10)));
        assert_eq!(f(200, None, &cl10), Ok(Framing::ContentLength(10)));
        assert_eq!(f(200, None, &none), Ok(Framing::UntilClose));
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate(b"hello", 3), "hel");
        assert_eq!(truncate("h\u{e9}llo".as_bytes(), 2), "h");
        assert_eq!(truncate(b"\xff\xfe", 2), "");
        assert_eq!(truncate(b"ab", 10), "ab");
    }

    #[test]
    fn start_lines() {
        let c = Dir::ClientToServer;
        let s = Dir::ServerToClient;
        assert!(is_start_line(c, b"GET /x HTTP/1.1\r\n"));
        assert!(is_start_line(c, b"M-SEARCH * HTTP/1.1\n"));
        assert!(!is_start_line(c, b"get /x HTTP/1.1\r\n"));
        assert!(!is_start_line(c, b"GET /x\r\n"));
        assert!(!is_start_line(c, b"\r\nGET /x HTTP/1.1\r\n"));
        assert!(!is_start_line(c, b"hello world\n"));
        assert!(is_start_line(s, b"HTTP/1.1 200 OK\r\n"));
        assert!(is_start_line(s, b"HTTP/1.0 404\r\n"));
        assert!(!is_start_line(s, b"HTTP/1.1 20 OK\r\n"));
        assert!(!is_start_line(s, b"HTTP/2 200\r\n"));
        assert_eq!(check_start(c, b"GE", false), Start::Partial { known: false });
        // httparse takes the target once the space after it arrives.
        assert_eq!(check_start(c, b"GET /a", false), Start::Partial { known: false });
        assert_eq!(check_start(c, b"GET /a ", false), Start::Partial { known: true });
        assert_eq!(check_start(c, b"GET /a HTTP/1.1\r\n", true), Start::Valid);
        assert!(matches!(
            check_start(c, b"\x16\x03\x01", false),
            Start::Invalid(_)
        ));
        assert_eq!(check_start(s, b"HTTP/1.1 200 OK\r\nA: b", true), Start::Valid);
        assert!(matches!(check_start(s, b"SSH-2.0", false), Start::Invalid(_)));
    }
}

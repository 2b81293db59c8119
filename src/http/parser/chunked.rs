//! Bodies: a message's body framing (a length, until the close, chunked) and the steps that
//! consume body bytes, including the chunk-size lines, chunk ends and trailers of a chunked body.

use super::{Parser, State, add, append};
use crate::anomaly::AnomalyKind;
use crate::http::Message;
use crate::http::head::{self, Bad, ReqFacts};
use crate::http::pairing::RespEntry;
use crate::tcp::{Dir, PacketRef};

/// A message whose body is being received.
#[derive(Debug)]
pub(super) struct Cur {
    pub(super) msg: Message,
    /// Requests: its number. Responses: the request it was framed for, if any.
    pub(super) idx: Option<u64>,
    /// Requests: what it asked (for a tunnel); responses: default.
    pub(super) facts: ReqFacts,
    pub(super) body: Body,
    /// Responses: interim responses and pairing facts.
    pub(super) meta: RespEntry,
}

#[derive(Debug)]
pub(super) enum Body {
    Length(u64),
    UntilClose,
    Chunked(Chunk),
}

#[derive(Debug)]
pub(super) enum Chunk {
    /// A chunk-size line (with extensions) starting at `offset`.
    Size { line: Vec<u8>, offset: i64 },
    /// Chunk data bytes left.
    Data(u64),
    /// The CRLF after chunk data; `cr` seen.
    DataEnd { cr: bool },
    /// Trailer fields after the last chunk: bytes in the current line and in all of them.
    Trailers { line: u64, total: u64 },
}

/// What a body step found.
pub(super) enum Step {
    More,
    Complete,
    Bad(Bad, i64),
}

/// `min(left, available)` as a usize.
pub(super) fn take(left: u64, available: usize) -> usize {
    usize::try_from(left).map_or(available, |l| l.min(available))
}

/// Parses a chunk-size line (ending in `\n`): the size, or why it is not one.
pub(super) fn chunk_size(line: &[u8]) -> Result<u64, Bad> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    let zeros = line.iter().take_while(|&&b| b == b'0').count().min(digits);
    let too_large = || Bad {
        anomaly: AnomalyKind::HttpChunkSizeTooLarge,
        reason: format!(
            "chunk size \"{}\" is beyond 2^63",
            head::shown(line.get(..digits).unwrap_or(line))
        ),
    };
    let bad = || Bad {
        anomaly: AnomalyKind::HttpBadChunkSize,
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
    pub(super) fn data(&mut self, offset: i64, data: &[u8], at: PacketRef, cap: usize) -> (usize, Step) {
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
pub(super) fn chunk_data(
    c: &mut Chunk,
    offset: i64,
    data: &[u8],
    cap: usize,
    body_bytes: &mut u64,
) -> (usize, Step) {
    let Some(&first) = data.first() else {
        return (0, Step::More);
    };
    match c {
        Chunk::Size { line, offset: start } => {
            let nl = data.iter().position(|&b| b == b'\n');
            let n = nl.map_or(data.len(), |i| i + 1);
            if line.len().saturating_add(n) > cap {
                let bad = Bad {
                    anomaly: AnomalyKind::HttpChunkLineTooLong,
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
                    anomaly: AnomalyKind::HttpBadChunkEnd,
                    reason: format!(
                        "chunk data not followed by CRLF (found \"{}\")",
                        head::shown(&data[..1])
                    ),
                };
                (0, Step::Bad(bad, offset))
            }
        },
        Chunk::Trailers { line, total } => trailers(line, total, offset, data, cap),
    }
}

/// Trailer fields after the last chunk, up to the empty line that ends the message: bytes in the
/// current line and in all of them so far.
fn trailers(line: &mut u64, total: &mut u64, offset: i64, data: &[u8], cap: usize) -> (usize, Step) {
    for (i, &b) in data.iter().enumerate() {
        *total += 1;
        if *total > cap as u64 {
            let bad = Bad {
                anomaly: AnomalyKind::HttpTrailersTooLong,
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

impl Parser {
    /// Inside a body.
    pub(super) fn body(&mut self, d: Dir, offset: i64, data: &[u8], at: PacketRef) -> usize {
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
}

//! The server direction: interim and final response heads, the request a response is taken to
//! answer while parsing, its framing once that request is known, and the responses kept.

use super::chunked::{Body, Chunk, Cur};
use super::message_head::HeadBuf;
use super::request::Facts;
use super::{MAX_INTERIM, Parser, State, add64, message_heap};
use crate::anomaly::AnomalyKind;
use crate::http::head::{self, Lengths, ReqFacts};
use crate::http::pairing::RespEntry;
use crate::http::{Exchange, Framing, Interim, Message};
use crate::tcp::{Dir, PacketRef};

/// A final response head waiting for its request.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) msg: Message,
    pub(super) lengths: Lengths,
    /// The request it is taken to answer (None: none known).
    pub(super) idx: Option<u64>,
    pub(super) meta: RespEntry,
}

/// When a response started: its first interim response, or its head.
pub(super) fn resp_ts(msg: &Message, meta: &RespEntry) -> i64 {
    meta.interim.first().map_or(msg.first.ts_ns, |i| i.at.ts_ns)
}

impl Pending {
    pub(super) fn ts(&self) -> i64 {
        resp_ts(&self.msg, &self.meta)
    }
}

/// A response whose head snaplen cut (its length unknown) is whole when the client sent its next
/// request on the connection after the response's last byte: an HTTP/1.x client sends the next
/// request only once the previous response is complete, unless it pipelines — and a pipelined
/// request leaves before the response ends, so the test does not apply to it. (Reverse proxies
/// never pipeline to their backends.) The response runs up to where the next one starts, or to
/// the last byte its direction sent.
pub(super) fn answered_before_next_request(exchanges: &mut [Exchange]) {
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

impl Parser {
    /// The request a final response that started at `ts` is taken to answer, for its framing:
    /// the next one in order; after a loss of sync, the latest one known to have started before
    /// it. None for a response to a request sent before the capture started.
    pub(super) fn provisional(&self, orphan: bool, after_loss: bool, ts: i64) -> Option<u64> {
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

    /// An interim (1xx) response: kept for the final response that follows.
    pub(super) fn interim(&mut self, status: u16, at: PacketRef) {
        let lost = std::mem::take(&mut self.sides[1].lost);
        let e = self.interim.get_or_insert_with(RespEntry::default);
        e.after_loss |= lost;
        if e.interim.len() < MAX_INTERIM {
            e.interim.push(Interim { status, at });
        } else {
            self.anomalies.note(AnomalyKind::HttpInterimLimit, Some(at.frame));
        }
    }

    /// The pairing facts of a final response starting now (with the interim responses before it).
    pub(super) fn response_meta(&mut self, orphan: bool) -> RespEntry {
        let lost = std::mem::take(&mut self.sides[1].lost);
        let mut meta = self.interim.take().unwrap_or_default();
        meta.after_loss |= lost;
        meta.orphan |= orphan;
        meta
    }

    /// A response head is complete.
    pub(super) fn response_head(&mut self, h: &HeadBuf, p: head::Parsed) {
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
    pub(super) fn frame_response(&mut self, p: Pending, req: Option<ReqFacts>) {
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

    pub(super) fn push_response(&mut self, msg: Option<Message>, mut meta: RespEntry) -> Option<usize> {
        if self.resps.len() >= self.limits.max_exchanges {
            return None;
        }
        self.kept_bytes +=
            msg.as_ref().map_or(0, message_heap) + meta.interim.capacity() * size_of::<Interim>();
        meta.msg = msg;
        self.resps.push(meta);
        Some(self.resps.len() - 1)
    }

    /// Counts a final response.
    pub(super) fn touch_response(&mut self, at: PacketRef) {
        let n = self.responses_seen;
        self.responses_seen += 1;
        self.touch(n, at);
    }
}

//! The client direction: a complete request head, what its response's framing needs to know
//! about it (HEAD, CONNECT, Upgrade), and the requests and lost stretches kept for pairing.

use super::chunked::{Body, Chunk, Cur};
use super::message_head::HeadBuf;
use super::{MAX_RECENT_REQUESTS, MAX_SPECIAL_REQUESTS, Parser, State, add64, message_heap};
use crate::anomaly::AnomalyKind;
use crate::http::head::{self, ReqFacts};
use crate::http::pairing::{Lost, ReqEntry, RespEntry};
use crate::http::{Framing, Message};
use crate::tcp::{Dir, PacketRef};

/// What the request of an exchange is known to be.
pub(super) enum Facts {
    Known(ReqFacts),
    /// It will not be parsed (the client direction stopped, or the capture missed it).
    Unknown,
    /// The client direction may still parse it.
    NotYet,
    /// It started after the response: the response does not answer it.
    Later,
}

impl Parser {
    /// What request `idx` asked, for framing a response that started at `ts`.
    pub(super) fn request_facts(&mut self, idx: u64, ts: i64) -> Facts {
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

    /// The client direction may still parse more requests.
    pub(super) fn client_may_send(&self) -> bool {
        !matches!(self.sides[0].state, State::Tunnel | State::Done)
    }

    /// The server direction may still answer request `idx`.
    pub(super) fn server_may_answer(&self, idx: u64) -> bool {
        let s = &self.sides[1];
        s.next <= idx && !matches!(s.state, State::Tunnel | State::Done)
    }

    /// A request head is complete.
    pub(super) fn request_head(&mut self, h: &HeadBuf, p: head::Parsed) {
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
    pub(super) fn remember(&mut self, idx: u64, facts: ReqFacts, at: PacketRef) {
        if facts.is_plain() || !self.server_may_answer(idx) {
            return;
        }
        if self.special.len() >= MAX_SPECIAL_REQUESTS {
            self.anomalies
                .note(AnomalyKind::HttpPipelineLimit, Some(at.frame));
            return;
        }
        self.special.push_back((idx, facts));
    }

    /// Keeps when request `idx` started, for framing a response after a loss of sync.
    pub(super) fn note_request(&mut self, idx: u64, ts: i64) {
        if self.recent.len() >= MAX_RECENT_REQUESTS {
            self.recent.pop_front();
        }
        self.recent.push_back((idx, ts));
    }

    /// Request `idx` went out whole: next request, or wait for a tunnel decision.
    pub(super) fn after_request(&mut self, idx: u64, facts: ReqFacts) {
        self.sides[0].state = if self.tunnel == Some(idx) {
            State::Tunnel
        } else if (facts.connect || facts.upgrade) && self.server_may_answer(idx) {
            State::AwaitTunnel(idx)
        } else {
            State::Idle
        };
    }

    pub(super) fn push_request(&mut self, msg: Message, facts: ReqFacts) -> Option<usize> {
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

    /// A stretch of the client direction where requests may hide (one for consecutive losses).
    pub(super) fn push_lost(&mut self, ts: i64, kind: Lost) {
        if matches!(self.reqs.last(), Some(ReqEntry::Lost { .. }))
            || self.reqs.len() >= self.limits.max_exchanges
        {
            return;
        }
        self.reqs.push(ReqEntry::Lost { ts, kind });
    }
}

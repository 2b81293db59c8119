//! Which request each response answers, once both directions are parsed.
//!
//! In: the requests of the client direction in stream order, with the stretches where it lost
//! sync ([`ReqEntry::Lost`]: requests may hide there), and the responses of the server direction
//! in stream order, each saying whether the server direction lost sync just before it. Out: the
//! exchanges, in the order the connection carried them, and anomalies where the capture does not
//! say for sure.
//!
//! The rules, for each response in turn (`k`: the first request not yet answered or passed over):
//! 1. Both directions in sync (no loss in the server direction since the previous response, and
//!    the next request entry is a request, not a lost stretch): position decides, the response
//!    answers request `k` — if that request started no later than the response. A response that
//!    started before it answers no request the capture holds (`http_response_without_request`;
//!    nothing to say in a capture that began mid-connection, before the first request seen).
//! 2. Otherwise time decides. The candidates are the entries from `k` that started no later than
//!    the response. In a conversation that is not pipelined, a request goes out only once the
//!    previous response is complete, so the response answers the latest candidate; the requests
//!    passed over got their responses in what the server direction lost
//!    (`http_response_not_captured`). If the latest candidate is a lost stretch of the client
//!    direction, the response answers a request the capture does not hold
//!    (`http_request_not_captured`). With pipelining seen on the connection (a request started
//!    before the response to the previous one ended) and more than one candidate, the response
//!    could answer any of them: it is left unpaired (`http_response_unpaired`) rather than
//!    guessed. A stretch that snaplen cut is a candidate only with pipelining: snaplen keeps the
//!    first bytes of every packet, so only a request that started inside a packet can hide
//!    there, and without pipelining a request goes out after the previous response, in a new
//!    packet.
//!
//! A response framed online with what its request seemed to be (HEAD, CONNECT) that turns out to
//! answer another request is noted (`http_response_framing_guessed`).
//!
//! Cost: one pass over both lists, a binary search per response that needs time. Memory: the
//! lists (at most `max_exchanges` entries each) and a flag per request.

use super::head::ReqFacts;
use super::{Exchange, Framing, Interim, Message};
use crate::anomaly::{Anomalies, AnomalyKind};

/// Why requests may hide in a stretch of the client direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Lost {
    /// A gap the framing could not follow: bytes the capture does not hold.
    Gap,
    /// Snaplen cut a head or a message start.
    Cut,
    /// Bytes that did not parse as HTTP (an error stopped the direction).
    Unparsed,
}

/// One entry of the client direction, in stream order.
#[derive(Debug)]
pub(super) enum ReqEntry {
    Msg {
        msg: Box<Message>,
        facts: ReqFacts,
    },
    /// Parsing lost sync here; `ts`: the earliest a request hidden here can have started.
    Lost {
        ts: i64,
        kind: Lost,
    },
}

impl ReqEntry {
    fn ts(&self) -> i64 {
        match self {
            ReqEntry::Msg { msg, .. } => msg.first.ts_ns,
            ReqEntry::Lost { ts, .. } => *ts,
        }
    }

    fn is_msg(&self) -> bool {
        matches!(self, ReqEntry::Msg { .. })
    }
}

/// One response of the server direction (with its interim responses), in stream order.
#[derive(Debug, Default)]
pub(super) struct RespEntry {
    pub interim: Vec<Interim>,
    /// None: only interim responses were seen.
    pub msg: Option<Message>,
    /// The server direction lost sync between the previous response and this one.
    pub after_loss: bool,
    /// What the framing took its request to be (None: no request known, framed as after a GET).
    pub used: Option<ReqFacts>,
    /// (Mid-stream capture) seen before the client direction's first message: its request went
    /// out before the capture started.
    pub orphan: bool,
}

impl RespEntry {
    /// When the response started (its first interim response, or its head).
    fn ts(&self) -> i64 {
        self.interim
            .first()
            .map(|i| i.at.ts_ns)
            .or(self.msg.as_ref().map(|m| m.first.ts_ns))
            .unwrap_or(i64::MAX)
    }

    /// When its last byte seen went out.
    fn last_ts(&self) -> i64 {
        self.msg
            .as_ref()
            .map(|m| m.last.ts_ns)
            .or(self.interim.last().map(|i| i.at.ts_ns))
            .unwrap_or(i64::MIN)
    }

    fn first_frame(&self) -> Option<crate::capture::FrameRef> {
        self.interim
            .first()
            .map(|i| i.at.frame)
            .or(self.msg.as_ref().map(|m| m.first.frame))
    }
}

/// Would the framing of `resp` differ between a request like `a` and one like `b`?
fn framing_differs(resp: &RespEntry, a: Option<ReqFacts>, b: Option<ReqFacts>) -> bool {
    let Some(msg) = &resp.msg else {
        return false;
    };
    if matches!(msg.framing, Framing::Unknown) {
        return false;
    }
    let status = msg.status.unwrap_or(0);
    if status < 200 || status == 204 || status == 304 {
        return false;
    }
    let (a, b) = (a.unwrap_or_default(), b.unwrap_or_default());
    a.head != b.head || ((200..300).contains(&status) && a.connect != b.connect)
}

/// Pairs the responses with the requests and lays the exchanges out in order (at most `cap`).
/// `from_start`: the capture saw the connection's handshake.
pub(super) fn pair(
    reqs: Vec<ReqEntry>,
    resps: Vec<RespEntry>,
    from_start: bool,
    cap: usize,
    anomalies: &mut Anomalies,
) -> Vec<Exchange> {
    let mut answering = Answering {
        reqs: &reqs,
        from_start,
        first_request_ts: reqs.iter().find(|e| e.is_msg()).map(ReqEntry::ts),
        k: 0,
        pipelined: false,
    };
    let answers: Vec<Option<usize>> = resps.iter().map(|s| answering.answer(s, anomalies)).collect();
    lay_out(reqs, resps, answers, cap)
}

/// The first pass: which request each response answers, one response after the other.
struct Answering<'a> {
    reqs: &'a [ReqEntry],
    from_start: bool,
    /// When the first request of the capture started.
    first_request_ts: Option<i64>,
    /// The first request not yet answered or passed over.
    k: usize,
    /// Pipelining seen on the connection.
    pipelined: bool,
}

impl Answering<'_> {
    /// The request `s` answers (an index into `reqs`), if the capture holds it.
    fn answer(&mut self, s: &RespEntry, anomalies: &mut Anomalies) -> Option<usize> {
        let (reqs, k, n) = (self.reqs, self.k, self.reqs.len());
        let choice = if !s.after_loss && k < n && reqs[k].is_msg() {
            // 1. In sync: position decides.
            if reqs[k].ts() <= s.ts() {
                Some(k)
            } else {
                self.without_request(s, anomalies);
                None
            }
        } else if !s.after_loss && k >= n {
            self.without_request(s, anomalies);
            None
        } else {
            self.by_time(s, anomalies)
        };
        let facts = match choice.map(|c| &reqs[c]) {
            Some(ReqEntry::Msg { facts, .. }) => Some(*facts),
            _ => None,
        };
        if framing_differs(s, s.used, facts) {
            anomalies.note(AnomalyKind::HttpResponseFramingGuessed, s.first_frame());
        }
        if let Some(c) = choice {
            self.k = c + 1;
            // Pipelining: the next request went out before this response had ended.
            if let Some(next) = reqs[self.k..].iter().find(|e| e.is_msg()) {
                if next.ts() < s.last_ts() {
                    self.pipelined = true;
                }
            }
        }
        choice
    }

    /// Rule 2, time decides: the candidates are the entries from k that started no later. A
    /// stretch snaplen cut hides a request only if one started inside a packet, after the first
    /// bytes snaplen kept: pipelining (without it, a request goes out after the previous
    /// response, at the start of a packet).
    fn by_time(&mut self, s: &RespEntry, anomalies: &mut Anomalies) -> Option<usize> {
        let (reqs, k, pipelined) = (self.reqs, self.k, self.pipelined);
        let frame = s.first_frame();
        let end = k + reqs[k..].partition_point(|e| e.ts() <= s.ts());
        let candidate = |e: &ReqEntry| pipelined || !matches!(e, ReqEntry::Lost { kind: Lost::Cut, .. });
        // (Lost stretches never follow one another: both searches stop within two steps.)
        let last = reqs[k..end].iter().rposition(candidate).map(|i| k + i);
        let several = last.is_some_and(|c| reqs[k..c].iter().any(candidate));
        // Without pipelining the latest candidate; with it, only a single one.
        let decided = last.filter(|_| !several || !pipelined);
        if let Some(c) = decided {
            for e in &reqs[k..c] {
                if let (ReqEntry::Msg { msg, .. }, true) = (e, s.after_loss) {
                    anomalies.note(AnomalyKind::HttpResponseNotCaptured, Some(msg.first.frame));
                }
            }
            match &reqs[c] {
                ReqEntry::Msg { .. } => Some(c),
                ReqEntry::Lost { kind, .. } => {
                    if *kind != Lost::Unparsed {
                        anomalies.note(AnomalyKind::HttpRequestNotCaptured, frame);
                    }
                    // More responses may answer requests hidden in the same stretch.
                    self.k = c;
                    None
                }
            }
        } else if several {
            anomalies.note(AnomalyKind::HttpResponseUnpaired, frame);
            None
        } else {
            self.without_request(s, anomalies);
            None
        }
    }

    /// A response no request of the capture asked for: worth a note, unless the capture began
    /// after its request went out.
    fn without_request(&self, s: &RespEntry, anomalies: &mut Anomalies) {
        let ts = s.ts();
        let before_capture = s.orphan || (!self.from_start && self.first_request_ts.is_none_or(|f| ts < f));
        if !before_capture {
            anomalies.note(AnomalyKind::HttpResponseWithoutRequest, s.first_frame());
        }
    }
}

/// The second pass: the exchanges in the order the connection carried them (at most `cap`),
/// `answers[i]` being the request response `i` answers.
fn lay_out(
    reqs: Vec<ReqEntry>,
    resps: Vec<RespEntry>,
    answers: Vec<Option<usize>>,
    cap: usize,
) -> Vec<Exchange> {
    let n = reqs.len();
    let mut answered = vec![false; n];
    for c in answers.iter().flatten() {
        answered[*c] = true;
    }
    let mut slots: Vec<Option<ReqEntry>> = reqs.into_iter().map(Some).collect();
    // Each exchange is over 400 bytes: growing the vector by doubling copied them several times.
    let mut out: Vec<Exchange> = Vec::with_capacity(n.max(answers.len()).min(cap));
    let emit =
        |out: &mut Vec<Exchange>, e: Option<ReqEntry>, response: Option<(Vec<Interim>, Option<Message>)>| {
            let request = match e {
                Some(ReqEntry::Msg { msg, .. }) => Some(*msg),
                _ => None,
            };
            if request.is_none() && response.is_none() {
                return;
            }
            let (interim, response) = response.unwrap_or_default();
            if out.len() < cap {
                out.push(Exchange {
                    request,
                    interim,
                    response,
                });
            }
        };
    let mut next = 0usize;
    for (s, choice) in resps.into_iter().zip(answers) {
        let ts = s.ts();
        match choice {
            Some(c) => {
                // The requests passed over got no response the capture shows.
                while next < c {
                    emit(&mut out, slots[next].take(), None);
                    next += 1;
                }
                emit(&mut out, slots[c].take(), Some((s.interim, s.msg)));
                next = c + 1;
            }
            None => {
                // Unanswered requests that started before it come first.
                while next < n && !answered[next] && slots[next].as_ref().is_some_and(|e| e.ts() <= ts) {
                    emit(&mut out, slots[next].take(), None);
                    next += 1;
                }
                emit(&mut out, None, Some((s.interim, s.msg)));
            }
        }
    }
    for slot in slots.iter_mut().skip(next) {
        emit(&mut out, slot.take(), None);
    }
    out
}

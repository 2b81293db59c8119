//! The tables where client requests and attempts wait for each other, and the decisions (see
//! the module comment of [`super`]).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;

use super::fit::{Fit, add_attempt, fits, match_key};
use super::read::{
    AnsweredBy, Attempt, ClientRequest, attempts_of, attempts_where, exchange_key, plain_exchange,
    requests_of, requests_where,
};
use super::summary::{ClientRequests, ClientSummary};
use super::{ClientLimits, MAX_ADDRESSES, MAX_CANDIDATES, MAX_EARLY};
use crate::decode::Endpoint;
use crate::diagnose::{Diagnosis, Verdict};
use crate::http::{Conn, Protocol};

/// A client request waiting for attempts.
#[derive(Debug)]
pub(super) struct Waiting {
    req: ClientRequest,
    key: u64,
    /// The proxy-capture index of its connection, when the connection's role was inferred (not
    /// known from the link layer): it leaves if that connection turns out to be a backend one.
    inferred: Option<u64>,
    /// It got a plain answer and had no attempt when it began to wait (it holds one of the
    /// report's places for plain requests).
    plain: bool,
}

/// An attempt waiting for its client request.
#[derive(Debug)]
pub(super) struct Parked {
    attempt: Attempt,
    key: u64,
}

/// The requests of a connection whose role waits for a backend endpoint to be known.
#[derive(Debug)]
struct Unsure {
    index: u64,
    client: Endpoint,
    server: Endpoint,
    tls: bool,
    requests: Vec<ClientRequest>,
}

/// Matches client requests with attempts, as both arrive (see the module comment).
#[derive(Debug, Default)]
pub struct ClientMatcher {
    limits: ClientLimits,
    next: u64,
    pub(super) waiting: HashMap<u64, Waiting>,
    by_key: HashMap<u64, BTreeSet<(i64, u64)>>,
    /// Waiting requests that got an error (they may take a connection that carried no request).
    errors: BTreeSet<(i64, u64)>,
    /// Waiting requests by their connection's last packet (for the horizon).
    order: BTreeSet<(i64, u64)>,
    inferred: HashMap<u64, Vec<u64>>,
    pub(super) parked: HashMap<u64, Parked>,
    parked_by_key: HashMap<u64, BTreeSet<(i64, u64)>>,
    parked_connects: BTreeSet<(i64, u64)>,
    parked_order: BTreeSet<(i64, u64)>,
    unsure: Vec<Unsure>,
    unsure_requests: usize,
    backends: HashSet<Endpoint>,
    proxy_ips: HashSet<IpAddr>,
    /// Before any client-side connection is seen: attempts that are not plain answers (a
    /// failure, an error status), the latest [`MAX_EARLY`]; and whether plain answers or older
    /// ones were left out (then a request without an attempt is "not found", not "answered by
    /// the proxy").
    early: std::collections::VecDeque<Attempt>,
    dropped_plain: bool,
    dropped_other: bool,
    listed: Vec<ClientRequest>,
    /// Plain requests decided (listed, or not found), and those waiting.
    listed_ok: usize,
    waiting_plain: usize,
    pub(super) summary: ClientSummary,
}

impl ClientMatcher {
    pub fn new(limits: ClientLimits) -> ClientMatcher {
        ClientMatcher {
            limits,
            ..ClientMatcher::default()
        }
    }

    /// Connections of the proxy capture as they finish (all of them: the backend ones are
    /// recognised and left out), and how far the capture has been read (`i64::MAX`: to its end,
    /// which decides nothing yet).
    pub fn proxy_connections(&mut self, conns: &[Box<Conn>], pos: i64) {
        for c in conns {
            match c.client_is_local {
                Some(true) => {}
                Some(false) => self.client_connection(c, None),
                None if self.backends.is_empty() => self.hold_unsure(c),
                None if self.is_backend_side(c.client.ip, c.server) => {}
                None => self.client_connection(c, Some(c.index)),
            }
        }
        if pos != i64::MAX {
            self.advance(pos);
        }
    }

    /// A judged proxy→backend connection, its proxy-capture view (None: seen in the backend
    /// capture only, which this matcher cannot place in time), under the report's name for it.
    pub fn backend_connection(&mut self, id: &str, proxy_view: Option<&Conn>, d: &Diagnosis) {
        let Some(c) = proxy_view else { return };
        let first_backend = self.backends.is_empty();
        if self.backends.len() < MAX_ADDRESSES {
            self.backends.insert(c.server);
        }
        if self.proxy_ips.len() < MAX_ADDRESSES {
            self.proxy_ips.insert(c.client.ip);
        }
        self.retract(c.index);
        if first_backend {
            self.settle_unsure();
        }
        if !self.client_side_seen() {
            // No client side yet (and in most captures none at all): plain answers are not
            // kept, the others wait in a small queue (see `early`).
            if d.verdict == Verdict::Ok && c.app.exchanges.iter().all(plain_exchange) {
                self.dropped_plain |= !c.app.exchanges.is_empty();
                return;
            }
            for a in attempts_of(id, c, d) {
                if !a.failed && a.status.is_some_and(|s| s < 400) {
                    self.dropped_plain = true;
                    continue;
                }
                if self.early.len() >= MAX_EARLY {
                    self.early.pop_front();
                    self.dropped_other = true;
                }
                self.early.push_back(a);
            }
            return;
        }
        // Past the plain requests the report lists, a plain answer matters only to a request
        // waiting under its key (see `attempt`): the others are not even built.
        let committed = self.plain_committed();
        let by_key = &self.by_key;
        let attempts = attempts_where(id, c, d, &mut |e| {
            !(committed && plain_exchange(e) && !by_key.contains_key(&exchange_key(e)))
        });
        for a in attempts {
            self.attempt(a);
        }
    }

    /// A client-side connection has been seen.
    fn client_side_seen(&self) -> bool {
        self.summary.http_connections + self.summary.tls_connections > 0
    }

    /// Both captures are read: every waiting request is decided.
    pub fn finish(mut self) -> ClientRequests {
        self.settle_unsure();
        let ids: Vec<u64> = self.order.iter().map(|&(_, id)| id).collect();
        for id in ids {
            self.decide(id, true);
        }
        self.late_failures();
        self.summary.attempts_without_request += self.parked.len() as u64;
        let mut requests = std::mem::take(&mut self.listed);
        requests.sort_by_key(|r| (r.request_first.ts_ns, r.request_first.frame, r.client, r.exchange));
        self.summary.listed = requests.len() as u64;
        ClientRequests {
            requests,
            summary: self.summary,
        }
    }

    fn is_backend_side(&self, client: IpAddr, server: Endpoint) -> bool {
        self.backends.contains(&server) || self.proxy_ips.contains(&client)
    }

    /// A connection whose role is not known yet (no link-layer direction, no backend known).
    fn hold_unsure(&mut self, c: &Conn) {
        let requests = requests_of(c);
        if requests.is_empty() && c.app.protocol != Protocol::Tls {
            return;
        }
        self.unsure_requests += requests.len();
        self.unsure.push(Unsure {
            index: c.index,
            client: c.client,
            server: c.server,
            tls: c.app.protocol == Protocol::Tls,
            requests,
        });
        if self.unsure_requests > self.limits.max_pending {
            // Nothing learned for that long: take them as the client side they most likely are.
            let all = std::mem::take(&mut self.unsure);
            self.unsure_requests = 0;
            for u in all {
                self.add_requests(u.requests, Some(u.index), u.tls);
            }
        }
    }

    fn settle_unsure(&mut self) {
        let all = std::mem::take(&mut self.unsure);
        self.unsure_requests = 0;
        for u in all {
            if !self.is_backend_side(u.client.ip, u.server) {
                self.add_requests(u.requests, Some(u.index), u.tls);
            }
        }
    }

    fn client_connection(&mut self, c: &Conn, inferred: Option<u64>) {
        if c.app.protocol == Protocol::Tls {
            self.add_requests(Vec::new(), inferred, true);
            return;
        }
        // Past the plain requests the report lists, a plain request is only counted (see
        // `request`) unless an attempt waits under its key: it is not even built.
        let committed = self.plain_committed();
        let parked = &self.parked_by_key;
        let mut counted: Vec<Option<u16>> = Vec::new();
        let requests = requests_where(c, &mut |e| {
            if committed && plain_exchange(e) && !parked.contains_key(&exchange_key(e)) {
                counted.push(e.response.as_ref().and_then(|r| r.status));
                return false;
            }
            true
        });
        if requests.is_empty() && !counted.is_empty() {
            self.summary.http_connections += 1;
        }
        for status in counted {
            self.count_not_matched(status);
        }
        self.add_requests(requests, inferred, false);
    }

    fn add_requests(&mut self, requests: Vec<ClientRequest>, inferred: Option<u64>, tls: bool) {
        if tls {
            self.summary.tls_connections += 1;
            return;
        }
        if requests.is_empty() {
            return;
        }
        self.summary.http_connections += 1;
        if self.summary.http_connections == 1 {
            for a in std::mem::take(&mut self.early) {
                self.attempt(a);
            }
        }
        for r in requests {
            self.request(r, inferred);
        }
    }

    /// A client request arrives: it takes the waiting attempts that fit it, then waits (unless
    /// settled).
    pub(super) fn request(&mut self, mut req: ClientRequest, inferred: Option<u64>) {
        let key = match_key(req.method.as_deref(), req.target.as_deref());
        for id in self.parked_for(&req, key) {
            let fit = fits(&req, &self.parked[&id].attempt);
            let Some(fit) = fit else { continue };
            let a = self.unpark(id);
            add_attempt(&mut req, a, fit);
            if req.settled() {
                break;
            }
        }
        if req.settled() {
            self.conclude(req, false);
            return;
        }
        let plain = req.attempts.is_empty() && req.is_plain();
        if plain && self.plain_committed() {
            // Past the plain requests the report lists: counted, not matched (matching them
            // would keep every one until the pooled backend connection that carried it closes).
            self.count_not_matched(req.status);
            return;
        }
        self.wait(req, key, inferred, plain);
    }

    /// The parked attempts a client request may take, in time order: those of the best
    /// identification only; an answer with the client's status, when there is one, excludes
    /// complete answers with another status; answers that do not explain the client's error
    /// only when nothing else fits.
    fn parked_for(&self, req: &ClientRequest, key: u64) -> Vec<u64> {
        let (lo, hi) = (req.request_first.ts_ns, req.deadline());
        let mut cands: Vec<(i64, u64)> = Vec::new();
        if let Some(set) = self.parked_by_key.get(&key) {
            cands.extend(set.range((lo, 0)..=(hi, u64::MAX)).take(MAX_CANDIDATES));
        }
        if req.is_error() {
            cands.extend(
                self.parked_connects
                    .range((lo, 0)..=(hi, u64::MAX))
                    .take(MAX_CANDIDATES),
            );
        }
        let fitting: Vec<(u64, Fit)> = cands
            .iter()
            .filter_map(|&(_, id)| fits(req, &self.parked[&id].attempt).map(|f| (id, f)))
            .collect();
        let best = fitting.iter().map(|(_, f)| f.identity()).max();
        let any_status = fitting
            .iter()
            .any(|(_, f)| f.status && Some(f.identity()) == best);
        let any_strong = fitting.iter().any(|(_, f)| !f.weak && Some(f.identity()) == best);
        let mut chosen: Vec<(i64, u64)> = fitting
            .iter()
            .filter(|(id, f)| {
                Some(f.identity()) == best
                    && (f.status || !any_status || self.parked[id].attempt.failed)
                    && (!f.weak || !any_strong)
            })
            .map(|&(id, _)| (self.parked[&id].attempt.at.ts_ns, id))
            .collect();
        chosen.sort_unstable();
        chosen.into_iter().map(|(_, id)| id).collect()
    }

    /// A plain request past those the report lists: counted by status, not matched.
    fn count_not_matched(&mut self, status: Option<u16>) {
        let s = &mut self.summary;
        s.requests += 1;
        *s.by_status.entry(status).or_insert(0) += 1;
        s.plain_not_matched += 1;
    }

    /// A client request waits for attempts (the oldest waiting are decided when the table is
    /// full).
    fn wait(&mut self, req: ClientRequest, key: u64, inferred: Option<u64>, plain: bool) {
        let id = self.next;
        self.next += 1;
        self.by_key
            .entry(key)
            .or_default()
            .insert((req.request_first.ts_ns, id));
        if req.is_error() {
            self.errors.insert((req.request_first.ts_ns, id));
        }
        self.order.insert((req.last.ts_ns, id));
        if let Some(index) = inferred {
            self.inferred.entry(index).or_default().push(id);
        }
        self.waiting_plain += usize::from(plain);
        self.waiting.insert(
            id,
            Waiting {
                req,
                key,
                inferred,
                plain,
            },
        );
        while self.waiting.len() > self.limits.max_pending {
            let Some(&(_, oldest)) = self.order.first() else {
                break;
            };
            self.decide(oldest, false);
        }
    }

    /// An attempt arrives: it goes to the waiting request it fits best, or waits.
    pub(super) fn attempt(&mut self, a: Attempt) {
        let key = match_key(a.method.as_deref(), a.target.as_deref());
        let set = if a.exchange.is_some() {
            self.by_key.get(&key)
        } else {
            Some(&self.errors)
        };
        let mut best: Option<(u64, Fit)> = None;
        let mut alike = 0usize;
        if let Some(set) = set {
            for &(_, id) in set.range(..=(a.at.ts_ns, u64::MAX)).rev().take(MAX_CANDIDATES) {
                // An answer that does not explain a client's error waits for that client's own
                // request instead (see `request`).
                let Some(f) = fits(&self.waiting[&id].req, &a).filter(|f| !f.weak) else {
                    continue;
                };
                let rank = |f: &Fit| (f.id, f.addr, f.exact, f.status, std::cmp::Reverse(f.gap));
                match &best {
                    Some((_, b)) if (b.identity(), b.status) == (f.identity(), f.status) => {
                        alike += 1;
                        if rank(&f) > rank(b) {
                            best = Some((id, f));
                        }
                    }
                    Some((_, b)) if rank(&f) <= rank(b) => {}
                    _ => {
                        best = Some((id, f));
                        alike = 0;
                    }
                }
            }
        }
        let Some((id, fit)) = best else {
            // A plain answer, once the plain requests the report lists are known, belongs to a
            // request that is not matched (see `request`).
            let plain = !a.failed && a.status.is_some_and(|s| s < 400);
            if !(plain && self.plain_committed()) {
                self.park(a, key);
            }
            return;
        };
        let w = self.waiting.get_mut(&id).expect("indexed");
        if w.req.attempts.is_empty() {
            w.req.alternatives = alike;
        }
        add_attempt(&mut w.req, a, fit);
        if w.req.settled() {
            self.decide(id, false);
        }
    }

    fn park(&mut self, a: Attempt, key: u64) {
        let id = self.next;
        self.next += 1;
        let t = a.at.ts_ns;
        if a.exchange.is_some() {
            self.parked_by_key.entry(key).or_default().insert((t, id));
        } else {
            self.parked_connects.insert((t, id));
        }
        self.parked_order.insert((a.last.ts_ns, id));
        self.parked.insert(id, Parked { attempt: a, key });
        while self.parked.len() > self.limits.max_pending {
            let Some(&(_, oldest)) = self.parked_order.first() else {
                break;
            };
            self.unpark(oldest);
            self.summary.attempts_without_request += 1;
        }
    }

    fn unpark(&mut self, id: u64) -> Attempt {
        let p = self.parked.remove(&id).expect("parked");
        let t = p.attempt.at.ts_ns;
        if p.attempt.exchange.is_some() {
            if let Some(set) = self.parked_by_key.get_mut(&p.key) {
                set.remove(&(t, id));
                if set.is_empty() {
                    self.parked_by_key.remove(&p.key);
                }
            }
        } else {
            self.parked_connects.remove(&(t, id));
        }
        self.parked_order.remove(&(p.attempt.last.ts_ns, id));
        p.attempt
    }

    /// A waiting request leaves the tables.
    fn unwait(&mut self, id: u64) -> Option<Waiting> {
        let w = self.waiting.remove(&id)?;
        self.waiting_plain -= usize::from(w.plain);
        let t = w.req.request_first.ts_ns;
        if let Some(set) = self.by_key.get_mut(&w.key) {
            set.remove(&(t, id));
            if set.is_empty() {
                self.by_key.remove(&w.key);
            }
        }
        self.errors.remove(&(t, id));
        self.order.remove(&(w.req.last.ts_ns, id));
        if let Some(index) = w.inferred {
            if let Some(v) = self.inferred.get_mut(&index) {
                v.retain(|&x| x != id);
                if v.is_empty() {
                    self.inferred.remove(&index);
                }
            }
        }
        Some(w)
    }

    /// The connection at `index` of the proxy capture is a backend one: requests taken from it
    /// as client requests leave, and their attempts wait again.
    fn retract(&mut self, index: u64) {
        self.unsure.retain(|u| u.index != index);
        let Some(ids) = self.inferred.remove(&index) else {
            return;
        };
        for id in ids {
            if let Some(w) = self.unwait(id) {
                for a in w.req.attempts {
                    let key = match_key(a.method.as_deref(), a.target.as_deref());
                    self.park(a, key);
                }
            }
        }
    }

    /// A waiting request is decided: at the end of the captures (`at_end`), or early.
    fn decide(&mut self, id: u64, at_end: bool) {
        if let Some(w) = self.unwait(id) {
            if !at_end {
                self.summary.decided_early += u64::from(!w.req.settled());
            }
            self.conclude(w.req, at_end);
        }
    }

    fn conclude(&mut self, mut req: ClientRequest, at_end: bool) {
        // Without attempts, "answered by the proxy" needs every attempt of the captures to have
        // been looked at: not when some were left out before the client side showed up.
        let left_out = if req.is_plain() {
            self.dropped_plain
        } else {
            self.dropped_other
        };
        req.answered_by = match req.attempts.last() {
            Some(a) if !a.failed => AnsweredBy::Backend,
            Some(_) => AnsweredBy::Proxy,
            None if at_end && !left_out => AnsweredBy::Proxy,
            None => AnsweredBy::NotFound,
        };
        let s = &mut self.summary;
        s.requests += 1;
        *s.by_status.entry(req.status).or_insert(0) += 1;
        match req.answered_by {
            AnsweredBy::Backend => s.answered_by_backend += 1,
            AnsweredBy::Proxy => {
                s.answered_by_proxy += 1;
                s.proxy_without_backend += u64::from(req.attempts.is_empty());
            }
            AnsweredBy::NotFound => s.not_found += 1,
        }
        s.with_failed_attempt += u64::from(req.attempts.iter().any(|a| a.failed));
        if req.is_notable() {
            if self.listed.len() - self.listed_ok < self.limits.max_listed {
                self.listed.push(req);
            }
        } else if self.listed_ok < self.limits.max_listed_ok {
            // A plain request whose attempt was not found tells nothing: it takes its place
            // in the quota, unlisted.
            self.listed_ok += 1;
            if req.answered_by != AnsweredBy::NotFound {
                self.listed.push(req);
            }
        }
    }

    /// Failed attempts still waiting at the end may belong to requests already decided: a retry
    /// settled them before the failure was reported (a failed connection can be judged last, e.g.
    /// an empty reply that might be a keep-alive race), or they had to be decided early. They go
    /// to the listed request they fit best.
    fn late_failures(&mut self) {
        let mut ids: Vec<(i64, u64)> = self
            .parked
            .iter()
            .filter(|(_, p)| p.attempt.failed)
            .map(|(&id, p)| (p.attempt.at.ts_ns, id))
            .collect();
        ids.sort_unstable();
        for (_, id) in ids {
            let a = &self.parked[&id].attempt;
            let rank = |f: &Fit| (f.id, f.addr, f.exact, std::cmp::Reverse(f.gap));
            let best = self
                .listed
                .iter()
                .enumerate()
                .filter_map(|(i, r)| fits(r, a).filter(|f| !f.weak).map(|f| (i, f)))
                .max_by_key(|(_, f)| rank(f));
            let Some((i, fit)) = best else { continue };
            let a = self.unpark(id);
            let r = &mut self.listed[i];
            let had_failed = r.attempts.iter().any(|x| x.failed);
            add_attempt(r, a, fit);
            self.summary.with_failed_attempt += u64::from(!had_failed);
            if r.answered_by == AnsweredBy::NotFound {
                r.answered_by = AnsweredBy::Proxy;
                self.summary.not_found -= 1;
                self.summary.answered_by_proxy += 1;
            }
        }
    }

    /// No more plain requests wait: those the report lists (or has decided) and those waiting
    /// fill its quota.
    fn plain_committed(&self) -> bool {
        self.listed_ok + self.waiting_plain >= self.limits.max_listed_ok
    }

    /// The capture has been read up to `pos`: entries older than the horizon are decided.
    pub(super) fn advance(&mut self, pos: i64) {
        let limit = pos.saturating_sub(self.limits.horizon_ns);
        while let Some(&(t, id)) = self.order.first() {
            if t >= limit {
                break;
            }
            self.decide(id, false);
        }
        while let Some(&(t, id)) = self.parked_order.first() {
            if t >= limit {
                break;
            }
            self.unpark(id);
            self.summary.attempts_without_request += 1;
        }
    }
}

//! How well an attempt fits a client request (see the module comment of [`super`]).

use super::read::{Attempt, ClientRequest, MatchedBy};

/// The path and query of a target (an absolute-form target loses its scheme and authority).
fn path_query(target: &str) -> (&str, &str) {
    let t = match target.starts_with('/') {
        true => target,
        false => match target.find("://") {
            Some(i) => target[i + 3..].find('/').map_or("/", |j| &target[i + 3 + j..]),
            None => target,
        },
    };
    t.split_once('?').unwrap_or((t, ""))
}

/// The index key of a request: a hash of its method, the last segment of its path and its query
/// (a proxy that strips or adds a path prefix keeps them). Requests whose keys collide are told
/// apart by [`fits`].
pub(super) fn match_key(method: Option<&str>, target: Option<&str>) -> u64 {
    let (path, query) = path_query(target.unwrap_or(""));
    let last = path.rsplit_once('/').map_or(path, |(_, l)| l);
    // FNV-1a over the parts, each ended by a byte no part holds.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in [method.unwrap_or(""), last, query] {
        for &b in part.as_bytes().iter().chain(&[0xff]) {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Do two targets name the same resource? Some(true): equal; Some(false): same query, and one
/// path ends with the other (at a '/'); None: no.
pub(super) fn same_target(a: &str, b: &str) -> Option<bool> {
    if a == b {
        return Some(true);
    }
    let ((pa, qa), (pb, qb)) = (path_query(a), path_query(b));
    if qa != qb {
        return None;
    }
    let ends = |long: &str, short: &str| {
        let short = short.trim_start_matches('/');
        long.ends_with(short) && long[..long.len() - short.len()].ends_with('/')
    };
    (pa == pb || ends(pa, pb) || ends(pb, pa)).then_some(false)
}

/// How well an attempt fits a client request (see the module comment); None: it cannot be its.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fit {
    pub(super) id: bool,
    pub(super) addr: bool,
    pub(super) exact: bool,
    pub(super) status: bool,
    /// A complete backend answer that does not explain the error the client got (the client got
    /// a 5xx or nothing, the backend answered below 500): taken only when nothing else fits.
    pub(super) weak: bool,
    /// From the end of the client request to the attempt (0 while the request was being sent).
    pub(super) gap: i64,
}

impl Fit {
    /// The strength of the identification (ids, address, target), without time.
    pub(super) fn identity(&self) -> (bool, bool, bool) {
        (self.id, self.addr, self.exact)
    }

    fn matched_by(&self, a: &Attempt) -> MatchedBy {
        if self.id {
            MatchedBy::RequestId
        } else if a.exchange.is_none() {
            MatchedBy::Time
        } else if self.addr {
            MatchedBy::ClientAddress
        } else {
            MatchedBy::Target
        }
    }
}

pub(super) fn fits(c: &ClientRequest, a: &Attempt) -> Option<Fit> {
    if a.client == c.client && a.server == c.proxy {
        return None;
    }
    let t = a.at.ts_ns;
    if t < c.request_first.ts_ns || t > c.deadline() {
        return None;
    }
    // Attempts are in time order, one after the other (a proxy retries once an attempt has
    // failed: its connection ended), and only the last may have succeeded. An attempt arriving
    // late (its connection finished later) may go before the others.
    if !c.attempts.is_empty() {
        let at = c.attempts.partition_point(|x| x.at <= a.at);
        let after_prev = at == 0 || {
            let p = &c.attempts[at - 1];
            p.failed && t >= p.last.ts_ns
        };
        let before_next = at == c.attempts.len() || (a.failed && a.last.ts_ns <= c.attempts[at].at.ts_ns);
        if !(after_prev && before_next) {
            return None;
        }
    }
    let gap = (t - c.request_last.ts_ns).max(0);
    if a.exchange.is_none() {
        return c.is_error().then_some(Fit {
            id: false,
            addr: false,
            exact: false,
            status: false,
            weak: false,
            gap,
        });
    }
    let id = match (&c.request_id, &a.request_id) {
        (Some(x), Some(y)) if x != y => return None,
        (Some(_), Some(_)) => true,
        _ => false,
    };
    if let (Some(x), Some(y)) = (&c.method, &a.method) {
        if x != y {
            return None;
        }
    }
    let exact = match (&c.target, &a.target) {
        (Some(x), Some(y)) => match same_target(x, y) {
            Some(e) => e,
            None if id => false,
            None => return None,
        },
        _ => false,
    };
    let addr = match a.forwarded_for {
        Some(ip) if ip != c.client.ip => return None,
        Some(_) => true,
        None => false,
    };
    if !id && c.request_complete && a.request_complete && c.body_bytes != a.body_bytes {
        return None;
    }
    let status = a.response_complete && a.status.is_some() && a.status == c.status;
    let weak = c.is_error() && a.response_complete && !status && a.status.is_some_and(|s| s < 500);
    Some(Fit {
        id,
        addr,
        exact,
        status,
        weak,
        gap,
    })
}

/// Adds an attempt in time order; the request is matched by the strongest of its attempts' fits.
pub(super) fn add_attempt(req: &mut ClientRequest, a: Attempt, fit: Fit) {
    req.matched_by = req.matched_by.max(Some(fit.matched_by(&a)));
    let at = req.attempts.partition_point(|x| x.at <= a.at);
    req.attempts.insert(at, a);
}

//! # incident::clients: each client request, next to the backend connection that answered it
//!
//! In: every connection of the proxy capture as it finishes — when that capture also holds the
//! proxy's client side (`tcpdump -i any` on the proxy host, or one interface that carries both
//! sides) — and every judged proxy→backend connection. Out: [`ClientRequests`]: for each request
//! a client sent to the proxy, what the client got (status, when, or how the proxy closed without
//! an answer) and the proxy's attempts at the backend for it — an exchange on a backend
//! connection, or a connection that never got to carry a request (refused, timed out) — each with
//! its connection's verdict; or no attempt at all: the proxy answered it itself.
//!
//! **The client side.** A connection of the proxy capture whose server is the capturing host (the
//! Linux cooked header says which packets the host received); without that header, one whose
//! server is not a backend endpoint and whose client is not one of the proxy's addresses towards
//! the backends (both learned from the judged connections: such connections wait until one is
//! known).
//!
//! **Matching.** Proxies do not say which backend exchange served which client request, so an
//! attempt is matched by what the proxy copies or adds, strongest first:
//! 1. a request id (`X-Request-ID`, `X-Correlation-ID`, `Request-Id`) in the backend request and
//!    in the client's request or the proxy's response to it: equal ids match, different ids never;
//! 2. the method (always equal) and the target: equal, or one ending with the other's path (a
//!    proxy that strips or adds a prefix), with the same query;
//! 3. the client's address, when the proxy added `X-Forwarded-For` (its last address),
//!    `X-Real-IP` or `Forwarded: for=`: a different address never matches;
//! 4. the body size, when both requests went out complete: a different size never matches;
//! 5. time: the backend request starts after the client request started and before the proxy
//!    answered the client (or closed on it). A backend answer with the status the client got is
//!    preferred; then the attempt nearest to the client request.
//!
//! A connection that carried no request (refused, timed out, TLS) is an attempt only for a client
//! request that got an error (5xx, or no answer) and was waiting for it when the connection was
//! opened. A request takes more attempts only while the ones it has failed (the proxy retried, or
//! failed over to another server). When several client requests fit an attempt equally well (the
//! same request from the same address at the same moment) the nearest in time is taken and the
//! number of alternatives is kept.
//!
//! **Streaming.** Client connections and backend findings arrive as their connections finish, in
//! any order. A request waits (indexed by method and the target's last path segment, ordered by
//! time) until an attempt that settles it arrives: a complete backend response. One without a
//! settling attempt waits until the end of the captures — then, with no attempt at all, the proxy
//! answered it itself — or until the capture has moved [`ClientLimits::horizon_ns`] past its
//! connection's end, or the table is full ([`ClientLimits::max_pending`]): then it is decided
//! with the attempts it has, and one without any is "not found" (a pooled backend connection still
//! open may hold it). Attempts whose client request has not arrived wait the same way.
//!
//! A backend connection pooled by the proxy reports its exchanges when it closes, so matching
//! every request would keep every one until then — with a proxy that reuses its connections
//! without end, all of them. So once the report holds [`ClientLimits::max_listed_ok`] "plain"
//! requests (a complete answer below 400), later plain requests are counted by status and not
//! matched, and plain backend answers that find no waiting request are dropped: what waits is the
//! requests with an error (5xx, 4xx, no or an incomplete answer) and the attempts that could
//! explain one. Memory follows those, within the caps; the requests kept for the report are
//! bounded by [`ClientLimits::max_listed`] (with an error) and [`ClientLimits::max_listed_ok`];
//! the summary counts every request.
//!
//! **Files.** [`read`]: a connection → its client requests, or its attempts at the backend;
//! [`fit`]: how well an attempt fits a client request; [`matcher`]: the tables where both wait,
//! and the decisions; [`summary`]: what the matcher gives, and its counts.

mod fit;
mod matcher;
mod read;
mod summary;
#[cfg(test)]
mod tests;

pub use matcher::ClientMatcher;
pub use read::{AnsweredBy, Attempt, ClientRequest, Close, MatchedBy};
pub use summary::{ClientRequests, ClientSummary};

/// Header names this module reads. The reader keeps them on connections that look healthy
/// (whose other headers it drops).
pub(crate) const KEPT_HEADERS: [&str; 6] = [
    "x-request-id",
    "x-correlation-id",
    "request-id",
    "x-forwarded-for",
    "x-real-ip",
    "forwarded",
];

/// Is this one of [`KEPT_HEADERS`] (case-insensitive)?
pub(crate) fn is_kept_header(name: &str) -> bool {
    let name = name.trim_ascii();
    // Called for every header of every healthy message: most names fail on their length.
    matches!(name.len(), 9 | 10 | 12 | 15 | 16) && KEPT_HEADERS.iter().any(|k| k.eq_ignore_ascii_case(name))
}

/// Headers that carry a request id.
pub const ID_HEADERS: [&str; 3] = ["x-request-id", "x-correlation-id", "request-id"];

/// Bytes kept of a request id or forwarded-for value, and of a target.
const MAX_VALUE_BYTES: usize = 128;
const MAX_TARGET_BYTES: usize = 256;

/// Candidates looked at for one match (the nearest in time first).
const MAX_CANDIDATES: usize = 256;

/// Attempts kept before any client-side connection is seen.
const MAX_EARLY: usize = 4096;

/// Backend endpoints and proxy addresses remembered for telling the client side apart.
const MAX_ADDRESSES: usize = 65_536;

/// Caps of the matcher (see the module comment).
#[derive(Clone, Copy, Debug)]
pub struct ClientLimits {
    /// Client requests waiting for an attempt, and attempts waiting for their client request.
    pub max_pending: usize,
    /// How far past a waiting entry's connection end the capture may move before it is decided.
    pub horizon_ns: i64,
    /// Requests with an error (5xx, no answer, a failed attempt, answered by the proxy) kept in full.
    pub max_listed: usize,
    /// Other requests kept in full (the first ones decided).
    pub max_listed_ok: usize,
}

impl Default for ClientLimits {
    fn default() -> ClientLimits {
        ClientLimits::DEFAULT
    }
}

impl ClientLimits {
    const DEFAULT: ClientLimits = ClientLimits {
        max_pending: 20_000,
        horizon_ns: 300_000_000_000,
        max_listed: 10_000,
        max_listed_ok: 1_000,
    };
}

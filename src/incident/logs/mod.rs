//! # incident::logs: the proxy's error log → the connection each line is about
//!
//! In: Apache httpd 2.4 / 2.2 and nginx error logs (`--proxy-log FILE`, plain or gzip). Out: each
//! error line tied to the judged connection it is about, or the reason it is tied to none.
//!
//! **Reading.** A line is read when it starts like one of those logs:
//! - Apache: `[Sun Nov 22 00:25:20.388222 2026] [proxy_http:error] [pid 9905:tid 9912]
//!   (20014)Internal error ...: [client 10.0.0.2:40308] AH01102: error reading status line from
//!   remote server 10.0.2.2:8080` (microseconds since 2.4; whole seconds in 2.2's `[error]`);
//! - nginx: `2026/11/22 00:25:23 [error] 10209#10209: *1 upstream prematurely closed connection
//!   while reading response header from upstream, client: 10.0.0.2, server: , request: "POST
//!   /empty HTTP/1.1", upstream: "http://10.0.2.2:8080/empty", host: "lab.test"` (whole seconds).
//!
//! Both write the proxy host's local wall clock without a zone: the caller gives the zone as a
//! fixed offset (`--log-tz`, default UTC). Lines are untrusted: a line longer than
//! [`read::MAX_LINE_BYTES`] is cut, bytes that are not UTF-8 are replaced, a line that is neither format
//! or whose date cannot be read is a warning naming the file and line (the first
//! [`read::MAX_WARNINGS_PER_FILE`] per file), and at most [`read::MAX_KEPT_LINES`] lines are kept.
//!
//! **What a line says.** Lines at `warn` and above, and `info` lines about a backend connection
//! (nginx's "client prematurely closed connection while sending request to upstream"), are kept
//! and classified ([`Says`]): connect refused / unreachable / timed out, no response (backend
//! closed, reset, timeout), response broken off, bad response, request body not delivered, the
//! proxy's client gone, no backend tried, or not about a backend connection. Apache's debug lines
//! of `mod_proxy` (`LogLevel proxy:debug`) are read as context of the request being handled by the
//! same `pid:tid`: which path was sent (AH00947), when, and whether a new connection was made for
//! it (AH02824) or a pooled one reused. The error lines of one Apache request (AH00957 then
//! AH01114; AH01102 then AH00898; AH01084 then AH01097) make one [`Event`].
//!
//! **Matching.** Each judged connection, as it comes, takes the events that are about it
//! ([`Matcher::take`]): the backend address is the connection's server (as the proxy capture saw
//! it), the event's time falls within the connection's life (the proxy logs an error when it sees
//! it and closes the connection right after; a connect timeout comes up to the connection's age
//! again after its last SYN), the request path is one the connection carried (and, with Apache's
//! debug context, sent when the log says, on a connection opened then or reused as the log says),
//! and the line's meaning goes with the verdict ([`Says::fits`]). An event is given to the first
//! connection it fits; per connection, of events with the same meaning about the same exchange,
//! the one nearest its end. A line whose meaning goes with no connection's verdict is tied at the
//! end to the connection whose last request it names (the wire may show no failure where the
//! proxy's own strictness logged one: Apache reading a lower-case status line as HTTP/0.9); it is
//! then listed in the summary ([`LogsSummary::placed`], `fits: false`), not with the connection,
//! whose row was written before. What is left unmatched gets its reason ([`Unmatched`]).
//!
//! **Files.** [`says`]: what a line is and means (flavor, level, [`Says`], the backend named);
//! [`parse`]: a line's fields and time; [`read`]: files → kept lines and events (capped);
//! [`matcher`]: events → the connections they are about; [`summary`]: the account at the end,
//! with the reasons of unmatched lines.

mod matcher;
mod parse;
mod read;
mod says;
mod summary;
#[cfg(test)]
mod tests;

pub use matcher::{Attached, ConnFacts, Matcher, RequestFact};
pub use read::{Event, FileStats, LogLine, ProxyLogs, load};
pub use says::{BackendRef, Flavor, Level, Says};
pub use summary::{CaptureSpan, LogsSummary, Outcome, Placed, Unmatched};

const SECOND: i64 = 1_000_000_000;

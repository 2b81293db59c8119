//! # incident: from connections judged one by one to the incident as a whole
//!
//! In: judged connections ([`crate::diagnose::Finding`]: the views, the diagnosis, the clock
//! offset), one at a time as the pipeline hands them out. Out: what an on-call engineer starts
//! from in an incident:
//! - [`logs`]: the proxy's error log lines, tied to the connections they are about;
//! - [`window`]: the minutes of the incident (`--since`/`--until`);
//! - [`clients`]: each request a client sent to the proxy (when the proxy capture holds the
//!   proxy's client side, `tcpdump -i any`), next to the backend connection(s) the proxy used for
//!   it and their verdicts — or none, when the proxy answered it itself;
//! - [`timeline`] and [`patterns`]: how many requests failed, when and in which shape (all at
//!   once, under load, clustered, sporadic), and what the failed requests have in common (method,
//!   path, body size, connection reuse).
//!
//! It never changes a verdict; the report shows what it found beside the verdicts. Every
//! accumulator here is bounded: log lines and waiting requests up to a cap, counts per time bucket
//! (a fixed number of buckets, made coarser as the capture grows) and per category, never a list
//! of all connections.
//!
//! **Files.** `logs/`, `clients/` and `timeline/` are folders whose `mod.rs` says which file holds
//! what; `window.rs` and `patterns.rs` are single files. An item is `pub` when the report, the
//! binary, the tests or the examples use it (or it is part of such an item), `pub(crate)`
//! otherwise.

pub mod clients;
pub mod logs;
pub mod patterns;
pub mod timeline;
pub mod window;

/// The longest start of `s` of at most `max` bytes that ends at a character boundary (`s` itself
/// when it is short enough): untrusted text (log lines, header values, targets) is kept up to a
/// cap.
fn cut_at_char(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

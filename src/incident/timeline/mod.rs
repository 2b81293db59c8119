//! Requests over time, and the shape of the failures.
//!
//! Every judged connection becomes **request attempts** ([`facts`]): each HTTP exchange the
//! capture shows, or the connection itself when no request is seen on it (a refused or timed-out
//! connect, TLS, a connection that carried nothing). In a failed or abandoned connection, every
//! exchange sent and answered in full counts as a healthy request, and the failure is one attempt
//! more (the exchange it is about, when the capture shows it), at the time of its first piece of
//! evidence (the failing request or SYN leaving the proxy), on the proxy capture's clock; every
//! attempt of a not-judged connection counts as not judged. So "3 % of requests" compares failed
//! attempts with all attempts.
//!
//! [`Timeline`] counts attempts per verdict in time buckets — about 4096 at most, made ten times
//! coarser whenever the span outgrows them, so memory is bounded whatever the capture — plus
//! connections starting and ending (for the number open at once) and *late connects* (healthy
//! connections whose SYN had to be sent again before the backend answered: its accept queue was
//! full). [`Timeline::finish`] re-bins the counts into at most [`MAX_BUCKETS`] buckets of a round
//! width chosen from the span of the traffic (10 ms for a few seconds, minutes for hours), and
//! gives the failures a [`Shape`] by the rules of [`shape::classify`].
//!
//! **Files.** [`attempts`]: a judged connection → its request attempts; [`buckets`]: the accumulator
//! and its buckets, re-binned at the end; [`shape`]: the numbers the shape is decided on, and its
//! rules; [`words`]: the shape's reason and the times, durations and rates in words.

use crate::diagnose::Verdict;

mod attempts;
mod buckets;
mod shape;
#[cfg(test)]
mod tests;
mod words;

pub use attempts::{Attempt, ConnFacts, FailureMark, Family, Mark, Reuse, facts};
pub(super) use buckets::failures;
pub use buckets::{Bucket, Cell, FamilyCounts, Timeline, TimelineSummary};
pub use shape::{Cluster, Kind, Load, Shape, ShapeFacts};
pub(crate) use words::percent;

/// Number of verdicts (the index of a verdict in count arrays is `verdict as usize`).
pub const VERDICTS: usize = Verdict::ALL.len();

/// Buckets of the timeline shown (JSON, text, Markdown, HTML plot).
pub(crate) const MAX_BUCKETS: i64 = 60;

const MS: i64 = 1_000_000;
const SEC: i64 = 1_000 * MS;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

//! The numbers the shape of the failures is decided on, and its rules ([`classify`]).

use super::buckets::FamilyCounts;

/// The shape of the failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// No request failed.
    None,
    /// One burst in which (almost) nothing succeeded, or every request failed: the backend (or
    /// the path to it) was down or misconfigured.
    AllAtOnce,
    /// Failures where the load was highest, or the backend stopped keeping up (SYNs ignored,
    /// requests unanswered) while connections got through late: overload.
    UnderLoad,
    /// Most failures in a short stretch, with healthy requests around them; not explained by load.
    Clustered,
    /// Few failures, or failures spread over the traffic one at a time.
    Sporadic,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::AllAtOnce => "all-at-once",
            Kind::UnderLoad => "under-load",
            Kind::Clustered => "clustered",
            Kind::Sporadic => "sporadic",
        }
    }
}

/// Load around failures and around healthy requests (means; the request itself not counted).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Load {
    /// Other request attempts in the same bucket.
    pub requests_at_failure: f64,
    pub requests_at_success: f64,
    /// Other connections open during the same bucket.
    pub connections_at_failure: f64,
    pub connections_at_success: f64,
}

impl Load {
    /// Failures come with at least 1.5 times the load of healthy requests, and at least one
    /// request or connection more.
    pub(crate) fn higher_at_failures(&self) -> bool {
        let more = |f: f64, s: f64| f >= 1.5 * s && f - s >= 1.0;
        more(self.requests_at_failure, self.requests_at_success)
            || more(self.connections_at_failure, self.connections_at_success)
    }
}

/// The shortest run of shown buckets holding 80 % of the failures.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cluster {
    pub start_ns: i64,
    pub end_ns: i64,
    pub buckets: u64,
    pub of_buckets: u64,
    pub failures: u64,
    pub attempts: u64,
    pub failures_outside: u64,
    pub attempts_outside: u64,
}

/// The numbers the shape is decided on (see [`classify`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct ShapeFacts {
    pub failed: u64,
    pub ok: u64,
    pub attempts: u64,
    /// Attempts abandoned by the proxy, and not judged.
    pub abandoned: u64,
    pub not_judged: u64,
    pub families: FamilyCounts,
    /// Different failure verdicts.
    pub verdicts: u64,
    /// First and last failure, on the proxy clock.
    pub first_ns: i64,
    pub last_ns: i64,
    /// First and last attempt.
    pub traffic: (i64, i64),
    /// Healthy requests and all attempts from the first failure to the last (fine buckets).
    pub window_ok: u64,
    pub window_attempts: u64,
    /// The first healthy request after the last failure (its fine bucket).
    pub back_ns: Option<i64>,
    /// Late connects from the first failure to `back_ns`.
    pub late_connects: u64,
    pub load: Load,
    pub cluster: Option<Cluster>,
}

impl ShapeFacts {
    /// At least 3 failures and, between the first and the last, healthy requests at most a tenth
    /// of all attempts.
    pub(crate) fn burst(&self) -> bool {
        self.failed >= 3 && self.window_ok * 10 <= self.window_attempts
    }

    /// At least 3 failures and 3 healthy requests, and more load around failures.
    pub(crate) fn loaded(&self) -> bool {
        self.failed >= 3 && self.ok >= 3 && self.load.higher_at_failures()
    }

    /// 80 % of the failures in at most a quarter of the traffic's time, with a failure rate at
    /// least three times the rate outside (where there were requests).
    pub(crate) fn clustered(&self) -> bool {
        let Some(c) = self.cluster else { return false };
        self.failed >= 3
            && c.attempts_outside > 0
            && c.buckets * 4 <= c.of_buckets
            && c.failures as f64 / c.attempts.max(1) as f64
                >= 3.0 * c.failures_outside as f64 / c.attempts_outside as f64
    }

    /// Most failures are the backend not answering.
    pub(crate) fn mostly_slow(&self) -> bool {
        self.families.slow * 2 > self.failed
    }
}

/// The shape's rules, in order:
/// 1. no failure: `none`;
/// 2. a single failure: `sporadic` (one failure makes no pattern in time);
/// 3. every request failed: `all-at-once`;
/// 4. most failures are keep-alive races: `sporadic` — each is one request meeting the backend's
///    idle close, a matter of that request's timing and not of the backend's state or load,
///    however they fall in time (the fix is the proxy's reuse settings);
/// 5. a burst (at least 3 failures, healthy requests at most a tenth of the attempts between the
///    first and the last failure) of mostly timeouts (SYN ignored, request unanswered, zero
///    window), with more load than around healthy requests or with late connects (SYNs answered
///    only when sent again) before the backend answered again: `under-load`;
/// 6. any other burst: `all-at-once`;
/// 7. failures with more load around them (≥ 1.5× the other requests in their bucket, or the
///    connections open, and at least one more; at least 3 failures and 3 healthy requests):
///    `under-load`;
/// 8. 80 % of the failures within a quarter of the traffic's time, at three times the failure
///    rate of the rest: `clustered`;
/// 9. otherwise `sporadic`.
pub(crate) fn classify(f: &ShapeFacts) -> Kind {
    if f.failed == 0 {
        Kind::None
    } else if f.failed == 1 {
        Kind::Sporadic
    } else if f.ok == 0 {
        Kind::AllAtOnce
    } else if f.families.race * 2 > f.failed {
        Kind::Sporadic
    } else if f.burst() && f.mostly_slow() && (f.loaded() || f.late_connects > 0) {
        Kind::UnderLoad
    } else if f.burst() {
        Kind::AllAtOnce
    } else if f.loaded() {
        Kind::UnderLoad
    } else if f.clustered() {
        Kind::Clustered
    } else {
        Kind::Sporadic
    }
}

/// The shape and the numbers behind it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shape {
    pub kind: Kind,
    pub facts: ShapeFacts,
}

//! The shape's reason in words, and the times, durations and rates the report writes.

use super::attempts::Family;
use super::buckets::FamilyCounts;
use super::shape::{Kind, Shape, ShapeFacts};
use super::{DAY, HOUR, MIN, MS, SEC};
use crate::time;

impl Shape {
    /// Why, in words; `bucket_ns` is the width of the buckets the load was measured in.
    pub fn reason(&self, bucket_ns: i64) -> String {
        let f = &self.facts;
        let w = Phrases::new(f, bucket_ns);
        match self.kind {
            Kind::None => no_failure_reason(f),
            Kind::AllAtOnce if f.ok == 0 => {
                format!(
                    "every request failed, {} of {}, {}: nothing succeeded; {}",
                    f.failed, f.attempts, w.window, w.what
                )
            }
            Kind::AllAtOnce => format!(
                "{}, all in one burst {} in which {} succeeded; {}; {}",
                w.rate,
                w.window,
                if f.window_ok == 0 {
                    "no request".to_string()
                } else {
                    format!("only {} of {}", f.window_ok, f.window_attempts)
                },
                w.what,
                w.back
            ),
            Kind::UnderLoad if f.burst() => overload_reason(f, &w),
            Kind::UnderLoad => format!(
                "{} {}, where the load was highest: {}; the backend (or the path) fails when busy",
                w.rate, w.window, w.load
            ),
            Kind::Clustered => {
                let c = f.cluster.unwrap_or_default();
                format!(
                    "{}; {} of them between {} and {} ({} of the traffic's {}), {} of the requests \
                     there against {} elsewhere; not explained by load ({})",
                    w.rate,
                    c.failures,
                    w.clock(c.start_ns),
                    w.clock(c.end_ns),
                    duration(c.end_ns - c.start_ns),
                    duration(f.traffic.1 - f.traffic.0),
                    percent(c.failures, c.attempts),
                    percent(c.failures_outside, c.attempts_outside),
                    w.load
                )
            }
            Kind::Sporadic => sporadic_reason(f, &w),
        }
    }
}

/// The phrases the reasons are made of.
struct Phrases {
    /// Dates too when the traffic spans days.
    dated: bool,
    /// "3 of 120 requests failed (2.5 %)".
    rate: String,
    /// When the failures happened.
    window: String,
    /// The width of the buckets the load was measured in, in words.
    per: String,
    /// The load around failures and around healthy requests.
    load: String,
    /// When requests succeeded again.
    back: String,
    /// What the dominant family of failures says about the backend.
    what: &'static str,
}

impl Phrases {
    fn new(f: &ShapeFacts, bucket_ns: i64) -> Phrases {
        let dated = f.traffic.1 - f.traffic.0 >= DAY;
        let clock = |ns: i64| clock_dated(ns, dated);
        let rate = format!(
            "{} of {} failed ({})",
            f.failed,
            plural(f.attempts, "request"),
            percent(f.failed, f.attempts)
        );
        let window = if f.failed == 1 {
            format!("at {}", clock(f.first_ns))
        } else {
            format!(
                "between {} and {} ({})",
                clock(f.first_ns),
                clock(f.last_ns),
                duration(f.last_ns - f.first_ns)
            )
        };
        let per = duration(bucket_ns);
        let load = format!(
            "{:.1} other requests and {:.1} connections per {per} around a failure, {:.1} and {:.1} \
             around a healthy request",
            f.load.requests_at_failure,
            f.load.connections_at_failure,
            f.load.requests_at_success,
            f.load.connections_at_success
        );
        let back = match f.back_ns {
            Some(t) => format!("requests succeeded again from about {}", clock(t)),
            None => "nothing succeeded after it until the capture ended".to_string(),
        };
        let what = match dominant(&f.families) {
            Family::Cut => {
                "connections were refused or cut by the backend: the backend (process or host) was down or restarting"
            }
            Family::Slow => {
                "the backend did not answer (SYNs ignored, requests unanswered): it was down, hung or overwhelmed"
            }
            Family::Network => {
                "packets were lost, refused or reset between proxy and backend: the network path (a link, a \
                 router, a firewall) failed"
            }
            Family::Race => "keep-alive races: the proxy reused connections the backend was closing",
        };
        Phrases {
            dated,
            rate,
            window,
            per,
            load,
            back,
            what,
        }
    }

    fn clock(&self, ns: i64) -> String {
        clock_dated(ns, self.dated)
    }
}

/// "1 request", "3 requests".
fn plural(x: u64, what: &str) -> String {
    format!("{x} {what}{}", if x == 1 { "" } else { "s" })
}

/// [`Kind::None`]: how many requests, over how long, and those not counted as healthy.
fn no_failure_reason(f: &ShapeFacts) -> String {
    let mut s = format!("no request failed ({}", plural(f.attempts, "request"));
    if f.traffic.1 > f.traffic.0 {
        s.push_str(&format!(" over {}", duration(f.traffic.1 - f.traffic.0)));
    }
    if f.abandoned > 0 {
        s.push_str(&format!("; {} abandoned by the proxy", f.abandoned));
    }
    if f.not_judged > 0 {
        s.push_str(&format!("; {} not judged", f.not_judged));
    }
    s.push(')');
    s
}

/// [`Kind::UnderLoad`] in one burst: the backend stopped keeping up.
fn overload_reason(f: &ShapeFacts, w: &Phrases) -> String {
    let mut s = format!(
        "{}, in one burst {}, mostly timeouts: the backend stopped keeping up \
         (overload: a full accept queue, every worker busy)",
        w.rate, w.window
    );
    if f.late_connects > 0 {
        s.push_str(&format!(
            "; {} got through only after sending their SYN again (the accept queue was full)",
            plural(f.late_connects, "connection")
        ));
    }
    if f.loaded() {
        s.push_str(&format!("; {}", w.load));
    }
    s.push_str(&format!("; {}", w.back));
    s
}

/// [`Kind::Sporadic`]: one at a time, with a hint at the cause from the families.
fn sporadic_reason(f: &ShapeFacts, w: &Phrases) -> String {
    let (rate, window) = (&w.rate, &w.window);
    let hint = match dominant(&f.families) {
        Family::Network => {
            "the path between proxy and backend (loss, resets, a router or firewall refusing): \
             hardware, network"
        }
        Family::Race => {
            "keep-alive races: each a request that met the backend's idle close, a matter of \
             that request's timing, not of the backend's state or load (the proxy's idle \
             timeout must be below the backend's)"
        }
        _ if f.verdicts > 1 => {
            "individual requests fail in different ways: see what they have in common below"
        }
        _ => "individual requests fail: see what they have in common below",
    };
    if f.failed == 1 {
        let hint = match dominant(&f.families) {
            Family::Cut | Family::Slow => "one failure makes no pattern in time",
            _ => hint,
        };
        format!(
            "a single failure, 1 of {} ({}), {window}: {hint}",
            plural(f.attempts, "request"),
            percent(f.failed, f.attempts)
        )
    } else if dominant(&f.families) == Family::Race {
        format!("{rate} {window}: {hint}")
    } else if f.failed < 3 || f.ok < 3 {
        format!("{rate} {window}, one at a time among healthy requests: {hint}")
    } else {
        format!(
            "{rate} {window}, one at a time among healthy requests; not one moment, nor \
             clearly load ({:.1} connections open and {:.1} other requests per {} around \
             a failure, {:.1} and {:.1} around a healthy request): {hint}",
            f.load.connections_at_failure,
            f.load.requests_at_failure,
            w.per,
            f.load.connections_at_success,
            f.load.requests_at_success
        )
    }
}

/// The family most failures belong to (ties: cut, slow, network, race).
fn dominant(f: &FamilyCounts) -> Family {
    let all = [
        (f.cut, Family::Cut),
        (f.slow, Family::Slow),
        (f.network, Family::Network),
        (f.race, Family::Race),
    ];
    let mut best = all[0];
    for x in all {
        if x.0 > best.0 {
            best = x;
        }
    }
    best.1
}

/// `n/of` as a percentage: "6.7 %", "100 %", "0.05 %".
pub(crate) fn percent(n: u64, of: u64) -> String {
    if of == 0 {
        return "0 %".to_string();
    }
    let p = n as f64 * 100.0 / of as f64;
    if n == of || p >= 10.0 {
        format!("{p:.0} %")
    } else if p >= 0.1 {
        format!("{p:.1} %")
    } else {
        format!("{p:.2} %")
    }
}

/// Time of day, UTC, `HH:MM:SS.mmm`; with the date (`2026-12-04 HH:MM:SS.mmm`) when `dated`.
pub(crate) fn clock_dated(ns: i64, dated: bool) -> String {
    let clock = time::time_of_day(ns);
    if !dated {
        return clock;
    }
    // The date of RFC 3339's `2026-12-04T10:00:00.123456Z`.
    let stamp = time::rfc3339(ns);
    let date = stamp.split('T').next().unwrap_or_default();
    format!("{date} {clock}")
}

/// A duration in words: "250 ms", "1.7 s", "4 min 10 s", "5 h 3 min", "2 d 4 h".
pub(crate) fn duration(ns: i64) -> String {
    let ns = ns.max(0);
    if ns < 10 * MS {
        format!("{:.1} ms", ns as f64 / MS as f64)
    } else if ns < SEC {
        format!("{} ms", ns / MS)
    } else if ns < MIN {
        let s = ns as f64 / SEC as f64;
        if s < 10.0 {
            format!("{s:.1} s")
        } else {
            format!("{s:.0} s")
        }
    } else {
        let (big, small, b, s) = if ns < HOUR {
            (MIN, SEC, "min", "s")
        } else if ns < DAY {
            (HOUR, MIN, "h", "min")
        } else {
            (DAY, HOUR, "d", "h")
        };
        match ns % big / small {
            0 => format!("{} {b}", ns / big),
            r => format!("{} {b} {r} {s}", ns / big),
        }
    }
}

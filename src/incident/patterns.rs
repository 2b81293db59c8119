//! What failed requests have in common: request attempts (see `timeline`) counted per verdict
//! by method, path prefix, request body size and connection reuse, and the sentences that say
//! at a glance when all failures share one of them ("every failure was a POST").
//!
//! Bounded: a dimension keeps at most a fixed number of values (the first seen); later values
//! are counted under "(other)".

use indexmap::IndexMap;

use super::timeline::{self, Attempt, Reuse, VERDICTS, percent};
use crate::diagnose::Verdict;

/// Values kept per dimension before the rest go to [`OTHER`].
const MAX_METHODS: usize = 16;
const MAX_PATHS: usize = 32;
/// Values of the second path level that still group requests.
const MAX_SHOWN_PATH2: usize = 12;
/// Characters of a path segment kept.
const MAX_SEGMENT: usize = 48;

/// The value of attempts beyond a dimension's cap.
pub(crate) const OTHER: &str = "(other)";
/// The value of attempts without an HTTP request (a failed connect, TLS, nothing sent).
pub(crate) const NO_REQUEST: &str = "(no request seen)";

/// Body size classes, in order, with the lower bound of each.
const SIZES: [(&str, u64); 5] = [
    ("none", 0),
    ("1 B–1 KiB", 1),
    ("1–64 KiB", 1024),
    ("64 KiB–1 MiB", 64 * 1024),
    ("≥ 1 MiB", 1024 * 1024),
];
const SIZE_UNKNOWN: &str = "unknown (head cut)";

/// One value of a dimension: attempts per verdict (`Ok` at index 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub value: String,
    pub by_verdict: [u64; VERDICTS],
}

impl Row {
    pub fn requests(&self) -> u64 {
        self.by_verdict.iter().sum()
    }

    pub(crate) fn failed(&self) -> u64 {
        timeline::failures(&self.by_verdict)
    }

    pub(crate) fn ok(&self) -> u64 {
        self.by_verdict[Verdict::Ok as usize]
    }
}

/// A dimension's values, in a stable order: by failures, then requests, then first seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Breakdown {
    /// "method", "path", "body_size" or "reuse".
    pub dimension: &'static str,
    pub rows: Vec<Row>,
}

#[derive(Clone, Debug, Default)]
struct Table {
    rows: IndexMap<String, [u64; VERDICTS]>,
    cap: usize,
}

impl Table {
    fn new(cap: usize) -> Table {
        Table {
            rows: IndexMap::new(),
            cap,
        }
    }

    fn add(&mut self, value: &str, v: Verdict) {
        if let Some(r) = self.rows.get_mut(value) {
            r[v as usize] += 1;
            return;
        }
        let key = if self.rows.len() < self.cap { value } else { OTHER };
        self.rows.entry(key.to_string()).or_insert([0; VERDICTS])[v as usize] += 1;
    }

    fn rows(&self, sort: bool) -> Vec<Row> {
        let mut rows: Vec<Row> = self
            .rows
            .iter()
            .map(|(k, v)| Row {
                value: k.clone(),
                by_verdict: *v,
            })
            .collect();
        if sort {
            // Stable: equal rows keep the order they were first seen in.
            rows.sort_by_key(|r| (r.value == OTHER, std::cmp::Reverse((r.failed(), r.requests()))));
        }
        rows
    }
}

/// The accumulator.
#[derive(Clone, Debug)]
pub struct Patterns {
    method: Table,
    /// First path segment, and the first two.
    path: Table,
    path2: Table,
    size: [[u64; VERDICTS]; SIZES.len() + 2],
    reuse: [[u64; VERDICTS]; 3],
}

impl Default for Patterns {
    fn default() -> Patterns {
        Patterns {
            method: Table::new(MAX_METHODS),
            path: Table::new(MAX_PATHS),
            path2: Table::new(MAX_PATHS),
            size: [[0; VERDICTS]; SIZES.len() + 2],
            reuse: [[0; VERDICTS]; 3],
        }
    }
}

/// Reuse classes, in the order of `Patterns::reuse`.
const REUSE: [&str; 3] = [
    "new connection",
    "reused connection",
    "connection older than the capture",
];

impl Patterns {
    pub fn add(&mut self, a: &Attempt<'_>) {
        let v = a.verdict;
        match a.method {
            Some(m) => self.method.add(&method_label(m), v),
            None => self.method.add(NO_REQUEST, v),
        }
        let (p1, p2) = match (a.method, a.target) {
            (Some(_), Some(t)) => path_prefixes(t),
            _ => (NO_REQUEST.to_string(), NO_REQUEST.to_string()),
        };
        self.path.add(&p1, v);
        self.path2.add(&p2, v);
        let size = match (a.method, a.body_bytes) {
            (None, _) => SIZES.len() + 1,
            (Some(_), None) => SIZES.len(),
            (Some(_), Some(n)) => SIZES.iter().rposition(|(_, lo)| n >= *lo).unwrap_or(0),
        };
        self.size[size][v as usize] += 1;
        let reuse = match a.reuse {
            Reuse::New => 0,
            Reuse::Reused => 1,
            Reuse::Unknown => 2,
        };
        self.reuse[reuse][v as usize] += 1;
    }

    /// The breakdowns: method, path (the first two segments when every request shares the
    /// first), body size, reuse. Values without any attempt are left out.
    pub fn finish(&self) -> Vec<Breakdown> {
        // The second level when the first says nothing (one value) and the second groups the
        // requests (a few values, none past the cap).
        let path = if self.path.rows.len() == 1 && (2..=MAX_SHOWN_PATH2).contains(&self.path2.rows.len()) {
            &self.path2
        } else {
            &self.path
        };
        let fixed = |labels: &[&str], counts: &[[u64; VERDICTS]]| -> Vec<Row> {
            labels
                .iter()
                .zip(counts)
                .filter(|(_, c)| c.iter().any(|&n| n > 0))
                .map(|(l, c)| Row {
                    value: l.to_string(),
                    by_verdict: *c,
                })
                .collect()
        };
        let mut size_labels: Vec<&str> = SIZES.iter().map(|(l, _)| *l).collect();
        size_labels.push(SIZE_UNKNOWN);
        size_labels.push(NO_REQUEST);
        vec![
            Breakdown {
                dimension: "method",
                rows: self.method.rows(true),
            },
            Breakdown {
                dimension: "path",
                rows: path.rows(true),
            },
            Breakdown {
                dimension: "body_size",
                rows: fixed(&size_labels, &self.size),
            },
            Breakdown {
                dimension: "reuse",
                rows: fixed(&REUSE, &self.reuse),
            },
        ]
    }
}

/// A method as a label: as sent, cut, control characters replaced.
fn method_label(m: &str) -> String {
    m.chars().take(16).map(visible).collect()
}

/// Control characters (a terminal escape in a hostile capture) become '?'.
fn visible(c: char) -> char {
    if c.is_control() { '?' } else { c }
}

/// The first path segment and the first two of a request target, as prefixes: "/ok/" when the
/// path goes on, "/favicon.ico" when it ends there, "/" for the root. The query is left out; an
/// absolute-form target ("http://host/x") is read by its path; "*" stays; anything else
/// (CONNECT's host:port) is "(other form)".
pub(crate) fn path_prefixes(target: &str) -> (String, String) {
    let path = if let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    {
        rest.find('/').map_or("/", |i| &rest[i..])
    } else if target.starts_with('/') || target == "*" {
        target
    } else {
        return ("(other form)".to_string(), "(other form)".to_string());
    };
    if path == "*" {
        return ("*".to_string(), "*".to_string());
    }
    let path = path.split(['?', '#']).next().unwrap_or("/");
    let segments: Vec<&str> = path.split('/').skip(1).take(3).collect();
    let prefix = |n: usize| {
        let mut p = String::from("/");
        for (i, seg) in segments.iter().take(n).enumerate() {
            p.extend(seg.chars().take(MAX_SEGMENT).map(visible));
            if i + 1 < segments.len() {
                p.push('/');
            } else {
                break;
            }
        }
        p
    };
    (prefix(1), prefix(2))
}

/// How a dimension's value reads after "every failure ...".
fn phrase(dimension: &str, values: &[&str]) -> String {
    let list = values.join(" or ");
    match dimension {
        "method" => format!("was a {list} request"),
        "path" => format!("was to {list}"),
        "body_size" if values == ["none"] => "had no request body".to_string(),
        "body_size" => format!("had a request body of {list}"),
        _ => format!("was on a {list}"),
    }
}

/// Sentences that say what the failures have in common, for at least two failures:
/// - every failure falls in one or two values of a dimension that also has values with healthy
///   requests only ("every failure was on a reused connection (41 % of requests were)");
/// - a value with at least two requests, every one failed, while others succeeded ("every
///   request to /empty/ failed (2 of 2)").
///
/// For one failure among other requests: the one sentence that describes it.
pub fn highlights(breakdowns: &[Breakdown]) -> Vec<String> {
    let failed: u64 = breakdowns
        .first()
        .map_or(0, |b| b.rows.iter().map(Row::failed).sum());
    let total: u64 = breakdowns
        .first()
        .map_or(0, |b| b.rows.iter().map(Row::requests).sum());
    let mut out = Vec::new();
    if failed == 0 {
        return out;
    }
    if failed == 1 {
        if total < 2 {
            return out;
        }
        let mut parts = Vec::new();
        for b in breakdowns {
            if let Some(r) = b.rows.iter().find(|r| r.failed() > 0) {
                if r.value != NO_REQUEST && r.value != OTHER {
                    parts.push(phrase(b.dimension, &[&r.value]));
                }
            }
        }
        if !parts.is_empty() {
            out.push(format!("the one failure {}", parts.join(", ")));
        }
        return out;
    }
    for b in breakdowns {
        let failing: Vec<&Row> = b.rows.iter().filter(|r| r.failed() > 0).collect();
        let healthy_elsewhere = b.rows.iter().any(|r| r.failed() == 0 && r.ok() > 0);
        let failing_requests: u64 = failing.iter().map(|r| r.requests()).sum();
        if (1..=2).contains(&failing.len())
            && healthy_elsewhere
            && failing.iter().all(|r| r.value != OTHER && r.value != NO_REQUEST)
        {
            let values: Vec<&str> = failing.iter().map(|r| r.value.as_str()).collect();
            let were = match b.dimension {
                "body_size" => "did",
                _ => "were",
            };
            out.push(format!(
                "every failure {} ({} of requests {were})",
                phrase(b.dimension, &values),
                percent(failing_requests, total)
            ));
            continue;
        }
        if !healthy_elsewhere {
            continue;
        }
        let always: Vec<String> = b
            .rows
            .iter()
            .filter(|r| {
                r.requests() >= 2 && r.failed() == r.requests() && r.value != OTHER && r.value != NO_REQUEST
            })
            .take(4)
            .map(|r| format!("{} ({} of {})", r.value, r.failed(), r.requests()))
            .collect();
        if !always.is_empty() {
            let what = match b.dimension {
                "method" => "request with method",
                "path" => "request to",
                "body_size" => "request with a body of",
                _ => "request on a",
            };
            out.push(format!("every {what} {} failed", always.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefixes_of_targets() {
        let p = |t: &str| path_prefixes(t);
        assert_eq!(
            p("/ok/busy-12-a?size=4600"),
            ("/ok/".into(), "/ok/busy-12-a".into())
        );
        assert_eq!(p("/"), ("/".into(), "/".into()));
        assert_eq!(p("/favicon.ico"), ("/favicon.ico".into(), "/favicon.ico".into()));
        assert_eq!(p("/api/v1/users/7"), ("/api/".into(), "/api/v1/".into()));
        assert_eq!(p("/empty?x=/a/b"), ("/empty".into(), "/empty".into()));
        assert_eq!(p("http://h:8080/a/b"), ("/a/".into(), "/a/b".into()));
        assert_eq!(p("http://h:8080"), ("/".into(), "/".into()));
        assert_eq!(p("*"), ("*".into(), "*".into()));
        assert_eq!(p("h:443"), ("(other form)".into(), "(other form)".into()));
        assert_eq!(p("/a\u{1b}[2J/b"), ("/a?[2J/".into(), "/a?[2J/b".into()));
        let long = format!("/{}/x", "a".repeat(100));
        assert_eq!(p(&long).0.chars().count(), MAX_SEGMENT + 2);
    }

    fn att(
        method: Option<&'static str>,
        target: &'static str,
        body: Option<u64>,
        reuse: Reuse,
        v: Verdict,
    ) -> Attempt<'static> {
        Attempt {
            at_ns: 0,
            verdict: v,
            method,
            target: Some(target),
            body_bytes: body,
            reuse,
        }
    }

    #[test]
    fn body_size_classes_at_their_bounds() {
        let mut p = Patterns::default();
        for n in [0, 1, 1023, 1024, 65_535, 65_536, 1_048_575, 1_048_576] {
            p.add(&att(Some("POST"), "/u", Some(n), Reuse::New, Verdict::Ok));
        }
        p.add(&att(Some("POST"), "/u", None, Reuse::New, Verdict::Ok));
        p.add(&att(None, "/u", None, Reuse::New, Verdict::ConnectRefused));
        let b = p.finish();
        let sizes: Vec<(String, u64)> = b[2]
            .rows
            .iter()
            .map(|r| (r.value.clone(), r.requests()))
            .collect();
        let want: Vec<(String, u64)> = [
            ("none", 1),
            ("1 B–1 KiB", 2),
            ("1–64 KiB", 2),
            ("64 KiB–1 MiB", 2),
            ("≥ 1 MiB", 1),
            (SIZE_UNKNOWN, 1),
            (NO_REQUEST, 1),
        ]
        .iter()
        .map(|(l, n)| (l.to_string(), *n))
        .collect();
        assert_eq!(sizes, want);
    }

    #[test]
    fn only_big_posts_fail() {
        let mut p = Patterns::default();
        for _ in 0..20 {
            p.add(&att(Some("GET"), "/a/x", Some(0), Reuse::Reused, Verdict::Ok));
            p.add(&att(Some("POST"), "/a/y", Some(5000), Reuse::Reused, Verdict::Ok));
        }
        for _ in 0..3 {
            p.add(&att(
                Some("POST"),
                "/a/y",
                Some(2 << 20),
                Reuse::New,
                Verdict::BackendClosedDuringRequest,
            ));
        }
        let h = highlights(&p.finish());
        // 43 requests: 23 POSTs (53.5 %), 3 of them over 1 MiB and on new connections (7.0 %).
        assert_eq!(
            h,
            [
                "every failure was a POST request (53 % of requests were)",
                "every failure was to /a/y (53 % of requests were)",
                "every failure had a request body of ≥ 1 MiB (7.0 % of requests did)",
                "every failure was on a new connection (7.0 % of requests were)",
            ]
        );
    }

    #[test]
    fn caps_hold_and_the_rest_is_other() {
        let mut p = Patterns::default();
        for i in 0..1000 {
            let t: &'static str = Box::leak(format!("/p{i}/x").into_boxed_str());
            p.add(&att(Some("GET"), t, Some(0), Reuse::New, Verdict::Ok));
        }
        let b = p.finish();
        assert_eq!(b[1].rows.len(), MAX_PATHS + 1);
        assert_eq!(b[1].rows.last().unwrap().value, OTHER);
        assert_eq!(b[1].rows.iter().map(Row::requests).sum::<u64>(), 1000);
    }
}

//! The account at the end of a run ([`LogsSummary`]): every kept line with where it ended up
//! ([`Placed`]), the reason of each line tied to no connection ([`Unmatched`]), and a hint when
//! the log's times look like another zone than the one given.

use std::collections::HashMap;

use super::SECOND;
use super::matcher::{Matcher, TOL_NS};
use super::read::{Event, FileStats, LogLine};
use super::says::Says;
use crate::diagnose::Verdict;
use crate::incident::window;

/// Why a line is tied to no connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmatched {
    /// Stable code: `not-about-a-backend-connection`, `no-connection-attempted`,
    /// `outside-window`, `no-capture`, `before-capture`, `after-capture`,
    /// `no-connection-to-backend`, `no-fitting-connection`, `no-connection-at-that-time`.
    pub code: &'static str,
    /// The reason in words.
    pub words: String,
}

/// Where an event ended up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Tied to this connection (report id) with this verdict.
    Matched {
        id: String,
        verdict: Option<Verdict>,
        fits: bool,
    },
    Unmatched(Unmatched),
}

/// A line of the logs with where it ended up (the report's table of proxy log lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub line: LogLine,
    pub outcome: Outcome,
}

/// What the capture covered, for the reasons of lines left unmatched.
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureSpan {
    /// First and last packet of the first capture (the proxy's), on its clock.
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
}

/// The whole account of the logs, at the end of a run.
#[derive(Clone, Debug, Default)]
pub struct LogsSummary {
    pub files: Vec<FileStats>,
    pub tz_offset_s: i32,
    pub lines_read: u64,
    /// Lines at `warn` or above.
    pub errors: u64,
    /// Lines kept for matching: errors, and notes (info) about backend connections.
    pub kept: u64,
    /// Kept lines tied to a connection, and not.
    pub matched: u64,
    pub unmatched: u64,
    /// Unmatched lines per reason code, in order of first appearance.
    pub by_reason: Vec<(&'static str, u64)>,
    /// Every kept line (error and notes) with where it ended up, in the order of the files and
    /// their lines (the first [`MAX_PLACED`] in time order); lines outside the window are
    /// counted in `by_reason`, not listed.
    pub placed: Vec<Placed>,
    /// Lines not kept (past [`super::read::MAX_KEPT_LINES`]).
    pub dropped: u64,
    /// A sentence when the log's times look like another zone than the one given.
    pub hint: Option<String>,
}

/// Lines listed in the summary's table.
pub(crate) const MAX_PLACED: usize = 1000;

impl Matcher {
    /// The account at the end: every line with where it ended up, unmatched ones with a reason.
    pub fn finish(self, span: CaptureSpan) -> LogsSummary {
        let mut s = LogsSummary {
            tz_offset_s: self.logs.tz_offset_s,
            lines_read: self.logs.files.iter().map(|f| f.lines).sum(),
            errors: self.logs.files.iter().map(|f| f.errors).sum(),
            kept: self.logs.lines.len() as u64 + self.logs.outside_window,
            dropped: self.logs.dropped,
            ..LogsSummary::default()
        };
        // Lines outside the window were counted, not kept.
        if self.logs.outside_window > 0 {
            s.unmatched += self.logs.outside_window;
            s.by_reason.push(("outside-window", self.logs.outside_window));
        }
        let mut outside_capture = Vec::new();
        let mut any_matched = false;
        for (i, ev) in self.logs.events.iter().enumerate() {
            let taken = self.taken[i]
                .clone()
                .or_else(|| self.tentative[i].clone().map(|(id, v, _)| (id, v, false)));
            let outcome = match &taken {
                Some((id, verdict, fits)) => {
                    any_matched = true;
                    Outcome::Matched {
                        id: id.clone(),
                        verdict: *verdict,
                        fits: *fits,
                    }
                }
                None => {
                    let r = self.reason(ev, &self.near[i], span);
                    if matches!(r.code, "before-capture" | "after-capture") {
                        outside_capture.push(ev.time_ns);
                    }
                    Outcome::Unmatched(r)
                }
            };
            for &l in &ev.lines {
                match &outcome {
                    Outcome::Matched { .. } => s.matched += 1,
                    Outcome::Unmatched(r) => {
                        s.unmatched += 1;
                        match s.by_reason.iter_mut().find(|(c, _)| *c == r.code) {
                            Some((_, n)) => *n += 1,
                            None => s.by_reason.push((r.code, 1)),
                        }
                    }
                }
                if s.placed.len() < MAX_PLACED {
                    s.placed.push(Placed {
                        line: self.logs.lines[l].clone(),
                        outcome: outcome.clone(),
                    });
                }
            }
        }
        if !any_matched {
            s.hint = zone_hint(&outside_capture, span, self.logs.tz_offset_s);
        }
        // In the order of the files given, then of their lines.
        let file_order: HashMap<&str, usize> = self
            .logs
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.file.as_str(), i))
            .collect();
        s.placed
            .sort_by_key(|p| (file_order.get(p.line.file.as_str()).copied(), p.line.line));
        s.files = self.logs.files;
        s
    }

    fn reason(&self, ev: &Event, near: &[(String, Option<Verdict>)], span: CaptureSpan) -> Unmatched {
        let r = |code, words: String| Unmatched { code, words };
        let at = crate::time::rfc3339(ev.time_ns);
        match ev.says {
            Says::Other => {
                return r(
                    "not-about-a-backend-connection",
                    "not about a backend connection (startup, configuration or the client side)".into(),
                );
            }
            Says::NotTried => {
                return r(
                    "no-connection-attempted",
                    "the proxy attempted no connection (it had marked the backend down)".into(),
                );
            }
            _ => {}
        }
        if !self.window.contains(ev.time_ns, ev.precision_ns) {
            return r("outside-window", "outside the --since/--until window".into());
        }
        let (Some(first), Some(last)) = (span.first_ns, span.last_ns) else {
            return r("no-capture", "the capture holds no packet".into());
        };
        if ev.time_ns + ev.precision_ns + TOL_NS < first {
            return r(
                "before-capture",
                format!(
                    "logged at {} UTC, before the capture started ({} UTC)",
                    crate::time::time_of_day(ev.time_ns),
                    crate::time::time_of_day(first)
                ),
            );
        }
        if ev.time_ns > last + TOL_NS {
            return r(
                "after-capture",
                format!(
                    "logged at {} UTC, after the capture ended ({} UTC)",
                    crate::time::time_of_day(ev.time_ns),
                    crate::time::time_of_day(last)
                ),
            );
        }
        if let Some(b) = &ev.backend
            && !self.servers.iter().any(|s| b.matches(*s))
        {
            return r(
                "no-connection-to-backend",
                format!(
                    "no connection to {} in the capture (the error was elsewhere, or the capture's filter or --backend left it out)",
                    b.words()
                ),
            );
        }
        if !near.is_empty() {
            let list: Vec<String> = near
                .iter()
                .map(|(id, v)| format!("connection {id} ({})", v.map_or("not judged", Verdict::label)))
                .collect();
            return r(
                "no-fitting-connection",
                format!(
                    "{} open then, but its verdict or requests do not go with this line ({}), or another line of the same kind is tied to it",
                    list.join(", "),
                    ev.says.label()
                ),
            );
        }
        r(
            "no-connection-at-that-time",
            format!(
                "no connection{} in the capture at {at}",
                ev.backend
                    .as_ref()
                    .map_or(String::new(), |b| format!(" to {}", b.words()))
            ),
        )
    }
}

/// When no line matched and lines fall outside the capture by about a whole number of quarter
/// hours, the log was probably written in another zone: say which offset would fit.
fn zone_hint(times: &[i64], span: CaptureSpan, tz: i32) -> Option<String> {
    let (first, last) = (span.first_ns?, span.last_ns?);
    if times.is_empty() {
        return None;
    }
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let mid = first + (last - first) / 2;
    let quarter = 900 * SECOND;
    let shift = ((mid - median) as f64 / quarter as f64).round() as i64 * quarter;
    if shift == 0 || shift.abs() > 26 * 3600 * SECOND {
        return None;
    }
    let inside = sorted
        .iter()
        .filter(|&&t| (first - SECOND..=last + SECOND).contains(&(t + shift)))
        .count();
    (inside * 2 >= sorted.len()).then(|| {
        let suggested = tz as i64 - shift / SECOND;
        format!(
            "the log's times fall outside the capture, {} apart from it: if the proxy's clock is not {} (the zone the log was read in), try --log-tz {}",
            crate::time::duration_words(shift.abs() as f64 / 1e6),
            window::offset_words(tz),
            window::offset_words(suggested as i32)
        )
    })
}

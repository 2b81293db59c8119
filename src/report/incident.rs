//! The incident view in the report: [`IncidentBuilder`] feeds each judged connection to the
//! `incident` accumulators and turns their result into the model's [`Incident`] (its timeline and
//! breakdowns by `timeline_report` and `breakdown_report`). Then the "Pattern" section in each
//! format: `write_text` (the shape, first and last failure, two sparklines, highlights, breakdowns
//! in a line each), `write_markdown` (tables of the buckets with failures and of the breakdowns)
//! and `write_html` (the same with an SVG `plot` of the requests over time: healthy ones above,
//! failures stacked per verdict below, on a fixed layout; no script).

use std::fmt::Write as _;

use indexmap::IndexMap;

use super::html::esc;
use super::markdown::{cell, text as md_text};
use super::text::{Style, write_wrapped};
use super::{
    BreakdownReport, BreakdownRow, BucketReport, EvidenceItem, FailureRef, Incident, IncidentShape, Report,
    SideInfo, TimelineReport, clock_time, rfc3339,
};
use crate::diagnose::{Diagnosis, Outcome, Verdict};
use crate::incident::patterns::{self, Patterns};
use crate::incident::timeline::{self, FailureMark, Kind, Mark, Timeline, VERDICTS};
use crate::pair::ClockOffset;
use crate::pipeline::Conn;

/// Feeds judged connections to the timeline and the patterns.
#[derive(Clone, Debug)]
pub(crate) struct IncidentBuilder {
    sides: Vec<SideInfo>,
    timeline: Timeline,
    patterns: Patterns,
}

impl IncidentBuilder {
    pub(crate) fn new(sides: Vec<SideInfo>) -> IncidentBuilder {
        IncidentBuilder {
            sides,
            timeline: Timeline::default(),
            patterns: Patterns::default(),
        }
    }

    /// A judged connection (`id`: its number in the report). Connections without a diagnosis
    /// are not counted.
    pub(crate) fn add(
        &mut self,
        proxy: Option<&Conn>,
        backend: Option<&Conn>,
        diagnosis: Option<&Diagnosis>,
        clock: Option<ClockOffset>,
        id: u64,
    ) {
        let Some(d) = diagnosis else { return };
        let Some(f) = timeline::facts(proxy, backend, d, clock, id) else {
            return;
        };
        self.timeline.add(&f);
        for a in &f.attempts {
            self.patterns.add(a);
        }
    }

    pub(crate) fn finish(mut self) -> Incident {
        let t = std::mem::take(&mut self.timeline).finish();
        let count = |o: Outcome| -> u64 {
            Verdict::ALL
                .iter()
                .filter(|v| v.outcome() == o)
                .map(|&v| t.totals[v as usize])
                .sum()
        };
        let requests: u64 = t.totals.iter().sum();
        let failed = count(Outcome::Failed);
        let breakdowns = self.patterns.finish();
        let highlights = patterns::highlights(&breakdowns);
        let f = &t.shape.facts;
        Incident {
            requests,
            ok: count(Outcome::Ok),
            failed,
            abandoned: count(Outcome::Abandoned),
            not_judged: count(Outcome::NotJudged),
            failed_percent: percent(failed, requests),
            shape: IncidentShape {
                kind: t.shape.kind.label().to_string(),
                reason: t.shape.reason(t.bucket_ns),
                window_ok: f.window_ok,
                window_requests: f.window_attempts,
                late_connects: f.late_connects,
                requests_around_failure: round2(f.load.requests_at_failure),
                requests_around_success: round2(f.load.requests_at_success),
                connections_around_failure: round2(f.load.connections_at_failure),
                connections_around_success: round2(f.load.connections_at_success),
            },
            first_failure: t.first_failure.as_ref().map(|m| self.failure_ref(m)),
            last_failure: t.last_failure.as_ref().map(|m| self.failure_ref(m)),
            timeline: timeline_report(&t),
            breakdowns: breakdowns.iter().map(breakdown_report).collect(),
            highlights,
        }
    }

    fn failure_ref(&self, m: &FailureMark) -> FailureRef {
        FailureRef {
            connection: m.id.to_string(),
            verdict: m.verdict,
            blame: m.blame,
            time: rfc3339(m.at_ns),
            request: m.first.as_ref().map(|e| self.evidence(e)),
            failure: m.last.as_ref().map(|e| self.evidence(e)),
        }
    }

    fn evidence(&self, e: &Mark) -> EvidenceItem {
        let files = self
            .sides
            .iter()
            .find(|s| s.side == e.side)
            .map_or(&[][..], |s| s.files.as_slice());
        EvidenceItem {
            capture: e.side.name().to_string(),
            frame: e.frame.frame as u64,
            what: e.what.clone(),
            time: rfc3339(e.ts_ns),
            file: (files.len() > 1).then(|| files.get(e.frame.file as usize).cloned().unwrap_or_default()),
        }
    }
}

/// The model's timeline: each bucket's counts.
fn timeline_report(t: &timeline::TimelineSummary) -> TimelineReport {
    TimelineReport {
        bucket_ms: (t.bucket_ns / 1_000_000).max(1) as u64,
        buckets: t
            .buckets
            .iter()
            .map(|b| {
                let c = &b.cell;
                let (ok, failed, abandoned, not_judged) = outcomes(&c.by_verdict);
                BucketReport {
                    start: rfc3339(b.start_ns),
                    requests: c.attempts(),
                    ok,
                    failed,
                    abandoned,
                    not_judged,
                    by_verdict: not_ok(&c.by_verdict),
                    connections: b.active,
                    late_connects: c.late,
                }
            })
            .collect(),
    }
}

/// The model's breakdown: each value's counts.
fn breakdown_report(b: &patterns::Breakdown) -> BreakdownReport {
    BreakdownReport {
        dimension: b.dimension.to_string(),
        rows: b
            .rows
            .iter()
            .map(|r| {
                let (ok, failed, abandoned, not_judged) = outcomes(&r.by_verdict);
                BreakdownRow {
                    value: r.value.clone(),
                    requests: r.requests(),
                    ok,
                    failed,
                    abandoned,
                    not_judged,
                    failed_percent: percent(failed, r.requests()),
                    by_verdict: not_ok(&r.by_verdict),
                }
            })
            .collect(),
    }
}

fn percent(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        round2(n as f64 * 100.0 / of as f64)
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// (ok, failed, abandoned, not judged) of counts per verdict.
fn outcomes(by_verdict: &[u64; VERDICTS]) -> (u64, u64, u64, u64) {
    let mut o = (0, 0, 0, 0);
    for v in Verdict::ALL {
        let n = by_verdict[v as usize];
        match v.outcome() {
            Outcome::Ok => o.0 += n,
            Outcome::Failed => o.1 += n,
            Outcome::Abandoned => o.2 += n,
            Outcome::NotJudged => o.3 += n,
        }
    }
    o
}

fn not_ok(by_verdict: &[u64; VERDICTS]) -> IndexMap<Verdict, u64> {
    Verdict::ALL
        .iter()
        .filter(|&&v| v != Verdict::Ok && by_verdict[v as usize] > 0)
        .map(|&v| (v, by_verdict[v as usize]))
        .collect()
}

/// "100 ms", "1 s", "5 min", "1 h", "1 d".
fn width_words(ms: u64) -> String {
    match ms {
        m if m >= 86_400_000 && m % 86_400_000 == 0 => format!("{} d", m / 86_400_000),
        m if m >= 3_600_000 && m % 3_600_000 == 0 => format!("{} h", m / 3_600_000),
        m if m >= 60_000 && m % 60_000 == 0 => format!("{} min", m / 60_000),
        m if m >= 1000 && m % 1000 == 0 => format!("{} s", m / 1000),
        m => format!("{m} ms"),
    }
}

/// A bucket's start as the section shows it: with milliseconds when buckets are shorter than a
/// second, with the date (`12-04 18:00`) when they are half an hour or longer (the traffic spans
/// days).
fn bucket_time(rfc: &str, bucket_ms: u64) -> String {
    let t = clock_time(rfc);
    if bucket_ms < 1000 {
        t.get(..12).unwrap_or(t).to_string()
    } else if bucket_ms < 30 * 60 * 1000 {
        t.get(..8).unwrap_or(t).to_string()
    } else {
        format!("{} {}", rfc.get(5..10).unwrap_or(""), t.get(..5).unwrap_or(t))
    }
}

/// Does the traffic span days (times then carry their date)?
fn dated(i: &Incident) -> bool {
    i.timeline.bucket_ms >= 30 * 60 * 1000
}

/// Is the timeline worth drawing: a failure, among at least three requests?
pub(crate) fn shows_timeline(i: &Incident) -> bool {
    i.failed > 0 && i.requests >= 3
}

/// The first and last failure with their names; one "failure" when they are the same.
fn failures(i: &Incident) -> [(&'static str, Option<&FailureRef>); 2] {
    if i.first_failure == i.last_failure {
        [("failure", i.first_failure.as_ref()), ("", None)]
    } else {
        [
            ("first failure", i.first_failure.as_ref()),
            ("last failure", i.last_failure.as_ref()),
        ]
    }
}

fn capitalized(s: &str) -> String {
    let mut c = s.chars();
    c.next().map_or(String::new(), |f| {
        f.to_uppercase().collect::<String>() + c.as_str()
    })
}

/// One failure in a line: "connection 7 backend-empty-reply, 18:16:59.591919, proxy #17 → #97"
/// (with the date when `dated`).
fn failure_line(f: &FailureRef, dated: bool) -> String {
    let when = if dated {
        super::date_time(&f.time)
    } else {
        clock_time(&f.time).to_string()
    };
    let mut l = format!("connection {} {}, {when}", f.connection, f.verdict);
    if let Some(e) = &f.request {
        let _ = write!(l, ", {} #{}", e.capture, e.frame);
        match &f.failure {
            Some(x) if x.capture == e.capture && x.frame != e.frame => {
                let _ = write!(l, " → #{}", x.frame);
            }
            Some(x) if x.capture != e.capture => {
                let _ = write!(l, " → {} #{}", x.capture, x.frame);
            }
            _ => {}
        }
    }
    l
}

/// Rows of a breakdown worth showing: values with failures, then the biggest others, `max` in all.
fn shown_rows(b: &BreakdownReport, max: usize) -> (&[BreakdownRow], usize) {
    let n = b.rows.len().min(max);
    (&b.rows[..n], b.rows.len() - n)
}

fn dimension_words(d: &str) -> &str {
    match d {
        "body_size" => "body size",
        "reuse" => "connection",
        d => d,
    }
}

/// Columns of the text report's sparklines: with their labels and "max N" they fit 78
/// characters up to N = 99999.
const TEXT_COLUMNS: usize = 48;

const SPARKS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A sparkline cell for `n` of `max` (blank for 0).
fn spark(n: u64, max: u64) -> char {
    if n == 0 || max == 0 {
        ' '
    } else {
        SPARKS[((n.saturating_mul(SPARKS.len() as u64) - 1) / max).min(SPARKS.len() as u64 - 1) as usize]
    }
}

/// Where the text report's pattern lines start (after "pattern  "), and where their wrapped
/// continuations do.
const TEXT_INDENT: &str = "         ";
const TEXT_HANG: &str = "           ";

/// Width of the text report's pattern lines, after their indent.
const TEXT_WIDTH: usize = super::text::WIDTH - TEXT_INDENT.len();

/// The text report's "pattern" lines (after the headline): the shape, the first and last
/// failure, the sparklines, the highlights and the breakdowns.
pub(crate) fn write_text(report: &Report, style: Style, s: &mut String) {
    let Some(i) = &report.incident else { return };
    let head = format!("{}: {}", i.shape.kind, i.shape.reason);
    let label = format!("{}  ", style.bold("pattern"));
    write_wrapped(s, &head, TEXT_WIDTH, &label, TEXT_INDENT);
    if i.shape.kind == Kind::None.label() {
        return;
    }
    for (what, f) in failures(i) {
        if let Some(f) = f {
            let line = format!("{what}: {}", failure_line(f, dated(i)));
            write_wrapped(s, &line, TEXT_WIDTH, TEXT_INDENT, TEXT_HANG);
        }
    }
    write_sparklines(i, style, s);
    for h in &i.highlights {
        write_wrapped(s, h, TEXT_WIDTH - 2, &format!("{TEXT_INDENT}• "), TEXT_HANG);
    }
    write_text_breakdowns(i, s);
}

/// The requests over time in two sparklines (answered, failed), when the timeline is worth
/// drawing.
fn write_sparklines(i: &Incident, style: Style, s: &mut String) {
    let t = &i.timeline;
    let (Some(first), Some(last), true) = (t.buckets.first(), t.buckets.last(), shows_timeline(i)) else {
        return;
    };
    // At most TEXT_COLUMNS columns (the report fits 80): neighbouring buckets are summed.
    let group = t.buckets.len().div_ceil(TEXT_COLUMNS).max(1);
    let columns: Vec<(u64, u64)> = t
        .buckets
        .chunks(group)
        .map(|c| {
            let failed: u64 = c.iter().map(|b| b.failed).sum();
            (c.iter().map(|b| b.requests).sum::<u64>() - failed, failed)
        })
        .collect();
    let max_ok = columns.iter().map(|c| c.0).max().unwrap_or(0);
    let max_failed = columns.iter().map(|c| c.1).max().unwrap_or(0);
    let end = super::rfc3339(ns_of(&last.start).unwrap_or(0) + t.bucket_ms as i64 * 1_000_000);
    let head = format!(
        "requests per {}, {} → {}:",
        width_words(t.bucket_ms * group as u64),
        bucket_time(&first.start, t.bucket_ms),
        bucket_time(&end, t.bucket_ms)
    );
    write_wrapped(s, &head, TEXT_WIDTH, TEXT_INDENT, TEXT_HANG);
    let ok: String = columns.iter().map(|c| spark(c.0, max_ok)).collect();
    let failed: String = columns.iter().map(|c| spark(c.1, max_failed)).collect();
    if max_ok > 0 {
        let _ = writeln!(s, "{TEXT_INDENT}answered │{ok}│ max {max_ok}");
    }
    let _ = writeln!(
        s,
        "{TEXT_INDENT}{} │{}│ max {max_failed}",
        style.red("failed  "),
        style.red(&failed)
    );
}

/// The breakdowns in a line each, when there are failures to compare (one is described by its
/// highlight).
fn write_text_breakdowns(i: &Incident, s: &mut String) {
    let mut first = true;
    for b in &i.breakdowns {
        if i.failed < 2 || b.rows.len() < 2 || b.rows.iter().all(|r| r.failed == 0) {
            continue;
        }
        let (rows, more) = shown_rows(b, 4);
        let cells: Vec<String> = rows
            .iter()
            .map(|r| format!("{} {}/{}", short_value(&r.value), r.failed, r.requests))
            .collect();
        let mut line = format!(
            "{} {}: {}",
            if first { "failed/requests by" } else { "by" },
            dimension_words(&b.dimension),
            cells.join(", ")
        );
        first = false;
        if more > 0 {
            let _ = write!(line, ", {more} more");
        }
        write_wrapped(s, &line, TEXT_WIDTH, TEXT_INDENT, TEXT_HANG);
    }
}

/// A breakdown value, shorter for the text report.
fn short_value(v: &str) -> &str {
    match v {
        "new connection" => "new",
        "reused connection" => "reused",
        "connection older than the capture" => "older than the capture",
        "(no request seen)" => "no request",
        v => v,
    }
}

/// The Markdown report's "Pattern" section.
pub(crate) fn write_markdown(report: &Report, s: &mut String) {
    let Some(i) = &report.incident else { return };
    let _ = writeln!(s, "\n## Pattern\n");
    let _ = writeln!(s, "**{}**: {}.", md_text(&i.shape.kind), md_text(&i.shape.reason));
    if i.shape.kind == Kind::None.label() {
        return;
    }
    let _ = writeln!(s);
    for (what, f) in failures(i) {
        if let Some(f) = f {
            let _ = writeln!(
                s,
                "- {}: {}",
                capitalized(what),
                md_text(&failure_line(f, dated(i)))
            );
        }
    }
    for h in &i.highlights {
        let _ = writeln!(s, "- {}", md_text(h));
    }
    let t = &i.timeline;
    let with: Vec<&BucketReport> = t.buckets.iter().filter(|b| b.failed > 0).collect();
    if shows_timeline(i) {
        let _ = writeln!(
            s,
            "\nRequests per {} (the buckets with a failure; times UTC, proxy clock):\n",
            width_words(t.bucket_ms)
        );
        let _ = writeln!(s, "| from | requests | ok | failed | failures |");
        let _ = writeln!(s, "|---|---:|---:|---:|---|");
        for b in with.iter().take(20) {
            let verdicts: Vec<String> = b
                .by_verdict
                .iter()
                .filter(|(v, _)| v.is_failure())
                .map(|(v, n)| format!("{n} {v}"))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                bucket_time(&b.start, t.bucket_ms),
                b.requests,
                b.ok,
                b.failed,
                cell(&verdicts.join(", "))
            );
        }
        if with.len() > 20 {
            let _ = writeln!(
                s,
                "\n{} more buckets with failures: `--format json` lists every bucket.",
                with.len() - 20
            );
        }
    }
    let shown: Vec<&BreakdownReport> = i.breakdowns.iter().filter(|b| b.rows.len() >= 2).collect();
    if !shown.is_empty() {
        let _ = writeln!(s, "\n| by | value | requests | failed | % failed |");
        let _ = writeln!(s, "|---|---|---:|---:|---:|");
        for b in shown {
            let (rows, more) = shown_rows(b, 6);
            for (n, r) in rows.iter().enumerate() {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} |",
                    if n == 0 { dimension_words(&b.dimension) } else { "" },
                    cell(&r.value),
                    r.requests,
                    r.failed,
                    pct(r.failed_percent)
                );
            }
            if more > 0 {
                let _ = writeln!(s, "| | ({more} more) | | | |");
            }
        }
    }
}

fn pct(p: f64) -> String {
    if p == 0.0 || p >= 10.0 || p == p.round() {
        format!("{p:.0} %")
    } else {
        format!("{p:.1} %")
    }
}

/// The fill of a verdict in the plot and its legend.
pub(crate) fn verdict_color(v: Verdict) -> &'static str {
    match v {
        Verdict::ConnectRefused => "#cf222e",
        Verdict::ConnectTimeout => "#8250df",
        Verdict::BackendClosedDuringRequest => "#fb8f44",
        Verdict::BackendEmptyReply => "#bc4c00",
        Verdict::ResponseTruncated => "#d4a72c",
        Verdict::BackendTimeout => "#bf3989",
        Verdict::BackendBadResponse => "#7d4e00",
        Verdict::ZeroWindowStall => "#1b7c83",
        Verdict::KeepaliveRace => "#0969da",
        Verdict::LostInTransit => "#116329",
        Verdict::RstFromMiddlebox => "#a40e26",
        Verdict::RequestIncomplete | Verdict::ProxyAborted => "#eac54f",
        Verdict::CaptureIncomplete => "#afb8c1",
        Verdict::Ok => "#8c959f",
    }
}

/// The CSS of the section (added to the page's).
pub(crate) const CSS: &str = r#"
svg.timeline { background: #fff; border: 1px solid var(--line); max-width: 100%; height: auto; }
svg.timeline text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #59636e; }
svg.timeline text.ptitle { fill: #1f2328; font-weight: 600; }
svg.timeline .axis { stroke: #d1d9e0; stroke-width: 1; }
svg.timeline .mark { stroke: #cf222e; stroke-width: 1; stroke-dasharray: 3 3; }
.legend.verdicts i { width: 12px; height: 12px; border: 0; vertical-align: -1px; }
p.shape b { color: var(--bad); }
table.breakdowns th { white-space: nowrap; }
p.shape.none b { color: var(--good); }
"#;

/// The HTML report's "Pattern" section: the shape, first and last failure, highlights, the plot
/// and the breakdowns.
pub(crate) fn write_html(report: &Report, s: &mut String) {
    let Some(i) = &report.incident else { return };
    let _ = writeln!(s, "<h2 id=\"pattern\">Pattern</h2>");
    let none = i.shape.kind == Kind::None.label();
    let _ = writeln!(
        s,
        "<p class=\"shape{}\" data-shape=\"{}\"><b>{}</b>: {}.</p>",
        if none { " none" } else { "" },
        esc(&i.shape.kind),
        esc(&i.shape.kind),
        esc(&i.shape.reason)
    );
    if none {
        return;
    }
    let _ = writeln!(s, "<ul>");
    for (what, f) in failures(i) {
        if let Some(f) = f {
            let _ = writeln!(
                s,
                "<li>{}: <a href=\"#conn-{}\">{}</a></li>",
                capitalized(what),
                esc(&f.connection),
                esc(&failure_line(f, dated(i)))
            );
        }
    }
    for h in &i.highlights {
        let _ = writeln!(s, "<li>{}</li>", esc(h));
    }
    let _ = writeln!(s, "</ul>");
    plot(s, i);
    let shown: Vec<&BreakdownReport> = i.breakdowns.iter().filter(|b| b.rows.len() >= 2).collect();
    if !shown.is_empty() {
        let _ = writeln!(
            s,
            "<table class=\"breakdowns\"><thead><tr><th>by</th><th>value</th><th class=\"num\">requests</th><th class=\"num\">failed</th><th class=\"num\">% failed</th><th>failures</th></tr></thead><tbody>"
        );
        for b in shown {
            let (rows, more) = shown_rows(b, 8);
            for (n, r) in rows.iter().enumerate() {
                let verdicts: Vec<String> = r
                    .by_verdict
                    .iter()
                    .filter(|(v, _)| v.is_failure())
                    .map(|(v, n)| format!("{n} {v}"))
                    .collect();
                let _ = writeln!(
                    s,
                    "<tr{}><td>{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                    if r.failed > 0 { " class=\"failed\"" } else { "" },
                    if n == 0 {
                        esc(dimension_words(&b.dimension))
                    } else {
                        String::new()
                    },
                    esc(&r.value),
                    r.requests,
                    r.failed,
                    pct(r.failed_percent),
                    esc(&verdicts.join(", "))
                );
            }
            if more > 0 {
                let _ = writeln!(
                    s,
                    "<tr><td></td><td class=\"muted\">{more} more</td><td></td><td></td><td></td><td></td></tr>"
                );
            }
        }
        let _ = writeln!(s, "</tbody></table>");
    }
}

/// The plot's fixed layout: its width and margins, the upper (answered) and lower (failed)
/// panels, the time axis under them.
const PLOT_W: f64 = 960.0;
const PLOT_LEFT: f64 = 56.0;
const PLOT_RIGHT: f64 = 12.0;
const TOP_Y: f64 = 22.0;
const TOP_H: f64 = 90.0;
const BOT_Y: f64 = TOP_Y + TOP_H + 30.0;
const BOT_H: f64 = 120.0;
const AXIS_H: f64 = 34.0;

/// What the plot's bars depend on: their width, and each panel's scale.
struct Bars {
    /// Width of a bucket.
    bw: f64,
    /// Counts at the top of the upper and lower panels.
    max_top: u64,
    max_bot: u64,
}

impl Bars {
    /// x of bucket `k`'s left edge.
    fn x(&self, k: usize) -> f64 {
        PLOT_LEFT + k as f64 * self.bw
    }

    /// A bar of bucket `k`, with its hover text.
    #[allow(clippy::too_many_arguments)] // a bar is its bucket, place, size, colour, class and text
    fn bar(&self, s: &mut String, k: usize, y: f64, height: f64, fill: &str, class: &str, title: &str) {
        let _ = writeln!(
            s,
            "<rect class=\"{class}\" x=\"{:.2}\" y=\"{y:.2}\" width=\"{:.2}\" height=\"{height:.2}\" fill=\"{fill}\"><title>{}</title></rect>",
            self.x(k) + 0.5,
            (self.bw - 1.0).max(0.5),
            esc(title)
        );
    }
}

/// The SVG plot: answered requests per bucket (grey; abandoned and not-judged stacked above in
/// yellow and light grey) in the upper panel, failures per bucket stacked per verdict in the
/// lower one, each with its own scale; dashed red lines at the first and last failure. Every bar
/// has a `<title>` (shown on hover) with its bucket and counts.
fn plot(s: &mut String, i: &Incident) {
    let t = &i.timeline;
    let n = t.buckets.len();
    if n == 0 || !shows_timeline(i) {
        return;
    }
    let (w, left, right) = (PLOT_W, PLOT_LEFT, PLOT_RIGHT);
    let h = BOT_Y + BOT_H + AXIS_H;
    let bars = Bars {
        bw: (w - left - right) / n as f64,
        max_top: t
            .buckets
            .iter()
            .map(|b| b.requests - b.failed)
            .max()
            .unwrap_or(0)
            .max(1),
        max_bot: t.buckets.iter().map(|b| b.failed).max().unwrap_or(0).max(1),
    };
    let _ = writeln!(
        s,
        "<figure><svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"requests and failures per {}\" data-buckets=\"{n}\">",
        esc(&width_words(t.bucket_ms))
    );
    let _ = writeln!(
        s,
        "<text class=\"ptitle\" x=\"{left}\" y=\"{}\">requests answered (ok; abandoned and not judged above)</text>",
        TOP_Y - 8.0
    );
    let _ = writeln!(
        s,
        "<text class=\"ptitle\" x=\"{left}\" y=\"{}\">failed requests, per verdict</text>",
        BOT_Y - 8.0
    );
    for (y0, hh, max) in [(TOP_Y, TOP_H, bars.max_top), (BOT_Y, BOT_H, bars.max_bot)] {
        let _ = writeln!(
            s,
            "<line class=\"axis\" x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\"/><line class=\"axis\" x1=\"{left}\" y1=\"{y0:.1}\" x2=\"{left}\" y2=\"{0:.1}\"/>\
             <text x=\"{2:.1}\" y=\"{3:.1}\" text-anchor=\"end\">{max}</text><text x=\"{2:.1}\" y=\"{0:.1}\" text-anchor=\"end\">0</text>",
            y0 + hh,
            w - right,
            left - 6.0,
            y0 + 10.0
        );
    }
    for (k, b) in t.buckets.iter().enumerate() {
        bucket_bars(s, &bars, k, b, t.bucket_ms);
    }
    failure_lines(s, i, &bars);
    time_labels(s, t, &bars);
    let _ = writeln!(s, "</svg>");
    plot_legend(s, t);
}

/// A bucket's bars: answered in the upper panel, a triangle for late connects, failures per
/// verdict in the lower panel.
fn bucket_bars(s: &mut String, bars: &Bars, k: usize, b: &BucketReport, bucket_ms: u64) {
    let when = format!(
        "{} (+{})",
        bucket_time(&b.start, bucket_ms),
        width_words(bucket_ms)
    );
    // Upper panel: ok, then abandoned, then not judged, from the axis up.
    let mut base = TOP_Y + TOP_H;
    for (count, fill, what) in [
        (b.ok, "#8c959f", "ok"),
        (
            b.abandoned,
            verdict_color(Verdict::ProxyAborted),
            "abandoned by the proxy",
        ),
        (
            b.not_judged,
            verdict_color(Verdict::CaptureIncomplete),
            "not judged",
        ),
    ] {
        if count == 0 {
            continue;
        }
        let hgt = count as f64 / bars.max_top as f64 * TOP_H;
        base -= hgt;
        let title = format!("{when}: {count} {what} of {} requests", b.requests);
        bars.bar(s, k, base, hgt, fill, "bar answered", &title);
    }
    // Late connects (healthy connections whose SYN was answered only when sent again): a
    // triangle over the bucket.
    if b.late_connects > 0 {
        let cx = bars.x(k) + bars.bw / 2.0;
        let _ = writeln!(
            s,
            "<path class=\"late\" d=\"M{:.1},{:.1} l4,-7 l-8,0 z\" fill=\"#8250df\"><title>{}</title></path>",
            cx,
            TOP_Y + 2.0,
            esc(&format!(
                "{when}: {} connection{} got through only with a second SYN",
                b.late_connects,
                if b.late_connects == 1 { "" } else { "s" }
            ))
        );
    }
    // Lower panel: failures per verdict, in the order of the verdict table.
    let mut base = BOT_Y + BOT_H;
    for (&v, count) in &b.by_verdict {
        if !v.is_failure() {
            continue;
        }
        let hgt = *count as f64 / bars.max_bot as f64 * BOT_H;
        base -= hgt;
        let title = format!("{when}: {count} {v} of {} requests", b.requests);
        bars.bar(
            s,
            k,
            base,
            hgt,
            verdict_color(v),
            &format!("bar failed v-{v}"),
            &title,
        );
    }
}

/// Dashed lines across both panels at the first and last failure.
fn failure_lines(s: &mut String, i: &Incident, bars: &Bars) {
    let t = &i.timeline;
    let start_ns = |rfc: &str| -> Option<f64> {
        let first = t.buckets.first()?;
        Some((ns_of(rfc)? - ns_of(&first.start)?) as f64 / 1e6 / t.bucket_ms as f64)
    };
    for (f, label) in [
        (&i.first_failure, "first failure"),
        (&i.last_failure, "last failure"),
    ] {
        let Some(pos) = f.as_ref().and_then(|f| start_ns(&f.time)) else {
            continue;
        };
        let px = PLOT_LEFT + pos * bars.bw;
        let _ = writeln!(
            s,
            "<line class=\"mark\" x1=\"{px:.1}\" y1=\"{TOP_Y}\" x2=\"{px:.1}\" y2=\"{:.1}\"><title>{label}</title></line>",
            BOT_Y + BOT_H
        );
    }
}

/// Time labels under the axis (about six), and what the axis is.
fn time_labels(s: &mut String, t: &TimelineReport, bars: &Bars) {
    let n = t.buckets.len();
    let step = n.div_ceil(6).max(1);
    for k in (0..n).step_by(step) {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            bars.x(k) + bars.bw / 2.0,
            BOT_Y + BOT_H + 16.0,
            esc(&bucket_time(&t.buckets[k].start, t.bucket_ms))
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">UTC, proxy clock; one bar per {}</text>",
        PLOT_W - PLOT_RIGHT,
        BOT_Y + BOT_H + 30.0,
        esc(&width_words(t.bucket_ms))
    );
}

/// The plot's legend: ok, the verdicts of the failures drawn, late connects when there are some.
fn plot_legend(s: &mut String, t: &TimelineReport) {
    let mut present: Vec<Verdict> = Vec::new();
    for b in &t.buckets {
        for &v in b.by_verdict.keys() {
            if v.is_failure() && !present.contains(&v) {
                present.push(v);
            }
        }
    }
    present.sort();
    let _ = write!(
        s,
        "<figcaption class=\"legend verdicts\"><span><i style=\"background:#8c959f\"></i>ok</span>"
    );
    for v in present {
        let _ = write!(
            s,
            "<span><i style=\"background:{}\"></i>{}</span>",
            verdict_color(v),
            esc(v.label())
        );
    }
    if t.buckets.iter().any(|b| b.late_connects > 0) {
        let _ = write!(
            s,
            "<span>▼ late connect (SYN answered only when sent again)</span>"
        );
    }
    let _ = writeln!(s, "</figcaption></figure>");
}

/// Nanoseconds since the epoch of an RFC 3339 time as the report writes them (`…T…Z`, to the
/// microsecond).
fn ns_of(rfc: &str) -> Option<i64> {
    let num = |a: usize, b: usize| rfc.get(a..b)?.parse::<i64>().ok();
    let (y, m, d) = (num(0, 4)?, num(5, 7)?, num(8, 10)?);
    let (hh, mm, ss, us) = (num(11, 13)?, num(14, 16)?, num(17, 19)?, num(20, 26)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400 + hh * 3600 + mm * 60 + ss) * 1_000_000 + us) * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ns_of_reads_back_rfc3339() {
        for ns in [
            0i64,
            1_700_000_000_123_456_789,
            951_782_400_000_000_000,
            4_102_444_800_000_000_000,
        ] {
            assert_eq!(ns_of(&rfc3339(ns)), Some(ns / 1000 * 1000), "{}", rfc3339(ns));
        }
    }

    #[test]
    fn sparks_scale_to_the_maximum() {
        assert_eq!(spark(0, 5), ' ');
        assert_eq!(spark(5, 5), '█');
        assert_eq!(spark(1, 8), '▁');
        assert_eq!(spark(1, 1000), '▁');
        assert_eq!(spark(1000, 1000), '█');
    }

    #[test]
    fn bucket_times_by_width() {
        let t = "2026-12-04T18:17:52.907841Z";
        assert_eq!(bucket_time(t, 100), "18:17:52.907");
        assert_eq!(bucket_time(t, 60_000), "18:17:52");
        assert_eq!(bucket_time(t, 3_600_000), "12-04 18:17");
    }

    #[test]
    fn widths_in_words() {
        assert_eq!(width_words(100), "100 ms");
        assert_eq!(width_words(1000), "1 s");
        assert_eq!(width_words(15_000), "15 s");
        assert_eq!(width_words(120_000), "2 min");
        assert_eq!(width_words(3_600_000), "1 h");
        assert_eq!(width_words(1500), "1500 ms");
    }
}

//! The incident views in the report: the proxy's error log lines (beside each connection's verdict,
//! and all of them in a table at the end) and the time window. Builds the model's types from
//! `incident`'s results, and the pieces the text (`text_connection`, `text_section`: the files,
//! the counts, the table), Markdown and HTML reports write into their document.

use std::fmt::Write as _;

use super::html::esc;
use super::markdown;
use super::text::{write_hanging, write_wrapped};
use super::{
    ConnectionReport, LogLineReport, ProxyLogFile, ProxyLogsReport, Report, WarningDetail, WindowReport,
    rfc3339,
};
use crate::capture::{Warning, WarningKind};
use crate::diagnose::Verdict;
use crate::incident::logs::{Attached, LogLine, LogsSummary, Outcome};
use crate::incident::window::{Window, offset_words};

/// A log line for the report (without where it ended up).
pub(crate) fn line_report(l: &LogLine) -> LogLineReport {
    LogLineReport {
        file: l.file.clone(),
        line: l.line,
        time: rfc3339(l.time_ns),
        level: l.level.label().to_string(),
        code: l.code.clone(),
        text: l.text.clone(),
        says: l.says.label().to_string(),
        fits_verdict: None,
        matched_by: None,
        connection: None,
        verdict: None,
        unmatched: None,
        reason: None,
    }
}

/// A connection's `log_lines`: the lines of the events it took.
pub(crate) fn attached(events: &[Attached]) -> Vec<LogLineReport> {
    let mut out = Vec::new();
    for e in events {
        for l in &e.lines {
            let mut r = line_report(l);
            r.fits_verdict = Some(e.fits);
            r.matched_by = Some(e.matched_by.clone());
            out.push(r);
        }
    }
    out
}

/// The top-level `proxy_logs`.
pub(crate) fn summary_report(s: LogsSummary) -> ProxyLogsReport {
    let lines = s
        .placed
        .iter()
        .map(|p| {
            let mut r = line_report(&p.line);
            match &p.outcome {
                Outcome::Matched { id, verdict, fits } => {
                    r.fits_verdict = Some(*fits);
                    r.connection = Some(id.clone());
                    r.verdict = *verdict;
                }
                Outcome::Unmatched(u) => {
                    r.unmatched = Some(u.code.to_string());
                    r.reason = Some(u.words.clone());
                }
            }
            r
        })
        .collect();
    ProxyLogsReport {
        files: s
            .files
            .iter()
            .map(|f| {
                let mut warnings = f.warnings.clone();
                if f.more_warnings > 0 {
                    let text = format!("{}: {} more warnings", f.file, f.more_warnings);
                    warnings.push(Warning::new(WarningKind::MoreWarnings, &f.file, text));
                }
                let (warnings, warning_details) = WarningDetail::split(&warnings);
                ProxyLogFile {
                    file: f.file.clone(),
                    format: f.flavor.map(|x| x.label().to_string()),
                    lines: f.lines,
                    errors: f.errors,
                    unreadable: f.unreadable,
                    warnings,
                    warning_details,
                }
            })
            .collect(),
        timezone: offset_words(s.tz_offset_s),
        lines_read: s.lines_read,
        errors: s.errors,
        considered: s.kept,
        matched: s.matched,
        unmatched: s.unmatched,
        unmatched_by_reason: s.by_reason.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
        not_considered: s.dropped,
        lines,
        hint: s.hint,
    }
}

/// The top-level `window`.
pub(crate) fn window_report(w: Window, outside: u64) -> WindowReport {
    WindowReport {
        since: w.since.map(rfc3339),
        until: w.until.map(rfc3339),
        outside,
    }
}

/// The window in words: "2026-11-22 00:25:20.000000 UTC → (open); 3 connections outside it
/// not reported".
pub(crate) fn window_words(w: &WindowReport) -> String {
    let end = |t: &Option<String>| t.as_deref().map_or("(open)".to_string(), super::date_time);
    format!(
        "{} → {} on the proxy capture's clock; {} connection{} outside it not reported",
        end(&w.since),
        end(&w.until),
        w.outside,
        if w.outside == 1 { "" } else { "s" }
    )
}

/// A log line's message: the text after its time, level and process fields.
pub(crate) fn message(text: &str) -> &str {
    let mut rest = text.trim_start();
    if rest.starts_with('[') {
        // Apache: [time] [module:level] [pid P:tid T]
        let mut groups = 0;
        while groups < 3
            && let Some(r) = rest.strip_prefix('[')
            && let Some(end) = r.find(']')
        {
            let field = &r[..end];
            if groups == 2 && !field.starts_with("pid ") {
                break;
            }
            rest = r[end + 1..].trim_start();
            groups += 1;
        }
        rest
    } else {
        // nginx: date time [level] pid#tid:
        let mut it = rest.splitn(4, ' ');
        let _ = (it.next(), it.next(), it.next());
        let r = it.next().unwrap_or(rest);
        match r.split_once(": ") {
            Some((t, m)) if t.contains('#') => m,
            _ => r,
        }
    }
}

/// How a line is named: "line 16" with one log file, else "proxy-error.log:16" (the file's
/// name without its directory).
fn place(report: &Report, l: &LogLineReport) -> String {
    let several = report.proxy_logs.as_ref().is_some_and(|p| p.files.len() > 1);
    if several {
        let name = l.file.rsplit(['/', '\\']).next().unwrap_or(&l.file);
        format!("{name}:{}", l.line)
    } else {
        format!("line {}", l.line)
    }
}

/// The time of day of a line: with microseconds (Apache), or whole seconds (nginx writes no more).
fn shown_time(report: &Report, l: &LogLineReport) -> String {
    let nginx = report
        .proxy_logs
        .as_ref()
        .and_then(|p| p.files.iter().find(|f| f.file == l.file))
        .is_some_and(|f| f.format.as_deref() == Some("nginx"));
    let t = super::clock_time(&l.time);
    if nginx {
        t.get(..8).unwrap_or(t).to_string()
    } else {
        t.to_string()
    }
}

/// Apache's code, or (nginx) what the line says.
fn code_or_level(l: &LogLineReport) -> String {
    l.code.clone().unwrap_or_else(|| l.says.clone())
}

/// Apache's code, or (nginx) the level: the tables' code column (they show `says` beside it).
fn code_column(l: &LogLineReport) -> String {
    l.code.clone().unwrap_or_else(|| format!("[{}]", l.level))
}

/// Where a line of the table ended up, in words.
fn outcome_words(l: &LogLineReport) -> String {
    match (&l.connection, &l.reason) {
        (Some(id), _) if l.fits_verdict == Some(false) => format!(
            "connection {id} ({}), by its request: what the line says ({}) is not what the wire shows",
            l.verdict.map_or("not judged", Verdict::label),
            l.says
        ),
        (Some(id), _) => format!(
            "connection {id} ({})",
            l.verdict.map_or("not judged", Verdict::label)
        ),
        (None, Some(r)) => format!("unmatched: {r}"),
        _ => String::new(),
    }
}

/// Lines the table of the text report lists at most.
const TEXT_TABLE: usize = 40;

/// The text report's lines for a connection's log lines (indented by three spaces).
pub(crate) fn text_connection(report: &Report, c: &ConnectionReport, width: usize, s: &mut String) {
    if c.log_lines.is_empty() {
        return;
    }
    let _ = writeln!(s, "   proxy log:");
    for l in &c.log_lines {
        let head = format!("     {}  {}  ", place(report, l), shown_time(report, l));
        write_hanging(s, &head, message(&l.text), width, 30);
    }
}

/// The text report's section about the logs (after the connections): the files, the counts,
/// then a table of the lines.
pub(crate) fn text_section(report: &Report, width: usize, s: &mut String) {
    let Some(p) = &report.proxy_logs else {
        return;
    };
    let _ = writeln!(s);
    for f in &p.files {
        let head = format!(
            "proxy log {} ({}, {} lines, {} at warn or above)",
            f.file,
            f.format.as_deref().unwrap_or("not an Apache or nginx error log"),
            f.lines,
            f.errors
        );
        write_wrapped(s, &head, width, "", "          ");
        for w in &f.warnings {
            write_wrapped(s, &format!("warning: {w}"), width - 2, "  ", "  ");
        }
    }
    write_wrapped(s, &text_counts(p), width - 2, "  ", "  ");
    if let Some(h) = &p.hint {
        write_wrapped(s, &format!("note: {h}"), width - 2, "  ", "  ");
    }
    text_table(report, p, width, s);
}

/// The text report's counts of the lines: considered, matched, unmatched and why.
fn text_counts(p: &ProxyLogsReport) -> String {
    let mut summary = format!(
        "{} line{} considered (warn or above, or about a backend connection): {} tied to a connection, {} to none",
        p.considered,
        if p.considered == 1 { "" } else { "s" },
        p.matched,
        p.unmatched
    );
    if !p.unmatched_by_reason.is_empty() {
        let reasons: Vec<String> = p
            .unmatched_by_reason
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect();
        let _ = write!(summary, " ({})", reasons.join(", "));
    }
    let _ = write!(summary, "; log times read as UTC{}.", p.timezone);
    if p.not_considered > 0 {
        let _ = write!(
            summary,
            " {} more error lines were counted, not matched.",
            p.not_considered
        );
    }
    summary
}

/// The text report's table of the lines (up to [`TEXT_TABLE`]): every line when they are few;
/// else those no connection section shows.
fn text_table(report: &Report, p: &ProxyLogsReport, width: usize, s: &mut String) {
    let shown_in_sections = |l: &LogLineReport| {
        l.connection.as_ref().is_some_and(|id| {
            report
                .connections
                .iter()
                .any(|c| &c.id == id && super::is_notable(c))
        })
    };
    let listed: Vec<&LogLineReport> = if p.lines.len() <= TEXT_TABLE {
        p.lines.iter().collect()
    } else {
        p.lines.iter().filter(|l| !shown_in_sections(l)).collect()
    };
    let shown: Vec<&LogLineReport> = listed.iter().take(TEXT_TABLE).copied().collect();
    let place_w = shown
        .iter()
        .map(|l| place(report, l).chars().count())
        .max()
        .unwrap_or(0);
    let code_w = shown
        .iter()
        .map(|l| code_or_level(l).chars().count())
        .max()
        .unwrap_or(0);
    for l in shown {
        let head = format!(
            "  {:<place_w$}  {}  {:<code_w$}  → ",
            place(report, l),
            shown_time(report, l),
            code_or_level(l)
        );
        write_hanging(s, &head, &outcome_words(l), width, 20);
    }
    let left =
        listed.len().saturating_sub(TEXT_TABLE) as u64 + p.considered.saturating_sub(p.lines.len() as u64);
    if left > 0 {
        let _ = writeln!(s, "  … {left} more lines: --format json lists them");
    }
}

/// The Markdown for a connection's log lines.
pub(crate) fn markdown_connection(report: &Report, c: &ConnectionReport, s: &mut String) {
    if c.log_lines.is_empty() {
        return;
    }
    let _ = writeln!(s, "**Proxy log:**\n");
    for l in &c.log_lines {
        let _ = writeln!(
            s,
            "- {}, {} UTC: {}",
            markdown::text(&place(report, l)),
            shown_time(report, l),
            markdown::code(message(&l.text))
        );
    }
    let _ = writeln!(s);
}

/// The Markdown section about the logs (before the inputs).
pub(crate) fn markdown_section(report: &Report, s: &mut String) {
    let Some(p) = &report.proxy_logs else {
        return;
    };
    let _ = writeln!(s, "\n## Proxy log\n");
    for f in &p.files {
        let _ = writeln!(
            s,
            "- {} ({}): {} lines, {} at warn or above{}",
            markdown::code(&f.file),
            markdown::text(f.format.as_deref().unwrap_or("not an Apache or nginx error log")),
            f.lines,
            f.errors,
            if f.warnings.is_empty() {
                String::new()
            } else {
                format!("; warnings: {}", markdown::text(&f.warnings.join("; ")))
            }
        );
    }
    let _ = writeln!(
        s,
        "- {} lines considered: {} tied to a connection, {} to none; log times read as UTC{}.",
        p.considered,
        p.matched,
        p.unmatched,
        markdown::text(&p.timezone)
    );
    if let Some(h) = &p.hint {
        let _ = writeln!(s, "- Note: {}", markdown::text(h));
    }
    if p.lines.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "\n| line | time (UTC) | code | says | connection, or why none |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|");
    for l in &p.lines {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            markdown::cell(&place(report, l)),
            shown_time(report, l),
            markdown::cell(&code_column(l)),
            markdown::cell(&l.says),
            markdown::cell(&outcome_words(l))
        );
    }
    if p.considered > p.lines.len() as u64 {
        let _ = writeln!(
            s,
            "\n{} more lines are not listed.",
            p.considered - p.lines.len() as u64
        );
    }
}

/// The HTML for a connection's log lines.
pub(crate) fn html_connection(report: &Report, c: &ConnectionReport, s: &mut String) {
    if c.log_lines.is_empty() {
        return;
    }
    let _ = writeln!(s, "<p><b>Proxy log:</b></p><ul class=\"log\">");
    for l in &c.log_lines {
        let _ = write!(
            s,
            "<li><span class=\"mono\">{} {} UTC</span> <code>{}</code>",
            esc(&place(report, l)),
            esc(&shown_time(report, l)),
            esc(message(&l.text))
        );
        let _ = writeln!(s, "</li>");
    }
    let _ = writeln!(s, "</ul>");
}

/// The HTML section about the logs (before the inputs).
pub(crate) fn html_section(report: &Report, s: &mut String) {
    let Some(p) = &report.proxy_logs else {
        return;
    };
    let _ = writeln!(s, "<h2 id=\"proxy-log\">Proxy log</h2><ul>");
    for f in &p.files {
        let _ = writeln!(
            s,
            "<li><span class=\"mono\">{}</span> ({}): {} lines, {} at warn or above{}</li>",
            esc(&f.file),
            esc(f.format.as_deref().unwrap_or("not an Apache or nginx error log")),
            f.lines,
            f.errors,
            if f.warnings.is_empty() {
                String::new()
            } else {
                format!("; warnings: {}", esc(&f.warnings.join("; ")))
            }
        );
    }
    let _ = writeln!(
        s,
        "<li>{} lines considered: {} tied to a connection, {} to none; log times read as UTC{}.</li>",
        p.considered,
        p.matched,
        p.unmatched,
        esc(&p.timezone)
    );
    if let Some(h) = &p.hint {
        let _ = writeln!(s, "<li>Note: {}</li>", esc(h));
    }
    let _ = writeln!(s, "</ul>");
    if p.lines.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "<table class=\"log\"><thead><tr><th>line</th><th>time (UTC)</th><th>code</th><th>says</th><th>connection, or why none</th></tr></thead><tbody>"
    );
    for l in &p.lines {
        let target = match &l.connection {
            Some(id)
                if report
                    .connections
                    .iter()
                    .any(|c| &c.id == id && super::is_notable(c)) =>
            {
                format!("<a href=\"#conn-{}\">{}</a>", esc(id), esc(&outcome_words(l)))
            }
            _ => esc(&outcome_words(l)),
        };
        let _ = writeln!(
            s,
            "<tr title=\"{}\"><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td><td>{target}</td></tr>",
            esc(&l.text),
            esc(&place(report, l)),
            esc(&shown_time(report, l)),
            esc(&code_column(l)),
            esc(&l.says)
        );
    }
    let _ = writeln!(s, "</tbody></table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_lose_their_prefixes() {
        assert_eq!(
            message(
                "[Sun Nov 22 00:25:20.388230 2026] [proxy:error] [pid 9905:tid 9912] [client 10.0.0.2:40308] AH00898: Error reading from remote server returned by /empty"
            ),
            "[client 10.0.0.2:40308] AH00898: Error reading from remote server returned by /empty"
        );
        assert_eq!(
            message(
                "2026/11/22 00:25:03 [error] 9128#9128: *1 connect() failed (111: Connection refused) while connecting to upstream"
            ),
            "*1 connect() failed (111: Connection refused) while connecting to upstream"
        );
        assert_eq!(message("[x"), "[x");
        assert_eq!(message(""), "");
    }
}

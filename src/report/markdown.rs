//! Markdown for tickets: the answer in the title, a summary table, the pattern (`incident`), one
//! section per failed connection (`connection`: what happened, the request (`exchange`), the
//! evidence as a table of frames and times in each capture (`evidence`), what each capture saw
//! (`seen_in`), the Wireshark filters, the next step), the client requests (`clients`), the
//! healthy connections in one line (the words the text report uses), the proxy log
//! (`proxy_logs`) and the inputs.
//!
//! Written for GitHub and GitLab, and to stay readable as plain text (Jira): no HTML, simple
//! pipe tables, every text from the captures escaped (`|`, backticks, emphasis and link
//! characters), code fences longer than any backtick run they hold.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::text::{exchange_line, plural};
use super::{
    ConnectionReport, Report, clock_time, date_time, exchange_head, exchange_of_interest, is_notable,
};
use crate::diagnose::{Blame, Verdict};

pub fn write_markdown(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(render(report).as_bytes())
}

/// The whole document.
pub(crate) fn render(report: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# bothends: {}\n", text(&report.summary.answer));

    // Summary: verdict, blame, count (failures first, then ok).
    let _ = writeln!(s, "| verdict | blame | connections |");
    let _ = writeln!(s, "|---|---|---:|");
    for f in &report.summary.failures {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            cell(f.verdict.label()),
            cell(f.blame.label()),
            f.connections
        );
    }
    for f in &report.summary.other_findings {
        let _ = writeln!(
            s,
            "| {} (not a failure) | {} | {} |",
            cell(f.verdict.label()),
            cell(f.blame.label()),
            f.connections
        );
    }
    if let Some(n) = report.summary.by_verdict.get(&Verdict::Ok) {
        let _ = writeln!(s, "| ok | none | {n} |");
    }
    let judged: u64 = report.summary.by_verdict.values().sum();
    let undiagnosed = report.summary.connections.saturating_sub(judged);
    if undiagnosed > 0 {
        let _ = writeln!(s, "| (not diagnosed) | | {undiagnosed} |");
    }
    let _ = writeln!(s, "| **total** | | **{}** |", report.summary.connections);
    // The incident's pattern (issue 12).
    super::incident::write_markdown(report, &mut s);

    let notable: Vec<&ConnectionReport> = report.connections.iter().filter(|c| is_notable(c)).collect();
    for (n, c) in notable.iter().enumerate() {
        connection(&mut s, report, n + 1, c);
    }
    let unlisted = super::notable_count(&report.summary).saturating_sub(notable.len() as u64);
    if unlisted > 0 {
        let _ = writeln!(
            s,
            "\n{unlisted} more connection{} with a finding not listed here (the report keeps the first {}); `--format json` lists every connection.",
            plural(unlisted as usize),
            notable.len()
        );
    }

    super::clients::write_markdown(report, &mut s);

    if let Some(healthy) = super::text::healthy_words(&report.summary) {
        let _ = writeln!(s, "\n## Healthy connections\n");
        let _ = writeln!(s, "{healthy}.");
    }

    super::proxy_logs::markdown_section(report, &mut s);
    inputs(&mut s, report);
    let _ = writeln!(
        s,
        "\n---\nReport by bothends {} (JSON schema {}).",
        text(&report.version),
        report.schema
    );
    s
}

/// A connection's section: its title and ends, what happened, the proxy's log lines, the
/// exchange, the client requests, the evidence, what each capture saw, the Wireshark filters and
/// the next step.
fn connection(s: &mut String, report: &Report, n: usize, c: &ConnectionReport) {
    let _ = writeln!(
        s,
        "\n## {n}. {} (blame: {}{}) — connection {}\n",
        text(c.verdict.map_or("", Verdict::label)),
        text(c.blame.map_or("", Blame::label)),
        super::outcome_words(c).map_or(String::new(), |w| format!("; {w}")),
        text(&c.id)
    );
    if let Some(v) = c.views.values().next() {
        let _ = write!(s, "**{} → {}**", text(&v.client), text(&v.server));
        if let Some(start) = &c.start {
            let _ = write!(s, ", started {}", date_time(start));
        }
        let _ = writeln!(s, "\n");
    }
    if let Some(e) = &c.explanation {
        let _ = writeln!(s, "**What happened:** {}\n", text(e));
    }
    super::proxy_logs::markdown_connection(report, c, s);
    exchange(s, c);
    for r in super::clients::requests_of_connection(report, c) {
        let _ = writeln!(s, "**Client:** {}\n", text(&super::clients::ref_line(r)));
    }
    evidence(s, report, c);
    seen_in(s, c);
    if !c.filters.is_empty() {
        let _ = writeln!(s, "\n**Wireshark display filters:**\n");
        for (side, f) in &c.filters {
            let _ = writeln!(s, "- {}: {}", text(side), code(f));
        }
    }
    if let Some(next) = c.next_step.as_deref().filter(|n| !n.is_empty()) {
        let _ = writeln!(s, "\n**Next step:** {}", text(next));
    }
}

/// The exchange the connection is about: its line, its heads in a code block.
fn exchange(s: &mut String, c: &ConnectionReport) {
    let Some(x) = exchange_of_interest(c) else {
        return;
    };
    let _ = writeln!(s, "**HTTP:** {}\n", text(&exchange_line(x)));
    let head = exchange_head(x);
    if !head.is_empty() {
        let fence = fence_for(&head);
        let _ = writeln!(s, "{fence}\n{head}{fence}\n");
    }
    if c.exchanges.len() > 1 {
        let _ = writeln!(
            s,
            "The connection carried {} exchanges; this is the first that did not complete (or the last).\n",
            c.exchanges.len()
        );
    }
}

/// The evidence as a table: what, then a frame and a time column per capture.
fn evidence(s: &mut String, report: &Report, c: &ConnectionReport) {
    if c.evidence.is_empty() {
        return;
    }
    // One column pair (frame, time) per capture, in the report's order of captures.
    let sides: Vec<&str> = report.captures.iter().map(|c| c.side.as_str()).collect();
    let _ = writeln!(
        s,
        "**Evidence** (frame numbers as Wireshark's `frame.number`, times on each capture's own clock, UTC):\n"
    );
    let mut header = String::from("| what |");
    let mut rule = String::from("|---|");
    for side in &sides {
        let _ = write!(header, " {side} frame | {side} time |");
        rule.push_str("---:|---|");
    }
    let _ = writeln!(s, "{header}\n{rule}");
    for e in &c.evidence {
        let mut row = format!("| {} |", cell(&e.what));
        for side in &sides {
            if e.capture == *side {
                let file = e
                    .file
                    .as_deref()
                    .map_or(String::new(), |f| format!(" ({})", cell(f)));
                let _ = write!(row, " {}{file} | {} |", e.frame, clock_time(&e.time));
            } else {
                row.push_str("  |  |");
            }
        }
        let _ = writeln!(s, "{row}");
    }
    let _ = writeln!(s);
}

/// What each capture saw of the connection, in one line each; how it was paired; its anomalies.
fn seen_in(s: &mut String, c: &ConnectionReport) {
    let _ = writeln!(s, "**Seen in:**\n");
    for (side, v) in &c.views {
        let _ = writeln!(
            s,
            "- {}: frames {}–{}, {} packets over {}, state {}, history {}, {} B sent / {} B received",
            text(side),
            v.first_frame,
            v.last_frame,
            v.packets,
            super::duration_words(v.duration_ms),
            text(&v.state),
            text(&v.history),
            v.bytes.client_to_server,
            v.bytes.server_to_client
        );
    }
    if let Some(p) = &c.pairing {
        let _ = writeln!(s, "- paired by {}", text(p));
    }
    let anomalies: Vec<String> = c
        .anomalies
        .iter()
        .map(|a| format!("{} ×{}", text(&a.name), a.count))
        .collect();
    if !anomalies.is_empty() {
        let _ = writeln!(s, "- anomalies: {}", anomalies.join(", "));
    }
}

fn inputs(s: &mut String, report: &Report) {
    let _ = writeln!(s, "\n## Inputs\n");
    let _ = writeln!(
        s,
        "| capture | files | packets | first packet | last packet | link types |"
    );
    let _ = writeln!(s, "|---|---|---:|---|---|---|");
    for cap in &report.captures {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            cell(&cap.side),
            cell(&cap.files.join(", ")),
            cap.packets,
            cap.first_time.as_deref().map_or("-".to_string(), date_time),
            cap.last_time.as_deref().map_or("-".to_string(), date_time),
            cell(&cap.link_types.join(", "))
        );
    }
    let _ = writeln!(s);
    for (words, code) in super::input_notes(report) {
        let _ = writeln!(s, "- {}{}", text(&words), text(code.as_deref().unwrap_or("")));
    }
}

/// Text from the captures or the diagnosis, escaped for Markdown prose: nothing in it can open
/// emphasis, a link, a code span, an HTML tag or a table cell. Line breaks become spaces.
pub(crate) fn text(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len() + 8);
    for (i, &ch) in chars.iter().enumerate() {
        match ch {
            '\\' | '`' | '*' | '[' | ']' | '<' | '>' | '|' | '~' => {
                out.push('\\');
                out.push(ch);
            }
            '_' => {
                // An underscore inside a word never emphasises (GFM); at a word's edge it may.
                let before = i > 0 && chars[i - 1].is_alphanumeric();
                let after = chars.get(i + 1).is_some_and(|c| c.is_alphanumeric());
                if !(before && after) {
                    out.push('\\');
                }
                out.push('_');
            }
            '#' if out.is_empty() => out.push_str("\\#"),
            '\r' | '\n' => out.push(' '),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A table cell: escaped text (a `|` can never end the cell).
pub(crate) fn cell(s: &str) -> String {
    text(s)
}

/// An inline code span, its fence longer than any backtick run inside.
pub(crate) fn code(s: &str) -> String {
    let s: String = s
        .chars()
        .map(|c| if c == '\n' || c == '\r' { ' ' } else { c })
        .collect();
    let fence = "`".repeat(longest_backtick_run(&s) + 1);
    let pad = if s.starts_with('`') || s.ends_with('`') {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// A code-block fence longer than any backtick run of the block (at least three).
fn fence_for(block: &str) -> String {
    "`".repeat((longest_backtick_run(block) + 1).max(3))
}

fn longest_backtick_run(s: &str) -> usize {
    let mut best = 0;
    let mut run = 0;
    for c in s.chars() {
        if c == '`' {
            run += 1;
            best = best.max(run);
        } else {
            run = 0;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_escapes_what_markdown_would_interpret() {
        assert_eq!(text("a|b"), "a\\|b");
        assert_eq!(text("`x`"), "\\`x\\`");
        assert_eq!(text("<script>"), "\\<script\\>");
        assert_eq!(text("[link](x)"), "\\[link\\](x)");
        assert_eq!(text("read_timeout"), "read_timeout");
        assert_eq!(text("_em_"), "\\_em\\_");
        assert_eq!(text("*bold*"), "\\*bold\\*");
        assert_eq!(text("# title"), "\\# title");
        assert_eq!(text("two\nlines"), "two lines");
    }

    #[test]
    fn code_spans_and_fences_outgrow_backticks() {
        assert_eq!(code("a && b"), "`a && b`");
        assert_eq!(code("a ` b"), "``a ` b``");
        assert_eq!(code("`x"), "`` `x ``");
        assert_eq!(fence_for("no ticks"), "```");
        assert_eq!(fence_for("a ```` b"), "`````");
    }
}

//! The text formats: the `flows` table (`FlowsTable`: its columns widen to the rows observed
//! before writing), and the `analyze` report (`write_analysis`): the answer, the pattern
//! (`incident`), the inputs, each connection with a finding in a section (title, exchange, client
//! requests, explanation, proxy log lines, evidence, next step, filters), the client requests
//! (`clients`), the connections not shown, the healthy ones in one line, the proxy log
//! (`proxy_logs`); a function per part.
//!
//! Prose is wrapped to `WIDTH` (an 80-column terminal): `write_wrapped` writes wrapped lines after
//! a first and a continuation prefix, `write_hanging` after a head (evidence, log lines), for this
//! file and the text parts of `incident`, `proxy_logs` and `clients`.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::{ConnectionReport, ExchangeReport, Report, exchange_of_interest, is_notable, outcome_words};
use crate::diagnose::{Blame, Verdict};

/// ANSI styling, or none.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    }
    pub(crate) fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub(crate) fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub(crate) fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub(crate) fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    pub(crate) fn dim(&self, s: &str) -> String {
        self.paint("2", s)
    }
}

/// The `flows` table: a header about the capture, then one line per connection.
pub fn write_flows(report: &Report, style: Style, out: &mut dyn Write) -> io::Result<()> {
    let mut table = FlowsTable::default();
    for c in &report.connections {
        table.observe(c);
    }
    write_flows_header(report, style, out)?;
    table.write_header(style, out)?;
    for c in &report.connections {
        table.write_row(c, out)?;
    }
    Ok(())
}

/// What the `flows` table says before its rows: each capture, and the counts.
pub(crate) fn write_flows_header(report: &Report, style: Style, out: &mut dyn Write) -> io::Result<()> {
    let mut s = String::new();
    for cap in &report.captures {
        let _ = writeln!(
            s,
            "{} — {} packets ({} TCP), {}, {}",
            style.bold(&cap.files.join(", ")),
            cap.packets,
            cap.tcp_packets,
            if cap.link_types.is_empty() {
                "no link type".to_string()
            } else {
                cap.link_types.join(", ")
            },
            time_range(cap.first_time.as_deref(), cap.last_time.as_deref()),
        );
        for w in &cap.warnings {
            let _ = writeln!(s, "{} {w}", style.yellow("warning:"));
        }
    }
    let count = |p: &str| report.summary.protocols.get(p).copied().unwrap_or(0);
    let (http, tls) = (count("http"), count("tls"));
    let total = report.summary.connections;
    let _ = writeln!(
        s,
        "{total} TCP connections: {http} HTTP ({} exchanges), {tls} TLS, {} other or empty\n",
        report.summary.exchanges,
        total.saturating_sub(http + tls)
    );
    out.write_all(s.as_bytes())
}

/// The columns of the `flows` table; their widths follow the rows observed before writing.
#[derive(Clone, Debug)]
pub(crate) struct FlowsTable {
    widths: [usize; 8],
}

const FLOWS_HEADER: [&str; 8] = [
    "#",
    "start",
    "client → server",
    "state",
    "history",
    "c→s B",
    "s→c B",
    "http / notes",
];

impl Default for FlowsTable {
    fn default() -> FlowsTable {
        FlowsTable {
            widths: FLOWS_HEADER.map(|h| h.chars().count()),
        }
    }
}

impl FlowsTable {
    /// The cells of a row, or None for a connection without a view.
    pub(crate) fn cells(c: &ConnectionReport) -> Option<[String; 8]> {
        let v = c.views.values().next()?;
        let start = c
            .start
            .as_deref()
            .map_or(String::new(), |t| t.get(11..23).unwrap_or(t).to_string());
        Some([
            c.id.clone(),
            start,
            format!("{} → {}", v.client, v.server),
            v.state.clone(),
            v.history.clone(),
            v.bytes.client_to_server.to_string(),
            v.bytes.server_to_client.to_string(),
            http_and_notes(c),
        ])
    }

    /// Widens the columns for this row.
    pub(crate) fn observe(&mut self, c: &ConnectionReport) {
        if let Some(cells) = Self::cells(c) {
            self.observe_cells(&cells);
        }
    }

    pub(crate) fn observe_cells(&mut self, cells: &[String; 8]) {
        for (w, cell) in self.widths.iter_mut().zip(cells.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }

    pub(crate) fn write_cells(&self, cells: &[String; 8], out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", self.line(cells))
    }

    fn line(&self, cells: &[String; 8]) -> String {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = self.widths[i].saturating_sub(cell.chars().count());
            let numeric = matches!(i, 0 | 5 | 6);
            if i == 7 {
                l.push_str(cell);
            } else if numeric {
                l.push_str(&" ".repeat(pad));
                l.push_str(cell);
                l.push_str("  ");
            } else {
                l.push_str(cell);
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        l.trim_end().to_string()
    }

    pub(crate) fn write_header(&self, style: Style, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", style.dim(&self.line(&FLOWS_HEADER.map(String::from))))
    }

    pub(crate) fn write_row(&self, c: &ConnectionReport, out: &mut dyn Write) -> io::Result<()> {
        match Self::cells(c) {
            Some(cells) => writeln!(out, "{}", self.line(&cells)),
            None => Ok(()),
        }
    }
}

fn time_range(first: Option<&str>, last: Option<&str>) -> String {
    match (first, last) {
        (Some(f), Some(l)) => {
            let f_date = f.get(..10).unwrap_or(f);
            let l_rest = if l.get(..10) == Some(f_date) {
                l.get(11..23).unwrap_or(l)
            } else {
                l
            };
            format!("{} {} → {} UTC", f_date, f.get(11..23).unwrap_or(""), l_rest)
        }
        _ => "no packets".to_string(),
    }
}

/// The HTTP column: the first exchange, a count of the others, then notable anomalies.
fn http_and_notes(c: &ConnectionReport) -> String {
    let mut parts = Vec::new();
    match c.protocol.as_str() {
        "http" => {
            if let Some(first) = c.exchanges.first() {
                parts.push(exchange_line(first));
            }
            if c.exchanges.len() > 1 {
                let mut statuses: Vec<String> = Vec::new();
                for e in &c.exchanges[1..] {
                    let st = e.status.map_or("-".to_string(), |s| s.to_string());
                    if !statuses.contains(&st) {
                        statuses.push(st);
                    }
                }
                parts.push(format!(
                    "+{} more ({})",
                    c.exchanges.len() - 1,
                    statuses.join(",")
                ));
            }
        }
        "tls" => parts.push("TLS".to_string()),
        "other" => parts.push("(not HTTP)".to_string()),
        _ => {}
    }
    if let Some(v) = c.views.values().next() {
        let r = v.retransmissions.client_to_server + v.retransmissions.server_to_client;
        if r > 0 {
            parts.push(format!("[{r} retransmitted]"));
        }
        // Bytes the capture does not hold: acknowledged by the receiver (the capture dropped them)
        // or not (lost, or outside the capture).
        let g = v.gaps.client_to_server + v.gaps.server_to_client;
        let u = v.acked_unseen.client_to_server + v.acked_unseen.server_to_client;
        if u > 0 {
            parts.push(format!("[{u} B acked but not captured]"));
        }
        if g > u {
            parts.push(format!("[{} B missing]", g - u));
        }
    }
    if let Some(v) = c.verdict.filter(|&v| v != Verdict::Ok) {
        parts.push(format!("[{v}]"));
    }
    // Every anomaly by name: retransmissions are not one (the view counts them, shown above as
    // `[N retransmitted]`), so none needs leaving out.
    for a in &c.anomalies {
        parts.push(format!("[{}]", a.name));
    }
    parts.join(" ")
}

/// `GET /x → 200`, with `(incomplete)` marks where a message did not complete.
pub(crate) fn exchange_line(e: &ExchangeReport) -> String {
    let mut l = String::new();
    match (&e.method, &e.target) {
        (Some(m), Some(t)) => {
            let _ = write!(l, "{m} {t}");
        }
        _ => l.push_str("(request not seen)"),
    }
    if e.method.is_some() && !e.request_complete {
        l.push_str(" (incomplete)");
    }
    for i in &e.interim {
        let _ = write!(l, " → {i}");
    }
    match e.status {
        Some(s) => {
            let _ = write!(l, " → {s}");
            if !e.response_complete {
                l.push_str(" (incomplete)");
            }
        }
        None => l.push_str(" → no response"),
    }
    l
}

/// Width the `analyze` report wraps its prose to (it fits an 80-column terminal).
pub(super) const WIDTH: usize = 78;

/// The `analyze` text report: the answer first (captures, clock, how many connections failed, by
/// verdict and blame), then each failed connection with its explanation, evidence and next step,
/// then the healthy ones in one line.
pub fn write_analysis(report: &Report, style: Style, out: &mut dyn Write) -> io::Result<()> {
    let mut s = String::new();
    let notable: Vec<&ConnectionReport> = report.connections.iter().filter(|c| is_notable(c)).collect();
    write_headline(report, style, &mut s);
    // The incident's pattern (issue 12): its shape, first and last failure, a sparkline, what
    // the failures have in common.
    super::incident::write_text(report, style, &mut s);
    let _ = writeln!(s);
    write_inputs(report, style, &mut s);
    for (n, c) in notable.iter().enumerate() {
        write_connection(report, style, n + 1, c, &mut s);
    }
    super::clients::write_text(report, style, &mut s, WIDTH);
    write_unlisted(report, notable.len(), &mut s);
    write_healthy(report, style, &mut s);
    super::proxy_logs::text_section(report, WIDTH, &mut s);
    out.write_all(s.as_bytes())
}

/// The answer: how many connections failed, then the failures and the other findings by verdict
/// and blame.
fn write_headline(report: &Report, style: Style, s: &mut String) {
    let total = report.summary.connections as usize;
    let headline = match report.summary.failed {
        0 => format!("no failure in {total} proxy→backend connection{}", plural(total)),
        n => format!("{n} of {total} proxy→backend connection{} failed", plural(total)),
    };
    let _ = writeln!(s, "{}", style.bold(&format!("bothends: {headline}")));
    let counts = |v: &[super::FailureCount]| -> Vec<String> {
        v.iter()
            .map(|f| format!("{} {} ({})", f.connections, f.verdict, f.blame))
            .collect()
    };
    let by_blame = counts(&report.summary.failures);
    if !by_blame.is_empty() {
        for line in wrap(&by_blame.join(", "), WIDTH - 2) {
            let _ = writeln!(s, "  {}", style.red(&line));
        }
    }
    let others = counts(&report.summary.other_findings);
    if !others.is_empty() {
        let line = format!("not failures: {}", others.join(", "));
        for line in wrap(&line, WIDTH - 2) {
            let _ = writeln!(s, "  {}", style.yellow(&line));
        }
    }
}

/// The inputs: each capture (files, counts, times), the clock offset, the backend endpoints, the
/// window and the captures' warnings.
fn write_inputs(report: &Report, style: Style, s: &mut String) {
    for cap in &report.captures {
        let head = format!("{:<8} {}", cap.side, cap.files.join(", "));
        let counts = format!(
            "{} packets, {} TCP connection{}",
            cap.packets,
            cap.tcp_connections,
            if cap.tcp_connections == 1 { "" } else { "s" },
        );
        let times = time_range(cap.first_time.as_deref(), cap.last_time.as_deref());
        // On one line when it fits the terminal; otherwise counts and times under the file names.
        let line = format!("{head} — {counts}, {times}");
        if line.chars().count() <= WIDTH {
            let _ = writeln!(s, "{line}");
        } else {
            let _ = writeln!(s, "{head}\n{:<8} {counts}\n{:<8} {times}", "", "");
        }
    }
    // The notes after a label in the captures' side column (8 characters and a space).
    let label = |l: &str| format!("{l:<8} ");
    if let Some(c) = &report.clock_offset {
        let clock = format!("backend capture is {}", super::clock_words(c));
        write_wrapped(s, &clock, WIDTH - 9, &label("clock"), &label(""));
    } else if report.captures.len() == 1 {
        let _ = writeln!(
            s,
            "one capture: what only the other end could show is said per connection"
        );
    }
    for (side, eps) in &report.backends {
        let _ = writeln!(s, "backend  {} ({side} capture's view)", eps.join(", "));
    }
    if let Some(w) = &report.window {
        let window = super::proxy_logs::window_words(w);
        write_wrapped(s, &window, WIDTH - 9, &label("window"), &label(""));
    }
    let warning = format!("{} ", style.yellow("warning:"));
    for cap in &report.captures {
        for w in &cap.warnings {
            write_wrapped(s, &format!("{}: {w}", cap.side), WIDTH - 9, &warning, &label(""));
        }
    }
}

/// A connection's section: its title, ends and exchange, the client requests it carried, the
/// explanation, the proxy's log lines, the evidence, the next step and the Wireshark filters.
fn write_connection(report: &Report, style: Style, n: usize, c: &ConnectionReport, s: &mut String) {
    let _ = writeln!(s);
    let title = format!(
        "{n}. {} · blame: {} {}",
        c.verdict.map_or("", Verdict::label),
        c.blame.map_or("", Blame::label),
        outcome_words(c).map_or(String::new(), |w| format!("· {w} "))
    );
    let rule = "─".repeat(WIDTH.saturating_sub(title.chars().count() + 3));
    let _ = writeln!(s, "{}", style.bold(&format!("── {title}{rule}")));
    if let Some(v) = c.views.values().next() {
        let when = c.start.as_deref().and_then(|t| t.get(11..26)).unwrap_or("");
        let _ = writeln!(
            s,
            "   {} → {}  at {when}  (connection {})",
            v.client, v.server, c.id
        );
    }
    if let Some(x) = exchange_of_interest(c) {
        let _ = writeln!(s, "   {}", exchange_line(x));
    }
    for r in super::clients::requests_of_connection(report, c) {
        write_wrapped(s, &super::clients::ref_line(r), WIDTH - 5, "   ", "     ");
    }
    if let Some(e) = &c.explanation {
        write_wrapped(s, e, WIDTH - 3, "   ", "   ");
    }
    // The proxy's error log lines about this connection (--proxy-log).
    super::proxy_logs::text_connection(report, c, WIDTH, s);
    write_evidence(c, s);
    if let Some(next) = c.next_step.as_deref().filter(|n| !n.is_empty()) {
        for (i, line) in wrap(&format!("next step: {next}"), WIDTH - 3)
            .into_iter()
            .enumerate()
        {
            let _ = writeln!(s, "   {}", if i == 0 { style.bold(&line) } else { line });
        }
    }
    for (side, f) in &c.filters {
        let _ = writeln!(s, "   wireshark ({side}): {f}");
    }
}

/// A connection's evidence: capture, frame and time, then what it shows, wrapped beside them.
fn write_evidence(c: &ConnectionReport, s: &mut String) {
    if c.evidence.is_empty() {
        return;
    }
    let _ = writeln!(s, "   evidence:");
    let fw = c
        .evidence
        .iter()
        .map(|e| e.frame.to_string().len())
        .max()
        .unwrap_or(1);
    for e in &c.evidence {
        let time = e.time.get(11..26).unwrap_or(&e.time);
        let head = format!("     {:<7} #{:<fw$}  {time}  ", e.capture, e.frame);
        write_hanging(s, &head, &e.what, WIDTH, 20);
    }
}

/// The connections with a finding that the report counts but does not show.
fn write_unlisted(report: &Report, listed: usize, s: &mut String) {
    let unlisted = super::notable_count(&report.summary).saturating_sub(listed as u64);
    if unlisted > 0 {
        let _ = writeln!(s);
        let line = format!(
            "{unlisted} more connection{} with a finding not shown (the report keeps the first {listed}); --format json lists every connection.",
            plural(unlisted as usize),
        );
        write_wrapped(s, &line, WIDTH, "", "");
    }
}

/// The healthy connections, in one line.
fn write_healthy(report: &Report, style: Style, s: &mut String) {
    if let Some(healthy) = healthy_words(&report.summary) {
        let _ = writeln!(s);
        write_wrapped(s, &format!("{} {healthy}", style.green("✓")), WIDTH, "", "");
    }
}

/// The healthy connections in words ("12 connections ok: 30 exchanges sent and answered in
/// full, 2 with retransmissions recovered"), None when there are none.
pub(super) fn healthy_words(summary: &super::Summary) -> Option<String> {
    let ok = summary.by_verdict.get(&Verdict::Ok).copied().unwrap_or(0) as usize;
    if ok == 0 {
        return None;
    }
    let exchanges = summary.ok_exchanges as usize;
    let retrans = summary.ok_with_retransmissions;
    let mut line = format!(
        "{ok} connection{} ok: {exchanges} exchange{} sent and answered in full",
        plural(ok),
        plural(exchanges)
    );
    if retrans > 0 {
        let _ = write!(line, ", {retrans} with retransmissions recovered");
    }
    Some(line)
}

pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// Writes `text` wrapped to `width`, a line each: the first after `first`, the others after `rest`.
pub(super) fn write_wrapped(s: &mut String, text: &str, width: usize, first: &str, rest: &str) {
    for (i, line) in wrap(text, width).iter().enumerate() {
        let _ = writeln!(s, "{}{line}", if i == 0 { first } else { rest });
    }
}

/// Writes `text` after `head`, wrapped to what `head` leaves of `width` (at least `min`), its
/// other lines under the first.
pub(super) fn write_hanging(s: &mut String, head: &str, text: &str, width: usize, min: usize) {
    let pad = head.chars().count();
    write_wrapped(
        s,
        text,
        width.saturating_sub(pad).max(min),
        head,
        &" ".repeat(pad),
    );
}

/// Greedy word wrap; words longer than the width stay whole.
pub(super) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = Vec::new();
    let mut cur = String::new();
    for word in text.split_whitespace() {
        if !cur.is_empty() && cur.chars().count() + 1 + word.chars().count() > width {
            lines.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
    }
    if !cur.is_empty() {
        lines.push(cur);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_words_and_width() {
        let t = "The backend closed the connection while the proxy was still sending POST /upload";
        let lines = wrap(t, 30);
        assert!(lines.iter().all(|l| l.chars().count() <= 30), "{lines:?}");
        assert_eq!(lines.join(" "), t);
        assert_eq!(
            wrap("averyveryverylongword x", 5),
            vec!["averyveryverylongword", "x"]
        );
    }
}

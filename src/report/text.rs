//! The text formats: the `flows` table, and the `analyze` report (the answer first, then each failed
//! connection with its evidence, then the healthy ones in one line).

use std::fmt::Write as _;
use std::io::{self, Write};

use super::{ConnectionReport, ExchangeReport, Report, is_notable, outcome_words};
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
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
    pub fn red(&self, s: &str) -> String {
        self.paint("31", s)
    }
    pub fn green(&self, s: &str) -> String {
        self.paint("32", s)
    }
    pub fn yellow(&self, s: &str) -> String {
        self.paint("33", s)
    }
    pub fn dim(&self, s: &str) -> String {
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
pub fn write_flows_header(report: &Report, style: Style, out: &mut dyn Write) -> io::Result<()> {
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
pub struct FlowsTable {
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
    pub fn cells(c: &ConnectionReport) -> Option<[String; 8]> {
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
    pub fn observe(&mut self, c: &ConnectionReport) {
        if let Some(cells) = Self::cells(c) {
            self.observe_cells(&cells);
        }
    }

    pub fn observe_cells(&mut self, cells: &[String; 8]) {
        for (w, cell) in self.widths.iter_mut().zip(cells.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }

    pub fn write_cells(&self, cells: &[String; 8], out: &mut dyn Write) -> io::Result<()> {
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

    pub fn write_header(&self, style: Style, out: &mut dyn Write) -> io::Result<()> {
        writeln!(out, "{}", style.dim(&self.line(&FLOWS_HEADER.map(String::from))))
    }

    pub fn write_row(&self, c: &ConnectionReport, out: &mut dyn Write) -> io::Result<()> {
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
    for a in &c.anomalies {
        if a.name != "tcp_retransmission" {
            parts.push(format!("[{}]", a.name));
        }
    }
    parts.join(" ")
}

/// `GET /x → 200`, with `(incomplete)` marks where a message did not complete.
pub fn exchange_line(e: &ExchangeReport) -> String {
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
const WIDTH: usize = 78;

/// The `analyze` text report: the answer first (captures, clock, how many connections failed, by
/// verdict and blame), then each failed connection with its explanation, evidence and next step,
/// then the healthy ones in one line.
pub fn write_analysis(report: &Report, style: Style, out: &mut dyn Write) -> io::Result<()> {
    let mut s = String::new();
    let total = report.summary.connections as usize;
    let notable: Vec<&ConnectionReport> = report.connections.iter().filter(|c| is_notable(c)).collect();
    let headline = match report.summary.failed {
        0 => format!("no failure in {total} proxy→backend connection{}", plural(total)),
        n => format!("{n} of {total} proxy→backend connection{} failed", plural(total)),
    };
    let _ = writeln!(s, "{}", style.bold(&format!("bothends: {headline}")));
    let by_blame: Vec<String> = report
        .summary
        .failures
        .iter()
        .map(|f| format!("{} {} ({})", f.connections, f.verdict, f.blame))
        .collect();
    if !by_blame.is_empty() {
        for line in wrap(&by_blame.join(", "), WIDTH - 2) {
            let _ = writeln!(s, "  {}", style.red(&line));
        }
    }
    let others: Vec<String> = report
        .summary
        .other_findings
        .iter()
        .map(|f| format!("{} {} ({})", f.connections, f.verdict, f.blame))
        .collect();
    if !others.is_empty() {
        let line = format!("not failures: {}", others.join(", "));
        for line in wrap(&line, WIDTH - 2) {
            let _ = writeln!(s, "  {}", style.yellow(&line));
        }
    }
    // The incident's pattern (issue 12): its shape, first and last failure, a sparkline, what
    // the failures have in common.
    super::incident::write_text(report, style, &mut s, &wrap);
    let _ = writeln!(s);
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
    if let Some(c) = &report.clock_offset {
        let clock = format!("backend capture is {}", super::clock_words(c));
        for (i, line) in wrap(&clock, WIDTH - 9).iter().enumerate() {
            let _ = writeln!(s, "{:<8} {line}", if i == 0 { "clock" } else { "" });
        }
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
        for (i, line) in wrap(&super::proxy_logs::window_words(w), WIDTH - 9)
            .iter()
            .enumerate()
        {
            let _ = writeln!(s, "{:<8} {line}", if i == 0 { "window" } else { "" });
        }
    }
    for cap in &report.captures {
        for w in &cap.warnings {
            for (i, line) in wrap(&format!("{}: {w}", cap.side), WIDTH - 9)
                .into_iter()
                .enumerate()
            {
                let _ = writeln!(
                    s,
                    "{} {line}",
                    if i == 0 {
                        style.yellow("warning:")
                    } else {
                        "        ".to_string()
                    }
                );
            }
        }
    }

    for (n, c) in notable.iter().enumerate() {
        let _ = writeln!(s);
        let title = format!(
            "{}. {} · blame: {} {}",
            n + 1,
            c.verdict.map_or("", Verdict::label),
            c.blame.map_or("", Blame::label),
            outcome_words(c).map_or(String::new(), |w| format!("· {w} "))
        );
        let rule = "─".repeat(WIDTH.saturating_sub(title.chars().count() + 3));
        let _ = writeln!(s, "{}", style.bold(&format!("── {title}{rule}")));
        let view = c.views.values().next();
        if let Some(v) = view {
            let when = c.start.as_deref().and_then(|t| t.get(11..26)).unwrap_or("");
            let _ = writeln!(
                s,
                "   {} → {}  at {when}  (connection {})",
                v.client, v.server, c.id
            );
        }
        if let Some(x) = c
            .exchanges
            .iter()
            .find(|e| !(e.request_complete && e.response_complete))
            .or(c.exchanges.last())
        {
            let _ = writeln!(s, "   {}", exchange_line(x));
        }
        for r in super::clients::requests_of_connection(report, c) {
            for (i, line) in wrap(&super::clients::ref_line(r), WIDTH - 5)
                .into_iter()
                .enumerate()
            {
                let _ = writeln!(s, "{}{line}", if i == 0 { "   " } else { "     " });
            }
        }
        if let Some(e) = &c.explanation {
            for line in wrap(e, WIDTH - 3) {
                let _ = writeln!(s, "   {line}");
            }
        }
        // The proxy's error log lines about this connection (--proxy-log).
        let mut log = Vec::new();
        super::proxy_logs::text_connection(report, c, WIDTH, &mut log);
        for line in log {
            let _ = writeln!(s, "{line}");
        }
        if !c.evidence.is_empty() {
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
                let body = wrap(&e.what, WIDTH.saturating_sub(head.chars().count()).max(20));
                for (i, line) in body.iter().enumerate() {
                    if i == 0 {
                        let _ = writeln!(s, "{head}{line}");
                    } else {
                        let _ = writeln!(s, "{}{line}", " ".repeat(head.chars().count()));
                    }
                }
            }
        }
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

    super::clients::write_text(report, style, &mut s, WIDTH);

    let unlisted = super::notable_count(&report.summary).saturating_sub(notable.len() as u64);
    if unlisted > 0 {
        let _ = writeln!(s);
        for l in wrap(
            &format!(
                "{unlisted} more connection{} with a finding not shown (the report keeps the first {}); --format json lists every connection.",
                plural(unlisted as usize),
                notable.len()
            ),
            WIDTH,
        ) {
            let _ = writeln!(s, "{l}");
        }
    }
    let ok = report.summary.by_verdict.get(&Verdict::Ok).copied().unwrap_or(0) as usize;
    if ok > 0 {
        let exchanges = report.summary.ok_exchanges as usize;
        let retrans = report.summary.ok_with_retransmissions;
        let mut line = format!(
            "{} {ok} connection{} ok: {exchanges} exchange{} sent and answered in full",
            style.green("✓"),
            plural(ok),
            plural(exchanges)
        );
        if retrans > 0 {
            line.push_str(&format!(", {retrans} with retransmissions recovered"));
        }
        let _ = writeln!(s);
        for l in wrap(&line, WIDTH) {
            let _ = writeln!(s, "{l}");
        }
    }
    for line in super::proxy_logs::text_section(report, WIDTH) {
        let _ = writeln!(s, "{line}");
    }
    out.write_all(s.as_bytes())
}

pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
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

//! The text formats: the `flows` table, and the `analyze` report (the answer first, then each failed
//! connection with its evidence, then the healthy ones in one line).

use std::fmt::Write as _;
use std::io::{self, Write};

use super::{ConnectionReport, ExchangeReport, Report};

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
    let http = report.connections.iter().filter(|c| c.protocol == "http").count();
    let tls = report.connections.iter().filter(|c| c.protocol == "tls").count();
    let exchanges: usize = report.connections.iter().map(|c| c.exchanges.len()).sum();
    let _ = writeln!(
        s,
        "{} TCP connections: {http} HTTP ({exchanges} exchanges), {tls} TLS, {} other or empty\n",
        report.connections.len(),
        report.connections.len() - http - tls
    );

    let header = [
        "#",
        "start",
        "client → server",
        "state",
        "history",
        "c→s B",
        "s→c B",
        "http / notes",
    ];
    let mut rows: Vec<[String; 8]> = Vec::with_capacity(report.connections.len());
    for c in &report.connections {
        let Some(v) = c.views.values().next() else {
            continue;
        };
        let start = c
            .start
            .as_deref()
            .map_or(String::new(), |t| t.get(11..23).unwrap_or(t).to_string());
        rows.push([
            c.id.clone(),
            start,
            format!("{} → {}", v.client, v.server),
            v.state.clone(),
            v.history.clone(),
            v.bytes.client_to_server.to_string(),
            v.bytes.server_to_client.to_string(),
            http_and_notes(c),
        ]);
    }
    let mut widths = header.map(|h| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String; 8]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
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
    };
    let _ = writeln!(s, "{}", style.dim(&line(&header.map(String::from))));
    for r in &rows {
        let _ = writeln!(s, "{}", line(r));
    }
    out.write_all(s.as_bytes())
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
        let g = v.gaps.client_to_server + v.gaps.server_to_client;
        if g > 0 {
            parts.push(format!("[{g} B not captured]"));
        }
        let u = v.acked_unseen.client_to_server + v.acked_unseen.server_to_client;
        if u > 0 {
            parts.push(format!("[{u} B acked unseen]"));
        }
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

/// The `analyze` text report.
pub fn write_analysis(report: &Report, style: Style, out: &mut dyn Write) -> io::Result<()> {
    write_flows(report, style, out)
}

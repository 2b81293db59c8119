//! The client requests of a report (the proxy capture's client side, `incident::clients`): their
//! model, and how the text, Markdown and HTML reports show them — a section listing the requests
//! that went wrong (what the client got, and why), and in each failed connection's section the
//! client requests it failed. JSON is the model as is.

use std::fmt::Write as _;

use indexmap::IndexMap;

use super::{
    BackendAttemptReport, ClientRequestReport, ClientSummaryReport, ConnectionReport, Report, SideInfo,
    duration_words, rfc3339,
};
use crate::incident::clients::{AnsweredBy, ClientRequest, ClientRequests, ID_HEADERS, MatchedBy};

/// The model's client requests and their summary (None when the proxy capture holds no client
/// side). `connection_id` turns an attempt's connection name into the report's connection id;
/// `proxy` names the proxy capture's files (for the `file` of a frame in a rotated set);
/// `redacted` the header names whose values are redacted (request ids and forwarded addresses
/// come from headers).
pub(crate) fn client_section(
    reqs: &ClientRequests,
    connection_id: &dyn Fn(&str) -> String,
    proxy: Option<&SideInfo>,
    redacted: &[String],
) -> (Vec<ClientRequestReport>, Option<ClientSummaryReport>) {
    if !reqs.seen() {
        return (Vec::new(), None);
    }
    let files = proxy.map_or(&[][..], |p| p.files.as_slice());
    let hidden = |names: &[&str]| {
        names
            .iter()
            .any(|n| redacted.iter().any(|r| r.eq_ignore_ascii_case(n)))
    };
    let hide_ids = hidden(&ID_HEADERS);
    let hide_addr = hidden(&["x-forwarded-for", "x-real-ip", "forwarded"]);
    let list = reqs
        .requests
        .iter()
        .enumerate()
        .map(|(n, r)| {
            let mut x = request_report(n + 1, r, connection_id, files);
            let red = || super::REDACTED.to_string();
            if hide_ids {
                x.request_id = x.request_id.map(|_| red());
            }
            for a in &mut x.attempts {
                if hide_ids {
                    a.request_id = a.request_id.take().map(|_| red());
                }
                if hide_addr {
                    a.forwarded_for = a.forwarded_for.take().map(|_| red());
                }
            }
            x
        })
        .collect();
    let s = &reqs.summary;
    let mut by_status = IndexMap::new();
    for (status, n) in &s.by_status {
        by_status.insert(status.map_or("none".to_string(), |s| s.to_string()), *n);
    }
    let summary = ClientSummaryReport {
        http_connections: s.http_connections,
        tls_connections: s.tls_connections,
        requests: s.requests,
        listed: s.listed,
        by_status,
        answered_by_backend: s.answered_by_backend,
        answered_by_proxy: s.answered_by_proxy,
        proxy_without_backend: s.proxy_without_backend,
        not_found: s.not_found,
        plain_not_matched: s.plain_not_matched,
        with_failed_attempt: s.with_failed_attempt,
        decided_early: s.decided_early,
        attempts_without_request: s.attempts_without_request,
        answer: answer(s),
    };
    (list, Some(summary))
}

fn answer(s: &crate::incident::clients::ClientSummary) -> String {
    let mut parts = Vec::new();
    if s.answered_by_backend > 0 {
        parts.push(format!("{} answered by the backend", s.answered_by_backend));
    }
    let after = s.answered_by_proxy - s.proxy_without_backend;
    if after > 0 {
        parts.push(format!("{after} by the proxy after a backend failure"));
    }
    if s.proxy_without_backend > 0 {
        parts.push(format!(
            "{} by the proxy without backend traffic",
            s.proxy_without_backend
        ));
    }
    if s.not_found > 0 {
        parts.push(format!("{} whose backend attempt was not found", s.not_found));
    }
    if s.plain_not_matched > 0 {
        parts.push(format!(
            "{} more answered without an error, counted but not matched",
            s.plain_not_matched
        ));
    }
    let mut a = format!(
        "{} client request{}",
        s.requests,
        super::text::plural(s.requests as usize)
    );
    if !parts.is_empty() {
        a.push_str(": ");
        a.push_str(&parts.join(", "));
    }
    if s.tls_connections > 0 {
        let _ = write!(
            a,
            " ({} client connection{} carried TLS: not readable)",
            s.tls_connections,
            super::text::plural(s.tls_connections as usize)
        );
    }
    a
}

fn ms(from: i64, to: i64) -> f64 {
    (to.saturating_sub(from)) as f64 / 1e6
}

fn request_report(
    n: usize,
    r: &ClientRequest,
    connection_id: &dyn Fn(&str) -> String,
    files: &[String],
) -> ClientRequestReport {
    let t0 = r.request_first.ts_ns;
    let attempts: Vec<BackendAttemptReport> = r
        .attempts
        .iter()
        .map(|a| BackendAttemptReport {
            connection: connection_id(&a.connection),
            exchange: a.exchange.map(|e| e as u64),
            frame: a.at.frame.frame as u64,
            time: rfc3339(a.at.ts_ns),
            method: a.method.clone(),
            target: a.target.clone(),
            status: a.status,
            response_complete: a.response_complete,
            forwarded_for: a.forwarded_for.map(|ip| ip.to_string()),
            request_id: a.request_id.clone(),
            verdict: a.verdict,
            blame: a.blame,
            failed: a.failed,
        })
        .collect();
    let mut out = ClientRequestReport {
        id: n.to_string(),
        client: r.client.to_string(),
        proxy: r.proxy.to_string(),
        exchange: r.exchange as u64,
        frame: r.request_first.frame.frame as u64,
        time: rfc3339(t0),
        file: (files.len() > 1)
            .then(|| files.get(r.request_first.frame.file as usize).cloned())
            .flatten(),
        method: r.method.clone(),
        target: r.target.clone(),
        request_bytes: r.request_bytes,
        request_complete: r.request_complete,
        status: r.status,
        response_frame: r.response_first.map(|p| p.frame.frame as u64),
        response_ms: r.response_first.map(|p| ms(t0, p.ts_ns)),
        response_bytes: r.response_bytes,
        response_complete: r.response_complete,
        closed_by: r.close.map(|c| {
            format!(
                "{}-{}",
                if c.by_proxy { "proxy" } else { "client" },
                if c.reset { "rst" } else { "fin" }
            )
        }),
        closed_ms: r.close.map(|c| ms(t0, c.at.ts_ns)),
        request_id: r.request_id.clone(),
        answered_by: r.answered_by.label().to_string(),
        matched_by: r.matched_by.map(|m| {
            match m {
                MatchedBy::RequestId => "request-id",
                MatchedBy::ClientAddress => "client-address",
                MatchedBy::Target => "target",
                MatchedBy::Time => "time",
            }
            .to_string()
        }),
        alternatives: r.alternatives as u64,
        attempts,
        explanation: String::new(),
    };
    out.explanation = explanation(&out, r.answered_by);
    out
}

/// "GET /x" (or "(request line not seen)").
pub(crate) fn request_words(r: &ClientRequestReport) -> String {
    match (&r.method, &r.target) {
        (Some(m), Some(t)) => format!("{m} {t}"),
        (Some(m), None) => m.clone(),
        _ => "(request line not seen)".to_string(),
    }
}

/// What the client got: "502 after 1.204 ms", "no answer (the proxy closed the connection with a
/// FIN after 3.001 s)", "200 after 203.000 ms (incomplete)".
pub(crate) fn got_words(r: &ClientRequestReport) -> String {
    match (r.status, r.response_ms) {
        (Some(s), Some(t)) => format!(
            "{s} after {}{}",
            duration_words(t),
            if r.response_complete { "" } else { " (incomplete)" }
        ),
        _ => {
            let how = match (r.closed_by.as_deref(), r.closed_ms) {
                (Some("proxy-fin"), Some(t)) => {
                    format!(
                        "the proxy closed the connection with a FIN after {}",
                        duration_words(t)
                    )
                }
                (Some("proxy-rst"), Some(t)) => {
                    format!("the proxy reset the connection after {}", duration_words(t))
                }
                (Some("client-fin"), Some(t)) => {
                    format!("the client closed the connection after {}", duration_words(t))
                }
                (Some("client-rst"), Some(t)) => {
                    format!("the client reset the connection after {}", duration_words(t))
                }
                _ => "the capture ended first".to_string(),
            };
            format!("no answer ({how})")
        }
    }
}

fn attempt_words(a: &BackendAttemptReport) -> String {
    let place = match a.exchange {
        Some(e) => format!("connection {}, exchange {e}", a.connection),
        None => format!("connection {}, no request sent", a.connection),
    };
    format!("{place}: {} (blame {})", a.verdict, a.blame)
}

fn explanation(r: &ClientRequestReport, by: AnsweredBy) -> String {
    let got = got_words(r);
    let got = format!("{}{}", got[..1].to_uppercase(), &got[1..]);
    let failed: Vec<String> = r
        .attempts
        .iter()
        .filter(|a| a.failed)
        .map(attempt_words)
        .collect();
    let why = match by {
        AnsweredBy::Backend => {
            let last = r.attempts.last().expect("answered by the backend");
            let mut w = format!(
                "the backend's answer, on connection {}{}",
                last.connection,
                last.exchange
                    .map_or(String::new(), |e| format!(" (exchange {e})"))
            );
            if !failed.is_empty() {
                let _ = write!(
                    w,
                    ", after {} failed attempt{}: {}",
                    failed.len(),
                    super::text::plural(failed.len()),
                    failed.join("; ")
                );
            }
            w
        }
        AnsweredBy::Proxy if r.attempts.is_empty() => match r.status {
            Some(s) if (400..500).contains(&s) => "from the proxy itself, with no backend traffic for it: \
                 the proxy refused the request (malformed, over a limit, or an access rule)"
                .to_string(),
            Some(s) if s < 400 => "from the proxy itself, with no backend traffic for it (a cache, a \
                 redirect, a static file)"
                .to_string(),
            _ => "from the proxy itself, with no backend traffic for it: the proxy held its backends \
                  as unavailable (Apache: balancer members in error state after failed connects, \
                  AH01170; nginx: \"no live upstreams\" after max_fails) or could not reach one"
                .to_string(),
        },
        AnsweredBy::Proxy => format!(
            "from the proxy, after {} failed: {}",
            if failed.len() == 1 {
                "its attempt at the backend".to_string()
            } else {
                format!("its {} attempts at the backend", failed.len())
            },
            failed.join("; ")
        ),
        AnsweredBy::NotFound => "no attempt at the backend was found for it (it had to be decided \
             before the end of the captures: a backend connection still open then may have carried \
             it)"
        .to_string(),
    };
    let mut e = format!("{got}: {why}.");
    if r.alternatives > 0 && !r.attempts.is_empty() {
        let _ = write!(
            e,
            " {} other client request{} fitted its first attempt as well: the nearest in time was \
             taken.",
            r.alternatives,
            super::text::plural(r.alternatives as usize)
        );
    }
    e
}

/// A request worth listing in the text and Markdown reports: an error the client got (5xx, no
/// answer, an incomplete answer), a failed attempt, or an error the proxy produced itself.
pub(crate) fn is_notable(r: &ClientRequestReport) -> bool {
    r.status.is_none_or(|s| s >= 500)
        || !r.response_complete
        || r.attempts.iter().any(|a| a.failed)
        || (r.answered_by != "backend" && r.status.is_some_and(|s| s >= 400))
}

/// The client requests whose attempt failed on connection `c` (not those it served before).
pub(crate) fn requests_of_connection<'a>(
    report: &'a Report,
    c: &ConnectionReport,
) -> Vec<&'a ClientRequestReport> {
    report
        .client_requests
        .iter()
        .filter(|r| r.attempts.iter().any(|a| a.connection == c.id && a.failed))
        .collect()
}

/// One line about a client request, for a connection's section: "client request 6: POST /x from
/// 10.0.0.2:5000 got no answer (…)".
pub(crate) fn ref_line(r: &ClientRequestReport) -> String {
    format!(
        "client request {}: {} from {} got {}",
        r.id,
        request_words(r),
        r.client,
        got_words(r)
    )
}

/// The text report's section (nothing when the proxy capture holds no client side).
pub(crate) fn write_text(report: &Report, style: super::text::Style, s: &mut String, width: usize) {
    let Some(sum) = &report.client_summary else { return };
    let _ = writeln!(s);
    let title = "client requests (the proxy capture's client side) ";
    let rule = "─".repeat(width.saturating_sub(title.chars().count() + 3));
    let _ = writeln!(s, "{}", style.bold(&format!("── {title}{rule}")));
    for line in super::text::wrap(&format!("{}.", sum.answer), width - 3) {
        let _ = writeln!(s, "   {line}");
    }
    let statuses: Vec<String> = sum.by_status.iter().map(|(k, n)| format!("{k} ×{n}")).collect();
    if !statuses.is_empty() {
        for line in super::text::wrap(&format!("got: {}", statuses.join(", ")), width - 3) {
            let _ = writeln!(s, "   {line}");
        }
    }
    let notable: Vec<&ClientRequestReport> =
        report.client_requests.iter().filter(|r| is_notable(r)).collect();
    for r in &notable {
        let _ = writeln!(s);
        let head = format!(
            "{}. {} from {}  at {}  (proxy #{})",
            r.id,
            request_words(r),
            r.client,
            r.time.get(11..23).unwrap_or(&r.time),
            r.frame
        );
        for (i, line) in super::text::wrap(&head, width - 3).iter().enumerate() {
            let _ = writeln!(s, "{}{line}", if i == 0 { "   " } else { "      " });
        }
        for line in super::text::wrap(&r.explanation, width - 6) {
            let _ = writeln!(s, "      {line}");
        }
    }
    let rest = sum.requests.saturating_sub(notable.len() as u64);
    if rest > 0 {
        let _ = writeln!(s);
        for line in super::text::wrap(
            &format!(
                "{} {rest} other request{} answered without an error (--format json lists them, up to a limit).",
                style.green("✓"),
                super::text::plural(rest as usize)
            ),
            width,
        ) {
            let _ = writeln!(s, "{line}");
        }
    }
}

/// The Markdown report's section.
pub(crate) fn write_markdown(report: &Report, s: &mut String) {
    use super::markdown::{cell, text};
    let Some(sum) = &report.client_summary else { return };
    let _ = writeln!(s, "\n## Client requests\n");
    let _ = writeln!(
        s,
        "The proxy capture holds the proxy's client side too: {}.\n",
        text(&sum.answer)
    );
    let notable: Vec<&ClientRequestReport> =
        report.client_requests.iter().filter(|r| is_notable(r)).collect();
    if !notable.is_empty() {
        let _ = writeln!(s, "| # | client | request | proxy frame | got | why |");
        let _ = writeln!(s, "|---:|---|---|---:|---|---|");
        for r in &notable {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} |",
                r.id,
                cell(&r.client),
                cell(&request_words(r)),
                r.frame,
                cell(&got_words(r)),
                cell(&r.explanation)
            );
        }
    }
    let rest = sum.requests.saturating_sub(notable.len() as u64);
    if rest > 0 {
        let _ = writeln!(
            s,
            "\n{rest} other request{} answered without an error.",
            super::text::plural(rest as usize)
        );
    }
}

/// The HTML report's section: every listed request, the ones with an error marked.
pub(crate) fn write_html(report: &Report, s: &mut String) {
    use super::html::esc;
    let Some(sum) = &report.client_summary else { return };
    let _ = writeln!(s, "<h2 id=\"client-requests\">Client requests</h2>");
    let _ = writeln!(
        s,
        "<p>The proxy capture holds the proxy's client side too: {}.</p>",
        esc(&sum.answer)
    );
    if (report.client_requests.len() as u64) < sum.requests {
        let _ = writeln!(
            s,
            "<p class=\"muted\">{} of the {} requests are listed: every one with an error, up to a limit, and the first others.</p>",
            report.client_requests.len(),
            sum.requests
        );
    }
    let _ = writeln!(
        s,
        "<table class=\"conns clients\"><thead><tr><th class=\"num\">#</th><th>time (UTC)</th><th>client</th><th>request</th><th>got</th><th>why</th></tr></thead><tbody>"
    );
    for r in &report.client_requests {
        let notable = is_notable(r);
        let conns: Vec<String> = r
            .attempts
            .iter()
            .map(|a| {
                let listed = report
                    .connections
                    .iter()
                    .any(|c| c.id == a.connection && super::is_notable(c));
                if listed {
                    format!("<a href=\"#conn-{0}\">connection {0}</a>", esc(&a.connection))
                } else {
                    format!("connection {}", esc(&a.connection))
                }
            })
            .collect();
        let _ = writeln!(
            s,
            "<tr class=\"{}\"><td class=\"num\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td><td>{}{}</td></tr>",
            if notable { "failed" } else { "ok" },
            esc(&r.id),
            esc(r.time.get(11..26).unwrap_or(&r.time)),
            esc(&r.client),
            esc(&request_words(r)),
            esc(&got_words(r)),
            esc(&r.explanation),
            if conns.is_empty() {
                String::new()
            } else {
                format!(" <span class=\"muted\">({})</span>", conns.join(", "))
            }
        );
    }
    let _ = writeln!(s, "</tbody></table>");
}

//! HTML: one self-contained file (inline CSS, JS and SVG; nothing loaded from the network) with the
//! Markdown report's content, a table of every connection with filters (only failures, one
//! verdict), and a ladder diagram per failed connection.
//!
//! `render` writes the page in its order, a function per part: the summary table, the pattern
//! (`incident`), the connections table (a row each), a section per connection with a finding
//! (evidence table, what each capture saw, the ladder figure), the client requests (`clients`),
//! the proxy log (`proxy_logs`) and the inputs. The ladder diagram's SVG is drawn by
//! `ladder_svg`.

mod ladder_svg;

use std::fmt::Write as _;
use std::io::{self, Write};

use ladder_svg::ladder_svg;

use super::ladder::Ladder;
use super::{
    ConnectionReport, Report, clock_time, date_time, duration_words, exchange_head, exchange_of_interest,
    is_failed, is_notable, outcome_words, rfc3339, text::exchange_line,
};
use crate::diagnose::{Blame, Verdict};

pub fn write_html(report: &Report, out: &mut dyn Write) -> io::Result<()> {
    out.write_all(render(report).as_bytes())
}

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => o.push('\u{FFFD}'),
            c => o.push(c),
        }
    }
    o
}

const CSS: &str = r#"
:root { --fg:#1f2328; --muted:#59636e; --line:#d1d9e0; --bg:#ffffff; --soft:#f6f8fa; --bad:#cf222e; --good:#1a7f37; --warn:#9a6700; }
* { box-sizing: border-box; }
body { font: 14px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color: var(--fg); background: var(--bg); margin: 0; padding: 24px 32px; max-width: 1100px; }
h1 { font-size: 22px; margin: 0 0 16px; }
h2 { font-size: 18px; margin: 32px 0 8px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 15px; margin: 16px 0 6px; }
table { border-collapse: collapse; margin: 8px 0 12px; }
th, td { border: 1px solid var(--line); padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre, .mono { font-family: ui-monospace, SFMono-Regular, "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 12.5px; }
pre { background: var(--soft); border: 1px solid var(--line); padding: 8px 10px; overflow-x: auto; white-space: pre-wrap; word-break: break-all; }
code { background: var(--soft); padding: 1px 4px; border-radius: 4px; word-break: break-all; }
.verdict { font-weight: 600; }
.failed .verdict, .verdict.failed { color: var(--bad); }
.ok .verdict, .verdict.ok { color: var(--good); }
.notable .verdict { color: var(--warn); }
.muted { color: var(--muted); }
.controls { display: flex; gap: 16px; align-items: center; margin: 12px 0; padding: 8px 12px; background: var(--soft); border: 1px solid var(--line); border-radius: 6px; }
.conn { margin-top: 8px; }
.kv { margin: 4px 0; }
.kv b { display: inline-block; min-width: 120px; }
figure { margin: 12px 0; overflow-x: auto; }
figcaption { color: var(--muted); font-size: 12px; }
.legend span { display: inline-block; margin-right: 14px; }
.legend i { display: inline-block; width: 22px; height: 0; border-top: 2px solid; vertical-align: middle; margin-right: 4px; }
svg.ladder { background: #fff; border: 1px solid var(--line); }
svg.ladder text { font: 11px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #1f2328; }
svg.ladder text.gutter { font: 10px ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace; fill: #59636e; }
svg.ladder text.lbl { paint-order: stroke; stroke: #fff; stroke-width: 3px; stroke-linejoin: round; }
svg.ladder text.head { font-weight: 600; font-size: 13px; }
svg.ladder text.idle { fill: #59636e; font-style: italic; }
svg.ladder .capline { stroke: #1f2328; stroke-width: 2; }
svg.ladder .farline { stroke: #8c959f; stroke-width: 1; stroke-dasharray: 4 4; }
svg.ladder .arrow line { stroke-width: 1.5; }
svg.ladder .k-syn line, svg.ladder .k-synack line { stroke: #57606a; }
svg.ladder .k-data.d-c2s line { stroke: #0969da; }
svg.ladder .k-data.d-s2c line { stroke: #1a7f37; }
svg.ladder .k-ack line { stroke: #afb8c1; stroke-width: 1; }
svg.ladder .k-fin line { stroke: #bc4c00; stroke-width: 2.5; }
svg.ladder .k-rst line { stroke: #cf222e; stroke-width: 2.5; }
svg.ladder .k-fin text.lbl { fill: #bc4c00; font-weight: 700; }
svg.ladder .k-rst text.lbl { fill: #cf222e; font-weight: 700; }
svg.ladder .retrans line { stroke-dasharray: 6 3; }
svg.ladder .f-not-captured line, svg.ladder .f-outside-capture line, svg.ladder .f-not-drawn line { stroke-dasharray: 2 3; }
svg.ladder .f-lost text.lbl, svg.ladder .f-receiver-only text.lbl { fill: #cf222e; }
svg.ladder .mark { stroke: #cf222e; stroke-width: 2.5; fill: none; }
svg.ladder .origin { stroke: #cf222e; stroke-width: 1.5; fill: #fff; }
svg.ladder .tick { fill: #57606a; }
svg.ladder .idleband { fill: #f6f8fa; }
svg.ladder .capedge { stroke: #8250df; stroke-width: 1; stroke-dasharray: 3 2; }
svg.ladder text.capedge { fill: #8250df; stroke: none; font-size: 10px; }
[hidden] { display: none !important; }
@media print { .controls { display: none; } }
"#;

const JS: &str = r#"
(function () {
  var root = document.documentElement;
  window.addEventListener('error', function (e) { root.setAttribute('data-js-error', String(e.message)); });
  var only = document.getElementById('only-failed');
  var sel = document.getElementById('verdict');
  var shown = document.getElementById('shown');
  function apply() {
    var v = sel.value, f = only.checked, n = 0;
    var els = document.querySelectorAll('[data-verdict]');
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var show = (!f || el.getAttribute('data-failed') === '1') && (v === '' || el.getAttribute('data-verdict') === v);
      el.hidden = !show;
      if (show && el.tagName === 'TR') n++;
    }
    shown.textContent = String(n);
  }
  // A link can preselect a filter: report.html#only-failures, report.html#verdict=keepalive-race
  var m = /^#(?:verdict=([A-Za-z-]+)|(only-failures))$/.exec(window.location.hash);
  if (m && m[1]) { sel.value = m[1]; }
  if (m && m[2]) { only.checked = true; }
  only.addEventListener('change', apply);
  sel.addEventListener('change', apply);
  var links = document.querySelectorAll('[data-filter-verdict]');
  for (var i = 0; i < links.length; i++) {
    links[i].addEventListener('click', function (e) {
      e.preventDefault();
      sel.value = this.getAttribute('data-filter-verdict');
      only.checked = false;
      apply();
    });
  }
  apply();
  // The size the timeline plot is laid out at, for tests (the plot itself needs no script).
  var plot = document.querySelector('svg.timeline');
  if (plot) { var b = plot.getBoundingClientRect(); root.setAttribute('data-timeline', Math.round(b.width) + 'x' + Math.round(b.height)); }
  root.setAttribute('data-js', 'ok');
})();
"#;

/// Arrowheads, defined once for every ladder of the page.
const MARKERS: &str = r##"<svg width="0" height="0" style="position:absolute" aria-hidden="true"><defs>
<marker id="ah-syn" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#57606a"/></marker>
<marker id="ah-c2s" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#0969da"/></marker>
<marker id="ah-s2c" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1a7f37"/></marker>
<marker id="ah-ack" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#afb8c1"/></marker>
<marker id="ah-fin" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#bc4c00"/></marker>
<marker id="ah-rst" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#cf222e"/></marker>
</defs></svg>"##;

/// The whole page: the answer, the summary table, the pattern, the table of every connection,
/// a section per connection with a finding, the client requests, the proxy log and the inputs.
pub fn render(report: &Report) -> String {
    let mut s = String::with_capacity(64 * 1024);
    let title = format!("bothends: {}", report.summary.answer);
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"generator\" content=\"bothends {}\">\n<title>{}</title>\n<style>{CSS}{}</style>\n</head>\n<body>\n{MARKERS}\n",
        esc(&report.version),
        esc(&title),
        super::incident::CSS
    );
    let _ = writeln!(s, "<h1>{}</h1>", esc(&title));
    summary_table(&mut s, report);
    // The incident's pattern (issue 12): shape, plot, breakdowns.
    super::incident::write_html(report, &mut s);
    connections_table(&mut s, report);
    let notable: Vec<&ConnectionReport> = report.connections.iter().filter(|c| is_notable(c)).collect();
    if !notable.is_empty() {
        let _ = writeln!(
            s,
            "<h2>{}</h2>",
            if report.summary.failed > 0 {
                "Failed connections"
            } else {
                "Connections with a finding"
            }
        );
    }
    for (n, c) in notable.iter().enumerate() {
        connection(&mut s, report, n + 1, c);
    }
    super::clients::write_html(report, &mut s);
    if notable.len() > super::MAX_LADDERS && notable.iter().any(|c| c.ladder.is_none()) {
        let _ = writeln!(
            s,
            "<p class=\"muted\">Ladder diagrams are drawn for the first {} connections with a finding.</p>",
            super::MAX_LADDERS
        );
    }

    super::proxy_logs::html_section(report, &mut s);
    inputs(&mut s, report);
    let _ = writeln!(
        s,
        "<p class=\"muted\">Report by bothends {} (JSON schema {}). This page needs no network access.</p>",
        esc(&report.version),
        report.schema
    );
    let _ = writeln!(s, "<script>{JS}</script>\n</body>\n</html>");
    s
}

/// The summary table: failures, other findings, ok, total; a verdict's row filters the page to it.
fn summary_table(s: &mut String, report: &Report) {
    let _ = writeln!(
        s,
        "<table class=\"summary\"><thead><tr><th>verdict</th><th>blame</th><th class=\"num\">connections</th></tr></thead><tbody>"
    );
    for (class, findings, note) in [
        ("failed", &report.summary.failures, ""),
        ("notable", &report.summary.other_findings, " (not a failure)"),
    ] {
        for f in findings {
            let _ = writeln!(
                s,
                "<tr class=\"{class}\"><td class=\"verdict\"><a href=\"#connections\" data-filter-verdict=\"{0}\">{0}</a>{note}</td><td>{1}</td><td class=\"num\">{2}</td></tr>",
                esc(f.verdict.label()),
                esc(f.blame.label()),
                f.connections
            );
        }
    }
    if let Some(n) = report.summary.by_verdict.get(&Verdict::Ok) {
        let _ = writeln!(
            s,
            "<tr class=\"ok\"><td class=\"verdict\"><a href=\"#connections\" data-filter-verdict=\"ok\">ok</a></td><td>none</td><td class=\"num\">{n}</td></tr>"
        );
    }
    let _ = writeln!(
        s,
        "<tr><th>total</th><th></th><th class=\"num\">{}</th></tr></tbody></table>",
        report.summary.connections
    );
}

/// The filters (only failures, one verdict) and the table of every connection listed.
fn connections_table(s: &mut String, report: &Report) {
    let _ = writeln!(s, "<h2 id=\"connections\">Connections</h2>");
    let _ = write!(
        s,
        "<div class=\"controls\"><label><input type=\"checkbox\" id=\"only-failed\"> only failures</label>\
         <label>verdict <select id=\"verdict\"><option value=\"\">all</option>"
    );
    for v in report.summary.by_verdict.keys() {
        let _ = write!(s, "<option value=\"{0}\">{0}</option>", esc(v.label()));
    }
    let _ = writeln!(
        s,
        "</select></label><span class=\"muted\"><span id=\"shown\">{}</span> of {} connections shown</span></div>",
        report.connections.len(),
        report.connections.len()
    );
    if (report.connections.len() as u64) < report.summary.connections {
        let _ = writeln!(
            s,
            "<p class=\"muted\">This page lists {} of the {} connections (every failed one first, up to a limit); <code>--format json</code> lists them all.</p>",
            report.connections.len(),
            report.summary.connections
        );
    }
    let _ = writeln!(
        s,
        "<table class=\"conns\"><thead><tr><th class=\"num\">#</th><th>start (UTC)</th><th>client → server</th><th>verdict</th><th>blame</th><th>HTTP</th></tr></thead><tbody>"
    );
    for c in &report.connections {
        connection_row(s, c);
    }
    let _ = writeln!(s, "</tbody></table>");
}

/// A connection's row in the table; its verdict links to its section when it has one.
fn connection_row(s: &mut String, c: &ConnectionReport) {
    let failed = is_failed(c);
    let notable = is_notable(c);
    let verdict = c.verdict.map_or("", Verdict::label);
    let ends = c
        .views
        .values()
        .next()
        .map_or(String::new(), |v| format!("{} → {}", v.client, v.server));
    let vcell = if notable {
        format!("<a href=\"#conn-{}\">{}</a>", esc(&c.id), esc(verdict))
    } else {
        esc(verdict)
    };
    let _ = writeln!(
        s,
        "<tr class=\"{}\" data-verdict=\"{}\" data-failed=\"{}\"><td class=\"num\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td class=\"verdict\">{vcell}</td><td>{}</td><td>{}</td></tr>",
        if failed {
            "failed"
        } else if notable {
            "notable"
        } else {
            "ok"
        },
        esc(verdict),
        failed as u8,
        esc(&c.id),
        c.start.as_deref().map_or(String::new(), |t| esc(clock_time(t))),
        esc(&ends),
        esc(c.blame.map_or("", Blame::label)),
        esc(&c.exchanges.first().map(exchange_line).unwrap_or_default())
    );
}

/// A connection's section: title, ends, what happened, the proxy's log lines, the exchange, the
/// client requests, the evidence, the next step, the Wireshark filters, what each capture saw and
/// the ladder diagram.
fn connection(s: &mut String, report: &Report, n: usize, c: &ConnectionReport) {
    let verdict = c.verdict.map_or("", Verdict::label);
    let _ = writeln!(
        s,
        "<section class=\"conn {}\" id=\"conn-{}\" data-verdict=\"{}\" data-failed=\"{}\">",
        if is_failed(c) { "failed" } else { "notable" },
        esc(&c.id),
        esc(verdict),
        is_failed(c) as u8
    );
    let _ = writeln!(
        s,
        "<h3>{n}. <span class=\"verdict\">{}</span> · blame: {}{} <span class=\"muted\">(connection {})</span></h3>",
        esc(verdict),
        esc(c.blame.map_or("", Blame::label)),
        outcome_words(c).map_or(String::new(), |w| format!(" · {}", esc(w))),
        esc(&c.id)
    );
    if let Some(v) = c.views.values().next() {
        let _ = write!(s, "<p class=\"kv mono\">{} → {}", esc(&v.client), esc(&v.server));
        if let Some(start) = &c.start {
            let _ = write!(
                s,
                " <span class=\"muted\">started {}</span>",
                esc(&date_time(start))
            );
        }
        let _ = writeln!(s, "</p>");
    }
    if let Some(e) = &c.explanation {
        let _ = writeln!(s, "<p><b>What happened:</b> {}</p>", esc(e));
    }
    super::proxy_logs::html_connection(report, c, s);
    if let Some(x) = exchange_of_interest(c) {
        let _ = writeln!(s, "<p><b>HTTP:</b> {}</p>", esc(&exchange_line(x)));
        let head = exchange_head(x);
        if !head.is_empty() {
            let _ = writeln!(s, "<pre>{}</pre>", esc(head.trim_end()));
        }
    }
    for r in super::clients::requests_of_connection(report, c) {
        let _ = writeln!(
            s,
            "<p><b>Client:</b> <a href=\"#client-requests\">{}</a></p>",
            esc(&super::clients::ref_line(r))
        );
    }
    evidence_table(s, report, c);
    if let Some(next) = c.next_step.as_deref().filter(|n| !n.is_empty()) {
        let _ = writeln!(s, "<p><b>Next step:</b> {}</p>", esc(next));
    }
    if !c.filters.is_empty() {
        let _ = writeln!(s, "<p><b>Wireshark display filters:</b></p><ul>");
        for (side, f) in &c.filters {
            let _ = writeln!(s, "<li>{}: <code>{}</code></li>", esc(side), esc(f));
        }
        let _ = writeln!(s, "</ul>");
    }
    seen_in(s, c);
    if let Some(l) = &c.ladder {
        ladder_figure(s, l, &c.id);
    }
    let _ = writeln!(s, "</section>");
}

/// The evidence as a table: what, then a frame and a time column per capture.
fn evidence_table(s: &mut String, report: &Report, c: &ConnectionReport) {
    if c.evidence.is_empty() {
        return;
    }
    let sides: Vec<&str> = report.captures.iter().map(|c| c.side.as_str()).collect();
    let _ = write!(s, "<table class=\"evidence\"><thead><tr><th>evidence</th>");
    for side in &sides {
        let _ = write!(s, "<th class=\"num\">{0} frame</th><th>{0} time</th>", esc(side));
    }
    let _ = writeln!(s, "</tr></thead><tbody>");
    for e in &c.evidence {
        let _ = write!(s, "<tr><td>{}</td>", esc(&e.what));
        for side in &sides {
            if e.capture == *side {
                let file = e.file.as_deref().map_or(String::new(), |f| {
                    format!(" <span class=\"muted\">({})</span>", esc(f))
                });
                let _ = write!(
                    s,
                    "<td class=\"num\">{}{file}</td><td class=\"mono\">{}</td>",
                    e.frame,
                    esc(clock_time(&e.time))
                );
            } else {
                s.push_str("<td></td><td></td>");
            }
        }
        let _ = writeln!(s, "</tr>");
    }
    let _ = writeln!(s, "</tbody></table>");
}

/// What each capture saw of the connection, a line each; how it was paired; its anomalies.
fn seen_in(s: &mut String, c: &ConnectionReport) {
    let _ = writeln!(s, "<p class=\"muted\">");
    for (side, v) in &c.views {
        let _ = writeln!(
            s,
            "{}: frames {}–{}, {} packets over {}, state {}, history <span class=\"mono\">{}</span>, {} B sent / {} B received.<br>",
            esc(side),
            v.first_frame,
            v.last_frame,
            v.packets,
            esc(&duration_words(v.duration_ms)),
            esc(&v.state),
            esc(&v.history),
            v.bytes.client_to_server,
            v.bytes.server_to_client
        );
    }
    if let Some(p) = &c.pairing {
        let _ = writeln!(s, "Paired by {}.<br>", esc(p));
    }
    if !c.anomalies.is_empty() {
        let a: Vec<String> = c
            .anomalies
            .iter()
            .map(|a| format!("{} ×{}", esc(&a.name), a.count))
            .collect();
        let _ = writeln!(s, "Anomalies: {}.", a.join(", "));
    }
    let _ = writeln!(s, "</p>");
}

/// The ladder diagram in a figure, with its caption and legend.
fn ladder_figure(s: &mut String, l: &Ladder, id: &str) {
    let _ = writeln!(s, "<figure>");
    ladder_svg(s, l, id);
    let what = if l.lines.len() == 1 {
        format!(
            "Each arrow is one packet leaving or reaching the {} capture point (time runs down, from {}); \
             the other end was not captured.",
            esc(&l.lines[0]),
            esc(&date_time(&rfc3339(l.t0_ns)))
        )
    } else {
        format!(
            "Each arrow is one packet, from when it left one capture point to when it arrived at the other \
             (time runs down; both captures on the proxy capture's clock, from {}).",
            esc(&date_time(&rfc3339(l.t0_ns)))
        )
    };
    let _ = writeln!(
        s,
        "<figcaption>{what} \
         Steps are not to scale; breaks mark idle time. Hover an arrow for its frames and times.\
         <div class=\"legend\"><span><i style=\"border-color:#0969da\"></i>request bytes</span>\
         <span><i style=\"border-color:#1a7f37\"></i>response bytes</span>\
         <span><i style=\"border-color:#afb8c1\"></i>ACK</span>\
         <span><i style=\"border-color:#57606a\"></i>SYN</span>\
         <span><i style=\"border-color:#bc4c00\"></i>FIN</span>\
         <span><i style=\"border-color:#cf222e\"></i>RST</span>\
         <span><i style=\"border-style:dashed;border-color:#57606a\"></i>retransmission</span>\
         <span>✕ never arrived</span><span>○ seen only where it arrived</span></div></figcaption>"
    );
    let _ = writeln!(s, "</figure>");
}

fn inputs(s: &mut String, report: &Report) {
    let _ = writeln!(s, "<h2>Inputs</h2>");
    let _ = writeln!(
        s,
        "<table><thead><tr><th>capture</th><th>files</th><th class=\"num\">packets</th><th>first packet</th><th>last packet</th><th>link types</th></tr></thead><tbody>"
    );
    for cap in &report.captures {
        let _ = writeln!(
            s,
            "<tr><td>{}</td><td class=\"mono\">{}</td><td class=\"num\">{}</td><td class=\"mono\">{}</td><td class=\"mono\">{}</td><td>{}</td></tr>",
            esc(&cap.side),
            esc(&cap.files.join(", ")),
            cap.packets,
            esc(&cap.first_time.as_deref().map_or("-".to_string(), date_time)),
            esc(&cap.last_time.as_deref().map_or("-".to_string(), date_time)),
            esc(&cap.link_types.join(", "))
        );
    }
    let _ = writeln!(s, "</tbody></table><ul>");
    for (words, code) in super::input_notes(report) {
        let code = code.map_or(String::new(), |c| {
            format!("<span class=\"mono\">{}</span>", esc(&c))
        });
        let _ = writeln!(s, "<li>{}{code}</li>", esc(&words));
    }
    let _ = writeln!(s, "</ul>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn esc_escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(esc("bell\u{7}"), "bell\u{FFFD}");
    }
}

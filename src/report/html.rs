//! HTML: one self-contained file (inline CSS, JS and SVG; nothing loaded from the network) with the
//! Markdown report's content, a table of every connection with filters (only failures, one
//! verdict), and a ladder diagram per failed connection.
//!
//! The ladder (see `ladder.rs` for how packets are matched) puts the proxy's and the backend's
//! capture points on two vertical lines, time running down on one axis (the proxy capture's clock).
//! The axis keeps the order of events but not their proportions: each step down grows with the
//! logarithm of the time between two events, and a gap of 100 ms or more becomes a fixed break
//! labelled with its length ("… 4.8 s idle …"). Each packet is one `<g class="arrow">` whose
//! `data-frames` lists the frames it stands for (`p7` proxy frame 7, `b8` backend frame 8), so every
//! logged packet of the connection appears in exactly one arrow.

use std::fmt::Write as _;
use std::io::{self, Write};

use super::ladder::{Arrow, ArrowKind, Fate, Ladder, Point};
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

/// The whole page.
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

    // Summary table; a verdict's row filters the page to it.
    let _ = writeln!(
        s,
        "<table class=\"summary\"><thead><tr><th>verdict</th><th>blame</th><th class=\"num\">connections</th></tr></thead><tbody>"
    );
    for f in &report.summary.failures {
        let _ = writeln!(
            s,
            "<tr class=\"failed\"><td class=\"verdict\"><a href=\"#connections\" data-filter-verdict=\"{0}\">{0}</a></td><td>{1}</td><td class=\"num\">{2}</td></tr>",
            esc(f.verdict.label()),
            esc(f.blame.label()),
            f.connections
        );
    }
    for f in &report.summary.other_findings {
        let _ = writeln!(
            s,
            "<tr class=\"notable\"><td class=\"verdict\"><a href=\"#connections\" data-filter-verdict=\"{0}\">{0}</a> (not a failure)</td><td>{1}</td><td class=\"num\">{2}</td></tr>",
            esc(f.verdict.label()),
            esc(f.blame.label()),
            f.connections
        );
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
    // The incident's pattern (issue 12): shape, plot, breakdowns.
    super::incident::write_html(report, &mut s);

    // Filters and the list of every connection.
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
    let _ = writeln!(s, "</tbody></table>");

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
    if !c.evidence.is_empty() {
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
    if let Some(l) = &c.ladder {
        let _ = writeln!(s, "<figure>");
        ladder_svg(s, l, &c.id);
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
    let _ = writeln!(s, "</section>");
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

// ---- the ladder diagram ----

const WIDTH: f64 = 1000.0;
const TOP: f64 = 58.0;
/// x of the left (proxy) and right (backend) lines.
const X_LEFT: f64 = 250.0;
const X_RIGHT: f64 = 750.0;
/// x halfway between the lines; with one capture, the end not captured is drawn at `X_RIGHT`.
const X_MID: f64 = (X_LEFT + X_RIGHT) / 2.0;
/// A gap between two events at least this long is drawn as a labelled break.
const IDLE_NS: i64 = 100_000_000;
const IDLE_PX: f64 = 40.0;

/// Time (relative ns) → y, monotonic: the layout of one ladder.
struct Axis {
    /// (time, y) of each distinct event time.
    stops: Vec<(i64, f64)>,
    /// Breaks: (y of the middle, length of the idle time in ns).
    breaks: Vec<(f64, i64)>,
}

impl Axis {
    fn new(mut times: Vec<i64>, arrows: usize) -> Axis {
        times.sort_unstable();
        times.dedup();
        let min_px = if arrows <= 150 {
            16.0
        } else if arrows <= 600 {
            9.0
        } else {
            4.0
        };
        let mut stops = Vec::with_capacity(times.len());
        let mut breaks = Vec::new();
        let mut y = TOP + 14.0;
        let mut prev: Option<i64> = None;
        for t in times {
            if let Some(p) = prev {
                let dt = t - p;
                if dt >= IDLE_NS {
                    breaks.push((y + IDLE_PX / 2.0, dt));
                    y += IDLE_PX;
                } else {
                    let extra = (6.0 * (1.0 + dt as f64 / 100_000.0).log2()).min(36.0);
                    y += min_px + extra;
                }
            }
            stops.push((t, y));
            prev = Some(t);
        }
        Axis { stops, breaks }
    }

    fn y(&self, t: i64) -> f64 {
        let i = self.stops.partition_point(|&(s, _)| s < t);
        match (
            i.checked_sub(1).and_then(|k| self.stops.get(k)),
            self.stops.get(i),
        ) {
            (_, Some(&(s, y))) if s == t => y,
            (Some(&(t0, y0)), Some(&(t1, y1))) => {
                y0 + (y1 - y0) * ((t - t0) as f64 / (t1 - t0).max(1) as f64)
            }
            (None, Some(&(_, y))) => y,
            (Some(&(_, y)), None) => y,
            (None, None) => TOP,
        }
    }

    fn bottom(&self) -> f64 {
        self.stops.last().map_or(TOP + 20.0, |&(_, y)| y)
    }
}

/// The time of an event in words for a break: "4.8 s", "250 ms".
fn idle_words(ns: i64) -> String {
    let ms = ns as f64 / 1e6;
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

/// Places labels so they do not overlap: remembers the last y used in each column.
struct Lanes {
    last: [f64; 4],
}

impl Lanes {
    /// Where to put a label wanted at `y` in `lane`: there if it is free; a little lower if the
    /// label must be drawn (`force`) and the lane is taken; nowhere otherwise.
    fn place(&mut self, lane: usize, y: f64, gap: f64, force: bool) -> Option<f64> {
        let y = if y - self.last[lane] >= gap {
            y
        } else if force {
            self.last[lane] + gap
        } else {
            return None;
        };
        self.last[lane] = y;
        Some(y)
    }
}

/// A frame in `data-frames`: `p7` (proxy frame 7), `b8` (backend frame 8); `p7@2` for frame 7 of
/// the third file of a rotated set.
pub fn frame_tag(p: &Point) -> String {
    let side = if p.line == 0 { 'p' } else { 'b' };
    if p.file == 0 {
        format!("{side}{}", p.frame)
    } else {
        format!("{side}{}@{}", p.frame, p.file)
    }
}

/// A frame for the hover text: "proxy #7 at 10:00:00.123456" (the time on its capture's clock).
fn frame_ref(lines: &[String], p: &Point) -> String {
    let side = lines.get(p.line).map_or("?", String::as_str);
    format!("{side} #{} at {}", p.frame, clock_time(&rfc3339(p.local_ns)))
}

/// x of a capture line: the proxy's (or the one capture's) on the left.
fn x_line(line: usize) -> f64 {
    if line == 0 { X_LEFT } else { X_RIGHT }
}

fn ladder_svg(s: &mut String, l: &Ladder, id: &str) {
    let one = l.lines.len() == 1;

    let mut times: Vec<i64> = Vec::new();
    for a in &l.arrows {
        times.extend(
            a.sent
                .iter()
                .chain(a.arrived.iter())
                .chain(a.also_arrived.iter())
                .map(|p| p.t),
        );
    }
    let axis = Axis::new(times, l.arrows.len());
    let height = axis.bottom() + 40.0;
    let _ = writeln!(
        s,
        "<svg class=\"ladder\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" viewBox=\"0 0 {WIDTH} {height:.0}\" data-connection=\"{}\" data-arrows=\"{}\" role=\"img\" aria-label=\"ladder diagram of connection {}\">",
        esc(id),
        l.arrows.len(),
        esc(id)
    );

    // The capture points: solid while that capture ran, dotted before and after.
    let (first, last) = (
        axis.stops.first().map_or(0, |&(t, _)| t),
        axis.stops.last().map_or(0, |&(t, _)| t),
    );
    for (i, name) in l.lines.iter().enumerate() {
        let x = x_line(i);
        let (start, end) = l.capture_span.get(i).copied().unwrap_or((i64::MIN, i64::MAX));
        let y_start = if start > first { axis.y(start) } else { TOP };
        let y_end = if end < last { axis.y(end) } else { height - 20.0 };
        let _ = writeln!(
            s,
            "<text class=\"head\" x=\"{x}\" y=\"22\" text-anchor=\"middle\">{} capture</text>\
             <text class=\"gutter\" x=\"{x}\" y=\"38\" text-anchor=\"middle\">frame  time on its clock</text>\
             <line class=\"farline\" x1=\"{x}\" y1=\"{TOP}\" x2=\"{x}\" y2=\"{:.1}\"/>\
             <line class=\"capline\" x1=\"{x}\" y1=\"{y_start:.1}\" x2=\"{x}\" y2=\"{y_end:.1}\"/>",
            esc(name),
            height - 20.0
        );
    }
    if one {
        let far = l.far_end.as_deref().unwrap_or("other end");
        let _ = writeln!(
            s,
            "<text class=\"head\" x=\"{X_RIGHT}\" y=\"22\" text-anchor=\"middle\" fill=\"#59636e\">{} (not captured)</text>\
             <line class=\"farline\" x1=\"{X_RIGHT}\" y1=\"{TOP}\" x2=\"{X_RIGHT}\" y2=\"{:.1}\"/>",
            esc(far),
            height - 20.0
        );
    }

    // Idle breaks across the lines.
    for &(y, dt) in &axis.breaks {
        let _ = writeln!(
            s,
            "<rect class=\"idleband\" x=\"0\" y=\"{:.1}\" width=\"{WIDTH}\" height=\"{:.1}\"/>\
             <text class=\"idle\" x=\"{X_MID}\" y=\"{:.1}\" text-anchor=\"middle\">… {} idle …</text>",
            y - IDLE_PX / 2.0 + 6.0,
            IDLE_PX - 12.0,
            y + 4.0,
            idle_words(dt)
        );
    }

    // Where a capture started or stopped within the drawing.
    if let (Some(&(first, _)), Some(&(last, _))) = (axis.stops.first(), axis.stops.last()) {
        for (i, &(start, end)) in l.capture_span.iter().enumerate() {
            let x = x_line(i);
            for (t, what) in [(start, "starts"), (end, "stops")] {
                if t > first && t < last {
                    let y = axis.y(t);
                    let (x2, anchor) = if i == 0 {
                        (x - 60.0, "end")
                    } else {
                        (x + 60.0, "start")
                    };
                    let _ = writeln!(
                        s,
                        "<line class=\"capedge\" x1=\"{x}\" y1=\"{y:.1}\" x2=\"{x2}\" y2=\"{y:.1}\"/>\
                         <text class=\"capedge\" x=\"{x2}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{} capture {what}</text>",
                        y - 2.0,
                        esc(&l.lines[i])
                    );
                }
            }
        }
    }
    // Where a log's middle was left out.
    for (i, &(n, after)) in l.elided.iter().enumerate() {
        if n > 0 {
            let y = axis.y(after) + 3.0;
            let x = x_line(i);
            let _ = writeln!(
                s,
                "<text class=\"idle\" x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"{}\">… {n} packets not drawn …</text>",
                if i == 0 { x + 8.0 } else { x - 8.0 },
                if i == 0 { "start" } else { "end" }
            );
        }
    }

    // The arrows.
    let mut lanes = Lanes {
        last: [f64::NEG_INFINITY; 4],
    };
    let mut gutters = Lanes {
        last: [f64::NEG_INFINITY; 4],
    };
    for a in &l.arrows {
        arrow_svg(s, l, a, &axis, &mut lanes, &mut gutters);
    }
    let _ = writeln!(s, "</svg>");
}

fn arrow_svg(s: &mut String, l: &Ladder, a: &Arrow, axis: &Axis, lanes: &mut Lanes, gutters: &mut Lanes) {
    // Geometry: start and end points.
    let (x1, y1, x2, y2) = match (a.fate, a.sent, a.arrived) {
        (Fate::OneCapture, Some(p), _) => {
            let y = axis.y(p.t);
            (X_LEFT, y, X_RIGHT, y + 8.0)
        }
        (Fate::OneCapture, None, Some(p)) => {
            let y = axis.y(p.t);
            (X_RIGHT, y - 8.0, X_LEFT, y)
        }
        (Fate::Arrived, Some(sp), Some(rp)) => {
            let ys = axis.y(sp.t);
            let yr = axis.y(rp.t).max(ys + 2.0);
            (x_line(sp.line), ys, x_line(rp.line), yr)
        }
        // Seen only where it arrived: it starts between the lines, nearer the sender's.
        (Fate::ReceiverOnly, _, Some(rp)) => {
            let yr = axis.y(rp.t);
            let x = x_line(rp.line);
            (x + (X_MID - x) * 1.16, yr - 12.0, x, yr)
        }
        // Never arrived: it ends between the lines, nearer the sender's.
        (Fate::Lost, Some(sp), _) => {
            let ys = axis.y(sp.t);
            let x = x_line(sp.line);
            (x, ys, x + (X_MID - x) * 0.84, ys + 10.0)
        }
        (Fate::NotCapturedAtReceiver, Some(sp), _) => {
            let ys = axis.y(sp.t);
            let xr = x_line(1 - sp.line.min(1));
            (x_line(sp.line), ys, xr, ys + 12.0)
        }
        (Fate::OutsideCapture | Fate::NotDrawn, Some(sp), _) => {
            let ys = axis.y(sp.t);
            let x = x_line(sp.line);
            let x2 = if sp.line == 0 { x + 120.0 } else { x - 120.0 };
            (x, ys, x2, ys + 6.0)
        }
        _ => return,
    };
    let dir = if a.to_backend { "c2s" } else { "s2c" };
    let marker = match a.kind {
        ArrowKind::Syn | ArrowKind::SynAck => "ah-syn",
        ArrowKind::Data => {
            if a.to_backend {
                "ah-c2s"
            } else {
                "ah-s2c"
            }
        }
        ArrowKind::Ack => "ah-ack",
        ArrowKind::Fin => "ah-fin",
        ArrowKind::Rst => "ah-rst",
    };
    let mut frames: Vec<String> = Vec::new();
    if let Some(p) = &a.sent {
        frames.push(frame_tag(p));
    }
    if let Some(p) = a.arrived.as_ref().filter(|_| a.owns_arrival) {
        frames.push(frame_tag(p));
    }
    frames.extend(a.also_arrived.iter().map(frame_tag));

    // The hover text: frames and times in each capture.
    let mut title = a.label.clone();
    if let Some(p) = &a.sent {
        let _ = write!(title, "\nleft: {}", frame_ref(&l.lines, p));
    }
    if let Some(p) = &a.arrived {
        let _ = write!(title, "\narrived: {}", frame_ref(&l.lines, p));
        if let Some(sp) = &a.sent {
            let _ = write!(title, " ({} later)", duration_words((p.t - sp.t) as f64 / 1e6));
        }
    }
    if let (Some(first), Some(last)) = (a.also_arrived.first(), a.also_arrived.last()) {
        let _ = write!(
            title,
            "\nits bytes also arrived in {} more frame{} (#{}–#{})",
            a.also_arrived.len(),
            if a.also_arrived.len() == 1 { "" } else { "s" },
            first.frame,
            last.frame
        );
    }
    match a.fate {
        Fate::Lost => title.push_str("\nnever arrived (not in the other capture, not acknowledged)"),
        Fate::NotCapturedAtReceiver => {
            title.push_str("\narrived (the receiver acknowledged it) but its capture missed it")
        }
        Fate::OutsideCapture => title.push_str("\nthe other end's capture was not running"),
        Fate::NotDrawn => title.push_str("\nthe other end's packets of this moment are not drawn"),
        Fate::ReceiverOnly => title.push_str("\nseen only where it arrived"),
        _ => {}
    }

    let _ = write!(
        s,
        "<g class=\"arrow k-{} d-{dir} f-{}{}\"{} data-frames=\"{}\"><title>{}</title>",
        a.kind.name(),
        a.fate.name(),
        if a.retransmission { " retrans" } else { "" },
        a.sent
            .as_ref()
            .map_or(String::new(), |p| format!(" data-sent=\"{}\"", frame_tag(p))),
        frames.join(" "),
        esc(&title)
    );
    let _ = write!(
        s,
        "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" marker-end=\"url(#{marker})\"/>"
    );
    match a.fate {
        Fate::Lost => {
            let _ = write!(
                s,
                "<path class=\"mark\" d=\"M{:.1},{:.1} l8,8 m0,-8 l-8,8\"/>",
                x2 - 4.0 + if a.to_backend { 4.0 } else { -4.0 },
                y2 - 4.0
            );
        }
        Fate::ReceiverOnly => {
            let _ = write!(
                s,
                "<circle class=\"origin\" cx=\"{x1:.1}\" cy=\"{y1:.1}\" r=\"4\"/>"
            );
        }
        _ => {}
    }
    for p in &a.also_arrived {
        let _ = write!(
            s,
            "<circle class=\"tick\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.6\"/>",
            x_line(p.line),
            axis.y(p.t)
        );
    }

    // The label, near where the arrow starts, in its direction's lane.
    let important = matches!(
        a.kind,
        ArrowKind::Syn | ArrowKind::SynAck | ArrowKind::Fin | ArrowKind::Rst
    ) || matches!(a.fate, Fate::Lost | Fate::ReceiverOnly)
        || a.zero_window;
    // Labels on the left half and on the right half of the drawing avoid each other.
    let (lx, anchor) = match (a.fate, x2 >= x1) {
        // From its origin mark, away from where it is going.
        (Fate::ReceiverOnly, true) => (x1 - 8.0, "end"),
        (Fate::ReceiverOnly, false) => (x1 + 8.0, "start"),
        (_, true) => (x1 + 10.0, "start"),
        (_, false) => (x1 - 10.0, "end"),
    };
    let lane = if lx < X_MID { 0 } else { 1 };
    let want_y = if a.fate == Fate::ReceiverOnly {
        y1 + 4.0
    } else {
        y1 + (y2 - y1) * 0.12 - 3.0
    };
    if let Some(label_y) = lanes.place(lane, want_y, 12.0, important) {
        let _ = write!(
            s,
            "<text class=\"lbl\" x=\"{lx:.1}\" y=\"{label_y:.1}\" text-anchor=\"{anchor}\">{}</text>",
            esc(&a.label)
        );
    }
    // Frame numbers and times in the gutters, where the arrow touches a capture line.
    for p in a.sent.iter().chain(a.arrived.iter()) {
        let x = x_line(p.line);
        let y = if Some(*p) == a.sent { y1 } else { y2 };
        let lane = 2 + p.line.min(1);
        if gutters.place(lane, y, 11.0, false).is_some() {
            let (gx, anchor) = if p.line == 0 {
                (x - 8.0, "end")
            } else {
                (x + 8.0, "start")
            };
            let _ = write!(
                s,
                "<text class=\"gutter\" x=\"{gx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">#{} {}</text>",
                y + 3.5,
                p.frame,
                clock_time(&rfc3339(p.local_ns))
            );
        }
    }
    let _ = writeln!(s, "</g>");
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

    #[test]
    fn the_axis_keeps_order_and_breaks_idle_time() {
        let ms = 1_000_000;
        let axis = Axis::new(vec![0, ms, 2 * ms, 2 * ms, 5_000 * ms, 5_000 * ms + 10], 10);
        let ys: Vec<f64> = axis.stops.iter().map(|&(_, y)| y).collect();
        assert_eq!(ys.len(), 5, "equal times share a row");
        assert!(ys.windows(2).all(|w| w[1] > w[0]), "{ys:?}");
        // Longer gaps take more room, up to the idle threshold...
        assert!(axis.y(2 * ms) - axis.y(ms) > axis.y(5_000 * ms + 10) - axis.y(5_000 * ms));
        // ...and the 5 s of idle time are one fixed break.
        assert_eq!(axis.breaks.len(), 1);
        assert_eq!(axis.breaks[0].1, 4_998 * ms);
        assert_eq!(idle_words(axis.breaks[0].1), "5.0 s");
        assert!((axis.y(5_000 * ms) - axis.y(2 * ms) - IDLE_PX).abs() < 1e-9);
        // Between two events, y is interpolated; outside, clamped.
        let mid = axis.y(ms / 2);
        assert!(mid > axis.y(0) && mid < axis.y(ms));
        assert_eq!(axis.y(-5), axis.y(0));
    }

    #[test]
    fn forced_labels_move_down_others_give_way() {
        let mut lanes = Lanes {
            last: [f64::NEG_INFINITY; 4],
        };
        assert_eq!(lanes.place(0, 100.0, 12.0, false), Some(100.0));
        assert_eq!(lanes.place(0, 105.0, 12.0, false), None);
        assert_eq!(lanes.place(0, 105.0, 12.0, true), Some(112.0));
        assert_eq!(lanes.place(1, 105.0, 12.0, false), Some(105.0));
    }
}

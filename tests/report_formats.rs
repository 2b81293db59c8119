//! Every report format for every lab scenario of `captures/`, with both captures and with the proxy
//! capture alone: JSON and NDJSON validate against the committed JSON Schema (which must be what
//! the report types generate), Markdown has the sections a ticket needs and no raw HTML, HTML is
//! self-contained and its ladder diagrams have one arrow per packet.
//!
//! To regenerate the schema files after changing the report model:
//! `BOTHENDS_BLESS=1 cargo test --test report_formats schema` (or `cargo run -- schema >
//! schema/report.schema.json` and `cargo run -- schema --ndjson > schema/connection.schema.json`).

mod kit;

use std::collections::BTreeMap;
use std::path::Path;

use bothends::capture::{CaptureSet, Input};
use bothends::pipeline::{self, Analysis, Side, SideOptions};
use bothends::report::{self, Report, ReportOptions};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn analyze(dir: &Path, both: bool) -> Analysis {
    let sides = kit::lab_captures(dir, both);
    pipeline::analyze(pipeline::read_sides(sides, SideOptions::default()), &[])
}

fn options() -> ReportOptions {
    ReportOptions {
        ladders: true,
        ..ReportOptions::default()
    }
}

fn render(f: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>) -> String {
    let mut v = Vec::new();
    f(&mut v).expect("renders");
    String::from_utf8(v).expect("UTF-8")
}

fn committed(name: &str) -> serde_json::Value {
    let path = root().join("schema").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).expect("schema file")).expect("schema JSON")
}

#[test]
fn schema_files_are_what_the_report_types_generate() {
    for (name, schema) in [
        ("report.schema.json", report::report_schema()),
        ("connection.schema.json", report::connection_schema()),
    ] {
        let path = root().join("schema").join(name);
        let text = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if std::env::var_os("BOTHENDS_BLESS").is_some() {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == text,
            "{} is out of date with the report types: regenerate it with \
             `BOTHENDS_BLESS=1 cargo test --test report_formats schema`",
            path.display()
        );
    }
}

#[test]
fn the_schema_of_the_binary_is_the_committed_one() {
    for (args, name) in [
        (&["schema"][..], "report.schema.json"),
        (&["schema", "--ndjson"][..], "connection.schema.json"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bothends"))
            .args(args)
            .output()
            .expect("bothends runs");
        assert!(out.status.success());
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(v, committed(name), "bothends {args:?}");
    }
}

fn validate(validator: &jsonschema::Validator, v: &serde_json::Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(v)
        .take(10)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what} does not match the schema:\n{}",
        errors.join("\n")
    );
}

/// Markdown prose and tables must not carry raw HTML: every `<` outside code is escaped.
fn assert_no_raw_html(md: &str, what: &str) {
    let mut in_fence = false;
    for line in md.lines() {
        if line.starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Remove code spans, then look for an unescaped '<'.
        let mut outside = String::new();
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                outside.push(c);
            }
        }
        let b = outside.as_bytes();
        for i in 0..b.len() {
            if b[i] == b'<' && (i == 0 || b[i - 1] != b'\\') {
                panic!("{what}: raw '<' in Markdown line: {line}");
            }
        }
    }
}

fn check_markdown(md: &str, r: &Report, what: &str) {
    let first = md.lines().next().unwrap_or("");
    assert!(first.starts_with("# bothends: "), "{what}: title line: {first}");
    assert!(
        first.contains("connection"),
        "{what}: title says the answer: {first}"
    );
    assert!(
        md.contains("| verdict | blame | connections |"),
        "{what}: summary table"
    );
    // Counted from the rows here, not taken from the summary the Markdown is written from.
    let mut by_pair: Vec<(String, String, u64)> = Vec::new();
    for c in r.connections.iter().filter(|c| report::is_notable(c)) {
        let (mut v, b) = (
            c.verdict.map(|v| v.label().to_string()).unwrap_or_default(),
            c.blame.map(|b| b.label().to_string()).unwrap_or_default(),
        );
        if !report::is_failed(c) {
            v.push_str(" (not a failure)");
        }
        match by_pair.iter_mut().find(|(x, y, _)| *x == v && *y == b) {
            Some(e) => e.2 += 1,
            None => by_pair.push((v, b, 1)),
        }
    }
    for (v, b, n) in by_pair {
        assert!(
            md.contains(&format!("| {v} | {b} | {n} |")),
            "{what}: summary row {v}"
        );
    }
    let notable: Vec<_> = r.connections.iter().filter(|c| report::is_notable(c)).collect();
    for (n, c) in notable.iter().enumerate() {
        // A finding that is not a failure says which kind it is.
        let kind = match c.outcome.map(|o| o.label()) {
            Some("abandoned") => "; not a failure: abandoned by the proxy",
            Some("not-judged") => "; not a failure: not judged",
            Some("failed") => "",
            other => panic!("{what}: connection {} has outcome {other:?}", c.id),
        };
        let heading = format!(
            "## {}. {} (blame: {}{kind}) — connection {}",
            n + 1,
            c.verdict.unwrap(),
            c.blame.unwrap(),
            c.id
        );
        let at = md
            .find(&heading)
            .unwrap_or_else(|| panic!("{what}: no section {heading}"));
        let end = md[at + 3..].find("\n## ").map_or(md.len(), |e| at + 3 + e);
        let section = &md[at..end];
        assert!(
            section.contains("**What happened:**"),
            "{what}: {heading}: what happened"
        );
        if !c.evidence.is_empty() {
            assert!(section.contains("**Evidence**"), "{what}: {heading}: evidence");
            for side in r.captures.iter().map(|c| &c.side) {
                assert!(
                    section.contains(&format!("{side} frame | {side} time")),
                    "{what}: {heading}: evidence columns for {side}"
                );
            }
            for e in &c.evidence {
                assert!(
                    section.contains(&format!(" {} | {} |", e.frame, &e.time[11..26])),
                    "{what}: {heading}: evidence frame {} at {}",
                    e.frame,
                    e.time
                );
            }
        }
        assert!(
            section.contains("**Wireshark display filters:**"),
            "{what}: {heading}: filters"
        );
        for f in c.filters.values() {
            assert!(section.contains(f.as_str()), "{what}: {heading}: filter {f}");
        }
        if c.next_step.as_deref().is_some_and(|n| !n.is_empty()) {
            assert!(section.contains("**Next step:**"), "{what}: {heading}: next step");
        }
    }
    let inputs = md
        .find("\n## Inputs\n")
        .unwrap_or_else(|| panic!("{what}: no inputs section"));
    let inputs = &md[inputs..];
    for cap in &r.captures {
        for f in &cap.files {
            assert!(inputs.contains(f.as_str()), "{what}: input file {f}");
        }
        assert!(
            inputs.contains(&format!(" {} |", cap.packets)),
            "{what}: packet count"
        );
    }
    if r.clock_offset.is_some() {
        assert!(inputs.contains("- Clock offset: "), "{what}: clock offset");
    }
    assert!(
        inputs.contains("Warning") || inputs.contains("Warnings: none"),
        "{what}: warnings"
    );
    assert_no_raw_html(md, what);
}

/// An arrow of a ladder: the frame it left as (if a capture saw it leave), and every frame it
/// stands for.
struct DrawnArrow {
    sent: Option<String>,
    frames: Vec<String>,
}

/// The ladders of an HTML page, by connection id.
fn ladders(html: &str) -> BTreeMap<String, Vec<DrawnArrow>> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!(" {name}=\"");
        let at = tag.find(&key)? + key.len();
        Some(tag[at..at + tag[at..].find('"')?].to_string())
    };
    let mut out = BTreeMap::new();
    let mut rest = html;
    while let Some(at) = rest.find("<svg class=\"ladder\"") {
        let svg_end = rest[at..].find("</svg>").expect("svg closes") + at;
        let svg = &rest[at..svg_end];
        let id = attr(&svg[..svg.find('>').unwrap()], "data-connection").expect("connection id");
        let mut arrows = Vec::new();
        let mut g = svg;
        while let Some(a) = g.find("<g class=\"arrow ") {
            let tag = &g[a..a + g[a..].find('>').unwrap()];
            arrows.push(DrawnArrow {
                sent: attr(tag, "data-sent"),
                frames: attr(tag, "data-frames")
                    .expect("data-frames")
                    .split_whitespace()
                    .map(String::from)
                    .collect(),
            });
            g = &g[a + tag.len()..];
        }
        out.insert(id, arrows);
        rest = &rest[svg_end..];
    }
    out
}

/// The packets a connection's logs hold, as `data-frames` tags, from the analysis itself: (all
/// of them, those its sender's capture saw leave).
fn logged_frames(a: &Analysis, c: &report::ConnectionReport) -> (Vec<String>, Vec<String>) {
    let mut all = Vec::new();
    let mut sent = Vec::new();
    for (line, side) in a.sides.iter().enumerate() {
        let Some(view) = c.views.get(side.side.name()) else {
            continue;
        };
        let conn = side
            .connections
            .iter()
            .find(|k| k.first.frame.frame as u64 == view.first_frame && k.client.to_string() == view.client)
            .expect("the view's connection");
        for p in conn.log.packets() {
            let s = if line == 0 { 'p' } else { 'b' };
            let tag = if p.at.frame.file == 0 {
                format!("{s}{}", p.at.frame.frame)
            } else {
                format!("{s}{}@{}", p.at.frame.frame, p.at.frame.file)
            };
            // The proxy sends client→server packets, the backend server→client ones.
            let from_here = (line == 0) == (p.dir == bothends::tcp::Dir::ClientToServer);
            if from_here {
                sent.push(tag.clone());
            }
            all.push(tag);
        }
    }
    all.sort();
    sent.sort();
    (all, sent)
}

fn check_html(html: &str, a: &Analysis, r: &Report, what: &str) {
    assert!(html.starts_with("<!DOCTYPE html>"), "{what}: doctype");
    assert!(html.trim_end().ends_with("</html>"), "{what}: complete");
    // Self-contained: nothing is fetched.
    for needle in [
        "<link",
        "src=",
        "@import",
        "url(http",
        "href=\"http",
        "href='http",
    ] {
        assert!(
            !html.contains(needle),
            "{what}: HTML refers outside itself ({needle})"
        );
    }
    let external = html
        .match_indices("http")
        .filter(|(i, _)| !html[*i..].starts_with("http://www.w3.org/2000/svg"))
        .count();
    assert_eq!(external, 0, "{what}: no URL besides the SVG namespace");
    assert!(
        html.contains(&report::html::esc(&r.summary.answer)),
        "{what}: the answer"
    );

    let drawn = ladders(html);
    let failed: Vec<_> = r.connections.iter().filter(|c| report::is_notable(c)).collect();
    assert_eq!(
        drawn.len(),
        failed.len().min(report::MAX_LADDERS),
        "{what}: one ladder per connection with a finding"
    );
    let one_capture = a.sides.len() == 1;
    for c in failed.iter().take(report::MAX_LADDERS) {
        let arrows = drawn
            .get(&c.id)
            .unwrap_or_else(|| panic!("{what}: no ladder for {}", c.id));
        let mut frames: Vec<String> = arrows.iter().flat_map(|a| a.frames.iter().cloned()).collect();
        frames.sort();
        let (logged, sent) = logged_frames(a, c);
        assert_eq!(
            frames, logged,
            "{what}: connection {}: every logged packet in exactly one arrow",
            c.id
        );
        assert!(
            arrows.iter().all(|a| !a.frames.is_empty()),
            "{what}: an arrow without a packet"
        );
        if one_capture {
            assert_eq!(
                arrows.len(),
                logged.len(),
                "{what}: connection {}: one arrow per packet",
                c.id
            );
        } else {
            // Two captures: one arrow per packet seen leaving its sender, plus one per packet seen
            // only where it arrived.
            let mut drawn_sent: Vec<String> = arrows.iter().filter_map(|a| a.sent.clone()).collect();
            drawn_sent.sort();
            assert_eq!(
                drawn_sent, sent,
                "{what}: connection {}: one arrow per packet sent",
                c.id
            );
            for a in arrows.iter().filter(|a| a.sent.is_none()) {
                assert_eq!(a.frames.len(), 1, "{what}: a packet seen only where it arrived");
            }
        }
    }
}

/// The text report reads on an 80-column terminal: every line fits, except the Wireshark filters
/// (copied whole) and a capture's file names (a path is not cut).
fn check_text_width(text: &str, r: &Report, what: &str) {
    let files: Vec<String> = r.captures.iter().flat_map(|c| c.files.clone()).collect();
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("wireshark (") || files.iter().any(|f| line.contains(f.as_str())) {
            continue;
        }
        assert!(
            line.chars().count() <= 80,
            "{what}: text line of {} columns: {line}",
            line.chars().count()
        );
    }
}

#[test]
fn every_lab_scenario_in_every_format() {
    let report_schema = jsonschema::validator_for(&committed("report.schema.json")).expect("schema compiles");
    let line_schema =
        jsonschema::validator_for(&committed("connection.schema.json")).expect("schema compiles");
    let dirs = kit::lab_scenarios();
    assert!(dirs.len() >= 20, "{} lab scenarios", dirs.len());
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        for both in [true, false] {
            let what = format!(
                "{name} ({})",
                if both { "both captures" } else { "proxy capture" }
            );
            let a = analyze(dir, both);
            let r = report::build(&a, &options());

            let json = render(|o| report::json::write_json(&r, o));
            let v: serde_json::Value = serde_json::from_str(&json).expect("JSON parses");
            validate(&report_schema, &v, &what);
            assert_eq!(v["schema"], report::SCHEMA);
            // JSON is the model less the ladders.
            let back: Report = serde_json::from_value(v).expect("JSON is a Report");
            let mut without = r.clone();
            without.connections.iter_mut().for_each(|c| c.ladder = None);
            assert_eq!(back, without, "{what}: JSON round trip");

            let ndjson = render(|o| report::json::write_ndjson(&r, o));
            assert_eq!(
                ndjson.lines().count(),
                r.connections.len(),
                "{what}: one line a connection"
            );
            for line in ndjson.lines() {
                let v: serde_json::Value = serde_json::from_str(line).expect("NDJSON line parses");
                validate(&line_schema, &v, &what);
            }

            let md = render(|o| report::markdown::write_markdown(&r, o));
            check_markdown(&md, &r, &what);

            let html = render(|o| report::html::write_html(&r, o));
            check_html(&html, &a, &r, &what);

            let text = render(|o| report::text::write_analysis(&r, Default::default(), o));
            assert!(text.starts_with("bothends: "), "{what}: text");
            check_text_width(&text, &r, &what);
        }
    }
}

#[test]
fn flows_json_validates_too() {
    let validator = jsonschema::validator_for(&committed("report.schema.json")).unwrap();
    for f in [
        "zeek/http-get.pcap",
        "suricata/http-chunked.pcap",
        "arkime/http-post-upload.pcap",
    ] {
        let path = root().join("tests/corpus").join(f);
        let set = CaptureSet::open(&[Input::from(path.as_path())]).unwrap();
        let side = pipeline::read_side(Side::Single, set, SideOptions::default());
        let r = report::build(&pipeline::flows(side), &ReportOptions::default());
        let v = serde_json::to_value(&r).unwrap();
        validate(&validator, &v, f);
    }
}

/// A connection of more than 512 packets: each capture's log keeps the first and last 256
/// (`tcp::LOG_HEAD`, `tcp::LOG_TAIL`), so the ladder leaves the middle out; packets whose counterpart falls in the other capture's left-out
/// part are not drawn as lost.
#[test]
fn a_long_failed_connection_is_drawn_without_false_losses() {
    let mut w = kit::Wire::new(10_000, 20_000);
    w.handshake();
    // 1500 segments, each acknowledged: 3000 packets in each capture.
    let body = 1500 * 1000;
    let req = kit::post("/big", body);
    for chunk in req.chunks(1000) {
        w.c2s(kit::PSH, chunk);
        w.wait_ms(0.1);
        w.s2c(kit::ACK, b"");
        w.wait_ms(0.1);
    }
    w.wait_ms(20.0);
    w.s2c(kit::RSTACK, b"");
    let a = kit::analyze(&w, true);
    let r = report::build(&a, &options());
    assert!(r.summary.failed == 1, "{:?}", r.summary);
    let html = render(|o| report::html::write_html(&r, o));
    check_html(&html, &a, &r, "long connection");
    assert!(html.contains("packets not drawn"));
    assert!(
        !html.contains("class=\"arrow k-data d-c2s f-lost"),
        "a false loss"
    );
    let l = r.connections[0].ladder.as_ref().unwrap();
    assert!(
        l.arrows
            .iter()
            .all(|a| a.fate != bothends::report::ladder::Fate::Lost)
    );
    assert!(
        l.arrows
            .iter()
            .any(|a| a.fate == bothends::report::ladder::Fate::NotDrawn)
    );
}

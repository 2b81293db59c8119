//! The incident view (timeline, shape, patterns) on the lab's real captures, against what the
//! scenarios did (`captures/*/expected.json` and its description) and what tshark counts, and on
//! a synthetic capture where only POSTs over 1 MiB fail. The rules themselves, at their
//! boundaries, are tested with synthetic findings in `src/incident/timeline.rs`.
//!
//! Request counts come from tshark, independently of bothends: `tshark -r proxy.pcap -o
//! http.desegment_body:FALSE -Y http.request` counts every request whose head was sent (a
//! request whose body was cut is counted too), plus one per connection refused or timed out
//! before a request could be sent.

mod kit;

use std::path::Path;
use std::process::Command;

use bothends::pipeline::{self, SideOptions};
use bothends::report::{self, BreakdownReport, Incident, ReportOptions};
use kit::*;
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    description: String,
    connections: Vec<ExpectedConn>,
}

#[derive(Deserialize)]
struct ExpectedConn {
    proxy: Option<View>,
    verdict: String,
    exchanges: Vec<ExpectedExchange>,
}

#[derive(Deserialize)]
struct View {
    first_frame: u64,
}

#[derive(Deserialize)]
struct ExpectedExchange {
    target: String,
}

fn lab(name: &str) -> (Expected, Incident) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures").join(name);
    let e: Expected =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let a = pipeline::analyze(
        pipeline::read_sides(lab_captures(&dir, true), SideOptions::default()),
        &[],
    );
    let r = report::build(&a, &ReportOptions::default());
    (e, r.incident.expect("analyze has an incident view"))
}

fn failing(e: &Expected) -> Vec<&ExpectedConn> {
    e.connections.iter().filter(|c| c.verdict != "ok").collect()
}

fn breakdown<'a>(i: &'a Incident, dim: &str) -> &'a BreakdownReport {
    i.breakdowns.iter().find(|b| b.dimension == dim).expect(dim)
}

/// (requests, failed) of a breakdown's value.
fn row(i: &Incident, dim: &str, value: &str) -> (u64, u64) {
    breakdown(i, dim)
        .rows
        .iter()
        .find(|r| r.value == value)
        .map_or((0, 0), |r| (r.requests, r.failed))
}

/// The backend killed (SIGKILL) and restarted: every in-flight request cut at once, the two
/// connects while it was down refused, everything fine after the restart. One burst in which
/// nothing succeeded: all at once.
#[test]
fn backend_killed_and_restarted_is_all_at_once() {
    let (e, i) = lab("apache-backend-killed-and-restarted");
    assert!(
        e.description.contains("SIGKILL") && e.description.contains("after the restart everything works")
    );
    let failing = failing(&e);
    assert_eq!(i.failed, failing.len() as u64);
    // tshark: 8 request heads; plus the 2 refused connects.
    assert_eq!(i.requests, 10);
    assert_eq!(i.shape.kind, "all-at-once", "{}", i.shape.reason);
    assert_eq!(
        i.shape.window_ok, 0,
        "nothing succeeded between the first and last failure"
    );
    assert!(i.shape.reason.contains("refused or cut"), "{}", i.shape.reason);
    // The last failure is the later refused connect: its SYN is its connection's first frame.
    let refused: Vec<u64> = failing
        .iter()
        .filter(|c| c.verdict == "connect-refused")
        .map(|c| c.proxy.as_ref().unwrap().first_frame)
        .collect();
    let last = i.last_failure.as_ref().unwrap();
    assert_eq!(last.verdict.label(), "connect-refused");
    assert_eq!(
        last.request.as_ref().map(|e| e.frame),
        refused.iter().max().copied()
    );
    // Healthy again after the restart.
    assert!(
        i.shape.reason.contains("requests succeeded again from about"),
        "{}",
        i.shape.reason
    );
}

/// A listen queue of 1 and nothing accepted for 3.5 s: two requests wait unserved, three
/// connects time out, three get in only with a SYN retransmission (late connects). Overload.
#[test]
fn full_listen_queue_is_under_load() {
    let (e, i) = lab("apache-backend-listen-queue-full");
    assert!(
        e.description
            .contains("three at t=2.9 get in with a SYN retransmission")
    );
    assert_eq!(i.failed, failing(&e).len() as u64);
    // tshark: 8 request heads; plus the 3 connects that timed out.
    assert_eq!(i.requests, 11);
    assert_eq!(i.shape.kind, "under-load", "{}", i.shape.reason);
    assert_eq!(i.shape.late_connects, 3);
    assert_eq!(i.shape.window_ok, 0);
}

/// 48 clients at once, six requests made to fail by their path (empty reply ×2, truncated,
/// never answered, closed mid-POST, forged RST), every other one healthy: individual requests
/// fail, at the same load as the healthy ones — sporadic, and the paths show it.
#[test]
fn busy_mixed_failures_are_sporadic_and_their_paths_stand_out() {
    let (e, i) = lab("apache-busy-mixed");
    assert!(e.description.contains("Six requests are made to fail"));
    assert_eq!(i.failed, 6);
    // "48 clients ... each sending two requests"; tshark counts 96 request heads too.
    assert_eq!(i.requests, 96);
    assert_eq!(i.shape.kind, "sporadic", "{}", i.shape.reason);
    // Every failing request's path prefix (from expected.json: the fault is its connection's
    // last exchange) failed every time; /ok/ never.
    for c in failing(&e) {
        let x = c.exchanges.last().expect("failed exchange");
        let prefix = format!("/{}/", x.target.split('/').nth(1).unwrap());
        let (requests, failed) = row(&i, "path", &prefix);
        assert!(
            requests > 0 && failed == requests,
            "{prefix}: {requests} {failed}"
        );
    }
    let (requests, failed) = row(&i, "path", "/ok/");
    assert_eq!((requests, failed), (90, 0));
    assert!(
        i.highlights
            .iter()
            .any(|h| h == "every request to /empty/ (2 of 2) failed"),
        "{:?}",
        i.highlights
    );
}

/// Keep-alive races: sporadic, and only on reused connections.
#[test]
fn keepalive_races_are_sporadic_on_reused_connections_only() {
    // apache: "one client sends 90 GETs", 1 race. nginx: 60 GETs and nginx retried each of the
    // 5 raced ones on a new connection: 65 (tshark counts 90 and 65 request heads).
    for (name, requests) in [("apache-keepalive-race", 90), ("nginx-keepalive-race", 65)] {
        let (e, i) = lab(name);
        assert_eq!(i.failed, failing(&e).len() as u64, "{name}");
        assert_eq!(i.requests, requests, "{name}");
        assert_eq!(i.shape.kind, "sporadic", "{name}: {}", i.shape.reason);
        assert_eq!(row(&i, "reuse", "new connection").1, 0, "{name}");
        assert_eq!(row(&i, "reuse", "reused connection").1, i.failed, "{name}");
    }
    let (_, i) = lab("nginx-keepalive-race");
    assert!(
        i.highlights
            .iter()
            .any(|h| h.starts_with("every failure was on a reused connection")),
        "{:?}",
        i.highlights
    );
}

/// A GET, then a 1 MiB POST on the same connection reset mid-body: the one failure is the POST,
/// its body 1 MiB, on a reused connection.
#[test]
fn reused_rst_mid_post_is_the_big_post_on_a_reused_connection() {
    let (e, i) = lab("apache-reused-rst-mid-post");
    assert!(e.description.contains("1 MiB POST"));
    assert_eq!((i.requests, i.failed), (2, 1));
    assert_eq!(row(&i, "method", "POST"), (1, 1));
    assert_eq!(row(&i, "method", "GET"), (1, 0));
    assert_eq!(row(&i, "body_size", "≥ 1 MiB"), (1, 1));
    assert_eq!(row(&i, "reuse", "reused connection"), (1, 1));
    assert_eq!(
        i.highlights,
        [
            "the one failure was a POST request, was to /close-mid-request/, had a request body of ≥ 1 MiB, was on a reused connection"
        ]
    );
}

/// Random loss that TCP recovered: no failure, a one-line pattern.
#[test]
fn recovered_loss_has_no_failure_pattern() {
    let (_, i) = lab("apache-random-loss-ok");
    // "Eight clients each download 120 kB, upload 50 kB and make two small requests": 32.
    assert_eq!((i.requests, i.failed, i.ok), (32, 0, 32));
    assert_eq!(i.shape.kind, "none");
    assert!(i.first_failure.is_none() && i.highlights.is_empty());
}

/// 40 connections, one every 500 ms: healthy ones carry a GET and a 4000-byte POST (in either
/// order); every fourth carries a 2 MiB POST, first or after a GET, that the backend resets
/// 70 kB into the body. Only POSTs over 1 MiB fail.
fn big_posts() -> (Vec<u8>, Vec<u8>) {
    let mut wires = Vec::new();
    for k in 0..40u32 {
        let mut w = Wire::new(1000 + k * 7919, 500_000 + k * 104_729);
        w.p_client.1 = 40000 + k as u16;
        w.b_client.1 = 40000 + k as u16;
        w.wait_ms(k as f64 * 500.0).handshake();
        let small = post("/api/items", 4000);
        let big = post("/api/items", 2 << 20);
        match k % 8 {
            3 => {
                w.send_request(&big[..70_000]).s2c(RSTACK, b"");
            }
            7 => {
                w.send_request(&get("/api/items")).send_response(&ok(2000));
                w.send_request(&big[..70_000]).s2c(RSTACK, b"");
            }
            k if k % 2 == 0 => {
                w.send_request(&get("/api/items")).send_response(&ok(2000));
                w.send_request(&small).send_response(&ok(10)).close();
            }
            _ => {
                w.send_request(&small).send_response(&ok(10));
                w.send_request(&get("/api/items"))
                    .send_response(&ok(2000))
                    .close();
            }
        }
        wires.push(w);
    }
    Wire::merge(&wires)
}

#[test]
fn only_posts_over_1_mib_fail() {
    let (p, b) = big_posts();
    let a = pipeline::analyze(
        vec![side(pipeline::Side::Proxy, p), side(pipeline::Side::Backend, b)],
        &[],
    );
    let r = report::build(&a, &ReportOptions::default());
    let i = r.incident.clone().expect("incident");
    // 10 failing connections (5 with one request, 5 with two), 30 healthy with two: 75 requests.
    assert_eq!((i.requests, i.failed), (75, 10));
    assert_eq!(row(&i, "method", "POST"), (40, 10));
    assert_eq!(row(&i, "method", "GET"), (35, 0));
    assert_eq!(row(&i, "body_size", "≥ 1 MiB"), (10, 10));
    assert_eq!(row(&i, "body_size", "1–64 KiB"), (30, 0));
    assert_eq!(row(&i, "reuse", "new connection"), (40, 5));
    assert_eq!(row(&i, "reuse", "reused connection"), (35, 5));
    // POSTs are 40 of 75 requests (53 %), bodies over 1 MiB 10 of 75 (13 %); reuse says
    // nothing (failures on both), the path neither (one value).
    assert_eq!(
        i.highlights,
        [
            "every failure was a POST request (53 % of requests were)",
            "every failure had a request body of ≥ 1 MiB (13 % of requests did)",
        ]
    );
    // One every 2 s, among healthy requests: sporadic.
    assert_eq!(i.shape.kind, "sporadic", "{}", i.shape.reason);
    // The text report says it under the headline.
    let mut text = Vec::new();
    report::text::write_analysis(&r, report::text::Style::default(), &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    let pattern = text
        .find("pattern  sporadic: 10 of 75 requests failed (13 %)")
        .expect(&text);
    assert!(pattern < text.find("proxy    ").unwrap(), "{text}");
    assert!(
        text.contains("• every failure was a POST request (53 % of requests were)"),
        "{text}"
    );
}

/// The command streams its report: its incident (JSON) is the one built from the whole
/// analysis, the connection numbers aside (the stream numbers them as they are judged).
#[test]
fn the_streamed_report_has_the_same_incident() {
    let (p, b) = big_posts();
    let dir = TempDir::new("pattern");
    let (pf, bf) = (dir.0.join("proxy.pcap"), dir.0.join("backend.pcap"));
    std::fs::write(&pf, &p).unwrap();
    std::fs::write(&bf, &b).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_bothends"))
        .args(["analyze", "--format", "json"])
        .arg(&pf)
        .arg(&bf)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let streamed: report::Report = serde_json::from_slice(&out.stdout).unwrap();
    let mut s = streamed.incident.expect("incident in the JSON");
    let a = pipeline::analyze(
        vec![side(pipeline::Side::Proxy, p), side(pipeline::Side::Backend, b)],
        &[],
    );
    let mut built = report::build(&a, &ReportOptions::default()).incident.unwrap();
    for f in [
        &mut s.first_failure,
        &mut s.last_failure,
        &mut built.first_failure,
        &mut built.last_failure,
    ] {
        f.as_mut().unwrap().connection.clear();
    }
    assert_eq!(s, built);
    // Every connection of `flows` is listed as is: no incident there.
    let out = Command::new(env!("CARGO_BIN_EXE_bothends"))
        .args(["flows", "--format", "json"])
        .arg(&pf)
        .output()
        .unwrap();
    let flows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(flows.get("incident").is_none());
}

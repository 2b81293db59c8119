//! Client requests ↔ backend connections, against the lab's truth: every scenario of `captures/`
//! whose proxy capture was taken with `tcpdump -i any` lists, in `expected.json`,
//! `client_requests` — each request a client sent, what it got (client.py's own record), and the
//! backend connections that carried the proxy's attempts at it (from the proxy's access log and
//! the request id in the backend requests, read with tshark), or none when the proxy answered
//! itself. bothends must find every one of them, with the same attempts, from both captures and
//! from the proxy capture alone — and list no other request.

mod kit;

use std::path::Path;

use bothends::incident::clients::{AnsweredBy, ClientRequests};
use bothends::pipeline::{Analysis, Mode, SideOptions};
use serde::Deserialize;

#[derive(Deserialize, Debug)]
struct Expected {
    #[serde(default)]
    client_requests: Option<Vec<ExpectedRequest>>,
}

#[derive(Deserialize, Debug)]
struct ExpectedRequest {
    client: String,
    proxy: String,
    request_frame: u32,
    method: String,
    target: String,
    status: Option<u16>,
    response_frame: Option<u32>,
    backend: Vec<View>,
}

#[derive(Deserialize, Debug, PartialEq, Eq, Clone)]
struct View {
    client: String,
    server: String,
    first_frame: u32,
}

fn scenarios() -> Vec<(std::path::PathBuf, Vec<ExpectedRequest>)> {
    kit::lab_scenarios()
        .into_iter()
        .filter_map(|dir| {
            let e: Expected =
                serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
            e.client_requests.map(|r| (dir, r))
        })
        .collect()
}

fn analyze(dir: &Path, both: bool) -> Analysis {
    Analysis::run(
        kit::lab_captures(dir, both),
        SideOptions::default(),
        Mode::Analyze { backends: Vec::new() },
    )
}

/// The proxy-capture view of the connection an attempt names (its pair's index).
fn view_of(a: &Analysis, connection: &str) -> Option<View> {
    let pair = a.pairing.pairs.get(connection.parse::<usize>().ok()?)?;
    let c = &a.sides[0].connections[pair.proxy?];
    Some(View {
        client: c.client.to_string(),
        server: c.server.to_string(),
        first_frame: c.first.frame.frame,
    })
}

fn check(dir: &Path, expected: &[ExpectedRequest], both: bool) -> Vec<String> {
    let a = analyze(dir, both);
    let got: &ClientRequests = &a.client_requests;
    let name = format!(
        "{} ({})",
        dir.file_name().unwrap().to_string_lossy(),
        if both {
            "both captures"
        } else {
            "proxy capture alone"
        }
    );
    let mut problems = Vec::new();
    if got.summary.requests != expected.len() as u64 || got.requests.len() != expected.len() {
        problems.push(format!(
            "{name}: {} client requests ({} listed), expected {}",
            got.summary.requests,
            got.requests.len(),
            expected.len()
        ));
    }
    for e in expected {
        let Some(r) = got
            .requests
            .iter()
            .find(|r| r.client.to_string() == e.client && r.request_first.frame.frame == e.request_frame)
        else {
            problems.push(format!(
                "{name}: no request from {} at frame {}",
                e.client, e.request_frame
            ));
            continue;
        };
        let what = format!("{name}: {} {} from {}", e.method, e.target, e.client);
        let facts = (
            r.proxy.to_string(),
            r.method.clone(),
            r.target.clone(),
            r.status,
            r.response_first.map(|p| p.frame.frame),
        );
        let want = (
            e.proxy.clone(),
            Some(e.method.clone()),
            Some(e.target.clone()),
            e.status,
            e.response_frame,
        );
        if facts != want {
            problems.push(format!("{what}: got {facts:?}, expected {want:?}"));
        }
        let attempts: Vec<Option<View>> = r.attempts.iter().map(|x| view_of(&a, &x.connection)).collect();
        let want: Vec<Option<View>> = e.backend.iter().cloned().map(Some).collect();
        if attempts != want {
            problems.push(format!("{what}: attempts {attempts:?}, expected {want:?}"));
        }
        let answered = match (e.backend.is_empty(), r.attempts.last()) {
            (true, _) => AnsweredBy::Proxy,
            (false, Some(last)) if !last.failed => AnsweredBy::Backend,
            _ => AnsweredBy::Proxy,
        };
        if r.answered_by != answered {
            problems.push(format!(
                "{what}: answered by {:?}, expected {answered:?}",
                r.answered_by
            ));
        }
    }
    problems
}

#[test]
fn lab_client_requests_are_tied_to_their_backend_connections() {
    let all = scenarios();
    assert!(all.len() >= 2, "the lab has client-request scenarios");
    let mut problems = Vec::new();
    for (dir, expected) in &all {
        for both in [true, false] {
            problems.extend(check(dir, expected, both));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn a_proxy_capture_without_the_client_side_lists_no_client_request() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/apache-backend-empty-reply");
    let a = analyze(&dir, true);
    assert!(!a.client_requests.seen());
    assert!(a.client_requests.requests.is_empty());
}

/// The command's JSON (the streaming report writer, connection ids numbered as judged): each
/// expected request is listed with its status and its attempts name the connections whose proxy
/// views are the expected ones; text and Markdown show the requests that went wrong.
#[test]
fn the_json_report_ties_client_requests_to_connection_ids() {
    use bothends::report::Report;
    for (dir, expected) in scenarios() {
        let run = |format: &str| {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_bothends"))
                .args(["analyze", "--format", format, "--no-progress"])
                .arg(dir.join("proxy.pcap"))
                .arg(dir.join("backend.pcap"))
                .output()
                .expect("bothends runs");
            assert_eq!(out.status.code(), Some(1), "{}: failures found", dir.display());
            String::from_utf8(out.stdout).unwrap()
        };
        let report: Report = serde_json::from_str(&run("json")).expect("the JSON report parses");
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let summary = report.client_summary.as_ref().expect("a client summary");
        assert_eq!(summary.requests, expected.len() as u64, "{name}");
        assert_eq!(
            report.client_requests.len(),
            expected.len(),
            "{name}: every request listed"
        );
        for e in &expected {
            let r = report
                .client_requests
                .iter()
                .find(|r| r.client == e.client && r.frame == u64::from(e.request_frame))
                .unwrap_or_else(|| panic!("{name}: request from {} at frame {}", e.client, e.request_frame));
            assert_eq!(r.status, e.status, "{name}: {} {}", e.method, e.target);
            assert_eq!(
                r.response_frame,
                e.response_frame.map(u64::from),
                "{name}: {}",
                e.target
            );
            let views: Vec<View> = r
                .attempts
                .iter()
                .map(|a| {
                    let c = report
                        .connections
                        .iter()
                        .find(|c| c.id == a.connection)
                        .unwrap_or_else(|| panic!("{name}: connection {} listed", a.connection));
                    let v = &c.views["proxy"];
                    View {
                        client: v.client.clone(),
                        server: v.server.clone(),
                        first_frame: v.first_frame as u32,
                    }
                })
                .collect();
            assert_eq!(
                views, e.backend,
                "{name}: {} {} from {}",
                e.method, e.target, e.client
            );
            let by_proxy = e.backend.is_empty() || r.attempts.last().is_some_and(|a| a.failed);
            assert_eq!(
                r.answered_by,
                if by_proxy { "proxy" } else { "backend" },
                "{name}: {}",
                e.target
            );
        }
        // Wrapped prose, read as one line.
        let text = run("text").split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            text.contains("client requests (the proxy capture's client side)"),
            "{name}"
        );
        assert!(
            text.contains("from the proxy itself, with no backend traffic for it"),
            "{name}"
        );
        let md = run("markdown");
        assert!(md.contains("\n## Client requests\n"), "{name}");
    }
}

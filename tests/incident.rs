//! The incident's minutes (`--since` / `--until`) and the backend host's capture alone
//! (`analyze --backend-capture FILE`), checked on the lab's captures against `expected.json` and
//! tshark.

mod kit;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn analyze(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_bothends"))
        .arg("analyze")
        .args(args)
        .output()
        .expect("bothends runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null),
        stderr,
    )
}

fn lab(scenario: &str, file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(scenario)
        .join(file)
        .display()
        .to_string()
}

/// `tshark -r captures/apache-backend-host-vanishes/proxy.pcap -q -z conv,tcp`: the capture
/// starts at 18:18:00.746; the connections (start + relative start, duration) are :44168
/// 01.281–01.881, :44182 01.881–06.570, :44198 01.931–06.602, :44200 02.882–03.883, :60374
/// 03.682–04.683. A window from 01.900 to 02.500 overlaps :44182 and :44198 only.
#[test]
fn the_window_keeps_connections_that_overlap_it() {
    let s = "apache-backend-host-vanishes";
    let (code, r, err) = analyze(&[
        &lab(s, "proxy.pcap"),
        &lab(s, "backend.pcap"),
        "--since",
        "2026-12-04T18:18:01.900Z",
        // date -u -d '2026-12-04 18:18:02.5' +%s.%N
        "--until",
        "1796408282.5",
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(1), "{err}");
    let clients: Vec<&str> = r["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["views"]["proxy"]["client"].as_str().unwrap())
        .collect();
    let mut sorted = clients.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["10.0.1.2:44182", "10.0.1.2:44198"]);
    assert_eq!(r["summary"]["connections"], 2);
    assert_eq!(r["window"]["outside"], 3);
    assert_eq!(r["window"]["since"], "2026-12-04T18:18:01.900000Z");
    assert_eq!(r["window"]["until"], "2026-12-04T18:18:02.500000Z");
    // An open end; and the text report says which window was applied.
    let (_, r, _) = analyze(&[
        &lab(s, "proxy.pcap"),
        "--since",
        "2026-12-04 19:18:03+01:00",
        "--format",
        "json",
    ]);
    assert_eq!(
        r["summary"]["connections"], 4,
        "all but :44168, which ended at 01.881"
    );
    assert!(r["window"]["until"].is_null());
    let out = Command::new(env!("CARGO_BIN_EXE_bothends"))
        .args([
            "analyze",
            &lab(s, "proxy.pcap"),
            "--until",
            "2026-12-04T18:18:01.5Z",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("window   (open) → 2026-12-04 18:18:01.500000 UTC"),
        "{text}"
    );
    assert!(text.contains("4 connections outside it not reported"), "{text}");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the one connection in the window is ok"
    );
    for format in ["markdown", "html"] {
        let out = Command::new(env!("CARGO_BIN_EXE_bothends"))
            .args([
                "analyze",
                &lab(s, "proxy.pcap"),
                "--until",
                "2026-12-04T18:18:01.5Z",
                "--format",
                format,
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("Window: (open) → 2026-12-04 18:18:01.500000 UTC on the proxy capture")
                && text.contains("clock; 4 connections outside it not reported."),
            "{format}"
        );
    }
    // Without the flags nothing is said of a window.
    let (_, r, _) = analyze(&[&lab(s, "proxy.pcap"), "--format", "json"]);
    assert!(r.get("window").is_none());
    let (code, _, err) = analyze(&[
        &lab(s, "proxy.pcap"),
        "--since",
        "1796408283",
        "--until",
        "1796408282",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--since is after --until"), "{err}");
}

/// What the backend host's capture cannot show, per lab scenario: the request never reached the
/// backend (lost on the way, or a middlebox's forged RST answered it), so the backend saw a
/// connection whose exchanges completed; or snaplen 96 cut the heads (as with the proxy's capture
/// alone, "cannot judge: snaplen").
fn backend_view_limit(scenario: &str, truth: &str) -> Option<&'static str> {
    match (scenario, truth) {
        ("apache-lost-in-transit-request", "lost-in-transit") => Some("ok"),
        ("apache-rst-from-middlebox" | "apache-busy-mixed", "rst-from-middlebox") => Some("ok"),
        (s, "response-truncated" | "backend-empty-reply") if s.contains("snaplen96") => {
            Some("capture-incomplete")
        }
        _ => None,
    }
}

/// `analyze --backend-capture backend.pcap` alone: the connections the backend host accepted,
/// judged from its side, each saying what the proxy capture would settle.
#[test]
fn the_backend_capture_alone_is_judged_from_the_backend() {
    for dir in kit::lab_scenarios() {
        let name = dir.file_name().unwrap().to_str().unwrap().to_string();
        let e: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        let backend = dir.join("backend.pcap").display().to_string();
        let (code, r, err) = analyze(&["--backend-capture", &backend, "--format", "json"]);
        assert!(matches!(code, Some(0 | 1)), "{name}: {err}");
        assert_eq!(r["captures"].as_array().unwrap().len(), 1);
        assert_eq!(r["captures"][0]["side"], "backend", "{name}");
        let conns = r["connections"].as_array().unwrap();
        for c in conns {
            let v = &c["views"]["backend"];
            // One backend endpoint, or several (a balancer's members).
            let servers = match &e["backend_server"]["backend"] {
                Value::Array(a) => a.clone(),
                one => vec![one.clone()],
            };
            assert!(
                servers.contains(&v["server"]),
                "{name}: only the backend's connections, not {}",
                v["server"]
            );
            let x = c["explanation"].as_str().unwrap();
            assert!(x.contains("Backend capture only: "), "{name}: {x}");
            assert!(
                !x.contains("capture on the backend host") && !x.contains("(One capture:"),
                "{name}: {x}"
            );
        }
        let mut failed = false;
        for t in e["connections"].as_array().unwrap() {
            let truth = t["verdict"].as_str().unwrap();
            let Some(client) = t["backend"]["client"].as_str() else {
                // Never reached the backend: not in its capture.
                continue;
            };
            let c = conns
                .iter()
                .find(|c| c["views"]["backend"]["client"] == client)
                .unwrap_or_else(|| panic!("{name}: {client} is reported"));
            let want = backend_view_limit(&name, truth).unwrap_or(truth);
            assert_eq!(c["verdict"], want, "{name}: {client}: {}", c["explanation"]);
            failed |= c["outcome"] == "failed";
        }
        // The connections expected.json does not list are healthy ("others": "ok").
        let listed: Vec<&str> = e["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["backend"]["client"].as_str())
            .collect();
        for c in conns {
            if !listed.contains(&c["views"]["backend"]["client"].as_str().unwrap()) {
                assert_eq!(c["verdict"], "ok", "{name}: {}", c["views"]["backend"]["client"]);
            }
        }
        assert_eq!(code == Some(1), failed, "{name}: exit code");
    }
}

/// The backend's view settles what happened there, and names what only the proxy's capture shows.
#[test]
fn backend_only_explanations() {
    let (code, r, _) = analyze(&[
        "--backend-capture",
        &lab("apache-connect-timeout-synack-lost", "backend.pcap"),
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(1));
    let c = &r["connections"][0];
    assert_eq!(c["verdict"], "connect-timeout");
    assert_eq!(c["blame"], "network");
    let x = c["explanation"].as_str().unwrap();
    assert!(x.contains("the backend answered with SYN-ACK (3 times)"), "{x}");
    assert!(
        x.contains("the proxy capture would show whether the backend's SYN-ACKs"),
        "{x}"
    );
    let (code, _, err) = analyze(&[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no capture given"), "{err}");
}

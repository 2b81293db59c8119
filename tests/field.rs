//! Healthy servers, field-like captures: Apache mod_proxy_http → nginx under wrk/ab load, the two
//! tcpdumps stopped (or started) in the middle of the traffic, at slightly different moments, or
//! with a kernel buffer too small for the load. Made with `captures/lab/field-cut/` (see its
//! README.txt); each example under `tests/field/` is one or two connections cut from such a run
//! with tshark, and its README.txt says what bothends said and what the wire shows (tshark frames).
//! No error was injected and the servers logged none: no connection may be judged a failure, and
//! the exit code is 0. Some examples come from captures the capture host dropped packets of
//! (`tcpdump -B 64` under load): a failure read across the drops is capture-incomplete.

use std::path::Path;
use std::process::Command;

fn examples() -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/field");
    let mut dirs: Vec<_> = std::fs::read_dir(root)
        .expect("tests/field")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("proxy.pcap").exists())
        .collect();
    dirs.sort();
    dirs
}

/// Examples bothends still gets wrong, with why. They stay in the suite: the test fails if one of
/// them starts passing (remove it from this list then) or if any other example fails.
const KNOWN_WRONG: &[(&str, &str)] = &[];

#[test]
fn healthy_captures_cut_mid_load_have_no_failure() {
    let dirs = examples();
    assert!(dirs.len() >= 13, "{} examples", dirs.len());
    let mut wrong = Vec::new();
    for dir in dirs {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let out = Command::new(env!("CARGO_BIN_EXE_bothends"))
            .args(["analyze", "--no-progress", "--format", "json"])
            .arg(dir.join("proxy.pcap"))
            .arg(dir.join("backend.pcap"))
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        let failed: Vec<String> = report["connections"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["outcome"] == "failed")
            .map(|c| format!("{}: {}", c["verdict"], c["explanation"]))
            .collect();
        assert!(
            !report["connections"].as_array().unwrap().is_empty(),
            "{name}: no connection"
        );
        let known = KNOWN_WRONG.iter().any(|(k, _)| *k == name);
        let ok = failed.is_empty() && out.status.code() == Some(0);
        match (ok, known) {
            (true, false) => {}
            (false, true) => wrong.push(name),
            (true, true) => panic!("{name} passes now: remove it from KNOWN_WRONG"),
            (false, false) => panic!("{name}: exit {:?}, {failed:#?}", out.status.code()),
        }
    }
    assert_eq!(wrong.len(), KNOWN_WRONG.len(), "{wrong:?}");
}

/// The capture dropped a connection's handshake and the whole first response (20,256 bytes: the
/// second request, proxy frame 2, acknowledges server byte 20257 while the first server data seen,
/// frame 3, starts there, tshark's relative numbers). The response seen (frames 3-7, a 200 with
/// Content-Length 5000) answers the second request, GET /f/r5000; the first one's response is what
/// the capture missed. It was paired with the first request by order, and the second request read
/// as answered by bytes that are "not HTTP".
#[test]
fn a_response_after_a_dropped_one_answers_its_own_request() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/field/drop-bad-response-misaligned");
    let out = Command::new(env!("CARGO_BIN_EXE_bothends"))
        .args(["analyze", "--no-progress", "--format", "json"])
        .arg(dir.join("proxy.pcap"))
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &report["connections"][0];
    let exchanges: Vec<(String, Option<u64>)> = c["exchanges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["target"].as_str().unwrap().to_string(), e["status"].as_u64()))
        .collect();
    assert_eq!(
        exchanges,
        [
            ("/f/r20000".to_string(), None),
            ("/f/r5000".to_string(), Some(200))
        ]
    );
    let stop = &c["views"]["proxy"]["http_stops"][0];
    assert_eq!(stop["kind"], "gap-at-message-start");
    assert_eq!(
        (stop["offset"].as_u64(), stop["resumed_at"].as_u64()),
        (Some(0), Some(20256))
    );
    assert_eq!(c["verdict"], "capture-incomplete");
}

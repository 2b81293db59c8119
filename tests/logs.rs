//! `--proxy-log`: every lab scenario's proxy error log read beside its captures, each line tied to
//! the connection it is about or given its reason; and the reasons a line can have, the zone, the
//! window and hostile log files.
//!
//! The truth of which connection a line is about was decided by hand from the lab's own files, not
//! from bothends: Apache's debug context of the request on the same `pid:tid` (the AH00947
//! "connecting /path to ..." line) names the path, and `expected.json` names the connection whose
//! failing exchange has that path; for connect failures the AH00947 line's time is the SYN's time
//! in `proxy.pcap` (`tshark -Y 'tcp.flags.syn==1 && tcp.flags.ack==0'`), which names the client
//! port; nginx lines carry the path (`upstream: "http://10.0.2.2:8080/ok/race-33"`). Lines about
//! no backend connection (startup warnings, nginx buffering a client body) have no connection.

mod kit;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use bothends::capture::{CaptureSet, Input};
use kit::{Pcap, TempDir};
use serde_json::Value;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_bothends"))
}

/// What a considered line of a scenario's log must become: tied to the connection whose proxy
/// view has this client (`ip:port`, from `expected.json`), or unmatched with this reason code.
#[derive(Clone, Copy, Debug)]
enum Want {
    Conn(&'static str),
    /// Tied by its request although the connection's verdict is `ok`: the wire shows no failure
    /// (the lower-case status line scenarios: the proxies' own strictness).
    ConnOk(&'static str),
    /// One of two byte-identical lines (nginx logs whole seconds: a retried request failing twice
    /// in one second writes the same line twice) about these two connections: each line must go
    /// to one of them and the two lines to different ones — the log's order (first failure first)
    /// is not used when the later failure's connection is judged first.
    Twin(&'static str, &'static str),
    Unmatched(&'static str),
}
use Want::*;

const NOT_BACKEND: Want = Unmatched("not-about-a-backend-connection");

/// Every lab scenario, every line at warn or above (and info lines about a backend connection).
fn truth() -> BTreeMap<&'static str, Vec<(u64, Want)>> {
    let t: Vec<(&str, Vec<(u64, Want)>)> = vec![
        (
            "apache-backend-closed-during-request",
            vec![(16, Conn("10.0.1.2:41880")), (17, Conn("10.0.1.2:41880"))],
        ),
        (
            "apache-backend-empty-reply",
            vec![(16, Conn("10.0.1.2:46670")), (18, Conn("10.0.1.2:46670"))],
        ),
        // AH00957 at 04.891934: AH00947 at 02.881642 = the SYN of :44200; at 05.690742: AH00947
        // at 03.681586 = :60374. AH01102 lines: /ok/in-flight-0 (:44182), -1 (:44198).
        (
            "apache-backend-host-vanishes",
            vec![
                (38, Conn("10.0.1.2:44200")),
                (39, Conn("10.0.1.2:44182")),
                (42, Conn("10.0.1.2:44182")),
                (45, Conn("10.0.1.2:44200")),
                (47, Conn("10.0.1.2:44198")),
                (50, Conn("10.0.1.2:44198")),
                (52, Conn("10.0.1.2:60374")),
                (54, Conn("10.0.1.2:60374")),
            ],
        ),
        // /slow/downloading (:41284), /ok/processing (:41264), /ok/uploading (:41278); the
        // refused connects' AH00947 times are the SYNs of :41288 and :41294.
        (
            "apache-backend-killed-and-restarted",
            vec![
                (38, Conn("10.0.1.2:41284")),
                (40, Conn("10.0.1.2:41264")),
                (42, Conn("10.0.1.2:41264")),
                (44, Conn("10.0.1.2:41278")),
                (45, Conn("10.0.1.2:41278")),
                (51, Conn("10.0.1.2:41288")),
                (53, Conn("10.0.1.2:41288")),
                (59, Conn("10.0.1.2:41294")),
                (61, Conn("10.0.1.2:41294")),
            ],
        ),
        // Connects at 53.311400, 53.365468, 53.419408 = SYNs of :44108, :44114, :44122;
        // /ok/plug-0 (:46268), /ok/plug-1 (:46276).
        (
            "apache-backend-listen-queue-full",
            vec![
                (34, Conn("10.0.1.2:44108")),
                (36, Conn("10.0.1.2:44108")),
                (38, Conn("10.0.1.2:44114")),
                (40, Conn("10.0.1.2:44114")),
                (42, Conn("10.0.1.2:44122")),
                (44, Conn("10.0.1.2:44122")),
                (54, Conn("10.0.1.2:46268")),
                (57, Conn("10.0.1.2:46268")),
                (63, Conn("10.0.1.2:46276")),
                (66, Conn("10.0.1.2:46276")),
            ],
        ),
        (
            "apache-backend-timeout",
            vec![(16, Conn("10.0.1.2:52392")), (19, Conn("10.0.1.2:52392"))],
        ),
        // The AH00947 paths of each error line's thread: /truncate/busy-12, /forbidden/busy-37,
        // /close-mid-request/busy-28, /empty/busy-5, /empty/busy-33, /never/busy-20.
        (
            "apache-busy-mixed",
            vec![
                (268, Conn("10.0.1.2:48440")),
                (286, Conn("10.0.1.2:48500")),
                (400, Conn("10.0.1.2:48582")),
                (401, Conn("10.0.1.2:48582")),
                (415, Conn("10.0.1.2:48598")),
                (523, Conn("10.0.1.2:48498")),
                (594, Conn("10.0.1.2:48742")),
                (596, Conn("10.0.1.2:48742")),
            ],
        ),
        ("apache-capture-dropped-packets", vec![]),
        ("apache-capture-started-late", vec![]),
        (
            "apache-connect-refused",
            vec![(14, Conn("10.0.1.2:58074")), (16, Conn("10.0.1.2:58074"))],
        ),
        (
            "apache-connect-timeout-backend-ignores-syn",
            vec![(14, Conn("10.0.1.2:46666")), (16, Conn("10.0.1.2:46666"))],
        ),
        (
            "apache-connect-timeout-syn-lost",
            vec![(14, Conn("10.0.1.2:34100")), (16, Conn("10.0.1.2:34100"))],
        ),
        (
            "apache-connect-timeout-synack-lost",
            vec![(14, Conn("10.0.1.2:46664")), (16, Conn("10.0.1.2:46664"))],
        ),
        (
            "apache-cooked-any-empty-reply",
            vec![(26, Conn("10.0.1.2:56048")), (28, Conn("10.0.1.2:56048"))],
        ),
        // The backend named by AH00947 as "(fd00:2::2:8080)": Apache's unbracketed IPv6.
        ("apache-ipv6-truncated", vec![(26, Conn("[fd00:1::2]:51684"))]),
        ("apache-keepalive-race", vec![(167, Conn("10.0.1.2:44584"))]),
        (
            "apache-lost-in-transit-request",
            vec![(21, Conn("10.0.1.2:46166")), (23, Conn("10.0.1.2:46166"))],
        ),
        // Apache logs nothing at warn or above for its clients going away mid-download.
        ("apache-loss-client-aborts", vec![]),
        (
            "apache-lost-in-transit-response",
            vec![(16, Conn("10.0.1.2:58252")), (19, Conn("10.0.1.2:58252"))],
        ),
        // AH01102 (70007) and AH00898 on /ok/mtu: the response's full-size segments never arrived.
        (
            "apache-mtu-black-hole",
            vec![(16, Conn("10.0.1.2:46124")), (19, Conn("10.0.1.2:46124"))],
        ),
        // AH01110 (70007) on /lowercase/keep-alive: Apache read "http/1.1 200 OK" as HTTP/0.9 and
        // waited for the close; on the wire the response is whole (ok).
        (
            "apache-lowercase-status-line",
            vec![(21, ConnOk("10.0.1.2:44436"))],
        ),
        // The log names the backend as the proxy sees it, through the NAT: 10.0.9.9:80.
        ("apache-nat-empty-reply", vec![(21, Conn("10.0.1.2:52598"))]),
        ("apache-ok-keepalive-uploads", vec![]),
        ("apache-pooled-before-capture", vec![]),
        ("apache-proxy-aborted", vec![]),
        ("apache-random-loss-ok", vec![]),
        (
            "apache-request-incomplete",
            vec![(16, Conn("10.0.1.2:60312")), (17, Conn("10.0.1.2:60312"))],
        ),
        ("apache-response-truncated", vec![(21, Conn("10.0.1.2:46228"))]),
        (
            "apache-reused-rst-mid-post",
            vec![(21, Conn("10.0.1.2:42556")), (22, Conn("10.0.1.2:42556"))],
        ),
        ("apache-rst-from-middlebox", vec![(21, Conn("10.0.1.2:58268"))]),
        (
            "apache-snaplen96-mixed",
            vec![
                (16, Conn("10.0.1.2:35470")),
                (17, Conn("10.0.1.2:35470")),
                (25, Conn("10.0.1.2:35474")),
                (33, Conn("10.0.1.2:35488")),
                (35, Conn("10.0.1.2:35488")),
            ],
        ),
        ("apache-snaplen96-truncated", vec![(26, Conn("10.0.1.2:56240"))]),
        // Connects at 34.148004 and 35.451397: the SYNs of :55508 and :55522.
        (
            "apache-syn-icmp-admin-prohibited-router",
            vec![
                (22, Conn("10.0.1.2:55508")),
                (24, Conn("10.0.1.2:55508")),
                (30, Conn("10.0.1.2:55522")),
                (32, Conn("10.0.1.2:55522")),
            ],
        ),
        (
            "apache-syn-icmp-host-unreachable-arp",
            vec![
                (14, Conn("10.0.1.2:34840")),
                (16, Conn("10.0.1.2:34840")),
                (22, Conn("10.0.1.2:34848")),
                (24, Conn("10.0.1.2:34848")),
            ],
        ),
        (
            "apache-syn-icmp-host-unreachable-router",
            vec![
                (22, Conn("10.0.1.2:55538")),
                (24, Conn("10.0.1.2:55538")),
                (30, Conn("10.0.1.2:55550")),
                (32, Conn("10.0.1.2:55550")),
            ],
        ),
        (
            "apache-syn-icmp-port-unreachable-backend",
            vec![
                (22, Conn("10.0.1.2:37656")),
                (24, Conn("10.0.1.2:37656")),
                (30, Conn("10.0.1.2:37670")),
                (32, Conn("10.0.1.2:37670")),
            ],
        ),
        // mod_ssl's startup warnings (AH01882, AH01873) are about no connection. The empty replies:
        // /empty/tls-fresh (:50180), then by their AH00947 times :50192 and :53324.
        (
            "apache-tls-backend-empty-reply",
            vec![
                (1, NOT_BACKEND),
                (2, NOT_BACKEND),
                (3, NOT_BACKEND),
                (19, Conn("10.0.1.2:50180")),
                (21, Conn("10.0.1.2:50180")),
                (34, Conn("10.0.1.2:50192")),
                (48, Conn("10.0.1.2:53324")),
            ],
        ),
        (
            "apache-tls-lost-in-transit-response",
            vec![
                (1, NOT_BACKEND),
                (2, NOT_BACKEND),
                (3, NOT_BACKEND),
                (19, Conn("10.0.1.2:41030")),
                (22, Conn("10.0.1.2:41030")),
            ],
        ),
        (
            "apache-tls-ok-keepalive",
            vec![(1, NOT_BACKEND), (2, NOT_BACKEND), (3, NOT_BACKEND)],
        ),
        (
            "apache-zero-window-stall",
            vec![(16, Conn("10.0.1.2:45396")), (17, Conn("10.0.1.2:45396"))],
        ),
        // nginx's "a client request body is buffered to a temporary file" [warn] is about the
        // client side.
        (
            "nginx-backend-closed-during-request",
            vec![(7, NOT_BACKEND), (8, Conn("10.0.1.2:56234"))],
        ),
        ("nginx-backend-empty-reply", vec![(7, Conn("10.0.1.2:46212"))]),
        (
            "nginx-backend-timeout",
            vec![(7, NOT_BACKEND), (8, Conn("10.0.1.2:52400"))],
        ),
        ("nginx-connect-refused", vec![(7, Conn("10.0.1.2:34088"))]),
        // [info] "client prematurely closed connection, so upstream connection is closed too" for
        // each aborted download (/slow/dl-N), each tied by its request target to the connection
        // expected.json gives it.
        (
            "nginx-loss-client-aborts",
            vec![
                (10, Conn("10.0.1.2:47964")),
                (12, Conn("10.0.1.2:47996")),
                (13, Conn("10.0.1.2:47942")),
                (14, Conn("10.0.1.2:48052")),
                (15, Conn("10.0.1.2:48078")),
                (16, Conn("10.0.1.2:48100")),
                (17, Conn("10.0.1.2:47982")),
                (18, Conn("10.0.1.2:48012")),
                (19, Conn("10.0.1.2:48090")),
                (20, Conn("10.0.1.2:48040")),
                (21, Conn("10.0.1.2:48068")),
                (22, Conn("10.0.1.2:48102")),
            ],
        ),
        ("nginx-mtu-black-hole", vec![(7, Conn("10.0.1.2:46126"))]),
        // upstream: .../ok/race-33, -34, -37, -38, -39: each the last request of one race.
        (
            "nginx-keepalive-race",
            vec![
                (7, Conn("10.0.1.2:52314")),
                (8, Conn("10.0.1.2:41232")),
                (9, Conn("10.0.1.2:41240")),
                (10, Conn("10.0.1.2:41242")),
                (11, Conn("10.0.1.2:41256")),
            ],
        ),
        (
            "nginx-keepalive-race-apache-backend",
            vec![(7, Conn("10.0.1.2:41134")), (8, Conn("10.0.1.2:53868"))],
        ),
        // "upstream sent no valid HTTP/1.0 header" then its read timeout on /lowercase/keep-alive
        // (:41388), and the same on /lowercase/close (:41790): ok on the wire.
        (
            "nginx-lowercase-status-line",
            vec![
                (7, ConnOk("10.0.1.2:41388")),
                (8, ConnOk("10.0.1.2:41388")),
                (9, ConnOk("10.0.1.2:41790")),
            ],
        ),
        ("nginx-ok-keepalive-uploads", vec![]),
        // [info] lines about a backend connection: the client went away.
        ("nginx-proxy-aborted", vec![(7, Conn("10.0.1.2:48826"))]),
        ("nginx-request-incomplete", vec![(7, Conn("10.0.1.2:60326"))]),
        ("nginx-response-truncated", vec![(7, Conn("10.0.1.2:46234"))]),
        (
            "nginx-reused-rst-mid-post",
            vec![(7, NOT_BACKEND), (8, Conn("10.0.1.2:42570"))],
        ),
        (
            "nginx-snaplen96-mixed",
            vec![
                (7, Conn("10.0.1.2:35512")),
                (8, Conn("10.0.1.2:35514")),
                (9, Conn("10.0.1.2:53938")),
            ],
        ),
        ("nginx-zero-window-stall", vec![(7, Conn("10.0.1.2:45402"))]),
        // Lines and connections by request (expected.json): AH00947/AH00898 on each error's
        // thread name /empty/upload (:39710), /close-mid-request/upload (:39716), /reset/item
        // (:39702), /never/report (:39728); the refused connects name 10.0.2.2:8081 (:57122, the
        // only connection to it) and :8082 (:57594); AH01170 "All workers are in error state":
        // the proxy's own 503, no connection tried.
        (
            "apache-any-client-requests",
            vec![
                (56, Conn("10.0.1.2:39710")),
                (65, Conn("10.0.1.2:39716")),
                (67, Conn("10.0.1.2:39716")),
                (80, Conn("10.0.1.2:39702")),
                (82, Conn("10.0.1.2:39702")),
                (99, Conn("10.0.1.2:57122")),
                (101, Conn("10.0.1.2:57122")),
                (102, Conn("10.0.1.2:57122")),
                (115, Conn("10.0.1.2:57594")),
                (117, Conn("10.0.1.2:57594")),
                (118, Conn("10.0.1.2:57594")),
                (125, Unmatched("no-connection-attempted")),
                (131, Conn("10.0.1.2:39728")),
                (134, Conn("10.0.1.2:39728")),
            ],
        ),
        // By request and upstream: /empty/upload (:53964), /close-mid-request (:53970), the
        // /reset/item GET failing on the pooled :53960 and then on the new :53978 (two identical
        // lines, *9), the refused connects to :8081 (:48276) and :8082 (:52536), "no live
        // upstreams" (no connection), /never/report (:53952); the two body-buffering warnings
        // are about the client side.
        (
            "nginx-any-client-requests",
            vec![
                (7, Conn("10.0.1.2:53964")),
                (9, NOT_BACKEND),
                (10, Conn("10.0.1.2:53970")),
                (13, NOT_BACKEND),
                (15, Twin("10.0.1.2:53960", "10.0.1.2:53978")),
                (16, Twin("10.0.1.2:53960", "10.0.1.2:53978")),
                (18, Conn("10.0.1.2:48276")),
                (19, Conn("10.0.1.2:48276")),
                (20, Conn("10.0.1.2:52536")),
                (21, Conn("10.0.1.2:52536")),
                (23, Unmatched("no-connection-attempted")),
                (27, Conn("10.0.1.2:53952")),
            ],
        ),
    ];
    t.into_iter().collect()
}

fn analyze(args: &[&str]) -> (Option<i32>, Value, String) {
    let out = bin().arg("analyze").args(args).output().expect("bothends runs");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code(), v, stderr)
}

/// Lines of a log at warn or above, counted from the text itself (Apache `[module:level]` /
/// `[level]`, nginx `[level]`).
fn error_lines(log: &str) -> u64 {
    log.lines()
        .filter(|l| {
            ["emerg", "alert", "crit", "error", "warn"]
                .iter()
                .any(|lvl| l.contains(&format!(":{lvl}]")) || l.contains(&format!(" [{lvl}] ")))
        })
        .count() as u64
}

fn client_of(c: &Value) -> String {
    let views = &c["views"];
    let v = if views["proxy"].is_object() {
        &views["proxy"]
    } else {
        &views["backend"]
    };
    v["client"].as_str().unwrap_or("").to_string()
}

/// Checks one run's `proxy_logs` and `log_lines` against the truth of `scenario`.
fn check(scenario: &str, report: &Value, want: &[(u64, Want)], expected: &Value) {
    let logs = &report["proxy_logs"];
    let lines = logs["lines"].as_array().expect("proxy_logs.lines");
    let got: Vec<u64> = lines.iter().map(|l| l["line"].as_u64().unwrap()).collect();
    let mut wanted: Vec<u64> = want.iter().map(|(n, _)| *n).collect();
    wanted.sort_unstable();
    assert_eq!(got, wanted, "{scenario}: the lines considered");
    let by_id: BTreeMap<String, &Value> = report["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["id"].as_str().unwrap().to_string(), c))
        .collect();
    let mut twins = std::collections::BTreeSet::new();
    for (n, w) in want {
        let l = lines.iter().find(|l| l["line"] == *n).unwrap();
        let what = format!("{scenario}: line {n} ({})", l["text"]);
        match w {
            Conn(_) | ConnOk(_) | Twin(..) => {
                let id = l["connection"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{what}: unmatched: {}", l["reason"]));
                let c = by_id[id];
                let got = client_of(c);
                let client = match w {
                    Twin(a, b) => {
                        assert!(got == *a || got == *b, "{what}: {got}");
                        assert!(twins.insert(got.clone()), "{what}: both twins on {got}");
                        if got == *a { a } else { b }
                    }
                    Conn(client) | ConnOk(client) => client,
                    Unmatched(_) => unreachable!(),
                };
                assert_eq!(got, *client, "{what}");
                // The verdict is what expected.json says of that connection (the snaplen-96
                // scenarios: bothends says it cannot judge where the heads are cut).
                let truth = expected["connections"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["proxy"]["client"] == *client)
                    .unwrap_or_else(|| panic!("{what}: {client} in expected.json"));
                let verdict = c["verdict"].as_str().unwrap();
                assert!(
                    verdict == truth["verdict"]
                        || verdict == "capture-incomplete" && scenario.contains("snaplen96"),
                    "{what}: {verdict} vs {}",
                    truth["verdict"]
                );
                let fits = matches!(w, Conn(_) | Twin(..));
                assert_eq!(l["fits_verdict"], fits, "{what}");
                // A fitting line is shown with its connection; one tied only by its request is
                // listed in proxy_logs (the connection's row was written before it was settled).
                let in_row = c["log_lines"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|x| x["line"] == *n));
                assert_eq!(in_row, fits, "{what}: in the connection's log_lines");
            }
            Unmatched(code) => {
                assert!(l["connection"].is_null(), "{what}: tied to {}", l["connection"]);
                assert_eq!(l["unmatched"], *code, "{what}: {}", l["reason"]);
                assert!(!l["reason"].as_str().unwrap().is_empty());
            }
        }
    }
    let matched = want.iter().filter(|(_, w)| !matches!(w, Unmatched(_))).count() as u64;
    assert_eq!(logs["matched"], matched, "{scenario}");
    assert_eq!(logs["unmatched"], want.len() as u64 - matched, "{scenario}");
    // Every line in the connections' log_lines is one of proxy_logs' matched lines.
    let attached: usize = by_id
        .values()
        .map(|c| c["log_lines"].as_array().map_or(0, Vec::len))
        .sum();
    let fitting = want
        .iter()
        .filter(|(_, w)| matches!(w, Conn(_) | Twin(..)))
        .count();
    assert_eq!(attached, fitting, "{scenario}: lines shown with connections");
}

#[test]
fn every_lab_scenario_error_line_is_matched_or_explained() {
    let truth = truth();
    let scenarios = kit::lab_scenarios();
    assert!(scenarios.len() >= 50);
    for dir in &scenarios {
        let name = dir.file_name().unwrap().to_str().unwrap();
        let want = truth
            .get(name)
            .unwrap_or_else(|| panic!("{name}: a lab scenario without its log truth in tests/logs.rs"));
        let log = dir.join("proxy-error.log");
        let expected: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
        let log_text = std::fs::read_to_string(&log).unwrap();
        for both in [true, false] {
            let mut args = vec![dir.join("proxy.pcap").display().to_string()];
            if both && dir.join("backend.pcap").is_file() {
                args.push(dir.join("backend.pcap").display().to_string());
            }
            args.extend([
                "--proxy-log".into(),
                log.display().to_string(),
                "--format".into(),
                "json".into(),
            ]);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (code, report, stderr) = analyze(&args);
            assert!(matches!(code, Some(0 | 1)), "{name}: {stderr}");
            let logs = &report["proxy_logs"];
            assert_eq!(
                logs["files"][0]["lines"],
                log_text.lines().count() as u64,
                "{name}"
            );
            assert_eq!(
                logs["errors"],
                error_lines(&log_text),
                "{name}: lines at warn or above"
            );
            assert_eq!(logs["files"][0]["unreadable"], 0, "{name}");
            assert_eq!(logs["timezone"], "+00:00");
            check(name, &report, want, &expected);
        }
    }
}

/// The text, Markdown and HTML reports show the log line next to the verdict, and the table of
/// every line at the end.
#[test]
fn reports_show_log_lines_beside_the_verdict() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/apache-backend-empty-reply");
    let p = dir.join("proxy.pcap").display().to_string();
    let log = dir.join("proxy-error.log").display().to_string();
    for format in ["text", "markdown", "html"] {
        let out = bin()
            .args(["analyze", &p, "--proxy-log", &log, "--format", format])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let s = String::from_utf8_lossy(&out.stdout);
        let section = s.find("AH01102:").expect(format);
        let evidence = s
            .find(if format == "text" { "evidence:" } else { "vidence" })
            .expect(format);
        assert!(
            section < evidence,
            "{format}: the log line comes with the verdict, before the evidence"
        );
        assert!(s.contains("line 16"), "{format}");
        assert!(s.contains("connection 1 (backend-empty-reply)"), "{format}");
    }
}

/// The capture with only the packets before `until_s` (seconds since the epoch), as
/// `editcap -B` would cut it.
fn cut_pcap(path: &Path, until_s: i64) -> Vec<u8> {
    let mut set = CaptureSet::open(&[Input::Path(path.to_path_buf())]).unwrap();
    let mut out: Option<Pcap> = None;
    while let Some(p) = set.next() {
        if p.ts_ns.div_euclid(1_000_000_000) < until_s {
            let pcap = out.get_or_insert_with(|| Pcap::new(p.link.0));
            pcap.record_cut(p.ts_ns, p.data, p.orig_len, p.data.len());
        }
    }
    out.expect("packets before the cut").bytes()
}

/// The reasons a line gets when the capture does not cover it, when the zone is wrong, when the
/// window leaves it out, and when its backend is not in the capture.
#[test]
fn unmatched_lines_say_why() {
    let tmp = TempDir::new("logs-reasons");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/apache-backend-host-vanishes");
    let log = dir.join("proxy-error.log").display().to_string();
    // The proxy capture up to 18:18:02 UTC (date -u -d '2026-12-04 18:18:02' +%s → 1796408282),
    // before the failed connects' SYNs: the failures logged at 04.89 and later come after its end.
    let cut = tmp.0.join("proxy-cut.pcap");
    std::fs::write(&cut, cut_pcap(&dir.join("proxy.pcap"), 1_796_408_282)).unwrap();
    let (_, r, err) = analyze(&[cut.to_str().unwrap(), "--proxy-log", &log, "--format", "json"]);
    let lines = r["proxy_logs"]["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("{err}"));
    assert_eq!(lines.len(), 8);
    for l in lines {
        assert_eq!(l["unmatched"], "after-capture", "{l}");
        assert!(
            l["reason"].as_str().unwrap().contains("after the capture ended"),
            "{l}"
        );
    }
    // The log read as if written one hour east of UTC: every line an hour before the capture,
    // and a hint with the offset that fits.
    let p = dir.join("proxy.pcap").display().to_string();
    let (_, r, _) = analyze(&[&p, "--proxy-log", &log, "--log-tz", "+01:00", "--format", "json"]);
    let pl = &r["proxy_logs"];
    assert_eq!(pl["matched"], 0);
    assert_eq!(pl["unmatched_by_reason"]["before-capture"], 8);
    assert_eq!(pl["timezone"], "+01:00");
    assert!(
        pl["hint"].as_str().unwrap().contains("try --log-tz +00:00"),
        "{}",
        pl["hint"]
    );
    // A window that ends before the failures: their lines are outside it, and so are the
    // connections that end before it starts.
    let (_, r, _) = analyze(&[
        &p,
        "--proxy-log",
        &log,
        "--since",
        "2026-12-04T18:18:01Z",
        "--until",
        "2026-12-04 18:18:02.5",
        "--format",
        "json",
    ]);
    assert_eq!(r["proxy_logs"]["unmatched_by_reason"]["outside-window"], 8);
    // Counted, not kept: the cap on lines considered goes to the window's.
    assert_eq!(r["proxy_logs"]["considered"], 8);
    assert_eq!(r["proxy_logs"]["lines"].as_array().unwrap().len(), 0);
    assert_eq!(r["window"]["since"], "2026-12-04T18:18:01.000000Z");
    assert_eq!(r["window"]["until"], "2026-12-04T18:18:02.500000Z");
    // --backend narrows the report to another endpoint: no connection to 10.0.2.2:8080.
    let (_, r, _) = analyze(&[
        &p,
        "--proxy-log",
        &log,
        "--backend",
        "10.0.2.9:80",
        "--format",
        "json",
    ]);
    assert_eq!(
        r["proxy_logs"]["unmatched_by_reason"]["no-connection-to-backend"], 8,
        "{}",
        r["proxy_logs"]
    );
}

/// Log files are untrusted: junk, a very long line, a wrong date and gzip are read without
/// failing, each problem a warning naming the file and line; a missing file is an input error.
#[test]
fn hostile_and_compressed_logs() {
    let tmp = TempDir::new("logs-hostile");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/nginx-backend-empty-reply");
    let p = dir.join("proxy.pcap").display().to_string();
    let good = std::fs::read(dir.join("proxy-error.log")).unwrap();
    let mut bad = Vec::new();
    bad.extend_from_slice(b"\x00\x01\xff\xfe\n");
    bad.extend(std::iter::repeat_n(b'x', 1 << 20));
    bad.extend_from_slice(b"\n2026/02/30 00:25:23 [error] 1#1: *1 upstream timed out\n");
    bad.extend_from_slice(&good);
    let junk = tmp.0.join("junk.log");
    std::fs::write(&junk, &bad).unwrap();
    let gz = tmp.0.join("error.log.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &good).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let (code, r, err) = analyze(&[
        &p,
        "--proxy-log",
        junk.to_str().unwrap(),
        "--proxy-log",
        gz.to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(code, Some(1), "{err}");
    let files = r["proxy_logs"]["files"].as_array().unwrap();
    assert_eq!(files[0]["unreadable"], 3);
    let w: Vec<&str> = files[0]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(
        w[0].ends_with("junk.log: line 1: not a line of an Apache or nginx error log; skipped"),
        "{w:?}"
    );
    assert!(
        w[1].contains("junk.log: line 2: longer than 65536 bytes"),
        "{w:?}"
    );
    assert!(
        w.iter().any(|x| x.contains("line 3: the date 2026-02-30")),
        "{w:?}"
    );
    assert_eq!(files[1]["format"], "nginx");
    // The same error line in both files: one is tied to the connection, the other finds it
    // taken (no second empty reply then).
    assert_eq!(r["proxy_logs"]["matched"], 1);
    assert_eq!(r["proxy_logs"]["unmatched_by_reason"]["no-fitting-connection"], 1);
    let (code, _, err) = analyze(&[&p, "--proxy-log", tmp.0.join("missing.log").to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("cannot open proxy log") && err.contains("missing.log"),
        "{err}"
    );
    let (code, _, err) = analyze(&[&p, "--since", "yesterday"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("'yesterday' is not a time"), "{err}");
}

/// With `--proxy-log` and a window, the JSON still follows the committed schema and reads back
/// as the report types; NDJSON lines carry their log lines; HTML and Markdown escape what the
/// log holds.
#[test]
fn json_schema_and_escaping_with_logs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let schema = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(root.join("schema").join(name)).unwrap()).unwrap()
    };
    let report_schema = jsonschema::validator_for(&schema("report.schema.json")).unwrap();
    let conn_schema = jsonschema::validator_for(&schema("connection.schema.json")).unwrap();
    let tmp = TempDir::new("logs-schema");
    for name in [
        "apache-tls-backend-empty-reply",
        "nginx-lowercase-status-line",
        "apache-busy-mixed",
    ] {
        let dir = root.join("captures").join(name);
        let (p, b) = (dir.join("proxy.pcap"), dir.join("backend.pcap"));
        let log = dir.join("proxy-error.log");
        let base = [
            p.to_str().unwrap(),
            b.to_str().unwrap(),
            "--proxy-log",
            log.to_str().unwrap(),
            "--since",
            "2000-01-01",
        ];
        let (_, v, err) = analyze(&[&base[..], &["--format", "json"]].concat());
        assert!(report_schema.is_valid(&v), "{name}: {err}");
        let back: bothends::report::Report = serde_json::from_value(v.clone()).expect("a Report");
        assert_eq!(serde_json::to_value(&back).unwrap(), v, "{name}");
        let out = bin()
            .arg("analyze")
            .args(base)
            .args(["--format", "ndjson"])
            .output()
            .unwrap();
        let mut with_lines = 0;
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let c: Value = serde_json::from_str(line).unwrap();
            assert!(conn_schema.is_valid(&c), "{name}: {line}");
            with_lines += c.get("log_lines").is_some() as usize;
        }
        let fitting = v["proxy_logs"]["lines"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["fits_verdict"] == true)
            .filter_map(|l| l["connection"].as_str())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        assert_eq!(with_lines, fitting, "{name}: NDJSON rows with log lines");
    }
    // A log line carrying markup, tied to a connection.
    let dir = root.join("captures/nginx-backend-empty-reply");
    let text = std::fs::read_to_string(dir.join("proxy-error.log"))
        .unwrap()
        .replace("host: \"lab.test\"", "host: \"<script>alert(1)</script>|`x`\"");
    let log = tmp.0.join("markup.log");
    std::fs::write(&log, text).unwrap();
    let p = dir.join("proxy.pcap");
    for format in ["html", "markdown"] {
        let out = bin()
            .args([
                "analyze",
                p.to_str().unwrap(),
                "--proxy-log",
                log.to_str().unwrap(),
                "--format",
                format,
            ])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(s.contains("alert(1)"), "{format}: the line is shown");
        if format == "html" {
            assert!(!s.contains("<script>alert"), "html escapes the log");
        } else {
            // In Markdown the message is a code span: its fence outgrows the backticks inside.
            assert!(s.contains("``"), "{s}");
        }
    }
}

/// The backend's capture alone, with the proxy's log: the lab moved this backend capture's clock
/// 3 hours ahead (`expected.json` `clock_shift_s`: 10800.25), so the lines fall 3 hours before it
/// and the note says which offset lines them up; with it (a negative offset is accepted as is),
/// the timeout line is tied to the backend-timeout connection.
#[test]
fn backend_capture_alone_with_the_proxy_log() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/nginx-backend-timeout");
    let e: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    assert_eq!(e["clock_shift_s"], 10800.25);
    let b = dir.join("backend.pcap").display().to_string();
    let log = dir.join("proxy-error.log").display().to_string();
    let (_, r, _) = analyze(&["--backend-capture", &b, "--proxy-log", &log, "--format", "json"]);
    let pl = &r["proxy_logs"];
    assert_eq!(pl["matched"], 0);
    assert!(
        pl["hint"].as_str().unwrap().contains("try --log-tz -03:00"),
        "{}",
        pl["hint"]
    );
    let (_, r, err) = analyze(&[
        "--backend-capture",
        &b,
        "--proxy-log",
        &log,
        "--log-tz",
        "-03:00",
        "--format",
        "json",
    ]);
    let line = &r["proxy_logs"]["lines"][1];
    assert_eq!(line["line"], 8, "{err}");
    let id = line["connection"].as_str().expect("tied");
    let c = r["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap();
    assert_eq!(c["verdict"], "backend-timeout");
    assert_eq!(
        c["views"]["backend"]["client"],
        e["connections"][0]["backend"]["client"]
    );
}

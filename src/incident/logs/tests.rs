use super::matcher::same_target;
use super::read::{MAX_LINE_BYTES, MAX_TEXT_BYTES, read_into};
use super::says::classify_apache;
use super::*;
use crate::capture::WarningKind;
use crate::decode::Endpoint;
use crate::diagnose::Verdict;
use crate::incident::window::Window;

fn read(text: &[u8], tz: i32) -> ProxyLogs {
    let mut logs = ProxyLogs {
        tz_offset_s: tz,
        ..ProxyLogs::default()
    };
    read_into(&mut logs, "error.log", text);
    logs
}

fn ep(s: &str) -> Endpoint {
    s.parse().unwrap()
}

// From captures/apache-backend-empty-reply/proxy-error.log (Apache 2.4.71, proxy:debug).
const APACHE_EMPTY: &[u8] = b"\
[Sun Nov 22 00:25:20.145487 2026] [mpm_event:notice] [pid 9899:tid 9899] AH00489: Apache/2.4.71 (Debian) configured -- resuming normal operations
[Sun Nov 22 00:25:20.387310 2026] [proxy:debug] [pid 9905:tid 9912] mod_proxy.c(1467): [client 10.0.0.2:40308] AH01143: Running scheme http handler (attempt 0)
[Sun Nov 22 00:25:20.387342 2026] [proxy:debug] [pid 9905:tid 9912] proxy_util.c(2829): AH00942: http: has acquired connection for (10.0.2.2:8080)
[Sun Nov 22 00:25:20.387346 2026] [proxy:debug] [pid 9905:tid 9912] proxy_util.c(3273): [client 10.0.0.2:40308] AH00944: connecting http://10.0.2.2:8080/empty to 10.0.2.2:8080
[Sun Nov 22 00:25:20.387421 2026] [proxy:debug] [pid 9905:tid 9912] proxy_util.c(3476): [client 10.0.0.2:40308] AH00947: connecting /empty to 10.0.2.2:8080 (10.0.2.2:8080)
[Sun Nov 22 00:25:20.387919 2026] [proxy:debug] [pid 9905:tid 9912] proxy_util.c(3982): AH02824: http: connection established with 10.0.2.2:8080 (10.0.2.2:8080)
[Sun Nov 22 00:25:20.388222 2026] [proxy_http:error] [pid 9905:tid 9912] (20014)Internal error (specific information not available): [client 10.0.0.2:40308] AH01102: error reading status line from remote server 10.0.2.2:8080
[Sun Nov 22 00:25:20.388228 2026] [proxy_http:debug] [pid 9905:tid 9912] mod_proxy_http.c(1187): [client 10.0.0.2:40308] AH01105: NOT Closing connection to client although reading from backend server 10.0.2.2:8080 failed.
[Sun Nov 22 00:25:20.388230 2026] [proxy:error] [pid 9905:tid 9912] [client 10.0.0.2:40308] AH00898: Error reading from remote server returned by /empty
[Sun Nov 22 00:25:20.388232 2026] [proxy:debug] [pid 9905:tid 9912] proxy_util.c(2844): AH00943: http: has released connection for (10.0.2.2:8080)
";

#[test]
fn apache_request_context_makes_one_event() {
    let logs = read(APACHE_EMPTY, 0);
    assert_eq!(logs.files[0].flavor, Some(Flavor::Apache));
    assert_eq!(logs.files[0].lines, 10);
    assert_eq!(logs.files[0].errors, 2);
    assert_eq!(logs.files[0].unreadable, 0);
    assert_eq!(logs.lines.len(), 2);
    let l = &logs.lines[0];
    assert_eq!(l.line, 7);
    assert_eq!(l.level, Level::Error);
    assert_eq!(l.code.as_deref(), Some("AH01102"));
    assert_eq!(l.says, Says::NoResponseClosed);
    assert_eq!(l.client.as_deref(), Some("10.0.0.2:40308"));
    // date -u -d '2026-11-22 00:25:20' +%s → 1795307120
    assert_eq!(l.time_ns, 1_795_307_120_388_222_000);
    assert_eq!(l.precision_ns, 1000);
    assert_eq!(logs.events.len(), 1);
    let e = &logs.events[0];
    assert_eq!(e.lines, vec![0, 1]);
    assert_eq!(e.says, Says::NoResponseClosed);
    assert_eq!(e.backend, Some(BackendRef::Addr(ep("10.0.2.2:8080"))));
    assert_eq!(e.target.as_deref(), Some("/empty"));
    assert!(!e.path_only);
    assert_eq!(e.request_ns, Some(1_795_307_120_387_421_000));
    assert_eq!(e.fresh, Some(Some(1_795_307_120_387_919_000)));
}

#[test]
fn apache_without_debug_lines_groups_companions_by_thread() {
    // captures/apache-syn-icmp-host-unreachable-arp, warn level only.
    let text = b"\
[Fri Dec 04 16:46:20.266797 2026] [proxy:error] [pid 1629:tid 1631] (113)No route to host: AH00957: http: attempt to connect to 10.0.2.3:8080 (10.0.2.3:8080) failed
[Fri Dec 04 16:46:20.266936 2026] [proxy_http:error] [pid 1629:tid 1631] [client 10.0.0.2:35208] AH01114: HTTP: failed to make connection to backend: 10.0.2.3
[Fri Dec 04 16:46:21.770821 2026] [proxy:error] [pid 1629:tid 1633] (113)No route to host: AH00957: http: attempt to connect to 10.0.2.3:8080 (10.0.2.3:8080) failed
[Fri Dec 04 16:46:21.770938 2026] [proxy_http:error] [pid 1629:tid 1633] [client 10.0.0.2:35210] AH01114: HTTP: failed to make connection to backend: 10.0.2.3
";
    let logs = read(text, 0);
    assert_eq!(logs.events.len(), 2);
    for (e, first) in logs.events.iter().zip([0, 2]) {
        assert_eq!(e.lines, vec![first, first + 1]);
        assert_eq!(e.says, Says::ConnectUnreachable);
        assert_eq!(e.backend, Some(BackendRef::Addr(ep("10.0.2.3:8080"))));
        assert_eq!(e.request_ns, None);
    }
    assert_eq!(logs.lines[1].says, Says::ConnectFailed);
}

#[test]
fn apache_codes_and_errnos() {
    let cases: [(&str, Option<u32>, &str, Says); 12] = [
        ("AH00957", Some(111), "", Says::ConnectRefused),
        ("AH00957", Some(70007), "", Says::ConnectTimeout),
        ("AH00957", Some(113), "", Says::ConnectUnreachable),
        ("AH01102", Some(104), "", Says::NoResponseReset),
        ("AH01102", Some(70007), "", Says::NoResponseTimeout),
        ("AH01102", Some(70014), "", Says::NoResponseClosed),
        ("AH01110", Some(70008), "", Says::ResponseFailed),
        ("AH01110", Some(70007), "", Says::ResponseTimeout),
        ("AH01084", Some(32), "", Says::SendFailed),
        ("AH01084", Some(70007), "", Says::SendTimeout),
        ("AH02608", Some(70008), "", Says::ClientAbortedRequest),
        ("AH00489", None, "Apache/2.4.71 configured", Says::Other),
    ];
    for (code, errno, msg, says) in cases {
        let got = classify_apache(Some("proxy"), Some(code), errno, msg).map_or(Says::Other, |c| c.0);
        assert_eq!(got, says, "{code} {errno:?}");
    }
}

// From the lab's nginx 1.22 logs (error_log info).
#[test]
fn nginx_lines() {
    let text = br#"2026/11/22 00:25:23 [notice] 10206#10206: nginx/1.22.1
2026/11/22 00:25:23 [error] 10209#10209: *1 upstream prematurely closed connection while reading response header from upstream, client: 10.0.0.2, server: , request: "POST /empty HTTP/1.1", upstream: "http://10.0.2.2:8080/empty", host: "lab.test"
2026/11/22 00:25:23 [info] 10209#10209: *1 client 10.0.0.2 closed keepalive connection
2026/11/22 00:25:13 [warn] 1137#1137: *1 a client request body is buffered to a temporary file /tmp/x/t_body/0000000001, client: 10.0.0.2, server: , request: "POST /close-mid-request?read=100000 HTTP/1.1", host: "lab.test"
2026/11/22 00:25:03 [error] 9128#9128: *1 connect() failed (111: Connection refused) while connecting to upstream, client: 10.0.0.2, server: , request: "GET /refused HTTP/1.1", upstream: "http://10.0.2.2:8080/refused", host: "lab.test"
2026/11/22 00:25:56 [info] 11993#11993: *1 client prematurely closed connection while sending request to upstream, client: 10.0.0.2, server: , request: "POST /ok/upload HTTP/1.1", upstream: "http://10.0.2.2:8080/ok/upload", host: "lab.test"
2026/12/04 18:21:59 [error] 964#964: *1 upstream sent no valid HTTP/1.0 header while reading response header from upstream, client: 10.0.0.2, server: , request: "GET /lowercase/keep-alive?size=2000 HTTP/1.1", upstream: "http://10.0.2.2:8080/lowercase/keep-alive?size=2000", host: "lab.test"
2026/11/22 00:26:13 [error] 12325#12325: *1 upstream timed out (110: Connection timed out) while sending request to upstream, client: 10.0.0.2, server: , request: "POST /stall HTTP/1.1", upstream: "http://10.0.2.2:8080/stall", host: "lab.test"
2026/11/22 00:26:14 [error] 1#1: *9 no live upstreams while connecting to upstream, client: 10.0.0.2, server: , request: "GET /x HTTP/1.1", upstream: "http://backend/x", host: "lab.test"
"#;
    let logs = read(text, 0);
    assert_eq!(logs.files[0].flavor, Some(Flavor::Nginx));
    let says: Vec<Says> = logs.lines.iter().map(|l| l.says).collect();
    assert_eq!(
        says,
        [
            Says::NoResponseClosed,
            Says::Other,
            Says::ConnectRefused,
            Says::ClientAbortedRequest,
            Says::BadResponse,
            Says::SendTimeout,
            Says::NotTried
        ]
    );
    assert_eq!(logs.lines[0].time_ns, 1_795_307_123 * SECOND);
    assert_eq!(logs.lines[0].precision_ns, SECOND);
    assert_eq!(logs.lines[0].client.as_deref(), Some("10.0.0.2"));
    let e = &logs.events[0];
    assert_eq!(e.backend, Some(BackendRef::Addr(ep("10.0.2.2:8080"))));
    assert_eq!(e.target.as_deref(), Some("/empty"));
    assert_eq!(
        logs.events[4].target.as_deref(),
        Some("/lowercase/keep-alive?size=2000")
    );
    // "upstream: http://backend/x": a name without a port is not an address.
    assert_eq!(logs.events[6].backend, None);
    assert_eq!(logs.events.len(), 7);
}

#[test]
fn zones_move_local_times() {
    let line = b"2026/11/22 01:25:23 [error] 1#1: *1 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 10.0.0.2, server: , request: \"GET / HTTP/1.1\", upstream: \"http://10.0.2.2:8080/\", host: \"x\"\n";
    let logs = read(line, 3600);
    assert_eq!(logs.lines[0].time_ns, 1_795_307_123 * SECOND);
}

#[test]
fn junk_long_lines_and_bad_dates_are_warnings() {
    let mut text = Vec::new();
    text.extend_from_slice(b"\x00\xff\xfe binary junk\n");
    text.extend_from_slice(b"[Sun Nov 31 00:25:20.388222 2026] [proxy:error] [pid 1:tid 2] AH01102: x\n");
    text.extend_from_slice(b"2026/13/22 00:25:23 [error] 1#1: *1 upstream timed out\n");
    text.extend_from_slice(b"[Sun Nov 22 99:25:20 2026] [error] x\n");
    text.extend_from_slice(b"[Sun Nov 22 00:25:20 2026] [error] [client 10.0.0.2] ");
    text.extend(std::iter::repeat_n(b'a', MAX_LINE_BYTES * 3));
    text.extend_from_slice(b"\n[");
    let logs = read(&text, 0);
    let f = &logs.files[0];
    assert_eq!(f.lines, 6);
    assert_eq!(f.unreadable, 5, "{:?}", f.warnings);
    let first = &f.warnings[0];
    assert_eq!(
        (first.kind, first.line),
        (WarningKind::LogLineUnreadable, Some(1))
    );
    assert_eq!(first.file.as_deref(), Some("error.log"));
    assert!(
        f.warnings[0].text.starts_with("error.log: line 1: not a line of"),
        "{:?}",
        f.warnings
    );
    assert!(
        f.warnings[1].text.contains("line 2: the date 2026-11-31"),
        "{:?}",
        f.warnings
    );
    assert!(
        f.warnings
            .iter()
            .any(|w| w.text.contains("line 5: longer than 65536 bytes")
                && (w.kind, w.line) == (WarningKind::LogLineTooLong, Some(5)))
    );
    // The long line is read up to the cap and kept, its text cut.
    assert_eq!(logs.lines.len(), 1);
    assert!(logs.lines[0].text.len() <= MAX_TEXT_BYTES + "…".len());
    assert_eq!(logs.lines[0].says, Says::Other);
}

/// Every cut of real lines, and bytes flipped in them, read without a panic (lines are
/// untrusted); a cut line is either read or a warning.
#[test]
fn truncations_and_flips_never_panic() {
    let lines: Vec<&[u8]> = APACHE_EMPTY.split(|&b| b == b'\n').collect();
    let nginx = b"2026/11/22 00:25:23 [error] 10209#10209: *1 upstream prematurely closed connection while reading response header from upstream, client: 10.0.0.2, server: , request: \"POST /\xc3\xa9 HTTP/1.1\", upstream: \"http://[fd00:2::2]:8080/\xc3\xa9\", host: \"lab.test\"";
    let mut all = lines.clone();
    all.push(nginx);
    for line in all {
        for cut in 0..=line.len() {
            let logs = read(&line[..cut], 0);
            let f = &logs.files[0];
            assert!(f.lines <= 1 && f.unreadable <= 1);
        }
        for at in 0..line.len() {
            for b in [0u8, b'[', b']', b':', b'(', b')', b' ', 0xc3, b'"', b'*'] {
                let mut l = line.to_vec();
                l[at] = b;
                let mut logs = read(&l, 0);
                logs.events.sort_by_key(|e| e.time_ns);
                let t0 = 1_795_307_120 * SECOND;
                let mut m = Matcher::new(logs, Window::default());
                let c = facts(
                    "1",
                    t0,
                    t0 + 5 * SECOND,
                    Some(t0),
                    Verdict::BackendEmptyReply,
                    &[("/empty", t0)],
                );
                let _ = m.take(&c);
                let _ = m.finish(CaptureSpan {
                    first_ns: Some(t0),
                    last_ns: Some(t0 + 5 * SECOND),
                });
            }
        }
    }
}

#[test]
fn backend_addresses() {
    assert_eq!(
        BackendRef::parse("10.0.2.2:8080"),
        Some(BackendRef::Addr(ep("10.0.2.2:8080")))
    );
    assert_eq!(
        BackendRef::parse("[fd00:2::2]:8080"),
        Some(BackendRef::Addr(ep("[fd00:2::2]:8080")))
    );
    assert_eq!(
        BackendRef::parse("10.0.2.2"),
        Some(BackendRef::Ip("10.0.2.2".parse().unwrap()))
    );
    assert_eq!(
        BackendRef::parse("App.internal:8080"),
        Some(BackendRef::Named("app.internal".into(), 8080))
    );
    assert_eq!(BackendRef::parse("a b:1"), None);
    // Apache's resolved IPv6 address, from captures/apache-ipv6-truncated (AH00947).
    assert_eq!(
        BackendRef::parse_addr_port("fd00:2::2:8080"),
        Some(BackendRef::Addr(ep("[fd00:2::2]:8080")))
    );
}

#[test]
fn targets_compare_path_query_and_cuts() {
    assert!(same_target("/empty", false, "/empty", false));
    assert!(same_target("/a?x=1", false, "/a?x=1", false));
    assert!(!same_target("/a?x=1", false, "/a?x=2", false));
    assert!(same_target(
        "/never/busy-20",
        true,
        "/never/busy-20?size=3",
        false
    ));
    assert!(!same_target("/a", false, "/a?x=1", false) || same_target("/a", true, "/a?x=1", false));
    assert!(same_target(
        "/close-mid-request/snap?read=1",
        false,
        "/close-mid-r",
        true
    ));
    assert!(same_target("http://10.0.2.2:8080/x", false, "/x", false));
    assert!(!same_target("/x", false, "", true));
}

fn facts(id: &str, first: i64, last: i64, syn: Option<i64>, v: Verdict, reqs: &[(&str, i64)]) -> ConnFacts {
    ConnFacts {
        id: id.into(),
        server: ep("10.0.2.2:8080"),
        first_ns: first,
        last_ns: last,
        syn_ns: syn,
        verdict: Some(v),
        requests: reqs
            .iter()
            .map(|(t, at)| RequestFact {
                target: t.to_string(),
                cut: false,
                at_ns: *at,
            })
            .collect(),
    }
}

#[test]
fn matching_takes_the_nearest_fitting_connection() {
    let mut logs = read(APACHE_EMPTY, 0);
    logs.events.sort_by_key(|e| e.time_ns);
    let t0 = 1_795_307_120 * SECOND;
    let ms = 1_000_000;
    let mut m = Matcher::new(logs, Window::default());
    // An ok connection at the same time does not take it; neither does a failed one to
    // another path; the empty reply opened at AH02824 does.
    let ok = facts(
        "1",
        t0 + 380 * ms,
        t0 + 390 * ms,
        Some(t0 + 380 * ms),
        Verdict::Ok,
        &[("/ok", t0 + 381 * ms)],
    );
    assert!(m.take(&ok).is_empty());
    let other = facts(
        "2",
        t0 + 387 * ms,
        t0 + 389 * ms,
        Some(t0 + 387_500_000),
        Verdict::BackendEmptyReply,
        &[("/other", t0 + 387_950_000)],
    );
    assert!(m.take(&other).is_empty());
    let mine = facts(
        "3",
        t0 + 387_500_000,
        t0 + 388_300_000,
        Some(t0 + 387_500_000),
        Verdict::BackendEmptyReply,
        &[("/empty", t0 + 387_950_000)],
    );
    let got = m.take(&mine);
    assert_eq!(got.len(), 1);
    assert!(got[0].fits);
    assert_eq!(got[0].lines.len(), 2);
    assert_eq!(
        got[0].matched_by,
        "backend 10.0.2.2:8080, opened for the request, request /empty, time"
    );
    let s = m.finish(CaptureSpan {
        first_ns: Some(t0),
        last_ns: Some(t0 + SECOND),
    });
    assert_eq!((s.errors, s.kept, s.matched, s.unmatched), (2, 2, 2, 0));
}

#[test]
fn unmatched_lines_say_why() {
    let text = b"\
[Sun Nov 22 00:25:20.388222 2026] [proxy_http:error] [pid 1:tid 2] (20014)Internal error: [client 10.0.0.2:1] AH01102: error reading status line from remote server 10.0.2.2:8080
[Sun Nov 22 00:35:20.388222 2026] [proxy_http:error] [pid 1:tid 3] (20014)Internal error: [client 10.0.0.2:1] AH01102: error reading status line from remote server 10.0.2.2:8080
[Sun Nov 22 00:30:20.000000 2026] [proxy_http:error] [pid 1:tid 4] (20014)Internal error: [client 10.0.0.2:1] AH01102: error reading status line from remote server 10.0.2.9:8080
[Sun Nov 22 00:30:21.000000 2026] [proxy_http:error] [pid 1:tid 5] (20014)Internal error: [client 10.0.0.2:1] AH01102: error reading status line from remote server 10.0.2.2:8080
[Sun Nov 22 00:30:30.000000 2026] [proxy_http:error] [pid 1:tid 6] (20014)Internal error: [client 10.0.0.2:1] AH01102: error reading status line from remote server 10.0.2.2:8080
[Sun Nov 22 00:30:40.000000 2026] [ssl:warn] [pid 1:tid 1] AH01873: Init: Session Cache is not configured [hint: SSLSessionCache]
";
    let mut logs = read(text, 0);
    logs.events.sort_by_key(|e| e.time_ns);
    let t = |m: i64, s: i64| (1_795_307_120 - 20 - 25 * 60 + m * 60 + s) * SECOND;
    let mut m = Matcher::new(logs, Window::default());
    // An ok connection around 00:30:21 and nothing at 00:30:30.
    assert!(
        m.take(&facts("1", t(30, 20), t(30, 22), None, Verdict::Ok, &[]))
            .is_empty()
    );
    let s = m.finish(CaptureSpan {
        first_ns: Some(t(30, 0)),
        last_ns: Some(t(31, 0)),
    });
    let codes: Vec<&str> = s
        .placed
        .iter()
        .map(|p| match &p.outcome {
            Outcome::Unmatched(u) => u.code,
            Outcome::Matched { .. } => "matched",
        })
        .collect();
    assert_eq!(
        codes,
        // In the order of the lines.
        [
            "before-capture",
            "after-capture",
            "no-connection-to-backend",
            "no-fitting-connection",
            "no-connection-at-that-time",
            "not-about-a-backend-connection"
        ]
    );
    assert_eq!(s.errors, 6);
    assert_eq!(s.unmatched, 6);
}

#[test]
fn zone_hint_when_every_line_is_hours_off() {
    let text = b"2026/11/22 01:25:23 [error] 1#1: *1 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 10.0.0.2, server: , request: \"GET / HTTP/1.1\", upstream: \"http://10.0.2.2:8080/\", host: \"x\"\n";
    let logs = read(text, 0);
    let m = Matcher::new(logs, Window::default());
    let t0 = 1_795_307_100 * SECOND;
    let s = m.finish(CaptureSpan {
        first_ns: Some(t0),
        last_ns: Some(t0 + 60 * SECOND),
    });
    let hint = s.hint.expect("a hint");
    assert!(hint.contains("try --log-tz +01:00"), "{hint}");
}

use super::fit::{match_key, same_target};
use super::read::parse_ip;
use super::*;
use crate::capture::FrameRef;
use crate::decode::Endpoint;
use crate::diagnose::{Blame, Verdict};
use crate::tcp::PacketRef;

const MS: i64 = 1_000_000;

fn at(frame: u32, ms: i64) -> PacketRef {
    PacketRef {
        frame: FrameRef { file: 0, frame },
        ts_ns: ms * MS,
    }
}

fn ep(s: &str) -> Endpoint {
    let (ip, port) = s.rsplit_once(':').unwrap();
    Endpoint {
        ip: ip.parse().unwrap(),
        port: port.parse().unwrap(),
    }
}

/// A client request from `client` sent at `t` ms, answered `status` at `answer` ms.
fn req(client: &str, target: &str, t: i64, answer: i64, status: Option<u16>) -> ClientRequest {
    ClientRequest {
        client: ep(client),
        proxy: ep("10.0.0.1:80"),
        exchange: 1,
        method: Some("GET".into()),
        target: Some(target.into()),
        request_first: at(t as u32, t),
        request_last: at(t as u32, t),
        request_bytes: 100,
        body_bytes: 0,
        request_complete: true,
        status,
        response_first: status.map(|_| at(answer as u32, answer)),
        response_last: status.map(|_| at(answer as u32, answer)),
        response_bytes: 200,
        response_complete: status.is_some(),
        close: status.is_none().then(|| Close {
            at: at(answer as u32, answer),
            by_proxy: true,
            reset: false,
        }),
        last: at(answer as u32 + 1, answer + 1),
        request_id: None,
        attempts: Vec::new(),
        answered_by: AnsweredBy::NotFound,
        matched_by: None,
        alternatives: 0,
    }
}

/// An attempt on connection `conn` sent at `t` ms: answered `status` (complete) or failed.
fn att(conn: &str, target: &str, t: i64, status: Option<u16>) -> Attempt {
    Attempt {
        connection: conn.into(),
        client: ep("10.0.1.2:40000"),
        server: ep("10.0.2.2:8080"),
        exchange: Some(1),
        at: at(t as u32, t),
        last: at(t as u32 + 2, t + 2),
        method: Some("GET".into()),
        target: Some(target.into()),
        body_bytes: 0,
        request_complete: true,
        status,
        response_first: status.map(|_| at(t as u32 + 1, t + 1)),
        response_complete: status.is_some(),
        forwarded_for: None,
        request_id: None,
        verdict: if status.is_some() {
            Verdict::Ok
        } else {
            Verdict::BackendEmptyReply
        },
        blame: if status.is_some() {
            Blame::None
        } else {
            Blame::Backend
        },
        failed: status.is_none(),
    }
}

fn run(reqs: Vec<ClientRequest>, atts: Vec<Attempt>, attempts_first: bool) -> ClientRequests {
    let mut m = ClientMatcher::new(ClientLimits::default());
    m.summary.http_connections = 1;
    if attempts_first {
        atts.into_iter().for_each(|a| m.attempt(a));
        reqs.into_iter().for_each(|r| m.request(r, None));
    } else {
        reqs.into_iter().for_each(|r| m.request(r, None));
        atts.into_iter().for_each(|a| m.attempt(a));
    }
    m.finish()
}

/// (client port, target) → the connections of its attempts.
fn pairs(r: &ClientRequests) -> Vec<(u16, Vec<String>)> {
    let mut v: Vec<(u16, Vec<String>)> = r
        .requests
        .iter()
        .map(|q| {
            (
                q.client.port,
                q.attempts.iter().map(|a| a.connection.clone()).collect(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Runs the matcher with the attempts after the requests, then before them: either way request
/// 1001 takes attempt "1" and 1002 takes "2" (matched by `by`, when given).
fn one_to_one(reqs: [&ClientRequest; 2], atts: [&Attempt; 2], by: Option<MatchedBy>) {
    for first in [true, false] {
        let r = run(
            reqs.map(Clone::clone).to_vec(),
            atts.map(Clone::clone).to_vec(),
            first,
        );
        assert_eq!(
            pairs(&r),
            vec![(1001, vec!["1".into()]), (1002, vec!["2".into()])]
        );
        if let Some(by) = by {
            assert!(r.requests.iter().all(|q| q.matched_by == Some(by)));
        }
    }
}

#[test]
fn equal_request_ids_match_and_different_ones_never() {
    // Two identical requests at the same moment; time alone would pair them crosswise.
    let mut a = req("10.0.0.2:1001", "/x", 10, 50, Some(200));
    let mut b = req("10.0.0.2:1002", "/x", 11, 50, Some(200));
    a.request_id = Some("A".into());
    b.request_id = Some("B".into());
    let mut x = att("1", "/x", 12, Some(200));
    let mut y = att("2", "/x", 11, Some(200));
    x.request_id = Some("A".into());
    y.request_id = Some("B".into());
    one_to_one([&a, &b], [&x, &y], Some(MatchedBy::RequestId));
}

#[test]
fn without_ids_the_nearest_request_takes_the_attempt() {
    let a = req("10.0.0.2:1001", "/x", 10, 50, Some(200));
    let b = req("10.0.0.2:1002", "/x", 20, 60, Some(200));
    let x = att("1", "/x", 11, Some(200));
    let y = att("2", "/x", 21, Some(200));
    one_to_one([&a, &b], [&x, &y], None);
}

#[test]
fn a_forwarded_address_never_matches_another_client() {
    let a = req("10.0.0.2:1001", "/x", 10, 50, Some(200));
    let b = req("10.0.0.3:1002", "/x", 11, 50, Some(200));
    let mut x = att("1", "/x", 12, Some(200));
    x.forwarded_for = Some("10.0.0.2".parse().unwrap());
    let mut y = att("2", "/x", 13, Some(200));
    y.forwarded_for = Some("10.0.0.3".parse().unwrap());
    one_to_one([&a, &b], [&y, &x], Some(MatchedBy::ClientAddress));
}

#[test]
fn targets_match_through_a_stripped_prefix_with_the_same_query() {
    assert_eq!(same_target("/down/status?a=1", "/status?a=1"), Some(false));
    assert_eq!(same_target("/status", "/api/v1/status"), Some(false));
    assert_eq!(same_target("/x?a=1", "/x?a=1"), Some(true));
    assert_eq!(same_target("/x?a=1", "/x?a=2"), None);
    assert_eq!(same_target("/down/status", "/nostatus"), None);
    assert_eq!(same_target("http://shop.example/a/b", "/b"), Some(false));
    let a = req("10.0.0.2:1001", "/down/status", 10, 50, Some(200));
    let r = run(vec![a], vec![att("1", "/status", 12, Some(200))], true);
    assert_eq!(pairs(&r), vec![(1001, vec!["1".into()])]);
    let a = req("10.0.0.2:1001", "/x?page=1", 10, 50, Some(200));
    let r = run(vec![a], vec![att("1", "/x?page=2", 12, Some(200))], true);
    assert_eq!(pairs(&r), vec![(1001, vec![])]);
}

#[test]
fn a_different_body_size_never_matches() {
    let mut a = req("10.0.0.2:1001", "/up", 10, 50, Some(200));
    a.method = Some("POST".into());
    a.body_bytes = 1000;
    let mut x = att("1", "/up", 12, Some(200));
    x.method = Some("POST".into());
    x.body_bytes = 999;
    let r = run(vec![a.clone()], vec![x.clone()], false);
    assert!(r.requests.is_empty() || r.requests[0].attempts.is_empty());
    x.body_bytes = 1000;
    let r = run(vec![a], vec![x], false);
    assert_eq!(pairs(&r), vec![(1001, vec!["1".into()])]);
}

#[test]
fn an_attempt_outside_the_request_window_never_fits() {
    let a = req("10.0.0.2:1001", "/x", 10, 50, Some(200));
    for t in [9, 51] {
        let r = run(vec![a.clone()], vec![att("1", "/x", t, Some(200))], true);
        assert!(r.requests[0].attempts.is_empty(), "attempt at {t} ms");
    }
}

#[test]
fn a_connection_without_request_goes_only_to_an_error() {
    let ok = req("10.0.0.2:1001", "/a", 10, 50, Some(200));
    let err = req("10.0.0.2:1002", "/b", 12, 50, Some(503));
    let mut refused = att("9", "", 20, None);
    refused.exchange = None;
    refused.method = None;
    refused.target = None;
    refused.verdict = Verdict::ConnectRefused;
    for first in [true, false] {
        let r = run(vec![ok.clone(), err.clone()], vec![refused.clone()], first);
        assert_eq!(pairs(&r), vec![(1001, vec![]), (1002, vec!["9".into()])]);
        let e = r.requests.iter().find(|q| q.client.port == 1002).unwrap();
        assert_eq!(
            (e.answered_by, e.matched_by),
            (AnsweredBy::Proxy, Some(MatchedBy::Time))
        );
    }
}

#[test]
fn retries_line_up_in_time_whatever_order_they_arrive_in() {
    let a = req("10.0.0.2:1001", "/x", 10, 100, Some(200));
    let first = att("1", "/x", 12, None); // failed, its connection ends at 14 ms
    let retry = att("2", "/x", 20, Some(200));
    for order in [
        vec![first.clone(), retry.clone()],
        vec![retry.clone(), first.clone()],
    ] {
        for attempts_first in [true, false] {
            let r = run(vec![a.clone()], order.clone(), attempts_first);
            assert_eq!(pairs(&r), vec![(1001, vec!["1".into(), "2".into()])]);
            assert_eq!(r.requests[0].answered_by, AnsweredBy::Backend);
        }
    }
    // A retry never starts before the failed attempt's connection ended.
    let early = att("3", "/x", 13, Some(200));
    let r = run(vec![a], vec![first, early], false);
    assert_eq!(pairs(&r), vec![(1001, vec!["1".into()])]);
}

#[test]
fn a_plain_answer_does_not_explain_an_error_when_a_failure_fits() {
    // Two requests for /x at once: one got 502 (its attempt failed), one got 200.
    let bad = req("10.0.0.2:1001", "/x", 10, 50, Some(502));
    let good = req("10.0.0.2:1002", "/x", 11, 60, Some(200));
    let ok = att("1", "/x", 12, Some(200));
    let failed = att("2", "/x", 13, None);
    for attempts_first in [true, false] {
        let r = run(
            vec![bad.clone(), good.clone()],
            vec![ok.clone(), failed.clone()],
            attempts_first,
        );
        assert_eq!(
            pairs(&r),
            vec![(1001, vec!["2".into()]), (1002, vec!["1".into()])]
        );
    }
}

#[test]
fn without_attempts_the_proxy_answered_at_the_end_but_not_found_early() {
    let a = req("10.0.0.2:1001", "/x", 10, 11, Some(503));
    let r = run(vec![a.clone()], vec![], false);
    assert_eq!(r.requests[0].answered_by, AnsweredBy::Proxy);
    assert_eq!(r.summary.proxy_without_backend, 1);
    // Decided before the end (past the horizon): not found.
    let mut m = ClientMatcher::new(ClientLimits::default());
    m.summary.http_connections = 1;
    m.request(a, None);
    m.advance(400_000 * MS);
    let r = m.finish();
    assert_eq!(r.requests[0].answered_by, AnsweredBy::NotFound);
    assert_eq!(r.summary.decided_early, 1);
}

#[test]
fn plain_requests_past_the_listed_ones_are_counted_not_matched() {
    let limits = ClientLimits {
        max_listed_ok: 2,
        ..ClientLimits::default()
    };
    let mut m = ClientMatcher::new(limits);
    m.summary.http_connections = 1;
    for i in 0..5 {
        m.request(
            req(
                &format!("10.0.0.2:{}", 1000 + i),
                "/x",
                10 * i,
                10 * i + 5,
                Some(200),
            ),
            None,
        );
    }
    m.request(req("10.0.0.2:2000", "/y", 100, 105, Some(502)), None);
    for i in 0..5 {
        m.attempt(att(&i.to_string(), "/x", 10 * i + 1, Some(200)));
    }
    m.attempt(att("9", "/y", 101, None));
    let r = m.finish();
    assert_eq!(r.summary.requests, 6);
    assert_eq!(r.summary.plain_not_matched, 3);
    assert_eq!(r.summary.answered_by_backend, 2);
    assert_eq!(r.summary.answered_by_proxy, 1);
    assert_eq!(r.summary.attempts_without_request, 0);
    assert_eq!(
        pairs(&r),
        vec![
            (1000, vec!["0".into()]),
            (1001, vec!["1".into()]),
            (2000, vec!["9".into()])
        ]
    );
}

#[test]
fn the_waiting_table_is_bounded() {
    let limits = ClientLimits {
        max_pending: 10,
        ..ClientLimits::default()
    };
    let mut m = ClientMatcher::new(limits);
    m.summary.http_connections = 1;
    for i in 0..100 {
        m.request(
            req(&format!("10.0.0.2:{}", 1000 + i), "/x", i, i + 1, Some(502)),
            None,
        );
        m.attempt(att(&i.to_string(), "/other", 1000 + i, None));
        assert!(m.waiting.len() <= 10 && m.parked.len() <= 10);
    }
    let r = m.finish();
    assert_eq!(r.summary.requests, 100);
    assert_eq!(r.summary.decided_early, 90);
    assert_eq!(r.summary.attempts_without_request, 100);
}

#[test]
fn forwarded_addresses_are_read_as_proxies_write_them() {
    for (v, want) in [
        ("10.0.0.2", "10.0.0.2"),
        ("203.0.113.7, 10.0.0.2", "10.0.0.2"),
        ("\"[2001:db8::1]:4711\"", "2001:db8::1"),
        ("10.0.0.2:5555", "10.0.0.2"),
    ] {
        assert_eq!(
            parse_ip(v.rsplit(',').next().unwrap()),
            Some(want.parse().unwrap()),
            "{v}"
        );
    }
    assert_eq!(parse_ip("unknown"), None);
    // The length filter of `is_kept_header` knows every kept name.
    for k in KEPT_HEADERS {
        assert!(
            is_kept_header(k) && is_kept_header(&k.to_ascii_uppercase()),
            "{k}"
        );
    }
    assert!(!is_kept_header("Content-Type") && !is_kept_header("User-Agent"));
    assert_eq!(crate::incident::cut_at_char("aé", 2), "a");
    assert_eq!(
        match_key(Some("GET"), Some("/down/status?x=1")),
        match_key(Some("GET"), Some("/status?x=1"))
    );
    assert_ne!(
        match_key(Some("GET"), Some("/status?x=1")),
        match_key(Some("GET"), Some("/status?x=2"))
    );
}

use super::buckets::MAX_FINE_SPAN;
use super::words::{clock_dated, duration};
use super::*;
use crate::diagnose::{Blame, Verdict};

/// 2023-11-14T22:13:20Z, a round start for synthetic traffic.
const T0: i64 = 1_700_000_000 * SEC;

fn at(s: f64) -> i64 {
    T0 + (s * SEC as f64) as i64
}

/// A connection carrying one request at `s` seconds, with this verdict (blame as the
/// verdict table says).
fn one(s: f64, v: Verdict) -> ConnFacts<'static> {
    let blame = match v {
        Verdict::Ok => Blame::None,
        Verdict::KeepaliveRace => Blame::Proxy,
        Verdict::LostInTransit | Verdict::RstFromMiddlebox => Blame::Network,
        _ => Blame::Backend,
    };
    let t = at(s);
    ConnFacts {
        start_ns: t,
        end_ns: t,
        late_connect: false,
        attempts: vec![Attempt {
            at_ns: t,
            verdict: v,
            method: Some("GET"),
            target: Some("/x"),
            body_bytes: Some(0),
            reuse: Reuse::New,
        }],
        finding: (v != Verdict::Ok).then_some(FailureMark {
            id: 0,
            verdict: v,
            blame,
            at_ns: t,
            first: None,
            last: None,
        }),
    }
}

/// `per_s` requests a second from `from` to `to` seconds, evenly spaced; `fail(i, t)` says
/// which fail (the i-th request, at t) and how.
fn traffic(tl: &mut Timeline, from: f64, to: f64, per_s: u32, fail: &dyn Fn(u32, f64) -> Option<Verdict>) {
    let n = ((to - from) * per_s as f64).round() as u32;
    for i in 0..n {
        let t = from + i as f64 / per_s as f64;
        tl.add(&one(t, fail(i, t).unwrap_or(Verdict::Ok)));
    }
}

fn kind(tl: Timeline) -> Kind {
    tl.finish().shape.kind
}

#[test]
fn durations_and_dates_in_words() {
    assert_eq!(duration(500 * 1000), "0.5 ms");
    assert_eq!(duration(1500 * MS), "1.5 s");
    assert_eq!(duration(HOUR), "1 h");
    assert_eq!(duration(HOUR + 3 * MIN), "1 h 3 min");
    assert_eq!(duration(2 * DAY + 5 * HOUR), "2 d 5 h");
    // date -u -d @1700000000 → 2023-11-14 22:13:20
    assert_eq!(clock_dated(T0, true), "2023-11-14 22:13:20.000");
    assert_eq!(clock_dated(T0, false), "22:13:20.000");
}

#[test]
fn no_failure_is_none() {
    let mut tl = Timeline::default();
    traffic(&mut tl, 0.0, 60.0, 4, &|_, _| None);
    let t = tl.finish();
    assert_eq!(t.shape.kind, Kind::None);
    assert_eq!(t.totals.iter().sum::<u64>(), 240);
    assert!(t.first_failure.is_none());
    assert_eq!(kind(Timeline::default()), Kind::None);
}

#[test]
fn every_request_failed_is_all_at_once() {
    // One failure alone makes no pattern, even when it is the only request.
    let mut tl = Timeline::default();
    tl.add(&one(1.0, Verdict::ConnectRefused));
    assert_eq!(kind(tl), Kind::Sporadic);
    let mut tl = Timeline::default();
    tl.add(&one(1.0, Verdict::ConnectRefused));
    tl.add(&one(2.0, Verdict::ConnectRefused));
    assert_eq!(kind(tl), Kind::AllAtOnce);
    let mut tl = Timeline::default();
    traffic(&mut tl, 0.0, 10.0, 2, &|_, _| Some(Verdict::BackendTimeout));
    assert_eq!(kind(tl), Kind::AllAtOnce);
}

/// 2 requests a second for a minute; from 30 s to 35 s every one is refused (a burst), and
/// requests succeed before and after.
#[test]
fn refusals_in_one_window_are_all_at_once() {
    let mut tl = Timeline::default();
    traffic(&mut tl, 0.0, 60.0, 2, &|_, t| {
        (30.0..35.0).contains(&t).then_some(Verdict::ConnectRefused)
    });
    let t = tl.finish();
    assert_eq!(t.shape.kind, Kind::AllAtOnce, "{:?}", t.shape.facts);
    assert_eq!(t.shape.facts.failed, 10);
    assert_eq!(t.shape.facts.window_ok, 0);
    assert_eq!(t.first_failure.map(|f| f.at_ns), Some(at(30.0)));
    assert_eq!(t.last_failure.map(|f| f.at_ns), Some(at(34.5)));
    let reason = t.shape.reason(t.bucket_ns);
    assert!(
        reason.starts_with("10 of 120 requests failed (8.3 %), all in one burst between"),
        "{reason}"
    );
    assert!(reason.contains("refused or cut"), "{reason}");
}

/// The burst's limit: healthy requests at most a tenth of the attempts between the first and
/// the last failure. One healthy request among 10 failures (1 of 11) keeps it a burst, two
/// (2 of 12) do not: the failures are then only clustered.
#[test]
fn a_burst_allows_a_tenth_of_healthy_requests() {
    let with_healthy = |inside: &'static [f64]| {
        let mut tl = Timeline::default();
        traffic(&mut tl, 0.0, 60.0, 2, &|_, t| {
            (30.0..35.0).contains(&t).then_some(Verdict::ConnectRefused)
        });
        for &s in inside {
            tl.add(&one(s, Verdict::Ok));
        }
        kind(tl)
    };
    assert_eq!(with_healthy(&[31.2]), Kind::AllAtOnce);
    assert_eq!(with_healthy(&[31.2, 33.2]), Kind::Clustered);
}

/// Timeouts in one burst (requests unanswered, SYNs ignored), then connections that get
/// through only with a second SYN: a full accept queue, under load. Without those late
/// connects and without more load, the same burst is the backend gone quiet: all at once.
#[test]
fn timeouts_with_late_connects_are_under_load() {
    let burst = |late: bool| {
        let mut tl = Timeline::default();
        traffic(&mut tl, 0.0, 30.0, 2, &|_, _| None);
        // At the rate of the traffic around: no more load at the failures.
        for (s, v) in [
            (30.0, Verdict::BackendTimeout),
            (30.5, Verdict::BackendTimeout),
            (31.0, Verdict::ConnectTimeout),
            (31.5, Verdict::ConnectTimeout),
            (32.0, Verdict::ConnectTimeout),
        ] {
            tl.add(&one(s, v));
        }
        for s in [32.9, 32.95, 33.0] {
            let mut c = one(s + 1.0, Verdict::Ok);
            c.start_ns = at(s);
            c.late_connect = late;
            tl.add(&c);
        }
        traffic(&mut tl, 35.0, 60.0, 2, &|_, _| None);
        let t = tl.finish();
        (
            t.shape.kind,
            t.shape.facts.late_connects,
            t.shape.reason(t.bucket_ns),
        )
    };
    let (k, late, reason) = burst(true);
    assert_eq!((k, late), (Kind::UnderLoad, 3), "{reason}");
    assert!(
        reason.contains("3 connections got through only after sending their SYN again"),
        "{reason}"
    );
    let (k, _, reason) = burst(false);
    assert_eq!(k, Kind::AllAtOnce, "{reason}");
    assert!(reason.contains("did not answer"), "{reason}");
}

/// 4 requests a second for 60 s; from 20 s to 30 s, `per_s` a second, one of which fails
/// each second. With 7 a second the failures have 6 other requests in their second against
/// 3.7 for a healthy request (1.6 times): under load. With 6 a second, 5 against 3.4 (1.47
/// times, below 1.5): the same failures are only clustered.
#[test]
fn failures_with_more_load_are_under_load() {
    let peak = |per_s: u32| {
        let mut tl = Timeline::default();
        traffic(&mut tl, 0.0, 20.0, 4, &|_, _| None);
        traffic(&mut tl, 20.0, 30.0, per_s, &|i, _| {
            (i % per_s == 0).then_some(Verdict::BackendEmptyReply)
        });
        traffic(&mut tl, 30.0, 60.0, 4, &|_, _| None);
        let t = tl.finish();
        assert_eq!(t.bucket_ns, SEC);
        (t.shape.kind, t.shape.facts.load)
    };
    let (k, load) = peak(7);
    assert_eq!(k, Kind::UnderLoad, "{load:?}");
    assert!((load.requests_at_failure - 6.0).abs() < 1e-9, "{load:?}");
    assert!(
        (load.requests_at_success - 960.0 / 260.0).abs() < 1e-9,
        "{load:?}"
    );
    let (k, load) = peak(6);
    assert_eq!(k, Kind::Clustered, "{load:?}");
    assert!((load.requests_at_success - 3.4).abs() < 1e-9, "{load:?}");
}

/// 4 requests a second for 60 s (one-second buckets); failures at 20, 25, 30, `fourth` and
/// 50 s. 80 % of them (4) within 15 seconds of the 60 (a quarter) is a cluster; within 16,
/// they are sporadic.
#[test]
fn a_cluster_is_80_percent_within_a_quarter() {
    let run = |fourth: f64| {
        let mut tl = Timeline::default();
        let fails = [20.0, 25.0, 30.0, fourth, 50.0];
        traffic(&mut tl, 0.0, 60.0, 4, &|_, t| {
            fails.contains(&t).then_some(Verdict::ResponseTruncated)
        });
        let t = tl.finish();
        (t.shape.kind, t.shape.facts.cluster.map(|c| c.buckets))
    };
    assert_eq!(run(34.0), (Kind::Clustered, Some(15)));
    assert_eq!(run(35.0), (Kind::Sporadic, Some(16)));
}

#[test]
fn few_failures_spread_thinly_are_sporadic() {
    let mut tl = Timeline::default();
    traffic(&mut tl, 0.0, 60.0, 4, &|_, t| {
        [5.0, 30.0, 55.0].contains(&t).then_some(Verdict::LostInTransit)
    });
    let t = tl.finish();
    assert_eq!(t.shape.kind, Kind::Sporadic);
    assert!(t.shape.reason(t.bucket_ns).contains("hardware, network"));
    // Two failures back to back are too few for a burst.
    let mut tl = Timeline::default();
    traffic(&mut tl, 0.0, 60.0, 4, &|_, t| {
        (30.0..30.5).contains(&t).then_some(Verdict::ConnectRefused)
    });
    assert_eq!(kind(tl), Kind::Sporadic);
}

/// Keep-alive races close together are still sporadic: each is one request's timing.
#[test]
fn keepalive_races_are_sporadic_wherever_they_fall() {
    let mut tl = Timeline::default();
    traffic(&mut tl, 0.0, 60.0, 4, &|i, t| {
        ((30.0..33.0).contains(&t) && i % 2 == 0).then_some(Verdict::KeepaliveRace)
    });
    let t = tl.finish();
    assert_eq!(t.shape.kind, Kind::Sporadic);
    assert!(t.shape.facts.clustered(), "they do cluster in time");
}

/// Buckets of a round width from the span: a 5-second capture in 100 ms buckets, 5 hours in
/// 5 minutes (10 when its buckets, aligned on the epoch, would be 61); never more than 60.
#[test]
fn bucket_width_follows_the_span() {
    for (span, width) in [
        (5 * SEC, 100 * MS),
        (59 * SEC, SEC),
        (5 * HOUR - 10 * MIN, 5 * MIN),
        (5 * HOUR, 10 * MIN),
        (3 * DAY, 2 * HOUR),
        (100 * MS, 2 * MS),
    ] {
        let mut tl = Timeline::default();
        tl.add(&one(0.0, Verdict::Ok));
        tl.add(&one(span as f64 / SEC as f64, Verdict::Ok));
        let t = tl.finish();
        assert_eq!(t.bucket_ns, width, "span {}", duration(span));
        assert!(t.buckets.len() as i64 <= MAX_BUCKETS);
    }
}

/// Connections open during a bucket: those open at its start and those started in it.
#[test]
fn connections_open_per_bucket() {
    let mut tl = Timeline::default();
    // 0-59 s: one request a second on short connections; one long connection 10.5-40.5 s.
    traffic(&mut tl, 0.0, 60.0, 1, &|_, _| None);
    let mut long = one(10.5, Verdict::Ok);
    long.end_ns = at(40.5);
    tl.add(&long);
    let t = tl.finish();
    let active: Vec<u64> = t.buckets.iter().map(|b| b.active).collect();
    assert_eq!(active[9], 1);
    assert_eq!(active[10], 2);
    assert_eq!(active[40], 2);
    assert_eq!(active[41], 1);
}

/// Memory stays bounded: a million connections at times spread over a century keep at most
/// 4096 fine buckets and show at most 60.
#[test]
fn buckets_stay_bounded_over_any_span() {
    let mut tl = Timeline::default();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..1_000_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let t = (x % (100 * 365 * DAY as u64)) as i64;
        let v = if i % 97 == 0 {
            Verdict::BackendTimeout
        } else {
            Verdict::Ok
        };
        let mut c = one(0.0, v);
        c.start_ns = t;
        c.end_ns = t + SEC;
        c.attempts[0].at_ns = t;
        tl.add(&c);
        assert!(tl.fine.cells.len() as i64 <= MAX_FINE_SPAN);
    }
    let t = tl.finish();
    assert!(t.buckets.len() as i64 <= MAX_BUCKETS);
    assert_eq!(t.totals.iter().sum::<u64>(), 1_000_000);
    assert_eq!(
        t.buckets.iter().map(|b| b.cell.attempts()).sum::<u64>(),
        1_000_000
    );
}

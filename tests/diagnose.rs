//! Each diagnosis rule on a small synthetic two-capture timeline (see `kit`), with the boundaries:
//! a race just outside one round trip is not a race; a retransmission that arrived is not a loss;
//! a capture gap acknowledged by the receiver is not a loss. The lab captures (tests/lab.rs) are the
//! real-world evidence; these pin each rule down.

mod kit;

use bothends::anomaly::AnomalyKind;
use kit::*;

fn both(w: &Wire) -> (String, String, String) {
    verdict(&analyze(w, true))
}

fn proxy_only(w: &Wire) -> (String, String, String) {
    verdict(&analyze(w, false))
}

fn vb(v: &(String, String, String)) -> (&str, &str) {
    (v.0.as_str(), v.1.as_str())
}

#[test]
fn ok_connection() {
    let mut w = Wire::new(1000, 5000);
    w.handshake()
        .send_request(&get("/a"))
        .send_response(&ok(3000))
        .close();
    let v = both(&w);
    assert_eq!(vb(&v), ("ok", "none"), "{}", v.2);
    let a = analyze(&w, true);
    assert_eq!(
        a.pairing.pairs[0].method,
        bothends::pair::MatchMethod::TupleAndIsn
    );
    let c = a.pairing.clock.expect("clock offset");
    assert!(c.backend_minus_proxy_ns.abs() <= c.uncertainty_ns, "{c:?}");
}

/// A connection opened and left idle (no FIN, no RST) when the captures end is healthy, and the
/// explanation says it was still open instead of "closed normally".
#[test]
fn an_idle_connection_still_open_at_the_end_is_ok_and_said_so() {
    let mut w = Wire::new(1000, 5000);
    w.handshake();
    let v = both(&w);
    assert_eq!(vb(&v), ("ok", "none"), "{}", v.2);
    assert!(v.2.contains("still open when the captures ended"), "{}", v.2);
    let single = proxy_only(&w);
    assert!(
        single.2.contains("still open when the capture ended"),
        "{}",
        single.2
    );

    let mut closed = Wire::new(1000, 5000);
    closed.handshake().close();
    let v = both(&closed);
    assert!(v.2.contains("opened and closed normally"), "{}", v.2);
}

#[test]
fn connect_refused() {
    let mut w = Wire::new(1000, 0);
    w.c2s(SYN, b"")
        .wait_ms(5.0)
        .s2c_at(Some(0), RSTACK, b"", Fate::Arrives);
    assert_eq!(vb(&both(&w)), ("connect-refused", "backend"));
    let single = proxy_only(&w);
    assert_eq!(vb(&single), ("connect-refused", "backend"));
    assert!(single.2.contains("capture on the backend host"), "{}", single.2);
}

#[test]
fn a_rst_to_a_syn_that_never_reached_the_backend_is_forged() {
    let mut w = Wire::new(1000, 0);
    w.c2s_at(None, SYN, b"", Fate::Lost).forged_rst_to_proxy(64);
    // The backend capture is empty of this connection: give it something else to read, from a
    // second before to two seconds after, so that it ran when the SYN and the RST went by (a
    // capture that did not run then proves nothing: a_backend_capture_that_ended_proves_no_forged_rst
    // in tests/lab.rs).
    let mut other = Wire::new(7, 9);
    other.b_client = ([10, 0, 9, 9], 1234);
    other.now -= 1_000_000_000;
    other.handshake();
    other.wait_ms(3000.0);
    other.close();
    let a = {
        let sides = vec![
            side(bothends::pipeline::Side::Proxy, w.proxy_pcap()),
            side(bothends::pipeline::Side::Backend, other.backend_pcap()),
        ];
        bothends::pipeline::analyze(sides, &[])
    };
    let d = a
        .diagnoses
        .iter()
        .flatten()
        .find(|d| d.verdict.label() != "ok")
        .expect("a failure");
    assert_eq!(
        (d.verdict.label(), d.blame.label()),
        ("rst-from-middlebox", "network"),
        "{}",
        d.explanation
    );
}

#[test]
fn connect_timeout_three_ways() {
    // SYNs lost on the way: network
    let mut w = Wire::new(1000, 5000);
    for _ in 0..3 {
        w.c2s_at(Some(1000), SYN, b"", Fate::Lost).wait_ms(1000.0);
    }
    let mut other = Wire::new(7, 9);
    other.b_client = ([10, 0, 9, 9], 1234);
    other.handshake();
    let sides = vec![
        side(bothends::pipeline::Side::Proxy, w.proxy_pcap()),
        side(bothends::pipeline::Side::Backend, other.backend_pcap()),
    ];
    let a = bothends::pipeline::analyze(sides, &[]);
    let d = a
        .diagnoses
        .iter()
        .flatten()
        .find(|d| d.verdict.label() != "ok")
        .expect("a failure");
    assert_eq!(
        (d.verdict.label(), d.blame.label()),
        ("connect-timeout", "network")
    );
    assert!(
        d.explanation.contains("none of them reached the backend"),
        "{}",
        d.explanation
    );

    // SYNs arrive and are ignored: backend
    let mut w = Wire::new(1000, 5000);
    for _ in 0..3 {
        w.c2s_at(Some(1000), SYN, b"", Fate::Arrives).wait_ms(1000.0);
    }
    assert_eq!(vb(&both(&w)), ("connect-timeout", "backend"));

    // SYN-ACKs lost on the way back: network
    let mut w = Wire::new(1000, 5000);
    for _ in 0..3 {
        w.c2s_at(Some(1000), SYN, b"", Fate::Arrives).wait_ms(5.0);
        w.s2c_at(Some(5000), SYNACK, b"", Fate::Lost).wait_ms(1000.0);
    }
    let v = both(&w);
    assert_eq!(vb(&v), ("connect-timeout", "network"));
    assert!(v.2.contains("no SYN-ACK came back"), "{}", v.2);
    // one capture cannot tell: it says so
    let single = proxy_only(&w);
    assert_eq!(single.0, "connect-timeout");
    assert!(
        single.2.contains("a capture on the backend host would settle it"),
        "{}",
        single.2
    );
}

#[test]
fn request_incomplete_when_the_proxy_stops_sending() {
    let mut w = Wire::new(1000, 5000);
    w.handshake();
    let req = post("/upload", 10_000);
    w.send_request(&req[..3000])
        .wait_ms(2000.0)
        .c2s(FIN, b"")
        .wait_ms(5.0)
        .s2c(FIN, b"");
    assert_eq!(vb(&both(&w)), ("request-incomplete", "proxy"));
}

#[test]
fn backend_closed_during_request() {
    let mut w = Wire::new(1000, 5000);
    w.handshake();
    let req = post("/upload", 100_000);
    w.send_request(&req[..20_000]).s2c(RSTACK, b"");
    let v = both(&w);
    assert_eq!(vb(&v), ("backend-closed-during-request", "backend"), "{}", v.2);
}

#[test]
fn backend_empty_reply() {
    let mut w = Wire::new(1000, 5000);
    w.handshake()
        .send_request(&get("/x"))
        .wait_ms(1.0)
        .s2c(FIN, b"")
        .wait_ms(10.0)
        .c2s(FIN, b"");
    assert_eq!(vb(&both(&w)), ("backend-empty-reply", "backend"));
}

#[test]
fn response_truncated() {
    let mut w = Wire::new(1000, 5000);
    w.handshake().send_request(&get("/x"));
    let resp = ok(10_000);
    w.send_response(&resp[..4000])
        .s2c(FIN, b"")
        .wait_ms(10.0)
        .c2s(FIN, b"");
    assert_eq!(vb(&both(&w)), ("response-truncated", "backend"));
}

#[test]
fn backend_timeout() {
    let mut w = Wire::new(1000, 5000);
    w.handshake()
        .send_request(&get("/slow"))
        .wait_ms(30_000.0)
        .c2s(FIN, b"");
    let v = both(&w);
    assert_eq!(vb(&v), ("backend-timeout", "backend"), "{}", v.2);
    assert!(v.2.contains("30.0") || v.2.contains("30.01"), "{}", v.2);
}

#[test]
fn zero_window_stall() {
    let mut w = Wire::new(1000, 5000);
    w.handshake();
    let req = post("/upload", 200_000);
    w.send_request(&req[..50_000]);
    w.s_win = 0;
    w.s2c(ACK, b"")
        .wait_ms(3000.0)
        .s2c(ACK, b"")
        .wait_ms(3000.0)
        .c2s(RSTACK, b"");
    let v = both(&w);
    assert_eq!(vb(&v), ("zero-window-stall", "backend"), "{}", v.2);
}

#[test]
fn a_zero_window_that_reopened_is_flow_control_not_a_stall() {
    let mut w = Wire::new(1000, 5000);
    w.handshake();
    let req = post("/upload", 4000);
    w.send_request(&req[..2000]);
    w.s_win = 0;
    w.s2c(ACK, b"").wait_ms(100.0);
    w.s_win = 64240;
    w.s2c(ACK, b"")
        .send_request(&req[2000..])
        .send_response(&ok(10))
        .close();
    assert_eq!(vb(&both(&w)), ("ok", "none"));
}

/// Two exchanges, then the backend's FIN reaches the proxy `fin_after_request_ms` after the third
/// request left (negative: before), and the backend answers the request with RST. The FIN's
/// acknowledgement covers the request only if the FIN left after the request arrived.
fn race(fin_after_request_ms: f64) -> Wire {
    let mut w = Wire::new(1000, 5000);
    w.handshake();
    for _ in 0..2 {
        w.send_request(&get("/again")).send_response(&ok(100));
    }
    w.wait_ms(5000.0);
    let owd = w.owd as f64 / 1e6;
    let req_at = w.now;
    let before = w.s_rcv;
    w.c2s(PSH, &get("/third"));
    let after = w.s_rcv;
    // When the FIN leaves the backend, and when the request arrives there.
    let fin_leaves = req_at + ((fin_after_request_ms - owd) * 1e6) as i64;
    let request_arrives = req_at + w.owd;
    if fin_leaves < request_arrives {
        w.s_rcv = before;
    }
    w.now = fin_leaves;
    w.s2c(FIN, b"");
    w.s_rcv = after;
    w.now = fin_leaves.max(request_arrives) + 100_000;
    w.s2c(RST, b"");
    w
}

#[test]
fn keepalive_race_within_one_round_trip() {
    // round trip 10 ms: the FIN reaches the proxy 9 ms after the request left → crossed
    let v = proxy_only(&race(9.0));
    assert_eq!(vb(&v), ("keepalive-race", "proxy"), "{}", v.2);
    assert!(v.2.contains("ttl="), "names the remedies: {}", v.2);
    let v = both(&race(9.0));
    assert_eq!(vb(&v), ("keepalive-race", "proxy"), "{}", v.2);
}

#[test]
fn a_fin_arriving_just_outside_one_round_trip_is_not_a_race() {
    // 11 ms > one round trip: the request reached the backend before it closed
    let v = proxy_only(&race(11.0));
    assert_eq!(vb(&v), ("backend-empty-reply", "backend"), "{}", v.2);
}

#[test]
fn a_request_sent_after_the_fin_arrived_is_the_proxy_reusing_a_closed_connection() {
    let v = proxy_only(&race(-20.0));
    assert_eq!(vb(&v), ("keepalive-race", "proxy"), "{}", v.2);
    assert!(v.2.contains("before the request left"), "{}", v.2);
}

#[test]
fn the_rst_form_of_the_race_needs_an_idle_connection() {
    // Reused after 5 s idle, RST 0.2 ms after the request arrives: race.
    let mut w = Wire::new(1000, 5000);
    w.handshake()
        .send_request(&get("/a"))
        .send_response(&ok(10))
        .wait_ms(5000.0);
    w.c2s(PSH, &get("/b")).wait_ms(5.2).s2c(RSTACK, b"");
    assert_eq!(vb(&proxy_only(&w)), ("keepalive-race", "proxy"));
    // The same on a connection busy 1 ms before: the backend reset a request it had.
    let mut w = Wire::new(1000, 5000);
    w.handshake().send_request(&get("/a")).send_response(&ok(10));
    w.c2s(PSH, &get("/b")).wait_ms(5.2).s2c(RSTACK, b"");
    assert_eq!(vb(&proxy_only(&w)), ("backend-empty-reply", "backend"));
}

#[test]
fn lost_in_transit_when_the_request_never_arrives() {
    let mut w = Wire::new(1000, 5000);
    w.handshake();
    let req = get("/lost");
    let seq = w.cseq;
    w.c2s_at(None, PSH, &req, Fate::Lost);
    for _ in 0..4 {
        w.wait_ms(400.0).c2s_at(Some(seq), PSH, &req, Fate::Lost);
    }
    w.wait_ms(3000.0).c2s(FIN, b"");
    let v = both(&w);
    assert_eq!(vb(&v), ("lost-in-transit", "network"), "{}", v.2);
    assert!(v.2.contains("5 transmissions"), "{}", v.2);
    let single = proxy_only(&w);
    assert_eq!(vb(&single), ("lost-in-transit", "network"), "{}", single.2);
}

/// The backend's response, of which the first full-size segment (and its retransmissions) never
/// reaches the proxy while the small last one does, the proxy closing `close_after_ms` after that
/// last one arrived. 1448 + 552 bytes: the hole is bytes 0-1447.
fn response_with_a_hole(close_after_ms: f64) -> Wire {
    let mut w = Wire::new(1000, 5000);
    w.handshake().send_request(&get("/big"));
    let resp = ok(1900);
    let (first, rest) = resp.split_at(1448);
    let seq = w.sseq;
    w.s2c_at(None, PSH, first, Fate::Lost).s2c(PSH, rest);
    w.wait_ms(5.0).c2s(ACK, b""); // a duplicate ACK: the proxy still waits for byte 0
    let mut waited = 5.0;
    while waited + 400.0 < close_after_ms {
        w.wait_ms(400.0).s2c_at(Some(seq), PSH, first, Fate::Lost);
        waited += 400.0;
    }
    w.wait_ms(close_after_ms - waited).c2s(FIN, b"");
    w
}

/// With the proxy capture alone: later bytes of the response arrived, the earlier ones never did
/// and the proxy never acknowledged them; it gave up seconds later. The backend sent them (TCP
/// sends in order): lost on the way, not a backend that sent nothing.
#[test]
fn a_response_whose_start_never_arrives_is_lost_in_transit_from_the_proxy_view() {
    let w = response_with_a_hole(3000.0);
    let v = proxy_only(&w);
    assert_eq!(vb(&v), ("lost-in-transit", "network"), "{}", v.2);
    assert!(
        v.2.contains("1448 bytes of its response (bytes 0-1447) never reached the proxy"),
        "{}",
        v.2
    );
    let v = both(&w);
    assert_eq!(vb(&v), ("lost-in-transit", "network"), "{}", v.2);
}

/// The same hole, but the proxy closes 50 ms after the later bytes arrived: well within the
/// backend's retransmission timeout, so it did not give up because of the loss (its client went
/// away): not judged lost-in-transit from the proxy's view.
#[test]
fn a_hole_the_proxy_did_not_wait_for_is_not_why_it_gave_up() {
    let w = response_with_a_hole(50.0);
    let v = proxy_only(&w);
    assert_ne!(v.0, "lost-in-transit", "{}", v.2);
}

#[test]
fn a_retransmission_that_arrived_is_not_a_loss() {
    let mut w = Wire::new(1000, 5000);
    w.handshake();
    let req = get("/x");
    let seq = w.cseq;
    w.c2s_at(None, PSH, &req, Fate::Lost).wait_ms(200.0);
    w.c2s_at(Some(seq), PSH, &req, Fate::Arrives)
        .wait_ms(5.0)
        .s2c(ACK, b"")
        .send_response(&ok(100))
        .close();
    let a = analyze(&w, true);
    let v = verdict(&a);
    assert_eq!(vb(&v), ("ok", "none"), "{}", v.2);
    assert!(
        v.2.contains("1 lost in transit"),
        "the recovered loss is noted: {}",
        v.2
    );
    let al = a.alignments[0].as_ref().expect("aligned");
    assert_eq!(al.dirs[0].arrived_late.len(), 1);
    assert!(al.dirs[0].lost.is_empty());
}

#[test]
fn a_capture_gap_acked_by_the_receiver_is_not_a_loss() {
    let mut w = Wire::new(1000, 5000);
    w.handshake();
    let req = post("/up", 5000);
    let (a, b) = req.split_at(1448);
    let (b, c) = b.split_at(1448);
    w.c2s(PSH, a)
        .c2s_at(None, PSH, b, Fate::NotCapturedAtReceiver)
        .c2s(PSH, c)
        .wait_ms(5.0)
        .s2c(ACK, b"");
    w.wait_ms(5.0).send_response(&ok(10)).close();
    let an = analyze(&w, true);
    let v = verdict(&an);
    assert_eq!(vb(&v), ("capture-incomplete", "capture"), "{}", v.2);
    assert!(v.2.contains("backend capture missed 1448 bytes"), "{}", v.2);
    let al = an.alignments[0].as_ref().expect("aligned");
    assert!(al.dirs[0].lost.is_empty(), "{:?}", al.dirs[0].lost);
    assert_eq!(al.dirs[0].receiver_capture_missed, 1448);
}

#[test]
fn rst_from_middlebox_during_a_request() {
    let mut w = Wire::new(1000, 5000);
    w.handshake().send_request(&get("/a")).send_response(&ok(10));
    w.c2s_at(None, PSH, &get("/forbidden"), Fate::Lost)
        .forged_rst_to_proxy(64);
    let v = both(&w);
    assert_eq!(vb(&v), ("rst-from-middlebox", "network"), "{}", v.2);
    assert!(v.2.contains("TTL is 64"), "{}", v.2);
    // one capture: the TTL gives it away
    let v = proxy_only(&w);
    assert_eq!(vb(&v), ("rst-from-middlebox", "network"), "{}", v.2);
}

#[test]
fn proxy_aborted_mid_response() {
    let mut w = Wire::new(1000, 5000);
    w.handshake().send_request(&get("/big"));
    let resp = ok(100_000);
    w.send_response(&resp[..30_000])
        .c2s(RSTACK, b"")
        .wait_ms(1.0)
        .s2c(PSH, &resp[30_000..31_448]);
    assert_eq!(vb(&both(&w)), ("proxy-aborted", "proxy"));
}

/// The same connection as `w` from here on, as captures started now would see it: no handshake.
fn captured_from_now(w: &mut Wire) -> Wire {
    let mut late = Wire::new(0, 0);
    std::mem::swap(&mut late.cseq, &mut w.cseq);
    late.sseq = w.sseq;
    late.c_rcv = w.c_rcv;
    late.s_rcv = w.s_rcv;
    late.now = w.now;
    late
}

/// A pooled connection already open when both captures started is paired by its sequence
/// numbers and judged on the exchanges the captures show: ok, and the explanation says so.
#[test]
fn a_connection_opened_before_the_capture_is_judged_on_what_it_shows() {
    let mut w = Wire::new(1000, 5000);
    w.handshake();
    let mut late = captured_from_now(&mut w);
    late.send_request(&get("/a")).send_response(&ok(10)).close();
    let v = both(&late);
    assert_eq!(vb(&v), ("ok", "none"), "{}", v.2);
    assert!(v.2.contains("already open when the captures started"), "{}", v.2);
    let a = analyze(&late, true);
    assert_eq!(a.pairing.pairs.len(), 1);
    assert_eq!(a.pairing.pairs[0].method, bothends::pair::MatchMethod::Payload);

    // A failure on such a connection is still a failure.
    let mut w = Wire::new(1000, 5000);
    w.handshake();
    let mut late = captured_from_now(&mut w);
    late.send_request(&post("/up", 20_000)[..5000]).s2c(RSTACK, b"");
    assert_eq!(vb(&both(&late)), ("backend-closed-during-request", "backend"));
}

/// An idle pooled connection whose close is all the captures hold (no payload either way) is
/// paired by the sequence numbers of its FINs and ACKs, not reported twice as unmatched.
#[test]
fn an_idle_connection_seen_only_closing_is_paired_and_ok() {
    let mut w = Wire::new(1000, 5000);
    w.handshake().send_request(&get("/a")).send_response(&ok(10));
    let mut late = captured_from_now(&mut w);
    late.wait_ms(2000.0).close();
    let a = analyze(&late, true);
    assert_eq!(a.pairing.pairs.len(), 1, "{:?}", a.pairing.pairs);
    let p = &a.pairing.pairs[0];
    assert!(p.proxy.is_some() && p.backend.is_some(), "{p:?}");
    let v = verdict(&a);
    assert_eq!(vb(&v), ("ok", "none"), "{}", v.2);
}

#[test]
fn nat_between_the_captures_and_a_clock_hours_off() {
    let mut w = Wire::new(77, 99);
    w.b_client = ([192, 168, 7, 1], 61000);
    w.b_server = ([192, 168, 9, 9], 80);
    w.clock = 3 * 3600 * 1_000_000_000 + 250_000_000;
    w.handshake()
        .send_request(&get("/a"))
        .send_response(&ok(10))
        .send_request(&get("/b"))
        .wait_ms(1.0)
        .s2c(FIN, b"")
        .wait_ms(10.0)
        .c2s(FIN, b"");
    let a = analyze(&w, true);
    assert_eq!(a.pairing.pairs.len(), 1);
    assert_eq!(
        a.pairing.pairs[0].method,
        bothends::pair::MatchMethod::IsnThroughNat
    );
    let c = a.pairing.clock.expect("clock");
    assert!(
        (c.backend_minus_proxy_ns - w.clock).abs() <= c.uncertainty_ns,
        "{c:?} vs {}",
        w.clock
    );
    assert!(c.uncertainty_ns <= w.owd, "{c:?}");
    let d = a.diagnoses[0].as_ref().unwrap();
    assert_eq!(d.verdict.label(), "backend-empty-reply", "{}", d.explanation);
}

/// A backend that closes idle connections after 400 ms: three connections closed while idle show
/// the timeout; on a fourth, the request arrives 0.1 ms before the idle timer fires, the FIN
/// acknowledges it (it had arrived) and the backend's lingering close discards it: a race all the
/// same, told by the FIN coming exactly 400 ms after the previous response.
#[test]
fn an_idle_timer_firing_as_the_request_arrives_is_a_race() {
    let mut wires = Vec::new();
    for k in 0..3u16 {
        let mut w = Wire::new(100 + k as u32, 900 + k as u32);
        w.p_client.1 = 41000 + k;
        w.b_client.1 = 41000 + k;
        w.now += k as i64 * 10_000_000_000;
        w.handshake().send_request(&get("/a")).send_response(&ok(10));
        // the backend's FIN leaves 400 ms after its last response byte
        w.wait_ms(400.0 - 5.0 - 5.0)
            .s2c(FIN, b"")
            .wait_ms(5.0)
            .c2s(FIN, b"")
            .wait_ms(5.0)
            .s2c(ACK, b"");
        wires.push(w);
    }
    let mut w = Wire::new(7, 9);
    w.p_client.1 = 42000;
    w.b_client.1 = 42000;
    w.now += 40_000_000_000;
    w.handshake().send_request(&get("/a")).send_response(&ok(10));
    // 400 ms after the last response: the request arrives 0.1 ms before the FIN leaves.
    w.wait_ms(400.0 - 10.0 - 5.1)
        .c2s(PSH, &get("/b"))
        .wait_ms(5.1)
        .s2c(FIN, b"")
        .wait_ms(5.0)
        .c2s(FIN, b"")
        .wait_ms(5.0)
        .s2c(ACK, b"");
    wires.push(w);
    let (proxy, backend) = Wire::merge(&wires);
    for with_backend in [false, true] {
        let mut sides = vec![side(bothends::pipeline::Side::Proxy, proxy.clone())];
        if with_backend {
            sides.push(side(bothends::pipeline::Side::Backend, backend.clone()));
        }
        let a = bothends::pipeline::analyze(sides, &[]);
        let verdicts: Vec<&str> = a.diagnoses.iter().flatten().map(|d| d.verdict.label()).collect();
        assert_eq!(
            verdicts,
            ["ok", "ok", "ok", "keepalive-race"],
            "backend capture: {with_backend}"
        );
    }
}

/// Without other idle closes to learn the timeout from, a FIN that acknowledges the request means
/// the backend had the request when it closed: an empty reply, not a race.
#[test]
fn a_fin_that_acknowledges_the_request_alone_is_an_empty_reply() {
    let mut w = Wire::new(1000, 5000);
    w.handshake()
        .send_request(&get("/a"))
        .send_response(&ok(10))
        .wait_ms(400.0);
    w.c2s(PSH, &get("/b"))
        .wait_ms(5.1)
        .s2c(FIN, b"")
        .wait_ms(5.0)
        .c2s(FIN, b"");
    assert_eq!(vb(&both(&w)), ("backend-empty-reply", "backend"));
}

/// A backend that resets a reused connection 78 KB into a large POST had been taking the request
/// in (it acknowledged flight after flight): it closed during the request, it did not race an idle
/// close — even on a LAN where the 78 KB and the RST take less than a millisecond.
#[test]
fn a_reset_78_kb_into_a_post_on_a_reused_connection_is_not_a_race() {
    let mut w = Wire::new(1000, 5000);
    w.owd = 50_000; // 0.1 ms round trip
    w.handshake()
        .send_request(&get("/a"))
        .send_response(&ok(10))
        .wait_ms(5000.0);
    let body = post("/upload", 1 << 20);
    // Flights of 10 segments, each acknowledged one round trip later, until 78 KB are in.
    for flight in body[..78 * 1024].chunks(14_480) {
        for seg in flight.chunks(1448) {
            w.c2s(PSH, seg).wait_ms(0.001);
        }
        w.wait_ms(0.05).s2c(ACK, b"").wait_ms(0.05);
    }
    w.s2c(RSTACK, b"");
    for v in [both(&w), proxy_only(&w)] {
        assert_eq!(vb(&v), ("backend-closed-during-request", "backend"), "{}", v.2);
    }
}

/// A status line clients read although it is not strictly valid (a lower-case `http/1.1`) is a
/// response: with the FINs that follow, the connection is ok and the oddity is an anomaly — never
/// "no response".
#[test]
fn a_lower_case_status_line_is_a_response() {
    let mut w = Wire::new(1000, 5000);
    w.handshake()
        .send_request(&get("/a"))
        .send_response(b"http/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        .close();
    let a = analyze(&w, true);
    let v = verdict(&a);
    assert_eq!(vb(&v), ("ok", "none"), "{}", v.2);
    let c = &a.sides[0].connections[0];
    assert_eq!(
        c.app.exchanges[0].response.as_ref().and_then(|r| r.status),
        Some(200)
    );
    assert!(
        c.app.anomalies.count_of(AnomalyKind::HttpLowerCaseVersion) > 0,
        "{:?}",
        c.app.anomalies
    );
}

/// A SYN-ACK without its SYN (the proxy capture missed the SYN) is judged on its exchanges, and
/// the explanation says the opening was not seen instead of "opened normally".
#[test]
fn a_syn_ack_without_its_syn_is_not_said_to_open_normally() {
    let mut w = Wire::new(1000, 5000);
    w.c2s_at(None, SYN, b"", Fate::NotCapturedAtSender);
    w.wait_ms(5.0).s2c(SYNACK, b"").wait_ms(5.0).c2s(ACK, b"");
    w.send_request(&get("/a")).send_response(&ok(300)).close();
    let v = proxy_only(&w);
    assert_eq!(vb(&v), ("ok", "none"), "{}", v.2);
    assert!(!v.2.contains("opened"), "{}", v.2);
    assert!(v.2.contains("SYN is not in the capture"), "{}", v.2);
    // The backend capture has the SYN: with both, the opening is seen.
    let v = both(&w);
    assert_eq!(vb(&v), ("ok", "none"), "{}", v.2);
    assert!(!v.2.contains("SYN is not in"), "{}", v.2);
}

/// A close-delimited response ended by the backend's FIN and then a RST one past the FIN: the
/// response is whole, so the connection is healthy.
#[test]
fn fin_then_rst_one_past_it_after_a_whole_response_is_ok() {
    let mut w = Wire::new(1000, 5000);
    w.handshake().send_request(&get("/close"));
    w.s2c(PSH, b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it");
    w.s2c(FIN, b"").wait_ms(5.0).s2c(RSTACK, b"");
    for v in [both(&w), proxy_only(&w)] {
        assert_eq!(vb(&v), ("ok", "none"), "{}", v.2);
    }
}

/// The backend host's capture alone, read whole and judged (`pipeline::analyze`, the library's
/// batch path): the connection the host accepted from the proxy is the one reported, not the one
/// the backend itself opened to its database. (The batch path used the proxy capture's rule, which
/// keeps a host's outgoing connections, and reported the database connection instead.)
#[test]
fn backend_capture_alone_reports_the_accepted_connection_in_batch_too() {
    let mut accepted = Wire::new(1000, 5000);
    accepted
        .handshake()
        .send_request(&get("/a"))
        .send_response(&ok(10))
        .close();
    let mut db = Wire::new(7000, 9000);
    db.now = accepted.now + 1_000_000;
    db.p_client = ([10, 0, 2, 2], 45000);
    db.b_client = db.p_client;
    db.p_server = ([10, 0, 3, 3], 5432);
    db.b_server = db.p_server;
    db.handshake()
        .send_request(b"Q\0\0\0\x0bselect\0")
        .send_response(b"Z\0\0\0\x05I")
        .close();
    let (_, backend) = Wire::merge(&[accepted, db]);
    let a = bothends::pipeline::analyze(vec![side(bothends::pipeline::Side::Backend, backend)], &[]);
    let servers: Vec<String> = a
        .pairing
        .pairs
        .iter()
        .filter_map(|p| {
            p.proxy
                .or(p.backend)
                .map(|j| a.sides[0].connections[j].server.to_string())
        })
        .collect();
    assert_eq!(servers, ["10.0.2.2:8080"]);
}

/// One SYN and no answer: a connect timeout only if the capture watched long enough for TCP to
/// retransmit it (one second). A capture that ends 5 ms after the SYN cannot tell; one that goes on
/// for two seconds (another connection after it) shows the proxy giving up without a retry.
#[test]
fn an_unanswered_syn_is_a_timeout_only_if_the_capture_watched_long_enough() {
    for (gap_ms, want) in [(5.0, "capture-incomplete"), (2000.0, "connect-timeout")] {
        let mut syn = Wire::new(1000, 5000);
        syn.c2s(SYN, b"");
        let mut other = Wire::new(7000, 9000);
        other.p_client.1 = 40001;
        other.b_client.1 = 40001;
        other.now = syn.now + (gap_ms * 1e6) as i64;
        other.handshake();
        let (proxy, _) = Wire::merge(&[syn, other]);
        let a = bothends::pipeline::analyze(vec![side(bothends::pipeline::Side::Proxy, proxy)], &[]);
        let judged = a
            .pairing
            .pairs
            .iter()
            .zip(&a.diagnoses)
            .find(|(p, _)| {
                p.proxy
                    .is_some_and(|i| a.sides[0].connections[i].client.port == 40000)
            })
            .and_then(|(_, d)| d.as_ref())
            .expect("the SYN's connection is judged");
        assert_eq!(
            judged.verdict.to_string(),
            want,
            "{gap_ms} ms: {}",
            judged.explanation
        );
    }
}

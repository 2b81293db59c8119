//! Edge cases of one capture through the whole pipeline (capture → decode → tcp → http), each a
//! synthetic pcap written by the kit: what `bothends flows` must report for it. The expected values
//! follow from how each capture is built (stated per test), not from bothends' output.

mod kit;

use bothends::anomaly::AnomalyKind;
use bothends::pipeline::{Conn, Side};
use kit::*;

fn conns(w: &Wire) -> Vec<Conn> {
    side(Side::Single, w.proxy_pcap()).connections
}

fn one(w: &Wire) -> Conn {
    let mut v = conns(w);
    assert_eq!(v.len(), 1, "one connection expected");
    v.remove(0)
}

fn exchanges(c: &Conn) -> Vec<(String, String, Option<u16>, bool, bool)> {
    c.app
        .exchanges
        .iter()
        .map(|e| {
            let r = e.request.as_ref();
            (
                r.and_then(|m| m.method.clone()).unwrap_or_default(),
                r.and_then(|m| m.target.clone()).unwrap_or_default(),
                e.response.as_ref().and_then(|m| m.status),
                r.is_some_and(|m| m.complete),
                e.response.as_ref().is_some_and(|m| m.complete),
            )
        })
        .collect()
}

fn ex(method: &str, target: &str, status: Option<u16>) -> (String, String, Option<u16>, bool, bool) {
    (method.into(), target.into(), status, true, status.is_some())
}

#[test]
fn retransmission_counts_once() {
    // 5000 response bytes, the second segment sent twice.
    let mut w = Wire::new(10, 20);
    w.handshake().send_request(&get("/r"));
    let resp = ok(5000);
    let seq = w.sseq;
    w.s2c(PSH, &resp[..1448]).s2c(PSH, &resp[1448..2896]);
    w.s2c_at(Some(seq + 1448), PSH, &resp[1448..2896], Fate::Arrives);
    w.s2c(PSH, &resp[2896..4344])
        .s2c(PSH, &resp[4344..])
        .c2s(ACK, b"")
        .close();
    let c = one(&w);
    assert_eq!(c.dirs[1].bytes, resp.len() as u64);
    assert_eq!(c.dirs[1].retransmissions, 1);
    assert_eq!(exchanges(&c), vec![ex("GET", "/r", Some(200))]);
}

#[test]
fn overlap_with_different_bytes_keeps_the_first_copy() {
    let mut w = Wire::new(10, 20);
    w.handshake();
    let req = get("/first");
    let seq = w.cseq;
    w.c2s(PSH, &req);
    // a conflicting copy of the same bytes: "/first" rewritten as "/FIRST"
    let bad = String::from_utf8(req.clone())
        .unwrap()
        .replace("/first", "/FIRST")
        .into_bytes();
    w.c2s_at(Some(seq), PSH, &bad, Fate::Arrives)
        .send_response(&ok(1))
        .close();
    let c = one(&w);
    assert_eq!(c.dirs[0].conflicts, 1);
    assert!(c.anomalies.count_of(AnomalyKind::TcpOverlapConflict) == 1);
    assert_eq!(exchanges(&c), vec![ex("GET", "/first", Some(200))]);
}

#[test]
fn out_of_order_segments_are_reassembled() {
    let mut w = Wire::new(10, 20);
    w.handshake();
    let req = post("/ooo", 4000);
    let seq = w.cseq;
    // segments sent 3, 1, 2
    w.c2s_at(Some(seq + 2896), PSH, &req[2896..], Fate::Arrives);
    w.c2s_at(Some(seq), PSH, &req[..1448], Fate::Arrives);
    w.c2s_at(Some(seq + 1448), PSH, &req[1448..2896], Fate::Arrives);
    w.cseq = seq + req.len() as u32;
    w.s_rcv = w.cseq;
    w.s2c(ACK, b"").send_response(&ok(2)).close();
    let c = one(&w);
    assert_eq!(c.dirs[0].bytes, req.len() as u64);
    assert_eq!(
        c.dirs[0].out_of_order, 2,
        "the two segments below the highest seen filled holes"
    );
    assert_eq!(exchanges(&c), vec![ex("POST", "/ooo", Some(200))]);
}

#[test]
fn a_gap_not_acknowledged_stays_a_gap_and_body_sync_is_kept() {
    // The middle of a Content-Length body was never captured (nor acknowledged: the capture
    // ends); the next request on the connection is still parsed.
    let mut w = Wire::new(10, 20);
    w.handshake();
    let body = post("/up", 4000);
    let seq = w.cseq;
    w.c2s(PSH, &body[..1448]);
    w.c2s_at(
        Some(seq + 1448),
        PSH,
        &body[1448..2896],
        Fate::NotCapturedAtSender,
    );
    w.c2s(PSH, &body[2896..]).c2s(PSH, &get("/next"));
    let c = one(&w);
    assert_eq!(c.dirs[0].gaps, 1448);
    let ex = exchanges(&c);
    assert_eq!(ex.len(), 2);
    assert_eq!((ex[0].0.as_str(), ex[1].1.as_str()), ("POST", "/next"));
    let first = c.app.exchanges[0].request.as_ref().unwrap();
    assert_eq!(first.missing, 1448);
    assert!(first.complete, "all its bytes went out: the capture missed some");
}

#[test]
fn acked_unseen_bytes_are_a_capture_drop() {
    let mut w = Wire::new(10, 20);
    w.handshake().send_request(&get("/x"));
    let resp = ok(4000);
    let seq = w.sseq;
    w.s2c(PSH, &resp[..1448]);
    w.s2c_at(
        Some(seq + 1448),
        PSH,
        &resp[1448..2896],
        Fate::NotCapturedAtReceiver,
    );
    w.s2c(PSH, &resp[2896..]).c2s(ACK, b"").close();
    let c = one(&w);
    assert_eq!(c.dirs[1].acked_unseen, 1448);
    assert_eq!(c.dirs[1].gaps, 1448);
    assert_eq!(c.dirs[1].retransmissions, 0);
    assert_eq!(exchanges(&c), vec![ex("GET", "/x", Some(200))]);
}

#[test]
fn tso_super_segment_larger_than_the_mss() {
    // One 20 000-byte segment, as a capture on the sending host shows with TSO.
    let mut w = Wire::new(10, 20);
    w.handshake().send_request(&get("/big"));
    let resp = ok(20_000);
    w.s2c(PSH, &resp).c2s(ACK, b"").close();
    let c = one(&w);
    assert_eq!(c.dirs[1].bytes, resp.len() as u64);
    assert_eq!(exchanges(&c), vec![ex("GET", "/big", Some(200))]);
    assert_eq!(c.app.exchanges[0].response.as_ref().unwrap().body_bytes, 20_000);
}

#[test]
fn snaplen_cut_payload_counts_on_the_wire() {
    // Snaplen 128: Ethernet + IPv4 + TCP headers are 54 bytes, so 74 payload bytes per packet.
    let mut w = Wire::new(10, 20);
    w.snaplen = Some(128);
    w.handshake()
        .send_request(&get("/cut"))
        .send_response(&ok(3000))
        .close();
    let c = one(&w);
    assert_eq!(
        c.dirs[1].bytes,
        ok(3000).len() as u64,
        "bytes cut by snaplen still count"
    );
    assert_eq!(c.dirs[1].gaps, 0, "they were seen on the wire");
    assert!(c.dirs[1].snaplen_cut > 0);
    // the status line is in the first 74 bytes
    assert_eq!(
        c.app.exchanges[0].response.as_ref().and_then(|m| m.status),
        Some(200)
    );
}

#[test]
fn sequence_numbers_wrapping_around() {
    let mut w = Wire::new(u32::MAX - 100, u32::MAX - 10);
    w.handshake()
        .send_request(&post("/wrap", 3000))
        .send_response(&ok(3000))
        .close();
    let c = one(&w);
    assert_eq!(c.dirs[0].bytes, post("/wrap", 3000).len() as u64);
    assert_eq!(c.dirs[1].bytes, ok(3000).len() as u64);
    assert_eq!(c.dirs[0].gaps + c.dirs[1].gaps, 0);
    assert_eq!(exchanges(&c), vec![ex("POST", "/wrap", Some(200))]);
}

#[test]
fn port_reuse_starts_a_new_connection() {
    let mut w = Wire::new(10, 20);
    w.handshake()
        .send_request(&get("/one"))
        .send_response(&ok(1))
        .close();
    w.wait_ms(100.0);
    w.cseq = 900_000;
    w.sseq = 700_000;
    w.handshake()
        .send_request(&get("/two"))
        .send_response(&ok(1))
        .close();
    let v = conns(&w);
    assert_eq!(v.len(), 2);
    assert_eq!(exchanges(&v[0]), vec![ex("GET", "/one", Some(200))]);
    assert_eq!(exchanges(&v[1]), vec![ex("GET", "/two", Some(200))]);
    assert_eq!(v[1].client_isn, Some(900_000));
}

#[test]
fn syn_answered_by_rst() {
    let mut w = Wire::new(10, 0);
    w.c2s(SYN, b"")
        .wait_ms(5.0)
        .s2c_at(Some(0), RSTACK, b"", Fate::Arrives);
    let c = one(&w);
    assert_eq!(c.state.to_string(), "REJ");
    assert_eq!(c.history, "Sr");
}

/// Every request byte in its own segment, and the response too: the HTTP answer is the same.
#[test]
fn http_split_at_every_byte_by_tcp_segmentation() {
    let mut whole = Wire::new(10, 20);
    let req = [get("/a"), post("/b", 10)].concat();
    let resp = [ok(3), ok(4)].concat();
    whole.handshake().send_request(&req).send_response(&resp).close();
    let mut split = Wire::new(10, 20);
    split.handshake();
    for b in &req {
        split.c2s(PSH, std::slice::from_ref(b));
    }
    for b in &resp {
        split.s2c(PSH, std::slice::from_ref(b));
    }
    split.c2s(ACK, b"").close();
    let (a, b) = (one(&whole), one(&split));
    assert_eq!(exchanges(&a), exchanges(&b));
    assert_eq!(
        exchanges(&a),
        vec![ex("GET", "/a", Some(200)), ex("POST", "/b", Some(200))]
    );
}

#[test]
fn chunked_request_with_trailers() {
    let mut w = Wire::new(10, 20);
    let req = b"POST /c HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 1\r\n\r\n";
    w.handshake().send_request(req).send_response(&ok(0)).close();
    let c = one(&w);
    assert_eq!(exchanges(&c), vec![ex("POST", "/c", Some(200))]);
    let m = c.app.exchanges[0].request.as_ref().unwrap();
    assert_eq!(m.body_bytes, 11);
    assert_eq!(m.bytes, req.len() as u64);
}

#[test]
fn head_204_and_304_have_no_body() {
    let mut w = Wire::new(10, 20);
    w.handshake();
    let req = b"HEAD /h HTTP/1.1\r\nHost: b\r\n\r\nGET /n HTTP/1.1\r\nHost: b\r\n\r\nGET /m HTTP/1.1\r\nHost: b\r\nIf-None-Match: x\r\n\r\nGET /last HTTP/1.1\r\nHost: b\r\n\r\n";
    // HEAD answered with a Content-Length but no body; 204; 304 with a Content-Length; then 200.
    let resp = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n".as_slice(),
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n",
    ]
    .concat();
    w.send_request(req).send_response(&[resp, ok(5)].concat()).close();
    let c = one(&w);
    assert_eq!(
        exchanges(&c),
        vec![
            ex("HEAD", "/h", Some(200)),
            ex("GET", "/n", Some(204)),
            ex("GET", "/m", Some(304)),
            ex("GET", "/last", Some(200))
        ]
    );
}

#[test]
fn expect_100_continue() {
    let mut w = Wire::new(10, 20);
    w.handshake();
    let head = b"PUT /u HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n";
    w.send_request(head)
        .send_response(b"HTTP/1.1 100 Continue\r\n\r\n")
        .send_request(b"hello")
        .send_response(&ok(2))
        .close();
    let c = one(&w);
    assert_eq!(exchanges(&c), vec![ex("PUT", "/u", Some(200))]);
    let e = &c.app.exchanges[0];
    assert_eq!(e.interim.iter().map(|i| i.status).collect::<Vec<_>>(), vec![100]);
    assert!(e.request.as_ref().unwrap().expect_continue);
}

#[test]
fn pipelined_requests() {
    let mut w = Wire::new(10, 20);
    w.handshake();
    let reqs = [get("/1"), get("/2"), get("/3")].concat();
    w.send_request(&reqs)
        .send_response(&[ok(1), ok(22), ok(333)].concat())
        .close();
    let c = one(&w);
    assert_eq!(
        exchanges(&c),
        vec![
            ex("GET", "/1", Some(200)),
            ex("GET", "/2", Some(200)),
            ex("GET", "/3", Some(200))
        ]
    );
    let sizes: Vec<u64> = c
        .app
        .exchanges
        .iter()
        .map(|e| e.response.as_ref().unwrap().body_bytes)
        .collect();
    assert_eq!(sizes, vec![1, 22, 333]);
}

/// A segment lost on the way to the backend and retransmitted later: the backend capture sees a
/// hole that the retransmission fills. That is not a gap (Zeek's history has no 'g' for it): no
/// missing bytes, no 'G', the request whole, the connection SF.
#[test]
fn a_hole_filled_later_by_a_retransmission_is_not_a_gap() {
    let mut w = Wire::new(10, 20);
    w.handshake();
    let req = post("/up", 4000);
    let seq = w.cseq;
    w.c2s(PSH, &req[..1448]);
    w.c2s_at(None, PSH, &req[1448..2896], Fate::Lost);
    w.c2s(PSH, &req[2896..]);
    w.wait_ms(5.0).s2c(ACK, b"").wait_ms(20.0);
    w.c2s_at(Some(seq + 1448), PSH, &req[1448..2896], Fate::Arrives);
    w.s_rcv = w.cseq;
    w.wait_ms(5.0).s2c(ACK, b"").send_response(&ok(10)).close();
    let backend = side(Side::Single, w.backend_pcap()).connections;
    let c = &backend[0];
    assert_eq!((c.dirs[0].bytes, c.dirs[0].gaps), (req.len() as u64, 0));
    assert_eq!(c.dirs[0].out_of_order, 1, "the retransmission filled the hole");
    assert!(!c.history.contains(['G', 'g']), "{}", c.history);
    assert_eq!(c.state.to_string(), "SF");
    assert_eq!(exchanges(c), vec![ex("POST", "/up", Some(200))]);
    // At the proxy, the same segment is a retransmission, and nothing is missing either.
    let p = one(&w);
    assert_eq!((p.dirs[0].retransmissions, p.dirs[0].gaps), (1, 0));
    assert!(
        p.history.contains('T') && !p.history.contains(['G', 'g']),
        "{}",
        p.history
    );
}

/// A close-delimited response (no Content-Length) ended by the backend's FIN, then a RST one past
/// the FIN (the sequence number after the FIN, as a socket closed with unread data sends): the
/// response is complete, the RST does not cut it.
#[test]
fn a_response_ended_by_fin_then_rst_one_past_the_fin_is_complete() {
    let mut w = Wire::new(10, 20);
    w.handshake().send_request(&get("/close"));
    let body = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it";
    w.s2c(PSH, body).s2c(FIN, b"").wait_ms(5.0);
    w.s2c(RSTACK, b"");
    let c = one(&w);
    assert_eq!(c.dirs[1].rst.unwrap().offset, c.dirs[1].fin.unwrap().offset + 1);
    assert_eq!(exchanges(&c), vec![ex("GET", "/close", Some(200))]);
}

/// TCP Fast Open both ways: the request rides on the SYN and the whole response on the SYN-ACK
/// (the payload starts one past each SYN's sequence number). Both are read, the exchange is whole.
#[test]
fn request_in_the_syn_and_response_in_the_syn_ack_are_read() {
    let mut w = Wire::new(10, 20);
    w.c2s(SYN, &get("/tfo")).wait_ms(5.0);
    w.s2c(SYNACK, &ok(2)).wait_ms(5.0).c2s(ACK, b"").close();
    let c = one(&w);
    assert_eq!(c.dirs[0].bytes, get("/tfo").len() as u64);
    assert_eq!(c.dirs[1].bytes, ok(2).len() as u64);
    assert_eq!(exchanges(&c), vec![ex("GET", "/tfo", Some(200))]);
}

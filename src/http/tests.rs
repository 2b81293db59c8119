//! The HTTP stage driven with stream events, as the TCP stage would deliver them.

use super::*;
use crate::anomaly::AnomalyKind;
use crate::capture::FrameRef;
use crate::tcp::GapKind;

const C: Dir = Dir::ClientToServer;
const S: Dir = Dir::ServerToClient;

fn at(frame: u32) -> PacketRef {
    PacketRef {
        frame: FrameRef { file: 0, frame },
        ts_ns: i64::from(frame) * 1000,
    }
}

/// Feeds a handler events of both directions, in the order the test calls for them.
struct Feed {
    h: HttpHandler,
    off: [i64; 2],
    frame: u32,
    /// Every event of a direction carries the same packet (for comparing splits).
    fixed: bool,
    /// The packet of each direction's last data event.
    last: [PacketRef; 2],
}

impl Feed {
    fn new(from_start: bool) -> Feed {
        Feed::with(HttpLimits::default(), from_start)
    }

    fn with(limits: HttpLimits, from_start: bool) -> Feed {
        Feed {
            h: HttpHandler::new(limits, from_start),
            off: [0, 0],
            frame: 0,
            fixed: false,
            last: [PacketRef::default(); 2],
        }
    }

    fn fixed() -> Feed {
        Feed {
            fixed: true,
            ..Feed::new(true)
        }
    }

    fn next_at(&mut self, d: Dir) -> PacketRef {
        if self.fixed {
            return at(1 + d.idx() as u32);
        }
        self.frame += 1;
        at(self.frame)
    }

    fn data(&mut self, d: Dir, bytes: &[u8]) -> &mut Feed {
        let at = self.next_at(d);
        self.last[d.idx()] = at;
        let offset = self.off[d.idx()];
        self.h.on_stream(d, StreamEvent::Data { offset, bytes, at });
        self.off[d.idx()] += bytes.len() as i64;
        self
    }

    /// Bytes captured in packet `frame`, delivered now (a direction held up behind a hole gets
    /// its bytes after the other direction's later ones).
    fn data_from(&mut self, d: Dir, frame: u32, bytes: &[u8]) -> &mut Feed {
        let offset = self.off[d.idx()];
        self.h.on_stream(
            d,
            StreamEvent::Data {
                offset,
                bytes,
                at: at(frame),
            },
        );
        self.off[d.idx()] += bytes.len() as i64;
        self.frame = self.frame.max(frame);
        self.last[d.idx()] = at(frame);
        self
    }

    fn c(&mut self, bytes: &[u8]) -> &mut Feed {
        self.data(C, bytes)
    }

    fn s(&mut self, bytes: &[u8]) -> &mut Feed {
        self.data(S, bytes)
    }

    /// A gap; snaplen cuts the packet of the direction's last data event, and that packet is
    /// the one that reveals it (other gaps: an unknown packet).
    fn gap(&mut self, d: Dir, len: u64, kind: GapKind) -> &mut Feed {
        let offset = self.off[d.idx()];
        let at = if kind == GapKind::Snaplen {
            self.last[d.idx()]
        } else {
            PacketRef::default()
        };
        self.h.on_stream(
            d,
            StreamEvent::Gap {
                offset,
                len,
                kind,
                at,
            },
        );
        self.off[d.idx()] += len as i64;
        self
    }

    fn end(&mut self, client: End, server: End) -> HttpSummary {
        std::mem::take(&mut self.h).finish([client, server])
    }

    fn done(&mut self) -> HttpSummary {
        self.end(End::Fin, End::Fin)
    }
}

/// An exchange as the JSON contract shows it.
#[derive(Debug, PartialEq, Eq)]
struct Row {
    method: Option<String>,
    target: Option<String>,
    request_bytes: u64,
    request_complete: bool,
    status: Option<u16>,
    response_bytes: u64,
    response_complete: bool,
}

/// A row; "" for no request, 0 for no response.
fn row(method: &str, target: &str, rb: u64, rc: bool, status: u16, sb: u64, sc: bool) -> Row {
    Row {
        method: (!method.is_empty()).then(|| method.to_string()),
        target: (!method.is_empty()).then(|| target.to_string()),
        request_bytes: rb,
        request_complete: rc,
        status: (status != 0).then_some(status),
        response_bytes: sb,
        response_complete: sc,
    }
}

fn rows(s: &HttpSummary) -> Vec<Row> {
    s.exchanges
        .iter()
        .map(|x| Row {
            method: x.request.as_ref().and_then(|m| m.method.clone()),
            target: x.request.as_ref().and_then(|m| m.target.clone()),
            request_bytes: x.request.as_ref().map_or(0, |m| m.bytes),
            request_complete: x.request.as_ref().is_some_and(|m| m.complete),
            status: x.response.as_ref().and_then(|m| m.status),
            response_bytes: x.response.as_ref().map_or(0, |m| m.bytes),
            response_complete: x.response.as_ref().is_some_and(|m| m.complete),
        })
        .collect()
}

fn n(b: &[u8]) -> u64 {
    b.len() as u64
}

fn req(s: &HttpSummary, i: usize) -> &Message {
    s.exchanges[i].request.as_ref().expect("a request")
}

fn res(s: &HttpSummary, i: usize) -> &Message {
    s.exchanges[i].response.as_ref().expect("a response")
}

/// Nothing odd: HTTP, no anomaly, no stop.
fn assert_clean(s: &HttpSummary) {
    assert_eq!(s.protocol, Protocol::Http);
    assert!(s.anomalies.is_empty(), "anomalies: {:?}", s.anomalies);
    assert!(s.stopped.is_empty(), "stopped: {:?}", s.stopped);
}

const GET: &[u8] = b"GET /index.html HTTP/1.1\r\nHost: backend\r\nUser-Agent: t\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello";

#[test]
fn get_200_content_length() {
    let s = Feed::new(true).c(GET).s(OK).done();
    assert_clean(&s);
    assert_eq!(
        rows(&s),
        vec![row("GET", "/index.html", n(GET), true, 200, n(OK), true)]
    );
    let (q, r) = (req(&s, 0), res(&s, 0));
    assert_eq!(q.version, "HTTP/1.1");
    assert_eq!(q.framing, Framing::None);
    assert_eq!(q.header_bytes, n(GET));
    assert_eq!(
        q.headers.get(0),
        Some(Header {
            name: "Host",
            value: "backend"
        })
    );
    assert_eq!((q.first, q.last, q.offset), (at(1), at(1), 0));
    assert_eq!(r.framing, Framing::ContentLength(5));
    assert_eq!((r.body_bytes, r.header_bytes), (5, n(OK) - 5));
    assert_eq!(r.reason.as_deref(), Some("OK"));
    assert_eq!((r.first, r.last, r.missing), (at(2), at(2), 0));
    assert_eq!(s.skipped, [0, 0]);
}

#[test]
fn response_spread_over_packets() {
    let s = Feed::new(true)
        .c(GET)
        .s(b"HTTP/1.1 200 OK\r\nCont")
        .s(b"ent-Length: 5\r\n\r\nhe")
        .s(b"llo")
        .done();
    assert_clean(&s);
    let r = res(&s, 0);
    assert_eq!((r.first, r.last, r.bytes, r.complete), (at(2), at(4), 43, true));
}

#[test]
fn keep_alive_three_exchanges() {
    let mut f = Feed::new(true);
    for i in 0..3 {
        f.c(format!("GET /{i} HTTP/1.1\r\nHost: b\r\n\r\n").as_bytes());
        f.s(format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{}",
            i + 1,
            "x".repeat(i + 1)
        )
        .as_bytes());
    }
    let s = f.done();
    assert_clean(&s);
    assert_eq!(
        rows(&s),
        vec![
            row("GET", "/0", 28, true, 200, 39, true),
            row("GET", "/1", 28, true, 200, 40, true),
            row("GET", "/2", 28, true, 200, 41, true),
        ]
    );
    assert_eq!(req(&s, 2).offset, 56);
    assert_eq!(res(&s, 2).offset, 79);
}

#[test]
fn pipelining_three_requests_then_three_responses() {
    let s = Feed::new(true)
        .c(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n")
        .c(b"GET /c HTTP/1.1\r\n\r\n")
        .s(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        .s(b"HTTP/1.1 500 Oops\r\nContent-Length: 2\r\n\r\nc!")
        .done();
    assert_clean(&s);
    assert_eq!(
        rows(&s),
        vec![
            row("GET", "/a", 19, true, 200, 39, true),
            row("GET", "/b", 19, true, 404, 45, true),
            row("GET", "/c", 19, true, 500, 42, true),
        ]
    );
}

#[test]
fn post_with_content_length_body() {
    let post = b"POST /form HTTP/1.1\r\nContent-Length: 11\r\n\r\nhello world";
    let s = Feed::new(true)
        .c(&post[..50])
        .c(&post[50..])
        .s(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        .done();
    assert_clean(&s);
    assert_eq!(rows(&s), vec![row("POST", "/form", n(post), true, 201, 43, true)]);
    let q = req(&s, 0);
    assert_eq!(
        (q.framing, q.body_bytes, q.header_bytes),
        (Framing::ContentLength(11), 11, n(post) - 11)
    );
    assert_eq!((q.first, q.last), (at(1), at(2)));
}

#[test]
fn chunked_request_with_trailers() {
    let post = b"POST /up HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n\
        5\r\nhello\r\n6;name=value\r\n world\r\n0\r\nX-Checksum: 1234\r\nX-Other: 5\r\n\r\n";
    let s = Feed::new(true)
        .c(post)
        .c(b"GET /next HTTP/1.1\r\n\r\n")
        .s(b"HTTP/1.1 204 No Content\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n")
        .done();
    assert_clean(&s);
    assert_eq!(
        rows(&s),
        vec![
            row("POST", "/up", n(post), true, 204, 27, true),
            row("GET", "/next", 22, true, 204, 27, true)
        ]
    );
    let q = req(&s, 0);
    assert_eq!((q.framing, q.body_bytes), (Framing::Chunked, 11));
}

#[test]
fn chunked_response() {
    let ok = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\
        1a\r\nabcdefghijklmnopqrstuvwxyz\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n";
    let s = Feed::new(true).c(GET).s(&ok[..60]).s(&ok[60..]).done();
    assert_clean(&s);
    assert_eq!(
        rows(&s),
        vec![row("GET", "/index.html", n(GET), true, 200, n(ok), true)]
    );
    let r = res(&s, 0);
    assert_eq!((r.framing, r.body_bytes), (Framing::Chunked, 26 + 16));
}

#[test]
fn chunked_response_without_last_chunk_is_incomplete() {
    let s = Feed::new(true)
        .c(GET)
        .s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        .end(End::Fin, End::Rst);
    assert_clean(&s);
    let r = res(&s, 0);
    assert_eq!((r.complete, r.body_bytes), (false, 5));
}

#[test]
fn head_response_has_no_body_then_next_exchange() {
    let client = b"HEAD /big HTTP/1.1\r\n\r\nGET /small HTTP/1.1\r\n\r\n";
    let head_ok = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nTransfer-Encoding: identity\r\n\r\n";
    let get_ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let expect = vec![
        row("HEAD", "/big", 22, true, 200, n(head_ok), true),
        row("GET", "/small", 23, true, 200, n(get_ok), true),
    ];
    let s = Feed::new(true).c(client).s(head_ok).s(get_ok).done();
    assert_clean(&s);
    assert_eq!(rows(&s), expect);
    assert_eq!((res(&s, 0).framing, res(&s, 0).body_bytes), (Framing::None, 0));
    // The responses arrive before the requests (the client direction was held up by a hole):
    // the HEAD response still has no body.
    let s = Feed::new(true)
        .data_from(S, 2, head_ok)
        .data_from(S, 3, get_ok)
        .data_from(C, 1, client)
        .done();
    assert_clean(&s);
    assert_eq!(rows(&s), expect);
}

#[test]
fn no_body_for_204_and_304() {
    let s = Feed::new(true)
        .c(b"DELETE /x HTTP/1.1\r\n\r\nGET /y HTTP/1.1\r\nIf-None-Match: \"e\"\r\n\r\nGET /z HTTP/1.1\r\n\r\n")
        .s(b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n")
        .s(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\nETag: \"e\"\r\n\r\n")
        .s(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz")
        .done();
    assert_clean(&s);
    assert_eq!(
        rows(&s)
            .iter()
            .map(|r| (r.status, r.response_complete))
            .collect::<Vec<_>>(),
        vec![(Some(204), true), (Some(304), true), (Some(200), true)]
    );
    assert_eq!(res(&s, 1).framing, Framing::None);
    assert_eq!(res(&s, 2).body_bytes, 1);
}

#[test]
fn expect_100_continue_then_final_response() {
    let head = b"PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    let s = Feed::new(true)
        .c(head)
        .s(b"HTTP/1.1 100 Continue\r\n\r\n")
        .c(b"data")
        .s(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")
        .done();
    assert_clean(&s);
    assert_eq!(rows(&s), vec![row("PUT", "/f", n(head) + 4, true, 201, 43, true)]);
    assert!(req(&s, 0).expect_continue);
    assert_eq!(
        s.exchanges[0].interim,
        vec![Interim {
            status: 100,
            at: at(2)
        }]
    );
    assert_eq!(res(&s, 0).first, at(4));
}

#[test]
fn expect_100_continue_refused() {
    // The server answers 417 without a 100; the client does not send the body and closes.
    let head = b"PUT /f HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n";
    let s = Feed::new(true)
        .c(head)
        .s(b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n")
        .end(End::Fin, End::Fin);
    assert_clean(&s);
    assert_eq!(rows(&s), vec![row("PUT", "/f", n(head), false, 417, 54, true)]);
    assert!(s.exchanges[0].interim.is_empty());
}

#[test]
fn upgrade_101_becomes_a_tunnel() {
    let upgrade = b"GET /chat HTTP/1.1\r\nHost: b\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let switching = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let s = Feed::new(true)
        .c(upgrade)
        .c(b"\x81\x85\x00\x00\x00\x00hello") // sent before the 101 arrived: held, then dropped
        .s(switching)
        .s(b"\x81\x02hi")
        .c(b"\x88\x80\x00\x00\x00\x00")
        .s(b"\x88\x00")
        .done();
    assert_clean(&s);
    assert_eq!(
        rows(&s),
        vec![row("GET", "/chat", n(upgrade), true, 101, n(switching), true)]
    );
    assert_eq!(res(&s, 0).framing, Framing::Tunnel);
    assert!(s.exchanges[0].interim.is_empty());
}

#[test]
fn upgrade_declined_keeps_parsing() {
    let s = Feed::new(true)
        .c(b"GET /a HTTP/1.1\r\nUpgrade: h2c\r\n\r\n")
        .c(b"GET /b HTTP/1.1\r\n\r\n") // held until the answer to the first request says no
        .s(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .done();
    assert_clean(&s);
    assert_eq!(rows(&s).len(), 2);
    assert_eq!(req(&s, 1).target.as_deref(), Some("/b"));
}

#[test]
fn connect_200_becomes_a_tunnel() {
    let connect = b"CONNECT backend:443 HTTP/1.1\r\nHost: backend:443\r\n\r\n";
    let established = b"HTTP/1.1 200 Connection Established\r\nContent-Length: 100\r\n\r\n";
    let s = Feed::new(true)
        .c(connect)
        .s(established)
        .c(b"\x16\x03\x01\x00\x05hello")
        .s(b"\x16\x03\x03\x00\x02hi")
        .done();
    assert_clean(&s);
    assert_eq!(
        rows(&s),
        vec![row(
            "CONNECT",
            "backend:443",
            n(connect),
            true,
            200,
            n(established),
            true
        )]
    );
    assert_eq!(res(&s, 0).framing, Framing::Tunnel);
}

#[test]
fn connect_refused_keeps_parsing() {
    let s = Feed::new(true)
        .c(b"CONNECT backend:443 HTTP/1.1\r\n\r\n")
        .s(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 3\r\n\r\nno!")
        .c(b"GET / HTTP/1.1\r\n\r\n")
        .s(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .done();
    assert_clean(&s);
    assert_eq!(
        rows(&s).iter().map(|r| r.status).collect::<Vec<_>>(),
        vec![Some(407), Some(200)]
    );
    assert_eq!(res(&s, 0).framing, Framing::ContentLength(3));
}

#[test]
fn response_until_close() {
    let get = b"GET /old HTTP/1.0\r\n\r\n";
    let ok = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n";
    let run = |server_end| {
        Feed::new(true)
            .c(get)
            .s(ok)
            .s(b"first part, ")
            .s(b"second part")
            .end(End::Fin, server_end)
    };
    let s = run(End::Fin);
    assert_clean(&s);
    assert_eq!(
        rows(&s),
        vec![row("GET", "/old", n(get), true, 200, n(ok) + 23, true)]
    );
    let r = res(&s, 0);
    assert_eq!(
        (r.framing, r.body_bytes, r.version),
        (Framing::UntilClose, 23, "HTTP/1.0")
    );
    let s = run(End::Rst);
    assert_clean(&s);
    assert_eq!(
        rows(&s),
        vec![row("GET", "/old", n(get), true, 200, n(ok) + 23, false)]
    );
    let s = run(End::Open);
    assert!(!res(&s, 0).complete);
}

#[test]
fn response_until_close_with_a_gap_at_its_tail_is_not_complete() {
    let s = Feed::new(true)
        .c(b"GET / HTTP/1.0\r\n\r\n")
        .s(b"HTTP/1.0 200 OK\r\n\r\nabc")
        .gap(S, 100, GapKind::NotCaptured)
        .done();
    let r = res(&s, 0);
    assert_eq!((r.complete, r.body_bytes, r.missing), (false, 103, 100));
    // A gap in the middle is only missing bytes.
    let s = Feed::new(true)
        .c(b"GET / HTTP/1.0\r\n\r\n")
        .s(b"HTTP/1.0 200 OK\r\n\r\nabc")
        .gap(S, 100, GapKind::Missing)
        .s(b"def")
        .done();
    assert_clean(&s);
    let r = res(&s, 0);
    assert_eq!((r.complete, r.body_bytes, r.missing), (true, 106, 100));
}

#[test]
fn request_body_cut_short() {
    let head = b"POST /upload HTTP/1.1\r\nContent-Length: 100\r\n\r\n";
    let s = Feed::new(true).c(head).c(&[b'x'; 40]).end(End::Rst, End::Fin);
    assert_clean(&s);
    assert_eq!(
        rows(&s),
        vec![row("POST", "/upload", n(head) + 40, false, 0, 0, false)]
    );
    assert_eq!(req(&s, 0).body_bytes, 40);
}

#[test]
fn request_head_cut_short() {
    let s = Feed::new(true)
        .c(b"POST /upload HTTP/1.1\r\nContent-Le")
        .end(End::Rst, End::Open);
    assert_eq!(s.protocol, Protocol::Http);
    assert_eq!(rows(&s), vec![row("POST", "/upload", 33, false, 0, 0, false)]);
    assert_eq!(req(&s, 0).header_bytes, 0);
}

#[test]
fn response_truncated() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    let s = Feed::new(true)
        .c(GET)
        .s(head)
        .s(&[b'x'; 600])
        .end(End::Fin, End::Fin);
    assert_clean(&s);
    assert_eq!(
        rows(&s),
        vec![row("GET", "/index.html", n(GET), true, 200, n(head) + 600, false)]
    );
}

#[test]
fn no_response() {
    let s = Feed::new(true).c(GET).end(End::Fin, End::Fin);
    assert_clean(&s);
    assert_eq!(
        rows(&s),
        vec![row("GET", "/index.html", n(GET), true, 0, 0, false)]
    );
}

#[test]
fn gap_inside_content_length_body_keeps_sync() {
    let head = b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\n";
    let s = Feed::new(true)
        .c(head)
        .c(b"abc")
        .gap(C, 4, GapKind::NotCaptured)
        .c(b"defGET /next HTTP/1.1\r\n\r\n")
        .s(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        .gap(S, 38, GapKind::Missing)
        .done();
    // The second response is lost in the gap: the server direction stops there.
    assert_eq!(s.protocol, Protocol::Http);
    assert_eq!(
        rows(&s),
        vec![
            row("POST", "/p", n(head) + 10, true, 200, 38, true),
            row("GET", "/next", 22, true, 0, 0, false)
        ]
    );
    let q = req(&s, 0);
    assert_eq!((q.missing, q.body_bytes), (4, 10));
    assert_eq!(s.stopped.len(), 1);
    assert_eq!(s.stopped[0].dir, S);
    assert_eq!(s.stopped[0].offset, 38);
    assert_eq!(s.stopped[0].kind, StopKind::GapAtMessageStart);
    assert!(
        s.stopped[0]
            .reason
            .contains("where the next response would start")
    );
}

#[test]
fn gap_past_the_end_of_a_body() {
    // The gap covers the end of the body and the start of the next request: the body is whole,
    // the next request's head is lost.
    let s = Feed::new(true)
        .c(b"POST /p HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc")
        .gap(C, 20, GapKind::NotCaptured)
        .c(b"HTTP/1.1\r\n\r\n")
        .done();
    assert_eq!(rows(&s).len(), 1);
    let q = req(&s, 0);
    assert_eq!((q.complete, q.missing), (true, 7));
    assert_eq!(s.stopped[0].offset, 50);
}

#[test]
fn gap_inside_chunk_data_keeps_sync() {
    let s = Feed::new(true)
        .c(GET)
        .s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123")
        .gap(S, 8, GapKind::NotCaptured)
        .s(b"cdef\r\n0\r\n\r\n")
        .done();
    assert_clean(&s);
    let r = res(&s, 0);
    assert_eq!((r.complete, r.body_bytes, r.missing), (true, 16, 8));
}

#[test]
fn gap_inside_chunk_framing_stops() {
    let s = Feed::new(true)
        .c(GET)
        .s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10")
        .gap(S, 8, GapKind::Missing)
        .s(b"cdef\r\n0\r\n\r\n")
        .done();
    assert!(!res(&s, 0).complete);
    assert_eq!(s.stopped.len(), 1);
    assert_eq!(s.stopped[0].kind, StopKind::GapInBody);
    assert!(
        s.stopped[0]
            .reason
            .contains("inside the chunk framing of the response body"),
        "{:?}",
        s.stopped
    );
    assert!(s.anomalies.is_empty());
}

#[test]
fn gap_inside_headers_stops() {
    let s = Feed::new(true)
        .c(b"GET /x HTTP/1.1\r\nHo")
        .gap(C, 10, GapKind::NotCaptured)
        .c(b"ther: y\r\n\r\n")
        .s(OK)
        .done();
    assert_eq!(s.protocol, Protocol::Http);
    assert!(s.anomalies.is_empty());
    assert_eq!(
        s.stopped,
        vec![Stop {
            dir: C,
            offset: 19,
            kind: StopKind::GapInHead,
            anomaly: None,
            reason: "gap of 10 bytes inside the request headers at offset 19 (not captured: the receiver acknowledged them)"
                .into(),
            resumed: None,
        }]
    );
    // The request is kept as far as it is known; the response is still parsed.
    assert_eq!(rows(&s), vec![row("GET", "/x", 19, false, 200, n(OK), true)]);
}

#[test]
fn snaplen_cut_inside_headers() {
    let s = Feed::new(true)
        .c(GET)
        .s(b"HTTP/1.1 502 Bad Gateway\r\nServer: ngi")
        .gap(S, 1400, GapKind::Snaplen)
        .done();
    assert_eq!(s.stopped.len(), 1);
    assert_eq!(s.stopped[0].dir, S);
    assert_eq!(s.stopped[0].kind, StopKind::SnaplenInHead);
    assert_eq!(
        s.stopped[0].reason,
        "snaplen cut the response headers at offset 37 (1400 bytes not captured)"
    );
    // The response counts the bytes snaplen cut after its head (they went out), and cannot be
    // said to be complete: its framing is unknown.
    assert_eq!(
        rows(&s),
        vec![row("GET", "/index.html", n(GET), true, 502, 37 + 1400, false)]
    );
    let r = res(&s, 0);
    assert_eq!((r.framing, r.missing), (Framing::Unknown, 1400));
}

#[test]
fn snaplen_cut_every_payload() {
    // A capture with a tiny snaplen: every payload byte is a gap.
    let s = Feed::new(true)
        .gap(C, 300, GapKind::Snaplen)
        .gap(S, 900, GapKind::Snaplen)
        .done();
    assert_eq!(s.protocol, Protocol::Other);
    assert!(s.exchanges.is_empty());
    assert_eq!(s.stopped.len(), 2);
    assert_eq!(s.stopped[0].kind, StopKind::SnaplenAtMessageStart);
    assert!(
        s.stopped[0]
            .reason
            .starts_with("snaplen cut 300 bytes where the next request would start")
    );
}

#[test]
fn stop_kind_follows_the_gap_kind() {
    // A gap where the next request would start: what kind of stop depends on why the bytes are
    // missing.
    for (gap, want) in [
        (GapKind::Snaplen, StopKind::SnaplenAtMessageStart),
        (GapKind::NotCaptured, StopKind::GapAtMessageStart),
        (GapKind::Missing, StopKind::GapAtMessageStart),
        (GapKind::Abandoned, StopKind::ReassemblyAbandoned),
    ] {
        let s = Feed::new(true).c(GET).s(OK).gap(C, 30, gap).done();
        let stops: Vec<_> = s.stopped.iter().map(|x| (x.dir, x.offset, x.kind)).collect();
        assert_eq!(stops, vec![(C, n(GET) as i64, want)], "{gap:?}");
        assert_eq!(s.stopped[0].anomaly, None);
    }
}

/// The response that starts at the current server offset, and where it ends.
fn ok_len(body: &str) -> Vec<u8> {
    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
}

#[test]
fn resync_after_a_lost_response_head_pairs_by_time() {
    // Keep-alive, not pipelined. The capture lost the head of the first response (the client
    // acknowledged it); its body's tail (text, with lines) is captured. Parsing finds the next
    // response at a packet start; time says it answers the second request (the latest one sent
    // before it), and the first request's response is in the gap.
    let (a, b, c) = (
        b"GET /a HTTP/1.1\r\n\r\n",
        b"GET /b HTTP/1.1\r\n\r\n",
        b"GET /c HTTP/1.1\r\n\r\n",
    );
    let (ok_b, ok_c) = (ok_len("bb"), ok_len("ccc"));
    let tail = b"<p>end of the page</p>\r\n</html>\r\n";
    let s = Feed::new(true)
        .c(a)
        .gap(S, 60, GapKind::NotCaptured)
        .s(tail)
        .c(b)
        .s(&ok_b)
        .c(c)
        .s(&ok_c)
        .done();
    assert_eq!(
        rows(&s),
        vec![
            row("GET", "/a", n(a), true, 0, 0, false),
            row("GET", "/b", n(b), true, 200, n(&ok_b), true),
            row("GET", "/c", n(c), true, 200, n(&ok_c), true),
        ]
    );
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpResponseNotCaptured), 1);
    assert_eq!(s.anomalies.iter().count(), 1);
    let resumed = 60 + n(tail) as i64;
    assert_eq!(
        s.stopped,
        vec![Stop {
            dir: S,
            offset: 0,
            kind: StopKind::GapAtMessageStart,
            anomaly: None,
            reason: "gap of 60 bytes where the next response would start, at offset 0 (not captured: the receiver acknowledged them)".into(),
            resumed: Some(resumed),
        }]
    );
    assert_eq!(res(&s, 1).offset, resumed);
}

#[test]
fn gap_covering_exactly_one_whole_response() {
    // Keep-alive: the capture lost the second response entirely, nothing else.
    let mut f = Feed::new(true);
    let reqs: Vec<Vec<u8>> = (0..4)
        .map(|i| format!("GET /{i} HTTP/1.1\r\n\r\n").into_bytes())
        .collect();
    let resps: Vec<Vec<u8>> = (0..4).map(|i| ok_len(&"x".repeat(i + 1))).collect();
    for i in 0..4 {
        f.c(&reqs[i]);
        if i == 1 {
            f.gap(S, n(&resps[i]), GapKind::Missing);
        } else {
            f.s(&resps[i]);
        }
    }
    let s = f.done();
    assert_eq!(
        rows(&s)
            .iter()
            .map(|r| (r.target.clone().unwrap_or_default(), r.status))
            .collect::<Vec<_>>(),
        vec![
            ("/0".to_string(), Some(200)),
            ("/1".to_string(), None),
            ("/2".to_string(), Some(200)),
            ("/3".to_string(), Some(200)),
        ]
    );
    assert_eq!(res(&s, 2).body_bytes, 3);
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpResponseNotCaptured), 1);
    let lost_at = n(&resps[0]) as i64;
    assert_eq!(s.stopped.len(), 1);
    assert_eq!(
        (s.stopped[0].offset, s.stopped[0].resumed),
        (lost_at, Some(lost_at + n(&resps[1]) as i64))
    );
}

#[test]
fn response_framed_for_the_request_time_chose() {
    // After the lost response to a GET, the next response answers a HEAD: no body, whatever
    // its Content-Length says, and the response after it is found where it starts.
    let head_ok = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    let s = Feed::new(true)
        .c(b"GET /a HTTP/1.1\r\n\r\n")
        .gap(S, 45, GapKind::NotCaptured)
        .c(b"HEAD /b HTTP/1.1\r\n\r\n")
        .s(head_ok)
        .c(b"GET /c HTTP/1.1\r\n\r\n")
        .s(&ok_len("c"))
        .done();
    assert_eq!(
        rows(&s),
        vec![
            row("GET", "/a", 19, true, 0, 0, false),
            row("HEAD", "/b", 20, true, 200, n(head_ok), true),
            row("GET", "/c", 19, true, 200, n(&ok_len("c")), true),
        ]
    );
    assert_eq!(res(&s, 1).framing, Framing::None);
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpResponseFramingGuessed), 0);
}

#[test]
fn client_gap_hiding_a_request() {
    // The capture lost a whole request; the server answered it. Its response is kept without a
    // request (noted), and the next exchange pairs as it should.
    let (a, lost, c) = (
        b"GET /a HTTP/1.1\r\n\r\n",
        b"GET /lost HTTP/1.1\r\n\r\n",
        b"GET /c HTTP/1.1\r\n\r\n",
    );
    let s = Feed::new(true)
        .c(a)
        .s(&ok_len("a"))
        .gap(C, n(lost), GapKind::NotCaptured)
        .s(&ok_len("lost"))
        .c(c)
        .s(&ok_len("c"))
        .done();
    assert_eq!(
        rows(&s)
            .iter()
            .map(|r| (r.target.clone(), r.response_bytes))
            .collect::<Vec<_>>(),
        vec![
            (Some("/a".to_string()), n(&ok_len("a"))),
            (None, n(&ok_len("lost"))),
            (Some("/c".to_string()), n(&ok_len("c"))),
        ]
    );
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpRequestNotCaptured), 1);
    assert_eq!(s.stopped.len(), 1);
    assert_eq!(
        (s.stopped[0].dir, s.stopped[0].resumed),
        (C, Some(n(a) as i64 + n(lost) as i64))
    );
}

#[test]
fn responses_sent_before_any_request_answer_none() {
    // The server sends three responses after the first request (a desync): the second and
    // third started before the next request did, so they answer no request.
    let s = Feed::new(true)
        .c(b"GET /a HTTP/1.1\r\n\r\n")
        .s(&[ok_len("1"), ok_len("2"), ok_len("3")].concat())
        .c(b"GET /b HTTP/1.1\r\n\r\n")
        .s(&ok_len("4"))
        .done();
    assert_eq!(
        rows(&s)
            .iter()
            .map(|r| (r.target.clone(), r.response_bytes))
            .collect::<Vec<_>>(),
        vec![
            (Some("/a".to_string()), 39),
            (None, 39),
            (None, 39),
            (Some("/b".to_string()), 39),
        ]
    );
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpResponseWithoutRequest), 2);
    assert!(s.stopped.is_empty());
}

#[test]
fn pipelined_requests_and_a_lost_response_are_not_guessed() {
    // Three pipelined requests; the capture lost the second response. The third could answer
    // the second or the third request: it is left unpaired rather than guessed.
    let s = Feed::new(true)
        .c(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\nGET /c HTTP/1.1\r\n\r\n")
        .s(&ok_len("a"))
        .gap(S, n(&ok_len("b")), GapKind::NotCaptured)
        .s(&ok_len("c"))
        .done();
    assert_eq!(
        rows(&s)
            .iter()
            .map(|r| (r.target.clone(), r.status))
            .collect::<Vec<_>>(),
        vec![
            (Some("/a".to_string()), Some(200)),
            (Some("/b".to_string()), None),
            (Some("/c".to_string()), None),
            (None, Some(200)),
        ]
    );
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpResponseUnpaired), 1);
}

#[test]
fn resync_skips_a_false_start_inside_a_body() {
    // After the gap, a body line looks like a status line, but what follows is no header
    // block: a false start, silently passed; the real response is found after it.
    let s = Feed::new(true)
        .c(GET)
        .gap(S, 10, GapKind::NotCaptured)
        .s(b"HTTP/1.1 200 OK\r\nthis is not a header\r\n\r\n")
        .c(b"GET /next HTTP/1.1\r\n\r\n")
        .s(b"HTTP/1.1 204 No Content\r\n\r\n")
        .done();
    assert_eq!(
        rows(&s),
        vec![
            row("GET", "/index.html", n(GET), true, 0, 0, false),
            row("GET", "/next", 22, true, 204, 27, true)
        ]
    );
    assert_eq!(s.stopped[0].resumed, Some(10 + 41));
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpBadHeader), 0);
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpResponseNotCaptured), 1);
}

#[test]
fn gap_inside_chunk_framing_resyncs_at_the_next_response() {
    let s = Feed::new(true)
        .c(GET)
        .s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10")
        .gap(S, 8, GapKind::Missing)
        .s(b"cdef\r\n0\r\n\r\n")
        .c(b"GET /2 HTTP/1.1\r\n\r\n")
        .s(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        .done();
    assert_eq!(
        rows(&s)
            .iter()
            .map(|r| (r.status, r.response_complete))
            .collect::<Vec<_>>(),
        vec![(Some(200), false), (Some(404), true)]
    );
    // The losses of sync say where they happened and where parsing went on.
    assert_eq!((s.stopped[0].offset, s.stopped[0].resumed), (49, Some(68)));
    assert!(s.anomalies.is_empty(), "{:?}", s.anomalies);
}

#[test]
fn snaplen_cut_heads_then_resync() {
    // Every packet keeps only its first bytes. Requests and responses are found at packet
    // starts; what the captured bytes show is kept (a target cut inside is said to be cut); a
    // message runs until the next one of its direction, and is complete when that one started
    // after nothing but snaplen-cut bytes.
    let mut f = Feed::new(true);
    let cut = |f: &mut Feed, d: Dir, bytes: &[u8], lost: u64| {
        f.data(d, bytes);
        f.gap(d, lost, GapKind::Snaplen);
    };
    // A target cut inside (the head parsed from the stream's start).
    cut(&mut f, C, b"GET /a/very/long/ta", 100);
    cut(&mut f, S, b"HTTP/1.1 200 OK\r\nServ", 500);
    cut(&mut f, S, b"more body", 1000);
    // A whole request line, the head cut after it; then a body packet.
    cut(&mut f, C, b"POST /upload HTTP/1.1\r\nHost: b", 2000);
    cut(&mut f, C, b"ody bytes of the upload", 3000);
    cut(&mut f, S, b"HTTP/1.1 201 Created\r\nConten", 40);
    // A start line cut before its end, found at a packet start.
    cut(&mut f, C, b"GET /third/target/that/is/cu", 80);
    cut(&mut f, S, b"HTTP/1.1 404 Not", 60);
    let s = f.done();
    assert_eq!(s.protocol, Protocol::Http);
    assert!(s.anomalies.is_empty(), "{:?}", s.anomalies);
    assert_eq!(
        rows(&s),
        vec![
            row(
                "GET",
                "/a/very/long/ta",
                19 + 100,
                true,
                200,
                21 + 500 + 9 + 1000,
                true
            ),
            row("POST", "/upload", 30 + 2000 + 23 + 3000, true, 201, 28 + 40, true),
            row(
                "GET",
                "/third/target/that/is/cu",
                28 + 80,
                false,
                404,
                16 + 60,
                false
            ),
        ]
    );
    let cuts: Vec<bool> = (0..3).map(|i| req(&s, i).target_cut).collect();
    assert_eq!(cuts, [true, false, true]);
    for i in 0..3 {
        assert_eq!(req(&s, i).framing, Framing::Unknown);
        assert_eq!(res(&s, i).framing, Framing::Unknown);
    }
    assert_eq!((req(&s, 0).missing, res(&s, 0).missing), (100, 1500));
    assert_eq!((req(&s, 1).missing, res(&s, 1).missing), (5000, 40));
    assert_eq!(res(&s, 2).reason.as_deref(), Some("Not"));
    // The last packets that carried bytes of them: the body packets.
    assert_eq!((res(&s, 0).first, res(&s, 0).last), (at(2), at(3)));
    assert_eq!((req(&s, 1).first, req(&s, 1).last), (at(4), at(5)));
    let client: Vec<(i64, Option<i64>)> = s
        .stopped
        .iter()
        .filter(|x| x.dir == C)
        .map(|x| (x.offset, x.resumed))
        .collect();
    assert_eq!(client, vec![(19, Some(119)), (149, Some(5172)), (5200, None)]);
    assert!(
        s.stopped[0]
            .reason
            .starts_with("snaplen cut the request headers at offset 19")
    );
}

#[test]
fn stops_are_capped() {
    // A tiny snaplen: every message loses sync. The stops kept are capped, the others counted;
    // every exchange is still there.
    let mut f = Feed::new(true);
    for i in 0..40 {
        f.data(C, format!("GET /{i} HTTP/1.1\r\nHo").as_bytes());
        f.gap(C, 50, GapKind::Snaplen);
        f.data(S, b"HTTP/1.1 200 OK\r\nCo");
        f.gap(S, 300, GapKind::Snaplen);
    }
    let s = f.done();
    assert_eq!(s.exchanges.len(), 40);
    assert!(rows(&s).iter().all(|r| r.status == Some(200)));
    assert_eq!(rows(&s)[39].target.as_deref(), Some("/39"));
    assert_eq!(s.stopped.len(), 2 * MAX_STOPS);
    assert_eq!(s.stops_not_kept, 2 * (40 - MAX_STOPS as u64));
}

#[test]
fn resync_split_at_every_byte() {
    // After a gap, the next response is found at a line start however the bytes are split
    // into packets.
    let after = b"end of a body\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let run = |pieces: &[&[u8]]| {
        let mut f = Feed::fixed();
        f.c(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
        f.gap(S, 50, GapKind::NotCaptured);
        for p in pieces {
            f.s(p);
        }
        f.done()
    };
    let whole = run(&[after]);
    assert_eq!(rows(&whole)[1].status, Some(200));
    assert_eq!(whole.stopped[0].resumed, Some(50 + 15));
    for k in 1..after.len() {
        assert_eq!(run(&[&after[..k], &after[k..]]), whole, "split at {k}");
    }
}

#[test]
fn mid_stream_start_inside_a_body_then_a_new_request() {
    // The capture starts inside a request body (binary, no newline before the next request),
    // and inside the end of a response body.
    let s = Feed::new(false)
        .c(b"\x00\x01\x02binary body tail \xff")
        .c(b"GET /next HTTP/1.1\r\nHost: b\r\n\r\n")
        .s(b"tail of a body\r\nstill body\r\n")
        .s(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        .done();
    assert_clean(&s);
    assert_eq!(rows(&s), vec![row("GET", "/next", 31, true, 200, 40, true)]);
    assert_eq!(req(&s, 0).offset, 21);
    assert_eq!(res(&s, 0).offset, 28);
    assert_eq!(s.skipped, [21, 28]);
}

#[test]
fn mid_stream_start_with_text_lines() {
    // Inside a chunked body whose text has lines; the next request starts mid-packet on a line.
    let s = Feed::new(false)
        .c(b"some text\r\nmore text\r\n0\r\n\r\nPOST /x HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
        .done();
    assert_clean(&s);
    assert_eq!(rows(&s), vec![row("POST", "/x", 42, true, 0, 0, false)]);
    assert_eq!(s.skipped, [27, 0]);
}

#[test]
fn mid_stream_response_to_a_request_before_the_capture() {
    let s = Feed::new(false)
        .s(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc")
        .c(b"GET /n HTTP/1.1\r\n\r\n")
        .s(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        .done();
    assert_clean(&s);
    assert_eq!(
        rows(&s),
        vec![
            row("", "", 0, false, 200, 41, true),
            row("GET", "/n", 19, true, 404, 45, true)
        ]
    );
}

#[test]
fn mid_stream_without_any_start_line() {
    let s = Feed::new(false)
        .c(b"middle of something")
        .s(b"else entirely")
        .done();
    assert_eq!(s.protocol, Protocol::Other);
    assert!(s.exchanges.is_empty() && s.stopped.is_empty() && s.anomalies.is_empty());
    assert_eq!(s.skipped, [19, 13]);
}

#[test]
fn tls_client_hello() {
    let hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8a\x1b";
    let s = Feed::new(true)
        .c(&hello[..2])
        .c(&hello[2..])
        .s(b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76\x03\x03")
        .done();
    assert_eq!(s.protocol, Protocol::Tls);
    assert!(s.exchanges.is_empty() && s.stopped.is_empty() && s.anomalies.is_empty());
}

#[test]
fn tls_captured_mid_stream() {
    let s = Feed::new(false)
        .c(b"\x17\x03\x03\x00\x20encrypted")
        .s(b"\x17\x03\x03\x01\x00encrypted")
        .done();
    assert_eq!(s.protocol, Protocol::Tls);
    assert!(s.exchanges.is_empty() && s.stopped.is_empty() && s.anomalies.is_empty());
}

#[test]
fn garbage_is_other() {
    for (client, server) in [
        (&b"\x00\x01\x02\x03binary\r\n\r\n"[..], &b"\xff\xfe\xfd"[..]),
        (b"SSH-2.0-OpenSSH_9.6\r\n", b"SSH-2.0-OpenSSH_9.6\r\n"),
        (b"*1\r\n$4\r\nPING\r\n", b"+PONG\r\n"),
        (b"\x16\x03\x09", b""),
    ] {
        let s = Feed::new(true).c(client).s(server).done();
        assert_eq!(s.protocol, Protocol::Other, "{client:?}");
        assert!(s.exchanges.is_empty() && s.stopped.is_empty() && s.anomalies.is_empty());
    }
}

#[test]
fn empty_connection() {
    let s = Feed::new(true).done();
    assert_eq!(s, HttpSummary::default());
}

#[test]
fn garbage_after_an_exchange_is_an_anomaly() {
    let s = Feed::new(true).c(GET).s(OK).c(b"\x00\x00garbage\r\n\r\n").done();
    assert_eq!(s.protocol, Protocol::Http);
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpBadRequestLine), 1);
    assert_eq!(s.stopped.len(), 1);
    assert_eq!(s.stopped[0].offset, n(GET) as i64);
    assert_eq!(
        (s.stopped[0].kind, s.stopped[0].anomaly),
        (StopKind::ParseError, Some(AnomalyKind::HttpBadRequestLine))
    );
    assert!(
        s.stopped[0]
            .reason
            .starts_with("invalid request line at offset 58: \"\\x00\\x00garbage")
    );
    assert_eq!(rows(&s).len(), 1);
}

#[test]
fn garbage_request_answered_by_http_is_an_anomaly() {
    // Not HTTP from the client, but the server answers in HTTP: the connection is HTTP.
    let s = Feed::new(true)
        .c(b"\x16\x03\x01\x00\x10hello")
        .s(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        .done();
    // (A TLS hello to an HTTP server is labelled TLS: that is what the client spoke.)
    assert_eq!(s.protocol, Protocol::Tls);
    let s = Feed::new(true)
        .c(b"HELLO\x00\r\n\r\n")
        .s(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        .done();
    assert_eq!(s.protocol, Protocol::Http);
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpBadRequestLine), 1);
    assert_eq!(rows(&s), vec![row("", "", 0, false, 400, 47, true)]);
    assert_eq!(s.stopped[0].dir, C);
    assert_eq!(
        (s.stopped[0].kind, s.stopped[0].anomaly),
        (StopKind::GarbageAtStart, Some(AnomalyKind::HttpBadRequestLine))
    );
}

#[test]
fn bad_status_line_from_the_backend() {
    let s = Feed::new(true).c(GET).s(b"HTTP/1.1 2000 OK\r\n\r\n").done();
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpBadStatusLine), 1);
    assert_eq!(s.stopped.len(), 1);
    assert_eq!(
        rows(&s),
        vec![row("GET", "/index.html", n(GET), true, 0, 0, false)]
    );
}

#[test]
fn bad_header_field() {
    let s = Feed::new(true)
        .c(b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n")
        .done();
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpBadHeader), 1);
    assert_eq!(rows(&s), vec![row("GET", "/", 33, false, 0, 0, false)]);
}

#[test]
fn conflicting_content_lengths_stop() {
    let s = Feed::new(true)
        .c(GET)
        .s(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello")
        .done();
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpBadContentLength), 1);
    assert_eq!(s.stopped.len(), 1);
    assert!(
        s.stopped[0]
            .reason
            .contains("conflicting Content-Length values 5 and 6")
    );
    assert!(!res(&s, 0).complete);
    // Identical repeated values are one value.
    let s = Feed::new(true)
        .c(GET)
        .s(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")
        .done();
    assert_clean(&s);
}

#[test]
fn request_transfer_encoding_without_chunked_stops() {
    let s = Feed::new(true)
        .c(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\nxx")
        .done();
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpBadTransferEncoding), 1);
    assert_eq!(s.stopped.len(), 1);
}

#[test]
fn transfer_encoding_and_content_length_is_noted() {
    let s = Feed::new(true)
        .c(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        .done();
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpTeAndCl), 1);
    assert!(s.stopped.is_empty());
    assert_eq!(
        (req(&s, 0).framing, req(&s, 0).complete),
        (Framing::Chunked, true)
    );
}

#[test]
fn bad_chunk_size_and_bad_chunk_end() {
    let s = Feed::new(true)
        .c(GET)
        .s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        .done();
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpBadChunkSize), 1);
    assert_eq!(s.stopped[0].offset, 47);
    let s = Feed::new(true)
        .c(GET)
        .s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n")
        .done();
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpBadChunkEnd), 1);
    assert_eq!(res(&s, 0).body_bytes, 3);
}

#[test]
fn values_and_headers_are_capped() {
    let limits = HttpLimits {
        max_headers: 2,
        max_value_bytes: 8,
        ..HttpLimits::default()
    };
    let s = Feed::with(limits, true)
        .c("GET /a-very-long-target HTTP/1.1\r\nA: 1\r\nB: caf\u{e9}\u{e9}\u{e9}\r\nContent-Length: 2\r\n\r\nxy".as_bytes())
        .done();
    assert_clean(&s);
    let q = req(&s, 0);
    assert_eq!(q.target.as_deref(), Some("/a-very-"));
    assert_eq!(
        q.headers.iter().collect::<Vec<_>>(),
        vec![
            Header {
                name: "A",
                value: "1"
            },
            Header {
                name: "B",
                value: "caf\u{e9}\u{e9}"
            },
        ]
    );
    // The Content-Length beyond the kept headers still frames the body.
    assert_eq!((q.body_bytes, q.complete), (2, true));
}

#[test]
fn stray_empty_lines_between_messages_are_ignored() {
    let s = Feed::new(true)
        .c(b"POST /a HTTP/1.1\r\nContent-Length: 1\r\n\r\nx\r\nGET /b HTTP/1.1\r\n\r\n")
        .done();
    assert_clean(&s);
    assert_eq!(rows(&s).len(), 2);
    assert_eq!(req(&s, 1).offset, 42);
}

/// A conversation with everything that moves framing: 100-continue, a chunked body with
/// trailers, a HEAD, pipelining, a 304.
const SHOTGUN_CLIENT: &[u8] = b"POST /upload HTTP/1.1\r\nHost: b\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello\
GET /a HTTP/1.1\r\nHost: b\r\n\r\n\
HEAD /b HTTP/1.1\r\nHost: b\r\n\r\n\
POST /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n\
GET /d HTTP/1.1\r\n\r\n";
const SHOTGUN_SERVER: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n\
HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nabcd\r\n0\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n\
HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nyes\
HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n";

/// Feeds the conversation as the given events (pieces in order; `true` = client).
fn shotgun(pieces: &[(bool, &[u8])]) -> HttpSummary {
    let mut f = Feed::fixed();
    for &(client, bytes) in pieces {
        f.data(if client { C } else { S }, bytes);
    }
    f.done()
}

#[test]
fn shotgun_split_at_every_byte() {
    let (c, s) = (SHOTGUN_CLIENT, SHOTGUN_SERVER);
    let whole = shotgun(&[(true, c), (false, s)]);
    assert_clean(&whole);
    assert_eq!(
        rows(&whole),
        vec![
            row("POST", "/upload", 80, true, 201, 45, true),
            row("GET", "/a", 28, true, 200, 61, true),
            row("HEAD", "/b", 29, true, 200, 41, true),
            row("POST", "/c", 91, true, 200, 41, true),
            row("GET", "/d", 19, true, 304, 49, true),
        ]
    );
    assert_eq!(whole.exchanges[0].interim.len(), 1);
    // The server's bytes first (its direction waits for the requests), or interleaved.
    assert_eq!(shotgun(&[(false, s), (true, c)]), whole);
    for k in 1..c.len() {
        assert_eq!(
            shotgun(&[(true, &c[..k]), (true, &c[k..]), (false, s)]),
            whole,
            "client split at {k}"
        );
        assert_eq!(
            shotgun(&[(false, s), (true, &c[..k]), (true, &c[k..])]),
            whole,
            "client split at {k}"
        );
    }
    for k in 1..s.len() {
        assert_eq!(
            shotgun(&[(true, c), (false, &s[..k]), (false, &s[k..])]),
            whole,
            "server split at {k}"
        );
        assert_eq!(
            shotgun(&[(false, &s[..k]), (true, c), (false, &s[k..])]),
            whole,
            "server split at {k}"
        );
    }
    // One byte per event: each direction in turn, and the two interleaved.
    let bytes = |d: bool, b: &'static [u8]| b.chunks(1).map(move |x| (d, x));
    let one: Vec<_> = bytes(true, c).chain(bytes(false, s)).collect();
    assert_eq!(shotgun(&one), whole);
    let one: Vec<_> = bytes(false, s).chain(bytes(true, c)).collect();
    assert_eq!(shotgun(&one), whole);
    let mut zip = Vec::new();
    let (mut ci, mut si) = (bytes(true, c), bytes(false, s));
    loop {
        match (ci.next(), si.next()) {
            (None, None) => break,
            (a, b) => zip.extend(a.into_iter().chain(b)),
        }
    }
    assert_eq!(shotgun(&zip), whole);
}

#[test]
fn hostile_100_mb_header_line() {
    let limits = HttpLimits::default();
    let mut f = Feed::new(true);
    f.c(b"GET / HTTP/1.1\r\nX-Long: ");
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..(100 * 1024 * 1024 / chunk.len()) {
        f.c(&chunk);
        assert!(f.h.buffered() <= limits.max_header_bytes, "{}", f.h.buffered());
    }
    let s = f.done();
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpHeaderTooLong), 1);
    assert_eq!(s.stopped.len(), 1);
    assert_eq!(s.stopped[0].kind, StopKind::ParseError);
    assert_eq!(
        s.stopped[0].reason,
        "request headers longer than 65536 bytes at offset 0"
    );
    assert_eq!(rows(&s), vec![row("GET", "/", 65536, false, 0, 0, false)]);

    // The same from the server, as the first bytes, without a newline, one byte at a time
    // at first (the start is probed), then in big events.
    let mut f = Feed::new(true);
    f.c(GET);
    for &b in b"HTTP/1.1 200 OK" {
        f.s(&[b]);
    }
    for _ in 0..40 {
        f.s(&chunk);
        assert!(f.h.buffered() <= limits.max_header_bytes);
    }
    let s = f.done();
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpHeaderTooLong), 1);
    assert_eq!(rows(&s)[0].status, Some(200));
}

#[test]
fn hostile_chunk_sizes() {
    for (size, anomaly) in [
        (&b"FFFFFFFFFFFFFFFFFF"[..], AnomalyKind::HttpChunkSizeTooLarge),
        (b"8000000000000000", AnomalyKind::HttpChunkSizeTooLarge),
        (b"18446744073709551616", AnomalyKind::HttpBadChunkSize),
        (b"", AnomalyKind::HttpBadChunkSize),
        (b"-1", AnomalyKind::HttpBadChunkSize),
    ] {
        let mut body = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        body.extend_from_slice(size);
        body.extend_from_slice(b"\r\nabc");
        let s = Feed::new(true).c(GET).s(&body).done();
        let expect = if size.starts_with(b"1844") {
            AnomalyKind::HttpChunkSizeTooLarge
        } else {
            anomaly
        };
        assert_eq!(
            s.anomalies.count_of(expect),
            1,
            "{:?}: {:?}",
            String::from_utf8_lossy(size),
            s.anomalies
        );
        assert_eq!(s.stopped.len(), 1);
        assert!(!res(&s, 0).complete);
    }
    // The largest size we take: counted, never allocated.
    let s = Feed::new(true)
        .c(GET)
        .s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7FFFFFFFFFFFFFFF\r\nabc")
        .gap(S, u64::MAX / 4, GapKind::Missing)
        .done();
    assert_clean(&s);
    assert_eq!(res(&s, 0).body_bytes, 3 + u64::MAX / 4);
}

#[test]
fn hostile_chunk_size_line_without_end() {
    let mut f = Feed::new(true);
    f.c(GET)
        .s(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;");
    let ext = vec![b'x'; 8192];
    for _ in 0..100 {
        f.s(&ext);
        assert!(f.h.buffered() <= HttpLimits::default().max_header_bytes);
    }
    let s = f.done();
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpChunkLineTooLong), 1);
}

#[test]
fn hostile_content_length_10_pow_18() {
    let head = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000000000000\r\n\r\n";
    let s = Feed::new(true)
        .c(GET)
        .s(head)
        .s(&[b'x'; 1000])
        .gap(S, 1_000_000_000_000_000, GapKind::NotCaptured)
        .s(&[b'y'; 1000])
        .done();
    assert_clean(&s);
    let r = res(&s, 0);
    assert_eq!(r.framing, Framing::ContentLength(1_000_000_000_000_000_000));
    assert_eq!(r.body_bytes, 1_000_000_000_002_000);
    assert_eq!(r.missing, 1_000_000_000_000_000);
    assert!(!r.complete);
    // The same on a request, followed by nothing.
    let s = Feed::new(true)
        .c(b"PUT / HTTP/1.1\r\nContent-Length: 1000000000000000000\r\n\r\nabc")
        .done();
    assert_clean(&s);
    assert_eq!(req(&s, 0).body_bytes, 3);
}

#[test]
fn hostile_100_000_pipelined_requests() {
    let limits = HttpLimits::default();
    let one = b"GET / HTTP/1.1\r\n\r\n";
    let total = 100_000usize;
    let stream: Vec<u8> = one.repeat(total);
    let answer = b"HTTP/1.1 204 No Content\r\n\r\n";
    let answers: Vec<u8> = answer.repeat(total);
    let mut f = Feed::new(true);
    for chunk in stream.chunks(64 * 1024) {
        f.c(chunk);
        assert!(f.h.buffered() <= limits.max_header_bytes);
    }
    for chunk in answers.chunks(64 * 1024) {
        f.s(chunk);
    }
    let s = f.done();
    assert_eq!(s.exchanges.len(), limits.max_exchanges);
    assert_eq!(
        s.anomalies.count_of(AnomalyKind::HttpExchangeLimit),
        (total - limits.max_exchanges) as u64
    );
    assert!(s.stopped.is_empty());
    assert!(
        rows(&s)
            .iter()
            .all(|r| r.request_complete && r.response_complete && r.status == Some(204))
    );

    // HEAD requests all waiting for their responses: the list of them is capped.
    let stream: Vec<u8> = b"HEAD / HTTP/1.1\r\n\r\n".repeat(total);
    let mut f = Feed::new(true);
    for chunk in stream.chunks(64 * 1024) {
        f.c(chunk);
    }
    let s = f.done();
    assert!(s.anomalies.count_of(AnomalyKind::HttpPipelineLimit) > 0);
    assert_eq!(s.exchanges.len(), limits.max_exchanges);
}

#[test]
fn responses_held_while_the_request_is_late_are_bounded() {
    // The server answers; the client direction shows nothing (its bytes are in a hole that is
    // only declared at the end). The held bytes stay under the cap, and the response is framed
    // without its request.
    let limits = HttpLimits::default();
    let mut f = Feed::new(true);
    f.s(b"HTTP/1.1 200 OK\r\nContent-Length: 300000\r\n\r\n");
    let body = vec![b'z'; 1000];
    for _ in 0..300 {
        f.s(&body);
        assert!(f.h.buffered() <= limits.max_header_bytes);
    }
    f.gap(C, 18, GapKind::NotCaptured);
    let s = f.done();
    assert_eq!(rows(&s), vec![row("", "", 0, false, 200, 43 + 300_000, true)]);
    assert_eq!(s.stopped.len(), 1);
    assert_eq!(s.stopped[0].dir, C);
}

#[test]
fn late_head_request_after_a_guess_is_noted() {
    // The request (captured first) is held up behind a hole longer than the server direction
    // can wait: the response is framed as if its request were a GET.
    let mut f = Feed::new(true);
    f.data_from(S, 2, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
    f.data_from(S, 3, &vec![b'z'; 70_000]);
    f.data_from(C, 1, b"HEAD / HTTP/1.1\r\n\r\n");
    let s = f.done();
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpResponseFramingGuessed), 1);
    assert_eq!(rows(&s)[0].method.as_deref(), Some("HEAD"));
}

#[test]
fn interim_responses_are_capped() {
    let mut f = Feed::new(true);
    f.c(GET);
    for _ in 0..20 {
        f.s(b"HTTP/1.1 102 Processing\r\n\r\n");
    }
    f.s(OK);
    let s = f.done();
    assert_eq!(s.exchanges[0].interim.len(), 8);
    assert_eq!(s.anomalies.count_of(AnomalyKind::HttpInterimLimit), 12);
    assert!(res(&s, 0).complete);
}

#[test]
fn never_panics_on_truncations_of_a_conversation() {
    // Every prefix of each direction, with each ending: no panic, and the exchanges never
    // outnumber what was sent.
    let (c, s) = (SHOTGUN_CLIENT, SHOTGUN_SERVER);
    for k in 0..=c.len().max(s.len()) {
        for end in [End::Fin, End::Rst, End::Open] {
            let sum = Feed::new(true)
                .c(&c[..k.min(c.len())])
                .s(&s[..k.min(s.len())])
                .end(end, end);
            assert!(sum.exchanges.len() <= 5);
            let sum = Feed::new(false)
                .c(&c[k.min(c.len())..])
                .s(&s[k.min(s.len())..])
                .end(end, end);
            assert!(sum.exchanges.len() <= 6);
        }
    }
}

#[test]
fn never_panics_on_pseudo_random_bytes() {
    // A small xorshift: deterministic noise mixed with HTTP fragments and gaps.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let fragments: [&[u8]; 8] = [
        b"HTTP/1.1 200 OK\r\n",
        b"GET / HTTP/1.1\r\n",
        b"Transfer-Encoding: chunked\r\n",
        b"Content-Length: 3\r\n",
        b"\r\n",
        b"0\r\n\r\n",
        b"HEAD / HTTP/1.1\r\n\r\n",
        b"HTTP/1.1 101 S\r\n\r\n",
    ];
    for round in 0..300 {
        let mut f = Feed::new(round % 3 != 0);
        for _ in 0..40 {
            let d = if rnd() % 2 == 0 { C } else { S };
            match rnd() % 10 {
                0 => {
                    f.gap(d, rnd() % 100, GapKind::NotCaptured);
                }
                1..=5 => {
                    f.data(d, fragments[(rnd() % 8) as usize]);
                }
                _ => {
                    let len = (rnd() % 40) as usize;
                    let noise: Vec<u8> = (0..len).map(|_| (rnd() % 256) as u8).collect();
                    f.data(d, &noise);
                }
            }
        }
        let _ = f.end(End::Fin, End::Rst);
    }
}

/// Random conversations: fragments of real messages, noise, gaps of every kind, both orders,
/// small limits (so every cap is reached). No panic, no endless loop, bounded buffers.
/// `BOTHENDS_FUZZ_ROUNDS` sets how many (default 200).
#[test]
fn random_conversations_with_small_limits() {
    let rounds: u64 = std::env::var("BOTHENDS_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let kinds = [
        GapKind::NotCaptured,
        GapKind::Snaplen,
        GapKind::Missing,
        GapKind::Abandoned,
    ];
    for round in 0..rounds {
        let limits = HttpLimits {
            max_header_bytes: 16 + (rnd() % 200) as usize,
            max_headers: (rnd() % 4) as usize,
            max_value_bytes: (rnd() % 10) as usize,
            max_exchanges: (rnd() % 6) as usize,
        };
        let mut f = Feed::with(limits, round % 4 != 0);
        let (c, s) = (SHOTGUN_CLIENT, SHOTGUN_SERVER);
        let (mut ci, mut si) = (0usize, 0usize);
        for _ in 0..60 {
            let client = rnd() % 2 == 0;
            let (src, pos) = if client { (c, &mut ci) } else { (s, &mut si) };
            let d = if client { C } else { S };
            match rnd() % 12 {
                0 => {
                    f.gap(d, rnd() % 64, kinds[(rnd() % 4) as usize]);
                }
                1 => {
                    let noise: Vec<u8> = (0..rnd() % 30).map(|_| (rnd() % 256) as u8).collect();
                    f.data(d, &noise);
                }
                _ => {
                    if *pos >= src.len() {
                        *pos = 0;
                    }
                    let len = 1 + (rnd() % 80) as usize;
                    let end = (*pos + len).min(src.len());
                    f.data(d, &src[*pos..end]);
                    *pos = end;
                }
            }
            assert!(f.h.buffered() <= 3 * limits.max_header_bytes.max(64) + 2 * 8192);
        }
        let ends = [End::Fin, End::Rst, End::Open];
        let sum = f.end(ends[(rnd() % 3) as usize], ends[(rnd() % 3) as usize]);
        assert!(sum.exchanges.len() <= limits.max_exchanges);
        assert!(sum.stopped.len() <= 2 * MAX_STOPS + 2);
        for x in &sum.exchanges {
            for m in x.request.iter().chain(&x.response) {
                assert!(m.headers.len() <= limits.max_headers);
                assert!(
                    m.target
                        .as_ref()
                        .is_none_or(|t| t.len() <= limits.max_value_bytes)
                );
                assert!(m.missing <= m.bytes && m.body_bytes <= m.bytes);
            }
        }
    }
}

#[test]
fn a_target_running_to_the_end_of_a_cut_head_is_flagged_cut() {
    let m = super::head::partial_message(
        Dir::ClientToServer,
        b"GET /truncate?size=150000&send",
        Message {
            method: None,
            target: None,
            status: None,
            reason: None,
            version: "",
            headers: Headers::default(),
            framing: Framing::Unknown,
            offset: 0,
            header_bytes: 0,
            bytes: 0,
            body_bytes: 0,
            complete: false,
            missing: 0,
            first: PacketRef::default(),
            last: PacketRef::default(),
            expect_continue: false,
            target_cut: false,
        },
        &HttpLimits::default(),
    )
    .unwrap();
    assert_eq!(m.target.as_deref(), Some("/truncate?size=150000&send"));
    assert!(m.target_cut);
}

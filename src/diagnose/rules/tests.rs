//! Rule helpers on synthetic connections (segments pushed straight into a connection table).

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::capture::FrameRef;
use crate::decode::{Endpoint, Segment, TcpFlags, TcpOptions};
use crate::http::{HttpHandler, HttpLimits};
use crate::tcp::{ConnectionTable, Limits};

/// The proxy's and the backend's address: 10.0.1.2:40000 and 10.0.2.2:8080.
fn endpoint(backend: bool) -> Endpoint {
    let (net, port) = if backend { (2, 8080) } else { (1, 40000) };
    Endpoint {
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, net, 2)),
        port,
    }
}

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const PA: u8 = TcpFlags::PSH | TcpFlags::ACK;

const REQUEST: &[u8] = b"GET /a HTTP/1.1\r\nHost: b\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";

/// One connection as a capture saw it: the proxy sends the same request twice on it; the first is
/// answered, the second is not. `cisn`, `sisn`: the initial sequence numbers this capture saw.
fn same_request_twice(cisn: u32, sisn: u32) -> Conn {
    let (c, s) = (cisn.wrapping_add(1), sisn.wrapping_add(1));
    let (q, r) = (REQUEST.len() as u32, RESPONSE.len() as u32);
    let segs: [(bool, u32, u32, u8, &[u8]); 6] = [
        (true, cisn, 0, SYN, b""),
        (false, sisn, c, SYN | ACK, b""),
        (true, c, s, ACK, b""),
        (true, c, s, PA, REQUEST),
        (false, s, c + q, PA, RESPONSE),
        (true, c + q, s + r, PA, REQUEST),
    ];
    let mut t = ConnectionTable::new(Limits::default(), |from_start| {
        HttpHandler::new(HttpLimits::default(), from_start)
    });
    for (i, (c2s, seq, ack, flags, payload)) in segs.into_iter().enumerate() {
        let (src, dst) = (endpoint(!c2s), endpoint(c2s));
        t.push(&Segment {
            frame: FrameRef {
                file: 0,
                frame: i as u32 + 1,
            },
            ts_ns: i as i64 * 1_000_000,
            src,
            dst,
            seq,
            ack,
            flags: TcpFlags(flags),
            window: 1000,
            options: TcpOptions::default(),
            payload_len: payload.len() as u32,
            payload,
            ip_id: Some(i as u16),
            ttl: 64,
            outgoing: None,
        });
    }
    t.finish().pop().expect("one connection")
}

/// A firewall between the captures that randomizes sequence numbers: the backend's capture
/// numbers the same bytes differently. The pair's sequence map (with the shift pairing measured)
/// finds the backend's copy of the second request; without the shift, only the request's method
/// and target are left, and they find the first.
#[test]
fn the_backend_exchange_honours_the_pairs_sequence_shift() {
    let shift = [0x1000_0000u32, 0x2000_0000];
    let p = same_request_twice(1000, 5000);
    let b = same_request_twice(1000 + shift[0], 5000 + shift[1]);
    assert_eq!((p.app.exchanges.len(), b.app.exchanges.len()), (2, 2));
    let second = p.app.exchanges[1].request.as_ref().expect("request");
    let offset = |e: Option<&Exchange>| e.and_then(|e| e.request.as_ref()).map(|r| r.offset);
    let b_offsets: Vec<i64> = b
        .app
        .exchanges
        .iter()
        .filter_map(|e| e.request.as_ref())
        .map(|r| r.offset)
        .collect();

    let paired = SeqMap::new(&p, &b, shift);
    assert_eq!(offset(backend_exchange(paired, &b, second)), Some(b_offsets[1]));
    let unshifted = SeqMap::new(&p, &b, [0, 0]);
    assert_eq!(
        offset(backend_exchange(unshifted, &b, second)),
        Some(b_offsets[0])
    );
}

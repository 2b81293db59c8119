//! Connection-level tests on synthetic segments (no capture file involved).

use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::decode::{Segment, TcpOptions};

const C: Endpoint = Endpoint {
    ip: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)),
    port: 40000,
};
const S: Endpoint = Endpoint {
    ip: IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)),
    port: 8080,
};

/// Collects each direction's delivered stream, gaps as '_'.
#[derive(Default)]
struct Collect([Vec<u8>; 2]);

impl StreamHandler for Collect {
    type Output = ([String; 2], [End; 2]);
    fn on_stream(&mut self, dir: Dir, event: StreamEvent<'_>) {
        let out = &mut self.0[dir.idx()];
        match event {
            StreamEvent::Data { bytes, .. } => out.extend_from_slice(bytes),
            StreamEvent::Gap { len, .. } => out.extend(std::iter::repeat_n(b'_', len as usize)),
        }
    }
    fn finish(self, ends: [End; 2]) -> Self::Output {
        let [a, b] = self.0;
        (
            [
                String::from_utf8_lossy(&a).into_owned(),
                String::from_utf8_lossy(&b).into_owned(),
            ],
            ends,
        )
    }
}

struct Kit {
    frame: u32,
    segs: Vec<(bool, u32, u32, u8, Vec<u8>, u16)>,
    /// The connection's two ends: (client, server).
    ends: (Endpoint, Endpoint),
}

impl Kit {
    fn new() -> Kit {
        Kit {
            frame: 0,
            segs: Vec::new(),
            ends: (C, S),
        }
    }
    /// A segment from the client (`c2s`) or the server.
    fn add(&mut self, c2s: bool, seq: u32, ack: u32, flags: u8, payload: &[u8]) -> &mut Kit {
        self.segs.push((c2s, seq, ack, flags, payload.to_vec(), 1000));
        self
    }
    fn window(&mut self, w: u16) -> &mut Kit {
        self.segs.last_mut().unwrap().5 = w;
        self
    }
    fn run(&mut self) -> Vec<Connection<([String; 2], [End; 2])>> {
        let mut t = ConnectionTable::new(Limits::default(), |_| Collect::default());
        self.push_all(&mut t);
        t.finish()
    }
    /// Pushes the segments into `t`, frames numbered on from `self.frame`.
    fn push_all<F: FnMut(bool) -> Collect>(&mut self, t: &mut ConnectionTable<Collect, F>) {
        for (c2s, seq, ack, flags, payload, window) in &self.segs {
            self.frame += 1;
            let (c, s) = self.ends;
            let (src, dst) = if *c2s { (c, s) } else { (s, c) };
            let seg = Segment {
                frame: FrameRef {
                    file: 0,
                    frame: self.frame,
                },
                ts_ns: self.frame as i64 * 1_000_000,
                src,
                dst,
                seq: *seq,
                ack: *ack,
                flags: TcpFlags(*flags),
                window: *window,
                options: TcpOptions::default(),
                payload_len: payload.len() as u32,
                payload,
                ip_id: Some(self.frame as u16),
                ttl: 64,
                outgoing: None,
            };
            t.push(&seg);
        }
    }
}

const SYN: u8 = TcpFlags::SYN;
const ACK: u8 = TcpFlags::ACK;
const PA: u8 = TcpFlags::PSH | TcpFlags::ACK;
const FA: u8 = TcpFlags::FIN | TcpFlags::ACK;
const RST: u8 = TcpFlags::RST;
const RA: u8 = TcpFlags::RST | TcpFlags::ACK;

fn handshake(k: &mut Kit, cisn: u32, sisn: u32) {
    k.add(true, cisn, 0, SYN, b"")
        .add(false, sisn, cisn.wrapping_add(1), SYN | ACK, b"")
        .add(true, cisn.wrapping_add(1), sisn.wrapping_add(1), ACK, b"");
}

#[test]
fn orderly_connection_is_sf_with_zeek_history() {
    let mut k = Kit::new();
    handshake(&mut k, 100, 500);
    k.add(true, 101, 501, PA, b"GET / HTTP/1.1\r\n\r\n")
        .add(false, 501, 119, PA, b"HTTP/1.1 204 No Content\r\n\r\n")
        .add(true, 119, 528, FA, b"")
        .add(false, 528, 120, FA, b"")
        .add(true, 120, 529, ACK, b"");
    let conns = k.run();
    assert_eq!(conns.len(), 1);
    let c = &conns[0];
    assert_eq!((c.client, c.server), (C, S));
    assert_eq!(c.state, ConnState::SF);
    assert_eq!(c.history, "ShADdFf");
    assert_eq!(c.dirs[0].bytes, 18);
    assert_eq!(c.dirs[1].bytes, 27);
    assert_eq!(c.app.0[0], "GET / HTTP/1.1\r\n\r\n");
    assert_eq!(c.app.1, [End::Fin, End::Fin]);
    assert_eq!(c.syn.unwrap().frame.frame, 1);
    assert_eq!(c.syn_ack.unwrap().frame.frame, 2);
    assert_eq!(c.established.unwrap().frame.frame, 3);
    assert_eq!(c.dirs[0].fin.unwrap().offset, 18);
    assert_eq!(
        c.dirs[0].acked.unwrap().0,
        19,
        "the server acknowledged the data and the FIN"
    );
    assert_eq!(c.log.len(), 8);
}

#[test]
fn syn_answered_by_rst_is_rej() {
    let mut k = Kit::new();
    k.add(true, 7, 0, SYN, b"").add(false, 0, 8, RA, b"");
    let c = &k.run()[0];
    assert_eq!(c.state, ConnState::REJ);
    assert_eq!(c.history, "Sr");
    assert_eq!(c.dirs[1].rst.unwrap().at.frame.frame, 2);
}

#[test]
fn unanswered_syn_retransmissions_are_one_s0_connection() {
    let mut k = Kit::new();
    k.add(true, 7, 0, SYN, b"")
        .add(true, 7, 0, SYN, b"")
        .add(true, 7, 0, SYN, b"");
    let conns = k.run();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].state, ConnState::S0);
    assert_eq!(conns[0].syn_count, 3);
}

#[test]
fn a_new_isn_on_the_same_four_tuple_is_a_new_connection() {
    let mut k = Kit::new();
    handshake(&mut k, 100, 500);
    k.add(true, 101, 501, FA, b"")
        .add(false, 501, 102, FA, b"")
        .add(true, 102, 502, ACK, b"");
    handshake(&mut k, 90_000, 7_000);
    k.add(true, 90_001, 7_001, PA, b"again");
    let conns = k.run();
    assert_eq!(conns.len(), 2);
    assert_eq!(conns[0].state, ConnState::SF);
    assert_eq!(conns[1].client_isn, Some(90_000));
    assert_eq!(conns[1].first.frame.frame, 7);
    assert_eq!(conns[1].app.0[0], "again");
}

#[test]
fn acked_unseen_data_is_a_capture_gap_not_a_loss() {
    let mut k = Kit::new();
    handshake(&mut k, 0, 1000);
    k.add(true, 1, 1001, PA, b"aaaa")
        // bytes 4..8 never captured
        .add(true, 9, 1001, PA, b"cccc")
        .add(false, 1001, 13, ACK, b"");
    let c = &k.run()[0];
    assert_eq!(c.app.0[0], "aaaa____cccc");
    assert_eq!(c.dirs[0].bytes, 8);
    assert_eq!(c.dirs[0].gaps, 4);
    assert_eq!(c.dirs[0].acked_unseen, 4);
    assert_eq!(c.dirs[0].retransmissions, 0);
    assert!(c.history.contains('G'));
}

#[test]
fn retransmission_is_counted_once_and_delivered_once() {
    let mut k = Kit::new();
    handshake(&mut k, 0, 1000);
    k.add(true, 1, 1001, PA, b"hello")
        .add(true, 1, 1001, PA, b"hello")
        .add(false, 1001, 6, ACK, b"");
    let c = &k.run()[0];
    assert_eq!(c.dirs[0].bytes, 5);
    assert_eq!(c.dirs[0].retransmissions, 1);
    assert_eq!(c.app.0[0], "hello");
    assert!(c.history.contains('T'));
    let spans = &c.dirs[0].spans;
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[1].kind, SpanKind::Retransmission);
    assert_eq!(spans[0].acked.unwrap().frame.frame, 6);
}

#[test]
fn sequence_wraparound_inside_a_connection() {
    let mut k = Kit::new();
    let isn = u32::MAX - 3;
    handshake(&mut k, isn, 1000);
    k.add(true, isn.wrapping_add(1), 1001, PA, b"abcdef")
        .add(true, isn.wrapping_add(7), 1001, PA, b"ghij")
        .add(false, 1001, isn.wrapping_add(11), ACK, b"");
    let c = &k.run()[0];
    assert_eq!(c.app.0[0], "abcdefghij");
    assert_eq!(c.dirs[0].bytes, 10);
    assert_eq!(c.dirs[0].acked.unwrap().0, 10);
}

#[test]
fn zero_window_run_and_reopening() {
    let mut k = Kit::new();
    handshake(&mut k, 0, 1000);
    k.add(true, 1, 1001, PA, b"xxxx")
        .add(false, 1001, 5, ACK, b"")
        .window(0)
        .add(false, 1001, 5, ACK, b"")
        .window(0)
        .add(false, 1001, 5, ACK, b"")
        .window(512);
    let c = &k.run()[0];
    let z = c.dirs[1].zero_window.unwrap();
    assert_eq!((z.first.frame.frame, z.last.frame.frame, z.count), (5, 6, 2));
    assert_eq!(z.reopened.unwrap().frame.frame, 7);
    assert!(c.history.contains('w'));
}

#[test]
fn mid_stream_connection_guesses_roles_by_port() {
    let mut k = Kit::new();
    // first packet seen is the server's data
    k.add(false, 5000, 77, PA, b"HTTP/1.1 200 OK\r\n")
        .add(true, 77, 5017, ACK, b"");
    let c = &k.run()[0];
    assert_eq!(c.state, ConnState::OTH);
    assert!(c.roles_guessed);
    assert_eq!((c.client, c.server), (C, S));
    assert_eq!(c.app.0[1], "HTTP/1.1 200 OK\r\n");
    assert!(c.history.starts_with('^'));
}

#[test]
fn rst_after_data_is_rsto_or_rstr() {
    let mut k = Kit::new();
    handshake(&mut k, 0, 1000);
    k.add(true, 1, 1001, PA, b"POST").add(false, 1001, 5, RST, b"");
    let c = &k.run()[0];
    assert_eq!(c.state, ConnState::RSTR);
    assert_eq!(c.app.1, [End::Open, End::Rst]);
}

#[test]
fn syn_ack_captured_before_its_syn_is_one_connection() {
    let mut k = Kit::new();
    k.add(false, 500, 101, SYN | ACK, b"")
        .add(true, 100, 0, SYN, b"")
        .add(true, 101, 501, ACK, b"")
        .add(true, 101, 501, PA, b"hi");
    let conns = k.run();
    assert_eq!(conns.len(), 1);
    let c = &conns[0];
    assert_eq!((c.client, c.server), (C, S));
    assert_eq!(c.client_isn, Some(100));
    assert_eq!(c.app.0[0], "hi");
    assert_eq!(c.state, ConnState::S1);
}

/// A SYN flood keeps up to `max_open` connections that never carry a byte: each costs its `Live`
/// (the HTTP parser, about 1 KB, is made at the first payload byte), measured in
/// tests/hostile.rs at about 2.5 KB with its allocations.
#[test]
fn an_open_connection_without_payload_is_small() {
    assert!(std::mem::size_of::<crate::http::HttpHandler>() <= 64);
    assert!(std::mem::size_of::<super::live::Live<crate::http::HttpHandler>>() <= 2048);
}

/// Zeek's own baseline for RSTs (testing/btest/Baseline/scripts.base.protocols.conn.
/// conn_state-RST-behavior): `R` → OTH, `SR` → RSTOS0, `SaR` → RSTOS0, `SaFR` → OTH. A SYN, an ACK
/// and a FIN from the client before its RST is not a refused attempt.
#[test]
fn originator_resets_follow_zeek_conn_state() {
    type Seg = (bool, u32, u32, u8);
    let cases: [(&[Seg], &str, ConnState); 4] = [
        (&[(true, 7, 0, RST)], "R", ConnState::OTH),
        (&[(true, 7, 0, SYN), (true, 8, 0, RST)], "SR", ConnState::RSTOS0),
        (
            &[(true, 7, 0, SYN), (false, 0, 8, ACK), (true, 8, 0, RST)],
            "SaR",
            ConnState::RSTOS0,
        ),
        (
            &[
                (true, 7, 0, SYN),
                (false, 0, 8, ACK),
                (true, 8, 1, FA),
                (true, 9, 1, RST),
            ],
            "SaFR",
            ConnState::OTH,
        ),
    ];
    for (segs, history, state) in cases {
        let mut k = Kit::new();
        for &(c2s, seq, ack, flags) in segs {
            k.add(c2s, seq, ack, flags, b"");
        }
        let c = &k.run()[0];
        // Our '^' marks roles guessed from the ports (the lone RST); Zeek flips nothing there.
        let h = c.history.trim_start_matches('^');
        assert_eq!((h, c.state), (history, state), "{history}");
    }
}

/// Zeek's SHR: the responder's SYN-ACK then its FIN, the originator's SYN never seen. A lone
/// SYN-ACK is a half-seen attempt, never an established connection.
#[test]
fn a_lone_syn_ack_is_not_established() {
    let mut k = Kit::new();
    k.add(false, 500, 101, SYN | ACK, b"");
    assert_eq!(k.run()[0].state, ConnState::OTH);
    let mut k = Kit::new();
    k.add(false, 500, 101, SYN | ACK, b"")
        .add(false, 501, 101, FA, b"");
    assert_eq!(k.run()[0].state, ConnState::SHR);
}

/// Seen only closing, between the proxy's port 5312 (a port range tuned to start at 1024) and the
/// backend's 8080: 8080 is a service port, so it is the server even though it is the higher one.
#[test]
fn mid_stream_roles_prefer_a_service_port_over_the_lower_one() {
    let proxy = Endpoint {
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)),
        port: 5312,
    };
    let mut k = Kit::new();
    k.ends = (proxy, S);
    k.add(false, 900, 77, FA, b"").add(true, 77, 901, FA, b"");
    let c = &k.run()[0];
    assert!(c.roles_guessed);
    assert_eq!((c.client, c.server), (proxy, S));
}

/// An endpoint seen taking a connection (a SYN to it) is the server of a later connection seen
/// mid-stream, whatever its port.
#[test]
fn mid_stream_roles_prefer_an_endpoint_seen_listening() {
    let high = Endpoint {
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2)),
        port: 45000,
    };
    let low = Endpoint {
        ip: IpAddr::V4(Ipv4Addr::new(10, 0, 1, 2)),
        port: 2000,
    };
    // A SYN from the usual client to `high`, then `high` and `low` mid-stream.
    let mut k = Kit::new();
    k.ends = (C, high);
    k.add(true, 7, 0, SYN, b"");
    let mut t = ConnectionTable::new(Limits::default(), |_| Collect::default());
    let mut k2 = Kit::new();
    k2.ends = (low, high);
    k2.frame = 1;
    k2.add(false, 900, 77, PA, b"x");
    k.push_all(&mut t);
    k2.push_all(&mut t);
    let conns = t.finish();
    assert_eq!(conns.len(), 2);
    assert!(conns[1].roles_guessed);
    assert_eq!((conns[1].client, conns[1].server), (low, high));
}

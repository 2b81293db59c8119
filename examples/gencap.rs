//! Writes large synthetic captures for the benchmark (bench/run.sh):
//!
//! ```text
//! gencap pair OUT_DIR MEGABYTES   proxy.pcap + backend.pcap of keep-alive HTTP traffic between a
//!                                 proxy (10.0.1.2) and a backend (10.0.2.2:8080): GETs and POSTs of
//!                                 varied sizes on reused connections, 64 open at a time, one-way
//!                                 delay 10 µs, backend clock 2.5 s ahead, about one exchange in 500
//!                                 failing (empty reply, truncated response)
//! gencap short OUT_FILE CONNECTIONS   one capture of short connections (one GET each), 256 open at
//!                                 a time, client ports reused as they wrap
//! gencap syns OUT_FILE COUNT [ADDRS]  a SYN flood: COUNT SYNs to the backend from random ports of
//!                                 ADDRS client addresses (default: 1, the proxy's, so 4-tuples come
//!                                 back again and again) with random ISNs, never answered, 1 µs apart
//! gencap churn OUT_FILE PACKETS   connection churn from random clients, 1024 starting at a time: a
//!                                 quarter lone SYNs, a quarter whole GETs closed with FINs, a quarter
//!                                 reset after the request, a quarter abandoned mid-response (never
//!                                 closed); until PACKETS packets are written
//! ```
//! Deterministic (fixed seed). Frames are Ethernet/IPv4/TCP built with etherparse.

mod common;

use common::{Pcap, Rng, create};

use etherparse::PacketBuilder;

const PROXY: [u8; 4] = [10, 0, 1, 2];
const BACKEND: [u8; 4] = [10, 0, 2, 2];
const BACKEND_PORT: u16 = 8080;
const MSS: usize = 1448;

#[derive(Clone, Copy)]
struct Flags {
    syn: bool,
    ack: bool,
    fin: bool,
    rst: bool,
    psh: bool,
}

const SYN: Flags = Flags {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
    psh: false,
};
const SYNACK: Flags = Flags {
    syn: true,
    ack: true,
    fin: false,
    rst: false,
    psh: false,
};
const ACK: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
    psh: false,
};
const PSH: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
    psh: true,
};
const FIN: Flags = Flags {
    syn: false,
    ack: true,
    fin: true,
    rst: false,
    psh: false,
};
const RST: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: true,
    psh: false,
};

/// Builds frames into a reused buffer.
struct Framer {
    buf: Vec<u8>,
    ip_id: u16,
}

impl Framer {
    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        src: [u8; 4],
        sport: u16,
        dst: [u8; 4],
        dport: u16,
        seq: u32,
        ack: u32,
        f: Flags,
        payload: &[u8],
    ) -> &[u8] {
        self.buf.clear();
        self.ip_id = self.ip_id.wrapping_add(1);
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, seq, 64240);
        if f.ack {
            b = b.ack(ack);
        }
        if f.syn {
            b = b.syn();
        }
        if f.fin {
            b = b.fin();
        }
        if f.rst {
            b = b.rst();
        }
        if f.psh {
            b = b.psh();
        }
        b.write(&mut self.buf, payload).expect("frame");
        &self.buf
    }
}

/// Writes each packet to the sender's capture at `now` and the receiver's after the one-way
/// delay; the backend capture's clock is `offset` ahead.
struct Wire {
    proxy: Option<Pcap>,
    backend: Option<Pcap>,
    framer: Framer,
    now: i64,
    owd: i64,
    offset: i64,
}

impl Wire {
    #[allow(clippy::too_many_arguments)]
    fn send(&mut self, c2s: bool, cport: u16, seq: u32, ack: u32, f: Flags, payload: &[u8]) {
        let (src, sport, dst, dport) = if c2s {
            (PROXY, cport, BACKEND, BACKEND_PORT)
        } else {
            (BACKEND, BACKEND_PORT, PROXY, cport)
        };
        let frame = self.framer.frame(src, sport, dst, dport, seq, ack, f, payload);
        let (tp, tb) = if c2s {
            (self.now, self.now + self.owd + self.offset)
        } else {
            (self.now + self.owd, self.now + self.offset)
        };
        if let Some(p) = &mut self.proxy {
            p.frame(tp, frame).expect("write");
        }
        if let Some(b) = &mut self.backend {
            b.frame(tb, frame).expect("write");
        }
        // Every packet advances time by more than the one-way delay: each file stays in order.
        self.now += 2 * self.owd + 1_000;
    }
}

/// One keep-alive connection's progress.
struct Conn {
    port: u16,
    cseq: u32,
    sseq: u32,
    exchanges_left: u32,
    /// Packets still to send for the current step, generated lazily.
    queue: std::collections::VecDeque<(bool, Flags, Vec<u8>)>,
}

fn http_get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: backend\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n").into_bytes()
}

fn http_post(target: &str, body: usize) -> Vec<u8> {
    let mut v = format!("POST {target} HTTP/1.1\r\nHost: backend\r\nContent-Type: application/octet-stream\r\nContent-Length: {body}\r\n\r\n").into_bytes();
    v.resize(v.len() + body, b'p');
    v
}

fn http_ok(body: usize) -> Vec<u8> {
    let mut v = format!(
        "HTTP/1.1 200 OK\r\nServer: bench\r\nContent-Type: text/plain\r\nContent-Length: {body}\r\n\r\n"
    )
    .into_bytes();
    v.resize(v.len() + body, b'r');
    v
}

/// Queues the packets of one message in MSS segments, with an ACK from the receiver every two.
fn queue_message(q: &mut std::collections::VecDeque<(bool, Flags, Vec<u8>)>, c2s: bool, msg: &[u8]) {
    for (i, chunk) in msg.chunks(MSS).enumerate() {
        q.push_back((c2s, PSH, chunk.to_vec()));
        if i % 2 == 1 {
            q.push_back((!c2s, ACK, Vec::new()));
        }
    }
    q.push_back((!c2s, ACK, Vec::new()));
}

fn pair(dir: &str, megabytes: u64) {
    std::fs::create_dir_all(dir).expect("out dir");
    let mut w = Wire {
        proxy: Some(create(&format!("{dir}/proxy.pcap"), 1)),
        backend: Some(create(&format!("{dir}/backend.pcap"), 1)),
        framer: Framer {
            buf: Vec::with_capacity(2048),
            ip_id: 0,
        },
        now: 1_767_225_600_000_000_000,
        owd: 10_000,
        offset: 2_500_000_000,
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut next_port: u16 = 32768;
    let mut conns: Vec<Conn> = Vec::new();
    let limit = megabytes * 1024 * 1024;
    let mut exchange = 0u64;
    // Past the size limit, no new connection or exchange starts; the open ones finish and close.
    loop {
        let full = w.proxy.as_ref().map_or(0, |p| p.bytes) >= limit;
        if full && conns.is_empty() {
            break;
        }
        while conns.len() < 64 && !full {
            let port = next_port;
            next_port = if next_port >= 60999 { 32768 } else { next_port + 1 };
            let (cseq, sseq) = (rng.next() as u32, rng.next() as u32);
            let mut queue = std::collections::VecDeque::new();
            queue.push_back((true, SYN, Vec::new()));
            queue.push_back((false, SYNACK, Vec::new()));
            queue.push_back((true, ACK, Vec::new()));
            conns.push(Conn {
                port,
                cseq,
                sseq,
                exchanges_left: 5 + rng.below(40) as u32,
                queue,
            });
        }
        let i = rng.below(conns.len() as u64) as usize;
        let c = &mut conns[i];
        if full && c.exchanges_left != u32::MAX {
            c.exchanges_left = 0;
        }
        if c.queue.is_empty() {
            if c.exchanges_left == 0 {
                c.queue.push_back((true, FIN, Vec::new()));
                c.queue.push_back((false, FIN, Vec::new()));
                c.queue.push_back((true, ACK, Vec::new()));
                c.exchanges_left = u32::MAX;
            } else if c.exchanges_left == u32::MAX {
                conns.swap_remove(i);
                continue;
            } else {
                c.exchanges_left -= 1;
                exchange += 1;
                let target = format!("/item/{exchange}");
                let req = if rng.below(4) == 0 {
                    http_post(&target, 1000 + rng.below(200_000) as usize)
                } else {
                    http_get(&target)
                };
                queue_message(&mut c.queue, true, &req);
                let size = match rng.below(10) {
                    0..=5 => 200 + rng.below(8000),
                    6..=8 => 10_000 + rng.below(100_000),
                    _ => 200_000 + rng.below(800_000),
                } as usize;
                let resp = http_ok(size);
                match rng.below(500) {
                    // An empty reply: the backend closes after the request.
                    0 => {
                        c.queue.push_back((false, FIN, Vec::new()));
                        c.queue.push_back((true, FIN, Vec::new()));
                        c.queue.push_back((false, ACK, Vec::new()));
                        c.exchanges_left = u32::MAX;
                    }
                    // A truncated response: a third of it, then RST.
                    1 => {
                        queue_message(&mut c.queue, false, &resp[..resp.len() / 3]);
                        c.queue.push_back((false, RST, Vec::new()));
                        c.exchanges_left = u32::MAX;
                    }
                    _ => queue_message(&mut c.queue, false, &resp),
                }
            }
            continue;
        }
        let (c2s, f, payload) = c.queue.pop_front().expect("queued");
        let (seq, ack) = if c2s { (c.cseq, c.sseq) } else { (c.sseq, c.cseq) };
        w.send(c2s, c.port, seq, ack, f, &payload);
        let adv = payload.len() as u32 + f.syn as u32 + f.fin as u32;
        if c2s {
            c.cseq = c.cseq.wrapping_add(adv);
        } else {
            c.sseq = c.sseq.wrapping_add(adv);
        }
        if f.rst {
            conns.swap_remove(i);
        }
    }
    for p in [w.proxy.as_mut(), w.backend.as_mut()].into_iter().flatten() {
        p.flush().expect("flush");
    }
    let p = w.proxy.as_ref().expect("proxy");
    eprintln!(
        "{dir}: {} packets, {} MB per capture, {exchange} exchanges",
        p.packets,
        p.bytes >> 20
    );
}

fn short(path: &str, connections: u64) {
    let mut w = Wire {
        proxy: Some(create(path, 1)),
        backend: None,
        framer: Framer {
            buf: Vec::with_capacity(2048),
            ip_id: 0,
        },
        now: 1_767_225_600_000_000_000,
        owd: 10_000,
        offset: 0,
    };
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut next_port: u16 = 32768;
    let mut open: Vec<Conn> = Vec::new();
    let mut started = 0u64;
    while started < connections || !open.is_empty() {
        while open.len() < 256 && started < connections {
            started += 1;
            let port = next_port;
            next_port = if next_port >= 60999 { 32768 } else { next_port + 1 };
            let mut queue = std::collections::VecDeque::new();
            queue.push_back((true, SYN, Vec::new()));
            queue.push_back((false, SYNACK, Vec::new()));
            queue.push_back((true, ACK, Vec::new()));
            queue_message(&mut queue, true, &http_get(&format!("/s/{started}")));
            queue_message(&mut queue, false, &http_ok(100 + rng.below(900) as usize));
            queue.push_back((true, FIN, Vec::new()));
            queue.push_back((false, FIN, Vec::new()));
            queue.push_back((true, ACK, Vec::new()));
            open.push(Conn {
                port,
                cseq: rng.next() as u32,
                sseq: rng.next() as u32,
                exchanges_left: 0,
                queue,
            });
        }
        let i = rng.below(open.len() as u64) as usize;
        let c = &mut open[i];
        let Some((c2s, f, payload)) = c.queue.pop_front() else {
            open.swap_remove(i);
            continue;
        };
        let (seq, ack) = if c2s { (c.cseq, c.sseq) } else { (c.sseq, c.cseq) };
        w.send(c2s, c.port, seq, ack, f, &payload);
        let adv = payload.len() as u32 + f.syn as u32 + f.fin as u32;
        if c2s {
            c.cseq = c.cseq.wrapping_add(adv);
        } else {
            c.sseq = c.sseq.wrapping_add(adv);
        }
    }
    let p = w.proxy.as_mut().expect("capture");
    p.flush().expect("flush");
    eprintln!(
        "{path}: {} packets, {} MB, {connections} connections",
        p.packets,
        p.bytes >> 20
    );
}

fn syns(path: &str, count: u64, addrs: u32) {
    let mut p = create(path, 1);
    let mut framer = Framer {
        buf: Vec::with_capacity(128),
        ip_id: 0,
    };
    let mut rng = Rng(0x853c_49e6_748f_ea9b);
    let t0 = 1_767_225_600_000_000_000i64;
    for i in 0..count {
        let r = rng.next();
        let a = (r >> 40) as u32 % addrs.max(1);
        let src = if addrs <= 1 {
            PROXY
        } else {
            [10, 100 + (a >> 16) as u8 % 100, (a >> 8) as u8, a as u8]
        };
        let frame = framer.frame(
            src,
            1024 + (r as u16) % 64000,
            BACKEND,
            BACKEND_PORT,
            (r >> 16) as u32,
            0,
            SYN,
            &[],
        );
        p.frame(t0 + i as i64 * 1000, frame).expect("write");
    }
    p.flush().expect("flush");
    eprintln!("{path}: {} packets, {} MB", p.packets, p.bytes >> 20);
}

fn churn(path: &str, packets: u64) {
    let mut w = Wire {
        proxy: Some(create(path, 1)),
        backend: None,
        framer: Framer {
            buf: Vec::with_capacity(2048),
            ip_id: 0,
        },
        now: 1_767_225_600_000_000_000,
        owd: 10_000,
        offset: 0,
    };
    let mut rng = Rng(0xda94_2042_e4dd_58b5);
    // Each open connection: its client address and port, and what is left to send.
    let mut open: Vec<([u8; 4], Conn)> = Vec::new();
    let mut started = 0u64;
    while w.proxy.as_ref().map_or(0, |p| p.packets) < packets {
        while open.len() < 1024 {
            started += 1;
            let r = rng.next();
            let client = [10, 100 + (r >> 56) as u8 % 100, (r >> 48) as u8, (r >> 40) as u8];
            let mut queue = std::collections::VecDeque::new();
            queue.push_back((true, SYN, Vec::new()));
            let kind = r % 4;
            if kind != 0 {
                queue.push_back((false, SYNACK, Vec::new()));
                queue.push_back((true, ACK, Vec::new()));
                queue_message(&mut queue, true, &http_get(&format!("/c/{started}")));
            }
            match kind {
                1 => {
                    queue_message(&mut queue, false, &http_ok(100 + rng.below(2000) as usize));
                    queue.push_back((true, FIN, Vec::new()));
                    queue.push_back((false, FIN, Vec::new()));
                    queue.push_back((true, ACK, Vec::new()));
                }
                2 => queue.push_back((false, RST, Vec::new())),
                3 => queue_message(&mut queue, false, &http_ok(5000)[..2000]),
                _ => {}
            }
            open.push((
                client,
                Conn {
                    port: 1024 + (r >> 8) as u16 % 64000,
                    cseq: rng.next() as u32,
                    sseq: rng.next() as u32,
                    exchanges_left: 0,
                    queue,
                },
            ));
        }
        let i = rng.below(open.len() as u64) as usize;
        let (client, c) = &mut open[i];
        let Some((c2s, f, payload)) = c.queue.pop_front() else {
            open.swap_remove(i);
            continue;
        };
        let (seq, ack) = if c2s { (c.cseq, c.sseq) } else { (c.sseq, c.cseq) };
        let (src, sport, dst, dport) = if c2s {
            (*client, c.port, BACKEND, BACKEND_PORT)
        } else {
            (BACKEND, BACKEND_PORT, *client, c.port)
        };
        let frame = w.framer.frame(src, sport, dst, dport, seq, ack, f, &payload);
        let p = w.proxy.as_mut().expect("capture");
        p.frame(w.now, frame).expect("write");
        w.now += 1_000;
        let adv = payload.len() as u32 + f.syn as u32 + f.fin as u32;
        if c2s {
            c.cseq = c.cseq.wrapping_add(adv);
        } else {
            c.sseq = c.sseq.wrapping_add(adv);
        }
    }
    let p = w.proxy.as_mut().expect("capture");
    p.flush().expect("flush");
    eprintln!(
        "{path}: {} packets, {} MB, {started} connections",
        p.packets,
        p.bytes >> 20
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("pair") if args.len() == 4 => pair(&args[2], args[3].parse().expect("megabytes")),
        Some("short") if args.len() == 4 => short(&args[2], args[3].parse().expect("connections")),
        Some("syns") if args.len() == 4 || args.len() == 5 => syns(
            &args[2],
            args[3].parse().expect("count"),
            args.get(4).map_or(1, |a| a.parse().expect("addresses")),
        ),
        Some("churn") if args.len() == 4 => churn(&args[2], args[3].parse().expect("packets")),
        _ => {
            eprintln!(
                "usage: gencap pair OUT_DIR MEGABYTES | gencap short OUT_FILE CONNECTIONS | gencap syns OUT_FILE \
                 COUNT [ADDRS] | gencap churn OUT_FILE PACKETS"
            );
            std::process::exit(2);
        }
    }
}

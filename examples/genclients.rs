//! Writes a large synthetic proxy capture as `tcpdump -i any` on the proxy host takes it (Linux
//! cooked headers, both sides of the proxy), for measuring the client-request matching on big
//! inputs:
//!
//! ```text
//! genclients OUT_DIR REQUESTS [KEEPALIVE_REQUESTS]
//!   OUT_DIR/any.pcap       clients (10.0.<n>.<m>, 128 keep-alive connections open at a time, 1 to
//!                          40 requests each) → the proxy (10.0.0.1:80) → pooled backend connections
//!                          (10.0.1.2 → 10.0.2.2:8080, 32 of them, each retired after
//!                          KEEPALIVE_REQUESTS exchanges, default 1000, as nginx's
//!                          keepalive_requests), X-Forwarded-For and X-Request-ID on the backend
//!                          side; about one request in 500 fails (the backend closes without an
//!                          answer, the proxy answers 502)
//!   OUT_DIR/backend-side.pcap   the same capture without the client side (the proxy→backend
//!                          packets only), to compare
//!   OUT_DIR/truth.tsv      per request: the client, the position of the request on its client
//!                          connection, and the X-Request-ID the proxy sent to the backend for it
//! ```
//! Deterministic (fixed seed). Requests are handled one at a time (no overlap), which is enough
//! for memory: what waits is what the open connections carried.

use std::fs::File;
use std::io::{BufWriter, Write};

mod common;

use common::{Pcap, Rng, create};

use etherparse::PacketBuilder;

const PROXY_FRONT: [u8; 4] = [10, 0, 0, 1];
const PROXY_BACK: [u8; 4] = [10, 0, 1, 2];
const BACKEND: [u8; 4] = [10, 0, 2, 2];
const MSS: usize = 1448;

#[derive(Clone, Copy, PartialEq)]
enum F {
    Syn,
    SynAck,
    Ack,
    Psh,
    Fin,
}

/// One TCP connection through the proxy host: `outgoing` says the host opened it.
struct Tcp {
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    outgoing: bool,
    cseq: u32,
    sseq: u32,
}

struct Writer {
    any: Pcap,
    back: Pcap,
    now: i64,
    buf: Vec<u8>,
}

impl Writer {
    /// One packet of `t`, from its client (`c2s`) or its server, with one flag set.
    fn send(&mut self, t: &mut Tcp, c2s: bool, f: F, payload: &[u8]) {
        let (src, sport, dst, dport) = if c2s {
            (t.src, t.sport, t.dst, t.dport)
        } else {
            (t.dst, t.dport, t.src, t.sport)
        };
        let (seq, ack) = if c2s { (t.cseq, t.sseq) } else { (t.sseq, t.cseq) };
        let mut b = PacketBuilder::ipv4(src, dst, 64).tcp(sport, dport, seq, 64240);
        if f != F::Syn {
            b = b.ack(ack);
        }
        match f {
            F::Syn | F::SynAck => b = b.syn(),
            F::Fin => b = b.fin(),
            F::Psh => b = b.psh(),
            F::Ack => {}
        }
        self.buf.clear();
        // Linux cooked header: packet type (0 to this host, 4 sent by it), ARPHRD_ETHER, an
        // address of 6 bytes, IPv4.
        let host_sent = c2s == t.outgoing;
        self.buf
            .extend_from_slice(&(if host_sent { 4u16 } else { 0 }).to_be_bytes());
        self.buf.extend_from_slice(&1u16.to_be_bytes());
        self.buf.extend_from_slice(&6u16.to_be_bytes());
        self.buf
            .extend_from_slice(&[2, 0, 0, 0, 0, if host_sent { 1 } else { 2 }, 0, 0]);
        self.buf.extend_from_slice(&0x0800u16.to_be_bytes());
        b.write(&mut self.buf, payload).expect("frame");
        self.any.frame(self.now, &self.buf).expect("write");
        if t.outgoing {
            self.back.frame(self.now, &self.buf).expect("write");
        }
        let len = payload.len() as u32 + u32::from(matches!(f, F::Syn | F::SynAck | F::Fin));
        if c2s {
            t.cseq = t.cseq.wrapping_add(len);
        } else {
            t.sseq = t.sseq.wrapping_add(len);
        }
        self.now += 7_000;
    }

    fn open(&mut self, t: &mut Tcp) {
        self.send(t, true, F::Syn, &[]);
        self.send(t, false, F::SynAck, &[]);
        self.send(t, true, F::Ack, &[]);
    }

    fn message(&mut self, t: &mut Tcp, c2s: bool, msg: &[u8]) {
        for chunk in msg.chunks(MSS) {
            self.send(t, c2s, F::Psh, chunk);
        }
        self.send(t, !c2s, F::Ack, &[]);
    }

    fn close(&mut self, t: &mut Tcp, c2s: bool) {
        self.send(t, c2s, F::Fin, &[]);
        self.send(t, !c2s, F::Fin, &[]);
        self.send(t, c2s, F::Ack, &[]);
    }
}

fn response(status: &str, body: usize) -> Vec<u8> {
    let mut v = format!("HTTP/1.1 {status}\r\nServer: gen\r\nContent-Length: {body}\r\n\r\n").into_bytes();
    v.resize(v.len() + body, b'r');
    v
}

struct Client {
    tcp: Tcp,
    left: u32,
    done: u32,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(requests)) = (args.get(1), args.get(2).and_then(|n| n.parse::<u64>().ok())) else {
        eprintln!("usage: genclients OUT_DIR REQUESTS [KEEPALIVE_REQUESTS]");
        std::process::exit(2);
    };
    let keepalive: u32 = args.get(3).and_then(|n| n.parse().ok()).unwrap_or(1000);
    std::fs::create_dir_all(dir).expect("out dir");
    let mut w = Writer {
        any: create(&format!("{dir}/any.pcap"), 113),
        back: create(&format!("{dir}/backend-side.pcap"), 113),
        now: 1_767_225_600_000_000_000,
        buf: Vec::with_capacity(2048),
    };
    let mut truth = BufWriter::new(File::create(format!("{dir}/truth.tsv")).expect("truth"));
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let mut next_port: u16 = 20_000;
    let mut port = || {
        next_port = if next_port >= 60_000 {
            20_000
        } else {
            next_port + 1
        };
        next_port
    };
    let mut clients: Vec<Client> = Vec::new();
    let mut pool: Vec<(Tcp, u32)> = Vec::new();
    let mut failed = 0u64;
    for n in 0..requests {
        while clients.len() < 128 {
            let addr = [10, 0, 3 + rng.below(4) as u8, 2 + rng.below(200) as u8];
            let mut tcp = Tcp {
                src: addr,
                sport: port(),
                dst: PROXY_FRONT,
                dport: 80,
                outgoing: false,
                cseq: rng.next() as u32,
                sseq: rng.next() as u32,
            };
            w.open(&mut tcp);
            clients.push(Client {
                tcp,
                left: 1 + rng.below(40) as u32,
                done: 0,
            });
        }
        let ci = rng.below(clients.len() as u64) as usize;
        let target = format!("/api/items/{}?page={}", rng.below(50), rng.below(5));
        let post = rng.below(10) == 0;
        let body = if post { 200 + rng.below(3000) as usize } else { 0 };
        let mut creq = if post {
            format!("POST {target} HTTP/1.1\r\nHost: shop.example\r\nContent-Length: {body}\r\n\r\n")
        } else {
            format!("GET {target} HTTP/1.1\r\nHost: shop.example\r\nAccept: */*\r\n\r\n")
        }
        .into_bytes();
        creq.resize(creq.len() + body, b'p');
        let addr = clients[ci].tcp.src;
        clients[ci].done += 1;
        let c = &clients[ci].tcp;
        writeln!(
            truth,
            "{}.{}.{}.{}:{}\t{}\t{n:032x}",
            addr[0], addr[1], addr[2], addr[3], c.sport, clients[ci].done
        )
        .expect("truth");
        w.message(&mut clients[ci].tcp, true, &creq);
        // The proxy forwards it on a pooled connection (a new one when none is free).
        if pool.len() < 32 {
            let mut tcp = Tcp {
                src: PROXY_BACK,
                sport: port(),
                dst: BACKEND,
                dport: 8080,
                outgoing: true,
                cseq: rng.next() as u32,
                sseq: rng.next() as u32,
            };
            w.open(&mut tcp);
            pool.push((tcp, 0));
        }
        let bi = rng.below(pool.len() as u64) as usize;
        let xff = format!("{}.{}.{}.{}", addr[0], addr[1], addr[2], addr[3]);
        let mut breq = format!(
            "{} {target} HTTP/1.1\r\nHost: backend\r\nX-Forwarded-For: {xff}\r\nX-Request-ID: {n:032x}\r\n{}\r\n",
            if post { "POST" } else { "GET" },
            if post { format!("Content-Length: {body}\r\n") } else { String::new() }
        )
        .into_bytes();
        breq.resize(breq.len() + body, b'p');
        w.message(&mut pool[bi].0, true, &breq);
        let fail = rng.below(500) == 0;
        if fail {
            failed += 1;
            let (mut tcp, _) = pool.swap_remove(bi);
            w.close(&mut tcp, false);
            w.message(&mut clients[ci].tcp, false, &response("502 Bad Gateway", 150));
        } else {
            let size = 200 + rng.below(6000) as usize;
            w.message(&mut pool[bi].0, false, &response("200 OK", size));
            w.message(&mut clients[ci].tcp, false, &response("200 OK", size));
            pool[bi].1 += 1;
            if pool[bi].1 >= keepalive {
                let (mut tcp, _) = pool.swap_remove(bi);
                w.close(&mut tcp, true);
            }
        }
        clients[ci].left -= 1;
        if clients[ci].left == 0 {
            let mut c = clients.swap_remove(ci);
            w.close(&mut c.tcp, true);
        }
    }
    for mut c in clients {
        w.close(&mut c.tcp, true);
    }
    for (mut tcp, _) in pool {
        w.close(&mut tcp, true);
    }
    w.any.flush().expect("flush");
    w.back.flush().expect("flush");
    truth.flush().expect("flush");
    eprintln!("{requests} requests, {failed} failed (502 after an empty reply)");
}

//! A small kit that writes synthetic captures for tests: pcap files (nanosecond, Ethernet or raw
//! IP) with frames built by etherparse's `PacketBuilder` (correct lengths and checksums), and
//! [`Wire`]: one TCP connection between a proxy and a backend as a capture on each host sees it,
//! with a one-way delay, a clock offset between the two hosts, and per-segment fates (arrives,
//! lost on the way, or arrives but missed by the receiver's capture). Also the lab scenarios of
//! `captures/`, and a temporary directory per test.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use bothends::capture::{CaptureSet, Input, PcapWriter};
use bothends::pipeline::{self, Analysis, Side, SideOptions, SideResult};
use etherparse::PacketBuilder;

/// A pcap file being written in memory, through the library's writer.
pub struct Pcap(PcapWriter<Vec<u8>>);

impl Pcap {
    /// LINKTYPE 1 (Ethernet) or 101 (raw IP).
    pub fn new(link: u16) -> Pcap {
        Pcap(PcapWriter::new(Vec::new(), link).expect("writing to memory"))
    }

    /// A record: the frame, cut to `snaplen` bytes if given.
    pub fn record(&mut self, ts_ns: i64, frame: &[u8], snaplen: Option<usize>) {
        let cap = snaplen.map_or(frame.len(), |s| s.min(frame.len()));
        let orig_len = frame.len() as u32;
        self.0
            .record(ts_ns, &frame[..cap], orig_len)
            .expect("writing to memory");
    }

    /// A record of a packet already cut: `data` captured of `orig_len` bytes on the wire, cut
    /// further to `snaplen`.
    pub fn record_cut(&mut self, ts_ns: i64, data: &[u8], orig_len: u32, snaplen: usize) {
        let cap = snaplen.min(data.len());
        self.0
            .record(ts_ns, &data[..cap], orig_len)
            .expect("writing to memory");
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.0.get_ref().clone()
    }
}

/// A capture as `tcpdump -s snaplen` would have written it: every packet of `set` cut to
/// `snaplen` bytes (as `editcap -s`), same times, same frame numbers. One link type only.
pub fn cut_to_snaplen(mut set: CaptureSet, snaplen: usize) -> Vec<u8> {
    let mut out: Option<Pcap> = None;
    while let Some(p) = set.next() {
        let pcap = out.get_or_insert_with(|| Pcap::new(p.link.0));
        pcap.record_cut(p.ts_ns, p.data, p.orig_len, snaplen);
    }
    out.map_or_else(|| Pcap::new(1).bytes(), |p| p.bytes())
}

/// TCP flags for the kit.
#[derive(Clone, Copy, Debug, Default)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
}

pub const SYN: Flags = Flags {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
    psh: false,
};
pub const SYNACK: Flags = Flags {
    syn: true,
    ack: true,
    fin: false,
    rst: false,
    psh: false,
};
pub const ACK: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
    psh: false,
};
pub const PSH: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
    psh: true,
};
pub const FIN: Flags = Flags {
    syn: false,
    ack: true,
    fin: true,
    rst: false,
    psh: false,
};
pub const RST: Flags = Flags {
    syn: false,
    ack: false,
    fin: false,
    rst: true,
    psh: false,
};
pub const RSTACK: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: true,
    psh: false,
};

/// What happens to a segment between the two capture points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Seen leaving at the sender and arriving at the receiver.
    Arrives,
    /// Seen leaving at the sender, never at the receiver, and the receiver never gets it.
    Lost,
    /// The receiver gets it (and acknowledges it), but the receiver's capture misses it.
    NotCapturedAtReceiver,
    /// The receiver gets it, but the sender's capture misses it.
    NotCapturedAtSender,
}

/// Both ends of one connection: the proxy (client) and the backend (server).
pub struct Wire {
    /// Packets as each capture saw them: (timestamp on that host's clock, frame).
    proxy: Vec<(i64, Vec<u8>)>,
    backend: Vec<(i64, Vec<u8>)>,
    /// Proxy-clock time now.
    pub now: i64,
    pub owd: i64,
    /// Backend clock minus proxy clock.
    pub clock: i64,
    /// Addresses as the proxy sees the connection, and as the backend sees it (NAT).
    pub p_client: ([u8; 4], u16),
    pub p_server: ([u8; 4], u16),
    pub b_client: ([u8; 4], u16),
    pub b_server: ([u8; 4], u16),
    /// Next sequence number each way, and how far each end has received in order.
    pub cseq: u32,
    pub sseq: u32,
    pub c_rcv: u32,
    pub s_rcv: u32,
    /// The receive windows each end advertises.
    pub c_win: u16,
    pub s_win: u16,
    /// TTLs with which each end's packets arrive at the other (one router between them).
    pub ttl_at_proxy: u8,
    pub ttl_at_backend: u8,
    pub snaplen: Option<usize>,
    pub ip_id: u16,
}

impl Wire {
    /// A connection from 10.0.1.2:40000 to 10.0.2.2:8080, one-way delay 5 ms, clocks equal.
    pub fn new(cisn: u32, sisn: u32) -> Wire {
        Wire {
            proxy: Vec::new(),
            backend: Vec::new(),
            now: 1_700_000_000_000_000_000,
            owd: 5_000_000,
            clock: 0,
            p_client: ([10, 0, 1, 2], 40000),
            p_server: ([10, 0, 2, 2], 8080),
            b_client: ([10, 0, 1, 2], 40000),
            b_server: ([10, 0, 2, 2], 8080),
            cseq: cisn,
            sseq: sisn,
            c_rcv: 0,
            s_rcv: 0,
            c_win: 64240,
            s_win: 64240,
            ttl_at_proxy: 63,
            ttl_at_backend: 63,
            snaplen: None,
            ip_id: 1,
        }
    }

    pub fn wait_ms(&mut self, ms: f64) -> &mut Wire {
        self.now += (ms * 1e6) as i64;
        self
    }

    #[allow(clippy::too_many_arguments)]
    fn frame(
        &mut self,
        src: ([u8; 4], u16),
        dst: ([u8; 4], u16),
        ttl: u8,
        seq: u32,
        ack: Option<u32>,
        win: u16,
        f: Flags,
        payload: &[u8],
    ) -> Vec<u8> {
        self.ip_id = self.ip_id.wrapping_add(1);
        let mut tcp = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src.0, dst.0, ttl)
            .tcp(src.1, dst.1, seq, win);
        if let Some(a) = ack {
            tcp = tcp.ack(a);
        }
        if f.syn {
            tcp = tcp.syn();
        }
        if f.fin {
            tcp = tcp.fin();
        }
        if f.rst {
            tcp = tcp.rst();
        }
        if f.psh {
            tcp = tcp.psh();
        }
        let mut v = Vec::new();
        tcp.write(&mut v, payload).expect("frame builds");
        v
    }

    /// The proxy sends a segment at sequence `seq` (the next one if None).
    pub fn c2s_at(&mut self, seq: Option<u32>, f: Flags, payload: &[u8], fate: Fate) -> &mut Wire {
        let seq = seq.unwrap_or(self.cseq);
        let ack = f.ack.then_some(self.c_rcv);
        let at_proxy = self.frame(self.p_client, self.p_server, 64, seq, ack, self.c_win, f, payload);
        let at_backend = self.frame(
            self.b_client,
            self.b_server,
            self.ttl_at_backend,
            seq,
            ack,
            self.c_win,
            f,
            payload,
        );
        let len = payload.len() as u32 + f.syn as u32 + f.fin as u32;
        if seq == self.cseq {
            self.cseq = self.cseq.wrapping_add(len);
        }
        if fate != Fate::NotCapturedAtSender {
            self.proxy.push((self.now, at_proxy));
        }
        if matches!(
            fate,
            Fate::Arrives | Fate::NotCapturedAtSender | Fate::NotCapturedAtReceiver
        ) {
            if fate != Fate::NotCapturedAtReceiver {
                self.backend.push((self.now + self.owd + self.clock, at_backend));
            }
            if seq == self.s_rcv || f.syn {
                self.s_rcv = seq.wrapping_add(len);
            }
        }
        self
    }

    pub fn c2s(&mut self, f: Flags, payload: &[u8]) -> &mut Wire {
        self.c2s_at(None, f, payload, Fate::Arrives)
    }

    /// The backend sends a segment (at backend-clock time now + clock).
    pub fn s2c_at(&mut self, seq: Option<u32>, f: Flags, payload: &[u8], fate: Fate) -> &mut Wire {
        let seq = seq.unwrap_or(self.sseq);
        let ack = f.ack.then_some(self.s_rcv);
        let at_backend = self.frame(self.b_server, self.b_client, 64, seq, ack, self.s_win, f, payload);
        let at_proxy = self.frame(
            self.p_server,
            self.p_client,
            self.ttl_at_proxy,
            seq,
            ack,
            self.s_win,
            f,
            payload,
        );
        let len = payload.len() as u32 + f.syn as u32 + f.fin as u32;
        if seq == self.sseq {
            self.sseq = self.sseq.wrapping_add(len);
        }
        if fate != Fate::NotCapturedAtSender {
            self.backend.push((self.now + self.clock, at_backend));
        }
        if matches!(
            fate,
            Fate::Arrives | Fate::NotCapturedAtSender | Fate::NotCapturedAtReceiver
        ) {
            if fate != Fate::NotCapturedAtReceiver {
                self.proxy.push((self.now + self.owd, at_proxy));
            }
            if seq == self.c_rcv || f.syn {
                self.c_rcv = seq.wrapping_add(len);
            }
        }
        self
    }

    pub fn s2c(&mut self, f: Flags, payload: &[u8]) -> &mut Wire {
        self.s2c_at(None, f, payload, Fate::Arrives)
    }

    /// A RST that a device between the two hosts sends to the proxy, in the backend's name.
    pub fn forged_rst_to_proxy(&mut self, ttl: u8) -> &mut Wire {
        let f = self.frame(self.p_server, self.p_client, ttl, self.sseq, None, 0, RST, b"");
        self.proxy.push((self.now + self.owd / 2, f));
        self
    }

    /// SYN, SYN-ACK, ACK, one round trip.
    pub fn handshake(&mut self) -> &mut Wire {
        self.c2s(SYN, b"");
        self.wait_ms(self.owd as f64 / 1e6);
        self.s2c(SYNACK, b"");
        self.wait_ms(self.owd as f64 / 1e6);
        self.c2s(ACK, b"")
    }

    /// The proxy sends `data` in segments of at most 1448 bytes; the backend acknowledges it all
    /// after one one-way delay.
    pub fn send_request(&mut self, data: &[u8]) -> &mut Wire {
        for chunk in data.chunks(1448) {
            self.c2s(PSH, chunk);
        }
        self.wait_ms(self.owd as f64 / 1e6);
        self.s2c(ACK, b"");
        self.wait_ms(self.owd as f64 / 1e6)
    }

    /// The backend sends `data`; the proxy acknowledges it.
    pub fn send_response(&mut self, data: &[u8]) -> &mut Wire {
        for chunk in data.chunks(1448) {
            self.s2c(PSH, chunk);
        }
        self.wait_ms(self.owd as f64 / 1e6);
        self.c2s(ACK, b"");
        self.wait_ms(self.owd as f64 / 1e6)
    }

    /// FIN from the proxy, FIN from the backend, last ACK.
    pub fn close(&mut self) -> &mut Wire {
        self.c2s(FIN, b"");
        self.wait_ms(self.owd as f64 / 1e6);
        self.s2c(FIN, b"");
        self.wait_ms(self.owd as f64 / 1e6);
        self.c2s(ACK, b"")
    }

    fn pcap(list: &[(i64, Vec<u8>)], snaplen: Option<usize>) -> Vec<u8> {
        let mut v: Vec<&(i64, Vec<u8>)> = list.iter().collect();
        v.sort_by_key(|(t, _)| *t);
        let mut p = Pcap::new(1);
        for (t, f) in v {
            p.record(*t, f, snaplen);
        }
        p.bytes()
    }

    /// The captures of several connections together: (proxy, backend).
    pub fn merge(wires: &[Wire]) -> (Vec<u8>, Vec<u8>) {
        let p: Vec<(i64, Vec<u8>)> = wires.iter().flat_map(|w| w.proxy.iter().cloned()).collect();
        let b: Vec<(i64, Vec<u8>)> = wires.iter().flat_map(|w| w.backend.iter().cloned()).collect();
        (Self::pcap(&p, None), Self::pcap(&b, None))
    }

    pub fn proxy_pcap(&self) -> Vec<u8> {
        Self::pcap(&self.proxy, self.snaplen)
    }

    pub fn backend_pcap(&self) -> Vec<u8> {
        Self::pcap(&self.backend, self.snaplen)
    }
}

/// Reads a capture held in memory as one side.
pub fn side(side: Side, bytes: Vec<u8>) -> SideResult {
    let set = CaptureSet::from_bytes(side.name(), bytes).expect("synthetic capture opens");
    pipeline::read_side(side, set, SideOptions::default())
}

/// Analyses the wire with both captures (or the proxy's only).
pub fn analyze(w: &Wire, both: bool) -> Analysis {
    let mut sides = vec![side(Side::Proxy, w.proxy_pcap())];
    if both {
        sides.push(side(Side::Backend, w.backend_pcap()));
    }
    pipeline::analyze(sides, &[])
}

/// The single connection's verdict and blame labels, and the explanation.
pub fn verdict(a: &Analysis) -> (String, String, String) {
    assert_eq!(
        a.diagnoses.len(),
        1,
        "one connection expected, got {}",
        a.diagnoses.len()
    );
    let d = a.diagnoses[0].as_ref().expect("diagnosed");
    (
        d.verdict.label().to_string(),
        d.blame.label().to_string(),
        d.explanation.clone(),
    )
}

/// An HTTP request with a body of `n` bytes and a Content-Length header.
pub fn post(target: &str, n: usize) -> Vec<u8> {
    let mut v =
        format!("POST {target} HTTP/1.1\r\nHost: backend\r\nContent-Length: {n}\r\n\r\n").into_bytes();
    v.extend(std::iter::repeat_n(b'x', n));
    v
}

pub fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: backend\r\n\r\n").into_bytes()
}

/// A 200 response with a body of `n` bytes.
pub fn ok(n: usize) -> Vec<u8> {
    let mut v = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\n\r\n").into_bytes();
    v.extend(std::iter::repeat_n(b'y', n));
    v
}

/// The lab scenarios: the directories of `captures/` with an `expected.json`, sorted.
pub fn lab_scenarios() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("captures"))
        .expect("captures/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("expected.json").is_file())
        .collect();
    v.sort();
    v
}

/// A lab scenario's captures as its `expected.json` lists them: the proxy's, and the backend's
/// when `backend` is asked for and the scenario has one.
pub fn lab_captures(dir: &Path, backend: bool) -> Vec<(Side, CaptureSet)> {
    #[derive(serde::Deserialize)]
    struct Files {
        proxy_capture: Vec<String>,
        backend_capture: Vec<String>,
    }
    let text = std::fs::read_to_string(dir.join("expected.json")).expect("expected.json reads");
    let e: Files = serde_json::from_str(&text).expect("expected.json parses");
    let open = |files: &[String]| {
        let inputs: Vec<Input> = files.iter().map(|f| Input::from(dir.join(f).as_path())).collect();
        CaptureSet::open(&inputs).expect("lab capture opens")
    };
    let mut sides = vec![(Side::Proxy, open(&e.proxy_capture))];
    if backend && !e.backend_capture.is_empty() {
        sides.push((Side::Backend, open(&e.backend_capture)));
    }
    sides
}

/// A fresh directory of its own (tests run in parallel), removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "bothends-{what}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    /// The names of the files in it, sorted.
    pub fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

//! The code of the fuzz targets, one function per target. Shared by the cargo-fuzz binaries in
//! `fuzz_targets/` (libFuzzer feeds them) and by `tests/fuzz_seeds.rs` (plain `cargo test` runs them
//! over the seed corpus and the committed crash inputs, so CI exercises the same paths on stable).
//!
//! Every function takes arbitrary bytes and must return without panicking, in bounded time and
//! memory. The few assertions check the guarantees the stages document.
#![allow(dead_code)]

use bothends::capture::{CaptureSet, FrameRef, LinkType, MAX_RECORD_BYTES, Packet};
use bothends::http::{HttpHandler, HttpLimits};
use bothends::pipeline::{self, Analysis, Mode, Side, SideOptions};
use bothends::report::{self, ReportOptions, SideInfo, stream, text::Style};
use bothends::tcp::{Dir, End, GapKind, Limits, PacketRef, StreamEvent, StreamHandler};

/// The link types `decode` reads, picked by the first byte of a `decode` input.
pub const LINKS: [u16; 11] = [0, 1, 12, 14, 101, 108, 113, 228, 229, 239, 276];

/// Target `capture`: the bytes are a capture file (pcap, pcapng, gzip or not); read every packet.
pub fn capture(data: &[u8]) {
    let mut set = match CaptureSet::from_bytes("fuzz.pcap", data.to_vec()) {
        Ok(s) => s,
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("fuzz.pcap: "), "{msg}");
            assert!(!msg.contains('\n'), "{msg}");
            return;
        }
    };
    let mut n = 0u64;
    while let Some(p) = set.next() {
        n += 1;
        assert!(p.data.len() <= MAX_RECORD_BYTES);
        assert!(p.orig_len as usize >= p.data.len());
        assert_eq!(p.frame.file, 0);
    }
    let s = set.summary();
    assert_eq!(s.packets, n);
    for w in &s.warnings {
        assert!(!w.text.contains('\n'), "{w:?}");
    }
}

/// Target `decode`: first byte picks the link type (among [`LINKS`]), second byte how many bytes
/// snaplen cut (times 16), the rest is the frame.
pub fn decode(data: &[u8]) {
    let [sel, cut, frame @ ..] = data else { return };
    let link = LinkType(LINKS[*sel as usize % LINKS.len()]);
    let p = Packet {
        frame: FrameRef { file: 0, frame: 1 },
        ts_ns: 0,
        link,
        data: frame,
        orig_len: frame.len() as u32 + *cut as u32 * 16,
    };
    if let Ok(seg) = bothends::decode::decode(&p) {
        assert!(seg.payload.len() as u64 <= seg.payload_len as u64, "{seg:?}");
        assert!(seg.options.sack_len as usize <= 4);
        let _ = seg.options.sack_blocks();
        let _ = format!("{} {} {}", seg.src, seg.dst, seg.flags);
    }
}

/// Small limits, so that fuzzing reaches the caps with small inputs.
pub fn small_http_limits() -> HttpLimits {
    HttpLimits {
        max_header_bytes: 200,
        max_headers: 4,
        max_value_bytes: 16,
        max_exchanges: 3,
    }
}

/// Target `http`: a configuration byte, then a list of events fed to the HTTP handler, the way
/// `tcp` would feed it (offsets contiguous per direction), then `finish`.
///
/// Configuration byte: bit 0 the handshake was seen (`from_start`); bit 1 small limits; bits 2-3
/// and 4-5 how each direction ended (0 FIN, 1 RST, else open).
/// Each event starts with a control byte `c`: bit 0 the direction (server to client when set).
/// - bit 1 clear: data. Length `(c >> 2) + 1`, or when `c >> 2 == 63`, the next two bytes
///   (little-endian) + 1; the bytes follow (fewer at the end of the input).
/// - bit 1 set: a gap. Kind `(c >> 2) & 3`; its length from the next byte `b`: `b + 1` below 128,
///   else `1 << (b - 128) % 48`.
pub fn http(data: &[u8]) {
    let Some((&cfg, mut rest)) = data.split_first() else {
        return;
    };
    let limits = if cfg & 2 != 0 {
        small_http_limits()
    } else {
        HttpLimits::default()
    };
    let mut h = HttpHandler::new(limits, cfg & 1 != 0);
    let mut offset = [0i64; 2];
    let mut frame = 0u32;
    while let Some((&c, r)) = rest.split_first() {
        rest = r;
        let dir = if c & 1 == 0 {
            Dir::ClientToServer
        } else {
            Dir::ServerToClient
        };
        frame += 1;
        let at = PacketRef {
            frame: FrameRef { file: 0, frame },
            ts_ns: frame as i64 * 1_000_000,
        };
        let off = &mut offset[dir.idx()];
        if c & 2 == 0 {
            let mut n = (c >> 2) as usize + 1;
            if n == 64 {
                let Some((ab, r)) = rest.split_first_chunk::<2>() else {
                    break;
                };
                rest = r;
                n = u16::from_le_bytes(*ab) as usize + 1;
            }
            let n = n.min(rest.len());
            if n == 0 {
                break;
            }
            let (bytes, r) = rest.split_at(n);
            rest = r;
            h.on_stream(
                dir,
                StreamEvent::Data {
                    offset: *off,
                    bytes,
                    at,
                },
            );
            *off += n as i64;
        } else {
            let kind = match (c >> 2) & 3 {
                0 => GapKind::NotCaptured,
                1 => GapKind::Snaplen,
                2 => GapKind::Missing,
                _ => GapKind::Abandoned,
            };
            let Some((&b, r)) = rest.split_first() else { break };
            rest = r;
            let len = if b < 128 {
                b as u64 + 1
            } else {
                1u64 << ((b - 128) % 48)
            };
            h.on_stream(
                dir,
                StreamEvent::Gap {
                    offset: *off,
                    len,
                    kind,
                    at,
                },
            );
            *off += len as i64;
        }
    }
    let end = |bits: u8| match bits & 3 {
        0 => End::Fin,
        1 => End::Rst,
        _ => End::Open,
    };
    let s = h.finish([end(cfg >> 2), end(cfg >> 4)]);
    assert!(s.exchanges.len() <= limits.max_exchanges, "{}", s.exchanges.len());
    for e in &s.exchanges {
        for m in [e.request.as_ref(), e.response.as_ref()].into_iter().flatten() {
            assert!(m.headers.len() <= limits.max_headers);
        }
    }
}

/// Splits a `pipeline` input: a configuration byte, a 4-byte little-endian length, the proxy
/// capture (that many bytes, or what is left), the backend capture (the rest; none when empty).
pub fn split_pipeline(data: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let [cfg, a, b, c, d, rest @ ..] = data else {
        return None;
    };
    let n = (u32::from_le_bytes([*a, *b, *c, *d]) as usize).min(rest.len());
    let (proxy, backend) = rest.split_at(n);
    Some((*cfg, proxy, backend))
}

/// Builds a `pipeline` input from two captures (seeds).
pub fn join_pipeline(cfg: u8, proxy: &[u8], backend: &[u8]) -> Vec<u8> {
    let mut v = vec![cfg];
    v.extend_from_slice(&(proxy.len() as u32).to_le_bytes());
    v.extend_from_slice(proxy);
    v.extend_from_slice(backend);
    v
}

/// Target `pipeline`: two captures (see [`split_pipeline`]) → `read_side` ×2 → `analyze` (or
/// `flows` for one capture when bit 1 of the configuration is set) → every report format (text
/// analysis and flows, JSON, NDJSON, Markdown, HTML with ladders).
/// Configuration byte: bit 0 small limits; bit 1 flows; bit 2 show secrets; bit 3 color; bit 4
/// the command's path instead of `read_side` ×2 → `analyze`: the streaming engine
/// (`pipeline::run`: readers in threads, incremental pairing) writing as it goes through
/// `report::stream::Writer`, in the format bits 5-7 choose.
pub fn pipeline(data: &[u8]) {
    let Some((cfg, proxy, backend)) = split_pipeline(data) else {
        return;
    };
    let opts = if cfg & 1 != 0 {
        SideOptions {
            tcp: Limits {
                max_open: 4,
                // About three connections without payload: the memory cap evicts too.
                max_open_bytes: 6 * 1024,
                max_connections: 12,
                max_pending_bytes: 3000,
                linger_ns: 1_000_000_000,
                closed_linger_ns: 100_000_000,
                idle_ns: 10_000_000_000,
                packet_log: true,
            },
            http: small_http_limits(),
        }
    } else {
        SideOptions::default()
    };
    let Ok(p) = CaptureSet::from_bytes("proxy.pcap", proxy.to_vec()) else {
        return;
    };
    let b = (!backend.is_empty())
        .then(|| CaptureSet::from_bytes("backend.pcap", backend.to_vec()).ok())
        .flatten();
    if cfg & 16 != 0 {
        // The command's path: the streaming engine (readers in threads, incremental pairing)
        // writing one report format as it goes (`report::stream::Writer`), chosen by bits 5-7.
        let mut sets = vec![(Side::Proxy, p)];
        let flows = b.is_none() && cfg & 2 != 0;
        if let Some(b) = b {
            sets.push((Side::Backend, b));
        }
        if flows {
            sets[0].0 = Side::Single;
        }
        let format = match (flows, cfg >> 5) {
            (true, 0..=3) => stream::Format::Flows,
            (true, 4 | 5) => stream::Format::Json,
            (true, _) => stream::Format::Ndjson,
            (false, 0) => stream::Format::Text,
            (false, 1) => stream::Format::Json,
            (false, 2) => stream::Format::Ndjson,
            (false, 3 | 4) => stream::Format::Markdown,
            (false, _) => stream::Format::Html,
        };
        let mode = if flows {
            Mode::Flows
        } else {
            Mode::Analyze { backends: Vec::new() }
        };
        let infos = sets
            .iter()
            .map(|(side, set)| SideInfo {
                side: *side,
                files: set.summary().files,
            })
            .collect();
        let ropts = ReportOptions {
            show_secrets: cfg & 4 != 0,
            redact_headers: vec!["x-secret".into()],
            ladders: format == stream::Format::Html,
        };
        let mut out = Vec::new();
        let mut writer = stream::Writer::new(format, infos, &ropts, Style { color: cfg & 8 != 0 }, &mut out);
        let end = pipeline::run(sets, opts, mode, &mut writer);
        writer.finish(end).expect("the report is written");
        return;
    }
    let mut sides = vec![pipeline::read_side(Side::Proxy, p, opts)];
    if let Some(b) = b {
        sides.push(pipeline::read_side(Side::Backend, b, opts));
    }
    let analysis = if cfg & 2 != 0 && sides.len() == 1 {
        let mut side = sides.pop().unwrap();
        side.side = Side::Single;
        pipeline::flows(side)
    } else {
        pipeline::analyze(sides, &[])
    };
    write_every_format(&analysis, cfg);
}

/// `report::build` (with ladders), then every writer into memory: none may fail.
fn write_every_format(analysis: &Analysis, cfg: u8) {
    let ropts = ReportOptions {
        show_secrets: cfg & 4 != 0,
        redact_headers: vec!["x-secret".into()],
        ladders: true,
    };
    let report = report::build(analysis, &ropts);
    let style = Style { color: cfg & 8 != 0 };
    let mut out = Vec::new();
    report::text::write_analysis(&report, style, &mut out).expect("text analysis");
    report::text::write_flows(&report, style, &mut out).expect("text flows");
    out.clear();
    report::json::write_json(&report, &mut out).expect("json");
    out.clear();
    report::json::write_ndjson(&report, &mut out).expect("ndjson");
    out.clear();
    report::markdown::write_markdown(&report, &mut out).expect("markdown");
    out.clear();
    report::html::write_html(&report, &mut out).expect("html");
}

/// Checks the contract between `tcp` and its stream handler — per direction, events come in
/// order with contiguous offsets (each byte delivered or declared a gap exactly once) — and
/// passes them on to the HTTP handler.
struct Contiguous {
    next: [Option<i64>; 2],
    http: HttpHandler,
}

impl StreamHandler for Contiguous {
    type Output = bothends::http::HttpSummary;
    fn on_stream(&mut self, dir: Dir, ev: StreamEvent<'_>) {
        let (offset, len) = match ev {
            StreamEvent::Data { offset, bytes, .. } => (offset, bytes.len() as i64),
            StreamEvent::Gap { offset, len, .. } => (offset, i64::try_from(len).expect("gap length")),
        };
        let next = &mut self.next[dir.idx()];
        if let Some(n) = *next {
            assert_eq!(offset, n, "{dir:?}: an event at {offset}, expected {n}");
        }
        assert!(len >= 0);
        *next = Some(offset + len);
        self.http.on_stream(dir, ev);
    }
    fn finish(self, ends: [End; 2]) -> Self::Output {
        self.http.finish(ends)
    }
}

/// Target `tcp`: TCP segments of up to four connections between two hosts, built directly (no
/// capture, no IP), fed to the connection table with an HTTP handler behind a contract check.
///
/// A configuration byte (bit 0: small limits), then per segment 8 bytes and its payload:
/// - `h[0]`: bit 0 the direction (server to client when set); bits 1-2 how the sequence number is
///   chosen (0: the next one, 1: the next one plus a signed 16-bit delta `h[2..4]`, 2: raw
///   `h[2..6]`, 3: a retransmission of the last payload); bits 3-4 how the acknowledgement is
///   chosen (0: everything received, 1: minus `h[6]`, 2: raw `h[2..6]` reversed, 3: none); bits
///   5-6 the connection; bit 7 snaplen cut the payload to half;
/// - `h[1]`: the TCP flags byte;
/// - `h[6]`: milliseconds since the previous segment;
/// - `h[7]`: payload length ÷ 8 (the bytes follow, fewer at the end of the input).
pub fn tcp(data: &[u8]) {
    use bothends::decode::{Endpoint, Segment, TcpFlags, TcpOptions};
    use bothends::tcp::ConnectionTable;
    let Some((&cfg, mut rest)) = data.split_first() else {
        return;
    };
    let limits = if cfg & 1 != 0 {
        Limits {
            max_open: 2,
            max_open_bytes: 4 * 1024,
            max_connections: 3,
            max_pending_bytes: 2000,
            linger_ns: 1_000_000_000,
            closed_linger_ns: 100_000_000,
            idle_ns: 5_000_000_000,
            packet_log: true,
        }
    } else {
        Limits::default()
    };
    let http_limits = if cfg & 1 != 0 {
        small_http_limits()
    } else {
        HttpLimits::default()
    };
    let mut table = ConnectionTable::new(limits, move |from_start| Contiguous {
        next: [None, None],
        http: HttpHandler::new(http_limits, from_start),
    });
    let hosts = [
        std::net::IpAddr::from([10, 0, 1, 2]),
        std::net::IpAddr::from([10, 0, 2, 2]),
    ];
    // Per connection and direction: the next sequence number, and the last payload's start.
    let mut next = [[1000u32, 5000u32]; 4];
    let mut last = [[1000u32; 2]; 4];
    let mut t = 1_000_000_000i64;
    let mut frame = 0u32;
    while let Some((h, r)) = rest.split_first_chunk::<8>() {
        rest = r;
        let d = (h[0] & 1) as usize;
        let k = ((h[0] >> 5) & 3) as usize;
        let raw = u32::from_le_bytes([h[2], h[3], h[4], h[5]]);
        let len = h[7] as usize * 8;
        let take = len.min(rest.len());
        let (mut payload, r) = rest.split_at(take);
        rest = r;
        if h[0] & 0x80 != 0 {
            payload = &payload[..payload.len() / 2];
        }
        let seq = match (h[0] >> 1) & 3 {
            0 => next[k][d],
            1 => next[k][d].wrapping_add(i16::from_le_bytes([h[2], h[3]]) as i32 as u32),
            2 => raw,
            _ => last[k][d],
        };
        let ack = match (h[0] >> 3) & 3 {
            0 => Some(next[k][1 - d]),
            1 => Some(next[k][1 - d].wrapping_sub(h[6] as u32)),
            2 => Some(raw.swap_bytes()),
            _ => None,
        };
        let mut flags = h[1] & !TcpFlags::ACK;
        if ack.is_some() {
            flags |= TcpFlags::ACK;
        }
        t += h[6] as i64 * 1_000_000;
        frame += 1;
        let port = [40000 + k as u16, 8080];
        let seg = Segment {
            frame: FrameRef { file: 0, frame },
            ts_ns: t,
            src: Endpoint {
                ip: hosts[d],
                port: port[d],
            },
            dst: Endpoint {
                ip: hosts[1 - d],
                port: port[1 - d],
            },
            seq,
            ack: ack.unwrap_or(0),
            flags: TcpFlags(flags),
            window: u16::from_le_bytes([h[4], h[5]]),
            options: TcpOptions::default(),
            payload_len: len as u32,
            payload,
            ip_id: Some(frame as u16),
            ttl: 64,
            outgoing: None,
        };
        table.push(&seg);
        let consumed = len as u32 + (flags & (TcpFlags::SYN | TcpFlags::FIN) != 0) as u32;
        if len > 0 {
            last[k][d] = seq;
        }
        next[k][d] = next[k][d].max(seq.wrapping_add(consumed));
    }
    for c in table.finish() {
        assert!(c.app.exchanges.len() <= http_limits.max_exchanges);
    }
}

//! Decoding: link layers, snaplen and wire lengths, truncation sweeps, and the fast path and
//! option reader against etherparse.

use etherparse::TcpOptionElement;

use super::fast::ethernet_ipv4_tcp;
use super::link::decode_sliced;
use super::options::{read_tcp_options, tcp_options};
use super::*;
use crate::capture::LinkType;
use etherparse::PacketBuilder;

fn packet(link: LinkType, data: &[u8], orig_len: u32) -> Packet<'_> {
    Packet {
        frame: FrameRef { file: 0, frame: 1 },
        ts_ns: 0,
        link,
        data,
        orig_len,
    }
}

fn ipv4_tcp(payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 80, 1000, 65535)
        .ack(77)
        .psh();
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

#[test]
fn raw_ipv4_segment_fields() {
    let bytes = ipv4_tcp(b"GET / HTTP/1.1\r\n\r\n");
    let s = decode(&packet(LinkType::RAW, &bytes, bytes.len() as u32)).unwrap();
    assert_eq!(s.src.to_string(), "10.0.0.1:40000");
    assert_eq!(s.dst.to_string(), "10.0.0.2:80");
    assert_eq!((s.seq, s.ack, s.window), (1000, 77, 65535));
    assert_eq!(s.flags.to_string(), "PA");
    assert_eq!(s.payload, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(s.payload_len, 18);
    assert_eq!(s.ttl, 64);
}

#[test]
fn snaplen_cut_keeps_the_wire_length() {
    let bytes = ipv4_tcp(&[b'x'; 1000]);
    let cut = &bytes[..96];
    let s = decode(&packet(LinkType::RAW, cut, bytes.len() as u32)).unwrap();
    assert_eq!(s.payload.len(), 96 - 40);
    assert_eq!(s.payload_len, 1000);
}

#[test]
fn zero_total_length_uses_the_original_length() {
    let mut bytes = ipv4_tcp(&[b'y'; 300]);
    bytes[2] = 0;
    bytes[3] = 0;
    let s = decode(&packet(LinkType::RAW, &bytes, bytes.len() as u32)).unwrap();
    assert_eq!(s.payload_len, 300);
}

#[test]
fn linux_cooked_v1_and_v2_and_null() {
    let ip = ipv4_tcp(b"hi");
    let mut sll = vec![0u8; 16];
    sll[14] = 0x08;
    sll.extend_from_slice(&ip);
    let s = decode(&packet(LinkType::LINUX_SLL, &sll, sll.len() as u32)).unwrap();
    assert_eq!(s.payload, b"hi");

    let mut sll2 = vec![0u8; 20];
    sll2[0] = 0x08;
    sll2.extend_from_slice(&ip);
    let s = decode(&packet(LinkType::LINUX_SLL2, &sll2, sll2.len() as u32)).unwrap();
    assert_eq!(s.payload, b"hi");

    let mut null = 2u32.to_le_bytes().to_vec();
    null.extend_from_slice(&ip);
    let s = decode(&packet(LinkType::NULL, &null, null.len() as u32)).unwrap();
    assert_eq!(s.payload, b"hi");
}

#[test]
fn every_truncation_is_an_error_or_a_segment_never_a_panic() {
    let b = PacketBuilder::ethernet2([1; 6], [2; 6])
        .single_vlan(5.try_into().unwrap())
        .ipv6([1; 16], [2; 16], 5)
        .tcp(1, 2, 3, 4)
        .syn()
        .options(&[
            TcpOptionElement::MaximumSegmentSize(1460),
            TcpOptionElement::SelectiveAcknowledgementPermitted,
            TcpOptionElement::Timestamp(7, 0),
            TcpOptionElement::Noop,
            TcpOptionElement::WindowScale(7),
        ])
        .unwrap();
    let mut v = Vec::new();
    b.write(&mut v, b"").unwrap();
    let full = decode(&packet(LinkType::ETHERNET, &v, v.len() as u32)).unwrap();
    assert_eq!(full.options.mss, Some(1460));
    assert_eq!(full.options.window_scale, Some(7));
    assert!(full.options.sack_permitted);
    assert_eq!(full.options.timestamp, Some((7, 0)));
    assert!(full.flags.syn());
    for n in 0..v.len() {
        let r = decode(&packet(LinkType::ETHERNET, &v[..n], v.len() as u32));
        assert!(r.is_err(), "cut at {n} still decoded");
    }
}

/// Every capture file under `dir`, recursively.
fn capture_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        if path.is_dir() {
            capture_files(&path, out);
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.contains(".pcap") || n.ends_with(".cap"))
        {
            out.push(path);
        }
    }
}

/// The fast path (Ethernet, IPv4, TCP read directly) gives the segment etherparse gives, on
/// every packet of the corpus and the lab captures it takes, and on every cut and every
/// total length of a few frames.
#[test]
fn fast_path_agrees_with_etherparse() {
    use crate::capture::{CaptureSet, Input};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    capture_files(&root.join("tests/corpus"), &mut files);
    capture_files(&root.join("captures"), &mut files);
    let mut taken = 0;
    for f in files {
        let Ok(mut set) = CaptureSet::open(&[Input::Path(f.clone())]) else {
            continue;
        };
        while let Some(p) = set.next() {
            if let (true, Some(fast)) = (p.link.0 == 1, ethernet_ipv4_tcp(&p)) {
                let general = decode_sliced(&p);
                assert_eq!(
                    format!("{:?}", Ok::<_, Skip>(fast)),
                    format!("{general:?}"),
                    "{f:?} {:?}",
                    p.frame
                );
                taken += 1;
            }
        }
    }
    assert!(taken > 10_000, "{taken}");

    let frame = |ip_options: usize, payload: &[u8]| {
        let b = PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1000, 65535)
            .ack(77)
            .options(&[
                TcpOptionElement::Noop,
                TcpOptionElement::Timestamp(7, 9),
                TcpOptionElement::SelectiveAcknowledgement((1, 2), [Some((3, 4)), None, None]),
            ])
            .unwrap();
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        // IPv4 options (NOPs) after the 20-byte header.
        for _ in 0..ip_options {
            v.splice(34..34, [1u8; 4]);
            v[14] += 1;
            let total = u16::from_be_bytes([v[16], v[17]]) + 4;
            v[16..18].copy_from_slice(&total.to_be_bytes());
        }
        v
    };
    let mut compared = 0;
    for v in [
        frame(0, b"GET / HTTP/1.1\r\n\r\n"),
        frame(2, b"xyz"),
        frame(0, b""),
    ] {
        let total = u16::from_be_bytes([v[16], v[17]]);
        let header = u16::from(v[14] & 0x0f) * 4;
        for claimed in [0, header - 1, header, header + 10, total - 1, total, total + 100] {
            for flags in [0x00u8, 0x40, 0x20, 0x01] {
                for n in 0..=v.len() {
                    let mut w = v[..n].to_vec();
                    if w.len() >= 18 {
                        w[16..18].copy_from_slice(&claimed.to_be_bytes());
                    }
                    if w.len() >= 21 {
                        w[20] = flags;
                    }
                    for orig in [w.len() as u32, v.len() as u32 + 50] {
                        let p = packet(LinkType::ETHERNET, &w, orig);
                        if let Some(fast) = ethernet_ipv4_tcp(&p) {
                            assert_eq!(
                                format!("{:?}", Ok::<_, Skip>(fast)),
                                format!("{:?}", decode_sliced(&p)),
                                "cut at {n}, total length {claimed}, flags {flags:#x}"
                            );
                            compared += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(compared > 100, "{compared}");
}

/// The options read directly, as etherparse's iterator reads them: every string over a few
/// telling bytes up to 5 long, then random ones built from valid and broken options.
#[test]
fn tcp_options_read_as_etherparse_reads_them() {
    let check = |o: &[u8]| {
        let ours = read_tcp_options(o);
        let theirs = tcp_options(etherparse::TcpOptionsIterator::from_slice(o));
        assert_eq!(ours, theirs, "{o:?}");
    };
    let alphabet = [0u8, 1, 2, 3, 4, 5, 8, 10, 18, 34, 255];
    for len in 0..=5u32 {
        for code in 0..alphabet.len().pow(len) {
            let mut c = code;
            let o: Vec<u8> = (0..len)
                .map(|_| {
                    let b = alphabet[c % alphabet.len()];
                    c /= alphabet.len();
                    b
                })
                .collect();
            check(&o);
        }
    }
    let pieces: [&[u8]; 9] = [
        &[1],
        &[2, 4, 5, 180],
        &[3, 3, 7],
        &[4, 2],
        &[8, 10, 1, 2, 3, 4, 5, 6, 7, 8],
        &[5, 10, 0, 0, 0, 1, 0, 0, 0, 2],
        &[5, 18, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4],
        &[
            5, 26, 9, 9, 9, 9, 8, 8, 8, 8, 7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4,
        ],
        &[0],
    ];
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..100_000 {
        let mut o = Vec::new();
        while o.len() < 40 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            let piece = pieces[(rng % 9) as usize];
            o.extend_from_slice(piece);
            if rng % 7 == 0 {
                // A broken one: a length or a kind changed, or cut short.
                let i = (rng >> 8) as usize % o.len();
                o[i] = (rng >> 16) as u8;
            }
        }
        o.truncate((rng >> 24) as usize % 41);
        check(&o);
    }
}

#[test]
fn udp_and_arp_are_skipped() {
    let b = PacketBuilder::ipv4([1, 1, 1, 1], [2, 2, 2, 2], 9).udp(1, 2);
    let mut v = Vec::new();
    b.write(&mut v, b"dns").unwrap();
    assert_eq!(
        decode(&packet(LinkType::RAW, &v, v.len() as u32)).unwrap_err(),
        Skip::NotTcp
    );
    let arp = [0u8; 42];
    let mut eth = vec![0u8; 12];
    eth.extend_from_slice(&[0x08, 0x06]);
    eth.extend_from_slice(&arp);
    assert!(decode(&packet(LinkType::ETHERNET, &eth, eth.len() as u32)).is_err());
}

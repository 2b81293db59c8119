//! Reading pcap and pcapng files: byte orders, resolutions, gzip, and damage of every kind.

use super::damage::explain_damage;
use super::file::Format;
use super::pcapng::ticks_to_ns;
use super::*;

fn pcap_header(magic: u32, link: u32, be: bool) -> Vec<u8> {
    let mut v = Vec::new();
    let put32 = |v: &mut Vec<u8>, x: u32| {
        if be {
            v.extend_from_slice(&x.to_be_bytes())
        } else {
            v.extend_from_slice(&x.to_le_bytes())
        }
    };
    put32(&mut v, magic);
    if be {
        v.extend_from_slice(&2u16.to_be_bytes());
        v.extend_from_slice(&4u16.to_be_bytes());
    } else {
        v.extend_from_slice(&2u16.to_le_bytes());
        v.extend_from_slice(&4u16.to_le_bytes());
    }
    put32(&mut v, 0);
    put32(&mut v, 0);
    put32(&mut v, 65535);
    put32(&mut v, link);
    v
}

fn record(v: &mut Vec<u8>, sec: u32, frac: u32, data: &[u8], orig: u32, be: bool) {
    for x in [sec, frac, data.len() as u32, orig] {
        if be {
            v.extend_from_slice(&x.to_be_bytes())
        } else {
            v.extend_from_slice(&x.to_le_bytes())
        }
    }
    v.extend_from_slice(data);
}

/// The sentences of some warnings.
fn texts(warnings: &[Warning]) -> Vec<String> {
    warnings.iter().map(|w| w.text.clone()).collect()
}

fn read_all(set: &mut CaptureSet) -> Vec<(u32, i64, usize, u32)> {
    let mut out = Vec::new();
    while let Some(p) = set.next() {
        out.push((p.frame.frame, p.ts_ns, p.data.len(), p.orig_len));
    }
    out
}

#[test]
fn pcap_micro_and_nano_both_byte_orders() {
    for (magic, nanos) in [(0xa1b2_c3d4u32, false), (0xa1b2_3c4d, true)] {
        for be in [false, true] {
            let mut f = pcap_header(magic, 1, be);
            record(&mut f, 10, 5, b"abcd", 60, be);
            record(&mut f, 11, 7, b"ef", 2, be);
            let mut set = CaptureSet::from_bytes("t.pcap", f).unwrap();
            let got = read_all(&mut set);
            let unit = if nanos { 1 } else { 1000 };
            assert_eq!(
                got,
                vec![
                    (1, 10_000_000_000 + 5 * unit, 4, 60),
                    (2, 11_000_000_000 + 7 * unit, 2, 2)
                ],
                "magic {magic:x} be {be}"
            );
            let s = set.summary();
            assert_eq!(s.packets, 2);
            assert_eq!(s.truncated_packets, 1);
            assert_eq!(s.link_types, vec![LinkType::ETHERNET]);
            assert!(s.warnings.is_empty(), "{:?}", s.warnings);
        }
    }
}

#[test]
fn truncated_last_record_is_a_warning_and_keeps_earlier_frames() {
    let mut f = pcap_header(0xa1b2_c3d4, 1, false);
    record(&mut f, 1, 0, b"0123456789", 10, false);
    record(&mut f, 2, 0, b"0123456789", 10, false);
    f.truncate(f.len() - 3);
    let mut set = CaptureSet::from_bytes("cut.pcap", f).unwrap();
    assert_eq!(read_all(&mut set).len(), 1);
    let w = set.summary().warnings;
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].kind, WarningKind::FileEndsMidRecord);
    assert_eq!((w[0].file.as_deref(), w[0].frame), (Some("cut.pcap"), None));
    let w = texts(&w);
    assert!(
        w[0].starts_with("cut.pcap: at byte 50: the last record is cut short"),
        "{}",
        w[0]
    );
    assert!(w[0].ends_with("kept frame 1 before it"), "{}", w[0]);
}

#[test]
fn not_a_capture_names_the_file() {
    let e = CaptureSet::from_bytes("notes.txt", b"hello world, not a pcap".to_vec())
        .err()
        .unwrap();
    assert_eq!(
        e.to_string(),
        "notes.txt: not a pcap or pcapng capture (it starts with bytes 68 65 6c 6c 6f 20 77 6f)"
    );
    let e = CaptureSet::from_bytes("empty", Vec::new()).err().unwrap();
    assert_eq!(e.to_string(), "empty: empty file, not a capture");
}

#[test]
fn gzip_is_detected_by_content() {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut f = pcap_header(0xa1b2_c3d4, 101, false);
    record(&mut f, 3, 1, b"xyz", 3, false);
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(&f).unwrap();
    let mut set = CaptureSet::from_bytes("x.pcap", gz.finish().unwrap()).unwrap();
    assert_eq!(read_all(&mut set), vec![(1, 3_000_001_000, 3, 3)]);
    assert_eq!(set.summary().link_types, vec![LinkType::RAW]);
}

/// Regression: the command prints the error chain (`{:#}`), which said the OS error twice
/// ("cannot open: No such file or directory (os error 2): No such file or directory (os error 2)").
#[test]
fn open_error_says_the_os_error_once() {
    let e = CaptureSet::open(&[Input::from_arg("/nonexistent/x.pcap")])
        .err()
        .unwrap();
    let shown = format!("{:#}", anyhow::Error::new(e));
    assert_eq!(shown.matches("os error 2").count(), 1, "{shown}");
    assert!(shown.starts_with("/nonexistent/x.pcap: cannot open: "), "{shown}");
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;
    let mut gz = GzEncoder::new(Vec::new(), Compression::default());
    gz.write_all(data).unwrap();
    gz.finish().unwrap()
}

/// Regression: a gzip file cut short (an interrupted download) was an error ("cannot read:
/// gzip data is damaged") when the cut fell in its first 64 KiB; it is a capture cut short:
/// the frames before are kept, with a warning.
#[test]
fn gzip_cut_short_keeps_the_frames_before() {
    let mut f = pcap_header(0xa1b2_c3d4, 1, false);
    for i in 0..2000u32 {
        let data: Vec<u8> = (0..60u32).map(|j| (i * 7 + j * 13) as u8).collect();
        record(&mut f, i, 0, &data, 60, false);
    }
    let mut gz = gzip(&f);
    gz.truncate(gz.len() / 2);
    let mut set = CaptureSet::from_bytes("cut.pcap.gz", gz).unwrap();
    let n = read_all(&mut set).len();
    assert!(n > 100 && n < 2000, "{n}");
    let w = set.summary().warnings;
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].kind, WarningKind::GzipDamaged);
    let w = texts(&w);
    assert!(w[0].contains("the gzip data is damaged after"), "{}", w[0]);
    assert!(w[0].contains("cut short or corrupted"), "{}", w[0]);
    // Damaged from the start: one line naming the file.
    let e = CaptureSet::from_bytes("bad.gz", b"\x1f\x8b\x08\x00garbage".to_vec())
        .err()
        .unwrap();
    assert!(
        e.to_string().starts_with("bad.gz: the gzip data is damaged ("),
        "{e}"
    );
    // Bytes after the gzip data: all the frames, and a warning.
    let mut trailing = gzip(&f);
    trailing.extend_from_slice(b"these bytes are not gzip\n");
    let mut set = CaptureSet::from_bytes("t.gz", trailing).unwrap();
    assert_eq!(read_all(&mut set).len(), 2000);
    let w = texts(&set.summary().warnings);
    assert!(w[0].contains("holds bytes that are not gzip"), "{w:?}");
}

/// Regression (fuzz, capture target): a Process Information Block (type 0x80000001) whose
/// length field says 8 made pcap-parser subtract 12 from it ("attempt to subtract with
/// overflow" with overflow checks on); any block shorter than its framing is now explained
/// before the parser sees it.
#[test]
fn block_shorter_than_its_framing_never_reaches_the_parser() {
    let data = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/regression/fuzz-capture-process-information-block-length-8"
    ))
    .unwrap();
    let mut set = CaptureSet::from_bytes("pib.pcapng", data.clone()).unwrap();
    assert!(read_all(&mut set).is_empty());
    assert_eq!(set.summary().warnings[0].kind, WarningKind::FileDamaged);
    assert_eq!(
        texts(&set.summary().warnings),
        vec![
            "pib.pcapng: at byte 104: a block of type 0x80000001 declares 8 bytes, less than a block's \
             header and trailer (12): its length field is damaged; stopped reading this file, no frame \
             before it"
                .to_string()
        ]
    );
    for kind in [0x8000_0001u32, 1, 3, 4, 5, 6, 9, 0x0BAD] {
        for len in [0u32, 4, 8, 13] {
            let mut f = data[..104].to_vec();
            f.extend_from_slice(&kind.to_le_bytes());
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(&[0; 16]);
            let mut set = CaptureSet::from_bytes("x.pcapng", f).unwrap();
            read_all(&mut set);
            let w = texts(&set.summary().warnings);
            assert!(
                w.iter().any(|w| w.contains(&format!("declares {len} bytes"))),
                "{kind:x} {len}: {w:?}"
            );
        }
    }
}

/// An interface whose link type bothends does not read is named in a warning.
#[test]
fn unsupported_link_type_names_its_interface() {
    let block = |kind: u32, body: &[u8]| {
        let len = 12 + body.len() as u32;
        let mut v = kind.to_le_bytes().to_vec();
        v.extend_from_slice(&len.to_le_bytes());
        v.extend_from_slice(body);
        v.extend_from_slice(&len.to_le_bytes());
        v
    };
    let mut shb = 0x1A2B_3C4Du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    let mut f = block(0x0A0D_0D0A, &shb);
    for link in [1u16, 147] {
        let mut idb = link.to_le_bytes().to_vec();
        idb.extend_from_slice(&[0, 0]);
        idb.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&block(1, &idb));
    }
    let mut set = CaptureSet::from_bytes("two.pcapng", f).unwrap();
    read_all(&mut set);
    assert_eq!(set.summary().warnings[0].kind, WarningKind::UnsupportedLinkType);
    assert_eq!(
        texts(&set.summary().warnings),
        vec![
            "two.pcapng: interface 1 declares link type 147, which bothends does not read: its packets \
             are skipped"
                .to_string()
        ]
    );
}

/// Regression: damage was described in the parser's terms ("predicate verification check
/// failed"); it says which field of which block is wrong.
#[test]
fn damaged_blocks_are_explained_in_capture_terms() {
    let ng = Format::PcapNg {
        interfaces: Vec::new(),
        big_endian: false,
        section: 1,
    };
    let block = |len: u32, trailer: u32| {
        let mut v = 6u32.to_le_bytes().to_vec();
        v.extend_from_slice(&len.to_le_bytes());
        v.resize(len.max(12) as usize - 4, 0);
        v.extend_from_slice(&trailer.to_le_bytes());
        v
    };
    let say = |d: &[u8]| explain_damage(&ng, d).unwrap_or_default();
    assert!(say(&block(8, 8)).contains("declares 8 bytes, less than a block's header"));
    assert!(say(&block(62, 62)).contains("not a multiple of 4"));
    assert!(say(&block(64, 12)).contains("declares 64 bytes at its start and 12 at its end"));
    assert!(
        say(&block(64, 64)).contains("captured bytes, more than its 64-byte block holds")
            || say(&block(64, 64)).is_empty()
    );
    let mut cut = block(64, 64);
    cut.truncate(40);
    assert!(
        say(&cut).starts_with("the last block is cut short (an enhanced packet block, 40 of its 64 bytes")
    );
    let pcap = Format::Pcap {
        link: LinkType::ETHERNET,
        nanos: false,
        big_endian: false,
    };
    let mut rec = vec![0u8; 8];
    rec.extend_from_slice(&u32::MAX.to_le_bytes());
    rec.extend_from_slice(&[0; 4]);
    assert!(
        explain_damage(&pcap, &rec)
            .unwrap()
            .contains("a record declares 4294967295 captured bytes")
    );
}

#[test]
fn lying_record_length_stops_with_a_warning() {
    let mut f = pcap_header(0xa1b2_c3d4, 1, false);
    record(&mut f, 1, 0, b"ok", 2, false);
    // A record header claiming 4 GB of data.
    for x in [2u32, 0, u32::MAX - 8, 100] {
        f.extend_from_slice(&x.to_le_bytes());
    }
    f.extend_from_slice(&[0u8; 100]);
    let mut set = CaptureSet::from_bytes("lie.pcap", f).unwrap();
    assert_eq!(read_all(&mut set).len(), 1);
    let w = set.summary().warnings;
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].kind, WarningKind::FileDamaged);
    let w = texts(&w);
    assert!(w[0].contains("at byte 42"), "{}", w[0]);
}

#[test]
fn ticks_conversion_saturates() {
    assert_eq!(ticks_to_ns(1_500_000, 1_000_000, 0), 1_500_000_000);
    assert_eq!(ticks_to_ns(3, 2, 10), 11_500_000_000);
    assert_eq!(ticks_to_ns(u64::MAX, 1, i64::MAX), MAX_TS_NS);
    // Regression (fuzz, pipeline target): an if_tsoffset of -2^63 s gave i64::MIN, and the
    // ladder diagram's time arithmetic overflowed.
    assert_eq!(ticks_to_ns(5, 1, i64::MIN), 0);
    assert_eq!(ticks_to_ns(5, 0, 0), 0);
}

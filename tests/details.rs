//! The typed details beside the report's prose (issue 14): `captures[].warning_details` (a kind,
//! the file and frame, the same text as `warnings`) and a view's `http_stops` (direction, stream
//! offset, kind, where parsing resumed). Synthetic captures whose frames and offsets are known by
//! construction (and were checked once with tshark).

mod kit;

use bothends::capture::CaptureSet;
use bothends::pipeline::{self, Side};
use bothends::report::{self, Report, ReportOptions};
use kit::{Pcap, Wire};

/// The JSON report of the sides, read back into the report types.
fn json_report(sides: Vec<(Side, Vec<u8>)>) -> Report {
    let sides = sides.into_iter().map(|(s, bytes)| kit::side(s, bytes)).collect();
    let analysis = pipeline::analyze(sides, &[]);
    let built = report::build(&analysis, &ReportOptions::default());
    let mut out = Vec::new();
    report::json::write_json(&built, &mut out).expect("the report is written");
    serde_json::from_slice(&out).expect("the JSON report reads back")
}

/// One GET of `/a` (34 bytes) answered by a 200 with a 100-byte body (140 bytes), then closed.
fn one_exchange() -> Wire {
    let mut w = Wire::new(1000, 9000);
    w.handshake()
        .send_request(&kit::get("/a"))
        .send_response(&kit::ok(100))
        .close();
    w
}

/// An Ethernet frame whose IPv4 header is cut short (8 of its 20 bytes).
fn malformed_frame() -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 1, 0, 0]);
    f
}

/// The packets of `bytes`, with `n` malformed frames inserted after the second packet: they are
/// frames 3 to n + 2.
fn with_malformed(bytes: Vec<u8>, n: usize) -> Vec<u8> {
    let mut set = CaptureSet::from_bytes("in", bytes).expect("opens");
    let mut out = Pcap::new(1);
    let mut i = 0;
    while let Some(p) = set.next() {
        out.record(p.ts_ns, p.data, None);
        i += 1;
        if i == 2 {
            for _ in 0..n {
                out.record(p.ts_ns, &malformed_frame(), None);
            }
        }
    }
    out.bytes()
}

#[test]
fn a_malformed_packet_is_a_detail_naming_its_frame() {
    let w = one_exchange();
    let r = json_report(vec![(Side::Proxy, with_malformed(w.proxy_pcap(), 1))]);
    let cap = &r.captures[0];
    assert_eq!(cap.warnings.len(), 1, "{:?}", cap.warnings);
    let d = &cap.warning_details[0];
    assert_eq!(d.kind, "malformed-packet");
    assert_eq!(
        (d.file.as_deref(), d.frame, d.line),
        (Some("proxy"), Some(3), None)
    );
    assert_eq!(d.text, cap.warnings[0]);
    assert!(d.text.starts_with("proxy: frame 3: "), "{}", d.text);
}

#[test]
fn malformed_packets_past_the_list_are_a_detail_of_their_own() {
    let w = one_exchange();
    let r = json_report(vec![(Side::Proxy, with_malformed(w.proxy_pcap(), 25))]);
    let cap = &r.captures[0];
    let kinds: Vec<(&str, Option<u64>)> = cap
        .warning_details
        .iter()
        .map(|d| (d.kind.as_str(), d.frame))
        .collect();
    // 20 listed (frames 3 to 22), the other 5 counted in one item about the side.
    let mut want: Vec<(&str, Option<u64>)> = (3..23).map(|f| ("malformed-packet", Some(f))).collect();
    want.push(("more-malformed-packets", None));
    assert_eq!(kinds, want);
    let last = cap.warning_details.last().unwrap();
    assert_eq!(last.file, None);
    assert_eq!(last.text, "5 more malformed packets not listed");
    let texts: Vec<&str> = cap.warning_details.iter().map(|d| d.text.as_str()).collect();
    assert_eq!(texts, cap.warnings);
}

#[test]
fn a_snaplen_cut_head_is_an_http_stop_at_its_stream_offset() {
    // Snaplen 80: Ethernet (14) + IPv4 (20) + TCP (20) leave 26 payload bytes of each packet.
    // The request head (34 bytes) is cut at offset 26; the response (140 bytes) at offset 26.
    let w = one_exchange();
    let set = CaptureSet::from_bytes("proxy", w.proxy_pcap()).expect("opens");
    let r = json_report(vec![(Side::Proxy, kit::cut_to_snaplen(set, 80))]);
    assert!(r.captures[0].warning_details.is_empty());
    let view = &r.connections[0].views["proxy"];
    let stops: Vec<(&str, i64, &str, Option<i64>)> = view
        .http_stops
        .iter()
        .map(|s| (s.direction.as_str(), s.offset, s.kind.as_str(), s.resumed_at))
        .collect();
    assert_eq!(
        stops,
        vec![
            ("client_to_server", 26, "snaplen-in-head", None),
            ("server_to_client", 26, "snaplen-in-head", None),
        ]
    );
    assert_eq!(
        view.http_stops[0].text,
        "snaplen cut the request headers at offset 26 (8 bytes not captured)"
    );
    assert_eq!(view.http_stops[0].anomaly, None);
    assert_eq!(view.http_stops_not_kept, 0);
}

#[test]
fn a_whole_capture_has_no_stops_and_no_warnings() {
    let w = one_exchange();
    let r = json_report(vec![
        (Side::Proxy, w.proxy_pcap()),
        (Side::Backend, w.backend_pcap()),
    ]);
    for cap in &r.captures {
        assert!(cap.warning_details.is_empty(), "{:?}", cap.warning_details);
    }
    for view in r.connections[0].views.values() {
        assert!(view.http_stops.is_empty(), "{:?}", view.http_stops);
    }
}

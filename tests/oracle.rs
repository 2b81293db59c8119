//! bothends against tshark, on every corpus capture that carries HTTP/1.x: per connection and
//! direction, the reassembled byte counts (tshark's Follow TCP Stream), and the HTTP requests
//! (method, target) and response statuses (tshark's `http.*` fields). The expected values are in
//! `tests/oracle/expected.json`, written by `tests/oracle/make_expected.py` (which states the exact
//! tshark commands); this test does not run tshark.
//!
//! Where bothends and tshark disagree on purpose, `POLICY` says why, case by case.

use std::path::{Path, PathBuf};

use bothends::capture::{CaptureSet, Input};
use bothends::pipeline::{self, Conn, Side, SideOptions};
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    captures: Vec<CaptureExpected>,
}

#[derive(Deserialize)]
struct CaptureExpected {
    file: String,
    connections: Vec<StreamExpected>,
}

#[derive(Deserialize, Debug)]
struct StreamExpected {
    stream: u32,
    first_frame: u32,
    node0: String,
    node1: String,
    bytes0: u64,
    bytes1: u64,
    missing0: u64,
    missing1: u64,
}

pub fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

fn read(path: &Path) -> Vec<Conn> {
    let set = CaptureSet::open(&[Input::from(path)]).expect("corpus capture opens");
    pipeline::read_side(Side::Single, set, SideOptions::default()).connections
}

/// Bytes of one direction as tshark's Follow TCP Stream counts them: the bytes the capture holds.
/// bothends' `bytes` also counts bytes snaplen cut (they were on the wire; DESIGN.md), so those are
/// taken out before comparing.
/// Cases where bothends and tshark disagree on purpose: (file, tshark stream, why, the check that
/// replaces equality).
type Check = fn(&Conn, &StreamExpected, bool) -> bool;
const POLICY: &[(&str, u32, &str, Check)] = &[
    (
        "arkime/http-ipv4-fragments.pcap",
        0,
        "IPv4 fragments are counted, not reassembled (issue 2: 'IP fragments ... are counted, not fatal'); \
         tshark reassembles them. The bytes carried in fragments are still known: the receiver \
         acknowledged them, so bothends reports them as acked-unseen.",
        |c, s, n0c| {
            let (d0, d1) = if n0c {
                (&c.dirs[0], &c.dirs[1])
            } else {
                (&c.dirs[1], &c.dirs[0])
            };
            d0.bytes + d0.acked_unseen == s.bytes0 && d1.bytes + d1.acked_unseen == s.bytes1
        },
    ),
    (
        "suricata/http-snaplen-ooo-rst.pcap",
        0,
        "Follow TCP Stream leaves out the data after a hole that is never filled (it waits for the \
         hole until the end); bothends counts every distinct byte seen. Checked by hand from tshark's \
         own per-segment fields (tcp.seq, tcp.len of the server's segments): their union is 52320 \
         bytes with two holes, 35577-36865 and 51033-56185 (6440 bytes).",
        |c, _, n0c| {
            let server = &c.dirs[if n0c { 1 } else { 0 }];
            server.bytes == 52320 && server.gaps == 6440
        },
    ),
];

fn captured_bytes(c: &Conn, from_client: bool) -> u64 {
    let d = &c.dirs[if from_client { 0 } else { 1 }];
    d.bytes - d.snaplen_cut
}

#[test]
fn byte_counts_match_tshark_follow_stream() {
    let expected: Expected =
        serde_json::from_str(include_str!("oracle/expected.json")).expect("expected.json parses");
    let mut failures = Vec::new();
    let mut compared = 0;
    for cap in &expected.captures {
        let conns = read(&corpus_dir().join(&cap.file));
        for s in &cap.connections {
            let Some(c) = conns.iter().find(|c| {
                c.first.frame.frame == s.first_frame
                    && [c.client.to_string(), c.server.to_string()].contains(&s.node0)
            }) else {
                failures.push(format!(
                    "{} stream {}: no connection starting at frame {}",
                    cap.file, s.stream, s.first_frame
                ));
                continue;
            };
            let node0_is_client = c.client.to_string() == s.node0;
            if let Some((_, _, why, check)) = POLICY.iter().find(|p| p.0 == cap.file && p.1 == s.stream) {
                if !check(c, s, node0_is_client) {
                    failures.push(format!(
                        "{} stream {}: the policy check failed ({why})",
                        cap.file, s.stream
                    ));
                }
                compared += 1;
                continue;
            }
            let got0 = captured_bytes(c, node0_is_client);
            let got1 = captured_bytes(c, !node0_is_client);
            compared += 1;
            let (d0, d1) = if node0_is_client {
                (&c.dirs[0], &c.dirs[1])
            } else {
                (&c.dirs[1], &c.dirs[0])
            };
            // Follow Stream marks "[N bytes missing in capture file]" for the holes it gave up
            // on; bothends' gaps are the holes between the stream's start and its last byte seen.
            if (d0.gaps, d1.gaps) != (s.missing0, s.missing1) {
                failures.push(format!(
                    "{} stream {}: tshark missing {}/{}, bothends gaps {}/{}",
                    cap.file, s.stream, s.missing0, s.missing1, d0.gaps, d1.gaps
                ));
            }
            if (got0, got1) != (s.bytes0, s.bytes1) {
                failures.push(format!(
                    "{} stream {} ({} → {}): tshark {}/{} bytes (missing {}/{}), bothends {}/{} (gaps {}/{}, unseen {}/{})",
                    cap.file, s.stream, s.node0, s.node1, s.bytes0, s.bytes1, s.missing0, s.missing1, got0, got1,
                    c.dirs[if node0_is_client {0} else {1}].gaps, c.dirs[if node0_is_client {1} else {0}].gaps,
                    c.dirs[if node0_is_client {0} else {1}].acked_unseen, c.dirs[if node0_is_client {1} else {0}].acked_unseen,
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {compared} differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

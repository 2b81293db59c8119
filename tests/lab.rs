//! The lab scenarios of `captures/` (real Apache httpd and nginx proxies, real faults, captured at
//! both ends; see captures/README.md) against their ground truth, `expected.json`: every listed
//! connection is found in each capture with its 4-tuple, paired across the captures, and gets the
//! expected verdict and blame; every other proxy→backend connection is `ok` when the scenario says
//! so. A scenario the tool gets wrong stays here as a failing case to fix, never edited to match.

mod kit;

use std::path::Path;

use bothends::diagnose::Verdict;
use bothends::pipeline::{self, Analysis, Side, SideOptions};
use kit::{lab_captures, lab_scenarios};
use serde::Deserialize;

#[derive(Deserialize, Debug)]
struct Expected {
    scenario: String,
    backend_capture: Vec<String>,
    clock_shift_s: f64,
    snaplen: u32,
    others: String,
    connections: Vec<ExpectedConn>,
}

#[derive(Deserialize, Debug)]
struct ExpectedConn {
    proxy: Option<View>,
    backend: Option<View>,
    verdict: String,
    blame: String,
    exchanges: Vec<ExpectedExchange>,
    /// "tls" when the connection carries TLS (the lab decrypted it for the truth).
    #[serde(default)]
    protocol: Option<String>,
}

#[derive(Deserialize, Debug)]
struct View {
    client: String,
    server: String,
    first_frame: u32,
}

#[derive(Deserialize, Debug)]
struct ExpectedExchange {
    method: String,
    target: String,
    status: Option<u16>,
}

fn expected(dir: &Path) -> Expected {
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

fn analyze(dir: &Path, with_backend: bool) -> Analysis {
    let results = pipeline::read_sides(lab_captures(dir, with_backend), SideOptions::default());
    pipeline::analyze(results, &[])
}

/// A scenario captured with a small snaplen may get "cannot judge: snaplen" instead of its truth:
/// its captures do not hold what the truth was read from (a full-snaplen capture beside them).
fn snaplen_not_judged(e: &Expected, d: &bothends::diagnose::Diagnosis) -> bool {
    e.snaplen < 256
        && d.verdict == Verdict::CaptureIncomplete
        && d.explanation.starts_with("Cannot judge: snaplen")
}

/// Checks one scenario; returns the problems found.
fn check(dir: &Path) -> Vec<String> {
    let e = expected(dir);
    let a = analyze(dir, true);
    let mut problems = Vec::new();
    let name = &e.scenario;
    let conn = |side: usize, v: &View| {
        a.sides.get(side).and_then(|s| {
            s.connections.iter().position(|c| {
                c.client.to_string() == v.client
                    && c.server.to_string() == v.server
                    && c.first.frame.frame == v.first_frame
            })
        })
    };
    let mut listed = Vec::new();
    for (n, x) in e.connections.iter().enumerate() {
        let pi = x.proxy.as_ref().map(|v| conn(0, v));
        let bi = x.backend.as_ref().map(|v| conn(1, v));
        if pi == Some(None) {
            problems.push(format!("{name} #{n}: proxy view {:?} not found", x.proxy));
            continue;
        }
        if bi == Some(None) {
            problems.push(format!("{name} #{n}: backend view {:?} not found", x.backend));
            continue;
        }
        let (pi, bi) = (pi.flatten(), bi.flatten());
        let Some(k) = a
            .pairing
            .pairs
            .iter()
            .position(|p| (pi.is_some() && p.proxy == pi) || (bi.is_some() && p.backend == bi))
        else {
            problems.push(format!("{name} #{n}: not reported as a proxy→backend connection"));
            continue;
        };
        listed.push(k);
        let pair = &a.pairing.pairs[k];
        if (pair.proxy, pair.backend) != (pi, bi) {
            problems.push(format!(
                "{name} #{n}: paired as proxy {:?} / backend {:?}, expected {pi:?} / {bi:?} ({:?})",
                pair.proxy, pair.backend, pair.method
            ));
        }
        let d = a.diagnoses[k].as_ref().expect("diagnosed");
        if (d.verdict.label(), d.blame.label()) != (x.verdict.as_str(), x.blame.as_str())
            && !snaplen_not_judged(&e, d)
        {
            problems.push(format!(
                "{name} #{n}: {} / {}, expected {} / {}: {}",
                d.verdict, d.blame, x.verdict, x.blame, d.explanation
            ));
        }
        // TLS: judged from TCP, and the explanation says the HTTP inside could not be.
        if x.protocol.as_deref() == Some("tls") {
            let c = pi
                .map(|i| &a.sides[0].connections[i])
                .or(bi.map(|j| &a.sides[1].connections[j]));
            if c.is_some_and(|c| c.app.protocol != bothends::http::Protocol::Tls) {
                problems.push(format!("{name} #{n}: not recognised as TLS"));
            }
            if !d.explanation.contains("TLS") {
                problems.push(format!(
                    "{name} #{n}: the explanation does not say TLS: {}",
                    d.explanation
                ));
            }
        }
        if d.verdict.is_failure() && d.evidence.is_empty() {
            problems.push(format!("{name} #{n}: a failure verdict without evidence"));
        }
        // The HTTP exchanges, as the proxy capture shows them.
        if let Some(p) = pi.map(|i| &a.sides[0].connections[i]) {
            let got: Vec<(String, String, Option<u16>, bool)> = p
                .app
                .exchanges
                .iter()
                .filter_map(|ex| {
                    let r = ex.request.as_ref()?;
                    Some((
                        r.method.clone().unwrap_or_default(),
                        r.target.clone().unwrap_or_default(),
                        ex.response.as_ref().and_then(|r| r.status),
                        r.target_cut,
                    ))
                })
                .collect();
            let want: Vec<(String, String, Option<u16>)> = x
                .exchanges
                .iter()
                .map(|x| (x.method.clone(), x.target.clone(), x.status))
                .collect();
            // A target snaplen cut (flagged) must be the beginning of the real one.
            let same = got.len() == want.len()
                && got
                    .iter()
                    .zip(&want)
                    .all(|(g, w)| g.0 == w.0 && g.2 == w.2 && (g.1 == w.1 || g.3 && w.1.starts_with(&g.1)));
            if !same {
                problems.push(format!("{name} #{n}: exchanges {got:?}, expected {want:?}"));
            }
        }
    }
    if e.others == "ok" {
        for (k, d) in a.diagnoses.iter().enumerate() {
            let d = d.as_ref().expect("diagnosed");
            if !listed.contains(&k) && d.verdict != Verdict::Ok {
                let pair = &a.pairing.pairs[k];
                let c = pair
                    .proxy
                    .map(|i| &a.sides[0].connections[i])
                    .or(pair.backend.map(|j| &a.sides[1].connections[j]));
                problems.push(format!(
                    "{name}: unlisted connection {} frame {} is {} / {} (expected ok): {}",
                    c.map_or(String::new(), |c| format!("{} → {}", c.client, c.server)),
                    c.map_or(0, |c| c.first.frame.frame),
                    d.verdict,
                    d.blame,
                    d.explanation
                ));
            }
        }
    }
    // The clock offset the lab applied to the backend capture (editcap -t), within the estimate's
    // uncertainty plus the lab's own clock noise (namespaces share one clock: 5 ms).
    if !e.backend_capture.is_empty() {
        match a.pairing.clock {
            Some(c) => {
                let want = (e.clock_shift_s * 1e9) as i64;
                let err = (c.backend_minus_proxy_ns - want).abs();
                if err > c.uncertainty_ns + 5_000_000 {
                    problems.push(format!(
                        "{name}: clock offset {} ms ± {} ms, the lab shifted the backend capture by {} ms",
                        c.backend_minus_proxy_ns as f64 / 1e6,
                        c.uncertainty_ns as f64 / 1e6,
                        want as f64 / 1e6
                    ));
                }
            }
            None if a
                .pairing
                .pairs
                .iter()
                .any(|p| p.proxy.is_some() && p.backend.is_some()) =>
            {
                problems.push(format!("{name}: connections paired but no clock offset"));
            }
            None => {}
        }
    }
    problems
}

/// Scenarios bothends still gets wrong, with why. They stay in the suite: the test fails if one of
/// them starts passing (remove it from this list then) or if any other scenario fails.
const KNOWN_WRONG: &[(&str, &str)] = &[];

#[test]
fn lab_scenarios_get_their_ground_truth() {
    let dirs = lab_scenarios();
    assert!(dirs.len() >= 20, "{} lab scenarios", dirs.len());
    let mut problems = Vec::new();
    let mut wrong = Vec::new();
    for d in &dirs {
        let p = check(d);
        let name = d.file_name().unwrap().to_string_lossy().into_owned();
        if !p.is_empty() {
            if KNOWN_WRONG.iter().all(|(k, _)| *k != name) {
                problems.extend(p);
            }
            wrong.push(name);
        }
    }
    for (k, why) in KNOWN_WRONG {
        if !wrong.iter().any(|w| w == k) {
            problems.push(format!("{k} is right now: remove it from KNOWN_WRONG ({why})"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} scenarios right; problems:\n{}",
        dirs.len() - wrong.len(),
        dirs.len(),
        problems.join("\n")
    );
}

/// With the proxy capture alone, each listed connection gets its two-capture verdict, or — where
/// one capture cannot tell — one of these, with an explanation that says what a capture on the
/// backend host would settle. (two-capture verdict/blame, one-capture verdict/blame, why)
const ONE_CAPTURE_FALLBACKS: &[(&str, &str, &str)] = &[
    (
        "connect-timeout/network",
        "connect-timeout/backend",
        "a lost SYN, an ignored SYN and a lost SYN-ACK look the same from the proxy",
    ),
    (
        "capture-incomplete/capture",
        "ok/none",
        "the packets the backend capture dropped are all in the proxy capture",
    ),
];

#[test]
fn lab_scenarios_with_the_proxy_capture_only() {
    let mut problems = Vec::new();
    for dir in lab_scenarios() {
        let e = expected(&dir);
        if KNOWN_WRONG.iter().any(|(k, _)| *k == e.scenario) {
            continue;
        }
        let a = analyze(&dir, false);
        for x in &e.connections {
            let Some(v) = &x.proxy else { continue };
            let Some(k) = a.pairing.pairs.iter().position(|p| {
                p.proxy.is_some_and(|i| {
                    let c = &a.sides[0].connections[i];
                    c.client.to_string() == v.client && c.first.frame.frame == v.first_frame
                })
            }) else {
                problems.push(format!("{}: {} not reported", e.scenario, v.client));
                continue;
            };
            let d = a.diagnoses[k].as_ref().unwrap();
            let got = format!("{}/{}", d.verdict, d.blame);
            let want = format!("{}/{}", x.verdict, x.blame);
            if got == want || snaplen_not_judged(&e, d) {
                continue;
            }
            let allowed = ONE_CAPTURE_FALLBACKS
                .iter()
                .any(|(w, g, _)| *w == want && *g == got);
            let says = d.explanation.contains("capture on the backend host") || got == "ok/none";
            if !allowed || !says {
                problems.push(format!(
                    "{}: {got} with one capture, {want} with two: {}",
                    e.scenario, d.explanation
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The streaming engine (what the command runs: readers in parallel, pairing as connections
/// finish) judges every scenario exactly as the batch path does: with both captures, and with the
/// backend host's capture alone (`--backend-capture`, where the batch path once paired with the
/// proxy capture's rules and judged other connections).
#[test]
fn streaming_and_batch_runs_agree() {
    let key = |a: &Analysis| {
        let side = |s: Side| a.sides.iter().find(|r| r.side == s);
        let mut v: Vec<(String, String, String)> = a
            .pairing
            .pairs
            .iter()
            .zip(&a.diagnoses)
            .map(|(p, d)| {
                let c = p
                    .proxy
                    .and_then(|i| side(Side::Proxy).map(|s| &s.connections[i]))
                    .or(p
                        .backend
                        .and_then(|j| side(Side::Backend).map(|s| &s.connections[j])));
                let id = c.map_or(String::new(), |c| {
                    format!("{}>{}#{}", c.client, c.server, c.first.frame.frame)
                });
                let d = d.as_ref().unwrap();
                (
                    id,
                    format!("{:?}", p.method),
                    format!("{}/{}", d.verdict, d.blame),
                )
            })
            .collect();
        v.sort();
        v
    };
    let (mut backend_alone, mut judged) = (0, 0);
    for dir in lab_scenarios() {
        let e = expected(&dir);
        let mut inputs = vec![("both captures", lab_captures(&dir, true))];
        if !e.backend_capture.is_empty() {
            let only: Vec<_> = lab_captures(&dir, true)
                .into_iter()
                .filter(|(s, _)| *s == Side::Backend)
                .collect();
            inputs.push(("backend capture alone", only));
            backend_alone += 1;
        }
        for (what, sides) in inputs {
            let again: Vec<_> = sides.iter().map(|(s, _)| *s).collect();
            let reopened = lab_captures(&dir, true)
                .into_iter()
                .filter(|(s, _)| again.contains(s))
                .collect();
            let batch = pipeline::analyze(pipeline::read_sides(reopened, SideOptions::default()), &[]);
            let streamed = Analysis::run(
                sides,
                SideOptions::default(),
                pipeline::Mode::Analyze { backends: vec![] },
            );
            judged += key(&streamed).len();
            assert_eq!(key(&batch), key(&streamed), "{}, {what}", e.scenario);
            assert_eq!(
                batch.pairing.clock.map(|c| c.backend_minus_proxy_ns),
                streamed.pairing.clock.map(|c| c.backend_minus_proxy_ns),
                "{}, {what}",
                e.scenario
            );
        }
    }
    assert!(
        backend_alone >= 20,
        "{backend_alone} scenarios with a backend capture"
    );
    assert!(judged >= 100, "{judged} connections judged");
}

/// The report the command writes while reading (streaming) holds the same connections, with the
/// same verdicts, explanations and evidence, as the report built from a whole analysis.
#[test]
fn streamed_json_report_equals_the_built_one() {
    use bothends::report::{self, ReportOptions, SideInfo, stream};
    for dir in lab_scenarios() {
        let e = expected(&dir);
        let mode = || pipeline::Mode::Analyze { backends: vec![] };
        let opts = ReportOptions::default();
        let built = report::build(
            &Analysis::run(lab_captures(&dir, true), SideOptions::default(), mode()),
            &opts,
        );
        let mut out = Vec::new();
        let s = lab_captures(&dir, true);
        let infos = s
            .iter()
            .map(|(side, set)| SideInfo {
                side: *side,
                files: set.summary().files,
            })
            .collect();
        let mut w = stream::Writer::new(stream::Format::Json, infos, &opts, Default::default(), &mut out);
        let end = pipeline::run(s, SideOptions::default(), mode(), &mut w);
        w.finish(end).unwrap();
        let streamed: report::Report =
            serde_json::from_slice(&out).expect("the streamed JSON parses as a report");
        let key = |r: &report::Report| {
            let mut v: Vec<String> = r
                .connections
                .iter()
                .map(|c| {
                    let mut c = c.clone();
                    c.id = String::new();
                    serde_json::to_string(&c).unwrap()
                })
                .collect();
            v.sort();
            v
        };
        assert_eq!(key(&built), key(&streamed), "{}", e.scenario);
        assert_eq!(built.summary, streamed.summary, "{}", e.scenario);
        assert_eq!(built.captures, streamed.captures, "{}", e.scenario);
    }
}

/// Every scenario as `tcpdump -s 96` would have captured it (both captures cut, as `editcap -s
/// 96` does): each connection gets the verdict it gets from the full captures, or "cannot judge:
/// snaplen" (not-judged, saying snaplen) — never another verdict — and a scenario without a
/// failure in full never exits 1 cut.
#[test]
fn every_scenario_cut_to_96_bytes_keeps_its_verdicts_or_says_snaplen() {
    use kit::{cut_to_snaplen, side};
    let key = |a: &Analysis, k: usize| {
        let p = &a.pairing.pairs[k];
        let c = p
            .proxy
            .map(|i| &a.sides[0].connections[i])
            .or(p.backend.map(|j| &a.sides[1].connections[j]))
            .expect("a view");
        (c.client.to_string(), c.first.frame.frame)
    };
    let mut problems = Vec::new();
    let mut judged = (0, 0);
    for dir in lab_scenarios() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let full = analyze(&dir, true);
        let sides = lab_captures(&dir, true)
            .into_iter()
            .map(|(s, set)| side(s, cut_to_snaplen(set, 96)))
            .collect();
        let cut = pipeline::analyze(sides, &[]);
        let mut cut_by_key = std::collections::HashMap::new();
        for k in 0..cut.pairing.pairs.len() {
            cut_by_key.insert(key(&cut, k), cut.diagnoses[k].as_ref().expect("diagnosed"));
        }
        for k in 0..full.pairing.pairs.len() {
            let f = full.diagnoses[k].as_ref().expect("diagnosed");
            let Some(c) = cut_by_key.get(&key(&full, k)) else {
                problems.push(format!("{name} {:?}: not found cut", key(&full, k)));
                continue;
            };
            judged.0 += 1;
            if (c.verdict, c.blame) == (f.verdict, f.blame) {
                judged.1 += 1;
                continue;
            }
            let says_snaplen = c.verdict == Verdict::CaptureIncomplete && c.explanation.contains("snaplen");
            if !says_snaplen {
                problems.push(format!(
                    "{name} {:?}: {}/{} in full, {}/{} cut to 96 bytes: {}",
                    key(&full, k),
                    f.verdict,
                    f.blame,
                    c.verdict,
                    c.blame,
                    c.explanation
                ));
            }
        }
        let fails = |a: &Analysis| a.diagnoses.iter().flatten().any(|d| d.verdict.is_failure());
        if !fails(&full) && fails(&cut) {
            problems.push(format!("{name}: no failure in full, a failure cut to 96 bytes"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Most connections keep their verdict (the rest say "cannot judge: snaplen").
    eprintln!("{} of {} kept their verdict", judged.1, judged.0);
    assert!(
        judged.1 * 10 >= judged.0 * 7,
        "{} of {} kept their verdict",
        judged.1,
        judged.0
    );
}

/// A capture with only the frames of `set` that `keep` keeps, as `editcap -r` writes it (e.g.
/// from a frame on: the capture as if started later; a range left out: packets the capture host
/// lost).
fn kept_frames(mut set: bothends::capture::CaptureSet, keep: &dyn Fn(u32) -> bool) -> Vec<u8> {
    let mut cut = kit::Pcap::new(1);
    while let Some(p) = set.next() {
        if keep(p.frame.frame) {
            cut.record_cut(p.ts_ns, p.data, p.orig_len, p.data.len());
        }
    }
    cut.bytes()
}

/// The lab scenario in `dir` analysed with only the frames `keep` keeps of the capture of `cut`,
/// the other capture whole.
fn analyze_cut(dir: &Path, cut: Side, keep: &dyn Fn(u32) -> bool) -> Analysis {
    let sides = lab_captures(dir, true)
        .into_iter()
        .map(|(side, set)| {
            if side == cut {
                kit::side(side, kept_frames(set, keep))
            } else {
                pipeline::read_side(side, set, SideOptions::default())
            }
        })
        .collect();
    pipeline::analyze(sides, &[])
}

/// A scenario of one connection with a cut capture (see [`analyze_cut`]) and what must become
/// of it.
struct CutCase {
    scenario: &'static str,
    cut: Side,
    keep: fn(u32) -> bool,
    verdict: Verdict,
    blame: &'static str,
    /// Seen in both captures, where the case says.
    paired: Option<bool>,
    /// Byte ranges the alignment finds lost, where the case says.
    lost: Option<usize>,
    says: Option<&'static str>,
    never_says: Option<&'static str>,
    /// The evidence is the backend capture's only.
    backend_evidence: bool,
}

impl CutCase {
    fn check(&self) {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("captures")
            .join(self.scenario);
        let a = analyze_cut(&dir, self.cut, &self.keep);
        let name = self.scenario;
        assert_eq!(a.pairing.pairs.len(), 1, "{name}: one connection");
        let pair = &a.pairing.pairs[0];
        let paired = pair.proxy.is_some() && pair.backend.is_some();
        let lost = a.alignments[0]
            .as_ref()
            .map_or(0, |al| al.dirs.iter().map(|d| d.lost.len()).sum());
        let d = a.diagnoses[0].as_ref().expect("diagnosed");
        assert_eq!(
            (
                d.verdict,
                d.blame.label(),
                self.paired.map(|_| paired),
                self.lost.map(|_| lost)
            ),
            (self.verdict, self.blame, self.paired, self.lost),
            "{name}: {}",
            d.explanation
        );
        if let Some(text) = self.says {
            assert!(d.explanation.contains(text), "{name}: {}", d.explanation);
        }
        if let Some(text) = self.never_says {
            assert!(!d.explanation.contains(text), "{name}: {}", d.explanation);
        }
        if self.backend_evidence {
            assert!(
                d.evidence.iter().all(|e| e.side == Side::Backend),
                "{name}: {:?}",
                d.evidence
            );
        }
    }
}

const CASE: CutCase = CutCase {
    scenario: "",
    cut: Side::Backend,
    keep: |_| true,
    verdict: Verdict::Ok,
    blame: "none",
    paired: Some(true),
    lost: None,
    says: None,
    never_says: None,
    backend_evidence: false,
};

/// Field captures start mid-traffic: each capture counts a connection's bytes from the first one
/// it saw, and may hold only a later part of it. The verdict must stay that of the whole captures
/// (checked against each scenario's expected.json, and the frames by tshark: the cuts fall after
/// the first request of the connection, before the failure).
#[test]
fn a_capture_started_mid_connection_keeps_the_verdict() {
    let cases = [
        // Backend capture from its frame 8 (the backend's ACK of the first request): the two
        // views number the request stream 206 bytes apart. Judged lost-in-transit before the
        // views were put in one numbering ("bytes 218-423 never arrived", acknowledged to byte
        // 218 in the backend's count).
        CutCase {
            scenario: "apache-response-truncated",
            keep: |f| f >= 8,
            verdict: Verdict::ResponseTruncated,
            blame: "backend",
            lost: Some(0),
            ..CASE
        },
        // Backend capture from its frame 12: it shows only retransmissions of the response's
        // first segment (bytes 0-1447), the proxy's capture only a later segment that arrived
        // (2896-3147): disjoint ranges of one stream. Unpaired before (judged backend-timeout
        // from the proxy's view alone, while the backend capture shows the response sent four
        // times).
        CutCase {
            scenario: "apache-lost-in-transit-response",
            keep: |f| f >= 12,
            verdict: Verdict::LostInTransit,
            blame: "network",
            lost: Some(1),
            ..CASE
        },
        // Proxy capture from its frame 8 (the backend's ACK of the POST): its view has no
        // handshake and no request, the backend's has both and its FIN without a response.
        // Judged ok before ("opened and closed normally, without an HTTP exchange").
        CutCase {
            scenario: "apache-backend-empty-reply",
            cut: Side::Proxy,
            keep: |f| f >= 8,
            verdict: Verdict::BackendEmptyReply,
            blame: "backend",
            says: Some("backend capture's account"),
            backend_evidence: true,
            ..CASE
        },
        // Proxy capture from its frame 8, the one segment of the response that reached the proxy
        // (a late part of it): no handshake, no request. The backend's capture shows the response
        // sent six times, never acknowledged. Judged ok before.
        CutCase {
            scenario: "apache-lost-in-transit-response",
            cut: Side::Proxy,
            keep: |f| f >= 8,
            verdict: Verdict::LostInTransit,
            blame: "network",
            says: Some("backend capture's account"),
            ..CASE
        },
        // Proxy capture from its frame 12: after the connection's end, no backend connection at
        // all. Which of the backend capture's connections came from the proxy is then said as with
        // the backend capture alone. None was reported before (exit 0, "no failure in 0
        // connections").
        CutCase {
            scenario: "apache-backend-empty-reply",
            cut: Side::Proxy,
            keep: |f| f >= 12,
            verdict: Verdict::BackendEmptyReply,
            blame: "backend",
            paired: Some(false),
            says: Some("not in the proxy capture"),
            // It is that capture.
            never_says: Some("a capture on the backend host"),
            ..CASE
        },
        // The backend capture holds the handshake only (its first two frames; the capture host
        // lost the rest): the proxy's capture shows the backend acknowledging the whole request,
        // so it was not lost on the way. Judged lost-in-transit before.
        CutCase {
            scenario: "apache-backend-timeout",
            keep: |f| f <= 2,
            verdict: Verdict::BackendTimeout,
            blame: "backend",
            lost: Some(0),
            ..CASE
        },
    ];
    for case in &cases {
        case.check();
    }
}

/// The proxy capture holds the SYN and then misses packets (frames 3-N gone, as a capture host
/// that drops them): no SYN-ACK in its view. The backend capture shows the handshake completing
/// and the request arriving, so the answer reached the proxy host: capture-incomplete, not a
/// connect failure. Checked with tshark: backend frame 4 is the SYN-ACK, 5 the proxy's ACK, 6 the
/// POST's first segment; the proxy capture from frame 8 keeps its SYN (frame 2), data after it,
/// and the backend's RST (frame 27); from frame 40 its SYN only. Judged connect-refused and
/// connect-timeout (SYN-ACKs "lost on the way back") before.
#[test]
fn a_proxy_capture_missing_the_syn_ack_is_not_a_connect_failure() {
    for (from, says) in [
        (8, "missed 8353 bytes"),
        (40, "the answer reached the proxy host"),
    ] {
        let keep = match from {
            8 => (|f| f <= 2 || f >= 8) as fn(u32) -> bool,
            _ => |f| f <= 2 || f >= 40,
        };
        CutCase {
            scenario: "nginx-backend-closed-during-request",
            cut: Side::Proxy,
            keep,
            verdict: Verdict::CaptureIncomplete,
            blame: "capture",
            says: Some(says),
            ..CASE
        }
        .check();
    }
}

/// The same proxy capture from frame 40, alone: it ends with the SYN (its frames are the SYN and an
/// ICMPv6 report before it). A capture stopped in busy traffic ends with such connections; the
/// SYN's answer could not show yet. Judged connect-timeout before ("1 SYN over 0.00 ms").
#[test]
fn a_capture_that_ends_with_a_syn_does_not_call_it_a_timeout() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join("nginx-backend-closed-during-request");
    let (_, set) = lab_captures(&dir, false).remove(0);
    let proxy = kit::side(Side::Proxy, kept_frames(set, &|f| f <= 2 || f >= 40));
    let a = pipeline::analyze(vec![proxy], &[]);
    let d = a.diagnoses[0].as_ref().expect("diagnosed");
    assert_eq!(d.verdict, Verdict::CaptureIncomplete, "{}", d.explanation);
    assert!(
        d.explanation
            .starts_with("The capture ended 0.00 ms after the proxy's SYN"),
        "{}",
        d.explanation
    );
}

/// A RST answering the proxy's SYN is said forged only when the backend capture ran at that
/// moment and shows no RST leaving. Here the backend capture ends before it (it holds its first
/// two frames only): judged rst-from-middlebox before, from the silence of a capture that had
/// stopped.
#[test]
fn a_backend_capture_that_ended_proves_no_forged_rst() {
    // nginx: the backend capture ends with the SYN arriving (its frame 2; the RST is frame 3).
    // apache: it ends before the SYN (two ICMPv6 frames).
    for scenario in ["nginx-connect-refused", "apache-connect-refused"] {
        CutCase {
            scenario,
            keep: |f| f <= 2,
            verdict: Verdict::ConnectRefused,
            blame: "backend",
            paired: None,
            says: Some("does not cover that moment"),
            ..CASE
        }
        .check();
    }
}

/// A backend capture that lost the whole connection at the capture host while it ran
/// (apache-rst-from-middlebox without frames 3 to 11: tshark shows the connection is frames 4 to
/// 10, and the frames kept, 1-2 and 12-13, are ICMPv6 from before and after it). The proxy's view
/// alone still shows the forgery: its RST (proxy frame 13) has TTL 64, the backend's packets
/// (frames 6, 9, 10) TTL 63. It was backend-empty-reply (blame: backend), told as if the backend
/// capture had seen the request arrive.
#[test]
fn a_connection_the_backend_capture_lost_keeps_the_ttl_evidence() {
    CutCase {
        scenario: "apache-rst-from-middlebox",
        keep: |f| f <= 2 || f >= 12,
        verdict: Verdict::RstFromMiddlebox,
        blame: "network",
        paired: Some(false),
        says: Some(
            "with TTL 64, while the backend's own packets arrive with TTL 63: it most likely came from a device in between, not from the backend. (The backend capture holds no packet of this connection, though it ran at the time",
        ),
        ..CASE
    }
    .check();
}

/// A proxy capture that lost packets at the capture host (apache-pooled-before-capture, a
/// healthy scenario, without frames 3 to 39, or 3 to 79) holds a response from its middle, or none
/// of it: its bytes read as no HTTP at all, or as no answer before the proxy closed. The backend
/// capture shows the status line and the proxy acknowledging it: not judged, not the backend's
/// fault (it was backend-bad-response, then backend-timeout: exit 1 on a healthy capture).
#[test]
fn a_response_whose_start_the_proxy_capture_missed_is_not_blamed_on_the_backend() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/apache-pooled-before-capture");
    for resume in [40, 80] {
        let a = analyze_cut(&dir, Side::Proxy, &|f| f <= 2 || f >= resume);
        let ds: Vec<_> = a.diagnoses.iter().flatten().collect();
        assert!(
            ds.iter().all(|d| !d.verdict.is_failure()),
            "from {resume}: {:?}",
            ds.iter().map(|d| d.verdict).collect::<Vec<_>>()
        );
        let d = ds
            .iter()
            .find(|d| d.verdict == Verdict::CaptureIncomplete)
            .expect("one not judged");
        assert!(
            d.explanation
                .contains("backend capture shows the backend answering"),
            "{}",
            d.explanation
        );
    }
}

/// Over every lab scenario, each capture in turn started late (from frame 8, 20 or 80, as
/// `editcap -r` would cut it): no connection is judged lost-in-transit unless the whole captures
/// say so. Bytes sent before the receiver's capture started, or counted from another first byte,
/// or whose ACKs only the sender's capture shows, are not losses (before, this flagged many
/// scenarios with a failure, the backend capture cut from frame 8 or 20).
#[test]
fn a_capture_started_late_raises_no_false_loss() {
    let verdicts =
        |a: &Analysis| -> Vec<Verdict> { a.diagnoses.iter().flatten().map(|d| d.verdict).collect() };
    let mut problems = Vec::new();
    for dir in lab_scenarios() {
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        if lab_captures(&dir, true).len() < 2 {
            continue;
        }
        let full_has_loss = verdicts(&analyze(&dir, true)).contains(&Verdict::LostInTransit);
        for late in [Side::Proxy, Side::Backend] {
            for first in [8, 20, 80] {
                let cut = analyze_cut(&dir, late, &|f| f >= first);
                if !full_has_loss && verdicts(&cut).contains(&Verdict::LostInTransit) {
                    problems.push(format!("{name}: {late:?} capture from frame {first}"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "false lost-in-transit:\n{}",
        problems.join("\n")
    );
}

//! The fuzz targets' code (`fuzz/harness.rs`) run by plain `cargo test`: over a seed corpus made
//! from the repository's captures (`captures/` and `tests/corpus/`) and over every crash input the
//! fuzzers found (`tests/regression/fuzz-<target>-*`). This is CI's fuzz smoke test: it needs no
//! nightly toolchain and runs the exact code libFuzzer runs.
//!
//! The same seeds, written to files, start the fuzzers:
//! `cargo test --test fuzz_seeds -- --ignored write_fuzz_seeds` fills `fuzz/corpus/<target>/`
//! (see `fuzz/README.md`).

#[path = "../fuzz/harness.rs"]
mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use bothends::capture::CaptureSet;
use bothends::tcp::{ConnectionTable, Dir, End, GapKind, Limits, StreamEvent, StreamHandler};

const TARGETS: [&str; 5] = ["capture", "decode", "http", "pipeline", "tcp"];
/// Seeds are cut to this size: libFuzzer mutates small inputs faster.
const MAX_SEED: usize = 64 * 1024;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

/// Every capture file of the repository, sorted by path.
fn capture_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p
                .extension()
                .and_then(|x| x.to_str())
                .is_some_and(|x| matches!(x, "pcap" | "pcapng" | "gz" | "bin" | "cap"))
            {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&root().join("captures"), &mut out);
    walk(&root().join("tests/corpus"), &mut out);
    out.sort();
    out
}

fn name_of(p: &Path) -> String {
    p.strip_prefix(root())
        .unwrap_or(p)
        .to_string_lossy()
        .replace(['/', '.'], "_")
}

/// Records what `tcp` hands a stream handler, in the `http` target's input format.
struct Recorder {
    out: Vec<u8>,
}

impl StreamHandler for Recorder {
    type Output = Vec<u8>;
    fn on_stream(&mut self, dir: Dir, ev: StreamEvent<'_>) {
        let d = dir.idx() as u8;
        match ev {
            StreamEvent::Data { bytes, .. } => {
                for chunk in bytes.chunks(65536) {
                    if chunk.len() <= 63 {
                        self.out.push(d | ((chunk.len() as u8 - 1) << 2));
                    } else {
                        self.out.push(d | (63 << 2));
                        self.out
                            .extend_from_slice(&((chunk.len() - 1) as u16).to_le_bytes());
                    }
                    self.out.extend_from_slice(chunk);
                }
            }
            StreamEvent::Gap { len, kind, .. } => {
                let k = match kind {
                    GapKind::NotCaptured => 0,
                    GapKind::Snaplen => 1,
                    GapKind::Missing => 2,
                    GapKind::Abandoned => 3,
                };
                let b = if len <= 128 {
                    (len - 1) as u8
                } else {
                    128 + (63 - len.leading_zeros()) as u8
                };
                self.out.extend_from_slice(&[d | 2 | (k << 2), b]);
            }
        }
    }
    fn finish(self, ends: [End; 2]) -> Vec<u8> {
        let e = |end: End| match end {
            End::Fin => 0u8,
            End::Rst => 1,
            End::Open => 2,
        };
        let mut v = vec![(e(ends[0]) << 2) | (e(ends[1]) << 4)];
        v.extend_from_slice(&self.out);
        v
    }
}

/// The seed corpus of every target, by target, as (name, bytes).
fn seeds() -> BTreeMap<&'static str, Vec<(String, Vec<u8>)>> {
    let mut s: BTreeMap<&'static str, Vec<(String, Vec<u8>)>> = BTreeMap::new();
    let files = capture_files();
    for path in &files {
        let bytes = std::fs::read(path).expect("read capture");
        let name = name_of(path);
        let cut = &bytes[..bytes.len().min(MAX_SEED)];
        s.entry("capture").or_default().push((name.clone(), cut.to_vec()));
        s.entry("pipeline")
            .or_default()
            .push((name.clone(), harness::join_pipeline(2, cut, &[])));
        let Ok(mut set) = CaptureSet::from_bytes(&name, bytes.clone()) else {
            continue;
        };
        // decode: the first frames of each link type, and a few later ones.
        let mut n = 0;
        let mut table = ConnectionTable::new(Limits::default(), |_| Recorder { out: Vec::new() });
        while let Some(p) = set.next() {
            n += 1;
            if let Some(i) = harness::LINKS.iter().position(|&l| l == p.link.0) {
                if n <= 3 || n % 97 == 0 {
                    let mut v = vec![i as u8, 0];
                    v.extend_from_slice(p.data);
                    s.entry("decode").or_default().push((format!("{name}-{n}"), v));
                }
            }
            if let Ok(seg) = bothends::decode::decode(&p) {
                table.push(&seg);
            }
        }
        // tcp: the first segments of the capture, in the `tcp` target's format.
        if let Ok(mut set) = CaptureSet::from_bytes(&name, bytes) {
            let mut v = vec![0u8];
            let mut flows: Vec<(bothends::decode::Endpoint, bothends::decode::Endpoint)> = Vec::new();
            let mut last_t = None;
            let mut n = 0;
            while let Some(p) = set.next() {
                let Ok(seg) = bothends::decode::decode(&p) else {
                    continue;
                };
                let k = match flows
                    .iter()
                    .position(|&(a, b)| (a, b) == (seg.src, seg.dst) || (b, a) == (seg.src, seg.dst))
                {
                    Some(k) => k,
                    None => {
                        flows.push((seg.src, seg.dst));
                        flows.len() - 1
                    }
                };
                let d = (flows[k].0 != seg.src) as u8;
                let ms = last_t.map_or(0, |l: i64| ((seg.ts_ns - l) / 1_000_000).clamp(0, 255)) as u8;
                last_t = Some(seg.ts_ns);
                let units = seg.payload.len().div_ceil(8).min(255);
                let ack_mode = if seg.flags.ack() { 0 } else { 3 };
                v.push(d | (2 << 1) | (ack_mode << 3) | (((k % 4) as u8) << 5));
                v.push(seg.flags.0);
                v.extend_from_slice(&seg.seq.to_le_bytes());
                v.push(ms);
                v.push(units as u8);
                let mut pl = seg.payload[..seg.payload.len().min(units * 8)].to_vec();
                pl.resize(units * 8, b' ');
                v.extend_from_slice(&pl);
                n += 1;
                if n == 300 || v.len() > MAX_SEED {
                    break;
                }
            }
            if n > 2 {
                s.entry("tcp").or_default().push((name.clone(), v));
            }
        }
        // http: the first connections that carried something.
        let conns = table.finish();
        for (i, c) in conns.iter().filter(|c| c.app.len() > 1).take(4).enumerate() {
            let mut v = c.app.clone();
            v[0] |= c.syn.is_some() as u8;
            v.truncate(MAX_SEED);
            s.entry("http").or_default().push((format!("{name}-{i}"), v));
        }
    }
    // pipeline: the lab's pairs of captures, with the default and with small limits.
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root().join("captures"))
        .expect("captures/")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("proxy.pcap").exists() && p.join("backend.pcap").exists())
        .collect();
    dirs.sort();
    for d in dirs {
        let p = std::fs::read(d.join("proxy.pcap")).unwrap();
        let b = std::fs::read(d.join("backend.pcap")).unwrap();
        let (p, b) = (&p[..p.len().min(MAX_SEED / 2)], &b[..b.len().min(MAX_SEED / 2)]);
        let name = name_of(&d);
        for cfg in [0u8, 1, 16, 17, 16 | 32, 16 | 96, 16 | 224 | 1] {
            s.entry("pipeline")
                .or_default()
                .push((format!("{name}-pair-{cfg}"), harness::join_pipeline(cfg, p, b)));
        }
    }
    s
}

/// Crash inputs the fuzzers found, committed under tests/regression/ as `fuzz-<target>-<name>`.
fn regression_inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let prefix = format!("fuzz-{target}-");
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(root().join("tests/regression"))
        .expect("tests/regression/")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with(&prefix)
                .then(|| (name, std::fs::read(e.path()).unwrap()))
        })
        .collect();
    v.sort();
    v
}

fn run(target: &str, data: &[u8]) {
    match target {
        "capture" => harness::capture(data),
        "decode" => harness::decode(data),
        "http" => harness::http(data),
        "pipeline" => harness::pipeline(data),
        "tcp" => harness::tcp(data),
        _ => unreachable!(),
    }
}

#[test]
fn fuzz_targets_survive_their_seed_corpus() {
    let seeds = seeds();
    for target in TARGETS {
        let inputs = &seeds[target];
        assert!(inputs.len() >= 10, "{target}: {} seeds", inputs.len());
        for (_, data) in inputs {
            // Each seed also cut short: the shapes a truncated download takes.
            run(target, data);
            run(target, &data[..data.len() / 2]);
        }
    }
}

#[test]
fn fuzz_targets_survive_every_crash_input_found() {
    let mut replayed = 0;
    for target in TARGETS {
        for (name, data) in regression_inputs(target) {
            eprintln!("{name}");
            run(target, &data);
            replayed += 1;
        }
    }
    assert!(replayed > 0, "no crash input found in tests/regression/");
}

/// Writes the seed corpus to fuzz/corpus/<target>/ (not committed: it is made from the captures).
#[test]
#[ignore]
fn write_fuzz_seeds() {
    for (target, inputs) in seeds() {
        let dir = root().join("fuzz/corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in inputs {
            std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
        }
        eprintln!("{target}: {} seeds", seeds_len(&dir));
    }
}

fn seeds_len(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

/// Times every input of the fuzzers' corpora (fuzz/corpus/<target>/) and prints the slowest of
/// each target: inputs that come near libFuzzer's time limit show here first. Run it in release:
/// `cargo test --release --test fuzz_seeds -- --ignored slowest_corpus_inputs --nocapture`.
#[test]
#[ignore]
fn slowest_corpus_inputs() {
    for target in TARGETS {
        let dir = root().join("fuzz/corpus").join(target);
        let Ok(rd) = std::fs::read_dir(&dir) else { continue };
        let mut times: Vec<(std::time::Duration, String, usize)> = Vec::new();
        for e in rd.flatten() {
            let data = std::fs::read(e.path()).unwrap();
            let start = std::time::Instant::now();
            run(target, &data);
            times.push((
                start.elapsed(),
                e.file_name().to_string_lossy().into_owned(),
                data.len(),
            ));
        }
        times.sort();
        let total: std::time::Duration = times.iter().map(|t| t.0).sum();
        eprintln!("{target}: {} inputs, {total:?} in all; slowest:", times.len());
        for (t, name, len) in times.iter().rev().take(3) {
            eprintln!("  {t:?}  {name} ({len} bytes)");
        }
    }
}

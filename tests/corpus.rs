//! Every file of the shared corpus through the real binary: it never panics or hangs; it exits 0
//! (a capture, possibly damaged after its header: then with a warning) or 2 (not a capture: one
//! line on stderr naming the file). Packet counts are checked against the corpus manifest, whose
//! `packets` column is what Wireshark's capinfos counts (an independent reader).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs bothends with a deadline: a hang is a failure, not a stuck test.
fn run(args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_bothends"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("bothends runs");
    // Drain both pipes while waiting: a child blocked on a full pipe is not a hang of bothends.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stdout, &mut v).ok();
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut v).ok();
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("bothends {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let out = out_reader.join().expect("stdout reader");
    let err = err_reader.join().expect("stderr reader");
    Run {
        code: status.code(),
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

#[test]
fn every_corpus_file_is_read_or_refused_cleanly() {
    let manifest = std::fs::read_to_string(corpus_dir().join("MANIFEST.tsv")).expect("corpus manifest");
    let mut failures = Vec::new();
    let mut files = 0;
    for line in manifest.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, packets) = (cols[0], cols[6]);
        let path = corpus_dir().join(file);
        let path_s = path.to_string_lossy().into_owned();
        files += 1;
        let r = run(&["flows", &path_s, "--format", "json"]);
        match r.code {
            Some(0) => {
                let doc: serde_json::Value = match serde_json::from_str(&r.stdout) {
                    Ok(v) => v,
                    Err(e) => {
                        failures.push(format!("{file}: output is not JSON ({e})"));
                        continue;
                    }
                };
                let cap = &doc["captures"][0];
                let got = cap["packets"].as_u64().unwrap_or(u64::MAX);
                let warnings = cap["warnings"].as_array().map_or(0, Vec::len);
                // "N" → exactly N packets, no warning; "N (then cut short)" → N packets and a
                // warning; "unreadable (...)" → what came before the damage, and a warning.
                let first_word = packets.split(' ').next().unwrap_or("");
                if let Ok(n) = first_word.parse::<u64>() {
                    if got != n {
                        failures.push(format!("{file}: {got} packets, capinfos counts {n}"));
                    }
                    if packets.contains("cut short") && warnings == 0 {
                        failures.push(format!("{file}: cut short but no warning"));
                    }
                } else if warnings == 0 {
                    failures.push(format!(
                        "{file}: capinfos cannot read it ({packets}) but bothends gave no warning"
                    ));
                }
            }
            Some(2) => {
                let line = r.stderr.trim_end();
                if !line.contains(file) || line.lines().count() != 1 {
                    failures.push(format!(
                        "{file}: exit 2 without a one-line message naming the file: {line:?}"
                    ));
                }
                if !packets.starts_with("unreadable") {
                    failures.push(format!(
                        "{file}: refused, but capinfos reads {packets} packets: {line}"
                    ));
                }
            }
            other => failures.push(format!("{file}: exit code {other:?}, stderr: {}", r.stderr)),
        }
    }
    assert!(files >= 80, "the corpus has {files} files");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn not_a_capture_is_exit_2_naming_the_file() {
    let r = run(&["flows", env!("CARGO_MANIFEST_DIR")]);
    assert_eq!(r.code, Some(2));
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let r = run(&["flows", &manifest.to_string_lossy()]);
    assert_eq!(r.code, Some(2));
    assert!(r.stderr.starts_with("bothends: "), "{}", r.stderr);
    assert!(
        r.stderr.contains("Cargo.toml: not a pcap or pcapng capture"),
        "{}",
        r.stderr
    );
    let r = run(&["flows", "/nonexistent/x.pcap"]);
    assert_eq!(r.code, Some(2));
    assert!(
        r.stderr.contains("/nonexistent/x.pcap: cannot open"),
        "{}",
        r.stderr
    );
}

#[test]
fn the_corpus_facts_stated_in_its_readme_hold() {
    // zeek/http-get.pcap: one connection 141.142.228.5:59856 → 192.150.187.43:80, 136 request
    // bytes, 5007 response bytes.
    let f = corpus_dir().join("zeek/http-get.pcap");
    let r = run(&["flows", &f.to_string_lossy(), "--format", "json"]);
    assert_eq!(r.code, Some(0));
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let conns = doc["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 1);
    let v = &conns[0]["views"]["single"];
    assert_eq!(v["client"], "141.142.228.5:59856");
    assert_eq!(v["server"], "192.150.187.43:80");
    assert_eq!(v["bytes"]["client_to_server"], 136);
    assert_eq!(v["bytes"]["server_to_client"], 5007);
}

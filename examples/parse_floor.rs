//! The parse-only floor of the benchmark: read every packet of the given capture files and decode
//! it to a TCP segment, nothing else (no reassembly, no HTTP). `bothends flows` can approach this,
//! never beat it.
//!
//! ```text
//! parse_floor FILE...
//! ```

use bothends::capture::{CaptureSet, Input};
use bothends::decode::{self, DecodeStats};

fn main() {
    let inputs: Vec<Input> = std::env::args().skip(1).map(|a| Input::from_arg(&a)).collect();
    if inputs.is_empty() {
        eprintln!("usage: parse_floor FILE...");
        std::process::exit(2);
    }
    let mut set = match CaptureSet::open(&inputs) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("parse_floor: {e}");
            std::process::exit(2);
        }
    };
    let mut stats = DecodeStats::default();
    let mut payload = 0u64;
    while let Some(p) = set.next() {
        let r = decode::decode(&p);
        if let Ok(s) = &r {
            payload += s.payload_len as u64;
        }
        stats.count(&r);
    }
    println!(
        "{} packets, {} TCP, {payload} payload bytes",
        set.summary().packets,
        stats.tcp
    );
}

//! Bugs found by fuzzing and hostile inputs, each a named test over its input, committed under
//! `tests/regression/` (`fuzz-<target>-<what>` files are also replayed by `tests/fuzz_seeds.rs`).

#[path = "../fuzz/harness.rs"]
mod harness;

use std::path::Path;

fn input(name: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/regression")
        .join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// A proxy capture with a failed connection and a backend capture with no packet: the ladder
/// diagram took the backend capture's span as starting at i64::MIN and subtracted a tolerance
/// from it (`attempt to subtract with overflow` in `report/ladder.rs`).
#[test]
fn ladder_with_an_empty_backend_capture() {
    let data = input("fuzz-pipeline-empty-backend-capture");
    let (cfg, proxy, backend) = harness::split_pipeline(&data).expect("a pipeline input");
    assert_eq!(cfg & 2, 0, "analyze, not flows");
    assert_eq!(backend.len(), 24, "a pcap header and no packet");
    assert!(proxy.len() > 1000);
    harness::pipeline(&data);
}

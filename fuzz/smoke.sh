#!/usr/bin/env bash
# Fuzz smoke run for CI: builds the five cargo-fuzz targets and runs each for SECONDS (default 45)
# on its seed corpus (made from the repository's captures), with the limits of the long runs.
# Any crash, hang (>10 s for one input) or out-of-memory (one allocation >512 MB, or 1 GB resident)
# fails the run; the input that did it is left in fuzz/artifacts/<target>/.
#
# Needs a nightly toolchain and cargo-fuzz; installs them when missing (rustup, crates.io).
# Without a nightly toolchain the same code still runs on stable in `cargo test`
# (tests/fuzz_seeds.rs), over the seed corpus and every committed crash input.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET="${1:-45}"
export CARGO_TERM_COLOR=never

# Without them (no way to install), the run is skipped, loudly: `cargo test` has already run the
# same harness on stable over the seeds and every committed crash input (tests/fuzz_seeds.rs).
skip() {
    echo "fuzz smoke: SKIPPED: $1 (the stable run of the same harness is tests/fuzz_seeds.rs)"
    exit 0
}
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal || skip "no nightly toolchain could be installed"
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked || skip "cargo-fuzz could not be installed"
fi

# Seeds: fuzz/corpus/<target>/ (kept between runs; libFuzzer adds what it finds).
cargo test --locked --test fuzz_seeds -- --ignored write_fuzz_seeds

cargo +nightly fuzz build -O -a   # -a: debug assertions and overflow checks
bin="${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release"
[ -d "$bin" ] || bin="fuzz/target/x86_64-unknown-linux-gnu/release"

passed=0
failed=0
for spec in capture:65536 decode:16384 http:65536 pipeline:70000 tcp:65536; do
    t="${spec%%:*}"
    max_len="${spec##*:}"
    mkdir -p "fuzz/artifacts/$t"
    echo "fuzz smoke: $t for ${SECONDS_PER_TARGET} s"
    dict=()
    [ "$t" = capture ] || [ "$t" = decode ] || dict=(-dict=fuzz/http.dict)
    # rss_limit 1024, not the long runs' 512: libFuzzer keeps the whole corpus in memory and ASan
    # quarantines 256 MB of freed blocks, so a corpus grown by long runs (tens of MB) passed 512 MB
    # while loading, with every input alone under 30 ms (checked). One allocation over 512 MB still
    # fails the run (malloc_limit).
    if "$bin/$t" -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=1024 \
        -malloc_limit_mb=512 -max_len="$max_len" -print_final_stats=1 "${dict[@]}" \
        -artifact_prefix="fuzz/artifacts/$t/" "fuzz/corpus/$t" >"fuzz/artifacts/$t.log" 2>&1; then
        passed=$((passed + 1))
        grep -E '^stat::number_of_executed_units' "fuzz/artifacts/$t.log" || true
    else
        failed=$((failed + 1))
        echo "fuzz smoke: $t FAILED; the last lines of its log:"
        tail -n 40 "fuzz/artifacts/$t.log"
    fi
done
echo "fuzz smoke: $passed passed, $failed failed"
[ "$failed" -eq 0 ]

#!/usr/bin/env bash
# bothends benchmark: generates large captures (once, into bench/data/), then measures, for each:
# the parse-only floor, `bothends flows`, `bothends analyze` (the pair), and `tshark -q -z conv,tcp`,
# with wall time, throughput and peak RSS (GNU time).
#
#   bench/run.sh            full run: a pair of 600 MB captures, a 300 MB pair (RSS at two sizes),
#                           200 000 short connections
#   bench/run.sh --quick    a pair of 60 MB and 20 000 short connections (a minute)
#   NO_TSHARK=1 bench/run.sh   skip tshark (slow: seconds per file, ten times bothends)
#   RUNS=1 bench/run.sh        one run per row instead of the median of 5
set -euo pipefail
cd "$(dirname "$0")/.."
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)"; exit 2; }

big=600 small=300 short=200000
if [ "${1:-}" = "--quick" ]; then big=60 small=30 short=20000; fi
data=bench/data
mkdir -p "$data"

cargo build --release --quiet --examples --bin bothends
bin=target/release/bothends
gen=target/release/examples/gencap
floor=target/release/examples/parse_floor

[ -f "$data/pair-$big/proxy.pcap" ] || "$gen" pair "$data/pair-$big" "$big"
[ -f "$data/pair-$small/proxy.pcap" ] || "$gen" pair "$data/pair-$small" "$small"
[ -f "$data/short-$short.pcap" ] || "$gen" short "$data/short-$short.pcap" "$short"

# measure NAME BYTES PACKETS CMD...: runs CMD $RUNS times (default 5; tshark once) and prints one
# row: the median wall time (runs on a 2-core machine vary by 10-30%) and the largest peak RSS
measure() {
  local name=$1 bytes=$2 packets=$3; shift 3
  local runs=${RUNS:-5} tmp all="" i out
  [ "$1" = tshark ] && runs=1
  tmp=$(mktemp)
  for ((i = 0; i < runs; i++)); do
    # exit code 1 (a failure verdict found) is a normal outcome here
    /usr/bin/time -f "%e %M" -o "$tmp" "$@" >/dev/null 2>/dev/null || true
    all+="$(tail -1 "$tmp")"$'\n'
  done
  rm -f "$tmp"
  out=$(printf '%s' "$all" | sort -n | awk '{ s[NR] = $1; if ($2 > r) r = $2 } END { print s[int((NR + 1) / 2)], r }')
  local secs=${out% *} rss_kb=${out#* }
  awk -v n="$name" -v b="$bytes" -v p="$packets" -v s="$secs" -v r="$rss_kb" 'BEGIN {
    if (s < 0.001) s = 0.001;
    printf "%-44s %8.2f s %9.1f MB/s %10.0f pkt/s %8.1f MB RSS\n", n, s, b/1048576/s, p/s, r/1024 }'
}

packets() { "$floor" "$@" | awk '{print $1}'; }

echo "bothends $("$bin" --version | awk '{print $2}') benchmark on $(nproc) cores, $(date -u +%F)"
for pair in "$data/pair-$small" "$data/pair-$big"; do
  p=$pair/proxy.pcap b=$pair/backend.pcap
  pb=$(stat -c %s "$p"); bb=$(stat -c %s "$b")
  pp=$(packets "$p"); bp=$(packets "$b")
  echo
  echo "== $pair: proxy $((pb >> 20)) MB / $pp packets, backend $((bb >> 20)) MB / $bp packets"
  measure "parse-only floor (proxy.pcap)" "$pb" "$pp" "$floor" "$p"
  measure "flows proxy.pcap --format json" "$pb" "$pp" "$bin" flows "$p" --format json
  measure "parse-only floor (both, one after the other)" "$((pb + bb))" "$((pp + bp))" "$floor" "$p" "$b"
  # analyze reads the two files on two threads: the floor on two cores too, for a fair ratio
  measure "parse-only floor (both, in parallel)" "$((pb + bb))" "$((pp + bp))" \
    bash -c '"$0" "$1" >/dev/null & "$0" "$2" >/dev/null; wait' "$floor" "$p" "$b"
  measure "analyze proxy.pcap backend.pcap --format json" "$((pb + bb))" "$((pp + bp))" "$bin" analyze "$p" "$b" --format json
  if [ -z "${NO_TSHARK:-}" ] && command -v tshark >/dev/null; then
    measure "tshark -r proxy.pcap -q -z conv,tcp" "$pb" "$pp" tshark -n -r "$p" -q -z conv,tcp
  fi
done
s=$data/short-$short.pcap
sb=$(stat -c %s "$s"); sp=$(packets "$s")
echo
echo "== $s: $((sb >> 20)) MB / $sp packets, $short connections"
measure "parse-only floor" "$sb" "$sp" "$floor" "$s"
measure "flows --format json" "$sb" "$sp" "$bin" flows "$s" --format json
measure "analyze (one capture) --format json" "$sb" "$sp" "$bin" analyze "$s" --format json
if [ -z "${NO_TSHARK:-}" ] && command -v tshark >/dev/null; then
  measure "tshark -r FILE -q -z conv,tcp" "$sb" "$sp" tshark -n -r "$s" -q -z conv,tcp
fi

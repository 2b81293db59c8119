#!/usr/bin/env bash
# late-start-sweep.sh [BOTHENDS]: every lab scenario with both captures, each capture in turn cut
# as if it started late or lost packets on the capture host (editcap -r FILE OUT 1-2 N-: its
# first two frames and everything from frame N on, N = 8 12 20 40 80), analysed with the other
# whole. Prints one line per cut run that has a failure verdict the whole captures do not give
# (capture-incomplete aside): a wrong verdict on a field-like capture. 128 lines at 66b7868, 14
# at the end of stop 18, 9 at stop 19, 2 at stop 20 (the closing notes say what they are).
# Needs editcap (Debian: wireshark-common or tshark) and python3; BOTHENDS defaults to the release
# build.
set -u  # (bothends exits 1 when it finds a failure: not an error here)
cd "$(dirname "$0")/../.."
B=${1:-target/release/bothends}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
verdicts() {
  "$B" analyze "$@" --no-progress --format json 2>/dev/null | python3 -c "import json,sys; print(' '.join(sorted(set(c['verdict'] for c in json.load(sys.stdin)['connections'] if c['outcome']!='ok'))))"
}
for d in captures/*/; do
  s=$(basename "$d"); [ -f "$d/backend.pcap" ] || continue
  full=$(verdicts "$d/proxy.pcap" "$d/backend.pcap")
  for cut in 8 12 20 40 80; do
    editcap -r "$d/backend.pcap" "$tmp/b.pcap" 1-2 "$cut-10000000" >/dev/null 2>&1
    editcap -r "$d/proxy.pcap" "$tmp/p.pcap" 1-2 "$cut-10000000" >/dev/null 2>&1
    for side in backend proxy; do
      if [ $side = backend ]; then r=$(verdicts "$d/proxy.pcap" "$tmp/b.pcap"); else r=$(verdicts "$tmp/p.pcap" "$d/backend.pcap"); fi
      for x in $r; do
        case " $full capture-incomplete " in *" $x "*) ;; *) echo "$s: $side capture from frame $cut: whole [$full], cut [$r]"; break ;; esac
      done
    done
  done
done

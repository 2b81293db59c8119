#!/bin/bash
D=$1; B=/tmp/field-cut/bothends; cd $D
$B analyze proxy.pcap backend.pcap --format json --no-progress > pair.json 2>pair.err; echo "pair $?" > rc.txt
$B analyze proxy.pcap --format json --no-progress > p.json 2>p.err; echo "proxy $?" >> rc.txt
$B analyze --backend-capture backend.pcap --format json --no-progress > b.json 2>b.err; echo "backend $?" >> rc.txt
$B flows proxy.pcap --format json --no-progress > fp.json 2>fp.err; echo "flowsp $?" >> rc.txt
$B flows backend.pcap --format json --no-progress > fb.json 2>fb.err; echo "flowsb $?" >> rc.txt
for j in pair p b fp fb; do
  printf '%s conns=%s ' $j "$(jq '.summary.connections' $j.json 2>/dev/null)"
  jq -c '[.connections[] | select(.verdict!="ok") | .verdict+"/"+.blame] | group_by(.) | map({(.[0]):length}) | add' $j.json 2>/dev/null
done > summary.txt
cat info.txt rc.txt summary.txt

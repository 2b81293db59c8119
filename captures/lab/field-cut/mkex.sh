#!/bin/bash
# mkex.sh NAME RUNDIR FILTER  -> examples/NAME/{proxy,backend}.pcap cut with tshark display filter, re-analyzed
N=$1 R=/tmp/field-cut/runs/$2 F=$3
E=/tmp/field-cut/examples/$N; mkdir -p $E
tshark -r $R/proxy.pcap -Y "$F" -w $E/proxy.pcap -F pcap 2>/dev/null
tshark -r $R/backend.pcap -Y "$F" -w $E/backend.pcap -F pcap 2>/dev/null
cd $E; ls -la *.pcap
/tmp/field-cut/bothends analyze proxy.pcap backend.pcap --format json --no-progress > out.json; echo "exit $?"
jq -c '.connections[] | {id,verdict,blame,outcome,explanation,ev:[.evidence[]|"\(.capture)#\(.frame) \(.what)"]}' out.json

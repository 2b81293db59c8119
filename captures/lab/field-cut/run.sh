#!/bin/bash
# usage: run.sh NAME MIX MODE [SNAP] [BUF]
#  MIX: keep|close|abk|abpost|mix    MODE: sigint|sigkill|late|smallbuf|skewp|skewb|latekill
set -uo pipefail; set -m
source /tmp/field-cut/lib.sh
NAME=$1 MIX=$2 MODE=$3 SNAP=${4:-0} BUF=${5:-524288}
case $MODE in smallbuf|combo*) BUF=64;; esac
SKEW=${SKEW:-0.5}
D=/tmp/field-cut/runs/$NAME; rm -rf $D; mkdir -p $D
DUR=4
L=()
start_load() {
  case $MIX in
   keep)  ip netns exec $NS_C nice -n 10 timeout 15 wrk -t1 -c16 -d${DUR}s --timeout 20s -s $WORK/mix.lua http://$PRX_FRONT -- keep 1 >$D/load.txt 2>&1 & L+=($!);;
   close) ip netns exec $NS_C nice -n 10 timeout 15 wrk -t1 -c8 -d${DUR}s --timeout 20s -s $WORK/mix.lua http://$PRX_FRONT -- close 2 >$D/load.txt 2>&1 & L+=($!);;
   abk)   ip netns exec $NS_C nice -n 10 timeout 15 ab -k -r -q -c4 -t $DUR -n 3000000 http://$PRX_FRONT/f/r50000 >$D/load.txt 2>&1 & L+=($!);;
   abpost) ip netns exec $NS_C nice -n 10 timeout 15 ab -r -q -c4 -t $DUR -n 3000000 -p $WORK/post/b65536 -T application/octet-stream http://$PRX_FRONT/chunkpost/sink >$D/load.txt 2>&1 & L+=($!);;
   mix)
     ip netns exec $NS_C nice -n 10 timeout 15 wrk -t1 -c8 -d${DUR}s --timeout 20s -s $WORK/mix.lua http://$PRX_FRONT -- keep 1 >$D/load1.txt 2>&1 & L+=($!)
     ip netns exec $NS_C nice -n 10 timeout 15 wrk -t1 -c3 -d${DUR}s --timeout 20s -s $WORK/mix.lua http://$PRX_FRONT -- close 2 >$D/load2.txt 2>&1 & L+=($!)
     ip netns exec $NS_C nice -n 10 timeout 15 ab -k -r -q -c2 -t $DUR -n 3000000 http://$PRX_FRONT/f/r20000 >$D/load3.txt 2>&1 & L+=($!)
     ip netns exec $NS_C nice -n 10 timeout 15 ab -r -q -c2 -t $DUR -n 3000000 -p $WORK/post/b16384 -T application/octet-stream http://$PRX_FRONT/nk/sink >$D/load4.txt 2>&1 & L+=($!);;
  esac
}
CP= CB=
start_caps() {
  ip netns exec $NS_P nice -n -5 tcpdump -i fc-p1 -s $SNAP -B $BUF -n -w $D/proxy.pcap 2>$D/tcpdump-proxy.txt & CP=$!
  ip netns exec $NS_B nice -n -5 tcpdump -i fc-b0 -s $SNAP -B $BUF -n -w $D/backend.pcap 2>$D/tcpdump-backend.txt & CB=$!
  for i in $(seq 1 50); do grep -q 'listening on' $D/tcpdump-proxy.txt 2>/dev/null && grep -q 'listening on' $D/tcpdump-backend.txt 2>/dev/null && return; sleep 0.05; done
}
waitp() { for i in $(seq 1 100); do kill -0 $1 2>/dev/null || break; sleep 0.05; done; kill -KILL $1 2>/dev/null; wait $1 2>/dev/null; }
rnd() { python3 -c "import random;print(round(random.uniform($1,$2),2))"; }
case $MODE in
  sigint|sigkill|skewp|skewb)
    start_caps; start_load; T=$(rnd 1.2 3.3); sleep $T
    sig=INT; [ $MODE = sigkill ] && sig=KILL
    case $MODE in
      skewp) kill -INT $CP; sleep $SKEW; kill -INT $CB;;
      skewb) kill -INT $CB; sleep $SKEW; kill -INT $CP;;
      *) kill -$sig $CP; kill -$sig $CB;;
    esac
    echo "stop_at=$T sig=$sig skew=$SKEW" > $D/info.txt;;
  late|latekill)
    start_load; T=$(rnd 0.8 1.8); sleep $T; start_caps
    if [ $MODE = latekill ]; then sleep $(rnd 0.8 1.5); kill -INT $CP; kill -INT $CB; fi
    echo "late_start=$T" > $D/info.txt;;
  combo|combokill)
    start_load; T=$(rnd 0.5 1.2); sleep $T; start_caps; T2=$(rnd 1.0 2.0); sleep $T2
    if [ $MODE = combokill ]; then kill -KILL $CP $CB; else kill -INT $CP; sleep $SKEW; kill -INT $CB; fi
    echo "late_start=$T stop_after=$T2 skew=$SKEW" > $D/info.txt;;
  smallbuf)
    start_caps; start_load; echo "buf=$BUF" > $D/info.txt;;
esac
for p in "${L[@]}"; do wait $p; done
if kill -0 $CP 2>/dev/null || kill -0 $CB 2>/dev/null; then sleep 1; kill -INT $CP $CB 2>/dev/null; fi
waitp $CP; waitp $CB
echo "mix=$MIX mode=$MODE snap=$SNAP buf=$BUF" >> $D/info.txt
grep -hE 'captured|received|dropped' $D/tcpdump-*.txt | tr '\n' ' ' >> $D/info.txt; echo >> $D/info.txt
ls -la $D/*.pcap | awk '{print $5, $9}' >> $D/info.txt
/tmp/field-cut/analyze.sh $D

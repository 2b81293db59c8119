#!/bin/bash
source /tmp/field-cut/lib.sh
for p in $(tac $PIDFILE 2>/dev/null); do kill -TERM $p 2>/dev/null; done
sleep 2
for p in $(cat $PIDFILE 2>/dev/null); do kill -0 $p 2>/dev/null && kill -KILL $p; done
: > $PIDFILE
for ns in $NS_C $NS_P $NS_B; do ip netns del $ns 2>/dev/null; done
ip netns list

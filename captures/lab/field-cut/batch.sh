#!/bin/bash
cd /tmp/field-cut
for mode in sigint sigkill late latekill smallbuf skewp skewb; do
  for mix in keep close abk abpost mix; do
    ./run.sh $mode-$mix-s0 $mix $mode 0 > /dev/null 2>&1
    [ -f STOP ] && exit
  done
done
for mode in sigint sigkill late smallbuf; do
  for mix in keep close mix; do
    ./run.sh $mode-$mix-s96 $mix $mode 96 > /dev/null 2>&1
    [ -f STOP ] && exit
  done
done
echo done > batch.done

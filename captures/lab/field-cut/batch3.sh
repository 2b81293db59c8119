#!/bin/bash
cd /tmp/field-cut
for mix in keep close abpost mix; do
  for sk in 0.02 0.1 0.5; do
    SKEW=$sk ./run.sh r3-skewp-$mix-s0-$sk $mix skewp 0 >/dev/null 2>&1
    SKEW=$sk ./run.sh r3-skewb-$mix-s96-$sk $mix skewb 96 >/dev/null 2>&1
    [ "$(date -u +%H%M)" \> "2333" ] && exit
  done
done
echo done > batch3.done

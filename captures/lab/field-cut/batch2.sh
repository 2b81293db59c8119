#!/bin/bash
cd /tmp/field-cut
i=0
for rep in 1 2; do
for mix in keep close abk abpost mix; do
  for spec in "sigint 0" "sigint 96" "combo 0" "combo 96" "combokill 0" "skewp 96" "skewb 0"; do
    set -- $spec; i=$((i+1))
    sk=$(python3 -c "import random;print(random.choice([0.02,0.05,0.1,0.2]))")
    SKEW=$sk ./run.sh r2-$1-$mix-s$2-$rep $mix $1 $2 > /dev/null 2>&1
    [ -f STOP ] && exit
    [ "$(date -u +%H%M)" \> "2333" ] && exit
  done
done; done
echo done > batch2.done

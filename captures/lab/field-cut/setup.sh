#!/bin/bash
set -euo pipefail
source /tmp/field-cut/lib.sh
: > $PIDFILE
make_content; make_net; start_nginx; start_apache; write_lua
for i in $(seq 1 100); do
  o=$(inns $NS_C ab -q -n1 "http://$PRX_FRONT/f/r200" 2>/dev/null || true)
  grep -q 'Complete requests: *1' <<<"$o" && ! grep -q Non-2xx <<<"$o" && { log up; exit 0; }
  sleep 0.2
done
log "not up"; exit 1

#!/bin/bash
# bothends failure lab: re-create every scenario (or the named ones) under captures/.
# Usage (as root): captures/lab/run.sh [scenario ...]      captures/lab/run.sh --list
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ "$(id -u)" != 0 ]; then echo "run.sh needs root (network namespaces, iptables, tcpdump)" >&2; exit 2; fi
need=()
for c in apache2 nginx tcpdump tshark editcap iptables ip curl; do command -v "$c" >/dev/null || need+=("$c"); done
[ -x /usr/bin/python3 ] || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  apt-get install -y -qq apache2 nginx tcpdump tshark iptables iproute2 curl python3 procps >/dev/null
fi
cleanup() { /usr/bin/python3 "$here/lab.py" --cleanup || true; }
trap cleanup EXIT
/usr/bin/python3 "$here/lab.py" "$@"
/usr/bin/python3 "$here/check.py"

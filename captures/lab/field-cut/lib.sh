# field-cut lib: topology copied from /work/shared/bench/make-corpus.sh, renamed (fc-*, 10.89.x.x)
WORK=/tmp/field-cut/work
MODDIR=/usr/lib/apache2/modules
NS_C=fc-cli NS_P=fc-prx NS_B=fc-bak
CLI_IP=10.89.1.1 PRX_FRONT=10.89.1.2 PRX_BACK=10.89.2.1 BAK_IP=10.89.2.2
PIDFILE=/tmp/field-cut/server.pids
log() { printf '[%(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
inns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
source /tmp/field-cut/parts.sh
make_net() {
  for ns in $NS_C $NS_P $NS_B; do ip netns add "$ns"; inns "$ns" ip link set lo up; done
  ip link add fc-c0 netns $NS_C type veth peer name fc-p0 netns $NS_P
  ip link add fc-p1 netns $NS_P type veth peer name fc-b0 netns $NS_B
  inns $NS_C ip addr add $CLI_IP/24 dev fc-c0
  inns $NS_P ip addr add $PRX_FRONT/24 dev fc-p0
  inns $NS_P ip addr add $PRX_BACK/24 dev fc-p1
  inns $NS_B ip addr add $BAK_IP/24 dev fc-b0
  for pair in $NS_C:fc-c0 $NS_P:fc-p0 $NS_P:fc-p1 $NS_B:fc-b0; do
    ns=${pair%%:*}; dev=${pair#*:}
    inns "$ns" ip link set "$dev" up
    inns "$ns" ethtool -K "$dev" tx off tso off gso off gro off >/dev/null 2>&1 || log "ethtool $dev failed"
  done
  for ns in $NS_C $NS_P $NS_B; do
    inns "$ns" sysctl -q -w net.ipv4.ip_local_port_range="1024 65000" net.ipv4.tcp_tw_reuse=1 \
      net.core.somaxconn=8192 net.ipv4.tcp_max_syn_backlog=8192 >/dev/null
  done
}

"""Field-realistic scenarios (issue 11): what real incident captures look like. Pooled connections that
were open before the captures started, a backend reset on a reused connection in the middle of a large
POST, ICMP answers to SYNs (from the backend host and from a router), snaplen-cut captures of several
faults, TLS to the backend, overload and restarts, a response head that is not strictly valid.

Same rules as scenarios.py: each scenario injects its faults, runs real traffic through a real proxy,
then reads both captures back with tshark (pcaptruth) and *requires* that the wire shows what was
intended (lab.Retry otherwise). The truth written to expected.json comes from the injected fault, those
checks and the proxy's / backend's own logs, never from bothends."""
import os
import signal
import time

import lab
import pcaptruth as pt
from lab import (BACKEND, Retry, require, entry, ladder, tsh, healthy, first_close, scenario, nsx)
from scenarios import ok_entry, log_has, one, status_of

R = pt.RST
F = pt.FIN
S = pt.SYN
A = pt.ACK


def estab(ns, dst):
    """Established TCP connections from namespace ns to dst ("ip:port"), as ss shows them."""
    out = nsx(ns, "ss -Htn state established", check=False).stdout
    return [l.split() for l in out.splitlines() if dst in l]


def describe_ex(ex):
    return ", ".join("%s %s -> %s" % (e["method"], e["target"], e["status"]) for e in ex)


# =============================================================================================
# 1. pooled keep-alive connections opened before both captures started

@scenario("apache-pooled-before-capture", "apache")
def apache_pooled(run):
    run.backend("--idle-close-ms", "60000")
    run.apache()
    warm = [{"start": 0.02 * i, "requests": [{"path": "/ok/warm-%d?size=%d&delay=0.6" % (i, 2000 + 500 * i)}]}
            for i in range(6)]
    res0 = run.client(warm)
    require(all(r.get("status") == 200 for s in res0 for r in s), "a warm-up request failed: %s" % res0)
    time.sleep(0.3)
    pool = estab("proxy", BACKEND)
    require(len(pool) == 6, "the proxy pool holds %d backend connections, not 6" % len(pool))
    pooled_ports = sorted(int(l[2].rsplit(":", 1)[1]) for l in pool)
    time.sleep(0.5)
    run.capture()
    sessions = []
    for i in range(9):
        sessions.append({"start": 0.01 * i, "requests": [
            {"path": "/ok/a-%d?size=%d&delay=0.5" % (i, 3000 + 700 * i)},
            {"method": "POST", "path": "/ok/b-%d?size=500" % i, "body": 20000 + 5000 * i},
            {"path": "/chunked/c-%d?size=%d&chunk=4096" % (i, 15000 + 1000 * i)}]})
    res = run.client(sessions)
    require(all(r.get("status") == 200 for s in res for r in s), "a request failed: %s" % res)
    time.sleep(0.3)
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pairs = run.pair(P, B)
    old = [(pc, bc) for pc, bc in pairs if not pc.syn_seen]
    new = [(pc, bc) for pc, bc in pairs if pc.syn_seen]
    require(len(old) == 6, "%d connections without SYN in proxy.pcap, not 6" % len(old))
    require(sorted(int(pc.client.rsplit(":", 1)[1]) for pc, _ in old) == pooled_ports,
            "connections without SYN are not the pooled ones")
    require(len(new) >= 1, "no new connection opened during the capture")
    require(len(B) == len(P), "captures hold %d vs %d connections" % (len(P), len(B)))
    conns = []
    for pc, bc in pairs:
        require(bc is not None and bc.syn_seen == pc.syn_seen, "%s: backend view missing or differs" % pc.client)
        c = ok_entry(pc, bc)
        if not pc.syn_seen:
            first = pc.segs[0]
            c["how_we_know"] = (
                "Pooled connection opened by the warm-up traffic before either tcpdump started (ss in the proxy "
                "namespace listed it among the %d idle pooled connections to %s just before the captures "
                "began). Neither capture holds its handshake: proxy.pcap tcp.stream==%d starts at frame %d with "
                "%s (%d payload bytes, the start of a request), backend.pcap tcp.stream==%d at frame %d. Every "
                "exchange the captures show is complete. " % (
                    len(pool), BACKEND, pc.stream, first.frame, first.flagstr(), first.len, bc.stream,
                    bc.first_frame)) + c["how_we_know"]
        else:
            c["how_we_know"] = ("New connection opened during the capture (the pool was exhausted by 9 concurrent "
                                "requests). ") + c["how_we_know"]
        conns.append(c)
    run.write("Six pooled keep-alive connections to the backend are opened by warm-up traffic (6 concurrent GETs) "
              "and sit idle in Apache's pool; then both tcpdumps start. Nine clients each send a GET (0.5 s backend "
              "delay), a POST (20-60 kB) and a GET answered with a chunked body: the proxy reuses the 6 pooled "
              "connections, whose handshakes are in neither capture, and opens %d new ones. Every request gets a "
              "complete 200; the proxy is stopped at the end and closes every backend connection with FIN."
              % len(new), conns)


# =============================================================================================
# 2. backend reset on a reused keep-alive connection, 78 kB into a 1 MiB POST

def _reused_mid_post(run, proxy, needle):
    run.capture()
    run.backend()
    proxy()
    res = run.client([{"requests": [
        {"path": "/ok/first?size=4000"},
        {"method": "POST", "path": "/close-mid-request/reused?read=78000", "body": 1048576, "gap": 1.0}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    require(bc is not None, "no backend view")
    ex, bex = pt.http(pc), pt.http(bc)
    require(len(ex) == 2 and ex[0]["status"] == 200 and ex[0]["response_complete"], "first exchange not ok: %s" % ex)
    e = ex[1]
    require(e["method"] == "POST" and not e["request_complete"] and e["status"] is None, "POST not cut: %s" % e)
    rst_b = bc.first(fromc=False, flags=R)
    fin_b = bc.first(fromc=False, flags=F)
    close_b = min([x for x in (rst_b, fin_b) if x], key=lambda s: s.frame)
    require(first_close(bc)[1] == "backend", "the backend did not close first")
    req_b = next(s for s in bc.segs if s.frame == bex[1]["req_frame"])
    require(req_b.frame < close_b.frame, "the backend closed before the POST arrived")
    # How much of the POST the backend had acknowledged before it closed.
    acks = [s for s in bc.find(fromc=False) if s.frame < close_b.frame and s.flags & A]
    acked = max((s.ack - bc.isn_c - 1) % 2**32 for s in acks) - bex[1]["req"]["offset"]
    head_len = len(b"\r\n\r\n") + pc.bytes_dir(True)[0][ex[1]["req"]["offset"]:].index(b"\r\n\r\n")
    require(acked - head_len >= 78000, "the backend acknowledged only %d body bytes" % (acked - head_len))
    prev_resp_end = [s for s in bc.find(fromc=False, data=True) if s.frame < req_b.frame][-1]
    idle = req_b.t - prev_resp_end.t
    require(idle > 0.5, "the connection was not idle before the POST (%.3f s)" % idle)
    rst_p = pc.first(fromc=False, flags=R) or pc.first(fromc=False, flags=F)
    req_p = next(s for s in pc.segs if s.frame == e["req_frame"])
    sent_p = pc.bytes_dir(True)[1] - e["req"]["offset"]
    log_has(run, needle)
    run.write("GET /ok then, 1 s later on the same reused keep-alive backend connection, a 1 MiB POST; the backend "
              "application reads the headers and 78000 body bytes, then closes its socket in the middle of the "
              "upload (its kernel had received more: it sends RST for unread data, or FIN then RST for what "
              "arrives after the close). Not a keep-alive race: the connection was busy "
              "with the POST, whose headers and first 78 kB the backend had received and acknowledged. %s."
              % status_of(res),
              [entry(pc, bc, "backend-closed-during-request", "backend",
                     "backend.py mode /close-mid-request?read=78000 on the second request of a reused connection. "
                     "backend.pcap tcp.stream==%d: GET /ok/first answered 200; after %.3f s idle the POST arrives "
                     "(frame %d); the backend acknowledges %d request bytes (headers of %d bytes + %d body bytes) "
                     "and sends %s at frame %d, %.1f ms after the POST's first byte arrived. proxy.pcap "
                     "tcp.stream==%d: POST starts at frame %d, %d of %d request bytes sent, the backend's %s arrives "
                     "at frame %d. Check: %s" % (
                         bc.stream, idle, req_b.frame, acked, head_len, acked - head_len, close_b.flagstr(),
                         close_b.frame, (close_b.t - req_b.t) * 1000, pc.stream, req_p.frame, sent_p,
                         head_len + 1048576, rst_p.flagstr(), rst_p.frame, tsh("backend.pcap", bc)))])


@scenario("apache-reused-rst-mid-post", "apache")
def apache_reused_mid_post(run):
    _reused_mid_post(run, run.apache, "AH01097")


@scenario("nginx-reused-rst-mid-post", "nginx")
def nginx_reused_mid_post(run):
    _reused_mid_post(run, lambda: run.nginx(upstream_extra="keepalive 8;"),
                     ("while sending request to upstream", "while reading response header from upstream"))


# =============================================================================================
# 3. SYNs answered by ICMP destination unreachable: from the backend host, or from a router

ICMP_NAMES = {(3, 1): "host unreachable", (3, 3): "port unreachable", (3, 13): "communication administratively "
              "prohibited", (3, 10): "host administratively prohibited", (3, 0): "net unreachable"}


def icmp_for(path, c):
    """ICMP errors in capture `path` that quote a segment of connection c (client -> server)."""
    return [i for i in pt.icmp_errors(path) if i["quoted_src"] == c.client and i["quoted_dst"] == c.server]


def _icmp_refused(run, where):
    server = BACKEND
    run.capture()
    if where == "arp":
        # A backend address on the backend LAN that no host owns: the router's ARP for it fails and the
        # router answers the queued SYN with ICMP host unreachable (after its ARP retries).
        server = "10.0.2.3:8080"
        run.backend_server = {"proxy": server, "backend": server}
        nsx("router", "sysctl -qw net.ipv4.neigh.eth2.retrans_time_ms=400 net.ipv4.neigh.eth2.mcast_solicit=3")
        run.notes.append("router: neigh retrans_time_ms=400 mcast_solicit=3 on eth2")
        run.apache(proxypass="ProxyPass / http://%s/ connectiontimeout=5 timeout=3 retry=0" % server)
        sessions = [{"requests": [{"path": "/icmp/first", "timeout": 8}]},
                    {"start": 1.5, "requests": [{"path": "/icmp/second", "timeout": 8}]}]
    else:
        run.backend("--idle-close-ms", "200")
        run.apache(proxypass="ProxyPass / http://%s/ connectiontimeout=2 timeout=3 retry=0" % BACKEND)
        sessions = [{"requests": [{"path": "/ok/before-the-firewall-rule?size=3000"}]},
                    {"start": 1.0, "requests": [{"path": "/icmp/first"}]},
                    {"start": 2.3, "requests": [{"path": "/icmp/second"}]}]
    p = run.client(sessions, wait=False)
    if where != "arp":
        time.sleep(0.6)
        if where == "backend":
            run.ipt("backend", "-A INPUT -p tcp --dport 8080 --syn -j REJECT --reject-with icmp-port-unreachable")
        elif where == "admin":
            run.ipt("router", "-A FORWARD -p tcp -d 10.0.2.2 --dport 8080 --syn -j REJECT "
                              "--reject-with icmp-admin-prohibited")
        else:
            run.ipt("router", "-A FORWARD -p tcp -d 10.0.2.2 --dport 8080 --syn -j REJECT "
                              "--reject-with icmp-host-unreachable")
    res = run.client_result(p)
    run.finish()
    srv = {server}
    P = [c for c in pt.connections(run.proxy_pcap, srv) if c.server == server]
    B = [c for c in pt.connections(run.backend_pcap, srv) if c.server == server]
    conns = []
    refused = 0
    want = {"backend": (3, 3), "admin": (3, 13), "host": (3, 1), "arp": (3, 1)}[where]
    sender = {"backend": "10.0.2.2", "admin": "10.0.1.1", "host": "10.0.1.1", "arp": "10.0.1.1"}[where]
    for pc, bc in run.pair(P, B):
        ex = pt.http(pc)
        if ex and ex[0]["target"].startswith("/ok/"):
            conns.append(ok_entry(pc, bc, "the request before the firewall rule: fully sent and answered, the "
                                          "backend closed the idle connection after 200 ms"))
            continue
        syns = pc.find(fromc=True, flags=S)
        require(syns and not pc.find(fromc=False), "%s: the backend answered the SYN" % pc.client)
        ip = icmp_for(run.proxy_pcap, pc)
        require(ip and all((i["type"], i["code"]) == want and i["from"] == sender for i in ip),
                "%s: ICMP at the proxy: %s" % (pc.client, ip))
        # One ICMP per SYN sent (with ARP pending, the SYN retransmission queued too is answered as well).
        require(len(ip) == len(syns) and all(i["quoted_seq"] == syns[0].seq for i in ip) and
                (where == "arp" or len(syns) == 1), "%s: %d SYNs, ICMPs %s" % (pc.client, len(syns), ip))
        require(ip[-1]["t"] > syns[-1].t, "an ICMP came before the last SYN")
        ib = icmp_for(run.backend_pcap, pc) if where == "backend" else []
        icmp = [{"from": sender, "type": want[0], "code": want[1], "proxy_frame": i["frame"], "backend_frame": None}
                for i in ip]
        name = ICMP_NAMES[want]
        if where == "backend":
            require(bc is not None and len(ib) == 1 and ib[0]["from"] == sender, "backend.pcap: %s / %s" % (bc, ib))
            icmp[0]["backend_frame"] = ib[0]["frame"]
            verdict, blame = "connect-refused", "backend"
            how = ("The backend host's own firewall rejects new connections to :8080 (iptables -A INPUT -p tcp "
                   "--dport 8080 --syn -j REJECT --reject-with icmp-port-unreachable; backend.py is running). "
                   "proxy.pcap: SYN frame %d, answered %.3f ms later by ICMP %s (type 3 code 3) from %s, the "
                   "backend host itself, frame %d, quoting the SYN (seq %d); no retransmission, the proxy's "
                   "connect failed at once. backend.pcap: the SYN arrives (frame %d) and the backend host sends "
                   "the ICMP (frame %d). Check: tshark -r proxy.pcap -Y 'icmp && tcp.srcport==%s' -T fields -e "
                   "frame.number -e ip.src -e icmp.type -e icmp.code" % (
                       syns[0].frame, (ip[0]["t"] - syns[0].t) * 1000, name, sender, ip[0]["frame"], syns[0].seq,
                       bc.first_frame, ib[0]["frame"], pc.client.rsplit(":", 1)[1]))
        else:
            require(bc is None, "%s: the SYN reached the backend" % pc.client)
            verdict, blame = "connect-refused", "network"
            rule = {"admin": "iptables -A FORWARD -p tcp -d 10.0.2.2 --dport 8080 --syn -j REJECT --reject-with "
                             "icmp-admin-prohibited",
                    "host": "iptables -A FORWARD -p tcp -d 10.0.2.2 --dport 8080 --syn -j REJECT --reject-with "
                            "icmp-host-unreachable",
                    "arp": "no rule: nothing owns %s, the router's ARP requests for it on eth2 go unanswered"
                           % server.split(":")[0]}[where]
            how = ("The router (10.0.1.1 on the proxy's side) refuses the connection: %s. proxy.pcap: SYN frame %d, "
                   "answered %.3f ms later by ICMP %s (type 3 code %d) from %s, the router, not the backend, "
                   "frame %d, quoting the SYN (seq %d); %s. "
                   "backend.pcap holds no packet of this connection: the SYN never got past the router%s. Check: "
                   "tshark -r proxy.pcap -Y 'icmp && tcp.srcport==%s' -T fields -e frame.number -e ip.src -e "
                   "icmp.type -e icmp.code" % (
                       rule, syns[0].frame, (ip[0]["t"] - syns[0].t) * 1000, name, want[1], sender, ip[0]["frame"],
                       syns[0].seq, "no retransmission, the proxy's connect failed at once" if len(syns) == 1 else
                       "the SYN retransmission (frame%s %s) sent while the router was still resolving the address "
                       "was answered the same way (frame%s %s), and the proxy's connect failed" % (
                           "s" if len(syns) > 2 else "", ",".join(str(x.frame) for x in syns[1:]),
                           "s" if len(ip) > 2 else "", ",".join(str(i["frame"]) for i in ip[1:])),
                       " (it shows the router's ARP requests for %s)" % server.split(":")[0]
                       if where == "arp" else "", pc.client.rsplit(":", 1)[1]))
        c = entry(pc, bc, verdict, blame, how, exchanges=[])
        c["icmp"] = icmp
        conns.append(c)
        refused += 1
    require(refused == 2, "%d connections refused by ICMP, not 2" % refused)
    if where == "arp":
        arp = lab.sh(["tshark", "-r", run.backend_pcap, "-Y", "arp.dst.proto_ipv4==10.0.2.3", "-T", "fields",
                      "-e", "frame.number"]).stdout.split()
        require(arp, "no ARP request for 10.0.2.3 in backend.pcap")
    text = log_has(run, {"backend": "Connection refused", "admin": "No route to host", "host": "No route to host",
                         "arp": "No route to host"}[where])
    statuses = ", ".join(str(r[-1].get("status", r[-1].get("error"))) for r in res)
    what = {"backend": "the backend host's firewall starts rejecting new connections with ICMP port unreachable "
                       "(iptables REJECT in its INPUT chain); the proxy logs '(111)Connection refused'",
            "admin": "a firewall on the router starts rejecting new connections to the backend with ICMP "
                     "communication administratively prohibited; the proxy logs '(113)No route to host'",
            "host": "the router starts answering SYNs to the backend with ICMP host unreachable (iptables REJECT "
                    "--reject-with icmp-host-unreachable); the proxy logs '(113)No route to host'",
            "arp": "the proxy's backend is %s, an address on the backend LAN that no host owns (a backend host "
                   "that is down); the router's ARP requests go unanswered and it answers each SYN with ICMP host "
                   "unreachable; the proxy logs '(113)No route to host'" % server}[where]
    run.write(("A first GET succeeds (the backend closes the idle connection after 200 ms); then " if where != "arp"
               else "Two GETs 1.5 s apart; ") + what + ". Two requests are refused that way (ProxyPass retry=0, "
              "so each one tries to connect). Client statuses: %s." % statuses, conns)


@scenario("apache-syn-icmp-port-unreachable-backend", "apache")
def apache_icmp_backend(run):
    _icmp_refused(run, "backend")


@scenario("apache-syn-icmp-admin-prohibited-router", "apache")
def apache_icmp_admin(run):
    _icmp_refused(run, "admin")


@scenario("apache-syn-icmp-host-unreachable-router", "apache")
def apache_icmp_host(run):
    _icmp_refused(run, "host")


@scenario("apache-syn-icmp-host-unreachable-arp", "apache")
def apache_icmp_arp(run):
    _icmp_refused(run, "arp")

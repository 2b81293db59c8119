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


# =============================================================================================
# 4. snaplen 96 on both ends, several faults (same truths as their full-snaplen versions)

def _snap_mixed(run, proxy, forwards_expect):
    run.capture(snaplen=96)
    run.backend()
    proxy()
    sessions = [
        {"start": 0.0, "requests": [{"method": "POST", "path": "/close-mid-request/snap?read=50000", "body": 400000}]},
        {"start": 0.6, "requests": [{"path": "/truncate/snap?size=150000&send=40000"}]},
        {"start": 1.2, "requests": [{"method": "POST", "path": "/empty/snap", "body": 5000}]},
        {"start": 1.8, "requests": [
            {"path": "/ok/snap-first?size=20000"},
            {"method": "POST", "path": "/ok/snap-upload?size=300", "body": 300000},
            {"method": "POST", "path": "/ok/snap-chunked-upload?size=300", "body": 100000, "chunked": True},
            {"path": "/chunked/snap?size=60000&chunk=5000"},
            {"method": "POST", "path": "/ok/snap-expect?size=400", "body": 40000, "expect": True},
            {"path": "/ok/snap-last?size=3000"}]}]
    res = run.client(sessions)
    require(all(r.get("status") == 200 for r in res[3]), "the keep-alive session failed: %s" % res[3])
    run.finish()
    fmap = {}
    for side in ("proxy", "backend"):
        cut = pt.read_segments(run.proxy_pcap if side == "proxy" else run.backend_pcap)
        full = pt.read_segments(run.full_proxy if side == "proxy" else run.full_backend)
        require(len(cut) == len(full), "%s: snaplen and full captures differ (%d vs %d TCP segments)"
                % (side, len(cut), len(full)))
        for (_, a), (_, b) in zip(full, cut):
            require((a.seq, a.ack, a.len, a.flags) == (b.seq, b.ack, b.len, b.flags), "segment order differs")
        fmap[side] = {a.frame: b.frame for (_, a), (_, b) in zip(full, cut)}
    P, B = run.conns("proxy"), run.conns("backend")
    Pc, Bc = run.conns("proxy", full=False), run.conns("backend", full=False)
    require(len(P) == 4 and len(B) == 4, "%d/%d backend connections, not 4" % (len(P), len(B)))
    conns = []
    kinds = set()
    full_note = ("The committed captures were written by tcpdump -s 96 (HTTP heads cut after a few bytes); a "
                 "full-snaplen tcpdump ran beside each one on the same interface (same TCP segments in the same "
                 "order, checked) and was read with tshark for this truth; frame numbers are those of the "
                 "committed captures. ")
    for (pc, bc), (pcc, bcc) in zip(run.pair(P, B), run.pair(Pc, Bc)):
        require(bc and bcc and pc.isn_c == pcc.isn_c and bc.isn_c == bcc.isn_c, "pairing differs")
        ex = pt.http(pc)
        last = ex[-1]
        fin, who = first_close(bc)
        fr = lambda s: fmap["proxy"][s.frame]  # noqa: E731
        frb = lambda s: fmap["backend"][s.frame]  # noqa: E731
        if last["target"].startswith("/close-mid-request"):
            require(len(ex) == 1 and not last["request_complete"] and who == "backend", "not closed during request")
            v, how = "backend-closed-during-request", (
                "backend.py mode /close-mid-request?read=50000 on a 400000-byte POST: proxy.pcap tcp.stream==%d: "
                "%d of %d body bytes sent, then the backend's %s arrives at frame %d; backend.pcap: the backend's "
                "%s at frame %d while the body was still coming." % (
                    pcc.stream, last["req"]["body_seen"], 400000, (pc.first(fromc=False, flags=R) or
                                                                   pc.first(fromc=False, flags=F)).flagstr(),
                    fr(pc.first(fromc=False, flags=R) or pc.first(fromc=False, flags=F)), fin.flagstr(), frb(fin)))
        elif last["target"].startswith("/truncate"):
            require(len(ex) == 1 and last["status"] == 200 and not last["response_complete"] and who == "backend",
                    "not truncated")
            v, how = "response-truncated", (
                "backend.py mode /truncate (Content-Length 150000, 40000 body bytes, then close): proxy.pcap "
                "tcp.stream==%d: response head at frame %d, %d body bytes, the backend's FIN at frame %d; "
                "backend.pcap FIN frame %d." % (pcc.stream, fr(next(s for s in pc.segs if s.frame ==
                                                                   last["resp_frame"])), last["resp"]["body_seen"],
                                               fr(pc.first(fromc=False, flags=F)), frb(fin)))
        elif last["target"].startswith("/empty"):
            require(len(ex) == 1 and last["request_complete"] and last["status"] is None and who == "backend" and
                    not pc.find(fromc=False, data=True), "not an empty reply")
            v, how = "backend-empty-reply", (
                "backend.py mode /empty: proxy.pcap tcp.stream==%d: the 5000-byte POST is complete by frame %d, the "
                "backend's FIN at frame %d without a response byte; backend.pcap FIN frame %d." % (
                    pcc.stream, fr(pc.find(fromc=True, data=True)[-1]), fr(pc.first(fromc=False, flags=F)),
                    frb(fin)))
        else:
            require(healthy(pc) and healthy(bc) and len(ex) == 6, "keep-alive connection not healthy: %s" % ex)
            chunked_req = [e for e in ex if "chunked-upload" in e["target"]][0]["req"].get("framing")
            chunked_resp = "chunked" in [e for e in ex if e["target"].startswith("/chunked")][0]["resp"].get(
                "framing", "chunked")
            expect = [e for e in ex if "expect" in e["target"]][0]
            v, how = "ok", (
                "Normal traffic: one keep-alive backend connection carries %s, every request complete and "
                "answered completely (request body of the chunked upload sent %s; the /chunked response is "
                "chunked; Expect: 100-continue %s); closed with FIN (proxy.pcap frame %d)." % (
                    describe_ex(ex), "chunked" if chunked_req == "chunked" else "with Content-Length",
                    "forwarded and answered 100 Continue by the backend" if expect["interim"] else
                    "answered by the proxy itself, not forwarded", fr(pc.first(flags=F))))
            require(chunked_resp, "response not chunked")
            require(bool(expect["interim"]) == forwards_expect, "Expect handling not as expected")
        kinds.add(v)
        conns.append(entry(pcc, bcc, v, "none" if v == "ok" else "backend", full_note + how,
                           exchanges=pt.exchanges_json(ex)))
    require(len(kinds) == 4, "verdicts %s" % kinds)
    run.write("Both captures taken with tcpdump -s 96, so HTTP heads are cut after a few bytes. Four backend "
              "connections, one after the other: a 400 kB POST the backend resets 50 kB in, a GET whose response "
              "the backend cuts (40000 of 150000 body bytes), a POST the backend closes without answering, and a "
              "healthy keep-alive connection with six exchanges (a 300 kB POST, a 100 kB chunked upload, a chunked "
              "response, an Expect: 100-continue POST). Same truths as the full-snaplen scenarios of these faults.",
              conns)


@scenario("apache-snaplen96-mixed", "apache")
def apache_snap_mixed(run):
    _snap_mixed(run, run.apache, True)


@scenario("nginx-snaplen96-mixed", "nginx")
def nginx_snap_mixed(run):
    _snap_mixed(run, lambda: run.nginx(extra="proxy_request_buffering off;", upstream_extra="keepalive 8;"), False)


# =============================================================================================
# 5. TLS to the backend (Apache ProxyPass https://, SSLProxyEngine; backend.py in Python's ssl)

TLS_BACKEND = "10.0.2.2:8443"
TLS_CONF = """LoadModule ssl_module /usr/lib/apache2/modules/mod_ssl.so
SSLProxyEngine on
SSLProxyVerify none
SSLProxyCheckPeerCN off
SSLProxyCheckPeerName off
SSLProxyCheckPeerExpire off"""


def tls_setup(run):
    """A self-signed certificate made now, a TLS backend that writes its key log beside the captures, and
    Apache proxying to it over https."""
    cert, key = os.path.join(run.tmp, "backend-cert.pem"), os.path.join(run.tmp, "backend-key.pem")
    lab.sh(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-days", "2", "-subj", "/CN=backend.lab.test", "-keyout", key, "-out", cert])
    run.keylog = os.path.join(run.out, "tls-keys.log")
    run.backend_server = {"proxy": TLS_BACKEND, "backend": TLS_BACKEND}
    run.backend("--tls", "%s,%s" % (cert, key), "--keylog", run.keylog, listen=[TLS_BACKEND])
    run.apache(proxypass="ProxyPass / https://%s/ connectiontimeout=2 timeout=3" % TLS_BACKEND, extra=TLS_CONF)


def tls_streams(path, keylog, c):
    """The decrypted application data of connection c, per direction, from tshark's follow,tls,raw
    (lines of node 0 are not indented, those of node 1 are; node 0 is named in the header)."""
    out = lab.sh(["tshark", "-n", "-r", path, "-o", "tls.keylog_file:" + keylog, "-q", "-z",
                  "follow,tls,raw,%d" % c.stream], timeout=120).stdout
    node0 = None
    data = {True: b"", False: b""}
    for line in out.splitlines():
        if line.startswith("Node 0: "):
            node0 = line[len("Node 0: "):].strip()
            continue
        h = line.strip()
        if not h or not all(ch in "0123456789abcdef" for ch in h):
            continue
        require(node0 in (c.client, c.server), "follow,tls: node 0 is %r" % node0)
        from_node0 = not line.startswith("\t")
        data[from_node0 == (node0 == c.client)] += bytes.fromhex(h)
    return data[True], data[False]


def tls_http(path, keylog, c):
    cdata, sdata = tls_streams(path, keylog, c)
    reqs = pt.parse_requests(cdata)
    resps = pt.parse_responses(sdata, reqs)
    ex = []
    for k, r in enumerate(reqs):
        rs = resps[k] if k < len(resps) else None
        ex.append({"method": r["method"], "target": r["target"], "status": rs["status"] if rs else None,
                   "request_complete": r["complete"], "response_complete": bool(rs and rs["complete"]),
                   "req": r, "resp": rs, "interim": rs.get("interim", []) if rs else []})
    return ex, cdata, sdata


def tls_records(path, c, keylog=None):
    """(frame, from client?, [record content types], [record lengths]) for every segment of c that carries
    TLS records; with the key log, TLS 1.3 records show their inner content type (22 handshake, e.g. a
    NewSessionTicket, 23 application data, 21 alert)."""
    opt = ["-o", "tls.keylog_file:" + keylog] if keylog else []
    out = lab.sh(["tshark", "-n", "-r", path] + opt + ["-Y", "tcp.stream==%d && tls.record" % c.stream, "-T", "fields",
                  "-E", "occurrence=a", "-E", "aggregator=,", "-e", "frame.number", "-e", "tcp.srcport",
                  "-e", "tls.record.content_type", "-e", "tls.record.length"]).stdout
    recs = []
    cport = c.client.rsplit(":", 1)[1]
    for line in out.splitlines():
        f, sp, ct, ln = (line.split("\t") + ["", "", ""])[:4]
        recs.append((int(f), sp == cport, [int(x) for x in ct.split(",") if x], [int(x) for x in ln.split(",") if x]))
    return recs


def tls_version(run):
    text = open(os.path.join(run.tmp, "backend.log")).read()
    vs = sorted({l.split()[3] for l in text.splitlines() if " tls TLS" in l})
    require(vs, "backend log shows no TLS handshake")
    return "/".join(vs)


def tls_summary(run, c, which):
    """What the TLS records of connection c show, decrypted: per direction the frames of application data
    and of the other records after the handshake."""
    recs = tls_records(run.proxy_pcap if which == "proxy" else run.backend_pcap, c, run.keylog)
    return recs


def tls_check(run, pc, bc):
    """Decrypted HTTP exchanges of a connection, from both captures; they must agree."""
    ex, cd, sd = tls_http(run.proxy_pcap, run.keylog, pc)
    bex, _, _ = tls_http(run.backend_pcap, run.keylog, bc)
    require([(e["method"], e["target"]) for e in ex] == [(e["method"], e["target"]) for e in bex],
            "decrypted requests differ between the captures")
    require(pt.parse_requests(pc.bytes_dir(True)[0]) == [], "HTTP visible in the clear in the TLS connection")
    return ex, bex


def tls_entry(pc, bc, verdict, blame, how):
    c = entry(pc, bc, verdict, blame, how, exchanges=[])
    c["protocol"] = "tls"
    return c


TLS_DECRYPT = ("Decrypt: tshark -r proxy.pcap -o tls.keylog_file:tls-keys.log -q -z follow,tls,ascii,%d "
               "(the key log was written by the backend's ssl module).")


def tickets(recs, after_frame=0):
    """Frames of server->client records after `after_frame` that are handshake messages (TLS 1.3
    NewSessionTicket), and of server application data."""
    t = [f for f, fromc, ct, _ in recs if not fromc and f > after_frame and ct and all(x == 22 for x in ct)]
    a = [f for f, fromc, ct, _ in recs if not fromc and f > after_frame and 23 in ct]
    return t, a


@scenario("apache-tls-ok-keepalive", "apache")
def apache_tls_ok(run):
    run.capture()
    tls_setup(run)
    res = run.client([
        {"requests": [{"path": "/ok/tls-1?size=20000&delay=0.3"}, {"method": "POST", "path": "/ok/tls-upload?size=300",
                                                          "body": 200000},
                      {"path": "/chunked/tls?size=30000&chunk=4000"}, {"path": "/ok/tls-last?size=2000"}]},
        {"start": 0.02, "requests": [{"path": "/ok/tls-slow?size=5000&delay=0.3"},
                                     {"method": "POST", "path": "/ok/tls-post?size=100", "body": 50000}]}])
    require(all(r.get("status") == 200 for x in res for r in x), "a request failed: %s" % res)
    time.sleep(0.3)
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    ver = tls_version(run)
    require(len(P) >= 2, "only %d backend connection(s)" % len(P))
    conns = []
    for pc, bc in run.pair(P, B):
        require(bc is not None, "no backend view")
        ex, bex = tls_check(run, pc, bc)
        require(ex and all(e["request_complete"] and e["response_complete"] and e["status"] == 200 for e in ex) and
                all(e["request_complete"] and e["response_complete"] for e in bex), "not healthy: %s" % ex)
        require(not pc.find(flags=R) and not bc.find(flags=R), "RST on %s" % pc.client)
        fin = first_close(pc)[0]
        require(fin is not None, "no FIN")
        precs = tls_records(run.proxy_pcap, pc, run.keylog)
        before = [x for x in pc.segs if x.len and x.frame < fin.frame][-1]
        conns.append(tls_entry(pc, bc, "ok", "none",
                               "Normal traffic over %s to the backend, no fault injected. Decrypted with the "
                               "backend's key log: %d exchange(s) %s, each request complete and answered with a "
                               "complete response, the same in both captures. TCP: no RST; when the proxy stopped "
                               "it sent its TLS close (%s) and the %s's FIN followed (proxy.pcap frame %d). "
                               "proxy.pcap tcp.stream==%d: %s. "
                               % (ver, len(ex), describe_ex(ex), fdesc_tls(pc, before, precs), first_close(pc)[1],
                                  fin.frame, pc.stream, ladder(pc, 8)) + TLS_DECRYPT % pc.stream))
    run.write("Apache proxies to https://%s (SSLProxyEngine, no certificate verification; backend.py in Python's "
              "ssl module with a self-signed certificate made at run time, %s). Two clients: GETs, a 200 kB POST, "
              "a chunked response, a 50 kB POST, over %d reused backend connection(s). Every exchange succeeds. "
              "The captures show TLS records only; tls-keys.log decrypts them." % (TLS_BACKEND, ver, len(P)), conns)


@scenario("apache-tls-backend-empty-reply", "apache")
def apache_tls_empty(run):
    run.capture()
    tls_setup(run)
    res = run.client([
        {"requests": [{"method": "POST", "path": "/empty/tls-fresh?delay=0.2", "body": 3000}]},
        {"start": 0.6, "requests": [{"path": "/ok/tls-first?size=3000"},
                                    {"method": "POST", "path": "/empty/tls-reused?delay=0.2", "body": 3000,
                                     "gap": 0.3}]},
        {"start": 1.8, "requests": [{"path": "/ok/tls-before-reset?size=3000"},
                                    {"method": "POST", "path": "/reset/tls?delay=0.2", "body": 3000, "gap": 0.3}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    ver = tls_version(run)
    require(len(P) == 3, "%d backend connections, not 3" % len(P))
    conns = []
    for pc, bc in run.pair(P, B):
        require(bc is not None, "no backend view")
        ex, bex = tls_check(run, pc, bc)
        e = ex[-1]
        reset = e["target"].startswith("/reset")
        require((e["target"].startswith("/empty") or reset) and e["request_complete"] and e["status"] is None and
                not bex[-1]["resp"], "not an unanswered request: %s" % ex)
        require(all(x["status"] == 200 and x["response_complete"] for x in ex[:-1]), "earlier exchange failed")
        fin, who = first_close(bc)
        require(who == "backend" and fin.flags & (R if reset else F), "the backend did not close first with %s"
                % ("RST" if reset else "FIN"))
        # The request's last record, and what the backend sent after it (decrypted record types).
        recs = tls_records(run.backend_pcap, bc, run.keylog)
        app_c = [f for f, fromc, ct, _ in recs if fromc and 23 in ct]
        req_last = app_c[-1]
        req_time = next(s.t for s in bc.segs if s.frame == req_last)
        require(fin.t - req_time > 0.15, "the backend closed %.3f s after the request" % (fin.t - req_time))
        t_after, a_after = tickets(recs, req_last)
        require(not a_after, "application data from the backend after the request: frames %s" % a_after)
        precs = tls_records(run.proxy_pcap, pc, run.keylog)
        p_app_c = [f for f, fromc, ct, _ in precs if fromc and 23 in ct]
        pt_after, pa_after = tickets(precs, p_app_c[-1])
        pfin = pc.first(fromc=False, flags=R if reset else F)
        after = [s for s in pc.segs if s.frame > pfin.frame]
        ticket_note = (" The only backend bytes after the request are %d TLS 1.3 NewSessionTicket record(s) (proxy.pcap "
                       "frames %s): the server's post-handshake tickets, sent as soon as it read the client's "
                       "Finished, which crossed the request; without the key log they look like application data "
                       "(outer type 23)." % (len(pt_after), ",".join(map(str, pt_after)))) if pt_after else (
            " Nothing at all comes from the backend between the request and its %s." % ("RST" if reset else "FIN"))
        conns.append(tls_entry(pc, bc, "backend-empty-reply", "backend",
                               ("backend.py mode /reset?delay=0.2 over %s: reads the whole request, waits 0.2 s, "
                                "resets the connection (SO_LINGER 0, then close()). %s. Decrypted: %s; no HTTP "
                                "response byte in either capture. proxy.pcap tcp.stream==%d: the request's last record "
                                "at frame %d, the backend's RST at frame %d (%.3f s later).%s After the RST: %s. "
                                "backend.pcap: RST frame %d. Proxy log AH01102 'error reading status line'. " if reset
                                else
                                "backend.py mode /empty?delay=0.2 over %s: reads the whole request, waits 0.2 s, "
                                "closes (no TLS close_notify, just close()). %s. Decrypted: %s; no HTTP response "
                                "byte in either capture. proxy.pcap tcp.stream==%d: the request's last record at "
                                "frame %d, the backend's FIN at frame %d (%.3f s later).%s After the FIN: %s. "
                                "backend.pcap: FIN frame %d. Proxy log AH01102 'error reading status line'. ")
                               % (ver, "A fresh connection: the POST is its first request" if len(ex) == 1 else
                                  "A reused connection: the POST follows a complete GET 0.3 s after its response",
                                  describe_ex(ex), pc.stream, p_app_c[-1], pfin.frame,
                                  pfin.t - next(s.t for s in pc.segs if s.frame == p_app_c[-1]), ticket_note,
                                  ", ".join(fdesc_tls(pc, s, precs) for s in after) or "nothing", fin.frame)
                               + TLS_DECRYPT % pc.stream))
    log_has(run, "AH01102")
    run.write("Apache proxies to https://%s (%s). Three POSTs the backend reads completely and then closes without "
              "answering (0.2 s later): one on a fresh connection, one on a reused connection after a complete GET "
              "(both closed with FIN), and one more on a reused connection that the backend resets (RST). "
              "Client statuses: %s." % (TLS_BACKEND, ver, ", ".join(str(r.get("status", r.get("error")))
                                                                  for x in res for r in x)), conns)


def fdesc_tls(c, s, recs):
    d = "proxy->backend" if s.fromc else "backend->proxy"
    kinds = next((ct for f, _, ct, _ in recs if f == s.frame), [])
    names = {21: "alert", 22: "handshake", 23: "application data", 20: "change cipher spec"}
    what = (" (TLS %s)" % "+".join(names.get(k, str(k)) for k in kinds)) if kinds else ""
    return "%d %s %s%s%s" % (s.frame, d, s.flagstr(), (" len=%d" % s.len) if s.len else "", what)


@scenario("apache-tls-lost-in-transit-response", "apache")
def apache_tls_lost(run):
    run.capture()
    tls_setup(run)
    p = run.client([{"requests": [{"path": "/ok/tls-lost?size=3000&delay=1.0"}]}], wait=False)
    time.sleep(0.5)
    run.ipt("router", "-I FORWARD -s 10.0.2.2 -p tcp --sport 8443 -j DROP")
    res = run.client_result(p)
    time.sleep(0.5)
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    ver = tls_version(run)
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    require(bc is not None, "no backend view")
    ex, bex = tls_check(run, pc, bc)
    require(len(ex) == 1 and ex[0]["request_complete"] and ex[0]["status"] is None, "response arrived: %s" % ex)
    require(len(bex) == 1 and bex[0]["status"] == 200 and bex[0]["response_complete"], "backend did not answer: %s"
            % [(e["target"], e["status"], e["resp"]) for e in bex])
    brecs = tls_records(run.backend_pcap, bc, run.keylog)
    b_req = [f for f, fromc, ct, _ in brecs if fromc and 23 in ct][0]
    _, b_app = tickets(brecs, b_req)
    require(b_app, "no application data from the backend")
    resp_segs = [s for s in bc.find(fromc=False, data=True) if s.frame >= b_app[0]]
    seqs = {}
    for s in resp_segs:
        seqs[s.seq] = seqs.get(s.seq, 0) + 1
    require(any(v > 1 for v in seqs.values()), "the backend did not retransmit its response")
    precs = tls_records(run.proxy_pcap, pc, run.keylog)
    p_req = [f for f, fromc, ct, _ in precs if fromc and 23 in ct][0]
    pt_after, pa_after = tickets(precs, p_req)
    require(not pa_after, "response data reached the proxy")
    last_b = max((s for s in pc.find(fromc=False)), key=lambda s: s.frame)
    fin, who = first_close(pc)
    require(who == "proxy", "the proxy did not close first")
    log_has(run, "AH01102")
    run.write("Apache proxies to https://%s (%s). One GET; the backend answers after 1 s, but 0.5 s into the "
              "request the router starts dropping every packet from the backend (iptables -I FORWARD -s 10.0.2.2 "
              "--sport 8443 -j DROP). The response never reaches the proxy, which gives up after its 3 s timeout. "
              "%s." % (TLS_BACKEND, ver, status_of(res)),
              [tls_entry(pc, bc, "lost-in-transit", "network",
                         "Router drops backend->proxy packets after the TLS handshake and the request went through. "
                         "backend.pcap tcp.stream==%d: the backend's response (decrypted: %s, complete) leaves at "
                         "frame %d, %d data segment(s) from then on, retransmissions included; proxy.pcap "
                         "tcp.stream==%d: nothing from the backend after frame %d (%s), the proxy's %s at frame %d. "
                         "Proxy log AH01102 (timeout reading the status line). " % (
                             bc.stream, describe_ex(bex), resp_segs[0].frame, len(resp_segs), pc.stream, last_b.frame,
                             ("the TLS 1.3 NewSessionTickets, frames %s, before the rule" % ",".join(map(str, pt_after)))
                             if pt_after else "the handshake", fin.flagstr(), fin.frame) + TLS_DECRYPT % pc.stream)])


# =============================================================================================
# 6. overload and restarts: every connection listed with its truth, read off both captures

def keep_backend_log(run):
    with open(os.path.join(run.tmp, "backend.log")) as f, open(os.path.join(run.out, "backend.log"), "w") as g:
        for line in f:
            g.write(line)


def judge(pc, bc):
    """The truth of one connection of an overload/restart scenario, from both captures: (verdict, blame,
    what the wire shows). Only the patterns the injected faults produce are accepted; anything else
    raises Retry (the scenario is run again)."""
    require(bc is not None, "%s: not in backend.pcap" % pc.client)
    syns = pc.find(fromc=True, flags=S)
    synack = pc.first(fromc=False, flags=S | A)
    bsyns = bc.find(fromc=True, flags=S)
    if syns and not pc.find(fromc=False):
        require(not bc.find(fromc=False) and len(bsyns) == len(syns), "%s: SYNs not all seen / answered at the "
                "backend" % pc.client)
        return "connect-timeout", "backend", (
            "proxy.pcap: %d SYN(s) (frames %s), nothing from the backend; backend.pcap: the same %d SYN(s) arrive "
            "(frames %s) and the backend host never answers" % (
                len(syns), ",".join(str(s.frame) for s in syns), len(bsyns), ",".join(str(s.frame) for s in bsyns)))
    if syns and not synack:
        rst = pc.first(fromc=False, flags=R)
        brst = bc.first(fromc=False, flags=R)
        require(rst and brst and not pc.find(data=True), "%s: SYN not answered by RST" % pc.client)
        return "connect-refused", "backend", (
            "proxy.pcap: SYN frame %d answered by RST frame %d; backend.pcap: the backend host sends the RST (frame "
            "%d): nothing listening" % (syns[0].frame, rst.frame, brst.frame))
    late = ""
    if synack and len(syns) > 1:
        late = ("A late connect: %d SYN(s) went unanswered (proxy.pcap frames %s; backend.pcap shows them arrive, "
                "frames %s), the SYN retransmission at frame %d got the SYN-ACK (frame %d); " % (
                    len(syns) - 1, ",".join(str(s.frame) for s in syns[:-1]),
                    ",".join(str(s.frame) for s in bsyns[:-1]), syns[-1].frame, synack.frame))
    ex, bex = pt.http(pc), pt.http(bc)
    if healthy(pc) and healthy(bc):
        return "ok", "none", late + "%d exchange(s) %s, each complete; %s" % (
            len(ex), describe_ex(ex), "closed with FIN" if pc.find(flags=F) else "still open at the end")
    require(ex, "%s: no HTTP exchange" % pc.client)
    e, be = ex[-1], bex[-1] if bex else None
    require(all(x["request_complete"] and x["response_complete"] and x["status"] == 200 for x in ex[:-1]),
            "%s: a failure before the last exchange" % pc.client)
    prior = ("after %d complete exchange(s), " % (len(ex) - 1)) if len(ex) > 1 else ""
    fin, who = first_close(bc)
    pfin, pwho = first_close(pc)
    require(fin is not None, "%s: no close in backend.pcap" % pc.client)
    resp_before_close = [s for s in pc.find(fromc=False, data=True)
                         if e["resp_frame"] and s.frame >= e["resp_frame"] and s.frame < pfin.frame]
    if who == "proxy":
        require(e["request_complete"] and not resp_before_close and pfin.flags & F, "%s: proxy closed first but not a "
                "timeout" % pc.client)
        last_req = pc.find(fromc=True, data=True)[-1]
        waited = pfin.t - last_req.t
        require(2.5 < waited < 4.5, "%s: the proxy waited %.2f s" % (pc.client, waited))
        acked = [s for s in bc.find(fromc=False) if s.flags & A and (s.ack - bc.isn_c - 1) % 2**32 >=
                 be["req"]["end"] + e["req"]["offset"] * 0] if be and be["req"].get("end") else []
        require(acked, "%s: the backend did not acknowledge the request" % pc.client)
        after = [s for s in pc.find(fromc=False, data=True) if s.frame > pfin.frame]
        return "backend-timeout", "backend", late + prior + (
            "%s %s complete (proxy.pcap frame %d) and acknowledged by the backend (backend.pcap frame %d), no "
            "response byte before the proxy gave up %.2f s later (its FIN, proxy.pcap frame %d)%s" % (
                e["method"], e["target"], last_req.frame, acked[0].frame, waited, pfin.frame,
                ("; the backend's response only came after that (proxy.pcap frame %d) and the proxy's host answered "
                 "it with RST" % after[0].frame) if after else ""))
    require(who == "backend", "%s: unexpected closer" % pc.client)
    kind = "RST" if fin.flags & R else "FIN"
    if not e["request_complete"]:
        return "backend-closed-during-request", "backend", late + prior + (
            "the backend's %s (backend.pcap frame %d, proxy.pcap frame %d) while %s %s was still being sent (%d of "
            "%d body bytes seen at the proxy)" % (
                kind, fin.frame, pfin.frame, e["method"], e["target"], e["req"]["body_seen"],
                e["req"].get("content_length", -1)))
    if e["status"] is None:
        require(not pc.find(fromc=False, data=True) or (len(ex) > 1 and not resp_before_close),
                "%s: response bytes without a status line" % pc.client)
        return "backend-empty-reply", "backend", late + prior + (
            "%s %s complete (proxy.pcap frame %d), then the backend's %s (backend.pcap frame %d, proxy.pcap frame "
            "%d) without a response byte" % (e["method"], e["target"], e["req_frame"], kind, fin.frame, pfin.frame))
    require(not e["response_complete"], "%s: complete response but not healthy" % pc.client)
    return "response-truncated", "backend", late + prior + (
        "response %d to %s %s started at proxy.pcap frame %d, %d of %s body bytes, then the backend's %s (backend.pcap "
        "frame %d, proxy.pcap frame %d)" % (e["status"], e["method"], e["target"], e["resp_frame"],
                                             e["resp"]["body_seen"], e["resp"].get("content_length", "?"), kind,
                                             fin.frame, pfin.frame))


def judged_entries(run, P, B, context):
    conns, counts = [], {}
    for pc, bc in run.pair(P, B):
        v, blame, how = judge(pc, bc)
        counts[v] = counts.get(v, 0) + 1
        conns.append(entry(pc, bc, v, blame, context(pc, bc, v) + " " + how + ". Check: " +
                           tsh("proxy.pcap", pc), exchanges=None if pc.find(data=True) else []))
    return conns, counts


def nstat(ns, *names):
    out = nsx(ns, "nstat -az " + " ".join(names), check=False).stdout
    vals = {}
    for line in out.splitlines():
        p = line.split()
        if len(p) >= 2 and p[0] in names:
            vals[p[0]] = int(p[1])
    return vals


@scenario("apache-backend-listen-queue-full", "apache", attempts=4)
def apache_listen_full(run):
    run.capture()
    run.backend("--backlog", "1", "--accept-after", "3.5", "--idle-close-ms", "60000")
    run.apache(proxypass="ProxyPass / http://%s/ connectiontimeout=2 timeout=3 retry=0" % BACKEND)
    before = nstat("backend", "TcpExtListenOverflows", "TcpExtListenDrops")
    t0 = time.time()
    sessions = []
    for i in range(2):
        sessions.append({"start": 0.0 + 0.05 * i, "requests": [{"path": "/ok/plug-%d?size=2000" % i}]})
    for i in range(3):
        sessions.append({"start": 0.4 + 0.05 * i, "requests": [{"path": "/ok/dropped-%d?size=2000" % i}]})
    for i in range(3):
        sessions.append({"start": 2.9 + 0.05 * i, "requests": [{"path": "/ok/late-%d?size=2000&delay=0.3" % i}]})
    for i in range(3):
        sessions.append({"start": 5.0 + 0.05 * i, "requests": [{"path": "/ok/after-%d?size=2000&delay=0.3" % i}]})
    res = run.client(sessions, max_s=30)
    time.sleep(0.3)
    run.finish()
    after = nstat("backend", "TcpExtListenOverflows", "TcpExtListenDrops")
    keep_backend_log(run)
    P, B = run.conns("proxy"), run.conns("backend")
    phase = {}
    for s, r in zip(sessions, res):
        phase[r[0]["path"]] = s["start"]

    def context(pc, bc, v):
        return ("backend.py --backlog 1 --accept-after 3.5: its listen queue holds 2 connections and nothing is "
                "accepted for 3.5 s, so once 2 connections wait in it the backend's kernel drops new SYNs (nstat "
                "in the backend namespace: TcpExtListenOverflows %d, TcpExtListenDrops %d during the run)." % (
                    after.get("TcpExtListenOverflows", 0) - before.get("TcpExtListenOverflows", 0),
                    after.get("TcpExtListenDrops", 0) - before.get("TcpExtListenDrops", 0)))
    conns, counts = judged_entries(run, P, B, context)
    require(counts.get("connect-timeout", 0) >= 2 and counts.get("ok", 0) >= 3 and
            counts.get("backend-timeout", 0) >= 1, "verdicts %s" % counts)
    late = sum(1 for c in conns if c["verdict"] == "ok" and "late connect" in c["how_we_know"])
    require(late >= 1, "no late connect")
    log_has(run, "AH00957")
    outcomes = {}
    for r in res:
        k = str(r[-1].get("status", r[-1].get("error")))
        outcomes[k] = outcomes.get(k, 0) + 1
    run.write("The backend's listen queue is full: backend.py listens with backlog 1 and accepts nothing during its "
              "first 3.5 s. Two requests at t=0 complete their handshakes and wait, unserved, in the queue (the proxy "
              "gives up on them after its 3 s timeout: backend-timeout); three at t=0.4 find the queue full, their "
              "SYNs and SYN retransmissions are dropped by the backend's kernel (connect-timeout after the proxy's "
              "2 s connectiontimeout); three at t=2.9 get in with a SYN retransmission once the backend starts "
              "accepting (late connects, ok); three at t=5 are served at once. %d connections: %s. Client outcomes: "
              "%s. backend.log is the backend's own log (accept times)." % (
                  len(conns), ", ".join("%d %s" % (n, v) for v, n in sorted(counts.items())),
                  ", ".join("%d x %s" % (n, k) for k, n in sorted(outcomes.items()))), conns)


@scenario("apache-backend-killed-and-restarted", "apache", attempts=4)
def apache_killed(run):
    run.capture()
    run.backend("--idle-close-ms", "60000")
    run.apache(proxypass="ProxyPass / http://%s/ connectiontimeout=2 timeout=5 retry=0" % BACKEND)
    sessions = [
        {"start": 0.0, "requests": [{"path": "/ok/warm-0?size=3000"}]},
        {"start": 0.0, "requests": [{"path": "/ok/warm-1?size=3000&delay=0.1"}]},
        # in flight when the backend is killed at t=1.0
        {"start": 0.6, "requests": [{"path": "/ok/processing?size=3000&delay=2"}]},
        {"start": 0.6, "requests": [{"method": "POST", "path": "/ok/uploading", "body": 2000000,
                                     "body_rate": 500000}]},
        {"start": 0.6, "requests": [{"path": "/slow/downloading?size=2000000&rate=400000"}]},
        # while it is down
        {"start": 1.6, "requests": [{"path": "/ok/while-down-0"}]},
        {"start": 2.3, "requests": [{"path": "/ok/while-down-1"}]},
        # after the restart at t=3.0
        {"start": 3.6, "requests": [{"path": "/ok/after-restart-0?size=4000"}, {"path": "/ok/after-restart-1"}]},
        {"start": 3.6, "requests": [{"method": "POST", "path": "/ok/after-restart-2", "body": 30000}]},
    ]
    p = run.client(sessions, wait=False, max_s=30)
    t0 = time.time()
    time.sleep(1.0)
    old = run.backend_proc
    os.kill(old.pid, signal.SIGKILL)
    old.wait(5)
    t_kill = time.time()
    run.notes.append("backend SIGKILLed (pid %d) at t=%.3f" % (old.pid, t_kill - t0))
    time.sleep(max(0.0, 3.0 - (time.time() - t0)))
    run.backend("--idle-close-ms", "60000")
    t_up = time.time()
    res = run.client_result(p, 30)
    time.sleep(0.3)
    run.finish()
    keep_backend_log(run)
    with open(os.path.join(run.out, "backend.log"), "a") as g:
        g.write("%.6f [lab] backend process %d killed with SIGKILL\n%.6f [lab] backend restarted\n" % (
            t_kill, old.pid, t_up))
    P, B = run.conns("proxy"), run.conns("backend")
    bt = {}

    def context(pc, bc, v):
        t = pc.segs[0].t
        when = "before the kill" if t < t_kill else ("while the backend was down" if t < t_up else
                                                     "after the restart")
        return ("backend.py was killed with SIGKILL %.2f s into the traffic and started again %.2f s later (lab "
                "log appended to backend.log); this connection started %s." % (t_kill - t0, t_up - t_kill, when))
    conns, counts = judged_entries(run, P, B, context)
    require(counts.get("connect-refused", 0) == 2, "verdicts %s" % counts)
    require(counts.get("backend-empty-reply", 0) >= 1 and counts.get("response-truncated", 0) >= 1 and
            counts.get("backend-closed-during-request", 0) >= 1 and counts.get("ok", 0) >= 1, "verdicts %s" % counts)
    log_has(run, "Connection refused")
    outcomes = {}
    for r in res:
        k = str(r[-1].get("status", r[-1].get("error")))
        outcomes[k] = outcomes.get(k, 0) + 1
    run.write("The backend process is killed (SIGKILL) %.1f s into the traffic and restarted %.1f s later. Its kernel "
              "closes every socket of the dead process: FIN where nothing was left unread (a request being processed: "
              "empty reply; a response being sent: truncated; idle pooled connections: orderly), RST where request "
              "data was still unread (an upload in progress). The two connections tried while it is down are "
              "refused (RST: nothing listening); after the restart everything works. %d connections: %s. Client "
              "outcomes: %s." % (t_kill - t0, t_up - t_kill, len(conns), ", ".join(
                  "%d %s" % (n, v) for v, n in sorted(counts.items())), ", ".join(
                  "%d x %s" % (n, k) for k, n in sorted(outcomes.items()))), conns)


@scenario("apache-backend-host-vanishes", "apache", attempts=4)
def apache_vanish(run):
    run.capture()
    run.backend("--idle-close-ms", "300")
    run.apache(proxypass="ProxyPass / http://%s/ connectiontimeout=2 timeout=3 retry=0" % BACKEND)
    sessions = [
        {"start": 0.0, "requests": [{"path": "/ok/before?size=3000"}]},
        {"start": 0.6, "requests": [{"path": "/ok/in-flight-0?size=3000&delay=2"}]},
        {"start": 0.65, "requests": [{"method": "POST", "path": "/ok/in-flight-1?size=3000&delay=2", "body": 20000}]},
        {"start": 1.6, "requests": [{"path": "/ok/after-0"}]},
        {"start": 2.4, "requests": [{"path": "/ok/after-1"}]},
    ]
    p = run.client(sessions, wait=False, max_s=30)
    t0 = time.time()
    time.sleep(1.1)
    nsx("backend", "ip addr flush dev eth0")
    nsx("backend", "ip -6 addr flush dev eth0", check=False)
    t_gone = time.time()
    run.notes.append("backend: ip addr flush dev eth0 at t=%.3f" % (t_gone - t0))
    res = run.client_result(p, 30)
    time.sleep(0.5)
    run.finish()
    keep_backend_log(run)
    with open(os.path.join(run.out, "backend.log"), "a") as g:
        g.write("%.6f [lab] ip addr flush dev eth0 in the backend namespace: the host lost its addresses\n" % t_gone)
    P, B = run.conns("proxy"), run.conns("backend")
    icmp = pt.icmp_errors(run.proxy_pcap)
    require(not icmp, "ICMP errors at the proxy: %s" % icmp)

    def context(pc, bc, v):
        t = pc.segs[0].t
        return ("The backend host loses its addresses (ip addr flush dev eth0 in its namespace, %.2f s into the "
                "traffic): it no longer answers anything, sends no RST and no FIN; its link stays up, so its "
                "capture still sees what the router delivers to it, and the router's ARP entry for it stays "
                "valid (no ICMP from the router). This connection started %s the host vanished." % (
                    t_gone - t0, "before" if t < t_gone else "after"))
    conns, counts = judged_entries(run, P, B, context)
    require(counts.get("backend-timeout", 0) == 2 and counts.get("connect-timeout", 0) == 2 and
            counts.get("ok", 0) == 1, "verdicts %s" % counts)
    for c in conns:
        if c["verdict"] == "backend-timeout":
            c["how_we_know"] += (" The backend never sent the response: after the address flush its stack had no "
                                 "route and no address to send from; backend.pcap shows nothing leaving the backend "
                                 "after t=%.2f s, only the proxy's retransmitted FIN arriving." % (t_gone - t0))
    outcomes = {}
    for r in res:
        k = str(r[-1].get("status", r[-1].get("error")))
        outcomes[k] = outcomes.get(k, 0) + 1
    run.write("The backend host vanishes mid-traffic: %.1f s in, its addresses are removed (ip addr flush). No RST, no "
              "FIN: the two requests it had received and acknowledged are never answered (the proxy gives up after "
              "3 s), and the SYNs of two later connections reach its interface and are never answered (the proxy "
              "gives up after its 2 s connectiontimeout). The router's ARP entry for the backend stays valid for the "
              "whole run, so no ICMP comes back. %d connections: %s. Client outcomes: %s." % (
                  t_gone - t0, len(conns), ", ".join("%d %s" % (n, v) for v, n in sorted(counts.items())),
                  ", ".join("%d x %s" % (n, k) for k, n in sorted(outcomes.items()))), conns)


# =============================================================================================
# 7. a response head that is not strictly valid: "http/1.1 200 OK" with a valid Content-Length body

def _lowercase(run, proxy, needle, said):
    run.capture()
    run.backend()
    proxy()
    res = run.client([
        {"requests": [{"path": "/ok/normal?size=300"}, {"path": "/lowercase/keep-alive?size=2000", "gap": 0.2}]},
        {"start": 4.0, "requests": [{"path": "/lowercase/close?size=2000&close=1"}]}], max_s=30)
    time.sleep(0.3)
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    require(len(P) == 2, "%d backend connections, not 2" % len(P))
    conns = []
    for pc, bc in run.pair(P, B):
        require(bc is not None, "no backend view")
        ex, bex = pt.http(pc), pt.http(bc)
        e = ex[-1]
        require(e["target"].startswith("/lowercase") and e["status"] == 200 and e["response_complete"] and
                e["request_complete"], "lower-case exchange not complete: %s" % ex)
        head = pc.bytes_dir(False)[0][e["resp"]["head_offset"]:][:15]
        require(head == b"http/1.1 200 OK", "head %r" % head)
        require(all(x["status"] == 200 and x["response_complete"] for x in ex), "an exchange failed")
        require(not pc.find(flags=R) and not bc.find(flags=R), "RST")
        fin, who = first_close(pc)
        resp_end = [s for s in pc.find(fromc=False, data=True)][-1]
        if "close=1" in e["target"]:
            require(who == "backend" and fin.t - resp_end.t < 0.1, "the backend did not close after the response")
            tail = ("the backend said 'Connection: close' and closed right after the body (its FIN, proxy.pcap frame "
                    "%d), then the proxy closed too" % fin.frame)
        else:
            require(who == "proxy" and 2.5 < fin.t - resp_end.t < 4.5, "the proxy did not wait for its timeout")
            tail = ("the backend kept the connection open (keep-alive); the proxy, reading the response as HTTP/0.9 "
                    "(until close), waited %.2f s for more and then closed (its FIN, proxy.pcap frame %d; the "
                    "backend's FIN follows at frame %d): its timeout, not a backend failure on the wire" % (
                        fin.t - resp_end.t, fin.frame, pc.first(fromc=False, flags=F).frame))
        conns.append(entry(pc, bc, "ok", "none",
                           "backend.py mode /lowercase: the status line is 'http/1.1 200 OK' (lower-case protocol "
                           "name, which RFC 9112 does not allow, but which lenient clients such as curl and browsers "
                           "accept) with Content-Length 2000 and a 2000-byte body. proxy.pcap tcp.stream==%d: %s; "
                           "the lower-case response starts at frame %d and its body is complete by frame %d; %s. "
                           "The proxy did not accept the head: %s. Check: %s" % (
                               pc.stream, describe_ex(ex), e["resp_frame"], resp_end.frame, tail,
                               said["close" if "close=1" in e["target"] else "keep"], tsh("proxy.pcap", pc))))
    log_has(run, needle)
    outcomes = ", ".join("%s %s" % (r[-1]["path"].split("?")[0], r[-1].get("status", r[-1].get("error")))
                         for r in res)
    run.write("The backend answers two GETs with the status line 'http/1.1 200 OK' (lower-case) and a valid "
              "Content-Length body: once on a keep-alive connection after a normal exchange, once with "
              "'Connection: close'. On the wire every request is fully answered and every connection closes with "
              "FIN, so the truth is ok for both. The proxy itself is strict: it takes the head for an HTTP/0.9 "
              "response (no status line) and reads until the backend closes, so on the keep-alive connection it "
              "waits for its 3 s timeout. What its client got (last request of each client connection): %s."
              % outcomes, conns)


@scenario("apache-lowercase-status-line", "apache")
def apache_lower(run):
    _lowercase(run, run.apache, "AH01110", {
        "keep": "it read the response as HTTP/0.9 and logged AH01110 'error reading response' at its timeout; its "
                "client got a 200 whose body is the backend's head and body, cut when the proxy gave up",
        "close": "it passed the backend's bytes on as an HTTP/0.9 body and logged nothing (access log: 200, 2105 "
                 "bytes, the backend's head included)"})


@scenario("nginx-lowercase-status-line", "nginx")
def nginx_lower(run):
    _lowercase(run, lambda: run.nginx(upstream_extra="keepalive 8;"), "upstream sent no valid HTTP/1.0 header", {
        "keep": "proxy log 'upstream sent no valid HTTP/1.0 header', then 'upstream timed out' 3 s later; access "
                "log status 009 (HTTP/0.9), the client connection closed without a response",
        "close": "proxy log 'upstream sent no valid HTTP/1.0 header'; access log status 009 (HTTP/0.9 response: the "
                 "backend's head and body passed on raw)"})

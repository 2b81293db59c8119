"""The lab's scenarios. Each one: start captures, proxy and backend, inject one fault, run the client,
stop everything, then read the captures with tshark (pcaptruth) and *require* that the wire shows the
intended failure (otherwise lab.Retry runs it again). The ground truth written to expected.json comes
from what was injected, confirmed by those checks; the evidence text names the frames that show it."""
import os
import random
import subprocess
import time

import lab
import pcaptruth as pt
from lab import (BACKEND, BACKEND6, VIP, Retry, require, entry, ladder, tsh, healthy, first_close, scenario, nsx)

R = pt.RST
F = pt.FIN
S = pt.SYN
A = pt.ACK


def one(P, what="connection"):
    require(len(P) == 1, "expected exactly one %s, got %d" % (what, len(P)))
    return P[0]


def status_of(res):
    r = res[0][-1]
    if "status" in r:
        return "The client got %d after %.1f s" % (r["status"], r["elapsed"])
    return "The client got no response (%s) after %.1f s" % (r.get("error", "aborted"), r["elapsed"])


def log_has(run, *needles):
    text = open(run.proxy_log, errors="replace").read()
    for n in needles:
        alts = n if isinstance(n, tuple) else (n,)
        require(any(a in text for a in alts), "proxy log lacks %r" % (n,))
    return text


def ok_entry(pc, bc, why="all requests fully sent and fully answered, orderly close"):
    require(healthy(pc), "connection %s is not healthy in the proxy capture" % pc.client)
    if bc is not None:
        require(healthy(bc), "connection %s is not healthy in the backend capture" % bc.client)
    ex = pt.http(pc)
    return entry(pc, bc, "ok", "none",
                 "Normal traffic, no fault injected on this connection. %s: %d exchange(s) %s, each request "
                 "complete and answered with a complete response; %s. proxy.pcap tcp.stream==%d: %s."
                 % (why, len(ex), ", ".join("%s %s -> %s" % (e["method"], e["target"], e["status"]) for e in ex),
                    "closed with FIN" if pc.find(flags=F) else "still open at the end of the capture",
                    pc.stream, ladder(pc, 8)))


def all_ok(run, P, B):
    out = []
    for pc, bc in run.pair(P, B):
        require(bc is not None or not run.backend_files, "no backend view for %s" % pc.client)
        out.append(ok_entry(pc, bc))
    return out


# =============================================================================================
# ok, with keep-alive reuse, a large POST, a chunked request body and Expect: 100-continue

def _uploads(run, proxy, forwards_expect=True):
    run.capture()
    run.backend()
    proxy()
    reqs = [{"method": "GET", "path": "/ok/first?size=2000"},
            {"method": "POST", "path": "/ok/large-post?size=200", "body": 1048576},
            {"method": "POST", "path": "/ok/chunked-post?size=300", "body": 200000, "chunked": True},
            {"method": "POST", "path": "/ok/expect-100?size=400", "body": 60000, "expect": True},
            {"method": "GET", "path": "/ok/last?size=50000"}]
    res = run.client([{"requests": reqs}])
    require(all(r.get("status") == 200 for r in res[0]), "a request failed: %s" % res)
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    conns = all_ok(run, P, B)
    allex = [(pc, e) for pc in P for e in pt.http(pc)]
    reused = [pc for pc in P if len(pt.http(pc)) >= 2]
    require(reused, "no backend connection was reused")
    big = [e for pc, e in allex if e["target"].startswith("/ok/large-post")]
    require(big and big[0]["req"].get("content_length", 0) >= 1048576, "no 1 MB POST with Content-Length")
    ch = [e for pc, e in allex if e["target"].startswith("/ok/chunked-post")]
    require(ch and ch[0]["req"].get("framing") == "chunked", "proxy did not send the body chunked: %s" %
            (ch and ch[0]["req"].get("framing")))
    ex = [e for pc, e in allex if e["target"].startswith("/ok/expect-100")]
    if forwards_expect:
        require(ex and ex[0]["req"]["expect"] and 100 in ex[0]["interim"], "no 100 Continue from the backend")
        how = "forwarding the Expect header, to which the backend answers 100 Continue before the final 200"
    else:
        require(ex and not ex[0]["req"]["expect"], "Expect forwarded")
        how = ("answering the client's Expect: 100-continue itself (nginx does not forward Expect; the backend sees "
               "a plain POST)")
    run.write("One client keep-alive connection sends GET, a 1 MiB POST (Content-Length), a 200 kB chunked POST, "
              "a 60 kB POST with Expect: 100-continue and a GET; the proxy forwards them over %d reused backend "
              "connection(s) (%s), forwarding the chunked body as chunked and %s. Every exchange succeeds."
              % (len(P), ", ".join("%d exchanges" % len(pt.http(pc)) for pc in P), how), conns)


@scenario("apache-ok-keepalive-uploads", "apache")
def apache_ok(run):
    _uploads(run, run.apache)


@scenario("nginx-ok-keepalive-uploads", "nginx")
def nginx_ok(run):
    _uploads(run, lambda: run.nginx(extra="proxy_request_buffering off;", upstream_extra="keepalive 8;"),
             forwards_expect=False)


# =============================================================================================
# connect-refused

def _refused(run, proxy, needle):
    run.capture()
    proxy()  # no backend listening
    res = run.client([{"requests": [{"path": "/refused"}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    require(P, "no connection attempt")
    conns = []
    for pc, bc in run.pair(P, B):
        syn = pc.first(fromc=True, flags=S)
        rst = pc.first(fromc=False, flags=R)
        require(syn and rst and not pc.find(fromc=False, flags=S | A), "not a refused SYN")
        require(bc and bc.first(fromc=False, flags=R), "backend did not send the RST")
        conns.append(entry(pc, bc, "connect-refused", "backend",
                           "Nothing listens on %s in the backend namespace. proxy.pcap frame %d SYN is answered by "
                           "RST/ACK frame %d; backend.pcap shows the same SYN (frame %d) and the backend host's RST "
                           "(frame %d). Check: %s" % (BACKEND, syn.frame, rst.frame, bc.first(fromc=True, flags=S).frame,
                                                       bc.first(fromc=False, flags=R).frame, tsh("proxy.pcap", pc)),
                           exchanges=[]))
    log_has(run, needle)
    run.write("The backend process is not running, so the backend host answers the proxy's SYN with RST. "
              "The proxy logs connection refused; %s." % status_of(res), conns)


@scenario("apache-connect-refused", "apache")
def apache_refused(run):
    _refused(run, run.apache, "Connection refused")


@scenario("nginx-connect-refused", "nginx")
def nginx_refused(run):
    _refused(run, run.nginx, "Connection refused")


# =============================================================================================
# connect-timeout: three variants

def _connect_timeout(run, where):
    run.capture()
    run.backend()
    if where == "syn-lost":
        run.ipt("router", "-A FORWARD -p tcp -d 10.0.2.2 --dport 8080 --syn -j DROP")
    elif where == "synack-lost":
        run.ipt("router", "-A FORWARD -p tcp -s 10.0.2.2 --sport 8080 --tcp-flags SYN,ACK SYN,ACK -j DROP")
    else:
        run.ipt("backend", "-A INPUT -p tcp --dport 8080 --syn -j DROP")
    run.apache()
    res = run.client([{"requests": [{"path": "/connect-timeout"}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    syns = pc.find(fromc=True, flags=S)
    require(len(syns) >= 2 and not pc.find(fromc=False), "proxy side is not SYNs without answer")
    first = "proxy.pcap: SYN frame %d and %d retransmission(s) (frames %s), nothing from the backend; " % (
        syns[0].frame, len(syns) - 1, ",".join(str(s.frame) for s in syns[1:]))
    if where == "syn-lost":
        require(bc is None, "SYN reached the backend")
        how = ("Router drops proxy->backend SYNs (iptables FORWARD --syn -j DROP). " + first +
               "backend.pcap holds no packet of this connection (no SYN with ISN %d)." % pc.isn_c)
        blame = "network"
    elif where == "synack-lost":
        require(bc is not None and bc.find(fromc=False, flags=S | A), "backend did not send SYN-ACK")
        sa = bc.find(fromc=False, flags=S | A)
        how = ("Router drops the backend's SYN-ACKs (iptables FORWARD --tcp-flags SYN,ACK SYN,ACK -j DROP). " + first +
               "backend.pcap: the SYNs arrive (frame %d) and the backend answers SYN-ACK %d time(s) (frames %s)."
               % (bc.first_frame, len(sa), ",".join(str(s.frame) for s in sa)))
        blame = "network"
    else:
        require(bc is not None and not bc.find(fromc=False), "backend answered")
        how = ("The backend host drops incoming SYNs in its INPUT chain (iptables -A INPUT --dport 8080 --syn -j DROP; "
               "tcpdump sees packets before netfilter). " + first + "backend.pcap: the same SYNs arrive (frames %s) "
               "and the backend never answers." % ",".join(str(s.frame) for s in bc.find(fromc=True, flags=S)))
        blame = "backend"
    how += " Check: " + tsh("proxy.pcap", pc)
    log_has(run, "AH00957")
    run.write("The proxy connects with connectiontimeout=2; %s. No SYN-ACK reaches the proxy, it gives up after 2 s "
              "(AH00957) and %s." % ({"syn-lost": "the router drops the SYN", "synack-lost":
                                       "the router drops the backend's SYN-ACK",
                                       "ignored": "the backend host's firewall silently drops the SYN"}[where],
                                      status_of(res)),
              [entry(pc, bc, "connect-timeout", blame, how, exchanges=[])])


@scenario("apache-connect-timeout-syn-lost", "apache")
def apache_ct_syn(run):
    _connect_timeout(run, "syn-lost")


@scenario("apache-connect-timeout-synack-lost", "apache")
def apache_ct_synack(run):
    _connect_timeout(run, "synack-lost")


@scenario("apache-connect-timeout-backend-ignores-syn", "apache")
def apache_ct_ignored(run):
    _connect_timeout(run, "ignored")


# =============================================================================================
# backend-empty-reply

def _empty(run, proxy, needle):
    run.capture()
    run.backend()
    proxy()
    res = run.client([{"requests": [{"method": "POST", "path": "/empty", "body": 5000}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    ex = pt.http(pc)
    require(len(ex) == 1 and ex[0]["request_complete"] and ex[0]["status"] is None, "not a complete unanswered request")
    require(not pc.find(fromc=False, data=True), "backend sent data")
    fin, who = first_close(bc)
    require(who == "backend", "backend did not close first")
    log_has(run, needle)
    pfin = pc.first(fromc=False, flags=F)
    run.write("The backend reads the whole POST and closes the connection without sending a byte. %s." % status_of(res),
              [entry(pc, bc, "backend-empty-reply", "backend",
                     "backend.py mode /empty: read the request, close(). proxy.pcap tcp.stream==%d: request complete "
                     "(frame %d, %d body bytes), then FIN from the backend at frame %d, no payload from the backend; "
                     "backend.pcap frame %d is the backend's FIN. Check: %s"
                     % (pc.stream, ex[0]["req_frame"], ex[0]["req"]["body_seen"], pfin.frame, fin.frame,
                        tsh("proxy.pcap", pc)))])


@scenario("apache-backend-empty-reply", "apache")
def apache_empty(run):
    _empty(run, run.apache, "AH01102")


@scenario("nginx-backend-empty-reply", "nginx")
def nginx_empty(run):
    _empty(run, run.nginx, "upstream prematurely closed connection while reading response header")


# =============================================================================================
# response-truncated

def _truncated(run, proxy, needle, shift=0.0):
    run.capture()
    run.backend()
    proxy()
    res = run.client([{"requests": [{"path": "/ok/before?size=3000"},
                                    {"path": "/truncate?size=200000&send=60000"}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    conns = []
    found = False
    for pc, bc in run.pair(P, B):
        ex = pt.http(pc)
        if any(e["target"].startswith("/truncate") for e in ex):
            e = ex[-1]
            require(e["status"] == 200 and not e["response_complete"], "response not truncated")
            fin, who = first_close(bc)
            require(who == "backend", "backend did not close first")
            conns.append(entry(pc, bc, "response-truncated", "backend",
                               "backend.py mode /truncate: Content-Length 200000, sends 60000 body bytes, closes. "
                               "proxy.pcap tcp.stream==%d: response header at frame %d (200, Content-Length 200000), "
                               "%d body bytes seen, FIN from the backend at frame %d; backend.pcap FIN frame %d. "
                               "Check: %s" % (pc.stream, e["resp_frame"], e["resp"]["body_seen"],
                                              pc.first(fromc=False, flags=F).frame, fin.frame,
                                              tsh("proxy.pcap", pc))))
            found = True
        else:
            conns.append(ok_entry(pc, bc))
    require(found, "no truncated exchange")
    log_has(run, needle)
    if shift:
        run.shift_backend(shift)
    run.write("GET /ok then GET /truncate on one client connection; the backend answers the second with "
              "Content-Length 200000 but closes after 60000 body bytes. %s.%s" % (
                  status_of(res), (" backend.pcap was shifted by %+.2f s with editcap -t (backend clock off)." % shift)
                  if shift else ""), conns)


@scenario("apache-response-truncated", "apache")
def apache_trunc(run):
    _truncated(run, run.apache, "AH01110", shift=-3.5)


@scenario("nginx-response-truncated", "nginx")
def nginx_trunc(run):
    _truncated(run, lambda: run.nginx(upstream_extra="keepalive 8;"), "upstream prematurely closed connection while reading upstream")


# =============================================================================================
# backend-timeout

def _timeout(run, proxy, needle, shift=0.0):
    run.capture()
    run.backend()
    proxy()
    res = run.client([{"requests": [{"method": "POST", "path": "/never", "body": 20000}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    ex = pt.http(pc)
    require(ex and ex[0]["request_complete"] and ex[0]["status"] is None, "request incomplete or answered")
    require(not bc.find(fromc=False, data=True), "backend sent data")
    fin, who = first_close(pc)
    require(who == "proxy", "proxy did not give up first")
    last_req = pc.find(fromc=True, data=True)[-1]
    waited = fin.t - last_req.t
    require(2.5 < waited < 4.5, "proxy waited %.2f s" % waited)
    log_has(run, needle)
    if shift:
        run.shift_backend(shift)
    run.write("The backend reads the whole request and never answers; the proxy gives up after its 3 s read timeout "
              "and closes the backend connection. %s.%s" % (status_of(res), (
                  " backend.pcap was shifted by %+.2f s with editcap -t (backend clock off by hours)." % shift)
                  if shift else ""),
              [entry(pc, bc, "backend-timeout", "backend",
                     "backend.py mode /never: reads the request, never answers. proxy.pcap tcp.stream==%d: request "
                     "complete by frame %d and ACKed by the backend, no byte from the backend, the proxy's FIN at "
                     "frame %d, %.2f s after the last request byte. Check: %s"
                     % (pc.stream, last_req.frame, fin.frame, waited, tsh("proxy.pcap", pc)))])


@scenario("apache-backend-timeout", "apache")
def apache_timeout(run):
    _timeout(run, run.apache, "AH01102")


@scenario("nginx-backend-timeout", "nginx")
def nginx_timeout(run):
    _timeout(run, run.nginx, "upstream timed out", shift=10800.25)


# =============================================================================================
# backend-closed-during-request

def _closed_during(run, proxy, needle):
    run.capture()
    run.backend()
    proxy()
    res = run.client([{"requests": [{"method": "POST", "path": "/close-mid-request?read=100000", "body": 1048576}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    ex = pt.http(pc)
    require(ex and not ex[0]["request_complete"], "request was complete")
    fin, who = first_close(bc)
    require(who == "backend", "backend did not close first")
    rst = bc.first(fromc=False, flags=R)
    log_has(run, needle)
    run.write("A 1 MiB POST; the backend reads the headers and 100000 body bytes, then closes its socket with unread "
              "data (the kernel sends RST). %s." % status_of(res),
              [entry(pc, bc, "backend-closed-during-request", "backend",
                     "backend.py mode /close-mid-request?read=100000: close() after 100000 body bytes. backend.pcap: "
                     "the backend's %s at frame %d while the proxy was still sending (request body seen %d of "
                     "1048576 bytes in proxy.pcap); proxy.pcap tcp.stream==%d ends with the backend's %s at frame %d. "
                     "Check: %s" % (fin.flagstr(), fin.frame, ex[0]["req"]["body_seen"], pc.stream,
                                    (pc.first(fromc=False, flags=R) or pc.first(fromc=False, flags=F)).flagstr(),
                                    (pc.first(fromc=False, flags=R) or pc.first(fromc=False, flags=F)).frame,
                                    tsh("proxy.pcap", pc)))])


@scenario("apache-backend-closed-during-request", "apache")
def apache_closed(run):
    _closed_during(run, run.apache, "AH01097")


@scenario("nginx-backend-closed-during-request", "nginx")
def nginx_closed(run):
    _closed_during(run, run.nginx, ("while sending request to upstream", "while reading response header from upstream"))


# =============================================================================================
# request-incomplete

def _req_incomplete(run, proxy, needle):
    run.capture()
    run.backend()
    proxy()
    res = run.client([{"requests": [{"method": "POST", "path": "/ok/upload", "body": 600000, "body_rate": 400000,
                                     "abort_after_body": 250000}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    ex = pt.http(pc)
    require(ex and not ex[0]["request_complete"] and ex[0]["req"].get("body_seen", 0) > 0,
            "request not partially sent")
    fin, who = first_close(pc)
    require(who == "proxy", "proxy did not close first")
    log_has(run, needle)
    run.write("The client announces a 600000-byte POST body, sends 250000 bytes at 400 kB/s and closes its "
              "connection; the proxy, which was streaming the body to the backend, closes the backend connection "
              "with the request incomplete.",
              [entry(pc, bc, "request-incomplete", "proxy",
                     "client.py abort_after_body=250000 of Content-Length 600000. proxy.pcap tcp.stream==%d: request "
                     "headers at frame %d, %d of 600000 body bytes sent, then the proxy's %s at frame %d; the backend "
                     "never closed first (backend.pcap frame %d shows the proxy's %s arriving). Check: %s"
                     % (pc.stream, ex[0]["req_frame"], ex[0]["req"]["body_seen"], fin.flagstr(), fin.frame,
                        first_close(bc)[0].frame, first_close(bc)[0].flagstr(), tsh("proxy.pcap", pc)))])


@scenario("apache-request-incomplete", "apache")
def apache_reqinc(run):
    _req_incomplete(run, run.apache, "AH02608")


@scenario("nginx-request-incomplete", "nginx")
def nginx_reqinc(run):
    _req_incomplete(run, lambda: run.nginx(extra="proxy_request_buffering off;"),
                    "client prematurely closed connection")


# =============================================================================================
# zero-window-stall

def _zero_window(run, proxy, needle):
    run.capture()
    run.backend("--rcvbuf", "4096")
    proxy()
    res = run.client([{"requests": [{"method": "POST", "path": "/stall", "body": 400000}]}])
    time.sleep(1.0)
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    ex = pt.http(pc)
    require(ex and not ex[0]["request_complete"], "request was complete")
    zw = [s for s in bc.find(fromc=False) if s.win == 0 and not s.flags & (S | R)]
    require(zw, "backend never advertised a zero window")
    require(not pc.find(fromc=False, flags=F) and not pc.find(fromc=False, flags=R), "backend closed")
    require(res[0][-1].get("status") in (502, 504) and 2.5 < res[0][-1]["elapsed"] < 4.5, "client: %s" % res)
    fin, who = first_close(pc)
    zwp = [s for s in pc.find(fromc=False) if s.win == 0 and not s.flags & (S | R)]
    log_has(run, needle)
    close = ("the proxy's %s at frame %d" % (fin.flagstr(), fin.frame)) if fin else (
        "no FIN from the proxy: its FIN is queued behind the unsent body, so the proxy's kernel keeps probing the "
        "zero window until the end of the capture (last frame %d)" % pc.last_frame)
    run.write("The backend sets SO_RCVBUF=4096 before listen() and stops reading after the request headers of a "
              "400000-byte POST; its receive window closes, the proxy's send blocks and it gives up after its 3 s "
              "timeout (proxy log). %s." % status_of(res),
              [entry(pc, bc, "zero-window-stall", "backend",
                     "backend.py --rcvbuf 4096, mode /stall (never reads the body). backend.pcap: first zero-window "
                     "ACK from the backend at frame %d (%d zero-window segments); proxy.pcap tcp.stream==%d: zero "
                     "window seen from frame %d, only %d of 400000 body bytes sent, %s. The proxy logged its send "
                     "timeout 3 s after the stall. Check: tshark -r backend.pcap -Y 'tcp.stream==%d && "
                     "tcp.window_size==0'"
                     % (zw[0].frame, len(zw), pc.stream, zwp[0].frame if zwp else 0, ex[0]["req"]["body_seen"],
                        close, bc.stream))])


@scenario("apache-zero-window-stall", "apache")
def apache_zw(run):
    _zero_window(run, run.apache, "AH01097")


@scenario("nginx-zero-window-stall", "nginx")
def nginx_zw(run):
    _zero_window(run, lambda: run.nginx(extra="proxy_request_buffering off;"), "timed out")


# =============================================================================================
# lost-in-transit: request direction, response direction

@scenario("apache-lost-in-transit-request", "apache")
def apache_lost_req(run):
    run.capture()
    run.backend()
    run.ipt("router", "-A FORWARD -s 10.0.1.2 -d 10.0.2.2 -p tcp -m string --string 'GET /lost-request' --algo bm -j DROP")
    run.apache()
    res = run.client([{"requests": [{"path": "/ok/warm-up"}, {"path": "/lost-request"}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    ex = pt.http(pc)
    require(len(ex) == 2 and ex[1]["request_complete"] and ex[1]["status"] is None, "lost request not sent")
    bex = pt.http(bc)
    require(len(bex) == 1, "the lost request arrived at the backend")
    tx = [s for s in pc.find(fromc=True, data=True) if s.frame >= ex[1]["req_frame"]]
    require(len(tx) >= 2, "no retransmission")
    fin = next((s for s in pc.segs if s.fromc and s.flags & (F | R) and s.frame > ex[1]["req_frame"]), None)
    close = ("the proxy's %s at frame %d" % (fin.flagstr(), fin.frame)) if fin else (
        "no FIN from the proxy after it gave up (3 s, proxy log AH01102): the FIN waits behind the unacknowledged "
        "request, which the proxy's kernel keeps retransmitting to the end of the capture")
    log_has(run, "AH01102")
    run.write("GET /ok then GET /lost-request on one reused backend connection; the router drops every packet "
              "carrying 'GET /lost-request' (retransmissions too). The backend never sees the second request, the "
              "proxy times out after 3 s. %s." % status_of(res),
              [entry(pc, bc, "lost-in-transit", "network",
                     "Router: iptables -A FORWARD -s 10.0.1.2 -d 10.0.2.2 -m string --string 'GET /lost-request' -j "
                     "DROP. proxy.pcap tcp.stream==%d: the request leaves at frame %d and is retransmitted %d time(s) "
                     "(frames %s), never ACKed; %s. backend.pcap tcp.stream==%d holds only the "
                     "first exchange (GET /ok/warm-up): the second request never arrived. Check: %s"
                     % (pc.stream, tx[0].frame, len(tx) - 1, ",".join(str(s.frame) for s in tx[1:]), close,
                        bc.stream, tsh("proxy.pcap", pc)))])


def _mtu_black_hole(run, proxy, needle):
    """An MTU black hole between backend and proxy: the router drops every backend->proxy packet of
    1000 bytes or more and sends no ICMP fragmentation-needed, so the backend never learns to send
    smaller ones. Its full-size segments (and their retransmissions) vanish; the small last one of
    the response passes."""
    run.capture()
    run.backend()
    # The backend's segments as they go on the wire (no TSO/GSO: the router's length match sees
    # the segments the backend capture shows).
    nsx("backend", "ethtool -K eth0 tso off gso off")
    run.ipt("router", "-A FORWARD -s 10.0.2.2 -d 10.0.1.2 -p tcp -m length --length 1000:65535 -j DROP")
    proxy()
    res = run.client([{"requests": [{"path": "/ok/mtu?size=5000"}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    ex = pt.http(pc)
    require(ex and ex[0]["request_complete"] and ex[0]["status"] is None, "request incomplete or answered")
    big = [x for x in bc.find(fromc=False, data=True) if x.len + 52 >= 1000]
    require(len(big) >= 2, "the backend sent no full-size segments")
    require(len({x.seq for x in big}) < len(big), "the backend did not retransmit its full-size segments")
    arrived = pc.find(fromc=False, data=True)
    require(arrived and all(x.len + 52 < 1000 for x in arrived), "a full-size segment reached the proxy")
    fin, who = first_close(pc)
    require(who == "proxy", "proxy did not give up first")
    log_has(run, needle)
    run.write("GET of a 5000-byte response; the router drops every backend->proxy packet of 1000 bytes or more "
              "and sends no ICMP (an MTU black hole), so the backend's full-size segments and their "
              "retransmissions never arrive while its small last segment does. The proxy times out after 3 s. "
              "%s." % status_of(res),
              [entry(pc, bc, "lost-in-transit", "network",
                     "Router: iptables -A FORWARD -s 10.0.2.2 -d 10.0.1.2 -m length --length 1000:65535 -j DROP "
                     "(backend: ethtool -K eth0 tso off gso off). backend.pcap tcp.stream==%d: %d full-size "
                     "segment transmissions (frames %s); proxy.pcap tcp.stream==%d: only the backend's small "
                     "segments arrive (frames %s), the proxy gives up with its %s at frame %d. Check: %s"
                     % (bc.stream, len(big), ",".join(str(x.frame) for x in big), pc.stream,
                        ",".join(str(x.frame) for x in arrived), fin.flagstr(), fin.frame,
                        tsh("proxy.pcap", pc)))])


@scenario("apache-mtu-black-hole", "apache")
def apache_mtu(run):
    _mtu_black_hole(run, run.apache, "AH01102")


@scenario("nginx-mtu-black-hole", "nginx")
def nginx_mtu(run):
    _mtu_black_hole(run, run.nginx, "upstream timed out")


@scenario("apache-lost-in-transit-response", "apache")
def apache_lost_resp(run):
    run.capture()
    run.backend()
    run.ipt("router", "-A FORWARD -s 10.0.2.2 -d 10.0.1.2 -p tcp -m string --string 'lost-response-marker' --algo bm -j DROP")
    run.apache()
    res = run.client([{"requests": [{"path": "/mark?marker=lost-response-marker&size=3000"}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    ex = pt.http(pc)
    require(ex and ex[0]["request_complete"] and ex[0]["status"] is None, "response arrived")
    require(pc.bytes_dir(False)[0] == b"", "the start of the response reached the proxy")
    btx = bc.find(fromc=False, data=True)
    require(len(btx) >= 2, "backend did not retransmit")
    late = pc.find(fromc=False, data=True)
    fin, who = first_close(pc)
    require(who == "proxy", "proxy did not close first")
    log_has(run, "AH01102")
    run.write("The backend answers GET /mark with a response carrying the header 'X-Lab-Marker: lost-response-marker'; "
              "the router drops every backend->proxy packet containing that string. The proxy never receives the "
              "start of the response and times out after 3 s. %s." % status_of(res),
              [entry(pc, bc, "lost-in-transit", "network",
                     "Router: iptables -A FORWARD -s 10.0.2.2 -d 10.0.1.2 -m string --string lost-response-marker -j "
                     "DROP. backend.pcap tcp.stream==%d: the response leaves at frame %d, followed by %d more data "
                     "segment(s) from the backend (the rest of the response and its retransmissions); proxy.pcap tcp.stream==%d: the response's first byte never arrives (%s), the proxy "
                     "gives up with its %s at frame %d. Check: %s"
                     % (bc.stream, btx[0].frame, len(btx) - 1, pc.stream,
                        ("only a later segment without the marker arrived, out of order: frames %s" %
                         ",".join(str(x.frame) for x in late)) if late else "no payload from the backend at all",
                        fin.flagstr(), fin.frame, tsh("backend.pcap", bc)))])


# =============================================================================================
# rst-from-middlebox

@scenario("apache-rst-from-middlebox", "apache")
def apache_mbrst(run):
    run.capture()
    run.backend()
    run.ipt("router", "-A FORWARD -s 10.0.1.2 -d 10.0.2.2 -p tcp -m string --string '/forbidden' --algo bm "
                      "-j REJECT --reject-with tcp-reset")
    run.apache()
    res = run.client([{"requests": [{"path": "/ok/before"}, {"path": "/forbidden/thing"}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    ex = pt.http(pc)
    require(len(ex) == 2 and ex[1]["status"] is None, "second request answered")
    rst = pc.first(fromc=False, flags=R)
    require(rst is not None, "no RST at the proxy")
    require(not bc.find(fromc=False, flags=R), "backend itself sent a RST")
    require(len(pt.http(bc)) == 1, "the forbidden request reached the backend")
    log_has(run, "AH01102")
    run.write("GET /ok then GET /forbidden/thing on one reused backend connection; a firewall on the router matches "
              "'/forbidden' and answers with a forged TCP reset (REJECT --reject-with tcp-reset), dropping the "
              "request. The proxy sees a RST from the backend's address that the backend never sent. %s."
              % status_of(res),
              [entry(pc, bc, "rst-from-middlebox", "network",
                     "Router: iptables -A FORWARD -m string --string /forbidden -j REJECT --reject-with tcp-reset. "
                     "proxy.pcap tcp.stream==%d: request frame %d answered by RST frame %d 'from' %s; backend.pcap "
                     "tcp.stream==%d: the backend never sends a RST and never receives the second request (only "
                     "GET /ok/before is in it). Check: %s -Y 'tcp.flags.reset==1' in both captures"
                     % (pc.stream, ex[1]["req_frame"], rst.frame, pc.server, bc.stream, "tshark -r proxy.pcap"))])


# =============================================================================================
# proxy-aborted

def _proxy_aborted(run, proxy, needle):
    run.capture()
    run.backend()
    proxy()
    res = run.client([{"requests": [{"path": "/slow?size=1500000&rate=300000", "abort_after_s": 1.0}]}])
    time.sleep(0.5)
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    ex = pt.http(pc)
    require(ex and ex[0]["status"] == 200 and not ex[0]["response_complete"], "response completed")
    fin, who = first_close(pc)
    require(who == "proxy", "proxy did not close first")
    bfin, bwho = first_close(bc)
    require(bwho == "proxy", "backend closed first in backend.pcap")
    if needle:
        log_has(run, needle)
    run.write("The backend sends a 1500000-byte response at 300 kB/s; the client reads it for 1 s and closes its "
              "connection; the proxy then closes the backend connection while the backend is still sending.",
              [entry(pc, bc, "proxy-aborted", "proxy",
                     "client.py abort_after_s=1.0 on GET /slow (1500000 bytes at 300 kB/s). proxy.pcap tcp.stream==%d: "
                     "response header at frame %d, %d of 1500000 body bytes received, the proxy's %s at frame %d "
                     "while data keeps coming; backend.pcap: the proxy's %s arrives at frame %d, the backend had not "
                     "closed. Check: %s" % (pc.stream, ex[0]["resp_frame"], ex[0]["resp"]["body_seen"], fin.flagstr(),
                                            fin.frame, bfin.flagstr(), bfin.frame, tsh("proxy.pcap", pc)))])


@scenario("apache-proxy-aborted", "apache")
def apache_aborted(run):
    _proxy_aborted(run, run.apache, None)  # Apache logs no error; its access log shows 200 with a short byte count


@scenario("nginx-proxy-aborted", "nginx")
def nginx_aborted(run):
    _proxy_aborted(run, run.nginx, "client prematurely closed connection")


# =============================================================================================
# capture-incomplete: connection older than the capture; capture that dropped packets

@scenario("apache-capture-started-late", "apache")
def apache_late(run):
    run.backend()
    run.apache()
    p = run.client([{"requests": [{"path": "/ok/before-capture", "at": 0.0},
                                  {"path": "/ok/after-capture-1?size=20000", "at": 2.0},
                                  {"path": "/ok/after-capture-2", "at": 2.3}]}], wait=False)
    time.sleep(0.8)
    run.capture()
    res = run.client_result(p)
    require(all(r.get("status") == 200 for r in res[0]), "a request failed")
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    require(not pc.syn_seen and bc and not bc.syn_seen, "SYN captured")
    ex = pt.http(pc)
    require([e["target"] for e in ex] == ["/ok/after-capture-1?size=20000", "/ok/after-capture-2"], "exchanges %s" % ex)
    run.write("The proxy opens its backend connection for a first GET at t=0; tcpdump starts at t=0.8 s on both "
              "hosts; two more GETs reuse the connection and succeed. Neither capture holds the handshake or the "
              "first exchange.",
              [entry(pc, bc, "ok", "none",
                     "tcpdump was started 0.8 s after the connection was opened (lab ordering). proxy.pcap "
                     "tcp.stream==%d starts at frame %d with %s (no SYN); backend.pcap tcp.stream==%d likewise starts "
                     "at frame %d without SYN. The two exchanges it shows are complete and it closes with a FIN each "
                     "way: judged ok on what is visible (a pooled connection open before the captures is judged on "
                     "its visible exchanges). Check: %s"
                     % (pc.stream, pc.first_frame, pc.segs[0].flagstr(), bc.stream, bc.first_frame,
                        tsh("proxy.pcap", pc)))])


@scenario("apache-capture-dropped-packets", "apache")
def apache_dropped(run):
    run.capture()
    run.backend()
    run.apache()
    res = run.client([{"requests": [{"method": "POST", "path": "/ok/upload", "body": 300000},
                                    {"path": "/ok/after"}]}])
    require(all(r.get("status") == 200 for r in res[0]), "a request failed")
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    require(healthy(pc) and healthy(bc), "transfer not healthy")
    data = bc.find(fromc=True, data=True)
    require(len(data) >= 8, "too few data segments")
    mid = len(data) // 2
    drop = [s.frame for s in data[mid:mid + 3]]
    dropped = sum(s.len for s in data[mid:mid + 3])
    tmp = run.backend_pcap + ".cut"
    lab.sh(["editcap", "-F", "pcap", run.backend_pcap, tmp] + [str(f) for f in drop])
    os.replace(tmp, run.backend_pcap)
    B2 = run.conns("backend")
    bc2 = run.pair(P, B2)[0][1]
    require(bc2 is not None and bc2.first_frame == bc.first_frame, "pairing changed after the cut")
    _, seen, _ = bc2.bytes_dir(True)
    _, seen_full, _ = bc.bytes_dir(True)
    require(seen_full - seen == dropped, "gap size mismatch")
    acks = [s for s in bc2.find(fromc=False) if (s.ack - bc2.isn_c - 1) % 2**32 > 0]
    run.write("A 300000-byte POST and a GET succeed normally. Afterwards frames %s (%d bytes of request body that "
              "the backend received and ACKed) were deleted from backend.pcap with editcap, as if the backend's "
              "tcpdump had dropped them." % (",".join(map(str, drop)), dropped),
              [entry(pc, bc2, "capture-incomplete", "capture",
                     "Original backend.pcap frames %s (proxy->backend data, %d bytes) deleted with 'editcap backend.pcap "
                     "out.pcap %s'. In the committed backend.pcap tcp.stream==%d the request body has a %d-byte hole "
                     "that the backend's ACKs cover (the backend ACKed data the capture never saw); proxy.pcap "
                     "tcp.stream==%d holds every byte and both exchanges are complete (200, 200). Check: tshark -r "
                     "backend.pcap -Y 'tcp.analysis.ack_lost_segment || tcp.analysis.lost_segment'"
                     % (",".join(map(str, drop)), dropped, " ".join(map(str, drop)), bc2.stream, dropped, pc.stream))])


# =============================================================================================
# NAT between the capture points

@scenario("apache-nat-empty-reply", "apache")
def apache_nat(run):
    run.capture()
    run.backend()
    run.ipt("router", "-t nat -A PREROUTING -d 10.0.9.9 -p tcp --dport 80 -j DNAT --to-destination 10.0.2.2:8080")
    run.ipt("router", "-t nat -A POSTROUTING -o eth2 -d 10.0.2.2 -p tcp -j SNAT --to-source 10.0.2.1:40000-40999")
    run.apache(proxypass="ProxyPass / http://%s/ connectiontimeout=2 timeout=3" % VIP)
    run.backend_server = {"proxy": VIP, "backend": BACKEND}
    res = run.client([{"requests": [{"path": "/ok/one?size=5000"}, {"method": "POST", "path": "/empty", "body": 3000},
                                    {"path": "/ok/two?size=5000"}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pairs = run.pair(P, B)
    require(len(pairs) == 2 and all(bc for _, bc in pairs), "expected two paired connections")
    conns = []
    for pc, bc in pairs:
        require(pc.client != bc.client and pc.server != bc.server, "4-tuples not translated")
        ex = pt.http(pc)
        nat = ("NAT: proxy.pcap sees %s -> %s, backend.pcap sees %s -> %s for the same connection (same client ISN %d)."
               % (pc.client, pc.server, bc.client, bc.server, pc.isn_c))
        if any(e["target"] == "/empty" for e in ex):
            require(ex[-1]["target"] == "/empty" and ex[-1]["status"] is None and first_close(bc)[1] == "backend",
                    "empty reply not as expected")
            e = ex[-1]
            conns.append(entry(pc, bc, "backend-empty-reply", "backend",
                               nat + " backend.py mode /empty: proxy.pcap tcp.stream==%d: GET /ok/one answered 200, then "
                               "POST /empty complete at frame %d and the backend's FIN at frame %d without a response "
                               "byte; backend.pcap FIN frame %d. Check: %s" % (
                                   pc.stream, e["req_frame"], pc.first(fromc=False, flags=F).frame,
                                   first_close(bc)[0].frame, tsh("proxy.pcap", pc))))
        else:
            c = ok_entry(pc, bc)
            c["how_we_know"] = nat + " " + c["how_we_know"]
            conns.append(c)
    run.write("The proxy talks to a virtual address %s; the router DNATs it to %s and SNATs the source to "
              "10.0.2.1:40000-40999, so the two captures see different 4-tuples for the same connection. GET /ok and "
              "POST /empty (backend closes without answering) share the first connection; GET /ok/two opens a second "
              "one." % (VIP, BACKEND), conns)


# =============================================================================================
# snaplen-truncated captures (tcpdump -s 96)

@scenario("apache-snaplen96-truncated", "apache")
def apache_snap(run):
    run.capture(snaplen=96)
    run.backend()
    run.apache()
    res = run.client([{"requests": [{"path": "/ok/a?size=20000"}, {"method": "POST", "path": "/ok/b", "body": 100000},
                                    {"path": "/truncate?size=150000&send=40000"}]}])
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
    P, B = run.conns("proxy"), run.conns("backend")          # full snaplen: for the HTTP truth
    Pc, Bc = run.conns("proxy", full=False), run.conns("backend", full=False)   # committed: for the views
    conns = []
    for (pc, bc), (pcc, bcc) in zip(run.pair(P, B), run.pair(Pc, Bc)):
        require(pc.isn_c == pcc.isn_c and bc and bcc and bc.isn_c == bcc.isn_c, "pairing differs")
        ex = pt.http(pc)
        if ex[-1]["target"].startswith("/truncate"):
            require(ex[-1]["status"] == 200 and not ex[-1]["response_complete"] and first_close(bc)[1] == "backend", "")
            conns.append(entry(pcc, bcc, "response-truncated", "backend",
                               "backend.py mode /truncate (Content-Length 150000, 40000 body bytes sent, then close). "
                               "The committed captures were written by tcpdump -s 96 (headers cut); a full-snaplen "
                               "tcpdump ran beside each one on the same interface (same TCP segments in the same "
                               "order, checked) and was read with tshark for this truth: proxy.pcap tcp.stream==%d "
                               "response header at frame %d, %d body bytes, backend FIN at frame %d (frame numbers of "
                               "the committed proxy.pcap)." % (
                                   pcc.stream, fmap["proxy"][ex[-1]["resp_frame"]], ex[-1]["resp"]["body_seen"],
                                   fmap["proxy"][pc.first(fromc=False, flags=F).frame]),
                               exchanges=pt.exchanges_json(ex)))
        else:
            require(healthy(pc) and healthy(bc), "not healthy")
            conns.append(entry(pcc, bcc, "ok", "none",
                               "Normal traffic, no fault injected. From the full-snaplen companion captures: %s, all "
                               "complete." % ", ".join("%s %s -> %s" % (e["method"], e["target"], e["status"])
                                                       for e in ex), exchanges=pt.exchanges_json(ex)))
    run.write("Both captures taken with tcpdump -s 96, so HTTP headers are cut after a few bytes. GET /ok, a 100 kB "
              "POST and GET /truncate (Content-Length 150000, only 40000 body bytes, then the backend closes) on one "
              "backend connection. %s." % status_of(res), conns)


# =============================================================================================
# random loss, transfers still complete

@scenario("apache-random-loss-ok", "apache")
def apache_loss(run):
    run.capture()
    run.backend()
    run.ipt("router", "-A FORWARD -p tcp -m statistic --mode random --probability 0.04 -j DROP")
    run.apache()
    sessions = [{"start": i * 0.1, "requests": [{"path": "/ok/dl-%d?size=120000&delay=0.3" % i, "timeout": 20},
                                              {"method": "POST", "path": "/ok/ul-%d" % i, "body": 50000, "timeout": 20},
                                              {"path": "/ok/small-%d?size=3000" % i, "timeout": 20},
                                              {"method": "POST", "path": "/ok/small-%d" % i, "body": 2000, "timeout": 20}]}
                for i in range(8)]
    res = run.client(sessions)
    require(all(r.get("status") == 200 for s in res for r in s), "a request failed: %s" % res)
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    conns = []
    lost = 0
    for pc, bc in run.pair(P, B):
        require(bc is not None, "unpaired")
        seen_b = {(s.seq, s.ack, s.len, s.flags) for s in bc.segs}
        seen_p = {(s.seq, s.ack, s.len, s.flags) for s in pc.segs}
        lp = [s for s in pc.find(fromc=True) if (s.seq, s.ack, s.len, s.flags) not in seen_b]
        lb = [s for s in bc.find(fromc=False) if (s.seq, s.ack, s.len, s.flags) not in seen_p]
        lost += len(lp) + len(lb)
        c = ok_entry(pc, bc)
        c["how_we_know"] = ("Router drops 4%% of all TCP packets at random (iptables -m statistic --mode random "
                            "--probability 0.04 -j DROP); this connection lost %d proxy->backend and %d "
                            "backend->proxy segment(s) (data or pure ACK; sent in one capture, absent from the other), "
                            "recovered by retransmission. " % (len(lp), len(lb))) + c["how_we_know"]
        conns.append(c)
    require(lost >= 3, "too little loss (%d)" % lost)
    run.write("Eight clients each download 120 kB, upload 50 kB and make two small requests through the proxy "
              "while the router drops 4%% of TCP packets at random in both directions; %d segments were lost between the captures and "
              "retransmitted, and every request still got a complete 200." % lost, conns)


def _loss_aborts(run, proxy, needle):
    """Random loss between the hosts while clients abort big downloads: the proxy closes backend
    connections mid-response with segments in flight, some of them lost and not yet retransmitted.
    The connections are proxy-aborted (the client went away), not lost-in-transit."""
    run.capture()
    run.backend()
    run.ipt("router", "-A FORWARD -p tcp -m statistic --mode random --probability 0.06 -j DROP")
    proxy()
    rnd = random.Random(7)
    sessions = [{"start": i * 0.05, "requests": [{"path": "/slow/dl-%d?size=600000&rate=200000" % i,
                                                  "abort_after_s": round(rnd.uniform(0.05, 0.8), 2), "timeout": 20}]}
                for i in range(12)]
    sessions += [{"start": i * 0.07, "requests": [{"path": "/ok/full-%d?size=100000" % i, "timeout": 20}]}
                 for i in range(4)]
    res = run.client(sessions)
    require(all(r.get("status") == 200 for s in res[12:] for r in s), "a full download failed: %s" % res[12:])
    time.sleep(0.5)
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    conns, lost, aborted, in_flight = [], 0, 0, 0
    for pc, bc in run.pair(P, B):
        require(bc is not None, "unpaired")
        seen_p = {(x.seq, x.len) for x in pc.segs}
        lb = [x for x in bc.find(fromc=False, data=True) if (x.seq, x.len) not in seen_p]
        lost += len(lb)
        ex = pt.http(pc)
        last = ex[-1] if ex else None
        if last and last["target"].startswith("/slow/dl-"):
            require(last["status"] == 200 and not last["response_complete"], "download %s completed" % last["target"])
            fin, who = first_close(pc)
            require(who == "proxy", "proxy did not close first on %s" % last["target"])
            aborted += 1
            # A segment lost less than 200 ms (Linux's minimum RTO) before the proxy's close: its
            # retransmission had not had its chance (the clocks of the two namespaces are one).
            in_flight += any(0 <= fin.t - x.t < 0.2 for x in lb)
            conns.append(entry(pc, bc, "proxy-aborted", "proxy",
                               "client.py abort_after_s on GET %s (3000000 bytes at 1.5 MB/s): the client closed "
                               "mid-download, the proxy then closed the backend connection (its %s at proxy.pcap frame "
                               "%d) with %d of the response's body bytes received; the router drops 6%% of TCP packets "
                               "at random, and %d backend data segment(s) of this connection are absent from "
                               "proxy.pcap (lost, some not yet retransmitted when the proxy closed). Check: %s"
                               % (last["target"], fin.flagstr(), fin.frame, last["resp"]["body_seen"], len(lb),
                                  tsh("proxy.pcap", pc))))
        else:
            conns.append(ok_entry(pc, bc, "every request fully answered despite the random loss (retransmissions)"))
    require(aborted >= 8, "only %d aborted downloads on their own connections" % aborted)
    require(lost >= 5, "too little loss (%d)" % lost)
    require(in_flight >= 1, "no connection closed with a lost segment still in flight")
    if needle:
        log_has(run, needle)
    run.write("Twelve clients each download 600 kB at 200 kB/s and abort after 0.05-0.8 s, four download 100 kB "
              "whole, while the router drops 6%% of TCP packets at random in both directions: the proxy closes the "
              "backend connections of the aborted downloads mid-response, with segments in flight and some of them "
              "lost; %d backend data segments were lost between the captures in all, on %d connection(s) less than "
              "200 ms before the proxy closed it." % (lost, in_flight), conns)


@scenario("apache-loss-client-aborts", "apache")
def apache_loss_aborts(run):
    # Apache logs nothing at warn or above for a client that goes away mid-download.
    _loss_aborts(run, run.apache, None)


@scenario("nginx-loss-client-aborts", "nginx")
def nginx_loss_aborts(run):
    _loss_aborts(run, run.nginx, "client prematurely closed connection")


# =============================================================================================
# busy: dozens of concurrent connections, a few failures of different kinds

BUSY_FAIL = {5: ("GET", "/empty/busy-5", 0), 12: ("GET", "/truncate/busy-12?size=100000&send=20000", 0),
             20: ("GET", "/never/busy-20", 0), 28: ("POST", "/close-mid-request/busy-28?read=20000", 300000),
             33: ("POST", "/empty/busy-33", 2000), 37: ("GET", "/forbidden/busy-37", 0)}
BUSY_VERDICT = {"/empty": "backend-empty-reply", "/truncate": "response-truncated", "/never": "backend-timeout",
                "/close-mid-request": "backend-closed-during-request", "/forbidden": "rst-from-middlebox"}


@scenario("apache-busy-mixed", "apache")
def apache_busy(run):
    run.capture()
    run.backend()
    run.ipt("router", "-A FORWARD -s 10.0.1.2 -d 10.0.2.2 -p tcp -m string --string '/forbidden' --algo bm "
                      "-j REJECT --reject-with tcp-reset")
    run.apache()
    sessions = []
    for i in range(48):
        reqs = [{"path": "/ok/busy-%d-a?size=%d&delay=0.4" % (i, 1000 + 300 * i)}]
        if i in BUSY_FAIL:
            m, path, body = BUSY_FAIL[i]
            reqs.append({"method": m, "path": path, "body": body})
        else:
            reqs.append({"method": "POST", "path": "/ok/busy-%d-b?delay=0.2" % i, "body": 4000 + 100 * i})
        sessions.append({"start": (i % 12) * 0.05, "requests": reqs})
    res = run.client(sessions)
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    require(len(P) >= 20, "only %d backend connections" % len(P))
    conns = []
    kinds = set()
    for pc, bc in run.pair(P, B):
        ex = pt.http(pc)
        bad = [e for e in ex if not e["target"].startswith("/ok/")]
        if not bad:
            require(healthy(pc) and bc and healthy(bc), "an /ok-only connection is not healthy: %s" % pc.client)
            continue
        require(len(bad) == 1 and ex[-1] is bad[0], "failing exchange not last on its connection")
        e = bad[0]
        key = "/" + e["target"].split("/")[1]
        v = BUSY_VERDICT[key]
        kinds.add(v)
        blame = "network" if v == "rst-from-middlebox" else "backend"
        if v == "rst-from-middlebox":
            require(pc.find(fromc=False, flags=R) and not bc.find(fromc=False, flags=R), "RST not forged")
        elif v == "backend-timeout":
            require(e["status"] is None and first_close(pc)[1] == "proxy", "not a timeout")
        elif v == "response-truncated":
            require(e["status"] == 200 and not e["response_complete"], "not truncated")
        elif v == "backend-empty-reply":
            require(e["status"] is None and e["request_complete"] and first_close(bc)[1] == "backend", "not empty")
        else:
            require(not e["request_complete"] and first_close(bc)[1] == "backend", "not closed during request")
        conns.append(entry(pc, bc, v, blame,
                           "Request %s %s injected the fault (%s); it is exchange %d of proxy.pcap tcp.stream==%d "
                           "(request at frame %d%s). Same checks as the single-failure scenarios of this verdict. "
                           "Check: %s" % (e["method"], e["target"], {
                               "backend-empty-reply": "backend reads it and closes without a byte",
                               "response-truncated": "backend sends 20000 of 100000 body bytes and closes",
                               "backend-timeout": "backend never answers, proxy gives up after 3 s",
                               "backend-closed-during-request": "backend closes after 20000 of 300000 body bytes",
                               "rst-from-middlebox": "router REJECT --reject-with tcp-reset on '/forbidden'"}[v],
                               len(ex), pc.stream, e["req_frame"] or 0,
                               (", response at frame %d" % e["resp_frame"]) if e["resp_frame"] else "",
                               tsh("proxy.pcap", pc))))
    require(len(conns) == len(BUSY_FAIL) and len(kinds) == 5, "failures: %d, kinds %s" % (len(conns), kinds))
    reused = sum(1 for c in P if len(pt.http(c)) >= 2)
    run.write("48 clients start within 0.6 s, each sending two requests through the proxy (%d backend connections, "
              "%d of them reused for a second request). Six requests are made to fail in five different ways (empty reply x2, truncated "
              "response, backend timeout, backend closing during a 300 kB POST, forged RST from the router); every "
              "other backend connection is healthy." % (len(P), reused), conns, others="ok")


# =============================================================================================
# IPv6 between proxy and backend

@scenario("apache-ipv6-truncated", "apache")
def apache_v6(run):
    run.capture()
    run.backend(listen=[BACKEND6])
    run.apache(proxypass="ProxyPass / http://%s/ connectiontimeout=2 timeout=3" % BACKEND6)
    run.backend_server = {"proxy": BACKEND6, "backend": BACKEND6}
    res = run.client([{"requests": [{"path": "/ok/v6?size=8000"}, {"method": "POST", "path": "/ok/v6-post", "body": 50000},
                                    {"path": "/truncate/v6?size=90000&send=30000"}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    pc = one(P)
    bc = run.pair(P, B)[0][1]
    ex = pt.http(pc)
    require(len(ex) == 3 and ex[2]["status"] == 200 and not ex[2]["response_complete"], "not truncated")
    require(first_close(bc)[1] == "backend", "backend did not close first")
    run.write("IPv6 from proxy (fd00:1::2) to backend %s: GET, a 50 kB POST and GET /truncate (Content-Length 90000, "
              "30000 body bytes, then close) on one reused backend connection. %s." % (BACKEND6, status_of(res)),
              [entry(pc, bc, "response-truncated", "backend",
                     "backend.py mode /truncate over IPv6. proxy.pcap tcp.stream==%d: two complete exchanges, then the "
                     "third response header at frame %d with %d of 90000 body bytes and the backend's FIN at frame %d; "
                     "backend.pcap FIN frame %d. Check: %s" % (pc.stream, ex[2]["resp_frame"],
                                                              ex[2]["resp"]["body_seen"],
                                                              pc.first(fromc=False, flags=F).frame,
                                                              first_close(bc)[0].frame, tsh("proxy.pcap", pc)))])


# =============================================================================================
# proxy capture with tcpdump -i any (Linux cooked headers, holds client<->proxy traffic too)

@scenario("apache-cooked-any-empty-reply", "apache")
def apache_any(run):
    run.capture(proxy_iface="any")
    run.backend()
    run.apache()
    res = run.client([{"requests": [{"path": "/ok/a"}, {"path": "/ok/b?size=30000"}]},
                      {"start": 0.5, "requests": [{"method": "POST", "path": "/empty/any", "body": 10000}]}])
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    front = [c for c in pt.connections(run.proxy_pcap) if c.server.startswith("10.0.0.1:")]
    require(len(front) == 2, "client<->proxy connections missing from the -i any capture")
    lt = lab.sh(["tshark", "-r", run.proxy_pcap, "-T", "fields", "-e", "frame.encap_type", "-c", "1"]).stdout.strip()
    conns = []
    for pc, bc in run.pair(P, B):
        ex = pt.http(pc)
        if any(e["target"].startswith("/empty") for e in ex):
            require(ex[-1]["status"] is None and ex[-1]["request_complete"] and first_close(bc)[1] == "backend", "")
            conns.append(entry(pc, bc, "backend-empty-reply", "backend",
                               "backend.py mode /empty. proxy.pcap (tcpdump -i any, Linux cooked capture, encap %s) "
                               "tcp.stream==%d: POST /empty complete at frame %d, the backend's FIN at frame %d, no "
                               "response byte; backend.pcap FIN frame %d. Check: %s"
                               % (lt, pc.stream, ex[-1]["req_frame"], pc.first(fromc=False, flags=F).frame,
                                  first_close(bc)[0].frame, tsh("proxy.pcap", pc))))
        else:
            conns.append(ok_entry(pc, bc))
    run.write("The proxy capture is taken with tcpdump -i any (Linux cooked headers), so it also holds the two "
              "client->proxy connections to 10.0.0.1:80, which are not backend traffic. Two GETs succeed; a POST to "
              "/empty gets no answer from the backend (closed without a byte).", conns)


# =============================================================================================
# keepalive-race: a request sent on a reused connection just as the backend's idle timeout closes it

def _race(run, proxy, needle, idle_ms=400, n=90, retried=False, sweep_from=-0.0035, real_backend=False):
    run.capture()
    if real_backend:
        run.apache_backend(idle_ms)
        path = "/race.txt?n=%d"
        who = "Apache httpd as the backend (KeepAliveTimeout %dms) closes" % idle_ms
    else:
        run.backend("--idle-close-ms", str(idle_ms))
        path = "/ok/race-%d"
        who = "backend.py --idle-close-ms %d closes" % idle_ms
    proxy()
    reqs = [{"path": path % 0}]
    for i in range(1, n):
        d = sweep_from + (i % 45) * 0.0001  # sweep the send time over 4.5 ms around the idle timeout
        reqs.append({"path": path % i, "gap": idle_ms / 1000.0 + d, "timeout": 5})
    res = run.client([{"requests": reqs}], max_s=n * (idle_ms / 1000.0 + 0.1) + 30)
    run.finish()
    P, B = run.conns("proxy"), run.conns("backend")
    races = []
    for pc, bc in run.pair(P, B):
        ex = pt.http(pc)
        rst = pc.first(fromc=False, flags=R)
        fin_p = pc.first(fromc=False, flags=F)
        if len(ex) >= 2 and ex[-1]["status"] is None and (rst is not None or fin_p is not None):
            require(bc is not None, "race connection without backend view")
            req_p = next(s for s in pc.segs if s.frame == ex[-1]["req_frame"])
            bex = pt.http(bc)
            req_b = next(s for s in bc.segs if s.frame == bex[-1]["req_frame"])
            fin_b = bc.first(fromc=False, flags=F)
            rst_b = bc.first(fromc=False, flags=R)
            syn, synack = pc.first(fromc=True, flags=S), pc.first(fromc=False, flags=S | A)
            rtt = synack.t - syn.t
            prev_resp = [s for s in bc.find(fromc=False, data=True) if s.frame < req_b.frame][-1]
            idle = req_b.t - prev_resp.t
            require(not [s for s in bc.find(fromc=False, data=True) if s.frame > req_b.frame], "response data")
            require(abs(idle - idle_ms / 1000.0) < 0.005, "idle gap %.1f ms is not the backend's timeout" % (idle * 1000))
            if fin_b is not None:
                require(fin_p is not None and req_b.t - fin_b.t > -0.001, "FIN long before the request: %s" % pc.client)
                delta = req_p.t - fin_p.t
                require(delta <= 0.001, "request sent %.3f ms after the FIN arrived: not a race" % (delta * 1000))
                require(rst_b is None or rst_b.t >= req_b.t, "RST before the request")
            else:
                require(rst_b is not None and 0 <= rst_b.t - req_b.t < 0.002, "RST not right after the request")
                delta = None
            races.append(dict(pc=pc, bc=bc, ex=ex, req_p=req_p, fin_p=fin_p, rst=rst, fin_b=fin_b, req_b=req_b,
                              rst_b=rst_b, rtt=rtt, delta=delta, idle=idle))
        elif bc is None or not healthy(pc) or not healthy(bc):
            raise Retry("unexpected unhealthy connection %s" % pc.client)
    require(races, "no keep-alive race happened in %d attempts" % (n - 1))
    log_has(run, needle)
    conns = []
    for r in races:
        pc, bc, ex = r["pc"], r["bc"], r["ex"]
        head = ("%s a keep-alive connection %d ms after its last response; "
                "the client paced %d requests to arrive around that moment. This connection carried %d exchange(s); "
                "the next request %s reached the backend %.3f ms after the backend's last response (backend.pcap "
                "frame %d), i.e. at the idle timeout. " % (who, idle_ms, n, len(ex) - 1, ex[-1]["target"],
                                                         r["idle"] * 1000, r["req_b"].frame))
        if r["fin_b"] is not None:
            answer = ("RST frame %d answers it" % r["rst_b"].frame) if r["rst_b"] is not None else (
                "the backend (Apache closing the idle connection: shutdown of its side, then a lingering close that "
                "reads and discards) ACKs and throws the request away: no response byte and no RST, just the two FINs")
            body = ("backend.pcap tcp.stream==%d: the backend's FIN (frame %d) and the request (frame %d) cross, "
                    "the request arriving %.3f ms %s the FIN left; %s. proxy.pcap tcp.stream==%d: "
                    "the request leaves at frame %d %.3f ms %s the backend's FIN arrives (frame %d; handshake RTT "
                    "%.3f ms)%s." % (
                        bc.stream, r["fin_b"].frame, r["req_b"].frame, abs(r["req_b"].t - r["fin_b"].t) * 1000,
                        "after" if r["req_b"].t >= r["fin_b"].t else "before", answer, pc.stream,
                        r["req_p"].frame, abs(r["delta"]) * 1000, "before" if r["delta"] < 0 else "after",
                        r["fin_p"].frame, r["rtt"] * 1000,
                        (", RST at frame %d" % r["rst"].frame) if r["rst"] is not None else ", no RST"))
        else:
            body = ("Here the backend's idle timer fired while the request was already in its receive buffer, so its "
                    "close() sent RST without any FIN: backend.pcap tcp.stream==%d request frame %d, RST frame %d "
                    "%.3f ms later, no response byte; proxy.pcap tcp.stream==%d request frame %d, RST frame %d." % (
                        bc.stream, r["req_b"].frame, r["rst_b"].frame, (r["rst_b"].t - r["req_b"].t) * 1000,
                        pc.stream, r["req_p"].frame, r["rst"].frame))
        conns.append(entry(pc, bc, "keepalive-race", "proxy", head + body + (
            " Check: tshark -r backend.pcap -Y 'tcp.stream==%d && (tcp.flags.fin==1 || tcp.flags.reset==1 || "
            "tcp.len>0)' -T fields -e frame.number -e frame.time_epoch -e tcp.flags.str -e tcp.len" % bc.stream)))
    nf = sum(1 for r in races if r["fin_b"] is None)
    nl = sum(1 for r in races if r["fin_b"] is not None and r["rst_b"] is None)
    outcomes = {}
    for x in res[0]:
        k = str(x["status"]) if "status" in x else "no response (%s)" % x.get("error", "?")
        outcomes[k] = outcomes.get(k, 0) + 1
    intro = ("A real Apache httpd backend (KeepAliveTimeout %dms) closes idle keep-alive connections; one client "
             "sends %d GETs, each " if real_backend else
             "The backend closes idle keep-alive connections after exactly %d ms; one client sends %d GETs, each ")
    run.write((intro % (idle_ms, n)) +
              "paced to reach the backend around that moment (offsets swept over a few ms). The proxy reuses its "
              "pooled connection; %d time(s) its request crossed the backend's close on the wire (%d: the backend's "
              "FIN crossed the request, which was answered by RST; %d: a bare RST from a close with the request "
              "unread; %d: the FIN crossed the request, which the backend's lingering close swallowed without RST). "
              "Client outcomes: %s.%s" % (len(races), len(races) - nf - nl, nf, nl,
                         ", ".join("%d x %s" % (v, k) for k, v in sorted(outcomes.items())),
                         " nginx retried each raced GET on a new connection, so the client still got 200." if retried
                         else " Apache closes the client connection without a response when a reused backend "
                              "connection fails, so that the client may retry."),
              conns)


@scenario("apache-keepalive-race", "apache", attempts=4)
def apache_race(run):
    _race(run, run.apache, "AH01102")


@scenario("nginx-keepalive-race-apache-backend", "nginx", attempts=4)
def nginx_race_real(run):
    _race(run, lambda: run.nginx(upstream_extra="keepalive 8;"), ("upstream prematurely closed", "Connection reset by peer"),
          retried=True, n=60, sweep_from=-0.0035, real_backend=True)


@scenario("nginx-keepalive-race", "nginx", attempts=4)
def nginx_race(run):
    _race(run, lambda: run.nginx(upstream_extra="keepalive 8;"), ("upstream prematurely closed", "Connection reset by peer"),
          retried=True, n=60,
          sweep_from=-0.0035)

"""The lab's scenarios. Each one: start captures, proxy and backend, inject one fault, run the client,
stop everything, then read the captures with tshark (pcaptruth) and *require* that the wire shows the
intended failure (otherwise lab.Retry runs it again). The ground truth written to expected.json comes
from what was injected, confirmed by those checks; the evidence text names the frames that show it."""
import os
import subprocess
import time

import lab
import pcaptruth as pt
from lab import (BACKEND, BACKEND6, VIP, require, entry, ladder, tsh, healthy, first_close, scenario, nsx)

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
        require(n in text, "proxy log lacks %r" % n)
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
    _closed_during(run, run.nginx, "while sending request to upstream")


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

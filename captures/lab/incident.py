"""Issue 12: the proxy capture taken with tcpdump -i any (Linux cooked headers) holds both sides of the
proxy, so each client request can be tied to the backend connection(s) the proxy used for it.

Each scenario sends, from two client addresses at once, a mix of requests: healthy GETs (several with the
same target at the same time, from the same and from different addresses), a healthy POST, and requests
that fail in the backend (empty reply, reset after reading the request, closed during a 300 kB upload,
no answer until the proxy times out), in the proxy's connect to a second backend port where nothing
listens (refused), and requests the proxy answers itself with no backend traffic: the same port again
while the proxy holds that backend as failed (Apache: worker in error state for retry=30; nginx: both
servers of the upstream marked down by max_fails=1, "no live upstreams"), and an HTTP/1.1 request
without Host (400).

The truth of each client request comes from three records that never involve bothends, tied together:
- client.py's own record: its local address and port, the request, the status it got and when;
- the proxy's access log, with the client's address and port, the request line, the status and the
  request id the proxy generated (Apache mod_unique_id, nginx $request_id), which the proxy sends to the
  backend in X-Request-ID (and, for nginx, the upstream addresses it tried, $upstream_addr);
- tshark (pcaptruth) on proxy.pcap: the client-side exchange (frames, method, target, status) and the
  backend requests whose X-Request-ID header carries that id; a connect attempt that never got to send
  a request (refused) is tied by the upstream the access log names and by its SYN falling between the
  client's request and the proxy's answer, with one such request in flight.
The verdicts of the backend connections come from field.judge (both captures, tshark), as in the
overload scenarios.
"""
import re

import lab
import pcaptruth as pt
from lab import BACKEND, require, scenario, nsx
from field import judged_entries

PROXY = "10.0.0.1:80"
CLIENT2 = "10.0.0.3"
DOWN = ["10.0.2.2:8081", "10.0.2.2:8082"]  # nothing listens there: connects are refused
PAGE = "/ok/page?size=3000&delay=0.2"


def _sessions():
    """The traffic: (session spec) list; every request's target is unique per kind of outcome."""
    a, b = "10.0.0.2", CLIENT2
    return [
        {"bind": a, "start": 0.0, "requests": [{"path": PAGE}, {"path": PAGE},
                                               {"method": "POST", "path": "/ok/form?size=200", "body": 20000}]},
        {"bind": b, "start": 0.02, "requests": [{"path": PAGE}, {"path": PAGE}]},
        {"bind": a, "start": 0.05, "requests": [{"path": PAGE},
                                                {"method": "POST", "path": "/empty/upload", "body": 10000}]},
        {"bind": b, "start": 0.3, "requests": [{"method": "POST", "path": "/close-mid-request/upload?read=20000",
                                                "body": 300000}]},
        {"bind": a, "start": 0.4, "requests": [{"path": "/reset/item?delay=0.1"}]},
        {"bind": b, "start": 0.5, "requests": [{"path": "/never/report", "timeout": 8}]},
        {"bind": a, "start": 0.7, "requests": [{"path": "/down/status"}]},
        {"bind": b, "start": 1.2, "requests": [{"path": "/down/status"}]},
        {"bind": a, "start": 1.4, "requests": [{"path": "/ok/nohost", "no_host": True}]},
        {"bind": b, "start": 1.6, "requests": [{"path": "/ok/last?size=1000"}]},
    ]


ACCESS = re.compile(r'^\S+ (?P<addr>\S+):(?P<port>\d+) "(?P<line>[^"]*)" (?P<status>\d+) .*?id=(?P<id>\S+)'
                    r'(?: upstream="(?P<up>[^"]*)")?')


def _access(run):
    out = []
    for line in open(run.proxy_access, errors="replace"):
        m = ACCESS.match(line)
        require(m is not None, "access log line not understood: %r" % line)
        out.append({"client": "%s:%s" % (m["addr"], m["port"]), "line": m["line"], "status": int(m["status"]),
                    "id": None if m["id"] == "-" else m["id"], "upstream": m["up"], "used": False})
    return out


def _truth(run, res, kind):
    """The client_requests truth (see the module comment), and the backend connections' entries."""
    allc = pt.connections(run.proxy_pcap)
    front = {c.client: c for c in allc if c.server == PROXY}
    back = [c for c in allc if c.server.startswith("10.0.2.2:")]
    access = _access(run)
    by_id = {}
    for c in back:
        for k, e in enumerate(pt.http(c)):
            rid = (e["req"].get("headers") or {}).get("x-request-id")
            if rid:
                by_id.setdefault(rid, []).append((c, k, e))
    connects = [c for c in back if not c.find(data=True)]  # connect attempts that never sent a request
    claimed = set()
    out = []
    for sess in res:
        nth = {}
        for r in sess:
            local = r.get("local")
            require(local is not None, "a client request without a local address: %s" % r)
            k = nth.get(local, 0)
            nth[local] = k + 1
            fc = front.get(local)
            require(fc is not None, "client connection %s not in proxy.pcap" % local)
            ex = pt.http(fc)
            require(k < len(ex), "%s: request %d not in proxy.pcap" % (local, k))
            e = ex[k]
            require((e["method"], e["target"]) == (r["method"], r["path"]), "%s: %s %s on the wire, client sent %s %s"
                    % (local, e["method"], e["target"], r["method"], r["path"]))
            status = r.get("status")
            require(e["status"] == status, "%s %s: client got %s, tshark shows %s" % (local, r["path"], status,
                                                                                      e["status"]))
            line = "%s %s HTTP/1.1" % (r["method"], r["path"])
            acc = next((x for x in access if not x["used"] and x["client"] == local and x["line"] == line), None)
            require(acc is not None, "no access log line for %s %s" % (local, line))
            acc["used"] = True
            require(status is None or acc["status"] == status, "%s: access log says %d, client got %s"
                    % (line, acc["status"], status))
            req_t = next(s.t for s in fc.segs if s.frame == e["req_frame"])
            resp_t = next(s.t for s in fc.segs if s.frame == e["resp_frame"]) if e["resp_frame"] else fc.segs[-1].t
            attempts, how = [], []
            for c, i, be in by_id.get(acc["id"], []):
                attempts.append((c, i))
                how.append("its id %s is the X-Request-ID of %s %s, exchange %d of proxy.pcap tcp.stream==%d "
                           "(frame %d)" % (acc["id"], be["method"], be["target"], i + 1, c.stream, be["req_frame"]))
            for c in connects:
                t = c.segs[0].t
                if req_t <= t <= resp_t and r["path"].startswith("/down/"):
                    if kind == "nginx":
                        require(c.server in (acc["upstream"] or ""), "%s not in upstream %s" % (c.server,
                                                                                             acc["upstream"]))
                    attempts.append((c, -1))
                    how.append("its connect to %s (proxy.pcap tcp.stream==%d, SYN frame %d, answered by RST frame %d) "
                               "lies between its request (frame %d) and the answer (frame %s)%s" % (
                                   c.server, c.stream, c.segs[0].frame, c.first(fromc=False, flags=pt.RST).frame,
                                   e["req_frame"], e["resp_frame"],
                                   ", and the access log's upstream list names it" if kind == "nginx" else ""))
            for c, i in attempts:
                require((c.stream, i) not in claimed, "a backend exchange claimed by two client requests")
                claimed.add((c.stream, i))
            attempts.sort(key=lambda a: a[0].first_frame)
            if not attempts:
                how.append("no backend request carries its id %s and no backend connection was opened between its "
                           "request (frame %d) and the answer (frame %s)" % (acc["id"], e["req_frame"],
                                                                           e["resp_frame"]))
            out.append({
                "client": local, "proxy": PROXY, "request_frame": e["req_frame"], "method": r["method"],
                "target": r["path"], "status": status, "response_frame": e["resp_frame"], "request_id": acc["id"],
                "backend": [c.view() for c, _ in attempts],
                "how_we_know": "client.py: %s %s from %s got %s after %.3f s; proxy access log: %s %d id=%s%s; "
                               "proxy.pcap tcp.stream==%d exchange %d (request frame %d, response frame %s); %s." % (
                                   r["method"], r["path"], local, status, r.get("elapsed", 0), line, acc["status"],
                                   acc["id"], (" upstream=%s" % acc["upstream"]) if kind == "nginx" else "",
                                   fc.stream, k + 1, e["req_frame"], e["resp_frame"], "; ".join(how))})
    require(all(x["used"] for x in access), "access log lines not matched: %s" % [x for x in access if not x["used"]])
    require(all((c.stream, -1) in claimed for c in connects), "a refused connect not tied to a request")
    out.sort(key=lambda x: x["request_frame"])
    return out


def _check_mix(reqs, kind):
    got = {}
    for q in reqs:
        key = q["target"].split("?")[0]
        key = key if key == "/ok/nohost" else key.split("/")[1]
        got.setdefault(key, []).append((q["status"], len(q["backend"])))
    require(all(s == 200 and n == 1 for s, n in got["ok"]), "an /ok request failed: %s" % got["ok"])
    require(got["/ok/nohost"] == [(400, 0)], "no Host: %s" % got["/ok/nohost"])
    # Apache closes a keep-alive client connection without an answer when the backend sent nothing
    # (AH01104), so that the client may retry; its access log still says 502.
    require(got["empty"][0][0] in (502, None) and got["reset"][0][0] == 502, "empty/reset: %s" % got)
    require(got["never"][0][0] in (502, 504) and got["never"][0][1] == 1, "never: %s" % got["never"])
    require(got["close-mid-request"][0][1] == 1, "close-mid-request: %s" % got["close-mid-request"])
    down = got["down"]
    require(len(down) == 2 and down[0][1] >= 1 and down[1][1] == 0, "down: %s" % down)
    require(down[0][0] == down[1][0] == (503 if kind == "apache" else 502), "down statuses %s" % down)


def _run(run, kind, proxy):
    nsx("client", "ip addr add %s/24 dev eth0" % CLIENT2)
    run.backend_server = {"proxy": [BACKEND] + DOWN, "backend": [BACKEND] + DOWN}
    run.capture(proxy_iface="any")
    run.backend()
    proxy()
    res = run.client(_sessions(), max_s=30)
    run.finish()
    reqs = _truth(run, res, kind)
    _check_mix(reqs, kind)
    servers = {BACKEND} | set(DOWN)
    P, B = run.conns("proxy", servers=servers), run.conns("backend", servers=servers)
    conns, counts = judged_entries(run, P, B, lambda pc, bc, v: "Judged from both captures (tshark) by the rules of "
                                   "field.judge:")
    for want in ("backend-empty-reply", "backend-closed-during-request", "backend-timeout", "connect-refused", "ok"):
        require(counts.get(want), "no %s connection: %s" % (want, counts))
    return reqs, conns, counts


APACHE_EXTRA = """LoadModule headers_module /usr/lib/apache2/modules/mod_headers.so
LoadModule unique_id_module /usr/lib/apache2/modules/mod_unique_id.so
LoadModule slotmem_shm_module /usr/lib/apache2/modules/mod_slotmem_shm.so
LoadModule proxy_balancer_module /usr/lib/apache2/modules/mod_proxy_balancer.so
LoadModule lbmethod_byrequests_module /usr/lib/apache2/modules/mod_lbmethod_byrequests.so
RequestHeader set X-Request-ID "%{UNIQUE_ID}e"
Header always set X-Request-ID "%{UNIQUE_ID}e"
<Proxy balancer://down>
    BalancerMember http://10.0.2.2:8081 connectiontimeout=2 timeout=3 retry=30
    BalancerMember http://10.0.2.2:8082 connectiontimeout=2 timeout=3 retry=30
    ProxySet forcerecovery=Off
</Proxy>
"""
APACHE_PASS = ("ProxyPass /down/ balancer://down/\n"
               "ProxyPass / http://%s/ connectiontimeout=2 timeout=3" % BACKEND)
APACHE_INCIDENT_LOG = ('%{%Y-%m-%dT%H:%M:%S}t.%{usec_frac}t %a:%{remote}p \\"%r\\" %>s %B %Dus '
                       'id=%{UNIQUE_ID}e')


@scenario("apache-any-client-requests", "apache")
def apache_clients(run):
    reqs, conns, counts = _run(run, "apache", lambda: run.apache(proxypass=APACHE_PASS, extra=APACHE_EXTRA,
                                                                  log_format=APACHE_INCIDENT_LOG))
    run.write_clients(
        "The proxy capture is taken with tcpdump -i any (Linux cooked headers): it holds the client side too. "
        "%d client requests from two addresses (10.0.0.2, 10.0.0.3), several at once, through Apache (mod_unique_id "
        "id in X-Request-ID to the backend and back to the client; X-Forwarded-For added by mod_proxy): healthy "
        "GETs of the same target at the same time, a POST, then an empty reply, a reset after the request, a "
        "backend closing during a 300 kB upload, a backend timeout, refused connects to two backend "
        "ports of a balancer (/down/, two BalancerMembers with retry=30, forcerecovery=Off: 503 after two attempts), the same path "
        "again while Apache holds both members in error state (503 from the proxy itself, no backend traffic), and a request without Host (400 from the proxy). "
        "Backend connections: %s." % (len(reqs), ", ".join("%s x%d" % kv for kv in sorted(counts.items()))),
        conns, reqs)


NGINX_HTTP = """log_format incident '$time_iso8601 $remote_addr:$remote_port "$request" $status $body_bytes_sent id=$request_id upstream="$upstream_addr" upstream_status="$upstream_status" $request_time';
    upstream down {
        server %s max_fails=1 fail_timeout=30s;
        server %s max_fails=1 fail_timeout=30s;
    }""" % tuple(DOWN)
NGINX_HEADERS = """proxy_set_header X-Request-ID $request_id;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;"""
NGINX_DOWN = """location /down/ {
            proxy_pass http://down/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            %s
        }""" % NGINX_HEADERS


@scenario("nginx-any-client-requests", "nginx")
def nginx_clients(run):
    reqs, conns, counts = _run(run, "nginx", lambda: run.nginx(extra=NGINX_HEADERS, upstream_extra="keepalive 8;",
                                                                http_extra=NGINX_HTTP, server_extra=NGINX_DOWN,
                                                                log_format=" incident"))
    run.write_clients(
        "The proxy capture is taken with tcpdump -i any (Linux cooked headers): it holds the client side too. "
        "%d client requests from two addresses (10.0.0.2, 10.0.0.3), several at once, through nginx (keep-alive "
        "pool of backend connections; $request_id sent in X-Request-ID to the backend but not to the client; "
        "X-Forwarded-For $proxy_add_x_forwarded_for): healthy GETs of the same target at the same time, a POST, "
        "then an empty reply, a reset after the request, a backend closing during a 300 kB upload, a backend "
        "timeout (504), refused connects to both servers of a second upstream (/down/, max_fails=1: 502 after two "
        "attempts), the same path again while nginx holds both servers down (502 \"no live upstreams\" from the "
        "proxy itself, no backend traffic), and a request without Host (400 from the proxy). Backend connections: "
        "%s." % (len(reqs), ", ".join("%s x%d" % kv for kv in sorted(counts.items()))),
        conns, reqs)

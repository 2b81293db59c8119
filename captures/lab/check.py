#!/usr/bin/env python3
"""Check every captures/*/expected.json against its captures, with tshark.

For each scenario: the JSON parses and has exactly the contract's keys; verdict and blame labels are those
of DESIGN.md; every listed file exists; and for every listed connection view, the frame `first_frame`
exists in that capture, is the first TCP frame of its tshark tcp.stream, and carries the listed 4-tuple
(either direction). `backend_server` (per side an endpoint, or a list of them) must hold the server of
every listed view. Optional per-connection keys:
`icmp` (ICMP errors that answered the connection: each listed frame must be an ICMP error from that address,
with that type and code, quoting a segment of that connection) and `protocol` ("http" or "tls": TLS to the
backend, HTTP content not visible on the wire). Optional top-level key `client_requests` (a proxy capture
taken with -i any): each request's `request_frame` must carry, between the listed client and proxy, the
start of its request line, its `response_frame` (when not null) the start of a status line with its
status, and each `backend` view must be a connection's first frame as above. Exit 1 on any problem.

Usage: check.py [SCENARIO_DIR ...]   (default: every captures/*/ with an expected.json)
"""
import glob
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURES = os.path.dirname(HERE)
VERDICTS = {"ok", "connect-refused", "connect-timeout", "request-incomplete", "backend-closed-during-request",
            "backend-empty-reply", "response-truncated", "backend-timeout", "zero-window-stall", "keepalive-race",
            "lost-in-transit", "rst-from-middlebox", "proxy-aborted", "capture-incomplete"}
BLAMES = {"none", "proxy", "backend", "network", "capture"}
KEYS = ["scenario", "proxy_software", "description", "proxy_capture", "backend_capture", "proxy_log",
        "backend_server", "clock_shift_s", "snaplen", "others", "connections"]
CKEYS = ["proxy", "backend", "verdict", "blame", "exchanges", "how_we_know"]
OPTIONAL = ["icmp", "protocol"]
TOP_OPTIONAL = ["client_requests"]
CLIENT_KEYS = ["client", "proxy", "request_frame", "method", "target", "status", "response_frame", "request_id",
               "backend", "how_we_know"]
_payload_cache = {}
ICMP_KEYS = ["from", "type", "code", "proxy_frame", "backend_frame"]
_cache = {}
_icmp_cache = {}


def ep(ip, port):
    return ("[%s]:%s" % (ip, port)) if ":" in ip else ("%s:%s" % (ip, port))


def frames(path):
    """frame number -> (stream, src, dst), and stream -> first frame, for TCP frames."""
    if path in _cache:
        return _cache[path]
    out = subprocess.run(["tshark", "-n", "-r", path, "-Y", "tcp and not icmp and not icmpv6", "-T", "fields",
                          "-E", "separator=\t", "-E", "occurrence=f", "-e", "frame.number", "-e", "tcp.stream",
                          "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "ipv6.dst",
                          "-e", "tcp.dstport"], capture_output=True, text=True, timeout=300, check=True).stdout
    fr, first = {}, {}
    for line in out.splitlines():
        n, st, s4, s6, sp, d4, d6, dp = line.split("\t")
        n, st = int(n), int(st)
        fr[n] = (st, ep(s4 or s6, sp), ep(d4 or d6, dp))
        first.setdefault(st, n)
    _cache[path] = (fr, first)
    return fr, first


def icmp_frames(path):
    """frame number -> (sender, type, code, quoted src, quoted dst) for ICMP/ICMPv6 errors quoting TCP."""
    if path in _icmp_cache:
        return _icmp_cache[path]
    out = subprocess.run(["tshark", "-n", "-r", path, "-Y", "(icmp or icmpv6) and tcp", "-T", "fields",
                          "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,", "-e", "frame.number",
                          "-e", "ip.src", "-e", "ipv6.src", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "icmp.type",
                          "-e", "icmp.code", "-e", "icmpv6.type", "-e", "icmpv6.code", "-e", "tcp.srcport", "-e",
                          "tcp.dstport"], capture_output=True, text=True, timeout=300, check=True).stdout
    fr = {}
    for line in out.splitlines():
        n, s4, s6, d4, d6, t4, c4, t6, c6, sp, dp = (line.split("\t") + [""] * 11)[:11]
        src, dst = (s4 or s6).split(","), (d4 or d6).split(",")
        fr[int(n)] = (src[0], int((t4 or t6).split(",")[0]), int((c4 or c6).split(",")[0]), ep(src[-1], sp),
                      ep(dst[-1], dp))
    _icmp_cache[path] = fr
    return fr


def check_icmp(d, files, c, where):
    errs = []
    if not isinstance(c["icmp"], list) or not c["icmp"]:
        return ["%s: icmp must be a non-empty list" % where]
    for x in c["icmp"]:
        if list(x.keys()) != ICMP_KEYS:
            errs.append("%s: icmp keys %s" % (where, list(x.keys())))
            continue
        for side in ("proxy", "backend"):
            n = x[side + "_frame"]
            if n is None:
                continue
            if c[side] is None or not files[side]:
                errs.append("%s: icmp %s frame %d but no %s view" % (where, side, n, side))
                continue
            f = icmp_frames(os.path.join(d, files[side][0])).get(n)
            if f is None:
                errs.append("%s: %s frame %d is not an ICMP error quoting TCP" % (where, side, n))
                continue
            if (f[0], f[1], f[2]) != (x["from"], x["type"], x["code"]):
                errs.append("%s: %s frame %d is ICMP type %d code %d from %s, not type %d code %d from %s"
                            % (where, side, n, f[1], f[2], f[0], x["type"], x["code"], x["from"]))
            if {f[3], f[4]} != {c[side]["client"], c[side]["server"]}:
                errs.append("%s: %s frame %d quotes %s -> %s, not this connection" % (where, side, n, f[3], f[4]))
        if x["proxy_frame"] is None and x["backend_frame"] is None:
            errs.append("%s: icmp entry with no frame" % where)
    return errs


def check_dir(d):
    errs = []
    name = os.path.basename(d.rstrip("/"))
    try:
        doc = json.load(open(os.path.join(d, "expected.json")))
    except (OSError, ValueError) as e:
        return ["%s: expected.json: %s" % (name, e)]
    keys = list(doc.keys())
    if keys[:len(KEYS)] != KEYS or [k for k in TOP_OPTIONAL if k in keys] != keys[len(KEYS):]:
        errs.append("keys %s" % keys)
    if doc.get("scenario") != name:
        errs.append("scenario name %r != directory %r" % (doc.get("scenario"), name))
    if doc.get("others") not in ("ok", "any"):
        errs.append("others %r" % doc.get("others"))
    files = {"proxy": doc["proxy_capture"], "backend": doc["backend_capture"]}
    for f in files["proxy"] + files["backend"] + [doc["proxy_log"]]:
        if not os.path.exists(os.path.join(d, f)):
            errs.append("missing file %s" % f)
    if not files["proxy"]:
        errs.append("no proxy capture")
    if errs:
        return ["%s: %s" % (name, e) for e in errs]
    if not doc["connections"]:
        errs.append("no connections listed")
    for i, c in enumerate(doc["connections"]):
        where = "connection %d" % i
        keys = list(c.keys())
        if keys[:len(CKEYS)] != CKEYS or [k for k in OPTIONAL if k in keys] != keys[len(CKEYS):]:
            errs.append("%s: keys %s" % (where, keys))
            continue
        if "protocol" in c and c["protocol"] not in ("http", "tls"):
            errs.append("%s: protocol %r" % (where, c["protocol"]))
        if "icmp" in c:
            errs.extend(check_icmp(d, files, c, where))
        if c["verdict"] not in VERDICTS:
            errs.append("%s: verdict %r" % (where, c["verdict"]))
        if c["blame"] not in BLAMES:
            errs.append("%s: blame %r" % (where, c["blame"]))
        for x in c["exchanges"]:
            if set(x) != {"method", "target", "status"}:
                errs.append("%s: exchange keys %s" % (where, sorted(x)))
        if c["proxy"] is None and c["backend"] is None:
            errs.append("%s: no view at all" % where)
        for side in ("proxy", "backend"):
            v = c[side]
            if v is None:
                continue
            if not files[side]:
                errs.append("%s: %s view but no %s capture" % (where, side, side))
                continue
            servers = doc["backend_server"][side]
            if v["server"] != servers and not (isinstance(servers, list) and v["server"] in servers):
                errs.append("%s: %s server %s != backend_server %s" % (where, side, v["server"],
                                                                       doc["backend_server"][side]))
            fr, first = frames(os.path.join(d, files[side][0]))
            f = fr.get(v["first_frame"])
            if f is None:
                errs.append("%s: %s frame %d is not a TCP frame" % (where, side, v["first_frame"]))
                continue
            st, src, dst = f
            if {src, dst} != {v["client"], v["server"]}:
                errs.append("%s: %s frame %d is %s -> %s, not %s <-> %s" % (where, side, v["first_frame"], src, dst,
                                                                         v["client"], v["server"]))
            if first[st] != v["first_frame"]:
                errs.append("%s: %s frame %d is not the first frame of its stream (that is %d)"
                            % (where, side, v["first_frame"], first[st]))
    if "client_requests" in doc:
        errs.extend(check_clients(d, files, doc["client_requests"]))
    return ["%s: %s" % (name, e) for e in errs]


def payloads(path):
    """frame number -> the start of its TCP payload (bytes), for TCP frames with payload."""
    if path in _payload_cache:
        return _payload_cache[path]
    out = subprocess.run(["tshark", "-n", "-r", path, "-Y", "tcp.len > 0 and not icmp and not icmpv6", "-T",
                          "fields", "-E", "occurrence=f", "-e", "frame.number", "-e", "tcp.payload"],
                         capture_output=True, text=True, timeout=300, check=True).stdout
    got = {}
    for line in out.splitlines():
        n, _, hexs = line.partition("\t")
        got[int(n)] = bytes.fromhex(hexs.replace(":", "")[:512])
    _payload_cache[path] = got
    return got


def check_clients(d, files, reqs):
    errs = []
    path = os.path.join(d, files["proxy"][0])
    fr, first = frames(path)
    pay = payloads(path)
    for i, q in enumerate(reqs):
        where = "client request %d" % i
        if list(q.keys()) != CLIENT_KEYS:
            errs.append("%s: keys %s" % (where, list(q.keys())))
            continue
        f = fr.get(q["request_frame"])
        if f is None or {f[1], f[2]} != {q["client"], q["proxy"]}:
            errs.append("%s: frame %s is not between %s and %s" % (where, q["request_frame"], q["client"], q["proxy"]))
            continue
        line = ("%s %s " % (q["method"], q["target"])).encode()
        if not pay.get(q["request_frame"], b"").startswith(line):
            errs.append("%s: frame %d does not start %r" % (where, q["request_frame"], line))
        if q["response_frame"] is not None:
            st = fr.get(q["response_frame"])
            head = pay.get(q["response_frame"], b"")
            if st is None or st[0] != f[0] or st[1] != q["proxy"]:
                errs.append("%s: response frame %d not from the proxy on that connection" % (where, q["response_frame"]))
            elif not (head.startswith(b"HTTP/1.") and head[9:12] == str(q["status"]).encode()):
                errs.append("%s: response frame %d does not start a %s status line" % (where, q["response_frame"],
                                                                                     q["status"]))
        for v in q["backend"]:
            b = fr.get(v["first_frame"])
            if b is None or {b[1], b[2]} != {v["client"], v["server"]} or first[b[0]] != v["first_frame"]:
                errs.append("%s: backend view %s is not a connection's first frame" % (where, v))
    return errs


def main(argv):
    dirs = argv or sorted(os.path.dirname(p) for p in glob.glob(os.path.join(CAPTURES, "*", "expected.json")))
    bad = 0
    seen = set()
    for d in dirs:
        e = check_dir(d)
        for line in e:
            print("FAIL", line)
        bad += bool(e)
        if not e:
            doc = json.load(open(os.path.join(d, "expected.json")))
            seen |= {c["verdict"] for c in doc["connections"]}
            print("ok  ", os.path.basename(d.rstrip("/")), ", ".join(sorted({c["verdict"] for c in doc["connections"]})))
    missing = VERDICTS - seen
    if not argv and missing:
        print("FAIL verdicts never covered:", " ".join(sorted(missing)))
        bad += 1
    print("%d scenario(s) checked, %d failed" % (len(dirs), bad))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

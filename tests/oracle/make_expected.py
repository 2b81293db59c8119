#!/usr/bin/env python3
"""Writes tests/oracle/expected.json: what tshark (an independent tool) says about every corpus
capture that carries HTTP/1.x over TCP. tests/oracle.rs compares bothends with it.

Run from the repository root, with tshark installed (apt-get install tshark):
    python3 tests/oracle/make_expected.py [CORPUS_DIR]

The exact tshark commands, for each capture FILE:
  streams:   tshark -n -r FILE -Y tcp -T fields -E separator=/t -e tcp.stream -e frame.number
                 -e ip.src -e ipv6.src -e tcp.srcport -e ip.dst -e ipv6.dst -e tcp.dstport
  bytes:     tshark -n -r FILE -q -z follow,tcp,raw,N          (Follow TCP Stream, per stream N)
  requests:  tshark -n -r FILE -Y http.request -T fields -E separator=/t -E aggregator=$'\x1e'
                 -e tcp.stream -e frame.number -e http.request.method -e http.request.uri
  responses: tshark -n -r FILE -Y http.response -T fields -E separator=/t -E aggregator=$'\x1e'
                 -e tcp.stream -e frame.number -e http.response.code
(one frame may end several pipelined messages: their fields are joined with the aggregator
character, 0x1e, which cannot occur in a URI)

Follow TCP Stream prints each direction's reassembled bytes (a retransmission once) as hex lines;
lines of node 1 are indented with a tab. A hole shows as the text "[N bytes missing in capture
file]" in the data: those are counted apart as `missing`, not as bytes.
"""
import json
import os
import re
import subprocess
import sys

CORPUS = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "../corpus")
OUT = os.path.join(os.path.dirname(__file__), "expected.json")
MISSING = re.compile(rb"^\[(\d+) bytes missing in capture file\]\x00?$")


def tshark(*args):
    r = subprocess.run(["tshark", "-n", *args], capture_output=True, text=True)
    return r.stdout


def endpoint(ip, port):
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def streams(path):
    """stream -> (first frame, node0, node1)"""
    out = {}
    for line in tshark("-r", path, "-Y", "tcp", "-T", "fields", "-E", "separator=/t",
                       "-e", "tcp.stream", "-e", "frame.number", "-e", "ip.src", "-e", "ipv6.src",
                       "-e", "tcp.srcport", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport").splitlines():
        f = line.split("\t")
        if len(f) < 8 or not f[0]:
            continue
        # tunnels (e.g. IP in IP) list several addresses: the innermost is last
        src = (f[2] or f[3]).split(",")[-1]
        dst = (f[5] or f[6]).split(",")[-1]
        sport, dport = f[4].split(",")[-1], f[7].split(",")[-1]
        s = int(f[0])
        if s not in out:
            out[s] = (int(f[1]), endpoint(src, sport), endpoint(dst, dport))
    return out


def follow(path, stream):
    """(node0 bytes, node1 bytes, node0 missing, node1 missing, node0, node1)"""
    text = tshark("-r", path, "-q", "-z", f"follow,tcp,raw,{stream}")
    nodes = re.findall(r"^Node (\d): (.*)$", text, re.M)
    counts = [0, 0]
    missing = [0, 0]
    body = text.split("=" * 67)
    for line in text.splitlines():
        if not re.fullmatch(r"\t?[0-9a-f]+", line):
            continue
        node = 1 if line.startswith("\t") else 0
        data = bytes.fromhex(line.strip())
        m = MISSING.match(data)
        if m:
            missing[node] += int(m.group(1))
        else:
            counts[node] += len(data)
    n = dict(nodes)
    return counts[0], counts[1], missing[0], missing[1], n.get("0", ""), n.get("1", "")


def http_fields(path, flt, *fields):
    rows = []
    args = ["-r", path, "-Y", flt, "-T", "fields", "-E", "separator=/t", "-E", "aggregator=\x1e",
            "-e", "tcp.stream", "-e", "frame.number"]
    for f in fields:
        args += ["-e", f]
    # not str.splitlines(): it also splits at 0x1c-0x1e, the aggregator among them
    for line in tshark(*args).split("\n"):
        f = line.split("\t")
        if not f[0]:
            continue
        # one frame may carry several messages (pipelining): fields are joined with 0x1e
        streams_ = f[0].split("\x1e")
        cols = [c.split("\x1e") for c in f[2:]]
        for i in range(max(len(c) for c in cols) if cols else 0):
            rows.append((int(streams_[0]), int(f[1]), *[c[i] if i < len(c) else "" for c in cols]))
    return rows


def main():
    version = subprocess.run(["tshark", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    manifest = os.path.join(CORPUS, "MANIFEST.tsv")
    files = [l.split("\t")[0] for l in open(manifest).read().splitlines()[1:]]
    result = {"tshark": version, "captures": []}
    for rel in files:
        path = os.path.join(CORPUS, rel)
        reqs = http_fields(path, "http.request", "http.request.method", "http.request.uri")
        resps = http_fields(path, "http.response", "http.response.code")
        if not reqs and not resps:
            continue
        st = streams(path)
        conns = []
        for s, (first, n0, n1) in sorted(st.items()):
            b0, b1, m0, m1, f0, f1 = follow(path, s)
            conns.append({
                "stream": s,
                "first_frame": first,
                "node0": f0 or n0,
                "node1": f1 or n1,
                "bytes0": b0, "bytes1": b1,
                "missing0": m0, "missing1": m1,
                "requests": [{"frame": r[1], "method": r[2], "uri": r[3]} for r in reqs if r[0] == s],
                "responses": [{"frame": r[1], "code": int(r[2]) if r[2].isdigit() else None}
                              for r in resps if r[0] == s],
            })
        result["captures"].append({"file": rel, "connections": conns})
        print(rel, len(conns), "streams", sum(len(c["requests"]) for c in conns), "requests", file=sys.stderr)
    with open(OUT, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()

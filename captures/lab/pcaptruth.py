#!/usr/bin/env python3
"""Read a capture with tshark and rebuild its TCP connections and HTTP/1.x exchanges.

This is the lab's independent view of the wire (it never uses bothends). It asks tshark for one line
per TCP segment (frame number, time, addresses, ports, tcp.stream, flags, raw seq/ack, length,
window, payload bytes), groups them by tshark's tcp.stream, reassembles each direction from the
client's / server's ISN, and parses HTTP requests and responses out of the reassembled bytes.

Usage as a script: pcaptruth.py CAPTURE  -> prints one line per connection.
"""
import subprocess
import sys

FIELDS = ["frame.number", "frame.time_epoch", "ip.src", "ipv6.src", "tcp.srcport", "ip.dst", "ipv6.dst",
          "tcp.dstport", "tcp.stream", "tcp.flags", "tcp.seq_raw", "tcp.ack_raw", "tcp.len",
          "tcp.window_size_value", "tcp.payload"]
FIN, SYN, RST, PSH, ACK = 1, 2, 4, 8, 16
TSHARK_FILTER = "tcp and not icmp and not icmpv6"


def ep(ip, port):
    return ("[%s]:%s" % (ip, port)) if ":" in ip else ("%s:%s" % (ip, port))


class Seg:
    __slots__ = ("frame", "t", "src", "dst", "flags", "seq", "ack", "len", "win", "payload", "fromc")

    def flagstr(self):
        return "".join(n for b, n in ((SYN, "S"), (FIN, "F"), (RST, "R"), (PSH, "P"), (ACK, "A")) if self.flags & b)


def read_segments(path):
    cmd = ["tshark", "-n", "-r", path, "-Y", TSHARK_FILTER, "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=f"]
    for f in FIELDS:
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    segs = []
    for line in out.splitlines():
        p = line.split("\t")
        if len(p) < len(FIELDS):
            p += [""] * (len(FIELDS) - len(p))
        s = Seg()
        s.frame = int(p[0])
        s.t = float(p[1])
        s.src = ep(p[2] or p[3], p[4])
        s.dst = ep(p[5] or p[6], p[7])
        stream = int(p[8])
        s.flags = int(p[9], 16)
        s.seq = int(p[10])
        s.ack = int(p[11])
        s.len = int(p[12])
        s.win = int(p[13] or 0)
        s.payload = bytes.fromhex(p[14].replace(":", "")) if p[14] else b""
        segs.append((stream, s))
    return segs


class Conn:
    def __init__(self, stream):
        self.stream = stream
        self.segs = []
        self.client = self.server = None
        self.isn_c = self.isn_s = None
        self.syn_seen = False

    @property
    def first_frame(self):
        return self.segs[0].frame

    @property
    def last_frame(self):
        return self.segs[-1].frame

    def view(self):
        return {"client": self.client, "server": self.server, "first_frame": self.first_frame}

    def c2s(self):
        return [s for s in self.segs if s.fromc]

    def s2c(self):
        return [s for s in self.segs if not s.fromc]

    def find(self, fromc=None, flags=None, data=None):
        """Segments matching: direction, all of `flags` set, data True (len>0) / False."""
        out = []
        for s in self.segs:
            if fromc is not None and s.fromc != fromc:
                continue
            if flags is not None and (s.flags & flags) != flags:
                continue
            if data is True and s.len == 0:
                continue
            if data is False and s.len != 0:
                continue
            out.append(s)
        return out

    def first(self, **kw):
        r = self.find(**kw)
        return r[0] if r else None

    def bytes_dir(self, fromc):
        """Contiguous reassembled payload of one direction from its ISN, and the number of distinct
        sequence bytes seen (len, counting bytes cut by snaplen)."""
        isn = self.isn_c if fromc else self.isn_s
        segs = [s for s in self.segs if s.fromc == fromc and s.len > 0]
        if isn is None:
            if not segs:
                return b"", 0, {}
            isn = (segs[0].seq - 1) % 2**32
        pieces = {}
        frames = []
        for s in segs:
            off = (s.seq - isn - 1) % 2**32
            if off > 2**31:
                continue
            if len(s.payload) > len(pieces.get(off, b"")):
                pieces[off] = s.payload
            frames.append((off, s.len, s.frame))
        buf = bytearray()
        for off in sorted(pieces):
            p = pieces[off]
            if off <= len(buf):
                if off + len(p) > len(buf):
                    buf += p[len(buf) - off:]
            else:
                break
        seen = 0
        end = 0
        for off, n, _ in sorted(frames):
            if off + n > end:
                seen += off + n - max(off, end)
                end = off + n
        frames.sort()
        return bytes(buf), seen, frames

    def frame_at(self, fromc, offset):
        _, _, frames = self.bytes_dir(fromc)
        for off, n, fr in frames:
            if off <= offset < off + n:
                return fr
        return None


def connections(path, servers=None):
    """All TCP connections of a capture, in order of first frame. `servers`: optional set of "ip:port"
    strings known to be servers (used when the capture has no SYN for a connection)."""
    by = {}
    order = []
    for stream, s in read_segments(path):
        c = by.get(stream)
        if c is None:
            c = by[stream] = Conn(stream)
            order.append(c)
        c.segs.append(s)
    for c in order:
        syn = next((s for s in c.segs if s.flags & SYN and not s.flags & ACK), None)
        synack = next((s for s in c.segs if s.flags & SYN and s.flags & ACK), None)
        if syn:
            c.client, c.server = syn.src, syn.dst
        elif synack:
            c.client, c.server = synack.dst, synack.src
        else:
            a, b = c.segs[0].src, c.segs[0].dst
            if servers and a in servers:
                a, b = b, a
            elif not (servers and b in servers):
                if int(a.rsplit(":", 1)[1]) < int(b.rsplit(":", 1)[1]):
                    a, b = b, a
            c.client, c.server = a, b
        c.syn_seen = syn is not None
        for s in c.segs:
            s.fromc = s.src == c.client
        if syn:
            c.isn_c = syn.seq
        if synack:
            c.isn_s = synack.seq
    return order


def icmp_errors(path):
    """ICMP/ICMPv6 error messages of a capture that quote a TCP segment: one dict per frame with the
    frame number, time, the sender (outer source address), type, code, and the quoted segment's
    source/destination ("ip:port") and raw sequence number."""
    cmd = ["tshark", "-n", "-r", path, "-o", "tcp.relative_sequence_numbers:FALSE", "-Y", "(icmp or icmpv6) and tcp",
           "-T", "fields", "-E", "separator=\t",
           "-E", "occurrence=a", "-E", "aggregator=,"]
    for f in ("frame.number", "frame.time_epoch", "ip.src", "ipv6.src", "ip.dst", "ipv6.dst", "icmp.type",
              "icmp.code", "icmpv6.type", "icmpv6.code", "tcp.srcport", "tcp.dstport", "tcp.seq"):
        cmd += ["-e", f]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=True).stdout
    res = []
    for line in out.splitlines():
        p = line.split("\t")
        p += [""] * (13 - len(p))
        v4 = bool(p[2])
        src = (p[2] or p[3]).split(",")
        dst = (p[4] or p[5]).split(",")
        res.append({"frame": int(p[0]), "t": float(p[1]), "from": src[0], "to": dst[0],
                    "type": int((p[6] or p[8]).split(",")[0]), "code": int((p[7] or p[9]).split(",")[0]),
                    "quoted_src": ep(src[-1], p[10]), "quoted_dst": ep(dst[-1], p[11]),
                    "quoted_seq": int(p[12]), "v4": v4})
    return res


def parse_headers(block):
    lines = block.decode("latin-1").split("\r\n")
    h = {}
    for ln in lines[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            h[k.strip().lower()] = v.strip()
    return lines[0], h


def chunked_end(data, pos):
    """Offset just past the final chunk (and trailers) starting at pos, or None if incomplete."""
    while True:
        i = data.find(b"\r\n", pos)
        if i < 0:
            return None
        try:
            size = int(data[pos:i].split(b";")[0].strip(), 16)
        except ValueError:
            return None
        pos = i + 2
        if size == 0:
            j = data.find(b"\r\n\r\n", pos - 2)
            return None if j < 0 else j + 4
        pos += size + 2
        if pos > len(data):
            return None


def parse_requests(data):
    reqs = []
    pos = 0
    while pos < len(data):
        he = data.find(b"\r\n\r\n", pos)
        if he < 0:
            line = data[pos:data.find(b"\r\n", pos)] if b"\r\n" in data[pos:] else data[pos:]
            parts = line.decode("latin-1").split(" ")
            if len(parts) >= 2 and parts[0].isalpha() and parts[0].isupper():
                reqs.append({"method": parts[0], "target": parts[1], "offset": pos, "complete": False,
                             "headers_complete": False})
            break
        first, h = parse_headers(data[pos:he + 4])
        parts = first.split(" ")
        if len(parts) < 3:
            break
        r = {"method": parts[0], "target": parts[1], "offset": pos, "headers": h, "headers_complete": True,
             "expect": h.get("expect", "").lower() == "100-continue"}
        body = he + 4
        if "chunked" in h.get("transfer-encoding", "").lower():
            r["framing"] = "chunked"
            end = chunked_end(data, body)
        else:
            n = int(h.get("content-length", "0") or 0)
            r["framing"] = "content-length" if "content-length" in h else "none"
            r["content_length"] = n
            end = body + n if body + n <= len(data) else None
        r["body_seen"] = (end if end is not None else len(data)) - body
        r["complete"] = end is not None
        r["end"] = end
        reqs.append(r)
        if end is None:
            break
        pos = end
    return reqs


def parse_responses(data, reqs):
    resps = []
    pos = 0
    i = 0
    while pos < len(data):
        he = data.find(b"\r\n\r\n", pos)
        if he < 0:
            resps.append({"status": None, "offset": pos, "complete": False, "partial_head": True})
            break
        first, h = parse_headers(data[pos:he + 4])
        parts = first.split(" ")
        try:
            status = int(parts[1])
        except (IndexError, ValueError):
            break
        if 100 <= status < 200 and status != 101:
            if resps and resps[-1].get("interim_only"):
                resps[-1]["interim"].append(status)
            else:
                resps.append({"status": None, "interim": [status], "interim_only": True, "offset": pos,
                              "complete": False})
            pos = he + 4
            continue
        if resps and resps[-1].get("interim_only"):
            r = resps[-1]
            del r["interim_only"]
        else:
            r = {"interim": [], "offset": pos}
            resps.append(r)
        r["status"] = status
        r["head_offset"] = pos
        body = he + 4
        method = reqs[i]["method"] if i < len(reqs) else "GET"
        if method == "HEAD" or status in (204, 304):
            end = body
        elif "chunked" in h.get("transfer-encoding", "").lower():
            end = chunked_end(data, body)
        elif "content-length" in h:
            n = int(h["content-length"])
            r["content_length"] = n
            end = body + n if body + n <= len(data) else None
        else:
            end = None
            r["close_delimited"] = True
        r["body_seen"] = (end if end is not None else len(data)) - body
        r["complete"] = end is not None
        r["end"] = end
        i += 1
        if end is None:
            break
        pos = end
    return resps


def http(conn):
    """Parse a connection's exchanges. Returns a list of dicts: method, target, status (final status or
    None), request_complete, response_complete, req_frame, resp_frame, plus the raw parse results."""
    cdata, cseen, _ = conn.bytes_dir(True)
    sdata, sseen, _ = conn.bytes_dir(False)
    reqs = parse_requests(cdata)
    resps = parse_responses(sdata, reqs)
    ex = []
    for k, r in enumerate(reqs):
        rs = resps[k] if k < len(resps) else None
        ex.append({
            "method": r["method"], "target": r["target"],
            "status": rs["status"] if rs else None,
            "interim": rs.get("interim", []) if rs else [],
            "request_complete": r["complete"], "response_complete": bool(rs and rs["complete"]),
            "req_frame": conn.frame_at(True, r["offset"]),
            "resp_frame": conn.frame_at(False, rs["offset"]) if rs else None,
            "req": r, "resp": rs,
        })
    return ex


def exchanges_json(ex):
    return [{"method": e["method"], "target": e["target"], "status": e["status"]} for e in ex]


def main():
    for c in connections(sys.argv[1]):
        ex = http(c)
        fl = " ".join("%d:%s%s" % (s.frame, "<" if not s.fromc else ">", s.flagstr()) for s in c.segs[:6])
        print(c.stream, c.client, "->", c.server, "first", c.first_frame, "last", c.last_frame, "syn", c.syn_seen,
              [(e["method"], e["target"], e["status"], e["request_complete"], e["response_complete"]) for e in ex],
              fl)


if __name__ == "__main__":
    main()

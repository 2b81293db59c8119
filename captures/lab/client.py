#!/usr/bin/env python3
"""HTTP/1.1 client for the bothends lab, for precise control over what the proxy receives.

Reads a JSON spec on stdin and prints a JSON result on stdout:
  {"sessions": [ {"addr": "10.0.0.1:80", "start": 0.0, "requests": [REQ, ...]}, ... ]}
Each session is one client TCP connection (kept alive between its requests), run in its own thread,
starting `start` seconds after launch, from source address `bind` when given. REQ:
  {"method": "POST", "path": "/ok", "body": 1048576, "chunked": false, "expect": false,
   "at": 0.0,                  # send no earlier than this many seconds after launch
   "body_rate": 0,             # bytes/s for the body (0 = as fast as possible)
   "abort_after_body": null,   # close the connection after sending this many body bytes
   "abort_after_s": null,      # close the connection this long after the response headers arrived
   "gap": null,                # send this many seconds after the previous response of the session ended
   "no_host": false,           # leave out the Host header (an invalid HTTP/1.1 request: the proxy answers 400)
   "timeout": 10}
Each request's result records what the client got: status, when (status_at, seconds after launch), and
the X-Request-ID response header when the proxy sent one.
Every wait is bounded.
"""
import json
import select
import socket
import sys
import threading
import time

T0 = time.monotonic()


def connect(addr, timeout, bind=None):
    host, port = addr.rsplit(":", 1)
    fam = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    if bind:
        s.bind((bind, 0))
    s.connect((host.strip("[]"), int(port)))
    return s


def recv_until(s, buf, sep, deadline):
    while sep not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("timeout")
        r, _, _ = select.select([s], [], [], left)
        if not r:
            raise TimeoutError("timeout")
        d = s.recv(65536)
        if not d:
            raise ConnectionError("closed by proxy")
        buf += d
    return buf


def do_request(s, req, host, res):
    method = req.get("method", "GET")
    path = req.get("path", "/ok")
    body = int(req.get("body", 0))
    chunked = req.get("chunked", False)
    timeout = req.get("timeout", 10)
    if req.get("gap") is not None and res.get("_last_done") is not None:
        d = res["_last_done"] + req["gap"] - time.monotonic()
        if d > 0:
            time.sleep(d)
    at = req.get("at")
    if at is not None:
        d = at - (time.monotonic() - T0)
        if d > 0:
            time.sleep(d)
    res["sent_at"] = round(time.monotonic() - T0, 6)
    h = "%s %s HTTP/1.1\r\n" % (method, path)
    if not req.get("no_host"):
        h += "Host: %s\r\n" % host
    h += "User-Agent: bothends-lab-client\r\n"
    if body or method in ("POST", "PUT"):
        if chunked:
            h += "Transfer-Encoding: chunked\r\n"
        else:
            h += "Content-Length: %d\r\n" % body
        h += "Content-Type: application/octet-stream\r\n"
    if req.get("expect"):
        h += "Expect: 100-continue\r\n"
    h += "\r\n"
    s.sendall(h.encode())
    deadline = time.monotonic() + timeout
    buf = b""
    if req.get("expect"):
        # wait for 100 Continue (bounded: 3 s, like curl's 1 s default but patient)
        try:
            r, _, _ = select.select([s], [], [], 3)
            if r:
                buf = recv_until(s, buf, b"\r\n\r\n", deadline)
                if buf.startswith(b"HTTP/1.1 100"):
                    res["interim"] = 100
                    buf = buf[buf.index(b"\r\n\r\n") + 4:]
        except (TimeoutError, ConnectionError) as e:
            res["error"] = str(e)
            return False
    pat = b"bothends-lab-request-body-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ\n"
    sent = 0
    rate = req.get("body_rate", 0)
    abort_at = req.get("abort_after_body")
    step = 16384
    while sent < body:
        n = min(step, body - sent)
        if abort_at is not None and sent + n > abort_at:
            n = abort_at - sent
        piece = (pat * (n // len(pat) + 1))[:n]
        if chunked:
            s.sendall(b"%x\r\n" % n + piece + b"\r\n")
        else:
            s.sendall(piece)
        sent += n
        if abort_at is not None and sent >= abort_at:
            res["aborted_after_body"] = sent
            time.sleep(0.2)
            s.close()
            return False
        if rate:
            time.sleep(n / rate)
    if chunked and (body or method in ("POST", "PUT")):
        s.sendall(b"0\r\n\r\n")
    res["body_sent"] = sent
    try:
        buf = recv_until(s, buf, b"\r\n\r\n", deadline)
        while buf.startswith(b"HTTP/1.1 1"):
            buf = buf[buf.index(b"\r\n\r\n") + 4:]
            buf = recv_until(s, buf, b"\r\n\r\n", deadline)
        i = buf.index(b"\r\n\r\n") + 4
        head, buf = buf[:i].decode("latin-1"), buf[i:]
        res["status"] = int(head.split(" ", 2)[1])
        res["status_at"] = round(time.monotonic() - T0, 6)
        hdrs = {}
        for ln in head.split("\r\n")[1:]:
            if ":" in ln:
                k, v = ln.split(":", 1)
                hdrs[k.strip().lower()] = v.strip()
        if "x-request-id" in hdrs:
            res["request_id"] = hdrs["x-request-id"]
        if req.get("abort_after_s") is not None:
            end = time.monotonic() + req["abort_after_s"]
            got = len(buf)
            while time.monotonic() < end:
                r, _, _ = select.select([s], [], [], max(0, end - time.monotonic()))
                if r:
                    d = s.recv(16384)
                    if not d:
                        break
                    got += len(d)
            res["aborted_after_s"] = req["abort_after_s"]
            res["body_received"] = got
            s.close()
            return False
        if method == "HEAD" or res["status"] in (204, 304):
            n = 0
        elif "content-length" in hdrs:
            n = int(hdrs["content-length"])
        elif "chunked" in hdrs.get("transfer-encoding", ""):
            while not buf.endswith(b"0\r\n\r\n"):
                r, _, _ = select.select([s], [], [], max(0.01, deadline - time.monotonic()))
                if not r or time.monotonic() > deadline:
                    raise TimeoutError("timeout in chunked body")
                d = s.recv(65536)
                if not d:
                    raise ConnectionError("closed in chunked body")
                buf += d
            res["body_received"] = len(buf)
            return hdrs.get("connection", "").lower() != "close"
        else:
            n = None
        while n is None or len(buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("timeout in body")
            r, _, _ = select.select([s], [], [], left)
            if not r:
                raise TimeoutError("timeout in body")
            d = s.recv(65536)
            if not d:
                if n is None:
                    break
                raise ConnectionError("closed in body after %d of %d" % (len(buf), n))
            buf += d
        res["body_received"] = len(buf)
        return hdrs.get("connection", "").lower() != "close" and n is not None
    except (TimeoutError, ConnectionError, OSError) as e:
        res["error"] = str(e)
        return False


def run_session(sess, out):
    st = sess.get("start", 0)
    if st:
        time.sleep(st)
    addr = sess.get("addr", "10.0.0.1:80")
    host = sess.get("host", "lab.test")
    s = None
    last_done = None
    for req in sess["requests"]:
        res = {"method": req.get("method", "GET"), "path": req.get("path", "/ok"), "_last_done": last_done}
        out.append(res)
        t = time.monotonic()
        try:
            if s is None:
                s = connect(addr, req.get("timeout", 10), sess.get("bind"))
            res["local"] = "%s:%d" % s.getsockname()[:2]
            keep = do_request(s, req, host, res)
        except OSError as e:
            res["error"] = str(e)
            keep = False
        res["elapsed"] = round(time.monotonic() - t, 3)
        last_done = time.monotonic()
        del res["_last_done"]
        if not keep and s is not None:
            try:
                s.close()
            except OSError:
                pass
            s = None
        if req.get("close_after"):
            if s is not None:
                s.close()
            s = None
    if s is not None:
        s.close()


def main():
    spec = json.load(sys.stdin)
    results = []
    threads = []
    for sess in spec["sessions"]:
        out = []
        results.append(out)
        t = threading.Thread(target=run_session, args=(sess, out), daemon=True)
        t.start()
        threads.append(t)
    end = time.monotonic() + spec.get("max_s", 120)
    for t in threads:
        t.join(max(0.1, end - time.monotonic()))
    json.dump({"sessions": results}, sys.stdout)


if __name__ == "__main__":
    main()

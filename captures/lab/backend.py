#!/usr/bin/env python3
"""Scriptable HTTP/1.1 backend for the bothends lab.

The behaviour is chosen per request by the path's first segment, so one backend can serve a whole
scenario, including a busy one where only a few requests fail:

  /ok[...]?size=N&delay=D    read the request (Content-Length or chunked body), wait D s, answer 200 with N body bytes
  /empty[?delay=D]           read the whole request, (wait D s,) then close without sending a byte
  /close-mid-request?read=N  read the headers and N body bytes, then close (unread data -> the kernel sends RST)
  /truncate?size=N&send=M    answer with Content-Length N but send only M body bytes, then close
  /never                     read the whole request and never answer (closes after --hold seconds)
  /stall                     read the headers only, then stop reading (with --rcvbuf: zero window)
  /slow?size=N&rate=R        answer 200 with N bytes at R bytes/s
  /mark?marker=S             like /ok, with the string S in a response header (for router string matches)
  /chunked?size=N&chunk=M    answer 200 with N body bytes as a chunked body (chunks of M bytes)
  /lowercase?size=N[&close=1] answer "http/1.1 200 OK" (lower-case protocol name) with a Content-Length body
                             (close=1: "Connection: close", then close)
  /reset[?delay=D]           read the whole request, (wait D s,) then reset the connection (SO_LINGER 0)

Every request with "Expect: 100-continue" gets "HTTP/1.1 100 Continue" before its body is read (except
/stall and /close-mid-request, which never ask for the body). Keep-alive: a connection is closed after
exactly --idle-close-ms of idleness after a response (default 10 s). All waits are bounded.

--tls CERT,KEY wraps every accepted connection in TLS (Python's ssl module; --keylog FILE writes the
session secrets in NSS key log format so that tshark can decrypt the captures). --accept-delay S sleeps S
seconds after each accept() and --accept-after S accepts nothing during the first S seconds (with a small
--backlog: a full listen queue, SYNs dropped by the kernel).
"""
import argparse
import os
import select
import socket
import ssl
import struct
import sys
import threading
import time
from urllib.parse import urlsplit, parse_qs

HOLD = 15.0
IDLE_MS = 10000
LOG = None
LOCK = threading.Lock()


def log(msg):
    line = "%.6f %s\n" % (time.time(), msg)
    with LOCK:
        if LOG:
            LOG.write(line)
            LOG.flush()


class Closed(Exception):
    pass


class Conn:
    def __init__(self, sock, peer):
        self.sock = sock
        self.peer = peer
        self.buf = b""

    def fill(self, timeout):
        pending = isinstance(self.sock, ssl.SSLSocket) and self.sock.pending()
        if not pending:
            r, _, _ = select.select([self.sock], [], [], timeout)
            if not r:
                raise TimeoutError()
        d = self.sock.recv(65536)
        if not d:
            raise Closed()
        self.buf += d

    def read_until(self, sep, timeout):
        deadline = time.monotonic() + timeout
        while sep not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError()
            self.fill(left)
        i = self.buf.index(sep) + len(sep)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def read_n(self, n, timeout=HOLD):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError()
            self.fill(left)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_body(self, headers):
        te = headers.get("transfer-encoding", "").lower()
        if "chunked" in te:
            total = 0
            while True:
                line = self.read_until(b"\r\n", HOLD)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    # trailers
                    while self.read_until(b"\r\n", HOLD) != b"\r\n":
                        pass
                    return total
                self.read_n(size)
                self.read_n(2)
                total += size
        n = int(headers.get("content-length", "0") or 0)
        got = 0
        while got < n:
            take = min(n - got, 65536)
            self.read_n(take)
            got += take
        return n

    def send(self, data):
        self.sock.sendall(data)


def body_bytes(n):
    pat = b"bothends-lab-response-body-0123456789abcdefghijklmnopqrstuvwxyz\n"
    return (pat * (n // len(pat) + 1))[:n]


def respond(c, status, size, extra=b"", keepalive=True):
    hdr = b"HTTP/1.1 %d %s\r\nServer: lab-backend\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n" % (
        status, b"OK" if status == 200 else b"X", size)
    hdr += extra
    hdr += b"Connection: keep-alive\r\n\r\n" if keepalive else b"Connection: close\r\n\r\n"
    c.send(hdr + body_bytes(size))


def hold_then_close(c):
    # Wait (bounded) until the peer goes away, without reading anything ourselves.
    deadline = time.monotonic() + HOLD
    while time.monotonic() < deadline:
        time.sleep(0.05)
    c.sock.close()


def serve(sock, peer, tls=None):
    if tls is not None:
        try:
            sock.settimeout(HOLD)
            sock = tls.wrap_socket(sock, server_side=True)
            sock.settimeout(None)
            log("%s tls %s %s" % (peer, sock.version(), sock.cipher()[0]))
        except (OSError, ssl.SSLError) as e:
            log("%s tls handshake failed: %r" % (peer, e))
            sock.close()
            return
    c = Conn(sock, peer)
    first = True
    try:
        while True:
            # Wait for the next request: exactly IDLE_MS of idleness on a kept-alive connection.
            t_idle = time.monotonic()
            try:
                if first:
                    head = c.read_until(b"\r\n\r\n", HOLD)
                else:
                    while b"\r\n\r\n" not in c.buf:
                        left = IDLE_MS / 1000.0 - (time.monotonic() - t_idle)
                        if left <= 0:
                            raise TimeoutError()
                        c.fill(left)
                    head = c.read_until(b"\r\n\r\n", 0.001)
            except TimeoutError:
                log("%s idle close after %.1f ms" % (peer, (time.monotonic() - t_idle) * 1000))
                sock.close()
                return
            first = False
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for ln in lines[1:]:
                if ":" in ln:
                    k, v = ln.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            u = urlsplit(target)
            q = {k: v[0] for k, v in parse_qs(u.query).items()}
            mode = u.path.strip("/").split("/")[0] or "ok"
            log("%s %s %s mode=%s" % (peer, method, target, mode))
            expect = headers.get("expect", "").lower() == "100-continue"
            if mode == "stall":
                hold_then_close(c)
                return
            if mode == "close-mid-request":
                n = int(q.get("read", "65536"))
                if expect:
                    c.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                got = 0
                while got < n:
                    d = c.read_n(min(4096, n - got)) if len(c.buf) < n - got else c.read_n(n - got)
                    got += len(d)
                log("%s closing after %d body bytes" % (peer, got))
                sock.close()
                return
            if expect:
                c.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            got = c.read_body(headers)
            log("%s body %d bytes read" % (peer, got))
            if mode == "empty":
                if "delay" in q:
                    time.sleep(min(float(q["delay"]), HOLD))
                sock.close()
                return
            if mode == "reset":
                if "delay" in q:
                    time.sleep(min(float(q["delay"]), HOLD))
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                return
            if mode == "chunked":
                size = int(q.get("size", "100000"))
                step = int(q.get("chunk", "8000"))
                data = body_bytes(size)
                out = b"HTTP/1.1 200 OK\r\nServer: lab-backend\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
                for i in range(0, size, step):
                    out += b"%x\r\n" % len(data[i:i + step]) + data[i:i + step] + b"\r\n"
                c.send(out + b"0\r\n\r\n")
                continue
            if mode == "lowercase":
                size = int(q.get("size", "120"))
                close = q.get("close") == "1"
                c.send(b"http/1.1 200 OK\r\nServer: lab-backend\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n"
                       b"Connection: %s\r\n\r\n" % (size, b"close" if close else b"keep-alive") + body_bytes(size))
                if close:
                    sock.close()
                    return
                continue
            if mode == "never":
                hold_then_close(c)
                return
            if mode == "truncate":
                size = int(q.get("size", "100000"))
                send = int(q.get("send", "30000"))
                hdr = b"HTTP/1.1 200 OK\r\nServer: lab-backend\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % size
                c.send(hdr + body_bytes(send))
                time.sleep(0.05)
                sock.close()
                return
            if mode == "slow":
                size = int(q.get("size", "2000000"))
                rate = float(q.get("rate", "200000"))
                c.send(b"HTTP/1.1 200 OK\r\nServer: lab-backend\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % size)
                sent = 0
                step = 8192
                data = body_bytes(size)
                try:
                    while sent < size:
                        n = min(step, size - sent)
                        c.send(data[sent:sent + n])
                        sent += n
                        time.sleep(n / rate)
                except OSError as e:
                    log("%s slow send stopped after %d bytes: %s" % (peer, sent, e))
                    sock.close()
                    return
                continue
            if "delay" in q:
                time.sleep(min(float(q["delay"]), HOLD))
            size = int(q.get("size", "120"))
            extra = b""
            if "marker" in q:
                extra = b"X-Lab-Marker: %s\r\n" % q["marker"].encode()
            keep = headers.get("connection", "").lower() != "close"
            respond(c, 200, size, extra, keep)
            if not keep:
                sock.close()
                return
    except (Closed, TimeoutError, OSError, ValueError) as e:
        log("%s ends: %r" % (peer, e))
        try:
            sock.close()
        except OSError:
            pass


def main():
    global HOLD, IDLE_MS, LOG
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", action="append", required=True, help="ip:port or [ip6]:port")
    ap.add_argument("--rcvbuf", type=int, default=0)
    ap.add_argument("--idle-close-ms", type=float, default=10000)
    ap.add_argument("--hold", type=float, default=15.0)
    ap.add_argument("--backlog", type=int, default=128)
    ap.add_argument("--tls", help="CERT,KEY: serve TLS")
    ap.add_argument("--keylog", help="write TLS secrets here (NSS key log format)")
    ap.add_argument("--accept-delay", type=float, default=0.0)
    ap.add_argument("--accept-after", type=float, default=0.0)
    ap.add_argument("--log")
    ap.add_argument("--lifetime", type=float, default=600, help="exit after this many seconds")
    a = ap.parse_args()
    HOLD = a.hold
    IDLE_MS = a.idle_close_ms
    LOG = open(a.log, "a") if a.log else sys.stderr
    tls = None
    if a.tls:
        cert, key = a.tls.split(",")
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        if a.keylog:
            tls.keylog_filename = a.keylog
    socks = []
    for spec in a.listen:
        host, port = spec.rsplit(":", 1)
        fam = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
        host = host.strip("[]")
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if a.rcvbuf:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, a.rcvbuf)
        s.bind((host, int(port)))
        s.listen(a.backlog)
        socks.append(s)
    print("backend listening", flush=True)
    start = time.monotonic()
    end = start + a.lifetime
    if a.accept_after:
        time.sleep(min(a.accept_after, a.lifetime))
        log("accepting from now on")
    while time.monotonic() < end:
        r, _, _ = select.select(socks, [], [], 0.5)
        for s in r:
            cs, peer = s.accept()
            cs.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            p = "%s:%d" % (peer[0], peer[1])
            log("%s accepted" % p)
            threading.Thread(target=serve, args=(cs, p, tls), daemon=True).start()
            if a.accept_delay:
                time.sleep(a.accept_delay)


if __name__ == "__main__":
    main()

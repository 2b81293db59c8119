#!/usr/bin/env python3
"""Regenerate the per-scenario part of captures/README.md from the scenarios' expected.json and proxy logs.

Everything between the markers <!-- scenarios:begin --> and <!-- scenarios:end --> is rewritten: a table
(scenario, proxy, verdicts, hard situations) and, per scenario, what was done, how the truth was checked
(the how_we_know of each listed connection) and the proxy's own error-log lines.
"""
import glob
import json
import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURES = os.path.dirname(HERE)
README = os.path.join(CAPTURES, "README.md")
BEGIN, END = "<!-- scenarios:begin -->", "<!-- scenarios:end -->"

HARD = {
    "apache-ok-keepalive-uploads": "keep-alive reuse, 1 MiB POST, chunked request body, Expect: 100-continue",
    "nginx-ok-keepalive-uploads": "keep-alive reuse (upstream keepalive), 1 MiB POST, chunked body streamed, Expect answered by nginx",
    "apache-keepalive-race": "keep-alive race that happened (request crossed the backend's FIN)",
    "nginx-keepalive-race": "keep-alive race that happened; nginx retries transparently",
    "nginx-keepalive-race-apache-backend": "keep-alive race with a real Apache httpd backend (KeepAliveTimeout 400ms): FIN crosses the request, lingering close, no RST",
    "apache-nat-empty-reply": "NAT between the capture points (DNAT + SNAT, different 4-tuples)",
    "apache-response-truncated": "backend clock off by seconds (editcap -t -3.5)",
    "nginx-backend-timeout": "backend clock off by hours (editcap -t 10800.25)",
    "apache-snaplen96-truncated": "snaplen-truncated captures (tcpdump -s 96)",
    "apache-capture-dropped-packets": "capture dropped packets (frames deleted with editcap)",
    "apache-capture-started-late": "connection open before tcpdump started",
    "apache-random-loss-ok": "random loss between the hosts, transfers complete",
    "apache-loss-client-aborts": "random loss (6%) while clients abort downloads: backend connections closed with segments lost in flight",
    "nginx-loss-client-aborts": "random loss (6%) while clients abort downloads: backend connections closed with segments lost in flight",
    "apache-mtu-black-hole": "MTU black hole: packets of 1000 bytes or more dropped without ICMP, the small last segment arrives",
    "nginx-mtu-black-hole": "MTU black hole: packets of 1000 bytes or more dropped without ICMP, the small last segment arrives",
    "apache-busy-mixed": "busy: dozens of concurrent connections, a few failures of 5 kinds",
    "apache-ipv6-truncated": "IPv6",
    "apache-cooked-any-empty-reply": "proxy capture with tcpdump -i any (Linux cooked v2), client traffic included",
    "apache-backend-closed-during-request": "1 MiB POST",
    "nginx-backend-closed-during-request": "1 MiB POST (buffered by nginx first)",
    "apache-connect-timeout-syn-lost": "one-sided truth: SYN never reached the backend",
    "apache-connect-timeout-synack-lost": "SYN-ACK lost on the way back",
    "apache-connect-timeout-backend-ignores-syn": "SYN arrived and was ignored (backend INPUT drop)",
    "apache-lost-in-transit-response": "lost response, one later segment arrives out of order",
    "apache-pooled-before-capture": "6 pooled keep-alive connections opened before both captures (no SYN anywhere), 3 new ones",
    "apache-reused-rst-mid-post": "reset on a reused keep-alive connection 78 kB into a 1 MiB POST (not a race)",
    "nginx-reused-rst-mid-post": "reset on a reused upstream keep-alive connection 78 kB into a 1 MiB POST (not a race)",
    "apache-syn-icmp-port-unreachable-backend": "SYN answered by ICMP port unreachable from the backend host",
    "apache-syn-icmp-admin-prohibited-router": "SYN answered by ICMP admin prohibited from a router",
    "apache-syn-icmp-host-unreachable-router": "SYN answered by ICMP host unreachable from a router",
    "apache-syn-icmp-host-unreachable-arp": "backend address nobody owns: router ARP fails, ICMP host unreachable per SYN",
    "apache-snaplen96-mixed": "tcpdump -s 96 on both ends: reset mid-POST, truncated response, empty reply, healthy keep-alive (chunked both ways, Expect)",
    "nginx-snaplen96-mixed": "tcpdump -s 96 on both ends: reset mid-POST, truncated response, empty reply, healthy keep-alive (chunked both ways)",
    "apache-tls-ok-keepalive": "TLS 1.3 to the backend (ProxyPass https://), keep-alive reuse; tls-keys.log decrypts",
    "apache-tls-backend-empty-reply": "TLS 1.3: backend closes after the request; on the fresh connection the server's NewSessionTickets cross the request",
    "apache-tls-lost-in-transit-response": "TLS 1.3: router drops the backend's packets after the handshake",
    "apache-backend-listen-queue-full": "backend listen queue full: SYNs dropped by the backend's kernel, connect timeouts, late connects, requests stuck in the queue",
    "apache-backend-killed-and-restarted": "backend SIGKILLed under load and restarted: in-flight requests cut 3 ways, refusals while down, ok after",
    "apache-backend-host-vanishes": "backend host loses its addresses mid-traffic: no RST, no FIN, no ICMP",
    "apache-lowercase-status-line": "status line 'http/1.1 200 OK' (lower-case), valid Content-Length body; Apache reads it as HTTP/0.9",
    "nginx-lowercase-status-line": "status line 'http/1.1 200 OK' (lower-case), valid Content-Length body; nginx: 'no valid HTTP/1.0 header', 009",
}


def log_lines(path, limit=6):
    out = []
    for line in open(path, errors="replace"):
        if ":debug]" in line or ":notice]" in line or "[notice]" in line:
            continue
        if "[info]" in line and "upstream" not in line and "client" not in line:
            continue
        line = re.sub(r"^\[[^\]]*\] ", "", line.strip())            # apache date
        line = re.sub(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d ", "", line)  # nginx date
        line = re.sub(r"\[pid \d+:tid \d+\] ", "", line)
        line = re.sub(r"\d+#\d+: \*\d+ ", "", line)
        line = re.sub(r"/tmp/bothends-lab-[^/]+/", "$TMP/", line)
        if len(line) > 260:
            line = line[:257] + "..."
        if line not in out:
            out.append(line)
    return out[:limit]


def servers(v):
    """A side's backend endpoint, or several (a list)."""
    return ", ".join(v) if isinstance(v, list) else v


def main():
    docs = []
    for p in sorted(glob.glob(os.path.join(CAPTURES, "*", "expected.json"))):
        d = os.path.dirname(p)
        docs.append((d, json.load(open(p))))
    rows = ["| scenario | proxy | verdicts (blame) | hard situations |", "|---|---|---|---|"]
    for d, doc in docs:
        v = sorted({"%s (%s)" % (c["verdict"], c["blame"]) for c in doc["connections"]})
        rows.append("| `%s` | %s | %s | %s |" % (doc["scenario"], doc["proxy_software"].split(" proxy_pass")[0]
                                                 .replace(" mod_proxy_http (mpm_event)", ""), ", ".join(v),
                                                 HARD.get(doc["scenario"], "")))
    parts = ["\n".join(rows), ""]
    for d, doc in docs:
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        parts.append("### %s\n" % doc["scenario"])
        parts.append("%s\n" % doc["description"])
        parts.append("- files: %s, backend server %s (proxy view) / %s (backend view), clock shift %s s, "
                     "snaplen %d, others: `%s`, %.0f kB" % (
                         ", ".join("`%s`" % f for f in doc["proxy_capture"] + doc["backend_capture"]),
                         servers(doc["backend_server"]["proxy"]), servers(doc["backend_server"]["backend"]),
                         doc["clock_shift_s"],
                         doc["snaplen"], doc["others"], size / 1024.0))
        for c in doc["connections"]:
            pv = c["proxy"]
            parts.append("- **%s** / %s — proxy view %s (first frame %s), backend view %s (first frame %s). %s" % (
                c["verdict"], c["blame"], pv["client"] if pv else "absent", pv["first_frame"] if pv else "-",
                c["backend"]["client"] if c["backend"] else "absent",
                c["backend"]["first_frame"] if c["backend"] else "-", c["how_we_know"]))
        ll = log_lines(os.path.join(d, doc["proxy_log"]))
        if ll:
            parts.append("- proxy log (warn/error lines of `%s`):\n\n```\n%s\n```" % (doc["proxy_log"], "\n".join(ll)))
        else:
            parts.append("- proxy log: no warning or error line (see `proxy-access.log` for the status and bytes "
                         "the proxy sent its client).")
        parts.append("")
    text = open(README).read()
    a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
    open(README, "w").write(text[:a] + "\n" + "\n".join(parts) + "\n" + text[b:])
    print("README.md: %d scenarios" % len(docs))


if __name__ == "__main__":
    main()

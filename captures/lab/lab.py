#!/usr/bin/env python3
"""bothends failure lab: real proxies, real failures, captured at both ends, with ground truth.

Run as root through run.sh (which installs the packages). Every scenario builds four fresh network
namespaces, starts tcpdump on the proxy's interface towards the backend and on the backend's
interface, runs a real proxy (Apache httpd mod_proxy_http or nginx) and a scriptable backend, injects
one fault, stops everything, and then reads the captures back with tshark (pcaptruth.py) to confirm
that the fault happened on the wire as intended. Only then it writes captures/<scenario>/ with
proxy.pcap, backend.pcap, proxy-error.log and expected.json. A scenario whose wire does not show what
was intended (e.g. a race that did not happen) is run again, up to its number of attempts.

    topology (addresses; IPv6 in brackets)
    client ns  eth0 10.0.0.2 [fd00:0::2]
       |
    proxy ns   eth0 10.0.0.1 [fd00:0::1]   (apache / nginx listen here, port 80)
               eth1 10.0.1.2 [fd00:1::2]   <- tcpdump proxy.pcap
       |
    router ns  eth1 10.0.1.1 [fd00:1::1]   forwards; faults: iptables FORWARD (statistic, string, REJECT), NAT
               eth2 10.0.2.1 [fd00:2::1]
       |
    backend ns eth0 10.0.2.2 [fd00:2::2]   <- tcpdump backend.pcap; backend.py on :8080
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

if __name__ == "__main__":
    sys.modules["lab"] = sys.modules["__main__"]  # scenarios.py imports this module as "lab"
HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURES = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import pcaptruth as pt  # noqa: E402

NS = {"client": "bl-client", "proxy": "bl-proxy", "router": "bl-router", "backend": "bl-backend"}
BACKEND = "10.0.2.2:8080"
BACKEND6 = "[fd00:2::2]:8080"
VIP = "10.0.9.9:80"
PY = "/usr/bin/python3"
APACHE_SW = None
NGINX_SW = None
SCENARIOS = []
VERDICTS = {"ok": "none", "connect-refused": "backend", "connect-timeout": None, "request-incomplete": "proxy",
            "backend-closed-during-request": "backend", "backend-empty-reply": "backend",
            "response-truncated": "backend", "backend-timeout": "backend", "zero-window-stall": "backend",
            "keepalive-race": "proxy", "lost-in-transit": "network", "rst-from-middlebox": "network",
            "proxy-aborted": "proxy", "capture-incomplete": "capture"}


def log(*a):
    print("[lab %s]" % time.strftime("%H:%M:%S"), *a, flush=True)


def sh(cmd, check=True, timeout=30, **kw):
    return subprocess.run(cmd, shell=isinstance(cmd, str), check=check, timeout=timeout,
                          capture_output=True, text=True, **kw)


def nsx(ns, cmd, check=True, timeout=30):
    if isinstance(cmd, str):
        return sh("ip netns exec %s %s" % (NS[ns], cmd), check=check, timeout=timeout)
    return sh(["ip", "netns", "exec", NS[ns]] + cmd, check=check, timeout=timeout)


class Retry(Exception):
    """The wire did not show what the scenario intended: run it again."""


def require(cond, msg):
    if not cond:
        raise Retry(msg)


def software():
    global APACHE_SW, NGINX_SW
    v = sh("apache2 -v").stdout.split("\n")[0].split("Apache/")[1].split()[0]
    APACHE_SW = "apache httpd %s mod_proxy_http (mpm_event)" % v
    n = sh("nginx -v").stderr.strip().split("nginx/")[1]
    NGINX_SW = "nginx %s proxy_pass" % n


# ---------------------------------------------------------------------------------------------
# network

def net_down():
    """Kill every process left in the lab's namespaces (by pid) and delete the namespaces."""
    for ns in NS.values():
        r = sh(["ip", "netns", "pids", ns], check=False)
        for pid in r.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
    time.sleep(0.1)
    for ns in NS.values():
        sh(["ip", "netns", "del", ns], check=False)
    for dev in ("bl-c0", "bl-p1", "bl-r2"):
        sh(["ip", "link", "del", dev], check=False)


def net_up():
    net_down()
    for ns in NS.values():
        sh(["ip", "netns", "add", ns])
        sh(["ip", "-n", ns, "link", "set", "lo", "up"])
    pairs = [("bl-c0", "client", "eth0", "bl-p0", "proxy", "eth0"),
             ("bl-p1", "proxy", "eth1", "bl-r1", "router", "eth1"),
             ("bl-r2", "router", "eth2", "bl-b2", "backend", "eth0")]
    for a, nsa, ia, b, nsb, ib in pairs:
        sh(["ip", "link", "add", a, "type", "veth", "peer", "name", b])
        sh(["ip", "link", "set", a, "netns", NS[nsa]])
        sh(["ip", "link", "set", b, "netns", NS[nsb]])
        sh(["ip", "-n", NS[nsa], "link", "set", a, "name", ia])
        sh(["ip", "-n", NS[nsb], "link", "set", b, "name", ib])
    addrs = [("client", "eth0", "10.0.0.2/24", "fd00:0::2/64"), ("proxy", "eth0", "10.0.0.1/24", "fd00:0::1/64"),
             ("proxy", "eth1", "10.0.1.2/24", "fd00:1::2/64"), ("router", "eth1", "10.0.1.1/24", "fd00:1::1/64"),
             ("router", "eth2", "10.0.2.1/24", "fd00:2::1/64"), ("backend", "eth0", "10.0.2.2/24", "fd00:2::2/64")]
    for ns, dev, a4, a6 in addrs:
        sh(["ip", "-n", NS[ns], "addr", "add", a4, "dev", dev])
        sh(["ip", "-n", NS[ns], "-6", "addr", "add", a6, "dev", dev, "nodad"])
        sh(["ip", "-n", NS[ns], "link", "set", dev, "up"])
    sh(["ip", "-n", NS["proxy"], "route", "add", "default", "via", "10.0.1.1"])
    sh(["ip", "-n", NS["proxy"], "-6", "route", "add", "default", "via", "fd00:1::1"])
    sh(["ip", "-n", NS["backend"], "route", "add", "default", "via", "10.0.2.1"])
    sh(["ip", "-n", NS["backend"], "-6", "route", "add", "default", "via", "fd00:2::1"])
    nsx("router", "sysctl -qw net.ipv4.ip_forward=1")
    nsx("router", "sysctl -qw net.ipv6.conf.all.forwarding=1")
    # Pre-resolve neighbours so ARP/ND timing does not add noise to the first SYN.
    for ns, dst in (("proxy", "10.0.1.1"), ("router", "10.0.2.2"), ("router", "10.0.1.2"), ("backend", "10.0.2.1"),
                    ("client", "10.0.0.1")):
        nsx(ns, [PY, "-c", "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);"
                 "s.sendto(b'x',('%s',9))" % dst], check=False)
    time.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# one scenario run

APACHE_CONF = """ServerRoot {root}
ServerName proxy.lab.test
Listen 10.0.0.1:80
Listen [fd00:0::1]:80
PidFile {root}/httpd.pid
DefaultRuntimeDir {root}
Mutex file:{root} default
ErrorLog {root}/error.log
LogLevel warn proxy:debug proxy_http:debug
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
LoadModule proxy_module /usr/lib/apache2/modules/mod_proxy.so
LoadModule proxy_http_module /usr/lib/apache2/modules/mod_proxy_http.so
User www-data
Group www-data
StartServers 1
ServerLimit 1
ThreadLimit 64
ThreadsPerChild 64
MinSpareThreads 1
MaxSpareThreads 64
MaxRequestWorkers 64
Timeout 10
KeepAlive On
KeepAliveTimeout 15
LimitRequestBody 0
CustomLog {root}/access.log "{log_format}"
ProxyRequests Off
ProxyTimeout 3
{extra}
"""

APACHE_LOG = '%{%Y-%m-%dT%H:%M:%S}t.%{usec_frac}t %a:%{remote}p \\"%r\\" %>s %B %Dus'

BACKEND_APACHE_CONF = """ServerRoot {root}
ServerName backend.lab.test
Listen 10.0.2.2:8080
PidFile {root}/httpd.pid
DefaultRuntimeDir {root}
Mutex file:{root} default
ErrorLog {root}/error.log
LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so
LoadModule authn_core_module /usr/lib/apache2/modules/mod_authn_core.so
LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so
User www-data
Group www-data
StartServers 1
ServerLimit 1
ThreadLimit 25
ThreadsPerChild 25
MaxRequestWorkers 25
DocumentRoot {root}/htdocs
<Directory {root}/htdocs>
    Require all granted
</Directory>
KeepAlive On
KeepAliveTimeout {keepalive_ms}ms
MaxKeepAliveRequests 0
"""

NGINX_CONF = """worker_processes 1;
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 512; }}
http {{
    {http_extra}
    access_log {root}/access.log{log_format};
    client_body_temp_path {root}/t_body;
    proxy_temp_path {root}/t_proxy;
    fastcgi_temp_path {root}/t_fcgi;
    uwsgi_temp_path {root}/t_uwsgi;
    scgi_temp_path {root}/t_scgi;
    upstream backend {{
        server {upstream} max_fails=0;
        {upstream_extra}
    }}
    server {{
        listen 10.0.0.1:80;
        client_max_body_size 20m;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_connect_timeout 2s;
            proxy_send_timeout 3s;
            proxy_read_timeout 3s;
            {extra}
        }}
        {server_extra}
    }}
}}
"""


class Run:
    def __init__(self, name, proxy_kind):
        self.name = name
        self.kind = proxy_kind
        self.tmp = tempfile.mkdtemp(prefix="bothends-lab-%s-" % name)
        os.chmod(self.tmp, 0o755)
        self.out = os.path.join(self.tmp, "out")
        os.mkdir(self.out)
        self.procs = []
        self.tcpdumps = []
        self.proxy = None
        self.backend_proc = None
        self.notes = []
        self.proxy_pcap = os.path.join(self.out, "proxy.pcap")
        self.backend_pcap = os.path.join(self.out, "backend.pcap")
        self.proxy_files = ["proxy.pcap"]
        self.backend_files = ["backend.pcap"]
        self.backend_server = {"proxy": BACKEND, "backend": BACKEND}
        self.clock_shift = 0.0
        self.snaplen = 262144
        self.full_proxy = self.proxy_pcap  # full-snaplen companions used for the HTTP truth
        self.full_backend = self.backend_pcap
        self.software = None

    # processes ---------------------------------------------------------------------------
    def popen(self, ns, cmd, stdout=None, stderr=None, stdin=None):
        p = subprocess.Popen(["ip", "netns", "exec", NS[ns]] + cmd, stdout=stdout or subprocess.DEVNULL,
                             stderr=stderr or subprocess.DEVNULL, stdin=stdin, start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, p, sig=signal.SIGTERM, timeout=5):
        if p is None or p.poll() is not None:
            return
        try:
            os.kill(p.pid, sig)
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(5)
        except ProcessLookupError:
            pass

    def cleanup(self):
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
        net_down()
        if os.environ.get("LAB_KEEP"):
            log("kept", self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # captures -----------------------------------------------------------------------------
    def tcpdump(self, ns, iface, path, snaplen=None):
        errf = path + ".stderr"
        cmd = ["tcpdump", "-i", iface, "-U", "--immediate-mode", "-B", "16384", "-n", "-Z", "root", "-w", path]
        if snaplen:
            cmd[1:1] = ["-s", str(snaplen)]
        err = open(errf, "w")
        p = self.popen(ns, cmd, stderr=err)
        deadline = time.time() + 10
        while time.time() < deadline:
            if "listening on" in open(errf).read():
                break
            require(p.poll() is None, "tcpdump exited: " + open(errf).read())
            time.sleep(0.05)
        else:
            raise Retry("tcpdump did not start")
        self.tcpdumps.append((p, errf))
        return p

    def capture(self, proxy_iface="eth1", snaplen=None, backend=True):
        self.tcpdump("proxy", proxy_iface, self.proxy_pcap, snaplen)
        if backend:
            self.tcpdump("backend", "eth0", self.backend_pcap, snaplen)
        if snaplen:
            self.snaplen = snaplen
            self.full_proxy = os.path.join(self.tmp, "proxy-full.pcap")
            self.full_backend = os.path.join(self.tmp, "backend-full.pcap")
            self.tcpdump("proxy", proxy_iface, self.full_proxy)
            if backend:
                self.tcpdump("backend", "eth0", self.full_backend)
        if not backend:
            self.backend_files = []
        time.sleep(0.2)

    def stop_captures(self):
        time.sleep(0.3)
        for p, errf in self.tcpdumps:
            self.stop(p, signal.SIGINT)
            err = open(errf).read()
            self.notes.append("tcpdump: " + " / ".join(l for l in err.splitlines() if "packets" in l))
            if "0 packets dropped by kernel" not in err:
                raise Retry("tcpdump reports drops: %s" % err)
            got = [int(l.split()[0]) for l in err.splitlines() if "packets captured" in l or "received by filter" in l]
            if len(got) != 2 or got[0] != got[1]:
                raise Retry("tcpdump did not write every packet it received: %s" % err)

    # servers ------------------------------------------------------------------------------
    def backend(self, *args, listen=None):
        logf = os.path.join(self.tmp, "backend.log")
        cmd = [PY, os.path.join(HERE, "backend.py"), "--log", logf, "--lifetime", "300"]
        for l in (listen or [BACKEND]):
            cmd += ["--listen", l]
        p = self.popen("backend", cmd + list(args), stdout=subprocess.PIPE)
        line = p.stdout.readline()
        require(b"listening" in line, "backend did not start")
        self.backend_proc = p
        return p

    def apache_backend(self, keepalive_ms=400):
        """A real Apache httpd as the backend (static files), for keep-alive timeouts."""
        root = os.path.join(self.tmp, "apache-backend")
        docs = os.path.join(root, "htdocs")
        os.makedirs(docs)
        os.chmod(root, 0o777)
        with open(os.path.join(docs, "race.txt"), "w") as f:
            f.write("bothends lab static file served by a real Apache httpd backend\n" * 2)
        conf = os.path.join(root, "httpd.conf")
        with open(conf, "w") as f:
            f.write(BACKEND_APACHE_CONF.format(root=root, keepalive_ms=keepalive_ms))
        self.backend_proc = self.popen("backend", ["apache2", "-f", conf, "-DFOREGROUND"],
                                       stderr=open(os.path.join(root, "stderr"), "w"))
        deadline = time.time() + 10
        while time.time() < deadline:
            if "10.0.2.2:8080" in nsx("backend", "ss -Hltn", check=False).stdout:
                time.sleep(0.2)
                return
            time.sleep(0.1)
        raise Retry("backend apache did not listen")

    def apache(self, proxypass=None, extra="", log_format=APACHE_LOG):
        self.software = APACHE_SW
        root = os.path.join(self.tmp, "apache")
        os.mkdir(root)
        os.chmod(root, 0o777)
        if proxypass is None:
            proxypass = "ProxyPass / http://%s/ connectiontimeout=2 timeout=3" % BACKEND
        conf = os.path.join(root, "httpd.conf")
        with open(conf, "w") as f:
            f.write(APACHE_CONF.format(root=root, extra=proxypass + "\n" + extra, log_format=log_format))
        self.proxy_log = os.path.join(root, "error.log")
        self.proxy_access = os.path.join(root, "access.log")
        self.proxy = self.popen("proxy", ["apache2", "-f", conf, "-DFOREGROUND"],
                                stderr=open(os.path.join(root, "stderr"), "w"))
        self.wait_listen("10.0.0.1", 80)

    def nginx(self, extra="", upstream=BACKEND, upstream_extra="", http_extra="", server_extra="", log_format=""):
        self.software = NGINX_SW
        root = os.path.join(self.tmp, "nginx")
        os.mkdir(root)
        os.chmod(root, 0o777)
        conf = os.path.join(root, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(root=root, extra=extra, upstream=upstream, upstream_extra=upstream_extra,
                                      http_extra=http_extra, server_extra=server_extra, log_format=log_format))
        self.proxy_log = os.path.join(root, "error.log")
        self.proxy_access = os.path.join(root, "access.log")
        self.proxy = self.popen("proxy", ["nginx", "-p", root, "-c", conf, "-e", self.proxy_log],
                                stderr=open(os.path.join(root, "stderr"), "w"))
        self.wait_listen("10.0.0.1", 80)

    def wait_listen(self, host, port):
        deadline = time.time() + 10
        while time.time() < deadline:
            r = nsx("proxy", "ss -Hltn", check=False)
            if "%s:%d" % (host, port) in r.stdout:
                time.sleep(0.2)
                return
            require(self.proxy.poll() is None, "proxy exited at start")
            time.sleep(0.1)
        raise Retry("proxy did not listen")

    def stop_proxy(self):
        if self.kind == "nginx":
            self.stop(self.proxy, signal.SIGQUIT, timeout=5)
        self.stop(self.proxy, signal.SIGTERM, timeout=8)

    # traffic and faults -------------------------------------------------------------------
    def client(self, sessions, max_s=60, wait=True):
        spec = json.dumps({"sessions": sessions, "max_s": max_s}).encode()
        p = self.popen("client", [PY, os.path.join(HERE, "client.py")], stdin=subprocess.PIPE,
                       stdout=subprocess.PIPE)
        p.stdin.write(spec)
        p.stdin.close()
        if not wait:
            return p
        return self.client_result(p, max_s)

    def client_result(self, p, max_s=60):
        out = p.stdout.read()
        p.wait(max_s + 10)
        res = json.loads(out)["sessions"]
        self.notes.append("client: " + json.dumps(res))
        return res

    def ipt(self, ns, rule, v6=False):
        nsx(ns, ("ip6tables " if v6 else "iptables ") + rule)
        self.notes.append("%s: %s %s" % (ns, "ip6tables" if v6 else "iptables", rule))

    # end of run ---------------------------------------------------------------------------
    def finish(self, proxy_first=True):
        """Stop the proxy (its pooled backend connections close on the wire), then the captures,
        then the backend."""
        if proxy_first:
            self.stop_proxy()
            time.sleep(0.5)
        self.stop_captures()
        if not proxy_first:
            self.stop_proxy()
        self.stop(self.backend_proc)
        shutil.copy(self.proxy_log, os.path.join(self.out, "proxy-error.log"))
        shutil.copy(self.proxy_access, os.path.join(self.out, "proxy-access.log"))

    def shift_backend(self, secs):
        """Shift backend.pcap's timestamps (the backend host's clock is off): editcap -t."""
        tmp = self.backend_pcap + ".shift"
        sh(["editcap", "-F", "pcap", "-t", repr(secs), self.backend_pcap, tmp])
        os.replace(tmp, self.backend_pcap)
        self.clock_shift = secs
        self.notes.append("editcap -t %r backend.pcap" % secs)

    def conns(self, which="proxy", full=True, servers=None):
        path = {"proxy": self.full_proxy if full else self.proxy_pcap,
                "backend": self.full_backend if full else self.backend_pcap}[which]
        srv = servers or {self.backend_server[which]}
        return [c for c in pt.connections(path, srv) if c.server in srv]

    def pair(self, P, B):
        out = []
        for pc in P:
            m = None
            for bc in B:
                if pc.syn_seen and bc.syn_seen:
                    if pc.isn_c == bc.isn_c:
                        m = bc
                        break
                elif pc.client == bc.client and pc.server == bc.server:
                    m = bc
                    break
            out.append((pc, m))
        return out

    def write_clients(self, description, connections, client_requests, others="ok"):
        """write(), with the client requests the proxy capture's client side shows (issue 12)."""
        self.write(description, connections, others, client_requests=client_requests)

    def write(self, description, connections, others="ok", client_requests=None):
        for c in connections:
            assert c["verdict"] in VERDICTS, c["verdict"]
            assert c["blame"] in ("none", "proxy", "backend", "network", "capture"), c["blame"]
        doc = {
            "scenario": self.name,
            "proxy_software": self.software,
            "description": description,
            "proxy_capture": self.proxy_files,
            "backend_capture": self.backend_files,
            "proxy_log": "proxy-error.log",
            "backend_server": self.backend_server,
            "clock_shift_s": self.clock_shift,
            "snaplen": self.snaplen,
            "others": others,
            "connections": connections,
        }
        if client_requests is not None:
            doc["client_requests"] = client_requests
        with open(os.path.join(self.out, "expected.json"), "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")
        for fn in os.listdir(self.out):
            if fn.endswith(".stderr"):
                os.unlink(os.path.join(self.out, fn))
        dest = os.path.join(CAPTURES, self.name)
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(self.out, dest)
        log("wrote", dest, "(%d connections listed)" % len(connections))


# ---------------------------------------------------------------------------------------------
# evidence helpers

def fdesc(c, s):
    d = "proxy->backend" if s.fromc else "backend->proxy"
    extra = " len=%d" % s.len if s.len else ""
    return "%d %s %s%s" % (s.frame, d, s.flagstr(), extra)


def ladder(c, limit=14):
    segs = c.segs
    if len(segs) > limit:
        keep = segs[:limit // 2] + segs[-limit // 2:]
        parts = [fdesc(c, s) for s in keep[:limit // 2]] + ["..."] + [fdesc(c, s) for s in keep[limit // 2:]]
    else:
        parts = [fdesc(c, s) for s in segs]
    return "; ".join(parts)


def tsh(file, c):
    return ("tshark -r %s -Y 'tcp.stream==%d' -T fields -e frame.number -e frame.time_relative -e tcp.flags.str "
            "-e tcp.seq -e tcp.ack -e tcp.len -e tcp.window_size -e http.request.method -e http.response.code"
            % (file, c.stream))


def entry(pc, bc, verdict, blame, how, exchanges=None, source=None):
    if exchanges is None:
        src = source or pc or bc
        exchanges = pt.exchanges_json(pt.http(src)) if src else []
    return {"proxy": pc.view() if pc else None, "backend": bc.view() if bc else None,
            "verdict": verdict, "blame": blame, "exchanges": exchanges, "how_we_know": how}


def first_close(c):
    """First FIN or RST of the connection: (segment, 'proxy'|'backend') or (None, None)."""
    for s in c.segs:
        if s.flags & (pt.FIN | pt.RST):
            return s, ("proxy" if s.fromc else "backend")
    return None, None


def healthy(c):
    ex = pt.http(c)
    if not ex:
        return False
    for e in ex:
        if not (e["request_complete"] and e["response_complete"] and e["status"] and 200 <= e["status"] < 400):
            return False
    return not c.find(flags=pt.RST)


def scenario(name, proxy, attempts=3):
    def deco(fn):
        SCENARIOS.append((name, proxy, attempts, fn))
        return fn
    return deco


import scenarios  # noqa: E402,F401  (registers the scenarios)
import field  # noqa: E402,F401  (registers the field-realistic scenarios of issue 11)
import incident  # noqa: E402,F401  (client requests <-> backend connections, tcpdump -i any: issue 12)


def main(argv):
    if os.geteuid() != 0:
        sys.exit("lab.py must run as root (network namespaces, iptables, tcpdump)")
    if argv and argv[0] == "--cleanup":
        net_down()
        return 0
    if argv and argv[0] == "--list":
        for n, p, _, _ in SCENARIOS:
            print(n)
        return 0
    import fcntl
    lock = open("/run/bothends-lab.lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        sys.exit("another lab run holds /run/bothends-lab.lock (the lab's namespaces are shared)")
    software()
    want = set(argv)
    unknown = want - {n for n, _, _, _ in SCENARIOS}
    if unknown:
        sys.exit("unknown scenarios: %s" % " ".join(sorted(unknown)))
    failed = []
    for name, proxy, attempts, fn in SCENARIOS:
        if want and name not in want:
            continue
        ok = False
        for attempt in range(1, attempts + 1):
            log("=== %s (attempt %d/%d)" % (name, attempt, attempts))
            r = Run(name, proxy)
            try:
                net_up()
                fn(r)
                ok = True
            except Retry as e:
                log("retry: %s" % e)
            except Exception:
                traceback.print_exc()
            finally:
                r.cleanup()
            if ok:
                break
        if not ok:
            failed.append(name)
    net_down()
    if failed:
        log("FAILED:", " ".join(failed))
        return 1
    log("all scenarios done")
    return 0


if __name__ == "__main__":
    def _term(signum, frame):
        raise KeyboardInterrupt()
    signal.signal(signal.SIGTERM, _term)
    try:
        sys.exit(main(sys.argv[1:]))
    finally:
        net_down()

//! # incident::logs: the proxy's error log → the connection each line is about
//!
//! In: Apache httpd 2.4 / 2.2 and nginx error logs (`--proxy-log FILE`, plain or gzip). Out: each
//! error line tied to the judged connection it is about, or the reason it is tied to none.
//!
//! **Reading.** A line is read when it starts like one of those logs:
//! - Apache: `[Sun Nov 22 00:25:20.388222 2026] [proxy_http:error] [pid 9905:tid 9912]
//!   (20014)Internal error ...: [client 10.0.0.2:40308] AH01102: error reading status line from
//!   remote server 10.0.2.2:8080` (microseconds since 2.4; whole seconds in 2.2's `[error]`);
//! - nginx: `2026/11/22 00:25:23 [error] 10209#10209: *1 upstream prematurely closed connection
//!   while reading response header from upstream, client: 10.0.0.2, server: , request: "POST
//!   /empty HTTP/1.1", upstream: "http://10.0.2.2:8080/empty", host: "lab.test"` (whole seconds).
//!
//! Both write the proxy host's local wall clock without a zone: the caller gives the zone as a
//! fixed offset (`--log-tz`, default UTC). Lines are untrusted: a line longer than
//! [`MAX_LINE_BYTES`] is cut, bytes that are not UTF-8 are replaced, a line that is neither format
//! or whose date cannot be read is a warning naming the file and line (the first
//! [`MAX_WARNINGS_PER_FILE`] per file), and at most [`MAX_KEPT_LINES`] lines are kept.
//!
//! **What a line says.** Lines at `warn` and above, and `info` lines about a backend connection
//! (nginx's "client prematurely closed connection while sending request to upstream"), are kept
//! and classified ([`Says`]): connect refused / unreachable / timed out, no response (backend
//! closed, reset, timeout), response broken off, bad response, request body not delivered, the
//! proxy's client gone, no backend tried, or not about a backend connection. Apache's debug lines
//! of `mod_proxy` (`LogLevel proxy:debug`) are read as context of the request being handled by the
//! same `pid:tid`: which path was sent (AH00947), when, and whether a new connection was made for
//! it (AH02824) or a pooled one reused. The error lines of one Apache request (AH00957 then
//! AH01114; AH01102 then AH00898; AH01084 then AH01097) make one [`Event`].
//!
//! **Matching.** Each judged connection, as it comes, takes the events that are about it
//! ([`Matcher::take`]): the backend address is the connection's server (as the proxy capture saw
//! it), the event's time falls within the connection's life (the proxy logs an error when it sees
//! it and closes the connection right after; a connect timeout comes up to the connection's age
//! again after its last SYN), the request path is one the connection carried (and, with Apache's
//! debug context, sent when the log says, on a connection opened then or reused as the log says),
//! and the line's meaning goes with the verdict ([`Says::fits`]). An event is given to the first
//! connection it fits; per connection, of events with the same meaning about the same exchange,
//! the one nearest its end. A line whose meaning goes with no connection's verdict is tied at the
//! end to the connection whose last request it names (the wire may show no failure where the
//! proxy's own strictness logged one: Apache reading a lower-case status line as HTTP/0.9); it is
//! then listed in the summary ([`LogsSummary::placed`], `fits: false`), not with the connection,
//! whose row was written before. What is left unmatched gets its reason ([`Unmatched`]).

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader};
use std::net::IpAddr;

use super::window::{self, Window};
use crate::decode::Endpoint;
use crate::diagnose::Finding;
use crate::diagnose::Verdict;

/// Longest line read; the rest of a longer line is skipped (and a warning says so).
pub const MAX_LINE_BYTES: usize = 64 * 1024;
/// Bytes of a line's text kept for the report.
pub const MAX_TEXT_BYTES: usize = 512;
/// Lines kept for matching (errors and notes about backend connections, all files together).
pub const MAX_KEPT_LINES: usize = 50_000;
/// Warnings listed per file; the rest are counted.
pub const MAX_WARNINGS_PER_FILE: usize = 20;
/// Apache request contexts (`pid:tid` being handled) followed at once.
const MAX_CONTEXTS: usize = 4096;
/// Events looked at per connection (the nearest to its end).
const MAX_SCAN: usize = 2048;
/// Slack between the log's clock and the capture's (the same host's clock; the log line is
/// written a moment after the packet that caused it).
const TOL_NS: i64 = 50_000_000;
/// How long after its connection's last packet a line may be written (anything but a connect
/// timeout: the proxy logs and closes the connection at once).
const AFTER_NS: i64 = 1_000_000_000;
/// A connect timeout is logged up to this much after the last SYN beyond the connection's age.
const CONNECT_AFTER_NS: i64 = 1_500_000_000;
/// Longest connect timeout considered.
const MAX_CONNECT_AFTER_NS: i64 = 130_000_000_000;
/// A companion line (AH01114 after AH00957) joins its thread's last event this soon after.
const COMPANION_NS: i64 = 1_000_000_000;
/// Near misses remembered per event, for its unmatched reason.
const MAX_NEAR_MISSES: usize = 3;

const SECOND: i64 = 1_000_000_000;

/// Which server wrote the log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    Apache,
    Nginx,
}

impl Flavor {
    pub fn label(self) -> &'static str {
        match self {
            Flavor::Apache => "apache",
            Flavor::Nginx => "nginx",
        }
    }
}

/// Severity, as both servers name it (Apache's trace1..8 are `Debug`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Emerg,
    Alert,
    Crit,
    Error,
    Warn,
    Notice,
    Info,
    Debug,
}

impl Level {
    fn parse(s: &str) -> Option<Level> {
        Some(match s.to_ascii_lowercase().as_str() {
            "emerg" => Level::Emerg,
            "alert" => Level::Alert,
            "crit" => Level::Crit,
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "notice" => Level::Notice,
            "info" => Level::Info,
            "debug" => Level::Debug,
            t if t.starts_with("trace") => Level::Debug,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            Level::Emerg => "emerg",
            Level::Alert => "alert",
            Level::Crit => "crit",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Notice => "notice",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    /// `warn` or more severe: a line the report counts as an error.
    pub fn is_error(self) -> bool {
        self <= Level::Warn
    }
}

/// What a log line says happened to a backend connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Says {
    /// "(111)Connection refused", nginx "connect() failed (111: Connection refused)".
    ConnectRefused,
    /// "(113)No route to host", network or host unreachable.
    ConnectUnreachable,
    /// The connect timed out (Apache AH00957 with (70007), nginx "upstream timed out ... while
    /// connecting to upstream").
    ConnectTimeout,
    /// Another connect failure (Apache AH01114 alone).
    ConnectFailed,
    /// No status line: the backend closed (Apache AH01102 (20014)/(70014), nginx "upstream
    /// prematurely closed connection while reading response header").
    NoResponseClosed,
    /// No status line: a reset ((104) Connection reset by peer).
    NoResponseReset,
    /// No status line before the proxy's timeout.
    NoResponseTimeout,
    /// The response broke off (Apache AH01110, nginx "... while reading upstream").
    ResponseFailed,
    /// The response stalled until the proxy's timeout.
    ResponseTimeout,
    /// The backend's answer was not a valid HTTP response (nginx "upstream sent no valid HTTP/1.0
    /// header").
    BadResponse,
    /// The request (body) could not be sent: the backend closed or reset (Apache AH01084, nginx
    /// "writev() failed (32: Broken pipe) while sending request to upstream").
    SendFailed,
    /// Sending the request stalled until the proxy's timeout.
    SendTimeout,
    /// The proxy's own client stopped sending the request body (Apache AH02608, nginx "client
    /// prematurely closed connection while sending request to upstream").
    ClientAbortedRequest,
    /// The proxy's client went away while the response came (nginx "client prematurely closed
    /// connection, so upstream connection is closed too").
    ClientGone,
    /// A backend error of another kind (TLS handshake, a message not recognised).
    BackendError,
    /// No connection was attempted (nginx "no live upstreams", Apache AH00940 worker in error,
    /// AH01170 all balancer members in error).
    NotTried,
    /// Not about a backend connection (startup, configuration, the client side).
    Other,
}

impl Says {
    /// A stable label (JSON `says`).
    pub fn label(self) -> &'static str {
        match self {
            Says::ConnectRefused => "connect-refused",
            Says::ConnectUnreachable => "connect-unreachable",
            Says::ConnectTimeout => "connect-timeout",
            Says::ConnectFailed => "connect-failed",
            Says::NoResponseClosed => "no-response-closed",
            Says::NoResponseReset => "no-response-reset",
            Says::NoResponseTimeout => "no-response-timeout",
            Says::ResponseFailed => "response-failed",
            Says::ResponseTimeout => "response-timeout",
            Says::BadResponse => "bad-response",
            Says::SendFailed => "send-failed",
            Says::SendTimeout => "send-timeout",
            Says::ClientAbortedRequest => "client-aborted-request",
            Says::ClientGone => "client-gone",
            Says::BackendError => "backend-error",
            Says::NotTried => "not-tried",
            Says::Other => "other",
        }
    }

    fn is_connect(self) -> bool {
        matches!(
            self,
            Says::ConnectRefused | Says::ConnectUnreachable | Says::ConnectTimeout | Says::ConnectFailed
        )
    }

    /// Can a connection with this verdict be what the line is about? (`capture-incomplete`
    /// goes with every failure: the capture could not show it.)
    pub fn fits(self, v: Verdict) -> bool {
        use Verdict as V;
        if v == V::CaptureIncomplete {
            return !matches!(self, Says::NotTried | Says::Other);
        }
        match self {
            Says::ConnectRefused | Says::ConnectUnreachable => {
                matches!(v, V::ConnectRefused | V::ConnectTimeout)
            }
            Says::ConnectTimeout => matches!(v, V::ConnectTimeout | V::LostInTransit),
            Says::ConnectFailed => matches!(v, V::ConnectRefused | V::ConnectTimeout | V::LostInTransit),
            Says::NoResponseClosed | Says::NoResponseReset => matches!(
                v,
                V::BackendEmptyReply
                    | V::KeepaliveRace
                    | V::BackendClosedDuringRequest
                    | V::BackendBadResponse
                    | V::RstFromMiddlebox
                    | V::LostInTransit
            ),
            Says::NoResponseTimeout => {
                matches!(v, V::BackendTimeout | V::LostInTransit | V::ZeroWindowStall)
            }
            Says::ResponseFailed => matches!(
                v,
                V::ResponseTruncated | V::BackendBadResponse | V::RstFromMiddlebox | V::LostInTransit
            ),
            Says::ResponseTimeout => matches!(
                v,
                V::BackendTimeout | V::ResponseTruncated | V::BackendBadResponse | V::LostInTransit
            ),
            Says::BadResponse => matches!(v, V::BackendBadResponse | V::ResponseTruncated),
            Says::SendFailed => matches!(
                v,
                V::BackendClosedDuringRequest
                    | V::KeepaliveRace
                    | V::BackendEmptyReply
                    | V::RstFromMiddlebox
                    | V::LostInTransit
            ),
            Says::SendTimeout => {
                matches!(v, V::ZeroWindowStall | V::BackendTimeout | V::LostInTransit)
            }
            Says::ClientAbortedRequest => v == V::RequestIncomplete,
            Says::ClientGone => matches!(v, V::ProxyAborted | V::RequestIncomplete),
            Says::BackendError => v != V::Ok,
            Says::NotTried | Says::Other => false,
        }
    }
}

/// How a line names the backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackendRef {
    /// An address and port (`10.0.2.2:8080`, `[fd00:2::2]:8080`).
    Addr(Endpoint),
    /// An address without the port (Apache AH01114 "backend: 10.0.2.2").
    Ip(IpAddr),
    /// A host name and port (Apache names the backend as configured): only the port is compared.
    Named(String, u16),
}

impl BackendRef {
    /// Read from `ip:port`, `[v6]:port`, `name:port` or a bare address.
    fn parse(s: &str) -> Option<BackendRef> {
        let s = s.trim().trim_end_matches(['/', ',', '.']);
        if let Ok(e) = s.parse::<Endpoint>() {
            return Some(BackendRef::Addr(e));
        }
        if let Ok(ip) = s.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            return Some(BackendRef::Ip(ip));
        }
        let (host, port) = s.rsplit_once(':')?;
        let port = port.parse().ok()?;
        let name_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
        name_ok.then(|| BackendRef::Named(host.to_ascii_lowercase(), port))
    }

    /// Read from an `address:port` (Apache writes IPv6 resolved addresses without brackets:
    /// `fd00:2::2:8080`).
    fn parse_addr_port(s: &str) -> Option<BackendRef> {
        let s = s.trim();
        if let Some((ip, port)) = s.rsplit_once(':')
            && let (Ok(ip), Ok(port)) = (
                ip.trim_start_matches('[').trim_end_matches(']').parse(),
                port.parse(),
            )
        {
            return Some(BackendRef::Addr(Endpoint { ip, port }));
        }
        BackendRef::parse(s)
    }

    fn strength(&self) -> u8 {
        match self {
            BackendRef::Addr(_) => 2,
            BackendRef::Ip(_) | BackendRef::Named(..) => 1,
        }
    }

    /// Could a connection to `e` be to this backend?
    pub fn matches(&self, e: Endpoint) -> bool {
        match self {
            BackendRef::Addr(a) => *a == e,
            BackendRef::Ip(ip) => *ip == e.ip,
            BackendRef::Named(_, port) => *port == e.port,
        }
    }

    fn words(&self) -> String {
        match self {
            BackendRef::Addr(e) => e.to_string(),
            BackendRef::Ip(ip) => ip.to_string(),
            BackendRef::Named(h, p) => format!("{h}:{p}"),
        }
    }
}

/// One line kept from a log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogLine {
    /// The file as given.
    pub file: String,
    /// 1-based line number in the file.
    pub line: u64,
    /// When it was written, nanoseconds since the epoch, UTC (the log's local time moved by the
    /// zone given); known to `precision_ns` (1 s for nginx: the event is in `[t, t + 1 s)`).
    pub time_ns: i64,
    pub precision_ns: i64,
    pub level: Level,
    /// Apache's message code (`AH01102`); None for nginx.
    pub code: Option<String>,
    /// The line as written (cut to [`MAX_TEXT_BYTES`]).
    pub text: String,
    pub says: Says,
    /// The proxy's client (`[client 10.0.0.2:40308]`, nginx `client: 10.0.0.2`), for tying the
    /// line to the client side.
    pub client: Option<String>,
}

/// The lines of one failure as the proxy logged it: one line, or an Apache request's error
/// lines together (primary first). What is known of the request comes with it.
#[derive(Clone, Debug)]
pub struct Event {
    /// Indexes into [`ProxyLogs::lines`].
    pub lines: Vec<usize>,
    pub time_ns: i64,
    pub precision_ns: i64,
    pub says: Says,
    pub backend: Option<BackendRef>,
    /// The request target sent to the backend (path, with the query when the log has it).
    pub target: Option<String>,
    /// The target is the path only (Apache's "returned by /path"): a query is not compared.
    pub path_only: bool,
    /// When the proxy started on the request (Apache AH00947 "connecting /path to ...").
    pub request_ns: Option<i64>,
    /// A new connection was made for the request (Apache AH02824, its time), or a pooled one
    /// reused (`Some(None)`); None: not known.
    pub fresh: Option<Option<i64>>,
    file: usize,
}

/// Per file: what was read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileStats {
    pub file: String,
    /// The format recognised (None: no line of either).
    pub flavor: Option<Flavor>,
    pub lines: u64,
    /// Lines at `warn` or above.
    pub errors: u64,
    /// Lines in neither format, or whose time could not be read.
    pub unreadable: u64,
    pub warnings: Vec<String>,
    pub more_warnings: u64,
}

impl FileStats {
    fn warn(&mut self, w: String) {
        if self.warnings.len() < MAX_WARNINGS_PER_FILE {
            self.warnings.push(w);
        } else {
            self.more_warnings += 1;
        }
    }
}

/// Everything read from the logs.
#[derive(Clone, Debug, Default)]
pub struct ProxyLogs {
    pub files: Vec<FileStats>,
    /// The zone the log times were read in, seconds east of UTC.
    pub tz_offset_s: i32,
    pub lines: Vec<LogLine>,
    /// Sorted by time.
    pub events: Vec<Event>,
    /// Lines not kept (past [`MAX_KEPT_LINES`]).
    pub dropped: u64,
    /// Only lines written in this window are kept (`--since`/`--until`): the others are counted
    /// (`outside_window`), so a long log's cap goes to the incident's minutes.
    pub window: Window,
    pub outside_window: u64,
}

/// Reads the logs (gzip recognised by its magic bytes), keeping the lines written in `window`.
/// Fails only when a file cannot be opened.
pub fn load(paths: &[String], tz_offset_s: i32, window: Window) -> Result<ProxyLogs, String> {
    let mut logs = ProxyLogs {
        tz_offset_s,
        window,
        ..ProxyLogs::default()
    };
    for path in paths {
        let file = std::fs::File::open(path).map_err(|e| format!("cannot open proxy log {path}: {e}"))?;
        let mut r = BufReader::new(file);
        let gz = r
            .fill_buf()
            .map(|b| b.starts_with(&[0x1f, 0x8b]))
            .unwrap_or(false);
        if gz {
            read_into(
                &mut logs,
                path,
                BufReader::new(flate2::read::MultiGzDecoder::new(r)),
            );
        } else {
            read_into(&mut logs, path, r);
        }
    }
    logs.events
        .sort_by_key(|e| (e.time_ns, e.file, e.lines.first().copied()));
    Ok(logs)
}

/// Reads one log from `reader` into `logs` (events left in file order; [`load`] sorts them).
pub fn read_into(logs: &mut ProxyLogs, name: &str, mut reader: impl BufRead) {
    let file_index = logs.files.len();
    let mut stats = FileStats {
        file: name.to_string(),
        ..FileStats::default()
    };
    let mut reading = Reading {
        contexts: HashMap::new(),
        last_event: HashMap::new(),
    };
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    loop {
        let cut = match read_line_capped(&mut reader, &mut buf, MAX_LINE_BYTES) {
            Ok(Some(cut)) => cut,
            Ok(None) => break,
            Err(e) => {
                stats.warn(format!(
                    "{name}: line {}: read error: {e}; the rest is not read",
                    line_no + 1
                ));
                break;
            }
        };
        line_no += 1;
        stats.lines += 1;
        if cut {
            stats.warn(format!(
                "{name}: line {line_no}: longer than {MAX_LINE_BYTES} bytes; read up to there"
            ));
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end_matches(['\r', '\n']);
        if text.trim().is_empty() {
            continue;
        }
        let parsed = match parse_line(text, logs.tz_offset_s) {
            Ok(p) => p,
            Err(why) => {
                stats.unreadable += 1;
                stats.warn(format!("{name}: line {line_no}: {why}; skipped"));
                continue;
            }
        };
        if stats.flavor.is_none() {
            stats.flavor = Some(parsed.flavor);
        }
        if parsed.level.is_error() {
            stats.errors += 1;
        }
        reading.line(logs, &mut stats, file_index, line_no, text, &parsed);
    }
    if stats.flavor.is_none() && stats.lines > 0 {
        stats.warn(format!(
            "{name}: no line of an Apache or nginx error log in {} lines",
            stats.lines
        ));
    }
    logs.files.push(stats);
}

/// Reads one line into `buf` (without its newline), at most `cap` bytes of it: Some(true) when
/// the line was longer (the rest is skipped), None at the end.
fn read_line_capped(r: &mut impl BufRead, buf: &mut Vec<u8>, cap: usize) -> io::Result<Option<bool>> {
    buf.clear();
    let mut cut = false;
    let mut any = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(any.then_some(cut));
        }
        any = true;
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        let room = cap.saturating_sub(buf.len());
        if take > room {
            cut = true;
        }
        buf.extend_from_slice(&chunk[..take.min(room)]);
        r.consume(if done { take + 1 } else { take });
        if done {
            return Ok(Some(cut));
        }
    }
}

/// A line's fields, borrowed from it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Parsed<'a> {
    flavor: Flavor,
    time_ns: i64,
    precision_ns: i64,
    level: Level,
    /// Apache's module (`proxy_http` of `[proxy_http:error]`).
    module: Option<&'a str>,
    /// Apache `pid:tid`, nginx `pid#tid`.
    thread: Option<&'a str>,
    /// nginx `*N`: the client connection's number.
    conn: Option<&'a str>,
    code: Option<&'a str>,
    errno: Option<u32>,
    client: Option<&'a str>,
    /// Apache: the message after the code; nginx: the text before `, client:`.
    message: &'a str,
    /// nginx `request: "..."`, `upstream: "..."`.
    request: Option<&'a str>,
    upstream: Option<&'a str>,
}

fn parse_line(line: &str, tz: i32) -> Result<Parsed<'_>, String> {
    if line.starts_with('[') {
        parse_apache(line, tz)
    } else if line.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        parse_nginx(line, tz)
    } else {
        Err("not a line of an Apache or nginx error log".to_string())
    }
}

/// Local wall-clock fields → UTC nanoseconds.
fn local_ns(y: i64, mo: u32, d: u32, time: &str, tz: i32) -> Result<(i64, i64), String> {
    let bad = || format!("the time '{time}' cannot be read");
    let (h, mi, s, nanos) = window::time_of_day(time).ok_or_else(bad)?;
    let precision = match time.split_once('.') {
        Some((_, f)) => 10i64.pow(9u32.saturating_sub(f.len().min(9) as u32)),
        None => SECOND,
    };
    let ns = window::civil_ns(y, mo, d, h, mi, s, nanos)
        .ok_or_else(|| format!("the date {y:04}-{mo:02}-{d:02} {time} is out of range"))?;
    Ok((ns - tz as i64 * SECOND, precision))
}

/// `[Sun Nov 22 00:25:20.388222 2026] [proxy_http:error] [pid 9905:tid 9912] ...`
fn parse_apache(line: &str, tz: i32) -> Result<Parsed<'_>, String> {
    let not = || "not a line of an Apache or nginx error log".to_string();
    let close = line.find(']').ok_or_else(not)?;
    let stamp: Vec<&str> = line[1..close].split_whitespace().collect();
    let [_, month, day, time, year] = stamp[..] else {
        return Err(not());
    };
    let mo = window::month_number(month).ok_or_else(not)?;
    let d = window::digits(day).ok_or_else(not)?;
    let y = window::digits(year).ok_or_else(not)? as i64;
    let (time_ns, precision_ns) = local_ns(y, mo, d, time, tz)?;
    let mut rest = &line[close + 1..];
    let mut level = None;
    let mut module = None;
    let mut thread = None;
    let mut client = None;
    // The bracketed fields: [module:level] or [level], [pid P:tid T], [client ...].
    while let Some(r) = rest.trim_start().strip_prefix('[') {
        let Some(end) = r.find(']') else { break };
        let field = &r[..end];
        if let Some(t) = field.strip_prefix("pid ") {
            thread = Some(t);
        } else if let Some(c) = field.strip_prefix("client ").or(field.strip_prefix("remote ")) {
            client = Some(c);
        } else if level.is_none() {
            let (m, l) = match field.rsplit_once(':') {
                Some((m, l)) => (Some(m), l),
                None => (None, field),
            };
            match Level::parse(l) {
                Some(l) => {
                    level = Some(l);
                    module = m;
                }
                None => break,
            }
        } else {
            break;
        }
        rest = &r[end + 1..];
    }
    let level = level.ok_or_else(not)?;
    let mut msg = rest.trim_start();
    // Debug lines name the source: `proxy_util.c(2829): `.
    if let Some(i) = msg.find("): ") {
        let head = &msg[..i];
        if head.contains(".c(") && !head.contains(' ') {
            msg = &msg[i + 3..];
        }
    }
    // `(20014)Internal error (specific information not available): `
    let mut errno = None;
    if let Some(r) = msg.strip_prefix('(')
        && let Some(end) = r.find(')')
        && let Some(n) = window::digits(&r[..end])
    {
        errno = Some(n);
        msg = match r[end + 1..].find(": ") {
            Some(i) => &r[end + 1 + i + 2..],
            None => &r[end + 1..],
        };
    }
    if let Some(r) = msg.strip_prefix("[client ").or(msg.strip_prefix("[remote "))
        && let Some(end) = r.find(']')
    {
        client = client.or(Some(&r[..end]));
        msg = r[end + 1..].trim_start();
    }
    let mut code = None;
    if msg.len() >= 8
        && msg.starts_with("AH")
        && msg.as_bytes()[7] == b':'
        && window::digits(&msg[2..7]).is_some()
    {
        code = Some(&msg[..7]);
        msg = msg[8..].trim_start();
    }
    Ok(Parsed {
        flavor: Flavor::Apache,
        time_ns,
        precision_ns,
        level,
        module,
        thread,
        conn: None,
        code,
        errno,
        client,
        message: msg,
        request: None,
        upstream: None,
    })
}

/// `2026/11/22 00:25:23 [error] 10209#10209: *1 message, client: ..., request: "...", ...`
fn parse_nginx(line: &str, tz: i32) -> Result<Parsed<'_>, String> {
    let not = || "not a line of an Apache or nginx error log".to_string();
    let mut parts = line.splitn(4, ' ');
    let (Some(date), Some(time), Some(lvl), Some(rest)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(not());
    };
    let mut ymd = date.split('/');
    let (Some(y), Some(mo), Some(d), None) = (ymd.next(), ymd.next(), ymd.next(), ymd.next()) else {
        return Err(not());
    };
    let (Some(y), Some(mo), Some(d)) = (window::digits(y), window::digits(mo), window::digits(d)) else {
        return Err(not());
    };
    let level = lvl
        .strip_prefix('[')
        .and_then(|l| l.strip_suffix(']'))
        .and_then(Level::parse)
        .ok_or_else(not)?;
    let (time_ns, precision_ns) = local_ns(y as i64, mo, d, time, tz)?;
    let (thread, mut msg) = match rest.split_once(": ") {
        Some((t, m)) if t.contains('#') => (Some(t), m),
        _ => (None, rest),
    };
    let mut conn = None;
    if let Some(r) = msg.strip_prefix('*')
        && let Some((n, m)) = r.split_once(' ')
        && window::digits(n).is_some()
    {
        conn = Some(n);
        msg = m;
    }
    let (message, fields) = match msg.find(", client: ") {
        Some(i) => (&msg[..i], &msg[i..]),
        None => (msg, ""),
    };
    Ok(Parsed {
        flavor: Flavor::Nginx,
        time_ns,
        precision_ns,
        level,
        module: None,
        thread,
        conn,
        code: None,
        errno: None,
        client: nginx_field(fields, "client", false),
        message,
        request: nginx_field(fields, "request", true),
        upstream: nginx_field(fields, "upstream", true),
    })
}

/// `, name: value` (unquoted, up to the next `, `) or `, name: "value"`.
fn nginx_field<'a>(fields: &'a str, name: &str, quoted: bool) -> Option<&'a str> {
    let key = format!(", {name}: ");
    let at = fields.find(&key)? + key.len();
    let v = &fields[at..];
    if quoted {
        let v = v.strip_prefix('"')?;
        Some(&v[..v.find('"').unwrap_or(v.len())])
    } else {
        Some(&v[..v.find(", ").unwrap_or(v.len())])
    }
}

/// How a line takes part in an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Starts an event (or, in an Apache request already failing, joins it).
    Primary,
    /// Follows a primary line about the same failure (AH01114 after AH00957); alone, it is an
    /// event of its own.
    Companion,
}

/// What an Apache line says (None: nothing about a backend connection).
fn classify_apache(
    module: Option<&str>,
    code: Option<&str>,
    errno: Option<u32>,
    msg: &str,
) -> Option<(Says, Role)> {
    let timeout = matches!(errno, Some(70007 | 110 | 10060 | 60));
    let reset = matches!(errno, Some(104 | 10054 | 54));
    use Role::*;
    Some(match code.unwrap_or("") {
        "AH00957" => (
            match errno {
                Some(111 | 146 | 10061 | 61) => Says::ConnectRefused,
                Some(113 | 101 | 112 | 65 | 10065 | 10051 | 51) => Says::ConnectUnreachable,
                _ if timeout => Says::ConnectTimeout,
                _ => Says::ConnectFailed,
            },
            Primary,
        ),
        "AH01114" | "AH00959" => (Says::ConnectFailed, Companion),
        // A worker in error state (AH00940), or every member of a balancer (AH01170): the proxy
        // answered itself without trying a connection.
        "AH00940" | "AH01170" => (Says::NotTried, Primary),
        "AH01102" => (
            if timeout {
                Says::NoResponseTimeout
            } else if reset {
                Says::NoResponseReset
            } else {
                Says::NoResponseClosed
            },
            Primary,
        ),
        "AH00898" => (Says::BackendError, Companion),
        "AH01110" => (
            if timeout {
                Says::ResponseTimeout
            } else {
                Says::ResponseFailed
            },
            Primary,
        ),
        "AH01084" => (
            if timeout {
                Says::SendTimeout
            } else {
                Says::SendFailed
            },
            Primary,
        ),
        "AH01097" => (Says::SendFailed, Companion),
        "AH02608" | "AH01095" => (Says::ClientAbortedRequest, Primary),
        _ => {
            // Another message of the proxy modules about the backend (Apache 2.2 has no codes).
            let m = msg.to_ascii_lowercase();
            let proxy_module = module.is_none_or(|m| m.starts_with("proxy"));
            if proxy_module
                && (m.contains("remote server") || m.contains("backend") || m.contains("returned by"))
            {
                if m.contains("bad") && (m.contains("header") || m.contains("status")) {
                    (Says::BadResponse, Primary)
                } else {
                    (Says::BackendError, Primary)
                }
            } else {
                return None;
            }
        }
    })
}

/// What an nginx line says (None: nothing about a backend connection).
fn classify_nginx(msg: &str) -> Option<(Says, Role)> {
    let m = msg.to_ascii_lowercase();
    let timeout = m.contains("timed out");
    let reset = m.contains("(104:") || m.contains("reset by peer");
    let client_gone = m.contains("client prematurely closed") || m.contains("client closed");
    use Role::*;
    let says = if m.contains("no live upstreams") {
        Says::NotTried
    } else if m.contains("upstream server temporarily disabled") {
        return Some((Says::ConnectFailed, Companion));
    } else if m.contains("while connecting to upstream") {
        if m.contains("(111:") || m.contains("connection refused") {
            Says::ConnectRefused
        } else if ["(113:", "(101:", "(112:", "no route to host", "unreachable"]
            .iter()
            .any(|k| m.contains(k))
        {
            Says::ConnectUnreachable
        } else if timeout {
            Says::ConnectTimeout
        } else {
            Says::ConnectFailed
        }
    } else if m.contains("while sending request to upstream") {
        if client_gone {
            Says::ClientAbortedRequest
        } else if timeout {
            Says::SendTimeout
        } else {
            Says::SendFailed
        }
    } else if m.contains("while reading response header from upstream") {
        if timeout {
            Says::NoResponseTimeout
        } else if m.contains("upstream sent") {
            Says::BadResponse
        } else if reset {
            Says::NoResponseReset
        } else if m.contains("prematurely closed") {
            Says::NoResponseClosed
        } else if client_gone {
            Says::ClientGone
        } else {
            Says::BackendError
        }
    } else if m.contains("while reading upstream") {
        if client_gone {
            Says::ClientGone
        } else if timeout {
            Says::ResponseTimeout
        } else if m.contains("upstream sent") {
            Says::BadResponse
        } else {
            Says::ResponseFailed
        }
    } else if m.contains("to upstream") || m.contains("from upstream") || m.contains("upstream") {
        if client_gone {
            Says::ClientGone
        } else {
            Says::BackendError
        }
    } else {
        return None;
    };
    Some((says, Primary))
}

/// The path and query of a URL (`http://10.0.2.2:8080/x?y` → `/x?y`), or the target itself.
fn url_target(url: &str) -> &str {
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            rest.find('/').map_or("/", |j| &rest[j..])
        }
        None => url,
    }
}

/// The `host:port` of a URL.
fn url_authority(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    Some(&rest[..rest.find('/').unwrap_or(rest.len())])
}

/// An Apache request being handled by one `pid:tid`, from its debug lines.
#[derive(Clone, Debug, Default)]
struct Context {
    target: Option<String>,
    backend: Option<BackendRef>,
    request_ns: Option<i64>,
    /// AH02824 seen: a new connection, made at this time.
    established: Option<i64>,
    /// AH00947 seen (so a missing AH02824 means a pooled connection was reused).
    connecting: bool,
    event: Option<usize>,
}

/// State while reading one file.
struct Reading {
    contexts: HashMap<String, Context>,
    /// The last event of each thread (Apache `pid:tid`, nginx `*N`), and its time.
    last_event: HashMap<String, (usize, i64)>,
}

impl Reading {
    fn line(
        &mut self,
        logs: &mut ProxyLogs,
        stats: &mut FileStats,
        file: usize,
        line_no: u64,
        text: &str,
        p: &Parsed<'_>,
    ) {
        if p.flavor == Flavor::Apache && p.level == Level::Debug {
            self.apache_context(p);
            return;
        }
        let class = match p.flavor {
            Flavor::Apache => classify_apache(p.module, p.code, p.errno, p.message),
            Flavor::Nginx => classify_nginx(p.message),
        };
        let (says, role) = match class {
            Some(c) => c,
            None if p.level.is_error() => (Says::Other, Role::Primary),
            None => return,
        };
        if !logs.window.contains(p.time_ns, p.precision_ns) {
            logs.outside_window += 1;
            return;
        }
        if logs.lines.len() >= MAX_KEPT_LINES {
            if logs.dropped == 0 {
                stats.warn(format!(
                    "{}: line {line_no}: more than {MAX_KEPT_LINES} error lines; the rest are counted, not matched",
                    stats.file
                ));
            }
            logs.dropped += 1;
            return;
        }
        let index = logs.lines.len();
        logs.lines.push(LogLine {
            file: stats.file.clone(),
            line: line_no,
            time_ns: p.time_ns,
            precision_ns: p.precision_ns,
            level: p.level,
            code: p.code.map(str::to_string),
            text: cut(text, MAX_TEXT_BYTES),
            says,
            client: p.client.map(str::to_string),
        });
        let thread = match p.flavor {
            Flavor::Apache => p.thread.map(str::to_string),
            Flavor::Nginx => p.conn.map(|c| format!("*{c}")),
        };
        let (backend, target, path_only) = line_facts(p);
        // An Apache request already failing: its next error lines join its event.
        let ctx_event = thread
            .as_deref()
            .and_then(|t| self.contexts.get(t))
            .and_then(|c| c.event);
        let recent = thread
            .as_deref()
            .and_then(|t| self.last_event.get(t))
            .filter(|(_, at)| p.time_ns.saturating_sub(*at) <= COMPANION_NS)
            .map(|(e, _)| *e);
        let join = match (says, role) {
            (Says::Other, _) => None,
            (_, Role::Companion) => ctx_event.or(recent),
            (_, Role::Primary) => ctx_event,
        };
        let e = match join {
            Some(e) => {
                let ev = &mut logs.events[e];
                ev.lines.push(index);
                e
            }
            None => {
                logs.events.push(Event {
                    lines: vec![index],
                    time_ns: p.time_ns,
                    precision_ns: p.precision_ns,
                    says,
                    backend: None,
                    target: None,
                    path_only: false,
                    request_ns: None,
                    fresh: None,
                    file,
                });
                logs.events.len() - 1
            }
        };
        let ev = &mut logs.events[e];
        if let Some(b) = backend
            && ev
                .backend
                .as_ref()
                .is_none_or(|old| old.strength() < b.strength())
        {
            ev.backend = Some(b);
        }
        if let Some(t) = target
            && (ev.target.is_none() || (ev.path_only && !path_only))
        {
            ev.target = Some(t);
            ev.path_only = path_only;
        }
        if says == Says::Other {
            return;
        }
        if let Some(t) = thread {
            if let Some(ctx) = self.contexts.get_mut(&t) {
                ctx.event = Some(e);
                if ctx.target.is_some() {
                    ev.target.clone_from(&ctx.target);
                    ev.path_only = false;
                }
                if let Some(b) = &ctx.backend
                    && ev
                        .backend
                        .as_ref()
                        .is_none_or(|old| old.strength() < b.strength())
                {
                    ev.backend = Some(b.clone());
                }
                ev.request_ns = ctx.request_ns;
                if ctx.connecting {
                    ev.fresh = Some(ctx.established);
                }
            }
            if self.last_event.len() >= MAX_CONTEXTS {
                self.last_event.clear();
            }
            self.last_event.insert(t, (e, p.time_ns));
        }
    }

    /// An Apache debug line: follow the request its thread is handling.
    fn apache_context(&mut self, p: &Parsed<'_>) {
        let (Some(thread), Some(code)) = (p.thread, p.code) else {
            return;
        };
        let msg = p.message;
        if matches!(code, "AH01143" | "AH00942") {
            let fresh = code == "AH01143" || self.contexts.get(thread).is_none_or(|c| c.request_ns.is_some());
            if fresh {
                if self.contexts.len() >= MAX_CONTEXTS {
                    self.contexts.clear();
                }
                self.contexts.insert(thread.to_string(), Context::default());
            }
            return;
        }
        if code == "AH00943" {
            self.contexts.remove(thread);
            return;
        }
        let Some(ctx) = self.contexts.get_mut(thread) else {
            return;
        };
        match code {
            // "connecting http://10.0.2.2:8080/empty to 10.0.2.2:8080"
            "AH00944" => {
                if ctx.target.is_none()
                    && let Some(url) = msg.strip_prefix("connecting ").and_then(|r| r.split(' ').next())
                {
                    ctx.target = Some(url_target(url).to_string());
                }
            }
            // "connecting /empty to 10.0.2.2:8080 (10.0.2.2:8080)"
            "AH00947" => {
                if let Some(r) = msg.strip_prefix("connecting ")
                    && let Some((target, _)) = r.split_once(" to ")
                {
                    ctx.target = Some(target.to_string());
                }
                if let Some(b) = parenthesised(msg).and_then(BackendRef::parse_addr_port) {
                    ctx.backend = Some(b);
                }
                ctx.request_ns = Some(p.time_ns);
                ctx.connecting = true;
            }
            // "http: connection established with 10.0.2.2:8080 (10.0.2.2:8080)"
            "AH02824" | "AH00962" => {
                ctx.established.get_or_insert(p.time_ns);
            }
            _ => {}
        }
    }
}

/// The last `(...)` of a message.
fn parenthesised(msg: &str) -> Option<&str> {
    let open = msg.rfind('(')?;
    let close = msg[open..].find(')')? + open;
    Some(&msg[open + 1..close])
}

/// What a line itself says of the backend and the request: (backend, target, target is the path
/// only).
fn line_facts(p: &Parsed<'_>) -> (Option<BackendRef>, Option<String>, bool) {
    match p.flavor {
        Flavor::Nginx => {
            let backend = p.upstream.and_then(url_authority).and_then(BackendRef::parse);
            let target = match (p.upstream, p.request) {
                (Some(u), _) if u.contains("://") => Some(url_target(u).to_string()),
                (_, Some(r)) => r.split(' ').nth(1).map(str::to_string),
                _ => None,
            };
            (backend, target, false)
        }
        Flavor::Apache => {
            let m = p.message;
            let backend = match p.code {
                // "attempt to connect to 10.0.2.2:8080 (10.0.2.2:8080) failed"
                Some("AH00957") => parenthesised(m).and_then(BackendRef::parse_addr_port),
                // "pass request body failed to 10.0.2.2:8080 (10.0.2.2)"
                Some("AH01084" | "AH01097" | "AH02608" | "AH01095") => m
                    .split_once(" failed to ")
                    .and_then(|(_, r)| r.split(' ').next())
                    .and_then(BackendRef::parse_addr_port),
                // "... remote server 10.0.2.2:8080", "... backend: 10.0.2.2" (no port).
                _ => [
                    ("remote server ", true),
                    ("backend server ", true),
                    ("backend: ", false),
                ]
                .iter()
                .find_map(|(k, port)| {
                    let at = m.find(k)? + k.len();
                    let word = m[at..].split([' ', ',']).next()?.trim_end_matches('.');
                    if *port {
                        BackendRef::parse_addr_port(word)
                    } else {
                        BackendRef::parse(word)
                    }
                }),
            };
            let target = m
                .find("returned by ")
                .map(|i| m[i + "returned by ".len()..].trim().to_string())
                .filter(|t| t.starts_with('/'));
            (backend, target, true)
        }
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn cut(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// What matching needs to know of a judged connection (plain data, made by [`ConnFacts::of`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnFacts {
    /// Its id in the report.
    pub id: String,
    /// The server, as the first capture (the proxy's) saw it.
    pub server: Endpoint,
    /// First and last packet, on the proxy capture's clock (the log's clock).
    pub first_ns: i64,
    pub last_ns: i64,
    /// The proxy's SYN, when the capture holds the opening.
    pub syn_ns: Option<i64>,
    pub verdict: Option<Verdict>,
    /// Its requests, in order: target, whether the capture cut it, when its first byte was sent.
    pub requests: Vec<RequestFact>,
}

/// A request as the capture saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestFact {
    pub target: String,
    pub cut: bool,
    pub at_ns: i64,
}

/// Requests remembered per connection (the last ones: a failure ends a connection).
const MAX_REQUESTS: usize = 256;

impl ConnFacts {
    /// The facts of a judged connection, `id` its number in the report.
    pub fn of(f: &Finding, id: &str) -> Option<ConnFacts> {
        let (first_ns, last_ns) = window::span(f)?;
        let view = f.proxy.as_ref().or(f.backend.as_ref())?;
        let to_proxy = |t: i64| match (&f.proxy, f.clock) {
            (None, Some(c)) => c.to_proxy(t),
            _ => t,
        };
        let requests: Vec<RequestFact> = view
            .app
            .exchanges
            .iter()
            .filter_map(|e| {
                let m = e.request.as_ref()?;
                Some(RequestFact {
                    target: m.target.clone()?,
                    cut: m.target_cut,
                    at_ns: to_proxy(m.first.ts_ns),
                })
            })
            .collect();
        let skip = requests.len().saturating_sub(MAX_REQUESTS);
        Some(ConnFacts {
            id: id.to_string(),
            server: view.server,
            first_ns,
            last_ns,
            syn_ns: view.syn.map(|s| to_proxy(s.ts_ns)),
            verdict: Some(f.diagnosis.verdict),
            requests: requests.into_iter().skip(skip).collect(),
        })
    }
}

/// Does a target from the log name the target seen on the wire? `path_only`: the log has the
/// path without the query; `wire_cut`: the capture holds only the start of the wire's target.
fn same_target(log: &str, path_only: bool, wire: &str, wire_cut: bool) -> bool {
    let log = url_target(log);
    let wire = url_target(wire);
    let path = |t: &str| t.split('?').next().unwrap_or(t).to_string();
    if wire_cut {
        if wire.is_empty() {
            return false;
        }
        return if wire.contains('?') {
            path(wire) == path(log)
        } else {
            log.starts_with(wire)
        };
    }
    if path_only || !log.contains('?') && !wire.contains('?') {
        path(log) == path(wire)
    } else {
        log == wire
    }
}

/// An event given to a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attached {
    /// Its lines, primary first.
    pub lines: Vec<LogLine>,
    pub says: Says,
    /// The line's meaning goes with the connection's verdict.
    pub fits: bool,
    /// What tied it to the connection, in words.
    pub matched_by: String,
}

/// How an event fits a connection.
struct Fit {
    fits: bool,
    exchange: Option<usize>,
    /// From the event's time to the connection's last packet.
    distance: i64,
    by: String,
}

/// Why a line is tied to no connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unmatched {
    /// Stable code: `not-about-a-backend-connection`, `no-connection-attempted`,
    /// `outside-window`, `no-capture`, `before-capture`, `after-capture`,
    /// `no-connection-to-backend`, `no-fitting-connection`, `no-connection-at-that-time`.
    pub code: &'static str,
    /// The reason in words.
    pub words: String,
}

/// Where an event ended up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Tied to this connection (report id) with this verdict.
    Matched {
        id: String,
        verdict: Option<Verdict>,
        fits: bool,
    },
    Unmatched(Unmatched),
}

/// A line of the logs with where it ended up (the report's table of proxy log lines).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placed {
    pub line: LogLine,
    pub outcome: Outcome,
}

/// What the capture covered, for the reasons of lines left unmatched.
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureSpan {
    /// First and last packet of the first capture (the proxy's), on its clock.
    pub first_ns: Option<i64>,
    pub last_ns: Option<i64>,
}

/// The whole account of the logs, at the end of a run.
#[derive(Clone, Debug, Default)]
pub struct LogsSummary {
    pub files: Vec<FileStats>,
    pub tz_offset_s: i32,
    pub lines_read: u64,
    /// Lines at `warn` or above.
    pub errors: u64,
    /// Lines kept for matching: errors, and notes (info) about backend connections.
    pub kept: u64,
    /// Kept lines tied to a connection, and not.
    pub matched: u64,
    pub unmatched: u64,
    /// Unmatched lines per reason code, in order of first appearance.
    pub by_reason: Vec<(&'static str, u64)>,
    /// Every kept line (error and notes) with where it ended up, in the order of the files and
    /// their lines (the first [`MAX_PLACED`] in time order); lines outside the window are
    /// counted in `by_reason`, not listed.
    pub placed: Vec<Placed>,
    /// Lines not kept (past [`MAX_KEPT_LINES`]).
    pub dropped: u64,
    /// A sentence when the log's times look like another zone than the one given.
    pub hint: Option<String>,
}

/// Lines listed in the summary's table.
pub const MAX_PLACED: usize = 1000;

/// Ties log events to judged connections as they come (see the module comment).
pub struct Matcher {
    logs: ProxyLogs,
    window: Window,
    /// Which connection took each event.
    taken: Vec<Option<(String, Option<Verdict>, bool)>>,
    /// Per event, the connection its request ties it to although its verdict does not fit:
    /// (id, verdict, distance); used when no fitting connection takes the event.
    tentative: Vec<Option<(String, Option<Verdict>, i64)>>,
    /// Connections that were candidates but did not fit: (id, verdict), per event.
    near: Vec<Vec<(String, Option<Verdict>)>>,
    /// Servers of every connection seen.
    servers: HashSet<Endpoint>,
}

/// Servers remembered for the "no connection to that backend" reason.
const MAX_SERVERS: usize = 65_536;

impl Matcher {
    pub fn new(logs: ProxyLogs, window: Window) -> Matcher {
        let n = logs.events.len();
        Matcher {
            logs,
            window,
            taken: vec![None; n],
            tentative: vec![None; n],
            near: vec![Vec::new(); n],
            servers: HashSet::new(),
        }
    }

    /// No event to match (the logs hold no line about a backend connection).
    pub fn is_empty(&self) -> bool {
        self.logs.events.is_empty()
    }

    /// The events about this connection, taken for it.
    pub fn take(&mut self, c: &ConnFacts) -> Vec<Attached> {
        if self.servers.len() < MAX_SERVERS {
            self.servers.insert(c.server);
        }
        let events = &self.logs.events;
        let post = (c.last_ns - c.first_ns)
            .max(0)
            .saturating_add(CONNECT_AFTER_NS)
            .clamp(AFTER_NS, MAX_CONNECT_AFTER_NS);
        let lo = c.first_ns.saturating_sub(TOL_NS + SECOND);
        let hi = c.last_ns.saturating_add(post + TOL_NS);
        let start = events.partition_point(|e| e.time_ns < lo);
        let end = events.partition_point(|e| e.time_ns <= hi);
        let start = start.max(end.saturating_sub(MAX_SCAN));
        // Per (meaning, exchange): the event nearest the connection's end.
        let mut best: HashMap<(u8, Option<usize>), (usize, Fit)> = HashMap::new();
        for (i, ev) in events.iter().enumerate().take(end).skip(start) {
            if self.taken[i].is_some() || !self.window.contains(ev.time_ns, ev.precision_ns) {
                continue;
            }
            match fit(ev, c) {
                // Tied only by its request: kept aside in case no connection whose verdict fits
                // takes it (settled at the end).
                Ok(f) if !f.fits => {
                    if self.tentative[i].as_ref().is_none_or(|t| f.distance < t.2) {
                        self.tentative[i] = Some((c.id.clone(), c.verdict, f.distance));
                    }
                }
                Ok(f) => {
                    let meaning = if ev.says.is_connect() {
                        0
                    } else {
                        1 + ev.says as u8
                    };
                    let key = (meaning, f.exchange);
                    // The loser of the two is a near miss (another line of its kind is tied to
                    // this connection).
                    let loser = match best.get(&key) {
                        Some((j, b)) if f.distance < b.distance => Some(*j),
                        Some(_) => Some(i),
                        None => None,
                    };
                    if loser != Some(i) {
                        best.insert(key, (i, f));
                    }
                    if let Some(j) = loser {
                        let near = &mut self.near[j];
                        if near.len() < MAX_NEAR_MISSES && !near.iter().any(|(id, _)| *id == c.id) {
                            near.push((c.id.clone(), c.verdict));
                        }
                    }
                }
                Err(true) => {
                    let near = &mut self.near[i];
                    if near.len() < MAX_NEAR_MISSES && !near.iter().any(|(id, _)| *id == c.id) {
                        near.push((c.id.clone(), c.verdict));
                    }
                }
                Err(false) => {}
            }
        }
        let mut chosen: Vec<(usize, Fit)> = best.into_values().collect();
        chosen.sort_by_key(|(i, _)| *i);
        chosen
            .into_iter()
            .map(|(i, f)| {
                self.taken[i] = Some((c.id.clone(), c.verdict, f.fits));
                let ev = &self.logs.events[i];
                Attached {
                    lines: ev.lines.iter().map(|&l| self.logs.lines[l].clone()).collect(),
                    says: ev.says,
                    fits: f.fits,
                    matched_by: f.by,
                }
            })
            .collect()
    }

    /// The account at the end: every line with where it ended up, unmatched ones with a reason.
    pub fn finish(self, span: CaptureSpan) -> LogsSummary {
        let mut s = LogsSummary {
            tz_offset_s: self.logs.tz_offset_s,
            lines_read: self.logs.files.iter().map(|f| f.lines).sum(),
            errors: self.logs.files.iter().map(|f| f.errors).sum(),
            kept: self.logs.lines.len() as u64 + self.logs.outside_window,
            dropped: self.logs.dropped,
            ..LogsSummary::default()
        };
        // Lines outside the window were counted, not kept.
        if self.logs.outside_window > 0 {
            s.unmatched += self.logs.outside_window;
            s.by_reason.push(("outside-window", self.logs.outside_window));
        }
        let mut outside_capture = Vec::new();
        let mut any_matched = false;
        for (i, ev) in self.logs.events.iter().enumerate() {
            let taken = self.taken[i]
                .clone()
                .or_else(|| self.tentative[i].clone().map(|(id, v, _)| (id, v, false)));
            let outcome = match &taken {
                Some((id, verdict, fits)) => {
                    any_matched = true;
                    Outcome::Matched {
                        id: id.clone(),
                        verdict: *verdict,
                        fits: *fits,
                    }
                }
                None => {
                    let r = self.reason(ev, &self.near[i], span);
                    if matches!(r.code, "before-capture" | "after-capture") {
                        outside_capture.push(ev.time_ns);
                    }
                    Outcome::Unmatched(r)
                }
            };
            for &l in &ev.lines {
                match &outcome {
                    Outcome::Matched { .. } => s.matched += 1,
                    Outcome::Unmatched(r) => {
                        s.unmatched += 1;
                        match s.by_reason.iter_mut().find(|(c, _)| *c == r.code) {
                            Some((_, n)) => *n += 1,
                            None => s.by_reason.push((r.code, 1)),
                        }
                    }
                }
                if s.placed.len() < MAX_PLACED {
                    s.placed.push(Placed {
                        line: self.logs.lines[l].clone(),
                        outcome: outcome.clone(),
                    });
                }
            }
        }
        if !any_matched {
            s.hint = zone_hint(&outside_capture, span, self.logs.tz_offset_s);
        }
        // In the order of the files given, then of their lines.
        let file_order: HashMap<&str, usize> = self
            .logs
            .files
            .iter()
            .enumerate()
            .map(|(i, f)| (f.file.as_str(), i))
            .collect();
        s.placed
            .sort_by_key(|p| (file_order.get(p.line.file.as_str()).copied(), p.line.line));
        s.files = self.logs.files;
        s
    }

    fn reason(&self, ev: &Event, near: &[(String, Option<Verdict>)], span: CaptureSpan) -> Unmatched {
        let r = |code, words: String| Unmatched { code, words };
        let at = crate::time::rfc3339(ev.time_ns);
        match ev.says {
            Says::Other => {
                return r(
                    "not-about-a-backend-connection",
                    "not about a backend connection (startup, configuration or the client side)".into(),
                );
            }
            Says::NotTried => {
                return r(
                    "no-connection-attempted",
                    "the proxy attempted no connection (it had marked the backend down)".into(),
                );
            }
            _ => {}
        }
        if !self.window.contains(ev.time_ns, ev.precision_ns) {
            return r("outside-window", "outside the --since/--until window".into());
        }
        let (Some(first), Some(last)) = (span.first_ns, span.last_ns) else {
            return r("no-capture", "the capture holds no packet".into());
        };
        if ev.time_ns + ev.precision_ns + TOL_NS < first {
            return r(
                "before-capture",
                format!(
                    "logged at {} UTC, before the capture started ({} UTC)",
                    crate::time::time_of_day(ev.time_ns),
                    crate::time::time_of_day(first)
                ),
            );
        }
        if ev.time_ns > last + TOL_NS {
            return r(
                "after-capture",
                format!(
                    "logged at {} UTC, after the capture ended ({} UTC)",
                    crate::time::time_of_day(ev.time_ns),
                    crate::time::time_of_day(last)
                ),
            );
        }
        if let Some(b) = &ev.backend
            && !self.servers.iter().any(|s| b.matches(*s))
        {
            return r(
                "no-connection-to-backend",
                format!(
                    "no connection to {} in the capture (the error was elsewhere, or the capture's filter or --backend left it out)",
                    b.words()
                ),
            );
        }
        if !near.is_empty() {
            let list: Vec<String> = near
                .iter()
                .map(|(id, v)| format!("connection {id} ({})", v.map_or("not judged", Verdict::label)))
                .collect();
            return r(
                "no-fitting-connection",
                format!(
                    "{} open then, but its verdict or requests do not go with this line ({}), or another line of the same kind is tied to it",
                    list.join(", "),
                    ev.says.label()
                ),
            );
        }
        r(
            "no-connection-at-that-time",
            format!(
                "no connection{} in the capture at {at}",
                ev.backend
                    .as_ref()
                    .map_or(String::new(), |b| format!(" to {}", b.words()))
            ),
        )
    }
}

/// Can `ev` be about `c`? Err(true): a near miss (same backend and time, but the meaning or the
/// request does not fit), Err(false): not at all.
fn fit(ev: &Event, c: &ConnFacts) -> Result<Fit, bool> {
    if matches!(ev.says, Says::Other | Says::NotTried) {
        return Err(false);
    }
    if let Some(b) = &ev.backend
        && !b.matches(c.server)
    {
        return Err(false);
    }
    let connect = ev.says.is_connect();
    let post = if connect {
        (c.last_ns - c.first_ns)
            .max(0)
            .saturating_add(CONNECT_AFTER_NS)
            .min(MAX_CONNECT_AFTER_NS)
    } else {
        AFTER_NS
    };
    let (lo, hi) = (ev.time_ns, ev.time_ns.saturating_add(ev.precision_ns));
    if hi.saturating_add(TOL_NS) < c.first_ns || lo > c.last_ns.saturating_add(post + TOL_NS) {
        return Err(false);
    }
    let mut by = vec![match &ev.backend {
        Some(b) => format!("backend {}", b.words()),
        None => "backend not named".to_string(),
    }];
    // With Apache's debug context: a new connection for the request, or a pooled one.
    if let Some(req) = ev.request_ns {
        if connect {
            if c.first_ns.saturating_add(TOL_NS) < req {
                return Err(false);
            }
        } else {
            match ev.fresh {
                Some(Some(est)) => {
                    let Some(syn) = c.syn_ns else { return Err(false) };
                    if syn > est.saturating_add(TOL_NS) || syn < est.saturating_sub(10 * SECOND) {
                        return Err(false);
                    }
                    by.push("opened for the request".into());
                }
                Some(None) => {
                    if c.first_ns > req.saturating_add(TOL_NS) || c.syn_ns.is_some_and(|s| s > req) {
                        return Err(false);
                    }
                    by.push("a pooled connection reused".into());
                }
                None => {}
            }
        }
    }
    // The request, when both the log and the capture name it.
    let mut exchange = None;
    if let Some(t) = &ev.target
        && !c.requests.is_empty()
    {
        let same = |r: &RequestFact| same_target(t, ev.path_only, &r.target, r.cut);
        let found = match ev.request_ns {
            Some(req) => c
                .requests
                .iter()
                .enumerate()
                .filter(|(_, r)| same(r) && r.at_ns >= req - TOL_NS && r.at_ns <= hi + TOL_NS)
                .min_by_key(|(_, r)| r.at_ns - req),
            None => c
                .requests
                .iter()
                .enumerate()
                .filter(|(_, r)| same(r) && r.at_ns <= hi + TOL_NS)
                .max_by_key(|(_, r)| r.at_ns),
        };
        match found {
            Some((i, _)) => {
                exchange = Some(i);
                by.push(format!("request {}", url_target(t)));
            }
            None => return Err(true),
        }
    }
    let fits = c.verdict.is_some_and(|v| ev.says.fits(v));
    // A meaning that does not go with the verdict: only the request itself, the connection's
    // last, ties the line to this connection.
    if !fits && exchange != Some(c.requests.len().saturating_sub(1)) {
        return Err(true);
    }
    by.push("time".into());
    let mid = lo.saturating_add(ev.precision_ns / 2);
    Ok(Fit {
        fits,
        exchange,
        distance: (mid - c.last_ns).abs(),
        by: by.join(", "),
    })
}

/// When no line matched and lines fall outside the capture by about a whole number of quarter
/// hours, the log was probably written in another zone: say which offset would fit.
fn zone_hint(times: &[i64], span: CaptureSpan, tz: i32) -> Option<String> {
    let (first, last) = (span.first_ns?, span.last_ns?);
    if times.is_empty() {
        return None;
    }
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    let mid = first + (last - first) / 2;
    let quarter = 900 * SECOND;
    let shift = ((mid - median) as f64 / quarter as f64).round() as i64 * quarter;
    if shift == 0 || shift.abs() > 26 * 3600 * SECOND {
        return None;
    }
    let inside = sorted
        .iter()
        .filter(|&&t| (first - SECOND..=last + SECOND).contains(&(t + shift)))
        .count();
    (inside * 2 >= sorted.len()).then(|| {
        let suggested = tz as i64 - shift / SECOND;
        format!(
            "the log's times fall outside the capture, {} apart from it: if the proxy's clock is not {} (the zone the log was read in), try --log-tz {}",
            crate::time::duration_words(shift.abs() as f64 / 1e6),
            window::offset_words(tz),
            window::offset_words(suggested as i32)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &[u8], tz: i32) -> ProxyLogs {
        let mut logs = ProxyLogs {
            tz_offset_s: tz,
            ..ProxyLogs::default()
        };
        read_into(&mut logs, "error.log", text);
        logs
    }

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    // From captures/apache-backend-empty-reply/proxy-error.log (Apache 2.4.71, proxy:debug).
    const APACHE_EMPTY: &[u8] = b"\
[Sun Nov 22 00:25:20.145487 2026] [mpm_event:notice] [pid 9899:tid 9899] AH00489: Apache/2.4.71 (Debian) configured -- resuming normal operations
[Sun Nov 22 00:25:20.387310 2026] [proxy:debug] [pid 9905:tid 9912] mod_proxy.c(1467): [client 10.0.0.2:40308] AH01143: Running scheme http handler (attempt 0)
[Sun Nov 22 00:25:20.387342 2026] [proxy:debug] [pid 9905:tid 9912] proxy_util.c(2829): AH00942: http: has acquired connection for (10.0.2.2:8080)
[Sun Nov 22 00:25:20.387346 2026] [proxy:debug] [pid 9905:tid 9912] proxy_util.c(3273): [client 10.0.0.2:40308] AH00944: connecting http://10.0.2.2:8080/empty to 10.0.2.2:8080
[Sun Nov 22 00:25:20.387421 2026] [proxy:debug] [pid 9905:tid 9912] proxy_util.c(3476): [client 10.0.0.2:40308] AH00947: connecting /empty to 10.0.2.2:8080 (10.0.2.2:8080)
[Sun Nov 22 00:25:20.387919 2026] [proxy:debug] [pid 9905:tid 9912] proxy_util.c(3982): AH02824: http: connection established with 10.0.2.2:8080 (10.0.2.2:8080)
[Sun Nov 22 00:25:20.388222 2026] [proxy_http:error] [pid 9905:tid 9912] (20014)Internal error (specific information not available): [client 10.0.0.2:40308] AH01102: error reading status line from remote server 10.0.2.2:8080
[Sun Nov 22 00:25:20.388228 2026] [proxy_http:debug] [pid 9905:tid 9912] mod_proxy_http.c(1187): [client 10.0.0.2:40308] AH01105: NOT Closing connection to client although reading from backend server 10.0.2.2:8080 failed.
[Sun Nov 22 00:25:20.388230 2026] [proxy:error] [pid 9905:tid 9912] [client 10.0.0.2:40308] AH00898: Error reading from remote server returned by /empty
[Sun Nov 22 00:25:20.388232 2026] [proxy:debug] [pid 9905:tid 9912] proxy_util.c(2844): AH00943: http: has released connection for (10.0.2.2:8080)
";

    #[test]
    fn apache_request_context_makes_one_event() {
        let logs = read(APACHE_EMPTY, 0);
        assert_eq!(logs.files[0].flavor, Some(Flavor::Apache));
        assert_eq!(logs.files[0].lines, 10);
        assert_eq!(logs.files[0].errors, 2);
        assert_eq!(logs.files[0].unreadable, 0);
        assert_eq!(logs.lines.len(), 2);
        let l = &logs.lines[0];
        assert_eq!(l.line, 7);
        assert_eq!(l.level, Level::Error);
        assert_eq!(l.code.as_deref(), Some("AH01102"));
        assert_eq!(l.says, Says::NoResponseClosed);
        assert_eq!(l.client.as_deref(), Some("10.0.0.2:40308"));
        // date -u -d '2026-11-22 00:25:20' +%s → 1795307120
        assert_eq!(l.time_ns, 1_795_307_120_388_222_000);
        assert_eq!(l.precision_ns, 1000);
        assert_eq!(logs.events.len(), 1);
        let e = &logs.events[0];
        assert_eq!(e.lines, vec![0, 1]);
        assert_eq!(e.says, Says::NoResponseClosed);
        assert_eq!(e.backend, Some(BackendRef::Addr(ep("10.0.2.2:8080"))));
        assert_eq!(e.target.as_deref(), Some("/empty"));
        assert!(!e.path_only);
        assert_eq!(e.request_ns, Some(1_795_307_120_387_421_000));
        assert_eq!(e.fresh, Some(Some(1_795_307_120_387_919_000)));
    }

    #[test]
    fn apache_without_debug_lines_groups_companions_by_thread() {
        // captures/apache-syn-icmp-host-unreachable-arp, warn level only.
        let text = b"\
[Fri Dec 04 16:46:20.266797 2026] [proxy:error] [pid 1629:tid 1631] (113)No route to host: AH00957: http: attempt to connect to 10.0.2.3:8080 (10.0.2.3:8080) failed
[Fri Dec 04 16:46:20.266936 2026] [proxy_http:error] [pid 1629:tid 1631] [client 10.0.0.2:35208] AH01114: HTTP: failed to make connection to backend: 10.0.2.3
[Fri Dec 04 16:46:21.770821 2026] [proxy:error] [pid 1629:tid 1633] (113)No route to host: AH00957: http: attempt to connect to 10.0.2.3:8080 (10.0.2.3:8080) failed
[Fri Dec 04 16:46:21.770938 2026] [proxy_http:error] [pid 1629:tid 1633] [client 10.0.0.2:35210] AH01114: HTTP: failed to make connection to backend: 10.0.2.3
";
        let logs = read(text, 0);
        assert_eq!(logs.events.len(), 2);
        for (e, first) in logs.events.iter().zip([0, 2]) {
            assert_eq!(e.lines, vec![first, first + 1]);
            assert_eq!(e.says, Says::ConnectUnreachable);
            assert_eq!(e.backend, Some(BackendRef::Addr(ep("10.0.2.3:8080"))));
            assert_eq!(e.request_ns, None);
        }
        assert_eq!(logs.lines[1].says, Says::ConnectFailed);
    }

    #[test]
    fn apache_codes_and_errnos() {
        let cases: [(&str, Option<u32>, &str, Says); 12] = [
            ("AH00957", Some(111), "", Says::ConnectRefused),
            ("AH00957", Some(70007), "", Says::ConnectTimeout),
            ("AH00957", Some(113), "", Says::ConnectUnreachable),
            ("AH01102", Some(104), "", Says::NoResponseReset),
            ("AH01102", Some(70007), "", Says::NoResponseTimeout),
            ("AH01102", Some(70014), "", Says::NoResponseClosed),
            ("AH01110", Some(70008), "", Says::ResponseFailed),
            ("AH01110", Some(70007), "", Says::ResponseTimeout),
            ("AH01084", Some(32), "", Says::SendFailed),
            ("AH01084", Some(70007), "", Says::SendTimeout),
            ("AH02608", Some(70008), "", Says::ClientAbortedRequest),
            ("AH00489", None, "Apache/2.4.71 configured", Says::Other),
        ];
        for (code, errno, msg, says) in cases {
            let got = classify_apache(Some("proxy"), Some(code), errno, msg).map_or(Says::Other, |c| c.0);
            assert_eq!(got, says, "{code} {errno:?}");
        }
    }

    // From the lab's nginx 1.22 logs (error_log info).
    #[test]
    fn nginx_lines() {
        let text = br#"2026/11/22 00:25:23 [notice] 10206#10206: nginx/1.22.1
2026/11/22 00:25:23 [error] 10209#10209: *1 upstream prematurely closed connection while reading response header from upstream, client: 10.0.0.2, server: , request: "POST /empty HTTP/1.1", upstream: "http://10.0.2.2:8080/empty", host: "lab.test"
2026/11/22 00:25:23 [info] 10209#10209: *1 client 10.0.0.2 closed keepalive connection
2026/11/22 00:25:13 [warn] 1137#1137: *1 a client request body is buffered to a temporary file /tmp/x/t_body/0000000001, client: 10.0.0.2, server: , request: "POST /close-mid-request?read=100000 HTTP/1.1", host: "lab.test"
2026/11/22 00:25:03 [error] 9128#9128: *1 connect() failed (111: Connection refused) while connecting to upstream, client: 10.0.0.2, server: , request: "GET /refused HTTP/1.1", upstream: "http://10.0.2.2:8080/refused", host: "lab.test"
2026/11/22 00:25:56 [info] 11993#11993: *1 client prematurely closed connection while sending request to upstream, client: 10.0.0.2, server: , request: "POST /ok/upload HTTP/1.1", upstream: "http://10.0.2.2:8080/ok/upload", host: "lab.test"
2026/12/04 18:21:59 [error] 964#964: *1 upstream sent no valid HTTP/1.0 header while reading response header from upstream, client: 10.0.0.2, server: , request: "GET /lowercase/keep-alive?size=2000 HTTP/1.1", upstream: "http://10.0.2.2:8080/lowercase/keep-alive?size=2000", host: "lab.test"
2026/11/22 00:26:13 [error] 12325#12325: *1 upstream timed out (110: Connection timed out) while sending request to upstream, client: 10.0.0.2, server: , request: "POST /stall HTTP/1.1", upstream: "http://10.0.2.2:8080/stall", host: "lab.test"
2026/11/22 00:26:14 [error] 1#1: *9 no live upstreams while connecting to upstream, client: 10.0.0.2, server: , request: "GET /x HTTP/1.1", upstream: "http://backend/x", host: "lab.test"
"#;
        let logs = read(text, 0);
        assert_eq!(logs.files[0].flavor, Some(Flavor::Nginx));
        let says: Vec<Says> = logs.lines.iter().map(|l| l.says).collect();
        assert_eq!(
            says,
            [
                Says::NoResponseClosed,
                Says::Other,
                Says::ConnectRefused,
                Says::ClientAbortedRequest,
                Says::BadResponse,
                Says::SendTimeout,
                Says::NotTried
            ]
        );
        assert_eq!(logs.lines[0].time_ns, 1_795_307_123 * SECOND);
        assert_eq!(logs.lines[0].precision_ns, SECOND);
        assert_eq!(logs.lines[0].client.as_deref(), Some("10.0.0.2"));
        let e = &logs.events[0];
        assert_eq!(e.backend, Some(BackendRef::Addr(ep("10.0.2.2:8080"))));
        assert_eq!(e.target.as_deref(), Some("/empty"));
        assert_eq!(
            logs.events[4].target.as_deref(),
            Some("/lowercase/keep-alive?size=2000")
        );
        // "upstream: http://backend/x": a name without a port is not an address.
        assert_eq!(logs.events[6].backend, None);
        assert_eq!(logs.events.len(), 7);
    }

    #[test]
    fn zones_move_local_times() {
        let line = b"2026/11/22 01:25:23 [error] 1#1: *1 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 10.0.0.2, server: , request: \"GET / HTTP/1.1\", upstream: \"http://10.0.2.2:8080/\", host: \"x\"\n";
        let logs = read(line, 3600);
        assert_eq!(logs.lines[0].time_ns, 1_795_307_123 * SECOND);
    }

    #[test]
    fn junk_long_lines_and_bad_dates_are_warnings() {
        let mut text = Vec::new();
        text.extend_from_slice(b"\x00\xff\xfe binary junk\n");
        text.extend_from_slice(b"[Sun Nov 31 00:25:20.388222 2026] [proxy:error] [pid 1:tid 2] AH01102: x\n");
        text.extend_from_slice(b"2026/13/22 00:25:23 [error] 1#1: *1 upstream timed out\n");
        text.extend_from_slice(b"[Sun Nov 22 99:25:20 2026] [error] x\n");
        text.extend_from_slice(b"[Sun Nov 22 00:25:20 2026] [error] [client 10.0.0.2] ");
        text.extend(std::iter::repeat_n(b'a', MAX_LINE_BYTES * 3));
        text.extend_from_slice(b"\n[");
        let logs = read(&text, 0);
        let f = &logs.files[0];
        assert_eq!(f.lines, 6);
        assert_eq!(f.unreadable, 5, "{:?}", f.warnings);
        assert!(
            f.warnings[0].starts_with("error.log: line 1: not a line of"),
            "{:?}",
            f.warnings
        );
        assert!(
            f.warnings[1].contains("line 2: the date 2026-11-31"),
            "{:?}",
            f.warnings
        );
        assert!(
            f.warnings
                .iter()
                .any(|w| w.contains("line 5: longer than 65536 bytes"))
        );
        // The long line is read up to the cap and kept, its text cut.
        assert_eq!(logs.lines.len(), 1);
        assert!(logs.lines[0].text.len() <= MAX_TEXT_BYTES + "…".len());
        assert_eq!(logs.lines[0].says, Says::Other);
    }

    /// Every cut of real lines, and bytes flipped in them, read without a panic (lines are
    /// untrusted); a cut line is either read or a warning.
    #[test]
    fn truncations_and_flips_never_panic() {
        let lines: Vec<&[u8]> = APACHE_EMPTY.split(|&b| b == b'\n').collect();
        let nginx = b"2026/11/22 00:25:23 [error] 10209#10209: *1 upstream prematurely closed connection while reading response header from upstream, client: 10.0.0.2, server: , request: \"POST /\xc3\xa9 HTTP/1.1\", upstream: \"http://[fd00:2::2]:8080/\xc3\xa9\", host: \"lab.test\"";
        let mut all = lines.clone();
        all.push(nginx);
        for line in all {
            for cut in 0..=line.len() {
                let logs = read(&line[..cut], 0);
                let f = &logs.files[0];
                assert!(f.lines <= 1 && f.unreadable <= 1);
            }
            for at in 0..line.len() {
                for b in [0u8, b'[', b']', b':', b'(', b')', b' ', 0xc3, b'"', b'*'] {
                    let mut l = line.to_vec();
                    l[at] = b;
                    let mut logs = read(&l, 0);
                    logs.events.sort_by_key(|e| e.time_ns);
                    let t0 = 1_795_307_120 * SECOND;
                    let mut m = Matcher::new(logs, Window::default());
                    let c = facts(
                        "1",
                        t0,
                        t0 + 5 * SECOND,
                        Some(t0),
                        Verdict::BackendEmptyReply,
                        &[("/empty", t0)],
                    );
                    let _ = m.take(&c);
                    let _ = m.finish(CaptureSpan {
                        first_ns: Some(t0),
                        last_ns: Some(t0 + 5 * SECOND),
                    });
                }
            }
        }
    }

    #[test]
    fn backend_addresses() {
        assert_eq!(
            BackendRef::parse("10.0.2.2:8080"),
            Some(BackendRef::Addr(ep("10.0.2.2:8080")))
        );
        assert_eq!(
            BackendRef::parse("[fd00:2::2]:8080"),
            Some(BackendRef::Addr(ep("[fd00:2::2]:8080")))
        );
        assert_eq!(
            BackendRef::parse("10.0.2.2"),
            Some(BackendRef::Ip("10.0.2.2".parse().unwrap()))
        );
        assert_eq!(
            BackendRef::parse("App.internal:8080"),
            Some(BackendRef::Named("app.internal".into(), 8080))
        );
        assert_eq!(BackendRef::parse("a b:1"), None);
        // Apache's resolved IPv6 address, from captures/apache-ipv6-truncated (AH00947).
        assert_eq!(
            BackendRef::parse_addr_port("fd00:2::2:8080"),
            Some(BackendRef::Addr(ep("[fd00:2::2]:8080")))
        );
    }

    #[test]
    fn targets_compare_path_query_and_cuts() {
        assert!(same_target("/empty", false, "/empty", false));
        assert!(same_target("/a?x=1", false, "/a?x=1", false));
        assert!(!same_target("/a?x=1", false, "/a?x=2", false));
        assert!(same_target(
            "/never/busy-20",
            true,
            "/never/busy-20?size=3",
            false
        ));
        assert!(!same_target("/a", false, "/a?x=1", false) || same_target("/a", true, "/a?x=1", false));
        assert!(same_target(
            "/close-mid-request/snap?read=1",
            false,
            "/close-mid-r",
            true
        ));
        assert!(same_target("http://10.0.2.2:8080/x", false, "/x", false));
        assert!(!same_target("/x", false, "", true));
    }

    fn facts(
        id: &str,
        first: i64,
        last: i64,
        syn: Option<i64>,
        v: Verdict,
        reqs: &[(&str, i64)],
    ) -> ConnFacts {
        ConnFacts {
            id: id.into(),
            server: ep("10.0.2.2:8080"),
            first_ns: first,
            last_ns: last,
            syn_ns: syn,
            verdict: Some(v),
            requests: reqs
                .iter()
                .map(|(t, at)| RequestFact {
                    target: t.to_string(),
                    cut: false,
                    at_ns: *at,
                })
                .collect(),
        }
    }

    #[test]
    fn matching_takes_the_nearest_fitting_connection() {
        let mut logs = read(APACHE_EMPTY, 0);
        logs.events.sort_by_key(|e| e.time_ns);
        let t0 = 1_795_307_120 * SECOND;
        let ms = 1_000_000;
        let mut m = Matcher::new(logs, Window::default());
        // An ok connection at the same time does not take it; neither does a failed one to
        // another path; the empty reply opened at AH02824 does.
        let ok = facts(
            "1",
            t0 + 380 * ms,
            t0 + 390 * ms,
            Some(t0 + 380 * ms),
            Verdict::Ok,
            &[("/ok", t0 + 381 * ms)],
        );
        assert!(m.take(&ok).is_empty());
        let other = facts(
            "2",
            t0 + 387 * ms,
            t0 + 389 * ms,
            Some(t0 + 387_500_000),
            Verdict::BackendEmptyReply,
            &[("/other", t0 + 387_950_000)],
        );
        assert!(m.take(&other).is_empty());
        let mine = facts(
            "3",
            t0 + 387_500_000,
            t0 + 388_300_000,
            Some(t0 + 387_500_000),
            Verdict::BackendEmptyReply,
            &[("/empty", t0 + 387_950_000)],
        );
        let got = m.take(&mine);
        assert_eq!(got.len(), 1);
        assert!(got[0].fits);
        assert_eq!(got[0].lines.len(), 2);
        assert_eq!(
            got[0].matched_by,
            "backend 10.0.2.2:8080, opened for the request, request /empty, time"
        );
        let s = m.finish(CaptureSpan {
            first_ns: Some(t0),
            last_ns: Some(t0 + SECOND),
        });
        assert_eq!((s.errors, s.kept, s.matched, s.unmatched), (2, 2, 2, 0));
    }

    #[test]
    fn unmatched_lines_say_why() {
        let text = b"\
[Sun Nov 22 00:25:20.388222 2026] [proxy_http:error] [pid 1:tid 2] (20014)Internal error: [client 10.0.0.2:1] AH01102: error reading status line from remote server 10.0.2.2:8080
[Sun Nov 22 00:35:20.388222 2026] [proxy_http:error] [pid 1:tid 3] (20014)Internal error: [client 10.0.0.2:1] AH01102: error reading status line from remote server 10.0.2.2:8080
[Sun Nov 22 00:30:20.000000 2026] [proxy_http:error] [pid 1:tid 4] (20014)Internal error: [client 10.0.0.2:1] AH01102: error reading status line from remote server 10.0.2.9:8080
[Sun Nov 22 00:30:21.000000 2026] [proxy_http:error] [pid 1:tid 5] (20014)Internal error: [client 10.0.0.2:1] AH01102: error reading status line from remote server 10.0.2.2:8080
[Sun Nov 22 00:30:30.000000 2026] [proxy_http:error] [pid 1:tid 6] (20014)Internal error: [client 10.0.0.2:1] AH01102: error reading status line from remote server 10.0.2.2:8080
[Sun Nov 22 00:30:40.000000 2026] [ssl:warn] [pid 1:tid 1] AH01873: Init: Session Cache is not configured [hint: SSLSessionCache]
";
        let mut logs = read(text, 0);
        logs.events.sort_by_key(|e| e.time_ns);
        let t = |m: i64, s: i64| (1_795_307_120 - 20 - 25 * 60 + m * 60 + s) * SECOND;
        let mut m = Matcher::new(logs, Window::default());
        // An ok connection around 00:30:21 and nothing at 00:30:30.
        assert!(
            m.take(&facts("1", t(30, 20), t(30, 22), None, Verdict::Ok, &[]))
                .is_empty()
        );
        let s = m.finish(CaptureSpan {
            first_ns: Some(t(30, 0)),
            last_ns: Some(t(31, 0)),
        });
        let codes: Vec<&str> = s
            .placed
            .iter()
            .map(|p| match &p.outcome {
                Outcome::Unmatched(u) => u.code,
                Outcome::Matched { .. } => "matched",
            })
            .collect();
        assert_eq!(
            codes,
            // In the order of the lines.
            [
                "before-capture",
                "after-capture",
                "no-connection-to-backend",
                "no-fitting-connection",
                "no-connection-at-that-time",
                "not-about-a-backend-connection"
            ]
        );
        assert_eq!(s.errors, 6);
        assert_eq!(s.unmatched, 6);
    }

    #[test]
    fn zone_hint_when_every_line_is_hours_off() {
        let text = b"2026/11/22 01:25:23 [error] 1#1: *1 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 10.0.0.2, server: , request: \"GET / HTTP/1.1\", upstream: \"http://10.0.2.2:8080/\", host: \"x\"\n";
        let logs = read(text, 0);
        let m = Matcher::new(logs, Window::default());
        let t0 = 1_795_307_100 * SECOND;
        let s = m.finish(CaptureSpan {
            first_ns: Some(t0),
            last_ns: Some(t0 + 60 * SECOND),
        });
        let hint = s.hint.expect("a hint");
        assert!(hint.contains("try --log-tz +01:00"), "{hint}");
    }
}

//! Reading the logs: files (plain or gzip) → the lines kept ([`LogLine`], capped) and the
//! failures they tell of ([`Event`]: one line, or an Apache request's error lines together, with
//! what its debug lines said of the request), per file what was read ([`FileStats`]).

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader};

use super::parse::{Parsed, line_facts, parenthesised, parse_line, url_target};
use super::says::{BackendRef, Flavor, Level, Role, Says, classify_apache, classify_nginx};
use crate::capture::{Warning, WarningKind};
use crate::incident::cut_at_char;
use crate::incident::window::Window;

/// Longest line read; the rest of a longer line is skipped (and a warning says so).
pub(crate) const MAX_LINE_BYTES: usize = 64 * 1024;

/// Bytes of a line's text kept for the report.
pub(crate) const MAX_TEXT_BYTES: usize = 512;

/// Lines kept for matching (errors and notes about backend connections, all files together).
pub(crate) const MAX_KEPT_LINES: usize = 50_000;

/// Warnings listed per file; the rest are counted.
pub(crate) const MAX_WARNINGS_PER_FILE: usize = 20;

/// Apache request contexts (`pid:tid` being handled) followed at once.
const MAX_CONTEXTS: usize = 4096;

/// A companion line (AH01114 after AH00957) joins its thread's last event this soon after.
const COMPANION_NS: i64 = 1_000_000_000;

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
    pub warnings: Vec<Warning>,
    pub more_warnings: u64,
}

impl FileStats {
    /// Notes a warning about this file, about line `line` when given.
    fn warn(&mut self, kind: WarningKind, line: Option<u64>, text: String) {
        if self.warnings.len() < MAX_WARNINGS_PER_FILE {
            let w = Warning::new(kind, &self.file, text);
            self.warnings.push(match line {
                Some(l) => w.at_line(l),
                None => w,
            });
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
pub(crate) fn read_into(logs: &mut ProxyLogs, name: &str, mut reader: impl BufRead) {
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
                stats.warn(
                    WarningKind::LogReadError,
                    Some(line_no + 1),
                    format!(
                        "{name}: line {}: read error: {e}; the rest is not read",
                        line_no + 1
                    ),
                );
                break;
            }
        };
        line_no += 1;
        stats.lines += 1;
        if cut {
            stats.warn(
                WarningKind::LogLineTooLong,
                Some(line_no),
                format!("{name}: line {line_no}: longer than {MAX_LINE_BYTES} bytes; read up to there"),
            );
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
                stats.warn(
                    WarningKind::LogLineUnreadable,
                    Some(line_no),
                    format!("{name}: line {line_no}: {why}; skipped"),
                );
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
        stats.warn(
            WarningKind::LogFormatUnknown,
            None,
            format!(
                "{name}: no line of an Apache or nginx error log in {} lines",
                stats.lines
            ),
        );
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
        let Some(index) = keep_line(logs, stats, line_no, text, p, says) else {
            return;
        };
        let thread = match p.flavor {
            Flavor::Apache => p.thread.map(str::to_string),
            Flavor::Nginx => p.conn.map(|c| format!("*{c}")),
        };
        let e = self.event_for(logs, p, thread.as_deref(), (says, role), index, file);
        let ev = &mut logs.events[e];
        let (backend, target, path_only) = line_facts(p);
        if let Some(b) = backend {
            offer_backend(ev, &b);
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
            self.follow_thread(ev, t, e, p.time_ns);
        }
    }

    /// The event a kept line belongs to: the one its thread's request or the line before it
    /// started (see [`Role`]), else a new one.
    fn event_for(
        &self,
        logs: &mut ProxyLogs,
        p: &Parsed<'_>,
        thread: Option<&str>,
        (says, role): (Says, Role),
        index: usize,
        file: usize,
    ) -> usize {
        // An Apache request already failing: its next error lines join its event.
        let ctx_event = thread.and_then(|t| self.contexts.get(t)).and_then(|c| c.event);
        let recent = thread
            .and_then(|t| self.last_event.get(t))
            .filter(|(_, at)| p.time_ns.saturating_sub(*at) <= COMPANION_NS)
            .map(|(e, _)| *e);
        let join = match (says, role) {
            (Says::Other, _) => None,
            (_, Role::Companion) => ctx_event.or(recent),
            (_, Role::Primary) => ctx_event,
        };
        match join {
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
        }
    }

    /// Event `e` (`ev`) is its thread's latest: it takes what the thread's Apache request
    /// context knows, and a companion line soon after joins it.
    fn follow_thread(&mut self, ev: &mut Event, thread: String, e: usize, time_ns: i64) {
        if let Some(ctx) = self.contexts.get_mut(&thread) {
            ctx.event = Some(e);
            if ctx.target.is_some() {
                ev.target.clone_from(&ctx.target);
                ev.path_only = false;
            }
            if let Some(b) = &ctx.backend {
                offer_backend(ev, b);
            }
            ev.request_ns = ctx.request_ns;
            if ctx.connecting {
                ev.fresh = Some(ctx.established);
            }
        }
        if self.last_event.len() >= MAX_CONTEXTS {
            self.last_event.clear();
        }
        self.last_event.insert(thread, (e, time_ns));
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

/// Keeps an error line (its index in [`ProxyLogs::lines`]), unless it is outside the window or
/// past the cap (then it is counted).
fn keep_line(
    logs: &mut ProxyLogs,
    stats: &mut FileStats,
    line_no: u64,
    text: &str,
    p: &Parsed<'_>,
    says: Says,
) -> Option<usize> {
    if !logs.window.contains(p.time_ns, p.precision_ns) {
        logs.outside_window += 1;
        return None;
    }
    if logs.lines.len() >= MAX_KEPT_LINES {
        if logs.dropped == 0 {
            stats.warn(WarningKind::LogLinesCap, Some(line_no), format!(
                "{}: line {line_no}: more than {MAX_KEPT_LINES} error lines; the rest are counted, not matched",
                stats.file
            ));
        }
        logs.dropped += 1;
        return None;
    }
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
    Some(logs.lines.len() - 1)
}

/// The event takes the backend `b` when it names the backend more precisely than what it has.
fn offer_backend(ev: &mut Event, b: &BackendRef) {
    if ev
        .backend
        .as_ref()
        .is_none_or(|old| old.strength() < b.strength())
    {
        ev.backend = Some(b.clone());
    }
}

/// `s` cut to at most `max` bytes, at a character boundary, with "…" when cut.
fn cut(s: &str, max: usize) -> String {
    let kept = cut_at_char(s, max);
    if kept.len() == s.len() {
        s.to_string()
    } else {
        format!("{kept}…")
    }
}

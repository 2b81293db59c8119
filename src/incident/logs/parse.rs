//! One line of an Apache or nginx error log → its fields ([`Parsed`], borrowed from the line),
//! its time read in the zone given (`--log-tz`), and what the line itself names of the backend
//! and the request ([`line_facts`]).

use super::SECOND;
use super::says::{BackendRef, Flavor, Level};
use crate::incident::window;

/// A line's fields, borrowed from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Parsed<'a> {
    pub(super) flavor: Flavor,
    pub(super) time_ns: i64,
    pub(super) precision_ns: i64,
    pub(super) level: Level,
    /// Apache's module (`proxy_http` of `[proxy_http:error]`).
    pub(super) module: Option<&'a str>,
    /// Apache `pid:tid`, nginx `pid#tid`.
    pub(super) thread: Option<&'a str>,
    /// nginx `*N`: the client connection's number.
    pub(super) conn: Option<&'a str>,
    pub(super) code: Option<&'a str>,
    pub(super) errno: Option<u32>,
    pub(super) client: Option<&'a str>,
    /// Apache: the message after the code; nginx: the text before `, client:`.
    pub(super) message: &'a str,
    /// nginx `request: "..."`, `upstream: "..."`.
    pub(super) request: Option<&'a str>,
    pub(super) upstream: Option<&'a str>,
}

pub(super) fn parse_line(line: &str, tz: i32) -> Result<Parsed<'_>, String> {
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
    let (fields, rest) = apache_fields(&line[close + 1..]);
    let mut p = Parsed {
        flavor: Flavor::Apache,
        time_ns,
        precision_ns,
        level: fields.level.ok_or_else(not)?,
        module: fields.module,
        thread: fields.thread,
        conn: None,
        code: None,
        errno: None,
        client: fields.client,
        message: rest.trim_start(),
        request: None,
        upstream: None,
    };
    apache_message(&mut p);
    Ok(p)
}

/// The bracketed fields of an Apache line after its time.
#[derive(Default)]
struct ApacheFields<'a> {
    level: Option<Level>,
    module: Option<&'a str>,
    thread: Option<&'a str>,
    client: Option<&'a str>,
}

/// The bracketed fields: `[module:level]` or `[level]`, `[pid P:tid T]`, `[client ...]`; and the rest of
/// the line.
fn apache_fields(mut rest: &str) -> (ApacheFields<'_>, &str) {
    let mut f = ApacheFields::default();
    while let Some(r) = rest.trim_start().strip_prefix('[') {
        let Some(end) = r.find(']') else { break };
        let field = &r[..end];
        if let Some(t) = field.strip_prefix("pid ") {
            f.thread = Some(t);
        } else if let Some(c) = field.strip_prefix("client ").or(field.strip_prefix("remote ")) {
            f.client = Some(c);
        } else if f.level.is_none() {
            let (m, l) = match field.rsplit_once(':') {
                Some((m, l)) => (Some(m), l),
                None => (None, field),
            };
            match Level::parse(l) {
                Some(l) => {
                    f.level = Some(l);
                    f.module = m;
                }
                None => break,
            }
        } else {
            break;
        }
        rest = &r[end + 1..];
    }
    (f, rest)
}

/// The message of an Apache line loses what comes before its text (the source file of a debug
/// line, the errno, the client, the AH code), which goes to its fields.
fn apache_message(p: &mut Parsed<'_>) {
    let mut msg = p.message;
    // Debug lines name the source: `proxy_util.c(2829): `.
    if let Some(i) = msg.find("): ") {
        let head = &msg[..i];
        if head.contains(".c(") && !head.contains(' ') {
            msg = &msg[i + 3..];
        }
    }
    // `(20014)Internal error (specific information not available): `
    if let Some(r) = msg.strip_prefix('(')
        && let Some(end) = r.find(')')
        && let Some(n) = window::digits(&r[..end])
    {
        p.errno = Some(n);
        msg = match r[end + 1..].find(": ") {
            Some(i) => &r[end + 1 + i + 2..],
            None => &r[end + 1..],
        };
    }
    if let Some(r) = msg.strip_prefix("[client ").or(msg.strip_prefix("[remote "))
        && let Some(end) = r.find(']')
    {
        p.client = p.client.or(Some(&r[..end]));
        msg = r[end + 1..].trim_start();
    }
    if msg.len() >= 8
        && msg.starts_with("AH")
        && msg.as_bytes()[7] == b':'
        && window::digits(&msg[2..7]).is_some()
    {
        p.code = Some(&msg[..7]);
        msg = msg[8..].trim_start();
    }
    p.message = msg;
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

/// The path and query of a URL (`http://10.0.2.2:8080/x?y` → `/x?y`), or the target itself.
pub(super) fn url_target(url: &str) -> &str {
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

/// The last `(...)` of a message.
pub(super) fn parenthesised(msg: &str) -> Option<&str> {
    let open = msg.rfind('(')?;
    let close = msg[open..].find(')')? + open;
    Some(&msg[open + 1..close])
}

/// What a line itself says of the backend and the request: (backend, target, target is the path
/// only).
pub(super) fn line_facts(p: &Parsed<'_>) -> (Option<BackendRef>, Option<String>, bool) {
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

//! The report model: what every format shows, as plain serde types. JSON is this model as is
//! (the contract of DESIGN.md: field names only grow); the other formats render it.
//!
//! The doc comments of the fields are the descriptions of the JSON Schema (`bothends schema`,
//! committed as `schema/report.schema.json`), so they are written for the consumers of the JSON.
//! The one part of the model that JSON leaves out is [`ConnectionReport::ladder`], the
//! packet-by-packet diagram that only the HTML report draws.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ladder::Ladder;
use crate::diagnose::{Blame, Outcome, Verdict};

/// Bump when a field changes name or meaning (adding fields does not).
pub const SCHEMA: u32 = 1;

/// A bothends report: the captures read, how their clocks relate, and one entry per
/// proxy→backend connection (every TCP connection for `flows`), each with its verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Report {
    /// Always "bothends".
    pub tool: String,
    /// The version of bothends that wrote the report.
    pub version: String,
    /// The version of this document's layout; bumped only when a field changes name or meaning.
    pub schema: u32,
    /// One entry per capture side: "proxy" then "backend", or one "single" (`flows`), "proxy"
    /// (`analyze` with one capture) or "backend" (`analyze --backend-capture` alone).
    pub captures: Vec<CaptureInfo>,
    /// The offset between the backend capture's clock and the proxy capture's clock; null with one
    /// capture, or when no connection was seen in both.
    pub clock_offset: Option<ClockInfo>,
    /// The backend endpoints the connections were selected by, as each capture sees them (they
    /// differ through NAT), keyed by side; empty for `flows`.
    pub backends: IndexMap<String, Vec<String>>,
    /// The connections, in order of their start (on the proxy capture's clock).
    pub connections: Vec<ConnectionReport>,
    pub summary: Summary,
    /// Lower-case names of the HTTP headers whose values this report replaced by "[redacted]";
    /// empty when the report was made with `--show-secrets`.
    #[serde(default)]
    pub redacted_headers: Vec<String>,
    /// The time window the report was restricted to (`--since` / `--until`); absent without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowReport>,
    /// The proxy's error logs read (`--proxy-log`): what was read, and every error line with the
    /// connection it is about or the reason it is about none; absent without.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_logs: Option<ProxyLogsReport>,
    /// The incident as a whole: requests over time, the failures' shape, what failed requests
    /// have in common (`analyze` only; absent for `flows`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incident: Option<Incident>,
    /// The requests clients sent to the proxy, when the proxy capture holds the proxy's client
    /// side too (`tcpdump -i any` on the proxy host): what each client got, next to why — the
    /// proxy's attempts at the backend, or none. Listed: every request with an error (a 5xx, no
    /// answer, a failed attempt, an error the proxy produced itself), up to 10,000, and the first
    /// 1,000 others, in order of their first packet; `client_summary` counts all of them. Empty
    /// when the proxy capture holds no client side.
    #[serde(default)]
    pub client_requests: Vec<ClientRequestReport>,
    /// Counts over every client request; null when the proxy capture holds no client side.
    #[serde(default)]
    pub client_summary: Option<ClientSummaryReport>,
}

/// The time window applied (`--since` / `--until`, on the proxy capture's clock): a connection
/// is reported when its life (first to last packet) overlaps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct WindowReport {
    /// Start of the window, RFC 3339 UTC (null: open).
    pub since: Option<String>,
    /// End of the window, RFC 3339 UTC (null: open).
    pub until: Option<String>,
    /// Connections judged but left out of the report: their whole life lies outside the window.
    pub outside: u64,
}

/// The proxy's error logs and what became of their lines.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProxyLogsReport {
    /// One entry per file given.
    pub files: Vec<ProxyLogFile>,
    /// The UTC offset the logs' local times were read in (`--log-tz`), e.g. "+00:00".
    pub timezone: String,
    /// Lines read, all files.
    pub lines_read: u64,
    /// Lines at level warn or above.
    pub errors: u64,
    /// Lines looked at for matching: the errors, and info lines about a backend connection.
    pub considered: u64,
    /// Considered lines tied to a connection.
    pub matched: u64,
    /// Considered lines tied to none (see `lines[].reason`).
    pub unmatched: u64,
    /// Unmatched lines per reason code.
    pub unmatched_by_reason: IndexMap<String, u64>,
    /// Error lines past the limit kept for matching: counted, not matched.
    pub not_considered: u64,
    /// Every considered line (the first 1000 in time), in the order of the files and their lines,
    /// with its connection or its reason; lines outside the window are counted in
    /// `unmatched_by_reason`, not listed.
    pub lines: Vec<LogLineReport>,
    /// Set when no line matched and the lines fall outside the capture by about a whole number of
    /// hours: the logs were probably written in another zone than `timezone`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// One error log file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProxyLogFile {
    /// The file as given.
    pub file: String,
    /// "apache" or "nginx"; null when no line of either was found.
    pub format: Option<String>,
    pub lines: u64,
    /// Lines at level warn or above.
    pub errors: u64,
    /// Lines of neither format, or whose time could not be read (skipped).
    pub unreadable: u64,
    /// Problems reading the file, naming the line.
    pub warnings: Vec<String>,
    /// The same warnings typed, in the same order: `warning_details[i].text == warnings[i]`.
    #[serde(default)]
    pub warning_details: Vec<WarningDetail>,
}

/// A warning typed: its kind, where it is, and its sentence (the matching item of `warnings`).
/// E.g. `{ "kind": "malformed-packet", "file": "proxy.pcap", "frame": 12, "text": "proxy.pcap:
/// frame 12: ...; packet skipped" }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WarningDetail {
    /// Stable kebab-case name of what the warning is about, e.g. "malformed-packet",
    /// "file-ends-mid-record", "drops-reported", "more-warnings", "log-line-unreadable".
    #[schemars(schema_with = "crate::capture::WarningKind::name_schema")]
    pub kind: String,
    /// The capture or log file, as given; omitted for a warning about a whole side (a table or
    /// memory cap, malformed packets not listed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The 1-based frame number in `file` (Wireshark's `frame.number`), for a warning about one
    /// frame.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frame: Option<u64>,
    /// The 1-based line number in `file`, for a proxy log warning about one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// The warning's sentence, as in `warnings`.
    pub text: String,
}

impl WarningDetail {
    /// The texts and the details of `warnings`, in their order (a report's `warnings` and
    /// `warning_details`).
    pub(crate) fn split(warnings: &[crate::capture::Warning]) -> (Vec<String>, Vec<WarningDetail>) {
        let details: Vec<WarningDetail> = warnings
            .iter()
            .map(|w| WarningDetail {
                kind: w.kind.name().to_string(),
                file: w.file.clone(),
                frame: w.frame,
                line: w.line,
                text: w.text.clone(),
            })
            .collect();
        (details.iter().map(|d| d.text.clone()).collect(), details)
    }
}

/// A line of the proxy's error log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LogLineReport {
    /// The log file, as given.
    pub file: String,
    /// 1-based line number in the file.
    pub line: u64,
    /// When it was written, RFC 3339 UTC (the log's local time read in `proxy_logs.timezone`);
    /// nginx logs whole seconds.
    pub time: String,
    /// "emerg", "alert", "crit", "error", "warn", "notice", "info" or "debug".
    pub level: String,
    /// Apache's message code, e.g. "AH01102" (null for nginx).
    pub code: Option<String>,
    /// The line as written (cut to 512 bytes).
    pub text: String,
    /// What the line says happened, e.g. "no-response-closed", "connect-refused", "send-failed",
    /// "client-aborted-request", "other" (not about a backend connection).
    pub says: String,
    /// In a connection's `log_lines`: whether what the line says goes with the connection's
    /// verdict (false: the line was tied by its request, and the wire shows something else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fits_verdict: Option<bool>,
    /// In a connection's `log_lines`: what tied the line to the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_by: Option<String>,
    /// In `proxy_logs.lines`: the id of the connection the line is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    /// In `proxy_logs.lines`: that connection's verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verdict: Option<Verdict>,
    /// In `proxy_logs.lines`, for a line tied to no connection: the reason code
    /// ("before-capture", "after-capture", "outside-window", "no-connection-to-backend",
    /// "no-fitting-connection", "no-connection-at-that-time", "not-about-a-backend-connection",
    /// "no-connection-attempted", "no-capture").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmatched: Option<String>,
    /// The reason in words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// One side's capture: its files and what was in them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CaptureInfo {
    /// "proxy", "backend" or "single".
    pub side: String,
    /// The files of this side as given on the command line ("<stdin>" for standard input); several
    /// files are one rotated capture, merged in time order.
    pub files: Vec<String>,
    /// Packets read (all link types, TCP or not).
    pub packets: u64,
    /// The link types of the capture, e.g. "ether(1)".
    pub link_types: Vec<String>,
    /// Time of the first packet, RFC 3339 UTC on this capture's own clock; null without packets.
    pub first_time: Option<String>,
    /// Time of the last packet, RFC 3339 UTC on this capture's own clock; null without packets.
    pub last_time: Option<String>,
    /// Problems with the capture itself (a truncated file, drops reported by the capturing host,
    /// malformed packets), each naming the file and frame or byte offset.
    pub warnings: Vec<String>,
    /// The same warnings typed, in the same order: `warning_details[i].text == warnings[i]`.
    #[serde(default)]
    pub warning_details: Vec<WarningDetail>,
    /// Packets that decoded to TCP segments.
    pub tcp_packets: u64,
    /// Packets that were not TCP over IP, by reason.
    pub skipped: Skipped,
    /// TCP connections in this capture (all of them, not only the ones reported).
    pub tcp_connections: u64,
    /// The smallest snaplen the capture announced (0: not announced).
    pub snaplen: u32,
    /// Packets whose captured length is below their length on the wire.
    pub truncated_packets: u64,
    /// Packets the capturing host said it dropped (pcapng statistics).
    pub reported_drops: u64,
    /// Capture-level anomalies (malformed packets, table limits).
    pub anomalies: Vec<AnomalyItem>,
}

/// Packets that were not TCP over IP, by reason.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Skipped {
    /// Not IPv4 or IPv6 (ARP, LLDP, ...).
    pub not_ip: u64,
    /// IP, but not TCP (UDP, ICMP, ...).
    pub not_tcp: u64,
    /// IP fragments (counted, not reassembled).
    pub ip_fragments: u64,
    /// Packets whose headers did not parse.
    pub malformed: u64,
    /// Packets of a link type bothends does not read.
    pub unsupported_link: u64,
}

/// The offset between the two capture clocks, estimated from the packets seen at both ends (a
/// packet is never received before it was sent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClockInfo {
    /// The backend capture's clock minus the proxy capture's clock, in milliseconds.
    pub backend_minus_proxy_ms: f64,
    /// Packets compared.
    pub samples: u64,
    /// The offset lies within ± this many milliseconds.
    pub uncertainty_ms: f64,
    /// Drift between the two clocks over the captures, parts per million (null: not measurable).
    pub drift_ppm: Option<f64>,
}

/// One TCP connection, as seen in one or both captures, with its verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ConnectionReport {
    /// The connection's number in this report, from "1", in order of start.
    pub id: String,
    /// One entry per capture the connection was seen in, keyed by side.
    pub views: IndexMap<String, View>,
    /// Time of its first packet, RFC 3339 UTC on the proxy capture's clock (the backend's clock
    /// moved by the clock offset when the proxy capture did not see it).
    pub start: Option<String>,
    /// One of the stable verdict labels (see the README); null when not diagnosed.
    pub verdict: Option<Verdict>,
    /// Who is to blame: "none", "proxy", "backend", "network" or "capture".
    pub blame: Option<Blame>,
    /// What the verdict means for the run: "ok", "failed" (a failure of the proxy→backend path:
    /// exit code 1), "abandoned" (the proxy gave up on the request itself, usually because its
    /// client went away) or "not-judged" (the captures cannot vouch for the connection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// What happened, in one or two sentences; says what the captures could not show.
    pub explanation: Option<String>,
    /// What to look at next, and where.
    pub next_step: Option<String>,
    /// The packets that prove the verdict, in time order.
    pub evidence: Vec<EvidenceItem>,
    /// The HTTP request/response exchanges, as the proxy capture saw them (else the backend's).
    pub exchanges: Vec<ExchangeReport>,
    /// How the views were matched across the captures (null with one capture).
    pub pairing: Option<String>,
    /// Wireshark display filters that isolate this connection, per side.
    pub filters: IndexMap<String, String>,
    /// "http", "tls", "other" or "empty".
    pub protocol: String,
    /// Notable traffic anomalies of the connection (Zeek-style snake_case names), with counts and
    /// the first frames.
    pub anomalies: Vec<AnomalyItem>,
    /// Lines of the proxy's error log (`--proxy-log`) about this connection, each failure's
    /// lines together (the error first); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub log_lines: Vec<LogLineReport>,
    /// The packets of a failed connection as a ladder diagram (the HTML report's). Not part of the
    /// JSON: frame numbers, evidence and Wireshark filters lead to the packets.
    #[serde(skip)]
    pub ladder: Option<Ladder>,
}

/// The connection as one capture saw it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct View {
    /// The client (the proxy, for a proxy→backend connection), "ip:port" ("[ip]:port" for IPv6).
    pub client: String,
    /// The server, "ip:port".
    pub server: String,
    /// The connection's first and last frame in this capture (1-based, as Wireshark's
    /// frame.number).
    pub first_frame: u64,
    pub last_frame: u64,
    /// The files holding first_frame and last_frame, when the side has several files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_file: Option<String>,
    /// Distinct payload bytes of each direction's sequence space that the capture saw (a
    /// retransmission counts once; bytes cut by snaplen count).
    pub bytes: DirCounts,
    /// Bytes of sequence space between the first and last byte seen that the capture never saw.
    pub gaps: DirCounts,
    /// Data segments that repeated bytes already seen.
    pub retransmissions: DirCounts,
    /// Bytes the receiver acknowledged that this capture never saw (capture drops).
    pub acked_unseen: DirCounts,
    /// Packets of the connection in this capture.
    pub packets: u64,
    /// Time from its first to its last packet, milliseconds.
    pub duration_ms: f64,
    /// Zeek's conn_state (S0, SF, REJ, RSTO, ...).
    pub state: String,
    /// Zeek-style history letters (client upper case, server lower case).
    pub history: String,
    /// Where HTTP parsing of a direction lost track of the messages (a snaplen cut or a gap the
    /// framing could not follow, a parse error), in the order the parser noted them; at most 16 per
    /// direction. Omitted when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_stops: Vec<HttpStopItem>,
    /// Stops past the 16 per direction kept in `http_stops`. Omitted when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub http_stops_not_kept: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Where HTTP parsing lost track of a direction's messages, e.g. `{ "direction":
/// "server_to_client", "offset": 1448, "kind": "snaplen-in-head", "resumed_at": 2896, "text":
/// "snaplen cut the response headers at offset 1448 (1200 bytes not captured)" }`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HttpStopItem {
    /// "client_to_server" or "server_to_client".
    pub direction: String,
    /// Stream offset of the direction where sync was lost: 0 is the first payload byte after the
    /// SYN (ISN + 1); for a connection captured mid-stream, the direction's first sequence number
    /// the capture saw (of its first segment, or the other side's first acknowledgement).
    pub offset: i64,
    /// Stable kebab-case name of why, e.g. "snaplen-in-head", "gap-in-body", "parse-error".
    #[schemars(schema_with = "crate::http::StopKind::name_schema")]
    pub kind: String,
    /// For "parse-error" and "garbage-at-start": the anomaly noted with it (e.g.
    /// "http_bad_header"). Omitted otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::anomaly::optional_name_schema")]
    pub anomaly: Option<String>,
    /// Offset (same origin) of the next message start found after the loss, where parsing went
    /// on; null when it never did (an error stops a direction for good).
    pub resumed_at: Option<i64>,
    /// The stop in words, as the parser said it.
    pub text: String,
}

/// A count per direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DirCounts {
    pub client_to_server: u64,
    pub server_to_client: u64,
}

/// A packet that proves part of a verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EvidenceItem {
    /// The side whose capture holds the frame.
    pub capture: String,
    /// Frame number in that capture (1-based, Wireshark's frame.number; in `file` when the side
    /// has several files).
    pub frame: u64,
    /// What the packet shows.
    pub what: String,
    /// Time of the packet, RFC 3339 UTC on that capture's own clock.
    pub time: String,
    /// The file holding the frame, when the side has several files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// An HTTP request and its response.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ExchangeReport {
    /// Request method; null when the capture shows a response whose request it did not see.
    pub method: Option<String>,
    /// Request target as sent (cut to 512 bytes).
    pub target: Option<String>,
    /// Bytes of the request (head and body) that went out.
    pub request_bytes: u64,
    /// Every byte of the request went out.
    pub request_complete: bool,
    /// The final status code; null when no status line was seen.
    pub status: Option<u16>,
    /// Bytes of the response (head and body) that went out.
    pub response_bytes: u64,
    /// Every byte of the response went out.
    pub response_complete: bool,
    /// Interim (1xx) statuses before the final response.
    pub interim: Vec<u16>,
    /// The request line, e.g. "POST /upload HTTP/1.1" (exchanges of failed connections only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_line: Option<String>,
    /// The request's header fields as captured, credentials redacted (failed connections only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers: Vec<HeaderField>,
    /// The status line, e.g. "HTTP/1.1 200 OK" (failed connections only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_line: Option<String>,
    /// The response's header fields as captured, credentials redacted (failed connections only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers: Vec<HeaderField>,
}

/// One HTTP header field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HeaderField {
    /// The name as sent.
    pub name: String,
    /// The value as captured (cut to 512 bytes), or "[redacted]".
    pub value: String,
    /// The value was a credential (Authorization, Proxy-Authorization, Cookie, Set-Cookie, or a
    /// header named with --redact-header) and was replaced by "[redacted]".
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redacted: bool,
}

/// An anomaly: something odd in the traffic or the capture, counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AnomalyItem {
    /// Stable snake_case name, e.g. "tcp_unexpected_syn", "http_bad_header".
    #[schemars(schema_with = "crate::anomaly::AnomalyKind::name_schema")]
    pub name: String,
    /// How many times it was seen.
    pub count: u64,
    /// The first frames where it was seen (frame numbers of this view's capture).
    pub frames: Vec<u64>,
}

/// Counts over the connections.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Summary {
    /// Connections reported.
    pub connections: u64,
    /// Connections per verdict, in the order of the verdict table.
    pub by_verdict: IndexMap<Verdict, u64>,
    /// Connections per blame.
    pub by_blame: IndexMap<Blame, u64>,
    /// Connections whose verdict is a failure.
    pub failed: u64,
    /// The answer in one sentence, e.g. "1 of 3 proxy→backend connections failed:
    /// 1 backend-closed-during-request (blame: backend)".
    #[serde(default)]
    pub answer: String,
    /// Failed connections per (verdict, blame), in the order of the verdict table.
    #[serde(default)]
    pub failures: Vec<FailureCount>,
    /// Connections whose outcome is "abandoned" (the proxy gave up on the request itself).
    #[serde(default)]
    pub abandoned: u64,
    /// Connections whose outcome is "not-judged" (the captures cannot vouch for them).
    #[serde(default)]
    pub not_judged: u64,
    /// The abandoned and not-judged connections per (verdict, blame): findings that are not
    /// failures.
    #[serde(default)]
    pub other_findings: Vec<FailureCount>,
    /// Connections per protocol carried: "http", "tls", "other", "empty".
    #[serde(default)]
    pub protocols: IndexMap<String, u64>,
    /// HTTP exchanges in all connections, and in the `ok` ones.
    #[serde(default)]
    pub exchanges: u64,
    #[serde(default)]
    pub ok_exchanges: u64,
    /// `ok` connections that had retransmissions (recovered).
    #[serde(default)]
    pub ok_with_retransmissions: u64,
    /// How many connections the report lists: all of them in JSON and NDJSON; text, Markdown and
    /// HTML reports of very large captures list the failed ones (up to a limit) and leave out
    /// healthy ones beyond a limit, and say so.
    #[serde(default)]
    pub listed: u64,
}

/// A number of failed connections with one verdict and blame.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailureCount {
    pub verdict: Verdict,
    pub blame: Blame,
    pub connections: u64,
}

// ---- The incident view: requests over time, the failures' shape, patterns ----

/// The incident as a whole. Its unit is the **request attempt**: every HTTP request the proxy
/// sent, and every connection on which no request was seen (a refused or timed-out connect, TLS,
/// a connection that carried nothing). In a failed or abandoned connection, each exchange sent
/// and answered in full counts as `ok`, and the failure is one attempt more; every attempt of a
/// not-judged connection counts as not judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Incident {
    /// Request attempts in all.
    pub requests: u64,
    /// Attempts sent and answered in full.
    pub ok: u64,
    /// Attempts whose connection's verdict is a failure (outcome "failed").
    pub failed: u64,
    /// Attempts abandoned by the proxy (outcome "abandoned").
    pub abandoned: u64,
    /// Attempts the captures cannot vouch for (outcome "not-judged").
    pub not_judged: u64,
    /// `failed` per 100 requests.
    pub failed_percent: f64,
    /// The shape of the failures in time, and why.
    pub shape: IncidentShape,
    /// The failure whose request (or SYN) left the proxy first, and last.
    pub first_failure: Option<FailureRef>,
    pub last_failure: Option<FailureRef>,
    /// Attempts per time bucket.
    pub timeline: TimelineReport,
    /// Attempts by method, path prefix, request body size and connection reuse.
    pub breakdowns: Vec<BreakdownReport>,
    /// What every failure has in common, in sentences ("every failure was a POST request (30 %
    /// of requests were)"); empty when nothing stands out.
    pub highlights: Vec<String>,
}

/// How the failures are spread in time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct IncidentShape {
    /// "none" (no failure), "all-at-once" (one burst in which almost nothing succeeded, or every
    /// request failed: backend or path down or misconfigured), "under-load" (failures where the
    /// load was highest, or a burst of timeouts with late connects: overload), "clustered" (most
    /// failures in a short stretch among healthy requests), "sporadic" (few failures, or spread
    /// one at a time).
    pub kind: String,
    /// Why, in words, with the numbers.
    pub reason: String,
    /// Healthy requests and all attempts between the first and the last failure.
    pub window_ok: u64,
    pub window_requests: u64,
    /// Connections that got through only after sending their SYN again, from the first failure
    /// until requests succeeded again.
    pub late_connects: u64,
    /// Mean load around a failed and a healthy request: other attempts in the same bucket, and
    /// connections open during it.
    pub requests_around_failure: f64,
    pub requests_around_success: f64,
    pub connections_around_failure: f64,
    pub connections_around_success: f64,
}

/// A failed connection, as the first or last failure.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailureRef {
    /// The connection's `id` in this report.
    pub connection: String,
    pub verdict: Verdict,
    pub blame: Blame,
    /// When its failing request (or SYN) left the proxy, RFC 3339 UTC on the proxy capture's
    /// clock.
    pub time: String,
    /// The first piece of evidence (the request or SYN) and the last (where the failure shows).
    pub request: Option<EvidenceItem>,
    pub failure: Option<EvidenceItem>,
}

/// Attempts per time bucket, from the bucket of the first attempt to that of the last.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimelineReport {
    /// Width of a bucket, milliseconds (a round width chosen so that at most 60 buckets cover
    /// the traffic).
    pub bucket_ms: u64,
    pub buckets: Vec<BucketReport>,
}

/// One time bucket.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BucketReport {
    /// Its start, RFC 3339 UTC on the proxy capture's clock.
    pub start: String,
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    pub abandoned: u64,
    pub not_judged: u64,
    /// Attempts per verdict other than ok.
    pub by_verdict: IndexMap<Verdict, u64>,
    /// Connections open at some time during the bucket.
    pub connections: u64,
    /// Healthy connections started in the bucket that had to send their SYN again.
    pub late_connects: u64,
}

/// Attempts by one property of the request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BreakdownReport {
    /// "method", "path" (first path segment, or the first two when every request shares the
    /// first), "body_size" (the request's Content-Length, else the body bytes sent) or "reuse"
    /// (new connection, reused connection, connection older than the capture).
    pub dimension: String,
    /// Values with failures first.
    pub rows: Vec<BreakdownRow>,
}

/// One value of a breakdown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BreakdownRow {
    /// e.g. "POST", "/api/", "≥ 1 MiB", "reused connection"; "(no request seen)" for attempts
    /// without a request, "(other)" for values past the cap (16 methods, 32 paths).
    pub value: String,
    pub requests: u64,
    pub ok: u64,
    pub failed: u64,
    pub abandoned: u64,
    pub not_judged: u64,
    pub failed_percent: f64,
    /// Attempts per verdict other than ok.
    pub by_verdict: IndexMap<Verdict, u64>,
}

// ── Client requests (the proxy capture's client side) ───────────────────────────────────────

/// A request a client sent to the proxy, what the client got, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientRequestReport {
    /// Its number in this report's `client_requests`, from "1", in order of its first packet.
    pub id: String,
    /// The client, "ip:port" as the proxy capture saw it.
    pub client: String,
    /// The proxy's address and port the client connected to.
    pub proxy: String,
    /// Position of the request on its client connection, from 1.
    pub exchange: u64,
    /// The proxy-capture frame of the request's first packet (in `file` when the side has several
    /// files), and its time (RFC 3339 UTC, the proxy capture's clock).
    pub frame: u64,
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The request line's method and target (cut to 256 bytes).
    pub method: Option<String>,
    pub target: Option<String>,
    /// Bytes of the request (head and body) the client sent, and whether all of it went out.
    pub request_bytes: u64,
    pub request_complete: bool,
    /// The final status the client got; null: no status line (the proxy closed or reset the
    /// connection, or the capture ended first).
    pub status: Option<u16>,
    /// The proxy-capture frame of the response's first packet.
    pub response_frame: Option<u64>,
    /// From the request's first packet to the response's first packet, in milliseconds.
    pub response_ms: Option<f64>,
    /// Bytes of the response the proxy sent, and whether all of it went out.
    pub response_bytes: u64,
    pub response_complete: bool,
    /// The first FIN or RST on the client connection after the request: "proxy-fin",
    /// "proxy-rst", "client-fin" or "client-rst"; null when none was seen. With no (complete)
    /// answer, it says how the client was left.
    pub closed_by: Option<String>,
    /// From the request's first packet to that FIN or RST, in milliseconds.
    pub closed_ms: Option<f64>,
    /// A request id (X-Request-ID, X-Correlation-ID, Request-Id) in the client's request or in
    /// the proxy's response.
    pub request_id: Option<String>,
    /// Who gave the client its answer: "backend" (the last attempt got a complete response),
    /// "proxy" (after its attempts failed, or — with no attempt — without any backend traffic:
    /// the captures were read to the end and hold none), or "not-found" (no attempt found, and
    /// the request had to be decided before the end of the captures).
    pub answered_by: String,
    /// What tied the request to its attempts: "request-id", "client-address" (method, target and
    /// the X-Forwarded-For address), "target" (method, target and time) or "time" (a connection
    /// that carried no request, opened while the request waited); null without attempts.
    pub matched_by: Option<String>,
    /// Other client requests that fitted its first attempt as well (the same request from the
    /// same address at the same moment); the nearest in time was taken.
    pub alternatives: u64,
    /// The proxy's attempts at the backend for it, in time order (several: it retried or failed
    /// over); empty when it sent nothing to a backend for it.
    pub attempts: Vec<BackendAttemptReport>,
    /// What the client got and why, in one or two sentences.
    pub explanation: String,
}

/// One attempt of the proxy at the backend for a client request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackendAttemptReport {
    /// The backend connection: its `id` in `connections`.
    pub connection: String,
    /// Position of the exchange on that connection, from 1; null: the connection carried no
    /// request (a refused or timed-out connect, TLS).
    pub exchange: Option<u64>,
    /// The proxy-capture frame of the backend request's first packet (of the connection's first
    /// packet when it carried no request), and its time.
    pub frame: u64,
    pub time: String,
    pub method: Option<String>,
    pub target: Option<String>,
    /// The status the backend answered; null: none.
    pub status: Option<u16>,
    pub response_complete: bool,
    /// The client address the proxy forwarded (X-Forwarded-For's last, X-Real-IP, Forwarded).
    pub forwarded_for: Option<String>,
    /// The request id the proxy sent to the backend.
    pub request_id: Option<String>,
    /// The connection's verdict and blame.
    pub verdict: Verdict,
    pub blame: Blame,
    /// The connection failed at this attempt (no request, or the request or response incomplete).
    pub failed: bool,
}

/// Counts over every client request of the proxy capture's client side.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientSummaryReport {
    /// Client-side connections that carried HTTP, and that carried TLS (their requests cannot be
    /// read).
    pub http_connections: u64,
    pub tls_connections: u64,
    /// Requests seen, and how many `client_requests` lists.
    pub requests: u64,
    pub listed: u64,
    /// Requests per final status the client got ("none": no status line).
    pub by_status: IndexMap<String, u64>,
    /// Requests answered by the backend, by the proxy (of those, without any backend traffic),
    /// and whose attempts were not found.
    pub answered_by_backend: u64,
    pub answered_by_proxy: u64,
    pub proxy_without_backend: u64,
    pub not_found: u64,
    /// Requests that got a complete answer below 400 after the report had listed 1,000 such:
    /// counted by status, not matched to attempts (matching them would keep each until the
    /// pooled backend connection that carried it closes).
    #[serde(default)]
    pub plain_not_matched: u64,
    /// Requests with at least one failed attempt.
    pub with_failed_attempt: u64,
    /// Requests decided before the end of the captures (their wait passed the horizon, or the
    /// table of waiting requests was full).
    pub decided_early: u64,
    /// Backend exchanges (and failed backend connections) matched to no client request.
    pub attempts_without_request: u64,
    /// The answer in one sentence, e.g. "14 client requests: 9 answered by the backend, 3 by the
    /// proxy after a backend failure, 2 by the proxy without backend traffic".
    pub answer: String,
}

/// Verdicts, blames and outcomes are their stable labels in JSON ([`Verdict::label`]), and plain
/// strings in the schema (as they were when the model held the labels).
macro_rules! serde_as_label {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.label())
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                <$t>::ALL
                    .into_iter()
                    .find(|v| v.label() == s)
                    .ok_or_else(|| serde::de::Error::custom(format!("unknown label {s:?}")))
            }
        }

        impl JsonSchema for $t {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> std::borrow::Cow<'static, str> {
                String::schema_name()
            }

            fn schema_id() -> std::borrow::Cow<'static, str> {
                String::schema_id()
            }

            fn json_schema(g: &mut schemars::SchemaGenerator) -> schemars::Schema {
                String::json_schema(g)
            }
        }
    )*};
}

serde_as_label!(Verdict, Blame, Outcome);

/// The JSON Schema of the report (`--format json`), as committed in `schema/report.schema.json`.
pub fn report_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Report)).expect("a schema serializes")
}

/// The JSON Schema of one NDJSON line (a connection), as committed in
/// `schema/connection.schema.json`.
pub fn connection_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(ConnectionReport)).expect("a schema serializes")
}

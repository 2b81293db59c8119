//! # report: analysis → what people read
//!
//! In: an [`Analysis`] (the sides, the pairing, the alignments, the diagnoses). Out: one [`Report`]
//! model (`model`), rendered as text (`text`), JSON and NDJSON (`json`: the model as is), Markdown
//! for tickets (`markdown`) and self-contained HTML (`html`) with a ladder diagram per failed
//! connection (`ladder` matches each packet sent at one end with its arrival at the other;
//! `html/ladder_svg.rs` draws it). The report never sees pcap-parser, etherparse or httparse types;
//! it reads the stages' plain data and builds its own view types.
//!
//! Rows are made here (`RowMaker`, counted by `Tally`) for a whole analysis ([`build`]) or one
//! at a time while the captures are read (`stream`, the pipeline's sink). Beside the connections,
//! three sections have a module each that builds their part of the model and writes it in every
//! format: `incident` (the pattern), `proxy_logs` (the proxy's log lines, the window) and
//! `clients` (the client requests). The helpers at the end of this file are what the renderers
//! share: the exchange a failed connection is about, its heads, times, the notes under the inputs.
//!
//! What the library offers is the modules `model`, `json`, `text`, `markdown`, `html`, `stream`
//! and `ladder` (its types, reachable from the model) and, here, [`build`], [`ReportOptions`],
//! [`SideInfo`], [`is_failed`] and [`is_notable`]; the rest is `pub(crate)`.
//!
//! Redaction happens here, once, when the model is built: header values that carry credentials
//! never reach a renderer unless asked for (`--show-secrets`).

pub(crate) mod clients;
pub mod html;
pub(crate) mod incident;
pub mod json;
pub mod ladder;
pub mod markdown;
pub mod model;
pub(crate) mod proxy_logs;
pub mod stream;
pub mod text;

pub(crate) use crate::time::{duration_words, rfc3339};

use std::fmt::Write as _;
use std::net::IpAddr;

use indexmap::IndexMap;

use crate::anomaly::Anomalies;
use crate::diagnose::{Blame, Diagnosis, Outcome, Verdict};
use crate::http::{Exchange, Header, Message, Protocol};
use crate::pair::{ClockOffset, MatchMethod};
use crate::pipeline::{Analysis, Conn, Side, SideResult};
pub use model::*;

/// Options that change what a report contains.
#[derive(Clone, Debug, Default)]
pub struct ReportOptions {
    /// Show credential header values instead of redacting them.
    pub show_secrets: bool,
    /// More header names to redact (case-insensitive), beside the built-in ones.
    pub redact_headers: Vec<String>,
    /// Build the ladder diagram of each failed connection (for HTML).
    pub ladders: bool,
}

impl ReportOptions {
    /// The lower-case names of the headers whose values are redacted (none with `show_secrets`).
    pub(crate) fn redacted(&self) -> Vec<String> {
        if self.show_secrets {
            return Vec::new();
        }
        let mut v: Vec<String> = REDACTED_HEADERS.iter().map(|s| s.to_string()).collect();
        for h in &self.redact_headers {
            let h = h.trim().to_ascii_lowercase();
            if !h.is_empty() && !v.contains(&h) {
                v.push(h);
            }
        }
        v
    }
}

/// The most ladder diagrams a report draws (the first failed connections); the HTML report says
/// when there were more.
pub const MAX_LADDERS: usize = 100;

/// The text that replaces a redacted header value.
pub(crate) const REDACTED: &str = "[redacted]";

/// Header names whose values are credentials.
pub(crate) const REDACTED_HEADERS: [&str; 4] =
    ["authorization", "proxy-authorization", "cookie", "set-cookie"];

/// The sides as rows need them: which capture, and its file names (for evidence in a rotated set).
#[derive(Clone, Debug)]
pub struct SideInfo {
    pub side: Side,
    pub files: Vec<String>,
}

impl SideInfo {
    pub(crate) fn of(s: &SideResult) -> SideInfo {
        SideInfo {
            side: s.side,
            files: s.capture.files.clone(),
        }
    }
}

/// What a row is made from: a judged connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowInput<'a> {
    pub(crate) proxy: Option<&'a Conn>,
    pub(crate) backend: Option<&'a Conn>,
    pub(crate) method: MatchMethod,
    pub(crate) diagnosis: Option<&'a Diagnosis>,
}

/// Makes report rows from judged connections, one at a time (the same for a whole analysis and
/// for a report written while the captures are read).
#[derive(Clone, Debug)]
pub(crate) struct RowMaker {
    sides: Vec<SideInfo>,
    redacted: Vec<String>,
}

impl RowMaker {
    pub(crate) fn new(sides: Vec<SideInfo>, opts: &ReportOptions) -> RowMaker {
        RowMaker {
            sides,
            redacted: opts.redacted(),
        }
    }

    fn side(&self, i: usize) -> Option<&SideInfo> {
        self.sides.get(i)
    }

    /// The proxy capture's side (the first), for the client requests' frames.
    pub(crate) fn proxy_side(&self) -> Option<&SideInfo> {
        self.sides.first()
    }

    /// The row of a connection (its `id` left empty, its ladder None), and its start on the proxy
    /// clock (for ordering).
    pub(crate) fn row(&self, input: &RowInput<'_>, clock: Option<ClockOffset>) -> (i64, ConnectionReport) {
        let start = match (input.proxy, input.backend) {
            (Some(c), _) => c.first.ts_ns,
            (None, Some(c)) => crate::pair::on_proxy_clock(clock.as_ref(), c.first.ts_ns),
            (None, None) => i64::MAX,
        };
        let mut views = IndexMap::new();
        let mut filters = IndexMap::new();
        let mut anomalies = Anomalies::default();
        let mut protocol = Protocol::Empty;
        for (i, conn) in [input.proxy, input.backend].into_iter().enumerate() {
            let (Some(conn), Some(side)) = (conn, self.side(i)) else {
                continue;
            };
            views.insert(side.side.name().to_string(), view(conn, side));
            filters.insert(side.side.name().to_string(), wireshark_filter(conn));
            anomalies.merge(&conn.anomalies);
            anomalies.merge(&conn.app.anomalies);
            if protocol == Protocol::Empty {
                protocol = conn.app.protocol;
            }
        }
        let diagnosis = input.diagnosis;
        let notable = diagnosis.is_some_and(|d| d.verdict.is_notable());
        // Exchanges as the proxy (the sender of requests) saw them, else as the backend did.
        let exchanges = input
            .proxy
            .or(input.backend)
            .map(|c| {
                c.app
                    .exchanges
                    .iter()
                    .map(|e| exchange_report(e, notable.then_some(self.redacted.as_slice())))
                    .collect()
            })
            .unwrap_or_default();
        let row = ConnectionReport {
            id: String::new(),
            views,
            start: (start != i64::MAX).then(|| rfc3339(start)),
            verdict: diagnosis.map(|d| d.verdict),
            blame: diagnosis.map(|d| d.blame),
            outcome: diagnosis.map(|d| d.verdict.outcome()),
            explanation: diagnosis.map(|d| d.explanation.clone()),
            next_step: diagnosis.map(|d| d.next_step.clone()),
            evidence: diagnosis.map(|d| self.evidence(d)).unwrap_or_default(),
            exchanges,
            pairing: (self.sides.len() > 1).then(|| input.method.describe().to_string()),
            filters,
            protocol: protocol_name(protocol).to_string(),
            anomalies: anomaly_items(&anomalies),
            log_lines: Vec::new(),
            ladder: None,
        };
        (start, row)
    }

    /// What the tally counts of a connection, as its row would say it, without making the row
    /// (a report that does not list the connection only counts it).
    pub(crate) fn counted<'a>(&self, input: &RowInput<'a>) -> Counted<'a> {
        let mut protocol = Protocol::Empty;
        let mut retransmitted = false;
        for (i, conn) in [input.proxy, input.backend].into_iter().enumerate() {
            let (Some(conn), Some(_)) = (conn, self.side(i)) else {
                continue;
            };
            if protocol == Protocol::Empty {
                protocol = conn.app.protocol;
            }
            retransmitted |= conn.dirs.iter().any(|d| d.retransmissions > 0);
        }
        let diagnosis = input.diagnosis;
        Counted {
            protocol: protocol_name(protocol),
            exchanges: input.proxy.or(input.backend).map_or(0, |c| c.app.exchanges.len()),
            verdict: diagnosis.map(|d| d.verdict),
            blame: diagnosis.map(|d| d.blame),
            outcome: diagnosis.map(|d| d.verdict.outcome()),
            retransmitted,
        }
    }

    fn evidence(&self, d: &Diagnosis) -> Vec<EvidenceItem> {
        d.evidence
            .iter()
            .map(|e| {
                let files = self
                    .sides
                    .iter()
                    .find(|s| s.side == e.side)
                    .map_or(&[][..], |s| s.files.as_slice());
                EvidenceItem {
                    capture: e.side.name().to_string(),
                    frame: e.frame.frame as u64,
                    what: e.what.clone(),
                    time: rfc3339(e.ts_ns),
                    file: (files.len() > 1)
                        .then(|| files.get(e.frame.file as usize).cloned().unwrap_or_default()),
                }
            })
            .collect()
    }
}

/// The report around the connections: captures, clock offset, backends, redaction (the
/// connections and summary are filled in by the caller).
pub(crate) fn report_header(
    sides: &[SideResult],
    clock: Option<ClockOffset>,
    backends: &crate::pair::Backends,
    opts: &ReportOptions,
) -> Report {
    let clock_offset = clock.map(|c| ClockInfo {
        backend_minus_proxy_ms: c.backend_minus_proxy_ns as f64 / 1e6,
        samples: c.samples,
        uncertainty_ms: c.uncertainty_ns as f64 / 1e6,
        drift_ppm: c.drift_ppm,
    });
    let mut by_side = IndexMap::new();
    if !backends.0.is_empty() {
        let names = |v: &[crate::decode::Endpoint]| v.iter().map(|e| e.to_string()).collect::<Vec<_>>();
        if let Some(s) = sides.first() {
            by_side.insert(s.side.name().to_string(), names(&backends.0));
        }
        if let Some(s) = sides.get(1) {
            by_side.insert(s.side.name().to_string(), names(&backends.1));
        }
    }
    Report {
        tool: "bothends".to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        schema: SCHEMA,
        captures: sides.iter().map(capture_info).collect(),
        clock_offset,
        backends: by_side,
        connections: Vec::new(),
        summary: Tally::default().summary(false),
        redacted_headers: opts.redacted(),
        window: None,
        proxy_logs: None,
        incident: None,
        client_requests: Vec::new(),
        client_summary: None,
    }
}

/// Builds the report model of a whole analysis: every connection, in order of start.
pub fn build(analysis: &Analysis, opts: &ReportOptions) -> Report {
    let maker = RowMaker::new(analysis.sides.iter().map(SideInfo::of).collect(), opts);
    let clock = analysis.pairing.clock;
    let mut rows: Vec<(i64, usize, ConnectionReport)> = analysis
        .pairing
        .pairs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let input = RowInput {
                proxy: analysis.first_view(p),
                backend: analysis.second_view(p),
                method: p.method,
                diagnosis: analysis.diagnoses.get(i).and_then(Option::as_ref),
            };
            let (start, row) = maker.row(&input, clock);
            (start, i, row)
        })
        .collect();
    rows.sort_by_key(|(start, i, _)| (*start, *i));
    let single = analysis.sides.first().is_some_and(|s| s.side == Side::Single);
    let mut tally = Tally::default();
    let mut ladders = 0usize;
    let mut connections = Vec::with_capacity(rows.len());
    let mut incident = (!single).then(|| incident::IncidentBuilder::new(maker.sides.clone()));
    // The client requests name connections by their pair's index: the report numbers them.
    let mut id_of_pair = std::collections::HashMap::new();
    for (n, (_, i, mut row)) in rows.into_iter().enumerate() {
        row.id = (n + 1).to_string();
        id_of_pair.insert(i.to_string(), row.id.clone());
        if let Some(b) = incident.as_mut() {
            let p = &analysis.pairing.pairs[i];
            let d = analysis.diagnoses.get(i).and_then(Option::as_ref);
            b.add(
                analysis.first_view(p),
                analysis.second_view(p),
                d,
                clock,
                n as u64 + 1,
            );
        }
        if opts.ladders && is_notable(&row) && ladders < MAX_LADDERS {
            ladders += 1;
            let p = &analysis.pairing.pairs[i];
            row.ladder = ladder::build(
                &analysis.sides,
                [analysis.first_view(p), analysis.second_view(p)],
                clock,
                analysis.alignments.get(i).and_then(Option::as_ref),
                p.seq_map,
            );
        }
        tally.add(&row);
        connections.push(row);
    }
    let backends = (
        analysis.pairing.backends_proxy_view.clone(),
        analysis.pairing.backends_backend_view.clone(),
    );
    let mut report = report_header(&analysis.sides, clock, &backends, opts);
    tally.listed = connections.len() as u64;
    report.summary = tally.summary(single);
    report.connections = connections;
    report.incident = incident.map(incident::IncidentBuilder::finish);
    let id = |pair: &str| id_of_pair.get(pair).cloned().unwrap_or_default();
    (report.client_requests, report.client_summary) = clients::client_section(
        &analysis.client_requests,
        &id,
        analysis.sides.first().map(SideInfo::of).as_ref(),
        &opts.redacted(),
    );
    report
}

/// The summary's counts, accumulated row by row.
#[derive(Clone, Debug, Default)]
pub(crate) struct Tally {
    pub(crate) connections: u64,
    by_verdict: IndexMap<Verdict, u64>,
    by_blame: IndexMap<Blame, u64>,
    failures: Vec<FailureCount>,
    other_findings: Vec<FailureCount>,
    abandoned: u64,
    not_judged: u64,
    protocols: IndexMap<String, u64>,
    exchanges: u64,
    ok_exchanges: u64,
    ok_with_retransmissions: u64,
    pub(crate) failed: u64,
    /// Rows the report lists.
    pub(crate) listed: u64,
}

/// What a [`Tally`] counts of a connection: from its row, or straight from the judged connection
/// when no row is needed ([`RowMaker::counted`]).
pub(crate) struct Counted<'a> {
    pub(crate) protocol: &'a str,
    pub(crate) exchanges: usize,
    pub(crate) verdict: Option<Verdict>,
    pub(crate) blame: Option<Blame>,
    pub(crate) outcome: Option<Outcome>,
    /// A view saw retransmissions.
    pub(crate) retransmitted: bool,
}

impl Tally {
    pub(crate) fn add(&mut self, c: &ConnectionReport) {
        self.count(&Counted {
            protocol: &c.protocol,
            exchanges: c.exchanges.len(),
            verdict: c.verdict,
            blame: c.blame,
            outcome: outcome_of(c),
            retransmitted: c
                .views
                .values()
                .any(|v| v.retransmissions.client_to_server + v.retransmissions.server_to_client > 0),
        });
    }

    pub(crate) fn count(&mut self, c: &Counted<'_>) {
        self.connections += 1;
        bump(&mut self.protocols, c.protocol);
        self.exchanges += c.exchanges as u64;
        if let Some(v) = c.verdict {
            *self.by_verdict.entry(v).or_default() += 1;
            if v == Verdict::Ok {
                self.ok_exchanges += c.exchanges as u64;
                if c.retransmitted {
                    self.ok_with_retransmissions += 1;
                }
            }
        }
        if let Some(b) = c.blame {
            *self.by_blame.entry(b).or_default() += 1;
        }
        let (Some(v), Some(b)) = (c.verdict, c.blame) else {
            return;
        };
        let counts = match c.outcome {
            Some(Outcome::Failed) => {
                self.failed += 1;
                &mut self.failures
            }
            Some(Outcome::Abandoned) => {
                self.abandoned += 1;
                &mut self.other_findings
            }
            Some(Outcome::NotJudged) => {
                self.not_judged += 1;
                &mut self.other_findings
            }
            Some(Outcome::Ok) | None => return,
        };
        match counts.iter_mut().find(|f| f.verdict == v && f.blame == b) {
            Some(f) => f.connections += 1,
            None => counts.push(FailureCount {
                verdict: v,
                blame: b,
                connections: 1,
            }),
        }
    }

    /// The summary; `single`: one capture read as `flows` (the answer speaks of TCP connections).
    pub(crate) fn summary(&self, single: bool) -> Summary {
        // Stable order: the order of the verdict and blame tables.
        let mut by_verdict = self.by_verdict.clone();
        by_verdict.sort_keys();
        let mut by_blame = self.by_blame.clone();
        by_blame.sort_keys();
        let sorted = |v: &[FailureCount]| {
            let mut v = v.to_vec();
            v.sort_by_key(|f| (f.verdict, f.blame));
            v
        };
        let failures = sorted(&self.failures);
        let other_findings = sorted(&self.other_findings);
        let mut protocols = self.protocols.clone();
        protocols.sort_keys();
        Summary {
            connections: self.connections,
            answer: answer(self.connections, self.failed, &failures, &other_findings, single),
            by_verdict,
            by_blame,
            failed: self.failed,
            failures,
            abandoned: self.abandoned,
            not_judged: self.not_judged,
            other_findings,
            protocols,
            exchanges: self.exchanges,
            ok_exchanges: self.ok_exchanges,
            ok_with_retransmissions: self.ok_with_retransmissions,
            listed: self.listed,
        }
    }
}

/// The one-sentence answer: the failures, then the findings that are not failures.
fn answer(
    total: u64,
    failed: u64,
    failures: &[FailureCount],
    others: &[FailureCount],
    single: bool,
) -> String {
    let what = if single {
        "TCP connection"
    } else {
        "proxy→backend connection"
    };
    let s = if total == 1 { "" } else { "s" };
    let list = |v: &[FailureCount]| {
        v.iter()
            .map(|f| format!("{} {} (blame: {})", f.connections, f.verdict, f.blame))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut answer = match (failed, total) {
        (_, 0) => return format!("No {what} found."),
        (0, _) => format!("No failure in {total} {what}{s}"),
        _ => format!("{failed} of {total} {what}{s} failed: {}", list(failures)),
    };
    if !others.is_empty() {
        answer.push_str(&format!("; not failures: {}", list(others)));
    }
    answer.push('.');
    answer
}

/// A row's outcome (from its verdict).
pub(crate) fn outcome_of(c: &ConnectionReport) -> Option<Outcome> {
    c.verdict.map(Verdict::outcome)
}

/// Counts one more of `key` (allocating the key only the first time it is seen).
fn bump(map: &mut IndexMap<String, u64>, key: &str) {
    match map.get_mut(key) {
        Some(n) => *n += 1,
        None => {
            map.insert(key.to_string(), 1);
        }
    }
}

fn capture_info(s: &SideResult) -> CaptureInfo {
    let (warnings, warning_details) = WarningDetail::split(&s.warnings);
    CaptureInfo {
        side: s.side.name().to_string(),
        files: s.capture.files.clone(),
        packets: s.capture.packets,
        link_types: s.capture.link_types.iter().map(|l| l.to_string()).collect(),
        first_time: s.capture.first_ts_ns.map(rfc3339),
        last_time: s.capture.last_ts_ns.map(rfc3339),
        warnings,
        warning_details,
        tcp_packets: s.decode.tcp,
        skipped: Skipped {
            not_ip: s.decode.not_ip,
            not_tcp: s.decode.not_tcp,
            ip_fragments: s.decode.fragments,
            malformed: s.decode.malformed,
            unsupported_link: s.decode.unsupported_link,
        },
        tcp_connections: s.tcp_connections,
        snaplen: s.capture.snaplen,
        truncated_packets: s.capture.truncated_packets,
        reported_drops: s.capture.reported_drops,
        anomalies: anomaly_items(&s.anomalies),
    }
}

fn view(c: &Conn, side: &SideInfo) -> View {
    let multi = side.files.len() > 1;
    let file = |f: u16| multi.then(|| side.files.get(f as usize).cloned().unwrap_or_default());
    let counts = |f: &dyn Fn(&crate::tcp::DirSummary) -> u64| DirCounts {
        client_to_server: f(c.to_server()),
        server_to_client: f(c.to_client()),
    };
    View {
        client: c.client.to_string(),
        server: c.server.to_string(),
        first_frame: c.first.frame.frame as u64,
        last_frame: c.last.frame.frame as u64,
        first_file: file(c.first.frame.file),
        last_file: file(c.last.frame.file),
        bytes: counts(&|d| d.bytes),
        gaps: counts(&|d| d.gaps),
        retransmissions: counts(&|d| d.retransmissions),
        acked_unseen: counts(&|d| d.acked_unseen),
        packets: c.packets,
        duration_ms: (c.last.ts_ns - c.first.ts_ns) as f64 / 1e6,
        state: c.state.to_string(),
        history: c.history.clone(),
        http_stops: c.app.stopped.iter().map(http_stop).collect(),
        http_stops_not_kept: c.app.stops_not_kept,
    }
}

fn http_stop(s: &crate::http::Stop) -> HttpStopItem {
    HttpStopItem {
        direction: match s.dir {
            crate::tcp::Dir::ClientToServer => "client_to_server",
            crate::tcp::Dir::ServerToClient => "server_to_client",
        }
        .to_string(),
        offset: s.offset,
        kind: s.kind.name().to_string(),
        anomaly: s.anomaly.map(|a| a.name().to_string()),
        resumed_at: s.resumed,
        text: s.reason.clone(),
    }
}

/// An exchange for the report; `details` (the redacted header names) for the exchanges of failed
/// connections, which show their request line and headers.
fn exchange_report(e: &Exchange, details: Option<&[String]>) -> ExchangeReport {
    let req = e.request.as_ref();
    let resp = e.response.as_ref();
    let heads = |m: Option<&Message>| -> Vec<HeaderField> {
        match (m, details) {
            (Some(m), Some(redacted)) => m.headers.iter().map(|h| header_field(h, redacted)).collect(),
            _ => Vec::new(),
        }
    };
    ExchangeReport {
        request_line: details.and(req).and_then(|m| {
            Some(format!(
                "{} {} {}",
                m.method.as_deref()?,
                m.target.as_deref()?,
                m.version
            ))
        }),
        request_headers: heads(req),
        status_line: details.and(resp).and_then(|m| {
            let reason = m.reason.as_deref().unwrap_or("");
            Some(
                format!("{} {} {reason}", m.version, m.status?)
                    .trim_end()
                    .to_string(),
            )
        }),
        response_headers: heads(resp),
        method: req.and_then(|m| m.method.clone()),
        target: req.and_then(|m| m.target.clone()),
        request_bytes: req.map_or(0, |m| m.bytes),
        request_complete: req.is_some_and(|m| m.complete),
        status: resp.and_then(|m| m.status),
        response_bytes: resp.map_or(0, |m| m.bytes),
        response_complete: resp.is_some_and(|m| m.complete),
        interim: e.interim.iter().map(|i| i.status).collect(),
    }
}

/// A header for the report: its value replaced when its name is one of `redacted`.
fn header_field(h: Header<'_>, redacted: &[String]) -> HeaderField {
    let secret = redacted.iter().any(|r| r.eq_ignore_ascii_case(h.name.trim()));
    HeaderField {
        name: h.name.to_string(),
        value: if secret {
            REDACTED.to_string()
        } else {
            h.value.to_string()
        },
        redacted: secret,
    }
}

fn anomaly_items(a: &Anomalies) -> Vec<AnomalyItem> {
    a.iter()
        .map(|a| AnomalyItem {
            name: a.name().to_string(),
            count: a.count,
            frames: a.frames.iter().map(|f| f.frame as u64).collect(),
        })
        .collect()
}

pub(crate) fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Empty => "empty",
        Protocol::Http => "http",
        Protocol::Tls => "tls",
        Protocol::Other => "other",
    }
}

/// A Wireshark display filter for exactly this connection in its capture: both endpoints, and the
/// frame range (a reused 4-tuple may carry other connections before or after).
pub(crate) fn wireshark_filter(c: &Conn) -> String {
    let ip = |ip: IpAddr| match ip {
        IpAddr::V4(a) => format!("ip.addr=={a}"),
        IpAddr::V6(a) => format!("ipv6.addr=={a}"),
    };
    let mut f = format!(
        "{} && tcp.port=={} && {} && tcp.port=={}",
        ip(c.client.ip),
        c.client.port,
        ip(c.server.ip),
        c.server.port
    );
    if c.first.frame.file == c.last.frame.file {
        f.push_str(&format!(
            " && frame.number>={} && frame.number<={}",
            c.first.frame.frame, c.last.frame.frame
        ));
    }
    f
}

/// Header names worth showing in a ticket beside the request line (with the credential ones,
/// redacted or not).
pub(crate) const NOTABLE_HEADERS: [&str; 6] = [
    "host",
    "content-length",
    "transfer-encoding",
    "expect",
    "connection",
    "upgrade",
];

/// The headers of a message worth showing: the notable ones, and the credential ones (whose
/// values are "[redacted]" unless the report was made with `--show-secrets`).
pub(crate) fn notable_headers(headers: &[HeaderField]) -> Vec<&HeaderField> {
    headers
        .iter()
        .filter(|h| {
            let n = h.name.trim().to_ascii_lowercase();
            h.redacted || NOTABLE_HEADERS.contains(&n.as_str()) || REDACTED_HEADERS.contains(&n.as_str())
        })
        .collect()
}

/// The heads of an exchange as a ticket shows them: the request line and the status line, each
/// with its notable headers, a blank line between them; one line each, empty when neither was
/// recorded.
pub(crate) fn exchange_head(x: &ExchangeReport) -> String {
    let mut head = String::new();
    for (line, headers) in [
        (&x.request_line, &x.request_headers),
        (&x.status_line, &x.response_headers),
    ] {
        let Some(line) = line else {
            continue;
        };
        if !head.is_empty() {
            head.push('\n');
        }
        let _ = writeln!(head, "{line}");
        for h in notable_headers(headers) {
            let _ = writeln!(head, "{}: {}", h.name, h.value);
        }
    }
    head
}

/// The exchange a failed connection is about: the first one not sent or answered in full, else
/// the last one.
pub(crate) fn exchange_of_interest(c: &ConnectionReport) -> Option<&ExchangeReport> {
    c.exchanges
        .iter()
        .find(|e| !(e.request_complete && e.response_complete))
        .or(c.exchanges.last())
}

/// Is this connection's verdict a failure?
pub fn is_failed(c: &ConnectionReport) -> bool {
    outcome_of(c) == Some(Outcome::Failed)
}

/// How a report's section title qualifies a finding that is not a failure ("abandoned by the
/// proxy", "not judged"); None for failures and `ok`.
pub(crate) fn outcome_words(c: &ConnectionReport) -> Option<&'static str> {
    match outcome_of(c)? {
        Outcome::Abandoned => Some("not a failure: abandoned by the proxy"),
        Outcome::NotJudged => Some("not a failure: not judged"),
        Outcome::Failed | Outcome::Ok => None,
    }
}

/// Connections with a finding of any kind (failed, abandoned, not judged).
pub(crate) fn notable_count(s: &Summary) -> u64 {
    s.failed + s.abandoned + s.not_judged
}

/// Does this connection get a section of its own (any verdict but `ok`)?
pub fn is_notable(c: &ConnectionReport) -> bool {
    outcome_of(c).is_some_and(|o| o != Outcome::Ok)
}

/// `HH:MM:SS.ffffff` of an RFC 3339 time as the report writes them.
pub(crate) fn clock_time(rfc: &str) -> &str {
    rfc.get(11..26).unwrap_or(rfc)
}

/// `YYYY-MM-DD HH:MM:SS.ffffff UTC` of an RFC 3339 time as the report writes them.
pub(crate) fn date_time(rfc: &str) -> String {
    match (rfc.get(..10), rfc.get(11..26)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => rfc.to_string(),
    }
}

/// The notes under a report's inputs, in words, for the Markdown and HTML reports: the clock,
/// the backend endpoints, the warnings and what was redacted. Each is a sentence and, for the
/// endpoints, the addresses (set apart as code where the format can).
pub(crate) fn input_notes(report: &Report) -> Vec<(String, Option<String>)> {
    let mut notes = Vec::new();
    notes.push((
        match &report.clock_offset {
            Some(c) => format!("Clock offset: the backend capture's clock is {}.", clock_words(c)),
            None if report.captures.len() == 1 => {
                "One capture: what only the other end could show is said per connection.".to_string()
            }
            None => "Clock offset: not estimated (no connection seen in both captures).".to_string(),
        },
        None,
    ));
    for (side, eps) in &report.backends {
        notes.push((
            format!("Backend endpoints ({side} capture's view): "),
            Some(eps.join(", ")),
        ));
    }
    if let Some(w) = &report.window {
        notes.push((format!("Window: {}.", proxy_logs::window_words(w)), None));
    }
    let before = notes.len();
    for cap in &report.captures {
        for w in &cap.warnings {
            notes.push((format!("Warning ({}): {w}", cap.side), None));
        }
    }
    if notes.len() == before {
        notes.push(("Warnings: none.".to_string(), None));
    }
    notes.push((
        if report.redacted_headers.is_empty() {
            "Header values are shown in full (--show-secrets).".to_string()
        } else {
            format!(
                "Values of these headers are redacted: {}.",
                report.redacted_headers.join(", ")
            )
        },
        None,
    ));
    notes
}

/// A clock offset in words, after "the backend capture('s clock) is": "0.002 ms ahead of the
/// proxy's (± 0.004 ms, from 3 packets)".
pub(crate) fn clock_words(c: &ClockInfo) -> String {
    format!(
        "{} {} the proxy's (± {}, from {} packets{})",
        duration_words(c.backend_minus_proxy_ms.abs()),
        if c.backend_minus_proxy_ms >= 0.0 {
            "ahead of"
        } else {
            "behind"
        },
        duration_words(c.uncertainty_ms),
        c.samples,
        c.drift_ppm
            .map_or(String::new(), |d| format!("; drift {d:.1} ppm"))
    )
}

impl Analysis {
    /// The first capture's view of a pair (the proxy, or the single capture).
    pub(crate) fn first_view(&self, p: &crate::pair::Pair<usize>) -> Option<&Conn> {
        p.proxy.and_then(|i| self.sides.first()?.connections.get(i))
    }

    /// The second capture's view of a pair (the backend).
    pub(crate) fn second_view(&self, p: &crate::pair::Pair<usize>) -> Option<&Conn> {
        p.backend.and_then(|i| self.sides.get(1)?.connections.get(i))
    }
}

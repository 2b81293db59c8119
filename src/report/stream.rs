//! Writing a report while the captures are read: a [`Writer`] is the pipeline's sink. Each
//! connection becomes a row as soon as it is judged (`Sink::finding`: is it `listed`, its `row`,
//! `write_row`), and then:
//! - NDJSON: the row is written at once;
//! - JSON and the `flows` table: the row goes to a temporary file (a "spill"), and the document is
//!   assembled at the end, when the captures' own facts (packet counts, times, warnings) are known;
//! - text, Markdown, HTML: the failed rows are kept (up to `MAX_FAILED_KEPT`) — and for HTML the
//!   views of the first failed connections, for their ladder diagrams, and healthy rows up to
//!   `MAX_ROWS_KEPT` for its table — everything else is only counted.
//!
//! At the end, [`Writer::finish`] builds the document around the rows (`report`), draws the kept
//! ladders and writes the format.
//!
//! So a report of millions of connections takes memory for the connections in flight and the
//! failed ones kept, not for all of them. Rows come in the order connections were judged
//! (roughly the order they ended), numbered in that order.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::PathBuf;

use super::text::{FlowsTable, Style};
use super::{ConnectionReport, MAX_LADDERS, ReportOptions, RowInput, RowMaker, SideInfo, Tally, is_notable};
use crate::diagnose::Outcome;
use crate::incident::clients::{ClientLimits, ClientMatcher};
use crate::incident::logs::{CaptureSpan, ConnFacts, Matcher};
use crate::incident::window::Window;
use crate::pipeline::{Conn, Finding, RunEnd, Side, Sink};

/// Failed connections a text, Markdown or HTML report keeps in full.
pub(crate) const MAX_FAILED_KEPT: usize = 10_000;
/// Rows (failed first, then healthy) an HTML report's table lists.
pub(crate) const MAX_ROWS_KEPT: usize = 20_000;

/// What the writer produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The `analyze` text report.
    Text,
    /// The `flows` table.
    Flows,
    Json,
    Ndjson,
    Markdown,
    Html,
}

/// The pipeline sink that writes a report (see the module comment).
pub struct Writer<'w> {
    format: Format,
    opts: ReportOptions,
    style: Style,
    maker: RowMaker,
    out: &'w mut dyn Write,
    spill: Option<Spill>,
    kept: Vec<ConnectionReport>,
    kept_failed: usize,
    /// Findings kept whole for their ladder diagram, with their row's index in `kept`.
    ladders: Vec<(usize, Finding)>,
    tally: Tally,
    table: FlowsTable,
    single: bool,
    /// The requests over time and the failures' shape (`analyze` only).
    pattern: Option<super::incident::IncidentBuilder>,
    error: Option<io::Error>,
    /// The incident views (`--proxy-log`, `--since`/`--until`), when asked for.
    incident: Incident,
    /// The client requests of the proxy capture's client side (not for `flows` or NDJSON).
    clients: Option<ClientMatcher>,
}

/// What the writer adds for an incident: log lines matched as connections come, and the window
/// connections must overlap to be reported.
#[derive(Default)]
struct Incident {
    logs: Option<Matcher>,
    window: Window,
    /// Connections judged outside the window (not reported).
    outside: u64,
}

impl<'w> Writer<'w> {
    /// A writer for the sides about to be read (`sides`: which capture, its files).
    pub fn new(
        format: Format,
        sides: Vec<SideInfo>,
        opts: &ReportOptions,
        style: Style,
        out: &'w mut dyn Write,
    ) -> Writer<'w> {
        let single = sides.first().is_some_and(|s| s.side == Side::Single);
        let spill = matches!(format, Format::Json | Format::Flows).then(Spill::create);
        let mut error = None;
        let spill = match spill {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                error = Some(e);
                None
            }
            None => None,
        };
        // NDJSON is one connection a line: no place for the incident view.
        let pattern = (!single && format != Format::Ndjson)
            .then(|| super::incident::IncidentBuilder::new(sides.clone()));
        Writer {
            format,
            opts: opts.clone(),
            style,
            pattern,
            maker: RowMaker::new(sides, opts),
            out,
            spill,
            kept: Vec::new(),
            kept_failed: 0,
            ladders: Vec::new(),
            tally: Tally::default(),
            table: FlowsTable::default(),
            single,
            error,
            incident: Incident::default(),
            // `analyze` only (`flows` reads one capture as a single side).
            clients: (!single && !matches!(format, Format::Flows | Format::Ndjson))
                .then(|| ClientMatcher::new(ClientLimits::default())),
        }
    }

    /// Matches the proxy's error log lines to the connections as they are written (`logs`), and
    /// reports only the connections that overlap `window` (see `incident`).
    pub fn with_incident(mut self, logs: Option<Matcher>, window: Window) -> Writer<'w> {
        self.incident = Incident {
            logs,
            window,
            outside: 0,
        };
        self
    }

    fn fail(&mut self, e: io::Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
    }

    /// Writes the report; returns how many connections failed.
    pub fn finish(mut self, end: RunEnd) -> io::Result<u64> {
        if let Some(e) = self.error.take() {
            return Err(e);
        }
        let mut report = self.report(&end);
        let failed = report.summary.failed;
        match self.format {
            Format::Ndjson => {}
            Format::Json => {
                let spill = self.take_spill()?;
                write_json(&report, spill, self.out)?;
            }
            Format::Flows => {
                let spill = self.take_spill()?;
                super::text::write_flows_header(&report, self.style, self.out)?;
                self.table.write_header(self.style, self.out)?;
                for line in spill.lines()? {
                    let line = line?;
                    let mut cells: [String; 8] = Default::default();
                    for (cell, part) in cells.iter_mut().zip(line.split('\x1f')) {
                        *cell = part.to_string();
                    }
                    self.table.write_cells(&cells, self.out)?;
                }
            }
            Format::Text | Format::Markdown | Format::Html => {
                self.draw_ladders(&end);
                report.connections = std::mem::take(&mut self.kept);
                match self.format {
                    Format::Text => super::text::write_analysis(&report, self.style, self.out)?,
                    Format::Markdown => super::markdown::write_markdown(&report, self.out)?,
                    _ => super::html::write_html(&report, self.out)?,
                }
            }
        }
        self.out.flush()?;
        Ok(failed)
    }

    /// The report around the rows: the captures' facts, the window, the proxy log lines, the
    /// summary, the incident and the client requests (its `connections` left empty).
    fn report(&mut self, end: &RunEnd) -> super::Report {
        let mut report = super::report_header(&end.sides, end.clock, &end.backends, &self.opts);
        if !self.incident.window.is_open() {
            report.window = Some(super::proxy_logs::window_report(
                self.incident.window,
                self.incident.outside,
            ));
        }
        if let Some(m) = self.incident.logs.take() {
            let first = end.sides.first().map(|s| &s.capture);
            let span = CaptureSpan {
                first_ns: first.and_then(|c| c.first_ts_ns),
                last_ns: first.and_then(|c| c.last_ts_ns),
            };
            report.proxy_logs = Some(super::proxy_logs::summary_report(m.finish(span)));
        }
        self.tally.listed = match self.format {
            Format::Json | Format::Ndjson | Format::Flows => self.tally.connections,
            _ => self.kept.len() as u64,
        };
        report.summary = self.tally.summary(self.single);
        report.incident = self.pattern.take().map(super::incident::IncidentBuilder::finish);
        if let Some(m) = self.clients.take() {
            (report.client_requests, report.client_summary) = super::clients::client_section(
                &m.finish(),
                &|id: &str| id.to_string(),
                self.maker.proxy_side(),
                &self.opts.redacted(),
            );
        }
        report
    }

    fn take_spill(&mut self) -> io::Result<Spill> {
        self.spill.take().ok_or_else(|| io::Error::other("no spill file"))
    }

    /// The ladder diagrams of the kept rows whose findings were kept whole for them.
    fn draw_ladders(&mut self, end: &RunEnd) {
        for (i, f) in std::mem::take(&mut self.ladders) {
            if let Some(row) = self.kept.get_mut(i) {
                row.ladder = super::ladder::build(
                    &end.sides,
                    [f.pair.proxy.as_deref(), f.pair.backend.as_deref()],
                    end.clock,
                    f.alignment.as_ref(),
                    f.pair.seq_map,
                );
            }
        }
    }
}

impl Sink for Writer<'_> {
    fn finding(&mut self, f: Finding) {
        if !self.incident.window.is_open()
            && crate::incident::window::span(&f).is_some_and(|(a, b)| !self.incident.window.overlaps(a, b))
        {
            self.incident.outside += 1;
            return;
        }
        let input = RowInput {
            proxy: f.pair.proxy.as_deref(),
            backend: f.pair.backend.as_deref(),
            method: f.pair.method,
            diagnosis: Some(&f.diagnosis),
        };
        let notable = f.diagnosis.verdict.outcome() != Outcome::Ok;
        if !self.listed(notable) {
            // Counted, not made; the pattern, the logs and the client requests still learn of it
            // (the pattern's request count and the client matching are over every connection).
            self.tally.count(&self.maker.counted(&input));
            let id = self.tally.connections.to_string();
            self.learn(&f, &id);
            return;
        }
        let row = self.row(&f, &input);
        if self.error.is_some() {
            return;
        }
        debug_assert_eq!(notable, is_notable(&row));
        if let Err(e) = self.write_row(row, f, notable) {
            self.fail(e);
        }
    }

    fn proxy_connections(&mut self, conns: &[Box<Conn>], pos: i64) {
        self.client_side(conns, pos);
    }
}

impl Writer<'_> {
    /// For [`Sink::proxy_connections`].
    fn client_side(&mut self, conns: &[Box<Conn>], pos: i64) {
        if let Some(m) = &mut self.clients {
            m.proxy_connections(conns, pos);
        }
    }

    /// Does the report list this connection? Text, Markdown and HTML list only some rows: the
    /// others are counted, not made.
    fn listed(&self, notable: bool) -> bool {
        match self.format {
            Format::Json | Format::Ndjson | Format::Flows => true,
            Format::Text | Format::Markdown => notable && self.kept_failed < MAX_FAILED_KEPT,
            Format::Html => {
                if notable {
                    self.kept_failed < MAX_FAILED_KEPT
                } else {
                    self.kept.len() < MAX_ROWS_KEPT
                }
            }
        }
    }

    /// The connection's row, counted and numbered, with its log lines; the incident and the
    /// client requests learn of it.
    fn row(&mut self, f: &Finding, input: &RowInput<'_>) -> ConnectionReport {
        let (_, mut row) = self.maker.row(input, f.clock);
        self.tally.add(&row);
        row.id = self.tally.connections.to_string();
        row.log_lines = self.learn(f, &row.id);
        row
    }

    /// The connection numbered `id` (listed or only counted) to the pattern, the client matcher
    /// and the proxy logs; the log lines it takes, for its row.
    fn learn(&mut self, f: &Finding, id: &str) -> Vec<super::model::LogLineReport> {
        if let Some(b) = self.pattern.as_mut() {
            let (p, bk) = (f.pair.proxy.as_deref(), f.pair.backend.as_deref());
            b.add(p, bk, Some(&f.diagnosis), f.clock, self.tally.connections);
        }
        if let Some(m) = &mut self.clients {
            m.backend_connection(id, f.pair.proxy.as_deref(), &f.diagnosis);
        }
        match &mut self.incident.logs {
            Some(m) if !m.is_empty() => ConnFacts::of(f, id)
                .map(|facts| super::proxy_logs::attached(&m.take(&facts)))
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }

    /// Writes a row (NDJSON), spills it (JSON, `flows`) or keeps it (text, Markdown, HTML; for
    /// HTML, the finding too, for its ladder diagram).
    fn write_row(&mut self, row: ConnectionReport, f: Finding, notable: bool) -> io::Result<()> {
        match self.format {
            Format::Ndjson => serde_json::to_writer(&mut *self.out, &row)
                .map_err(io::Error::from)
                .and_then(|()| self.out.write_all(b"\n")),
            Format::Json => {
                let first = self.tally.connections == 1;
                self.spill.as_mut().map_or(Ok(()), |s| s.push_pretty(&row, first))
            }
            Format::Flows => match FlowsTable::cells(&row) {
                // The table needs only its cells: they are spilled as one line, separated by
                // the unit separator (no cell holds control characters).
                Some(cells) => {
                    self.table.observe_cells(&cells);
                    let line = cells.map(|c| c.replace(['\x1f', '\n'], " ")).join("\x1f");
                    self.spill.as_mut().map_or(Ok(()), |s| s.push_line(&line))
                }
                None => Ok(()),
            },
            Format::Text | Format::Markdown => {
                if notable && self.kept_failed < MAX_FAILED_KEPT {
                    self.kept_failed += 1;
                    self.kept.push(row);
                }
                Ok(())
            }
            Format::Html => {
                if notable && self.kept_failed < MAX_FAILED_KEPT {
                    self.kept_failed += 1;
                    self.kept.push(row);
                    if self.opts.ladders && self.ladders.len() < MAX_LADDERS {
                        self.ladders.push((self.kept.len() - 1, f));
                    }
                } else if !notable && self.kept.len() < MAX_ROWS_KEPT {
                    self.kept.push(row);
                }
                Ok(())
            }
        }
    }
}

/// The JSON document, streamed: the report's fields as `serde` writes them (pretty-printed), the
/// items of its `connections` list (empty in the report) copied from the spill, already
/// pretty-printed, indented and separated.
fn write_json(report: &super::Report, spill: Spill, out: &mut dyn Write) -> io::Result<()> {
    use serde::Serialize;
    let mut spill = Some(spill);
    let formatter = WithConnections {
        pretty: serde_json::ser::PrettyFormatter::new(),
        depth: 0,
        key: None,
        here: false,
        close: false,
        spill: &mut spill,
    };
    let mut ser = serde_json::Serializer::with_formatter(&mut *out, formatter);
    report.serialize(&mut ser).map_err(io::Error::from)?;
    if spill.is_some() {
        return Err(io::Error::other("the report has no connections field"));
    }
    out.write_all(b"\n")
}

/// serde_json's pretty formatter, which writes the spill's rows as the items of the document's
/// top-level `connections` list (known by its key as it is written).
struct WithConnections<'s> {
    pretty: serde_json::ser::PrettyFormatter<'static>,
    /// Objects open.
    depth: usize,
    /// The key being written, at the top level.
    key: Option<String>,
    /// The value coming is the connections list.
    here: bool,
    /// The list just opened got rows: its end goes on a line of its own.
    close: bool,
    spill: &'s mut Option<Spill>,
}

impl serde_json::ser::Formatter for WithConnections<'_> {
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth += 1;
        self.pretty.begin_object(w)
    }

    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.depth -= 1;
        self.pretty.end_object(w)
    }

    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if self.depth == 1 {
            self.key = Some(String::new());
        }
        self.pretty.begin_object_key(w, first)
    }

    fn write_string_fragment<W: ?Sized + Write>(&mut self, w: &mut W, fragment: &str) -> io::Result<()> {
        if let Some(k) = &mut self.key {
            k.push_str(fragment);
        }
        self.pretty.write_string_fragment(w, fragment)
    }

    fn end_object_key<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.here = self.key.take().is_some_and(|k| k == "connections");
        self.pretty.end_object_key(w)
    }

    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_object_value(w)
    }

    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.here = false;
        self.pretty.end_object_value(w)
    }

    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.begin_array(w)?;
        if std::mem::take(&mut self.here) {
            if let Some(spill) = self.spill.take() {
                self.close = spill.copy_to(w)? > 0;
            }
        }
        Ok(())
    }

    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        if std::mem::take(&mut self.close) {
            // The list is empty to serde: the formatter would close it on the same line.
            w.write_all(b"\n  ")?;
        }
        self.pretty.end_array(w)
    }

    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.pretty.begin_array_value(w, first)
    }

    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.pretty.end_array_value(w)
    }
}

/// Rows on disk (one compact JSON object a line, or a JSON document's pretty-printed array
/// items, or table cells); the file is removed when dropped.
struct Spill {
    path: PathBuf,
    file: Option<BufWriter<File>>,
}

impl Spill {
    fn create() -> io::Result<Spill> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "bothends-{}-{}.rows",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let file = File::create(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))?;
        Ok(Spill {
            path,
            file: Some(BufWriter::new(file)),
        })
    }

    /// A row as an item of the document's `connections` array: a separator unless `first`, then
    /// the row pretty-printed and indented for its place (four spaces).
    fn push_pretty(&mut self, row: &ConnectionReport, first: bool) -> io::Result<()> {
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        let pretty = serde_json::to_vec_pretty(row).map_err(io::Error::from)?;
        f.write_all(if first { b"\n    " } else { b",\n    " })?;
        let mut rest = &pretty[..];
        while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
            f.write_all(&rest[..=nl])?;
            f.write_all(b"    ")?;
            rest = &rest[nl + 1..];
        }
        f.write_all(rest)
    }

    /// Ends the writing (flushes what is buffered) and opens the file to read it.
    fn reopen(&mut self) -> io::Result<File> {
        if let Some(f) = self.file.take() {
            f.into_inner().map_err(|e| e.into_error())?.flush()?;
        }
        File::open(&self.path)
    }

    /// Copies everything written to `out`; returns how many bytes.
    fn copy_to<W: Write + ?Sized>(mut self, out: &mut W) -> io::Result<u64> {
        io::copy(&mut self.reopen()?, out)
    }

    fn push_line(&mut self, line: &str) -> io::Result<()> {
        let Some(f) = self.file.as_mut() else {
            return Ok(());
        };
        f.write_all(line.as_bytes())?;
        f.write_all(b"\n")
    }

    /// The lines written, in order.
    fn lines(mut self) -> io::Result<impl Iterator<Item = io::Result<String>>> {
        let reader = BufReader::new(self.reopen()?);
        // Keep `self` alive in the iterator so the file is removed after it is read.
        Ok(reader.lines().inspect(move |_| {
            let _keep = &self;
        }))
    }
}

impl Drop for Spill {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

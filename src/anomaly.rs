//! Anomalies are data: odd traffic or odd captures, counted under stable snake_case names with the
//! first few frames where each was seen (in the spirit of Zeek's "weirds"). They never stop the
//! analysis; the report shows them.
//!
//! An anomaly is an [`AnomalyKind`], looked up by kind ([`Anomalies::count_of`]), never by its
//! name: the name is for the reports, and the JSON schema lists every one ([`AnomalyKind::ALL`]).

use crate::capture::FrameRef;

/// How many example frames an anomaly keeps.
pub const EXAMPLES: usize = 3;

/// Every kind of anomaly, named by [`AnomalyKind::name`]: the stable snake_case name the report
/// shows. `tcp_*` are noted by `tcp`, `http_*` by `http`, the others by the connection table
/// (`connection_*`, `icmp_*`) and the pipeline (`malformed_packet`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AnomalyKind {
    ConnectionLimit,
    ConnectionTableFull,
    ConnectionTableMemory,
    IcmpForUnknownConnection,
    MalformedPacket,
    TcpSynWithRstOrFin,
    TcpUnexpectedSyn,
    TcpRstWithData,
    TcpDataAfterClose,
    TcpOverlapConflict,
    TcpReassemblyBufferFull,
    HttpBadRequestLine,
    HttpBadStatusLine,
    HttpBadHeader,
    HttpHeaderTooLong,
    HttpLowerCaseVersion,
    HttpBadContentLength,
    HttpBadTransferEncoding,
    HttpTeAndCl,
    HttpResponseFramingGuessed,
    HttpBadChunkSize,
    HttpChunkSizeTooLarge,
    HttpChunkLineTooLong,
    HttpBadChunkEnd,
    HttpTrailersTooLong,
    HttpExchangeLimit,
    HttpInterimLimit,
    HttpPipelineLimit,
    HttpRequestNotCaptured,
    HttpResponseNotCaptured,
    HttpResponseWithoutRequest,
    HttpResponseUnpaired,
}

impl AnomalyKind {
    /// Every kind, in the order of the list above.
    pub const ALL: [AnomalyKind; 32] = [
        AnomalyKind::ConnectionLimit,
        AnomalyKind::ConnectionTableFull,
        AnomalyKind::ConnectionTableMemory,
        AnomalyKind::IcmpForUnknownConnection,
        AnomalyKind::MalformedPacket,
        AnomalyKind::TcpSynWithRstOrFin,
        AnomalyKind::TcpUnexpectedSyn,
        AnomalyKind::TcpRstWithData,
        AnomalyKind::TcpDataAfterClose,
        AnomalyKind::TcpOverlapConflict,
        AnomalyKind::TcpReassemblyBufferFull,
        AnomalyKind::HttpBadRequestLine,
        AnomalyKind::HttpBadStatusLine,
        AnomalyKind::HttpBadHeader,
        AnomalyKind::HttpHeaderTooLong,
        AnomalyKind::HttpLowerCaseVersion,
        AnomalyKind::HttpBadContentLength,
        AnomalyKind::HttpBadTransferEncoding,
        AnomalyKind::HttpTeAndCl,
        AnomalyKind::HttpResponseFramingGuessed,
        AnomalyKind::HttpBadChunkSize,
        AnomalyKind::HttpChunkSizeTooLarge,
        AnomalyKind::HttpChunkLineTooLong,
        AnomalyKind::HttpBadChunkEnd,
        AnomalyKind::HttpTrailersTooLong,
        AnomalyKind::HttpExchangeLimit,
        AnomalyKind::HttpInterimLimit,
        AnomalyKind::HttpPipelineLimit,
        AnomalyKind::HttpRequestNotCaptured,
        AnomalyKind::HttpResponseNotCaptured,
        AnomalyKind::HttpResponseWithoutRequest,
        AnomalyKind::HttpResponseUnpaired,
    ];

    /// The stable snake_case name (the report's `anomalies[].name`).
    pub fn name(self) -> &'static str {
        match self {
            AnomalyKind::ConnectionLimit => "connection_limit",
            AnomalyKind::ConnectionTableFull => "connection_table_full",
            AnomalyKind::ConnectionTableMemory => "connection_table_memory",
            AnomalyKind::IcmpForUnknownConnection => "icmp_for_unknown_connection",
            AnomalyKind::MalformedPacket => "malformed_packet",
            AnomalyKind::TcpSynWithRstOrFin => "tcp_syn_with_rst_or_fin",
            AnomalyKind::TcpUnexpectedSyn => "tcp_unexpected_syn",
            AnomalyKind::TcpRstWithData => "tcp_rst_with_data",
            AnomalyKind::TcpDataAfterClose => "tcp_data_after_close",
            AnomalyKind::TcpOverlapConflict => "tcp_overlap_conflict",
            AnomalyKind::TcpReassemblyBufferFull => "tcp_reassembly_buffer_full",
            AnomalyKind::HttpBadRequestLine => "http_bad_request_line",
            AnomalyKind::HttpBadStatusLine => "http_bad_status_line",
            AnomalyKind::HttpBadHeader => "http_bad_header",
            AnomalyKind::HttpHeaderTooLong => "http_header_too_long",
            AnomalyKind::HttpLowerCaseVersion => "http_lower_case_version",
            AnomalyKind::HttpBadContentLength => "http_bad_content_length",
            AnomalyKind::HttpBadTransferEncoding => "http_bad_transfer_encoding",
            AnomalyKind::HttpTeAndCl => "http_te_and_cl",
            AnomalyKind::HttpResponseFramingGuessed => "http_response_framing_guessed",
            AnomalyKind::HttpBadChunkSize => "http_bad_chunk_size",
            AnomalyKind::HttpChunkSizeTooLarge => "http_chunk_size_too_large",
            AnomalyKind::HttpChunkLineTooLong => "http_chunk_line_too_long",
            AnomalyKind::HttpBadChunkEnd => "http_bad_chunk_end",
            AnomalyKind::HttpTrailersTooLong => "http_trailers_too_long",
            AnomalyKind::HttpExchangeLimit => "http_exchange_limit",
            AnomalyKind::HttpInterimLimit => "http_interim_limit",
            AnomalyKind::HttpPipelineLimit => "http_pipeline_limit",
            AnomalyKind::HttpRequestNotCaptured => "http_request_not_captured",
            AnomalyKind::HttpResponseNotCaptured => "http_response_not_captured",
            AnomalyKind::HttpResponseWithoutRequest => "http_response_without_request",
            AnomalyKind::HttpResponseUnpaired => "http_response_unpaired",
        }
    }
}

/// The JSON Schema of an anomaly's name in the report (`AnomalyItem.name`): a string, one of
/// the names of [`AnomalyKind::ALL`], so the schema lists them.
pub(crate) fn name_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = AnomalyKind::ALL.iter().map(|k| k.name()).collect();
    schemars::json_schema!({ "type": "string", "enum": names })
}

/// The JSON Schema of an optional anomaly name: one of the names of [`AnomalyKind::ALL`], or null.
pub(crate) fn optional_name_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut names: Vec<serde_json::Value> = AnomalyKind::ALL.iter().map(|k| k.name().into()).collect();
    names.push(serde_json::Value::Null);
    schemars::json_schema!({ "type": ["string", "null"], "enum": names })
}

/// One kind of anomaly: which, how often, and the first frames where it was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Anomaly {
    pub kind: AnomalyKind,
    pub count: u64,
    pub frames: Vec<FrameRef>,
}

impl Anomaly {
    /// Its stable snake_case name.
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
}

/// A small set of anomalies (a connection rarely has more than a few kinds).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Anomalies(Vec<Anomaly>);

impl Anomalies {
    /// Heap bytes held (the kinds and their example frames).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.0.capacity() * std::mem::size_of::<Anomaly>()
            + self
                .0
                .iter()
                .map(|a| a.frames.capacity() * std::mem::size_of::<FrameRef>())
                .sum::<usize>()
    }

    /// Counts one anomaly of `kind`, keeping `frame` among the first examples.
    pub fn note(&mut self, kind: AnomalyKind, frame: Option<FrameRef>) {
        let a = match self.0.iter_mut().find(|a| a.kind == kind) {
            Some(a) => a,
            None => {
                self.0.push(Anomaly {
                    kind,
                    count: 0,
                    frames: Vec::new(),
                });
                self.0.last_mut().expect("just pushed")
            }
        };
        a.count += 1;
        if let Some(f) = frame {
            if a.frames.len() < EXAMPLES {
                a.frames.push(f);
            }
        }
    }

    /// How many anomalies of `kind` were noted.
    pub fn count_of(&self, kind: AnomalyKind) -> u64 {
        self.0.iter().find(|a| a.kind == kind).map_or(0, |a| a.count)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Anomaly> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds another set's counts into this one (for per-capture totals).
    pub fn merge(&mut self, other: &Anomalies) {
        for a in &other.0 {
            match self.0.iter_mut().find(|b| b.kind == a.kind) {
                Some(b) => {
                    b.count += a.count;
                    for f in &a.frames {
                        if b.frames.len() < EXAMPLES {
                            b.frames.push(*f);
                        }
                    }
                }
                None => self.0.push(a.clone()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_keeps_the_first_examples() {
        let mut a = Anomalies::default();
        for i in 1..=5 {
            a.note(
                AnomalyKind::TcpUnexpectedSyn,
                Some(FrameRef { file: 0, frame: i }),
            );
        }
        a.note(AnomalyKind::HttpBadHeader, None);
        assert_eq!(a.count_of(AnomalyKind::TcpUnexpectedSyn), 5);
        assert_eq!(a.count_of(AnomalyKind::HttpBadHeader), 1);
        assert_eq!(a.count_of(AnomalyKind::TcpRstWithData), 0);
        let first = a.iter().next().unwrap();
        assert_eq!(
            first.frames.iter().map(|f| f.frame).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
    }

    #[test]
    fn names_are_snake_case_and_distinct() {
        let mut seen = std::collections::HashSet::new();
        for k in AnomalyKind::ALL {
            let n = k.name();
            assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "{n}");
            assert!(seen.insert(n), "{n} twice");
        }
    }
}

//! Anomalies are data: odd traffic or odd captures, counted under stable snake_case names with the
//! first few frames where each was seen (in the spirit of Zeek's "weirds"). They never stop the
//! analysis; the report shows them.
//!
//! An anomaly is an [`AnomalyKind`], looked up by kind ([`Anomalies::count_of`]), never by its
//! name: the name is for the reports, and the JSON schema lists every one ([`AnomalyKind::ALL`]).

use crate::capture::FrameRef;

/// How many example frames an anomaly keeps.
pub const EXAMPLES: usize = 3;

named_kinds! {
    /// Every kind of anomaly, named by [`AnomalyKind::name`]: the stable snake_case name the report
    /// shows. `tcp_*` are noted by `tcp`, `http_*` by `http`, the others by the connection table
    /// (`connection_*`, `icmp_*`) and the pipeline (`malformed_packet`).
    pub enum AnomalyKind {
        ConnectionLimit => "connection_limit",
        ConnectionTableFull => "connection_table_full",
        ConnectionTableMemory => "connection_table_memory",
        IcmpForUnknownConnection => "icmp_for_unknown_connection",
        MalformedPacket => "malformed_packet",
        TcpSynWithRstOrFin => "tcp_syn_with_rst_or_fin",
        TcpUnexpectedSyn => "tcp_unexpected_syn",
        TcpRstWithData => "tcp_rst_with_data",
        TcpDataAfterClose => "tcp_data_after_close",
        TcpOverlapConflict => "tcp_overlap_conflict",
        TcpReassemblyBufferFull => "tcp_reassembly_buffer_full",
        HttpBadRequestLine => "http_bad_request_line",
        HttpBadStatusLine => "http_bad_status_line",
        HttpBadHeader => "http_bad_header",
        HttpHeaderTooLong => "http_header_too_long",
        HttpLowerCaseVersion => "http_lower_case_version",
        HttpBadContentLength => "http_bad_content_length",
        HttpBadTransferEncoding => "http_bad_transfer_encoding",
        HttpTeAndCl => "http_te_and_cl",
        HttpResponseFramingGuessed => "http_response_framing_guessed",
        HttpBadChunkSize => "http_bad_chunk_size",
        HttpChunkSizeTooLarge => "http_chunk_size_too_large",
        HttpChunkLineTooLong => "http_chunk_line_too_long",
        HttpBadChunkEnd => "http_bad_chunk_end",
        HttpTrailersTooLong => "http_trailers_too_long",
        HttpExchangeLimit => "http_exchange_limit",
        HttpInterimLimit => "http_interim_limit",
        HttpPipelineLimit => "http_pipeline_limit",
        HttpRequestNotCaptured => "http_request_not_captured",
        HttpResponseNotCaptured => "http_response_not_captured",
        HttpResponseWithoutRequest => "http_response_without_request",
        HttpResponseUnpaired => "http_response_unpaired",
    }
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
}

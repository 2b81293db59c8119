//! The report model: what every format shows, as plain serde types. JSON is this model as is
//! (the contract of DESIGN.md: field names only grow); the other formats render it.

use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// Bump when a field changes name or meaning (adding fields does not).
pub const SCHEMA: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub tool: String,
    pub version: String,
    pub schema: u32,
    pub captures: Vec<CaptureInfo>,
    pub clock_offset: Option<ClockInfo>,
    /// The backend endpoints the connections were selected by, as each capture sees them (they
    /// differ through NAT); empty for `flows`.
    pub backends: IndexMap<String, Vec<String>>,
    pub connections: Vec<ConnectionReport>,
    pub summary: Summary,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaptureInfo {
    /// "proxy", "backend" or "single".
    pub side: String,
    pub files: Vec<String>,
    pub packets: u64,
    pub link_types: Vec<String>,
    pub first_time: Option<String>,
    pub last_time: Option<String>,
    pub warnings: Vec<String>,
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
    pub anomalies: Vec<AnomalyItem>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub not_ip: u64,
    pub not_tcp: u64,
    pub ip_fragments: u64,
    pub malformed: u64,
    pub unsupported_link: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClockInfo {
    pub backend_minus_proxy_ms: f64,
    pub samples: u64,
    /// The offset lies within ± this many milliseconds.
    pub uncertainty_ms: f64,
    /// Drift between the two clocks over the captures, parts per million (null: not measurable).
    pub drift_ppm: Option<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConnectionReport {
    pub id: String,
    /// One entry per capture the connection was seen in, keyed by side.
    pub views: IndexMap<String, View>,
    pub start: Option<String>,
    pub verdict: Option<String>,
    pub blame: Option<String>,
    pub explanation: Option<String>,
    pub next_step: Option<String>,
    pub evidence: Vec<EvidenceItem>,
    pub exchanges: Vec<ExchangeReport>,
    /// How the views were matched across the captures (null with one capture).
    pub pairing: Option<String>,
    /// Wireshark display filters that isolate this connection, per side.
    pub filters: IndexMap<String, String>,
    /// "http", "tls", "other" or "empty".
    pub protocol: String,
    pub anomalies: Vec<AnomalyItem>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct View {
    pub client: String,
    pub server: String,
    pub first_frame: u64,
    pub last_frame: u64,
    /// The files holding first_frame and last_frame, when the side has several files.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_file: Option<String>,
    pub bytes: DirCounts,
    pub gaps: DirCounts,
    pub retransmissions: DirCounts,
    /// Bytes the receiver acknowledged that this capture never saw (capture drops).
    pub acked_unseen: DirCounts,
    pub packets: u64,
    pub duration_ms: f64,
    /// Zeek conn_state and history.
    pub state: String,
    pub history: String,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirCounts {
    pub client_to_server: u64,
    pub server_to_client: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvidenceItem {
    pub capture: String,
    pub frame: u64,
    pub what: String,
    pub time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExchangeReport {
    pub method: Option<String>,
    pub target: Option<String>,
    pub request_bytes: u64,
    pub request_complete: bool,
    pub status: Option<u16>,
    pub response_bytes: u64,
    pub response_complete: bool,
    /// Interim (1xx) statuses before the final response.
    pub interim: Vec<u16>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnomalyItem {
    pub name: String,
    pub count: u64,
    /// The first frames where it was seen (frame numbers of this view's capture).
    pub frames: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub connections: u64,
    pub by_verdict: IndexMap<String, u64>,
    pub by_blame: IndexMap<String, u64>,
    /// Connections whose verdict is a failure.
    pub failed: u64,
}

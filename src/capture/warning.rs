//! Warnings: problems with a capture (or a proxy log) that did not stop the analysis, each of a
//! [`WarningKind`] with a stable name, the file and frame (or log line) when known, and the
//! sentence the text reports show.

named_kinds! {
    /// What a warning is about, named by [`WarningKind::name`] (the report's
    /// `warning_details[].kind`).
    pub enum WarningKind {
        /// A record or block cannot be read (its length is impossible, it is malformed, it claims
        /// more than the record cap, or it declares a pcapng version that does not exist):
        /// reading the file stopped there, the frames before it are kept.
        FileDamaged => "file-damaged",
        /// The file ends inside a record or block, usually because the capture was interrupted
        /// while writing (tcpdump killed): reading stopped there, the frames before it are kept.
        FileEndsMidRecord => "file-ends-mid-record",
        /// Reading the file failed (an I/O error, or the reader made no progress): reading stopped.
        ReadError => "read-error",
        /// The gzip data is damaged, or followed by bytes that are not gzip: reading stopped there.
        GzipDamaged => "gzip-damaged",
        /// The gzip data expanded more than the allowed ratio (a decompression bomb): reading
        /// stopped there.
        DecompressionBomb => "decompression-bomb",
        /// A pcapng packet block names an interface that no interface description declared (or
        /// comes before any): the frame is skipped.
        UndeclaredInterface => "undeclared-interface",
        /// An interface or a packet has a link type bothends does not read: its packets are skipped.
        UnsupportedLinkType => "unsupported-link-type",
        /// A pcapng interface declares an impossible timestamp resolution: its packets get time 0.
        BadTimestampResolution => "bad-timestamp-resolution",
        /// The capturing host's interface statistics (pcapng) say it dropped packets: some
        /// packets on the wire are not in the file.
        DropsReported => "drops-reported",
        /// A packet's headers cannot be decoded (a length that lies, a truncated header): the
        /// packet is skipped (also the anomaly `malformed_packet`).
        MalformedPacket => "malformed-packet",
        /// More malformed packets than the warnings list: how many were not listed.
        MoreMalformedPackets => "more-malformed-packets",
        /// More warnings in one file than it keeps: how many were not shown.
        MoreWarnings => "more-warnings",
        /// More connections were open at once than the connection table holds: some were judged
        /// before their end to make room (anomaly `connection_table_full`).
        ConnectionTableFull => "connection-table-full",
        /// The connections open at once took more memory than the table's cap: some were judged
        /// before their end to make room (anomaly `connection_table_memory`).
        ConnectionTableMemory => "connection-table-memory",
        /// More connections than the analysis keeps: packets of later ones were counted, not
        /// analysed (anomaly `connection_limit`).
        ConnectionLimit => "connection-limit",
        /// Connections waiting for their counterpart in the other capture took more than the
        /// memory cap: some stopped waiting early and may be reported as seen at one end only.
        PairingMemoryCap => "pairing-memory-cap",
        /// Empty replies on reused connections waiting to be judged took more than the memory
        /// cap: some were judged before the backends' keep-alive timeouts were known.
        JudgingMemoryCap => "judging-memory-cap",
        /// A proxy log could not be read to its end (an I/O error): the rest is not read.
        LogReadError => "log-read-error",
        /// A proxy log line is longer than the line cap: it was read up to the cap.
        LogLineTooLong => "log-line-too-long",
        /// A proxy log line is in neither format, or its time cannot be read: it is skipped.
        LogLineUnreadable => "log-line-unreadable",
        /// No line of a proxy log is an Apache or nginx error log line.
        LogFormatUnknown => "log-format-unknown",
        /// More error lines than are kept for matching: the rest are counted, not matched.
        LogLinesCap => "log-lines-cap",
    }
}

/// One warning: what kind, where, and the sentence the reports show (which names the file and
/// frame or line itself).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Warning {
    pub kind: WarningKind,
    /// The capture or log file, as given (None when the warning is about a whole side).
    pub file: Option<String>,
    /// The 1-based frame number in `file` (Wireshark's `frame.number`), when about one frame.
    pub frame: Option<u64>,
    /// The 1-based line number in `file`, for a proxy log warning about one line.
    pub line: Option<u64>,
    pub text: String,
}

impl Warning {
    /// A warning about `file` (no frame or line).
    pub fn new(kind: WarningKind, file: &str, text: String) -> Warning {
        Warning {
            kind,
            file: Some(file.to_string()),
            frame: None,
            line: None,
            text,
        }
    }

    /// A warning about a whole side (its files are named in the text).
    pub fn side(kind: WarningKind, text: String) -> Warning {
        Warning {
            kind,
            file: None,
            frame: None,
            line: None,
            text,
        }
    }

    /// The same warning, about frame `frame` of its file.
    pub fn at_frame(self, frame: u64) -> Warning {
        Warning {
            frame: Some(frame),
            ..self
        }
    }

    /// The same warning, about line `line` of its file.
    pub fn at_line(self, line: u64) -> Warning {
        Warning {
            line: Some(line),
            ..self
        }
    }
}

/// The warning's sentence.
impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

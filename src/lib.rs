//! # bothends
//!
//! Reads captures taken on a reverse proxy and on its backend, finds the same TCP connection in
//! both, and says who broke the request — the proxy, the backend, or the network between them —
//! with frame numbers as evidence.
//!
//! ```text
//!  proxy capture(s)                       backend capture(s)
//!        │                                       │            (read in parallel, one thread each)
//!   capture   files → Packet                capture
//!   decode    Packet → Segment              decode
//!   tcp       Segments → Connection         tcp
//!   http      byte streams → Exchange       http
//!        └──────────────┬────────────────────────┘
//!   pair      Connection ↔ Connection, clock offset, sent vs arrived byte ranges
//!   diagnose  paired (or single) timelines → Verdict, blame, evidence
//!   incident  judged connections → proxy log lines, client requests (the proxy capture's
//!             client side), requests over time, the failures' shape and patterns
//!   report    text, JSON, NDJSON, Markdown, HTML
//! ```
//!
//! Each stage is a module with plain data types between stages, and data flows forward only
//! (ARCHITECTURE.md has the picture and where each fact lives); [`pipeline`] runs them. The
//! command-line tool (`src/main.rs`) only parses arguments and calls [`pipeline`] and [`report`].
//!
//! Memory grows with the number of open connections and the headers being parsed, not with the
//! size of the captures: payload is not kept once it has been parsed.

/// An enum of kinds, each with a stable name (for the reports), the list of them all, and the JSON
/// Schema of a name (a string, one of the names, so the schema lists them). Used for the anomalies
/// ([`anomaly::AnomalyKind`], snake_case names), the capture warnings ([`capture::WarningKind`])
/// and the HTTP stop reasons ([`http::StopKind`]), kebab-case names.
macro_rules! named_kinds {
    ($(#[$m:meta])* pub enum $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal,)* }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $($(#[$vm])* $v,)* }

        impl $name {
            /// Every kind, in the order of the list above.
            pub const ALL: &'static [$name] = &[$($name::$v,)*];

            /// The stable name the reports show.
            pub fn name(self) -> &'static str {
                match self { $($name::$v => $s,)* }
            }

            /// The JSON Schema of a name: a string, one of the names of `ALL`.
            pub(crate) fn name_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                let names: Vec<&str> = Self::ALL.iter().map(|k| k.name()).collect();
                schemars::json_schema!({ "type": "string", "enum": names })
            }
        }
    };
}

pub mod anomaly;
pub mod capture;
pub mod decode;
pub mod diagnose;
pub mod http;
pub mod incident;
pub mod pair;
pub mod pipeline;
pub mod report;
pub mod tcp;
pub mod time;

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    /// Every name is lower-case words joined by `sep`, and none is there twice.
    fn assert_names(names: impl Iterator<Item = &'static str>, sep: u8) {
        let mut seen = HashSet::new();
        for n in names {
            assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b == sep), "{n}");
            assert!(seen.insert(n), "{n} twice");
        }
    }

    #[test]
    fn kind_names_are_distinct_and_in_their_case() {
        assert_names(crate::anomaly::AnomalyKind::ALL.iter().map(|k| k.name()), b'_');
        assert_names(crate::capture::WarningKind::ALL.iter().map(|k| k.name()), b'-');
        assert_names(crate::http::StopKind::ALL.iter().map(|k| k.name()), b'-');
    }
}

//! # incident: from judged connections to what the incident looks like
//!
//! The stages before this one judge proxy→backend connections one by one. An incident starts from
//! what clients saw and what the proxy logged; this stage ties those to the connections:
//! - [`clients`]: each request a client sent to the proxy (when the proxy capture holds the
//!   proxy's client side, `tcpdump -i any`), next to the backend connection(s) the proxy used for
//!   it and their verdicts — or none, when the proxy answered it itself.

pub mod clients;

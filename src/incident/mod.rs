//! # incident: from judged connections to what the user starts from in an incident
//!
//! The stages before judge connections one by one; this layer ties them to what an on-call
//! engineer has in hand: the proxy's error log lines (`logs`), and the minutes of the incident
//! (`window`). It reads judged connections ([`crate::pipeline::Finding`]) and never changes a
//! verdict; the report shows what it found beside the verdicts.

pub mod logs;
pub mod window;

//! What the matcher gives: the client requests kept in full, and counts over all of them.

use std::collections::BTreeMap;

use super::read::ClientRequest;

/// Counts over every client request (listed or not).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientSummary {
    /// Client-side connections that carried HTTP, and that carried TLS (requests not visible).
    pub http_connections: u64,
    pub tls_connections: u64,
    pub requests: u64,
    /// Requests kept in full ([`ClientRequests::requests`]).
    pub listed: u64,
    /// By final status (None: no status line).
    pub by_status: BTreeMap<Option<u16>, u64>,
    pub answered_by_backend: u64,
    pub answered_by_proxy: u64,
    /// Of those answered by the proxy: without any backend traffic.
    pub proxy_without_backend: u64,
    pub not_found: u64,
    /// Requests that got a complete answer below 400 after the report had listed
    /// [`super::ClientLimits::max_listed_ok`] of them: counted by status, not matched.
    pub plain_not_matched: u64,
    /// Requests with at least one failed attempt.
    pub with_failed_attempt: u64,
    /// Requests decided before the end of the captures (horizon or table full).
    pub decided_early: u64,
    /// Attempts (backend exchanges, failed connections) matched to no client request.
    pub attempts_without_request: u64,
}

/// The client requests: those kept in full, in order of their first packet, and the counts.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientRequests {
    pub requests: Vec<ClientRequest>,
    pub summary: ClientSummary,
}

impl ClientRequests {
    /// The capture held a client side at all.
    pub fn seen(&self) -> bool {
        self.summary.http_connections + self.summary.tls_connections > 0
    }
}

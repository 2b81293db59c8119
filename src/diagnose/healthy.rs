//! What the diagnosis considers "nothing to explain" in one capture's view of a connection.

use crate::http::Conn;

/// Nothing in this capture's view of the connection hints at a failure: handshake and FINs both
/// ways, no RST, every exchange complete, no retransmission, gap, zero window or anomaly: nothing
/// for the diagnosis to explain from this view. The reader drops what such a connection keeps only
/// for reports about failures (its packet log, most HTTP headers) as soon as it finishes; a
/// connection that failed only in the other capture's view is then drawn from that view alone.
pub(crate) fn looks_healthy(c: &Conn) -> bool {
    c.syn.is_some()
        && c.syn_ack.is_some()
        && c.anomalies.is_empty()
        && c.app.anomalies.is_empty()
        && c.dirs.iter().all(|d| {
            d.fin.is_some()
                && d.rst.is_none()
                && d.retransmissions == 0
                && d.gaps == 0
                && d.acked_unseen == 0
                && d.zero_window.is_none()
        })
        && c.app.exchanges.iter().all(|e| {
            e.request.as_ref().is_some_and(|m| m.complete) && e.response.as_ref().is_some_and(|m| m.complete)
        })
}

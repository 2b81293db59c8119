//! How the two views of a paired connection number the same bytes.

use crate::http::Conn;

/// How the proxy capture's and the backend capture's views of one connection number the same
/// bytes, per direction (client→server, server→client). Each view counts offsets from its own
/// origin (the first sequence number it saw: the views' origins differ when a capture started
/// mid-connection), and a sequence-rewriting firewall shifts the raw numbers by a constant per
/// direction. Built once, when the pair is matched; the default maps nothing (one view only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqMap {
    /// Proxy-view offset minus backend-view offset of the same byte, per direction; None where a
    /// view has no origin.
    delta: [Option<i64>; 2],
}

impl SeqMap {
    /// The map between the views `p` (proxy capture) and `b` (backend capture), whose raw
    /// sequence numbers differ by `shift` per direction (backend minus proxy; zero unless a
    /// firewall rewrote them).
    pub(crate) fn new(p: &Conn, b: &Conn, shift: [u32; 2]) -> SeqMap {
        let delta = [0, 1].map(|d| {
            let (po, bo) = (p.dirs[d].origin?, b.dirs[d].origin?);
            // A byte's raw number is `origin + offset` in each view, and `backend = proxy + shift`.
            Some(bo.wrapping_sub(po).wrapping_sub(shift[d]) as i32 as i64)
        });
        SeqMap { delta }
    }

    /// A backend-view offset of direction `d` in the proxy view's numbering.
    pub(crate) fn to_proxy(self, d: usize, backend_offset: i64) -> Option<i64> {
        Some(backend_offset + self.delta[d]?)
    }

    /// A proxy-view offset of direction `d` in the backend view's numbering.
    pub(crate) fn to_backend(self, d: usize, proxy_offset: i64) -> Option<i64> {
        Some(proxy_offset - self.delta[d]?)
    }
}

//! Zeek's `conn_state` of a finished connection, from each endpoint's state.

use super::{ConnState, Connection, DirSummary, PacketRef};

/// An endpoint's state as Zeek's TCP analyzer tracks it, from what the capture saw of it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum EndState {
    Inactive,
    /// Packets, but no SYN (or SYN-ACK) from it: seen mid-stream.
    Partial,
    /// Only its SYN(s), or only its SYN-ACK(s).
    SynSent,
    Established,
    Closed,
    Reset,
}

/// `acked`: the peer acknowledged its SYN (or SYN-ACK), which establishes it even if it sent
/// nothing more.
pub(super) fn end_state(d: &DirSummary, opening: Option<PacketRef>, openings: u32, acked: bool) -> EndState {
    if d.rst.is_some() {
        EndState::Reset
    } else if d.fin.is_some() {
        EndState::Closed
    } else if d.packets == 0 {
        EndState::Inactive
    } else if opening.is_none() {
        EndState::Partial
    } else if d.packets <= openings as u64 && !acked {
        EndState::SynSent
    } else {
        EndState::Established
    }
}

/// Zeek's connection state, from what was seen: Zeek's own rules (its `conn_state()` in
/// base/protocols/conn/main.zeek) over each endpoint's state. A responder's RST decides first,
/// as in Zeek; `RSTOS0` needs the originator to have sent nothing but SYNs before its RST
/// (history `S…R` with no originator `H A F G I` in between: `SaFR` is `OTH`).
pub(super) fn conn_state<O>(c: &Connection<O>) -> ConnState {
    use EndState::*;
    let os = end_state(
        &c.dirs[0],
        c.syn,
        c.syn_count,
        c.syn_ack.is_some() && c.dirs[1].packets > c.syn_ack_count as u64,
    );
    let rs = end_state(&c.dirs[1], c.syn_ack, c.syn_ack_count, c.established.is_some());
    let o_inactive = matches!(os, Inactive | Partial);
    let r_inactive = matches!(rs, Inactive | Partial);
    let no_payload = c.dirs.iter().all(|d| d.bytes == 0);
    if rs == Reset {
        if os == SynSent || (os == Reset && no_payload) {
            ConnState::REJ
        } else if o_inactive {
            ConnState::RSTRH
        } else {
            ConnState::RSTR
        }
    } else if os == Reset {
        if !r_inactive {
            ConnState::RSTO
        } else if syn_then_rst(&c.history) {
            ConnState::RSTOS0
        } else {
            ConnState::OTH
        }
    } else if os == Closed && rs == Closed {
        ConnState::SF
    } else if os == Closed {
        if r_inactive { ConnState::SH } else { ConnState::S2 }
    } else if rs == Closed {
        if o_inactive { ConnState::SHR } else { ConnState::S3 }
    } else if os == SynSent && rs == Inactive {
        ConnState::S0
    } else if os == Established && rs == Established {
        ConnState::S1
    } else {
        ConnState::OTH
    }
}

/// Zeek's `^?S[^HAFGIQ]*R.*` over the history: a SYN, then the originator's RST, with no
/// SYN-ACK, ACK, FIN, gap or inconsistency from the originator in between.
pub(super) fn syn_then_rst(history: &str) -> bool {
    let h = history.strip_prefix('^').unwrap_or(history);
    let Some(rest) = h.strip_prefix('S') else {
        return false;
    };
    rest.find('R')
        .is_some_and(|r| !rest[..r].contains(['H', 'A', 'F', 'G', 'I', 'Q']))
}

//! The handshake did not complete: refused (RST or ICMP) or no answer to the SYN.

use super::*;
use crate::decode::Endpoint;

pub(super) fn refused(v: Conns<'_>, rst: CloseMark, mut ev: Ev) -> Diagnosis {
    let server = v.p.server;
    if v.cx.two_captures {
        match v.b {
            Some(b) if b.syn.is_some() && b.to_client().rst.is_some() => {
                ev.add(
                    Side::Backend,
                    b.syn.expect("checked"),
                    "the SYN arrives at the backend",
                );
                let brst = b.to_client().rst.expect("checked");
                ev.add(Side::Backend, brst.at, "the backend host answers with RST");
                return verdict(
                    Verdict::ConnectRefused,
                    Blame::Backend,
                    format!(
                        "The backend host refused the connection: the proxy's SYN to {server} arrived and the backend answered with RST, so nothing was listening there (or its listen queue refused it). Proxies log \"(111) Connection refused\"."
                    ),
                    "Look at the backend: is the service running and listening on this address and port (ss -ltn), did it crash or restart at this time?",
                    ev,
                );
            }
            // The backend capture did not run when the RST came: its silence says nothing.
            _ if !v.backend_capture_ran_at(rst.at.ts_ns) => return refused_unseen(v, rst, ev),
            Some(b) if b.syn.is_some() => {
                ev.add(
                    Side::Backend,
                    b.syn.expect("checked"),
                    "the SYN arrives at the backend, which does not send a RST",
                );
                if let Some(sa) = b.syn_ack {
                    ev.add(Side::Backend, sa, "the backend answers with SYN-ACK");
                }
                return verdict(
                    Verdict::RstFromMiddlebox,
                    Blame::Network,
                    format!(
                        "The proxy's SYN to {server} was answered by a RST (TTL {}) that the backend never sent: the backend capture shows the SYN arriving and no RST leaving. Something between the two hosts forged it.",
                        rst.ttl
                    ),
                    "Look at the network path between proxy and backend: firewalls, load balancers or IPS that reset connections; compare the RST's TTL with the backend's packets.",
                    ev,
                );
            }
            _ => {
                return verdict(
                    Verdict::RstFromMiddlebox,
                    Blame::Network,
                    format!(
                        "The proxy's SYN to {server} was answered by a RST (TTL {}), but the SYN never reached the backend host (its capture does not show it): something between the two hosts refused the connection in the backend's name.",
                        rst.ttl
                    ),
                    "Look at the network path between proxy and backend: a firewall rule rejecting with tcp-reset, a load balancer without a healthy member, or a wrong route.",
                    ev,
                );
            }
        }
    }
    verdict(
        Verdict::ConnectRefused,
        Blame::Backend,
        format!(
            "The proxy's SYN to {server} was answered by RST: nothing was listening there, or the backend refused the connection. Proxies log \"(111) Connection refused\". From this capture alone it cannot be told whether the backend host or a firewall in between sent the RST (its TTL is {}){}.",
            rst.ttl,
            v.unless_backend_host("; a capture on the backend host would settle it")
        ),
        "Look at the backend: is the service running and listening on this address and port? If it is, capture on the backend host to see whether the SYN arrives.",
        ev,
    )
}

/// Refused, with a backend capture that did not run at that moment: it cannot tell who sent the
/// RST.
fn refused_unseen(v: Conns<'_>, rst: CloseMark, ev: Ev) -> Diagnosis {
    let server = v.p.server;
    verdict(
        Verdict::ConnectRefused,
        Blame::Backend,
        format!(
            "The proxy's SYN to {server} was answered by RST: nothing was listening there, or the backend refused the connection. Proxies log \"(111) Connection refused\". The backend capture does not cover that moment, so it cannot tell whether the backend host or a firewall in between sent the RST (its TTL is {}).",
            rst.ttl
        ),
        "Look at the backend: is the service running and listening on this address and port? If it is, capture on the backend host from before the next failure to see whether the SYN arrives.",
        ev,
    )
}

/// The SYN was answered by an ICMP error: who sent it decides the blame. The backend host's own
/// address is the backend (its firewall rejecting, or nothing to answer); any other address is a
/// router or firewall on the way. With the backend capture, an ICMP in the backend's name that
/// the backend never sent (the SYN never reached it) was forged on the way.
pub(super) fn refused_by_icmp(v: Conns<'_>, icmp: IcmpMark, mut ev: Ev) -> Diagnosis {
    let what = icmp.kind.words();
    ev.add(
        v.ps(),
        icmp.at,
        format!(
            "ICMP {what} from {} answers the SYN (TTL {})",
            icmp.from, icmp.ttl
        ),
    );
    let b_syn = v.b.and_then(|b| b.syn);
    let b_icmp =
        v.b.and_then(|b| b.icmp)
            .filter(|i| i.to_server && i.from == icmp.from);
    if let Some(s) = b_syn {
        ev.add(Side::Backend, s, "the SYN arrives at the backend");
    }
    if let Some(i) = b_icmp {
        ev.add(Side::Backend, i.at, format!("the backend host sends ICMP {what}"));
    }
    let from_backend_host = icmp.from == v.p.server.ip;
    let forged = v.cx.two_captures && from_backend_host && b_syn.is_none() && b_icmp.is_none();
    if from_backend_host && !forged {
        return icmp_from_backend_host(v, icmp, b_icmp.is_some(), ev);
    }
    icmp_on_the_way(v, icmp, b_syn.is_some(), forged, ev)
}

/// " (all 3 SYNs)" when the proxy sent the SYN more than once.
fn syn_tries(p: &Conn) -> String {
    if p.syn_count > 1 {
        format!(" (all {} SYNs)", p.syn_count)
    } else {
        String::new()
    }
}

/// The backend host itself answered the SYN with the ICMP error (`b_icmp`: its capture shows it).
fn icmp_from_backend_host(v: Conns<'_>, icmp: IcmpMark, b_icmp: bool, ev: Ev) -> Diagnosis {
    let server = v.p.server;
    let (what, errno, tries) = (icmp.kind.words(), icmp.kind.errno(), syn_tries(v.p));
    let seen = if b_icmp {
        " The backend capture shows the SYN arriving and the ICMP leaving."
    } else if v.cx.two_captures || v.backend_host_alone {
        ""
    } else {
        " (One capture: a capture on the backend host would show it leaving there.)"
    };
    verdict(
        Verdict::ConnectRefused,
        Blame::Backend,
        format!(
            "The backend host {} refused the connection: it answered the proxy's SYN to {server}{tries} with ICMP {what} instead of a SYN-ACK — a firewall on the backend host rejecting the port (iptables REJECT), or nothing to take the connection. Proxies log \"{errno}\".{seen}",
            server.ip
        ),
        "Look at the backend host's firewall (iptables/nftables REJECT rules for this port) and whether the service is listening (ss -ltn).",
        ev,
    )
}

/// A router or firewall on the way answered the SYN with the ICMP error, or (`forged`) a device
/// answered in the backend host's name. `b_syn`: the backend capture shows the SYN arriving.
fn icmp_on_the_way(v: Conns<'_>, icmp: IcmpMark, b_syn: bool, forged: bool, ev: Ev) -> Diagnosis {
    let server = v.p.server;
    let (what, errno, tries) = (icmp.kind.words(), icmp.kind.errno(), syn_tries(v.p));
    let reached = match (v.cx.two_captures, b_syn) {
        (true, false) => " The SYN never reached the backend host (its capture does not show it).",
        (true, true) => " The SYN did reach the backend host, which did not answer it in time.",
        (false, _) => "",
    };
    let who = if forged {
        format!(
            "a device on the way answered in the backend's name ({}) — the backend never sent it",
            icmp.from
        )
    } else {
        format!(
            "the network device at {} (a router or firewall between the proxy and the backend)",
            icmp.from
        )
    };
    let meaning = match icmp.kind {
        crate::decode::IcmpKind::HostUnreachable => {
            ": it could not reach the backend host (down, or not answering ARP/neighbour discovery)"
        }
        crate::decode::IcmpKind::NetUnreachable => ": it has no route to the backend's network",
        crate::decode::IcmpKind::Prohibited => ": a firewall rule refuses the connection",
        _ => "",
    };
    verdict(
        Verdict::ConnectRefused,
        Blame::Network,
        format!(
            "The connection was refused on the way, not by the backend: {who} answered the proxy's SYN to {server}{tries} with ICMP {what}{meaning}.{reached} Proxies log \"{errno}\".",
        ),
        "Look at the device that sent the ICMP: its firewall rules (REJECT with icmp-admin-prohibited / host-unreachable), its routes and its ARP/neighbour table for the backend's address; and whether the backend host is up.",
        ev,
    )
}

pub(super) fn connect_timeout(v: Conns<'_>, syn: PacketRef, mut ev: Ev) -> Diagnosis {
    let (cx, p, b) = (v.cx, v.p, v.b);
    let server = p.server;
    let tries = p.syn_count;
    let waited = p.last.ts_ns - syn.ts_ns;
    let tries_text = format!(
        "{tries} SYN{} over {}",
        if tries == 1 { "" } else { "s" },
        ms(waited)
    );
    if cx.two_captures {
        match b {
            Some(b) if b.syn.is_some() => {
                ev.add(
                    Side::Backend,
                    b.syn.expect("checked"),
                    format!("SYN arrives at the backend ({} seen there)", b.syn_count),
                );
                if let Some(sa) = b.syn_ack {
                    ev.add(Side::Backend, sa, "backend answers with SYN-ACK");
                    if let Some(d) = answer_reached_proxy(b, server, &mut ev) {
                        return d;
                    }
                    // The SYN-ACK may have reached the proxy after its capture ended.
                    if let Some(d) = watched_too_briefly(v, syn, &mut ev) {
                        return d;
                    }
                    return verdict(
                        Verdict::ConnectTimeout,
                        Blame::Network,
                        format!(
                            "The proxy could not connect to {server}: its SYNs reached the backend, which answered with SYN-ACK {} times, but no SYN-ACK came back to the proxy ({tries_text}). The answers were lost on the way back.",
                            b.syn_ack_count
                        ),
                        "Look at the network path from the backend back to the proxy: asymmetric routing, a firewall dropping the SYN-ACKs, or a wrong return route on the backend host.",
                        ev,
                    );
                }
                return verdict(
                    Verdict::ConnectTimeout,
                    Blame::Backend,
                    format!(
                        "The proxy could not connect to {server}: its SYNs arrived at the backend host ({} seen there) and were ignored — no SYN-ACK, no RST ({tries_text}).",
                        b.syn_count
                    ),
                    "Look at the backend host: a full accept queue (the service is overloaded or stuck: netstat -s | grep -i listen), or a host firewall dropping the SYNs.",
                    ev,
                );
            }
            _ => {
                return verdict(
                    Verdict::ConnectTimeout,
                    Blame::Network,
                    format!(
                        "The proxy could not connect to {server}: it sent {tries_text} and none of them reached the backend host (its capture shows no SYN of this connection)."
                    ),
                    "Look at the network path from the proxy to the backend: routes, firewalls and security groups dropping the SYNs.",
                    ev,
                );
            }
        }
    }
    if let Some(d) = watched_too_briefly(v, syn, &mut ev) {
        return d;
    }
    verdict(
        Verdict::ConnectTimeout,
        Blame::Backend,
        format!(
            "The proxy could not connect to {server}: it sent {tries_text} and got neither SYN-ACK nor RST. From this capture alone it cannot be told whether the SYNs were lost on the way, ignored by the backend (full accept queue, host firewall), or answered and the answers lost{}.",
            v.unless_backend_host("; a capture on the backend host would settle it")
        ),
        "Check that the backend host is up and its service accepting (accept queue, host firewall); capture on the backend host to see whether the SYNs arrive.",
        ev,
    )
}

/// The backend capture shows the proxy sending more than SYNs after the backend's SYN-ACK (the
/// ACK that completes the handshake, data, a FIN or RST): the SYN-ACK reached the proxy host, and
/// the proxy capture, which holds no answer, missed packets. Not a connect timeout.
fn answer_reached_proxy(b: &Conn, server: Endpoint, ev: &mut Ev) -> Option<Diagnosis> {
    let sent = b.to_server().packets;
    if sent <= u64::from(b.syn_count) {
        return None;
    }
    let more = sent - u64::from(b.syn_count);
    if let Some(data) = b.to_server().first_data {
        ev.add(
            Side::Backend,
            data,
            "the proxy's first data arrives: it had the SYN-ACK",
        );
    }
    Some(verdict(
        Verdict::CaptureIncomplete,
        Blame::Capture,
        format!(
            "Cannot judge from the proxy's side: its capture holds the SYN to {server} and no answer, but the backend capture shows the backend answering with SYN-ACK and {more} more packet{} from the proxy after its SYN{}, so the answer reached the proxy host and its capture missed it (the capture host dropped packets, or the capture stopped).",
            if more == 1 { "" } else { "s" },
            if b.syn_count == 1 { "" } else { "s" },
        ),
        "Capture again on the proxy host (check tcpdump's \"packets dropped by kernel\"; a larger -B buffer or a narrower filter helps), or read the connection in the backend capture.",
        ev.take(),
    ))
}

/// TCP retransmits an unanswered SYN after one second (Linux's initial RTO; others wait longer).
const SYN_RETRY_NS: i64 = 1_000_000_000;

/// One SYN, no answer in the proxy's view, and its capture ended less than a second later: neither
/// an answer nor the retransmitted SYN could show yet. A capture stopped in the middle of busy
/// traffic ends with such connections; they are not connect timeouts. (With two captures this
/// matters only when the backend answered: its capture settles the other cases.)
fn watched_too_briefly(v: Conns<'_>, syn: PacketRef, ev: &mut Ev) -> Option<Diagnosis> {
    let p = v.p;
    let watched = p.capture_ended?.saturating_sub(syn.ts_ns);
    if p.syn_count > 1 || watched >= SYN_RETRY_NS {
        return None;
    }
    Some(verdict(
        Verdict::CaptureIncomplete,
        Blame::Capture,
        format!(
            "The capture ended {} after the proxy's SYN to {}, before an answer or a retransmitted SYN could show (TCP retries after one second): the connection attempt cannot be judged.",
            ms(watched),
            p.server
        ),
        "Capture for longer (start before and stop well after the failure).",
        ev.take(),
    ))
}

//! A RST one end received that the other never sent (two captures), or whose TTL does not fit
//! the backend's packets (one capture).

use super::*;

/// The connection did not end well from the proxy's point of view.
pub(super) fn connection_failed(p: &Conn) -> bool {
    first_failure(p).is_some() || (p.app.protocol != Protocol::Http && p.to_client().rst.is_some())
}

/// A RST at one end (`at_proxy`: the proxy's, else the backend's) that the other end never sent.
pub(super) fn forged_rst(v: Conns<'_>, b: &Conn, rst: CloseMark, at_proxy: bool, mut ev: Ev) -> Diagnosis {
    let exch = first_failure(v.p).map(|f| match f {
        Failure::Request(_, m) | Failure::Response(_, _, m) => request_line(m),
    });
    let during = exch.map_or(String::new(), |l| format!(" during {l}"));
    if at_proxy {
        return forged_at_proxy(v, b, rst, &during, ev);
    }
    ev.add(
        Side::Backend,
        rst.at,
        format!(
            "RST \"from {}\" arrives at the backend (TTL {})",
            b.client, rst.ttl
        ),
    );
    verdict(
        Verdict::RstFromMiddlebox,
        Blame::Network,
        format!(
            "The backend received a RST{during} that looks like it came from the proxy, but the proxy never sent it: the proxy capture shows no RST on this connection. Something between the two hosts reset the connection."
        ),
        "Look at the devices between proxy and backend (firewall, IPS, load balancer, NAT with short idle timeouts): their logs for a reset of this connection at this time.",
        ev,
    )
}

/// A RST "from the backend" arrived at the proxy and the backend capture shows none leaving.
fn forged_at_proxy(v: Conns<'_>, b: &Conn, rst: CloseMark, during: &str, mut ev: Ev) -> Diagnosis {
    let p = v.p;
    let ttl_note = match p.to_client().ttl_range {
        Some((lo, hi)) if rst.ttl < lo || rst.ttl > hi => {
            format!(
                " Its TTL is {}, while the backend's packets arrive with TTL {}.",
                rst.ttl,
                ttl_text(lo, hi)
            )
        }
        Some((lo, hi)) => format!(
            " (Its TTL {} is within the backend's {lo}-{hi}: the forger mimics it.)",
            rst.ttl
        ),
        None => String::new(),
    };
    ev.add(
        v.ps(),
        rst.at,
        format!("RST \"from {}\" arrives at the proxy (TTL {})", p.server, rst.ttl),
    );
    if let Some(f) = first_failure(p) {
        let m = match f {
            Failure::Request(_, m) | Failure::Response(_, _, m) => m,
        };
        if let Some(r) = backend_exchange(v.cx.seq_map, b, m).and_then(|be| be.request.as_ref()) {
            ev.add(Side::Backend, r.first, "the request arrives at the backend");
        }
    }
    let lost_note = lost_before_reset(v, &mut ev);
    verdict(
        Verdict::RstFromMiddlebox,
        Blame::Network,
        format!(
            "The proxy received a RST{during} that looks like it came from the backend {}, but the backend never sent it: the backend capture shows no RST on this connection.{ttl_note}{lost_note} A firewall, IPS or load balancer between the two hosts reset the connection.",
            p.server
        ),
        "Look at the devices between proxy and backend (firewall, IPS, load balancer): their logs for a reset or a rule matching this request at this time.",
        ev,
    )
}

/// Request bytes the proxy sent that never reached the backend: the device that forged the RST
/// dropped them. The sentence that says so ("" when none were lost), with its evidence.
fn lost_before_reset(v: Conns<'_>, ev: &mut Ev) -> String {
    match v.cx.alignment.map(|a| &a.dirs[Dir::ClientToServer.idx()].lost) {
        Some(l) if !l.is_empty() => {
            let n: i64 = l.iter().map(|x| x.end - x.start).sum();
            ev.add(
                v.ps(),
                l[0].first_sent,
                format!(
                    "proxy sends {} that never reach the backend",
                    byte_range(l[0].start, l[0].end)
                ),
            );
            format!(
                " The {} the proxy sent just before never reached the backend either: the device dropped them and answered with the reset.",
                bytes(n as u64)
            )
        }
        _ => String::new(),
    }
}

/// With one capture: a RST from the backend whose TTL does not fit the backend's packets.
pub(super) fn suspicious_rst_single(v: Conns<'_>) -> Option<Diagnosis> {
    let (cx, p) = (v.cx, v.p);
    let rst = p.to_client().rst?;
    let (lo, hi) = p.to_client().ttl_range?;
    // The backend's packets all cross the same hops, so they arrive with the same TTL; a RST made
    // by a device in between starts from that device's own initial TTL and crosses fewer hops.
    // Even one hop of difference is a different origin.
    if (lo..=hi).contains(&rst.ttl) || !connection_failed(p) {
        return None;
    }
    let mut ev = Ev::new();
    ev.add(
        cx.first_side,
        rst.at,
        format!("RST from {} with TTL {}", p.server, rst.ttl),
    );
    if let Some(f) = p.to_client().first_data {
        ev.add(
            cx.first_side,
            f,
            format!("the backend's own packets arrive with TTL {}", ttl_text(lo, hi)),
        );
    }
    Some(verdict(
        Verdict::RstFromMiddlebox,
        Blame::Network,
        format!(
            "The proxy received a RST from {} with TTL {}, while the backend's own packets arrive with TTL {}: it most likely came from a device in between, not from the backend.{}",
            p.server,
            rst.ttl,
            ttl_text(lo, hi),
            if v.cx.two_captures {
                v.backend_view_missing()
            } else {
                v.unless_backend_host(
                    " A capture on the backend host would prove it (the backend would show no RST).",
                )
            }
        ),
        "Capture on the backend host to confirm, and look at the firewalls, IPS or load balancers between proxy and backend.",
        ev,
    ))
}

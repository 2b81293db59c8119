//! A failure read from a view the capture host dropped packets of: the receiver acknowledged
//! bytes the capture never saw. Whatever the view shows going wrong may be what is missing from
//! it (a response the capture lost reads as no response, a FIN after lost bytes as a truncation,
//! a dropped RST as a forged one), so it is not judged from that view. When the backend capture
//! holds the connection without drops and sees nothing wrong, that is said; otherwise it cannot be
//! judged.

use super::*;
use crate::diagnose::Outcome;

/// What to do about a capture that drops packets.
pub(super) const NEXT_STEP: &str = "Capture with a larger buffer (tcpdump -B 65536), a smaller snaplen or a capture filter on the backend port, and write to a fast disk, so the capture does not drop packets; check tcpdump's \"packets dropped by kernel\".";

/// `d` as judged, or capture-incomplete when it is a failure (or the proxy giving up) read from
/// views with capture drops.
///
/// `view`: the side and view `d` was read from (the proxy capture's, or the only capture's, or the
/// backend capture's for a connection only it holds); `b`: the backend capture's view beside it.
pub(super) fn judged_across_drops(
    cx: &Context<'_>,
    (first, p): (Side, &Conn),
    b: Option<&Conn>,
    d: Diagnosis,
) -> Diagnosis {
    if !matches!(d.verdict.outcome(), Outcome::Failed | Outcome::Abandoned) {
        return d;
    }
    let missed = |c: &Conn| c.dirs.iter().map(|x| x.acked_unseen).sum::<u64>();
    let (in_p, in_b) = (missed(p), b.map_or(0, missed));
    if in_p == 0 && in_b == 0 {
        return d;
    }
    let mut ev = Ev { list: d.evidence };
    let (side, view, n) = if in_p > 0 {
        (first, p, in_p)
    } else {
        (Side::Backend, b.expect("in_b > 0"), in_b)
    };
    if let Some(s) = first_after_missed(view) {
        ev.add(
            side,
            s,
            "first data after bytes the capture missed (the receiver acknowledged them)",
        );
    }
    let clean_backend = b.filter(|_| in_b == 0).map(|b| as_backend_capture_alone(cx, b));
    let other = match &clean_backend {
        Some(alone) if !alone.verdict.is_notable() => {
            " The backend capture holds the connection without a gap and shows nothing wrong with it."
                .to_string()
        }
        Some(alone) => format!(
            " The backend capture, which holds it without a gap, reads it as {} on its own.",
            alone.verdict
        ),
        None => String::new(),
    };
    verdict(
        Verdict::CaptureIncomplete,
        Blame::Capture,
        format!(
            "Cannot judge: the {side} capture missed {} of this connection that the receiver acknowledged (the capture host dropped packets), and what it seems to show — {} — may be only what is missing from it.{other}",
            bytes(n),
            d.verdict,
        ),
        NEXT_STEP,
        ev,
    )
}

/// The first packet of new data after a hole in what the capture saw.
fn first_after_missed(c: &Conn) -> Option<PacketRef> {
    c.dirs
        .iter()
        .flat_map(|d| d.spans.iter())
        .filter(|s| s.kind == crate::tcp::SpanKind::New && s.start > 0)
        .map(|s| s.first)
        .min_by_key(|f| f.ts_ns)
}

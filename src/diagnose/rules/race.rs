//! The keep-alive race: a request on a reused, idle connection that crossed the backend's close.

use super::*;

/// Slack on the keep-alive race's one-round-trip window for timestamp jitter: a FIN that crossed
/// the request reaches the proxy less than one round trip after the request left (the request
/// reached the backend after the FIN left), so the window is the round trip plus this.
const RACE_TIMESTAMP_SLACK_NS: i64 = 50_000;

/// How long a backend may take, after the request arrived, to reset a connection its idle timer
/// closed with the request unread (no FIN): its timer fires about when the request arrives.
const RACE_RST_REACTION_NS: i64 = 1_000_000;

/// A keep-alive race needs an idle connection: servers close idle connections after their
/// keep-alive timeout (seconds; never below tens of milliseconds). A connection busy a moment
/// before was not closed for being idle.
const MIN_IDLE_FOR_RACE_NS: i64 = 50_000_000;

/// A request on a reused, idle connection that crossed the backend's close. Two forms on the wire:
/// - the backend's FIN and the request cross (the FIN reaches the proxy within about one round
///   trip of the request leaving), and the backend's kernel answers the request with RST;
/// - the backend's idle timer fires as the request arrives: it closes with the request unread
///   in its receive buffer, so its kernel sends RST instead of FIN, within about one round trip of
///   the request leaving the proxy (too fast for any application to have read it and answered).
pub(super) fn keepalive_race(
    v: Conns<'_>,
    index: usize,
    req: &Message,
    line: &str,
    ev: &mut Ev,
) -> Option<Diagnosis> {
    let (cx, p, b, ps) = (v.cx, v.p, v.b, v.ps());
    // A reused connection: an earlier exchange completed on it, and this request got no answer.
    let e = p.app.exchanges.get(index)?;
    let reused = index > 0
        && p.app.exchanges[..index]
            .iter()
            .all(|e| e.response.as_ref().is_some_and(|r| r.complete));
    if !reused || e.response.is_some() {
        return None;
    }
    let rst = p.to_client().rst.filter(|r| r.at.ts_ns >= req.first.ts_ns);
    // A race leaves the request unread: the backend's close was sent before the request arrived,
    // or as it arrived. A backend that acknowledged a first flight of the request, so that the
    // proxy sent more of it, was taking the request in for at least a round trip before it
    // closed: whatever it did next, it was not an idle connection closing.
    let close_at = [p.to_client().fin, rst]
        .into_iter()
        .flatten()
        .map(|m| m.at.ts_ns)
        .min()?;
    if request_flights_before(p, req, close_at) >= 2 {
        return None;
    }
    let round_trip = rtt(p, true).unwrap_or(0);
    let fin = p
        .to_client()
        .fin
        .filter(|f| rst.is_none_or(|r| f.at.ts_ns <= r.at.ts_ns));
    let delta = crossing_delta(cx, p, index, req, fin, rst, round_trip)?;
    let idle = p.app.exchanges[index - 1]
        .response
        .as_ref()
        .map(|r| req.first.ts_ns - r.last.ts_ns)
        .unwrap_or(0);
    if idle < MIN_IDLE_FOR_RACE_NS {
        return None;
    }
    ev.add(
        ps,
        req.first,
        format!(
            "proxy sends {line} on the reused connection, idle for {}",
            ms(idle)
        ),
    );
    let timing = timing(ps, fin, rst, delta, round_trip, ev)?;
    let crossing = b.map_or(String::new(), |b| backend_crossing(cx.seq_map, b, req, ev));
    Some(verdict(
        Verdict::KeepaliveRace,
        Blame::Proxy,
        format!(
            "Keep-alive race: the proxy sent {line} on a connection it was reusing after {} idle, just as the backend closed that connection: {timing}.{crossing} Apache logs this as AH01102 \"error reading status line\", nginx as \"upstream prematurely closed connection\". Remedy on the proxy: a connection ttl below the backend's keep-alive timeout (Apache ProxyPass ttl=, or disablereuse=On, or proxy-nokeepalive; nginx upstream keepalive_timeout).",
            ms(idle),
        ),
        "Make the proxy stop reusing connections before the backend closes them: set the proxy's idle connection timeout below the backend's keep-alive timeout (Apache: ProxyPass ... ttl=N with N below the backend's KeepAliveTimeout, or disablereuse=On, or SetEnv proxy-nokeepalive 1; nginx: keepalive_timeout in the upstream block below the backend's), and let idempotent requests be retried.",
        ev.take(),
    ))
}

/// When the backend's close (its FIN, else its RST) reached the proxy relative to the request
/// leaving it (positive: the FIN came first; for a RST, how long after the request), if the two
/// can have crossed; `None` when the backend had the request before it closed.
#[allow(clippy::too_many_arguments)]
fn crossing_delta(
    cx: &Context<'_>,
    p: &Conn,
    index: usize,
    req: &Message,
    fin: Option<CloseMark>,
    rst: Option<CloseMark>,
    round_trip: i64,
) -> Option<i64> {
    let window = round_trip + RACE_TIMESTAMP_SLACK_NS;
    match (fin, rst) {
        (Some(fin), _) => {
            // The request reached the backend after its FIN left exactly when the FIN reached
            // the proxy less than a round trip after the request left. Later than that, the
            // backend had the request before it closed: not a race (an empty reply). A FIN that
            // arrived before the request left means the proxy reused a connection already closed:
            // the same fault of the proxy's reuse, however long before. What follows the crossing
            // varies with the backend: a RST from its kernel, or nothing (a lingering close reads
            // and discards the request).
            let delta = req.first.ts_ns - fin.at.ts_ns;
            // The FIN's acknowledgement number is the witness: it says what the backend had
            // received when it sent the FIN. A FIN that does not acknowledge the request left
            // before the request arrived — they crossed. Timing (within one round trip) only
            // decides when the FIN carries no acknowledgement.
            let crossed = match fin.ack {
                Some(a) => a <= req.offset,
                None => -delta <= window,
            };
            // A FIN that came exactly the backend's idle timeout after the previous response,
            // as the request arrived, is the idle timer firing, even if the request had just
            // arrived (a lingering close then reads and discards it).
            let timer_fired = cx.backend_idle_timeout.is_some_and(|t| {
                let prev_end = p.app.exchanges[index - 1].response.as_ref().map(|r| r.last.ts_ns);
                prev_end.is_some_and(|e| is_idle_close(fin.at.ts_ns - e, t))
                    && -delta <= round_trip + RACE_RST_REACTION_NS
            });
            if !crossed && !timer_fired && delta < 0 {
                return None;
            }
            Some(delta)
        }
        (None, Some(rst)) => {
            let delta = rst.at.ts_ns - req.first.ts_ns;
            if delta > round_trip + RACE_RST_REACTION_NS {
                return None;
            }
            Some(delta)
        }
        (None, None) => None,
    }
}

/// The race's timing as the proxy saw it, with its evidence.
fn timing(
    ps: Side,
    fin: Option<CloseMark>,
    rst: Option<CloseMark>,
    delta: i64,
    round_trip: i64,
    ev: &mut Ev,
) -> Option<String> {
    if let Some(fin) = fin {
        ev.add(
            ps,
            fin.at,
            format!(
                "backend's FIN arrives {} {} the request left",
                ms(delta.abs()),
                if delta >= 0 { "before" } else { "after" }
            ),
        );
        let answer = match rst {
            Some(r) => {
                ev.add(ps, r.at, "backend answers the request with RST");
                "the backend answered the request with RST"
            }
            None => "the backend never answered it (its close read and discarded the request)",
        };
        Some(format!(
            "the backend's FIN reached the proxy {} {} the request left (round trip {}), and {answer}",
            ms(delta.abs()),
            if delta >= 0 { "before" } else { "after" },
            ms(round_trip)
        ))
    } else if let Some(rst) = rst {
        ev.add(
            ps,
            rst.at,
            format!(
                "backend's RST arrives {} after the request left, no FIN before it",
                ms(delta)
            ),
        );
        Some(format!(
            "the backend reset the connection {} after the request left (round trip {}) without a FIN: its idle timer closed the connection as the request arrived, with the request unread, so its kernel sent RST",
            ms(delta),
            ms(round_trip)
        ))
    } else {
        None
    }
}

/// What the backend capture shows of the crossing, with its evidence ("" when it shows nothing).
fn backend_crossing(seq_map: SeqMap, b: &Conn, req: &Message, ev: &mut Ev) -> String {
    let Some(r) = backend_exchange(seq_map, b, req).and_then(|x| x.request.as_ref()) else {
        return String::new();
    };
    ev.add(Side::Backend, r.first, "the request arrives at the backend");
    match (b.to_client().fin, b.to_client().rst) {
        (Some(bfin), _) => {
            ev.add(Side::Backend, bfin.at, "backend closes the idle connection (FIN)");
            if bfin.at.ts_ns <= r.first.ts_ns {
                return format!(
                    " The backend capture shows its FIN leaving {} before the request arrived: the two crossed on the wire.",
                    ms(r.first.ts_ns - bfin.at.ts_ns)
                );
            }
            String::new()
        }
        (None, Some(brst)) => {
            ev.add(Side::Backend, brst.at, "backend sends RST");
            format!(
                " The backend capture shows the RST leaving {} after the request arrived, with no response byte.",
                ms(brst.at.ts_ns - r.first.ts_ns)
            )
        }
        _ => String::new(),
    }
}

/// Flights of request bytes the proxy sent before `until`: a transmission span of the direction
/// ends when the receiver acknowledges it, so each span after the first was sent after an
/// acknowledgement of the request arrived.
fn request_flights_before(p: &Conn, req: &Message, until: i64) -> usize {
    let end = req.offset + req.bytes as i64;
    p.to_server()
        .spans
        .iter()
        .filter(|s| s.kind == crate::tcp::SpanKind::New && s.end > req.offset && s.start < end)
        .filter(|s| s.first.ts_ns < until)
        .count()
}

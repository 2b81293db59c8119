//! The ladder diagram of a connection as SVG (see `ladder.rs` for how packets are matched): the
//! proxy's and the backend's capture points on two vertical lines, time running down on one axis
//! (the proxy capture's clock). The axis keeps the order of events but not their proportions:
//! each step down grows with the logarithm of the time between two events, and a gap of 100 ms
//! or more becomes a fixed break labelled with its length ("… 4.8 s idle …"). Each packet is one
//! `<g class="arrow">` whose `data-frames` lists the frames it stands for (`p7` proxy frame 7,
//! `b8` backend frame 8), so every logged packet of the connection appears in exactly one arrow.
//! Labels and gutter texts take a lane each side ([`Lanes`]) so they never overlap.

use std::fmt::Write as _;

use super::esc;
use crate::report::ladder::{Arrow, ArrowKind, Fate, Ladder, Point};
use crate::report::{clock_time, duration_words, rfc3339};

const WIDTH: f64 = 1000.0;
const TOP: f64 = 58.0;
/// x of the left (proxy) and right (backend) lines.
const X_LEFT: f64 = 250.0;
const X_RIGHT: f64 = 750.0;
/// x halfway between the lines; with one capture, the end not captured is drawn at `X_RIGHT`.
const X_MID: f64 = (X_LEFT + X_RIGHT) / 2.0;
/// A gap between two events at least this long is drawn as a labelled break.
const IDLE_NS: i64 = 100_000_000;
const IDLE_PX: f64 = 40.0;

/// Time (relative ns) → y, monotonic: the layout of one ladder.
struct Axis {
    /// (time, y) of each distinct event time.
    stops: Vec<(i64, f64)>,
    /// Breaks: (y of the middle, length of the idle time in ns).
    breaks: Vec<(f64, i64)>,
}

impl Axis {
    fn new(mut times: Vec<i64>, arrows: usize) -> Axis {
        times.sort_unstable();
        times.dedup();
        let min_px = if arrows <= 150 {
            16.0
        } else if arrows <= 600 {
            9.0
        } else {
            4.0
        };
        let mut stops = Vec::with_capacity(times.len());
        let mut breaks = Vec::new();
        let mut y = TOP + 14.0;
        let mut prev: Option<i64> = None;
        for t in times {
            if let Some(p) = prev {
                let dt = t - p;
                if dt >= IDLE_NS {
                    breaks.push((y + IDLE_PX / 2.0, dt));
                    y += IDLE_PX;
                } else {
                    let extra = (6.0 * (1.0 + dt as f64 / 100_000.0).log2()).min(36.0);
                    y += min_px + extra;
                }
            }
            stops.push((t, y));
            prev = Some(t);
        }
        Axis { stops, breaks }
    }

    fn y(&self, t: i64) -> f64 {
        let i = self.stops.partition_point(|&(s, _)| s < t);
        match (
            i.checked_sub(1).and_then(|k| self.stops.get(k)),
            self.stops.get(i),
        ) {
            (_, Some(&(s, y))) if s == t => y,
            (Some(&(t0, y0)), Some(&(t1, y1))) => {
                y0 + (y1 - y0) * ((t - t0) as f64 / (t1 - t0).max(1) as f64)
            }
            (None, Some(&(_, y))) => y,
            (Some(&(_, y)), None) => y,
            (None, None) => TOP,
        }
    }

    fn bottom(&self) -> f64 {
        self.stops.last().map_or(TOP + 20.0, |&(_, y)| y)
    }
}

/// The time of an event in words for a break: "4.8 s", "250 ms".
fn idle_words(ns: i64) -> String {
    let ms = ns as f64 / 1e6;
    if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else {
        format!("{ms:.0} ms")
    }
}

/// Places labels so they do not overlap: remembers the last y used in each column.
struct Lanes {
    last: [f64; 4],
}

impl Lanes {
    /// Where to put a label wanted at `y` in `lane`: there if it is free; a little lower if the
    /// label must be drawn (`force`) and the lane is taken; nowhere otherwise.
    fn place(&mut self, lane: usize, y: f64, gap: f64, force: bool) -> Option<f64> {
        let y = if y - self.last[lane] >= gap {
            y
        } else if force {
            self.last[lane] + gap
        } else {
            return None;
        };
        self.last[lane] = y;
        Some(y)
    }
}

/// A frame in `data-frames`: `p7` (proxy frame 7), `b8` (backend frame 8); `p7@2` for frame 7 of
/// the third file of a rotated set.
pub(super) fn frame_tag(p: &Point) -> String {
    let side = if p.line == 0 { 'p' } else { 'b' };
    if p.file == 0 {
        format!("{side}{}", p.frame)
    } else {
        format!("{side}{}@{}", p.frame, p.file)
    }
}

/// A frame for the hover text: "proxy #7 at 10:00:00.123456" (the time on its capture's clock).
fn frame_ref(lines: &[String], p: &Point) -> String {
    let side = lines.get(p.line).map_or("?", String::as_str);
    format!("{side} #{} at {}", p.frame, clock_time(&rfc3339(p.local_ns)))
}

/// x of a capture line: the proxy's (or the one capture's) on the left.
fn x_line(line: usize) -> f64 {
    if line == 0 { X_LEFT } else { X_RIGHT }
}

/// The SVG of a ladder: the capture lines, the idle breaks, where a capture started or stopped,
/// where a log's middle was left out, then the arrows.
pub(super) fn ladder_svg(s: &mut String, l: &Ladder, id: &str) {
    let mut times: Vec<i64> = Vec::new();
    for a in &l.arrows {
        times.extend(
            a.sent
                .iter()
                .chain(a.arrived.iter())
                .chain(a.also_arrived.iter())
                .map(|p| p.t),
        );
    }
    let axis = Axis::new(times, l.arrows.len());
    let height = axis.bottom() + 40.0;
    let _ = writeln!(
        s,
        "<svg class=\"ladder\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{height:.0}\" viewBox=\"0 0 {WIDTH} {height:.0}\" data-connection=\"{}\" data-arrows=\"{}\" role=\"img\" aria-label=\"ladder diagram of connection {}\">",
        esc(id),
        l.arrows.len(),
        esc(id)
    );
    capture_lines(s, l, &axis, height);
    // Idle breaks across the lines.
    for &(y, dt) in &axis.breaks {
        let _ = writeln!(
            s,
            "<rect class=\"idleband\" x=\"0\" y=\"{:.1}\" width=\"{WIDTH}\" height=\"{:.1}\"/>\
             <text class=\"idle\" x=\"{X_MID}\" y=\"{:.1}\" text-anchor=\"middle\">… {} idle …</text>",
            y - IDLE_PX / 2.0 + 6.0,
            IDLE_PX - 12.0,
            y + 4.0,
            idle_words(dt)
        );
    }
    capture_edges(s, l, &axis);
    // Where a log's middle was left out.
    for (i, &(n, after)) in l.elided.iter().enumerate() {
        if n > 0 {
            let y = axis.y(after) + 3.0;
            let x = x_line(i);
            let _ = writeln!(
                s,
                "<text class=\"idle\" x=\"{:.1}\" y=\"{y:.1}\" text-anchor=\"{}\">… {n} packets not drawn …</text>",
                if i == 0 { x + 8.0 } else { x - 8.0 },
                if i == 0 { "start" } else { "end" }
            );
        }
    }
    let mut lanes = Lanes {
        last: [f64::NEG_INFINITY; 4],
    };
    let mut gutters = Lanes {
        last: [f64::NEG_INFINITY; 4],
    };
    for a in &l.arrows {
        arrow_svg(s, l, a, &axis, &mut lanes, &mut gutters);
    }
    let _ = writeln!(s, "</svg>");
}

/// The capture points: solid while that capture ran, dotted before and after; with one capture,
/// the end not captured as a dotted line.
fn capture_lines(s: &mut String, l: &Ladder, axis: &Axis, height: f64) {
    let (first, last) = (
        axis.stops.first().map_or(0, |&(t, _)| t),
        axis.stops.last().map_or(0, |&(t, _)| t),
    );
    for (i, name) in l.lines.iter().enumerate() {
        let x = x_line(i);
        let (start, end) = l.capture_span.get(i).copied().unwrap_or((i64::MIN, i64::MAX));
        let y_start = if start > first { axis.y(start) } else { TOP };
        let y_end = if end < last { axis.y(end) } else { height - 20.0 };
        let _ = writeln!(
            s,
            "<text class=\"head\" x=\"{x}\" y=\"22\" text-anchor=\"middle\">{} capture</text>\
             <text class=\"gutter\" x=\"{x}\" y=\"38\" text-anchor=\"middle\">frame  time on its clock</text>\
             <line class=\"farline\" x1=\"{x}\" y1=\"{TOP}\" x2=\"{x}\" y2=\"{:.1}\"/>\
             <line class=\"capline\" x1=\"{x}\" y1=\"{y_start:.1}\" x2=\"{x}\" y2=\"{y_end:.1}\"/>",
            esc(name),
            height - 20.0
        );
    }
    if l.lines.len() == 1 {
        let far = l.far_end.as_deref().unwrap_or("other end");
        let _ = writeln!(
            s,
            "<text class=\"head\" x=\"{X_RIGHT}\" y=\"22\" text-anchor=\"middle\" fill=\"#59636e\">{} (not captured)</text>\
             <line class=\"farline\" x1=\"{X_RIGHT}\" y1=\"{TOP}\" x2=\"{X_RIGHT}\" y2=\"{:.1}\"/>",
            esc(far),
            height - 20.0
        );
    }
}

/// Where a capture started or stopped within the drawing.
fn capture_edges(s: &mut String, l: &Ladder, axis: &Axis) {
    let (Some(&(first, _)), Some(&(last, _))) = (axis.stops.first(), axis.stops.last()) else {
        return;
    };
    for (i, &(start, end)) in l.capture_span.iter().enumerate() {
        let x = x_line(i);
        for (t, what) in [(start, "starts"), (end, "stops")] {
            if t > first && t < last {
                let y = axis.y(t);
                let (x2, anchor) = if i == 0 {
                    (x - 60.0, "end")
                } else {
                    (x + 60.0, "start")
                };
                let _ = writeln!(
                    s,
                    "<line class=\"capedge\" x1=\"{x}\" y1=\"{y:.1}\" x2=\"{x2}\" y2=\"{y:.1}\"/>\
                     <text class=\"capedge\" x=\"{x2}\" y=\"{:.1}\" text-anchor=\"{anchor}\">{} capture {what}</text>",
                    y - 2.0,
                    esc(&l.lines[i])
                );
            }
        }
    }
}

/// Where an arrow starts (`x1`, `y1`) and ends (`x2`, `y2`).
#[derive(Clone, Copy)]
struct Span {
    x1: f64,
    y1: f64,
    x2: f64,
    y2: f64,
}

/// One packet: its line (and, by its fate, a cross or an origin mark, and ticks where its bytes
/// also arrived), its hover text, its label and its frames in the gutters.
fn arrow_svg(s: &mut String, l: &Ladder, a: &Arrow, axis: &Axis, lanes: &mut Lanes, gutters: &mut Lanes) {
    let Some(g) = geometry(a, axis) else {
        return;
    };
    let Span { x1, y1, x2, y2 } = g;
    let dir = if a.to_backend { "c2s" } else { "s2c" };
    let mut frames: Vec<String> = Vec::new();
    if let Some(p) = &a.sent {
        frames.push(frame_tag(p));
    }
    if let Some(p) = a.arrived.as_ref().filter(|_| a.owns_arrival) {
        frames.push(frame_tag(p));
    }
    frames.extend(a.also_arrived.iter().map(frame_tag));
    let _ = write!(
        s,
        "<g class=\"arrow k-{} d-{dir} f-{}{}\"{} data-frames=\"{}\"><title>{}</title>",
        a.kind.name(),
        a.fate.name(),
        if a.retransmission { " retrans" } else { "" },
        a.sent
            .as_ref()
            .map_or(String::new(), |p| format!(" data-sent=\"{}\"", frame_tag(p))),
        frames.join(" "),
        esc(&hover_text(l, a))
    );
    let _ = write!(
        s,
        "<line x1=\"{x1:.1}\" y1=\"{y1:.1}\" x2=\"{x2:.1}\" y2=\"{y2:.1}\" marker-end=\"url(#{})\"/>",
        marker(a)
    );
    match a.fate {
        Fate::Lost => {
            let _ = write!(
                s,
                "<path class=\"mark\" d=\"M{:.1},{:.1} l8,8 m0,-8 l-8,8\"/>",
                x2 - 4.0 + if a.to_backend { 4.0 } else { -4.0 },
                y2 - 4.0
            );
        }
        Fate::ReceiverOnly => {
            let _ = write!(
                s,
                "<circle class=\"origin\" cx=\"{x1:.1}\" cy=\"{y1:.1}\" r=\"4\"/>"
            );
        }
        _ => {}
    }
    for p in &a.also_arrived {
        let _ = write!(
            s,
            "<circle class=\"tick\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"1.6\"/>",
            x_line(p.line),
            axis.y(p.t)
        );
    }
    arrow_label(s, a, &g, lanes);
    arrow_gutters(s, a, &g, gutters);
    let _ = writeln!(s, "</g>");
}

/// Where an arrow starts and ends, by its fate; None when it has nothing to start from.
fn geometry(a: &Arrow, axis: &Axis) -> Option<Span> {
    let (x1, y1, x2, y2) = match (a.fate, a.sent, a.arrived) {
        (Fate::OneCapture, Some(p), _) => {
            let y = axis.y(p.t);
            (X_LEFT, y, X_RIGHT, y + 8.0)
        }
        (Fate::OneCapture, None, Some(p)) => {
            let y = axis.y(p.t);
            (X_RIGHT, y - 8.0, X_LEFT, y)
        }
        (Fate::Arrived, Some(sp), Some(rp)) => {
            let ys = axis.y(sp.t);
            let yr = axis.y(rp.t).max(ys + 2.0);
            (x_line(sp.line), ys, x_line(rp.line), yr)
        }
        // Seen only where it arrived: it starts between the lines, nearer the sender's.
        (Fate::ReceiverOnly, _, Some(rp)) => {
            let yr = axis.y(rp.t);
            let x = x_line(rp.line);
            (x + (X_MID - x) * 1.16, yr - 12.0, x, yr)
        }
        // Never arrived: it ends between the lines, nearer the sender's.
        (Fate::Lost, Some(sp), _) => {
            let ys = axis.y(sp.t);
            let x = x_line(sp.line);
            (x, ys, x + (X_MID - x) * 0.84, ys + 10.0)
        }
        (Fate::NotCapturedAtReceiver, Some(sp), _) => {
            let ys = axis.y(sp.t);
            let xr = x_line(1 - sp.line.min(1));
            (x_line(sp.line), ys, xr, ys + 12.0)
        }
        (Fate::OutsideCapture | Fate::NotDrawn, Some(sp), _) => {
            let ys = axis.y(sp.t);
            let x = x_line(sp.line);
            let x2 = if sp.line == 0 { x + 120.0 } else { x - 120.0 };
            (x, ys, x2, ys + 6.0)
        }
        _ => return None,
    };
    Some(Span { x1, y1, x2, y2 })
}

/// The arrowhead of an arrow, by its kind (and direction, for data).
fn marker(a: &Arrow) -> &'static str {
    match a.kind {
        ArrowKind::Syn | ArrowKind::SynAck => "ah-syn",
        ArrowKind::Data => {
            if a.to_backend {
                "ah-c2s"
            } else {
                "ah-s2c"
            }
        }
        ArrowKind::Ack => "ah-ack",
        ArrowKind::Fin => "ah-fin",
        ArrowKind::Rst => "ah-rst",
    }
}

/// The hover text: the label, then frames and times in each capture, then its fate in words.
fn hover_text(l: &Ladder, a: &Arrow) -> String {
    let mut title = a.label.clone();
    if let Some(p) = &a.sent {
        let _ = write!(title, "\nleft: {}", frame_ref(&l.lines, p));
    }
    if let Some(p) = &a.arrived {
        let _ = write!(title, "\narrived: {}", frame_ref(&l.lines, p));
        if let Some(sp) = &a.sent {
            let _ = write!(title, " ({} later)", duration_words((p.t - sp.t) as f64 / 1e6));
        }
    }
    if let (Some(first), Some(last)) = (a.also_arrived.first(), a.also_arrived.last()) {
        let _ = write!(
            title,
            "\nits bytes also arrived in {} more frame{} (#{}–#{})",
            a.also_arrived.len(),
            if a.also_arrived.len() == 1 { "" } else { "s" },
            first.frame,
            last.frame
        );
    }
    match a.fate {
        Fate::Lost => title.push_str("\nnever arrived (not in the other capture, not acknowledged)"),
        Fate::NotCapturedAtReceiver => {
            title.push_str("\narrived (the receiver acknowledged it) but its capture missed it")
        }
        Fate::OutsideCapture => title.push_str("\nthe other end's capture was not running"),
        Fate::NotDrawn => title.push_str("\nthe other end's packets of this moment are not drawn"),
        Fate::ReceiverOnly => title.push_str("\nseen only where it arrived"),
        _ => {}
    }
    title
}

/// The label, near where the arrow starts, in its direction's lane; left out when the lane is
/// taken, unless the arrow is important (then it moves down).
fn arrow_label(s: &mut String, a: &Arrow, g: &Span, lanes: &mut Lanes) {
    let Span { x1, y1, x2, y2 } = *g;
    let important = matches!(
        a.kind,
        ArrowKind::Syn | ArrowKind::SynAck | ArrowKind::Fin | ArrowKind::Rst
    ) || matches!(a.fate, Fate::Lost | Fate::ReceiverOnly)
        || a.zero_window;
    // Labels on the left half and on the right half of the drawing avoid each other.
    let (lx, anchor) = match (a.fate, x2 >= x1) {
        // From its origin mark, away from where it is going.
        (Fate::ReceiverOnly, true) => (x1 - 8.0, "end"),
        (Fate::ReceiverOnly, false) => (x1 + 8.0, "start"),
        (_, true) => (x1 + 10.0, "start"),
        (_, false) => (x1 - 10.0, "end"),
    };
    let lane = if lx < X_MID { 0 } else { 1 };
    let want_y = if a.fate == Fate::ReceiverOnly {
        y1 + 4.0
    } else {
        y1 + (y2 - y1) * 0.12 - 3.0
    };
    if let Some(label_y) = lanes.place(lane, want_y, 12.0, important) {
        let _ = write!(
            s,
            "<text class=\"lbl\" x=\"{lx:.1}\" y=\"{label_y:.1}\" text-anchor=\"{anchor}\">{}</text>",
            esc(&a.label)
        );
    }
}

/// Frame numbers and times in the gutters, where the arrow touches a capture line (when there
/// is room).
fn arrow_gutters(s: &mut String, a: &Arrow, g: &Span, gutters: &mut Lanes) {
    for p in a.sent.iter().chain(a.arrived.iter()) {
        let x = x_line(p.line);
        let y = if Some(*p) == a.sent { g.y1 } else { g.y2 };
        let lane = 2 + p.line.min(1);
        if gutters.place(lane, y, 11.0, false).is_some() {
            let (gx, anchor) = if p.line == 0 {
                (x - 8.0, "end")
            } else {
                (x + 8.0, "start")
            };
            let _ = write!(
                s,
                "<text class=\"gutter\" x=\"{gx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">#{} {}</text>",
                y + 3.5,
                p.frame,
                clock_time(&rfc3339(p.local_ns))
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_axis_keeps_order_and_breaks_idle_time() {
        let ms = 1_000_000;
        let axis = Axis::new(vec![0, ms, 2 * ms, 2 * ms, 5_000 * ms, 5_000 * ms + 10], 10);
        let ys: Vec<f64> = axis.stops.iter().map(|&(_, y)| y).collect();
        assert_eq!(ys.len(), 5, "equal times share a row");
        assert!(ys.windows(2).all(|w| w[1] > w[0]), "{ys:?}");
        // Longer gaps take more room, up to the idle threshold...
        assert!(axis.y(2 * ms) - axis.y(ms) > axis.y(5_000 * ms + 10) - axis.y(5_000 * ms));
        // ...and the 5 s of idle time are one fixed break.
        assert_eq!(axis.breaks.len(), 1);
        assert_eq!(axis.breaks[0].1, 4_998 * ms);
        assert_eq!(idle_words(axis.breaks[0].1), "5.0 s");
        assert!((axis.y(5_000 * ms) - axis.y(2 * ms) - IDLE_PX).abs() < 1e-9);
        // Between two events, y is interpolated; outside, clamped.
        let mid = axis.y(ms / 2);
        assert!(mid > axis.y(0) && mid < axis.y(ms));
        assert_eq!(axis.y(-5), axis.y(0));
    }

    #[test]
    fn forced_labels_move_down_others_give_way() {
        let mut lanes = Lanes {
            last: [f64::NEG_INFINITY; 4],
        };
        assert_eq!(lanes.place(0, 100.0, 12.0, false), Some(100.0));
        assert_eq!(lanes.place(0, 105.0, 12.0, false), None);
        assert_eq!(lanes.place(0, 105.0, 12.0, true), Some(112.0));
        assert_eq!(lanes.place(1, 105.0, 12.0, false), Some(105.0));
    }
}

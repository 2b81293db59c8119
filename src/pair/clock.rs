//! The offset between the two capture clocks, from causality: a packet is never received before it
//! was sent. A packet the proxy sent and the backend received bounds `backend − proxy` from above;
//! one the backend sent and the proxy received bounds it from below. Every paired connection adds
//! its first SYN, SYN-ACK, first data byte and FIN each way; the intersection of all bounds is the
//! offset's window. Bounded memory: the bounds of the first and the last pairs are kept (for the
//! drift), not all of them. The estimate is made again after every pair, so what it needs is kept
//! in order as pairs come (the bounds by time, the per-pair estimates by value): sorting the kept
//! bounds for every pair made pairing quadratic, a few seconds for 20,000 connections.

use crate::http::Conn;
use crate::tcp::PacketRef;

/// The offset between the two capture clocks, estimated from paired packets.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ClockOffset {
    /// Add this to a proxy-capture timestamp to get the backend capture's clock (at `reference_ns`).
    pub backend_minus_proxy_ns: i64,
    /// The offset lies within ± this.
    pub uncertainty_ns: i64,
    /// Packets (handshake, first data, FIN) compared.
    pub samples: u64,
    /// Drift of the offset in parts per million, when the captures are long enough to measure it
    /// and it exceeds the uncertainty; applied by [`ClockOffset::to_backend`].
    pub drift_ppm: Option<f64>,
    /// Proxy-clock time at which `backend_minus_proxy_ns` holds (drift is relative to it).
    pub reference_ns: i64,
    /// The bounds disagreed (no offset satisfies every sample): the estimate is a median.
    pub inconsistent: bool,
}

impl ClockOffset {
    /// The offset at proxy-clock time `t`.
    pub(crate) fn offset_at(&self, t: i64) -> i64 {
        let drift = self.drift_ppm.unwrap_or(0.0);
        self.backend_minus_proxy_ns + ((t - self.reference_ns) as f64 * drift / 1e6) as i64
    }

    /// A proxy-clock time on the backend clock.
    pub(crate) fn to_backend(self, t: i64) -> i64 {
        t.saturating_add(self.offset_at(t))
    }

    /// A backend-clock time on the proxy clock.
    pub(crate) fn to_proxy(self, t: i64) -> i64 {
        // The drift term is tiny: evaluating it at the backend time is close enough.
        t.saturating_sub(self.offset_at(t.saturating_sub(self.backend_minus_proxy_ns)))
    }
}

impl ClockOffset {
    /// No offset and no drift: the two clocks taken as one (when nothing estimated them).
    pub(crate) const IDENTITY: ClockOffset = ClockOffset {
        backend_minus_proxy_ns: 0,
        uncertainty_ns: 0,
        samples: 0,
        drift_ppm: None,
        reference_ns: 0,
        inconsistent: false,
    };
}

/// A backend-clock time on the proxy clock, drift included; without an estimate, as it is (the
/// clocks taken as one).
pub(crate) fn on_proxy_clock(clock: Option<&ClockOffset>, t: i64) -> i64 {
    clock.map_or(t, |c| c.to_proxy(t))
}

/// Per-pair bounds kept at each end of the captures, for drift and for the median fallback.
const KEPT: usize = 2048;

#[derive(Clone, Copy, Debug)]
struct Bounds {
    /// Proxy-clock time of the pair's first packet.
    at: i64,
    lower: Option<i64>,
    upper: Option<i64>,
}

/// The running estimate.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClockAcc {
    lower: Option<i64>,
    upper: Option<i64>,
    samples: u64,
    pairs: u64,
    first: Vec<Bounds>,
    /// A ring of the most recent pairs' bounds (after `first` is full).
    last: Vec<Bounds>,
    last_start: usize,
    /// The kept bounds by (time, place): `first[i]` is at place `i`, `last[j]` at `KEPT + j` (as
    /// a stable sort of `first` then `last` by time orders them).
    by_time: Vec<(i64, usize)>,
    /// The kept bounds' own estimates (`mid`), in order.
    mids: Vec<i64>,
}

impl ClockAcc {
    /// Adds the bounds one paired connection gives.
    pub(crate) fn add(&mut self, p: &Conn, b: &Conn) {
        let mut bd = Bounds {
            at: p.first.ts_ns,
            lower: None,
            upper: None,
        };
        let mut n = 0u64;
        let mut upper = |tp: i64, tb: i64| {
            let v = tb - tp;
            bd.upper = Some(bd.upper.map_or(v, |u| u.min(v)));
            n += 1;
        };
        // Sent by the proxy, received by the backend: first SYN, first data byte, FIN.
        if let (Some(a), Some(c)) = (p.syn, b.syn) {
            upper(a.ts_ns, c.ts_ns);
        }
        if let Some((a, c)) = same_first_data(p, b, 0) {
            upper(a.ts_ns, c.ts_ns);
        }
        if let (Some(a), Some(c)) = (p.dirs[0].fin, b.dirs[0].fin) {
            upper(a.at.ts_ns, c.at.ts_ns);
        }
        let mut lower = |tp: i64, tb: i64| {
            let v = tb - tp;
            bd.lower = Some(bd.lower.map_or(v, |l| l.max(v)));
            n += 1;
        };
        // Sent by the backend, received by the proxy: first SYN-ACK, first data byte, FIN.
        if let (Some(a), Some(c)) = (p.syn_ack, b.syn_ack) {
            lower(a.ts_ns, c.ts_ns);
        }
        if let Some((a, c)) = same_first_data(p, b, 1) {
            lower(a.ts_ns, c.ts_ns);
        }
        if let (Some(a), Some(c)) = (p.dirs[1].fin, b.dirs[1].fin) {
            lower(a.at.ts_ns, c.at.ts_ns);
        }
        if n == 0 {
            return;
        }
        self.add_bounds(bd, n);
    }

    fn add_bounds(&mut self, bd: Bounds, n: u64) {
        self.samples += n;
        self.pairs += 1;
        if let Some(l) = bd.lower {
            self.lower = Some(self.lower.map_or(l, |x| x.max(l)));
        }
        if let Some(u) = bd.upper {
            self.upper = Some(self.upper.map_or(u, |x| x.min(u)));
        }
        let place = if self.first.len() < KEPT {
            self.first.push(bd);
            self.first.len() - 1
        } else if self.last.len() < KEPT {
            self.last.push(bd);
            KEPT + self.last.len() - 1
        } else {
            let j = self.last_start;
            let old = std::mem::replace(&mut self.last[j], bd);
            self.last_start = (j + 1) % KEPT;
            if let Ok(i) = self.by_time.binary_search(&(old.at, KEPT + j)) {
                self.by_time.remove(i);
            }
            if let Some(m) = mid(old.lower, old.upper) {
                if let Ok(i) = self.mids.binary_search(&m) {
                    self.mids.remove(i);
                }
            }
            KEPT + j
        };
        let i = self.by_time.partition_point(|&k| k < (bd.at, place));
        self.by_time.insert(i, (bd.at, place));
        if let Some(m) = mid(bd.lower, bd.upper) {
            let i = self.mids.partition_point(|&x| x < m);
            self.mids.insert(i, m);
        }
    }

    fn kept(&self, place: usize) -> Option<&Bounds> {
        match place.checked_sub(KEPT) {
            None => self.first.get(place),
            Some(j) => self.last.get(j),
        }
    }

    /// The offset as estimated so far.
    pub(crate) fn estimate(&self) -> Option<ClockOffset> {
        if self.pairs == 0 {
            return None;
        }
        let reference_ns = self.by_time.first().map_or(0, |&(at, _)| at);
        let (mut offset, uncertainty, inconsistent) = match (self.lower, self.upper) {
            (Some(l), Some(u)) if l <= u => (l + (u - l) / 2, (u - l) / 2, false),
            (Some(l), None) => (l, 0, false),
            (None, Some(u)) => (u, 0, false),
            _ => {
                // No single offset fits every sample: the clocks drift, or a sample is wrong.
                // Use the median of the per-connection estimates and say so.
                let mids = &self.mids;
                let m = mids.get(mids.len() / 2).copied().unwrap_or(0);
                let spread = mids.last().copied().unwrap_or(m) - mids.first().copied().unwrap_or(m);
                (m, spread / 2, true)
            }
        };
        // Drift: the estimates of the first and the last quarter of the pairs, when the captures
        // span long enough for it to show.
        let mut drift_ppm = None;
        let sorted = &self.by_time;
        let span = sorted.last().map_or(0, |b| b.0) - sorted.first().map_or(0, |b| b.0);
        if sorted.len() >= 8 && span > 60_000_000_000 {
            let q = sorted.len() / 4;
            let window = |places: &[(i64, usize)]| -> Option<(i64, i64, i64)> {
                let bs = || places.iter().filter_map(|&(_, p)| self.kept(p));
                let l = bs().filter_map(|b| b.lower).max()?;
                let u = bs().filter_map(|b| b.upper).min()?;
                let at = bs().map(|b| b.at / places.len() as i64).sum::<i64>();
                Some((at, l, u))
            };
            if let (Some((t1, l1, u1)), Some((t2, l2, u2))) =
                (window(&sorted[..q]), window(&sorted[sorted.len() - q..]))
            {
                let (m1, m2) = ((l1 + u1) / 2, (l2 + u2) / 2);
                let tolerance = ((u1 - l1).abs() + (u2 - l2).abs()) / 2;
                if (m2 - m1).abs() > tolerance && t2 > t1 {
                    let d = (m2 - m1) as f64 / (t2 - t1) as f64 * 1e6;
                    drift_ppm = Some(d);
                    offset = m1 - ((t1 - reference_ns) as f64 * d / 1e6) as i64;
                }
            }
        }
        Some(ClockOffset {
            backend_minus_proxy_ns: offset,
            uncertainty_ns: uncertainty,
            samples: self.samples,
            drift_ppm,
            reference_ns,
            inconsistent,
        })
    }
}

fn mid(l: Option<i64>, u: Option<i64>) -> Option<i64> {
    match (l, u) {
        (Some(l), Some(u)) => Some(l + (u - l) / 2),
        (Some(x), None) | (None, Some(x)) => Some(x),
        (None, None) => None,
    }
}

/// The first data packet of direction `d` at each end, when both saw the same first byte.
fn same_first_data(p: &Conn, b: &Conn, d: usize) -> Option<(PacketRef, PacketRef)> {
    let (pd, bd) = (&p.dirs[d], &b.dirs[d]);
    if pd.data_start.is_some() && pd.data_start == bd.data_start {
        let ps = pd.spans.first()?;
        let bs = bd.spans.first()?;
        (ps.start == bs.start).then_some((ps.first, bs.first))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The estimate as it was made before: from a sorted copy of everything kept.
    fn sorted_copy_estimate(acc: &ClockAcc) -> Option<ClockOffset> {
        if acc.pairs == 0 {
            return None;
        }
        let kept: Vec<Bounds> = acc.first.iter().chain(acc.last.iter()).copied().collect();
        let reference_ns = kept.iter().map(|b| b.at).min().unwrap_or(0);
        let (mut offset, uncertainty, inconsistent) = match (acc.lower, acc.upper) {
            (Some(l), Some(u)) if l <= u => (l + (u - l) / 2, (u - l) / 2, false),
            (Some(l), None) => (l, 0, false),
            (None, Some(u)) => (u, 0, false),
            _ => {
                let mut mids: Vec<i64> = kept.iter().filter_map(|b| mid(b.lower, b.upper)).collect();
                mids.sort_unstable();
                let m = mids.get(mids.len() / 2).copied().unwrap_or(0);
                let spread = mids.last().copied().unwrap_or(m) - mids.first().copied().unwrap_or(m);
                (m, spread / 2, true)
            }
        };
        let mut drift_ppm = None;
        let mut sorted = kept.clone();
        sorted.sort_by_key(|b| b.at);
        let span = sorted.last().map_or(0, |b| b.at) - sorted.first().map_or(0, |b| b.at);
        if sorted.len() >= 8 && span > 60_000_000_000 {
            let q = sorted.len() / 4;
            let window = |bs: &[Bounds]| -> Option<(i64, i64, i64)> {
                let l = bs.iter().filter_map(|b| b.lower).max()?;
                let u = bs.iter().filter_map(|b| b.upper).min()?;
                let at = bs.iter().map(|b| b.at / bs.len() as i64).sum::<i64>();
                Some((at, l, u))
            };
            if let (Some((t1, l1, u1)), Some((t2, l2, u2))) =
                (window(&sorted[..q]), window(&sorted[sorted.len() - q..]))
            {
                let (m1, m2) = ((l1 + u1) / 2, (l2 + u2) / 2);
                let tolerance = ((u1 - l1).abs() + (u2 - l2).abs()) / 2;
                if (m2 - m1).abs() > tolerance && t2 > t1 {
                    let d = (m2 - m1) as f64 / (t2 - t1) as f64 * 1e6;
                    drift_ppm = Some(d);
                    offset = m1 - ((t1 - reference_ns) as f64 * d / 1e6) as i64;
                }
            }
        }
        Some(ClockOffset {
            backend_minus_proxy_ns: offset,
            uncertainty_ns: uncertainty,
            samples: acc.samples,
            drift_ppm,
            reference_ns,
            inconsistent,
        })
    }

    /// Kept in order as pairs come, the estimate is the one a sorted copy gives: drifting
    /// clocks over minutes, bounds that disagree, equal times, past both halves of what is kept.
    #[test]
    fn estimate_kept_in_order_is_the_sorted_one() {
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for drift in [0i64, 40, -25] {
            let mut acc = ClockAcc::default();
            for i in 0..(2 * KEPT as i64 + 1500) {
                let r = next();
                // Pairs come roughly in time order, some out of it, some at equal times.
                let at = i * 30_000_000 + (r % 5) as i64 * 1_000_000_000 - (r % 3) as i64 * 30_000_000;
                let offset = 2_500_000_000 + at / 1_000_000 * drift;
                let noise = (r >> 8) as i64 % 200_000;
                let bd = Bounds {
                    at,
                    lower: (r % 7 != 0).then_some(offset - noise - (r >> 20) as i64 % 50_000),
                    upper: (r % 11 != 0).then_some(offset + noise),
                };
                acc.add_bounds(bd, 1 + r % 4);
                if i % 97 == 0 || i > 2 * KEPT as i64 + 1400 {
                    assert_eq!(
                        acc.estimate(),
                        sorted_copy_estimate(&acc),
                        "pair {i}, drift {drift}"
                    );
                }
            }
        }
    }
}

//! The incident's minutes: `--since` / `--until` on the capture clock, and the time parsing they
//! and the proxy logs need (ISO 8601, epoch seconds, a fixed UTC offset).
//!
//! A connection is in the window when its life (first to last packet, on the proxy capture's
//! clock) overlaps it: a connection opened before `--since` that failed inside the window is
//! part of the incident. Times are nanoseconds since the Unix epoch, UTC.

use crate::diagnose::Finding;

/// The earliest and latest times accepted (as the captures': 1970 to 2116).
const MAX_NS: i64 = 1 << 62;

/// A time window; either end may be open.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Window {
    pub since: Option<i64>,
    pub until: Option<i64>,
}

impl Window {
    /// No bound given.
    pub fn is_open(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }

    /// Does the span `first..=last` overlap the window?
    pub fn overlaps(&self, first: i64, last: i64) -> bool {
        self.since.is_none_or(|s| last >= s) && self.until.is_none_or(|u| first <= u)
    }

    /// Is the instant `t` inside the window? (`t` known to `precision` ns: any overlap counts.)
    pub(crate) fn contains(&self, t: i64, precision: i64) -> bool {
        self.overlaps(t, t.saturating_add(precision))
    }
}

/// The life of a judged connection on the proxy capture's clock (with one capture, on that
/// capture's clock): first and last packet. The backend's view is moved by the clock offset when
/// the proxy capture did not see the connection.
pub fn span(f: &Finding) -> Option<(i64, i64)> {
    if let Some(p) = &f.pair.proxy {
        return Some((p.first.ts_ns, p.last.ts_ns));
    }
    let b = f.pair.backend.as_ref()?;
    let to_proxy = |t: i64| f.clock.map_or(t, |c| c.to_proxy(t));
    Some((to_proxy(b.first.ts_ns), to_proxy(b.last.ts_ns)))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// A calendar date and time of day as nanoseconds since the epoch; None when a field is out of
/// range (month 13, February 30, hour 24, a year before 1970 or after 2116).
pub(crate) fn civil_ns(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32, nanos: u32) -> Option<i64> {
    if !(1970..=2116).contains(&y)
        || !(1..=12).contains(&mo)
        || d == 0
        || d > days_in_month(y, mo)
        || h > 23
        || mi > 59
        || s > 60
        || nanos >= 1_000_000_000
    {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + (h * 3600 + mi * 60 + s) as i64;
    let ns = secs.checked_mul(1_000_000_000)?.checked_add(nanos as i64)?;
    (0..MAX_NS).contains(&ns).then_some(ns)
}

/// A month's English abbreviation (`Jan`..`Dec`) → 1..=12.
pub(crate) fn month_number(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS
        .iter()
        .position(|m| m.eq_ignore_ascii_case(name))
        .map(|i| i as u32 + 1)
}

/// Digits only, as a number (no sign, no spaces); None for anything else or an overflow.
pub(crate) fn digits(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// A fraction of a second written as digits after the point ("388222") → nanoseconds; digits
/// past the ninth are dropped.
pub(crate) fn fraction_ns(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut ns = 0u32;
    for (i, b) in s.bytes().take(9).enumerate() {
        ns += (b - b'0') as u32 * 10u32.pow(8 - i as u32);
    }
    Some(ns)
}

/// `HH:MM:SS[.frac]` → (hour, minute, second, nanoseconds).
pub(crate) fn time_of_day(s: &str) -> Option<(u32, u32, u32, u32)> {
    let (hms, frac) = match s.split_once(['.', ',']) {
        Some((a, b)) => (a, fraction_ns(b)?),
        None => (s, 0),
    };
    let mut it = hms.split(':');
    let h = digits(it.next()?)?;
    let m = digits(it.next()?)?;
    let sec = match it.next() {
        Some(x) => digits(x)?,
        None => 0,
    };
    if it.next().is_some() {
        return None;
    }
    Some((h, m, sec, frac))
}

/// A UTC offset: `UTC`, `Z`, `+02:00`, `-0530`, `+2`; in seconds east of UTC.
pub fn parse_offset(s: &str) -> Result<i32, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("utc") || t.eq_ignore_ascii_case("z") || t.eq_ignore_ascii_case("gmt") {
        return Ok(0);
    }
    let bad = || format!("'{s}' is not a UTC offset (UTC, +02:00, -0530, +2)");
    let (sign, rest) = match t.as_bytes().first() {
        Some(b'+') => (1, &t[1..]),
        Some(b'-') => (-1, &t[1..]),
        _ => return Err(bad()),
    };
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (digits(h).ok_or_else(bad)?, digits(m).ok_or_else(bad)?),
        None if rest.len() == 4 => (
            digits(&rest[..2]).ok_or_else(bad)?,
            digits(&rest[2..]).ok_or_else(bad)?,
        ),
        None if rest.len() <= 2 => (digits(rest).ok_or_else(bad)?, 0),
        None => return Err(bad()),
    };
    if h > 14 || m > 59 {
        return Err(bad());
    }
    Ok(sign * (h * 3600 + m * 60) as i32)
}

/// An offset in seconds as `+HH:MM`.
pub fn offset_words(secs: i32) -> String {
    let sign = if secs < 0 { '-' } else { '+' };
    let a = secs.unsigned_abs();
    format!("{sign}{:02}:{:02}", a / 3600, a % 3600 / 60)
}

/// A point in time as given to `--since` / `--until`: ISO 8601 (`2026-11-22T00:25:20Z`,
/// `2026-11-22 00:25:20.5+01:00`, `2026-11-22`; without an offset, UTC) or seconds since the
/// epoch (`1795300000`, `1795300000.25`). Nanoseconds since the epoch.
pub fn parse_time(s: &str) -> Result<i64, String> {
    let t = s.trim();
    let bad = |why: &str| {
        format!(
            "'{s}' is not a time: {why} (ISO 8601 like 2026-11-22T00:25:20Z or 2026-11-22 00:25:20+01:00, or seconds since the epoch)"
        )
    };
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
        let secs: i64 = whole.parse().map_err(|_| bad("epoch seconds out of range"))?;
        let nanos = if frac.is_empty() {
            0
        } else {
            fraction_ns(frac).ok_or_else(|| bad("bad fraction"))?
        };
        return secs
            .checked_mul(1_000_000_000)
            .and_then(|n| n.checked_add(nanos as i64))
            .filter(|n| (0..MAX_NS).contains(n))
            .ok_or_else(|| bad("epoch seconds out of range"));
    }
    let (date, rest) = match t.find(['T', 't', ' ']) {
        Some(i) => (&t[..i], t[i + 1..].trim_start()),
        None => (t, ""),
    };
    let mut parts = date.split('-');
    let (Some(y), Some(mo), Some(d), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(bad("the date is not YYYY-MM-DD"));
    };
    let (y, mo, d) = match (digits(y), digits(mo), digits(d)) {
        (Some(y), Some(mo), Some(d)) if y >= 1000 => (y as i64, mo, d),
        _ => return Err(bad("the date is not YYYY-MM-DD")),
    };
    // The offset: a trailing Z, or + / - after the time of day.
    let (clock, offset) = if let Some(c) = rest.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        (&rest[..i], parse_offset(&rest[i..]).map_err(|e| bad(&e))?)
    } else {
        (rest, 0)
    };
    let (h, mi, sec, nanos) = if clock.trim().is_empty() {
        (0, 0, 0, 0)
    } else {
        time_of_day(clock.trim()).ok_or_else(|| bad("the time of day is not HH:MM[:SS[.fff]]"))?
    };
    let ns = civil_ns(y, mo, d, h, mi, sec, nanos).ok_or_else(|| bad("a field is out of range"))?;
    Ok(ns - offset as i64 * 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Expected values from `date -u -d '...' +%s`.
    #[test]
    fn iso_and_epoch_times() {
        assert_eq!(
            parse_time("2026-11-22T00:25:20Z").unwrap(),
            1_795_307_120 * 1_000_000_000
        );
        assert_eq!(
            parse_time("2026-11-22 00:25:20").unwrap(),
            1_795_307_120 * 1_000_000_000
        );
        assert_eq!(
            parse_time("2026-11-22T01:25:20.5+01:00").unwrap(),
            1_795_307_120 * 1_000_000_000 + 500_000_000
        );
        assert_eq!(
            parse_time("2026-11-21T19:25:20-0500").unwrap(),
            1_795_307_120 * 1_000_000_000
        );
        assert_eq!(parse_time("2026-11-22").unwrap(), 1_795_305_600 * 1_000_000_000);
        assert_eq!(parse_time("1795307120.25").unwrap(), 1_795_307_120_250_000_000);
        assert_eq!(parse_time("1795307120").unwrap(), 1_795_307_120 * 1_000_000_000);
        // date -u -d '2000-02-29 12:00:00' +%s → 951825600
        assert_eq!(
            parse_time("2000-02-29T12:00:00Z").unwrap(),
            951_825_600 * 1_000_000_000
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-02-30",
            "2026-11-22T25:00",
            "2026-11-22T00:00+15:00",
            "1960-01-01",
            "99999999999999999999",
            "2026-11-22T00:00:00Zjunk",
            "1.2.3",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("UTC"), Ok(0));
        assert_eq!(parse_offset("+02:00"), Ok(7200));
        assert_eq!(parse_offset("-0530"), Ok(-19_800));
        assert_eq!(parse_offset("+2"), Ok(7200));
        assert!(parse_offset("2").is_err());
        assert!(parse_offset("+25:00").is_err());
        assert_eq!(offset_words(-19_800), "-05:30");
        assert_eq!(offset_words(0), "+00:00");
    }

    #[test]
    fn window_overlap() {
        let w = Window {
            since: Some(100),
            until: Some(200),
        };
        assert!(w.overlaps(50, 100));
        assert!(w.overlaps(150, 150));
        assert!(w.overlaps(200, 300));
        assert!(!w.overlaps(10, 99));
        assert!(!w.overlaps(201, 300));
        assert!(Window::default().overlaps(i64::MIN, i64::MIN));
        assert!(w.contains(99, 1) && !w.contains(98, 1));
    }
}

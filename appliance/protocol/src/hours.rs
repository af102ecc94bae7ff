//! Weekly business hours and holidays, as a site publishes them to its kiosks.

use serde::{Deserialize, Serialize};

/// One opening interval in the site's local time, `HH:MM`; `close` may be `24:00`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interval {
    pub open: String,
    pub close: String,
}

/// Opening intervals for each day of the week, Monday first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeeklyHours {
    pub mon: Vec<Interval>,
    pub tue: Vec<Interval>,
    pub wed: Vec<Interval>,
    pub thu: Vec<Interval>,
    pub fri: Vec<Interval>,
    pub sat: Vec<Interval>,
    pub sun: Vec<Interval>,
}

impl WeeklyHours {
    /// The days with their names, Monday first.
    pub fn days(&self) -> [(&'static str, &Vec<Interval>); 7] {
        [
            ("mon", &self.mon),
            ("tue", &self.tue),
            ("wed", &self.wed),
            ("thu", &self.thu),
            ("fri", &self.fri),
            ("sat", &self.sat),
            ("sun", &self.sun),
        ]
    }
}

/// A day the site is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Holiday {
    /// `YYYY-MM-DD`.
    pub date: String,
    #[serde(default)]
    pub name: String,
}

/// Minutes since midnight of an `HH:MM` time, `0..=1440` (`24:00` is 1440).
pub fn minutes(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    match (h, m) {
        (24, 0) => Some(1440),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

/// A site's opening rules in its own time zone: what both the cloud (routing refuses calls
/// when closed) and the kiosk (the closed screen, before anyone types a number) ask.
///
/// Wall-clock rules: an interval `09:00–18:00` means 09:00 to 18:00 on the site's clocks, so a
/// daylight-saving change moves it in UTC. An opening time that does not exist on the day the
/// clocks go forward opens at the first instant after the gap; a time that occurs twice when
/// they go back opens at the first.
#[derive(Debug, Clone)]
pub struct Schedule<'a> {
    tz: jiff::tz::TimeZone,
    hours: &'a WeeklyHours,
    holidays: Vec<jiff::civil::Date>,
}

/// How far ahead [`Schedule::next_opening`] looks (a site closed longer has no next opening).
pub const LOOKAHEAD_DAYS: i64 = 400;

impl<'a> Schedule<'a> {
    /// `timezone` is an IANA name; holidays that are not dates are ignored (validated upstream).
    pub fn new(
        timezone: &str,
        hours: &'a WeeklyHours,
        holidays: &[Holiday],
    ) -> Result<Schedule<'a>, UnknownTimeZone> {
        let tz =
            jiff::tz::TimeZone::get(timezone).map_err(|_| UnknownTimeZone(timezone.to_string()))?;
        let holidays = holidays
            .iter()
            .filter_map(|h| h.date.parse().ok())
            .collect();
        Ok(Schedule {
            tz,
            hours,
            holidays,
        })
    }

    fn day(&self, date: jiff::civil::Date) -> &'a [Interval] {
        let days = self.hours.days();
        days[date.weekday().to_monday_zero_offset() as usize].1
    }

    fn is_holiday(&self, date: jiff::civil::Date) -> bool {
        self.holidays.contains(&date)
    }

    /// Whether the site is open at `at`.
    pub fn is_open_at(&self, at: jiff::Timestamp) -> bool {
        let local = at.to_zoned(self.tz.clone());
        let date = local.date();
        if self.is_holiday(date) {
            return false;
        }
        let t = local.time();
        let now = u32::from(t.hour().unsigned_abs()) * 60 + u32::from(t.minute().unsigned_abs());
        self.day(date).iter().any(|i| {
            matches!((minutes(&i.open), minutes(&i.close)), (Some(o), Some(c)) if o <= now && now < c)
        })
    }

    /// The next instant at or after `at` when the site is open: `at` itself when open now,
    /// `None` when it opens on no day in the next [`LOOKAHEAD_DAYS`].
    pub fn next_opening(&self, at: jiff::Timestamp) -> Option<jiff::Zoned> {
        if self.is_open_at(at) {
            return Some(at.to_zoned(self.tz.clone()));
        }
        let start = at.to_zoned(self.tz.clone()).date();
        for offset in 0..=LOOKAHEAD_DAYS {
            let date = start.checked_add(jiff::Span::new().days(offset)).ok()?;
            if self.is_holiday(date) {
                continue;
            }
            for interval in self.day(date) {
                let Some(open) = minutes(&interval.open).filter(|m| *m < 1440) else {
                    continue;
                };
                let time =
                    jiff::civil::Time::new((open / 60) as i8, (open % 60) as i8, 0, 0).ok()?;
                let wall = date.to_datetime(time);
                let Ok(mut zoned) = wall.to_zoned(self.tz.clone()) else {
                    continue;
                };
                if zoned.datetime() != wall {
                    // In the spring-forward gap: open from the transition, the first instant
                    // whose wall clock is past the opening time.
                    let before = self
                        .tz
                        .to_ambiguous_timestamp(wall)
                        .earlier()
                        .ok()
                        .unwrap_or(zoned.timestamp());
                    if let Some(t) = self.tz.following(before).next() {
                        zoned = t.timestamp().to_zoned(self.tz.clone());
                    }
                }
                if zoned.timestamp() > at {
                    return Some(zoned);
                }
            }
        }
        None
    }
}

/// A time zone name the device's or cloud's database does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownTimeZone(pub String);

impl std::fmt::Display for UnknownTimeZone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown time zone {:?}", self.0)
    }
}

impl std::error::Error for UnknownTimeZone {}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(open: &str, close: &str) -> Interval {
        Interval {
            open: open.into(),
            close: close.into(),
        }
    }

    fn ts(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    /// Every day 02:30–18:00, so the spring-forward gap (02:00–03:00 in Paris) is hit.
    fn every_day() -> WeeklyHours {
        let d = vec![iv("02:30", "18:00")];
        WeeklyHours {
            mon: d.clone(),
            tue: d.clone(),
            wed: d.clone(),
            thu: d.clone(),
            fri: d.clone(),
            sat: d.clone(),
            sun: d,
        }
    }

    #[test]
    fn opening_follows_wall_clock_across_daylight_saving() {
        let hours = every_day();
        let s = Schedule::new("Europe/Paris", &hours, &[]).unwrap();
        // Saturday 2027-03-27 (CET, UTC+1): 17:30 local is 16:30Z, open; 17:30Z is 18:30 local.
        assert!(s.is_open_at(ts("2027-03-27T16:30:00Z")));
        assert!(!s.is_open_at(ts("2027-03-27T17:30:00Z")));
        // Sunday 2027-03-28 clocks go 02:00 → 03:00: 02:30 does not exist; it opens at 03:00
        // CEST = 01:00Z.
        let next = s.next_opening(ts("2027-03-27T17:30:00Z")).unwrap();
        assert_eq!(next.timestamp(), ts("2027-03-28T01:00:00Z"));
        // Monday after: 02:30 CEST = 00:30Z; closing 18:00 CEST = 16:00Z.
        let next = s.next_opening(ts("2027-03-28T16:00:00Z")).unwrap();
        assert_eq!(next.timestamp(), ts("2027-03-29T00:30:00Z"));
        assert!(s.is_open_at(ts("2027-03-29T15:59:00Z")));
        assert!(!s.is_open_at(ts("2027-03-29T16:00:00Z")));
        // Autumn: Sunday 2027-10-31 back to CET; 18:00 CET is 17:00Z.
        assert!(s.is_open_at(ts("2027-10-31T16:59:00Z")));
        assert!(!s.is_open_at(ts("2027-10-31T17:00:00Z")));
    }

    #[test]
    fn holidays_close_the_whole_day() {
        let hours = every_day();
        let holidays = [Holiday {
            date: "2026-12-25".into(),
            name: "Noël".into(),
        }];
        let s = Schedule::new("Europe/Paris", &hours, &holidays).unwrap();
        assert!(!s.is_open_at(ts("2026-12-25T10:00:00Z")));
        let next = s.next_opening(ts("2026-12-24T18:00:00Z")).unwrap();
        assert_eq!(next.timestamp(), ts("2026-12-26T01:30:00Z"));
        assert_eq!(next.date().to_string(), "2026-12-26");
    }

    #[test]
    fn never_open_has_no_next_opening() {
        let hours = WeeklyHours::default();
        let s = Schedule::new("America/New_York", &hours, &[]).unwrap();
        assert!(s.next_opening(ts("2026-11-21T12:00:00Z")).is_none());
        assert!(Schedule::new("Mars/Olympus", &hours, &[]).is_err());
    }

    #[test]
    fn minutes_of_day() {
        assert_eq!(minutes("00:00"), Some(0));
        assert_eq!(minutes("09:30"), Some(570));
        assert_eq!(minutes("24:00"), Some(1440));
        for bad in ["9:30", "24:01", "12:60", "ab:cd", "1230"] {
            assert_eq!(minutes(bad), None, "{bad}");
        }
    }
}

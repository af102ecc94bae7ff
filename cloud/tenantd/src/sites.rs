//! Sites: a shop location with its time zone, weekly business hours and holidays.
//!
//! The wire types (weekly hours, holidays) are kiosk-protocol's, so what a kiosk receives is
//! what an admin saved. Plain values and their validation; whether a site is open at an instant
//! is `kiosk_protocol::hours::Schedule`'s answer (the kiosk asks the same one), which call
//! routing reads through [`open_at`]. Validation happens once, when a [`SiteInput`] becomes a
//! [`SiteSpec`], so everything stored is known to be well-formed.

use std::collections::BTreeSet;

use jiff::civil::Date;
use jiff::tz::TimeZone;
use serde::Deserialize;

use crate::error::ApiError;
pub use kiosk_protocol::hours::{minutes, Holiday, Interval, Schedule, WeeklyHours};

/// Longest site name.
pub const MAX_NAME: usize = 80;
/// At most this many opening intervals a day.
pub const MAX_INTERVALS_PER_DAY: usize = 4;
/// At most this many holidays per site.
pub const MAX_HOLIDAYS: usize = 400;

/// A site as a client sends it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteInput {
    pub name: String,
    pub timezone: String,
    pub business_hours: WeeklyHours,
    #[serde(default)]
    pub holidays: Vec<Holiday>,
}

/// A validated site, ready to store: names trimmed, intervals sorted, holidays sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteSpec {
    pub name: String,
    pub timezone: String,
    pub business_hours: WeeklyHours,
    pub holidays: Vec<Holiday>,
}

fn check_day(day: &str, intervals: &[Interval]) -> Result<Vec<Interval>, ApiError> {
    if intervals.len() > MAX_INTERVALS_PER_DAY {
        return Err(ApiError::invalid(
            "business_hours",
            format!("{day}: at most {MAX_INTERVALS_PER_DAY} opening intervals a day"),
        ));
    }
    let mut spans = Vec::with_capacity(intervals.len());
    for i in intervals {
        let bad = |what: &str| {
            ApiError::invalid(
                "business_hours",
                format!("{day}: {what} must be a time HH:MM between 00:00 and 24:00"),
            )
        };
        let open = minutes(&i.open)
            .filter(|m| *m < 1440)
            .ok_or_else(|| bad("open"))?;
        let close = minutes(&i.close).ok_or_else(|| bad("close"))?;
        if close <= open {
            return Err(ApiError::invalid(
                "business_hours",
                format!("{day}: {}–{} closes before it opens", i.open, i.close),
            ));
        }
        spans.push((open, close, i.clone()));
    }
    spans.sort_by_key(|(open, _, _)| *open);
    for pair in spans.windows(2) {
        if pair[1].0 < pair[0].1 {
            return Err(ApiError::invalid(
                "business_hours",
                format!(
                    "{day}: {}–{} overlaps {}–{}",
                    pair[0].2.open, pair[0].2.close, pair[1].2.open, pair[1].2.close
                ),
            ));
        }
    }
    Ok(spans.into_iter().map(|(_, _, i)| i).collect())
}

impl SiteInput {
    /// Validates every field; the error names the field and says what is wrong.
    pub fn validate(self) -> Result<SiteSpec, ApiError> {
        let name = self.name.trim().to_string();
        if name.is_empty() || name.chars().count() > MAX_NAME || name.chars().any(char::is_control)
        {
            return Err(ApiError::invalid(
                "name",
                format!("the site name must have 1 to {MAX_NAME} characters"),
            ));
        }
        let timezone = self.timezone.trim().to_string();
        if TimeZone::get(&timezone).is_err() {
            return Err(ApiError::invalid(
                "timezone",
                format!("unknown time zone {timezone:?}; use an IANA name such as Europe/Paris"),
            ));
        }
        let h = &self.business_hours;
        let business_hours = WeeklyHours {
            mon: check_day("mon", &h.mon)?,
            tue: check_day("tue", &h.tue)?,
            wed: check_day("wed", &h.wed)?,
            thu: check_day("thu", &h.thu)?,
            fri: check_day("fri", &h.fri)?,
            sat: check_day("sat", &h.sat)?,
            sun: check_day("sun", &h.sun)?,
        };
        if self.holidays.len() > MAX_HOLIDAYS {
            return Err(ApiError::invalid(
                "holidays",
                format!("at most {MAX_HOLIDAYS} holidays"),
            ));
        }
        let mut seen = BTreeSet::new();
        let mut holidays = Vec::with_capacity(self.holidays.len());
        for holiday in self.holidays {
            let date: Date = holiday.date.parse().map_err(|_| {
                ApiError::invalid(
                    "holidays",
                    format!("{:?} is not a date YYYY-MM-DD", holiday.date),
                )
            })?;
            if !seen.insert(date) {
                return Err(ApiError::invalid(
                    "holidays",
                    format!("{date} is listed twice"),
                ));
            }
            let name = holiday.name.trim().to_string();
            if name.chars().count() > MAX_NAME || name.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    "holidays",
                    format!("holiday names have at most {MAX_NAME} characters"),
                ));
            }
            holidays.push((
                date,
                Holiday {
                    date: date.to_string(),
                    name,
                },
            ));
        }
        holidays.sort_by_key(|(d, _)| *d);
        Ok(SiteSpec {
            name,
            timezone,
            business_hours,
            holidays: holidays.into_iter().map(|(_, h)| h).collect(),
        })
    }
}

impl SiteSpec {
    /// Whether the site is open at `at` (its own time zone, holidays closed all day).
    pub fn is_open_at(&self, at: jiff::Timestamp) -> bool {
        Schedule::new(&self.timezone, &self.business_hours, &self.holidays)
            .is_ok_and(|s| s.is_open_at(at))
    }
}

/// Whether a site with these hours is open at `at_ms` (Unix ms): wall-clock hours in its
/// own time zone, daylight saving included; holidays closed all day; an unknown time zone
/// (never stored: sites are validated) or an instant out of range counts as closed.
pub fn open_at(timezone: &str, hours: &WeeklyHours, holidays: &[Holiday], at_ms: i64) -> bool {
    let Ok(at) = jiff::Timestamp::from_millisecond(at_ms) else {
        return false;
    };
    Schedule::new(timezone, hours, holidays).is_ok_and(|s| s.is_open_at(at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(open: &str, close: &str) -> Interval {
        Interval {
            open: open.into(),
            close: close.into(),
        }
    }

    fn input(mon: Vec<Interval>) -> SiteInput {
        SiteInput {
            name: "  Lyon Part-Dieu ".into(),
            timezone: "Europe/Paris".into(),
            business_hours: WeeklyHours {
                mon,
                ..WeeklyHours::default()
            },
            holidays: vec![Holiday {
                date: "2026-12-25".into(),
                name: "Noël".into(),
            }],
        }
    }

    fn field_of(e: ApiError) -> &'static str {
        match e {
            ApiError::InvalidInput { field, .. } => field,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn valid_site_is_normalized() {
        let spec = input(vec![iv("14:00", "18:00"), iv("09:00", "12:30")])
            .validate()
            .unwrap();
        assert_eq!(spec.name, "Lyon Part-Dieu");
        assert_eq!(spec.business_hours.mon[0].open, "09:00");
        assert!(input(vec![iv("00:00", "24:00")]).validate().is_ok());
    }

    #[test]
    fn bad_values_name_their_field() {
        assert_eq!(
            field_of(input(vec![iv("9:00", "12:00")]).validate().unwrap_err()),
            "business_hours"
        );
        assert_eq!(
            field_of(input(vec![iv("12:00", "09:00")]).validate().unwrap_err()),
            "business_hours"
        );
        assert_eq!(
            field_of(
                input(vec![iv("09:00", "13:00"), iv("12:00", "18:00")])
                    .validate()
                    .unwrap_err()
            ),
            "business_hours"
        );
        assert_eq!(
            field_of(input(vec![iv("24:00", "24:00")]).validate().unwrap_err()),
            "business_hours"
        );
        let mut bad_tz = input(vec![]);
        bad_tz.timezone = "Mars/Olympus".into();
        assert_eq!(field_of(bad_tz.validate().unwrap_err()), "timezone");
        let mut twice = input(vec![]);
        twice.holidays.push(twice.holidays[0].clone());
        assert_eq!(field_of(twice.validate().unwrap_err()), "holidays");
        let mut blank = input(vec![]);
        blank.name = "   ".into();
        assert_eq!(field_of(blank.validate().unwrap_err()), "name");
    }

    #[test]
    fn open_follows_local_time_and_holidays() {
        let spec = input(vec![iv("09:00", "12:30")]).validate().unwrap();
        // Monday 2026-11-23 10:00 in Paris is 09:00 UTC.
        let open: jiff::Timestamp = "2026-11-23T09:00:00Z".parse().unwrap();
        let closed: jiff::Timestamp = "2026-11-23T12:00:00Z".parse().unwrap();
        assert!(spec.is_open_at(open));
        assert!(!spec.is_open_at(closed));
        let mut on_holiday = spec.clone();
        on_holiday.holidays.push(Holiday {
            date: "2026-11-23".into(),
            name: String::new(),
        });
        assert!(!on_holiday.is_open_at(open));
    }

    #[test]
    fn open_follows_the_wall_clock_across_daylight_saving() {
        let spec = input(vec![iv("09:00", "12:30")]).validate().unwrap();
        let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
        let hours = &spec.business_hours;
        // Monday 2027-03-22 (CET, UTC+1): 09:00 local is 08:00Z.
        assert!(open_at(
            "Europe/Paris",
            hours,
            &[],
            at("2027-03-22T08:00:00Z")
        ));
        assert!(!open_at(
            "Europe/Paris",
            hours,
            &[],
            at("2027-03-22T07:59:00Z")
        ));
        // Monday 2027-03-29 (CEST, UTC+2): 09:00 local is 07:00Z.
        assert!(open_at(
            "Europe/Paris",
            hours,
            &[],
            at("2027-03-29T07:00:00Z")
        ));
        assert!(!open_at(
            "Europe/Paris",
            hours,
            &[],
            at("2027-03-29T10:30:00Z")
        ));
        assert!(!open_at(
            "Mars/Olympus",
            hours,
            &[],
            at("2027-03-29T08:00:00Z")
        ));
    }
}

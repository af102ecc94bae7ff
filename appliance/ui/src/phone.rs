//! Countries and their calling codes for the phone keypad, and the number the customer typed
//! made into E.164.
//!
//! The customer picks a country (the site's by default) and types the national number as
//! they know it; a national trunk prefix (`0` in most of the world, `1` in the North
//! American plan) is dropped, the calling code put in front, and the result checked with
//! [`kiosk_protocol::journey::normalize_phone`]. The number lives only in the page until it
//! is sent, and here only for the D-Bus call that asks for the code.

use kiosk_protocol::journey::normalize_phone;

/// A country on the picker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Country {
    /// ISO 3166 alpha-2 (the page names it in the screen's language with `Intl.DisplayNames`).
    pub iso: &'static str,
    /// The calling code without `+`.
    pub code: &'static str,
    /// The national trunk prefix dropped from a number typed with it.
    pub trunk: Trunk,
    /// Time zones whose sites default to this country.
    pub zones: &'static [&'static str],
}

/// A national trunk prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trunk {
    /// None: a leading 0 is part of the number (Italy's fixed lines).
    None,
    /// A leading `0` is dropped.
    Zero,
    /// The North American plan: a leading `1` before ten digits is dropped.
    One,
}

const fn c(
    iso: &'static str,
    code: &'static str,
    trunk: Trunk,
    zones: &'static [&'static str],
) -> Country {
    Country {
        iso,
        code,
        trunk,
        zones,
    }
}

/// The countries offered, in the picker's order (by calling code).
pub const COUNTRIES: &[Country] = &[
    c(
        "US",
        "1",
        Trunk::One,
        &[
            "America/New_York",
            "America/Chicago",
            "America/Denver",
            "America/Los_Angeles",
            "America/Phoenix",
            "America/Anchorage",
            "Pacific/Honolulu",
        ],
    ),
    c(
        "CA",
        "1",
        Trunk::One,
        &[
            "America/Toronto",
            "America/Vancouver",
            "America/Montreal",
            "America/Edmonton",
            "America/Winnipeg",
            "America/Halifax",
        ],
    ),
    c("EG", "20", Trunk::Zero, &["Africa/Cairo"]),
    c("ZA", "27", Trunk::Zero, &["Africa/Johannesburg"]),
    c("GR", "30", Trunk::Zero, &["Europe/Athens"]),
    c("NL", "31", Trunk::Zero, &["Europe/Amsterdam"]),
    c("BE", "32", Trunk::Zero, &["Europe/Brussels"]),
    c("FR", "33", Trunk::Zero, &["Europe/Paris"]),
    c(
        "ES",
        "34",
        Trunk::None,
        &["Europe/Madrid", "Atlantic/Canary"],
    ),
    c("PT", "351", Trunk::None, &["Europe/Lisbon"]),
    c("LU", "352", Trunk::None, &["Europe/Luxembourg"]),
    c("IE", "353", Trunk::Zero, &["Europe/Dublin"]),
    c("IT", "39", Trunk::None, &["Europe/Rome"]),
    c("RO", "40", Trunk::Zero, &["Europe/Bucharest"]),
    c("CH", "41", Trunk::Zero, &["Europe/Zurich"]),
    c("AT", "43", Trunk::Zero, &["Europe/Vienna"]),
    c("GB", "44", Trunk::Zero, &["Europe/London"]),
    c("DK", "45", Trunk::None, &["Europe/Copenhagen"]),
    c("SE", "46", Trunk::Zero, &["Europe/Stockholm"]),
    c("NO", "47", Trunk::None, &["Europe/Oslo"]),
    c("PL", "48", Trunk::None, &["Europe/Warsaw"]),
    c("DE", "49", Trunk::Zero, &["Europe/Berlin"]),
    c("MX", "52", Trunk::None, &["America/Mexico_City"]),
    c("BR", "55", Trunk::Zero, &["America/Sao_Paulo"]),
    c(
        "AU",
        "61",
        Trunk::Zero,
        &[
            "Australia/Sydney",
            "Australia/Melbourne",
            "Australia/Brisbane",
            "Australia/Perth",
            "Australia/Adelaide",
        ],
    ),
    c("NZ", "64", Trunk::Zero, &["Pacific/Auckland"]),
    c("SG", "65", Trunk::None, &["Asia/Singapore"]),
    c("JP", "81", Trunk::Zero, &["Asia/Tokyo"]),
    c("TR", "90", Trunk::Zero, &["Europe/Istanbul"]),
    c("IN", "91", Trunk::Zero, &["Asia/Kolkata"]),
    c("MA", "212", Trunk::Zero, &["Africa/Casablanca"]),
    c("DZ", "213", Trunk::Zero, &["Africa/Algiers"]),
    c("TN", "216", Trunk::None, &["Africa/Tunis"]),
    c("SN", "221", Trunk::None, &["Africa/Dakar"]),
    c("CI", "225", Trunk::None, &["Africa/Abidjan"]),
    c("LB", "961", Trunk::Zero, &["Asia/Beirut"]),
    c("JO", "962", Trunk::Zero, &["Asia/Amman"]),
    c("SA", "966", Trunk::Zero, &["Asia/Riyadh"]),
    c("AE", "971", Trunk::Zero, &["Asia/Dubai"]),
    c("QA", "974", Trunk::None, &["Asia/Qatar"]),
];

/// The country with this ISO code (any case).
pub fn country(iso: &str) -> Option<&'static Country> {
    COUNTRIES.iter().find(|c| c.iso.eq_ignore_ascii_case(iso))
}

/// The country of a site's time zone, if the table knows it.
pub fn country_of_zone(tz: &str) -> Option<&'static Country> {
    COUNTRIES.iter().find(|c| c.zones.contains(&tz))
}

/// Why a typed number cannot be used (the screen says it in its own words).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("unknown country {0:?}")]
    UnknownCountry(String),
    #[error("the number may hold only digits")]
    NotDigits,
    #[error("{0}")]
    Invalid(&'static str),
}

/// The E.164 form of a national number typed for `iso`'s country.
pub fn to_e164(iso: &str, national: &str) -> Result<String, PhoneError> {
    let country = country(iso).ok_or_else(|| PhoneError::UnknownCountry(iso.to_string()))?;
    if national.is_empty() || national.len() > 15 || !national.bytes().all(|b| b.is_ascii_digit()) {
        return Err(PhoneError::NotDigits);
    }
    let digits = match country.trunk {
        Trunk::Zero => national.strip_prefix('0').unwrap_or(national),
        Trunk::One if national.len() == 11 => national.strip_prefix('1').unwrap_or(national),
        Trunk::One | Trunk::None => national,
    };
    normalize_phone(&format!("+{}{digits}", country.code)).map_err(|e| PhoneError::Invalid(e.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_prefixes_are_dropped_where_the_country_has_one() {
        assert_eq!(to_e164("FR", "0612345678").unwrap(), "+33612345678");
        assert_eq!(to_e164("fr", "612345678").unwrap(), "+33612345678");
        assert_eq!(to_e164("GB", "07911123456").unwrap(), "+447911123456");
        // Italy keeps its leading 0.
        assert_eq!(to_e164("IT", "0612345678").unwrap(), "+390612345678");
        assert_eq!(to_e164("US", "14155550100").unwrap(), "+14155550100");
        assert_eq!(to_e164("US", "4155550100").unwrap(), "+14155550100");
        // Only one trunk zero goes.
        assert_eq!(to_e164("DE", "0030123456").unwrap(), "+49030123456");
    }

    #[test]
    fn bad_numbers_are_refused_before_any_call() {
        assert_eq!(
            to_e164("ZZ", "123").unwrap_err(),
            PhoneError::UnknownCountry("ZZ".into())
        );
        assert_eq!(to_e164("FR", "06 12").unwrap_err(), PhoneError::NotDigits);
        assert_eq!(to_e164("FR", "").unwrap_err(), PhoneError::NotDigits);
        assert_eq!(to_e164("FR", "+33612").unwrap_err(), PhoneError::NotDigits);
        assert_eq!(
            to_e164("FR", "1234567890123456").unwrap_err(),
            PhoneError::NotDigits
        );
        assert!(matches!(
            to_e164("FR", "06").unwrap_err(),
            PhoneError::Invalid(_)
        ));
    }

    #[test]
    fn the_table_is_consistent() {
        for (i, c) in COUNTRIES.iter().enumerate() {
            assert_eq!(c.iso.len(), 2);
            assert!(c.iso.bytes().all(|b| b.is_ascii_uppercase()));
            assert!(!c.code.starts_with('0') && c.code.bytes().all(|b| b.is_ascii_digit()));
            assert!(
                COUNTRIES[..i].iter().all(|o| o.iso != c.iso),
                "{} twice",
                c.iso
            );
            for z in c.zones {
                assert!(jiff::tz::TimeZone::get(z).is_ok(), "{z}");
                assert_eq!(country_of_zone(z).map(|c| c.iso), Some(c.iso));
            }
        }
        assert_eq!(country_of_zone("Europe/Paris").unwrap().iso, "FR");
        assert!(country_of_zone("Antarctica/Troll").is_none());
    }
}

//! What kiosk-ui says in words on its own side: the languages it speaks, the versioned
//! recording-consent notices, and the next opening time in the site's time zone.
//!
//! The page's fixed words are in `assets/i18n/<language>.json`; the texts here depend on data
//! (a notice version from the cloud, a time) and are put into the view ready to show.

use serde::Serialize;

/// A language the screens are written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    En,
    Fr,
    Ar,
}

impl Language {
    /// Every language, in the order the attract screen offers them.
    pub const ALL: [Language; 3] = [Language::En, Language::Fr, Language::Ar];

    /// The BCP 47 tag.
    pub fn tag(self) -> &'static str {
        match self {
            Language::En => "en",
            Language::Fr => "fr",
            Language::Ar => "ar",
        }
    }

    /// `ltr` or `rtl`, for the page's `dir`.
    pub fn dir(self) -> &'static str {
        match self {
            Language::Ar => "rtl",
            Language::En | Language::Fr => "ltr",
        }
    }

    /// A tag as the config spells it; a region (`fr-CA`) reads as its language.
    pub fn parse(tag: &str) -> Option<Language> {
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        Language::ALL
            .into_iter()
            .find(|l| l.tag().eq_ignore_ascii_case(primary))
    }
}

/// The consent notices this build knows, by version. A config that names another version
/// gets no question: the call is placed without recording (consent `declined`).
pub const CONSENT_NOTICE_VERSIONS: &[u32] = &[1];

/// The recording notice `version` in `lang`, or `None` when this build does not have it.
pub fn consent_notice(version: u32, lang: Language) -> Option<&'static str> {
    match (version, lang) {
        (1, Language::En) => Some(
            "This organization records video calls to improve its service and to keep a \
             record of the advice given. A recording is kept only as long as the \
             organization's retention rules allow, and you can ask for it to be deleted. \
             Do you agree to this call being recorded? If you say no, you still get your \
             call, without recording.",
        ),
        (1, Language::Fr) => Some(
            "Cette organisation enregistre les appels vidéo pour améliorer son service et \
             garder une trace des conseils donnés. Un enregistrement n’est conservé que le \
             temps permis par les règles de conservation de l’organisation, et vous pouvez \
             demander sa suppression. Acceptez-vous que cet appel soit enregistré ? Si vous \
             refusez, votre appel a lieu quand même, sans enregistrement.",
        ),
        (1, Language::Ar) => Some(
            "تسجّل هذه المؤسسة مكالمات الفيديو لتحسين خدمتها وللاحتفاظ بسجلّ للنصائح \
             المقدَّمة. لا يُحفَظ التسجيل إلا للمدة التي تسمح بها قواعد الاحتفاظ لدى \
             المؤسسة، ويمكنك طلب حذفه. هل توافق على تسجيل هذه المكالمة؟ إذا رفضت، ستحصل \
             على مكالمتك مع ذلك، دون تسجيل.",
        ),
        _ => None,
    }
}

const WEEKDAYS: [[&str; 7]; 3] = [
    [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ],
    [
        "lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche",
    ],
    [
        "الاثنين",
        "الثلاثاء",
        "الأربعاء",
        "الخميس",
        "الجمعة",
        "السبت",
        "الأحد",
    ],
];

const MONTHS: [[&str; 12]; 3] = [
    [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ],
    [
        "janvier",
        "février",
        "mars",
        "avril",
        "mai",
        "juin",
        "juillet",
        "août",
        "septembre",
        "octobre",
        "novembre",
        "décembre",
    ],
    [
        "يناير",
        "فبراير",
        "مارس",
        "أبريل",
        "مايو",
        "يونيو",
        "يوليو",
        "أغسطس",
        "سبتمبر",
        "أكتوبر",
        "نوفمبر",
        "ديسمبر",
    ],
];

fn index(lang: Language) -> usize {
    match lang {
        Language::En => 0,
        Language::Fr => 1,
        Language::Ar => 2,
    }
}

/// When the site opens next, in the site's time zone (`opening` carries it) and in `lang`,
/// relative to `now` where that reads better: "today at 14:00", "tomorrow at 09:00",
/// "Saturday at 10:00", "Monday 7 December at 09:00".
pub fn opening_time(opening: &jiff::Zoned, now: jiff::Timestamp, lang: Language) -> String {
    let today = now.to_zoned(opening.time_zone().clone()).date();
    let date = opening.date();
    let time = format!("{:02}:{:02}", opening.hour(), opening.minute());
    let days = today.until(date).map(|s| s.get_days()).unwrap_or(i32::MAX);
    let i = index(lang);
    let weekday = WEEKDAYS[i][date.weekday().to_monday_zero_offset() as usize];
    let month = MONTHS[i][(date.month() - 1).clamp(0, 11) as usize];
    let day = date.day();
    match (lang, days) {
        (Language::En, 0) => format!("today at {time}"),
        (Language::En, 1) => format!("tomorrow at {time}"),
        (Language::En, 2..=6) => format!("{weekday} at {time}"),
        (Language::En, _) => format!("{weekday} {day} {month} at {time}"),
        (Language::Fr, 0) => format!("aujourd’hui à {time}"),
        (Language::Fr, 1) => format!("demain à {time}"),
        (Language::Fr, 2..=6) => format!("{weekday} à {time}"),
        (Language::Fr, _) => format!("{weekday} {day} {month} à {time}"),
        (Language::Ar, 0) => format!("اليوم الساعة {time}"),
        (Language::Ar, 1) => format!("غدًا الساعة {time}"),
        (Language::Ar, 2..=6) => format!("{weekday} الساعة {time}"),
        (Language::Ar, _) => format!("{weekday} {day} {month} الساعة {time}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zoned(s: &str, tz: &str) -> jiff::Zoned {
        s.parse::<jiff::Timestamp>()
            .unwrap()
            .to_zoned(jiff::tz::TimeZone::get(tz).unwrap())
    }

    #[test]
    fn languages_parse_and_have_a_direction() {
        assert_eq!(Language::parse("fr-CA"), Some(Language::Fr));
        assert_eq!(Language::parse("AR"), Some(Language::Ar));
        assert_eq!(Language::parse("de"), None);
        assert_eq!(Language::Ar.dir(), "rtl");
        assert_eq!(Language::En.dir(), "ltr");
    }

    #[test]
    fn every_known_notice_exists_in_every_language() {
        for v in CONSENT_NOTICE_VERSIONS {
            for l in Language::ALL {
                assert!(
                    consent_notice(*v, l).is_some_and(|t| t.len() > 100),
                    "{v} {l:?}"
                );
            }
        }
        assert!(consent_notice(2, Language::En).is_none());
        assert!(consent_notice(0, Language::Fr).is_none());
    }

    #[test]
    fn opening_times_read_in_the_site_zone_and_language() {
        // Friday 2026-11-20 19:30 in Paris (18:30Z); the site opens Saturday 09:00 local.
        let now: jiff::Timestamp = "2026-11-20T18:30:00Z".parse().unwrap();
        let sat = zoned("2026-11-21T08:00:00Z", "Europe/Paris");
        assert_eq!(opening_time(&sat, now, Language::En), "tomorrow at 09:00");
        assert_eq!(opening_time(&sat, now, Language::Fr), "demain à 09:00");
        assert_eq!(opening_time(&sat, now, Language::Ar), "غدًا الساعة 09:00");
        let mon = zoned("2026-11-23T08:00:00Z", "Europe/Paris");
        assert_eq!(opening_time(&mon, now, Language::En), "Monday at 09:00");
        assert_eq!(opening_time(&mon, now, Language::Fr), "lundi à 09:00");
        let later = zoned("2026-12-07T08:00:00Z", "Europe/Paris");
        assert_eq!(
            opening_time(&later, now, Language::En),
            "Monday 7 December at 09:00"
        );
        assert_eq!(
            opening_time(&later, now, Language::Fr),
            "lundi 7 décembre à 09:00"
        );
        assert_eq!(
            opening_time(&later, now, Language::Ar),
            "الاثنين 7 ديسمبر الساعة 09:00"
        );
        // The site's zone decides "today": 23:30Z Friday is already Saturday in Tokyo.
        let now: jiff::Timestamp = "2026-11-20T23:30:00Z".parse().unwrap();
        let tokyo = zoned("2026-11-21T01:00:00Z", "Asia/Tokyo");
        assert_eq!(opening_time(&tokyo, now, Language::En), "today at 10:00");
    }
}

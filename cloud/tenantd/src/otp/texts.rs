//! The SMS texts, in English, French and Arabic, chosen by the journey's language (the kiosk
//! screen's BCP 47 tag; anything else reads as English). The code comes first, so phones that
//! offer to fill codes in find it.

/// A language of the texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Fr,
    Ar,
}

impl Lang {
    /// The language of a BCP 47 tag (`fr`, `fr-BE`, `ar-MA`, …); English when it is not French
    /// or Arabic, or absent.
    pub fn from_tag(tag: Option<&str>) -> Lang {
        let primary = tag
            .unwrap_or("")
            .split(['-', '_'])
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        match primary.as_str() {
            "fr" => Lang::Fr,
            "ar" => Lang::Ar,
            _ => Lang::En,
        }
    }
}

/// "N minutes" with the language's plural.
fn minutes(lang: Lang, n: u32) -> String {
    match lang {
        Lang::En if n == 1 => "1 minute".into(),
        Lang::En => format!("{n} minutes"),
        Lang::Fr if n <= 1 => format!("{n} minute"),
        Lang::Fr => format!("{n} minutes"),
        // Arabic: singular, dual, plural of 3 to 10, and the accusative singular after 11.
        Lang::Ar => match n {
            1 => "دقيقة واحدة".into(),
            2 => "دقيقتين".into(),
            3..=10 => format!("{n} دقائق"),
            _ => format!("{n} دقيقة"),
        },
    }
}

/// The code's text: "{code} is your {org} code. It expires in 5 minutes."
pub fn code_text(lang: Lang, code: &str, org: &str, ttl_s: u32) -> String {
    let m = minutes(lang, ttl_s.div_ceil(60).max(1));
    match lang {
        Lang::En => format!("{code} is your {org} code. It expires in {m}."),
        Lang::Fr => format!("{code} est votre code {org}. Il expire dans {m}."),
        Lang::Ar => format!("{code} هو رمز التحقق الخاص بك لدى {org}. تنتهي صلاحيته خلال {m}."),
    }
}

/// The callback's confirmation: "{org} will call you back."
pub fn callback_text(lang: Lang, org: &str) -> String {
    match lang {
        Lang::En => format!("{org} will call you back."),
        Lang::Fr => format!("{org} va vous rappeler."),
        Lang::Ar => format!("سيعاود فريق {org} الاتصال بك."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn languages_come_from_the_tag() {
        assert_eq!(Lang::from_tag(Some("fr-FR")), Lang::Fr);
        assert_eq!(Lang::from_tag(Some("AR")), Lang::Ar);
        assert_eq!(Lang::from_tag(Some("de")), Lang::En);
        assert_eq!(Lang::from_tag(None), Lang::En);
    }

    #[test]
    fn texts_carry_code_and_organization() {
        assert_eq!(
            code_text(Lang::En, "123456", "Shop", 300),
            "123456 is your Shop code. It expires in 5 minutes."
        );
        assert_eq!(
            code_text(Lang::Fr, "123456", "Boutique", 300),
            "123456 est votre code Boutique. Il expire dans 5 minutes."
        );
        let ar = code_text(Lang::Ar, "123456", "Shop", 300);
        assert!(ar.starts_with("123456 ") && ar.contains("Shop") && ar.contains("5 دقائق"));
        assert_eq!(
            code_text(Lang::En, "000001", "Shop", 2),
            "000001 is your Shop code. It expires in 1 minute."
        );
        assert_eq!(callback_text(Lang::En, "Shop"), "Shop will call you back.");
        assert_eq!(callback_text(Lang::Fr, "Shop"), "Shop va vous rappeler.");
        assert!(callback_text(Lang::Ar, "Shop").contains("Shop"));
    }
}

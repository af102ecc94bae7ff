//! Composing a device's desired config: what the organization decides (recording), what the
//! device's site is (hours, holidays, time zone), and the device-level settings an admin sets.
//! Pure: plain values in, a validated [`DesiredConfig`] or every error out.

use kiosk_protocol::config::{
    ConfigError, DesiredConfig, IceServer, IdleTimeouts, Locale, OtpPolicy, Recording,
    RecordingPolicy, SiteView,
};
use kiosk_protocol::Version;
use serde::{Deserialize, Serialize};

use crate::store::{ConfigSources, RecordingPolicy as OrgRecording};

/// The version of the consent notice text kiosks show when the organization records.
pub const CONSENT_NOTICE_VERSION: u32 = 1;

/// What an admin sets for one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSettings {
    /// Language of the attract screen, e.g. `en`.
    pub default_language: String,
    /// Languages offered (must include the default).
    pub languages: Vec<String>,
    #[serde(default)]
    pub ice_servers: Vec<IceServer>,
    pub idle_s: u32,
    pub warning_s: u32,
    pub telemetry_interval_s: u32,
    pub board_profile: String,
}

impl Default for DeviceSettings {
    fn default() -> Self {
        DeviceSettings {
            default_language: "en".into(),
            languages: vec!["en".into(), "fr".into(), "ar".into()],
            ice_servers: Vec::new(),
            idle_s: 60,
            warning_s: 20,
            telemetry_interval_s: 30,
            board_profile: "qemu".into(),
        }
    }
}

/// The desired config of version `version`, or every reason it cannot be made.
pub fn compose(
    sources: &ConfigSources,
    settings: &DeviceSettings,
    version: u64,
) -> Result<DesiredConfig, Vec<ConfigError>> {
    let Some(site) = &sources.site else {
        return Err(vec![ConfigError {
            field: "site".into(),
            message: "the device has no site; its site was deleted".into(),
        }]);
    };
    let recording = match sources.settings.recording {
        OrgRecording::Off => Recording::Off,
        OrgRecording::OnWithConsent => Recording::OnWithConsent,
    };
    let config = DesiredConfig {
        v: Version::CURRENT,
        version,
        org: sources.org_slug.clone(),
        site: SiteView {
            id: site.id,
            name: site.name.clone(),
            timezone: site.timezone.clone(),
            business_hours: site.business_hours.clone(),
            holidays: site.holidays.clone(),
        },
        locale: Locale {
            default: settings.default_language.clone(),
            available: settings.languages.clone(),
        },
        ice_servers: settings.ice_servers.clone(),
        otp: OtpPolicy {
            code_length: 6,
            resend_after_s: 30,
        },
        recording: RecordingPolicy {
            mode: recording,
            consent_notice_version: CONSENT_NOTICE_VERSION,
        },
        idle: IdleTimeouts {
            idle_s: settings.idle_s,
            warning_s: settings.warning_s,
        },
        telemetry_interval_s: settings.telemetry_interval_s,
        board_profile: settings.board_profile.clone(),
    };
    let mut errors = config.validate().err().unwrap_or_default();
    if jiff::tz::TimeZone::get(&config.site.timezone).is_err() {
        errors.push(ConfigError {
            field: "site.timezone".into(),
            message: format!("unknown time zone {:?}", config.site.timezone),
        });
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

/// The device settings a stored config was made from.
pub fn settings_of(config: &DesiredConfig) -> DeviceSettings {
    DeviceSettings {
        default_language: config.locale.default.clone(),
        languages: config.locale.available.clone(),
        ice_servers: config.ice_servers.clone(),
        idle_s: config.idle.idle_s,
        warning_s: config.idle.warning_s,
        telemetry_interval_s: config.telemetry_interval_s,
        board_profile: config.board_profile.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Settings, Site};
    use kiosk_protocol::hours::WeeklyHours;

    fn sources(site: bool) -> ConfigSources {
        let now = jiff::Timestamp::UNIX_EPOCH;
        ConfigSources {
            org_slug: "shop".into(),
            site: site.then(|| Site {
                id: 4,
                name: "Lyon".into(),
                timezone: "Europe/Paris".into(),
                business_hours: WeeklyHours::default(),
                holidays: vec![],
                created_at: now,
                updated_at: now,
            }),
            settings: Settings {
                recording: OrgRecording::OnWithConsent,
                retention_days: 30,
                technicians_may_review_recordings: false,
                queue_timeout_s: 180,
                updated_at: now,
            },
            latest_version: 0,
        }
    }

    #[test]
    fn composes_from_org_site_and_device_settings() {
        let c = compose(&sources(true), &DeviceSettings::default(), 3).unwrap();
        assert_eq!((c.version, c.org.as_str(), c.site.id), (3, "shop", 4));
        assert_eq!(c.recording.mode, Recording::OnWithConsent);
        assert_eq!(settings_of(&c), DeviceSettings::default());
    }

    #[test]
    fn every_problem_is_reported() {
        let bad = DeviceSettings {
            default_language: "xx-".into(),
            warning_s: 5,
            telemetry_interval_s: 1,
            ..DeviceSettings::default()
        };
        let errors = compose(&sources(true), &bad, 1).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        for f in ["locale.default", "idle.warning_s", "telemetry_interval_s"] {
            assert!(fields.contains(&f), "{f} in {fields:?}");
        }
        assert_eq!(
            compose(&sources(false), &DeviceSettings::default(), 1).unwrap_err()[0].field,
            "site"
        );
    }
}

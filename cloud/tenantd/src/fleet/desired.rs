//! Keeping every kiosk's desired config true to its sources.
//!
//! A desired config is composed from the organization's settings, the kiosk's site and the
//! kiosk's own settings ([`super::config::compose`]). An admin sets the kiosk's own settings
//! (`PUT /devices/{d}/config`); the other sources change elsewhere, and each such change makes
//! the next version for the kiosks it touches:
//! - enrollment (a token or a claimed activation code): the first config, with default
//!   settings and the board the kiosk reported;
//! - a site's change (hours, holidays, time zone, name): its live kiosks;
//! - the organization's settings (recording): all its live kiosks.
//!
//! A kiosk whose composed config would be the same as its newest one gets no new version, so
//! an unrelated change makes no traffic. The messages come back to the caller, which publishes
//! them retained after the store has them (a lost publish is sent again when the link is up).

use kiosk_protocol::config::DesiredConfig;

use super::config::{compose, settings_of, DeviceSettings};
use super::service::Outgoing;
use crate::store::{By, Db, StoreError};
use crate::tenancy::OrgScope;

/// The kiosks a change touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    /// One kiosk (just enrolled).
    Device(String),
    /// The live kiosks of one site.
    Site(i64),
    /// Every live kiosk of the organization.
    Org,
}

/// Makes, stores and returns (as retained messages) the next desired config of every live kiosk
/// `touched` names whose config its sources now change. A kiosk whose config cannot be composed
/// (its site was deleted) keeps the one it has, with a warning.
pub fn refresh(
    db: &mut Db<'_>,
    scope: &OrgScope,
    by: &By,
    touched: &Touched,
) -> Result<Vec<Outgoing>, StoreError> {
    let devices = match touched {
        Touched::Device(id) => vec![id.clone()],
        Touched::Site(site) => db.live_device_ids(scope, Some(*site))?,
        Touched::Org => db.live_device_ids(scope, None)?,
    };
    let mut out = Vec::new();
    for device in devices {
        // A concurrent admin change takes the version first: compose again on top of it.
        let mut tries = 0;
        loop {
            match refresh_one(db, scope, by, &device) {
                Ok(Some(o)) => {
                    out.push(o);
                    break;
                }
                Ok(None) => break,
                Err(StoreError::Conflict(_)) if tries < 2 => tries += 1,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

fn refresh_one(
    db: &mut Db<'_>,
    scope: &OrgScope,
    by: &By,
    device: &str,
) -> Result<Option<Outgoing>, StoreError> {
    let sources = db.config_sources(scope, device)?;
    let newest: Option<DesiredConfig> = db
        .desired_history(scope, device, 1)?
        .into_iter()
        .next()
        .and_then(|r| serde_json::from_value(r.config).ok());
    let settings = match &newest {
        Some(config) => settings_of(config),
        None => first_settings(&db.get_device(scope, device)?.board),
    };
    let version = sources.latest_version + 1;
    let config = match compose(&sources, &settings, version as u64) {
        Ok(c) => c,
        Err(errors) => {
            let errors: Vec<String> = errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect();
            tracing::warn!(
                device,
                errors = %errors.join("; "),
                "the kiosk keeps its config: a new one cannot be made from its sources"
            );
            return Ok(None);
        }
    };
    if newest.is_some_and(|n| same_but_version(&n, &config)) {
        return Ok(None);
    }
    let body = serde_json::to_string(&config).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    db.put_desired(scope, by, device, version, &body)?;
    Ok(Some(Outgoing::desired(device, body)))
}

/// Makes the first config of every live kiosk that has none (kiosks enrolled before enrollment
/// made one). The configs are stored; publishing every newest config follows at start.
pub fn first_configs_missing(db: &mut Db<'_>) -> Result<usize, StoreError> {
    let mut made = 0;
    for (org, device) in db.live_devices_without_config()? {
        let scope = OrgScope::trusted_internal(db.org_ref_by_id(org)?);
        let by = By::new(format!("first config of {device}"));
        made += refresh(db, &scope, &by, &Touched::Device(device))?.len();
    }
    Ok(made)
}

/// The settings of a kiosk's first config: the defaults, on the board it reported when that
/// names a board profile.
pub fn first_settings(board: &str) -> DeviceSettings {
    let mut settings = DeviceSettings::default();
    if kiosk_protocol::config::is_board_name(board) {
        settings.board_profile = board.to_string();
    }
    settings
}

fn same_but_version(a: &DesiredConfig, b: &DesiredConfig) -> bool {
    let mut a = a.clone();
    a.version = b.version;
    a == *b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_first_config_takes_the_reported_board_when_it_is_a_name() {
        assert_eq!(first_settings("rpi4").board_profile, "rpi4");
        assert_eq!(first_settings("jetson-orin").board_profile, "jetson-orin");
        let default = DeviceSettings::default().board_profile;
        for odd in ["", "Raspberry Pi 4", "../etc", &"x".repeat(65)] {
            assert_eq!(first_settings(odd).board_profile, default, "{odd:?}");
        }
    }
}

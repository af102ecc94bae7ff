//! The fleet: device identities and the MQTT link to kiosks.
//!
//! - [`pki`]: the three certificate authorities (device, claim, service) and their CRLs.
//! - [`crl`]: the CRLs as tenantd keeps them current, on disk and as it serves them.
//! - [`broker`]: the managed mosquitto (configuration, listeners, supervision).
//! - [`external`]: an operator's broker instead (EMQX or another MQTT 5 broker), and its
//!   admin API; [`export`]: the files its operator needs; [`urls`]: the URLs they take.
//! - [`service`]: the cloud's MQTT client: provisioning and exactly-once ingestion.
//! - [`renewal`]: rotate commands for certificates past two thirds of their life.
//! - [`config`]: composing a desired config; [`desired`]: keeping every kiosk's current when
//!   its enrollment, site or organization settings change.
//! - [`Fleet`]: the link and its broker together, as `tenantd serve` runs them.
//!
//! The broker is configuration ([`FleetBroker`]): the link, provisioning, configs, commands
//! and ingestion are the same with either; what differs is who runs the broker and how a
//! revocation reaches a connected device (a restart of the managed broker, or a ban and a
//! kick through the external broker's admin API).

pub mod broker;
pub mod config;
pub mod crl;
pub mod desired;
pub mod export;
pub mod external;
pub mod pki;
pub mod renewal;
pub mod service;
pub mod urls;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{By, CrlCa, SqliteStore, StoreError};
use crate::tenancy::OrgScope;
use broker::{BrokerError, BrokerSettings, ManagedBroker};
use crl::CrlPublisher;
use external::{BrokerAdmin, ExternalBroker};
use pki::FleetPki;
use service::{FleetLink, LinkSettings};

/// What every enrollment token starts with.
pub const ENROLLMENT_TOKEN_PREFIX: &str = "ket_";

/// A new enrollment token and the part of it kept readable (to tell tokens apart in lists).
pub fn new_enrollment_token() -> (crate::auth::tokens::NewSecret, String) {
    let secret = crate::auth::tokens::new_secret(ENROLLMENT_TOKEN_PREFIX);
    let prefix = secret
        .secret
        .chars()
        .take(ENROLLMENT_TOKEN_PREFIX.len() + 6)
        .collect();
    (secret, prefix)
}

/// Starting the fleet failed.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("fleet link: {0}")]
    Link(String),
    #[error("CRL signing stopped: {0}")]
    CrlTask(String),
}

/// Which broker the fleet uses.
#[derive(Debug, Clone)]
pub enum FleetBroker {
    /// tenantd writes mosquitto's configuration under `DATA/broker/`, starts and supervises it.
    Managed(BrokerSettings),
    /// An MQTT 5 broker run by the operator, reached at a `mqtts://` URL.
    External(ExternalBroker),
}

/// How the fleet reaches its broker, beyond the link.
#[derive(Debug)]
enum Backend {
    Managed {
        broker: ManagedBroker,
        settings: BrokerSettings,
    },
    External {
        broker: ExternalBroker,
    },
}

/// The running fleet: PKI, the broker (managed or external) and the cloud's MQTT link.
#[derive(Debug)]
pub struct Fleet {
    pub pki: Arc<FleetPki>,
    pub link: FleetLink,
    store: SqliteStore,
    crls: Arc<CrlPublisher>,
    backend: Backend,
    stop: watch::Sender<bool>,
    data_dir: PathBuf,
}

impl Fleet {
    /// Managed: writes the broker's files, starts mosquitto and connects the cloud's link.
    /// External: connects the link to the broker's URL; nothing is written for a broker and
    /// no process is started.
    pub async fn start(
        data_dir: &Path,
        store: SqliteStore,
        pki: Arc<FleetPki>,
        crls: Arc<CrlPublisher>,
        broker: FleetBroker,
        calls: crate::calls::CallHub,
        journeys: crate::otp::Journeys,
    ) -> Result<Fleet, FleetError> {
        let (stop, stop_rx) = watch::channel(false);
        let (backend, link_settings) = match broker {
            FleetBroker::Managed(settings) => {
                let (device, n) = store.blocking(|db| db.crl_inputs(CrlCa::Device))?;
                let (claim, _) = store.blocking(|db| db.crl_inputs(CrlCa::Claim))?;
                let files = broker::write_files(data_dir, &settings, &pki, &device, &claim, n)?;
                let managed = ManagedBroker::start(settings.clone(), files.clone()).await?;
                let link = LinkSettings::managed(&files, settings.service_listen)
                    .map_err(|e| FleetError::Link(e.to_string()))?;
                let backend = Backend::Managed {
                    broker: managed,
                    settings,
                };
                (backend, link)
            }
            FleetBroker::External(external) => {
                tracing::info!(
                    broker = %external.url,
                    client_id = %external.client_id,
                    admin = external.admin.as_ref().map(|a| a.url().to_string()),
                    "using an external broker"
                );
                let link = external.link_settings();
                (Backend::External { broker: external }, link)
            }
        };
        let link = FleetLink::start(
            link_settings,
            store.clone(),
            pki.clone(),
            calls,
            journeys,
            stop_rx.clone(),
        )
        .map_err(FleetError::Link)?;
        let fleet = Fleet {
            pki,
            link,
            store,
            crls,
            backend,
            stop,
            data_dir: data_dir.to_path_buf(),
        };
        fleet.spawn_crl_refresh(stop_rx.clone());
        fleet.spawn_republish();
        renewal::spawn(fleet.store.clone(), fleet.link.clone(), stop_rx);
        Ok(fleet)
    }

    /// The managed broker's settings, when tenantd runs the broker.
    pub fn managed_settings(&self) -> Option<&BrokerSettings> {
        match &self.backend {
            Backend::Managed { settings, .. } => Some(settings),
            Backend::External { .. } => None,
        }
    }

    /// The external broker, when the operator runs it.
    pub fn external(&self) -> Option<&ExternalBroker> {
        match &self.backend {
            Backend::Managed { .. } => None,
            Backend::External { broker } => Some(broker),
        }
    }

    /// Re-signs the CRLs once a day if they are older than the re-sign age; the managed broker
    /// restarts to load them (an external one fetches them when its cache refreshes).
    fn spawn_crl_refresh(&self, mut stop: watch::Receiver<bool>) {
        let crls = self.crls.clone();
        let restart = match &self.backend {
            Backend::Managed { broker, .. } => Some(broker.restart_handle()),
            Backend::External { .. } => None,
        };
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(24 * 3600)) => {}
                }
                if crls.age() > Duration::from_secs(pki::CRL_RESIGN_AFTER_DAYS * 24 * 3600) {
                    match crls.refresh().await {
                        Ok(()) => {
                            if let Some(restart) = &restart {
                                restart.notify_one();
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "could not re-sign the CRLs"),
                    }
                }
            }
        });
    }

    /// Once the link is up, publishes every device's newest desired config again (retained) and
    /// every command still waiting for its device: changes made while no broker ran are not
    /// lost, and devices run a repeated command once (by its id).
    fn spawn_republish(&self) {
        let (store, link) = (self.store.clone(), self.link.clone());
        tokio::spawn(async move {
            let mut connected = link.connected.clone();
            if connected.wait_for(|c| *c).await.is_err() {
                return;
            }
            // Kiosks enrolled before enrollment made a first config get theirs now.
            if let Err(e) = store.run(desired::first_configs_missing).await {
                tracing::error!(error = %e, "could not make the missing first configs");
            }
            let configs = store.run(|db| db.latest_desired_all()).await;
            let commands = store.run(|db| db.pending_commands()).await;
            let (Ok(configs), Ok(commands)) = (configs, commands) else {
                tracing::error!("could not read configs and commands to publish again");
                return;
            };
            for (device, body) in configs {
                let _ = link
                    .publish(service::Outgoing::desired(&device, body))
                    .await;
            }
            for (device, body) in commands {
                let topic = format!("kiosk/v1/{device}/down/cmd");
                let _ = link
                    .publish(service::Outgoing {
                        topic,
                        payload: body.into_bytes(),
                        retain: false,
                    })
                    .await;
            }
        });
    }

    /// Revokes a device: its certificates go on the CRLs. The managed broker restarts to load
    /// them, which also drops the device's connection (its reconnect then fails). With an
    /// external broker, its admin API (when configured) bans the device's client id and kicks
    /// its connection, in the background, retrying for about a minute.
    pub async fn revoke_device(
        &self,
        scope: OrgScope,
        by: By,
        device_id: String,
    ) -> Result<Vec<String>, FleetError> {
        let id = device_id.clone();
        let serials = self
            .store
            .run(move |db| db.revoke_device(&scope, &by, &id))
            .await?;
        if serials.is_empty() {
            return Ok(serials);
        }
        self.crls.refresh().await?;
        match &self.backend {
            Backend::Managed { broker, .. } => broker.restart(),
            Backend::External { broker } => match &broker.admin {
                Some(admin) => spawn_cut_off(admin.clone(), device_id),
                None => tracing::warn!(
                    device = %device_id,
                    "device revoked; the external broker keeps its connection until the operator \
                     cuts it off (no --broker-admin-url)"
                ),
            },
        }
        Ok(serials)
    }

    /// Restarts the managed broker (what a CRL change does); sessions and queued messages
    /// persist across it. An external broker is the operator's to restart.
    pub fn restart_broker(&self) {
        match &self.backend {
            Backend::Managed { broker, .. } => broker.restart(),
            Backend::External { broker } => tracing::warn!(
                broker = %broker.url,
                "the broker is external; restart it where it runs"
            ),
        }
    }

    /// The data dir this fleet keeps its files in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Disconnects the link and stops the managed broker.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Backend::Managed { broker, .. } = &self.backend {
            broker.stop().await;
        }
    }
}

/// Attempts to cut a revoked device off at the external broker.
const CUT_OFF_ATTEMPTS: u32 = 6;

/// Bans and kicks a revoked device through the external broker's admin API, retrying with
/// doubling delays (1 s to 16 s, about a minute with the requests' own time-outs).
fn spawn_cut_off(admin: BrokerAdmin, device_id: String) {
    tokio::spawn(async move {
        for attempt in 1..=CUT_OFF_ATTEMPTS {
            match admin.cut_off(&device_id).await {
                Ok(()) => {
                    tracing::info!(device = %device_id, attempt, "revoked device cut off at the external broker");
                    return;
                }
                Err(e) if attempt < CUT_OFF_ATTEMPTS => {
                    tracing::warn!(device = %device_id, attempt, error = %e, "could not cut the revoked device off at the external broker; trying again");
                    tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
                }
                Err(e) => tracing::error!(
                    device = %device_id,
                    error = %e,
                    "could not cut the revoked device off at the external broker: ban its client id and kick it there by hand"
                ),
            }
        }
    });
}

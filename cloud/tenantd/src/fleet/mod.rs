//! The fleet: device identities and the MQTT link to kiosks.
//!
//! - [`pki`]: the three certificate authorities (device, claim, service) and their CRLs.
//! - [`broker`]: the managed mosquitto (configuration, listeners, supervision).
//! - [`service`]: the cloud's MQTT client: provisioning and exactly-once ingestion.
//! - [`renewal`]: rotate commands for certificates past two thirds of their life.
//! - [`Fleet`]: the three together, as `tenantd serve` runs them.

pub mod broker;
pub mod config;
pub mod pki;
pub mod renewal;
pub mod service;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::{By, CrlCa, SqliteStore, StoreError};
use crate::tenancy::OrgScope;
use broker::{BrokerError, BrokerFiles, BrokerSettings, ManagedBroker};
use pki::FleetPki;
use service::{FleetLink, LinkSettings};

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
}

/// The running fleet: PKI, the managed broker and the cloud's MQTT link.
#[derive(Debug)]
pub struct Fleet {
    pub pki: Arc<FleetPki>,
    pub link: FleetLink,
    pub settings: BrokerSettings,
    store: SqliteStore,
    files: BrokerFiles,
    broker: ManagedBroker,
    stop: watch::Sender<bool>,
    data_dir: PathBuf,
}

fn crl_files(store: &SqliteStore, files: &BrokerFiles, pki: &FleetPki) -> Result<(), FleetError> {
    let (device, n_device) = store.blocking(|db| db.crl_inputs(CrlCa::Device))?;
    let (claim, n_claim) = store.blocking(|db| db.crl_inputs(CrlCa::Claim))?;
    broker::write_crl(files, pki, &device, &claim, n_device.max(n_claim))?;
    Ok(())
}

impl Fleet {
    /// Writes the broker's files, starts mosquitto and connects the cloud's link.
    pub async fn start(
        data_dir: &Path,
        store: SqliteStore,
        pki: Arc<FleetPki>,
        settings: BrokerSettings,
    ) -> Result<Fleet, FleetError> {
        let (device, n) = store.blocking(|db| db.crl_inputs(CrlCa::Device))?;
        let (claim, _) = store.blocking(|db| db.crl_inputs(CrlCa::Claim))?;
        let files = broker::write_files(data_dir, &settings, &pki, &device, &claim, n)?;
        let broker = ManagedBroker::start(settings.clone(), files.clone()).await?;
        let (stop, stop_rx) = watch::channel(false);
        let link_settings = LinkSettings::managed(&files, settings.service_listen)
            .map_err(|e| FleetError::Link(e.to_string()))?;
        let link = FleetLink::start(link_settings, store.clone(), pki.clone(), stop_rx.clone())
            .map_err(FleetError::Link)?;
        let fleet = Fleet {
            pki,
            link,
            settings,
            store,
            files,
            broker,
            stop,
            data_dir: data_dir.to_path_buf(),
        };
        fleet.spawn_crl_refresh(stop_rx.clone());
        fleet.spawn_republish();
        renewal::spawn(fleet.store.clone(), fleet.link.clone(), stop_rx);
        Ok(fleet)
    }

    /// Re-signs the CRLs once a day if they are older than the re-sign age, and restarts the
    /// broker to load them.
    fn spawn_crl_refresh(&self, mut stop: watch::Receiver<bool>) {
        let (store, files, pki) = (self.store.clone(), self.files.clone(), self.pki.clone());
        let restart = self.broker.restart_handle();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(24 * 3600)) => {}
                }
                let age = std::fs::metadata(files.device_crl())
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .unwrap_or(Duration::MAX);
                if age > Duration::from_secs(pki::CRL_RESIGN_AFTER_DAYS * 24 * 3600) {
                    match crl_files(&store, &files, &pki) {
                        Ok(()) => restart.notify_one(),
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
            let configs = store.run(|db| db.latest_desired_all()).await;
            let commands = store.run(|db| db.pending_commands()).await;
            let (Ok(configs), Ok(commands)) = (configs, commands) else {
                tracing::error!("could not read configs and commands to publish again");
                return;
            };
            for (device, body) in configs {
                let topic = format!("kiosk/v1/{device}/down/desired");
                let _ = link
                    .publish(service::Outgoing {
                        topic,
                        payload: body.into_bytes(),
                        retain: true,
                    })
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

    /// Revokes a device: its certificates go on the CRL, and the broker restarts to load it,
    /// which also drops the device's connection (its reconnect then fails).
    pub async fn revoke_device(
        &self,
        scope: OrgScope,
        by: By,
        device_id: String,
    ) -> Result<Vec<String>, FleetError> {
        let serials = self
            .store
            .run(move |db| db.revoke_device(&scope, &by, &device_id))
            .await?;
        if !serials.is_empty() {
            crl_files(&self.store, &self.files, &self.pki)?;
            self.broker.restart();
        }
        Ok(serials)
    }

    /// Restarts the managed broker (what a CRL change does); sessions and queued messages
    /// persist across it.
    pub fn restart_broker(&self) {
        self.broker.restart();
    }

    /// The data dir this fleet keeps its files in.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The broker's files.
    pub fn files(&self) -> &BrokerFiles {
        &self.files
    }

    /// Disconnects the link and stops the broker.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.broker.stop().await;
    }
}

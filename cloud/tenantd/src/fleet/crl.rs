//! The device and claim CAs' CRLs as tenantd keeps them current, in every broker mode.
//!
//! [`CrlPublisher`] signs both CRLs again from the store at every start of `serve`, at every
//! revocation and when they grow old, in two forms:
//!
//! - the files `DATA/broker/device-crl.pem` and `claim-crl.pem` ([`Ca::crl`]), which the
//!   managed mosquitto loads and which an external broker that reads CRL files can be fed
//!   from. They carry no Issuing Distribution Point, so they cover every certificate of their
//!   CA, also those issued before a CRL base URL was set;
//! - the published copies, kept in memory and served at `GET /pki/v1/device.crl` and
//!   `/pki/v1/claim.crl` ([`Ca::published_crl`]): the same lists, naming the CRL base URL as
//!   their Issuing Distribution Point when one is set.
//!
//! A lock serializes signing, so two revocations at once cannot leave the older list on disk.
//!
//! [`Ca::crl`]: super::pki::Ca::crl
//! [`Ca::published_crl`]: super::pki::Ca::published_crl

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::broker::{self, BrokerFiles};
use super::pki::FleetPki;
use super::FleetError;
use crate::store::{CrlCa, SqliteStore};

/// The CRLs as served, and when they were signed.
#[derive(Debug, Clone)]
struct Published {
    device: String,
    claim: String,
    signed: Instant,
}

/// Keeps both CRLs current on disk and in memory.
#[derive(Debug)]
pub struct CrlPublisher {
    store: SqliteStore,
    pki: Arc<FleetPki>,
    files: BrokerFiles,
    published: RwLock<Published>,
    signing: Mutex<()>,
}

impl CrlPublisher {
    /// Signs both CRLs from the store and writes their files under `DATA/broker/`. Blocks on
    /// the store: call it at start, before serving.
    pub fn open(
        data_dir: &std::path::Path,
        store: SqliteStore,
        pki: Arc<FleetPki>,
    ) -> Result<CrlPublisher, FleetError> {
        let files = BrokerFiles::new(data_dir);
        std::fs::create_dir_all(&files.dir).map_err(|source| {
            FleetError::Broker(broker::BrokerError::Write {
                path: files.dir.clone(),
                source,
            })
        })?;
        let published = sign(&store, &pki, &files)?;
        Ok(CrlPublisher {
            store,
            pki,
            files,
            published: RwLock::new(published),
            signing: Mutex::new(()),
        })
    }

    /// Signs both CRLs again from the store, writes the files and swaps the published copies.
    /// The store work and the signing run on the blocking pool.
    pub async fn refresh(self: &Arc<Self>) -> Result<(), FleetError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.refresh_blocking())
            .await
            .map_err(|e| FleetError::CrlTask(e.to_string()))?
    }

    fn refresh_blocking(&self) -> Result<(), FleetError> {
        let _one_at_a_time = self.signing.lock().unwrap_or_else(|e| e.into_inner());
        let published = sign(&self.store, &self.pki, &self.files)?;
        *self.published.write().unwrap_or_else(|e| e.into_inner()) = published;
        Ok(())
    }

    /// The CRL of `ca` as served (PEM).
    pub fn published(&self, ca: CrlCa) -> String {
        let published = self.published.read().unwrap_or_else(|e| e.into_inner());
        match ca {
            CrlCa::Device => published.device.clone(),
            CrlCa::Claim => published.claim.clone(),
        }
    }

    /// How long ago the CRLs were last signed.
    pub fn age(&self) -> Duration {
        self.published
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .signed
            .elapsed()
    }
}

/// Reads the revoked serials, writes the files and returns the published forms.
fn sign(store: &SqliteStore, pki: &FleetPki, files: &BrokerFiles) -> Result<Published, FleetError> {
    let (device, n_device) = store.blocking(|db| db.crl_inputs(CrlCa::Device))?;
    let (claim, n_claim) = store.blocking(|db| db.crl_inputs(CrlCa::Claim))?;
    let number = n_device.max(n_claim);
    broker::write_crl(files, pki, &device, &claim, number)?;
    Ok(Published {
        device: pki.device.published_crl(&device, number)?,
        claim: pki.claim.published_crl(&claim, number)?,
        signed: Instant::now(),
    })
}

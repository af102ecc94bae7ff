//! A development kiosk's kit: the files `scripts/up` gives the kiosk-sync it starts, so that
//! it enrolls into an organization on its own.
//!
//! `tenantd kiosk-kit --data DIR --org SLUG --out DIR` writes, in `--out` (mode 0700):
//! `claim.pem` and `claim.key` (a claim batch of its own, made once and kept), `cloud-ca.pem`
//! (the local CA that signs the managed broker's certificate) and `enrollment-token` (a new
//! single-use token for the organization's first site, valid 24 hours, on every call). It
//! works on the store directly, like `tenantd demo`, and never writes a CA key.

use std::path::{Path, PathBuf};

use crate::fleet::pki::{FleetPki, CLAIM_CERT_DAYS};
use crate::store::{By, StoreError};
use crate::tenancy::OrgScope;
use crate::tls::write_private;
use crate::Error;

/// Where the kit's files are.
#[derive(Debug, Clone)]
pub struct Kit {
    pub claim_cert: PathBuf,
    pub claim_key: PathBuf,
    pub cloud_ca: PathBuf,
    pub enrollment_token: PathBuf,
}

/// Writes (or refreshes) the kit for organization `org_slug` in `out`.
pub fn kiosk_kit(data_dir: &Path, org_slug: &str, out: &Path) -> Result<Kit, Error> {
    let store = crate::open_existing(data_dir)?;
    let pki = FleetPki::open(data_dir)?;
    let local = crate::tls::LocalCa::open(&data_dir.join("tls"))?;
    std::fs::create_dir_all(out)
        .and_then(|()| {
            std::fs::set_permissions(out, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        })
        .map_err(|source| Error::DataDir {
            path: out.to_path_buf(),
            source,
        })?;
    let kit = Kit {
        claim_cert: out.join("claim.pem"),
        claim_key: out.join("claim.key"),
        cloud_ca: out.join("cloud-ca.pem"),
        enrollment_token: out.join("enrollment-token"),
    };
    let by = By::new("tenantd kiosk-kit");
    if !(kit.claim_cert.exists() && kit.claim_key.exists()) {
        let suffix: [u8; 4] = rand::random();
        let cn = format!("claim-dev-kit-{}", hex::encode(suffix));
        let (issued, key_pem) = pki.claim.issue_with_key(&cn, CLAIM_CERT_DAYS)?;
        let (serial, not_after) = (issued.serial.clone(), issued.not_after_unix);
        store.blocking(|db| {
            db.create_claim_batch(&by, &cn, "development kiosk kit", &serial, not_after)
        })?;
        write_private(&kit.claim_key, &key_pem, 0o600)?;
        write_private(&kit.claim_cert, &issued.certificate_pem, 0o644)?;
    }
    let ca = std::fs::read_to_string(local.pem_path()).map_err(|source| Error::DataDir {
        path: local.pem_path().to_path_buf(),
        source,
    })?;
    write_private(&kit.cloud_ca, &ca, 0o644)?;
    let (secret, prefix) = crate::fleet::new_enrollment_token();
    let known = store.blocking(|db| db.org_ref(org_slug))?;
    if known.is_none() {
        return Err(Error::Store(StoreError::Conflict(format!(
            "no organization {org_slug:?}: create it first (or run `tenantd demo` for \"demo\")"
        ))));
    }
    store.blocking(|db| {
        let org = db.org_ref(org_slug)?.ok_or(StoreError::NotFound)?;
        let scope = OrgScope::trusted_internal(org);
        let site = db
            .list_sites(&scope)?
            .first()
            .map(|s| s.id)
            .ok_or_else(|| StoreError::Conflict(format!("{org_slug} has no site")))?;
        db.create_enrollment_token(
            &scope,
            &by,
            site,
            &prefix,
            &secret.digest,
            1,
            by.now + 24 * 3600,
        )
    })?;
    write_private(&kit.enrollment_token, &secret.secret, 0o600)?;
    Ok(kit)
}

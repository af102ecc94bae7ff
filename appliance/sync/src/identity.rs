//! The device's identity on disk: its key, its certificate, and a key being rotated in.
//!
//! Files in the state directory (mode 0700), each written to a temporary name, synced, renamed
//! and the directory synced, so a power cut leaves either the old file or the new one:
//!
//! - `device.key` (0600) and `device.pem`: the key made on first boot and the certificate the
//!   cloud signed for it (CN = device id).
//! - `next.key` (0600) and `next.pem`: a rotation in progress. The new key is made when a
//!   rotation starts and kept across restarts, so a restarted kiosk keeps waiting for the answer
//!   to the CSR it already sent. When the certificate arrives it is written as `next.pem`, then
//!   `next.key` → `device.key` and `next.pem` → `device.pem`. [`recover`] finishes a swap cut
//!   short between the two renames, whichever way it was cut.
//! - `enroll-request`: the provisioning request id, kept so a retried request is the same one.
//! - `enrollment-token` (0600): a token given with `kioskctl enroll`, removed once enrolled.

use std::path::{Path, PathBuf};

use kiosk_protocol::DeviceId;
use rcgen::PublicKeyData as _;

/// A file of the identity could not be read or written, or does not fit.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The enrolled identity.
#[derive(Debug, Clone)]
pub struct Identity {
    pub device_id: DeviceId,
    pub cert_pem: String,
    pub key_pem: String,
    /// Validity, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
}

/// What a certificate says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertInfo {
    pub common_name: String,
    pub not_before: i64,
    pub not_after: i64,
    /// The raw subject public key (what [`rcgen::PublicKeyData::der_bytes`] gives for a key).
    pub public_key: Vec<u8>,
}

/// Reads the subject CN, validity and public key of the first certificate in `pem`.
pub fn cert_info(pem: &str) -> Result<CertInfo, String> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    let cert = p.parse_x509().map_err(|e| e.to_string())?;
    let common_name = cert
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or("the certificate has no common name")?
        .to_string();
    Ok(CertInfo {
        common_name,
        not_before: cert.validity().not_before.timestamp(),
        not_after: cert.validity().not_after.timestamp(),
        public_key: cert.public_key().subject_public_key.data.to_vec(),
    })
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityError + '_ {
    move |source| IdentityError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn invalid(path: &Path, message: impl Into<String>) -> IdentityError {
    IdentityError::Invalid {
        path: path.display().to_string(),
        message: message.into(),
    }
}

fn sync_dir(dir: &Path) -> Result<(), IdentityError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Writes `path` atomically with `mode` (see [`crate::ota::durable::write_atomic_mode`]).
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), IdentityError> {
    crate::ota::durable::write_atomic_mode(path, bytes, mode).map_err(|e| IdentityError::Io {
        path: e.path.display().to_string(),
        source: e.source,
    })
}

fn rename(from: &Path, to: &Path) -> Result<(), IdentityError> {
    std::fs::rename(from, to).map_err(io_err(from))
}

fn read_opt(path: &Path) -> Result<Option<String>, IdentityError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn public_key_of(key_pem: &str, path: &Path) -> Result<Vec<u8>, IdentityError> {
    rcgen::KeyPair::from_pem(key_pem)
        .map(|k| k.der_bytes().to_vec())
        .map_err(|e| invalid(path, format!("not a private key: {e}")))
}

/// The identity files of one state directory.
#[derive(Debug, Clone)]
pub struct Files {
    pub dir: PathBuf,
}

impl Files {
    pub fn new(dir: &Path) -> Files {
        Files {
            dir: dir.to_path_buf(),
        }
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join("device.key")
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join("device.pem")
    }

    pub fn next_key(&self) -> PathBuf {
        self.dir.join("next.key")
    }

    pub fn next_cert(&self) -> PathBuf {
        self.dir.join("next.pem")
    }

    pub fn request_id(&self) -> PathBuf {
        self.dir.join("enroll-request")
    }

    pub fn token(&self) -> PathBuf {
        self.dir.join("enrollment-token")
    }

    /// Finishes a rotation cut short between its renames, or drops a `next.pem` that belongs
    /// to no key we hold.
    pub fn recover(&self) -> Result<(), IdentityError> {
        let Some(next_cert) = read_opt(&self.next_cert())? else {
            return Ok(());
        };
        let info = cert_info(&next_cert).map_err(|e| invalid(&self.next_cert(), e))?;
        if let Some(next_key) = read_opt(&self.next_key())? {
            if public_key_of(&next_key, &self.next_key())? == info.public_key {
                rename(&self.next_key(), &self.key())?;
                rename(&self.next_cert(), &self.cert())?;
                return sync_dir(&self.dir);
            }
        } else if let Some(key) = read_opt(&self.key())? {
            if public_key_of(&key, &self.key())? == info.public_key {
                rename(&self.next_cert(), &self.cert())?;
                return sync_dir(&self.dir);
            }
        }
        tracing::warn!(path = %self.next_cert().display(), "a certificate for no key of ours was dropped");
        std::fs::remove_file(self.next_cert()).map_err(io_err(&self.next_cert()))?;
        sync_dir(&self.dir)
    }

    /// The enrolled identity, if any (after [`Files::recover`]).
    pub fn load(&self) -> Result<Option<Identity>, IdentityError> {
        let (Some(cert_pem), Some(key_pem)) = (read_opt(&self.cert())?, read_opt(&self.key())?)
        else {
            return Ok(None);
        };
        self.check(cert_pem, key_pem, &self.cert()).map(Some)
    }

    fn check(
        &self,
        cert_pem: String,
        key_pem: String,
        path: &Path,
    ) -> Result<Identity, IdentityError> {
        let info = cert_info(&cert_pem).map_err(|e| invalid(path, e))?;
        if public_key_of(&key_pem, path)? != info.public_key {
            return Err(invalid(
                path,
                "the certificate is not for this device's key",
            ));
        }
        let device_id = DeviceId::parse(&info.common_name)
            .map_err(|e| invalid(path, format!("common name: {e}")))?;
        Ok(Identity {
            device_id,
            cert_pem,
            key_pem,
            not_before: info.not_before,
            not_after: info.not_after,
        })
    }

    /// Keeps the certificate enrollment returned for `device.key`.
    pub fn save_enrolled(&self, cert_pem: &str) -> Result<Identity, IdentityError> {
        let key_pem = std::fs::read_to_string(self.key()).map_err(io_err(&self.key()))?;
        let identity = self.check(cert_pem.to_string(), key_pem, &self.cert())?;
        write_atomic(&self.cert(), cert_pem.as_bytes(), 0o644)?;
        let _ = std::fs::remove_file(self.token());
        Ok(identity)
    }

    /// The key of a rotation: the one already started, or a new one.
    pub fn next_key_pair(&self) -> Result<rcgen::KeyPair, IdentityError> {
        if let Some(pem) = read_opt(&self.next_key())? {
            return rcgen::KeyPair::from_pem(&pem)
                .map_err(|e| invalid(&self.next_key(), format!("not a private key: {e}")));
        }
        let key = rcgen::KeyPair::generate()
            .map_err(|e| invalid(&self.next_key(), format!("key generation: {e}")))?;
        write_atomic(&self.next_key(), key.serialize_pem().as_bytes(), 0o600)?;
        Ok(key)
    }

    /// Whether a rotation is in progress (a new key waits for its certificate).
    pub fn rotating(&self) -> bool {
        self.next_key().exists()
    }

    /// Installs the certificate of a rotation for `device`: it must be for `next.key` and name
    /// the same device. Returns the new identity; the old files are gone.
    pub fn install_next(
        &self,
        device: &DeviceId,
        cert_pem: &str,
    ) -> Result<Identity, IdentityError> {
        let key_pem = std::fs::read_to_string(self.next_key()).map_err(io_err(&self.next_key()))?;
        let info = cert_info(cert_pem).map_err(|e| invalid(&self.next_cert(), e))?;
        if public_key_of(&key_pem, &self.next_key())? != info.public_key {
            return Err(invalid(
                &self.next_cert(),
                "the certificate is not for the rotation's key",
            ));
        }
        if info.common_name != device.as_str() {
            return Err(invalid(
                &self.next_cert(),
                format!("the certificate names {}, not {device}", info.common_name),
            ));
        }
        write_atomic(&self.next_cert(), cert_pem.as_bytes(), 0o644)?;
        self.recover()?;
        self.load()?
            .ok_or_else(|| invalid(&self.cert(), "missing after the swap"))
    }

    /// Abandons a rotation (its key is deleted).
    pub fn abandon_next(&self) -> Result<(), IdentityError> {
        for p in [self.next_key(), self.next_cert()] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&p)(e)),
            }
        }
        sync_dir(&self.dir)
    }
}

impl Identity {
    /// Whether the certificate is past `fraction` of its life at `now` (Unix seconds).
    pub fn past(&self, fraction: f64, now: i64) -> bool {
        let life = (self.not_after - self.not_before).max(0) as f64;
        now >= self.not_before + (life * fraction) as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signed(key: &rcgen::KeyPair, cn: &str) -> String {
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params.self_signed(key).unwrap().pem()
    }

    fn setup() -> (tempfile::TempDir, Files, DeviceId) {
        let dir = tempfile::tempdir().unwrap();
        let files = Files::new(dir.path());
        let key = crate::enroll::load_or_create_key(&files.key()).unwrap();
        let id = DeviceId::parse("kiosk-aaaabbbbcccc").unwrap();
        files.save_enrolled(&signed(&key, id.as_str())).unwrap();
        (dir, files, id)
    }

    #[test]
    fn a_rotation_swaps_key_and_certificate() {
        let (_dir, files, id) = setup();
        let before = files.load().unwrap().unwrap();
        let next = files.next_key_pair().unwrap();
        assert!(files.rotating());
        // A restart keeps the same rotation key.
        assert_eq!(
            files.next_key_pair().unwrap().serialize_pem(),
            next.serialize_pem()
        );
        // A certificate for another key or another device is refused; nothing changes.
        let other = rcgen::KeyPair::generate().unwrap();
        assert!(files
            .install_next(&id, &signed(&other, id.as_str()))
            .is_err());
        assert!(files
            .install_next(&id, &signed(&next, "kiosk-other0000000"))
            .is_err());
        assert_eq!(files.load().unwrap().unwrap().key_pem, before.key_pem);
        let after = files
            .install_next(&id, &signed(&next, id.as_str()))
            .unwrap();
        assert_eq!(after.key_pem, next.serialize_pem());
        assert!(!files.rotating());
        assert_eq!(files.load().unwrap().unwrap().cert_pem, after.cert_pem);
    }

    #[test]
    fn a_swap_cut_between_its_renames_is_finished() {
        let (_dir, files, id) = setup();
        let next = files.next_key_pair().unwrap();
        let cert = signed(&next, id.as_str());
        write_atomic(&files.next_cert(), cert.as_bytes(), 0o644).unwrap();
        // Cut after the key's rename: device.key is new, device.pem still old.
        std::fs::rename(files.next_key(), files.key()).unwrap();
        assert!(files.load().is_err() || files.load().unwrap().unwrap().cert_pem != cert);
        files.recover().unwrap();
        assert_eq!(files.load().unwrap().unwrap().cert_pem, cert);
        // A stray next.pem for no key of ours is dropped.
        let stray = signed(&rcgen::KeyPair::generate().unwrap(), id.as_str());
        write_atomic(&files.next_cert(), stray.as_bytes(), 0o644).unwrap();
        files.recover().unwrap();
        assert!(!files.next_cert().exists());
        assert_eq!(files.load().unwrap().unwrap().cert_pem, cert);
    }

    #[test]
    fn renewal_is_due_after_two_thirds() {
        let (_dir, files, _) = setup();
        let mut id = files.load().unwrap().unwrap();
        id.not_before = 0;
        id.not_after = 90;
        assert!(!id.past(2.0 / 3.0, 59));
        assert!(id.past(2.0 / 3.0, 60));
    }
}

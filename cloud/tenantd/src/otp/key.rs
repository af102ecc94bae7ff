//! The keyed hashes of one-time codes and phone numbers, and the key they use.
//!
//! A code has 10^6 values, so an unkeyed hash of it would be reversed at once by anyone who
//! reads the store; numbers are barely harder. Both are stored only as HMAC-SHA256 under a
//! 32-byte random key in `DATA/otp.key` (mode 0600, made at the first start, never logged, not
//! in the store), so a copy of the database alone reveals neither.
//!
//! - [`OtpKey::phone_hash`]: `HMAC(key, "phone" 0 e164)`, the same in every organization, so
//!   the number's limits hold across the platform and erasure finds its rows.
//! - [`OtpKey::code_hash`]: `HMAC(key, "code" 0 device 0 request 0 phone_hash 0 code)`: a
//!   code is bound to the kiosk and session it was sent for and to the number.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The key file's name under the data dir.
pub const KEY_FILE: &str = "otp.key";
/// Key length in bytes.
pub const KEY_BYTES: usize = 32;

/// Reading or making the key failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("OTP key {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("OTP key {path}: it holds {len} bytes, not {KEY_BYTES}; restore it from a backup")]
    Length { path: PathBuf, len: usize },
}

/// The HMAC key. Its `Debug` never shows it.
#[derive(Clone)]
pub struct OtpKey([u8; KEY_BYTES]);

impl std::fmt::Debug for OtpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OtpKey(..)")
    }
}

type HmacSha256 = Hmac<Sha256>;

impl OtpKey {
    /// A key from bytes (tests).
    pub fn from_bytes(bytes: [u8; KEY_BYTES]) -> OtpKey {
        OtpKey(bytes)
    }

    /// Reads `DATA/otp.key`, or makes it (32 random bytes, mode 0600) when it does not exist.
    pub fn load_or_create(data_dir: &Path) -> Result<OtpKey, KeyError> {
        let path = data_dir.join(KEY_FILE);
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        match options.open(&path) {
            Ok(mut file) => {
                let key: [u8; KEY_BYTES] = rand::random();
                file.write_all(&key).map_err(io)?;
                file.sync_all().map_err(io)?;
                tracing::info!(file = %path.display(), "made the OTP key");
                return Ok(OtpKey(key));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io(e)),
        }
        let mut file = std::fs::File::open(&path).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = file.metadata() {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(
                        file = %path.display(),
                        "the OTP key is readable by other users: chmod 600 it"
                    );
                }
            }
        }
        let mut bytes = Vec::with_capacity(KEY_BYTES);
        file.read_to_end(&mut bytes).map_err(io)?;
        let key: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| KeyError::Length {
            path: path.clone(),
            len: bytes.len(),
        })?;
        Ok(OtpKey(key))
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        // HMAC takes keys of any length.
        let mut mac = HmacSha256::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                mac.update(&[0]);
            }
            mac.update(part);
        }
        mac
    }

    /// The keyed hash of an E.164 number.
    pub fn phone_hash(&self, e164: &str) -> [u8; 32] {
        self.mac(&[b"phone", e164.as_bytes()])
            .finalize()
            .into_bytes()
            .into()
    }

    /// The keyed hash of a code sent for kiosk `device`, session `request`, to the number
    /// whose hash is `phone_hash`.
    pub fn code_hash(
        &self,
        device: &str,
        request: &str,
        phone_hash: &[u8],
        code: &str,
    ) -> [u8; 32] {
        self.mac(&[
            b"code",
            device.as_bytes(),
            request.as_bytes(),
            phone_hash,
            code.as_bytes(),
        ])
        .finalize()
        .into_bytes()
        .into()
    }

    /// Whether `code` is the one stored as `stored`, compared in constant time.
    pub fn code_matches(
        &self,
        device: &str,
        request: &str,
        phone_hash: &[u8],
        code: &str,
        stored: &[u8],
    ) -> bool {
        self.mac(&[
            b"code",
            device.as_bytes(),
            request.as_bytes(),
            phone_hash,
            code.as_bytes(),
        ])
        .verify_slice(stored)
        .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_with_mode_0600_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let made = OtpKey::load_or_create(dir.path()).unwrap();
        let read = OtpKey::load_or_create(dir.path()).unwrap();
        assert_eq!(made.0, read.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(format!("{made:?}"), "OtpKey(..)");
        std::fs::write(dir.path().join(KEY_FILE), b"short").unwrap();
        assert!(matches!(
            OtpKey::load_or_create(dir.path()),
            Err(KeyError::Length { len: 5, .. })
        ));
    }

    #[test]
    fn codes_are_bound_to_kiosk_session_and_number() {
        let key = OtpKey::from_bytes([7; KEY_BYTES]);
        let other_key = OtpKey::from_bytes([8; KEY_BYTES]);
        let phone = key.phone_hash("+33612345678");
        assert_ne!(phone, key.phone_hash("+33612345679"));
        assert_ne!(phone, other_key.phone_hash("+33612345678"));
        let stored = key.code_hash("kiosk-a", "j1", &phone, "123456");
        assert!(key.code_matches("kiosk-a", "j1", &phone, "123456", &stored));
        assert!(!key.code_matches("kiosk-a", "j1", &phone, "123457", &stored));
        assert!(!key.code_matches("kiosk-b", "j1", &phone, "123456", &stored));
        assert!(!key.code_matches("kiosk-a", "j2", &phone, "123456", &stored));
        let other_phone = key.phone_hash("+33612345679");
        assert!(!key.code_matches("kiosk-a", "j1", &other_phone, "123456", &stored));
        assert!(!other_key.code_matches("kiosk-a", "j1", &phone, "123456", &stored));
    }
}

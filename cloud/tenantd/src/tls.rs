//! HTTPS: the rustls server configuration and, when no certificate is configured, a local CA.
//!
//! On first start without `--tls-cert`, tenantd makes a CA (`tls/ca.pem`, ten years) and a
//! server certificate signed by it (`tls/server.pem`, one year, for `localhost`, the loopback
//! addresses, this host's name and any `--public-name`), keys mode 0600. Clients trust
//! `tls/ca.pem`. The server certificate is made anew when it nears expiry or the names change;
//! the CA is kept. TLS 1.2 and 1.3 only (rustls offers nothing older), ring as the provider.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Renew the local server certificate when it has fewer days left than this.
const RENEW_DAYS: i64 = 30;

/// A TLS set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key")]
    NoKey { path: PathBuf },
    #[error("only one of {cert} and {key} exists: restore the other, or remove both to make a new CA (clients must then trust the new one)")]
    CaKeyMissing { cert: PathBuf, key: PathBuf },
    #[error("make certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// Where the server certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    /// Given files (PEM chain and PEM key).
    Files { cert: PathBuf, key: PathBuf },
    /// The local CA under the data dir, for these names besides the defaults.
    LocalCa { extra_names: Vec<String> },
}

/// The certificate material in use.
#[derive(Debug)]
pub struct TlsMaterial {
    pub config: Arc<rustls::ServerConfig>,
    /// The local CA file clients should trust, when the local CA is in use.
    pub ca_file: Option<PathBuf>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn write_private(path: &Path, contents: &str, mode: u32) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        path: path.to_path_buf(),
        source,
    };
    // A temp file of its own per target, removed first: a leftover from an interrupted write
    // must never lend its (possibly wider) mode to a key.
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    match fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    {
        let mut opts = fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, mode);
        let mut f = opts.open(&tmp).map_err(err)?;
        f.write_all(contents.as_bytes()).map_err(err)?;
        f.sync_all().map_err(err)?;
    }
    fs::rename(&tmp, path).map_err(err)
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_slice())
        .collect::<Result<_, _>>()
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    rustls_pemfile::private_key(&mut pem.as_slice())
        .map_err(|source| TlsError::Read {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: path.to_path_buf(),
        })
}

/// The rustls server configuration for a chain and key: TLS 1.3 and 1.2, HTTP/2 and 1.1.
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Loads or makes the certificate material.
pub fn load(data_dir: &Path, source: &TlsSource) -> Result<TlsMaterial, TlsError> {
    match source {
        TlsSource::Files { cert, key } => Ok(TlsMaterial {
            config: server_config(load_chain(cert)?, load_key(key)?)?,
            ca_file: None,
        }),
        TlsSource::LocalCa { extra_names } => local_ca(&data_dir.join("tls"), extra_names),
    }
}

fn default_names(extra: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(host) = fs::read_to_string("/etc/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    for n in extra {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    names
}

/// The local CA under `<data>/tls/`: made once, then reloaded as a signing issuer.
pub struct LocalCa {
    issuer: rcgen::Certificate,
    key: KeyPair,
    pem_path: PathBuf,
    /// A digest of the CA certificate, so certificates it signed are remade if it changes.
    fingerprint: String,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("pem_path", &self.pem_path)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Loads the CA in `dir`, or makes it. A certificate without its key is an error.
    pub fn open(dir: &Path) -> Result<LocalCa, TlsError> {
        fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let ca_pem = dir.join("ca.pem");
        let ca_key_pem = dir.join("ca.key");
        if ca_pem.exists() && !ca_key_pem.exists() {
            return Err(TlsError::CaKeyMissing {
                cert: ca_pem,
                key: ca_key_pem,
            });
        }
        let now = time::OffsetDateTime::now_utc();
        let (issuer, key, pem) = if ca_pem.exists() {
            let key = KeyPair::from_pem(&String::from_utf8_lossy(&read(&ca_key_pem)?))?;
            let pem = String::from_utf8_lossy(&read(&ca_pem)?).to_string();
            let params = CertificateParams::from_ca_cert_pem(&pem)?;
            (params.self_signed(&key)?, key, pem)
        } else {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::default();
            let mut dn = DistinguishedName::new();
            dn.push(DnType::CommonName, "Kioskcall tenantd local CA");
            dn.push(DnType::OrganizationName, "Kioskcall");
            params.distinguished_name = dn;
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            params.not_before = now - time::Duration::days(1);
            params.not_after = now + time::Duration::days(3650);
            let cert = params.self_signed(&key)?;
            let pem = cert.pem();
            write_private(&ca_key_pem, &key.serialize_pem(), 0o600)?;
            write_private(&ca_pem, &pem, 0o644)?;
            tracing::warn!(ca = %ca_pem.display(), "made a new local CA: clients must trust this file");
            (cert, key, pem)
        };
        use sha2::Digest as _;
        let fingerprint = hex::encode(sha2::Sha256::digest(pem.as_bytes()));
        Ok(LocalCa {
            issuer,
            key,
            pem_path: ca_pem,
            fingerprint,
        })
    }

    /// The CA certificate file clients trust.
    pub fn pem_path(&self) -> &Path {
        &self.pem_path
    }

    /// Makes sure `cert_path`/`key_path` hold a server certificate from this CA for `names`
    /// (the first is the CN), remaking it when the names or the CA changed or it expires within
    /// [`RENEW_DAYS`]. `stamp_path` records what it was made for.
    pub fn ensure_server_cert(
        &self,
        names: &[String],
        cert_path: &Path,
        key_path: &Path,
        stamp_path: &Path,
    ) -> Result<(), TlsError> {
        let now = time::OffsetDateTime::now_utc();
        let wanted = format!("ca {}\n{}", self.fingerprint, names.join("\n"));
        let current = fs::read_to_string(stamp_path).unwrap_or_default();
        let expires_soon = fs::read_to_string(cert_path)
            .ok()
            .and_then(|pem| CertificateParams::from_ca_cert_pem(&pem).ok())
            .is_none_or(|p| p.not_after < now + time::Duration::days(RENEW_DAYS));
        if cert_path.exists() && key_path.exists() && current == wanted && !expires_soon {
            return Ok(());
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        write_private(key_path, &key.serialize_pem(), 0o600)?;
        write_private(cert_path, &cert.pem(), 0o644)?;
        write_private(stamp_path, &wanted, 0o644)?;
        tracing::info!(names = ?names, cert = %cert_path.display(), "made a server certificate from the local CA");
        Ok(())
    }
}

/// The names a local server certificate covers: localhost, the loopback addresses, this
/// host's name, and `extra`.
pub fn server_names(extra: &[String]) -> Vec<String> {
    default_names(extra)
}

fn local_ca(dir: &Path, extra_names: &[String]) -> Result<TlsMaterial, TlsError> {
    let ca = LocalCa::open(dir)?;
    let server_pem = dir.join("server.pem");
    let server_key_pem = dir.join("server.key");
    ca.ensure_server_cert(
        &default_names(extra_names),
        &server_pem,
        &server_key_pem,
        &dir.join("server.names"),
    )?;
    Ok(TlsMaterial {
        config: server_config(load_chain(&server_pem)?, load_key(&server_key_pem)?)?,
        ca_file: Some(ca.pem_path().to_path_buf()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_ca_is_made_once_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let first = load(
            dir.path(),
            &TlsSource::LocalCa {
                extra_names: vec![],
            },
        )
        .unwrap();
        let ca = fs::read(first.ca_file.as_ref().unwrap()).unwrap();
        let server = fs::read(dir.path().join("tls/server.pem")).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in ["tls/ca.key", "tls/server.key"] {
                let mode = fs::metadata(dir.path().join(key))
                    .unwrap()
                    .permissions()
                    .mode();
                assert_eq!(mode & 0o777, 0o600, "{key}");
            }
        }
        // Same names: nothing is remade.
        load(
            dir.path(),
            &TlsSource::LocalCa {
                extra_names: vec![],
            },
        )
        .unwrap();
        assert_eq!(fs::read(dir.path().join("tls/server.pem")).unwrap(), server);
        // A new name: a new server certificate from the same CA.
        load(
            dir.path(),
            &TlsSource::LocalCa {
                extra_names: vec!["console.shop.example".into()],
            },
        )
        .unwrap();
        assert_ne!(fs::read(dir.path().join("tls/server.pem")).unwrap(), server);
        assert_eq!(fs::read(dir.path().join("tls/ca.pem")).unwrap(), ca);
    }
}

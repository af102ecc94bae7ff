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
    #[error("{cert} exists but its key {key} is missing: restore the key, or remove {cert} to make a new CA (clients must then trust the new one)")]
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

fn local_ca(dir: &Path, extra_names: &[String]) -> Result<TlsMaterial, TlsError> {
    fs::create_dir_all(dir).map_err(|source| TlsError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let ca_pem = dir.join("ca.pem");
    let ca_key_pem = dir.join("ca.key");
    let server_pem = dir.join("server.pem");
    let server_key_pem = dir.join("server.key");
    let names_file = dir.join("server.names");
    let names = default_names(extra_names);
    let now = time::OffsetDateTime::now_utc();

    // The CA: made once, reloaded as signing parameters afterwards.
    if ca_pem.exists() && !ca_key_pem.exists() {
        return Err(TlsError::CaKeyMissing {
            cert: ca_pem,
            key: ca_key_pem,
        });
    }
    let (ca_cert, ca_key) = if ca_pem.exists() {
        let key = KeyPair::from_pem(&String::from_utf8_lossy(&read(&ca_key_pem)?))?;
        let params =
            CertificateParams::from_ca_cert_pem(&String::from_utf8_lossy(&read(&ca_pem)?))?;
        (params.self_signed(&key)?, key)
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
        write_private(&ca_key_pem, &key.serialize_pem(), 0o600)?;
        write_private(&ca_pem, &cert.pem(), 0o644)?;
        // A new CA invalidates any server certificate signed by an old one.
        let _ = fs::remove_file(&server_pem);
        tracing::warn!(ca = %ca_pem.display(), "made a new local CA: clients must trust this file");
        (cert, key)
    };

    let wanted = names.join("\n");
    let current_names = fs::read_to_string(&names_file).unwrap_or_default();
    let expires_soon = fs::read_to_string(&server_pem)
        .ok()
        .and_then(|pem| CertificateParams::from_ca_cert_pem(&pem).ok())
        .is_none_or(|p| p.not_after < now + time::Duration::days(RENEW_DAYS));
    if !server_pem.exists() || !server_key_pem.exists() || current_names != wanted || expires_soon {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(names.clone())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, names[0].clone());
        params.distinguished_name = dn;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        let cert = params.signed_by(&key, &ca_cert, &ca_key)?;
        write_private(&server_key_pem, &key.serialize_pem(), 0o600)?;
        write_private(&server_pem, &cert.pem(), 0o644)?;
        write_private(&names_file, &wanted, 0o644)?;
        tracing::info!(names = ?names, "made a server certificate from the local CA");
    }
    Ok(TlsMaterial {
        config: server_config(load_chain(&server_pem)?, load_key(&server_key_pem)?)?,
        ca_file: Some(ca_pem),
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

//! An external MQTT broker instead of the managed mosquitto: EMQX, or any MQTT 5 broker with
//! mutual TLS, topic authorization and CRL checks, run by the operator.
//!
//! tenantd then writes and starts no broker. It connects its fleet link to the broker's URL
//! with a service certificate of its own service CA ([`ExternalBroker`]), keeps issuing device
//! and claim certificates, and keeps the CRLs current for the broker to fetch
//! ([`super::crl`]). The files the broker's operator needs come from
//! `tenantd fleet export-broker-files` ([`super::export`]).
//!
//! A revocation cannot restart a broker tenantd does not run. When the broker's admin API is
//! configured ([`BrokerAdmin`], EMQX's REST API), tenantd bans the device's client id there and
//! kicks its connection, so a connected device is cut off within seconds and cannot come back
//! before the broker's CRL cache has the new CRL. Without it, the operator must do that.
//!
//! Everything here is read and checked before any socket opens: a missing, unreadable or
//! mismatched file is an [`ExternalError`] naming the flag and the file.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::broker::SERVICE_IDENTITY;
use super::service::LinkSettings;
use super::urls::{AdminUrl, BrokerUrl};

/// How long a ban on a revoked device's client id lasts. Device certificates live 90 days, so
/// by then the certificate has expired and the broker's TLS check refuses it anyway.
const BAN_DAYS: i64 = 365;

/// How long one admin API request may take.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A setting of the external broker is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ExternalError {
    #[error("{flag} {path}: {source}")]
    Read {
        flag: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{flag} {path} holds no PEM certificate")]
    NoCertificate { flag: &'static str, path: PathBuf },
    #[error("--service-key {0} holds no PEM private key")]
    NoKey(PathBuf),
    #[error("--service-key {key} is not the key of --service-cert {cert}")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("--service-cert {cert} and --service-key {key} cannot be used: {message}")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        message: String,
    },
    #[error("invalid --service-client-id `{0}`: 1 to 64 of letters, digits, `-`, `_` and `.`")]
    ClientId(String),
    #[error("--broker-admin-key-file {path}: {message}")]
    AdminKey { path: PathBuf, message: String },
    #[error("broker admin API client: {0}")]
    AdminClient(String),
}

/// One call of the admin API failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{method} {url}: {message}")]
    Request {
        method: &'static str,
        url: String,
        message: String,
    },
    #[error("{method} {url} answered {status}: {body}")]
    Refused {
        method: &'static str,
        url: String,
        status: u16,
        body: String,
    },
}

fn read(flag: &'static str, path: &Path) -> Result<String, ExternalError> {
    std::fs::read_to_string(path).map_err(|source| ExternalError::Read {
        flag,
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(
    flag: &'static str,
    path: &Path,
    pem: &str,
) -> Result<Vec<CertificateDer<'static>>, ExternalError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|source| ExternalError::Read {
            flag,
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(ExternalError::NoCertificate {
            flag,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// Checks that `key` is the private key of the first certificate of `chain`.
fn check_identity(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), ExternalError> {
    let identity = |message: String| ExternalError::Identity {
        cert: cert_path.to_path_buf(),
        key: key_path.to_path_buf(),
        message,
    };
    let provider = rustls::crypto::ring::default_provider();
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| identity(e.to_string()))?;
    match rustls::sign::CertifiedKey::new(chain, signing).keys_match() {
        Ok(()) => Ok(()),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(ExternalError::KeyMismatch {
                cert: cert_path.to_path_buf(),
                key: key_path.to_path_buf(),
            })
        }
        Err(e) => Err(identity(e.to_string())),
    }
}

/// The CN of a certificate in PEM, if it has one.
fn common_name(cert_pem: &str) -> Option<String> {
    let params = rcgen::CertificateParams::from_ca_cert_pem(cert_pem).ok()?;
    match params.distinguished_name.get(&rcgen::DnType::CommonName)? {
        rcgen::DnValue::Utf8String(s) => Some(s.clone()),
        rcgen::DnValue::PrintableString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

fn check_client_id(id: &str) -> Result<(), ExternalError> {
    let ok = (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ExternalError::ClientId(id.to_string()))
    }
}

/// Where the external broker's files are, as given on the command line.
#[derive(Debug, Clone)]
pub struct ExternalFiles {
    /// `--broker-ca`: the CA that signed the broker's server certificate.
    pub server_ca: PathBuf,
    /// `--service-cert`: tenantd's client certificate on the broker.
    pub service_cert: PathBuf,
    /// `--service-key`: its private key.
    pub service_key: PathBuf,
}

/// The external broker, read and checked: where it is, whom to trust, who tenantd is there.
#[derive(Clone)]
pub struct ExternalBroker {
    pub url: BrokerUrl,
    /// The CA bundle that signed the broker's server certificate, and nothing else: system
    /// roots are not trusted. Kiosks get it too, as their claim batch's `server_ca_pem`.
    pub server_ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
    /// The fleet link's MQTT client id.
    pub client_id: String,
    /// The broker's admin API, to cut revoked devices off.
    pub admin: Option<BrokerAdmin>,
}

impl std::fmt::Debug for ExternalBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ExternalBroker")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("admin", &self.admin)
            .finish_non_exhaustive()
    }
}

impl ExternalBroker {
    /// Reads and checks the files: the CA holds certificates, the certificate and key parse
    /// and belong together. `client_id` defaults to the managed mode's service identity.
    pub fn load(
        url: BrokerUrl,
        files: &ExternalFiles,
        client_id: Option<String>,
    ) -> Result<ExternalBroker, ExternalError> {
        let server_ca_pem = read("--broker-ca", &files.server_ca)?;
        certificates("--broker-ca", &files.server_ca, &server_ca_pem)?;
        let client_cert_pem = read("--service-cert", &files.service_cert)?;
        let chain = certificates("--service-cert", &files.service_cert, &client_cert_pem)?;
        let client_key_pem = read("--service-key", &files.service_key)?;
        let key = rustls_pemfile::private_key(&mut client_key_pem.as_bytes())
            .map_err(|source| ExternalError::Read {
                flag: "--service-key",
                path: files.service_key.clone(),
                source,
            })?
            .ok_or_else(|| ExternalError::NoKey(files.service_key.clone()))?;
        check_identity(chain, key, &files.service_cert, &files.service_key)?;
        let client_id = client_id.unwrap_or_else(|| SERVICE_IDENTITY.to_string());
        check_client_id(&client_id)?;
        match common_name(&client_cert_pem) {
            Some(cn) if cn == SERVICE_IDENTITY => {}
            cn => tracing::warn!(
                cert = %files.service_cert.display(),
                cn = cn.as_deref().unwrap_or("(none)"),
                expected = SERVICE_IDENTITY,
                "the service certificate's CN is not the service identity the exported ACL authorizes"
            ),
        }
        Ok(ExternalBroker {
            url,
            server_ca_pem,
            client_cert_pem,
            client_key_pem,
            client_id,
            admin: None,
        })
    }

    /// Adds the broker's admin API.
    pub fn with_admin(mut self, admin: BrokerAdmin) -> ExternalBroker {
        self.admin = Some(admin);
        self
    }

    /// How the fleet link connects.
    pub fn link_settings(&self) -> LinkSettings {
        LinkSettings {
            host: self.url.host().to_string(),
            port: self.url.port(),
            server_ca_pem: self.server_ca_pem.clone(),
            client_cert_pem: self.client_cert_pem.clone(),
            client_key_pem: self.client_key_pem.clone(),
            client_id: self.client_id.clone(),
        }
    }
}

/// An external broker's admin API (EMQX 5's REST API, `BASE/api/v5`), with an API key. Used
/// to ban and kick a revoked device.
#[derive(Clone)]
pub struct BrokerAdmin {
    url: AdminUrl,
    key: String,
    secret: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for BrokerAdmin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret.
        f.debug_struct("BrokerAdmin")
            .field("url", &self.url)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl BrokerAdmin {
    /// Reads the API key file (`KEY:SECRET`, one line) and makes an HTTPS client that trusts
    /// only `server_ca_pem` (the `--broker-ca` bundle).
    pub fn load(
        url: AdminUrl,
        key_file: &Path,
        server_ca_pem: &str,
    ) -> Result<BrokerAdmin, ExternalError> {
        let bad = |message: &str| ExternalError::AdminKey {
            path: key_file.to_path_buf(),
            message: message.to_string(),
        };
        let text = read("--broker-admin-key-file", key_file)?;
        let (key, secret) = text
            .trim()
            .split_once(':')
            .ok_or_else(|| bad("expected one line KEY:SECRET"))?;
        let (key, secret) = (key.trim(), secret.trim());
        if key.is_empty() || secret.is_empty() || text.trim().lines().count() != 1 {
            return Err(bad("expected one line KEY:SECRET"));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(key_file) {
                if meta.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(
                        file = %key_file.display(),
                        "the broker admin key file is readable by other users: chmod 600 it"
                    );
                }
            }
        }
        let mut builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .timeout(ADMIN_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        for cert in reqwest::Certificate::from_pem_bundle(server_ca_pem.as_bytes())
            .map_err(|e| ExternalError::AdminClient(e.to_string()))?
        {
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| ExternalError::AdminClient(e.to_string()))?;
        Ok(BrokerAdmin {
            url,
            key: key.to_string(),
            secret: secret.to_string(),
            http,
        })
    }

    /// The API's base URL.
    pub fn url(&self) -> &AdminUrl {
        &self.url
    }

    /// Cuts a revoked device off: bans its client id (so it cannot connect again before the
    /// broker has the new CRL), then kicks its connection. A ban that exists already and a
    /// client that is not connected are not errors. `client_id` is a device id (`a-z`, `0-9`,
    /// `-`), so it goes into the URL's path as it is.
    pub async fn cut_off(&self, client_id: &str) -> Result<(), AdminError> {
        let until =
            jiff::Timestamp::from_second(jiff::Timestamp::now().as_second() + BAN_DAYS * 24 * 3600)
                .unwrap_or(jiff::Timestamp::MAX);
        let ban = serde_json::json!({
            "as": "clientid",
            "who": client_id,
            "by": "tenantd",
            "reason": "device revoked",
            "until": until.to_string(),
        });
        let url = self.url.join("/api/v5/banned");
        self.send("POST", &url, self.http.post(&url).json(&ban), &[409])
            .await?;
        let url = self.url.join(&format!("/api/v5/clients/{client_id}"));
        self.send("DELETE", &url, self.http.delete(&url), &[404])
            .await
    }

    async fn send(
        &self,
        method: &'static str,
        url: &str,
        request: reqwest::RequestBuilder,
        also_fine: &[u16],
    ) -> Result<(), AdminError> {
        let response = request
            .basic_auth(&self.key, Some(&self.secret))
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| AdminError::Request {
                method,
                url: url.to_string(),
                message: error_chain(&e),
            })?;
        let status = response.status();
        if status.is_success() || also_fine.contains(&status.as_u16()) {
            return Ok(());
        }
        let body: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        Err(AdminError::Refused {
            method,
            url: url.to_string(),
            status: status.as_u16(),
            body,
        })
    }
}

/// An error with its causes, for a log line that says why a request failed.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::pki::FleetPki;

    struct Fixture {
        _dir: tempfile::TempDir,
        files: ExternalFiles,
    }

    fn fixture(cn: &str) -> (Fixture, FleetPki) {
        let dir = tempfile::tempdir().unwrap();
        let pki = FleetPki::open(dir.path()).unwrap();
        let (issued, key) = pki.service.issue_with_key(cn, 10).unwrap();
        let files = ExternalFiles {
            server_ca: dir.path().join("broker-ca.pem"),
            service_cert: dir.path().join("svc.pem"),
            service_key: dir.path().join("svc.key"),
        };
        std::fs::write(&files.server_ca, pki.device.pem()).unwrap();
        std::fs::write(&files.service_cert, &issued.certificate_pem).unwrap();
        std::fs::write(&files.service_key, &key).unwrap();
        (Fixture { _dir: dir, files }, pki)
    }

    fn url() -> BrokerUrl {
        "mqtts://emqx.example".parse().unwrap()
    }

    #[test]
    fn a_matching_identity_loads_with_the_service_client_id() {
        let (f, _pki) = fixture("svc-tenantd");
        let broker = ExternalBroker::load(url(), &f.files, None).unwrap();
        let link = broker.link_settings();
        assert_eq!((link.host.as_str(), link.port), ("emqx.example", 8883));
        assert_eq!(link.client_id, "svc-tenantd");
        assert!(!format!("{broker:?}").contains("PRIVATE KEY"));
        let named = ExternalBroker::load(url(), &f.files, Some("svc-tenantd-2".into())).unwrap();
        assert_eq!(named.client_id, "svc-tenantd-2");
        let e = ExternalBroker::load(url(), &f.files, Some("svc/#".into())).unwrap_err();
        assert!(e.to_string().contains("--service-client-id"), "{e}");
    }

    #[test]
    fn missing_unreadable_and_mismatched_files_are_named() {
        let (f, pki) = fixture("svc-tenantd");
        let mut missing = f.files.clone();
        missing.server_ca = f.files.server_ca.with_file_name("nope.pem");
        let e = ExternalBroker::load(url(), &missing, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--broker-ca ") && e.contains("nope.pem"),
            "{e}"
        );

        let mut not_pem = f.files.clone();
        not_pem.service_cert = f.files.service_key.clone();
        let e = ExternalBroker::load(url(), &not_pem, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("--service-cert") && e.contains("holds no PEM certificate"),
            "{e}"
        );

        let mut no_key = f.files.clone();
        no_key.service_key = f.files.service_cert.clone();
        let e = ExternalBroker::load(url(), &no_key, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds no PEM private key"), "{e}");

        // Another key than the certificate's.
        let (_, other_key) = pki.service.issue_with_key("svc-tenantd", 10).unwrap();
        std::fs::write(&f.files.service_key, other_key).unwrap();
        let e = ExternalBroker::load(url(), &f.files, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not the key of --service-cert"), "{e}");
    }

    #[test]
    fn the_admin_key_file_holds_one_key_and_secret() {
        let (f, _pki) = fixture("svc-tenantd");
        let ca = std::fs::read_to_string(&f.files.server_ca).unwrap();
        let key_file = f.files.server_ca.with_file_name("admin.key");
        let admin_url: AdminUrl = "https://emqx.example:18084".parse().unwrap();
        for bad in ["", "no-colon", ":secret", "key:", "a:b\nc:d"] {
            std::fs::write(&key_file, bad).unwrap();
            let e = BrokerAdmin::load(admin_url.clone(), &key_file, &ca).unwrap_err();
            assert!(e.to_string().contains("KEY:SECRET"), "{bad:?}: {e}");
        }
        std::fs::write(&key_file, "ops-key:s3cret\n").unwrap();
        let admin = BrokerAdmin::load(admin_url, &key_file, &ca).unwrap();
        assert!(!format!("{admin:?}").contains("s3cret"));
    }

    /// An admin API answering each call with the next of `statuses`.
    async fn admin_answering(statuses: Vec<u16>) -> (BrokerAdmin, tempfile::TempDir) {
        use axum::http::StatusCode;
        let statuses = std::sync::Arc::new(std::sync::Mutex::new(statuses.into_iter()));
        let answer = move || {
            let next = statuses.lock().unwrap().next().unwrap_or(500);
            async move { (StatusCode::from_u16(next).unwrap(), "{\"code\":\"X\"}") }
        };
        let app = axum::Router::new()
            .route("/api/v5/banned", axum::routing::post(answer.clone()))
            .route("/api/v5/clients/{id}", axum::routing::delete(answer));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let (f, _pki) = fixture("svc-tenantd");
        let key_file = f.files.server_ca.with_file_name("admin.key");
        std::fs::write(&key_file, "k:s").unwrap();
        let ca = std::fs::read_to_string(&f.files.server_ca).unwrap();
        let url: AdminUrl = format!("http://127.0.0.1:{port}").parse().unwrap();
        let admin = BrokerAdmin::load(url, &key_file, &ca).unwrap();
        (admin, f._dir)
    }

    #[tokio::test]
    async fn a_ban_that_exists_and_a_client_not_connected_are_fine() {
        let (admin, _dir) = admin_answering(vec![409, 404]).await;
        admin.cut_off("kiosk-abc").await.unwrap();
        let (admin, _dir) = admin_answering(vec![200, 204]).await;
        admin.cut_off("kiosk-abc").await.unwrap();
    }

    #[tokio::test]
    async fn a_refusal_names_the_call_and_the_answer() {
        let (admin, _dir) = admin_answering(vec![401]).await;
        let e = admin.cut_off("kiosk-abc").await.unwrap_err().to_string();
        assert!(
            e.starts_with("POST http://127.0.0.1:") && e.contains("/api/v5/banned answered 401"),
            "{e}"
        );
        let (admin, _dir) = admin_answering(vec![200, 500]).await;
        let e = admin.cut_off("kiosk-abc").await.unwrap_err().to_string();
        assert!(
            e.contains("DELETE") && e.contains("/api/v5/clients/kiosk-abc answered 500"),
            "{e}"
        );
        // Nobody listening: the request itself fails, with its cause.
        let url: AdminUrl = "http://127.0.0.1:9".parse().unwrap();
        let unreachable = BrokerAdmin { url, ..admin };
        let e = unreachable
            .cut_off("kiosk-abc")
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("POST http://127.0.0.1:9/api/v5/banned: "),
            "{e}"
        );
    }
}

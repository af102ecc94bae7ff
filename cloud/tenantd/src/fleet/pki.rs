//! The fleet's certificate authorities.
//!
//! Three CAs with separate keys under `<data>/pki/`, so an identity's kind follows from who
//! signed it and the broker can tell them apart by listener:
//!
//! - the **device CA** signs each kiosk's CSR (90 days; renewed by a rotate command at two
//!   thirds of its life), CN = the device id;
//! - the **claim CA** signs batch claim certificates baked into images, CN = `claim-<batch>`,
//!   good for nothing but provisioning;
//! - the **service CA** signs the cloud's own MQTT identity, CN = `svc-<name>`, accepted only on
//!   the broker's internal listener.
//!
//! The device and claim CAs each sign a CRL; revoked serials come from the store. When a CRL
//! base URL is set ([`FleetPki::with_crl_base`]), the certificates they issue name where their
//! CRL is published (the CRL Distribution Points extension), and the published CRL names the
//! same place as its Issuing Distribution Point, which brokers that fetch CRLs themselves
//! (EMQX) need. Keys are files of mode 0600 (a TPM or HSM seam can replace [`Ca`] later
//! without changing its callers).

use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams,
    CertificateSigningRequestParams, CrlDistributionPoint, CrlIssuingDistributionPoint, CrlScope,
    DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SerialNumber,
};
use time::{Duration, OffsetDateTime};

use super::urls::CrlBaseUrl;
use crate::tls::{write_private, TlsError};

/// Life of a device certificate.
pub const DEVICE_CERT_DAYS: i64 = 90;
/// Life of a claim certificate (it sits in images on shelves).
pub const CLAIM_CERT_DAYS: i64 = 5 * 365;
/// Life of a service certificate.
pub const SERVICE_CERT_DAYS: i64 = 365;
/// How long a CRL stays valid. Only the cloud's own broker reads it, and mosquitto loads it only
/// at start, so it is long-lived and re-signed at every start, every revocation, and when it is
/// older than [`CRL_RESIGN_AFTER_DAYS`].
pub const CRL_DAYS: i64 = 365;
/// Re-sign (and restart the broker) when the CRL is older than this.
pub const CRL_RESIGN_AFTER_DAYS: u64 = 180;

/// Which CA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaKind {
    Device,
    Claim,
    Service,
}

impl CaKind {
    fn file_stem(self) -> &'static str {
        match self {
            CaKind::Device => "device-ca",
            CaKind::Claim => "claim-ca",
            CaKind::Service => "service-ca",
        }
    }

    fn common_name(self) -> &'static str {
        match self {
            CaKind::Device => "Kioskcall device CA",
            CaKind::Claim => "Kioskcall claim CA",
            CaKind::Service => "Kioskcall service CA",
        }
    }
}

/// A certificate just issued.
#[derive(Debug, Clone)]
pub struct Issued {
    pub certificate_pem: String,
    /// Lower-case hex of the serial number, as the store keeps it.
    pub serial: String,
    pub not_after_unix: i64,
}

/// One CA: its certificate (re-made from the stored PEM as a signing issuer) and key.
pub struct Ca {
    kind: CaKind,
    issuer: rcgen::Certificate,
    key: KeyPair,
    /// The CA certificate exactly as stored: what clients and the broker trust.
    pem: String,
    pem_path: PathBuf,
    /// Where this CA's CRL is published, named in what it issues (device and claim CAs only).
    crl_url: Option<String>,
}

fn random_serial() -> (SerialNumber, String) {
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f; // positive
    bytes[0] |= 0x01; // no leading zero byte, so the hex form is stable
    (SerialNumber::from_slice(&bytes), hex::encode(bytes))
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Kioskcall");
    dn.push(DnType::CommonName, cn);
    dn
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Ca")
            .field("kind", &self.kind)
            .field("pem_path", &self.pem_path)
            .field("crl_url", &self.crl_url)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Loads the CA from `dir`, or makes it (ten years) on first use.
    pub fn load_or_create(dir: &Path, kind: CaKind) -> Result<Ca, TlsError> {
        fs::create_dir_all(dir).map_err(|source| TlsError::Write {
            path: dir.to_path_buf(),
            source,
        })?;
        let pem_path = dir.join(format!("{}.pem", kind.file_stem()));
        let key_path = dir.join(format!("{}.key", kind.file_stem()));
        if pem_path.exists() != key_path.exists() {
            // Half a CA: never make a new one over the surviving half.
            return Err(TlsError::CaKeyMissing {
                cert: pem_path,
                key: key_path,
            });
        }
        if pem_path.exists() {
            let read = |p: &Path| {
                fs::read_to_string(p).map_err(|source| TlsError::Read {
                    path: p.to_path_buf(),
                    source,
                })
            };
            let pem = read(&pem_path)?;
            let key = KeyPair::from_pem(&read(&key_path)?)?;
            let issuer = CertificateParams::from_ca_cert_pem(&pem)?.self_signed(&key)?;
            return Ok(Ca {
                kind,
                issuer,
                key,
                pem,
                pem_path,
                crl_url: None,
            });
        }
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = dn(kind.common_name());
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        params.serial_number = Some(random_serial().0);
        let issuer = params.self_signed(&key)?;
        let pem = issuer.pem();
        write_private(&key_path, &key.serialize_pem(), 0o600)?;
        write_private(&pem_path, &pem, 0o644)?;
        tracing::info!(ca = %pem_path.display(), "made a new {}", kind.common_name());
        Ok(Ca {
            kind,
            issuer,
            key,
            pem,
            pem_path,
            crl_url: None,
        })
    }

    pub fn kind(&self) -> CaKind {
        self.kind
    }

    /// The CA certificate (PEM) that relying parties trust.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    pub fn pem_path(&self) -> &Path {
        &self.pem_path
    }

    /// Where this CA's CRL is published, when a CRL base URL is set.
    pub fn crl_url(&self) -> Option<&str> {
        self.crl_url.as_deref()
    }

    fn leaf_params(
        &self,
        cn: &str,
        days: i64,
        eku: ExtendedKeyUsagePurpose,
    ) -> (CertificateParams, String, i64) {
        let mut params = CertificateParams::default();
        if let Some(url) = &self.crl_url {
            params.crl_distribution_points = vec![CrlDistributionPoint {
                uris: vec![url.clone()],
            }];
        }
        params.distinguished_name = dn(cn);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + Duration::days(days);
        let (serial, serial_hex) = random_serial();
        params.serial_number = Some(serial);
        let not_after = params.not_after.unix_timestamp();
        (params, serial_hex, not_after)
    }

    /// Signs a device's CSR for `cn`. The CSR's own subject and extensions are ignored: the
    /// cloud decides the identity; the CSR only proves possession of the key.
    pub fn sign_csr(&self, csr_pem: &str, cn: &str, days: i64) -> Result<Issued, TlsError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        let (params, serial, not_after_unix) =
            self.leaf_params(cn, days, ExtendedKeyUsagePurpose::ClientAuth);
        let csr = CertificateSigningRequestParams {
            params,
            public_key: csr.public_key,
        };
        let cert = csr.signed_by(&self.issuer, &self.key)?;
        Ok(Issued {
            certificate_pem: cert.pem(),
            serial,
            not_after_unix,
        })
    }

    /// Checks a CSR (it parses and its signature holds) and returns a fingerprint of its
    /// public key (16 hex characters of SHA-256), which ties a provisioning request to its key.
    pub fn check_csr(&self, csr_pem: &str) -> Result<String, TlsError> {
        use rcgen::PublicKeyData as _;
        use sha2::Digest as _;
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)?;
        let digest = sha2::Sha256::digest(csr.public_key.der_bytes());
        Ok(hex::encode(&digest[..8]))
    }

    /// Makes a key pair here and certifies it: for claim and service identities, which the
    /// cloud itself hands out. Returns the certificate and the key (PEM).
    pub fn issue_with_key(&self, cn: &str, days: i64) -> Result<(Issued, String), TlsError> {
        let key = KeyPair::generate()?;
        let (params, serial, not_after_unix) =
            self.leaf_params(cn, days, ExtendedKeyUsagePurpose::ClientAuth);
        let cert = params.signed_by(&key, &self.issuer, &self.key)?;
        Ok((
            Issued {
                certificate_pem: cert.pem(),
                serial,
                not_after_unix,
            },
            key.serialize_pem(),
        ))
    }

    /// A CRL listing `revoked` (serial hex, revocation time), valid for [`CRL_DAYS`], without an
    /// Issuing Distribution Point: it covers every certificate of this CA, also those issued
    /// before a CRL base URL was set, so it is the form for brokers that load CRL files.
    pub fn crl(&self, revoked: &[(String, i64)], crl_number: u64) -> Result<String, TlsError> {
        self.sign_crl(revoked, crl_number, None)
    }

    /// The CRL as published at [`Ca::crl_url`]: the same list, naming that URL as its Issuing
    /// Distribution Point when one is set (brokers that fetch CRLs from the certificates'
    /// distribution points check that the two match). Without a URL, the same as [`Ca::crl`].
    pub fn published_crl(
        &self,
        revoked: &[(String, i64)],
        crl_number: u64,
    ) -> Result<String, TlsError> {
        self.sign_crl(revoked, crl_number, self.crl_url.as_deref())
    }

    fn sign_crl(
        &self,
        revoked: &[(String, i64)],
        crl_number: u64,
        distribution_point: Option<&str>,
    ) -> Result<String, TlsError> {
        let now = OffsetDateTime::now_utc();
        let revoked_certs = revoked
            .iter()
            .filter_map(|(serial, at)| {
                let bytes = hex::decode(serial).ok()?;
                Some(RevokedCertParams {
                    serial_number: SerialNumber::from_slice(&bytes),
                    revocation_time: OffsetDateTime::from_unix_timestamp(*at).unwrap_or(now),
                    reason_code: None,
                    invalidity_date: None,
                })
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: now - Duration::minutes(5),
            next_update: now + Duration::days(CRL_DAYS),
            crl_number: SerialNumber::from(crl_number),
            issuing_distribution_point: distribution_point.map(|url| CrlIssuingDistributionPoint {
                distribution_point: CrlDistributionPoint {
                    uris: vec![url.to_string()],
                },
                scope: Some(CrlScope::UserCertsOnly),
            }),
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer, &self.key)?.pem()?)
    }
}

/// The three CAs of a data dir.
#[derive(Debug)]
pub struct FleetPki {
    pub device: Ca,
    pub claim: Ca,
    pub service: Ca,
    dir: PathBuf,
}

impl FleetPki {
    /// Loads or makes the CAs under `<data>/pki/`.
    pub fn open(data_dir: &Path) -> Result<FleetPki, TlsError> {
        let dir = data_dir.join("pki");
        Ok(FleetPki {
            device: Ca::load_or_create(&dir, CaKind::Device)?,
            claim: Ca::load_or_create(&dir, CaKind::Claim)?,
            service: Ca::load_or_create(&dir, CaKind::Service)?,
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Names where the device and claim CAs' CRLs are published (`BASE/device.crl`,
    /// `BASE/claim.crl`) in every certificate they issue from now on. The service CA keeps
    /// none: it has no CRL.
    pub fn with_crl_base(mut self, base: Option<&CrlBaseUrl>) -> FleetPki {
        self.device.crl_url = base.map(CrlBaseUrl::device);
        self.claim.crl_url = base.map(CrlBaseUrl::claim);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr() -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = dn("whatever-the-device-asks");
        (params.serialize_request(&key).unwrap().pem().unwrap(), key)
    }

    #[test]
    fn cas_persist_and_sign_with_the_cloud_chosen_name() {
        let dir = tempfile::tempdir().unwrap();
        let pki = FleetPki::open(dir.path()).unwrap();
        let (csr_pem, key) = csr();
        let issued = pki
            .device
            .sign_csr(&csr_pem, "kiosk-abc123", DEVICE_CERT_DAYS)
            .unwrap();
        let parsed = CertificateParams::from_ca_cert_pem(&issued.certificate_pem).unwrap();
        let cn = parsed
            .distinguished_name
            .get(&DnType::CommonName)
            .cloned()
            .unwrap();
        assert_eq!(cn, rcgen::DnValue::Utf8String("kiosk-abc123".into()));
        assert_eq!(issued.serial.len(), 32);
        let _ = key;
        // Reopening keeps the same CAs.
        let again = FleetPki::open(dir.path()).unwrap();
        assert_eq!(again.device.pem(), pki.device.pem());
        assert_ne!(pki.device.pem(), pki.claim.pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dir.path().join("pki/device-ca.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_tampered_csr_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let pki = FleetPki::open(dir.path()).unwrap();
        let (csr_pem, _) = csr();
        let lines: Vec<&str> = csr_pem.lines().collect();
        let mut body = lines[1].to_string();
        let flipped = if body.ends_with('A') { 'B' } else { 'A' };
        body.pop();
        body.push(flipped);
        let mut tampered = lines.clone();
        tampered[1] = &body;
        assert!(pki
            .device
            .sign_csr(&tampered.join("\n"), "kiosk-x", 90)
            .is_err());
    }

    #[test]
    fn crl_lists_revoked_serials() {
        let dir = tempfile::tempdir().unwrap();
        let pki = FleetPki::open(dir.path()).unwrap();
        let (issued, _key) = pki.claim.issue_with_key("claim-batch1", 10).unwrap();
        let crl = pki
            .claim
            .crl(&[(issued.serial.clone(), 1_800_000_000)], 1)
            .unwrap();
        assert!(crl.starts_with("-----BEGIN X509 CRL-----"));
    }

    /// The URIs of a certificate's CRL Distribution Points extension.
    fn distribution_points(cert_pem: &str) -> Vec<String> {
        use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        let mut uris = Vec::new();
        for ext in cert.extensions() {
            if let ParsedExtension::CRLDistributionPoints(points) = ext.parsed_extension() {
                for point in points.iter() {
                    if let Some(DistributionPointName::FullName(names)) = &point.distribution_point
                    {
                        for name in names {
                            if let GeneralName::URI(uri) = name {
                                uris.push(uri.to_string());
                            }
                        }
                    }
                }
            }
        }
        uris
    }

    /// A CRL's Issuing Distribution Point URI, and the serials it lists (hex).
    fn crl_contents(crl_pem: &str) -> (Option<String>, Vec<String>) {
        use x509_parser::extensions::{DistributionPointName, GeneralName, ParsedExtension};
        let (_, pem) = x509_parser::pem::parse_x509_pem(crl_pem.as_bytes()).unwrap();
        let (_, crl) = x509_parser::parse_x509_crl(&pem.contents).unwrap();
        let idp = crl
            .extensions()
            .iter()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::IssuingDistributionPoint(idp) => {
                    assert!(idp.only_contains_user_certs);
                    match &idp.distribution_point {
                        Some(DistributionPointName::FullName(names)) => {
                            names.iter().find_map(|n| match n {
                                GeneralName::URI(uri) => Some(uri.to_string()),
                                _ => None,
                            })
                        }
                        _ => None,
                    }
                }
                _ => None,
            });
        let serials = crl
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        (idp, serials)
    }

    #[test]
    fn a_crl_base_is_named_in_issued_certificates_and_in_the_published_crl_only() {
        let dir = tempfile::tempdir().unwrap();
        let base: CrlBaseUrl = "http://crl.shop.example/pki/v1".parse().unwrap();
        let pki = FleetPki::open(dir.path())
            .unwrap()
            .with_crl_base(Some(&base));
        let (csr_pem, _key) = csr();
        let device = pki.device.sign_csr(&csr_pem, "kiosk-abc", 90).unwrap();
        assert_eq!(
            distribution_points(&device.certificate_pem),
            vec!["http://crl.shop.example/pki/v1/device.crl".to_string()]
        );
        let (claim, _) = pki.claim.issue_with_key("claim-batch1", 10).unwrap();
        assert_eq!(
            distribution_points(&claim.certificate_pem),
            vec![base.claim()]
        );
        let (service, _) = pki.service.issue_with_key("svc-tenantd", 10).unwrap();
        assert!(distribution_points(&service.certificate_pem).is_empty());

        let revoked = [(device.serial.clone(), 1_800_000_000)];
        let (idp, serials) = crl_contents(&pki.device.published_crl(&revoked, 3).unwrap());
        assert_eq!(idp, Some(base.device()));
        assert_eq!(serials, vec![device.serial.clone()]);
        // The file form covers every certificate of the CA, with or without a distribution point.
        let (idp, serials) = crl_contents(&pki.device.crl(&revoked, 3).unwrap());
        assert_eq!(idp, None);
        assert_eq!(serials, vec![device.serial.clone()]);

        // Without a base nothing names a distribution point.
        let plain = FleetPki::open(dir.path()).unwrap();
        let again = plain.device.sign_csr(&csr_pem, "kiosk-abd", 90).unwrap();
        assert!(distribution_points(&again.certificate_pem).is_empty());
        assert_eq!(
            crl_contents(&plain.device.published_crl(&[], 1).unwrap()).0,
            None
        );
    }
}

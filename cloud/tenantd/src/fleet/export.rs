//! What an external broker's operator needs, written by `tenantd fleet export-broker-files`:
//! whom to trust (the CA certificates), what is revoked (the CRLs), the cloud's own client
//! identity (a service certificate and its key), and who may use which topics (the ACL, from
//! the patterns `kiosk-protocol` exports in `topic::acl`), for mosquitto and for EMQX.
//!
//! No CA private key is ever written: only CA certificates, CRLs, and the one key made here
//! for the service certificate.

use std::path::{Path, PathBuf};

use kiosk_protocol::topic::acl;

use super::broker::{self, SERVICE_IDENTITY};
use super::pki::{FleetPki, SERVICE_CERT_DAYS};
use super::FleetError;
use crate::store::{CrlCa, SqliteStore};
use crate::tls::{write_private, TlsError};

/// One file written, and what it is for.
#[derive(Debug, Clone)]
pub struct ExportedFile {
    pub name: &'static str,
    pub what: &'static str,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct Exported {
    pub dir: PathBuf,
    pub files: Vec<ExportedFile>,
    /// When the exported service certificate expires (Unix seconds).
    pub service_not_after: i64,
}

/// The file names, as the documentation and the tests use them.
pub mod names {
    pub const CLIENT_CA: &str = "client-ca.pem";
    pub const DEVICE_CA: &str = "device-ca.pem";
    pub const CLAIM_CA: &str = "claim-ca.pem";
    pub const SERVICE_CA: &str = "service-ca.pem";
    pub const DEVICE_CRL: &str = "device-crl.pem";
    pub const CLAIM_CRL: &str = "claim-crl.pem";
    pub const SERVICE_CERT: &str = "svc-tenantd.pem";
    pub const SERVICE_KEY: &str = "svc-tenantd.key";
    pub const MOSQUITTO_DEVICE_ACL: &str = "mosquitto-device.acl";
    pub const MOSQUITTO_PROVISION_ACL: &str = "mosquitto-provision.acl";
    pub const MOSQUITTO_SERVICE_ACL: &str = "mosquitto-service.acl";
    pub const EMQX_ACL: &str = "emqx-acl.conf";
    pub const README: &str = "README";
}

/// EMQX's file authorizer rules (`authorization.sources` of `type = file`). They need the
/// certificate's CN as the MQTT username on every listener (`peer_cert_as_username = cn`) and
/// `authorization.no_match = deny`. A CN's prefix tells the kind of identity, since the cloud
/// chooses every CN: `kiosk-` for devices, `claim-` for claim batches, and the service identity.
pub fn emqx_acl() -> String {
    let emqx = |pattern: &str| pattern.replace("%u", "${username}");
    format!(
        "%% Kioskcall fleet: written by `tenantd fleet export-broker-files`. See docs/operations.md.\n\
         %% Needs the certificate's CN as the username on every listener and authorization.no_match = deny.\n\
         \n\
         %% The cloud (its service certificate): every device and provisioning topic.\n\
         {{allow, {{username, \"{svc}\"}}, all, [\"kiosk/v1/#\", \"provision/v1/#\"]}}.\n\
         \n\
         %% Devices (CN = device id, kiosk-...): write their own up/ and status topics, read their own down/ topics.\n\
         {{allow, {{username, {{re, \"^kiosk-[a-z0-9-]+$\"}}}}, publish, [\"{up}\", \"{status}\"]}}.\n\
         {{allow, {{username, {{re, \"^kiosk-[a-z0-9-]+$\"}}}}, subscribe, [\"{down}\"]}}.\n\
         \n\
         %% Claim identities (CN = claim-<batch>): their own provisioning pair, nothing else.\n\
         {{allow, {{username, {{re, \"^claim-[a-z0-9-]+$\"}}}}, publish, [\"{request}\"]}}.\n\
         {{allow, {{username, {{re, \"^claim-[a-z0-9-]+$\"}}}}, subscribe, [\"{response}\"]}}.\n\
         \n\
         %% Anything else, anyone else: refused.\n\
         {{deny, all}}.\n",
        svc = SERVICE_IDENTITY,
        up = emqx(acl::DEVICE_WRITE_UP),
        status = emqx(acl::DEVICE_WRITE_STATUS),
        down = emqx(acl::DEVICE_READ_DOWN),
        request = emqx(acl::CLAIM_WRITE_REQUEST),
        response = emqx(acl::CLAIM_READ_RESPONSE),
    )
}

fn mosquitto_acl(listener: &str, rules: String) -> String {
    format!(
        "# Kioskcall fleet: mosquitto's acl_file for the {listener} listener, written by\n\
         # `tenantd fleet export-broker-files`. Needs use_identity_as_username true.\n{rules}"
    )
}

const README_TEXT: &str = "\
Kioskcall fleet: files for an external MQTT broker, written by `tenantd fleet export-broker-files`.
The settings that give the same guarantees as tenantd's managed broker, EMQX's included, are in
docs/operations.md (\"An external broker\").

Trust (client certificates; every listener requires one, TLS 1.2 or newer):
  device-ca.pem     the device CA: enrolled kiosks (CN kiosk-...), on the kiosks' listener (8883)
  claim-ca.pem      the claim CA: kiosks asking to be enrolled (CN claim-<batch>), on the
                    provisioning listener (8885)
  client-ca.pem     both of the above, for a broker that has one listener for all kiosks
  service-ca.pem    the service CA: tenantd itself, on a listener of its own (keep it internal)

Revocation (PEM; current at the export; tenantd keeps DATA/broker/device-crl.pem and
claim-crl.pem current and serves them at https://TENANTD/pki/v1/device.crl and claim.crl):
  device-crl.pem    the device CA's CRL
  claim-crl.pem     the claim CA's CRL

tenantd's identity on the broker (give both to `tenantd serve --service-cert --service-key`):
  svc-tenantd.pem   a client certificate of the service CA, CN svc-tenantd, valid one year
  svc-tenantd.key   its private key (mode 0600); it leaves this directory only for tenantd

Authorization (the certificate's CN is the MQTT username; anything not allowed is refused):
  emqx-acl.conf             EMQX's file authorizer rules
  mosquitto-device.acl      mosquitto acl_file of the kiosks' listener
  mosquitto-provision.acl   mosquitto acl_file of the provisioning listener
  mosquitto-service.acl     mosquitto acl_file of tenantd's listener

No CA private key is in this directory.
";

fn write(dir: &Path, name: &str, contents: &str, mode: u32) -> Result<(), FleetError> {
    write_private(&dir.join(name), contents, mode).map_err(FleetError::Tls)
}

/// Writes the files into `out` (made with mode 0700 when missing): CA certificates, current
/// CRLs, a new service certificate and key, the ACLs and a README. Blocks on the store.
pub fn export_broker_files(
    out: &Path,
    store: &SqliteStore,
    pki: &FleetPki,
) -> Result<Exported, FleetError> {
    let dir_error = |source| TlsError::Write {
        path: out.to_path_buf(),
        source,
    };
    if !out.is_dir() {
        std::fs::create_dir_all(out).map_err(dir_error)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o700))
                .map_err(dir_error)?;
        }
    }
    let (device_revoked, n_device) = store.blocking(|db| db.crl_inputs(CrlCa::Device))?;
    let (claim_revoked, n_claim) = store.blocking(|db| db.crl_inputs(CrlCa::Claim))?;
    let number = n_device.max(n_claim);
    let (service, service_key) = pki
        .service
        .issue_with_key(SERVICE_IDENTITY, SERVICE_CERT_DAYS)?;

    use names::*;
    let files: Vec<(&'static str, String, u32, &'static str)> = vec![
        (
            CLIENT_CA,
            format!("{}{}", pki.device.pem(), pki.claim.pem()),
            0o644,
            "device and claim CA certificates: trust for kiosks' client certificates",
        ),
        (
            DEVICE_CA,
            pki.device.pem().to_string(),
            0o644,
            "device CA certificate",
        ),
        (
            CLAIM_CA,
            pki.claim.pem().to_string(),
            0o644,
            "claim CA certificate",
        ),
        (
            SERVICE_CA,
            pki.service.pem().to_string(),
            0o644,
            "service CA certificate: trust for tenantd's client certificate",
        ),
        (
            DEVICE_CRL,
            pki.device.crl(&device_revoked, number)?,
            0o644,
            "the device CA's CRL (PEM)",
        ),
        (
            CLAIM_CRL,
            pki.claim.crl(&claim_revoked, number)?,
            0o644,
            "the claim CA's CRL (PEM)",
        ),
        (
            SERVICE_KEY,
            service_key,
            0o600,
            "tenantd's client key on the broker (--service-key)",
        ),
        (
            SERVICE_CERT,
            service.certificate_pem.clone(),
            0o644,
            "tenantd's client certificate on the broker (--service-cert)",
        ),
        (EMQX_ACL, emqx_acl(), 0o644, "EMQX file authorizer rules"),
        (
            MOSQUITTO_DEVICE_ACL,
            mosquitto_acl("kiosks'", broker::device_acl_rules()),
            0o644,
            "mosquitto ACL of the kiosks' listener",
        ),
        (
            MOSQUITTO_PROVISION_ACL,
            mosquitto_acl("provisioning", broker::provision_acl_rules()),
            0o644,
            "mosquitto ACL of the provisioning listener",
        ),
        (
            MOSQUITTO_SERVICE_ACL,
            mosquitto_acl("service", broker::service_acl_rules()),
            0o644,
            "mosquitto ACL of tenantd's listener",
        ),
        (
            README,
            README_TEXT.to_string(),
            0o644,
            "what each file is for",
        ),
    ];
    let mut written = Vec::with_capacity(files.len());
    for (name, contents, mode, what) in files {
        write(out, name, &contents, mode)?;
        written.push(ExportedFile { name, what });
    }
    tracing::info!(dir = %out.display(), serial = %service.serial, "exported the broker files");
    Ok(Exported {
        dir: out.to_path_buf(),
        files: written,
        service_not_after: service.not_after_unix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_emqx_rules_bind_every_topic_to_the_identity_and_refuse_the_rest() {
        let rules = emqx_acl();
        let lines: Vec<&str> = rules
            .lines()
            .filter(|l| !l.starts_with("%%") && !l.is_empty())
            .collect();
        assert_eq!(lines.last(), Some(&"{deny, all}."));
        for line in &lines[1..lines.len() - 1] {
            assert!(
                line.contains("${username}/") && line.contains("{re, \"^"),
                "every device and claim rule names the identity's own topics: {line}"
            );
            let topics = line.rsplit_once(", [").map(|(_, t)| t).unwrap_or_default();
            assert!(!topics.contains('+'), "no wildcard levels: {line}");
        }
        assert!(rules.contains("[\"kiosk/v1/${username}/up/#\", \"kiosk/v1/${username}/status\"]"));
        assert!(rules.contains("subscribe, [\"kiosk/v1/${username}/down/#\"]"));
        assert!(rules.contains("publish, [\"provision/v1/${username}/request\"]"));
        assert!(rules.contains("{allow, {username, \"svc-tenantd\"}, all,"));
        assert!(!rules.contains("%u"));
    }

    #[test]
    fn the_mosquitto_rules_are_the_managed_brokers_own() {
        let device = mosquitto_acl("kiosks'", broker::device_acl_rules());
        assert!(device.ends_with(&broker::device_acl_rules()));
        assert!(broker::device_acl().ends_with(&broker::device_acl_rules()));
        assert!(!device.contains("edits are lost"));
    }
}

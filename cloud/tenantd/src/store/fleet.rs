//! Fleet rows: claim batches, enrollment tokens, devices and their certificates, activation
//! codes, and the device message log that turns at-least-once delivery into exactly-once.
//!
//! Methods that an admin calls take an [`OrgScope`]; the ones the MQTT side calls are named for
//! what they verify (`redeem_…`, `device_…`) and take ids that the broker authenticated (the
//! topic's device id is the certificate's CN).

use rusqlite::{params, OptionalExtension};
use serde::Serialize;
use serde_json::json;

use super::org::{audit_in_org, audit_org};
use super::{append_audit, conflict_on_unique, found, ts, AuditRecord, By, Db, StoreError};
use crate::audit::PLATFORM_CHAIN;
use crate::tenancy::OrgScope;

/// A batch of claim certificates (one certificate per batch, baked into images).
#[derive(Debug, Clone, Serialize)]
pub struct ClaimBatch {
    pub id: i64,
    pub cn: String,
    pub note: String,
    pub cert_serial: String,
    pub not_after: jiff::Timestamp,
    pub created_at: jiff::Timestamp,
    pub revoked_at: Option<jiff::Timestamp>,
}

/// An enrollment token's public record.
#[derive(Debug, Clone, Serialize)]
pub struct EnrollmentTokenInfo {
    pub id: i64,
    pub site_id: i64,
    pub prefix: String,
    pub uses_left: i64,
    pub expires_at: jiff::Timestamp,
    pub created_by: String,
    pub created_at: jiff::Timestamp,
    pub revoked_at: Option<jiff::Timestamp>,
}

/// A device as admins see it.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    pub id: String,
    pub site_id: Option<i64>,
    pub hardware_serial: String,
    pub board: String,
    pub firmware: String,
    pub enrolled_via: String,
    pub created_at: jiff::Timestamp,
    pub revoked_at: Option<jiff::Timestamp>,
    pub online: bool,
    pub last_seen_at: Option<jiff::Timestamp>,
    pub reported_version: Option<i64>,
    /// Why the device refused its newest desired config, if it did.
    pub reported_errors: Option<serde_json::Value>,
    /// The newest telemetry, as the device sent it.
    pub telemetry: Option<serde_json::Value>,
}

/// What a new device is enrolled with.
#[derive(Debug, Clone)]
pub struct NewDevice {
    pub id: String,
    pub org_id: i64,
    pub site_id: i64,
    pub hardware_serial: String,
    pub board: String,
    pub firmware: String,
    pub enrolled_via: &'static str,
    pub cert_serial: String,
    pub cert_not_after: i64,
    pub certificate_pem: String,
    /// `<claim cn>/<request id>`: the request this device came from.
    pub provision_key: String,
}

/// A provisioning request waiting for an admin to claim its activation code.
#[derive(Debug, Clone)]
pub struct PendingActivation {
    pub claim_cn: String,
    pub request_id: String,
    pub csr_pem: String,
    pub hardware: serde_json::Value,
}

/// Which CA's CRL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrlCa {
    Device,
    Claim,
}

impl CrlCa {
    fn name(self) -> &'static str {
        match self {
            CrlCa::Device => "device",
            CrlCa::Claim => "claim",
        }
    }
}

const DEVICE_COLS: &str = "id, site_id, hardware_serial, board, firmware, enrolled_via, created_at,
     revoked_at, online, last_seen_at, reported_version, last_telemetry, reported_errors";

fn device_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Device> {
    let telemetry: Option<String> = r.get(11)?;
    let errors: Option<String> = r.get(12)?;
    Ok(Device {
        id: r.get(0)?,
        site_id: r.get(1)?,
        hardware_serial: r.get(2)?,
        board: r.get(3)?,
        firmware: r.get(4)?,
        enrolled_via: r.get(5)?,
        created_at: ts(r.get(6)?),
        revoked_at: r.get::<_, Option<i64>>(7)?.map(ts),
        online: r.get(8)?,
        last_seen_at: r.get::<_, Option<i64>>(9)?.map(ts),
        reported_version: r.get(10)?,
        reported_errors: errors.and_then(|t| serde_json::from_str(&t).ok()),
        telemetry: telemetry.and_then(|t| serde_json::from_str(&t).ok()),
    })
}

const TOKEN_COLS: &str =
    "id, site_id, prefix, uses_left, expires_at, created_by, created_at, revoked_at";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EnrollmentTokenInfo> {
    Ok(EnrollmentTokenInfo {
        id: r.get(0)?,
        site_id: r.get(1)?,
        prefix: r.get(2)?,
        uses_left: r.get(3)?,
        expires_at: ts(r.get(4)?),
        created_by: r.get(5)?,
        created_at: ts(r.get(6)?),
        revoked_at: r.get::<_, Option<i64>>(7)?.map(ts),
    })
}

impl Db<'_> {
    /// Records a claim batch whose certificate was just issued.
    pub fn create_claim_batch(
        &mut self,
        by: &By,
        cn: &str,
        note: &str,
        cert_serial: &str,
        not_after: i64,
    ) -> Result<ClaimBatch, StoreError> {
        let tx = self.tx()?;
        tx.execute(
            "INSERT INTO claim_batches (cn, note, cert_serial, not_after, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![cn, note, cert_serial, not_after, by.actor, by.now],
        )
        .map_err(|e| conflict_on_unique(e, "a claim batch with this name already exists"))?;
        let id = tx.last_insert_rowid();
        append_audit(
            &tx,
            AuditRecord {
                chain: PLATFORM_CHAIN,
                org_id: None,
                by,
                action: "claim_batch.create",
                target: Some(format!("claim-batch:{cn}")),
                detail: json!({ "note": note, "serial": cert_serial }),
            },
        )?;
        tx.commit()?;
        Ok(ClaimBatch {
            id,
            cn: cn.into(),
            note: note.into(),
            cert_serial: cert_serial.into(),
            not_after: ts(not_after),
            created_at: ts(by.now),
            revoked_at: None,
        })
    }

    /// Every claim batch, newest first.
    pub fn list_claim_batches(&mut self) -> Result<Vec<ClaimBatch>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, cn, note, cert_serial, not_after, created_at, revoked_at
             FROM claim_batches ORDER BY id DESC",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(ClaimBatch {
                id: r.get(0)?,
                cn: r.get(1)?,
                note: r.get(2)?,
                cert_serial: r.get(3)?,
                not_after: ts(r.get(4)?),
                created_at: ts(r.get(5)?),
                revoked_at: r.get::<_, Option<i64>>(6)?.map(ts),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether a claim identity may provision (it exists and is not revoked).
    pub fn claim_batch_active(&mut self, cn: &str) -> Result<bool, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT revoked_at IS NULL FROM claim_batches WHERE cn = ?1",
                [cn],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(false))
    }

    /// Stores a new enrollment token (digest only) for a site of the organization.
    #[allow(clippy::too_many_arguments)]
    pub fn create_enrollment_token(
        &mut self,
        scope: &OrgScope,
        by: &By,
        site_id: i64,
        prefix: &str,
        digest: &[u8; 32],
        uses: u32,
        expires_at: i64,
    ) -> Result<EnrollmentTokenInfo, StoreError> {
        let tx = self.tx()?;
        site_in_scope(&tx, scope, site_id)?;
        tx.execute(
            "INSERT INTO enrollment_tokens (org_id, site_id, prefix, token_hash, uses_left, expires_at, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![scope.org_id(), site_id, prefix, &digest[..], uses, expires_at, by.actor, by.now],
        )?;
        let id = tx.last_insert_rowid();
        audit_org(
            &tx,
            scope,
            by,
            "enrollment_token.create",
            Some(format!("enrollment-token:{id}")),
            json!({ "site_id": site_id, "uses": uses, "expires_at": ts(expires_at), "prefix": prefix }),
        )?;
        let info = tx.query_row(
            &format!("SELECT {TOKEN_COLS} FROM enrollment_tokens WHERE id = ?1"),
            [id],
            token_row,
        )?;
        tx.commit()?;
        Ok(info)
    }

    /// The organization's enrollment tokens, newest first.
    pub fn list_enrollment_tokens(
        &mut self,
        scope: &OrgScope,
    ) -> Result<Vec<EnrollmentTokenInfo>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {TOKEN_COLS} FROM enrollment_tokens WHERE org_id = ?1 ORDER BY id DESC"
        ))?;
        let rows = stmt.query_map([scope.org_id()], token_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Revokes an enrollment token.
    pub fn revoke_enrollment_token(
        &mut self,
        scope: &OrgScope,
        by: &By,
        id: i64,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        let changed = tx.execute(
            "UPDATE enrollment_tokens SET revoked_at = COALESCE(revoked_at, ?1)
             WHERE id = ?2 AND org_id = ?3",
            params![by.now, id, scope.org_id()],
        )?;
        if changed == 0 {
            return Err(StoreError::NotFound);
        }
        audit_org(
            &tx,
            scope,
            by,
            "enrollment_token.revoke",
            Some(format!("enrollment-token:{id}")),
            json!({}),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Uses one enrollment of a token and enrolls the device in the same transaction: the
    /// token's organization and site, or `None` when the token is unknown, used up, expired
    /// or revoked (nothing is written then).
    pub fn enroll_with_token(
        &mut self,
        digest: &[u8; 32],
        make: impl FnOnce(i64, i64) -> Result<NewDevice, StoreError>,
        now: i64,
    ) -> Result<Option<NewDevice>, StoreError> {
        let tx = self.tx()?;
        let row: Option<(i64, i64, i64)> = tx
            .query_row(
                "SELECT id, org_id, site_id FROM enrollment_tokens
                 WHERE token_hash = ?1 AND revoked_at IS NULL AND expires_at > ?2 AND uses_left > 0",
                params![&digest[..], now],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((token_id, org_id, site_id)) = row else {
            return Ok(None);
        };
        tx.execute(
            "UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE id = ?1",
            [token_id],
        )?;
        let device = make(org_id, site_id)?;
        insert_device(&tx, &device, now, &format!("enrollment-token:{token_id}"))?;
        tx.commit()?;
        Ok(Some(device))
    }

    /// Keeps a provisioning request under the digest of the activation code shown on screen.
    #[allow(clippy::too_many_arguments)]
    pub fn create_activation_code(
        &mut self,
        code_digest: &[u8; 32],
        claim_cn: &str,
        request_id: &str,
        csr_pem: &str,
        hardware: &serde_json::Value,
        expires_at: i64,
        now: i64,
    ) -> Result<(), StoreError> {
        // Expired, unclaimed codes are swept here.
        self.conn.execute(
            "DELETE FROM activation_codes WHERE expires_at < ?1 AND device_id IS NULL",
            [now],
        )?;
        self.conn
            .execute(
                "INSERT INTO activation_codes (code_hash, claim_cn, request_id, csr_pem, hardware, expires_at, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![&code_digest[..], claim_cn, request_id, csr_pem, hardware.to_string(), expires_at, now],
            )
            .map_err(|e| conflict_on_unique(e, "activation code collision"))?;
        Ok(())
    }

    /// Claims an activation code for the organization's site: the pending request and, in the
    /// same transaction, the enrolled device built by `make`. A used, expired or unknown code
    /// is not found.
    pub fn claim_activation_code(
        &mut self,
        scope: &OrgScope,
        by: &By,
        code_digest: &[u8; 32],
        site_id: i64,
        make: impl FnOnce(&PendingActivation) -> Result<NewDevice, StoreError>,
    ) -> Result<(PendingActivation, NewDevice), StoreError> {
        let tx = self.tx()?;
        site_in_scope(&tx, scope, site_id)?;
        let pending = found(tx.query_row(
            "SELECT claim_cn, request_id, csr_pem, hardware FROM activation_codes
             WHERE code_hash = ?1 AND device_id IS NULL AND expires_at > ?2",
            params![&code_digest[..], by.now],
            |r| {
                let hw: String = r.get(3)?;
                Ok(PendingActivation {
                    claim_cn: r.get(0)?,
                    request_id: r.get(1)?,
                    csr_pem: r.get(2)?,
                    hardware: serde_json::from_str(&hw).unwrap_or(serde_json::Value::Null),
                })
            },
        ))?;
        let device = make(&pending)?;
        if device.org_id != scope.org_id() || device.site_id != site_id {
            return Err(StoreError::Corrupt("device built for another scope".into()));
        }
        insert_device(&tx, &device, by.now, &by.actor)?;
        tx.execute(
            "UPDATE activation_codes SET device_id = ?1, claimed_by = ?2 WHERE code_hash = ?3",
            params![device.id, by.actor, &code_digest[..]],
        )?;
        tx.commit()?;
        Ok((pending, device))
    }

    /// The organization's devices.
    pub fn list_devices(&mut self, scope: &OrgScope) -> Result<Vec<Device>, StoreError> {
        let mut stmt = self.conn.prepare(&format!(
            "SELECT {DEVICE_COLS} FROM devices WHERE org_id = ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([scope.org_id()], device_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The ids of the organization's kiosks that are not revoked, of one site or of all.
    pub fn live_device_ids(
        &mut self,
        scope: &OrgScope,
        site: Option<i64>,
    ) -> Result<Vec<String>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id FROM devices WHERE org_id = ?1 AND revoked_at IS NULL
             AND (?2 IS NULL OR site_id = ?2) ORDER BY id",
        )?;
        let rows = stmt.query_map(params![scope.org_id(), site], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The organization and id of every kiosk not revoked that has no desired config yet.
    pub fn live_devices_without_config(&mut self) -> Result<Vec<(i64, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT org_id, id FROM devices d WHERE revoked_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM desired_configs c WHERE c.device_id = d.id)
             ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One device of the organization.
    pub fn get_device(&mut self, scope: &OrgScope, id: &str) -> Result<Device, StoreError> {
        found(self.conn.query_row(
            &format!("SELECT {DEVICE_COLS} FROM devices WHERE id = ?1 AND org_id = ?2"),
            params![id, scope.org_id()],
            device_row,
        ))
    }

    /// Revokes a device and every certificate it holds; returns the serials revoked.
    pub fn revoke_device(
        &mut self,
        scope: &OrgScope,
        by: &By,
        id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let tx = self.tx()?;
        let revoked: Option<i64> = found(tx.query_row(
            "SELECT revoked_at FROM devices WHERE id = ?1 AND org_id = ?2",
            params![id, scope.org_id()],
            |r| r.get(0),
        ))?;
        if revoked.is_some() {
            // Already revoked: nothing to do, nothing to audit again.
            return Ok(Vec::new());
        }
        tx.execute(
            "UPDATE devices SET revoked_at = ?1, online = 0 WHERE id = ?2 AND org_id = ?3",
            params![by.now, id, scope.org_id()],
        )?;
        let serials: Vec<String> = {
            let mut stmt = tx.prepare(
                "UPDATE device_certs SET revoked_at = ?1 WHERE device_id = ?2 AND revoked_at IS NULL
                 RETURNING serial",
            )?;
            let rows = stmt.query_map(params![by.now, id], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        tx.execute(
            "UPDATE crl_state SET number = number + 1 WHERE ca = 'device'",
            [],
        )?;
        audit_org(
            &tx,
            scope,
            by,
            "device.revoke",
            Some(format!("device:{id}")),
            json!({ "serials": serials }),
        )?;
        tx.commit()?;
        Ok(serials)
    }

    /// The certificate already issued for renewal request `request` of a device:
    /// `(certificate, not_after)`.
    pub fn renewed_cert(
        &mut self,
        device_id: &str,
        request: &str,
    ) -> Result<Option<(String, i64)>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT certificate, not_after FROM device_certs
                 WHERE device_id = ?1 AND renew_request = ?2",
                params![device_id, request],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// How many renewed certificates a device got since `since` (Unix seconds).
    pub fn renewals_since(&mut self, device_id: &str, since: i64) -> Result<u32, StoreError> {
        Ok(self.conn.query_row(
            "SELECT COUNT(*) FROM device_certs
             WHERE device_id = ?1 AND renew_request IS NOT NULL AND issued_at >= ?2",
            params![device_id, since],
            |r| r.get(0),
        )?)
    }

    /// Keeps a renewed certificate of an enrolled, unrevoked device and audits it. The old
    /// certificates stay valid until they expire (the device still holds them until it has
    /// reconnected with the new one). Returns `false` when the device is revoked or unknown.
    pub fn add_renewed_cert(
        &mut self,
        device_id: &str,
        request: &str,
        serial: &str,
        certificate_pem: &str,
        not_after: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let tx = self.tx()?;
        let Some(org_id) = live_device_org(&tx, device_id)? else {
            return Ok(false);
        };
        tx.execute(
            "INSERT INTO device_certs (serial, device_id, certificate, not_after, issued_at, renew_request)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![serial, device_id, certificate_pem, not_after, now, request],
        )?;
        let by = By {
            actor: format!("device:{device_id}"),
            now,
        };
        audit_in_org(
            &tx,
            org_id,
            &by,
            "device.cert_renew",
            Some(format!("device:{device_id}")),
            json!({ "cert_serial": serial, "not_after": not_after }),
        )?;
        tx.commit()?;
        Ok(true)
    }

    /// Enrolled, unrevoked devices whose newest certificate is past `fraction` of its life at
    /// `now`, with the newest certificate's issue time.
    pub fn devices_due_renewal(
        &mut self,
        fraction: f64,
        now: i64,
    ) -> Result<Vec<(String, i64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT d.id, c.issued_at, c.not_after FROM devices d
             JOIN device_certs c ON c.device_id = d.id
             WHERE d.revoked_at IS NULL AND c.revoked_at IS NULL
               AND c.issued_at = (SELECT MAX(issued_at) FROM device_certs WHERE device_id = d.id)",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })?;
        let mut due = Vec::new();
        for row in rows {
            let (id, issued, not_after) = row?;
            let at = issued + ((not_after - issued) as f64 * fraction) as i64;
            if now >= at {
                due.push((id, issued));
            }
        }
        Ok(due)
    }

    /// Revoked serials of a CA and the CRL number to sign with.
    pub fn crl_inputs(&mut self, ca: CrlCa) -> Result<(Vec<(String, i64)>, u64), StoreError> {
        let sql = match ca {
            CrlCa::Device => {
                "SELECT serial, revoked_at FROM device_certs WHERE revoked_at IS NOT NULL ORDER BY serial"
            }
            CrlCa::Claim => {
                "SELECT cert_serial, revoked_at FROM claim_batches WHERE revoked_at IS NOT NULL ORDER BY cert_serial"
            }
        };
        let revoked: Vec<(String, i64)> = {
            let mut stmt = self.conn.prepare(sql)?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let number: i64 = self.conn.query_row(
            "SELECT number FROM crl_state WHERE ca = ?1",
            [ca.name()],
            |r| r.get(0),
        )?;
        Ok((revoked, number.max(1) as u64))
    }

    /// The device a provisioning request already enrolled, with its newest certificate: a
    /// retried request gets the same answer. `Err(NotFound)` for a revoked device.
    pub fn enrolled_by_request(
        &mut self,
        provision_key: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row: Option<(String, Option<i64>, Option<String>)> = self
            .conn
            .query_row(
                "SELECT d.id, d.revoked_at,
                        (SELECT c.certificate FROM device_certs c WHERE c.device_id = d.id
                         AND c.revoked_at IS NULL ORDER BY c.issued_at DESC LIMIT 1)
                 FROM devices d WHERE d.provision_key = ?1",
                [provision_key],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        match row {
            None => Ok(None),
            Some((_, Some(_), _)) | Some((_, None, None)) => Err(StoreError::NotFound),
            Some((id, None, Some(cert))) => Ok(Some((id, cert))),
        }
    }

    /// The organization of an enrolled, unrevoked device (for messages it sends).
    pub fn device_org(&mut self, id: &str) -> Result<Option<i64>, StoreError> {
        live_device_org(self.conn, id)
    }

    /// Keeps a device→cloud message once: `false` when its id was already stored.
    pub fn record_device_message(
        &mut self,
        device_id: &str,
        message_id: &str,
        seq: u64,
        channel: &str,
        body: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let inserted = self.conn.execute(
            "INSERT OR IGNORE INTO device_messages (device_id, message_id, seq, channel, body, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![device_id, message_id, seq as i64, channel, body, now],
        )?;
        if inserted > 0 {
            self.conn.execute(
                "UPDATE devices SET last_seen_at = ?1 WHERE id = ?2",
                params![now, device_id],
            )?;
        }
        Ok(inserted > 0)
    }

    /// The messages kept for a device on a channel, in sequence order.
    pub fn device_messages(
        &mut self,
        device_id: &str,
        channel: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT message_id, seq FROM device_messages WHERE device_id = ?1 AND channel = ?2
             ORDER BY seq",
        )?;
        let rows = stmt.query_map(params![device_id, channel], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Online/offline from the status topic.
    pub fn set_presence(
        &mut self,
        device_id: &str,
        online: bool,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE devices SET online = ?1, last_seen_at = ?2 WHERE id = ?3",
            params![online, now, device_id],
        )?;
        Ok(())
    }

    /// The newest telemetry of a device.
    pub fn record_telemetry(
        &mut self,
        device_id: &str,
        body: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE devices SET last_telemetry = ?1, last_seen_at = ?2 WHERE id = ?3",
            params![body, now, device_id],
        )?;
        Ok(())
    }
}

/// `NotFound` unless the site belongs to the scope's organization.
fn site_in_scope(
    tx: &rusqlite::Connection,
    scope: &OrgScope,
    site_id: i64,
) -> Result<(), StoreError> {
    found(tx.query_row(
        "SELECT id FROM sites WHERE id = ?1 AND org_id = ?2",
        params![site_id, scope.org_id()],
        |r| r.get::<_, i64>(0),
    ))
    .map(|_| ())
}

/// Records a command for a device and audits it in the device's organization.
fn insert_command(
    tx: &rusqlite::Transaction<'_>,
    org_id: i64,
    by: &By,
    device_id: &str,
    id: &str,
    body: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO device_commands (id, device_id, body, created_by, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        params![id, device_id, body, by.actor, by.now],
    )?;
    audit_in_org(
        tx,
        org_id,
        by,
        "device.command",
        Some(format!("device:{device_id}")),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// The organization of an enrolled, unrevoked device.
fn live_device_org(conn: &rusqlite::Connection, id: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT org_id FROM devices WHERE id = ?1 AND revoked_at IS NULL",
            [id],
            |r| r.get(0),
        )
        .optional()?)
}

/// `NotFound` unless the device belongs to the scope's organization and is not revoked.
fn live_device_in_scope(
    tx: &rusqlite::Connection,
    scope: &OrgScope,
    device_id: &str,
) -> Result<(), StoreError> {
    found(tx.query_row(
        "SELECT id FROM devices WHERE id = ?1 AND org_id = ?2 AND revoked_at IS NULL",
        params![device_id, scope.org_id()],
        |r| r.get::<_, String>(0),
    ))
    .map(|_| ())
}

fn insert_device(
    tx: &rusqlite::Transaction<'_>,
    d: &NewDevice,
    now: i64,
    actor: &str,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO devices (id, org_id, site_id, hardware_serial, board, firmware, enrolled_via, provision_key, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![d.id, d.org_id, d.site_id, d.hardware_serial, d.board, d.firmware, d.enrolled_via, d.provision_key, now],
    )
    .map_err(|e| conflict_on_unique(e, "device already enrolled"))?;
    tx.execute(
        "INSERT INTO device_certs (serial, device_id, certificate, not_after, issued_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            d.cert_serial,
            d.id,
            d.certificate_pem,
            d.cert_not_after,
            now
        ],
    )?;
    let by = By {
        actor: actor.to_string(),
        now,
    };
    audit_in_org(
        tx,
        d.org_id,
        &by,
        "device.enroll",
        Some(format!("device:{}", d.id)),
        json!({ "site_id": d.site_id, "via": d.enrolled_via, "serial": d.hardware_serial,
                "board": d.board, "cert_serial": d.cert_serial }),
    )
}

/// A stored desired config.
#[derive(Debug, Clone, Serialize)]
pub struct DesiredRecord {
    pub version: i64,
    pub config: serde_json::Value,
    pub created_by: String,
    pub created_at: jiff::Timestamp,
}

/// A command sent to a device and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct CommandRecord {
    pub id: String,
    pub command: serde_json::Value,
    pub state: String,
    pub detail: Option<String>,
    pub created_by: String,
    pub created_at: jiff::Timestamp,
    pub updated_at: jiff::Timestamp,
}

/// What a desired config is made from, besides the device's own settings.
#[derive(Debug, Clone)]
pub struct ConfigSources {
    pub org_slug: String,
    pub site: Option<super::Site>,
    pub settings: super::Settings,
    pub latest_version: i64,
}

impl Db<'_> {
    /// The org slug, site, org settings and newest config version of a device.
    pub fn config_sources(
        &mut self,
        scope: &OrgScope,
        device_id: &str,
    ) -> Result<ConfigSources, StoreError> {
        let device = self.get_device(scope, device_id)?;
        let site = match device.site_id {
            Some(id) => Some(self.get_site(scope, id)?),
            None => None,
        };
        let settings = self.get_settings(scope)?;
        let latest_version: i64 = self.conn.query_row(
            "SELECT COALESCE(MAX(version), 0) FROM desired_configs WHERE device_id = ?1",
            [device_id],
            |r| r.get(0),
        )?;
        Ok(ConfigSources {
            org_slug: scope.org().slug.clone(),
            site,
            settings,
            latest_version,
        })
    }

    /// Stores a new desired config version; `version` must be the next one (a concurrent
    /// change makes this a conflict rather than a lost update).
    pub fn put_desired(
        &mut self,
        scope: &OrgScope,
        by: &By,
        device_id: &str,
        version: i64,
        body: &str,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        live_device_in_scope(&tx, scope, device_id)?;
        tx.execute(
            "INSERT INTO desired_configs (device_id, version, body, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![device_id, version, body, by.actor, by.now],
        )
        .map_err(|e| conflict_on_unique(e, "the config changed meanwhile; reload and try again"))?;
        audit_org(
            &tx,
            scope,
            by,
            "device.config",
            Some(format!("device:{device_id}")),
            json!({ "version": version }),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// A device's desired configs, newest first.
    pub fn desired_history(
        &mut self,
        scope: &OrgScope,
        device_id: &str,
        limit: u32,
    ) -> Result<Vec<DesiredRecord>, StoreError> {
        self.get_device(scope, device_id)?;
        let mut stmt = self.conn.prepare(
            "SELECT version, body, created_by, created_at FROM desired_configs
             WHERE device_id = ?1 ORDER BY version DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![device_id, limit], |r| {
            let body: String = r.get(1)?;
            Ok(DesiredRecord {
                version: r.get(0)?,
                config: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                created_by: r.get(2)?,
                created_at: ts(r.get(3)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest desired config of every unrevoked device (to publish again, retained).
    pub fn latest_desired_all(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT c.device_id, c.body FROM desired_configs c JOIN devices d ON d.id = c.device_id
             WHERE d.revoked_at IS NULL
               AND c.version = (SELECT MAX(version) FROM desired_configs WHERE device_id = c.device_id)",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Commands sent but not yet acknowledged by their (unrevoked) device, oldest first.
    pub fn pending_commands(&mut self) -> Result<Vec<(String, String)>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT c.device_id, c.body FROM device_commands c JOIN devices d ON d.id = c.device_id
             WHERE c.state = 'sent' AND d.revoked_at IS NULL ORDER BY c.created_at, c.id",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// What the device reported about its config.
    pub fn record_reported(
        &mut self,
        device_id: &str,
        in_force: Option<u64>,
        errors: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE devices SET reported_version = ?1, reported_errors = ?2 WHERE id = ?3",
            params![in_force.map(|v| v as i64), errors, device_id],
        )?;
        Ok(())
    }

    /// Records a command about to be sent.
    pub fn create_command(
        &mut self,
        scope: &OrgScope,
        by: &By,
        device_id: &str,
        id: &str,
        body: &str,
    ) -> Result<(), StoreError> {
        let tx = self.tx()?;
        live_device_in_scope(&tx, scope, device_id)?;
        insert_command(&tx, scope.org_id(), by, device_id, id, body)?;
        tx.commit()?;
        Ok(())
    }

    /// Queues a `rotate_certificate` command from the platform itself (certificate renewal
    /// at two thirds of its life), unless one was already queued since `since`. Returns
    /// whether a command was created.
    pub fn create_renewal_command(
        &mut self,
        device_id: &str,
        id: &str,
        body: &str,
        since: i64,
        now: i64,
    ) -> Result<bool, StoreError> {
        let tx = self.tx()?;
        let Some(org_id) = live_device_org(&tx, device_id)? else {
            return Ok(false);
        };
        let queued: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM device_commands WHERE device_id = ?1
               AND json_extract(body, '$.action') = 'rotate_certificate' AND created_at >= ?2)",
            params![device_id, since],
            |r| r.get(0),
        )?;
        if queued {
            return Ok(false);
        }
        let by = By {
            actor: "system:certificate-renewal".to_string(),
            now,
        };
        insert_command(&tx, org_id, &by, device_id, id, body)?;
        tx.commit()?;
        Ok(true)
    }

    /// A command's result from the device (only for that device's own commands).
    pub fn record_command_result(
        &mut self,
        device_id: &str,
        command_id: &str,
        state: &str,
        detail: Option<&str>,
        now: i64,
    ) -> Result<(), StoreError> {
        self.conn.execute(
            "UPDATE device_commands SET state = ?1, detail = ?2, updated_at = ?3
             WHERE id = ?4 AND device_id = ?5",
            params![state, detail, now, command_id, device_id],
        )?;
        Ok(())
    }

    /// A device's commands, newest first.
    pub fn list_commands(
        &mut self,
        scope: &OrgScope,
        device_id: &str,
    ) -> Result<Vec<CommandRecord>, StoreError> {
        self.get_device(scope, device_id)?;
        let mut stmt = self.conn.prepare(
            "SELECT id, body, state, detail, created_by, created_at, updated_at FROM device_commands
             WHERE device_id = ?1 ORDER BY created_at DESC, id DESC LIMIT 200",
        )?;
        let rows = stmt.query_map([device_id], |r| {
            let body: String = r.get(1)?;
            Ok(CommandRecord {
                id: r.get(0)?,
                command: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
                state: r.get(2)?,
                detail: r.get(3)?,
                created_by: r.get(4)?,
                created_at: ts(r.get(5)?),
                updated_at: ts(r.get(6)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

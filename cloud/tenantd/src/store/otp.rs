//! The rows of one-time codes and SMS (`crate::otp`): codes (keyed hashes only), customers,
//! callbacks, SMS delivery records and the providers' receipts that move them on, the
//! organizations' gateways with their receipt keys, erasure of a number, and the periodic
//! prune.
//!
//! The decisions are `crate::otp::rules`'; the methods that need one take it as a closure and
//! run it inside their transaction, so what is read and what is written cannot drift apart
//! (two kiosks asking for the same number at once both count).

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;
use serde_json::json;

use super::org::audit_org;
use super::{Db, Site, StoreError};
use crate::otp::receipts::{self, ReceiptConfig};
use crate::otp::rules::{
    CallFacts, CallbackReason, CallbackRefusal, CodeState, CustomerFacts, StoredCode,
};
use crate::otp::sms::GatewayConfig;
use crate::tenancy::OrgScope;

/// A live kiosk as the journey needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JourneyKiosk {
    pub device_id: String,
    pub org_id: i64,
    pub org_slug: String,
    pub org_name: String,
    pub org_disabled: bool,
    pub site_id: Option<i64>,
}

/// Whose code: the organization, kiosk and journey session.
#[derive(Debug, Clone, Copy)]
pub struct CodeOwner<'a> {
    pub org_id: i64,
    pub device_id: &'a str,
    pub request_id: &'a str,
}

/// From when earlier codes are read for the limits (ms since the epoch, exclusive).
#[derive(Debug, Clone, Copy)]
pub struct HistorySince {
    pub kiosk_ms: i64,
    pub org_ms: i64,
    pub phone_ms: i64,
}

/// Creation times (ms) of earlier codes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CodeHistory {
    /// The newest code of the session.
    pub session_last_ms: Option<i64>,
    pub kiosk: Vec<i64>,
    pub org: Vec<i64>,
    /// Codes to the number, in every organization.
    pub phone: Vec<i64>,
}

/// A code to store.
#[derive(Clone)]
pub struct NewCode {
    pub phone_hash: [u8; 32],
    pub phone_e164: String,
    pub phone_masked: String,
    pub code_hash: [u8; 32],
    pub language: Option<String>,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for NewCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCode")
            .field("phone_masked", &self.phone_masked)
            .field("created_at_ms", &self.created_at_ms)
            .finish_non_exhaustive()
    }
}

/// A stored code.
#[derive(Clone)]
pub struct CodeRow {
    pub id: i64,
    pub org_id: i64,
    pub phone_hash: Vec<u8>,
    /// Kept only while the code lives.
    pub phone_e164: Option<String>,
    pub phone_masked: String,
    pub code_hash: Vec<u8>,
    pub language: Option<String>,
    pub code: StoredCode,
}

impl std::fmt::Debug for CodeRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeRow")
            .field("id", &self.id)
            .field("phone_masked", &self.phone_masked)
            .field("code", &self.code)
            .finish_non_exhaustive()
    }
}

/// A verified customer to store.
#[derive(Clone)]
pub struct NewCustomer {
    pub token_hash: [u8; 32],
    pub phone_hash: Vec<u8>,
    pub phone_masked: String,
    pub phone_e164: Option<String>,
    pub language: Option<String>,
    pub verified_at_ms: i64,
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for NewCustomer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCustomer")
            .field("phone_masked", &self.phone_masked)
            .field("verified_at_ms", &self.verified_at_ms)
            .finish_non_exhaustive()
    }
}

/// What a verification does to the code it read.
#[derive(Debug, Clone)]
pub enum CodeChange {
    /// Nothing (no code, or a dead one).
    None,
    /// A wrong try: store the count; with `dead` the code is killed.
    Tries { tries: u32, dead: bool },
    /// The live code expired: mark it dead.
    Retire,
    /// The right code: mark it verified and store the customer.
    Verified(NewCustomer),
}

/// A callback booked (or found booked already).
#[derive(Clone)]
pub struct Booking {
    /// `false` when this customer's callback for this call was booked already.
    pub new: bool,
    pub reason: CallbackReason,
    pub phone_e164: String,
    pub phone_masked: String,
    pub language: Option<String>,
}

impl std::fmt::Debug for Booking {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Booking")
            .field("new", &self.new)
            .field("reason", &self.reason)
            .field("phone_masked", &self.phone_masked)
            .finish_non_exhaustive()
    }
}

/// One SMS delivery attempt to record (masked number only).
#[derive(Debug, Clone)]
pub struct NewSmsRecord<'a> {
    pub org_id: i64,
    pub purpose: &'a str,
    pub phone_masked: &'a str,
    pub gateway: &'a str,
    /// `sent` or `failed`.
    pub status: &'a str,
    pub provider_id: Option<&'a str>,
    pub error: Option<&'a str>,
    pub at_ms: i64,
}

/// A delivery record as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct SmsRecord {
    pub id: i64,
    pub purpose: String,
    pub phone_masked: String,
    pub gateway: String,
    /// `sent`, `failed`, then `delivered` or `undelivered` from the provider's receipts.
    pub status: String,
    pub provider_id: Option<String>,
    pub error: Option<String>,
    pub created_at: jiff::Timestamp,
    /// The time of the last status change.
    pub updated_at: jiff::Timestamp,
}

/// An organization's gateways as stored.
#[derive(Debug, Clone)]
pub struct OrgSms {
    pub gateways: Vec<GatewayConfig>,
    pub updated_at: jiff::Timestamp,
}

/// The gateway a receipt key belongs to.
#[derive(Debug, Clone)]
pub struct ReceiptGateway {
    pub org_id: i64,
    /// Its name in delivery records (`http:NAME`).
    pub gateway: String,
    pub receipts: ReceiptConfig,
}

/// What a receipt did to the delivery records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceiptApplied {
    /// No record of the gateway has the provider's id (pruned, or not recorded yet).
    NoRecord,
    /// The record's status stays (a repeat, a late or an ignored status).
    Unchanged { status: String },
    /// The record moved on.
    Updated { status: &'static str },
}

/// What an erasure removed or cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Erased {
    pub otp_codes: usize,
    pub customers: usize,
    pub callbacks: usize,
    pub calls: usize,
}

/// What a prune cleared.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Codes that expired (marked dead, number cleared).
    pub codes_expired: usize,
    /// Codes deleted (older than the longest limit window).
    pub codes_deleted: usize,
    /// Customers whose callback window ended (number cleared).
    pub customer_numbers: usize,
    /// Delivery records deleted.
    pub sms_records: usize,
}

fn ms_ts(ms: i64) -> jiff::Timestamp {
    jiff::Timestamp::from_millisecond(ms).unwrap_or(jiff::Timestamp::UNIX_EPOCH)
}

fn times(
    tx: &Transaction<'_>,
    sql: &str,
    p: impl rusqlite::Params,
) -> Result<Vec<i64>, StoreError> {
    let mut stmt = tx.prepare(sql)?;
    let rows = stmt.query_map(p, |r| r.get::<_, i64>(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn code_row(r: &rusqlite::Row<'_>) -> Result<CodeRow, rusqlite::Error> {
    let state: String = r.get(10)?;
    Ok(CodeRow {
        id: r.get(0)?,
        org_id: r.get(1)?,
        phone_hash: r.get(2)?,
        phone_e164: r.get(3)?,
        phone_masked: r.get(4)?,
        code_hash: r.get(5)?,
        language: r.get(6)?,
        code: StoredCode {
            created_at_ms: r.get(7)?,
            expires_at_ms: r.get(8)?,
            tries: r.get::<_, i64>(9)?.clamp(0, i64::from(u32::MAX)) as u32,
            state: CodeState::parse(&state).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    10,
                    rusqlite::types::Type::Text,
                    format!("unknown code state {state:?}").into(),
                )
            })?,
        },
    })
}

const CODE_COLS: &str = "id, org_id, phone_hash, phone_e164, phone_masked, code_hash, language, \
     created_at_ms, expires_at_ms, tries, state";

/// The newest code of a session.
fn newest_code(
    conn: &rusqlite::Connection,
    device_id: &str,
    request_id: &str,
) -> Result<Option<CodeRow>, StoreError> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {CODE_COLS} FROM otp_codes WHERE device_id = ?1 AND request_id = ?2
                 ORDER BY created_at_ms DESC, id DESC LIMIT 1"
            ),
            params![device_id, request_id],
            code_row,
        )
        .optional()?)
}

impl Db<'_> {
    /// A live (not revoked) kiosk with its organization and site.
    pub fn journey_kiosk(&mut self, device_id: &str) -> Result<Option<JourneyKiosk>, StoreError> {
        Ok(self
            .conn
            .query_row(
                "SELECT d.id, d.org_id, o.slug, o.name, o.disabled, d.site_id
                 FROM devices d JOIN orgs o ON o.id = d.org_id
                 WHERE d.id = ?1 AND d.revoked_at IS NULL",
                [device_id],
                |r| {
                    Ok(JourneyKiosk {
                        device_id: r.get(0)?,
                        org_id: r.get(1)?,
                        org_slug: r.get(2)?,
                        org_name: r.get(3)?,
                        org_disabled: r.get(4)?,
                        site_id: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    /// In one transaction: reads the codes the limits count, lets `decide` rule, and stores the
    /// code it returns (the session's live codes die: a session has one live code). Returns
    /// `decide`'s answer and the new code's id.
    pub fn issue_code<T>(
        &mut self,
        owner: &CodeOwner<'_>,
        phone_hash: &[u8],
        since: HistorySince,
        decide: impl FnOnce(&CodeHistory) -> (T, Option<NewCode>),
    ) -> Result<(T, Option<i64>), StoreError> {
        let tx = self.tx()?;
        let history = CodeHistory {
            session_last_ms: tx.query_row(
                "SELECT MAX(created_at_ms) FROM otp_codes WHERE device_id = ?1 AND request_id = ?2",
                params![owner.device_id, owner.request_id],
                |r| r.get(0),
            )?,
            kiosk: times(
                &tx,
                "SELECT created_at_ms FROM otp_codes WHERE device_id = ?1 AND created_at_ms > ?2",
                params![owner.device_id, since.kiosk_ms],
            )?,
            org: times(
                &tx,
                "SELECT created_at_ms FROM otp_codes WHERE org_id = ?1 AND created_at_ms > ?2",
                params![owner.org_id, since.org_ms],
            )?,
            phone: times(
                &tx,
                "SELECT created_at_ms FROM otp_codes WHERE phone_hash = ?1 AND created_at_ms > ?2",
                params![phone_hash, since.phone_ms],
            )?,
        };
        let (answer, new) = decide(&history);
        let Some(new) = new else {
            return Ok((answer, None));
        };
        tx.execute(
            "UPDATE otp_codes SET state = 'dead', phone_e164 = NULL
             WHERE device_id = ?1 AND request_id = ?2 AND state = 'live'",
            params![owner.device_id, owner.request_id],
        )?;
        tx.execute(
            "INSERT INTO otp_codes (org_id, device_id, request_id, phone_hash, phone_e164,
                phone_masked, code_hash, language, created_at_ms, expires_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                owner.org_id,
                owner.device_id,
                owner.request_id,
                new.phone_hash.as_slice(),
                new.phone_e164,
                new.phone_masked,
                new.code_hash.as_slice(),
                new.language,
                new.created_at_ms,
                new.expires_at_ms
            ],
        )?;
        let id = tx.last_insert_rowid();
        tx.commit()?;
        Ok((answer, Some(id)))
    }

    /// The newest code of a kiosk's journey session.
    pub fn session_code(
        &mut self,
        device_id: &str,
        request_id: &str,
    ) -> Result<Option<CodeRow>, StoreError> {
        newest_code(self.conn, device_id, request_id)
    }

    /// Removes a code no gateway took: nothing was sent, so it counts for no limit.
    pub fn delete_code(&mut self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute("DELETE FROM otp_codes WHERE id = ?1", [id])?;
        Ok(())
    }

    /// In one transaction: reads the session's newest code, lets `decide` rule, and applies
    /// the change it returns.
    pub fn verify_code<T>(
        &mut self,
        owner: &CodeOwner<'_>,
        decide: impl FnOnce(Option<&CodeRow>) -> (T, CodeChange),
    ) -> Result<T, StoreError> {
        let tx = self.tx()?;
        let row = newest_code(&tx, owner.device_id, owner.request_id)?;
        let (answer, change) = decide(row.as_ref());
        let Some(row) = row else {
            return Ok(answer);
        };
        match change {
            CodeChange::None => return Ok(answer),
            CodeChange::Tries { tries, dead } => {
                tx.execute(
                    "UPDATE otp_codes SET tries = ?1,
                        state = CASE WHEN ?2 THEN 'dead' ELSE state END,
                        phone_e164 = CASE WHEN ?2 THEN NULL ELSE phone_e164 END
                     WHERE id = ?3",
                    params![tries, dead, row.id],
                )?;
            }
            CodeChange::Retire => {
                tx.execute(
                    "UPDATE otp_codes SET state = 'dead', phone_e164 = NULL
                     WHERE id = ?1 AND state = 'live'",
                    [row.id],
                )?;
            }
            CodeChange::Verified(c) => {
                tx.execute(
                    "UPDATE otp_codes SET state = 'verified', phone_e164 = NULL WHERE id = ?1",
                    [row.id],
                )?;
                tx.execute(
                    "INSERT INTO customers (org_id, device_id, request_id, token_hash, phone_hash,
                        phone_masked, phone_e164, language, verified_at_ms, expires_at_ms)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                    params![
                        owner.org_id,
                        owner.device_id,
                        owner.request_id,
                        c.token_hash.as_slice(),
                        c.phone_hash,
                        c.phone_masked,
                        c.phone_e164,
                        c.language,
                        c.verified_at_ms,
                        c.expires_at_ms
                    ],
                )?;
            }
        }
        tx.commit()?;
        Ok(answer)
    }

    /// Ends a journey session: its live codes die, and every number it kept that no record
    /// needs is cleared (its codes', and its customers' that placed no call). Returns how many
    /// codes and customers were touched.
    pub fn forget_journey(
        &mut self,
        device_id: &str,
        request_id: &str,
    ) -> Result<(usize, usize), StoreError> {
        let tx = self.tx()?;
        let codes = tx.execute(
            "UPDATE otp_codes SET state = CASE WHEN state = 'live' THEN 'dead' ELSE state END,
                phone_e164 = NULL
             WHERE device_id = ?1 AND request_id = ?2
               AND (state = 'live' OR phone_e164 IS NOT NULL)",
            params![device_id, request_id],
        )?;
        let customers = tx.execute(
            "UPDATE customers SET phone_e164 = NULL
             WHERE device_id = ?1 AND request_id = ?2 AND call_id IS NULL
               AND phone_e164 IS NOT NULL",
            params![device_id, request_id],
        )?;
        tx.commit()?;
        Ok((codes, customers))
    }

    /// In one transaction: finds this kiosk's customer by token digest, the call it names and
    /// the kiosk's site (`site_id`, with its hours), lets `decide` rule, and books the callback
    /// once per customer and call.
    pub fn book_callback(
        &mut self,
        device_id: &str,
        site_id: Option<i64>,
        token_hash: &[u8],
        call_id: Option<&str>,
        now_ms: i64,
        decide: impl FnOnce(
            Option<&CustomerFacts>,
            Option<(&str, Option<CallFacts>)>,
            Option<&Site>,
        ) -> Result<CallbackReason, CallbackRefusal>,
    ) -> Result<Result<Booking, CallbackRefusal>, StoreError> {
        type CustomerCols = (
            i64,
            i64,
            Option<String>,
            Vec<u8>,
            String,
            Option<String>,
            i64,
            Option<String>,
        );
        let tx = self.tx()?;
        let customer: Option<CustomerCols> = tx
            .query_row(
                "SELECT id, org_id, phone_e164, phone_hash, phone_masked, language,
                        verified_at_ms, call_id
                 FROM customers WHERE token_hash = ?1 AND device_id = ?2",
                params![token_hash, device_id],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                },
            )
            .optional()?;
        let facts = customer.as_ref().map(|c| CustomerFacts {
            verified_at_ms: c.6,
            has_phone: c.2.is_some(),
            used_for: c.7.clone(),
        });
        let call = match (call_id, &customer) {
            (Some(id), Some(c)) => {
                let row: Option<(String, bool, Option<String>)> = tx
                    .query_row(
                        "SELECT state, callback_offered, end_reason FROM calls
                         WHERE id = ?1 AND org_id = ?2 AND device_id = ?3",
                        params![id, c.1, device_id],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    )
                    .optional()?;
                Some((
                    id,
                    row.map(|(state, offered, reason)| CallFacts {
                        ended: state == "ended",
                        unanswered: offered || reason.as_deref() == Some("not_answered"),
                    }),
                ))
            }
            (Some(id), None) => Some((id, None)),
            (None, _) => None,
        };
        let site = match (site_id, &customer) {
            (Some(id), Some(c)) => super::org::site_in_org(&tx, c.1, id)?,
            _ => None,
        };
        let reason = match decide(facts.as_ref(), call, site.as_ref()) {
            Ok(reason) => reason,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let Some((customer_id, org_id, Some(phone_e164), phone_hash, phone_masked, language, ..)) =
            customer
        else {
            // `decide` books only a customer whose number is kept.
            return Ok(Err(CallbackRefusal::Expired));
        };
        let booked: Option<i64> = tx
            .query_row(
                "SELECT id FROM callbacks WHERE customer_id = ?1 AND call_id IS ?2",
                params![customer_id, call_id],
                |r| r.get(0),
            )
            .optional()?;
        let new = booked.is_none();
        if new {
            tx.execute(
                "INSERT INTO callbacks (org_id, site_id, device_id, customer_id, call_id, reason,
                    phone_e164, phone_hash, phone_masked, language, requested_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    org_id,
                    site_id,
                    device_id,
                    customer_id,
                    call_id,
                    reason.as_str(),
                    phone_e164,
                    phone_hash,
                    phone_masked,
                    language,
                    now_ms
                ],
            )?;
            tx.commit()?;
        }
        Ok(Ok(Booking {
            new,
            reason,
            phone_e164,
            phone_masked,
            language,
        }))
    }

    /// Records one delivery attempt.
    pub fn record_sms(&mut self, r: &NewSmsRecord<'_>) -> Result<(), StoreError> {
        self.conn.execute(
            "INSERT INTO sms_messages (org_id, purpose, phone_masked, gateway, status,
                provider_id, error, created_at_ms, updated_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)",
            params![
                r.org_id,
                r.purpose,
                r.phone_masked,
                r.gateway,
                r.status,
                r.provider_id,
                r.error,
                r.at_ms
            ],
        )?;
        Ok(())
    }

    /// The organization's newest delivery records.
    pub fn list_sms(&mut self, scope: &OrgScope, limit: u32) -> Result<Vec<SmsRecord>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT id, purpose, phone_masked, gateway, status, provider_id, error,
                    created_at_ms, updated_at_ms
             FROM sms_messages WHERE org_id = ?1 ORDER BY created_at_ms DESC, id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![scope.org_id(), limit], |r| {
            Ok(SmsRecord {
                id: r.get(0)?,
                purpose: r.get(1)?,
                phone_masked: r.get(2)?,
                gateway: r.get(3)?,
                status: r.get(4)?,
                provider_id: r.get(5)?,
                error: r.get(6)?,
                created_at: ms_ts(r.get(7)?),
                updated_at: ms_ts(r.get(8)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// An organization's own gateways, when it set any.
    pub fn org_sms(&mut self, org_id: i64) -> Result<Option<OrgSms>, StoreError> {
        let row: Option<(String, i64)> = self
            .conn
            .query_row(
                "SELECT gateways, updated_at FROM org_sms WHERE org_id = ?1",
                [org_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(text, updated_at)| {
            Ok(OrgSms {
                gateways: serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("SMS gateways: {e}")))?,
                updated_at: super::ts(updated_at),
            })
        })
        .transpose()
    }

    /// Replaces the organization's gateways (an empty list: the platform's from now on). The
    /// audit entry names kinds, names and hosts, and whether a secret changed, never a secret.
    pub fn put_org_sms(
        &mut self,
        scope: &OrgScope,
        by: &super::By,
        gateways: &[GatewayConfig],
    ) -> Result<(), StoreError> {
        let before = self
            .org_sms(scope.org_id())?
            .map(|o| o.gateways)
            .unwrap_or_default();
        let secrets = |list: &[GatewayConfig]| -> Vec<String> {
            list.iter()
                .flat_map(|g| g.secrets().into_iter().map(str::to_string))
                .collect()
        };
        let secrets_changed = secrets(&before) != secrets(gateways);
        let text = serde_json::to_string(gateways)
            .map_err(|e| StoreError::Corrupt(format!("SMS gateways: {e}")))?;
        let tx = self.tx()?;
        tx.execute(
            "DELETE FROM sms_receipt_keys WHERE org_id = ?1",
            [scope.org_id()],
        )?;
        for g in gateways {
            if let GatewayConfig::Http(h) = g {
                if let Some(r) = &h.receipts {
                    tx.execute(
                        "INSERT INTO sms_receipt_keys (key_hash, org_id, gateway)
                         VALUES (?1, ?2, ?3)",
                        params![
                            receipts::key_digest(&r.key).as_slice(),
                            scope.org_id(),
                            g.name()
                        ],
                    )?;
                }
            }
        }
        if gateways.is_empty() {
            tx.execute("DELETE FROM org_sms WHERE org_id = ?1", [scope.org_id()])?;
        } else {
            tx.execute(
                "INSERT INTO org_sms (org_id, gateways, updated_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (org_id) DO UPDATE SET gateways = excluded.gateways,
                    updated_at = excluded.updated_at",
                params![scope.org_id(), text, by.now],
            )?;
        }
        audit_org(
            &tx,
            scope,
            by,
            "sms.update",
            None,
            json!({
                "gateways": gateways.iter().map(GatewayConfig::audit_view).collect::<Vec<_>>(),
                "uses": if gateways.is_empty() { "platform" } else { "organization" },
                "secrets_changed": secrets_changed,
            }),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// The gateway whose receipt key has SHA-256 `key_hash`, when one has. The key is found by
    /// its digest (an index lookup), and the gateway's stored key is compared with it in
    /// constant time.
    pub fn receipt_gateway(
        &mut self,
        key_hash: &[u8; 32],
    ) -> Result<Option<ReceiptGateway>, StoreError> {
        let row: Option<(i64, String)> = self
            .conn
            .query_row(
                "SELECT org_id, gateway FROM sms_receipt_keys WHERE key_hash = ?1",
                [key_hash.as_slice()],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((org_id, gateway)) = row else {
            return Ok(None);
        };
        let gateways = self
            .org_sms(org_id)?
            .map(|o| o.gateways)
            .unwrap_or_default();
        let found = gateways.into_iter().find_map(|g| match g {
            GatewayConfig::Http(h) if format!("http:{}", h.name) == gateway => h.receipts,
            _ => None,
        });
        Ok(found
            .filter(|r| receipts::same_digest(&receipts::key_digest(&r.key), key_hash))
            .map(|receipts| ReceiptGateway {
                org_id,
                gateway,
                receipts,
            }))
    }

    /// Applies a receipt to the newest delivery record of `gateway` in `org_id` with the
    /// provider's id: `decide` says, from the record's status, the status it moves to and
    /// its error detail, or `None` to leave it. The record's `updated_at_ms` is the time of
    /// its last status change.
    pub fn apply_receipt(
        &mut self,
        org_id: i64,
        gateway: &str,
        provider_id: &str,
        now_ms: i64,
        decide: impl FnOnce(&str) -> Option<(&'static str, Option<String>)>,
    ) -> Result<ReceiptApplied, StoreError> {
        let tx = self.tx()?;
        let row: Option<(i64, String)> = tx
            .query_row(
                "SELECT id, status FROM sms_messages
                 WHERE org_id = ?1 AND gateway = ?2 AND provider_id = ?3
                 ORDER BY id DESC LIMIT 1",
                params![org_id, gateway, provider_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((id, status)) = row else {
            return Ok(ReceiptApplied::NoRecord);
        };
        let Some((next, error)) = decide(&status) else {
            return Ok(ReceiptApplied::Unchanged { status });
        };
        tx.execute(
            "UPDATE sms_messages SET status = ?1, error = ?2, updated_at_ms = ?3 WHERE id = ?4",
            params![next, error, now_ms, id],
        )?;
        tx.commit()?;
        Ok(ReceiptApplied::Updated { status: next })
    }

    /// Erases a number's data in the organization: its codes, customers and callbacks go,
    /// and its calls lose their number and customer (the rest of a call record, its survey
    /// and consent, stay, with nothing left that names the person). The audit entry has the
    /// counts, never the number.
    pub fn erase_phone(
        &mut self,
        scope: &OrgScope,
        by: &super::By,
        phone_hash: &[u8],
    ) -> Result<Erased, StoreError> {
        let org = scope.org_id();
        let tx = self.tx()?;
        let customers_of = "SELECT id FROM customers WHERE org_id = ?1 AND phone_hash = ?2";
        let calls = tx.execute(
            &format!(
                "UPDATE calls SET phone_masked = NULL, phone_hash = NULL, customer_id = NULL
                 WHERE org_id = ?1 AND (phone_hash = ?2 OR customer_id IN ({customers_of}))"
            ),
            params![org, phone_hash],
        )?;
        let callbacks = tx.execute(
            &format!(
                "DELETE FROM callbacks
                 WHERE org_id = ?1 AND (phone_hash = ?2 OR customer_id IN ({customers_of}))"
            ),
            params![org, phone_hash],
        )?;
        let customers = tx.execute(
            "DELETE FROM customers WHERE org_id = ?1 AND phone_hash = ?2",
            params![org, phone_hash],
        )?;
        let otp_codes = tx.execute(
            "DELETE FROM otp_codes WHERE org_id = ?1 AND phone_hash = ?2",
            params![org, phone_hash],
        )?;
        let erased = Erased {
            otp_codes,
            customers,
            callbacks,
            calls,
        };
        audit_org(
            &tx,
            scope,
            by,
            "customer.erase",
            None,
            json!({
                "otp_codes": erased.otp_codes,
                "customers": erased.customers,
                "callbacks": erased.callbacks,
                "calls": erased.calls,
            }),
        )?;
        tx.commit()?;
        Ok(erased)
    }

    /// The periodic clean-up at `now_ms`: expired live codes die and lose their number; codes
    /// created before `codes_before_ms` (older than every limit window) go; customers verified
    /// before `numbers_before_ms` (their callback window is over) lose their number; delivery
    /// records created before `sms_before_ms` go.
    pub fn prune_journeys(
        &mut self,
        now_ms: i64,
        codes_before_ms: i64,
        numbers_before_ms: i64,
        sms_before_ms: i64,
    ) -> Result<Pruned, StoreError> {
        let tx = self.tx()?;
        let codes_expired = tx.execute(
            "UPDATE otp_codes SET state = 'dead', phone_e164 = NULL
             WHERE state = 'live' AND expires_at_ms <= ?1",
            [now_ms],
        )?;
        tx.execute(
            "UPDATE otp_codes SET phone_e164 = NULL WHERE state != 'live' AND phone_e164 IS NOT NULL",
            [],
        )?;
        let codes_deleted = tx.execute(
            "DELETE FROM otp_codes WHERE created_at_ms < ?1",
            [codes_before_ms],
        )?;
        let customer_numbers = tx.execute(
            "UPDATE customers SET phone_e164 = NULL
             WHERE phone_e164 IS NOT NULL AND verified_at_ms < ?1",
            [numbers_before_ms],
        )?;
        let sms_records = tx.execute(
            "DELETE FROM sms_messages WHERE created_at_ms < ?1",
            [sms_before_ms],
        )?;
        tx.commit()?;
        Ok(Pruned {
            codes_expired,
            codes_deleted,
            customer_numbers,
            sms_records,
        })
    }
}
